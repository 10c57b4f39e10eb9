//! The administrator's roster flow through the binary: `roster init`, `add`, `remove`,
//! `sign`, `verify` and `show`, and every refusal leaving the files as they were.

mod common;

use common::{Run, Workdir};

/// A trust domain with a root key, alice's and a relay's keys, and a roster source that
/// lists a channel `ops`, alice in it, and the relay `r1`.
struct Domain {
    w: Workdir,
    root: String,
    alice: String,
    relay: String,
}

impl Domain {
    fn new() -> Self {
        let w = Workdir::new();
        let root = w.new_key("root", "root.key");
        let alice = w.new_key("member", "alice.key");
        let relay = w.new_key("relay", "relay.key");
        w.ok(&["roster", "init", "--out", "roster.toml"], "");
        w.ok(
            &["roster", "add", "roster.toml", "channel", "--name", "ops"],
            "",
        );
        let member = [
            "member",
            "--name",
            "alice",
            "--key",
            &alice,
            "--channel",
            "ops",
        ];
        w.ok(
            &[&["roster", "add", "roster.toml"][..], &member].concat(),
            "",
        );
        let relay_args = [
            "relay",
            "--name",
            "r1",
            "--address",
            "127.0.0.1:7443",
            "--key",
        ];
        w.ok(
            &[
                &["roster", "add", "roster.toml"][..],
                &relay_args,
                &[&relay],
            ]
            .concat(),
            "",
        );
        Domain {
            w,
            root,
            alice,
            relay,
        }
    }

    /// Signs the source into `roster.signed`, with extra arguments.
    fn sign(&self, extra: &[&str]) {
        let args = [
            "roster",
            "sign",
            "roster.toml",
            "--root",
            "root.key",
            "--out",
            "roster.signed",
        ];
        self.w.ok(&[&args[..], extra].concat(), "");
    }

    /// `roster verify roster.signed --root <root string>` with extra arguments.
    fn verify(&self, extra: &[&str]) -> Run {
        let args = ["roster", "verify", "roster.signed", "--root", &self.root];
        self.w.run(&[&args[..], extra].concat(), "")
    }

    /// `roster add roster.toml …`.
    fn add(&self, entry: &[&str]) -> Run {
        self.w
            .run(&[&["roster", "add", "roster.toml"][..], entry].concat(), "")
    }

    /// The bytes of the roster files, to show that a refusal changed nothing.
    fn files(&self) -> Vec<Vec<u8>> {
        let names = ["roster.toml", "roster.signed"];
        names
            .iter()
            .filter(|n| self.w.exists(n))
            .map(|n| self.w.read(n))
            .collect()
    }
}

#[test]
fn a_signed_roster_verifies_against_the_root_key_string_and_the_version_grows() {
    let d = Domain::new();
    d.sign(&[]);
    assert!(d
        .w
        .read_text("roster.signed")
        .starts_with("breakglass-roster v1\n"));
    let run = d.verify(&[]);
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(run.stdout.contains("version 1"), "{run:#?}");
    assert!(run.stdout.contains("1 members, 1 relays"), "{run:#?}");

    d.sign(&[]);
    let run = d.verify(&[]);
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(run.stdout.contains("version 2"), "{run:#?}");
    assert!(d.w.read_text("roster.toml").contains("version = 2"));

    let by_file = ["roster", "verify", "roster.signed", "--root", "root.key"];
    assert!(d.w.ok(&by_file, "").contains("version 2"));
    assert_eq!(
        d.verify(&["--min-version", "2"]).code,
        0,
        "the version in force is not a rollback"
    );
}

#[test]
fn roster_show_with_the_root_key_lists_the_members_relays_and_channels() {
    let d = Domain::new();
    d.sign(&[]);
    let shown = d.w.ok(
        &["roster", "show", "roster.signed", "--root", "root.key"],
        "",
    );
    assert!(shown.contains("verified against root"), "{shown}");
    let alice = shown
        .lines()
        .find(|l| l.trim_start().starts_with("alice "))
        .expect("alice");
    assert!(alice.contains("#ops"), "{shown}");
    assert!(alice.contains("responder"), "{shown}");
    assert!(
        shown.contains("r1") && shown.contains("127.0.0.1:7443"),
        "{shown}"
    );
    assert!(shown.contains("#ops"), "{shown}");

    let alice_fp = d.w.ok(&["pubkey", "alice.key", "--fingerprint"], "");
    assert!(alice.contains(alice_fp.trim()), "{shown}");
}

#[test]
fn roster_show_without_a_root_key_says_it_is_not_verified() {
    let d = Domain::new();
    d.sign(&[]);
    let shown = d.w.ok(&["roster", "show", "roster.signed"], "");
    assert!(shown.contains("NOT VERIFIED"), "{shown}");
    assert!(shown.contains("alice"), "{shown}");
    let source = d.w.ok(&["roster", "show", "roster.toml"], "");
    assert!(
        source.contains("unsigned source") && source.contains("alice"),
        "{source}"
    );
}

#[test]
fn init_refuses_to_replace_an_existing_source() {
    let d = Domain::new();
    let before = d.files();
    d.w.fails(
        &["roster", "init", "--out", "roster.toml"],
        "",
        1,
        &["roster.toml", "already exists"],
    );
    assert_eq!(d.files(), before);
}

#[test]
fn one_changed_byte_in_the_body_fails_the_signature() {
    let d = Domain::new();
    d.sign(&[]);
    let text = d.w.read_text("roster.signed");
    let at = text.find("\"alice\"").expect("alice in the body") + 5;
    let mut bytes = text.into_bytes();
    bytes[at] = b'f';
    std::fs::write(d.w.path("roster.signed"), &bytes).expect("writes");
    let before = d.files();

    let run = d.verify(&[]);
    run.assert_fails(
        1,
        &["roster.signed", "signature does not verify", "altered"],
    );
    assert!(run.stdout.is_empty(), "{run:#?}");
    let show = ["roster", "show", "roster.signed", "--root", "root.key"];
    d.w.fails(&show, "", 1, &["signature does not verify"]);
    assert_eq!(d.files(), before);
}

#[test]
fn a_roster_is_refused_against_another_root_key() {
    let d = Domain::new();
    d.sign(&[]);
    d.w.new_key("root", "other.key");
    let other_fp = d.w.ok(&["pubkey", "other.key", "--fingerprint"], "");
    let before = d.files();
    d.w.fails(
        &["roster", "verify", "roster.signed", "--root", "other.key"],
        "",
        1,
        &["signature does not verify", other_fp.trim()],
    );
    assert_eq!(d.files(), before);
}

#[test]
fn a_version_below_min_version_is_refused_as_a_rollback() {
    let d = Domain::new();
    d.sign(&[]);
    d.sign(&[]);
    let before = d.files();
    let run = d.verify(&["--min-version", "5"]);
    let said = "roster version 2 is below the minimum version 5 (rollback refused)";
    run.assert_fails(1, &["roster.signed", said]);
    assert_eq!(d.files(), before);
}

#[test]
fn an_expired_roster_is_refused() {
    let d = Domain::new();
    d.sign(&["--valid-for", "1s"]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let before = d.files();
    d.verify(&[]).assert_fails(1, &["roster.signed", "expired"]);
    assert_eq!(d.files(), before);
}

#[test]
fn a_duplicate_member_name_is_refused_and_the_source_is_unchanged() {
    let d = Domain::new();
    let bob = d.w.new_key("member", "bob.key");
    let before = d.files();
    d.add(&["member", "--name", "alice", "--key", &bob])
        .assert_fails(1, &["duplicate name", "alice"]);
    d.add(&[
        "relay",
        "--name",
        "alice",
        "--address",
        "10.0.0.1:7443",
        "--key",
        &d.relay,
    ])
    .assert_fails(1, &["duplicate name"]);
    d.add(&["channel", "--name", "ops"])
        .assert_fails(1, &["duplicate name", "#ops"]);
    assert_eq!(d.files(), before);
}

#[test]
fn a_key_already_in_the_roster_is_refused_under_another_name() {
    let d = Domain::new();
    let before = d.files();
    d.add(&["member", "--name", "alice2", "--key", &d.alice])
        .assert_fails(1, &["alice2", "key"]);
    assert_eq!(d.files(), before);
}

#[test]
fn a_member_in_a_channel_that_does_not_exist_is_refused() {
    let d = Domain::new();
    let bob = d.w.new_key("member", "bob.key");
    let before = d.files();
    d.add(&[
        "member",
        "--name",
        "bob",
        "--key",
        &bob,
        "--channel",
        "nope",
    ])
    .assert_fails(1, &["unknown channel", "#nope"]);
    assert_eq!(d.files(), before);
}

#[test]
fn names_that_are_not_safe_are_refused_for_members_relays_and_channels() {
    let d = Domain::new();
    let bob = d.w.new_key("member", "bob.key");
    let before = d.files();
    for name in ["../x", "a/b", "bo\u{7}b", "Bob", ""] {
        let name_arg = format!("--name={name}");
        let entries: [Vec<&str>; 3] = [
            vec!["member", &name_arg, "--key", &bob],
            vec![
                "relay",
                &name_arg,
                "--address",
                "10.0.0.1:7443",
                "--key",
                &d.relay,
            ],
            vec!["channel", &name_arg],
        ];
        for entry in entries {
            d.add(&entry).assert_fails(1, &["invalid name"]);
        }
    }
    assert_eq!(d.files(), before);
}

#[test]
fn a_relay_key_where_a_member_key_belongs_is_refused_as_a_relay_key() {
    let d = Domain::new();
    let before = d.files();
    d.add(&["member", "--name", "bob", "--key", &d.relay])
        .assert_fails(1, &["this is a relay key", "member key is needed"]);
    d.add(&["member", "--name", "bob", "--key", "relay.key"])
        .assert_fails(
            1,
            &["relay.key", "this is a relay key", "member key is needed"],
        );
    d.add(&[
        "relay",
        "--name",
        "r2",
        "--address",
        "10.0.0.2:7443",
        "--key",
        &d.alice,
    ])
    .assert_fails(1, &["this is a member key", "relay key is needed"]);
    assert_eq!(d.files(), before);
}

#[test]
fn only_the_root_key_signs_and_verifies() {
    let d = Domain::new();
    let before = d.files();
    let sign = [
        "roster",
        "sign",
        "roster.toml",
        "--root",
        "relay.key",
        "--out",
        "roster.signed",
    ];
    d.w.fails(
        &sign,
        "",
        1,
        &["relay.key", "this is a relay key", "root key is needed"],
    );
    assert_eq!(d.files(), before);

    d.sign(&[]);
    let verify = ["roster", "verify", "roster.signed", "--root", &d.relay];
    d.w.fails(
        &verify,
        "",
        1,
        &["this is a relay key", "root key is needed"],
    );
    let verify = ["roster", "verify", "roster.signed", "--root", "relay.key"];
    d.w.fails(
        &verify,
        "",
        1,
        &["relay.key", "this is a relay key", "root key is needed"],
    );
}

#[test]
fn a_relay_address_with_a_space_is_refused() {
    let d = Domain::new();
    let relay2 = d.w.new_key("relay", "relay2.key");
    let before = d.files();
    d.add(&[
        "relay",
        "--name",
        "r2",
        "--address",
        "10.0.0.2 7443",
        "--key",
        &relay2,
    ])
    .assert_fails(1, &["r2", "invalid address"]);
    assert_eq!(d.files(), before);
}

#[test]
fn removing_a_member_takes_effect_in_the_next_signed_roster() {
    let d = Domain::new();
    d.sign(&[]);
    d.w.ok(&["roster", "remove", "roster.toml", "alice"], "");
    d.sign(&[]);
    let run = d.verify(&[]);
    assert!(
        run.stdout.contains("version 2") && run.stdout.contains("0 members"),
        "{run:#?}"
    );
    let before = d.files();
    d.w.fails(
        &["roster", "remove", "roster.toml", "alice"],
        "",
        1,
        &["no member", "alice"],
    );
    assert_eq!(d.files(), before);
}
