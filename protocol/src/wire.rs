//! The frames a client and a relay exchange on a QUIC stream.
//!
//! Each request opens its own bidirectional stream: the client writes one [`Request`]
//! frame and finishes its side; the relay answers with one [`Response`] frame, or, for
//! [`Request::Subscribe`], a frame each time messages are waiting, until either side
//! closes. A frame is a 4-byte big-endian length followed by that many bytes of postcard.
//! Lengths above [`MAX_FRAME`] are refused before any buffer is allocated.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The largest frame either side accepts: room for the largest envelope and its framing.
pub const MAX_FRAME: usize = crate::envelope::MAX_ENVELOPE + 64 * 1024;

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The announced length exceeds [`MAX_FRAME`].
    #[error("frame of {0} bytes exceeds the limit of {MAX_FRAME}")]
    TooLarge(usize),
    /// The frame's bytes are not a valid message.
    #[error("malformed frame: {0}")]
    Malformed(String),
}

/// What a client asks of a relay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Store an envelope for its recipients; answered once it is durable.
    Send {
        /// The encoded, signed envelope.
        envelope: Vec<u8>,
    },
    /// List messages waiting for the caller after sequence number `after`.
    Fetch {
        /// Only messages with a higher sequence number.
        after: Option<u64>,
        /// At most this many.
        limit: u32,
    },
    /// Remove delivered messages from the caller's queue.
    Ack {
        /// The sequence numbers received.
        seqs: Vec<u64>,
    },
    /// Keep the stream open and push messages as they arrive.
    Subscribe,
    /// The signed roster in force.
    GetRoster,
    /// Replace the roster with a newer signed one.
    PushRoster {
        /// The signed roster.
        signed: Vec<u8>,
    },
    /// The relay's clock, for skew checks.
    Ping,
}

/// A message waiting in a queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The queue position, used to acknowledge it.
    pub seq: u64,
    /// The encoded envelope.
    pub envelope: Vec<u8>,
}

/// A relay's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The envelope is durable and queued for `recipients` members.
    Accepted {
        /// How many queues it went into.
        recipients: u32,
    },
    /// Messages waiting, oldest first.
    Messages {
        /// The messages.
        items: Vec<Delivery>,
    },
    /// How many acknowledged messages were removed.
    Acked {
        /// Count removed.
        removed: u32,
    },
    /// The signed roster in force.
    Roster {
        /// Its signed form.
        signed: Vec<u8>,
    },
    /// A pushed roster is now in force.
    RosterAccepted {
        /// Its version.
        version: u64,
    },
    /// The relay's clock.
    Pong {
        /// Milliseconds since the Unix epoch.
        unix_ms: u64,
    },
    /// The request was refused.
    Error {
        /// A machine-readable reason.
        code: ErrorCode,
        /// A sentence for people.
        message: String,
    },
}

/// Why a relay refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The caller is not a member of the roster in force.
    NotMember,
    /// The envelope's sender and id were already stored.
    Duplicate,
    /// The envelope exceeds the relay's message size limit.
    TooLarge,
    /// The envelope failed a check (signature, sender, recipients).
    BadEnvelope,
    /// The pushed roster failed verification.
    BadRoster,
    /// The caller's role may not do this.
    Forbidden,
    /// The relay could not store or read; try again or another relay.
    Internal,
    /// The request frame was malformed.
    BadRequest,
}

/// Encodes `value` as a length-prefixed frame.
///
/// # Errors
///
/// [`WireError::TooLarge`] when the encoding exceeds [`MAX_FRAME`].
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, WireError> {
    let mut out = vec![0u8; 4];
    let body = postcard::to_stdvec(value).map_err(|e| WireError::Malformed(e.to_string()))?;
    if body.len() > MAX_FRAME {
        return Err(WireError::TooLarge(body.len()));
    }
    let len = u32::try_from(body.len()).map_err(|_| WireError::TooLarge(body.len()))?;
    out[..4].copy_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Reads the length prefix of a frame.
///
/// # Errors
///
/// [`WireError::TooLarge`] when it exceeds [`MAX_FRAME`].
pub fn frame_len(prefix: [u8; 4]) -> Result<usize, WireError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_FRAME {
        return Err(WireError::TooLarge(len));
    }
    Ok(len)
}

/// Decodes a frame body (without its length prefix).
///
/// # Errors
///
/// [`WireError::Malformed`] when the bytes are not a `T`, or carry trailing bytes.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, WireError> {
    let (value, rest) =
        postcard::take_from_bytes(body).map_err(|e| WireError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(WireError::Malformed(format!(
            "{} trailing bytes",
            rest.len()
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(request: &Request) -> Request {
        let frame = encode(request).expect("encodes");
        let prefix: [u8; 4] = frame[..4].try_into().expect("4 bytes");
        let len = frame_len(prefix).expect("fits");
        assert_eq!(len, frame.len() - 4);
        decode(&frame[4..]).expect("decodes")
    }

    #[test]
    fn requests_round_trip() {
        let cases = [
            Request::Send {
                envelope: vec![1, 2, 3],
            },
            Request::Fetch {
                after: Some(9),
                limit: 100,
            },
            Request::Ack { seqs: vec![1, 5] },
            Request::Subscribe,
            Request::GetRoster,
            Request::Ping,
        ];
        for case in cases {
            assert_eq!(round_trip(&case), case);
        }
    }

    #[test]
    fn an_oversized_length_is_refused_before_reading() {
        let huge = u32::try_from(MAX_FRAME + 1)
            .expect("fits u32")
            .to_be_bytes();
        assert_eq!(frame_len(huge), Err(WireError::TooLarge(MAX_FRAME + 1)));
        assert!(frame_len([0xff; 4]).is_err());
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut frame = encode(&Request::Ping).expect("encodes");
        frame.push(0);
        assert!(decode::<Request>(&frame[4..]).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode::<Request>(&bytes);
            let _ = decode::<Response>(&bytes);
        }

        #[test]
        fn send_frames_round_trip(envelope in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let request = Request::Send { envelope };
            prop_assert_eq!(round_trip(&request), request);
        }
    }
}
