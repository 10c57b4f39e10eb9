//! `breakglass audit`: the independence report.
//!
//! Lists every dependency of the backup path (how each relay is found and reached, what
//! the client trusts, where its files live, what the machine's proxy settings imply) and
//! compares each with the `[primary]` table of the configuration, which describes the
//! corporate stack that breakglass must survive.
//!
//! Couplings get one of three statuses: `independent` (shown to share nothing with the
//! primary stack), `shared` (shares something with it, so the backup can fall with the
//! primary), or `unknown` (cannot be shown either way from this machine, such as who runs
//! a DNS resolver). Two checks are hygiene rather than couplings, and have statuses of
//! their own: the key file's mode (`ok` or `warning`) and the expiry of the roster kept in
//! the data folder (`ok`, `warning` within 14 days, `expired`, or `unknown` before one has
//! been fetched). A key that others can read is a `warning`, not `unknown`: the client
//! refuses to load it, which is a chore for the operator, not a dependency on the primary.
//!
//! Only `shared` changes the exit code: 0 when nothing is shared (unknowns and warnings
//! allowed, and counted in the summary line), 1 when anything is shared, 3 when the
//! configuration cannot be read.
//!
//! The audit reads local files and the environment only. It does no DNS lookup and no
//! network I/O, so it answers the same while the network is down, and it needs no key
//! passphrase.

use std::fmt::Write as _;
use std::fs::File;
use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use breakglass_protocol::roster::{self, Policy, RosterError, Timestamp, MAX_ROSTER};
use serde::Serialize;

use crate::config::{ClientConfig, PrimaryStack, RelayEntry};

/// The environment variable that overrides where the resolver configuration is read.
pub const RESOLV_CONF_VAR: &str = "BREAKGLASS_RESOLV_CONF";
/// Where the resolver configuration is read by default.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";
/// The environment variable that overrides where the hosts file is read.
pub const HOSTS_VAR: &str = "BREAKGLASS_HOSTS";
/// Where the hosts file is read by default.
pub const HOSTS: &str = "/etc/hosts";
/// The proxy variables that programs on this machine honour.
pub const PROXY_VARS: [&str; 6] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
];
/// A roster expiring sooner than this is a warning.
const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 86_400);
/// At most this much of the resolver configuration is read.
const MAX_RESOLV_CONF: u64 = 64 * 1024;
/// At most this many nameservers are taken from it.
const MAX_NAMESERVERS: usize = 16;
/// At most this many hosts-file entries are taken.
const MAX_HOSTS_ENTRIES: usize = 4096;
/// Subjects and details longer than this are cut.
const MAX_FIELD: usize = 1000;

/// How one dependency relates to the primary stack, or how a hygiene check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Coupling: shares nothing with the primary stack.
    Independent,
    /// Coupling: shares something with the primary stack.
    Shared,
    /// Coupling, or the roster before one was fetched: cannot be told from here.
    Unknown,
    /// Hygiene: as it should be.
    Ok,
    /// Hygiene: needs attention soon.
    Warning,
    /// Hygiene: the kept roster has expired.
    Expired,
}

impl Status {
    /// The status as the table and JSON show it.
    pub fn label(self) -> &'static str {
        match self {
            Status::Independent => "independent",
            Status::Shared => "shared",
            Status::Unknown => "unknown",
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Expired => "expired",
        }
    }
}

/// One line of the report.
#[derive(Clone, Debug, Serialize)]
pub struct Item {
    /// What kind of dependency: `identity`, `trust`, `dns`, `network`, `proxy`,
    /// `location`, `key-mode` or `roster`.
    pub check: &'static str,
    /// Which one: a relay name, `root`, `config`, `key`, `data`, a variable name.
    pub subject: String,
    /// How it relates to the primary stack.
    pub status: Status,
    /// Why, in one line.
    pub detail: String,
}

impl Item {
    fn new(check: &'static str, subject: &str, status: Status, detail: String) -> Self {
        Item {
            check,
            subject: printable(subject),
            status,
            detail: printable(&detail),
        }
    }
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Lines marked `shared`.
    pub shared: usize,
    /// Lines marked `unknown`.
    pub unknown: usize,
    /// Lines marked `independent`.
    pub independent: usize,
    /// Hygiene lines marked `ok`.
    pub ok: usize,
    /// Hygiene lines marked `warning`.
    pub warning: usize,
    /// Hygiene lines marked `expired`.
    pub expired: usize,
    /// The exit code: 0 when nothing is shared, 1 otherwise.
    pub code: u8,
    /// The one-line summary.
    pub summary: String,
    /// Every dependency, in the order checked.
    pub items: Vec<Item>,
}

/// What the audit reads besides the configuration, gathered once so the checks are pure.
#[derive(Clone, Debug)]
pub struct Surroundings {
    /// The proxy variables that are set (non-empty), as name and value.
    pub proxy_vars: Vec<(String, String)>,
    /// Where the resolver configuration was read.
    pub resolv_conf: PathBuf,
    /// Its nameservers, or why it could not be read.
    pub nameservers: Result<Vec<IpAddr>, String>,
    /// Where the hosts file was read.
    pub hosts_file: PathBuf,
    /// Its entries as (address, names); empty when it could not be read.
    pub hosts: Vec<(IpAddr, Vec<String>)>,
    /// The time the roster's expiry is checked against.
    pub now: Timestamp,
}

impl Surroundings {
    /// Reads the proxy variables and the resolver configuration of this process and
    /// machine (`BREAKGLASS_RESOLV_CONF` overrides `/etc/resolv.conf`).
    pub fn of_this_machine() -> Self {
        let proxy_vars = PROXY_VARS
            .iter()
            .filter_map(|name| {
                let value = std::env::var_os(name)?.to_string_lossy().trim().to_string();
                (!value.is_empty()).then(|| (name.to_string(), value))
            })
            .collect();
        let resolv_conf = std::env::var_os(RESOLV_CONF_VAR)
            .filter(|v| !v.is_empty())
            .map_or_else(|| PathBuf::from(RESOLV_CONF), PathBuf::from);
        let nameservers = read_nameservers(&resolv_conf);
        let hosts_file = std::env::var_os(HOSTS_VAR)
            .filter(|v| !v.is_empty())
            .map_or_else(|| PathBuf::from(HOSTS), PathBuf::from);
        let hosts = read_bounded(&hosts_file, MAX_RESOLV_CONF)
            .map(|b| parse_hosts(&String::from_utf8_lossy(&b)))
            .unwrap_or_default();
        Surroundings {
            proxy_vars,
            resolv_conf,
            nameservers,
            hosts_file,
            hosts,
            now: Timestamp::now(),
        }
    }
}

/// Loads the configuration at `config_path` and audits it against this machine.
///
/// # Errors
///
/// When the configuration cannot be read or is invalid (exit code 3).
pub fn run(config_path: &Path) -> anyhow::Result<Report> {
    let config = ClientConfig::load(config_path)?;
    Ok(audit(&config, &Surroundings::of_this_machine()))
}

/// Audits `config` against `env`.
pub fn audit(config: &ClientConfig, env: &Surroundings) -> Report {
    let empty = PrimaryStack::default();
    let primary = config.primary.as_ref().unwrap_or(&empty);
    let mut items = vec![identity(), trust_root(config)];
    for relay in &config.relays {
        items.push(trust_relay(relay));
        items.push(dns(relay, primary, env));
        items.push(network(relay, primary));
    }
    items.extend(proxies(config, primary, env));
    let files = [
        ("config", &config.path, "the configuration"),
        ("key", &config.key, "the secret key"),
        ("data", &config.data_dir, "the message history"),
    ];
    items.extend(files.map(|(subject, path, what)| location(subject, path, what, primary)));
    items.push(key_mode(&config.key));
    items.push(kept_roster(config, env.now));
    Report::new(items, config.primary.is_some())
}

impl Report {
    fn new(items: Vec<Item>, has_primary: bool) -> Self {
        let count = |s: Status| items.iter().filter(|i| i.status == s).count();
        let mut report = Report {
            shared: count(Status::Shared),
            unknown: count(Status::Unknown),
            independent: count(Status::Independent),
            ok: count(Status::Ok),
            warning: count(Status::Warning),
            expired: count(Status::Expired),
            code: 0,
            summary: String::new(),
            items,
        };
        report.code = u8::from(report.shared > 0);
        report.summary = report.summary_line(has_primary);
        report
    }

    fn summary_line(&self, has_primary: bool) -> String {
        let mut line = if self.shared > 0 {
            format!(
                "breakglass audit: SHARED - {} shared with the primary stack, {} unknown, \
                 {} independent",
                plural(self.shared, "dependency", "dependencies"),
                self.unknown,
                self.independent
            )
        } else {
            format!(
                "breakglass audit: INDEPENDENT - nothing shared with the primary stack; \
                 {} independent, {} unknown (not provable from this machine)",
                self.independent, self.unknown
            )
        };
        if self.warning + self.expired > 0 {
            let warnings = plural(
                self.warning + self.expired,
                "hygiene warning",
                "hygiene warnings",
            );
            let _ = write!(line, "; {warnings}");
        }
        if !has_primary {
            line.push_str(
                "; no [primary] table in the config, so only well-known couplings were checked",
            );
        }
        line
    }

    /// The report as a table for people (`STATUS  CHECK  DETAIL`), then the summary line.
    pub fn table(&self) -> String {
        let rows: Vec<(&str, String, &str)> = self
            .items
            .iter()
            .map(|i| {
                (
                    i.status.label(),
                    format!("{} {}", i.check, i.subject),
                    &*i.detail,
                )
            })
            .collect();
        let status_w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(6);
        let check_w = rows
            .iter()
            .map(|r| r.1.chars().count())
            .max()
            .unwrap_or(0)
            .max(5);
        let mut out = format!("{:status_w$}  {:check_w$}  DETAIL\n", "STATUS", "CHECK");
        for (status, check, detail) in rows {
            let _ = writeln!(out, "{status:status_w$}  {check:check_w$}  {detail}");
        }
        let _ = writeln!(out, "\n{}", self.summary);
        out
    }
}

fn identity() -> Item {
    Item::new(
        "identity",
        "login",
        Status::Independent,
        "no IdP, SSO, MFA or push step: breakglass authenticates with the member key only, \
         and membership comes from the root-signed roster, not a directory or SCIM"
            .into(),
    )
}

fn trust_root(config: &ClientConfig) -> Item {
    Item::new(
        "trust",
        "root",
        Status::Independent,
        format!(
            "pinned root key {}: rosters are verified against it alone; no CA, no system \
             trust store",
            config.root.fingerprint()
        ),
    )
}

fn trust_relay(relay: &RelayEntry) -> Item {
    Item::new(
        "trust",
        &relay.name,
        Status::Independent,
        format!(
            "pinned relay key {}: the handshake is checked against it alone; no CA, no \
             WebPKI, no corporate PKI",
            relay.key.fingerprint()
        ),
    )
}

/// How a relay's configured address would be reached.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Address {
    /// An IP literal: no DNS.
    Literal(IpAddr),
    /// A host name, lowercased, without a trailing dot.
    Host(String),
    /// Not `host:port`; the client refuses it too.
    Malformed,
}

/// Classifies an address the way [`crate::net::resolve`] treats it, without resolving.
fn classify(address: &str) -> Address {
    if let Ok(addr) = address.parse::<SocketAddr>() {
        return Address::Literal(addr.ip());
    }
    let Some((host, port)) = address.rsplit_once(':') else {
        return Address::Malformed;
    };
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Address::Malformed;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => Address::Literal(ip),
        Err(_) => Address::Host(normal_host(host)),
    }
}

fn normal_host(host: &str) -> String {
    host.trim()
        .trim_start_matches("*.")
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

fn malformed(check: &'static str, relay: &RelayEntry) -> Item {
    Item::new(
        check,
        &relay.name,
        Status::Unknown,
        format!(
            "address {:?} is not host:port, and the client cannot use it",
            relay.address
        ),
    )
}

/// Which resolver a relay's address depends on.
fn dns(relay: &RelayEntry, primary: &PrimaryStack, env: &Surroundings) -> Item {
    let host = match classify(&relay.address) {
        Address::Literal(ip) => {
            let detail = format!("{ip} is an IP literal: no DNS needed");
            return Item::new("dns", &relay.name, Status::Independent, detail);
        }
        Address::Host(host) => host,
        Address::Malformed => return malformed("dns", relay),
    };
    // With the usual `hosts: files dns` in nsswitch.conf, a listed name never reaches DNS.
    if let Some((ip, _)) = env
        .hosts
        .iter()
        .find(|(_, names)| names.iter().any(|n| n.eq_ignore_ascii_case(&host)))
    {
        let detail = format!(
            "{host} is listed in {} as {ip}: no DNS lookup while nsswitch.conf reads files first",
            env.hosts_file.display()
        );
        return Item::new("dns", &relay.name, Status::Independent, detail);
    }
    let source = env.resolv_conf.display();
    let servers = match &env.nameservers {
        Err(why) => {
            let detail = format!("depends on DNS for {host}: {source} unreadable ({why})");
            return Item::new("dns", &relay.name, Status::Unknown, detail);
        }
        Ok(servers) if servers.is_empty() => {
            let detail = format!(
                "depends on DNS for {host}: no nameserver in {source}, so the system falls \
                 back to a resolver on this machine"
            );
            return Item::new("dns", &relay.name, Status::Unknown, detail);
        }
        Ok(servers) => servers,
    };
    if let Some(shared) = servers.iter().find(|s| primary.dns_resolvers.contains(s)) {
        let detail = format!(
            "depends on DNS for {host}: resolver {shared} (from {source}) is a primary \
             resolver in primary.dns_resolvers"
        );
        return Item::new("dns", &relay.name, Status::Shared, detail);
    }
    let listed = join(servers.iter().map(|s| resolver_label(*s)));
    let detail = format!(
        "depends on DNS for {host}: resolver {listed} (from {source}); use an IP literal to \
         need none"
    );
    Item::new("dns", &relay.name, Status::Unknown, detail)
}

fn resolver_label(ip: IpAddr) -> String {
    if ip.is_loopback() {
        format!("{ip} (a local stub whose upstream is not visible here)")
    } else {
        ip.to_string()
    }
}

/// Whether a relay's address lies inside the primary stack's networks or names.
fn network(relay: &RelayEntry, primary: &PrimaryStack) -> Item {
    match classify(&relay.address) {
        Address::Literal(ip) => network_of_ip(relay, ip, primary),
        Address::Host(host) => network_of_host(relay, &host, primary),
        Address::Malformed => malformed("network", relay),
    }
}

fn network_of_ip(relay: &RelayEntry, ip: IpAddr, primary: &PrimaryStack) -> Item {
    let ip = canonical_ip(ip);
    if let Some(range) = primary.tenant_ranges.iter().find(|r| r.contains(&ip)) {
        let detail = format!("{ip} is inside primary tenant range {range}");
        return Item::new("network", &relay.name, Status::Shared, detail);
    }
    if primary.tenant_ranges.is_empty() {
        let hint = if is_private(ip) {
            " (a private address: most likely a corporate network)"
        } else {
            ""
        };
        let detail = format!("no primary.tenant_ranges to compare {ip} with{hint}");
        return Item::new("network", &relay.name, Status::Unknown, detail);
    }
    let detail = format!(
        "{ip} is outside every primary tenant range ({} listed)",
        primary.tenant_ranges.len()
    );
    Item::new("network", &relay.name, Status::Independent, detail)
}

/// An IPv4 address written as IPv4-mapped IPv6 is compared as IPv4.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            // 100.64.0.0/10 is carrier-grade NAT, as private as RFC 1918 space for our purpose.
            v4.is_private() || v4.is_link_local() || (a == 100 && (b & 0xc0) == 64)
        }
        IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

fn network_of_host(relay: &RelayEntry, host: &str, primary: &PrimaryStack) -> Item {
    let groups = [
        ("IdP", &primary.idp_hosts),
        ("SSO", &primary.sso_hosts),
        ("MDM", &primary.mdm_hosts),
    ];
    for (what, hosts) in groups {
        if let Some(parent) = hosts.iter().find(|h| is_within(host, h)) {
            let detail = format!("{host} is within primary {what} host {parent}");
            return Item::new("network", &relay.name, Status::Shared, detail);
        }
    }
    let detail = format!(
        "{host} is a host name: its address, and so whether it lies in a tenant range, is \
         known only after DNS (the audit does no lookup)"
    );
    Item::new("network", &relay.name, Status::Unknown, detail)
}

/// Whether `host` equals `parent` or is a name under it.
fn is_within(host: &str, parent: &str) -> bool {
    let parent = normal_host(parent);
    !parent.is_empty()
        && (host == parent
            || host
                .strip_suffix(parent.as_str())
                .is_some_and(|rest| rest.ends_with('.')))
}

/// One line per proxy variable set, or one line saying none is.
fn proxies(config: &ClientConfig, primary: &PrimaryStack, env: &Surroundings) -> Vec<Item> {
    if env.proxy_vars.is_empty() {
        let detail = "no proxy variable set; breakglass never uses a proxy anyway".to_string();
        return vec![Item::new(
            "proxy",
            "environment",
            Status::Independent,
            detail,
        )];
    }
    let by_name: Vec<&str> = config
        .relays
        .iter()
        .filter(|r| matches!(classify(&r.address), Address::Host(_)))
        .map(|r| r.name.as_str())
        .collect();
    env.proxy_vars
        .iter()
        .map(|(name, value)| proxy(name, value, &by_name, primary))
        .collect()
}

fn proxy(name: &str, value: &str, by_name: &[&str], primary: &PrimaryStack) -> Item {
    let host = proxy_host(value);
    let listed = primary
        .proxies
        .iter()
        .any(|p| host_part(&proxy_host(p)) == host_part(&host));
    let which = if listed { " (a primary proxy)" } else { "" };
    let head = format!("{name} points at {host}{which}: breakglass never uses a proxy");
    if by_name.is_empty() {
        let detail = format!(
            "{head}, and no relay is given by host name; but the variable says this \
             machine's traffic policy is the primary stack's"
        );
        return Item::new("proxy", name, Status::Unknown, detail);
    }
    let detail = format!(
        "{head}, but relay {} is a host name, so its lookup and route follow the primary \
         stack's traffic policy",
        by_name.join(", ")
    );
    Item::new("proxy", name, Status::Shared, detail)
}

/// The `host[:port]` of a proxy URL, without scheme, credentials or path.
fn proxy_host(value: &str) -> String {
    let value = value.trim();
    let rest = value.split_once("://").map_or(value, |(_, rest)| rest);
    // Credentials go first, whatever they contain: a password with an unescaped `/` or
    // `#` must not survive into the report, even if a path with an `@` then shows wrong.
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    host.to_ascii_lowercase()
}

/// The host of `host[:port]`.
fn host_part(host_port: &str) -> String {
    match host_port.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host.to_string(),
        _ => host_port.to_string(),
    }
}

/// Whether a file or folder lives where the primary stack syncs or manages files.
fn location(subject: &str, path: &Path, what: &str, primary: &PrimaryStack) -> Item {
    let real = real_path(path);
    let shown = real.display();
    match managed_reason(&real, path, &primary.managed_folders) {
        Some(reason) => {
            let detail =
                format!("{shown} is in {reason}: the primary stack holds or controls {what}");
            Item::new("location", subject, Status::Shared, detail)
        }
        None => {
            let detail = format!("{shown} is in no known synced or managed folder");
            Item::new("location", subject, Status::Independent, detail)
        }
    }
}

/// `path` made absolute, with symbolic links resolved as far as the path exists.
fn real_path(path: &Path) -> PathBuf {
    let absolute = std::env::current_dir().map_or_else(|_| path.to_path_buf(), |d| d.join(path));
    let mut missing = Vec::new();
    let mut existing = absolute.as_path();
    loop {
        if let Ok(real) = std::fs::canonicalize(existing) {
            return missing.iter().rev().fold(real, |p, name| p.join(name));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name.to_os_string());
                existing = parent;
            }
            _ => return absolute,
        }
    }
}

/// Why `real` (or `given`, as configured) is managed by the primary stack, if it is.
fn managed_reason(real: &Path, given: &Path, extra: &[PathBuf]) -> Option<String> {
    let forms = [real, given];
    for prefix in extra {
        let real_prefix = real_path(prefix);
        let inside = forms
            .iter()
            .any(|p| p.starts_with(prefix) || p.starts_with(&real_prefix));
        if inside {
            return Some(format!(
                "primary.managed_folders entry {}",
                prefix.display()
            ));
        }
    }
    forms
        .iter()
        .find_map(|p| synced_folder(p))
        .map(|name| format!("a synced folder ({name})"))
}

/// The well-known sync or profile-redirection folder that `path` lies in, if any.
fn synced_folder(path: &Path) -> Option<String> {
    let parts: Vec<String> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    if path.is_absolute() && is_windows_profile(&parts) {
        return Some(format!("/mnt/{}/Users", parts[1]));
    }
    if let Some(pair) = parts.windows(2).find(|w| is_synced_pair(&w[0], &w[1])) {
        return Some(format!("{}/{}", pair[0], pair[1]));
    }
    parts.into_iter().find(|p| is_synced_name(p))
}

/// `/mnt/c/Users/…` under WSL: the Windows profile, which the primary stack usually
/// redirects to its own cloud storage.
fn is_windows_profile(parts: &[String]) -> bool {
    parts.len() >= 3
        && parts[0] == "mnt"
        && parts[1].len() == 1
        && parts[1].chars().all(|c| c.is_ascii_alphabetic())
        && parts[2].eq_ignore_ascii_case("users")
}

/// macOS: iCloud Drive lives in `Library/Mobile Documents`, and every File Provider sync
/// client (OneDrive, Google Drive, Dropbox, Box) in `Library/CloudStorage`.
fn is_synced_pair(first: &str, second: &str) -> bool {
    first == "Library" && (second == "Mobile Documents" || second == "CloudStorage")
}

fn is_synced_name(name: &str) -> bool {
    // `OneDrive - Contoso` and `Dropbox (Contoso)` are the business clients' folders.
    const EXACT: [&str; 6] = [
        "onedrive",
        "dropbox",
        "google drive",
        "icloud drive",
        "box sync",
        "my drive",
    ];
    const PREFIX: [&str; 3] = ["onedrive - ", "dropbox (", "googledrive-"];
    let name = name.to_lowercase();
    EXACT.contains(&name.as_str()) || PREFIX.iter().any(|p| name.starts_with(p))
}

/// Hygiene: the key file should be readable by its owner only.
fn key_mode(path: &Path) -> Item {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            let detail = format!("cannot read {}: {e}", path.display());
            return Item::new("key-mode", "key", Status::Warning, detail);
        }
    };
    let mode = meta.mode() & 0o777;
    if mode & 0o077 == 0 {
        let detail = format!("mode {mode:04o}: only its owner can read it");
        return Item::new("key-mode", "key", Status::Ok, detail);
    }
    let detail = format!(
        "mode {mode:04o}: group or others can read it, so breakglass refuses to load it \
         (run `chmod 600 {}` if it has not leaked)",
        path.display()
    );
    Item::new("key-mode", "key", Status::Warning, detail)
}

/// Hygiene: the roster kept in the data folder, verified against the pinned root key.
fn kept_roster(config: &ClientConfig, now: Timestamp) -> Item {
    let path = config.data_dir.join("roster.signed");
    let signed = match read_bounded(&path, MAX_ROSTER as u64 + 1) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let detail = format!(
                "no roster fetched yet into {} (any command that reaches a relay keeps one)",
                real_path(&config.data_dir).display()
            );
            return Item::new("roster", "roster.signed", Status::Unknown, detail);
        }
        Err(e) => {
            let detail = format!("cannot read {}: {e}", path.display());
            return Item::new("roster", "roster.signed", Status::Warning, detail);
        }
    };
    let policy = Policy {
        now,
        min_version: 0,
    };
    let (status, detail) = match roster::verify(&signed, &config.root, policy) {
        Ok(roster) => roster_expiry(roster.version, roster.expires_at, now),
        Err(RosterError::Expired(when)) => (
            Status::Expired,
            format!("expired at {when}: relays refuse it too; sign and push a new one"),
        ),
        Err(e) => (Status::Warning, format!("does not verify: {e}")),
    };
    Item::new("roster", "roster.signed", status, detail)
}

fn roster_expiry(version: u64, expires_at: Timestamp, now: Timestamp) -> (Status, String) {
    let left = expires_at.0.saturating_sub(now.0);
    let days = left as f64 / 86_400.0;
    let text = format!(
        "version {version}, verified against the pinned root, expires in {days:.1} days \
         ({expires_at})"
    );
    if left < EXPIRY_WARNING.as_secs() {
        (Status::Warning, format!("{text}: sign and push a new one"))
    } else {
        (Status::Ok, text)
    }
}

/// The nameservers of a resolver configuration file, read with a bound on its size.
///
/// # Errors
///
/// Why the file could not be read, as text for the report.
pub fn read_nameservers(path: &Path) -> Result<Vec<IpAddr>, String> {
    let bytes = read_bounded(path, MAX_RESOLV_CONF).map_err(|e| e.to_string())?;
    Ok(parse_nameservers(&String::from_utf8_lossy(&bytes)))
}

/// The `nameserver` lines of resolv.conf(5) text that hold an IP address, in order, at most
/// sixteen; anything else is ignored, whatever it contains.
pub fn parse_nameservers(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            if words.next()? != "nameserver" {
                return None;
            }
            // A link-local IPv6 server may carry a zone (`fe80::1%eth0`).
            let addr = words.next()?.split('%').next()?;
            addr.parse::<IpAddr>().ok()
        })
        .take(MAX_NAMESERVERS)
        .collect()
}

/// The entries of hosts(5) text: an address, then its names; comments and anything
/// unparsable are ignored.
pub fn parse_hosts(text: &str) -> Vec<(IpAddr, Vec<String>)> {
    text.lines()
        .filter_map(|line| {
            let line = line.split('#').next()?;
            let mut words = line.split_whitespace();
            let ip = words.next()?.split('%').next()?.parse::<IpAddr>().ok()?;
            let names: Vec<String> = words.map(str::to_string).collect();
            (!names.is_empty()).then_some((ip, names))
        })
        .take(MAX_HOSTS_ENTRIES)
        .collect()
}

fn read_bounded(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    File::open(path)?.take(limit).read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn join(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

/// Text from the environment or a file made safe for one line of a terminal: control
/// characters replaced, length bounded.
fn printable(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(MAX_FIELD)
        .collect();
    if text.chars().count() > MAX_FIELD {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests;
