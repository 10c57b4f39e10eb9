//! The client's configuration file.
//!
//! ```toml
//! name = "alice"                 # the member name in the roster
//! key = "alice.key"              # the member key file, mode 0600
//! root = "bgroot1…"              # the pinned root key: every roster is checked against it
//! data_dir = "alice.data"        # local history; default "<name>.data"
//! max_message = 262144           # largest message text in bytes; default 256 KiB
//! connect_timeout = "5s"         # per relay; default 5 s
//!
//! [[relays]]
//! name = "dev"
//! address = "127.0.0.1:7443"     # an IP literal needs no DNS at all
//! key = "bgrelay1…"              # the pinned relay key
//! ```
//!
//! Relative paths are taken from the configuration file's folder.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use breakglass_protocol::roster::Name;
use breakglass_protocol::{KeyKind, SigningPublic};
use serde::Deserialize;

/// The default limit on a message's text.
pub const DEFAULT_MAX_MESSAGE: usize = 256 * 1024;
/// The default time allowed to reach one relay.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    name: String,
    key: PathBuf,
    root: String,
    #[serde(default)]
    data_dir: Option<PathBuf>,
    #[serde(default)]
    max_message: Option<usize>,
    #[serde(default)]
    connect_timeout: Option<String>,
    #[serde(default)]
    relays: Vec<RawRelay>,
    #[serde(default)]
    primary: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelay {
    name: String,
    address: String,
    key: String,
}

/// A relay the client uses.
#[derive(Debug, Clone)]
pub struct RelayEntry {
    /// Its name, for messages.
    pub name: String,
    /// `IP:port` or `host:port`.
    pub address: String,
    /// The pinned relay key.
    pub key: SigningPublic,
}

/// The client's settings, checked and with paths resolved.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The configuration file itself.
    pub path: PathBuf,
    /// The member name.
    pub name: Name,
    /// The member key file.
    pub key: PathBuf,
    /// The pinned root key.
    pub root: SigningPublic,
    /// The local history folder.
    pub data_dir: PathBuf,
    /// The largest message text.
    pub max_message: usize,
    /// Time allowed to reach one relay.
    pub connect_timeout: Duration,
    /// The relays, in order.
    pub relays: Vec<RelayEntry>,
    /// The description of the primary stack, for the independence audit.
    pub primary: Option<toml::Value>,
}

impl ClientConfig {
    /// Reads and checks a configuration file.
    ///
    /// # Errors
    ///
    /// With the file name and the field at fault.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        let raw: Raw = toml::from_str(&text)
            .with_context(|| format!("{}: invalid client config", path.display()))?;
        Self::from_raw(path, raw)
            .with_context(|| format!("{}: invalid client config", path.display()))
    }

    fn from_raw(path: &Path, raw: Raw) -> Result<Self> {
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &Path| {
            if p.is_relative() {
                base.join(p)
            } else {
                p.to_path_buf()
            }
        };
        let name: Name = raw.name.parse()?;
        let root = SigningPublic::parse(KeyKind::Root, &raw.root).context("`root`")?;
        if raw.relays.is_empty() {
            bail!("no [[relays]] configured");
        }
        let relays = raw
            .relays
            .into_iter()
            .map(|r| {
                let key = SigningPublic::parse(KeyKind::Relay, &r.key)
                    .with_context(|| format!("relay {:?}: `key`", r.name))?;
                Ok(RelayEntry {
                    name: r.name,
                    address: r.address,
                    key,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let connect_timeout = match raw.connect_timeout {
            Some(t) => humantime::parse_duration(&t).context("`connect_timeout`")?,
            None => DEFAULT_CONNECT_TIMEOUT,
        };
        let data_dir = raw
            .data_dir
            .unwrap_or_else(|| PathBuf::from(format!("{name}.data")));
        Ok(ClientConfig {
            path: path.to_path_buf(),
            key: resolve(&raw.key),
            data_dir: resolve(&data_dir),
            name,
            root,
            max_message: raw.max_message.unwrap_or(DEFAULT_MAX_MESSAGE),
            connect_timeout,
            relays,
            primary: raw.primary,
        })
    }
}
