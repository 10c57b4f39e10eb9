//! Sending and receiving: `send`, `read`, `tail` and `chat`.
//!
//! A message is sealed once and sent through every relay reached; it counts as sent when
//! at least one relay has made it durable. Received envelopes are verified and decrypted,
//! duplicates (the same id through another relay, or a redelivery) are dropped against
//! the local history, and every envelope handled — shown, duplicate or refused — is
//! acknowledged so the relay can forget it. Self-test canaries are left for the self-test.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{bail, Result};
use breakglass_protocol::envelope::{self, Content, ContentKind, Destination, Opened};
use breakglass_protocol::roster::{Roster, Timestamp};
use breakglass_protocol::wire::{Delivery, Request, Response};
use breakglass_protocol::MemberSecret;
use futures_util::future::join_all;
use tokio::io::AsyncBufReadExt;

use crate::history::{History, Record};
use crate::net::{NetError, RelayConn};
use crate::session::{Connected, Session};

/// How many messages one fetch asks for.
const FETCH_BATCH: u32 = 256;
/// How long `tail` waits before reconnecting to a relay it lost.
const RECONNECT_DELAY: Duration = Duration::from_secs(3);

/// How received messages are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One line per message for people.
    Human,
    /// One JSON object per line.
    Json,
}

/// Parses `bob` or `#ops` into a destination.
pub fn destination(to: &str) -> Destination {
    match to.strip_prefix('#') {
        Some(channel) => Destination::Channel(channel.to_string()),
        None => Destination::Direct(to.to_string()),
    }
}

/// Seals `text` to `to` and sends it through every connected relay.
///
/// # Errors
///
/// When the destination is unknown or no relay accepted the message.
pub async fn send(
    session: &mut Session,
    connected: &Connected,
    to: &Destination,
    text: &str,
    format: Format,
) -> Result<Record> {
    let content = Content {
        kind: ContentKind::Text,
        text: text.to_string(),
    };
    let (id, bytes) = envelope::seal(
        session.config.name.as_str(),
        &session.me,
        &connected.roster,
        to.clone(),
        &content,
    )?;
    let request = Request::Send { envelope: bytes };
    let answers = join_all(connected.relays.iter().map(|r| r.request(&request))).await;
    let mut accepted = Vec::new();
    for (relay, answer) in connected.relays.iter().zip(answers) {
        match answer {
            Ok(Response::Accepted { .. }) => accepted.push(relay.relay.name.clone()),
            Ok(other) => eprintln!(
                "breakglass: warning: relay {}: unexpected answer {other:?}",
                relay.relay.name
            ),
            Err(e) => eprintln!("breakglass: warning: {e}"),
        }
    }
    if accepted.is_empty() {
        bail!("the message was NOT sent: no relay accepted it");
    }
    let record = Record {
        id: id.to_string(),
        direction: "out".into(),
        from: session.config.name.to_string(),
        to: to.to_string(),
        sent_at: Timestamp::now().to_string(),
        text: text.to_string(),
        verified: true,
        relay: accepted.join(","),
    };
    session.history.record(&record)?;
    match format {
        Format::Json => println!("{}", serde_json::to_string(&record)?),
        Format::Human => eprintln!(
            "sent to {to} via {} ({} of {} relays)",
            accepted.join(", "),
            accepted.len(),
            session.config.relays.len()
        ),
    }
    Ok(record)
}

/// What became of one delivered envelope.
#[derive(Debug)]
pub enum Outcome {
    /// A new, verified message for people.
    Show(Record),
    /// Seen before (another relay, or a redelivery).
    Duplicate,
    /// A self-test canary; left for the self-test.
    Canary(Opened),
    /// Failed a check; never shown.
    Refused(String),
}

/// Verifies, decrypts and de-duplicates delivered envelopes.
pub struct Inbox {
    roster: Arc<Roster>,
    me: Arc<MemberSecret>,
    name: String,
    history: Arc<Mutex<History>>,
}

impl Inbox {
    /// An inbox for the session's member.
    pub fn new(roster: Arc<Roster>, me: Arc<MemberSecret>, name: &str, history: History) -> Self {
        Inbox {
            roster,
            me,
            name: name.to_string(),
            history: Arc::new(Mutex::new(history)),
        }
    }

    /// Handles one envelope from `relay`.
    pub fn accept(&self, relay: &str, delivery: &Delivery) -> Outcome {
        let opened = envelope::decode(&delivery.envelope)
            .and_then(|e| e.open(&self.roster, &self.name, &self.me));
        let opened = match opened {
            Ok(o) => o,
            Err(e) => return Outcome::Refused(e.to_string()),
        };
        if opened.content.kind == ContentKind::Canary {
            return Outcome::Canary(opened);
        }
        let record = record_of(&opened, relay);
        let mut history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        match history.record(&record) {
            Ok(true) => Outcome::Show(record),
            Ok(false) => Outcome::Duplicate,
            Err(e) => Outcome::Refused(format!("cannot record in the local history: {e}")),
        }
    }

    /// Whether a message id was seen before.
    pub fn seen(&self, id: &str) -> bool {
        self.history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .seen(id)
    }

    /// Gives the history back (after a command ends).
    pub fn history(&self) -> Arc<Mutex<History>> {
        self.history.clone()
    }
}

fn record_of(opened: &Opened, relay: &str) -> Record {
    let secs = opened.header.sent_at_ms / 1000;
    Record {
        id: opened.header.id.to_string(),
        direction: "in".into(),
        from: opened.header.sender.clone(),
        to: opened.header.to.to_string(),
        sent_at: Timestamp(secs).to_string(),
        text: opened.content.text.clone(),
        verified: true,
        relay: relay.to_string(),
    }
}

/// Prints a message.
pub fn print(record: &Record, format: Format) {
    let line = match format {
        Format::Json => serde_json::to_string(record).unwrap_or_default(),
        Format::Human => format!(
            "[{}] {} → {} (verified): {}",
            record.sent_at,
            record.from,
            record.to,
            printable(&record.text)
        ),
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Replaces control characters (other than newline and tab) so a message cannot drive the
/// terminal.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

/// Handles a batch from one relay: show, skip or refuse each. Returns the sequence
/// numbers to acknowledge (everything but canaries) and how many messages were shown.
fn handle_batch(
    inbox: &Inbox,
    relay: &str,
    items: &[Delivery],
    format: Format,
) -> (Vec<u64>, usize) {
    let mut acks = Vec::with_capacity(items.len());
    let mut shown = 0;
    for item in items {
        match inbox.accept(relay, item) {
            Outcome::Show(record) => {
                print(&record, format);
                shown += 1;
            }
            Outcome::Duplicate => {}
            Outcome::Canary(_) => continue,
            Outcome::Refused(why) => {
                eprintln!("breakglass: warning: relay {relay}: dropped a message that failed verification: {why}");
            }
        }
        acks.push(item.seq);
    }
    (acks, shown)
}

/// Fetches, shows and acknowledges everything waiting on every relay; returns how many
/// new messages were shown.
///
/// # Errors
///
/// When no relay could be read.
pub async fn read(inbox: &Inbox, connected: &Connected, format: Format) -> Result<usize> {
    let mut shown = 0;
    let mut ok = 0;
    for relay in &connected.relays {
        match drain(inbox, relay, format).await {
            Ok(n) => {
                shown += n;
                ok += 1;
            }
            Err(e) => eprintln!("breakglass: warning: {e}"),
        }
    }
    if ok == 0 {
        bail!("could not read from any relay");
    }
    if shown == 0 && format == Format::Human {
        eprintln!("no new messages");
    }
    Ok(shown)
}

async fn drain(inbox: &Inbox, relay: &RelayConn, format: Format) -> Result<usize, NetError> {
    let name = relay.relay.name.clone();
    let mut after = None;
    let mut shown = 0;
    loop {
        let request = Request::Fetch {
            after,
            limit: FETCH_BATCH,
        };
        let Response::Messages { items } = relay.request(&request).await? else {
            return Ok(shown);
        };
        let Some(last) = items.last() else {
            return Ok(shown);
        };
        after = Some(last.seq);
        let (acks, new) = handle_batch(inbox, &name, &items, format);
        shown += new;
        if !acks.is_empty() {
            relay.request(&Request::Ack { seqs: acks }).await?;
        }
    }
}

/// Stays subscribed to one relay, printing messages as they arrive, reconnecting when the
/// connection drops. Returns only when the relay refuses us for good, with its reason.
pub async fn follow(
    inbox: Arc<Inbox>,
    session: Arc<SessionParts>,
    index: usize,
    format: Format,
) -> NetError {
    let entry = &session.relays[index];
    let mut conn = session.initial[index]
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    loop {
        let relay = match conn.take() {
            Some(r) => r,
            None => {
                match crate::net::connect(entry, session.me.signing_key(), session.timeout).await {
                    Ok(r) => {
                        eprintln!("breakglass: reconnected to relay {}", entry.name);
                        r
                    }
                    // Removed from the roster while away: retrying cannot help.
                    Err(e @ NetError::NotMember { .. }) => return e,
                    Err(e) => {
                        eprintln!("breakglass: warning: {e}; retrying in {RECONNECT_DELAY:?}");
                        tokio::time::sleep(RECONNECT_DELAY).await;
                        continue;
                    }
                }
            }
        };
        let err = subscribe_once(&inbox, &relay, format).await;
        if matches!(err, NetError::NotMember { .. }) {
            return err;
        }
        eprintln!("breakglass: warning: {err}; reconnecting in {RECONNECT_DELAY:?}");
        tokio::time::sleep(RECONNECT_DELAY).await;
    }
}

/// What `follow` needs to reconnect on its own.
pub struct SessionParts {
    /// The relays configured.
    pub relays: Vec<crate::config::RelayEntry>,
    /// Connections already open, taken by the first round of `follow`.
    pub initial: Vec<Mutex<Option<RelayConn>>>,
    /// The member key.
    pub me: Arc<MemberSecret>,
    /// The connect deadline.
    pub timeout: Duration,
}

async fn subscribe_once(inbox: &Inbox, relay: &RelayConn, format: Format) -> NetError {
    let mut recv = match relay.send_request(&Request::Subscribe).await {
        Ok(r) => r,
        Err(e) => return e,
    };
    loop {
        let items = match relay.read_response(&mut recv).await {
            Ok(Response::Messages { items }) => items,
            Ok(other) => {
                return NetError::Protocol {
                    relay: relay.relay.name.clone(),
                    reason: format!("unexpected answer to subscribe: {other:?}"),
                }
            }
            // A closed connection already reports the relay's reason here; waiting for
            // it to close instead would hang when only this stream ended.
            Err(e) => return e,
        };
        let (acks, _) = handle_batch(inbox, &relay.relay.name, &items, format);
        if !acks.is_empty() {
            if let Err(e) = relay.request(&Request::Ack { seqs: acks }).await {
                return e;
            }
        }
    }
}

/// Follows every relay until Ctrl-C.
///
/// # Errors
///
/// When every relay has refused us for good (we were removed from the roster), so that
/// a script or a terminal sees the tail end with a failure.
pub async fn tail(inbox: Arc<Inbox>, parts: Arc<SessionParts>, format: Format) -> Result<()> {
    let tasks: Vec<_> = (0..parts.relays.len())
        .map(|i| tokio::spawn(follow(inbox.clone(), parts.clone(), i, format)))
        .collect();
    tokio::select! {
        ended = join_all(tasks) => {
            let reasons: Vec<String> = ended
                .into_iter()
                .map(|e| e.map_or_else(|j| j.to_string(), |e| e.to_string()))
                .collect();
            bail!("stopped following: {}", reasons.join("; "))
        }
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

/// Interactive line mode on a channel: each line typed is sent, messages arriving are
/// printed as they come. `/quit` or end of input leaves.
///
/// # Errors
///
/// When standard input cannot be read.
pub async fn chat(
    session: &mut Session,
    connected: &Connected,
    inbox: Arc<Inbox>,
    parts: Arc<SessionParts>,
    to: &Destination,
) -> Result<()> {
    eprintln!(
        "chat on {to} as {}: type a line and Enter to send; /quit to leave",
        session.config.name
    );
    let followers: Vec<_> = (0..parts.relays.len())
        .map(|i| {
            let follower = follow(inbox.clone(), parts.clone(), i, Format::Human);
            tokio::spawn(async move { eprintln!("breakglass: error: {}", follower.await) })
        })
        .collect();
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        let line = tokio::select! {
            line = lines.next_line() => line?,
            _ = tokio::signal::ctrl_c() => None,
        };
        let Some(line) = line else { break };
        let text = line.trim_end();
        if text == "/quit" {
            break;
        }
        if text.is_empty() {
            continue;
        }
        if let Err(e) = send(session, connected, to, text, Format::Human).await {
            eprintln!("breakglass: error: {e:#}");
        }
    }
    followers.iter().for_each(|f| f.abort());
    Ok(())
}
