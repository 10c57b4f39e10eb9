//! `breakglass selftest` as a monitoring system runs it: the exit code, the one summary
//! line with its perfdata, `--json` and `--prometheus`, against a healthy relay and against
//! each fault the self-test exists to catch.
//!
//! Faults a real relay cannot be made to commit (silence after the handshake, a canary
//! that comes back altered, a roster signed by someone else) come from a fake relay run in
//! the test: a QUIC endpoint holding the domain's real relay key, so the client's pin
//! matches and the fault under test is the only one. A fake that answers faithfully passes
//! the self-test, which shows each fault test fails for its own fault.
//!
//! Every run uses `--timeout 3s` and must end within that plus [`SLACK`]; every run's
//! standard error is checked for a panic.

use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use breakglass_keygen::keyio;
use breakglass_protocol::envelope;
use breakglass_protocol::roster::Timestamp;
use breakglass_protocol::wire::{self, Delivery, ErrorCode, Request, Response, MAX_FRAME};
use breakglass_protocol::{KeyKind, SigningPublic, SigningSecret};
use breakglass_relay::transport::{self, SERVER_NAME};
use breakglass_tests::{binary, client, client_with_config, Domain, RelayProcess, Run};
use quinn::{Connection, Endpoint, SendStream};
use serde_json::Value;
use tokio::runtime::Runtime;
use tokio::sync::watch;

/// The `--timeout` every run here passes.
const TIMEOUT: &str = "3s";
/// The same, as a duration.
const TIMEOUT_DURATION: Duration = Duration::from_secs(3);
/// What a run may take beyond its `--timeout`: process start, key loading, printing.
const SLACK: Duration = Duration::from_secs(2);
/// The name of the relay in the configurations this file writes.
const FAKE: &str = "fake";

#[test]
fn a_healthy_relay_passes_with_one_ok_line_and_perfdata() {
    let (domain, _relay) = alice_and_relay();
    let config = domain.client_config("alice").expect("config");

    let test = selftest(&config, &[]);

    assert_eq!(test.run.status.code(), Some(0), "{test:#?}");
    let line = summary(&test);
    assert!(
        line.starts_with("BREAKGLASS OK - 1/1 relays passed"),
        "{test:#?}"
    );
    let perfdata = line.split_once('|').map(|(_, p)| p).unwrap_or_default();
    assert!(
        perfdata.contains("rtt_"),
        "no rtt in the perfdata: {test:#?}"
    );
}

#[test]
fn the_json_report_says_ok_and_gives_the_round_trip_time() {
    let (domain, _relay) = alice_and_relay();
    let config = domain.client_config("alice").expect("config");

    let test = selftest(&config, &["--json"]);

    assert_eq!(test.run.status.code(), Some(0), "{test:#?}");
    let report: Value = serde_json::from_str(summary(&test)).expect("one JSON object");
    assert_eq!(report["status"], "OK", "{report:#}");
    assert_eq!(report["code"], 0, "{report:#}");
    let rtt = report["relays"][0]["rtt_ms"].as_f64();
    assert!(rtt.is_some_and(|ms| ms > 0.0), "{report:#}");
}

#[test]
fn the_prometheus_file_is_written_whole_and_leaves_no_temporary_file() {
    let (domain, _relay) = alice_and_relay();
    let config = domain.client_config("alice").expect("config");
    let folder = domain.path().join("textfile-collector");
    fs::create_dir(&folder).expect("folder");
    let prom = folder.join("breakglass.prom");

    let test = selftest(&config, &["--prometheus", prom.to_str().expect("UTF-8")]);

    assert_eq!(test.run.status.code(), Some(0), "{test:#?}");
    let text = fs::read_to_string(&prom).expect("the text-file is written");
    assert!(text.contains("breakglass_selftest_status 0\n"), "{text}");
    assert!(
        text.contains("breakglass_selftest_relay_up{relay=\"test\"} 1\n"),
        "{text}"
    );
    let mut names: Vec<_> = fs::read_dir(&folder)
        .expect("lists")
        .map(|e| e.expect("entry").file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["breakglass.prom"], "files left in the folder");
}

#[test]
fn canaries_are_never_shown_and_leave_the_queue_empty() {
    let (domain, _relay) = alice_and_relay();
    let config = domain.client_config("alice").expect("config");
    let first = selftest(&config, &[]);
    assert_eq!(first.run.status.code(), Some(0), "{first:#?}");

    let waiting = waiting_for(&domain, "alice");
    assert!(waiting.is_empty(), "the relay still queues {waiting:?}");
    let second = selftest(&config, &[]);
    assert_eq!(second.run.status.code(), Some(0), "{second:#?}");
    let read = client(&domain, "alice", &["--json", "read"]).expect("client runs");

    assert!(read.success(), "{read:#?}");
    assert_eq!(read.stdout.trim(), "", "a canary was shown: {read:#?}");
    assert_no_panic(&read);
    let waiting = waiting_for(&domain, "alice");
    assert!(waiting.is_empty(), "the relay still queues {waiting:?}");
}

#[test]
fn a_stopped_relay_is_critical_and_named_unreachable_within_the_deadline() {
    let (domain, mut relay) = alice_and_relay();
    let config = domain.client_config("alice").expect("config");
    relay.kill().expect("relay stops");

    let test = selftest(&config, &[]);

    assert_eq!(test.run.status.code(), Some(2), "{test:#?}");
    assert_within_deadline(&test);
    let line = summary(&test);
    assert!(line.starts_with("BREAKGLASS CRITICAL - 0/1"), "{test:#?}");
    let addr = relay.addr().to_string();
    assert!(
        line.contains("test:") && line.contains(&addr) && line.contains("unreachable"),
        "{test:#?}"
    );
}

#[test]
fn a_relay_presenting_another_key_than_the_pinned_one_is_critical() {
    let (domain, _relay) = alice_and_relay();
    let other = SigningSecret::generate(KeyKind::Relay).public();
    let config = domain
        .client_config_pinning("alice", &other)
        .expect("config");

    let test = selftest(&config, &[]);

    assert_eq!(test.run.status.code(), Some(2), "{test:#?}");
    assert_within_deadline(&test);
    let line = summary(&test);
    assert!(line.starts_with("BREAKGLASS CRITICAL"), "{test:#?}");
    assert!(line.contains("presented key"), "{test:#?}");
    assert!(line.contains(&other.fingerprint()), "{test:#?}");
}

#[test]
fn a_relay_that_accepts_and_then_says_nothing_is_critical_within_the_deadline() {
    let domain = alice_only();
    let fake = FakeRelay::start(&domain, Script::Silent);
    let config = config_for(&domain, "alice", &[(FAKE, fake.addr)]);

    let test = selftest(&config, &[]);

    assert_eq!(test.run.status.code(), Some(2), "{test:#?}");
    assert_within_deadline(&test);
    let line = summary(&test);
    assert!(line.starts_with("BREAKGLASS CRITICAL - 0/1"), "{test:#?}");
    assert!(line.contains(&format!("{FAKE}:")), "{test:#?}");
}

#[test]
fn a_faithful_fake_relay_passes_so_each_fault_below_is_the_only_one() {
    let domain = alice_only();
    let fake = FakeRelay::start(&domain, Script::Relay(Fault::None, real_roster(&domain)));
    let config = config_for(&domain, "alice", &[(FAKE, fake.addr)]);

    let test = selftest(&config, &[]);

    assert_eq!(test.run.status.code(), Some(0), "{test:#?}");
    assert!(
        summary(&test).starts_with("BREAKGLASS OK - 1/1 relays passed"),
        "{test:#?}"
    );
}

#[test]
fn a_canary_that_comes_back_altered_is_critical() {
    let domain = alice_only();
    let fake = FakeRelay::start(
        &domain,
        Script::Relay(Fault::AlterCanary, real_roster(&domain)),
    );
    let config = config_for(&domain, "alice", &[(FAKE, fake.addr)]);

    let test = selftest(&config, &[]);

    assert_eq!(test.run.status.code(), Some(2), "{test:#?}");
    assert_within_deadline(&test);
    let line = summary(&test);
    assert!(line.starts_with("BREAKGLASS CRITICAL - 0/1"), "{test:#?}");
    assert!(line.contains("altered"), "{test:#?}");
}

#[test]
fn a_relays_refusal_text_can_neither_add_a_line_nor_forge_perfdata() {
    let domain = alice_only();
    let fake = FakeRelay::start(
        &domain,
        Script::Relay(Fault::RefuseSend, real_roster(&domain)),
    );
    let config = config_for(&domain, "alice", &[(FAKE, fake.addr)]);

    let test = selftest(&config, &[]);

    assert_eq!(test.run.status.code(), Some(2), "{test:#?}");
    let line = summary(&test);
    assert!(line.starts_with("BREAKGLASS CRITICAL - 0/1"), "{test:#?}");
    assert!(line.contains("disk full"), "{test:#?}");
    let (_, perfdata) = line.split_once('|').expect("perfdata");
    assert!(
        perfdata.trim().starts_with("relays_ok=0;;;0;1"),
        "{test:#?}"
    );
    assert!(!perfdata.contains("rtt_"), "{test:#?}");
}

#[test]
fn a_roster_signed_by_another_root_is_refused_and_critical() {
    let domain = alice_only();
    let stranger = SigningSecret::generate(KeyKind::Root);
    let forged = domain.roster().sign(&stranger).expect("signs");
    let fake = FakeRelay::start(&domain, Script::Relay(Fault::None, forged));
    let config = config_for(&domain, "alice", &[(FAKE, fake.addr)]);

    let test = selftest(&config, &[]);

    assert_eq!(test.run.status.code(), Some(2), "{test:#?}");
    assert_within_deadline(&test);
    let line = summary(&test);
    assert!(line.starts_with("BREAKGLASS CRITICAL"), "{test:#?}");
    assert!(line.contains("roster refused"), "{test:#?}");
}

#[test]
fn a_roster_expiring_within_14_days_is_a_warning() {
    let domain = alice_only();
    let mut roster = domain.roster();
    roster.issued_at = Timestamp::now();
    roster.expires_at = roster.issued_at.plus(Duration::from_secs(5 * 86_400));
    let signed = roster.sign(&root_secret(&domain)).expect("signs");
    // The relay has not run yet, so the roster it starts with is this one.
    fs::write(domain.path().join("roster.signed"), signed).expect("writes");
    let _relay = RelayProcess::spawn(&domain).expect("relay starts");
    let config = domain.client_config("alice").expect("config");

    let test = selftest(&config, &[]);

    assert_eq!(test.run.status.code(), Some(1), "{test:#?}");
    let line = summary(&test);
    assert!(
        line.starts_with("BREAKGLASS WARNING - 1/1 relays passed"),
        "{test:#?}"
    );
    assert!(line.contains("expires"), "{test:#?}");
}

#[test]
fn one_relay_down_out_of_two_is_a_warning() {
    let (domain, relay) = alice_and_relay();
    // A bound socket that never reads: packets to it vanish, as to a firewalled relay.
    let black_hole = UdpSocket::bind("127.0.0.1:0").expect("binds");
    let down = black_hole.local_addr().expect("address");
    let config = config_for(&domain, "alice", &[("up", relay.addr()), ("down", down)]);

    let test = selftest(&config, &[]);

    assert_eq!(test.run.status.code(), Some(1), "{test:#?}");
    assert_within_deadline(&test);
    let line = summary(&test);
    assert!(
        line.starts_with("BREAKGLASS WARNING - 1/2 relays passed"),
        "{test:#?}"
    );
    assert!(line.contains("down:"), "{test:#?}");
}

#[test]
fn a_key_file_others_can_read_is_critical_and_named() {
    let (domain, _relay) = alice_and_relay();
    let config = domain.client_config("alice").expect("config");
    let key = domain.path().join("alice.key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).expect("chmod");

    let test = selftest(&config, &[]);

    assert_eq!(test.run.status.code(), Some(2), "{test:#?}");
    let line = summary(&test);
    assert!(line.starts_with("BREAKGLASS CRITICAL"), "{test:#?}");
    assert!(line.contains(key.to_str().expect("UTF-8")), "{test:#?}");
}

#[test]
fn a_missing_key_file_is_critical() {
    let (domain, _relay) = alice_and_relay();
    let config = domain.client_config("alice").expect("config");
    let key = domain.path().join("alice.key");
    fs::remove_file(&key).expect("removes");

    let test = selftest(&config, &[]);

    assert_eq!(test.run.status.code(), Some(2), "{test:#?}");
    let line = summary(&test);
    assert!(line.starts_with("BREAKGLASS CRITICAL"), "{test:#?}");
    assert!(line.contains(key.to_str().expect("UTF-8")), "{test:#?}");
}

#[test]
fn a_missing_config_file_is_unknown_also_to_prometheus() {
    let domain = alice_only();
    let config = domain.path().join("nowhere.toml");
    let prom = domain.path().join("breakglass.prom");

    let test = selftest(&config, &["--prometheus", prom.to_str().expect("UTF-8")]);

    assert_eq!(test.run.status.code(), Some(3), "{test:#?}");
    let line = summary(&test);
    assert!(line.starts_with("BREAKGLASS UNKNOWN - "), "{test:#?}");
    assert!(line.contains("nowhere.toml"), "{test:#?}");
    let text = fs::read_to_string(&prom).expect("the text-file is written");
    assert!(text.contains("breakglass_selftest_status 3\n"), "{text}");
}

/// One finished self-test and how long it took, wall clock.
#[derive(Debug)]
struct Selftest {
    run: Run,
    elapsed: Duration,
}

/// Runs `breakglass --config CONFIG selftest --timeout 3s EXTRA…`, checking it did not
/// panic.
fn selftest(config: &Path, extra: &[&str]) -> Selftest {
    let mut args = vec!["selftest", "--timeout", TIMEOUT];
    args.extend_from_slice(extra);
    // A first call may build the binaries; that is not the self-test's time.
    binary("breakglass").expect("the client binary");
    let started = Instant::now();
    let run = client_with_config(config, &args, None).expect("the client runs");
    let test = Selftest {
        run,
        elapsed: started.elapsed(),
    };
    assert_no_panic(&test.run);
    test
}

fn assert_no_panic(run: &Run) {
    assert!(!run.stderr.contains("panicked"), "{run:#?}");
}

fn assert_within_deadline(test: &Selftest) {
    assert!(
        test.elapsed < TIMEOUT_DURATION + SLACK,
        "took {:.1?} with --timeout {TIMEOUT}: {test:#?}",
        test.elapsed
    );
}

/// The one line the self-test printed; fails the test when it printed more or none.
fn summary(test: &Selftest) -> &str {
    match test.run.stdout.lines().collect::<Vec<_>>().as_slice() {
        [line] => line,
        lines => panic!("{} lines instead of one: {test:#?}", lines.len()),
    }
}

fn alice_only() -> Domain {
    let members: &[(&str, &[&str])] = &[("alice", &[])];
    Domain::new(members, &[]).expect("domain is built")
}

fn alice_and_relay() -> (Domain, RelayProcess) {
    let domain = alice_only();
    let relay = RelayProcess::spawn(&domain).expect("relay starts");
    (domain, relay)
}

fn root_secret(domain: &Domain) -> SigningSecret {
    keyio::load_unattended(&domain.path().join("root.key"), KeyKind::Root)
        .expect("root key")
        .into_signing(KeyKind::Root)
        .expect("a root key")
}

fn relay_secret(domain: &Domain) -> SigningSecret {
    keyio::load_unattended(&domain.path().join("relay.key"), KeyKind::Relay)
        .expect("relay key")
        .into_signing(KeyKind::Relay)
        .expect("a relay key")
}

/// The signed roster the domain's relay would serve.
fn real_roster(domain: &Domain) -> Vec<u8> {
    fs::read(domain.path().join("roster.signed")).expect("roster.signed")
}

/// Writes `member-selftest.toml`, pinning the domain's relay key for every relay listed.
fn config_for(domain: &Domain, member: &str, relays: &[(&str, SocketAddr)]) -> PathBuf {
    let root: SigningPublic = root_secret(domain).public();
    let key = domain.relay_public();
    let mut text = format!(
        "name = \"{member}\"\nkey = \"{member}.key\"\ndata_dir = \"{member}.data\"\n\
         root = \"{root}\"\nconnect_timeout = \"2s\"\n"
    );
    for (name, addr) in relays {
        text.push_str(&format!(
            "\n[[relays]]\nname = \"{name}\"\naddress = \"{addr}\"\nkey = \"{key}\"\n"
        ));
    }
    let path = domain.path().join(format!("{member}-selftest.toml"));
    fs::write(&path, text).expect("writes the config");
    path
}

/// What is waiting in `member`'s queue on the domain's relay, asked over raw QUIC so that
/// nothing is acknowledged or hidden on the way.
fn waiting_for(domain: &Domain, member: &str) -> Vec<Delivery> {
    let runtime = Runtime::new().expect("runtime");
    let ask = async {
        let secret = domain.member_secret(member).expect("key file");
        let pin = *domain.relay_public().verifying_key();
        let (config, _) = transport::client_config(secret.signing_key(), pin).expect("config");
        let endpoint = transport::client_endpoint(localhost(0)).expect("binds");
        let addr = domain.relay_addr().expect("relay address");
        let connecting = endpoint.connect_with(config, addr, SERVER_NAME);
        let conn = connecting
            .expect("connect starts")
            .await
            .expect("handshake");
        let fetch = Request::Fetch {
            after: None,
            limit: 100,
        };
        let (mut send, mut recv) = conn.open_bi().await.expect("stream");
        send.write_all(&wire::encode(&fetch).expect("encodes"))
            .await
            .expect("writes");
        send.finish().expect("finishes");
        let answer = recv.read_to_end(MAX_FRAME + 4).await.expect("answer");
        conn.close(0u32.into(), b"done");
        let body = frame_body(&answer).expect("one whole frame");
        wire::decode::<Response>(body).expect("a well-formed answer")
    };
    let bounded = async { tokio::time::timeout(Duration::from_secs(10), ask).await };
    match runtime
        .block_on(bounded)
        .expect("the relay answers in time")
    {
        Response::Messages { items } => items,
        other => panic!("unexpected answer to Fetch: {other:?}"),
    }
}

fn localhost(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The body of one whole length-prefixed frame.
fn frame_body(frame: &[u8]) -> Option<&[u8]> {
    let (prefix, body) = frame.split_first_chunk::<4>()?;
    let len = wire::frame_len(*prefix).ok()?;
    (len == body.len()).then_some(body)
}

/// How the fake relay behaves.
#[derive(Clone)]
enum Script {
    /// Completes the handshake, accepts every stream, reads it, and never answers.
    Silent,
    /// Answers as a relay does, serving this signed roster and queueing what is sent
    /// back to the sender.
    Relay(Fault, Vec<u8>),
}

/// The one thing a [`Script::Relay`] does wrong, if any.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Nothing: the self-test must pass.
    None,
    /// Flips a byte of each envelope before delivering it.
    AlterCanary,
    /// Refuses every send with [`FORGED_REFUSAL`].
    RefuseSend,
}

/// A refusal whose text tries to start a second summary line and its own perfdata.
const FORGED_REFUSAL: &str = "disk full\nBREAKGLASS OK - 1/1 relays passed | 'rtt_fake'=0.001s";

/// A QUIC endpoint with the domain's real relay key, following a [`Script`]; its runtime,
/// and with it every connection, stops when it drops.
struct FakeRelay {
    addr: SocketAddr,
    _runtime: Runtime,
}

impl FakeRelay {
    fn start(domain: &Domain, script: Script) -> FakeRelay {
        let runtime = Runtime::new().expect("runtime");
        let key = relay_secret(domain);
        let endpoint = {
            let _inside = runtime.enter();
            transport::server_endpoint(localhost(0), key.signing_key()).expect("binds")
        };
        let addr = endpoint.local_addr().expect("address");
        runtime.spawn(accept(endpoint, script));
        FakeRelay {
            addr,
            _runtime: runtime,
        }
    }
}

async fn accept(endpoint: Endpoint, script: Script) {
    while let Some(incoming) = endpoint.accept().await {
        let script = script.clone();
        tokio::spawn(async move {
            if let Ok(conn) = incoming.await {
                serve(conn, script).await;
            }
        });
    }
}

/// Serves one connection. The last envelope sent on it is what its subscription delivers.
async fn serve(conn: Connection, script: Script) {
    let (sent, _) = watch::channel(None::<Vec<u8>>);
    while let Ok((send, recv)) = conn.accept_bi().await {
        let (conn, script, sent) = (conn.clone(), script.clone(), sent.clone());
        tokio::spawn(async move {
            let mut recv = recv;
            let Ok(bytes) = recv.read_to_end(MAX_FRAME + 4).await else {
                return;
            };
            match (
                script,
                frame_body(&bytes).and_then(|b| wire::decode::<Request>(b).ok()),
            ) {
                (Script::Silent, _) => hold(conn, send).await,
                (Script::Relay(fault, roster), Some(request)) => {
                    answer(&conn, send, request, fault, roster, &sent).await;
                }
                (Script::Relay(..), None) => {}
            }
        });
    }
}

/// Keeps a stream open, unanswered, until the connection ends.
async fn hold(conn: Connection, send: SendStream) {
    conn.closed().await;
    drop(send);
}

async fn answer(
    conn: &Connection,
    mut send: SendStream,
    request: Request,
    fault: Fault,
    roster: Vec<u8>,
    sent: &watch::Sender<Option<Vec<u8>>>,
) {
    let response = match request {
        Request::GetRoster => Response::Roster { signed: roster },
        Request::Ping => Response::Pong { unix_ms: unix_ms() },
        Request::Send { .. } if fault == Fault::RefuseSend => Response::Error {
            code: ErrorCode::Internal,
            message: FORGED_REFUSAL.into(),
        },
        Request::Send { envelope } => {
            sent.send_replace(Some(envelope));
            Response::Accepted { recipients: 1 }
        }
        Request::Ack { seqs } => Response::Acked {
            removed: u32::try_from(seqs.len()).expect("few acks"),
        },
        Request::Subscribe => {
            let envelope = next_envelope(sent.subscribe()).await;
            let envelope = match fault {
                Fault::AlterCanary => altered(&envelope),
                Fault::None | Fault::RefuseSend => envelope,
            };
            let items = vec![Delivery { seq: 1, envelope }];
            let frame = wire::encode(&Response::Messages { items }).expect("encodes");
            let _ = send.write_all(&frame).await;
            return hold(conn.clone(), send).await;
        }
        other => Response::Error {
            code: ErrorCode::BadRequest,
            message: format!("the fake relay does not do {other:?}"),
        },
    };
    let frame = wire::encode(&response).expect("encodes");
    let _ = send.write_all(&frame).await;
    let _ = send.finish();
}

async fn next_envelope(mut sent: watch::Receiver<Option<Vec<u8>>>) -> Vec<u8> {
    match sent.wait_for(Option::is_some).await {
        Ok(envelope) => envelope.clone().unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

/// `envelope` with the last byte of its ciphertext flipped: it still decodes, with the
/// same header, so only verification can tell.
fn altered(envelope: &[u8]) -> Vec<u8> {
    let original = envelope::decode(envelope).expect("the client sent an envelope");
    // The encoding ends with the body (whose last field is the ciphertext), then the
    // signature's one-byte length and its 64 bytes.
    let at = envelope.len() - 1 - 64 - 1;
    let mut bytes = envelope.to_vec();
    bytes[at] ^= 0x01;
    let changed = envelope::decode(&bytes).expect("still decodes as an envelope");
    assert_eq!(changed.body.header, original.body.header);
    assert_ne!(changed.body.ciphertext, original.body.ciphertext);
    bytes
}

fn unix_ms() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH);
    since.map_or(0, |d| u64::try_from(d.as_millis()).expect("fits"))
}
