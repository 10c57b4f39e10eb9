//! A complete local trust domain for trying breakglass out: a root, a relay, two members
//! (alice and bob, both in `#ops`), a signed roster and a client config for each member.
//!
//! Made with the same code as the offline commands, so what `--dev` builds is what an
//! administrator would build by hand. Keys are kept across runs; the roster is signed again
//! only when the relay address changed or the roster is missing or near its expiry, and
//! its editable source `roster.toml` is written beside it. A client config is written when
//! it is missing or names another relay address, so edits to it survive a restart.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use breakglass_protocol::keyfile::SecretKey;
use breakglass_protocol::roster::{self, Channel, Member, Policy, Relay, Role, Roster, Timestamp};
use breakglass_protocol::{KeyKind, SigningPublic};

use crate::{keyio, rosterfile};

/// The members of the dev domain.
pub const MEMBERS: [&str; 2] = ["alice", "bob"];

/// The roster's editable source, beside the signed roster.
pub const SOURCE: &str = "roster.toml";

const VALID_FOR: Duration = Duration::from_secs(90 * 86_400);
const RENEW_BEFORE: Duration = Duration::from_secs(14 * 86_400);

/// What the relay needs from the dev domain.
#[derive(Debug)]
pub struct DevDomain {
    /// The folder holding everything.
    pub dir: PathBuf,
    /// The relay's key.
    pub relay_key: SecretKey,
    /// The root's public key.
    pub root: SigningPublic,
    /// The signed roster file.
    pub roster_path: PathBuf,
    /// The roster in force.
    pub roster: Roster,
}

/// Creates the dev domain in `dir`, or reuses the one there.
///
/// # Errors
///
/// When a file cannot be written, or an existing key file is unreadable; the message
/// names the file.
pub fn ensure(dir: &Path, relay_addr: SocketAddr) -> Result<DevDomain> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let root = key(dir, "root.key", KeyKind::Root)?;
    let relay_key = key(dir, "relay.key", KeyKind::Relay)?;
    let members = MEMBERS
        .iter()
        .map(|name| key(dir, &format!("{name}.key"), KeyKind::Member))
        .collect::<Result<Vec<_>>>()?;
    let root_signing = root.into_signing(KeyKind::Root)?;
    let root_public = root_signing.public();
    let relay_public = SigningPublic::parse(KeyKind::Relay, &relay_key.public_string())?;
    let roster_path = dir.join("roster.signed");
    let source_path = dir.join(SOURCE);
    let roster = match current(&roster_path, &root_public, relay_addr) {
        Some(r) => {
            if !source_path.exists() {
                rosterfile::save_source(&source_path, &r)?;
            }
            r
        }
        None => {
            let prev = roster_version(&roster_path, &root_public);
            let wanted = build(prev, relay_addr, &relay_public, &members)?;
            let (signed, next) = rosterfile::sign(&wanted, &root_signing, VALID_FOR)?;
            rosterfile::write_public(&roster_path, &signed)?;
            rosterfile::save_source(&source_path, &next)?;
            next
        }
    };
    for name in MEMBERS {
        let path = dir.join(format!("{name}.toml"));
        let config = client_config(name, &root_public, relay_addr, &relay_public);
        write_client_config(&path, &config, relay_addr)?;
    }
    Ok(DevDomain {
        dir: dir.to_path_buf(),
        relay_key,
        root: root_public,
        roster_path,
        roster,
    })
}

fn key(dir: &Path, file: &str, kind: KeyKind) -> Result<SecretKey> {
    let path = dir.join(file);
    if path.exists() {
        return Ok(keyio::load_unattended(&path, kind)?);
    }
    let key = SecretKey::generate(kind);
    keyio::save_key(&path, &key, None, false)?;
    Ok(key)
}

/// Writes a member's client config when it is missing or names another relay address. A
/// config that points at `addr`, or that cannot be parsed, is the person's to edit and is
/// left alone.
fn write_client_config(path: &Path, config: &str, addr: SocketAddr) -> Result<()> {
    let Ok(text) = fs::read_to_string(path) else {
        return Ok(rosterfile::write_public(path, config.as_bytes())?);
    };
    let Ok(table) = text.parse::<toml::Table>() else {
        return Ok(());
    };
    let relays = table.get("relays").and_then(toml::Value::as_array);
    let addr_text = addr.to_string();
    let points_here = relays
        .into_iter()
        .flatten()
        .any(|relay| relay.get("address").and_then(toml::Value::as_str) == Some(&addr_text));
    if !points_here {
        rosterfile::write_public(path, config.as_bytes())?;
        eprintln!(
            "breakglass-relay: the relay address is now {addr}: rewrote {}",
            path.display()
        );
    }
    Ok(())
}

/// The roster on disk if it is valid, lists this relay address and is not near expiry.
fn current(path: &Path, root: &SigningPublic, addr: SocketAddr) -> Option<Roster> {
    let bytes = fs::read(path).ok()?;
    let policy = Policy {
        now: Timestamp::now().plus(RENEW_BEFORE),
        min_version: 0,
    };
    let roster = roster::verify(&bytes, root, policy).ok()?;
    let matches = roster.relays.iter().any(|r| r.address == addr.to_string());
    matches.then_some(roster)
}

fn roster_version(path: &Path, root: &SigningPublic) -> u64 {
    let policy = Policy {
        now: Timestamp(0),
        min_version: 0,
    };
    fs::read(path)
        .ok()
        .and_then(|b| roster::verify(&b, root, policy).ok())
        .map_or(0, |r| r.version)
}

fn build(
    version: u64,
    addr: SocketAddr,
    relay: &SigningPublic,
    members: &[SecretKey],
) -> Result<Roster> {
    let mut roster = Roster::new(Timestamp::now(), VALID_FOR);
    roster.version = version;
    roster.channels.push(Channel {
        name: "ops".parse()?,
        description: "incident responders".into(),
    });
    for (name, key) in MEMBERS.iter().zip(members) {
        let public = key.public_string().parse()?;
        roster.members.push(Member {
            name: name.parse()?,
            key: public,
            role: if *name == "alice" {
                Role::Admin
            } else {
                Role::Responder
            },
            channels: vec!["ops".parse()?],
        });
    }
    roster.relays.push(Relay {
        name: "dev".parse()?,
        address: addr.to_string(),
        key: *relay,
    });
    Ok(roster)
}

/// A client config for `name`; paths are relative to the config file's folder.
fn client_config(
    name: &str,
    root: &SigningPublic,
    addr: SocketAddr,
    relay: &SigningPublic,
) -> String {
    format!(
        "# breakglass client configuration for {name} (made by breakglass-relay --dev)\n\
         # Paths are relative to this file's folder.\n\
         name = \"{name}\"\n\
         key = \"{name}.key\"\n\
         data_dir = \"{name}.data\"\n\
         # The root key that signs the roster; every roster is checked against it.\n\
         root = \"{root}\"\n\
         \n\
         [[relays]]\n\
         name = \"dev\"\n\
         address = \"{addr}\"\n\
         # The relay's pinned key: a relay presenting another key is refused.\n\
         key = \"{relay}\"\n"
    )
}
