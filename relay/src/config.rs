//! The relay's configuration file (`relay.toml`).
//!
//! Relative paths are taken from the folder of the configuration file, so a deployment
//! can be moved as one folder. Every option and its default is shown in
//! `deploy/relay.toml`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use breakglass_protocol::envelope::MAX_ENVELOPE;
use serde::Deserialize;

pub use crate::store::DEFAULT_TTL;
/// The largest envelope a member may send, in bytes.
pub const DEFAULT_MAX_MESSAGE: usize = 256 * 1024;

/// The relay's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    /// The UDP address to listen on. No default: say where the relay is reachable.
    pub listen: SocketAddr,
    /// The relay's key file (`breakglass-keygen relay new`), mode 0600.
    pub key: PathBuf,
    /// The root key string (`bgroot1…`) rosters must be signed with.
    pub root: String,
    /// The signed roster to start with, if the store holds no newer one.
    pub roster: PathBuf,
    /// Where the message store lives. Default: `data` beside the config file.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// How long undelivered messages are kept, e.g. `21d`. Default: 21 days.
    #[serde(default = "default_ttl", with = "humantime_serde_compat")]
    pub message_ttl: Duration,
    /// The largest envelope accepted, in bytes. Default: 262144 (256 KiB).
    #[serde(default = "default_max_message")]
    pub max_message: usize,
    /// The TCP address serving Prometheus metrics at `/metrics`, e.g. `127.0.0.1:9464`.
    /// Default: none (no metrics listener). The counts it serves are metadata (how many
    /// members are connected, how many messages wait): bind a loopback address unless the
    /// network it is reachable from may see them.
    #[serde(default)]
    pub metrics: Option<SocketAddr>,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}

fn default_ttl() -> Duration {
    DEFAULT_TTL
}

fn default_max_message() -> usize {
    DEFAULT_MAX_MESSAGE
}

impl RelayConfig {
    /// Reads and checks a configuration file, resolving relative paths against its folder.
    ///
    /// # Errors
    ///
    /// When the file cannot be read or is not a valid relay configuration.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read relay config {}", path.display()))?;
        let mut config: RelayConfig = toml::from_str(&text)
            .with_context(|| format!("{}: invalid relay config", path.display()))?;
        config.check_limits(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut config.key, &mut config.roster, &mut config.data_dir] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(config)
    }

    /// Refuses limits no relay can work with.
    fn check_limits(&self, path: &Path) -> Result<()> {
        if !(1..=MAX_ENVELOPE).contains(&self.max_message) {
            bail!(
                "{}: invalid relay config: `max_message` = {} is out of range: \
                 expected 1 to {MAX_ENVELOPE} bytes",
                path.display(),
                self.max_message
            );
        }
        Ok(())
    }
}

/// Durations written as text (`21d`, `12h`).
mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration {text:?} ({e}): expected a duration like 21d or 12h"
            ))
        })
    }
}
