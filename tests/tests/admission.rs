//! Who the relay lets in, through the real client and relay binaries: keys outside the
//! roster, a relay that is not the pinned one, roster pushes, and members revoked while
//! connected or away.

use breakglass_keygen::keyio;
use std::time::{Duration, Instant};

use breakglass_protocol::keyfile::SecretKey;
use breakglass_protocol::roster::{Role, Roster};
use breakglass_protocol::{KeyKind, SigningPublic};
use breakglass_tests::{
    client, client_with_config, member, push_roster, Background, Domain, RelayProcess, Run,
};

/// How long a revoked member's live session may take to notice.
const CUT_OFF: Duration = Duration::from_secs(5);

fn domain_of(members: &[(&str, &[&str])]) -> (Domain, RelayProcess) {
    let domain = Domain::new(members, &["ops"]).expect("domain is built");
    let relay = RelayProcess::spawn(&domain).expect("relay starts");
    (domain, relay)
}

fn alice_bob_carol() -> (Domain, RelayProcess) {
    domain_of(&[("alice", &["ops"]), ("bob", &["ops"]), ("carol", &["ops"])])
}

fn run(domain: &Domain, member: &str, args: &[&str]) -> Run {
    client(domain, member, args).expect("client runs")
}

fn ok(domain: &Domain, member: &str, args: &[&str]) -> Run {
    let run = run(domain, member, args);
    assert!(run.success(), "{member} {args:?} failed: {run:#?}");
    run
}

fn refused(domain: &Domain, member: &str, args: &[&str]) -> Run {
    let run = run(domain, member, args);
    assert!(!run.success(), "{member} {args:?} succeeded: {run:#?}");
    run
}

/// The roster in force, without `name`.
fn without(domain: &Domain, name: &str) -> Roster {
    let mut roster = domain.roster();
    roster.members.retain(|m| m.name.as_str() != name);
    roster
}

fn push(domain: &Domain, by: &str, next: &Roster) -> Run {
    push_roster(domain, by, next).expect("roster is signed and the client runs")
}

#[test]
fn a_key_outside_the_roster_is_refused_and_nobody_receives_anything() {
    let (domain, relay) = alice_bob_carol();
    domain.new_key("mallory").expect("a key outside the roster");

    let sent = refused(&domain, "mallory", &["send", "bob", "let me in"]);
    assert!(sent.stderr.contains("not in the roster"), "{sent:#?}");
    assert!(relay.log().contains("refused: key not in the roster"));
    for member in ["alice", "bob", "carol"] {
        let read = ok(&domain, member, &["read"]);
        assert_eq!(read.stdout.trim(), "", "{member} received something");
    }
}

#[test]
fn a_client_pinning_another_relay_key_refuses_to_connect_and_says_why() {
    let (domain, relay) = alice_bob_carol();
    let other = SecretKey::generate(KeyKind::Relay);
    let other = SigningPublic::parse(KeyKind::Relay, &other.public_string()).expect("key");
    let config = domain
        .client_config_pinning("alice", &other)
        .expect("config");

    let sent = client_with_config(&config, &["send", "bob", "intercepted?"], None).expect("runs");
    assert!(!sent.success(), "{sent:#?}");
    assert!(sent.stderr.contains("interception"), "{sent:#?}");
    assert!(
        sent.stderr.contains(&other.fingerprint()),
        "pinned key not shown"
    );
    let presented = domain.relay_public().fingerprint();
    assert!(sent.stderr.contains(&presented), "presented key not shown");
    assert!(!relay.log().contains("admitted"), "{}", relay.log());
    assert_eq!(ok(&domain, "bob", &["read"]).stdout.trim(), "");
}

#[test]
fn a_member_revoked_while_tailing_is_cut_off_at_once() {
    let (domain, _relay) = alice_bob_carol();
    let mut tail = Background::spawn(&domain, "bob", &["--json", "tail"]).expect("tail starts");
    ok(&domain, "alice", &["send", "bob", "before revocation"]);
    let line = tail.next_line(Duration::from_secs(10));
    let line = line.unwrap_or_else(|| panic!("tail showed nothing: {}", tail.stderr()));
    assert!(line.contains("before revocation"), "{line}");

    let pushed = push(&domain, "alice", &without(&domain, "bob"));
    assert!(pushed.success(), "{pushed:#?}");
    assert!(
        pushed.stdout.contains("roster version 2 in force"),
        "{pushed:#?}"
    );
    let started = Instant::now();
    let status = tail.wait_exit(CUT_OFF).expect("waits");
    let status = status.unwrap_or_else(|| panic!("tail still runs: {}", tail.stderr()));
    assert!(!status.success(), "tail exited 0 after revocation");
    assert!(started.elapsed() < CUT_OFF);
    assert!(
        tail.stderr().contains("removed from the roster"),
        "{}",
        tail.stderr()
    );

    let read = refused(&domain, "bob", &["read"]);
    assert!(read.stderr.contains("not in the roster"), "{read:#?}");
    let to_bob = refused(&domain, "alice", &["send", "bob", "after revocation"]);
    assert!(to_bob.stderr.contains("bob"), "{to_bob:#?}");
}

#[test]
fn messages_queued_for_a_revoked_member_are_dropped() {
    let (domain, mut relay) = alice_bob_carol();
    ok(
        &domain,
        "alice",
        &["send", "bob", "queued before revocation"],
    );
    ok(&domain, "carol", &["send", "#ops", "also queued"]);
    assert!(push(&domain, "alice", &without(&domain, "bob")).success());

    // Bob comes back with a new key; his queue must not come back with him.
    relay.restart().expect("relay restarts");
    let mut again = domain.roster();
    let new_key = domain.new_key("bob").expect("new key");
    let bob = member("bob", new_key, Role::Responder, &["ops"]).expect("member");
    again.members.push(bob);
    assert!(push(&domain, "alice", &again).success());
    let read = ok(&domain, "bob", &["read"]);
    assert_eq!(read.stdout.trim(), "", "{read:#?}");
    assert!(!read.stderr.contains("dropped"), "{read:#?}");

    ok(&domain, "alice", &["send", "bob", "after re-enrolment"]);
    let read = ok(&domain, "bob", &["read"]);
    assert!(read.stdout.contains("after re-enrolment"), "{read:#?}");
}

#[test]
fn a_roster_push_by_a_member_who_is_not_an_admin_is_refused() {
    let (domain, _relay) = alice_bob_carol();
    let pushed = push(&domain, "bob", &without(&domain, "carol"));
    assert!(!pushed.success(), "{pushed:#?}");
    assert!(pushed.stderr.contains("admin"), "{pushed:#?}");

    ok(&domain, "alice", &["send", "carol", "still a member"]);
    let read = ok(&domain, "carol", &["read"]);
    assert!(read.stdout.contains("still a member"), "{read:#?}");
}

#[test]
fn an_older_roster_than_the_one_in_force_is_refused() {
    let (domain, _relay) = alice_bob_carol();
    assert!(push(&domain, "alice", &domain.roster()).success());
    let first = domain.path().join("roster-v1.signed");

    let args = ["roster", "push", first.to_str().expect("a UTF-8 path")];
    let pushed = refused(&domain, "alice", &args);
    let said = "roster version 1 is not newer than version 2 in force (rollback refused)";
    assert!(pushed.stderr.contains(said), "{pushed:#?}");
    let shown = ok(&domain, "alice", &["roster", "show"]);
    assert!(shown.stdout.contains("roster version 2"), "{shown:#?}");
}

#[test]
fn pushing_the_roster_in_force_again_succeeds_and_changes_nothing() {
    let (domain, _relay) = alice_bob_carol();
    let first = push(&domain, "alice", &without(&domain, "carol"));
    assert!(first.success(), "{first:#?}");
    let file = domain.path().join("roster-v2.signed");

    let args = ["roster", "push", file.to_str().expect("a UTF-8 path")];
    let again = ok(&domain, "alice", &args);
    assert!(
        again.stdout.contains("roster version 2 in force"),
        "{again:#?}"
    );
    let shown = ok(&domain, "alice", &["roster", "show"]);
    assert!(shown.stdout.contains("roster version 2"), "{shown:#?}");
    assert!(!shown.stdout.contains("carol"), "{shown:#?}");
}

#[test]
fn a_different_roster_with_the_version_in_force_is_refused_with_the_reason() {
    let (domain, _relay) = alice_bob_carol();
    let pushed = push(&domain, "alice", &without(&domain, "carol"));
    assert!(pushed.success(), "{pushed:#?}");

    // Another roster that also carries version 2, as an admin who signed an old copy of
    // the source would make.
    let root = keyio::load_unattended(&domain.path().join("root.key"), KeyKind::Root)
        .expect("root key")
        .into_signing(KeyKind::Root)
        .expect("a root key");
    let mut twin = without(&domain, "bob");
    twin.version = 2;
    let file = domain.path().join("twin-v2.signed");
    std::fs::write(&file, twin.sign(&root).expect("signs")).expect("writes");

    let args = ["roster", "push", file.to_str().expect("a UTF-8 path")];
    let refused = refused(&domain, "alice", &args);
    assert!(
        refused
            .stderr
            .contains("a different roster with the same version 2"),
        "{refused:#?}"
    );
}
