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
fn a_rollback_names_the_version_found_and_the_minimum() {
    let error = RosterError::Rollback {
        found: 2,
        minimum: 5,
    };
    assert_eq!(
        error.to_string(),
        "roster version 2 is below the minimum version 5 (rollback refused)"
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

fn with_relay_address(address: &str) -> Roster {
    let mut roster = sample(Timestamp::now());
    roster.relays[0].address = address.into();
    roster
}

#[test]
fn relay_addresses_need_a_host_and_a_real_port() {
    for good in [
        "203.0.113.7:7443",
        "[::1]:7443",
        "[2001:db8::7]:443",
        "relay.example.org:7443",
        "relay-2.example.org.:1",
        "localhost:65535",
    ] {
        let roster = with_relay_address(good);
        assert_eq!(roster.sign(&root()).err(), None, "{good}");
    }
}

#[test]
fn invalid_relay_addresses_are_refused_with_the_expected_format() {
    for bad in [
        "",
        "relay.example.org",
        "203.0.113.7",
        "203.0.113.7:0",
        "203.0.113.7:65536",
        "203.0.113.7:-1",
        "203.0.113.7:+443",
        "0.0.0.0:7443",
        "[::]:7443",
        "::1:7443",
        "[::1]",
        ":7443",
        "relay example:7443",
        "relay/x:7443",
        "-relay:7443",
        "1.2.3:7443",
        "999.1.1.1:7443",
    ] {
        let error = with_relay_address(bad).sign(&root()).err();
        let expected = RosterError::BadAddress {
            relay: "relay-1".into(),
            address: bad.into(),
        };
        assert_eq!(error, Some(expected), "{bad:?}");
    }
    let error = with_relay_address("0.0.0.0:7443")
        .validate()
        .expect_err("refused");
    assert_eq!(
        error.to_string(),
        "relay \"relay-1\": invalid address \"0.0.0.0:7443\": expected IP:port or host:port, \
         e.g. 203.0.113.7:7443"
    );
}

#[test]
fn a_roster_with_crlf_line_endings_is_refused_with_the_reason() {
    let now = Timestamp::now();
    let root = root();
    let signed = sample(now).sign(&root).expect("signs");
    let text = String::from_utf8(signed).expect("a signed roster is text");
    let converted = text.replace('\n', "\r\n");
    let error = verify(converted.as_bytes(), &root.public(), policy(now)).expect_err("refused");
    assert_eq!(error, RosterError::CrlfLineEndings);
    assert!(error.to_string().contains("CRLF line endings"), "{error}");
    assert!(
        error.to_string().contains("copy it in binary mode"),
        "{error}"
    );
}
