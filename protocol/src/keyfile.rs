//! The text format of a secret key file.
//!
//! A key file is a few `name: value` lines, readable in a pager and diffable, that carry
//! the role, the public key string and the seed:
//!
//! ```text
//! # breakglass secret key: keep it offline and never paste it anywhere.
//! breakglass-key: v1
//! kind: member
//! public: bgmember1…
//! seed: <32 bytes, base64>
//! ```
//!
//! With a passphrase the `seed` line is replaced by the seed sealed with
//! XChaCha20-Poly1305 under a key stretched from the passphrase with Argon2id (RFC 9106),
//! and the `kind` and `public` lines are bound in as associated data so they cannot be
//! swapped:
//!
//! ```text
//! encryption: argon2id-xchacha20poly1305
//! argon2: m=65536,t=3,p=1
//! salt: <16 bytes, base64>
//! nonce: <24 bytes, base64>
//! sealed-seed: <48 bytes, base64>
//! ```
//!
//! Loading re-derives the public key from the seed and refuses the file when it differs
//! from the `public` line, so a file edited by hand or half-restored is caught at once.
//! This module only turns text into keys and back; the file system side (0600, exclusive
//! create, permission checks) lives with the binaries.

use std::collections::BTreeMap;

use argon2::{Algorithm, Argon2, Params, Version};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use crate::keys::{KeyKind, MemberSecret, Seed, SigningSecret, KEY_LEN};

/// Key files larger than this are refused unread.
pub const MAX_KEY_FILE: usize = 4096;

const MAGIC: &str = "v1";
const SCHEME: &str = "argon2id-xchacha20poly1305";
const HEADER: &str = "# breakglass secret key: keep it offline and never paste it anywhere.\n";

/// Argon2id cost used for new files: 64 MiB, 3 passes, one lane.
const ARGON2_M_KIB: u32 = 65536;
const ARGON2_T: u32 = 3;
const ARGON2_P: u32 = 1;
/// Upper bounds on the cost a file may ask for, so a hostile file cannot exhaust memory.
const ARGON2_MAX_M_KIB: u32 = 1 << 21;
const ARGON2_MAX_T: u32 = 64;

/// Why a key file was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file is larger than any key file.
    #[error("file is too large to be a key file ({0} bytes)")]
    TooLarge(usize),
    /// A line is not of the form `name: value`.
    #[error("line {0} is not of the form `name: value`")]
    Malformed(usize),
    /// A field appears twice.
    #[error("line {0}: field `{1}` appears twice")]
    Duplicate(usize, String),
    /// A field this format does not have.
    #[error("line {0}: unknown field `{1}`")]
    UnknownField(usize, String),
    /// A required field is missing.
    #[error("missing field `{0}`: this is not a complete breakglass key file")]
    Missing(&'static str),
    /// The format version is not one this build reads.
    #[error("unsupported key file version {0:?}")]
    Version(String),
    /// The `kind` field names no role.
    #[error("unknown key kind {0:?}")]
    Kind(String),
    /// The file holds another role than the one required.
    #[error("this is a {found} key, but a {expected} key is needed here")]
    WrongKind {
        /// The role required.
        expected: KeyKind,
        /// The role in the file.
        found: KeyKind,
    },
    /// A base64 field does not decode to the expected length.
    #[error("field `{0}` is not valid base64 of the expected length")]
    Encoding(&'static str),
    /// The seed gives another public key than the `public` line.
    #[error("the seed does not match the public key written in the file (edited or corrupted)")]
    PublicMismatch,
    /// The key is encrypted and no passphrase was given.
    #[error("the key is protected by a passphrase")]
    NeedsPassphrase,
    /// The passphrase is wrong or the sealed seed was altered.
    #[error("wrong passphrase, or the encrypted seed was altered")]
    WrongPassphrase,
    /// The Argon2 parameters are malformed or beyond the allowed cost.
    #[error("unsupported or excessive argon2 parameters {0:?}")]
    Argon2Params(String),
}

/// A secret key read from a key file.
#[derive(Debug)]
pub enum SecretKey {
    /// The roster-signing root key.
    Root(SigningSecret),
    /// A relay's identity key.
    Relay(SigningSecret),
    /// A member's key pair.
    Member(MemberSecret),
}

impl SecretKey {
    /// Derives the key of `kind` from `seed`.
    pub fn from_seed(kind: KeyKind, seed: Seed) -> Self {
        match kind {
            KeyKind::Root => SecretKey::Root(SigningSecret::from_seed(kind, seed)),
            KeyKind::Relay => SecretKey::Relay(SigningSecret::from_seed(kind, seed)),
            KeyKind::Member => SecretKey::Member(MemberSecret::from_seed(seed)),
        }
    }

    /// A fresh key of `kind`.
    pub fn generate(kind: KeyKind) -> Self {
        Self::from_seed(kind, Seed::generate())
    }

    /// The role of the key.
    pub fn kind(&self) -> KeyKind {
        match self {
            SecretKey::Root(_) => KeyKind::Root,
            SecretKey::Relay(_) => KeyKind::Relay,
            SecretKey::Member(_) => KeyKind::Member,
        }
    }

    /// The seed, for paper backups.
    pub fn seed(&self) -> &Seed {
        match self {
            SecretKey::Root(k) | SecretKey::Relay(k) => k.seed(),
            SecretKey::Member(k) => k.seed(),
        }
    }

    /// The public key string.
    pub fn public_string(&self) -> String {
        match self {
            SecretKey::Root(k) | SecretKey::Relay(k) => k.public().to_string(),
            SecretKey::Member(k) => k.public().to_string(),
        }
    }

    /// The public key's fingerprint.
    pub fn fingerprint(&self) -> String {
        match self {
            SecretKey::Root(k) | SecretKey::Relay(k) => k.public().fingerprint(),
            SecretKey::Member(k) => k.public().fingerprint(),
        }
    }

    /// The key as a root or relay key of `expected` kind.
    ///
    /// # Errors
    ///
    /// [`KeyFileError::WrongKind`] when the key plays another role.
    pub fn into_signing(self, expected: KeyKind) -> Result<SigningSecret, KeyFileError> {
        match self {
            SecretKey::Root(k) | SecretKey::Relay(k) if k.kind() == expected => Ok(k),
            other => Err(KeyFileError::WrongKind {
                expected,
                found: other.kind(),
            }),
        }
    }

    /// The key as a member key.
    ///
    /// # Errors
    ///
    /// [`KeyFileError::WrongKind`] when the key plays another role.
    pub fn into_member(self) -> Result<MemberSecret, KeyFileError> {
        match self {
            SecretKey::Member(k) => Ok(k),
            other => Err(KeyFileError::WrongKind {
                expected: KeyKind::Member,
                found: other.kind(),
            }),
        }
    }
}

/// Writes `key` as key-file text, sealing the seed when a passphrase is given.
pub fn encode(key: &SecretKey, passphrase: Option<&[u8]>) -> String {
    let kind = key.kind().as_str();
    let public = key.public_string();
    let mut out = format!("{HEADER}breakglass-key: {MAGIC}\nkind: {kind}\npublic: {public}\n");
    match passphrase {
        None => {
            out.push_str(&format!("seed: {}\n", B64.encode(key.seed().expose())));
        }
        Some(pass) => {
            let mut salt = [0u8; 16];
            let mut nonce = [0u8; 24];
            OsRng.fill_bytes(&mut salt);
            OsRng.fill_bytes(&mut nonce);
            let params = (ARGON2_M_KIB, ARGON2_T, ARGON2_P);
            let sealed = seal(key.seed(), pass, &salt, &nonce, params, &aad(kind, &public));
            out.push_str(&format!(
                "encryption: {SCHEME}\nargon2: m={ARGON2_M_KIB},t={ARGON2_T},p={ARGON2_P}\n\
                 salt: {}\nnonce: {}\nsealed-seed: {}\n",
                B64.encode(salt),
                B64.encode(nonce),
                B64.encode(sealed)
            ));
        }
    }
    out
}

/// Whether key-file text is passphrase-protected (so the caller knows to prompt).
pub fn is_encrypted(text: &str) -> bool {
    text.lines()
        .any(|l| l.trim_start().starts_with("encryption:"))
}

/// Reads key-file text; `passphrase` is used only when the file is encrypted.
///
/// # Errors
///
/// A [`KeyFileError`] naming the line or field at fault.
pub fn decode(text: &str, passphrase: Option<&[u8]>) -> Result<SecretKey, KeyFileError> {
    if text.len() > MAX_KEY_FILE {
        return Err(KeyFileError::TooLarge(text.len()));
    }
    // Some editors start a UTF-8 file with a byte order mark; it is not part of the key.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let fields = fields(text)?;
    let field = |name: &'static str| fields.get(name).ok_or(KeyFileError::Missing(name));
    let version = field("breakglass-key")?;
    if version != MAGIC {
        return Err(KeyFileError::Version(version.clone()));
    }
    let kind_text = field("kind")?;
    let kind = KeyKind::parse(kind_text).ok_or_else(|| KeyFileError::Kind(kind_text.clone()))?;
    let public = field("public")?;
    let seed = match fields.get("encryption") {
        None => Seed::from_bytes(b64_exact::<KEY_LEN>(field("seed")?, "seed")?),
        Some(scheme) if scheme == SCHEME => {
            let pass = passphrase.ok_or(KeyFileError::NeedsPassphrase)?;
            unseal(&fields, pass, &aad(kind_text, public))?
        }
        Some(other) => return Err(KeyFileError::Version(other.clone())),
    };
    let key = SecretKey::from_seed(kind, seed);
    if key.public_string() != public.to_lowercase() {
        return Err(KeyFileError::PublicMismatch);
    }
    Ok(key)
}

const FIELDS: [&str; 9] = [
    "breakglass-key",
    "kind",
    "public",
    "seed",
    "encryption",
    "argon2",
    "salt",
    "nonce",
    "sealed-seed",
];

fn fields(text: &str) -> Result<BTreeMap<&'static str, String>, KeyFileError> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = line.split_once(':').ok_or(KeyFileError::Malformed(i + 1))?;
        let name = name.trim();
        let known = FIELDS
            .iter()
            .find(|f| **f == name)
            .ok_or_else(|| KeyFileError::UnknownField(i + 1, name.to_string()))?;
        if out.insert(*known, value.trim().to_string()).is_some() {
            return Err(KeyFileError::Duplicate(i + 1, name.to_string()));
        }
    }
    Ok(out)
}

fn aad(kind: &str, public: &str) -> Vec<u8> {
    format!("breakglass-key v1\n{kind}\n{}", public.to_lowercase()).into_bytes()
}

fn b64_exact<const N: usize>(value: &str, name: &'static str) -> Result<[u8; N], KeyFileError> {
    let bytes = Zeroizing::new(
        B64.decode(value)
            .map_err(|_| KeyFileError::Encoding(name))?,
    );
    bytes
        .as_slice()
        .try_into()
        .map_err(|_| KeyFileError::Encoding(name))
}

fn stretch(
    pass: &[u8],
    salt: &[u8],
    (m, t, p): (u32, u32, u32),
) -> Result<Zeroizing<[u8; 32]>, KeyFileError> {
    let bad = || KeyFileError::Argon2Params(format!("m={m},t={t},p={p}"));
    if m > ARGON2_MAX_M_KIB || t > ARGON2_MAX_T || p != 1 {
        return Err(bad());
    }
    let params = Params::new(m, t, p, Some(32)).map_err(|_| bad())?;
    let mut key = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(pass, salt, key.as_mut())
        .map_err(|_| bad())?;
    Ok(key)
}

fn seal(
    seed: &Seed,
    pass: &[u8],
    salt: &[u8; 16],
    nonce: &[u8; 24],
    params: (u32, u32, u32),
    aad: &[u8],
) -> Vec<u8> {
    let key = stretch(pass, salt, params).expect("the built-in argon2 parameters are valid");
    let cipher = XChaCha20Poly1305::new(key.as_ref().into());
    let payload = Payload {
        msg: seed.expose(),
        aad,
    };
    cipher
        .encrypt(XNonce::from_slice(nonce), payload)
        .expect("sealing 32 bytes cannot exceed the AEAD's length limit")
}

fn unseal(
    fields: &BTreeMap<&'static str, String>,
    pass: &[u8],
    aad: &[u8],
) -> Result<Seed, KeyFileError> {
    let field = |name: &'static str| fields.get(name).ok_or(KeyFileError::Missing(name));
    let params = parse_argon2(field("argon2")?)?;
    let salt = b64_exact::<16>(field("salt")?, "salt")?;
    let nonce = b64_exact::<24>(field("nonce")?, "nonce")?;
    let sealed = b64_exact::<48>(field("sealed-seed")?, "sealed-seed")?;
    let key = stretch(pass, &salt, params)?;
    let cipher = XChaCha20Poly1305::new(key.as_ref().into());
    let payload = Payload { msg: &sealed, aad };
    let plain = Zeroizing::new(
        cipher
            .decrypt(XNonce::from_slice(&nonce), payload)
            .map_err(|_| KeyFileError::WrongPassphrase)?,
    );
    let bytes: [u8; KEY_LEN] = plain
        .as_slice()
        .try_into()
        .map_err(|_| KeyFileError::Encoding("sealed-seed"))?;
    Ok(Seed::from_bytes(bytes))
}

fn parse_argon2(value: &str) -> Result<(u32, u32, u32), KeyFileError> {
    let bad = || KeyFileError::Argon2Params(value.to_string());
    let mut m = None;
    let mut t = None;
    let mut p = None;
    for part in value.split(',') {
        let (name, number) = part.trim().split_once('=').ok_or_else(bad)?;
        let number: u32 = number.parse().map_err(|_| bad())?;
        let slot = match name {
            "m" => &mut m,
            "t" => &mut t,
            "p" => &mut p,
            _ => return Err(bad()),
        };
        *slot = Some(number);
    }
    Ok((m.ok_or_else(bad)?, t.ok_or_else(bad)?, p.ok_or_else(bad)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_key_file_round_trips() {
        let key = SecretKey::generate(KeyKind::Member);
        let text = encode(&key, None);
        assert!(!is_encrypted(&text));
        let back = decode(&text, None).expect("decodes");
        assert_eq!(back.public_string(), key.public_string());
        assert_eq!(back.seed(), key.seed());
    }

    #[test]
    fn a_key_file_starting_with_a_byte_order_mark_decodes() {
        let key = SecretKey::generate(KeyKind::Member);
        let text = format!("\u{feff}{}", encode(&key, None));
        let back = decode(&text, None).expect("decodes");
        assert_eq!(back.public_string(), key.public_string());
    }

    #[test]
    fn an_encrypted_key_file_needs_the_right_passphrase() {
        let key = SecretKey::generate(KeyKind::Root);
        let text = encode(&key, Some(b"correct horse"));
        assert!(is_encrypted(&text));
        assert!(!text.contains(&B64.encode(key.seed().expose())));
        assert!(matches!(
            decode(&text, None),
            Err(KeyFileError::NeedsPassphrase)
        ));
        assert!(matches!(
            decode(&text, Some(b"wrong")),
            Err(KeyFileError::WrongPassphrase)
        ));
        let back = decode(&text, Some(b"correct horse")).expect("decodes");
        assert_eq!(back.public_string(), key.public_string());
    }

    #[test]
    fn swapping_the_public_line_of_an_encrypted_file_is_detected() {
        let key = SecretKey::generate(KeyKind::Member);
        let other = SecretKey::generate(KeyKind::Member);
        let text = encode(&key, Some(b"pw"));
        let swapped = text.replace(&key.public_string(), &other.public_string());
        assert!(matches!(
            decode(&swapped, Some(b"pw")),
            Err(KeyFileError::WrongPassphrase)
        ));
    }

    #[test]
    fn a_public_key_that_does_not_match_the_seed_is_refused() {
        let key = SecretKey::generate(KeyKind::Relay);
        let other = SecretKey::generate(KeyKind::Relay);
        let text = encode(&key, None).replace(&key.public_string(), &other.public_string());
        assert!(matches!(
            decode(&text, None),
            Err(KeyFileError::PublicMismatch)
        ));
    }

    #[test]
    fn malformed_files_name_the_fault() {
        let key = SecretKey::generate(KeyKind::Member);
        let text = encode(&key, None);
        let cases = [
            (
                text.replace("kind: member", "kind: admin"),
                "unknown key kind",
            ),
            (text.replace("seed:", "sed:"), "unknown field `sed`"),
            (
                text.replace("breakglass-key: v1", "breakglass-key: v9"),
                "version",
            ),
            (format!("{text}kind: member\n"), "appears twice"),
            (text.replace("public:", "public"), "line 4"),
            ("hello: world\n".to_string(), "unknown field"),
            (String::new(), "missing field `breakglass-key`"),
            ("x".repeat(MAX_KEY_FILE + 1), "too large"),
        ];
        for (input, expected) in cases {
            let err = decode(&input, None).expect_err("must be refused");
            assert!(err.to_string().contains(expected), "{err} vs {expected}");
        }
        let seedless = text
            .lines()
            .filter(|l| !l.starts_with("seed"))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(matches!(
            decode(&seedless, None),
            Err(KeyFileError::Missing("seed"))
        ));
    }

    #[test]
    fn excessive_argon2_cost_is_refused_before_any_work() {
        let key = SecretKey::generate(KeyKind::Member);
        let text = encode(&key, Some(b"pw")).replace("m=65536", "m=4000000000");
        assert!(matches!(
            decode(&text, Some(b"pw")),
            Err(KeyFileError::Argon2Params(_))
        ));
    }

    #[test]
    fn a_root_file_is_not_taken_as_a_member_key() {
        let key = SecretKey::generate(KeyKind::Root);
        let back = decode(&encode(&key, None), None).expect("decodes");
        assert!(matches!(
            back.into_member(),
            Err(KeyFileError::WrongKind {
                expected: KeyKind::Member,
                found: KeyKind::Root
            })
        ));
    }
}
