//! `breakglass audit` end to end: the real binary on configurations written to a temporary
//! folder, with no relay running and no key passphrase to give.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use breakglass_keygen::keyio::save_key;
use breakglass_protocol::keyfile::SecretKey;
use breakglass_protocol::{KeyKind, SigningSecret};

const PROXY_VARS: [&str; 6] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// A folder holding a member key and a resolver configuration for the audit to read.
struct Setup {
    dir: tempfile::TempDir,
    resolv_conf: PathBuf,
}

impl Setup {
    fn new(nameserver: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let resolv_conf = dir.path().join("resolv.conf");
        std::fs::write(&resolv_conf, format!("nameserver {nameserver}\n")).expect("writes");
        let setup = Setup { dir, resolv_conf };
        setup.member_key("alice.key", None);
        setup
    }

    fn member_key(&self, relative: &str, passphrase: Option<&[u8]>) {
        let path = self.dir.path().join(relative);
        let key = SecretKey::generate(KeyKind::Member);
        save_key(&path, &key, passphrase, false).expect("writes the key");
    }

    /// Writes `alice.toml` with one relay at `address`, the key at `key` and `primary`
    /// appended as it is.
    fn config(&self, address: &str, key: &str, primary: &str) -> PathBuf {
        let root = SigningSecret::generate(KeyKind::Root).public();
        let relay = SigningSecret::generate(KeyKind::Relay).public();
        let text = format!(
            "name = \"alice\"\nkey = \"{key}\"\nroot = \"{root}\"\n\n\
             [[relays]]\nname = \"r1\"\naddress = \"{address}\"\nkey = \"{relay}\"\n\n\
             {primary}\n"
        );
        let path = self.dir.path().join("alice.toml");
        std::fs::write(&path, text).expect("writes the config");
        path
    }

    /// Runs `breakglass --config CONFIG audit ARGS` with no proxy variable except `proxy`.
    fn audit(&self, config: &Path, args: &[&str], proxy: Option<(&str, &str)>) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_breakglass"));
        cmd.arg("--config").arg(config).arg("audit").args(args);
        for var in PROXY_VARS {
            cmd.env_remove(var);
        }
        cmd.env_remove("BREAKGLASS_CONFIG")
            .env_remove("RUST_LOG")
            .env("BREAKGLASS_RESOLV_CONF", &self.resolv_conf)
            .stdin(Stdio::null());
        if let Some((name, value)) = proxy {
            cmd.env(name, value);
        }
        cmd.output().expect("runs breakglass")
    }
}

const PRIMARY: &str = "[primary]\n\
    idp_hosts = [\"login.corp.example\"]\n\
    sso_hosts = [\"sso.corp.example\"]\n\
    mdm_hosts = [\"mdm.corp.example\"]\n\
    dns_resolvers = [\"10.0.0.53\", \"2001:db8:c0::53\"]\n\
    proxies = [\"proxy.corp.example:3128\"]\n\
    tenant_ranges = [\"10.0.0.0/8\", \"2001:db8:c0::/48\"]\n\
    managed_folders = [\"corp-managed\"]\n";

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)))
}

/// The JSON item for `check` and `subject`.
fn item<'a>(report: &'a serde_json::Value, check: &str, subject: &str) -> &'a serde_json::Value {
    report["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["check"] == check && i["subject"] == subject)
        .unwrap_or_else(|| panic!("no {check} {subject} in {report:#}"))
}

#[test]
fn ip_literal_relays_without_a_proxy_exit_0_with_nothing_shared() {
    let setup = Setup::new("192.0.2.53");
    let config = setup.config("203.0.113.7:7443", "alice.key", PRIMARY);
    let out = setup.audit(&config, &[], None);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(text.starts_with("STATUS"), "{text}");
    assert!(!text.lines().any(|l| l.starts_with("shared")), "{text}");
    assert!(text.contains("no DNS needed"), "{text}");
    assert!(
        text.lines()
            .last()
            .is_some_and(|l| l.contains("INDEPENDENT")),
        "{text}"
    );
}

#[test]
fn the_json_report_has_counts_and_items() {
    let setup = Setup::new("192.0.2.53");
    let config = setup.config("203.0.113.7:7443", "alice.key", PRIMARY);
    let out = setup.audit(&config, &["--json"], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = json(&out);
    assert_eq!(report["shared"], 0);
    assert!(report["independent"].as_u64().expect("count") > 0);
    assert!(report["unknown"].is_u64());
    assert_eq!(item(&report, "dns", "r1")["status"], "independent");
    assert_eq!(item(&report, "identity", "login")["status"], "independent");
}

#[test]
fn a_host_name_relay_behind_a_proxy_variable_exits_1_without_the_password() {
    let setup = Setup::new("192.0.2.53");
    let config = setup.config("relay.example.net:7443", "alice.key", PRIMARY);
    let proxy = ("HTTPS_PROXY", "http://user:pw@proxy.corp.example:3128");
    let out = setup.audit(&config, &[], Some(proxy));
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    let line = text
        .lines()
        .find(|l| l.contains("proxy HTTPS_PROXY"))
        .unwrap_or_else(|| panic!("no proxy line in {text}"));
    assert!(line.starts_with("shared"), "{line}");
    assert!(line.contains("proxy.corp.example:3128"), "{line}");
    assert!(!text.contains("pw"), "{text}");
    assert!(!text.contains("user:"), "{text}");
}

#[test]
fn a_relay_inside_a_tenant_range_is_shared() {
    let setup = Setup::new("192.0.2.53");
    let config = setup.config("10.20.30.40:7443", "alice.key", PRIMARY);
    let out = setup.audit(&config, &["--json"], None);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report = json(&out);
    let network = item(&report, "network", "r1");
    assert_eq!(network["status"], "shared");
    assert!(
        network["detail"]
            .as_str()
            .is_some_and(|d| d.contains("10.0.0.0/8")),
        "{network}"
    );
}

#[test]
fn a_primary_resolver_in_resolv_conf_makes_a_host_name_relay_shared() {
    let setup = Setup::new("10.0.0.53");
    let config = setup.config("relay.example.net:7443", "alice.key", PRIMARY);
    let out = setup.audit(&config, &["--json"], None);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report = json(&out);
    let dns = item(&report, "dns", "r1");
    assert_eq!(dns["status"], "shared");
    assert!(
        dns["detail"]
            .as_str()
            .is_some_and(|d| d.contains("resolver 10.0.0.53")),
        "{dns}"
    );
}

#[test]
fn a_key_under_a_onedrive_folder_is_shared() {
    let setup = Setup::new("192.0.2.53");
    std::fs::create_dir(setup.dir.path().join("OneDrive - Contoso")).expect("mkdir");
    setup.member_key("OneDrive - Contoso/alice.key", None);
    let config = setup.config("203.0.113.7:7443", "OneDrive - Contoso/alice.key", PRIMARY);
    let out = setup.audit(&config, &["--json"], None);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report = json(&out);
    assert_eq!(item(&report, "location", "key")["status"], "shared");
    assert_eq!(item(&report, "location", "config")["status"], "independent");
}

#[test]
fn an_invalid_cidr_exits_3_naming_it() {
    let setup = Setup::new("192.0.2.53");
    let primary = "[primary]\ntenant_ranges = [\"10.0.0.0/8\", \"10.300.0.0/16\"]\n";
    let config = setup.config("203.0.113.7:7443", "alice.key", primary);
    let out = setup.audit(&config, &[], None);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.starts_with("breakglass: error: "), "{err}");
    assert!(err.contains("10.300.0.0/16"), "{err}");
    assert!(err.contains("tenant_ranges"), "{err}");
    assert!(out.stdout.is_empty(), "{}", stdout(&out));
}

#[test]
fn an_unknown_primary_field_exits_3() {
    let setup = Setup::new("192.0.2.53");
    let config = setup.config(
        "203.0.113.7:7443",
        "alice.key",
        "[primary]\nidp = [\"x\"]\n",
    );
    let out = setup.audit(&config, &[], None);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("idp"), "{}", stderr(&out));
}

#[test]
fn a_missing_config_exits_3() {
    let setup = Setup::new("192.0.2.53");
    let out = setup.audit(&setup.dir.path().join("nope.toml"), &[], None);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("nope.toml"), "{}", stderr(&out));
}

#[test]
fn garbage_resolv_conf_never_panics() {
    let setup = Setup::new("192.0.2.53");
    let mut garbage: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    garbage.extend_from_slice(b"\nnameserver\nnameserver 10.0.0.53%\xff\nnameserver ::::\n");
    std::fs::write(&setup.resolv_conf, garbage).expect("writes");
    let config = setup.config("relay.example.net:7443", "alice.key", PRIMARY);
    let out = setup.audit(&config, &[], None);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}

#[test]
fn a_passphrase_protected_key_is_audited_without_asking() {
    let setup = Setup::new("192.0.2.53");
    setup.member_key("locked.key", Some(b"correct horse"));
    let config = setup.config("203.0.113.7:7443", "locked.key", PRIMARY);
    let out = setup.audit(&config, &["--json"], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(item(&json(&out), "key-mode", "key")["status"], "ok");
}

#[test]
fn the_help_states_the_exit_codes() {
    let out = Command::new(env!("CARGO_BIN_EXE_breakglass"))
        .args(["audit", "--help"])
        .output()
        .expect("runs breakglass");
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0));
    assert!(text.contains("Exit codes: 0 nothing shared"), "{text}");
    assert!(
        text.contains("3 the configuration cannot be read"),
        "{text}"
    );
}
