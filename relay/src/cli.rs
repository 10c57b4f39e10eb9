//! The `breakglass-relay` command line.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use breakglass_keygen::{devdomain, keyio};
use breakglass_protocol::{KeyKind, SigningPublic};
use clap::{Parser, Subcommand};
use tracing::info;
use tracing_subscriber::EnvFilter;

use crate::config::{RelayConfig, DEFAULT_MAX_MESSAGE, DEFAULT_TTL};
use crate::server::{read_roster_file, Relay, Settings};
use crate::store::Store;
use crate::{check, metrics};

/// The default address of the dev relay.
pub const DEV_LISTEN: &str = "127.0.0.1:7443";

/// The breakglass relay: store-and-forward for end-to-end encrypted messages between the
/// members of a roster signed by an offline root key.
#[derive(Parser, Debug)]
#[command(
    name = "breakglass-relay",
    version,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Build (first run) or reuse a local trust domain in DIR and serve it.
    #[arg(long, value_name = "DIR", num_args = 0..=1, default_missing_value = "breakglass-dev")]
    dev: Option<PathBuf>,
    /// With --dev: the address to listen on.
    #[arg(long, default_value = DEV_LISTEN, requires = "dev")]
    listen: SocketAddr,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve a production relay.
    Serve {
        /// The relay configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Check the relay's health for monitoring, without contacting the network: exit 0 OK,
    /// 1 WARNING, 2 CRITICAL, 3 UNKNOWN, with one summary line and perfdata.
    ///
    /// Run it as the relay's user. While the relay runs, its store is locked and the check
    /// says so; the roster is then judged from the config file.
    Check {
        /// The relay configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Print one JSON object instead of the summary line.
        #[arg(long)]
        json: bool,
    },
}

/// Parses the arguments, runs the relay and prints any error with its whole chain.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    if let Some(Command::Check { config, json }) = &cli.command {
        init_logging("warn");
        return health_check(config, *json);
    }
    init_logging("info");
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("breakglass-relay: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("breakglass-relay: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints clap's message; a monitoring plugin given bad arguments answers UNKNOWN (3)
/// rather than clap's 2, which would read as CRITICAL.
fn usage_error(e: &clap::Error) -> ExitCode {
    let _ = e.print();
    if !e.use_stderr() {
        return ExitCode::SUCCESS;
    }
    let is_check = std::env::args_os().nth(1).is_some_and(|arg| arg == "check");
    ExitCode::from(if is_check {
        check::Status::Unknown.code()
    } else {
        2
    })
}

/// Runs `check` and prints its one line (or JSON) on standard output.
fn health_check(config: &Path, json: bool) -> ExitCode {
    let report = check::run(config);
    let text = if json { report.json() } else { report.line() };
    // A closed standard output loses the text, not the verdict: the exit code still says.
    let _ = writeln!(std::io::stdout(), "{text}");
    ExitCode::from(report.status().code())
}

fn init_logging(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

async fn run(cli: Cli) -> Result<()> {
    match (cli.dev, cli.command) {
        (_, Some(Command::Serve { config })) => {
            let (settings, metrics_addr) = serve_settings(&config)?;
            let relay = Relay::start(settings)?;
            if let Some(addr) = metrics_addr {
                metrics::start(addr, relay.shared()).await;
            }
            serve_until_signal(relay).await
        }
        (Some(dir), None) => {
            let (settings, store) = dev_settings(&dir, cli.listen)?;
            let relay = Relay::start_with_store(settings, store)?;
            print_dev_banner(&dir, cli.listen);
            serve_until_signal(relay).await
        }
        // `check` was answered in `main`, before any runtime started.
        (_, Some(Command::Check { .. })) | (None, None) => anyhow::bail!(
            "nothing to do: run `breakglass-relay --dev` to try it out, \
             or `breakglass-relay serve --config relay.toml`"
        ),
    }
}

async fn serve_until_signal(relay: Relay) -> Result<()> {
    tokio::select! {
        () = relay.run() => {}
        () = wait_for_signal() => {
            info!("shutting down");
            relay.close();
        }
    }
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// The relay's settings and the metrics address from a configuration file.
fn serve_settings(path: &Path) -> Result<(Settings, Option<SocketAddr>)> {
    let config = RelayConfig::load(path)?;
    let relay_key =
        keyio::load_unattended(&config.key, KeyKind::Relay)?.into_signing(KeyKind::Relay)?;
    let root = SigningPublic::parse(KeyKind::Root, &config.root)
        .with_context(|| format!("{}: `root` is not a root key", path.display()))?;
    let settings = Settings {
        listen: config.listen,
        relay_key,
        root,
        roster: read_roster_file(&config.roster)?,
        data_dir: config.data_dir,
        ttl: config.message_ttl,
        max_message: config.max_message,
    };
    Ok((settings, config.metrics))
}

/// The dev relay's settings and its store. The store is opened first and kept open, so a
/// second `--dev` on the same folder fails on its lock before it rewrites any file.
fn dev_settings(dir: &Path, listen: SocketAddr) -> Result<(Settings, Store)> {
    if dir.exists() && !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    if listen.port() == 0 {
        bail!(
            "--dev needs a fixed port: the client configs name the relay's address, \
             so port 0 cannot be used (try --listen {DEV_LISTEN})"
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let data_dir = dir.join("relay-data");
    let store = Store::open(&data_dir, DEFAULT_TTL)?;
    let domain = devdomain::ensure(dir, listen)
        .with_context(|| format!("cannot set up the dev trust domain in {}", dir.display()))?;
    let settings = Settings {
        listen,
        relay_key: domain.relay_key.into_signing(KeyKind::Relay)?,
        root: domain.root,
        roster: read_roster_file(&domain.roster_path)?,
        data_dir,
        ttl: DEFAULT_TTL,
        max_message: DEFAULT_MAX_MESSAGE,
    };
    Ok((settings, store))
}

/// Tells the person at the terminal exactly what to type next.
fn print_dev_banner(dir: &Path, listen: SocketAddr) {
    let client = client_command();
    let d = dir.display();
    println!(
        "breakglass dev relay on {listen}; trust domain in {d}/ (alice and bob, channel #ops)\n\
         \n\
         In another terminal, try:\n\
         \x20 {client} --config {d}/alice.toml send bob \"hello\"\n\
         \x20 {client} --config {d}/bob.toml read\n\
         \x20 {client} --config {d}/bob.toml chat '#ops'\n\
         \x20 {client} --config {d}/alice.toml selftest\n\
         \n\
         Stop the relay with Ctrl-C; it keeps its messages in {d}/relay-data.\n"
    );
}

/// How to run the client from here: the binary beside this one, or through cargo.
fn client_command() -> String {
    let sibling = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("breakglass")))
        .filter(|path| path.is_file());
    match sibling {
        Some(path) => path.display().to_string(),
        None => "cargo run -q -p breakglass-client --".to_string(),
    }
}
