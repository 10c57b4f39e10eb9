//! Public keys as text people can copy by hand, and fingerprints they can read aloud.
//!
//! A key string is bech32m (BIP-350): a human-readable prefix naming the key's role, the
//! separator `1`, the key bytes in base32 and a six-character checksum that catches any
//! typo of up to four characters. The prefixes differ per role — `bgroot`, `bgrelay`,
//! `bgmember` — so a relay key pasted where the root key belongs is refused by name, never
//! silently accepted. A member string carries both public keys (Ed25519, then X25519).
//!
//! A fingerprint is the first 80 bits of SHA-256 over the role's prefix and the key bytes,
//! as five groups of four lowercase hex digits: short enough to read over a phone, long
//! enough that nobody can make a second key that matches it.

use std::fmt;
use std::str::FromStr;

use bech32::primitives::decode::CheckedHrpstring;
use bech32::{Bech32m, Hrp};
use sha2::{Digest, Sha256};

use crate::keys::{KeyKind, MemberPublic, SigningPublic, KEY_LEN};
use crate::KeyError;

/// The longest key string accepted, far above the 120 characters of a member key.
pub const MAX_KEY_STRING: usize = 256;

/// The bech32m prefix of each role.
pub fn prefix(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::Root => "bgroot",
        KeyKind::Relay => "bgrelay",
        KeyKind::Member => "bgmember",
    }
}

fn kind_of_prefix(hrp: &str) -> Option<KeyKind> {
    [KeyKind::Root, KeyKind::Relay, KeyKind::Member]
        .into_iter()
        .find(|k| prefix(*k) == hrp)
}

/// Encodes `bytes` as a key string of `kind`.
fn encode(kind: KeyKind, bytes: &[u8]) -> String {
    let hrp = Hrp::parse(prefix(kind)).expect("the role prefixes are valid bech32 prefixes");
    bech32::encode::<Bech32m>(hrp, bytes).expect("key strings are far below the length limit")
}

/// Decodes a key string that must be of `kind` and carry `N` bytes.
fn decode<const N: usize>(kind: KeyKind, text: &str) -> Result<[u8; N], KeyError> {
    let text = text.trim();
    if text.len() > MAX_KEY_STRING {
        return Err(KeyError::Length);
    }
    let checked = CheckedHrpstring::new::<Bech32m>(text).map_err(|e| classify(text, e))?;
    let hrp = checked.hrp().to_lowercase();
    if hrp != prefix(kind) {
        return Err(match kind_of_prefix(&hrp) {
            Some(found) => KeyError::WrongKind {
                expected: kind,
                found,
            },
            None => KeyError::UnknownPrefix(hrp),
        });
    }
    let bytes: Vec<u8> = checked.byte_iter().collect();
    bytes.try_into().map_err(|_| KeyError::Length)
}

/// Tells a bad checksum from text that is not a key string at all.
fn classify(text: &str, err: bech32::primitives::decode::CheckedHrpstringError) -> KeyError {
    use bech32::primitives::decode::CheckedHrpstringError as E;
    match err {
        E::Checksum(_) if text.contains('1') => KeyError::Checksum,
        _ => KeyError::NotAKeyString,
    }
}

/// The 80-bit fingerprint of a key of `kind`, as `xxxx-xxxx-xxxx-xxxx-xxxx`.
fn fingerprint(kind: KeyKind, bytes: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prefix(kind).as_bytes());
    hasher.update(bytes);
    let digest = hasher.finalize();
    let groups: Vec<String> = digest[..10]
        .chunks(2)
        .map(|pair| pair.iter().map(|b| format!("{b:02x}")).collect())
        .collect();
    groups.join("-")
}

impl SigningPublic {
    /// Parses a root or relay key string of the given kind.
    ///
    /// # Errors
    ///
    /// [`KeyError`] naming the fault: wrong prefix, checksum, length or point.
    pub fn parse(kind: KeyKind, text: &str) -> Result<Self, KeyError> {
        let bytes = decode::<KEY_LEN>(kind, text)?;
        SigningPublic::from_bytes(kind, &bytes)
    }

    /// The short fingerprint for reading aloud.
    pub fn fingerprint(&self) -> String {
        fingerprint(self.kind(), &self.to_bytes())
    }
}

impl fmt::Display for SigningPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&encode(self.kind(), &self.to_bytes()))
    }
}

impl fmt::Debug for SigningPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.kind(), self.fingerprint())
    }
}

impl FromStr for MemberPublic {
    type Err = KeyError;

    fn from_str(text: &str) -> Result<Self, KeyError> {
        let bytes = decode::<{ 2 * KEY_LEN }>(KeyKind::Member, text)?;
        MemberPublic::from_bytes(&bytes)
    }
}

impl MemberPublic {
    /// The short fingerprint for reading aloud.
    pub fn fingerprint(&self) -> String {
        fingerprint(KeyKind::Member, &self.to_bytes())
    }
}

impl fmt::Display for MemberPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&encode(KeyKind::Member, &self.to_bytes()))
    }
}

impl fmt::Debug for MemberPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "member({})", self.fingerprint())
    }
}

/// The fingerprint of a bare Ed25519 key seen on the network, for error messages that
/// compare it with a pinned one.
pub fn fingerprint_of(kind: KeyKind, bytes: &[u8; KEY_LEN]) -> String {
    fingerprint(kind, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{MemberSecret, SigningSecret};

    #[test]
    fn key_strings_round_trip() {
        let root = SigningSecret::generate(KeyKind::Root).public();
        let text = root.to_string();
        assert!(text.starts_with("bgroot1"), "{text}");
        assert_eq!(SigningPublic::parse(KeyKind::Root, &text), Ok(root));

        let member = MemberSecret::generate().public();
        let text = member.to_string();
        assert!(text.starts_with("bgmember1"), "{text}");
        assert_eq!(text.parse::<MemberPublic>(), Ok(member));
    }

    #[test]
    fn upper_case_and_surrounding_space_are_accepted() {
        let relay = SigningSecret::generate(KeyKind::Relay).public();
        let text = format!("  {}\n", relay.to_string().to_uppercase());
        assert_eq!(SigningPublic::parse(KeyKind::Relay, &text), Ok(relay));
    }

    #[test]
    fn a_relay_key_is_refused_where_the_root_key_belongs() {
        let relay = SigningSecret::generate(KeyKind::Relay).public().to_string();
        assert_eq!(
            SigningPublic::parse(KeyKind::Root, &relay),
            Err(KeyError::WrongKind {
                expected: KeyKind::Root,
                found: KeyKind::Relay
            })
        );
    }

    #[test]
    fn one_changed_character_fails_the_checksum() {
        let text = SigningSecret::generate(KeyKind::Root).public().to_string();
        let mut chars: Vec<char> = text.chars().collect();
        let i = chars.len() - 10;
        chars[i] = if chars[i] == 'q' { 'p' } else { 'q' };
        let broken: String = chars.into_iter().collect();
        assert_eq!(
            SigningPublic::parse(KeyKind::Root, &broken),
            Err(KeyError::Checksum)
        );
    }

    #[test]
    fn a_key_of_the_wrong_length_is_refused() {
        let hrp = Hrp::parse("bgroot").expect("valid prefix");
        let short = bech32::encode::<Bech32m>(hrp, &[1u8; 31]).expect("encodes");
        assert_eq!(
            SigningPublic::parse(KeyKind::Root, &short),
            Err(KeyError::Length)
        );
        let member_as_root = MemberSecret::generate().public().to_string();
        assert!(SigningPublic::parse(KeyKind::Root, &member_as_root).is_err());
    }

    #[test]
    fn garbage_and_unknown_prefixes_are_refused() {
        assert_eq!(
            SigningPublic::parse(KeyKind::Root, "hello"),
            Err(KeyError::NotAKeyString)
        );
        let hrp = Hrp::parse("bgother").expect("valid prefix");
        let other = bech32::encode::<Bech32m>(hrp, &[1u8; 32]).expect("encodes");
        assert_eq!(
            SigningPublic::parse(KeyKind::Root, &other),
            Err(KeyError::UnknownPrefix("bgother".into()))
        );
        let long = "bgroot1".to_string() + &"q".repeat(400);
        assert_eq!(
            SigningPublic::parse(KeyKind::Root, &long),
            Err(KeyError::Length)
        );
    }

    #[test]
    fn fingerprints_are_five_groups_and_differ_by_role() {
        let secret = SigningSecret::generate(KeyKind::Root);
        let fp = secret.public().fingerprint();
        assert_eq!(fp.len(), 24, "{fp}");
        assert_eq!(fp.split('-').count(), 5);
        let bytes = secret.public().to_bytes();
        assert_ne!(fp, fingerprint_of(KeyKind::Relay, &bytes));
    }
}
