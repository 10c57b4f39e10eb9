//! The end-to-end encrypted, signed message envelope.
//!
//! Sealing a message (the format is written down in `docs/envelope.md`):
//!
//! 1. A header names a random 16-byte message id, the sender, the destination (a member
//!    or a `#channel`) and the time. Its postcard encoding is the associated data of
//!    everything below, so no part of it can be changed or swapped.
//! 2. A fresh 32-byte content key seals the content with ChaCha20-Poly1305.
//! 3. The content key is wrapped for each recipient's X25519 key with HPKE (RFC 9180,
//!    base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305); the
//!    recipient's name is added to that wrap's associated data.
//! 4. The sender signs the encoded body with Ed25519; the signature covers every byte of
//!    the body as sent, and the body is decoded only after the signature checks out.
//!
//! A recipient shows a message only after checking the signature with the sender's key
//! from the verified roster, that the sender is a member, and, for a channel, that both the
//! sender and the recipient belong to it. The relay can read the header (it needs the
//! sender, the id and the recipients to queue the envelope) but never the content.

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use ed25519_dalek::Signature;
use hpke::aead::ChaCha20Poly1305 as HpkeChaCha;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, OpModeR, OpModeS, Serializable};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::keys::MemberSecret;
use crate::roster::{Member, Roster, Timestamp};

/// Encoded envelopes larger than this are refused unread.
pub const MAX_ENVELOPE: usize = 1 << 20;
/// The most recipients one envelope may carry.
pub const MAX_RECIPIENTS: usize = 1024;

const SIGN_CONTEXT: &[u8] = b"breakglass-envelope v1\n";
const HPKE_INFO: &[u8] = b"breakglass-envelope v1 content key";
const VERSION: u8 = 1;

type Kem = X25519HkdfSha256;

/// Why an envelope could not be sealed or was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The encoded envelope exceeds the size limit.
    #[error("envelope is too large ({0} bytes)")]
    TooLarge(usize),
    /// The bytes are not an envelope of a version this build reads.
    #[error("malformed envelope: {0}")]
    Malformed(String),
    /// The sender is not in the roster.
    #[error("sender {0:?} is not in the roster")]
    UnknownSender(String),
    /// The sender's signature does not verify.
    #[error("signature of {0:?} does not verify: the message was altered or forged")]
    BadSignature(String),
    /// The sender is not a member of the channel it wrote to.
    #[error("{sender:?} is not a member of #{channel}")]
    NotInChannel {
        /// The sender.
        sender: String,
        /// The channel.
        channel: String,
    },
    /// The envelope carries no key for this recipient.
    #[error("message is not addressed to {0:?}")]
    NotForUs(String),
    /// The destination names no member or channel of the roster.
    #[error("unknown recipient {0}")]
    UnknownRecipient(String),
    /// A key could not be wrapped or unwrapped, or the content did not decrypt.
    #[error("decryption failed: the message was altered")]
    Decrypt,
    /// The envelope would have no recipient.
    #[error("nobody to send to: {0}")]
    NoRecipients(String),
}

/// A random 16-byte message id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MessageId(pub [u8; 16]);

impl MessageId {
    /// A fresh random id.
    pub fn random() -> Self {
        let mut id = [0u8; 16];
        OsRng.fill_bytes(&mut id);
        MessageId(id)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({self})")
    }
}

/// Where a message goes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Destination {
    /// One member, by name.
    Direct(String),
    /// Every member of a channel, by name without `#`.
    Channel(String),
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Direct(name) => f.write_str(name),
            Destination::Channel(name) => write!(f, "#{name}"),
        }
    }
}

/// What kind of content a message carries. Canaries are self-test traffic and are never
/// shown to people; the relay cannot tell them apart because the kind is sealed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContentKind {
    /// A message for people.
    Text,
    /// A self-test canary.
    Canary,
}

/// The sealed content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Content {
    /// Text or canary.
    pub kind: ContentKind,
    /// The message text.
    pub text: String,
}

/// The authenticated header, readable by the relay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Envelope format version.
    pub version: u8,
    /// The message id; the relay refuses a second envelope with the same sender and id.
    pub id: MessageId,
    /// The sender's member name.
    pub sender: String,
    /// The destination.
    pub to: Destination,
    /// When the sender sealed it, in milliseconds since the Unix epoch.
    pub sent_at_ms: u64,
}

/// The content key wrapped for one recipient.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    /// The recipient's member name.
    pub recipient: String,
    /// The HPKE encapsulated key.
    pub enc: Vec<u8>,
    /// The sealed content key.
    pub sealed_key: Vec<u8>,
}

/// The signed part of an envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Body {
    /// The header.
    pub header: Header,
    /// One wrapped content key per recipient.
    pub keys: Vec<WrappedKey>,
    /// The nonce of the content encryption.
    pub nonce: [u8; 12],
    /// The sealed content.
    pub ciphertext: Vec<u8>,
}

/// An envelope as it travels: the encoded body and the sender's signature over it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Signed {
    body: Vec<u8>,
    signature: Vec<u8>,
}

/// An envelope decoded but not yet verified: what the relay needs to queue it.
#[derive(Clone, Debug)]
pub struct Unverified {
    body_bytes: Vec<u8>,
    signature: Signature,
    /// The decoded body. Nothing in it is trusted until [`Unverified::verify`] succeeds.
    pub body: Body,
}

/// A message that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened {
    /// The header.
    pub header: Header,
    /// The decrypted content.
    pub content: Content,
}

/// Seals `content` from `sender` to `to`, wrapping the key for every recipient the roster
/// gives for that destination (for a channel, every member but the sender).
///
/// # Errors
///
/// [`EnvelopeError::UnknownRecipient`] or [`EnvelopeError::NoRecipients`].
pub fn seal(
    sender_name: &str,
    sender: &MemberSecret,
    roster: &Roster,
    to: Destination,
    content: &Content,
) -> Result<(MessageId, Vec<u8>), EnvelopeError> {
    let recipients = recipients(roster, sender_name, &to)?;
    let header = Header {
        version: VERSION,
        id: MessageId::random(),
        sender: sender_name.to_string(),
        to,
        sent_at_ms: now_ms(),
    };
    let id = header.id;
    let aad = encode(&header)?;
    let content_key = Zeroizing::new(random_key());
    let mut nonce = [0u8; 12];
    OsRng.fill_bytes(&mut nonce);
    let plain = Zeroizing::new(encode(content)?);
    let ciphertext = ChaCha20Poly1305::new(Key::from_slice(content_key.as_ref()))
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &plain,
                aad: &aad,
            },
        )
        .map_err(|_| EnvelopeError::Decrypt)?;
    let keys = recipients
        .iter()
        .map(|m| wrap(&content_key, m, &aad))
        .collect::<Result<_, _>>()?;
    let body = encode(&Body {
        header,
        keys,
        nonce,
        ciphertext,
    })?;
    let signature = sender.sign(&signed_message(&body)).to_bytes().to_vec();
    Ok((id, encode(&Signed { body, signature })?))
}

/// The members a destination resolves to, without the sender.
fn recipients<'a>(
    roster: &'a Roster,
    sender: &str,
    to: &Destination,
) -> Result<Vec<&'a Member>, EnvelopeError> {
    match to {
        // A member may write to themselves: the self-test's canary does.
        Destination::Direct(name) => Ok(vec![roster
            .member(name)
            .ok_or_else(|| EnvelopeError::UnknownRecipient(name.clone()))?]),
        Destination::Channel(name) => {
            if roster.channel(name).is_none() {
                return Err(EnvelopeError::UnknownRecipient(format!("#{name}")));
            }
            let others: Vec<&Member> = roster
                .members
                .iter()
                .filter(|m| is_in_channel(m, name) && m.name.as_str() != sender)
                .collect();
            if others.is_empty() {
                return Err(EnvelopeError::NoRecipients(format!(
                    "{to} has no other members"
                )));
            }
            Ok(others)
        }
    }
}

fn wrap(key: &[u8; 32], to: &Member, aad: &[u8]) -> Result<WrappedKey, EnvelopeError> {
    let pk = <Kem as hpke::Kem>::PublicKey::from_bytes(to.key.x25519().as_bytes())
        .map_err(|_| EnvelopeError::Decrypt)?;
    let wrap_aad = wrap_aad(aad, to.name.as_str());
    let (enc, sealed_key) = hpke::single_shot_seal::<HpkeChaCha, HkdfSha256, Kem, _>(
        &OpModeS::Base,
        &pk,
        HPKE_INFO,
        key,
        &wrap_aad,
        &mut OsRng,
    )
    .map_err(|_| EnvelopeError::Decrypt)?;
    Ok(WrappedKey {
        recipient: to.name.to_string(),
        enc: enc.to_bytes().to_vec(),
        sealed_key,
    })
}

fn wrap_aad(header: &[u8], recipient: &str) -> Vec<u8> {
    let mut out = header.to_vec();
    out.extend_from_slice(recipient.as_bytes());
    out
}

fn signed_message(body: &[u8]) -> Vec<u8> {
    let mut msg = SIGN_CONTEXT.to_vec();
    msg.extend_from_slice(body);
    msg
}

/// Decodes an envelope without trusting it.
///
/// # Errors
///
/// [`EnvelopeError::TooLarge`] or [`EnvelopeError::Malformed`].
pub fn decode(bytes: &[u8]) -> Result<Unverified, EnvelopeError> {
    if bytes.len() > MAX_ENVELOPE {
        return Err(EnvelopeError::TooLarge(bytes.len()));
    }
    let signed: Signed = postcard::from_bytes(bytes).map_err(malformed)?;
    let raw: [u8; 64] = signed
        .signature
        .as_slice()
        .try_into()
        .map_err(|_| EnvelopeError::Malformed("signature is not 64 bytes".into()))?;
    let body: Body = postcard::from_bytes(&signed.body).map_err(malformed)?;
    if body.header.version != VERSION {
        return Err(EnvelopeError::Malformed(format!(
            "unsupported version {}",
            body.header.version
        )));
    }
    if body.keys.len() > MAX_RECIPIENTS {
        return Err(EnvelopeError::Malformed("too many recipients".into()));
    }
    Ok(Unverified {
        body_bytes: signed.body,
        signature: Signature::from_bytes(&raw),
        body,
    })
}

impl Unverified {
    /// Checks the signature with the sender's key from `roster`, and that the sender may
    /// write to the destination. Does not decrypt; the relay stops here.
    ///
    /// # Errors
    ///
    /// [`EnvelopeError::UnknownSender`], [`EnvelopeError::BadSignature`] or
    /// [`EnvelopeError::NotInChannel`].
    pub fn verify<'r>(&self, roster: &'r Roster) -> Result<&'r Member, EnvelopeError> {
        let sender_name = &self.body.header.sender;
        let sender = roster
            .member(sender_name)
            .ok_or_else(|| EnvelopeError::UnknownSender(sender_name.clone()))?;
        sender
            .key
            .verify(&signed_message(&self.body_bytes), &self.signature)
            .map_err(|_| EnvelopeError::BadSignature(sender_name.clone()))?;
        match &self.body.header.to {
            Destination::Channel(c) if !is_in_channel(sender, c) => {
                Err(EnvelopeError::NotInChannel {
                    sender: sender_name.clone(),
                    channel: c.clone(),
                })
            }
            _ => Ok(sender),
        }
    }

    /// The names the envelope carries keys for.
    pub fn recipients(&self) -> impl Iterator<Item = &str> {
        self.body.keys.iter().map(|k| k.recipient.as_str())
    }

    /// Verifies the envelope, then decrypts it as member `me`.
    ///
    /// # Errors
    ///
    /// Any [`EnvelopeError`]: a message that fails a check is never shown.
    pub fn open(
        &self,
        roster: &Roster,
        me: &str,
        secret: &MemberSecret,
    ) -> Result<Opened, EnvelopeError> {
        self.verify(roster)?;
        let header = &self.body.header;
        let addressed = match &header.to {
            Destination::Direct(name) => name == me,
            Destination::Channel(c) => roster.member(me).is_some_and(|m| is_in_channel(m, c)),
        };
        let wrapped = self
            .body
            .keys
            .iter()
            .find(|k| k.recipient == me)
            .filter(|_| addressed)
            .ok_or_else(|| EnvelopeError::NotForUs(me.to_string()))?;
        let aad = encode(header)?;
        let key = unwrap(wrapped, secret, &wrap_aad(&aad, me))?;
        let plain = Zeroizing::new(
            ChaCha20Poly1305::new(Key::from_slice(key.as_ref()))
                .decrypt(
                    Nonce::from_slice(&self.body.nonce),
                    Payload {
                        msg: &self.body.ciphertext,
                        aad: &aad,
                    },
                )
                .map_err(|_| EnvelopeError::Decrypt)?,
        );
        let content: Content = postcard::from_bytes(&plain).map_err(malformed)?;
        Ok(Opened {
            header: header.clone(),
            content,
        })
    }
}

fn unwrap(
    wrapped: &WrappedKey,
    secret: &MemberSecret,
    aad: &[u8],
) -> Result<Zeroizing<[u8; 32]>, EnvelopeError> {
    let sk_bytes = Zeroizing::new(secret.x25519_secret().to_bytes());
    let sk = <Kem as hpke::Kem>::PrivateKey::from_bytes(sk_bytes.as_ref())
        .map_err(|_| EnvelopeError::Decrypt)?;
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&wrapped.enc)
        .map_err(|_| EnvelopeError::Decrypt)?;
    let key = Zeroizing::new(
        hpke::single_shot_open::<HpkeChaCha, HkdfSha256, Kem>(
            &OpModeR::Base,
            &sk,
            &enc,
            HPKE_INFO,
            &wrapped.sealed_key,
            aad,
        )
        .map_err(|_| EnvelopeError::Decrypt)?,
    );
    let mut out = Zeroizing::new([0u8; 32]);
    if key.len() != out.len() {
        return Err(EnvelopeError::Decrypt);
    }
    out.copy_from_slice(&key);
    Ok(out)
}

fn is_in_channel(member: &Member, channel: &str) -> bool {
    member.channels.iter().any(|c| c.as_str() == channel)
}

fn random_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    OsRng.fill_bytes(&mut key);
    key
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, EnvelopeError> {
    postcard::to_stdvec(value).map_err(|e| EnvelopeError::Malformed(e.to_string()))
}

fn malformed(e: postcard::Error) -> EnvelopeError {
    EnvelopeError::Malformed(e.to_string())
}

fn now_ms() -> u64 {
    let ms = Timestamp::now().0.saturating_mul(1000);
    let sub = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_millis()));
    ms + sub
}

#[cfg(test)]
mod tests;
