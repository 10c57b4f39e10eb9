//! The optional metrics listener: Prometheus text format 0.0.4 at `GET /metrics`, over
//! plain HTTP/1.1 (any other path is 404).
//!
//! It only reads the relay's shared state, and nothing it meets can stop the relay: a bind
//! that fails, an accept that fails and a client that misbehaves are logged, and members
//! go on being served. Each connection is bounded: one request (no keep-alive), its
//! head within [`HEAD_TIMEOUT`], the whole exchange within [`EXCHANGE_TIMEOUT`], a request
//! body never read, and at most [`MAX_CONNECTIONS`] at once.

use std::convert::Infallible;
use std::fmt::{Display, Write as _};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use breakglass_protocol::roster::Timestamp;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{debug, error, info, warn};

use crate::check::seconds_until;
use crate::server::Shared;

/// The content type of the Prometheus text exposition format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// How long a client has to send its request line and headers.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one connection may last, request and response together.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more are closed unanswered.
pub const MAX_CONNECTIONS: usize = 16;
/// hyper's smallest read buffer, which also bounds a request's head.
const MAX_HEAD: usize = 8 * 1024;
/// The pause after a failed accept (usually no file descriptors left), so as not to spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Binds `addr` and serves metrics from `shared` in a background task; returns the
/// address bound, or `None` when binding failed, which is logged and leaves the relay
/// serving without metrics.
pub async fn start(addr: SocketAddr, shared: Arc<Shared>) -> Option<SocketAddr> {
    let listener = match TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(e) => {
            error!(%addr, error = %e, "cannot listen for metrics; serving without them");
            return None;
        }
    };
    let bound = listener.local_addr().unwrap_or(addr);
    info!(listen = %bound, "metrics at http://{bound}/metrics");
    tokio::spawn(serve(listener, shared));
    Some(bound)
}

/// Answers metrics requests on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!(error = %e, "metrics listener cannot accept");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            debug!(%peer, "too many metrics connections; closing one");
            continue;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            exchange(stream, peer, shared).await;
            drop(slot);
        });
    }
}

/// Serves one connection: one request, one response, within the time limits.
async fn exchange(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let service = service_fn(move |request| {
        let response = respond(&request, &shared);
        std::future::ready(Ok::<_, Infallible>(response))
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .keep_alive(false)
        .max_buf_size(MAX_HEAD)
        .serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(EXCHANGE_TIMEOUT, connection).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(%peer, error = %e, "metrics request failed"),
        Err(_) => warn!(%peer, "metrics request timed out"),
    }
}

/// The answer to one request; its body is never read.
fn respond(request: &Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    if request.uri().path() != "/metrics" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found; metrics are at /metrics\n",
        );
    }
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let mut response = Response::new(Full::new(Bytes::from(Snapshot::of(shared).render())));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(TEXT_FORMAT));
    response
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The relay's numbers at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// Member connections open now.
    pub connections: u64,
    /// Connections admitted since start.
    pub admitted: u64,
    /// Connections refused since start.
    pub refused: u64,
    /// Envelopes stored since start.
    pub stored: u64,
    /// Envelopes handed to recipients since start, redeliveries included.
    pub delivered: u64,
    /// Messages waiting, one per recipient.
    pub queue_depth: u64,
    /// Store commits since start.
    pub commits: u64,
    /// Writes those commits made durable.
    pub commit_writes: u64,
    /// Time all commits spent in flush and fsync, in seconds.
    pub fsync_seconds_total: f64,
    /// Time the last commit spent in flush and fsync, in seconds.
    pub last_fsync_seconds: f64,
    /// The version of the roster in force.
    pub roster_version: u64,
    /// Seconds until the roster in force expires; negative once it has.
    pub roster_expiry_seconds: i64,
}

impl Snapshot {
    /// Reads the numbers from the relay's shared state.
    pub fn of(shared: &Shared) -> Snapshot {
        let counters = &shared.counters;
        let stats = shared.store.stats();
        let roster = shared.roster();
        Snapshot {
            connections: shared.registry.connections() as u64,
            admitted: counters.admitted.load(Ordering::Relaxed),
            refused: counters.refused.load(Ordering::Relaxed),
            stored: counters.stored.load(Ordering::Relaxed),
            delivered: counters.delivered.load(Ordering::Relaxed),
            queue_depth: stats.queue_depth,
            commits: stats.commits,
            commit_writes: stats.writes,
            fsync_seconds_total: micros_to_seconds(stats.total_sync_micros),
            last_fsync_seconds: micros_to_seconds(stats.last_sync_micros),
            roster_version: roster.roster.version,
            roster_expiry_seconds: seconds_until(roster.roster.expires_at, Timestamp::now()),
        }
    }

    /// The numbers in the Prometheus text format, each with its HELP and TYPE lines.
    pub fn render(&self) -> String {
        let mut out = Exposition::default();
        out.gauge(
            "connections",
            "Member connections open now.",
            self.connections,
        );
        out.counter(
            "connections_admitted_total",
            "Connections admitted since the relay started.",
            self.admitted,
        );
        out.counter(
            "connections_refused_total",
            "Connections refused since the relay started (key not in the roster).",
            self.refused,
        );
        out.counter(
            "messages_stored_total",
            "Envelopes made durable since the relay started.",
            self.stored,
        );
        out.counter(
            "messages_delivered_total",
            "Envelopes handed to recipients since the relay started, redeliveries included.",
            self.delivered,
        );
        out.gauge(
            "queue_depth",
            "Messages waiting for their recipients, one per recipient.",
            self.queue_depth,
        );
        self.render_store(&mut out);
        out.gauge(
            "roster_version",
            "Version of the roster in force.",
            self.roster_version,
        );
        out.gauge(
            "roster_expiry_seconds",
            "Seconds until the roster in force expires; negative once it has.",
            self.roster_expiry_seconds,
        );
        out.text
    }

    fn render_store(&self, out: &mut Exposition) {
        out.counter(
            "fsync_seconds_total",
            "Time store commits spent in flush and fsync since the relay started.",
            self.fsync_seconds_total,
        );
        out.counter(
            "commits_total",
            "Store commits (one flush and fsync round each) since the relay started.",
            self.commits,
        );
        out.counter(
            "commit_writes_total",
            "Writes made durable by those commits; over commits_total, the group size.",
            self.commit_writes,
        );
        out.gauge(
            "last_fsync_seconds",
            "Time the last store commit spent in flush and fsync.",
            self.last_fsync_seconds,
        );
    }
}

fn micros_to_seconds(micros: u64) -> f64 {
    Duration::from_micros(micros).as_secs_f64()
}

/// A text exposition being written; every name gets the `breakglass_relay_` prefix.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn counter(&mut self, name: &str, help: &str, value: impl Display) {
        self.metric(name, "counter", help, value);
    }

    fn gauge(&mut self, name: &str, help: &str, value: impl Display) {
        self.metric(name, "gauge", help, value);
    }

    fn metric(&mut self, name: &str, kind: &str, help: &str, value: impl Display) {
        // Writing to a String cannot fail.
        let _ = write!(
            self.text,
            "# HELP breakglass_relay_{name} {help}\n\
             # TYPE breakglass_relay_{name} {kind}\n\
             breakglass_relay_{name} {value}\n"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_has_help_and_type_lines_before_its_sample() {
        let text = Snapshot::default().render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len() % 3, 0, "{text}");
        assert_eq!(lines.len() / 3, 12, "{text}");
        for triple in lines.chunks(3) {
            let name = triple[2].split(' ').next().expect("a sample line");
            assert!(
                triple[0].starts_with(&format!("# HELP {name} ")),
                "{triple:?}"
            );
            assert!(
                triple[1].starts_with(&format!("# TYPE {name} ")),
                "{triple:?}"
            );
            assert!(name.starts_with("breakglass_relay_"), "{name}");
        }
    }

    #[test]
    fn counters_end_in_total_and_gauges_do_not() {
        let text = Snapshot::default().render();
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let mut words = line.split(' ').skip(2);
            let (name, kind) = (words.next().expect("name"), words.next().expect("kind"));
            assert_eq!(name.ends_with("_total"), kind == "counter", "{line}");
        }
    }

    #[test]
    fn an_expired_roster_shows_a_negative_expiry_and_times_are_in_seconds() {
        let snapshot = Snapshot {
            roster_version: 7,
            roster_expiry_seconds: -30,
            fsync_seconds_total: micros_to_seconds(2_500_000),
            last_fsync_seconds: micros_to_seconds(1_500),
            ..Snapshot::default()
        };
        let text = snapshot.render();
        assert!(
            text.contains("\nbreakglass_relay_roster_version 7\n"),
            "{text}"
        );
        assert!(
            text.contains("\nbreakglass_relay_roster_expiry_seconds -30\n"),
            "{text}"
        );
        assert!(
            text.contains("\nbreakglass_relay_fsync_seconds_total 2.5\n"),
            "{text}"
        );
        assert!(
            text.contains("\nbreakglass_relay_last_fsync_seconds 0.0015\n"),
            "{text}"
        );
    }
}
