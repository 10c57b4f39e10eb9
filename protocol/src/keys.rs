//! Key types of the trust domain and how they are derived from a seed.
//!
//! Every key breakglass holds is one 32-byte [`Seed`] from the operating system's random
//! source; that seed is what the paper backup carries. The Ed25519 and X25519 keys are
//! derived from it with HKDF-SHA256 (RFC 5869) under distinct labels, so one seed restores
//! every key of its holder and no two roles ever share key material:
//!
//! | kind   | derived keys                     | HKDF info                          |
//! |--------|----------------------------------|------------------------------------|
//! | root   | Ed25519 (signs rosters)          | `breakglass/v1 root ed25519`       |
//! | relay  | Ed25519 (TLS identity)           | `breakglass/v1 relay ed25519`      |
//! | member | Ed25519 (signs envelopes, TLS)   | `breakglass/v1 member ed25519`     |
//! | member | X25519 (receives wrapped keys)   | `breakglass/v1 member x25519`      |
//!
//! Signatures are always checked with `verify_strict`, which refuses non-canonical
//! scalars and small-order points. X25519 public keys of small order are refused when
//! parsed, since a shared secret with them carries no contribution from our side.

use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hkdf::Hkdf;
use rand_core::{OsRng, RngCore};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use x25519_dalek::{PublicKey as X25519Public, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::KeyError;

/// Length in bytes of every seed and of every public key half.
pub const KEY_LEN: usize = 32;

/// HKDF salt shared by all derivations; the info string separates the roles.
const DERIVE_SALT: &[u8] = b"breakglass key derivation v1";

/// Which role a key plays in the trust domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// The offline root key that signs rosters.
    Root,
    /// A relay's identity key.
    Relay,
    /// A person's or a probe's key.
    Member,
}

impl KeyKind {
    /// The lowercase name used in key files and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Root => "root",
            KeyKind::Relay => "relay",
            KeyKind::Member => "member",
        }
    }

    /// Parses the name written by [`KeyKind::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "root" => Some(KeyKind::Root),
            "relay" => Some(KeyKind::Relay),
            "member" => Some(KeyKind::Member),
            _ => None,
        }
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The 32-byte master secret of one key holder. Zeroized on drop, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Seed([u8; KEY_LEN]);

impl Seed {
    /// A fresh seed from the operating system's random source.
    pub fn generate() -> Self {
        let mut bytes = [0u8; KEY_LEN];
        OsRng.fill_bytes(&mut bytes);
        Seed(bytes)
    }

    /// Wraps bytes that came from a key file or a paper backup.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Seed(bytes)
    }

    /// The raw seed, for writing it to a key file or to paper.
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    fn derive(&self, info: &str) -> Zeroizing<[u8; KEY_LEN]> {
        let hk = Hkdf::<Sha256>::new(Some(DERIVE_SALT), &self.0);
        let mut out = Zeroizing::new([0u8; KEY_LEN]);
        hk.expand(info.as_bytes(), out.as_mut())
            .expect("32 bytes is far below HKDF-SHA256's output limit");
        out
    }

    fn ed25519(&self, kind: KeyKind) -> SigningKey {
        let label = format!("breakglass/v1 {} ed25519", kind.as_str());
        SigningKey::from_bytes(&self.derive(&label))
    }

    fn x25519(&self) -> StaticSecret {
        StaticSecret::from(*self.derive("breakglass/v1 member x25519"))
    }
}

impl PartialEq for Seed {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for Seed {}

impl fmt::Debug for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Seed(<redacted>)")
    }
}

/// A root or relay secret key: one Ed25519 signing key derived from a seed.
pub struct SigningSecret {
    kind: KeyKind,
    seed: Seed,
    signing: SigningKey,
}

impl SigningSecret {
    /// Derives the signing key of `kind` from `seed`.
    ///
    /// # Panics
    ///
    /// Never for `Root` and `Relay`; `Member` keys are [`MemberSecret`]s and are refused here
    /// by a debug assertion because their public form differs.
    pub fn from_seed(kind: KeyKind, seed: Seed) -> Self {
        debug_assert!(kind != KeyKind::Member, "member keys are MemberSecret");
        let signing = seed.ed25519(kind);
        SigningSecret {
            kind,
            seed,
            signing,
        }
    }

    /// A fresh key of `kind`.
    pub fn generate(kind: KeyKind) -> Self {
        Self::from_seed(kind, Seed::generate())
    }

    /// Which role this key plays.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The seed the key was derived from (for key files and paper).
    pub fn seed(&self) -> &Seed {
        &self.seed
    }

    /// The Ed25519 signing key.
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// The public half.
    pub fn public(&self) -> SigningPublic {
        SigningPublic {
            kind: self.kind,
            key: self.signing.verifying_key(),
        }
    }

    /// Signs `msg`.
    pub fn sign(&self, msg: &[u8]) -> Signature {
        self.signing.sign(msg)
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningSecret({}, {})", self.kind, self.public())
    }
}

/// The public half of a root or relay key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SigningPublic {
    kind: KeyKind,
    key: VerifyingKey,
}

impl SigningPublic {
    /// Wraps a verifying key of the given kind, refusing weak (small-order) keys.
    ///
    /// # Errors
    ///
    /// [`KeyError::WeakKey`] when the point has small order.
    pub fn new(kind: KeyKind, key: VerifyingKey) -> Result<Self, KeyError> {
        if key.is_weak() {
            return Err(KeyError::WeakKey);
        }
        Ok(SigningPublic { kind, key })
    }

    /// Parses 32 raw bytes as a key of `kind`.
    ///
    /// # Errors
    ///
    /// [`KeyError::InvalidPoint`] or [`KeyError::WeakKey`].
    pub fn from_bytes(kind: KeyKind, bytes: &[u8; KEY_LEN]) -> Result<Self, KeyError> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| KeyError::InvalidPoint)?;
        Self::new(kind, key)
    }

    /// Which role this key plays.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The Ed25519 verifying key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// The raw 32 bytes.
    pub fn to_bytes(&self) -> [u8; KEY_LEN] {
        self.key.to_bytes()
    }

    /// Verifies `sig` over `msg` strictly (canonical S, no small-order R or A).
    ///
    /// # Errors
    ///
    /// [`KeyError::BadSignature`] when the signature does not verify.
    pub fn verify(&self, msg: &[u8], sig: &Signature) -> Result<(), KeyError> {
        self.key
            .verify_strict(msg, sig)
            .map_err(|_| KeyError::BadSignature)
    }
}

/// A member's secret: the seed and both keys derived from it.
pub struct MemberSecret {
    seed: Seed,
    signing: SigningKey,
    x25519: StaticSecret,
}

impl MemberSecret {
    /// Derives both member keys from `seed`.
    pub fn from_seed(seed: Seed) -> Self {
        let signing = seed.ed25519(KeyKind::Member);
        let x25519 = seed.x25519();
        MemberSecret {
            seed,
            signing,
            x25519,
        }
    }

    /// A fresh member key.
    pub fn generate() -> Self {
        Self::from_seed(Seed::generate())
    }

    /// The seed both keys were derived from.
    pub fn seed(&self) -> &Seed {
        &self.seed
    }

    /// The Ed25519 signing key (envelopes and the TLS client certificate).
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// The X25519 secret that unwraps message keys.
    pub fn x25519_secret(&self) -> &StaticSecret {
        &self.x25519
    }

    /// The public halves.
    pub fn public(&self) -> MemberPublic {
        MemberPublic {
            sign: self.signing.verifying_key(),
            kem: X25519Public::from(&self.x25519),
        }
    }

    /// Signs `msg` with the member's Ed25519 key.
    pub fn sign(&self, msg: &[u8]) -> Signature {
        self.signing.sign(msg)
    }
}

impl fmt::Debug for MemberSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MemberSecret({})", self.public())
    }
}

/// A member's public keys: Ed25519 for signatures, X25519 for receiving message keys.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MemberPublic {
    sign: VerifyingKey,
    kem: X25519Public,
}

impl MemberPublic {
    /// Parses the 64-byte public form: Ed25519 key, then X25519 key.
    ///
    /// # Errors
    ///
    /// [`KeyError::InvalidPoint`], [`KeyError::WeakKey`] or [`KeyError::SmallOrderX25519`].
    pub fn from_bytes(bytes: &[u8; 2 * KEY_LEN]) -> Result<Self, KeyError> {
        let (sign_bytes, kem_bytes) = bytes.split_at(KEY_LEN);
        let sign_bytes: [u8; KEY_LEN] = sign_bytes.try_into().map_err(|_| KeyError::Length)?;
        let kem_bytes: [u8; KEY_LEN] = kem_bytes.try_into().map_err(|_| KeyError::Length)?;
        let sign = VerifyingKey::from_bytes(&sign_bytes).map_err(|_| KeyError::InvalidPoint)?;
        if sign.is_weak() {
            return Err(KeyError::WeakKey);
        }
        let kem = X25519Public::from(kem_bytes);
        check_x25519_contributory(&kem)?;
        Ok(MemberPublic { sign, kem })
    }

    /// The 64-byte public form.
    pub fn to_bytes(&self) -> [u8; 2 * KEY_LEN] {
        let mut out = [0u8; 2 * KEY_LEN];
        out[..KEY_LEN].copy_from_slice(self.sign.as_bytes());
        out[KEY_LEN..].copy_from_slice(self.kem.as_bytes());
        out
    }

    /// The Ed25519 verifying key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.sign
    }

    /// The X25519 public key.
    pub fn x25519(&self) -> &X25519Public {
        &self.kem
    }

    /// Verifies `sig` over `msg` strictly.
    ///
    /// # Errors
    ///
    /// [`KeyError::BadSignature`] when the signature does not verify.
    pub fn verify(&self, msg: &[u8], sig: &Signature) -> Result<(), KeyError> {
        self.sign
            .verify_strict(msg, sig)
            .map_err(|_| KeyError::BadSignature)
    }
}

impl std::hash::Hash for MemberPublic {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.to_bytes().hash(state);
    }
}

/// Refuses X25519 public keys of small order.
///
/// A clamped X25519 scalar is a multiple of the cofactor, so multiplying any point of small
/// order by it gives the all-zero output; `was_contributory` reports exactly that.
fn check_x25519_contributory(key: &X25519Public) -> Result<(), KeyError> {
    let probe = StaticSecret::from([0x42u8; KEY_LEN]);
    if probe.diffie_hellman(key).was_contributory() {
        Ok(())
    } else {
        Err(KeyError::SmallOrderX25519)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_seed_restores_both_member_keys() {
        let first = MemberSecret::generate();
        let again = MemberSecret::from_seed(first.seed().clone());
        assert_eq!(first.public(), again.public());
    }

    #[test]
    fn member_keys_use_distinct_derivations() {
        let member = MemberSecret::generate();
        let public = member.public();
        assert_ne!(
            public.verifying_key().as_bytes(),
            public.x25519().as_bytes()
        );
        let as_root = SigningSecret::from_seed(KeyKind::Root, member.seed().clone());
        assert_ne!(
            as_root.public().to_bytes(),
            public.verifying_key().to_bytes()
        );
    }

    #[test]
    fn seed_debug_is_redacted() {
        let seed = Seed::from_bytes([7u8; KEY_LEN]);
        let shown = format!("{seed:?}");
        assert!(!shown.contains('7'), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn secret_debug_shows_only_the_public_key() {
        let secret = MemberSecret::from_seed(Seed::from_bytes([9u8; KEY_LEN]));
        let shown = format!("{secret:?}");
        assert!(shown.contains("bgmember1"), "{shown}");
    }

    #[test]
    fn small_order_x25519_keys_are_refused() {
        let member = MemberSecret::generate().public();
        let mut bytes = member.to_bytes();
        // All-zero and the point of order 2 (u = 1... the identity is u = 0).
        for bad in [[0u8; KEY_LEN], one_le()] {
            bytes[KEY_LEN..].copy_from_slice(&bad);
            assert_eq!(
                MemberPublic::from_bytes(&bytes),
                Err(KeyError::SmallOrderX25519)
            );
        }
    }

    fn one_le() -> [u8; KEY_LEN] {
        let mut b = [0u8; KEY_LEN];
        b[0] = 1;
        b
    }

    #[test]
    fn a_signature_with_unreduced_s_is_refused() {
        let root = SigningSecret::generate(KeyKind::Root);
        let msg = b"roster";
        let sig = root.sign(msg);
        let mut bytes = sig.to_bytes();
        // Add the group order L to S: the same point equation holds, but S is not canonical.
        let l: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut carry = 0u16;
        for i in 0..32 {
            let sum = u16::from(bytes[32 + i]) + u16::from(l[i]) + carry;
            bytes[32 + i] = (sum & 0xff) as u8;
            carry = sum >> 8;
        }
        let forged = Signature::from_bytes(&bytes);
        assert!(root.public().verify(msg, &sig).is_ok());
        assert_eq!(
            root.public().verify(msg, &forged),
            Err(KeyError::BadSignature)
        );
    }

    #[test]
    fn a_weak_ed25519_key_is_refused() {
        // The identity point: y = 1.
        let mut identity = [0u8; KEY_LEN];
        identity[0] = 1;
        assert_eq!(
            SigningPublic::from_bytes(KeyKind::Root, &identity),
            Err(KeyError::WeakKey)
        );
    }
}
