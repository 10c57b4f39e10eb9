//! Key and value layouts of the store's single sled tree.
//!
//! Every key opens with a tag byte naming its key space, so that one tree, and therefore one
//! atomic `apply_batch`, holds a message, its expiry entries and its seen-id together:
//!
//! | key | value |
//! |---|---|
//! | `m` recipient `0x00` seq | expiry, envelope |
//! | `d` sender `0x00` message id (16 bytes) | expiry |
//! | `x` expiry, target key (an `m` or `d` key) | empty |
//! | `r` | roster version, signed roster |
//! | `n` | next sequence number |
//!
//! Integers are 8 bytes big-endian, so byte order is numeric order and a range scan over
//! `x` keys visits entries in expiry order. Expiries are milliseconds since the Unix epoch.
//! A member name never contains `0x00`, so one recipient's prefix never matches another's.

use std::time::{SystemTime, UNIX_EPOCH};

use super::StoreError;

/// Tag of a queued message key.
const MESSAGE: u8 = b'm';
/// Tag of a seen-id key.
const SEEN: u8 = b'd';
/// Tag of an expiry index key.
const EXPIRY: u8 = b'x';
/// The key holding the roster in force.
pub(super) const ROSTER: &[u8] = b"r";
/// The prefix of every expiry entry.
pub(super) const EXPIRIES: &[u8] = &[EXPIRY];
/// The key holding the next sequence number to hand out.
pub(super) const NEXT_SEQ: &[u8] = b"n";

/// Longest member name, in bytes.
const NAME_MAX: usize = 64;

/// Refuses anything but a member name, `[a-z0-9._-]{1,64}`.
pub(super) fn check_name(name: &str) -> Result<(), StoreError> {
    let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b);
    let valid = (1..=NAME_MAX).contains(&name.len()) && name.bytes().all(allowed);
    if valid {
        Ok(())
    } else {
        Err(StoreError::Name(name.into()))
    }
}

/// The prefix shared by every queued message of `recipient`.
pub(super) fn queue_prefix(recipient: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(recipient.len() + 10);
    key.push(MESSAGE);
    key.extend_from_slice(recipient.as_bytes());
    key.push(0);
    key
}

/// The key of message `seq` in the queue of `recipient`.
pub(super) fn message_key(recipient: &str, seq: u64) -> Vec<u8> {
    let mut key = queue_prefix(recipient);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// The key range holding the messages of `recipient` with a sequence number above `after`,
/// or `None` when no sequence number can be above it.
pub(super) fn queue_range(recipient: &str, after: Option<u64>) -> Option<(Vec<u8>, Vec<u8>)> {
    let first = match after {
        None => 0,
        Some(seq) => seq.checked_add(1)?,
    };
    let mut end = queue_prefix(recipient);
    if let Some(separator) = end.last_mut() {
        *separator = 1;
    }
    Some((message_key(recipient, first), end))
}

/// The sequence number at the end of a message key.
pub(super) fn seq_of(key: &[u8]) -> Result<u64, StoreError> {
    key.len()
        .checked_sub(8)
        .and_then(|start| key.get(start..))
        .map_or(Err(StoreError::Corrupt("message key")), |tail| {
            decode_u64(tail, "message key")
        })
}

/// Whether an expiry entry's target is a queued message (rather than a seen-id).
pub(super) fn is_message(target: &[u8]) -> bool {
    target.first() == Some(&MESSAGE)
}

/// The key recording that `sender` sent a message with this `id`.
pub(super) fn seen_key(sender: &str, id: &[u8; 16]) -> Vec<u8> {
    let mut key = Vec::with_capacity(sender.len() + 18);
    key.push(SEEN);
    key.extend_from_slice(sender.as_bytes());
    key.push(0);
    key.extend_from_slice(id);
    key
}

/// The expiry index key saying that `target` expires at `expires`.
pub(super) fn expiry_key(expires: u64, target: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(target.len() + 9);
    key.push(EXPIRY);
    key.extend_from_slice(&expires.to_be_bytes());
    key.extend_from_slice(target);
    key
}

/// The key range of expiry entries at or before `now`.
pub(super) fn expired_range(now: u64) -> (Vec<u8>, Vec<u8>) {
    let end = match now.checked_add(1) {
        Some(next) => expiry_key(next, &[]),
        None => vec![EXPIRY + 1],
    };
    (vec![EXPIRY], end)
}

/// The target key inside an expiry entry.
pub(super) fn expiry_target(key: &[u8]) -> Result<&[u8], StoreError> {
    key.get(9..).ok_or(StoreError::Corrupt("expiry entry"))
}

/// A queued message's value: its expiry, then the envelope.
pub(super) fn message_value(expires: u64, envelope: &[u8]) -> Vec<u8> {
    prefixed(expires, envelope)
}

/// A value made of a leading integer and the bytes after it.
pub(super) fn prefixed(number: u64, rest: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(rest.len() + 8);
    value.extend_from_slice(&number.to_be_bytes());
    value.extend_from_slice(rest);
    value
}

/// Splits a value made by [`prefixed`]; `what` names the value in the error.
pub(super) fn split_prefixed<'v>(
    value: &'v [u8],
    what: &'static str,
) -> Result<(u64, &'v [u8]), StoreError> {
    if value.len() < 8 {
        return Err(StoreError::Corrupt(what));
    }
    let (number, rest) = value.split_at(8);
    Ok((decode_u64(number, what)?, rest))
}

/// Reads an 8-byte big-endian integer; `what` names the value in the error.
pub(super) fn decode_u64(bytes: &[u8], what: &'static str) -> Result<u64, StoreError> {
    let array = bytes.try_into().map_err(|_| StoreError::Corrupt(what))?;
    Ok(u64::from_be_bytes(array))
}

/// Milliseconds since the Unix epoch; times before it count as the epoch.
pub(super) fn millis(time: SystemTime) -> u64 {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}
