//! The relay's shared state and its accept loop.
//!
//! One [`Shared`] holds what every connection needs: the pinned root key, the roster in
//! force, the store, the registry of connected members, the limits and the counters.
//! Each accepted connection runs in its own task (see [`crate::connection`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, bail, Context, Result};
use breakglass_protocol::roster::{self, Policy, Roster, Timestamp};
use breakglass_protocol::{SigningPublic, SigningSecret};
use tracing::{error, info, warn};

use crate::registry::Registry;
use crate::store::Store;
use crate::transport;

/// How often expired messages are swept out of the store.
const EXPIRY_SWEEP: Duration = Duration::from_secs(600);

/// Everything needed to start a relay.
pub struct Settings {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The relay's identity key.
    pub relay_key: SigningSecret,
    /// The root key rosters must be signed with.
    pub root: SigningPublic,
    /// The signed roster from the configuration, used unless the store holds a newer one.
    pub roster: Vec<u8>,
    /// The store's folder.
    pub data_dir: PathBuf,
    /// How long messages are kept.
    pub ttl: Duration,
    /// The largest envelope accepted.
    pub max_message: usize,
}

/// A roster that passed verification, with the signed bytes clients fetch.
pub struct RosterInForce {
    /// The roster.
    pub roster: Roster,
    /// Its signed form.
    pub signed: Vec<u8>,
}

/// Counters for logs and metrics.
#[derive(Default)]
pub struct Counters {
    /// Connections admitted.
    pub admitted: AtomicU64,
    /// Connections refused (key not in the roster).
    pub refused: AtomicU64,
    /// Envelopes stored.
    pub stored: AtomicU64,
    /// Envelopes handed to recipients (including redeliveries).
    pub delivered: AtomicU64,
}

/// State shared by every connection.
pub struct Shared {
    /// The pinned root key.
    pub root: SigningPublic,
    roster: RwLock<Arc<RosterInForce>>,
    /// Taken for writing by a roster push and for reading by a send from its checks to
    /// its enqueue, so pushes never interleave and never revoke a recipient mid-send.
    pub roster_change: tokio::sync::RwLock<()>,
    /// The message store.
    pub store: Store,
    /// Who is connected.
    pub registry: Registry,
    /// The largest envelope accepted.
    pub max_message: usize,
    /// Counters.
    pub counters: Counters,
}

impl Shared {
    /// The roster in force now.
    pub fn roster(&self) -> Arc<RosterInForce> {
        self.roster
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the roster in force.
    pub fn set_roster(&self, next: RosterInForce) {
        *self
            .roster
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(next);
    }
}

/// A started relay.
pub struct Relay {
    endpoint: quinn::Endpoint,
    shared: Arc<Shared>,
}

impl Relay {
    /// Opens the store, chooses the roster and binds the socket.
    ///
    /// # Errors
    ///
    /// When the store cannot be opened, no valid roster is available or the address
    /// cannot be bound; the message says which and how to fix it.
    pub fn start(settings: Settings) -> Result<Relay> {
        let store = Store::open(&settings.data_dir, settings.ttl)?;
        Relay::start_with_store(settings, store)
    }

    /// As [`Relay::start`], with the store already open: the caller took the store's lock
    /// before preparing anything else, so a second relay on the same store fails before it
    /// writes a file. `settings.data_dir` and `settings.ttl` are not used again.
    ///
    /// # Errors
    ///
    /// When no valid roster is available or the address cannot be bound.
    pub fn start_with_store(settings: Settings, store: Store) -> Result<Relay> {
        let in_force = choose_roster(&settings.root, &settings.roster, &store)?;
        let endpoint =
            transport::server_endpoint(settings.listen, settings.relay_key.signing_key())
                .with_context(|| format!("cannot listen on {}", settings.listen))?;
        info!(
            listen = %endpoint.local_addr().map_or(settings.listen, |a| a),
            relay = %settings.relay_key.public().fingerprint(),
            roster_version = in_force.roster.version,
            members = in_force.roster.members.len(),
            "relay started"
        );
        let shared = Arc::new(Shared {
            root: settings.root,
            roster: RwLock::new(Arc::new(in_force)),
            roster_change: tokio::sync::RwLock::new(()),
            store,
            registry: Registry::default(),
            max_message: settings.max_message,
            counters: Counters::default(),
        });
        Ok(Relay { endpoint, shared })
    }

    /// The address actually bound.
    ///
    /// # Errors
    ///
    /// When the socket cannot say.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.endpoint.local_addr()?)
    }

    /// The shared state, for metrics.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Accepts connections until the endpoint is closed.
    pub async fn run(&self) {
        let sweeper = tokio::spawn(sweep(self.shared.clone()));
        while let Some(incoming) = self.endpoint.accept().await {
            tokio::spawn(crate::connection::handle(self.shared.clone(), incoming));
        }
        sweeper.abort();
    }

    /// Closes every connection and stops accepting.
    pub fn close(&self) {
        self.endpoint.close(0u32.into(), b"relay shutting down");
    }
}

/// Takes the newer of the configured roster and the one the store kept from a push.
///
/// Expiry is not checked here: an expired roster still says who the members are, and
/// clients refuse it themselves, so the relay starts and says loudly that it needs a new one.
///
/// Known shortcoming: a pushed roster lives only in the store. When an operator resets the
/// store, the configured file is all that remains, and members removed by later pushes are
/// admitted again until the newest roster is copied there (the runbook's recovery does).
fn choose_roster(root: &SigningPublic, configured: &[u8], store: &Store) -> Result<RosterInForce> {
    let any_time = Policy {
        now: Timestamp(0),
        min_version: 0,
    };
    let from_config = roster::verify(configured, root, any_time);
    if let Err(e) = &from_config {
        warn!(error = %e, "the configured roster file was refused; using the store's roster if it holds one");
    }
    let stored = store.roster()?;
    let from_store = stored
        .as_deref()
        .map(|bytes| (bytes, roster::verify(bytes, root, any_time)));
    let mut best: Option<RosterInForce> = None;
    if let Ok(r) = &from_config {
        best = Some(RosterInForce {
            roster: r.clone(),
            signed: configured.to_vec(),
        });
    }
    if let Some((bytes, Ok(r))) = &from_store {
        if best.as_ref().is_none_or(|b| r.version > b.roster.version) {
            best = Some(RosterInForce {
                roster: r.clone(),
                signed: bytes.to_vec(),
            });
        }
    }
    let Some(best) = best else {
        let why = from_config.err().map_or("none".into(), |e| e.to_string());
        bail!(
            "no valid roster: the configured roster was refused ({why}) and the store holds none"
        );
    };
    if best.roster.expires_at <= Timestamp::now() {
        error!(
            expired = %best.roster.expires_at,
            "the roster in force has expired: clients will refuse it; sign and push a new one"
        );
    }
    Ok(best)
}

async fn sweep(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(EXPIRY_SWEEP);
    loop {
        tick.tick().await;
        let store = shared.store.clone();
        // Expiry takes time in proportion to what it removes; keep it off the async workers.
        match tokio::task::spawn_blocking(move || store.expire(SystemTime::now())).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => info!(expired = n, "dropped expired messages"),
            Ok(Err(e)) => warn!(error = %e, "expiry sweep failed"),
            Err(e) => warn!(error = %e, "expiry sweep stopped"),
        }
    }
}

/// Reads the signed roster file named in a configuration.
///
/// # Errors
///
/// When the file cannot be read or is larger than any roster.
pub fn read_roster_file(path: &std::path::Path) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read roster {}", path.display()))?;
    if meta.len() > roster::MAX_ROSTER as u64 {
        return Err(anyhow!("{}: too large to be a roster", path.display()));
    }
    std::fs::read(path).with_context(|| format!("cannot read roster {}", path.display()))
}
