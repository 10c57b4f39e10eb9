//! Shared helpers for breakglass's integration tests: a trust domain built in a temporary
//! folder with the same library code the offline tools use, the real `breakglass-relay`
//! binary serving it on loopback with a real sled store, and the real `breakglass` client
//! run against it.
//!
//! Every wait on the product is bounded (the relay's start, each client run, each line
//! awaited from a background client), so a hang fails the test that caused it instead of
//! stalling CI; only the one `cargo build` of the binaries, when needed, takes as long as
//! it takes. Child processes are killed when their handle drops, also when a test panics.

pub mod netns;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use breakglass_keygen::keyio;
use breakglass_protocol::keyfile::SecretKey;
use breakglass_protocol::roster::{Channel, Member, Role, Roster, Timestamp};
use breakglass_protocol::{KeyKind, MemberPublic, MemberSecret, SigningPublic, SigningSecret};
use tempfile::TempDir;

/// How long the relay may take to say it is serving.
pub const RELAY_START: Duration = Duration::from_secs(10);
/// How long one client command may run before it is killed and the test fails.
pub const CLIENT_DEADLINE: Duration = Duration::from_secs(20);
/// How long the rosters signed here are valid.
const ROSTER_VALID: Duration = Duration::from_secs(30 * 86_400);
/// How often a bounded wait looks again.
const POLL: Duration = Duration::from_millis(20);
/// The binaries the tests run, each with the workspace packages it is built from; all
/// three are built by one `cargo build`.
const BINARIES: [(&str, &[&str]); 3] = [
    ("breakglass-relay", &["protocol", "keygen", "relay"]),
    ("breakglass", &["protocol", "keygen", "relay", "client"]),
    ("breakglass-keygen", &["protocol", "keygen"]),
];
/// Set to use the binaries already in the target folder without asking cargo first.
const PREBUILT_ENV: &str = "BREAKGLASS_TEST_PREBUILT";

/// The path of one of the workspace's binaries (`breakglass-relay`, `breakglass`,
/// `breakglass-keygen`), from the target folder the running test was built into.
///
/// The test crate depends on those packages' libraries, not on their binaries, so
/// `cargo test -p breakglass-tests` alone would run the tests against whatever binaries an
/// earlier build left behind, or none on a clean checkout. So the first call in a process
/// runs `$CARGO build` for the three packages when a binary is missing or older than a
/// source file it is built from. Set `BREAKGLASS_TEST_PREBUILT` to skip that check and
/// use the binaries as they are.
///
/// # Errors
///
/// When the target folder cannot be found or the build fails.
pub fn binary(name: &str) -> Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let dir = BUILT.get_or_init(|| prepare_binaries().map_err(|e| format!("{e:#}")));
    match dir {
        Ok(dir) => Ok(dir.join(name)),
        Err(e) => Err(anyhow!("cannot provide the breakglass binaries: {e}")),
    }
}

/// Builds the binaries when needed and returns the folder holding them.
fn prepare_binaries() -> Result<PathBuf> {
    let dir = profile_dir()?;
    let stale = BINARIES
        .iter()
        .any(|(bin, packages)| stale(&dir.join(bin), packages));
    if stale && std::env::var_os(PREBUILT_ENV).is_none() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        build_binaries(&dir, cargo)?;
    }
    match BINARIES.iter().find(|(bin, _)| !dir.join(bin).is_file()) {
        Some((missing, _)) => bail!("{missing} is missing in {}", dir.display()),
        None => Ok(dir),
    }
}

/// Whether `binary` is missing or older than a file under `src/`, or the `Cargo.toml`, of
/// one of the packages it is built from, the same comparison of times cargo makes.
fn stale(binary: &Path, packages: &[&str]) -> bool {
    let Some(built) = modified(binary) else {
        return true;
    };
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    packages.iter().any(|package| {
        let package = workspace.join(package);
        let mut inputs = files_under(&package.join("src")).unwrap_or_default();
        inputs.push(package.join("Cargo.toml"));
        inputs.iter().any(|f| modified(f).is_none_or(|t| t > built))
    })
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The profile folder of the running test: `target/debug/deps/x` gives `target/debug`.
fn profile_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot locate the test executable")?;
    let parent = exe.parent().context("the test executable has no folder")?;
    let dir = if parent.ends_with("deps") {
        parent.parent().context("deps/ has no parent")?
    } else {
        parent
    };
    Ok(dir.to_path_buf())
}

/// Runs `cargo build` for the three binaries into the target folder holding `dir`.
fn build_binaries(dir: &Path, cargo: std::ffi::OsString) -> Result<()> {
    let mut cmd = Command::new(cargo);
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--quiet"]);
    for package in ["breakglass-relay", "breakglass-client", "breakglass-keygen"] {
        cmd.args(["-p", package]);
    }
    if let Some(target) = dir.parent() {
        cmd.arg("--target-dir").arg(target);
    }
    match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some(profile) => {
            cmd.args(["--profile", profile]);
        }
    }
    let out = cmd.output().context("cannot run cargo build")?;
    if !out.status.success() {
        bail!(
            "cargo build failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A trust domain in a temporary folder: a root key, a relay key, member keys, the signed
/// roster, `relay.toml`, and a client configuration per member once the relay's address is
/// known.
///
/// The roster lists no relay: the relay listens on port 0 and its address is known only
/// once it runs, so clients take the address from their configuration alone.
///
/// The first member listed is an admin, the others responders. Files are named after
/// their owner: `alice.key`, `alice.toml`, `alice.data/`; the relay keeps its store in
/// `relay-data/`.
pub struct Domain {
    dir: TempDir,
    root: SigningSecret,
    relay: SigningPublic,
    roster: Mutex<Roster>,
    relay_addr: OnceLock<SocketAddr>,
}

impl Domain {
    /// Builds a domain with `members` (name and channels, without `#`) and `channels`.
    ///
    /// # Errors
    ///
    /// When a file cannot be written or the roster breaks a rule.
    pub fn new(members: &[(&str, &[&str])], channels: &[&str]) -> Result<Domain> {
        let dir = tempfile::Builder::new()
            .prefix("breakglass-it-")
            .tempdir()
            .context("cannot create a temporary folder")?;
        let root = SecretKey::generate(KeyKind::Root);
        keyio::save_key(&dir.path().join("root.key"), &root, None, false)?;
        let relay = SecretKey::generate(KeyKind::Relay);
        keyio::save_key(&dir.path().join("relay.key"), &relay, None, false)?;
        let relay_public = SigningPublic::parse(KeyKind::Relay, &relay.public_string())?;
        let mut nothing_signed = Roster::new(Timestamp::now(), ROSTER_VALID);
        nothing_signed.version = 0;
        let domain = Domain {
            dir,
            root: root.into_signing(KeyKind::Root)?,
            relay: relay_public,
            roster: Mutex::new(nothing_signed),
            relay_addr: OnceLock::new(),
        };
        let roster = domain.first_roster(members, channels)?;
        let signed = domain.sign_roster(&roster)?;
        fs::copy(&signed, domain.path().join("roster.signed"))?;
        domain.write_relay_config("127.0.0.1:0".parse()?)?;
        Ok(domain)
    }

    /// The first roster's content: signing makes it version 1.
    fn first_roster(&self, members: &[(&str, &[&str])], channels: &[&str]) -> Result<Roster> {
        let mut roster = self.roster();
        for name in channels {
            roster.channels.push(Channel {
                name: name.parse()?,
                description: String::new(),
            });
        }
        for (i, (name, member_channels)) in members.iter().enumerate() {
            let key = self.new_key(name)?;
            let role = if i == 0 { Role::Admin } else { Role::Responder };
            roster
                .members
                .push(member(name, key, role, member_channels)?);
        }
        Ok(roster)
    }

    /// The domain's folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The relay's store folder.
    pub fn relay_data(&self) -> PathBuf {
        self.path().join("relay-data")
    }

    /// The relay's configuration file.
    pub fn relay_config(&self) -> PathBuf {
        self.path().join("relay.toml")
    }

    /// The relay's public key.
    pub fn relay_public(&self) -> SigningPublic {
        self.relay
    }

    /// The address the relay serves on, known once it was first started.
    ///
    /// # Errors
    ///
    /// When no relay was started for this domain yet.
    pub fn relay_addr(&self) -> Result<SocketAddr> {
        self.relay_addr
            .get()
            .copied()
            .context("the relay of this domain has not been started yet")
    }

    /// Records where the relay listens, and pins that address in `relay.toml` so that a
    /// restart serves the same address the clients were configured with.
    fn bind_relay(&self, addr: SocketAddr) -> Result<()> {
        if self.relay_addr.get().is_none() {
            self.relay_addr
                .set(addr)
                .map_err(|_| anyhow!("relay address set twice"))?;
            self.write_relay_config(addr)?;
        }
        Ok(())
    }

    fn write_relay_config(&self, listen: SocketAddr) -> Result<()> {
        let text = format!(
            "listen = \"{listen}\"\nkey = \"relay.key\"\nroot = \"{}\"\n\
             roster = \"roster.signed\"\ndata_dir = \"relay-data\"\n",
            self.root.public()
        );
        fs::write(self.relay_config(), text).context("cannot write relay.toml")
    }

    /// Generates a new key for `name` as `name.key`, replacing any earlier one.
    ///
    /// # Errors
    ///
    /// When the key file cannot be written.
    pub fn new_key(&self, name: &str) -> Result<MemberPublic> {
        let key = SecretKey::generate(KeyKind::Member);
        let path = self.path().join(format!("{name}.key"));
        keyio::save_key(&path, &key, None, true)?;
        Ok(key.public_string().parse()?)
    }

    /// The secret key of `name`, read from its key file.
    ///
    /// # Errors
    ///
    /// When `name` has no key file.
    pub fn member_secret(&self, name: &str) -> Result<MemberSecret> {
        let path = self.path().join(format!("{name}.key"));
        Ok(keyio::load_unattended(&path, KeyKind::Member)?.into_member()?)
    }

    /// The roster signed last.
    pub fn roster(&self) -> Roster {
        self.roster
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Signs `next` with the root key as the version after the last one signed, valid from
    /// now, and writes it to `roster-vN.signed`; returns that file.
    ///
    /// # Errors
    ///
    /// When the roster breaks a rule or cannot be written.
    pub fn sign_roster(&self, next: &Roster) -> Result<PathBuf> {
        let mut last = self.roster.lock().unwrap_or_else(PoisonError::into_inner);
        let mut roster = next.clone();
        roster.version = last.version.max(next.version) + 1;
        roster.issued_at = Timestamp::now();
        roster.expires_at = roster.issued_at.plus(ROSTER_VALID);
        let signed = roster.sign(&self.root)?;
        let path = self
            .path()
            .join(format!("roster-v{}.signed", roster.version));
        fs::write(&path, signed).with_context(|| format!("cannot write {}", path.display()))?;
        *last = roster;
        Ok(path)
    }

    /// Writes `name.toml`, a client configuration for `name` pinning this domain's relay.
    ///
    /// # Errors
    ///
    /// When the relay has not been started, or the file cannot be written.
    pub fn client_config(&self, name: &str) -> Result<PathBuf> {
        let path = self.path().join(format!("{name}.toml"));
        self.write_client_config(&path, name, &self.relay)?;
        Ok(path)
    }

    /// Writes `name-pinning-other.toml`: `name`'s configuration, but pinning `relay_key`.
    ///
    /// # Errors
    ///
    /// As [`Domain::client_config`].
    pub fn client_config_pinning(&self, name: &str, relay_key: &SigningPublic) -> Result<PathBuf> {
        let path = self.path().join(format!("{name}-pinning-other.toml"));
        self.write_client_config(&path, name, relay_key)?;
        Ok(path)
    }

    fn write_client_config(&self, path: &Path, name: &str, relay: &SigningPublic) -> Result<()> {
        let text = format!(
            "name = \"{name}\"\nkey = \"{name}.key\"\ndata_dir = \"{name}.data\"\n\
             root = \"{}\"\nconnect_timeout = \"2s\"\n\n\
             [[relays]]\nname = \"test\"\naddress = \"{}\"\nkey = \"{relay}\"\n",
            self.root.public(),
            self.relay_addr()?
        );
        write_atomically(path, text.as_bytes())
    }
}

/// Replaces `path` with `bytes` at once, so a client reading it concurrently sees the old
/// or the new file, never an empty one.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("the file has no folder")?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// A roster entry for a member.
///
/// # Errors
///
/// When a name is not a valid roster name.
pub fn member(name: &str, key: MemberPublic, role: Role, channels: &[&str]) -> Result<Member> {
    Ok(Member {
        name: name.parse()?,
        key,
        role,
        channels: channels
            .iter()
            .map(|c| c.parse())
            .collect::<Result<_, _>>()?,
    })
}

/// A running `breakglass-relay serve` process; killed with SIGKILL when dropped.
pub struct RelayProcess {
    child: Option<Child>,
    config: PathBuf,
    logs: Vec<PathBuf>,
    addr: SocketAddr,
}

impl RelayProcess {
    /// Starts the relay of `domain` and waits until it says it is serving.
    ///
    /// The first start listens on port 0 and learns the port from the relay's
    /// `relay started listen=ADDR` log line, so parallel tests never race for a port.
    ///
    /// # Errors
    ///
    /// When the relay exits, or does not report its start within [`RELAY_START`].
    pub fn spawn(domain: &Domain) -> Result<RelayProcess> {
        let config = domain.relay_config();
        let log = domain.path().join("relay-1.log");
        let (child, addr) = start_relay(&config, &log)?;
        domain.bind_relay(addr)?;
        Ok(RelayProcess {
            child: Some(child),
            config,
            logs: vec![log],
            addr,
        })
    }

    /// The address the relay serves on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Kills the relay with SIGKILL, as a crash or `kill -9` would, and reaps it.
    ///
    /// # Errors
    ///
    /// When the process cannot be signalled or reaped.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().context("cannot kill the relay")?;
            child.wait().context("cannot reap the relay")?;
        }
        Ok(())
    }

    /// Kills the relay if it runs and starts it again on the same store and address.
    ///
    /// # Errors
    ///
    /// As [`RelayProcess::kill`] and [`RelayProcess::spawn`]; also when the relay comes
    /// back on another address.
    pub fn restart(&mut self) -> Result<()> {
        self.kill()?;
        let dir = self.config.parent().context("relay.toml has no folder")?;
        let log = dir.join(format!("relay-{}.log", self.logs.len() + 1));
        let (child, addr) = start_relay(&self.config, &log)?;
        self.child = Some(child);
        self.logs.push(log);
        if addr != self.addr {
            bail!("the relay came back on {addr}, not {}", self.addr);
        }
        Ok(())
    }

    /// Whether the relay process is still alive.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Everything the relay logged, over all its starts.
    pub fn log(&self) -> String {
        let texts = self
            .logs
            .iter()
            .map(|p| fs::read_to_string(p).unwrap_or_default());
        texts.collect::<Vec<_>>().join("")
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// Starts `breakglass-relay serve --config CONFIG` logging to `log`; returns the process
/// and the address from its start line.
fn start_relay(config: &Path, log: &Path) -> Result<(Child, SocketAddr)> {
    let stderr =
        fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let mut child = Command::new(binary("breakglass-relay")?)
        .arg("serve")
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .context("cannot start breakglass-relay")?;
    match wait_for_start(&mut child, log) {
        Ok(addr) => Ok((child, addr)),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(e)
        }
    }
}

/// Waits, at most [`RELAY_START`], for the `relay started listen=ADDR` line.
fn wait_for_start(child: &mut Child, log: &Path) -> Result<SocketAddr> {
    let deadline = Instant::now() + RELAY_START;
    loop {
        let text = fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("relay started")) {
            return listen_addr(line);
        }
        if let Some(status) = child.try_wait()? {
            bail!("the relay exited ({status}) before serving:\n{text}");
        }
        if Instant::now() >= deadline {
            bail!("the relay did not start within {RELAY_START:?}:\n{text}");
        }
        thread::sleep(POLL);
    }
}

fn listen_addr(line: &str) -> Result<SocketAddr> {
    let value = line
        .split_whitespace()
        .find_map(|word| word.strip_prefix("listen="))
        .with_context(|| format!("no listen= in the start line: {line}"))?;
    value
        .parse()
        .with_context(|| format!("bad address in the start line: {line}"))
}

/// What a finished client command did.
#[derive(Debug)]
pub struct Run {
    /// How it exited.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl Run {
    /// Whether it exited 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The non-empty lines of standard output.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }
}

/// Runs `breakglass --config MEMBER.toml ARGS…` and waits for it, at most
/// [`CLIENT_DEADLINE`].
///
/// # Errors
///
/// When the client cannot be started, or runs over the deadline (it is then killed).
pub fn client(domain: &Domain, member: &str, args: &[&str]) -> Result<Run> {
    client_with_config(&domain.client_config(member)?, args, None)
}

/// Signs `next` with the domain's root key as the version after the last one signed, and
/// has `by` hand it to the relay with `breakglass roster push`.
///
/// # Errors
///
/// When the roster cannot be signed, or as [`client`]. A push the relay refuses is not an
/// error here: it is in the returned [`Run`].
pub fn push_roster(domain: &Domain, by: &str, next: &Roster) -> Result<Run> {
    let file = domain.sign_roster(next)?;
    let file = file.to_str().context("the roster's path is not UTF-8")?;
    client(domain, by, &["roster", "push", file])
}

/// As [`client`], with `stdin` as the client's standard input.
///
/// # Errors
///
/// As [`client`].
pub fn client_with_stdin(
    domain: &Domain,
    member: &str,
    args: &[&str],
    stdin: &[u8],
) -> Result<Run> {
    client_with_config(&domain.client_config(member)?, args, Some(stdin.to_vec()))
}

/// Runs the client with the configuration file `config`, feeding it `stdin` if given.
///
/// # Errors
///
/// As [`client`].
pub fn client_with_config(config: &Path, args: &[&str], stdin: Option<Vec<u8>>) -> Result<Run> {
    let cmd = client_command(config, args)?;
    run_bounded(cmd, stdin, CLIENT_DEADLINE)?.into_run(format!("breakglass {args:?}"))
}

/// The client command, quiet unless a test sets `RUST_LOG` in the code.
fn client_command(config: &Path, args: &[&str]) -> Result<Command> {
    let mut cmd = Command::new(binary("breakglass")?);
    cmd.arg("--config")
        .arg(config)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("BREAKGLASS_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    Ok(cmd)
}

/// What a command run by [`run_bounded`] did.
#[derive(Debug)]
pub struct Finished {
    /// How it exited; `None` when it ran over its deadline and was killed.
    pub status: Option<ExitStatus>,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
    /// Its wall time, from start to exit (or to the kill).
    pub elapsed: Duration,
    /// The deadline it was given.
    deadline: Duration,
}

impl Finished {
    /// Whether it ran over its deadline and was killed.
    pub fn timed_out(&self) -> bool {
        self.status.is_none()
    }

    /// Its exit code; `None` when a signal ended it, or it was killed at the deadline.
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    /// As a [`Run`].
    ///
    /// # Errors
    ///
    /// When it ran over its deadline; the error names it `what` and holds what it printed.
    pub fn into_run(self, what: impl std::fmt::Display) -> Result<Run> {
        let Finished {
            status,
            stdout,
            stderr,
            deadline,
            ..
        } = self;
        match status {
            Some(status) => Ok(Run {
                status,
                stdout,
                stderr,
            }),
            None => bail!(
                "{what} ran over {deadline:?} and was killed\nstdout:\n{stdout}\nstderr:\n{stderr}"
            ),
        }
    }
}

/// How long the output of a finished command may take to arrive: a grandchild that
/// outlives it and holds its pipes open must not stall the test.
const DRAIN: Duration = Duration::from_secs(2);

/// Runs `cmd` with `stdin` as its standard input (or none), collecting its standard output
/// and error on threads of their own so a full pipe never blocks it, and waits for it at
/// most `deadline`; when it runs over, it is killed with SIGKILL and the result says so
/// ([`Finished::timed_out`]).
///
/// This is the one bounded runner of the test crate: the client runs ([`client`]), the
/// drills' commands ([`netns::run_within`]) and the deploy and runbook tests use it.
///
/// # Errors
///
/// When `cmd` cannot be started, waited for or killed.
pub fn run_bounded(cmd: Command, stdin: Option<Vec<u8>>, deadline: Duration) -> Result<Finished> {
    run_and_kill(cmd, stdin, deadline, Kill::Process)
}

/// As [`run_bounded`], with the command in a process group of its own, the whole group
/// killed when it runs over: for `sh -c` lines, whose pipelines and background commands
/// would otherwise outlive the killed shell.
///
/// # Errors
///
/// As [`run_bounded`].
pub fn run_bounded_group(
    mut cmd: Command,
    stdin: Option<Vec<u8>>,
    deadline: Duration,
) -> Result<Finished> {
    cmd.process_group(0);
    run_and_kill(cmd, stdin, deadline, Kill::Group)
}

/// What is killed when a command runs over its deadline.
#[derive(Clone, Copy)]
enum Kill {
    /// The process started.
    Process,
    /// Its process group, which it leads.
    Group,
}

fn run_and_kill(
    mut cmd: Command,
    stdin: Option<Vec<u8>>,
    deadline: Duration,
    kill: Kill,
) -> Result<Finished> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if let Some((bytes, mut pipe)) = stdin.zip(child.stdin.take()) {
        // The command may refuse early and close its input; that is its answer, not ours.
        thread::spawn(move || drop(pipe.write_all(&bytes)));
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = wait_or_kill(&mut child, started + deadline, kill)?;
    let elapsed = started.elapsed();
    Ok(Finished {
        status,
        stdout: stdout.recv_timeout(DRAIN).unwrap_or_default(),
        stderr: stderr.recv_timeout(DRAIN).unwrap_or_default(),
        elapsed,
        deadline,
    })
}

/// Reads a pipe to its end on a thread of its own and sends what it read.
fn drain(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    if let Some(mut pipe) = pipe {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            let _ = tx.send(String::from_utf8_lossy(&bytes).into_owned());
        });
    }
    rx
}

/// Waits for `child` until `deadline`; kills it with SIGKILL, reaps it and returns `None`
/// when it runs over.
///
/// # Errors
///
/// When the child cannot be waited for or killed.
pub fn wait_until(child: &mut Child, deadline: Instant) -> Result<Option<ExitStatus>> {
    wait_or_kill(child, deadline, Kill::Process)
}

fn wait_or_kill(child: &mut Child, deadline: Instant, kill: Kill) -> Result<Option<ExitStatus>> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            match kill {
                Kill::Process => child.kill()?,
                Kill::Group => {
                    let group = format!("-{}", child.id());
                    // The leader may be gone already; reaping it below is what counts.
                    let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
                }
            }
            child.wait()?;
            return Ok(None);
        }
        thread::sleep(POLL);
    }
}

/// A client command running in the background (`tail`), whose output lines are collected
/// as they come; killed when dropped.
pub struct Background {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
    stdin: Option<ChildStdin>,
}

impl Background {
    /// Starts `breakglass --config MEMBER.toml ARGS…` in the background.
    ///
    /// # Errors
    ///
    /// When the client cannot be started.
    pub fn spawn(domain: &Domain, member: &str, args: &[&str]) -> Result<Background> {
        Self::start(domain, member, args, Stdio::null())
    }

    /// As [`Background::spawn`], with standard input a pipe that
    /// [`Background::write_line`] writes to (`chat`).
    ///
    /// # Errors
    ///
    /// When the client cannot be started.
    pub fn spawn_interactive(domain: &Domain, member: &str, args: &[&str]) -> Result<Background> {
        Self::start(domain, member, args, Stdio::piped())
    }

    fn start(domain: &Domain, member: &str, args: &[&str], stdin: Stdio) -> Result<Background> {
        let mut cmd = client_command(&domain.client_config(member)?, args)?;
        let mut child = cmd
            .stdin(stdin)
            .spawn()
            .context("cannot start breakglass")?;
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().context("stdout is piped")?;
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let err_pipe = child.stderr.take().context("stderr is piped")?;
        thread::spawn(gather(err_pipe, stderr.clone()));
        Ok(Background {
            child,
            lines,
            stderr,
            stdin,
        })
    }

    /// Writes `line` and a newline to the process's standard input.
    ///
    /// # Errors
    ///
    /// When standard input is not a pipe, or the process closed it.
    pub fn write_line(&mut self, line: &str) -> Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .context("standard input is not a pipe")?;
        stdin.write_all(format!("{line}\n").as_bytes())?;
        stdin.flush()?;
        Ok(())
    }

    /// Closes the process's standard input (end of input).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits at most `timeout` until standard error so far satisfies `done`; returns
    /// whether it did.
    pub fn wait_stderr(&self, timeout: Duration, done: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while !done(&self.stderr()) {
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(POLL);
        }
        true
    }

    /// The next line of standard output, waiting at most `timeout`.
    pub fn next_line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// Waits at most `timeout` for the process to exit.
    ///
    /// # Errors
    ///
    /// When the process cannot be waited for.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            thread::sleep(POLL);
        }
    }

    /// Everything written to standard error so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Appends everything read from `pipe` to `sink`, as it arrives.
fn gather(mut pipe: ChildStderr, sink: Arc<Mutex<String>>) -> impl FnOnce() {
    move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = pipe.read(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]);
            sink.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push_str(&text);
        }
    }
}

/// Every regular file under `dir`, recursively.
///
/// # Errors
///
/// When a folder cannot be listed.
pub fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in
            fs::read_dir(&folder).with_context(|| format!("cannot list {}", folder.display()))?
        {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                folders.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    Ok(files)
}

/// The files under `dir` whose bytes contain `needle`.
///
/// # Errors
///
/// When a file cannot be read.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for file in files_under(dir)? {
        let bytes = fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
        if !needle.is_empty() && bytes.windows(needle.len()).any(|w| w == needle) {
            found.push(file);
        }
    }
    Ok(found)
}
