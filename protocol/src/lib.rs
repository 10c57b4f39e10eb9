//! The breakglass protocol: key types and derivation, key strings, key-file text, the
//! root-signed roster, the end-to-end encrypted envelope and the wire frames.
//!
//! This crate does no I/O and runs no async runtime, so every rule of the trust domain
//! can be tested here without sockets or disks.

pub mod envelope;
pub mod keyfile;
pub mod keys;
pub mod keystring;
pub mod roster;
pub mod status;
pub mod wire;

pub use keys::{KeyKind, MemberPublic, MemberSecret, Seed, SigningPublic, SigningSecret};
pub use roster::{Roster, RosterError};

/// Why a key or key string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The text is not a bech32m key string.
    #[error("not a breakglass key string (expected something like bgmember1…)")]
    NotAKeyString,
    /// The checksum of the key string does not match: a character was mistyped.
    #[error("key string checksum does not match: a character is mistyped or missing")]
    Checksum,
    /// The key string names another role than the one expected here.
    #[error("this is a {found} key, but a {expected} key is needed here")]
    WrongKind {
        /// The role required.
        expected: KeyKind,
        /// The role the string carries.
        found: KeyKind,
    },
    /// The key string's prefix is not one of breakglass's.
    #[error("unknown key prefix {0:?} (expected bgroot, bgrelay or bgmember)")]
    UnknownPrefix(String),
    /// The key has the wrong number of bytes.
    #[error("key has the wrong length")]
    Length,
    /// The bytes are not a point on the curve.
    #[error("key is not a valid Ed25519 point")]
    InvalidPoint,
    /// The Ed25519 key has small order and would accept forged signatures.
    #[error("key is a weak (small-order) Ed25519 point")]
    WeakKey,
    /// The X25519 key has small order: a shared secret with it would be all zero.
    #[error("encryption key is a small-order X25519 point")]
    SmallOrderX25519,
    /// A signature did not verify.
    #[error("signature does not verify")]
    BadSignature,
}
