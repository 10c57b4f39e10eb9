//! `chat` against a real relay process: sending through a relay restart, and what it
//! refuses before the banner.

use std::time::Duration;

use breakglass_tests::{client, Background, Domain, RelayProcess, Run};
use serde_json::Value;

/// How long chat may take to notice a relay killed without a word and reconnect: the
/// QUIC idle timeout (30 s) plus the reconnect delay, with room to spare.
const RECONNECT: Duration = Duration::from_secs(60);
/// How long a line typed in chat may take to be sent.
const SENT: Duration = Duration::from_secs(25);

fn alice_and_bob() -> (Domain, RelayProcess) {
    let members: &[(&str, &[&str])] = &[("alice", &["ops"]), ("bob", &["ops"])];
    let domain = Domain::new(members, &["ops"]).expect("domain is built");
    let relay = RelayProcess::spawn(&domain).expect("relay starts");
    (domain, relay)
}

fn texts(run: &Run) -> Vec<String> {
    run.lines()
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).expect("a JSON line")["text"].to_string())
        .map(|t| t.trim_matches('"').to_string())
        .collect()
}

fn sent_count(stderr: &str) -> usize {
    stderr.matches("sent to bob via").count()
}

#[test]
fn chat_sends_again_after_the_relay_restarts() {
    let (domain, mut relay) = alice_and_bob();
    let mut chat =
        Background::spawn_interactive(&domain, "alice", &["chat", "bob"]).expect("starts");
    chat.write_line("before the restart").expect("typed");
    assert!(
        chat.wait_stderr(SENT, |e| sent_count(e) == 1),
        "{}",
        chat.stderr()
    );

    relay.kill().expect("relay is killed");
    relay.restart().expect("relay comes back");
    let back = chat.wait_stderr(RECONNECT, |e| e.contains("reconnected to relay"));
    assert!(back, "chat did not reconnect: {}", chat.stderr());
    chat.write_line("after the restart").expect("typed");
    assert!(
        chat.wait_stderr(SENT, |e| sent_count(e) == 2),
        "{}",
        chat.stderr()
    );
    assert!(!chat.stderr().contains("NOT sent"), "{}", chat.stderr());

    let read = client(&domain, "bob", &["--json", "read"]).expect("runs");
    assert_eq!(
        texts(&read),
        ["before the restart", "after the restart"],
        "{read:#?}"
    );
}

#[test]
fn chat_does_not_send_unknown_commands_and_sends_doubled_slashes() {
    let (domain, _relay) = alice_and_bob();
    let mut chat =
        Background::spawn_interactive(&domain, "alice", &["chat", "bob"]).expect("starts");
    chat.write_line("/qiut").expect("typed");
    chat.write_line("//etc/hosts is fine").expect("typed");
    assert!(
        chat.wait_stderr(SENT, |e| sent_count(e) == 1),
        "{}",
        chat.stderr()
    );
    assert!(
        chat.stderr().contains("unknown command"),
        "{}",
        chat.stderr()
    );
    chat.write_line("/quit").expect("typed");
    let status = chat.wait_exit(SENT).expect("waits");
    assert!(status.is_some_and(|s| s.success()), "{}", chat.stderr());

    let read = client(&domain, "bob", &["--json", "read"]).expect("runs");
    assert_eq!(texts(&read), ["/etc/hosts is fine"], "{read:#?}");
}

#[test]
fn chat_with_a_recipient_not_in_the_roster_is_refused_before_the_banner() {
    let (domain, _relay) = alice_and_bob();
    for to in ["bobb", "#opz"] {
        let run = client(&domain, "alice", &["chat", to]).expect("runs");
        assert_eq!(run.status.code(), Some(1), "{run:#?}");
        assert!(run.stderr.contains("roster version"), "{run:#?}");
        assert!(run.stderr.contains(to), "{run:#?}");
        assert!(
            !run.stderr.contains("chat on"),
            "the banner was shown: {run:#?}"
        );
    }
}

#[test]
fn chat_with_yourself_is_refused_with_a_pointer_to_selftest() {
    let (domain, _relay) = alice_and_bob();
    let run = client(&domain, "alice", &["chat", "alice"]).expect("runs");
    assert!(!run.success(), "{run:#?}");
    assert!(run.stderr.contains("selftest"), "{run:#?}");
}
