//! The metrics listener of a real `breakglass-relay serve`: what it serves, what it refuses,
//! and that a misbehaving client or a taken port does not stop the relay.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use common::{free_tcp, free_udp, Fixture, Served};

/// How long one HTTP exchange may take.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A relay serving metrics on a free loopback port, and that port, once it answers.
fn relay_with_metrics() -> (Fixture, Served, SocketAddr) {
    let metrics = free_tcp();
    let fixture = Fixture::new(free_udp(), &format!("metrics = \"{metrics}\""));
    let mut relay = Served::start(&fixture.config, fixture.path("relay.log"));
    relay.wait_for("metrics listener", |_| TcpStream::connect(metrics).is_ok());
    (fixture, relay, metrics)
}

/// Sends `request` as is and returns the whole response.
fn exchange(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    response
}

fn get(addr: SocketAddr, path: &str) -> String {
    exchange(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
}

#[test]
fn metrics_show_the_roster_and_the_empty_queue_in_the_text_format() {
    let (_fixture, _relay, addr) = relay_with_metrics();
    let response = get(addr, "/metrics");
    let (head, body) = response.split_once("\r\n\r\n").expect("head and body");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(
        body.contains("\nbreakglass_relay_roster_version 1\n"),
        "{body}"
    );
    assert!(
        body.contains("\nbreakglass_relay_queue_depth 0\n"),
        "{body}"
    );
    assert!(
        body.contains("\nbreakglass_relay_connections 0\n"),
        "{body}"
    );
    assert!(
        body.contains("# TYPE breakglass_relay_commits_total counter\n"),
        "{body}"
    );
    let expiry = body
        .lines()
        .find_map(|l| l.strip_prefix("breakglass_relay_roster_expiry_seconds "))
        .expect("roster expiry");
    let expiry: i64 = expiry.parse().expect("a number of seconds");
    assert!(expiry > 80 * 86_400 && expiry <= 90 * 86_400, "{expiry}");
}

#[test]
fn any_other_path_is_not_found() {
    let (_fixture, _relay, addr) = relay_with_metrics();
    let response = get(addr, "/other");
    assert!(response.starts_with("HTTP/1.1 404 "), "{response}");
    let response = get(addr, "/");
    assert!(response.starts_with("HTTP/1.1 404 "), "{response}");
}

#[test]
fn a_method_other_than_get_is_refused() {
    let (_fixture, _relay, addr) = relay_with_metrics();
    let response = exchange(
        addr,
        "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    );
    assert!(response.starts_with("HTTP/1.1 405 "), "{response}");
}

#[test]
fn garbage_and_silent_clients_leave_the_relay_and_its_metrics_serving() {
    let (_fixture, mut relay, addr) = relay_with_metrics();
    let garbage = exchange(addr, "\x16\x03\x01 not http at all\r\n\r\n");
    assert!(
        garbage.is_empty() || garbage.starts_with("HTTP/1.1 400 "),
        "{garbage}"
    );
    let oversized = format!(
        "GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let refused = exchange(addr, &oversized);
    assert!(!refused.contains("breakglass_relay_"), "{refused}");
    let _silent: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();

    let response = get(addr, "/metrics");
    assert!(
        response.contains("\nbreakglass_relay_roster_version 1\n"),
        "{response}"
    );
    relay.assert_running();
}

#[test]
fn a_metrics_port_already_taken_leaves_the_relay_serving_without_metrics() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let fixture = Fixture::new(free_udp(), &format!("metrics = \"{addr}\""));
    let mut relay = Served::start(&fixture.config, fixture.path("relay.log"));
    relay.wait_for("complaint about the metrics port", |r| {
        r.logged().contains("cannot listen for metrics")
    });
    assert!(
        relay.logged().contains("relay started"),
        "{}",
        relay.logged()
    );
    std::thread::sleep(Duration::from_millis(300));
    relay.assert_running();
}
