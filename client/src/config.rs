//! The client's configuration file.
//!
//! ```toml
//! name = "alice"                 # the member name in the roster
//! key = "alice.key"              # the member key file, mode 0600
//! root = "bgroot1…"              # the pinned root key: every roster is checked against it
//! data_dir = "alice.data"        # local history; default "<name>.data"
//! max_message = 262144           # largest message text in bytes; default 256 KiB,
//!                                # at most 960 KiB (1 MiB envelope less headroom)
//! connect_timeout = "5s"         # per relay; default 5 s
//!
//! [[relays]]
//! name = "dev"
//! address = "127.0.0.1:7443"     # an IP literal needs no DNS at all
//! key = "bgrelay1…"              # the pinned relay key
//!
//! [primary]                      # optional: the corporate stack, for `breakglass audit`
//! idp_hosts = ["login.corp.example"]
//! dns_resolvers = ["10.0.0.53"]
//! tenant_ranges = ["10.0.0.0/8", "2001:db8:c0::/48"]
//! ```
//!
//! Relative paths are taken from the configuration file's folder.
//!
//! Known shortcoming: relay keys are pinned here, not taken from the roster, and no command
//! writes or updates a client configuration, so rotating a relay key means editing every
//! member's file by hand (the runbook shows how).

use std::path::{Path, PathBuf};
use std::time::Duration;

use std::net::IpAddr;

use anyhow::{bail, Context, Result};
use breakglass_protocol::roster::Name;
use breakglass_protocol::{KeyKind, SigningPublic};
use ipnet::IpNet;
use serde::Deserialize;

/// The default limit on a message's text.
pub const DEFAULT_MAX_MESSAGE: usize = 256 * 1024;
/// The largest `max_message` accepted: a sealed message must fit in one envelope, with
/// room left for the envelope's own fields.
pub const MAX_MAX_MESSAGE: usize = breakglass_protocol::envelope::MAX_ENVELOPE - 64 * 1024;
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
    primary: Option<RawPrimary>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawPrimary {
    idp_hosts: Vec<String>,
    sso_hosts: Vec<String>,
    mdm_hosts: Vec<String>,
    dns_resolvers: Vec<String>,
    proxies: Vec<String>,
    tenant_ranges: Vec<String>,
    managed_folders: Vec<PathBuf>,
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
    /// The description of the primary stack, for the independence audit; `None` when the
    /// file has no `[primary]` table.
    pub primary: Option<PrimaryStack>,
}

/// The `[primary]` table: what the corporate stack that breakglass must not depend on is
/// made of. Only `breakglass audit` reads it; every list defaults to empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrimaryStack {
    /// `idp_hosts`: host names of the identity provider. Default: none.
    pub idp_hosts: Vec<String>,
    /// `sso_hosts`: host names of the single sign-on service. Default: none.
    pub sso_hosts: Vec<String>,
    /// `mdm_hosts`: host names of device management and device posture. Default: none.
    pub mdm_hosts: Vec<String>,
    /// `dns_resolvers`: IP addresses of the corporate DNS resolvers. Default: none.
    pub dns_resolvers: Vec<IpAddr>,
    /// `proxies`: `host[:port]` of the corporate proxies. Default: none.
    pub proxies: Vec<String>,
    /// `tenant_ranges`: CIDR ranges of the corporate tenant or network, IPv4 or IPv6.
    /// Default: none.
    pub tenant_ranges: Vec<IpNet>,
    /// `managed_folders`: path prefixes that the primary stack syncs or manages, besides
    /// the well-known sync folders the audit always recognises. Relative paths are taken
    /// from the configuration file's folder. Default: none.
    pub managed_folders: Vec<PathBuf>,
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
            max_message: max_message(raw.max_message)?,
            connect_timeout,
            relays,
            primary: raw.primary.map(|p| primary(p, resolve)).transpose()?,
        })
    }
}

fn max_message(raw: Option<usize>) -> Result<usize> {
    let value = raw.unwrap_or(DEFAULT_MAX_MESSAGE);
    if !(1..=MAX_MAX_MESSAGE).contains(&value) {
        bail!(
            "`max_message` = {value}: must be between 1 and {MAX_MAX_MESSAGE} bytes (what \
             fits in one envelope)"
        );
    }
    Ok(value)
}

fn primary(raw: RawPrimary, resolve: impl Fn(&Path) -> PathBuf) -> Result<PrimaryStack> {
    let dns_resolvers = raw
        .dns_resolvers
        .iter()
        .map(|a| {
            a.trim()
                .parse::<IpAddr>()
                .with_context(|| format!("[primary] dns_resolvers: {a:?} is not an IP address"))
        })
        .collect::<Result<_>>()?;
    let tenant_ranges = raw
        .tenant_ranges
        .iter()
        .map(|r| {
            r.trim().parse::<IpNet>().with_context(|| {
                format!("[primary] tenant_ranges: {r:?} is not a CIDR range like 10.0.0.0/8")
            })
        })
        .collect::<Result<_>>()?;
    Ok(PrimaryStack {
        idp_hosts: raw.idp_hosts,
        sso_hosts: raw.sso_hosts,
        mdm_hosts: raw.mdm_hosts,
        dns_resolvers,
        proxies: raw.proxies,
        tenant_ranges,
        managed_folders: raw.managed_folders.iter().map(|p| resolve(p)).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_message_must_fit_in_an_envelope_and_be_positive() {
        assert_eq!(max_message(None).expect("default"), DEFAULT_MAX_MESSAGE);
        assert_eq!(max_message(Some(1)).expect("one byte"), 1);
        assert!(max_message(Some(MAX_MAX_MESSAGE)).is_ok());
        for bad in [0, MAX_MAX_MESSAGE + 1, 15_000_000] {
            let err = max_message(Some(bad)).expect_err("refused");
            assert!(err.to_string().contains("`max_message`"), "{err}");
        }
    }
}
