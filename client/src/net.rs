//! Reaching a relay: address resolution, the pinned QUIC connection, and one request per
//! stream, each with a deadline and an error a responder can act on.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use breakglass_protocol::keystring::fingerprint_of;
use breakglass_protocol::wire::{self, ErrorCode, Request, Response};
use breakglass_protocol::KeyKind;
use breakglass_relay::registry::{CLOSE_NOT_MEMBER, CLOSE_REVOKED};
use breakglass_relay::transport::{self, PinnedRelay, SERVER_NAME};
use ed25519_dalek::SigningKey;
use quinn::{Connection, ConnectionError, RecvStream};

use crate::config::RelayEntry;

/// The time allowed for one request's answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a relay could not be used.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The relay's address is not `host:port`.
    #[error("relay {relay}: address {address:?} is not host:port")]
    BadAddress {
        /// The relay's name.
        relay: String,
        /// The address configured.
        address: String,
    },
    /// The relay's host name could not be resolved.
    #[error("relay {relay}: DNS lookup of {host:?} failed after {elapsed:.1?}: {reason} (use an IP address in the config to need no DNS)")]
    Dns {
        /// The relay's name.
        relay: String,
        /// The host name.
        host: String,
        /// How long it took.
        elapsed: Duration,
        /// What the resolver said.
        reason: String,
    },
    /// Nothing answered in time.
    #[error("relay {relay} at {addr} is unreachable: no answer after {elapsed:.1?} (is it running? is UDP port {port} open on the path?)")]
    Unreachable {
        /// The relay's name.
        relay: String,
        /// The address tried.
        addr: SocketAddr,
        /// The port, for the hint.
        port: u16,
        /// How long it waited.
        elapsed: Duration,
    },
    /// The relay presented another key than the pinned one.
    #[error(
        "relay {relay} at {addr} presented key {seen}, but the config pins {pinned}.\n\
         This may be interception: do not use this relay until an administrator has \
         confirmed its key (compare fingerprints by phone)."
    )]
    KeyMismatch {
        /// The relay's name.
        relay: String,
        /// The address.
        addr: SocketAddr,
        /// The fingerprint of the key presented.
        seen: String,
        /// The fingerprint pinned.
        pinned: String,
    },
    /// The relay does not admit our key.
    #[error("relay {relay} does not admit our key ({reason}); ask an administrator to add it to the roster and push the roster to the relay")]
    NotMember {
        /// The relay's name.
        relay: String,
        /// What it said.
        reason: String,
    },
    /// The connection broke.
    #[error("relay {relay}: connection lost: {reason}")]
    Lost {
        /// The relay's name.
        relay: String,
        /// What happened.
        reason: String,
    },
    /// The relay sent something that is not a valid answer.
    #[error("relay {relay} sent a malformed answer: {reason}")]
    Protocol {
        /// The relay's name.
        relay: String,
        /// What was wrong.
        reason: String,
    },
    /// The relay answered with an error.
    #[error("relay {relay}: {message}")]
    Refused {
        /// The relay's name.
        relay: String,
        /// Its reason code.
        code: ErrorCode,
        /// Its explanation.
        message: String,
    },
    /// Our own request is over the frame limit: nothing was sent.
    #[error("the message is too large to send: {reason} (lower `max_message` in the config)")]
    TooLarge {
        /// What the encoder said.
        reason: String,
    },
    /// The local QUIC endpoint could not be set up.
    #[error("cannot set up QUIC: {0}")]
    Local(String),
}

/// An open connection to one relay; clones share the connection.
#[derive(Clone)]
pub struct RelayConn {
    /// Which relay.
    pub relay: RelayEntry,
    /// The address reached.
    pub addr: SocketAddr,
    conn: Connection,
    _endpoint: quinn::Endpoint,
}

/// Resolves a relay's address: an IP literal directly, a host name through the system
/// resolver within `deadline`.
///
/// # Errors
///
/// [`NetError::BadAddress`] or [`NetError::Dns`].
pub async fn resolve(relay: &RelayEntry, deadline: Duration) -> Result<SocketAddr, NetError> {
    if let Ok(addr) = relay.address.parse::<SocketAddr>() {
        return Ok(addr);
    }
    tracing::debug!(relay = %relay.name, address = %relay.address, "resolving");
    let bad = || NetError::BadAddress {
        relay: relay.name.clone(),
        address: relay.address.clone(),
    };
    let (host, port) = relay.address.rsplit_once(':').ok_or_else(bad)?;
    port.parse::<u16>().map_err(|_| bad())?;
    let started = Instant::now();
    let dns = |reason: String| NetError::Dns {
        relay: relay.name.clone(),
        host: host.to_string(),
        elapsed: started.elapsed(),
        reason,
    };
    let lookup = tokio::net::lookup_host(relay.address.clone());
    match tokio::time::timeout(deadline, lookup).await {
        Err(_) => Err(dns("no answer from the resolver".into())),
        Ok(Err(e)) => Err(dns(e.to_string())),
        Ok(Ok(mut addrs)) => {
            let addr = addrs.next().ok_or_else(|| dns("no addresses".into()))?;
            tracing::debug!(relay = %relay.name, %addr, elapsed = ?started.elapsed(), "resolved");
            Ok(addr)
        }
    }
}

/// Connects to `relay`, proving `member` and checking the relay's pinned key.
///
/// # Errors
///
/// A [`NetError`] saying what failed: DNS, no answer, key mismatch, not a member.
pub async fn connect(
    relay: &RelayEntry,
    member: &SigningKey,
    deadline: Duration,
) -> Result<RelayConn, NetError> {
    let started = Instant::now();
    let addr = resolve(relay, deadline).await?;
    tracing::debug!(
        relay = %relay.name,
        %addr,
        key = %relay.key.fingerprint(),
        "connecting"
    );
    let remaining = deadline.saturating_sub(started.elapsed());
    let bind = match addr.ip() {
        IpAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        IpAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    };
    let endpoint = transport::client_endpoint(bind).map_err(|e| NetError::Local(e.to_string()))?;
    let (config, pin) = transport::client_config(member, *relay.key.verifying_key())
        .map_err(|e| NetError::Local(e.to_string()))?;
    let connecting = endpoint
        .connect_with(config, addr, SERVER_NAME)
        .map_err(|e| NetError::Local(e.to_string()))?;
    let conn = match tokio::time::timeout(remaining, connecting).await {
        Err(_) => return Err(unreachable(relay, addr, started)),
        Ok(Err(e)) => return Err(connect_error(relay, addr, &pin, started, &e)),
        Ok(Ok(conn)) => conn,
    };
    let relay_conn = RelayConn {
        relay: relay.clone(),
        addr,
        conn,
        _endpoint: endpoint,
    };
    // Under TLS 1.3 the relay's verdict on our key arrives after the client's handshake
    // completes, so make one round trip now to learn it before reporting success.
    relay_conn.request(&Request::Ping).await?;
    tracing::debug!(
        relay = %relay.name,
        %addr,
        ms = started.elapsed().as_millis(),
        "connected and admitted"
    );
    Ok(relay_conn)
}

fn unreachable(relay: &RelayEntry, addr: SocketAddr, started: Instant) -> NetError {
    NetError::Unreachable {
        relay: relay.name.clone(),
        addr,
        port: addr.port(),
        elapsed: started.elapsed(),
    }
}

fn connect_error(
    relay: &RelayEntry,
    addr: SocketAddr,
    pin: &PinnedRelay,
    started: Instant,
    err: &ConnectionError,
) -> NetError {
    if pin.mismatch() {
        let seen = pin.seen_key().map_or("(no usable key)".into(), |k| {
            fingerprint_of(KeyKind::Relay, k.as_bytes())
        });
        return NetError::KeyMismatch {
            relay: relay.name.clone(),
            addr,
            seen,
            pinned: relay.key.fingerprint(),
        };
    }
    match err {
        ConnectionError::TimedOut => unreachable(relay, addr, started),
        other => closed_error(&relay.name, other),
    }
}

/// Turns the relay's reason for closing into an error.
fn closed_error(relay: &str, err: &ConnectionError) -> NetError {
    if let ConnectionError::ApplicationClosed(close) = err {
        let reason = String::from_utf8_lossy(&close.reason).into_owned();
        let code = close.error_code.into_inner();
        if code == u64::from(CLOSE_NOT_MEMBER) || code == u64::from(CLOSE_REVOKED) {
            return NetError::NotMember {
                relay: relay.to_string(),
                reason,
            };
        }
    }
    NetError::Lost {
        relay: relay.to_string(),
        reason: err.to_string(),
    }
}

impl RelayConn {
    /// Sends one request on a fresh stream and reads the one answer.
    ///
    /// # Errors
    ///
    /// A [`NetError`]; an error answer from the relay is [`NetError::Refused`].
    pub async fn request(&self, request: &Request) -> Result<Response, NetError> {
        tracing::debug!(relay = %self.relay.name, request = kind_of_request(request), "request");
        let exchange = async {
            let mut recv = self.send_request(request).await?;
            self.read_response(&mut recv).await
        };
        let response = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| NetError::Lost {
                relay: self.relay.name.clone(),
                reason: format!("no answer within {REQUEST_TIMEOUT:?}"),
            })??;
        tracing::debug!(relay = %self.relay.name, answer = kind_of_response(&response), "answer");
        match response {
            Response::Error { code, message } => Err(NetError::Refused {
                relay: self.relay.name.clone(),
                code,
                message,
            }),
            other => Ok(other),
        }
    }

    /// Opens a stream, writes `request` and finishes the sending side.
    ///
    /// # Errors
    ///
    /// [`NetError::Lost`] when the connection is gone.
    pub async fn send_request(&self, request: &Request) -> Result<RecvStream, NetError> {
        let frame = encode_request(request)?;
        let (mut send, recv) = self.conn.open_bi().await.map_err(|e| self.lost(&e))?;
        send.write_all(&frame)
            .await
            .map_err(|e| self.lost_write(e))?;
        let _ = send.finish();
        Ok(recv)
    }

    /// Reads one answer frame.
    ///
    /// # Errors
    ///
    /// [`NetError::Lost`] or [`NetError::Protocol`].
    pub async fn read_response(&self, recv: &mut RecvStream) -> Result<Response, NetError> {
        let mut prefix = [0u8; 4];
        recv.read_exact(&mut prefix)
            .await
            .map_err(|e| self.lost_read(e))?;
        let len = wire::frame_len(prefix).map_err(|e| self.protocol(e.to_string()))?;
        let mut body = vec![0u8; len];
        recv.read_exact(&mut body)
            .await
            .map_err(|e| self.lost_read(e))?;
        wire::decode(&body).map_err(|e| self.protocol(e.to_string()))
    }

    /// Waits until the connection closes and says why.
    pub async fn closed(&self) -> NetError {
        let err = self.conn.closed().await;
        closed_error(&self.relay.name, &err)
    }

    /// Whether the connection is still open, as far as we know.
    pub fn is_open(&self) -> bool {
        self.conn.close_reason().is_none()
    }

    /// Whether `other` is the same connection (a clone of this one).
    pub fn same(&self, other: &RelayConn) -> bool {
        self.conn.stable_id() == other.conn.stable_id()
    }

    /// Closes the connection politely.
    pub fn close(&self) {
        self.conn.close(0u32.into(), b"bye");
    }

    fn lost(&self, err: &ConnectionError) -> NetError {
        closed_error(&self.relay.name, err)
    }

    fn lost_write(&self, err: quinn::WriteError) -> NetError {
        match err {
            quinn::WriteError::ConnectionLost(e) => self.lost(&e),
            other => self.protocol(other.to_string()),
        }
    }

    fn lost_read(&self, err: quinn::ReadExactError) -> NetError {
        match err {
            quinn::ReadExactError::ReadError(quinn::ReadError::ConnectionLost(e)) => self.lost(&e),
            other => NetError::Lost {
                relay: self.relay.name.clone(),
                reason: other.to_string(),
            },
        }
    }

    fn protocol(&self, reason: String) -> NetError {
        NetError::Protocol {
            relay: self.relay.name.clone(),
            reason,
        }
    }
}

/// Encodes one of our own requests; a failure is ours, not the relay's.
fn encode_request(request: &Request) -> Result<Vec<u8>, NetError> {
    wire::encode(request).map_err(|e| NetError::TooLarge {
        reason: e.to_string(),
    })
}

/// The name of a request's kind, for the debug log (never its content).
fn kind_of_request(request: &Request) -> &'static str {
    match request {
        Request::Ping => "ping",
        Request::Send { .. } => "send",
        Request::Fetch { .. } => "fetch",
        Request::Ack { .. } => "ack",
        Request::Subscribe => "subscribe",
        Request::GetRoster => "get-roster",
        Request::PushRoster { .. } => "push-roster",
    }
}

/// The name of an answer's kind, for the debug log (never its content).
fn kind_of_response(response: &Response) -> &'static str {
    match response {
        Response::Pong { .. } => "pong",
        Response::Accepted { .. } => "accepted",
        Response::Acked { .. } => "acked",
        Response::Messages { .. } => "messages",
        Response::Roster { .. } => "roster",
        Response::RosterAccepted { .. } => "roster-accepted",
        Response::Error { .. } => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oversized_request_is_our_error_not_a_malformed_answer() {
        let request = Request::Send {
            envelope: vec![0u8; wire::MAX_FRAME + 1],
        };
        let err = encode_request(&request).expect_err("over the frame limit");
        assert!(matches!(err, NetError::TooLarge { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.starts_with("the message is too large to send"),
            "{text}"
        );
        assert!(!text.contains("malformed"), "{text}");
    }

    #[test]
    fn the_not_member_error_gives_its_reason_once() {
        let err = NetError::NotMember {
            relay: "dev".into(),
            reason: "not in the roster".into(),
        };
        let text = err.to_string();
        assert_eq!(text.matches("not in the roster").count(), 1, "{text}");
    }
}
