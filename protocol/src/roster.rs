//! The roster: who belongs to the trust domain, signed by the offline root key.
//!
//! A roster names the members (name, public keys, role, channels), the relays (name,
//! address, key) and the channels, with a version that only grows and an expiry. Its
//! editable source is TOML; its signed form is this text:
//!
//! ```text
//! breakglass-roster v1
//! signature: <Ed25519 signature, base64>
//! <body: JSON, every byte up to the end of the file>
//! ```
//!
//! The signature covers the first line, a newline and the body, byte for byte, so nothing
//! that verification goes on to trust is outside it; the body is parsed only after the
//! signature has been checked against the root key the verifier pins. Verification then
//! checks the expiry, a minimum version (so an older roster cannot be replayed), and that
//! names and keys are unique and names are safe to use as file names and labels.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::keys::{KeyKind, MemberPublic, SigningPublic, SigningSecret};

/// Signed rosters larger than this are refused unread.
pub const MAX_ROSTER: usize = 1 << 20;
/// The longest member, relay or channel name.
pub const MAX_NAME: usize = 64;
/// The longest relay address.
pub const MAX_ADDRESS: usize = 255;

const MAGIC: &str = "breakglass-roster v1";

/// Why a roster was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RosterError {
    /// The signed roster is larger than any roster.
    #[error("roster is too large ({0} bytes, limit {MAX_ROSTER})")]
    TooLarge(usize),
    /// The text does not start like a signed roster.
    #[error("not a signed breakglass roster (first line must be `{MAGIC}`)")]
    NotARoster,
    /// The roster's lines end in CRLF: an editor or a transfer tool converted it, and the
    /// signature covers the exact bytes as signed.
    #[error(
        "the roster has CRLF line endings: the file was converted by an editor or a \
         transfer tool; copy it in binary mode"
    )]
    CrlfLineEndings,
    /// The signature line is missing or not base64 of 64 bytes.
    #[error("the roster's signature line is missing or malformed")]
    SignatureLine,
    /// The signature does not verify against the pinned root key.
    #[error(
        "roster signature does not verify against root key {0}: \
         it was altered or signed by another root"
    )]
    BadSignature(String),
    /// The body is not a roster document.
    #[error("roster body is malformed: {0}")]
    Body(String),
    /// The roster's expiry has passed.
    #[error("roster expired at {0}; sign a new one with the root key")]
    Expired(String),
    /// The roster's version is below the lowest one acceptable.
    #[error("roster version {found} is below the minimum version {minimum} (rollback refused)")]
    Rollback {
        /// The version of the roster offered.
        found: u64,
        /// The lowest version acceptable.
        minimum: u64,
    },
    /// A name uses characters outside the safe set.
    #[error(
        "invalid name {0:?}: use 1 to 64 of a-z, 0-9, '.', '_' or '-', starting with a letter or digit"
    )]
    BadName(String),
    /// Two entries share a name.
    #[error("duplicate name {0:?}")]
    DuplicateName(String),
    /// Two entries share a key.
    #[error("{0:?} uses a key that another entry already uses")]
    DuplicateKey(String),
    /// A member lists a channel the roster does not define.
    #[error("member {member:?} lists unknown channel #{channel}")]
    UnknownChannel {
        /// The member.
        member: String,
        /// The channel it lists.
        channel: String,
    },
    /// A relay address is not `IP:port` or `host:port` with a port from 1 to 65535, or
    /// names an unspecified IP (`0.0.0.0`, `::`) no client can reach.
    #[error(
        "relay {relay:?}: invalid address {address:?}: expected IP:port or host:port, \
         e.g. 203.0.113.7:7443"
    )]
    BadAddress {
        /// The relay's name.
        relay: String,
        /// The address as written.
        address: String,
    },
    /// The roster's dates or version make no sense.
    #[error("{0}")]
    Invalid(String),
}

/// A name of a member, relay or channel: 1 to 64 of `a-z 0-9 . _ -`, starting with a
/// letter or digit, so it is safe as a file name, a label and a log field.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

impl Name {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Name {
    type Err = RosterError;

    fn from_str(s: &str) -> Result<Self, RosterError> {
        let safe = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c);
        let first_ok = s
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if s.len() > MAX_NAME || !first_ok || !s.chars().all(safe) {
            return Err(RosterError::BadName(s.chars().take(80).collect()));
        }
        Ok(Name(s.to_string()))
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A point in time, written as RFC 3339 UTC text, held as seconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Timestamp(secs)
    }

    /// This time plus `d`.
    pub fn plus(self, d: Duration) -> Self {
        Timestamp(self.0.saturating_add(d.as_secs()))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = UNIX_EPOCH + Duration::from_secs(self.0);
        write!(f, "{}", humantime::format_rfc3339_seconds(t))
    }
}

impl FromStr for Timestamp {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = humantime::parse_rfc3339(s).map_err(|e| format!("invalid time {s:?}: {e}"))?;
        let secs = t.duration_since(UNIX_EPOCH).map_err(|e| e.to_string())?;
        Ok(Timestamp(secs.as_secs()))
    }
}

/// What a member may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// May push rosters to relays (which still verify the root signature).
    Admin,
    /// A person who sends and receives messages.
    Responder,
    /// A monitoring identity that runs the self-test.
    Probe,
}

/// One member of the trust domain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// The member's unique name.
    #[serde(with = "as_text")]
    pub name: Name,
    /// The member's public keys, as a `bgmember1…` string.
    #[serde(with = "as_text")]
    pub key: MemberPublic,
    /// What the member may do.
    pub role: Role,
    /// The channels the member belongs to, without the leading `#`.
    #[serde(default, with = "names")]
    pub channels: Vec<Name>,
}

/// A relay of the trust domain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Relay {
    /// The relay's unique name.
    #[serde(with = "as_text")]
    pub name: Name,
    /// Where clients reach it: `IP:port` (no DNS) or `host:port`.
    pub address: String,
    /// The relay's key, as a `bgrelay1…` string.
    #[serde(with = "relay_key")]
    pub key: SigningPublic,
}

/// A channel: a named group of members.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Channel {
    /// The channel's name, without the leading `#`.
    #[serde(with = "as_text")]
    pub name: Name,
    /// What the channel is for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// The roster document, as edited in TOML and as carried in the signed body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Roster {
    /// Grows with every signed roster; relays and clients refuse a lower one.
    pub version: u64,
    /// When the roster was signed.
    #[serde(with = "as_text")]
    pub issued_at: Timestamp,
    /// After this the roster is refused and must be re-signed.
    #[serde(with = "as_text")]
    pub expires_at: Timestamp,
    /// The channels.
    #[serde(default)]
    pub channels: Vec<Channel>,
    /// The members.
    #[serde(default)]
    pub members: Vec<Member>,
    /// The relays.
    #[serde(default)]
    pub relays: Vec<Relay>,
}

/// What a verifier requires of a roster besides a valid signature.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// The time to check the expiry against.
    pub now: Timestamp,
    /// The lowest version acceptable (the highest already seen).
    pub min_version: u64,
}

impl Roster {
    /// An empty roster, version 1, valid from `now` for `valid_for`.
    pub fn new(now: Timestamp, valid_for: Duration) -> Self {
        Roster {
            version: 1,
            issued_at: now,
            expires_at: now.plus(valid_for),
            channels: Vec::new(),
            members: Vec::new(),
            relays: Vec::new(),
        }
    }

    /// Checks the rules every roster must follow, signed or not.
    ///
    /// # Errors
    ///
    /// The first [`RosterError`] found: duplicate names or keys, unknown channels, bad
    /// addresses, or an expiry not after the issue time.
    pub fn validate(&self) -> Result<(), RosterError> {
        if self.version == 0 {
            return Err(RosterError::Invalid(
                "roster version must be at least 1".into(),
            ));
        }
        if self.expires_at <= self.issued_at {
            return Err(RosterError::Invalid(format!(
                "roster expires ({}) before it is issued ({})",
                self.expires_at, self.issued_at
            )));
        }
        self.check_unique_names()?;
        self.check_unique_keys()?;
        self.check_channels()?;
        self.relays.iter().try_for_each(check_address)
    }

    fn check_unique_names(&self) -> Result<(), RosterError> {
        let mut seen = HashSet::new();
        let entries = self.members.iter().map(|m| &m.name);
        for name in entries.chain(self.relays.iter().map(|r| &r.name)) {
            if !seen.insert(name) {
                return Err(RosterError::DuplicateName(name.to_string()));
            }
        }
        let mut channels = HashSet::new();
        for channel in &self.channels {
            if !channels.insert(&channel.name) {
                return Err(RosterError::DuplicateName(format!("#{}", channel.name)));
            }
        }
        Ok(())
    }

    fn check_unique_keys(&self) -> Result<(), RosterError> {
        let mut seen = HashSet::new();
        for m in &self.members {
            let public = m.key;
            let fresh = seen.insert(*public.verifying_key().as_bytes())
                && seen.insert(*public.x25519().as_bytes());
            if !fresh {
                return Err(RosterError::DuplicateKey(m.name.to_string()));
            }
        }
        for r in &self.relays {
            if !seen.insert(r.key.to_bytes()) {
                return Err(RosterError::DuplicateKey(r.name.to_string()));
            }
        }
        Ok(())
    }

    fn check_channels(&self) -> Result<(), RosterError> {
        for m in &self.members {
            if let Some(c) = m
                .channels
                .iter()
                .find(|c| self.channel(c.as_str()).is_none())
            {
                return Err(RosterError::UnknownChannel {
                    member: m.name.to_string(),
                    channel: c.to_string(),
                });
            }
        }
        Ok(())
    }

    /// The member called `name`.
    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name.as_str() == name)
    }

    /// The member whose Ed25519 key is `key`.
    pub fn member_by_key(&self, key: &VerifyingKey) -> Option<&Member> {
        self.members.iter().find(|m| m.key.verifying_key() == key)
    }

    /// The channel called `name` (without `#`).
    pub fn channel(&self, name: &str) -> Option<&Channel> {
        self.channels.iter().find(|c| c.name.as_str() == name)
    }

    /// The members of channel `name`.
    pub fn channel_members<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Member> {
        self.members
            .iter()
            .filter(move |m| m.channels.iter().any(|c| c.as_str() == name))
    }

    /// Validates the roster and signs it with the root key, giving the signed form.
    ///
    /// # Errors
    ///
    /// The [`RosterError`] from [`Roster::validate`], or `Invalid` for a non-root key.
    pub fn sign(&self, root: &SigningSecret) -> Result<Vec<u8>, RosterError> {
        if root.kind() != KeyKind::Root {
            return Err(RosterError::Invalid(
                "rosters are signed by the root key".into(),
            ));
        }
        self.validate()?;
        let mut body = serde_json::to_vec_pretty(self)
            .map_err(|e| RosterError::Body(format!("cannot serialise: {e}")))?;
        body.push(b'\n');
        let signature = root.sign(&signed_bytes(&body));
        let mut out =
            format!("{MAGIC}\nsignature: {}\n", B64.encode(signature.to_bytes())).into_bytes();
        out.extend_from_slice(&body);
        Ok(out)
    }
}

/// The bytes the root signs: the first line, a newline and the body.
fn signed_bytes(body: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(MAGIC.len() + 1 + body.len());
    msg.extend_from_slice(MAGIC.as_bytes());
    msg.push(b'\n');
    msg.extend_from_slice(body);
    msg
}

/// Splits a signed roster into its signature and body without trusting either.
fn split_signed(signed: &[u8]) -> Result<(Signature, &[u8]), RosterError> {
    if signed.len() > MAX_ROSTER {
        return Err(RosterError::TooLarge(signed.len()));
    }
    let after_magic = signed.strip_prefix(MAGIC.as_bytes());
    if after_magic.is_some_and(|r| r.starts_with(b"\r\n")) {
        return Err(RosterError::CrlfLineEndings);
    }
    let rest = after_magic
        .and_then(|r| r.strip_prefix(b"\n"))
        .ok_or(RosterError::NotARoster)?;
    let end = rest
        .iter()
        .position(|b| *b == b'\n')
        .ok_or(RosterError::SignatureLine)?;
    let (line, body) = (&rest[..end], &rest[end + 1..]);
    let encoded = line
        .strip_prefix(b"signature: ")
        .ok_or(RosterError::SignatureLine)?;
    let raw = B64
        .decode(encoded)
        .map_err(|_| RosterError::SignatureLine)?;
    let raw: [u8; 64] = raw.try_into().map_err(|_| RosterError::SignatureLine)?;
    Ok((Signature::from_bytes(&raw), body))
}

fn parse_body(body: &[u8]) -> Result<Roster, RosterError> {
    let roster: Roster =
        serde_json::from_slice(body).map_err(|e| RosterError::Body(e.to_string()))?;
    roster.validate()?;
    Ok(roster)
}

/// Verifies a signed roster against the pinned root key and `policy`.
///
/// # Errors
///
/// A [`RosterError`] saying which check failed.
pub fn verify(signed: &[u8], root: &SigningPublic, policy: Policy) -> Result<Roster, RosterError> {
    let (signature, body) = split_signed(signed)?;
    if root.kind() != KeyKind::Root {
        return Err(RosterError::Invalid(
            "rosters are verified with the root key".into(),
        ));
    }
    root.verify(&signed_bytes(body), &signature)
        .map_err(|_| RosterError::BadSignature(root.fingerprint()))?;
    let roster = parse_body(body)?;
    if roster.expires_at <= policy.now {
        return Err(RosterError::Expired(roster.expires_at.to_string()));
    }
    if roster.version < policy.min_version {
        return Err(RosterError::Rollback {
            found: roster.version,
            minimum: policy.min_version,
        });
    }
    Ok(roster)
}

/// Reads a signed roster's body WITHOUT checking its signature, for display only.
///
/// # Errors
///
/// A [`RosterError`] when the text is not a well-formed signed roster.
pub fn inspect_unverified(signed: &[u8]) -> Result<Roster, RosterError> {
    let (_, body) = split_signed(signed)?;
    parse_body(body)
}

/// The SHA-256 of a signed roster, as lowercase hex, for reading aloud and pin cards.
pub fn digest(signed: &[u8]) -> String {
    Sha256::digest(signed)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn check_address(relay: &Relay) -> Result<(), RosterError> {
    if valid_address(&relay.address) {
        return Ok(());
    }
    Err(RosterError::BadAddress {
        relay: relay.name.to_string(),
        address: relay.address.clone(),
    })
}

/// Whether `a` is `IP:port` (IPv6 in brackets) or `host:port`, with a port from 1 to
/// 65535 and an IP a client can reach (not `0.0.0.0` or `::`).
fn valid_address(a: &str) -> bool {
    if a.is_empty() || a.len() > MAX_ADDRESS {
        return false;
    }
    if let Ok(addr) = a.parse::<std::net::SocketAddr>() {
        return addr.port() != 0 && !addr.ip().is_unspecified();
    }
    let Some((host, port)) = a.rsplit_once(':') else {
        return false;
    };
    let port_ok = port.parse::<u16>().is_ok_and(|p| p != 0) && !port.starts_with('+');
    port_ok && valid_host(host)
}

/// A DNS name: dot-separated labels of letters, digits and `-`, not starting or ending
/// with `-`. An IP literal that did not parse with its port above is refused here too.
fn valid_host(host: &str) -> bool {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    let is_ip_like = host.parse::<std::net::IpAddr>().is_ok()
        || host.chars().all(|c| c.is_ascii_digit() || c == '.');
    !host.is_empty() && !is_ip_like && host.split('.').all(label_ok)
}

/// Serde through `Display` and `FromStr`.
mod as_text {
    use super::*;

    pub fn serialize<T: fmt::Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: fmt::Display,
        D: Deserializer<'de>,
    {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

mod names {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[Name], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|n| n.as_str()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Name>, D::Error> {
        let texts = Vec::<String>::deserialize(d)?;
        texts
            .iter()
            .map(|t| t.trim_start_matches('#').parse())
            .collect::<Result<_, _>>()
            .map_err(serde::de::Error::custom)
    }
}

mod relay_key {
    use super::*;

    pub fn serialize<S: Serializer>(v: &SigningPublic, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SigningPublic, D::Error> {
        let text = String::deserialize(d)?;
        SigningPublic::parse(KeyKind::Relay, &text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
