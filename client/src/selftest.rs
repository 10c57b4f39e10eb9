//! `breakglass selftest`: proof, on a schedule, that the channel works end to end.
//!
//! For each configured relay, in parallel and within one overall deadline: connect and
//! check the pinned relay key, authenticate, fetch and verify the roster against the pinned
//! root key, compare clocks, send an end-to-end encrypted canary to ourselves, receive it,
//! verify and decrypt it, and time the round trip. Canaries are sealed as
//! [`ContentKind::Canary`], so `read`, `tail` and `chat` never show them, and the relay
//! cannot tell them from real traffic.
//!
//! Exit codes follow the monitoring-plugin convention: 0 OK, 1 WARNING, 2 CRITICAL,
//! 3 UNKNOWN (the test itself could not run: no readable configuration).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use breakglass_keygen::keyio;
use breakglass_protocol::envelope::{self, Content, ContentKind, Destination, MessageId};
use breakglass_protocol::roster::{self, Policy, Roster, Timestamp};
use breakglass_protocol::wire::{Request, Response};
use breakglass_protocol::{KeyKind, MemberSecret};
use futures_util::future::join_all;
use rand_core::{OsRng, RngCore};
use serde::Serialize;

pub use breakglass_protocol::status::Status;

use crate::config::{ClientConfig, RelayEntry};
use crate::net::{self, RelayConn};

/// The default bound on the whole run.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// A roster expiring sooner than this is a warning.
const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 86_400);
/// Clock skew beyond this is a warning.
const SKEW_WARNING: Duration = Duration::from_secs(60);

/// What happened with one relay.
#[derive(Clone, Debug, Serialize)]
pub struct RelayReport {
    /// The relay's name.
    pub name: String,
    /// Its configured address.
    pub address: String,
    /// OK, WARNING or CRITICAL.
    pub status: Status,
    /// The canary's round trip, in milliseconds.
    pub rtt_ms: Option<f64>,
    /// The roster version the relay served.
    pub roster_version: Option<u64>,
    /// Seconds until that roster expires.
    pub roster_expires_in_s: Option<i64>,
    /// The relay's clock minus ours, in milliseconds.
    pub clock_skew_ms: Option<i64>,
    /// What went wrong or needs attention.
    pub problems: Vec<String>,
    /// The signed roster the relay served, when it verified.
    #[serde(skip)]
    pub signed_roster: Option<Vec<u8>>,
}

/// The whole run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The overall status.
    pub status: Status,
    /// The plugin exit code.
    pub code: u8,
    /// The one-line summary.
    pub summary: String,
    /// Per relay.
    pub relays: Vec<RelayReport>,
    /// When the run ended, Unix seconds.
    pub finished_at: u64,
    /// How long the run took, milliseconds.
    pub duration_ms: f64,
}

/// Runs the self-test with the configuration at `config_path` within `timeout`.
pub async fn run(config_path: &Path, timeout: Duration) -> Report {
    let started = Instant::now();
    let config = match ClientConfig::load(config_path) {
        Ok(c) => c,
        Err(e) => return failed(Status::Unknown, format!("{e:#}"), started),
    };
    // The self-test runs unattended, so a passphrase-protected key cannot be used: give a
    // probe its own unprotected key rather than a responder's.
    let me = match keyio::load_unattended(&config.key, KeyKind::Member).and_then(|k| {
        k.into_member().map_err(|reason| keyio::KeyIoError::Format {
            path: config.key.clone(),
            reason,
        })
    }) {
        Ok(k) => Arc::new(k),
        Err(e) => return failed(Status::Critical, format!("key file: {e}"), started),
    };
    let deadline = started + timeout;
    let checks = config
        .relays
        .iter()
        .map(|relay| check_within(&config, relay, me.clone(), deadline));
    let relays = join_all(checks).await;
    keep_newest_roster(&config, &relays);
    summarise(relays, started)
}

/// Keeps the newest roster a relay served, as any other command does, so a later rollback
/// is caught and `audit` can check its expiry. A failure here does not fail the test.
fn keep_newest_roster(config: &ClientConfig, relays: &[RelayReport]) {
    let newest = relays
        .iter()
        .filter_map(|r| Some((r.roster_version?, r.signed_roster.as_deref()?)))
        .max_by_key(|(version, _)| *version);
    let Some((version, signed)) = newest else {
        return;
    };
    let Ok(history) = crate::history::History::open(&config.data_dir) else {
        return;
    };
    let policy = Policy {
        now: Timestamp(0),
        min_version: 0,
    };
    let kept = history
        .roster()
        .and_then(|bytes| roster::verify(&bytes, &config.root, policy).ok())
        .map_or(0, |r| r.version);
    if version > kept {
        let _ = history.save_roster(signed);
    }
}

fn failed(status: Status, why: String, started: Instant) -> Report {
    Report {
        status,
        code: status.code(),
        summary: format!("BREAKGLASS {} - {}", status.label(), one_line(&why)),
        relays: Vec::new(),
        finished_at: unix_now(),
        duration_ms: ms(started.elapsed()),
    }
}

async fn check_within(
    config: &ClientConfig,
    relay: &RelayEntry,
    me: Arc<MemberSecret>,
    deadline: Instant,
) -> RelayReport {
    let mut report = RelayReport {
        name: relay.name.clone(),
        address: relay.address.clone(),
        status: Status::Ok,
        rtt_ms: None,
        roster_version: None,
        roster_expires_in_s: None,
        clock_skew_ms: None,
        problems: Vec::new(),
        signed_roster: None,
    };
    let budget = deadline.saturating_duration_since(Instant::now());
    let outcome =
        tokio::time::timeout(budget, check(config, relay, &me, deadline, &mut report)).await;
    let failure = match outcome {
        Err(_) => Some(format!("no result within the deadline of {budget:.1?}")),
        Ok(Err(why)) => Some(why),
        Ok(Ok(())) => None,
    };
    if let Some(why) = failure {
        report.status = Status::Critical;
        report.problems.push(why);
    }
    report
}

/// The steps of one relay's check; warnings go into `report`, failures are returned.
async fn check(
    config: &ClientConfig,
    relay: &RelayEntry,
    me: &MemberSecret,
    deadline: Instant,
    report: &mut RelayReport,
) -> Result<(), String> {
    let connect_budget = config
        .connect_timeout
        .min(deadline.saturating_duration_since(Instant::now()));
    let conn = net::connect(relay, me.signing_key(), connect_budget)
        .await
        .map_err(|e| e.to_string())?;
    let result = exchange(config, &conn, me, report).await;
    conn.close();
    result
}

async fn exchange(
    config: &ClientConfig,
    conn: &RelayConn,
    me: &MemberSecret,
    report: &mut RelayReport,
) -> Result<(), String> {
    let roster = fetch_roster(config, conn, report).await?;
    check_clock(conn, report).await?;
    let rtt = round_trip(config, conn, me, &roster).await?;
    report.rtt_ms = Some(ms(rtt));
    Ok(())
}

async fn fetch_roster(
    config: &ClientConfig,
    conn: &RelayConn,
    report: &mut RelayReport,
) -> Result<Roster, String> {
    let Response::Roster { signed } = conn
        .request(&Request::GetRoster)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Err("the relay did not send its roster".into());
    };
    let policy = Policy {
        now: Timestamp::now(),
        min_version: 0,
    };
    let roster = roster::verify(&signed, &config.root, policy)
        .map_err(|e| format!("roster refused: {e}"))?;
    if roster.member(config.name.as_str()).is_none() {
        return Err(format!(
            "{} is not in roster version {}",
            config.name, roster.version
        ));
    }
    let left = roster.expires_at.0 as i64 - Timestamp::now().0 as i64;
    report.roster_version = Some(roster.version);
    report.roster_expires_in_s = Some(left);
    report.signed_roster = Some(signed);
    if left < EXPIRY_WARNING.as_secs() as i64 {
        warn(
            report,
            format!(
                "roster expires in {:.1} days ({})",
                left as f64 / 86_400.0,
                roster.expires_at
            ),
        );
    }
    Ok(roster)
}

async fn check_clock(conn: &RelayConn, report: &mut RelayReport) -> Result<(), String> {
    let before = unix_ms();
    let answer = conn
        .request(&Request::Ping)
        .await
        .map_err(|e| e.to_string())?;
    let after = unix_ms();
    let Response::Pong { unix_ms: relay_ms } = answer else {
        return Err("the relay did not answer the clock check".into());
    };
    let midpoint = (before + after) / 2;
    let skew = relay_ms as i64 - midpoint as i64;
    report.clock_skew_ms = Some(skew);
    if skew.unsigned_abs() > SKEW_WARNING.as_millis() as u64 {
        warn(
            report,
            format!(
                "clock differs from the relay's by {:.0} s",
                skew as f64 / 1000.0
            ),
        );
    }
    Ok(())
}

/// Sends a canary to ourselves through `conn` and waits for it to come back.
async fn round_trip(
    config: &ClientConfig,
    conn: &RelayConn,
    me: &MemberSecret,
    roster: &Roster,
) -> Result<Duration, String> {
    let name = config.name.as_str();
    let mut nonce = [0u8; 16];
    OsRng.fill_bytes(&mut nonce);
    let text = format!("breakglass canary {}", MessageId(nonce));
    let content = Content {
        kind: ContentKind::Canary,
        text: text.clone(),
    };
    let (id, sealed) = envelope::seal(name, me, roster, Destination::Direct(name.into()), &content)
        .map_err(|e| format!("cannot seal the canary: {e}"))?;
    let mut stream = conn
        .send_request(&Request::Subscribe)
        .await
        .map_err(|e| e.to_string())?;
    let sent = Instant::now();
    conn.request(&Request::Send { envelope: sealed })
        .await
        .map_err(|e| format!("canary not accepted: {e}"))?;
    loop {
        let Response::Messages { items } = conn
            .read_response(&mut stream)
            .await
            .map_err(|e| format!("canary not received: {e}"))?
        else {
            return Err("unexpected answer while waiting for the canary".into());
        };
        let mut acks = Vec::new();
        let mut found = None;
        for item in &items {
            let Ok(unverified) = envelope::decode(&item.envelope) else {
                continue;
            };
            if unverified.body.header.id != id {
                if is_stale_canary(&unverified, roster, name, me) {
                    acks.push(item.seq);
                }
                continue;
            }
            acks.push(item.seq);
            let opened = unverified
                .open(roster, name, me)
                .map_err(|e| format!("canary came back altered: {e}"))?;
            if opened.content.kind != ContentKind::Canary || opened.content.text != text {
                return Err("canary came back altered: content differs".into());
            }
            found = Some(sent.elapsed());
        }
        if !acks.is_empty() {
            let _ = conn.request(&Request::Ack { seqs: acks }).await;
        }
        if let Some(rtt) = found {
            return Ok(rtt);
        }
    }
}

/// A canary from an earlier run, to be cleared from the queue.
fn is_stale_canary(
    env: &envelope::Unverified,
    roster: &Roster,
    name: &str,
    me: &MemberSecret,
) -> bool {
    env.body.header.sender == name
        && env
            .open(roster, name, me)
            .is_ok_and(|o| o.content.kind == ContentKind::Canary)
}

fn warn(report: &mut RelayReport, why: String) {
    report.status = report.status.worst(Status::Warning);
    report.problems.push(why);
}

fn summarise(relays: Vec<RelayReport>, started: Instant) -> Report {
    let total = relays.len();
    let passed = relays
        .iter()
        .filter(|r| r.status != Status::Critical)
        .count();
    let status = if total == 0 || passed == 0 {
        Status::Critical
    } else if passed < total || relays.iter().any(|r| r.status == Status::Warning) {
        Status::Warning
    } else {
        Status::Ok
    };
    let summary = summary_line(status, &relays, passed);
    Report {
        status,
        code: status.code(),
        summary,
        relays,
        finished_at: unix_now(),
        duration_ms: ms(started.elapsed()),
    }
}

/// `BREAKGLASS OK - 1/1 relays passed, ... | perfdata`.
fn summary_line(status: Status, relays: &[RelayReport], passed: usize) -> String {
    let mut text = format!(
        "BREAKGLASS {} - {passed}/{} relays passed",
        status.label(),
        relays.len()
    );
    for r in relays {
        match (&r.rtt_ms, r.problems.first()) {
            (_, Some(problem)) => {
                let _ = write!(text, "; {}: {}", r.name, one_line(problem));
            }
            (Some(rtt), None) => {
                let _ = write!(text, "; {}: canary round trip {rtt:.1} ms", r.name);
            }
            (None, None) => {}
        }
    }
    let _ = write!(text, " | relays_ok={passed};;;0;{}", relays.len());
    for r in relays {
        let label = perf_label(&r.name);
        if let Some(rtt) = r.rtt_ms {
            let _ = write!(text, " 'rtt_{label}'={:.4}s;;;0", rtt / 1000.0);
        }
        if let Some(left) = r.roster_expires_in_s {
            let _ = write!(
                text,
                " 'roster_expiry_{label}'={:.2};14;0",
                left as f64 / 86_400.0
            );
        }
    }
    text
}

/// `text` fit for the summary line: monitoring reads only its first line, and takes what
/// follows a `|` as perfdata, so neither an error that spans lines nor the text of a
/// relay's refusal may end the line or start perfdata early.
fn one_line(text: &str) -> String {
    let words = text.split(|c: char| c.is_control()).map(str::trim);
    let joined = words
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    joined.replace('|', "/")
}

fn perf_label(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The report as a node-exporter text-file.
pub fn prometheus(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP breakglass_selftest_status 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN."
    );
    let _ = writeln!(out, "# TYPE breakglass_selftest_status gauge");
    let _ = writeln!(out, "breakglass_selftest_status {}", report.code);
    let _ = writeln!(
        out,
        "# HELP breakglass_selftest_last_run_timestamp_seconds When the self-test last finished."
    );
    let _ = writeln!(
        out,
        "# TYPE breakglass_selftest_last_run_timestamp_seconds gauge"
    );
    let _ = writeln!(
        out,
        "breakglass_selftest_last_run_timestamp_seconds {}",
        report.finished_at
    );
    let _ = writeln!(
        out,
        "# HELP breakglass_selftest_relay_up 1 when the relay passed the round trip."
    );
    let _ = writeln!(out, "# TYPE breakglass_selftest_relay_up gauge");
    for r in &report.relays {
        let up = u8::from(r.status != Status::Critical);
        let _ = writeln!(
            out,
            "breakglass_selftest_relay_up{{relay=\"{}\"}} {up}",
            escape(&r.name)
        );
    }
    let _ = writeln!(
        out,
        "# HELP breakglass_selftest_rtt_seconds Canary round trip through the relay."
    );
    let _ = writeln!(out, "# TYPE breakglass_selftest_rtt_seconds gauge");
    for r in &report.relays {
        if let Some(rtt) = r.rtt_ms {
            let _ = writeln!(
                out,
                "breakglass_selftest_rtt_seconds{{relay=\"{}\"}} {}",
                escape(&r.name),
                rtt / 1000.0
            );
        }
    }
    let _ = writeln!(out, "# HELP breakglass_selftest_roster_expiry_seconds Seconds until the roster served by the relay expires.");
    let _ = writeln!(
        out,
        "# TYPE breakglass_selftest_roster_expiry_seconds gauge"
    );
    for r in &report.relays {
        if let Some(left) = r.roster_expires_in_s {
            let _ = writeln!(
                out,
                "breakglass_selftest_roster_expiry_seconds{{relay=\"{}\"}} {left}",
                escape(&r.name)
            );
        }
    }
    out
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes the text-file atomically (a temporary file in the same folder, then a rename),
/// so node-exporter never reads half of it.
///
/// # Errors
///
/// When the folder is not writable.
pub fn write_prometheus(path: &Path, report: &Report) -> Result<(), keyio::KeyIoError> {
    keyio::write_public(path, prometheus(report).as_bytes())
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn unix_now() -> u64 {
    unix_ms() / 1000
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(name: &str, status: Status) -> RelayReport {
        RelayReport {
            name: name.into(),
            address: "127.0.0.1:1".into(),
            status,
            rtt_ms: (status != Status::Critical).then_some(3.0),
            roster_version: Some(1),
            roster_expires_in_s: Some(86_400 * 30),
            clock_skew_ms: Some(0),
            problems: if status == Status::Ok {
                vec![]
            } else {
                vec!["x".into()]
            },
            signed_roster: None,
        }
    }

    #[test]
    fn all_relays_passing_is_ok() {
        let report = summarise(
            vec![relay("a", Status::Ok), relay("b", Status::Ok)],
            Instant::now(),
        );
        assert_eq!(report.status, Status::Ok);
        assert!(
            report
                .summary
                .starts_with("BREAKGLASS OK - 2/2 relays passed"),
            "{}",
            report.summary
        );
        assert!(
            report.summary.contains("| relays_ok=2;;;0;2"),
            "{}",
            report.summary
        );
    }

    #[test]
    fn some_relays_failing_is_a_warning_and_none_passing_is_critical() {
        let some = summarise(
            vec![relay("a", Status::Ok), relay("b", Status::Critical)],
            Instant::now(),
        );
        assert_eq!(some.status, Status::Warning);
        let none = summarise(vec![relay("a", Status::Critical)], Instant::now());
        assert_eq!(none.status, Status::Critical);
        assert_eq!(none.code, 2);
    }

    #[test]
    fn a_warning_on_one_relay_makes_the_run_a_warning() {
        let report = summarise(vec![relay("a", Status::Warning)], Instant::now());
        assert_eq!(report.status, Status::Warning);
    }

    #[test]
    fn the_prometheus_text_names_every_relay() {
        let report = summarise(vec![relay("a\"b", Status::Ok)], Instant::now());
        let text = prometheus(&report);
        assert!(text.contains("breakglass_selftest_status 0"), "{text}");
        assert!(
            text.contains("breakglass_selftest_relay_up{relay=\"a\\\"b\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("breakglass_selftest_rtt_seconds{relay=\"a\\\"b\"} 0.003"),
            "{text}"
        );
    }
}
