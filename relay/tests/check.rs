//! `breakglass-relay check`: exit codes, summary line and JSON, run as the real binary
//! against trust domains built in temporary folders.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use breakglass_relay::config::DEFAULT_TTL;
use breakglass_relay::store::Store;
use common::{check, free_udp, relay, Fixture};

const DAY: Duration = Duration::from_secs(86_400);

fn fixture() -> Fixture {
    Fixture::new(free_udp(), "")
}

#[test]
fn a_healthy_relay_is_ok_with_perfdata() {
    let f = fixture();
    let run = check(&f.config, &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.starts_with("BREAKGLASS-RELAY OK - "),
        "{}",
        run.stdout
    );
    assert_eq!(run.stdout.lines().count(), 1, "{}", run.stdout);
    let (_, perf) = run.stdout.split_once(" | ").expect("perfdata after a bar");
    assert!(perf.contains("roster_version=1 "), "{perf}");
    assert!(perf.contains("roster_expiry="), "{perf}");
    assert!(perf.contains("disk_free="), "{perf}");
    assert!(run.stdout.contains("no store in"), "{}", run.stdout);
}

#[test]
fn a_relay_key_others_can_read_is_critical_and_named() {
    let f = fixture();
    let key = f.path("relay.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let run = check(&f.config, &[]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(
        run.stdout.starts_with("BREAKGLASS-RELAY CRITICAL - "),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&key.display().to_string()),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("chmod 600"), "{}", run.stdout);
}

#[test]
fn a_roster_expiring_within_fourteen_days_is_a_warning() {
    let f = fixture();
    let (signed, _) = f.sign(&f.domain.roster, 3 * DAY);
    f.write_roster(&signed);
    let run = check(&f.config, &[]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let line = &run.stdout;
    assert!(
        line.starts_with("BREAKGLASS-RELAY WARNING - roster v2 expires in "),
        "{line}"
    );
    assert!(run.stdout.contains("roster_version=2 "), "{}", run.stdout);
}

#[test]
fn an_expired_roster_is_critical() {
    let f = fixture();
    let (signed, _) = f.sign(&f.domain.roster, Duration::from_secs(1));
    f.write_roster(&signed);
    std::thread::sleep(Duration::from_secs(2));
    let run = check(&f.config, &[]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(
        run.stdout
            .starts_with("BREAKGLASS-RELAY CRITICAL - roster v2 expired at "),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("roster_expiry=-"), "{}", run.stdout);
}

#[test]
fn a_config_that_does_not_parse_is_unknown() {
    let f = fixture();
    std::fs::write(&f.config, "listen = [not toml\n").expect("write");
    let run = check(&f.config, &[]);
    assert_eq!(run.code, 3, "{}", run.stdout);
    assert!(
        run.stdout.starts_with("BREAKGLASS-RELAY UNKNOWN - "),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("invalid relay config"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_missing_config_is_unknown() {
    let f = fixture();
    let run = check(&f.path("nowhere.toml"), &[]);
    assert_eq!(run.code, 3, "{}", run.stdout);
    assert!(run.stdout.contains("nowhere.toml"), "{}", run.stdout);
}

#[test]
fn check_without_its_config_is_a_usage_error_reported_as_unknown() {
    let run = relay(&["check"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("--config"), "{}", run.stderr);
}

#[test]
fn a_root_that_is_not_a_root_key_is_critical() {
    let f = fixture();
    let text = std::fs::read_to_string(&f.config).expect("read");
    let wrong = text.replace(&f.domain.root.to_string(), "bgroot1nonsense");
    std::fs::write(&f.config, wrong).expect("write");
    let run = check(&f.config, &[]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(
        run.stdout.contains("`root` is not a root key"),
        "{}",
        run.stdout
    );
}

#[test]
fn json_output_carries_the_status_code_and_every_check() {
    let f = fixture();
    let run = check(&f.config, &["--json"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).expect("one JSON object");
    assert_eq!(json["status"], "OK");
    assert_eq!(json["code"], 0);
    let checks: Vec<&str> = json["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| c["check"].as_str().expect("name"))
        .collect();
    assert_eq!(
        checks,
        ["config", "relay_key", "root_key", "store", "roster", "disk"]
    );
    let perf = json["perfdata"].as_array().expect("perfdata");
    let version = perf.iter().find(|p| p["label"] == "roster_version");
    assert_eq!(version.expect("roster_version")["value"], 1);
}

#[test]
fn json_output_reports_a_critical_state_too() {
    let f = fixture();
    let key = f.path("relay.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let run = check(&f.config, &["--json"]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).expect("one JSON object");
    assert_eq!(json["status"], "CRITICAL");
    assert_eq!(json["code"], 2);
}

#[test]
fn a_store_locked_by_a_running_relay_is_ok_with_a_note() {
    let f = fixture();
    let store = Store::open(&f.path("data"), DEFAULT_TTL).expect("store");
    let run = check(&f.config, &[]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stdout.starts_with("BREAKGLASS-RELAY OK - "),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("store in use by a running relay"),
        "{}",
        run.stdout
    );
    drop(store);

    let run = check(&f.config, &[]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stdout.contains("store holds 0 queued"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("queue_depth=0"), "{}", run.stdout);
}

#[test]
fn a_newer_roster_in_the_store_wins_over_an_expiring_file() {
    let f = fixture();
    let (short, short_roster) = f.sign(&f.domain.roster, 3 * DAY);
    f.write_roster(&short);
    let (long, long_roster) = f.sign(&short_roster, 60 * DAY);
    let store = Store::open(&f.path("data"), DEFAULT_TTL).expect("store");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime
        .block_on(store.set_roster(&long, long_roster.version))
        .expect("stored");
    drop(store);

    let run = check(&f.config, &[]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stdout.contains("roster v3 valid for "),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("roster_version=3 "), "{}", run.stdout);
}

#[test]
fn a_damaged_store_is_critical_with_the_stores_recovery_hint() {
    let f = fixture();
    // The marker says a store was initialised here, but sled finds no data: damage.
    std::fs::create_dir(f.path("data")).expect("mkdir");
    std::fs::write(f.path("data/breakglass-store"), "marker\n").expect("marker");
    let run = check(&f.config, &[]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(run.stdout.contains("cannot open store"), "{}", run.stdout);
    assert!(
        run.stdout.contains("move the directory aside"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_relay_key_the_roster_does_not_list_is_a_warning() {
    let f = fixture();
    let other =
        breakglass_protocol::keyfile::SecretKey::generate(breakglass_protocol::KeyKind::Relay);
    breakglass_keygen::keyio::save_key(&f.path("relay.key"), &other, None, true).expect("save");
    let run = check(&f.config, &[]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let fingerprint = other.public_string();
    let said = "is not the key of any relay in roster version 1";
    assert!(run.stdout.contains(said), "{}", run.stdout);
    assert!(
        !run.stdout.contains(&fingerprint),
        "the whole key: {}",
        run.stdout
    );
}

#[test]
fn a_max_message_of_zero_or_beyond_any_envelope_is_a_config_error() {
    let too_large = breakglass_protocol::envelope::MAX_ENVELOPE + 1;
    for value in [0, too_large] {
        let f = Fixture::new(free_udp(), &format!("max_message = {value}"));
        let run = check(&f.config, &[]);
        assert_eq!(run.code, 3, "{}", run.stdout);
        assert!(run.stdout.contains("`max_message`"), "{}", run.stdout);
    }
}

#[test]
fn a_ttl_that_is_not_a_duration_says_what_is_expected() {
    let f = Fixture::new(free_udp(), "message_ttl = \"forever\"");
    let run = check(&f.config, &[]);
    assert_eq!(run.code, 3, "{}", run.stdout);
    assert!(
        run.stdout.contains("expected a duration like 21d or 12h"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_broken_config_is_one_summary_line_and_the_full_text_in_json() {
    let f = fixture();
    std::fs::write(&f.config, "listen = [not toml\n").expect("write");
    let run = check(&f.config, &[]);
    assert_eq!(run.stdout.trim_end().lines().count(), 1, "{}", run.stdout);
    assert!(
        run.stdout.contains("invalid relay config"),
        "{}",
        run.stdout
    );

    let json = check(&f.config, &["--json"]);
    let value: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
    let message = value["checks"][0]["message"].as_str().expect("a message");
    assert!(message.contains('\n'), "{message}");
    assert!(message.contains("listen = [not toml"), "{message}");
}
