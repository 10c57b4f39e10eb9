//! The roster's files: the editable TOML source and the signed form.
//!
//! The source's `version` is the version of the last roster signed from it; signing
//! takes the next one and writes it back, so every signed roster is newer than the last
//! without anyone having to remember to bump it.

use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use breakglass_protocol::roster::{self, Policy, Roster, Timestamp, MAX_ROSTER};
use breakglass_protocol::{KeyKind, SigningPublic, SigningSecret};

/// Reads the TOML source of a roster.
///
/// # Errors
///
/// When the file cannot be read or is not a roster source; the message names the file.
pub fn load_source(path: &Path) -> Result<Roster> {
    let text = read_bounded(path)?;
    let text = String::from_utf8(text).with_context(|| format!("{}: not UTF-8", path.display()))?;
    toml::from_str(&text).with_context(|| format!("{}: not a roster source", path.display()))
}

/// Writes the TOML source of a roster atomically.
///
/// # Errors
///
/// When the file cannot be written.
pub fn save_source(path: &Path, roster: &Roster) -> Result<()> {
    let text = toml::to_string_pretty(roster).context("cannot serialise the roster")?;
    let header = "# breakglass roster source: edit with `breakglass-keygen roster add|remove`,\n\
                  # then sign with `breakglass-keygen roster sign`.\n";
    Ok(write_public(path, format!("{header}{text}").as_bytes())?)
}

/// Reads a file of at most the roster size limit.
///
/// # Errors
///
/// When the file cannot be read or is larger than any roster.
pub fn read_bounded(path: &Path) -> Result<Vec<u8>> {
    let meta = fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.len() > MAX_ROSTER as u64 {
        bail!(
            "{}: too large to be a roster ({} bytes)",
            path.display(),
            meta.len()
        );
    }
    fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

pub use crate::keyio::write_public;

/// Signs the source with the root key: the next version, issued now, valid for
/// `valid_for`. Returns the signed bytes and the roster as signed.
///
/// # Errors
///
/// When the roster breaks a rule (duplicate names, unknown channel, …).
pub fn sign(
    source: &Roster,
    root: &SigningSecret,
    valid_for: Duration,
) -> Result<(Vec<u8>, Roster)> {
    let mut next = source.clone();
    next.version = source.version.saturating_add(1);
    next.issued_at = Timestamp::now();
    next.expires_at = next.issued_at.plus(valid_for);
    let signed = next.sign(root).context("cannot sign the roster")?;
    Ok((signed, next))
}

/// Verifies a signed roster file against a root key.
///
/// # Errors
///
/// With the file name and the reason verification failed.
pub fn verify_file(path: &Path, root: &SigningPublic, min_version: u64) -> Result<Roster> {
    let bytes = read_bounded(path)?;
    let policy = Policy {
        now: Timestamp::now(),
        min_version,
    };
    roster::verify(&bytes, root, policy).with_context(|| format!("{}: refused", path.display()))
}

/// Parses a root key given as a key string or as the path of a key file.
///
/// # Errors
///
/// When it is neither.
pub fn root_public(text_or_path: &str) -> Result<SigningPublic> {
    match SigningPublic::parse(KeyKind::Root, text_or_path) {
        Ok(key) => Ok(key),
        Err(parse_err) if Path::new(text_or_path).is_file() => {
            let key = crate::keyio::load_key(Path::new(text_or_path), crate::prompt::passphrase)
                .with_context(|| format!("{text_or_path} is neither a root key string nor a root key file ({parse_err})"))?;
            let key = key
                .into_signing(KeyKind::Root)
                .with_context(|| text_or_path.to_string())?;
            Ok(key.public())
        }
        Err(e) => Err(e).with_context(|| format!("not a root key: {text_or_path}")),
    }
}
