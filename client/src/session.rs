//! A client session: the member's key, the local history, connections to every configured
//! relay, and the roster they agree on after verification against the pinned root key.
//!
//! Each relay serves the roster it holds; the client verifies every one against its own
//! pinned root key and uses the newest valid one, including the one it kept from earlier
//! sessions. A relay that serves an older roster than one already seen is still used as
//! a transport, but its roster is ignored and the rollback is reported.

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use breakglass_keygen::{keyio, prompt};
use breakglass_protocol::roster::{self, Policy, Roster, RosterError, Timestamp};
use breakglass_protocol::wire::{Request, Response};
use breakglass_protocol::MemberSecret;
use futures_util::future::join_all;

use crate::config::ClientConfig;
use crate::history::History;
use crate::net::{self, NetError, RelayConn};

/// Everything a command needs.
pub struct Session {
    /// The configuration.
    pub config: ClientConfig,
    /// The member's secret key.
    pub me: Arc<MemberSecret>,
    /// The local history.
    pub history: History,
}

/// The relays reached and the roster in force.
pub struct Connected {
    /// Relays that answered.
    pub relays: Vec<RelayConn>,
    /// Relays that failed, with why.
    pub failures: Vec<NetError>,
    /// The newest valid roster.
    pub roster: Arc<Roster>,
}

impl Session {
    /// Loads the configuration, the key (asking for its passphrase if needed) and the
    /// history.
    ///
    /// # Errors
    ///
    /// With the file at fault.
    pub fn open(config_path: &Path) -> Result<Self> {
        let config = ClientConfig::load(config_path)?;
        let me = keyio::load_key(&config.key, prompt::passphrase)
            .map_err(anyhow::Error::from)
            .and_then(|k| Ok(k.into_member()?))
            .with_context(|| {
                format!(
                    "cannot load the member key {} (the `key` of config {})",
                    config.key.display(),
                    config.path.display()
                )
            })?;
        let history = History::open(&config.data_dir)?;
        Ok(Session {
            config,
            me: Arc::new(me),
            history,
        })
    }

    /// Connects to every relay at once and settles the roster.
    ///
    /// # Errors
    ///
    /// When no relay can be reached, no valid roster is known, or we are not in it.
    pub async fn connect(&mut self) -> Result<Connected> {
        let attempts =
            self.config.relays.iter().map(|relay| {
                net::connect(relay, self.me.signing_key(), self.config.connect_timeout)
            });
        let mut relays = Vec::new();
        let mut failures = Vec::new();
        for result in join_all(attempts).await {
            match result {
                Ok(conn) => relays.push(conn),
                Err(e) => failures.push(e),
            }
        }
        if relays.is_empty() {
            return Err(all_failed(failures));
        }
        for f in &failures {
            eprintln!("breakglass: warning: {f}");
        }
        let roster = self.settle_roster(&relays).await?;
        Ok(Connected {
            relays,
            failures,
            roster: Arc::new(roster),
        })
    }

    /// Fetches every relay's roster and keeps the newest that verifies.
    async fn settle_roster(&self, relays: &[RelayConn]) -> Result<Roster> {
        let mut best = self.stored_roster();
        let fetched = join_all(relays.iter().map(|r| r.request(&Request::GetRoster))).await;
        let mut last_error = None;
        for (relay, answer) in relays.iter().zip(fetched) {
            let signed = match answer {
                Ok(Response::Roster { signed }) => signed,
                Ok(_) => continue,
                Err(e) => {
                    eprintln!("breakglass: warning: {e}");
                    continue;
                }
            };
            match self.verify(&signed) {
                Ok(r) => best = Some(newer(best, (r, signed), &relay.relay.name)),
                Err(e) => {
                    eprintln!(
                        "breakglass: warning: relay {}: roster refused: {e}",
                        relay.relay.name
                    );
                    last_error = Some(e);
                }
            }
        }
        let (roster, signed) = best.ok_or_else(|| no_roster(last_error))?;
        if self.history.roster().as_deref() != Some(signed.as_slice()) {
            self.history.save_roster(&signed)?;
        }
        self.check_membership(&roster)?;
        Ok(roster)
    }

    /// Checks that the roster lists our name with our key, and says which is wrong.
    fn check_membership(&self, roster: &Roster) -> Result<()> {
        let name = self.config.name.as_str();
        let ours = self.me.signing_key().verifying_key();
        if roster
            .member(name)
            .is_some_and(|m| *m.key.verifying_key() == ours)
        {
            return Ok(());
        }
        if let Some(holder) = roster.member_by_key(&ours) {
            bail!(
                "the key in {} belongs to roster member {}, not {name} (name in {}): fix \
                 `name` or `key` in the config",
                self.config.key.display(),
                holder.name,
                self.config.path.display()
            );
        }
        if roster.member(name).is_some() {
            bail!(
                "our key is not in roster version {}: roster member {name} has another key \
                 (was the key in {} replaced?); ask an administrator",
                roster.version,
                self.config.key.display()
            );
        }
        bail!(
            "our key is not in roster version {}, and neither is {name}: ask an \
             administrator to add you",
            roster.version
        )
    }

    fn verify(&self, signed: &[u8]) -> Result<Roster, RosterError> {
        let policy = Policy {
            now: Timestamp::now(),
            min_version: 0,
        };
        roster::verify(signed, &self.config.root, policy)
    }

    /// The roster kept from an earlier session, if it still verifies.
    fn stored_roster(&self) -> Option<(Roster, Vec<u8>)> {
        let signed = self.history.roster()?;
        self.verify(&signed).ok().map(|r| (r, signed))
    }
}

/// The newer of two rosters; an older one from a relay is reported as a rollback.
fn newer(
    best: Option<(Roster, Vec<u8>)>,
    candidate: (Roster, Vec<u8>),
    relay: &str,
) -> (Roster, Vec<u8>) {
    match best {
        Some(b) if b.0.version > candidate.0.version => {
            eprintln!(
                "breakglass: warning: relay {relay} serves roster version {}, older than \
                 version {} already seen (rollback ignored; push the newer roster to it)",
                candidate.0.version, b.0.version
            );
            b
        }
        _ => candidate,
    }
}

fn no_roster(last: Option<RosterError>) -> anyhow::Error {
    match last {
        Some(RosterError::Expired(at)) => anyhow!(
            "the roster expired at {at}: ask an administrator to sign a new one with the \
             root key and push it (`breakglass roster push`)"
        ),
        Some(e) => anyhow!("no valid roster: {e}"),
        None => anyhow!("no valid roster: no relay served one"),
    }
}

fn all_failed(failures: Vec<NetError>) -> anyhow::Error {
    let mut iter = failures.into_iter();
    let Some(first) = iter.next() else {
        return anyhow!("no relays configured");
    };
    let rest: Vec<String> = iter.map(|e| e.to_string()).collect();
    let err = anyhow::Error::new(first);
    if rest.is_empty() {
        err
    } else {
        err.context(format!("no relay reachable; also: {}", rest.join("; ")))
    }
}

/// Reads the text of a message: the argument, or standard input for `-`.
///
/// # Errors
///
/// When standard input cannot be read, the text is empty or only whitespace, or it is
/// over `max` bytes. One trailing newline of text read from standard input is dropped.
pub fn message_text(arg: &str, max: usize) -> Result<String> {
    let text = if arg == "-" {
        let mut buf = String::new();
        let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
        std::io::Read::read_to_string(&mut std::io::Read::take(std::io::stdin(), limit), &mut buf)
            .context("cannot read the message from standard input")?;
        buf
    } else {
        arg.to_string()
    };
    let text = match (arg, text.strip_suffix('\n')) {
        // A shell's `echo` or a heredoc ends the text with one newline nobody typed.
        ("-", Some(stripped)) => stripped.strip_suffix('\r').unwrap_or(stripped).to_string(),
        _ => text,
    };
    if text.trim().is_empty() {
        bail!("empty message: nothing to send");
    }
    if text.len() > max {
        bail!(
            "the message is too large: over {max} bytes (the limit is `max_message` in the config)"
        );
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_blank_messages_are_refused() {
        for text in ["", "   ", "\n\t "] {
            let err = message_text(text, 100).expect_err("refused");
            assert!(err.to_string().contains("empty message"), "{err}");
        }
        assert_eq!(message_text("hi\n", 100).expect("sent"), "hi\n");
    }
}
