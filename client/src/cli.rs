//! The `breakglass` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use breakglass_protocol::envelope::Destination;
use breakglass_protocol::roster::Roster;
use breakglass_protocol::wire::{Request, Response};
use clap::{Parser, Subcommand};
use futures_util::future::join_all;
use tracing_subscriber::EnvFilter;

use crate::messages::{self, Format, Inbox, SessionParts};
use crate::session::{self, Connected, Session};

/// The breakglass client: end-to-end encrypted messages between incident responders,
/// through relays you run, with no dependency on the corporate identity stack.
#[derive(Parser, Debug)]
#[command(name = "breakglass", version)]
pub struct Cli {
    /// The client configuration file.
    #[arg(long, short = 'c', global = true, env = "BREAKGLASS_CONFIG")]
    config: Option<PathBuf>,
    /// Print one JSON object per message.
    #[arg(long, global = true)]
    json: bool,
    /// Log what happens on the network to standard error.
    #[arg(long, short = 'v', global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Send a message to a member or a #channel.
    Send {
        /// A member name, or `#channel`.
        to: String,
        /// The text; `-` reads it from standard input.
        text: String,
    },
    /// Print and acknowledge the messages waiting.
    Read,
    /// Stay connected and print messages as they arrive (Ctrl-C to stop).
    Tail,
    /// Interactive line mode on a channel or with a member.
    Chat {
        /// `#channel` or a member name.
        to: String,
    },
    /// The roster in force.
    #[command(subcommand)]
    Roster(RosterCmd),
    /// A real end-to-end round trip through every relay; exits 0 OK, 1 WARNING,
    /// 2 CRITICAL, 3 UNKNOWN, with one summary line (perfdata after `|`).
    Selftest {
        /// Bound on the whole run.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
        /// Also write the result as a node-exporter text-file here (atomically).
        #[arg(long, value_name = "FILE")]
        prometheus: Option<PathBuf>,
    },
    /// The independence report: every dependency of the backup path, marked independent,
    /// shared (with the primary stack) or unknown; exits 0 when nothing is shared, 1 when
    /// anything is, 3 when the config cannot be read.
    ///
    /// Compares the relays' addresses, the resolvers in /etc/resolv.conf (or
    /// $BREAKGLASS_RESOLV_CONF), the proxy variables, the pinned keys and where the config,
    /// key and data folder live with the `[primary]` table of the config. Does no DNS lookup
    /// and no network I/O, and needs no key passphrase. Also reports two hygiene checks,
    /// the key file's mode and the kept roster's expiry, as ok, warning or expired; they
    /// never change the exit code.
    ///
    /// Exit codes: 0 nothing shared (unknowns and warnings allowed, counted in the summary
    /// line); 1 something shared; 3 the configuration cannot be read or is invalid.
    /// `--json` prints one object: {"shared", "unknown", "independent", "ok", "warning",
    /// "expired", "code", "summary", "items": [{"check", "subject", "status", "detail"}]}.
    Audit,
}

#[derive(Subcommand, Debug)]
enum RosterCmd {
    /// Hand every relay a newer signed roster.
    Push {
        /// The signed roster file.
        file: PathBuf,
    },
    /// Print the roster in force (verified against the pinned root key).
    Show,
}

const NO_CONFIG: &str = "no configuration: pass --config FILE (or set BREAKGLASS_CONFIG)";

/// Parses the arguments, runs the command and prints any error with its whole chain.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("breakglass: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("breakglass: error: {err:#}");
            ExitCode::FAILURE
        }
    };
    // A DNS lookup that never answers keeps a blocking thread busy; do not wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    code
}

fn init_logging(verbose: bool) {
    let default = if verbose { "debug" } else { "off" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let format = if cli.json {
        Format::Json
    } else {
        Format::Human
    };
    if let Command::Audit = cli.command {
        return Ok(audit(cli.config.as_deref(), format));
    }
    let Some(config) = cli.config.as_deref() else {
        bail!(NO_CONFIG);
    };
    match cli.command {
        Command::Selftest {
            timeout,
            prometheus,
        } => Ok(selftest(config, timeout, prometheus.as_deref(), format).await),
        other => run_session(config, other, format).await,
    }
}

async fn run_session(config: &Path, command: Command, format: Format) -> Result<ExitCode> {
    let mut session = Session::open(config)?;
    match command {
        Command::Send { to, text } => {
            let to = messages::destination(&to);
            refuse_self(&session, &to)?;
            let text = session::message_text(&text, session.config.max_message)?;
            let connected = session.connect().await?;
            messages::send(&mut session, &connected, &to, &text, format).await?;
        }
        Command::Read => {
            let connected = session.connect().await?;
            let inbox = inbox(session, &connected);
            messages::read(&inbox, &connected, format).await?;
        }
        Command::Tail => {
            let connected = session.connect().await?;
            let parts = parts(&session, &connected);
            let inbox = Arc::new(inbox(session, &connected));
            messages::tail(inbox, parts, format).await?;
        }
        Command::Chat { to } => chat(session, &to).await?,
        Command::Roster(RosterCmd::Push { file }) => return push(&mut session, &file).await,
        Command::Selftest { .. } => bail!("the self-test runs without a session"),
        Command::Audit => bail!("the audit runs without a session"),
        Command::Roster(RosterCmd::Show) => {
            let connected = session.connect().await?;
            let status = format!(
                "verified against root {}",
                session.config.root.fingerprint()
            );
            print!(
                "{}",
                breakglass_keygen::cli::render(&connected.roster, &status)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn selftest(
    config: &Path,
    timeout: std::time::Duration,
    prometheus: Option<&Path>,
    format: Format,
) -> ExitCode {
    let report = crate::selftest::run(config, timeout).await;
    match format {
        Format::Json => match serde_json::to_string(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => eprintln!("breakglass: error: cannot encode the report: {e}"),
        },
        Format::Human => println!("{}", report.summary),
    }
    if let Some(path) = prometheus {
        if let Err(e) = crate::selftest::write_prometheus(path, &report) {
            eprintln!("breakglass: error: cannot write the metrics file: {e}");
        }
    }
    ExitCode::from(report.code)
}

/// The independence report; exit code 3 when the configuration cannot be read, so that
/// it is never mistaken for "shared" (1).
fn audit(config: Option<&Path>, format: Format) -> ExitCode {
    let report = match config.map(crate::audit::run) {
        Some(Ok(report)) => report,
        Some(Err(err)) => {
            eprintln!("breakglass: error: {err:#}");
            return ExitCode::from(3);
        }
        None => {
            eprintln!("breakglass: error: {NO_CONFIG}");
            return ExitCode::from(3);
        }
    };
    match format {
        Format::Json => match serde_json::to_string(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("breakglass: error: cannot encode the report: {e}");
                return ExitCode::from(3);
            }
        },
        Format::Human => print!("{}", report.table()),
    }
    ExitCode::from(report.code)
}

fn inbox(session: Session, connected: &Connected) -> Inbox {
    let name = session.config.name.to_string();
    Inbox::new(connected.roster.clone(), session.me, &name, session.history)
}

fn parts(session: &Session, connected: &Connected) -> Arc<SessionParts> {
    let relays = connected.relays.iter().map(|r| r.relay.clone()).collect();
    let live = connected
        .relays
        .iter()
        .map(|r| Mutex::new(Some(r.clone())))
        .collect();
    Arc::new(SessionParts {
        relays,
        live,
        me: session.me.clone(),
        timeout: session.config.connect_timeout,
    })
}

/// A message to ourselves would be recorded as sent and so never shown by `read`.
fn refuse_self(session: &Session, to: &Destination) -> Result<()> {
    if matches!(to, Destination::Direct(name) if name == session.config.name.as_str()) {
        bail!(
            "you cannot send a message to yourself ({to}): it would never show in `read`; \
             to test the channel end to end, run `breakglass selftest`"
        );
    }
    Ok(())
}

/// Refuses a destination the roster does not know, before anything is typed.
fn check_destination(roster: &Roster, to: &Destination) -> Result<()> {
    let known = match to {
        Destination::Direct(name) => roster.member(name).is_some(),
        Destination::Channel(channel) => roster.channel(channel).is_some(),
    };
    if !known {
        let what = match to {
            Destination::Direct(_) => "member",
            Destination::Channel(_) => "channel",
        };
        bail!(
            "no {what} {to} in roster version {} (see `breakglass roster show`)",
            roster.version
        );
    }
    Ok(())
}

async fn chat(mut session: Session, to: &str) -> Result<()> {
    let destination = messages::destination(to);
    refuse_self(&session, &destination)?;
    let connected = session.connect().await?;
    check_destination(&connected.roster, &destination)?;
    let parts = parts(&session, &connected);
    // The history is shared between the sender and the follower: a second handle on the
    // same append-only file is enough, since each write is one whole line.
    let history = crate::history::History::open(&session.config.data_dir)?;
    let name = session.config.name.to_string();
    let inbox = Arc::new(Inbox::new(
        connected.roster.clone(),
        session.me.clone(),
        &name,
        history,
    ));
    let roster = connected.roster.clone();
    messages::chat(&mut session, &roster, inbox, parts, &destination).await
}

async fn push(session: &mut Session, file: &Path) -> Result<ExitCode> {
    let signed = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let connected = session.connect().await?;
    let request = Request::PushRoster { signed };
    let answers = join_all(connected.relays.iter().map(|r| r.request(&request))).await;
    let mut failed = connected.failures.len();
    for (relay, answer) in connected.relays.iter().zip(answers) {
        match answer {
            Ok(Response::RosterAccepted { version }) => {
                println!(
                    "relay {}: roster version {version} in force",
                    relay.relay.name
                );
            }
            Ok(other) => {
                failed += 1;
                eprintln!("relay {}: unexpected answer {other:?}", relay.relay.name);
            }
            Err(e) => {
                failed += 1;
                eprintln!("breakglass: error: {e}");
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
