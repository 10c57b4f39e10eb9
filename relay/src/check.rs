//! `breakglass-relay check`: the relay's health as a monitoring plugin sees it.
//!
//! It reads what the relay reads when it starts (the config, the relay key, the root key,
//! the roster in force, the store) and the free space where the store lives, and answers
//! in the monitoring-plugin convention: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN, one
//! summary line with perfdata after `|`, or one JSON object. It never touches the network.
//!
//! sled lets one process at a time open a store, so while the relay runs the check cannot
//! read it: it reports the store as in use and judges the roster from the config file
//! alone, which misses a newer roster pushed since (the relay's metrics show that one).
//! When the relay is stopped the check opens the store for a moment; a relay starting in
//! that moment fails to lock it and exits, to be restarted by its supervisor. Run the
//! check as the relay's user: opening a store may write to it, and a file it creates would
//! belong to whoever ran the check.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use breakglass_keygen::keyio;
use breakglass_protocol::roster::{self, Policy, Roster, Timestamp};
pub use breakglass_protocol::status::Status;
use breakglass_protocol::{KeyKind, SigningPublic};
use serde::Serialize;

use crate::config::RelayConfig;
use crate::server::read_roster_file;
use crate::store::{Store, StoreError};

/// A roster expiring sooner than this is a warning.
pub const ROSTER_WARN: Duration = Duration::from_secs(14 * 86_400);
/// Less free space than this on the store's file system is a warning.
pub const DISK_WARN_BYTES: u64 = 1 << 30;
/// Less free space than this share (in percent) of the file system is a warning.
pub const DISK_WARN_PERCENT: f64 = 5.0;
/// Less free space than this is critical.
pub const DISK_CRIT_BYTES: u64 = 100 << 20;

/// One thing checked and what was found.
#[derive(Debug, Serialize)]
pub struct Finding {
    /// What was checked: `config`, `relay_key`, `root_key`, `store`, `roster`, `disk`.
    pub check: &'static str,
    /// How it stands.
    pub status: Status,
    /// What was found, for a person.
    pub message: String,
}

/// A measurement for graphs (perfdata), with the levels below which it alerts.
#[derive(Debug, Serialize)]
pub struct Perf {
    /// Its label.
    pub label: &'static str,
    /// Its value.
    pub value: Value,
    /// Its unit of measure: `s`, `B`, `%` or none.
    pub unit: &'static str,
    /// A warning below this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warn_below: Option<Value>,
    /// Critical below this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crit_below: Option<Value>,
    /// The smallest possible value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<Value>,
    /// The largest possible value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<Value>,
}

/// A perfdata number.
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(untagged)]
pub enum Value {
    /// A count, a size or a number of seconds.
    Int(i64),
    /// A share.
    Float(f64),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(n) => write!(f, "{n}"),
            Value::Float(x) => write!(f, "{x:.2}"),
        }
    }
}

/// Everything one run of the check found.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// The findings in the order checked.
    pub findings: Vec<Finding>,
    /// The measurements.
    pub perf: Vec<Perf>,
}

/// The JSON form of a report.
#[derive(Serialize)]
struct JsonReport<'a> {
    status: Status,
    code: u8,
    summary: String,
    checks: &'a [Finding],
    perfdata: &'a [Perf],
}

impl Report {
    /// The worst status found; OK when nothing was checked.
    pub fn status(&self) -> Status {
        self.findings
            .iter()
            .map(|f| f.status)
            .max_by_key(|s| s.severity())
            .unwrap_or(Status::Ok)
    }

    /// `BREAKGLASS-RELAY STATUS - what was found | perfdata`.
    pub fn line(&self) -> String {
        let summary = one_line(&self.summary());
        let mut line = format!("BREAKGLASS-RELAY {} - {summary}", self.status());
        if !self.perf.is_empty() {
            let perf: Vec<String> = self.perf.iter().map(Perf::to_string).collect();
            line = format!("{line} | {}", perf.join(" "));
        }
        line
    }

    /// The report as one JSON object: `status`, `code`, `summary`, `checks`, `perfdata`.
    pub fn json(&self) -> String {
        let report = JsonReport {
            status: self.status(),
            code: self.status().code(),
            summary: self.summary(),
            checks: &self.findings,
            perfdata: &self.perf,
        };
        serde_json::to_string(&report).unwrap_or_else(|e| {
            format!(r#"{{"status":"UNKNOWN","code":3,"summary":"cannot encode report: {e}"}}"#)
        })
    }

    /// The findings worth a line, worst first: every problem, then the roster, store and
    /// disk state (a readable key or a parsing config is not news).
    fn summary(&self) -> String {
        let mut shown: Vec<&Finding> = self
            .findings
            .iter()
            .filter(|f| {
                f.status != Status::Ok || !matches!(f.check, "config" | "relay_key" | "root_key")
            })
            .collect();
        shown.sort_by_key(|f| std::cmp::Reverse(f.status.severity()));
        let texts: Vec<&str> = shown.iter().map(|f| f.message.as_str()).collect();
        texts.join("; ")
    }

    fn add(&mut self, check: &'static str, status: Status, message: impl Into<String>) {
        self.findings.push(Finding {
            check,
            status,
            message: message.into(),
        });
    }
}

/// `text` on one line: a multi-line error (a TOML parse error quotes the offending line
/// and marks the column) keeps its sentences, joined with `: `, and loses the quote.
fn one_line(text: &str) -> String {
    let is_quote = |line: &str| {
        let rest = line
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .trim_start();
        rest.starts_with('|') || rest.chars().all(|c| c == '^' || c.is_whitespace())
    };
    let parts: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !is_quote(line))
        .collect();
    parts.join(": ")
}

impl fmt::Display for Perf {
    /// Nagios perfdata: `label=value[unit];warn;crit;min;max`, where `N:` alerts below N.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let below = |v: Option<Value>| v.map_or(String::new(), |v| format!("{v}:"));
        let plain = |v: Option<Value>| v.map_or(String::new(), |v| v.to_string());
        let fields = [
            below(self.warn_below),
            below(self.crit_below),
            plain(self.min),
            plain(self.max),
        ];
        let used = fields
            .iter()
            .rposition(|s| !s.is_empty())
            .map_or(0, |i| i + 1);
        write!(f, "{}={}{}", self.label, self.value, self.unit)?;
        fields[..used].iter().try_for_each(|s| write!(f, ";{s}"))
    }
}

/// Checks the relay configured in `config_path`.
pub fn run(config_path: &Path) -> Report {
    let mut report = Report::default();
    let config = match RelayConfig::load(config_path) {
        Ok(config) => config,
        Err(e) => {
            report.add("config", Status::Unknown, format!("{e:#}"));
            return report;
        }
    };
    report.add(
        "config",
        Status::Ok,
        format!("{} parses", config_path.display()),
    );
    let relay = check_relay_key(&config, &mut report);
    let root = check_root_key(&config, config_path, &mut report);
    let stored = check_store(&config, &mut report);
    if let Some(root) = root {
        if let Some(in_force) = check_roster(&config, &root, stored, &mut report) {
            check_relay_listed(relay.as_ref(), &in_force, &mut report);
        }
    }
    check_disk(&config.data_dir, &mut report);
    report
}

/// Reads the relay's key; returns its public half when readable.
fn check_relay_key(config: &RelayConfig, report: &mut Report) -> Option<SigningPublic> {
    let public = keyio::load_unattended(&config.key, KeyKind::Relay)
        .map_err(|e| e.to_string())
        .and_then(|key| {
            SigningPublic::parse(KeyKind::Relay, &key.public_string()).map_err(|e| e.to_string())
        });
    match public {
        Ok(public) => {
            let message = format!("{} readable", config.key.display());
            report.add("relay_key", Status::Ok, message);
            Some(public)
        }
        Err(e) => {
            report.add("relay_key", Status::Critical, format!("relay key {e}"));
            None
        }
    }
}

/// Clients pin the relay keys the roster lists: a relay whose key is not among them is
/// refused by every client that learns its address from the roster.
fn check_relay_listed(relay: Option<&SigningPublic>, in_force: &Roster, report: &mut Report) {
    let Some(relay) = relay else {
        return;
    };
    if in_force.relays.is_empty() || in_force.relays.iter().any(|r| r.key == *relay) {
        return;
    }
    let message = format!(
        "the relay key {} is not the key of any relay in roster version {}",
        relay.fingerprint(),
        in_force.version
    );
    report.add("relay_key", Status::Warning, message);
}

fn check_root_key(config: &RelayConfig, path: &Path, report: &mut Report) -> Option<SigningPublic> {
    match SigningPublic::parse(KeyKind::Root, &config.root) {
        Ok(root) => {
            report.add(
                "root_key",
                Status::Ok,
                format!("root {}", root.fingerprint()),
            );
            Some(root)
        }
        Err(e) => {
            let message = format!("{}: `root` is not a root key: {e}", path.display());
            report.add("root_key", Status::Critical, message);
            None
        }
    }
}

/// What the store says about the roster.
enum Stored {
    /// The store was read; it holds this signed roster, or none.
    Read(Option<Vec<u8>>),
    /// The store could not be read (in use, missing or broken).
    Unread,
}

fn check_store(config: &RelayConfig, report: &mut Report) -> Stored {
    let dir = &config.data_dir;
    // `Store::open` writes this marker once a store is initialised; a directory without
    // it holds no store yet, and opening it would create one, which a check must not do.
    if !dir.join(crate::store::MARKER).is_file() {
        let message = format!(
            "no store in {} yet; the relay creates it when it starts",
            dir.display()
        );
        report.add("store", Status::Ok, message);
        return Stored::Read(None);
    }
    let store = match Store::open(dir, config.message_ttl) {
        Ok(store) => store,
        Err(StoreError::Locked(_)) => {
            report.add("store", Status::Ok, "store in use by a running relay");
            return Stored::Unread;
        }
        Err(e) => {
            report.add("store", Status::Critical, e.to_string());
            return Stored::Unread;
        }
    };
    let depth = store.queue_depth();
    report.perf.push(Perf::count("queue_depth", depth));
    match store.roster() {
        Ok(roster) => {
            report.add("store", Status::Ok, format!("store holds {depth} queued"));
            Stored::Read(roster)
        }
        Err(e) => {
            let message = format!("store {}: cannot read its roster: {e}", dir.display());
            report.add("store", Status::Critical, message);
            Stored::Unread
        }
    }
}

/// Judges the roster the relay would put in force, and returns it.
fn check_roster(
    config: &RelayConfig,
    root: &SigningPublic,
    stored: Stored,
    report: &mut Report,
) -> Option<Roster> {
    let any_time = Policy {
        now: Timestamp(0),
        min_version: 0,
    };
    let file = config.roster.display();
    let from_file = read_roster_file(&config.roster)
        .map_err(|e| format!("{e:#}"))
        .and_then(|bytes| {
            roster::verify(&bytes, root, any_time).map_err(|e| format!("{file}: {e}"))
        });
    let from_store = match &stored {
        Stored::Read(Some(bytes)) => Some(roster::verify(bytes, root, any_time)),
        Stored::Read(None) | Stored::Unread => None,
    };
    if let Some(Err(e)) = &from_store {
        let message = format!("the store's roster is refused and ignored: {e}");
        report.add("roster", Status::Warning, message);
    }
    let from_store = from_store.and_then(Result::ok);
    let in_force = match (from_file, from_store) {
        (Ok(file), Some(stored)) => newer(file, stored),
        (Ok(file), None) => file,
        (Err(why), Some(stored)) => {
            report.add(
                "roster",
                Status::Warning,
                format!("configured roster refused: {why}"),
            );
            stored
        }
        (Err(why), None) => {
            let message = format!("no valid roster, the relay cannot start: {why}");
            report.add("roster", Status::Critical, message);
            return None;
        }
    };
    judge_expiry(&in_force, matches!(stored, Stored::Unread), report);
    Some(in_force)
}

fn newer(a: Roster, b: Roster) -> Roster {
    if b.version > a.version {
        b
    } else {
        a
    }
}

/// Expired is critical, expiring within [`ROSTER_WARN`] a warning.
fn judge_expiry(roster: &Roster, store_unread: bool, report: &mut Report) {
    let left = seconds_until(roster.expires_at, Timestamp::now());
    let version = roster.version;
    let at = roster.expires_at;
    let (status, mut message) = if left <= 0 {
        let text = format!("roster v{version} expired at {at}; sign and push a new one");
        (Status::Critical, text)
    } else if left < duration_secs(ROSTER_WARN) {
        let text = format!(
            "roster v{version} expires in {} (at {at})",
            short_duration(left)
        );
        (Status::Warning, text)
    } else {
        let text = format!(
            "roster v{version} valid for {} (until {at})",
            short_duration(left)
        );
        (Status::Ok, text)
    };
    if store_unread {
        message.push_str(" (from the config file; a newer pushed roster cannot be seen)");
    }
    report.add("roster", status, message);
    report.perf.push(Perf::count("roster_version", version));
    report.perf.push(Perf {
        label: "roster_expiry",
        value: Value::Int(left),
        unit: "s",
        warn_below: Some(Value::Int(duration_secs(ROSTER_WARN))),
        crit_below: Some(Value::Int(0)),
        min: None,
        max: None,
    });
}

/// Seconds from `now` to `at`, negative once `at` has passed.
pub fn seconds_until(at: Timestamp, now: Timestamp) -> i64 {
    let signed = |t: Timestamp| i64::try_from(t.0).unwrap_or(i64::MAX);
    signed(at).saturating_sub(signed(now))
}

fn duration_secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// `13d 4h`, `5h 12m` or `7m 3s`.
fn short_duration(secs: i64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    match (d, h) {
        (0, 0) => format!("{m}m {s}s"),
        (0, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// Free space on the file system that holds (or will hold) the store.
fn check_disk(dir: &Path, report: &mut Report) {
    let Some(probe) = dir.ancestors().find(|p| p.exists()) else {
        report.add(
            "disk",
            Status::Unknown,
            format!("no folder of {} exists", dir.display()),
        );
        return;
    };
    let space = fs2::available_space(probe).and_then(|free| Ok((free, fs2::total_space(probe)?)));
    let (free, total) = match space {
        Ok(space) => space,
        Err(e) => {
            let message = format!("cannot measure free space at {}: {e}", probe.display());
            report.add("disk", Status::Unknown, message);
            return;
        }
    };
    let percent = if total == 0 {
        0.0
    } else {
        free as f64 * 100.0 / total as f64
    };
    let status = if free < DISK_CRIT_BYTES {
        Status::Critical
    } else if free < DISK_WARN_BYTES || percent < DISK_WARN_PERCENT {
        Status::Warning
    } else {
        Status::Ok
    };
    let message = format!(
        "{} free of {} ({percent:.0}%) at {}",
        gib(free),
        gib(total),
        probe.display()
    );
    report.add("disk", status, message);
    report.perf.push(disk_perf(free, total));
    report.perf.push(Perf {
        label: "disk_free_pct",
        value: Value::Float(percent),
        unit: "%",
        warn_below: Some(Value::Float(DISK_WARN_PERCENT)),
        crit_below: None,
        min: Some(Value::Int(0)),
        max: Some(Value::Int(100)),
    });
}

fn disk_perf(free: u64, total: u64) -> Perf {
    let bytes = |n: u64| Value::Int(i64::try_from(n).unwrap_or(i64::MAX));
    Perf {
        label: "disk_free",
        value: bytes(free),
        unit: "B",
        warn_below: Some(bytes(DISK_WARN_BYTES)),
        crit_below: Some(bytes(DISK_CRIT_BYTES)),
        min: Some(Value::Int(0)),
        max: Some(bytes(total)),
    }
}

/// A size in GiB with one decimal, or MiB below one GiB.
fn gib(bytes: u64) -> String {
    let bytes = bytes as f64;
    if bytes < f64::from(1u32 << 30) {
        format!("{:.0} MiB", bytes / f64::from(1u32 << 20))
    } else {
        format!("{:.1} GiB", bytes / f64::from(1u32 << 30))
    }
}

impl Perf {
    /// A count without thresholds.
    fn count(label: &'static str, n: u64) -> Perf {
        Perf {
            label,
            value: Value::Int(i64::try_from(n).unwrap_or(i64::MAX)),
            unit: "",
            warn_below: None,
            crit_below: None,
            min: None,
            max: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(statuses: &[Status]) -> Report {
        let mut report = Report::default();
        for (i, status) in statuses.iter().enumerate() {
            report.add("disk", *status, format!("finding {i}"));
        }
        report
    }

    #[test]
    fn the_worst_finding_decides_the_status_and_critical_beats_unknown() {
        assert_eq!(report(&[]).status(), Status::Ok);
        assert_eq!(
            report(&[Status::Ok, Status::Warning]).status(),
            Status::Warning
        );
        let mixed = [Status::Unknown, Status::Critical, Status::Warning];
        assert_eq!(report(&mixed).status(), Status::Critical);
        assert_eq!(
            report(&[Status::Warning, Status::Unknown]).status(),
            Status::Unknown
        );
    }

    #[test]
    fn the_summary_line_puts_problems_first_and_perfdata_after_a_bar() {
        let mut r = report(&[Status::Ok, Status::Warning]);
        r.perf.push(Perf::count("queue_depth", 4));
        r.perf.push(disk_perf(2 << 30, 10 << 30));
        assert_eq!(
            r.line(),
            "BREAKGLASS-RELAY WARNING - finding 1; finding 0 | queue_depth=4 \
             disk_free=2147483648B;1073741824:;104857600:;0;10737418240"
        );
    }

    #[test]
    fn passing_key_and_config_checks_stay_out_of_the_summary() {
        let mut r = Report::default();
        r.add("config", Status::Ok, "config parses");
        r.add("relay_key", Status::Critical, "relay key is world-readable");
        r.add("root_key", Status::Ok, "root fine");
        r.add("roster", Status::Ok, "roster v1");
        assert_eq!(
            r.line(),
            "BREAKGLASS-RELAY CRITICAL - relay key is world-readable; roster v1"
        );
    }

    #[test]
    fn seconds_until_is_negative_after_the_moment() {
        assert_eq!(seconds_until(Timestamp(100), Timestamp(40)), 60);
        assert_eq!(seconds_until(Timestamp(40), Timestamp(100)), -60);
        assert_eq!(seconds_until(Timestamp(u64::MAX), Timestamp(0)), i64::MAX);
    }

    #[test]
    fn durations_are_shown_in_their_two_largest_units() {
        assert_eq!(short_duration(13 * 86_400 + 4 * 3_600 + 59), "13d 4h");
        assert_eq!(short_duration(5 * 3_600 + 12 * 60), "5h 12m");
        assert_eq!(short_duration(7 * 60 + 3), "7m 3s");
    }
}
