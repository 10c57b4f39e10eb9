use std::time::Duration;

use super::*;
use crate::roster::{Channel, Role};

struct Domain {
    roster: Roster,
    secrets: Vec<(String, MemberSecret)>,
}

impl Domain {
    fn new(names: &[(&str, &[&str])]) -> Self {
        let mut roster = Roster::new(Timestamp::now(), Duration::from_secs(86_400));
        roster.channels.push(Channel {
            name: "ops".parse().expect("valid"),
            description: String::new(),
        });
        let mut secrets = Vec::new();
        for (name, channels) in names {
            let secret = MemberSecret::generate();
            roster.members.push(Member {
                name: name.parse().expect("valid"),
                key: secret.public(),
                role: Role::Responder,
                channels: channels.iter().map(|c| c.parse().expect("valid")).collect(),
            });
            secrets.push((name.to_string(), secret));
        }
        Domain { roster, secrets }
    }

    fn secret(&self, name: &str) -> &MemberSecret {
        &self
            .secrets
            .iter()
            .find(|(n, _)| n == name)
            .expect("test member exists")
            .1
    }

    fn seal(&self, from: &str, to: Destination, text: &str) -> Vec<u8> {
        let content = Content {
            kind: ContentKind::Text,
            text: text.into(),
        };
        seal(from, self.secret(from), &self.roster, to, &content)
            .expect("seals")
            .1
    }

    fn open(&self, bytes: &[u8], me: &str) -> Result<Opened, EnvelopeError> {
        decode(bytes)?.open(&self.roster, me, self.secret(me))
    }
}

fn trio() -> Domain {
    Domain::new(&[
        ("alice", &["ops"]),
        ("bob", &["ops"]),
        ("carol", &["ops"]),
        ("eve", &[]),
    ])
}

#[test]
fn a_direct_message_opens_for_its_recipient_only() {
    let d = trio();
    let bytes = d.seal("alice", Destination::Direct("bob".into()), "hello");
    let opened = d.open(&bytes, "bob").expect("bob opens it");
    assert_eq!(opened.content.text, "hello");
    assert_eq!(opened.header.sender, "alice");
    assert_eq!(
        d.open(&bytes, "carol"),
        Err(EnvelopeError::NotForUs("carol".into()))
    );
}

#[test]
fn a_channel_message_opens_for_every_other_member() {
    let d = trio();
    let bytes = d.seal("alice", Destination::Channel("ops".into()), "status?");
    for name in ["bob", "carol"] {
        assert_eq!(d.open(&bytes, name).expect("opens").content.text, "status?");
    }
    let decoded = decode(&bytes).expect("decodes");
    let recipients: Vec<&str> = decoded.recipients().collect();
    assert_eq!(recipients, vec!["bob", "carol"]);
    assert!(d.open(&bytes, "eve").is_err());
}

#[test]
fn the_plaintext_does_not_appear_in_the_envelope() {
    let d = trio();
    let bytes = d.seal(
        "alice",
        Destination::Direct("bob".into()),
        "the launch code is 0000",
    );
    let needle = b"launch code";
    assert!(!bytes.windows(needle.len()).any(|w| w == needle));
}

#[test]
fn a_sender_outside_the_channel_is_refused() {
    let d = trio();
    // eve is not in #ops; seal refuses nothing, but every reader must.
    let content = Content {
        kind: ContentKind::Text,
        text: "hi".into(),
    };
    let (_, bytes) = seal(
        "eve",
        d.secret("eve"),
        &d.roster,
        Destination::Channel("ops".into()),
        &content,
    )
    .expect("seals");
    assert!(matches!(
        d.open(&bytes, "bob"),
        Err(EnvelopeError::NotInChannel { .. })
    ));
}

#[test]
fn any_flipped_byte_is_refused() {
    let d = trio();
    let bytes = d.seal("alice", Destination::Direct("bob".into()), "integrity");
    for i in 0..bytes.len() {
        let mut altered = bytes.clone();
        altered[i] ^= 0x40;
        assert!(
            d.open(&altered, "bob").is_err(),
            "byte {i} altered and accepted"
        );
    }
}

#[test]
fn a_forged_sender_name_fails_the_signature() {
    let d = trio();
    let content = Content {
        kind: ContentKind::Text,
        text: "trust me".into(),
    };
    // carol signs but claims to be alice.
    let (_, bytes) = seal(
        "alice",
        d.secret("carol"),
        &d.roster,
        Destination::Direct("bob".into()),
        &content,
    )
    .expect("seals");
    assert_eq!(
        d.open(&bytes, "bob"),
        Err(EnvelopeError::BadSignature("alice".into()))
    );
}

#[test]
fn a_sender_missing_from_the_roster_is_refused() {
    let d = trio();
    let bytes = d.seal("alice", Destination::Direct("bob".into()), "hi");
    let mut without_alice = d.roster.clone();
    without_alice.members.retain(|m| m.name.as_str() != "alice");
    let err = decode(&bytes)
        .expect("decodes")
        .open(&without_alice, "bob", d.secret("bob"))
        .expect_err("refused");
    assert_eq!(err, EnvelopeError::UnknownSender("alice".into()));
}

#[test]
fn garbage_never_panics() {
    for len in [0usize, 1, 5, 64, 200] {
        let junk: Vec<u8> = (0..len).map(|i| (i * 37 % 251) as u8).collect();
        assert!(decode(&junk).is_err());
    }
    assert!(matches!(
        decode(&vec![0u8; MAX_ENVELOPE + 1]),
        Err(EnvelopeError::TooLarge(_))
    ));
}

#[test]
fn unknown_recipients_are_refused_when_sealing() {
    let d = trio();
    let content = Content {
        kind: ContentKind::Text,
        text: "x".into(),
    };
    let to_nobody = seal(
        "alice",
        d.secret("alice"),
        &d.roster,
        Destination::Direct("mallory".into()),
        &content,
    );
    assert_eq!(
        to_nobody.map(|_| ()),
        Err(EnvelopeError::UnknownRecipient("mallory".into()))
    );
}

mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_text_round_trips(text in ".{0,512}") {
            let d = Domain::new(&[("alice", &[]), ("bob", &[])]);
            let bytes = d.seal("alice", Destination::Direct("bob".into()), &text);
            let opened = d.open(&bytes, "bob").expect("opens");
            prop_assert_eq!(opened.content.text, text);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let d = Domain::new(&[("alice", &[]), ("bob", &[])]);
            let _ = d.open(&bytes, "bob");
        }
    }
}

#[test]
fn a_member_can_write_to_themselves() {
    let d = trio();
    let bytes = d.seal("alice", Destination::Direct("alice".into()), "canary");
    assert_eq!(
        d.open(&bytes, "alice").expect("opens").content.text,
        "canary"
    );
}
