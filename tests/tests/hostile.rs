//! Hostile peers speaking raw QUIC to a real relay process: malformed frames from an
//! admitted member, envelopes the relay must not store, and a key outside the roster that
//! tries to send anyway. The relay must answer with an error or close the stream, stay up,
//! and keep serving everyone else.

use std::time::Duration;

use breakglass_protocol::envelope::{self, Content, ContentKind, Destination};
use breakglass_protocol::roster::{Role, Roster};
use breakglass_protocol::wire::{self, ErrorCode, Request, Response, MAX_FRAME};
use breakglass_protocol::MemberSecret;
use breakglass_relay::registry::CLOSE_NOT_MEMBER;
use breakglass_relay::transport::{self, SERVER_NAME};
use breakglass_tests::{client, files_containing, member, Domain, RelayProcess, Run};
use quinn::{Connection, Endpoint};
use tokio::time::timeout;

/// How long any one exchange with the relay may take.
const WAIT: Duration = Duration::from_secs(10);

fn alice_and_bob() -> (Domain, RelayProcess) {
    let members: &[(&str, &[&str])] = &[("alice", &["ops"]), ("bob", &["ops"])];
    let domain = Domain::new(members, &["ops"]).expect("domain is built");
    let relay = RelayProcess::spawn(&domain).expect("relay starts");
    (domain, relay)
}

/// A raw QUIC connection to the relay with `member`'s key; the endpoint must outlive it.
async fn connect_as(domain: &Domain, member: &str) -> (Endpoint, Connection) {
    let secret = domain.member_secret(member).expect("key file");
    let relay_key = *domain.relay_public().verifying_key();
    let (config, _pin) = transport::client_config(secret.signing_key(), relay_key).expect("config");
    let endpoint = transport::client_endpoint("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let addr = domain.relay_addr().expect("relay address");
    let connecting = endpoint
        .connect_with(config, addr, SERVER_NAME)
        .expect("connect starts");
    let conn = timeout(WAIT, connecting)
        .await
        .expect("handshake in time")
        .expect("handshake");
    (endpoint, conn)
}

/// Writes `bytes` on a new stream, finishes it, and reads the whole answer. `Err` when the
/// relay reset or stopped the stream or closed the connection; a hang fails the test.
async fn exchange(conn: &Connection, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let talk = async {
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        // The relay may stop reading a request it has already refused.
        let _ = send.write_all(bytes).await;
        let _ = send.finish();
        recv.read_to_end(MAX_FRAME + 4)
            .await
            .map_err(|e| e.to_string())
    };
    timeout(WAIT, talk)
        .await
        .expect("the relay answers or closes the stream in time")
}

/// Sends one well-formed request and decodes the one answer.
async fn request(conn: &Connection, request: &Request) -> Response {
    let frame = wire::encode(request).expect("encodes");
    let answer = exchange(conn, &frame).await.expect("an answer");
    decode_answer(&answer).expect("a well-formed answer")
}

fn decode_answer(frame: &[u8]) -> Result<Response, String> {
    let (prefix, body) = frame.split_first_chunk::<4>().ok_or("no length prefix")?;
    let len = wire::frame_len(*prefix).map_err(|e| e.to_string())?;
    if len != body.len() {
        return Err(format!(
            "answer announces {len} bytes, carries {}",
            body.len()
        ));
    }
    wire::decode(body).map_err(|e| e.to_string())
}

fn error_code(response: &Response) -> Option<ErrorCode> {
    match response {
        Response::Error { code, .. } => Some(*code),
        _ => None,
    }
}

fn ok(domain: &Domain, member: &str, args: &[&str]) -> Run {
    let run = client(domain, member, args).expect("client runs");
    assert!(run.success(), "{member} {args:?} failed: {run:#?}");
    run
}

fn seal(sender: &str, key: &MemberSecret, roster: &Roster, to: Destination, text: &str) -> Vec<u8> {
    let content = Content {
        kind: ContentKind::Text,
        text: text.into(),
    };
    envelope::seal(sender, key, roster, to, &content)
        .expect("seals")
        .1
}

fn direct(name: &str) -> Destination {
    Destination::Direct(name.into())
}

#[tokio::test]
async fn malformed_frames_are_refused_and_the_relay_keeps_serving() {
    let (domain, mut relay) = alice_and_bob();
    let (_endpoint, conn) = connect_as(&domain, "alice").await;
    let garbage: Vec<u8> = (0..1000u32).map(|i| (i * 37 + 11) as u8).collect();
    let mut small_prefix_garbage = 996u32.to_be_bytes().to_vec();
    small_prefix_garbage.extend_from_slice(&garbage[..996]);
    let mut truncated = 100u32.to_be_bytes().to_vec();
    truncated.extend_from_slice(&[7; 10]);
    let cases: [(&str, Vec<u8>); 5] = [
        ("a length prefix of 0xFFFFFFFF", vec![0xff; 4]),
        ("a frame cut short", truncated),
        ("1000 bytes of garbage", garbage),
        (
            "a well-framed body that is not a request",
            small_prefix_garbage,
        ),
        ("an empty stream", Vec::new()),
    ];

    for (what, bytes) in &cases {
        let answer = exchange(&conn, bytes).await;
        let answer = answer.unwrap_or_else(|e| panic!("{what}: no answer: {e}"));
        let response = decode_answer(&answer).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(error_code(&response), Some(ErrorCode::BadRequest), "{what}");
    }
    // The relay stops reading past the limit; it may answer or just end the stream.
    if let Ok(answer) = exchange(&conn, &vec![0; MAX_FRAME + 5]).await {
        let response = decode_answer(&answer).expect("a well-formed answer");
        assert_eq!(error_code(&response), Some(ErrorCode::BadRequest));
    }

    assert!(relay.is_running(), "{}", relay.log());
    let pong = request(&conn, &Request::Ping).await;
    assert!(matches!(pong, Response::Pong { .. }), "{pong:?}");
    ok(&domain, "alice", &["send", "bob", "still serving"]);
    let read = ok(&domain, "bob", &["read"]);
    assert!(read.stdout.contains("still serving"), "{read:#?}");
}

#[tokio::test]
async fn a_stalled_request_does_not_hold_up_other_requests() {
    let (domain, _relay) = alice_and_bob();
    let (_endpoint, conn) = connect_as(&domain, "alice").await;
    let (mut stalled, _answer) = conn.open_bi().await.expect("stream");
    stalled
        .write_all(&100u32.to_be_bytes())
        .await
        .expect("writes");
    stalled.write_all(&[1; 10]).await.expect("writes");

    let pong = timeout(Duration::from_secs(2), request(&conn, &Request::Ping))
        .await
        .expect("answered while another stream stalls");
    assert!(matches!(pong, Response::Pong { .. }), "{pong:?}");
    ok(&domain, "alice", &["send", "bob", "not held up"]);
    let read = ok(&domain, "bob", &["read"]);
    assert!(read.stdout.contains("not held up"), "{read:#?}");
}

#[tokio::test]
async fn envelopes_that_lie_or_repeat_are_not_stored() {
    let (domain, _relay) = alice_and_bob();
    let (_endpoint, conn) = connect_as(&domain, "alice").await;
    let alice = domain.member_secret("alice").expect("key");
    let roster = domain.roster();
    let send = |envelope: Vec<u8>| Request::Send { envelope };

    let garbage = request(&conn, &send(vec![9; 300])).await;
    assert_eq!(
        error_code(&garbage),
        Some(ErrorCode::BadEnvelope),
        "{garbage:?}"
    );
    let as_bob = seal("bob", &alice, &roster, direct("alice"), "forged");
    let forged = request(&conn, &send(as_bob)).await;
    assert_eq!(
        error_code(&forged),
        Some(ErrorCode::BadEnvelope),
        "{forged:?}"
    );
    let acks = Request::Ack {
        seqs: (0..5000).collect(),
    };
    let too_many = request(&conn, &acks).await;
    assert_eq!(
        error_code(&too_many),
        Some(ErrorCode::BadRequest),
        "{too_many:?}"
    );

    let genuine = seal("alice", &alice, &roster, direct("bob"), "exactly once");
    let first = request(&conn, &send(genuine.clone())).await;
    assert!(
        matches!(first, Response::Accepted { recipients: 1 }),
        "{first:?}"
    );
    let again = request(&conn, &send(genuine)).await;
    assert_eq!(error_code(&again), Some(ErrorCode::Duplicate), "{again:?}");

    let read = ok(&domain, "bob", &["--json", "read"]);
    assert_eq!(read.lines().len(), 1, "{read:#?}");
    assert!(read.stdout.contains("exactly once"), "{read:#?}");
    assert_eq!(ok(&domain, "alice", &["read"]).stdout.trim(), "");
}

#[tokio::test]
async fn a_direct_message_to_a_name_outside_the_roster_is_refused() {
    let (domain, relay) = alice_and_bob();
    let (_endpoint, conn) = connect_as(&domain, "alice").await;
    let alice = domain.member_secret("alice").expect("key");
    let mut with_ghost = domain.roster();
    let ghost_key = MemberSecret::generate().public();
    let ghost = member("ghost", ghost_key, Role::Responder, &[]).expect("member");
    with_ghost.members.push(ghost);
    let envelope = seal("alice", &alice, &with_ghost, direct("ghost"), "for nobody");

    let answer = request(&conn, &Request::Send { envelope }).await;
    assert_eq!(
        error_code(&answer),
        Some(ErrorCode::BadEnvelope),
        "{answer:?}"
    );
    drop(relay);
    let stored = files_containing(&domain.relay_data(), b"ghost").expect("scan");
    assert!(
        stored.is_empty(),
        "a queue for a non-member was written: {stored:?}"
    );
}

#[tokio::test]
async fn a_key_outside_the_roster_gets_no_answer_and_stores_nothing() {
    let (domain, relay) = alice_and_bob();
    let mallory_key = domain.new_key("mallory").expect("key");
    let mallory = domain.member_secret("mallory").expect("key");
    let mut with_mallory = domain.roster();
    with_mallory
        .members
        .push(member("mallory", mallory_key, Role::Responder, &[]).expect("member"));
    let envelope = seal(
        "mallory",
        &mallory,
        &with_mallory,
        direct("bob"),
        "let me in",
    );
    let (_endpoint, conn) = connect_as(&domain, "mallory").await;

    let frame = wire::encode(&Request::Send { envelope }).expect("encodes");
    let answer = exchange(&conn, &frame).await;
    assert!(answer.is_err(), "an outsider got an answer: {answer:?}");
    let closed = timeout(WAIT, conn.closed()).await.expect("closed in time");
    let quinn::ConnectionError::ApplicationClosed(close) = closed else {
        panic!("expected the relay to close the connection, got {closed}");
    };
    assert_eq!(close.error_code.into_inner(), u64::from(CLOSE_NOT_MEMBER));

    assert!(
        relay.log().contains("refused: key not in the roster"),
        "{}",
        relay.log()
    );
    assert_eq!(ok(&domain, "bob", &["read"]).stdout.trim(), "");
    drop(relay);
    let stored = files_containing(&domain.relay_data(), b"mallory").expect("scan");
    assert!(
        stored.is_empty(),
        "the outsider's envelope was written: {stored:?}"
    );
}

#[tokio::test]
async fn the_relay_limits_the_message_not_the_keys_around_it() {
    let members: &[(&str, &[&str])] =
        &[("alice", &["ops"]), ("bob", &["ops"]), ("carol", &["ops"])];
    let domain = Domain::new(members, &["ops"]).expect("domain is built");
    let _relay = RelayProcess::spawn(&domain).expect("relay starts");
    let (_endpoint, conn) = connect_as(&domain, "alice").await;
    let alice = domain.member_secret("alice").expect("key");
    let roster = domain.roster();
    let limit = 256 * 1024;

    // The largest text a client accepts, to a channel: the envelope is larger than the
    // limit because of the per-recipient keys, and must still be stored.
    let largest = "x".repeat(limit);
    let envelope = seal(
        "alice",
        &alice,
        &roster,
        Destination::Channel("ops".into()),
        &largest,
    );
    assert!(envelope.len() > limit);
    let answer = request(&conn, &Request::Send { envelope }).await;
    assert!(
        matches!(answer, Response::Accepted { recipients: 2 }),
        "{answer:?}"
    );

    let too_large = "x".repeat(limit + 1);
    let envelope = seal("alice", &alice, &roster, direct("bob"), &too_large);
    let answer = request(&conn, &Request::Send { envelope }).await;
    assert_eq!(error_code(&answer), Some(ErrorCode::TooLarge), "{answer:?}");
}
