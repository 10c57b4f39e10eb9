//! Sending and reading through a real relay process on loopback: direct messages,
//! channels, queues kept for members who are away, durability across `kill -9`, and what
//! the relay's disk holds.

use std::process::{Command, Stdio};
use std::thread;

use breakglass_tests::{
    binary, client, client_with_config, client_with_stdin, files_containing, Domain, RelayProcess,
    Run,
};
use serde_json::Value;

/// A domain of alice (admin) and bob in #ops, with its relay serving.
fn alice_and_bob() -> (Domain, RelayProcess) {
    let members: &[(&str, &[&str])] = &[("alice", &["ops"]), ("bob", &["ops"])];
    let domain = Domain::new(members, &["ops"]).expect("domain is built");
    let relay = RelayProcess::spawn(&domain).expect("relay starts");
    (domain, relay)
}

fn ok(domain: &Domain, member: &str, args: &[&str]) -> Run {
    let run = client(domain, member, args).expect("client runs");
    assert!(run.success(), "{member} {args:?} failed: {run:#?}");
    run
}

/// Each line of standard output as a JSON object.
fn json_lines(run: &Run) -> Vec<Value> {
    run.lines()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn texts(run: &Run) -> Vec<String> {
    json_lines(run)
        .iter()
        .map(|v| v["text"].as_str().expect("a text field").to_string())
        .collect()
}

#[test]
fn a_direct_message_is_read_once_as_verified_from_its_sender() {
    let (domain, _relay) = alice_and_bob();
    ok(&domain, "alice", &["send", "bob", "hello"]);

    let first = ok(&domain, "bob", &["read"]);
    assert_eq!(first.lines().len(), 1, "{first:#?}");
    assert!(
        first.stdout.contains("alice → bob (verified): hello"),
        "{first:#?}"
    );

    let second = ok(&domain, "bob", &["read"]);
    assert_eq!(second.stdout.trim(), "", "a message was shown twice");
    assert!(second.stderr.contains("no new messages"), "{second:#?}");
}

#[test]
fn read_with_json_prints_one_object_per_message() {
    let (domain, _relay) = alice_and_bob();
    ok(&domain, "alice", &["send", "bob", "first"]);
    ok(&domain, "alice", &["send", "bob", "second"]);

    let read = ok(&domain, "bob", &["--json", "read"]);
    let objects = json_lines(&read);
    assert_eq!(objects.len(), 2, "{read:#?}");
    for (object, text) in objects.iter().zip(["first", "second"]) {
        assert_eq!(object["text"], text, "{object}");
        assert_eq!(object["from"], "alice", "{object}");
        assert_eq!(object["to"], "bob", "{object}");
        assert_eq!(object["direction"], "in", "{object}");
        assert_eq!(object["verified"], true, "{object}");
    }
}

#[test]
fn a_channel_message_reaches_every_other_member_of_the_channel_and_nobody_else() {
    let members: &[(&str, &[&str])] = &[
        ("alice", &["ops"]),
        ("bob", &["ops"]),
        ("carol", &["ops"]),
        ("dave", &["dev"]),
    ];
    let domain = Domain::new(members, &["ops", "dev"]).expect("domain is built");
    let _relay = RelayProcess::spawn(&domain).expect("relay starts");
    ok(&domain, "alice", &["send", "#ops", "rotate the keys"]);

    for member in ["bob", "carol"] {
        let read = ok(&domain, member, &["read"]);
        assert_eq!(read.lines().len(), 1, "{member}: {read:#?}");
        assert!(
            read.stdout
                .contains("alice → #ops (verified): rotate the keys"),
            "{member}: {read:#?}"
        );
    }
    for member in ["dave", "alice"] {
        let read = ok(&domain, member, &["read"]);
        assert_eq!(read.stdout.trim(), "", "{member} received a #ops message");
    }
}

#[test]
fn messages_to_an_absent_member_wait_and_arrive_in_the_order_sent() {
    let (domain, _relay) = alice_and_bob();
    let sent: Vec<String> = (1..=5).map(|i| format!("numbered message {i}")).collect();
    for text in &sent {
        ok(&domain, "alice", &["send", "bob", text]);
    }

    let read = ok(&domain, "bob", &["--json", "read"]);
    assert_eq!(texts(&read), sent);
}

#[test]
fn an_acknowledged_message_survives_the_relay_being_killed_at_once() {
    let (domain, mut relay) = alice_and_bob();
    ok(&domain, "alice", &["send", "bob", "survives kill -9"]);
    relay.kill().expect("relay is killed");

    relay.restart().expect("relay comes back on the same store");
    let read = ok(&domain, "bob", &["--json", "read"]);
    assert_eq!(texts(&read), ["survives kill -9"], "{}", relay.log());
}

#[test]
fn every_acknowledged_message_of_concurrent_senders_survives_kill_9() {
    let members: &[(&str, &[&str])] = &[("alice", &[]), ("bob", &[]), ("carol", &[])];
    let domain = Domain::new(members, &[]).expect("domain is built");
    let mut relay = RelayProcess::spawn(&domain).expect("relay starts");
    let sends = thread::scope(|s| {
        let workers: Vec<_> = (0..6)
            .map(|i| {
                let sender = if i % 2 == 0 { "alice" } else { "carol" };
                let text = format!("concurrent {i}");
                let domain = &domain;
                s.spawn(move || {
                    (
                        text.clone(),
                        client(domain, sender, &["send", "bob", &text]),
                    )
                })
            })
            .collect();
        let finished = workers
            .into_iter()
            .map(|w| w.join().expect("sender thread"));
        finished.collect::<Vec<_>>()
    });
    relay.kill().expect("relay is killed");

    let runs: Vec<(String, Run)> = sends
        .into_iter()
        .map(|(text, run)| (text, run.expect("client runs")))
        .collect();
    let failed: Vec<&Run> = runs
        .iter()
        .map(|(_, r)| r)
        .filter(|r| !r.success())
        .collect();
    assert!(
        failed.is_empty(),
        "sends failed with the relay up: {failed:#?}"
    );
    let mut acknowledged: Vec<String> = runs.into_iter().map(|(text, _)| text).collect();
    relay.restart().expect("relay comes back on the same store");
    let mut received = texts(&ok(&domain, "bob", &["--json", "read"]));
    acknowledged.sort();
    received.sort();
    assert_eq!(received, acknowledged);
}

#[test]
fn the_relay_store_never_holds_the_plaintext_of_a_message() {
    let (domain, _relay) = alice_and_bob();
    let secret = "zebra-quartz-7781";
    let sent = ok(&domain, "alice", &["--json", "send", "bob", secret]);
    let id = json_lines(&sent)[0]["id"]
        .as_str()
        .expect("the sent record has an id")
        .to_string();

    let plaintext = files_containing(&domain.relay_data(), secret.as_bytes()).expect("scan");
    assert!(plaintext.is_empty(), "plaintext found in {plaintext:?}");
    // The envelope itself must be there, or the scan proves nothing: its id is in clear.
    let envelope = files_containing(&domain.relay_data(), &hex(&id)).expect("scan");
    assert!(!envelope.is_empty(), "the stored envelope was not found");

    let read = ok(&domain, "bob", &["--json", "read"]);
    assert_eq!(texts(&read), [secret]);
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn a_message_over_the_size_limit_is_refused_by_the_client_before_sending() {
    let (domain, relay) = alice_and_bob();
    let text = vec![b'x'; 256 * 1024 + 1];
    let run = client_with_stdin(&domain, "alice", &["send", "bob", "-"], &text).expect("runs");

    assert!(!run.success(), "{run:#?}");
    assert!(run.stderr.contains("too large"), "{run:#?}");
    assert!(
        !relay.log().contains("admitted"),
        "the client connected anyway"
    );
    let read = ok(&domain, "bob", &["read"]);
    assert_eq!(read.stdout.trim(), "");
}

#[test]
fn read_into_a_full_disk_fails_and_acknowledges_nothing_unprinted() {
    let (domain, _relay) = alice_and_bob();
    let sent: Vec<String> = (1..=5).map(|i| format!("kept {i}")).collect();
    for text in &sent {
        ok(&domain, "alice", &["send", "bob", text]);
    }

    let config = domain.client_config("bob").expect("config");
    let bin = binary("breakglass").expect("client binary");
    let status = Command::new("sh")
        .arg("-c")
        .arg("\"$0\" --config \"$1\" read > /dev/full")
        .arg(&bin)
        .arg(&config)
        .env_remove("RUST_LOG")
        .stderr(Stdio::null())
        .status()
        .expect("sh runs");
    assert!(!status.success(), "read into /dev/full exited {status}");

    let read = ok(&domain, "bob", &["--json", "read"]);
    assert_eq!(texts(&read), sent);
}

#[test]
fn a_multi_line_message_cannot_pose_as_another_verified_message() {
    let (domain, _relay) = alice_and_bob();
    let forged = "hi\n[2030-01-01T00:00:00Z] carol → bob (verified): \u{202e}wire it";
    ok(&domain, "alice", &["send", "bob", forged]);

    let read = ok(&domain, "bob", &["read"]);
    let lines = read.lines();
    assert_eq!(lines.len(), 2, "{read:#?}");
    assert!(lines[0].contains("alice → bob (verified): hi"), "{read:#?}");
    assert!(lines[1].starts_with("    | [2030"), "{read:#?}");
    assert!(lines[1].contains("\u{fffd}wire it"), "{read:#?}");
}

#[test]
fn a_message_to_yourself_is_refused_with_a_pointer_to_selftest() {
    let (domain, relay) = alice_and_bob();
    let run = client(&domain, "alice", &["send", "alice", "note to self"]).expect("runs");
    assert!(!run.success(), "{run:#?}");
    assert!(run.stderr.contains("yourself"), "{run:#?}");
    assert!(run.stderr.contains("selftest"), "{run:#?}");
    assert!(
        !relay.log().contains("admitted"),
        "the client connected anyway"
    );
}

#[test]
fn empty_messages_are_refused_and_stdin_loses_one_trailing_newline() {
    let (domain, _relay) = alice_and_bob();
    for text in ["", "  \t "] {
        let run = client(&domain, "alice", &["send", "bob", text]).expect("runs");
        assert!(!run.success(), "{run:#?}");
        assert!(run.stderr.contains("empty message"), "{run:#?}");
    }
    let piped = client_with_stdin(
        &domain,
        "alice",
        &["send", "bob", "-"],
        b"two lines\nend\n\n",
    );
    assert!(piped.expect("runs").success());

    let read = ok(&domain, "bob", &["--json", "read"]);
    assert_eq!(texts(&read), ["two lines\nend\n"]);
}

#[test]
fn verbose_send_logs_the_relay_address_and_a_quiet_one_does_not() {
    let (domain, relay) = alice_and_bob();
    let addr = relay.addr().to_string();
    let loud = ok(&domain, "alice", &["-v", "send", "bob", "secret words"]);
    assert!(loud.stderr.contains(&addr), "{loud:#?}");
    assert!(
        !loud.stderr.contains("secret words"),
        "content logged: {loud:#?}"
    );

    let quiet = ok(&domain, "alice", &["send", "bob", "hello"]);
    assert!(!quiet.stderr.contains(&addr), "{quiet:#?}");
}

#[test]
fn a_config_whose_name_does_not_match_its_key_says_whose_key_it_is() {
    let (domain, _relay) = alice_and_bob();
    let good =
        std::fs::read_to_string(domain.client_config("alice").expect("config")).expect("readable");
    let mixed = domain.path().join("mixed.toml");
    std::fs::write(
        &mixed,
        good.replace("key = \"alice.key\"", "key = \"bob.key\""),
    )
    .expect("written");

    let run = client_with_config(&mixed, &["send", "bob", "hi"], None).expect("runs");
    assert!(!run.success(), "{run:#?}");
    assert!(
        run.stderr
            .contains("belongs to roster member bob, not alice"),
        "{run:#?}"
    );
    assert!(run.stderr.contains("mixed.toml"), "{run:#?}");
}

#[test]
fn a_missing_key_file_is_reported_with_the_config_that_names_it() {
    let (domain, _relay) = alice_and_bob();
    let good =
        std::fs::read_to_string(domain.client_config("alice").expect("config")).expect("readable");
    let config = domain.path().join("lost-key.toml");
    std::fs::write(&config, good.replace("alice.key", "gone.key")).expect("written");

    let run = client_with_config(&config, &["read"], None).expect("runs");
    assert!(!run.success(), "{run:#?}");
    assert!(run.stderr.contains("gone.key"), "{run:#?}");
    assert!(run.stderr.contains("lost-key.toml"), "{run:#?}");
}
