//! Key files and other secrets on disk: written atomically, 0600, never over an existing file
//! unless asked; refused when anyone but the owner can read them.
//!
//! A new file is first written to a temporary name in the same directory, created
//! exclusively with mode 0600 (whatever the umask), flushed to disk, and only then linked
//! to its final name: a crash leaves either no key or a whole key, never half of one. With
//! `force` the final step is a rename over the old file instead of a link, which fails when
//! the name is taken.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use breakglass_protocol::keyfile::{self, KeyFileError, SecretKey, MAX_KEY_FILE};
use breakglass_protocol::KeyKind;
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

/// Why a key file could not be read or written.
///
/// The underlying errors are part of each message, not a `source`, so an error chain
/// printed with `{:#}` shows them once.
#[derive(Debug, thiserror::Error)]
pub enum KeyIoError {
    /// The file system refused.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        error: std::io::Error,
    },
    /// Group or others may read the file.
    #[error(
        "{path}: refusing a key file that others can read (mode {mode:o}); \
         run `chmod 600 {path}` if it has not leaked"
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The target exists and `force` was not given.
    #[error("{0}: already exists; refusing to overwrite a key (use --force to replace it)")]
    Exists(PathBuf),
    /// The file is not a valid key file.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: KeyFileError,
    },
    /// The file is not a regular file, or too large.
    #[error("{0}: not a key file (not a regular file, or larger than {MAX_KEY_FILE} bytes)")]
    NotAKeyFile(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyIoError + '_ {
    move |error| KeyIoError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// Writes `contents` to `path` atomically with mode 0600.
///
/// # Errors
///
/// [`KeyIoError::Exists`] when `path` exists and `force` is false; [`KeyIoError::Io`] for
/// any file-system failure (the temporary file is removed).
pub fn write_secret(path: &Path, contents: &[u8], force: bool) -> Result<(), KeyIoError> {
    if !force && path.symlink_metadata().is_ok() {
        return Err(KeyIoError::Exists(path.to_path_buf()));
    }
    write_atomic(path, contents, 0o600, force)
}

/// Writes a file others may read (a signed roster, a metrics text-file) atomically with
/// mode 0644, replacing any file of that name: readers see the old file or the new one,
/// never half of either.
///
/// # Errors
///
/// [`KeyIoError::Io`] for any file-system failure (the temporary file is removed).
pub fn write_public(path: &Path, contents: &[u8]) -> Result<(), KeyIoError> {
    write_atomic(path, contents, 0o644, true)
}

/// Writes `contents` to a fresh temporary file of `mode` beside `path`, makes it durable,
/// then publishes it: renamed over `path` when `replace`, else linked, which fails when
/// the name is taken.
fn write_atomic(path: &Path, contents: &[u8], mode: u32, replace: bool) -> Result<(), KeyIoError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = dir.join(format!(".{}.tmp", random_suffix()));
    let result = write_tmp(&tmp, contents, mode).and_then(|()| publish(&tmp, path, replace));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io(&dir))
}

fn write_tmp(tmp: &Path, contents: &[u8], mode: u32) -> Result<(), KeyIoError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(tmp)
        .map_err(io(tmp))?;
    // The umask may have taken bits away from `mode`; set exactly what was asked.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io(tmp))?;
    file.write_all(contents).map_err(io(tmp))?;
    file.sync_all().map_err(io(tmp))
}

fn publish(tmp: &Path, path: &Path, replace: bool) -> Result<(), KeyIoError> {
    if replace {
        return fs::rename(tmp, path).map_err(io(path));
    }
    match fs::hard_link(tmp, path) {
        Ok(()) => fs::remove_file(tmp).map_err(io(tmp)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(KeyIoError::Exists(path.to_path_buf()))
        }
        Err(e) => Err(io(path)(e)),
    }
}

fn random_suffix() -> String {
    let mut bytes = [0u8; 8];
    OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a secret file after checking that only its owner can read it.
///
/// # Errors
///
/// [`KeyIoError::Permissions`], [`KeyIoError::NotAKeyFile`] or [`KeyIoError::Io`].
pub fn read_secret(path: &Path) -> Result<Zeroizing<String>, KeyIoError> {
    let mut file = File::open(path).map_err(io(path))?;
    let meta = file.metadata().map_err(io(path))?;
    if !meta.is_file() || meta.len() > MAX_KEY_FILE as u64 {
        return Err(KeyIoError::NotAKeyFile(path.to_path_buf()));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyIoError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut text = Zeroizing::new(String::new());
    file.read_to_string(&mut text).map_err(io(path))?;
    Ok(text)
}

/// Reads and checks a key file; `passphrase` is asked only when the file is encrypted.
///
/// # Errors
///
/// Any [`KeyIoError`], naming the file.
pub fn load_key(
    path: &Path,
    passphrase: impl FnOnce() -> Result<Zeroizing<String>, std::io::Error>,
) -> Result<SecretKey, KeyIoError> {
    let text = read_secret(path)?;
    let pass = if keyfile::is_encrypted(&text) {
        Some(passphrase().map_err(io(path))?)
    } else {
        None
    };
    keyfile::decode(&text, pass.as_ref().map(|p| p.as_bytes())).map_err(|reason| {
        KeyIoError::Format {
            path: path.to_path_buf(),
            reason,
        }
    })
}

/// Loads a key file that must hold a key of `kind`, refusing encrypted files (for
/// services that cannot prompt).
///
/// # Errors
///
/// Any [`KeyIoError`], naming the file.
pub fn load_unattended(path: &Path, kind: KeyKind) -> Result<SecretKey, KeyIoError> {
    let key = load_key(path, || {
        Err(std::io::Error::other(
            "the key is passphrase-protected, but this program runs unattended",
        ))
    })?;
    if key.kind() != kind {
        return Err(KeyIoError::Format {
            path: path.to_path_buf(),
            reason: KeyFileError::WrongKind {
                expected: kind,
                found: key.kind(),
            },
        });
    }
    Ok(key)
}

/// Writes `key` as a new key file.
///
/// # Errors
///
/// As [`write_secret`].
pub fn save_key(
    path: &Path,
    key: &SecretKey,
    passphrase: Option<&[u8]>,
    force: bool,
) -> Result<(), KeyIoError> {
    let text = Zeroizing::new(keyfile::encode(key, passphrase));
    write_secret(path, text.as_bytes(), force)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_new_key_file_is_0600_whatever_the_umask() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.key");
        let key = SecretKey::generate(KeyKind::Member);
        save_key(&path, &key, None, false).expect("writes");
        let mode = fs::metadata(&path).expect("exists").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back = load_key(&path, unreachable_prompt).expect("loads");
        assert_eq!(back.public_string(), key.public_string());
        let leftovers = fs::read_dir(dir.path()).expect("lists").count();
        assert_eq!(leftovers, 1, "temporary file left behind");
    }

    fn unreachable_prompt() -> Result<Zeroizing<String>, std::io::Error> {
        Err(std::io::Error::other("no prompt expected"))
    }

    #[test]
    fn a_public_file_replaces_the_old_one_with_mode_0644_and_no_leftovers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("roster.signed");
        write_public(&path, b"first").expect("writes");
        write_public(&path, b"second").expect("replaces");
        assert_eq!(fs::read(&path).expect("reads"), b"second");
        let mode = fs::metadata(&path).expect("exists").permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        assert_eq!(fs::read_dir(dir.path()).expect("lists").count(), 1);
    }

    #[test]
    fn an_existing_file_is_never_overwritten_without_force() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.key");
        let first = SecretKey::generate(KeyKind::Root);
        save_key(&path, &first, None, false).expect("writes");
        let second = SecretKey::generate(KeyKind::Root);
        let err = save_key(&path, &second, None, false).expect_err("refused");
        assert!(matches!(err, KeyIoError::Exists(_)), "{err}");
        let kept = load_key(&path, unreachable_prompt).expect("loads");
        assert_eq!(kept.public_string(), first.public_string());
        save_key(&path, &second, None, true).expect("force replaces");
        let now = load_key(&path, unreachable_prompt).expect("loads");
        assert_eq!(now.public_string(), second.public_string());
    }

    #[test]
    fn a_world_readable_key_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.key");
        save_key(&path, &SecretKey::generate(KeyKind::Member), None, false).expect("writes");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = load_key(&path, unreachable_prompt).expect_err("refused");
        assert!(err.to_string().contains("chmod 600"), "{err}");
        assert!(err.to_string().contains("k.key"), "{err}");
    }

    #[test]
    fn a_key_of_the_wrong_kind_is_refused_unattended() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("root.key");
        save_key(&path, &SecretKey::generate(KeyKind::Root), None, false).expect("writes");
        let err = load_unattended(&path, KeyKind::Relay).expect_err("refused");
        assert!(err.to_string().contains("relay key is needed"), "{err}");
    }
}
