//! One member's connection: admission against the roster, then one task per request stream.
//!
//! Admission happens right after the TLS handshake, from the key the member proved, and
//! before a single stream is accepted: a key that is not in the roster in force cannot
//! make the relay read, let alone store, a byte of application data.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use breakglass_protocol::envelope::{self, Destination};
use breakglass_protocol::keystring::fingerprint_of;
use breakglass_protocol::roster::{self, Member, Policy, Role, RosterError, Timestamp};
use breakglass_protocol::wire::{self, Delivery, ErrorCode, Request, Response, MAX_FRAME};
use breakglass_protocol::KeyKind;
use quinn::{Connection, RecvStream, SendStream, VarInt};
use tracing::{debug, info, info_span, warn, Instrument};

use crate::registry::CLOSE_NOT_MEMBER;
use crate::server::{RosterInForce, Shared};
use crate::store::StoreError;

/// A request must arrive whole within this time.
const REQUEST_DEADLINE: Duration = Duration::from_secs(30);
/// The most messages handed out in one frame.
const FETCH_LIMIT: usize = 256;
/// The most sequence numbers acknowledged in one request.
const MAX_ACKS: usize = 4096;
/// What sealing adds to a message's text: the 16-byte AEAD tag, one byte for the content
/// kind and the text's length as a varint, which is 3 bytes for any text from 16 KiB to
/// 2 MiB, so the limit is exact for any `max_message` in that range.
const CONTENT_OVERHEAD: usize = 16 + 1 + 3;
/// The stream error code for a request that could not be read.
const STREAM_BAD_REQUEST: u32 = 1;

/// Runs one incoming connection to its end.
pub async fn handle(shared: Arc<Shared>, incoming: quinn::Incoming) {
    let remote = incoming.remote_address();
    let conn = match incoming.await {
        Ok(conn) => conn,
        Err(e) => {
            debug!(%remote, error = %e, "handshake failed");
            return;
        }
    };
    let Some(member) = admit(&shared, &conn) else {
        return;
    };
    let span = info_span!("conn", member = %member.name, key = %member.key.fingerprint());
    serve(shared, conn, member).instrument(span).await;
}

/// Looks the proven key up in the roster; closes the connection when it is not there.
fn admit(shared: &Shared, conn: &Connection) -> Option<Member> {
    let remote = conn.remote_address();
    let key = match crate::transport::peer_key(conn) {
        Ok(key) => key,
        Err(e) => {
            warn!(%remote, error = %e, "refused: no usable client key");
            conn.close(VarInt::from_u32(CLOSE_NOT_MEMBER), b"no client key");
            return None;
        }
    };
    let roster = shared.roster();
    match roster.roster.member_by_key(&key) {
        Some(member) => Some(member.clone()),
        None => {
            shared.counters.refused.fetch_add(1, Ordering::Relaxed);
            let fp = fingerprint_of(KeyKind::Member, key.as_bytes());
            info!(%remote, ed25519 = %fp, "refused: key not in the roster");
            conn.close(VarInt::from_u32(CLOSE_NOT_MEMBER), b"not in the roster");
            None
        }
    }
}

async fn serve(shared: Arc<Shared>, conn: Connection, member: Member) {
    let _registration = shared.registry.add(member.name.as_str(), conn.clone());
    // A roster push may have removed the member between the lookup and the registration.
    if !still_member(&shared.roster(), &member) {
        conn.close(VarInt::from_u32(CLOSE_NOT_MEMBER), b"not in the roster");
        return;
    }
    shared.counters.admitted.fetch_add(1, Ordering::Relaxed);
    info!(remote = %conn.remote_address(), "admitted");
    let member = Arc::new(member);
    loop {
        match conn.accept_bi().await {
            Ok((send, recv)) => {
                let task = stream(shared.clone(), member.clone(), send, recv);
                tokio::spawn(task.in_current_span());
            }
            Err(e) => {
                debug!(reason = %e, "connection ended");
                break;
            }
        }
    }
}

/// Whether `member` is still in `roster` with the same key.
pub fn still_member(roster: &RosterInForce, member: &Member) -> bool {
    roster
        .roster
        .member(member.name.as_str())
        .is_some_and(|m| m.key == member.key)
}

async fn stream(shared: Arc<Shared>, me: Arc<Member>, mut send: SendStream, mut recv: RecvStream) {
    let request = match read_request(&mut recv).await {
        Ok(request) => request,
        Err(message) => {
            warn!(%message, "bad request frame");
            let _ = recv.stop(VarInt::from_u32(STREAM_BAD_REQUEST));
            let reply = error(ErrorCode::BadRequest, message);
            let _ = write(&mut send, &reply).await;
            let _ = send.finish();
            return;
        }
    };
    if let Request::Subscribe = request {
        subscribe(&shared, &me, &mut send).await;
    } else {
        let reply = answer(&shared, &me, request).await;
        let _ = write(&mut send, &reply).await;
    }
    let _ = send.finish();
}

/// Reads one whole request frame, bounded in size and time.
async fn read_request(recv: &mut RecvStream) -> Result<Request, String> {
    let read = recv.read_to_end(MAX_FRAME + 4);
    let bytes = match tokio::time::timeout(REQUEST_DEADLINE, read).await {
        Err(_) => return Err("request not received in time".into()),
        Ok(Err(quinn::ReadToEndError::TooLong)) => {
            return Err(format!("request exceeds {MAX_FRAME} bytes"));
        }
        Ok(Err(e)) => return Err(format!("request stream failed: {e}")),
        Ok(Ok(bytes)) => bytes,
    };
    let (prefix, body) = bytes
        .split_first_chunk::<4>()
        .ok_or_else(|| "truncated frame".to_string())?;
    let len = wire::frame_len(*prefix).map_err(|e| e.to_string())?;
    if len != body.len() {
        return Err(format!(
            "frame announces {len} bytes but carries {}",
            body.len()
        ));
    }
    wire::decode(body).map_err(|e| e.to_string())
}

async fn write(send: &mut SendStream, reply: &Response) -> Result<(), String> {
    let frame = wire::encode(reply).map_err(|e| e.to_string())?;
    send.write_all(&frame).await.map_err(|e| e.to_string())
}

fn error(code: ErrorCode, message: impl Into<String>) -> Response {
    Response::Error {
        code,
        message: message.into(),
    }
}

async fn answer(shared: &Shared, me: &Member, request: Request) -> Response {
    match request {
        Request::Send { envelope } => accept_send(shared, me, &envelope).await,
        Request::Fetch { after, limit } => fetch(shared, me, after, limit as usize),
        Request::Ack { seqs } => ack(shared, me, &seqs),
        Request::GetRoster => Response::Roster {
            signed: shared.roster().signed.clone(),
        },
        Request::PushRoster { signed } => push_roster(shared, me, &signed).await,
        Request::Ping => Response::Pong { unix_ms: unix_ms() },
        Request::Subscribe => error(ErrorCode::BadRequest, "subscribe is handled apart"),
    }
}

/// Checks an envelope as far as the relay can, then stores it durably.
async fn accept_send(shared: &Shared, me: &Member, bytes: &[u8]) -> Response {
    if bytes.len() > envelope::MAX_ENVELOPE {
        return error(
            ErrorCode::TooLarge,
            format!(
                "envelope is {} bytes; the limit is {}",
                bytes.len(),
                envelope::MAX_ENVELOPE
            ),
        );
    }
    // Held until the envelope is stored, so a roster push cannot revoke a recipient
    // between the check below and the enqueue.
    let _roster_stable = shared.roster_change.read().await;
    let in_force = shared.roster();
    let (id, recipients) = match check_envelope(&in_force, me, bytes, shared.max_message) {
        Ok(checked) => checked,
        Err(refusal) => return refusal,
    };
    match shared
        .store
        .enqueue(me.name.as_str(), id, &recipients, bytes)
        .await
    {
        Ok(()) => {
            shared.counters.stored.fetch_add(1, Ordering::Relaxed);
            debug!(recipients = recipients.len(), bytes = bytes.len(), "stored");
            Response::Accepted {
                recipients: u32::try_from(recipients.len()).unwrap_or(u32::MAX),
            }
        }
        Err(StoreError::Duplicate) => error(ErrorCode::Duplicate, "message id already stored"),
        Err(e) => {
            warn!(error = %e, "store refused a message");
            error(ErrorCode::Internal, "the relay could not store the message")
        }
    }
}

/// The id and recipients of a valid envelope from `me`, or the answer refusing it.
fn check_envelope(
    in_force: &RosterInForce,
    me: &Member,
    bytes: &[u8],
    max_message: usize,
) -> Result<([u8; 16], Vec<String>), Response> {
    let env = envelope::decode(bytes).map_err(|e| error(ErrorCode::BadEnvelope, e.to_string()))?;
    // The limit is on the message, not on the per-recipient keys around it.
    let content = env.body.ciphertext.len().saturating_sub(CONTENT_OVERHEAD);
    if content > max_message {
        return Err(error(
            ErrorCode::TooLarge,
            format!("message is {content} bytes; this relay accepts at most {max_message}"),
        ));
    }
    check_addressing(in_force, me, &env).map_err(|m| error(ErrorCode::BadEnvelope, m))?;
    Ok((
        env.body.header.id.0,
        env.recipients().map(String::from).collect(),
    ))
}

/// Checks the sender, the signature and that every recipient belongs to the destination.
fn check_addressing(
    in_force: &RosterInForce,
    me: &Member,
    env: &envelope::Unverified,
) -> Result<(), String> {
    let roster = &in_force.roster;
    if env.body.header.sender != me.name.as_str() {
        return Err("the envelope's sender is not the connected member".into());
    }
    env.verify(roster).map_err(|e| e.to_string())?;
    let recipients: Vec<String> = env.recipients().map(String::from).collect();
    if recipients.is_empty() {
        return Err("the envelope has no recipients".into());
    }
    // A queue is only ever written for a current member: a direct message to any other
    // name would otherwise wait for whoever is enrolled under that name later.
    let allowed = |name: &str| match &env.body.header.to {
        Destination::Direct(to) => name == to && roster.member(name).is_some(),
        Destination::Channel(c) => roster
            .member(name)
            .is_some_and(|m| m.channels.iter().any(|x| x.as_str() == c)),
    };
    if let Some(bad) = recipients.iter().find(|r| !allowed(r)) {
        return Err(format!("recipient {bad:?} is not part of the destination"));
    }
    let mut unique = recipients.clone();
    unique.sort();
    unique.dedup();
    if unique.len() != recipients.len() {
        return Err("a recipient is named twice".into());
    }
    Ok(())
}

fn fetch(shared: &Shared, me: &Member, after: Option<u64>, limit: usize) -> Response {
    match pending(shared, me, after, limit.min(FETCH_LIMIT)) {
        Ok(items) => Response::Messages { items },
        Err(e) => {
            warn!(error = %e, "cannot read a queue");
            error(ErrorCode::Internal, "the relay could not read your queue")
        }
    }
}

/// Queued messages for `me`, at most `limit` and never more than fit in one frame.
fn pending(
    shared: &Shared,
    me: &Member,
    after: Option<u64>,
    limit: usize,
) -> Result<Vec<Delivery>, StoreError> {
    let queued = shared.store.pending(me.name.as_str(), after, limit)?;
    let mut budget = MAX_FRAME - 1024;
    let mut items = Vec::with_capacity(queued.len());
    for q in queued {
        let cost = q.envelope.len() + 16;
        if cost > budget {
            break;
        }
        budget -= cost;
        items.push(Delivery {
            seq: q.seq,
            envelope: q.envelope,
        });
    }
    shared
        .counters
        .delivered
        .fetch_add(items.len() as u64, Ordering::Relaxed);
    Ok(items)
}

fn ack(shared: &Shared, me: &Member, seqs: &[u64]) -> Response {
    if seqs.len() > MAX_ACKS {
        return error(
            ErrorCode::BadRequest,
            format!("at most {MAX_ACKS} acks per request"),
        );
    }
    match shared.store.ack(me.name.as_str(), seqs) {
        Ok(n) => Response::Acked {
            removed: u32::try_from(n).unwrap_or(u32::MAX),
        },
        Err(e) => {
            warn!(error = %e, "cannot acknowledge");
            error(
                ErrorCode::Internal,
                "the relay could not record the acknowledgement",
            )
        }
    }
}

/// Pushes waiting messages down the stream as they arrive, until either side closes.
async fn subscribe(shared: &Shared, me: &Member, send: &mut SendStream) {
    let mut wake = shared.store.subscribe(me.name.as_str());
    let mut after = None;
    loop {
        let items = match pending(shared, me, after, FETCH_LIMIT) {
            Ok(items) => items,
            Err(e) => {
                warn!(error = %e, "cannot read a queue");
                return;
            }
        };
        if let Some(last) = items.last() {
            after = Some(last.seq);
            if write(send, &Response::Messages { items }).await.is_err() {
                return;
            }
            continue;
        }
        let stopped = send.stopped();
        tokio::select! {
            () = wake.changed() => {}
            _ = stopped => return,
        }
    }
}

/// Verifies a pushed roster, makes it durable, and cuts off whoever it removes.
async fn push_roster(shared: &Shared, me: &Member, signed: &[u8]) -> Response {
    let _one_at_a_time = shared.roster_change.write().await;
    let current = shared.roster();
    // The root signature makes a roster valid; the admin role says who may put it in
    // force. The role is read from the roster in force, not from admission time.
    let role = current
        .roster
        .member(me.name.as_str())
        .filter(|m| m.key == me.key)
        .map(|m| m.role);
    if role != Some(Role::Admin) {
        return error(
            ErrorCode::Forbidden,
            format!("{} is not an admin: only admins may push a roster", me.name),
        );
    }
    // Pushing the roster already in force again changes nothing and is not an error, so
    // one roster can be pushed to every relay until the last lagging one has it.
    if signed == current.signed.as_slice() {
        return Response::RosterAccepted {
            version: current.roster.version,
        };
    }
    let policy = Policy {
        now: Timestamp::now(),
        min_version: current.roster.version.saturating_add(1),
    };
    let next = match roster::verify(signed, &shared.root, policy) {
        Ok(r) => r,
        Err(RosterError::Rollback { found, .. }) if found == current.roster.version => {
            let message = format!(
                "a different roster with the same version {found} is already in force: \
                 sign the roster source again to get a newer version"
            );
            return error(ErrorCode::BadRoster, message);
        }
        Err(RosterError::Rollback { found, .. }) => {
            let message = format!(
                "roster version {found} is not newer than version {} in force \
                 (rollback refused)",
                current.roster.version
            );
            return error(ErrorCode::BadRoster, message);
        }
        Err(e) => return error(ErrorCode::BadRoster, e.to_string()),
    };
    let version = next.version;
    let next = RosterInForce {
        roster: next,
        signed: signed.to_vec(),
    };
    let removed: Vec<Member> = current
        .roster
        .members
        .iter()
        .filter(|m| !still_member(&next, m))
        .cloned()
        .collect();
    shared.set_roster(next);
    revoke(shared, &removed).await;
    // Queue removals are not fsynced on their own; storing the roster is one durable
    // commit, a sled flush of everything written before it, so it makes the drops above
    // survive a crash too. Stored first, a crash right after it would bring the queues of
    // revoked members back.
    if let Err(e) = shared.store.set_roster(signed, version).await {
        warn!(error = %e, "cannot store a pushed roster");
        return error(
            ErrorCode::Internal,
            "the relay could not store the roster; it is in force only until a restart",
        );
    }
    let names: Vec<&str> = removed.iter().map(|m| m.name.as_str()).collect();
    info!(version, by = %me.name, removed = ?names, "roster changed");
    Response::RosterAccepted { version }
}

/// Closes the connections of members removed from the roster and drops their queues.
async fn revoke(shared: &Shared, removed: &[Member]) {
    for m in removed {
        let closed = shared
            .registry
            .close_member(m.name.as_str(), "removed from the roster");
        let store = shared.store.clone();
        let name = m.name.to_string();
        match tokio::task::spawn_blocking(move || store.drop_recipient(&name)).await {
            Ok(Ok(dropped)) => info!(member = %m.name, closed, dropped, "revoked"),
            Ok(Err(e)) => warn!(member = %m.name, error = %e, "cannot drop a revoked queue"),
            Err(e) => warn!(member = %m.name, error = %e, "dropping a revoked queue stopped"),
        }
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
