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
use futures_util::future::{join_all, select_all};
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
    let (id, request) = seal(session, &connected.roster, to, text)?;
    let answers = join_all(connected.relays.iter().map(|r| r.request(&request))).await;
    let names = connected.relays.iter().map(|r| r.relay.name.clone());
    finish_send(session, to, text, &id, names.zip(answers).collect(), format)
}

/// As [`send`], through the live connections of a long session (`chat`): a relay whose
/// connection was lost is reconnected once and tried again.
async fn send_live(
    session: &mut Session,
    roster: &Roster,
    parts: &SessionParts,
    to: &Destination,
    text: &str,
) -> Result<Record> {
    let (id, request) = seal(session, roster, to, text)?;
    let answers = join_all((0..parts.relays.len()).map(|i| parts.request(i, &request))).await;
    let names = parts.relays.iter().map(|r| r.name.clone());
    finish_send(
        session,
        to,
        text,
        &id,
        names.zip(answers).collect(),
        Format::Human,
    )
}

fn seal(
    session: &Session,
    roster: &Roster,
    to: &Destination,
    text: &str,
) -> Result<(String, Request)> {
    let content = Content {
        kind: ContentKind::Text,
        text: text.to_string(),
    };
    let name = session.config.name.as_str();
    let (id, bytes) = envelope::seal(name, &session.me, roster, to.clone(), &content)?;
    Ok((id.to_string(), Request::Send { envelope: bytes }))
}

/// Counts the relays that accepted, records the message and says where it went.
fn finish_send(
    session: &mut Session,
    to: &Destination,
    text: &str,
    id: &str,
    answers: Vec<(String, Result<Response, NetError>)>,
    format: Format,
) -> Result<Record> {
    let mut accepted = Vec::new();
    for (relay, answer) in answers {
        match answer {
            Ok(Response::Accepted { .. }) => accepted.push(relay),
            Ok(other) => {
                eprintln!("breakglass: warning: relay {relay}: unexpected answer {other:?}")
            }
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
    /// A new, verified message, printed and recorded.
    Shown(Record),
    /// A new, verified message that could not be printed; not recorded, so that it is
    /// shown when delivered again.
    Unprinted(std::io::Error),
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

    /// Handles one envelope from `relay`: a new message is printed in `format`, then
    /// recorded as seen only once it was printed.
    pub fn accept(&self, relay: &str, delivery: &Delivery, format: Format) -> Outcome {
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
        // Held from the check to the record, so two relays delivering the same message
        // at once show it once.
        let mut history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        if history.seen(&record.id) {
            return Outcome::Duplicate;
        }
        if let Err(e) = print(&record, format) {
            return Outcome::Unprinted(e);
        }
        if let Err(e) = history.record(&record) {
            eprintln!("breakglass: warning: cannot record a message in the local history: {e:#}");
        }
        Outcome::Shown(record)
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

/// Prints a message and flushes it, so that a failure is known before it is acknowledged.
///
/// # Errors
///
/// When standard output cannot be written (a closed pipe, a full disk).
pub fn print(record: &Record, format: Format) -> std::io::Result<()> {
    let line = match format {
        Format::Json => serde_json::to_string(record).map_err(std::io::Error::other)?,
        Format::Human => human(record),
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}

/// The human form of a message: one header line; any further lines of the text are
/// indented under it, so that a sender cannot forge what looks like another message.
fn human(record: &Record) -> String {
    let text = printable(&record.text);
    let mut lines = text.split('\n');
    let first = lines.next().unwrap_or_default();
    let mut out = format!(
        "[{}] {} → {} (verified): {first}",
        record.sent_at, record.from, record.to
    );
    for line in lines {
        out.push_str("\n    | ");
        out.push_str(line);
    }
    out
}

/// Replaces control characters (other than newline and tab) and the format characters
/// that reorder or hide text (bidi overrides, embeddings and isolates, direction marks)
/// so a message can neither drive the terminal nor disguise what it says.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if (c.is_control() && c != '\n' && c != '\t') || reorders(c) {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

/// Whether `c` changes the order or the line structure text is displayed in.
fn reorders(c: char) -> bool {
    matches!(
        c,
        '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}'
            | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
    )
}

/// What became of one batch from a relay.
struct Batch {
    /// The sequence numbers to acknowledge: everything handled before any failed print,
    /// canaries excepted.
    acks: Vec<u64>,
    /// How many messages were shown.
    shown: usize,
    /// The output error that stopped the batch, if any.
    failed: Option<std::io::Error>,
}

/// Handles a batch from one relay: show, skip or refuse each, stopping at the first
/// message that cannot be printed so that it and those after it are not acknowledged.
fn handle_batch(inbox: &Inbox, relay: &str, items: &[Delivery], format: Format) -> Batch {
    let mut batch = Batch {
        acks: Vec::with_capacity(items.len()),
        shown: 0,
        failed: None,
    };
    for item in items {
        match inbox.accept(relay, item, format) {
            Outcome::Shown(_) => batch.shown += 1,
            Outcome::Unprinted(e) => {
                batch.failed = Some(e);
                break;
            }
            Outcome::Duplicate => {}
            Outcome::Canary(_) => continue,
            Outcome::Refused(why) => {
                eprintln!("breakglass: warning: relay {relay}: dropped a message that failed verification: {why}");
            }
        }
        batch.acks.push(item.seq);
    }
    batch
}

/// Why reading from one relay stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The relay could not be used.
    #[error(transparent)]
    Net(#[from] NetError),
    /// A message could not be printed; it and the ones after it were not acknowledged.
    #[error("cannot print a message (it stays on the relay): {0}")]
    Output(#[from] std::io::Error),
}

impl ReadError {
    /// Whether the reader of our output went away (`| head`): not worth an error.
    fn is_broken_pipe(&self) -> bool {
        matches!(self, ReadError::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

/// Fetches, shows and acknowledges everything waiting on every relay; returns how many
/// new messages were shown. Stops at the first message that cannot be printed; when the
/// reader of standard output went away (a broken pipe), quietly.
///
/// # Errors
///
/// When no relay could be read, or a message could not be printed.
pub async fn read(inbox: &Inbox, connected: &Connected, format: Format) -> Result<usize> {
    let mut shown = 0;
    let mut ok = 0;
    for relay in &connected.relays {
        match drain(inbox, relay, format).await {
            Ok(n) => {
                shown += n;
                ok += 1;
            }
            Err(e) if e.is_broken_pipe() => return Ok(shown),
            Err(e @ ReadError::Output(_)) => return Err(e.into()),
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

async fn drain(inbox: &Inbox, relay: &RelayConn, format: Format) -> Result<usize, ReadError> {
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
        let batch = handle_batch(inbox, &name, &items, format);
        shown += batch.shown;
        if !batch.acks.is_empty() {
            relay.request(&Request::Ack { seqs: batch.acks }).await?;
        }
        if let Some(e) = batch.failed {
            return Err(e.into());
        }
    }
}

/// Stays subscribed to one relay, printing messages as they arrive, reconnecting when the
/// connection drops, and publishing each connection in the session's slot for the relay.
/// Returns only when the relay refuses us for good, or the output fails, with why.
pub async fn follow(
    inbox: Arc<Inbox>,
    session: Arc<SessionParts>,
    index: usize,
    format: Format,
) -> ReadError {
    let mut conn = session.current(index);
    loop {
        let relay = match conn.take() {
            Some(r) => r,
            None => match session.reconnect(index).await {
                Ok(r) => r,
                // Removed from the roster while away: retrying cannot help.
                Err(e @ NetError::NotMember { .. }) => return e.into(),
                Err(e) => {
                    eprintln!("breakglass: warning: {e}; retrying in {RECONNECT_DELAY:?}");
                    tokio::time::sleep(RECONNECT_DELAY).await;
                    continue;
                }
            },
        };
        let err = subscribe_once(&inbox, &relay, format).await;
        if matches!(
            err,
            ReadError::Net(NetError::NotMember { .. }) | ReadError::Output(_)
        ) {
            return err;
        }
        eprintln!("breakglass: warning: {err}; reconnecting in {RECONNECT_DELAY:?}");
        tokio::time::sleep(RECONNECT_DELAY).await;
        // A send may have reconnected meanwhile; use its connection if it is not ours.
        conn = session
            .current(index)
            .filter(|c| c.is_open() && !c.same(&relay));
    }
}

/// The live connections of a long session (`tail`, `chat`), shared between the
/// followers, which reconnect on their own, and the sender.
pub struct SessionParts {
    /// The relays configured.
    pub relays: Vec<crate::config::RelayEntry>,
    /// The connection in use for each relay: the one opened at start, then the latest
    /// one a follower or a send reconnected.
    pub live: Vec<Mutex<Option<RelayConn>>>,
    /// The member key.
    pub me: Arc<MemberSecret>,
    /// The connect deadline.
    pub timeout: Duration,
}

impl SessionParts {
    /// The connection in use for relay `index`, if any.
    pub fn current(&self, index: usize) -> Option<RelayConn> {
        self.live[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Connects to relay `index` again, within the connect deadline, and publishes the
    /// new connection.
    ///
    /// # Errors
    ///
    /// As [`crate::net::connect`].
    pub async fn reconnect(&self, index: usize) -> Result<RelayConn, NetError> {
        let entry = &self.relays[index];
        let conn = crate::net::connect(entry, self.me.signing_key(), self.timeout).await?;
        *self.live[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(conn.clone());
        eprintln!("breakglass: reconnected to relay {}", entry.name);
        Ok(conn)
    }

    /// Sends `request` to relay `index` on its live connection; when that connection is
    /// gone, reconnects once and tries again.
    ///
    /// # Errors
    ///
    /// As [`RelayConn::request`] and [`SessionParts::reconnect`].
    pub async fn request(&self, index: usize, request: &Request) -> Result<Response, NetError> {
        if let Some(conn) = self.current(index) {
            match conn.request(request).await {
                Err(NetError::Lost { .. }) => {}
                other => return other,
            }
        }
        self.reconnect(index).await?.request(request).await
    }
}

async fn subscribe_once(inbox: &Inbox, relay: &RelayConn, format: Format) -> ReadError {
    let mut recv = match relay.send_request(&Request::Subscribe).await {
        Ok(r) => r,
        Err(e) => return e.into(),
    };
    loop {
        let items = match relay.read_response(&mut recv).await {
            Ok(Response::Messages { items }) => items,
            Ok(other) => {
                return NetError::Protocol {
                    relay: relay.relay.name.clone(),
                    reason: format!("unexpected answer to subscribe: {other:?}"),
                }
                .into()
            }
            // A closed connection already reports the relay's reason here; waiting for
            // it to close instead would hang when only this stream ended.
            Err(e) => return e.into(),
        };
        let batch = handle_batch(inbox, &relay.relay.name, &items, format);
        if !batch.acks.is_empty() {
            if let Err(e) = relay.request(&Request::Ack { seqs: batch.acks }).await {
                return e.into();
            }
        }
        if let Some(e) = batch.failed {
            return e.into();
        }
    }
}

/// Follows every relay until Ctrl-C, or until standard output fails (quietly when its
/// reader went away).
///
/// # Errors
///
/// When every relay has refused us for good (we were removed from the roster), so that
/// a script or a terminal sees the tail end with a failure; when a message cannot be
/// printed.
pub async fn tail(inbox: Arc<Inbox>, parts: Arc<SessionParts>, format: Format) -> Result<()> {
    let mut tasks: Vec<_> = (0..parts.relays.len())
        .map(|i| tokio::spawn(follow(inbox.clone(), parts.clone(), i, format)))
        .collect();
    let mut reasons = Vec::new();
    while !tasks.is_empty() {
        let (ended, _, rest) = tokio::select! {
            ended = select_all(tasks) => ended,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        tasks = rest;
        match ended {
            Ok(e) if e.is_broken_pipe() => break,
            Ok(e @ ReadError::Output(_)) => {
                tasks.iter().for_each(|t| t.abort());
                return Err(e.into());
            }
            Ok(e) => reasons.push(e.to_string()),
            Err(j) => reasons.push(j.to_string()),
        }
    }
    if reasons.is_empty() {
        return Ok(());
    }
    bail!("stopped following: {}", reasons.join("; "))
}

/// What one line typed in `chat` asks for.
#[derive(Debug, PartialEq, Eq)]
enum ChatLine<'a> {
    /// Nothing to do (an empty line).
    Skip,
    /// Leave.
    Quit,
    /// A command that does not exist.
    Unknown,
    /// Send this text.
    Send(&'a str),
}

fn chat_line(line: &str) -> ChatLine<'_> {
    let text = line.trim_end();
    if text.trim().is_empty() {
        return ChatLine::Skip;
    }
    if text == "/quit" {
        return ChatLine::Quit;
    }
    match text.strip_prefix('/') {
        Some(rest) if rest.starts_with('/') => ChatLine::Send(rest),
        Some(_) => ChatLine::Unknown,
        None => ChatLine::Send(text),
    }
}

/// Interactive line mode on a channel: each line typed is sent, messages arriving are
/// printed as they come. `/quit` or end of input leaves; `//` sends a line starting
/// with `/`.
///
/// # Errors
///
/// When standard input cannot be read.
pub async fn chat(
    session: &mut Session,
    roster: &Roster,
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
        let text = match chat_line(&line) {
            ChatLine::Skip => continue,
            ChatLine::Quit => break,
            ChatLine::Unknown => {
                eprintln!("unknown command; /quit leaves; start a line with // to send a line starting with /");
                continue;
            }
            ChatLine::Send(text) => text,
        };
        if let Err(e) = send_live(session, roster, &parts, to, text).await {
            eprintln!("breakglass: error: {e:#}");
        }
    }
    followers.iter().for_each(|f| f.abort());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(text: &str) -> Record {
        Record {
            id: "00".into(),
            direction: "in".into(),
            from: "mallory".into(),
            to: "bob".into(),
            sent_at: "2024-01-01T00:00:00Z".into(),
            text: text.into(),
            verified: true,
            relay: "dev".into(),
        }
    }

    #[test]
    fn continuation_lines_are_indented_so_they_cannot_pose_as_messages() {
        let forged = "hi\n[2024-01-01T00:00:00Z] alice → bob (verified): wire the money";
        let shown = human(&record(forged));
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].ends_with("(verified): hi"), "{shown}");
        assert_eq!(
            lines[1],
            "    | [2024-01-01T00:00:00Z] alice → bob (verified): wire the money"
        );
    }

    #[test]
    fn bidi_controls_and_terminal_controls_are_replaced() {
        let text = "a\u{202e}b\u{2066}c\u{2069}d\u{200f}e\u{1b}[2Jf\rg\u{2028}h\tz";
        let shown = printable(text);
        assert_eq!(
            shown,
            "a\u{fffd}b\u{fffd}c\u{fffd}d\u{fffd}e\u{fffd}[2Jf\u{fffd}g\u{fffd}h\tz"
        );
    }

    #[test]
    fn chat_lines_starting_with_a_slash_are_commands_unless_doubled() {
        assert_eq!(chat_line("/quit"), ChatLine::Quit);
        assert_eq!(chat_line("/quti"), ChatLine::Unknown);
        assert_eq!(chat_line("//x"), ChatLine::Send("/x"));
        assert_eq!(chat_line("   "), ChatLine::Skip);
        assert_eq!(chat_line("hello  "), ChatLine::Send("hello"));
    }
}
