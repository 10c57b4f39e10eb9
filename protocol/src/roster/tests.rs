use super::*;
use crate::keys::MemberSecret;

const DAY: Duration = Duration::from_secs(86_400);

fn root() -> SigningSecret {
    SigningSecret::generate(KeyKind::Root)
}

fn member(name: &str, channels: &[&str]) -> Member {
    Member {
        name: name.parse().expect("valid name"),
        key: MemberSecret::generate().public(),
        role: Role::Responder,
        channels: channels.iter().map(|c| c.parse().expect("valid")).collect(),
    }
}

fn sample(now: Timestamp) -> Roster {
    let mut roster = Roster::new(now, 30 * DAY);
    roster.channels.push(Channel {
        name: "ops".parse().expect("valid"),
        description: String::new(),
    });
    roster.members.push(member("alice", &["ops"]));
    roster.members.push(member("bob", &["ops"]));
    roster.relays.push(Relay {
        name: "relay-1".parse().expect("valid"),
        address: "127.0.0.1:7443".into(),
        key: SigningSecret::generate(KeyKind::Relay).public(),
    });
    roster
}

fn policy(now: Timestamp) -> Policy {
    Policy {
        now,
        min_version: 0,
    }
}

#[test]
fn a_signed_roster_verifies_against_its_root() {
    let now = Timestamp::now();
    let root = root();
    let roster = sample(now);
    let signed = roster.sign(&root).expect("signs");
    let back = verify(&signed, &root.public(), policy(now)).expect("verifies");
    assert_eq!(back, roster);
    assert_eq!(back.channel_members("ops").count(), 2);
}

#[test]
fn every_single_byte_change_is_refused() {
    let now = Timestamp::now();
    let root = root();
    let signed = sample(now).sign(&root).expect("signs");
    for i in (0..signed.len()).step_by(7) {
        let mut altered = signed.clone();
        altered[i] ^= 0x01;
        assert!(
            verify(&altered, &root.public(), policy(now)).is_err(),
            "byte {i} changed and still verified"
        );
    }
}

#[test]
fn a_roster_signed_by_another_root_is_refused() {
    let now = Timestamp::now();
    let signed = sample(now).sign(&root()).expect("signs");
    let err = verify(&signed, &root().public(), policy(now)).expect_err("refused");
    assert!(matches!(err, RosterError::BadSignature(_)), "{err}");
}

#[test]
fn an_expired_roster_is_refused() {
    let then = Timestamp(1_700_000_000);
    let root = root();
    let signed = sample(then).sign(&root).expect("signs");
    let later = then.plus(31 * DAY);
    let err = verify(&signed, &root.public(), policy(later)).expect_err("refused");
    assert!(matches!(err, RosterError::Expired(_)), "{err}");
}

#[test]
fn an_older_version_is_refused_as_rollback() {
    let now = Timestamp::now();
    let root = root();
    let mut roster = sample(now);
    roster.version = 4;
    let signed = roster.sign(&root).expect("signs");
    let strict = Policy {
        now,
        min_version: 5,
    };
    assert_eq!(
        verify(&signed, &root.public(), strict),
        Err(RosterError::Rollback {
            found: 4,
            minimum: 5
        })
    );
}

#[test]
fn unsafe_names_are_refused() {
    for bad in [
        "../etc",
        "a/b",
        "nul\0",
        "tab\there",
        "",
        "Alice",
        "-dash",
        "é",
    ] {
        assert!(bad.parse::<Name>().is_err(), "{bad:?} accepted");
    }
    let long = "a".repeat(MAX_NAME + 1);
    assert!(long.parse::<Name>().is_err());
    for good in ["alice", "bob-2", "probe.dc1", "a_b"] {
        assert!(good.parse::<Name>().is_ok(), "{good:?} refused");
    }
}

#[test]
fn an_unsafe_name_inside_a_signed_body_is_refused() {
    let now = Timestamp::now();
    let root = root();
    let signed = sample(now).sign(&root).expect("signs");
    let (_, body) = split_signed(&signed).expect("splits");
    let evil = String::from_utf8_lossy(body).replace("\"alice\"", "\"../alice\"");
    let sig = root.sign(&signed_bytes(evil.as_bytes()));
    let resigned = format!("{MAGIC}\nsignature: {}\n{evil}", B64.encode(sig.to_bytes()));
    let err = verify(resigned.as_bytes(), &root.public(), policy(now)).expect_err("refused");
    assert!(err.to_string().contains("invalid name"), "{err}");
}

#[test]
fn duplicate_names_and_keys_are_refused() {
    let now = Timestamp::now();
    let mut roster = sample(now);
    roster.members.push(member("alice", &[]));
    assert_eq!(
        roster.validate(),
        Err(RosterError::DuplicateName("alice".into()))
    );

    let mut roster = sample(now);
    let mut twin = member("carol", &[]);
    twin.key = roster.members[0].key;
    roster.members.push(twin);
    assert_eq!(
        roster.validate(),
        Err(RosterError::DuplicateKey("carol".into()))
    );
}

#[test]
fn a_member_in_an_undefined_channel_is_refused() {
    let mut roster = sample(Timestamp::now());
    roster.members.push(member("dave", &["secret"]));
    assert!(matches!(
        roster.validate(),
        Err(RosterError::UnknownChannel { .. })
    ));
}

#[test]
fn garbage_is_refused_without_panicking() {
    let root = root().public();
    let now = policy(Timestamp::now());
    let cases: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"breakglass-roster v1".to_vec(),
        b"breakglass-roster v1\nsignature: !!!\n{}".to_vec(),
        b"breakglass-roster v1\nsignature: AAAA\n{}".to_vec(),
        vec![0xff; 100],
        vec![b'a'; MAX_ROSTER + 1],
    ];
    for case in cases {
        assert!(verify(&case, &root, now).is_err());
        assert!(inspect_unverified(&case).is_err());
    }
}

#[test]
fn the_toml_source_round_trips() {
    let roster = sample(Timestamp::now());
    let text = toml::to_string(&roster).expect("serialises");
    let back: Roster = toml::from_str(&text).expect("parses");
    assert_eq!(back, roster);
}
