//! Helpers shared by the relay's integration tests: a trust domain in a temporary folder,
//! a `relay.toml` for it, and the real `breakglass-relay` binary run with bounded waits.

#![allow(
    dead_code,
    reason = "each test file uses a different part of these helpers"
)]

use std::io::Read;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use breakglass_keygen::devdomain::{self, DevDomain};
use breakglass_keygen::{keyio, rosterfile};
use breakglass_protocol::roster::Roster;
use breakglass_protocol::{KeyKind, SigningSecret};
use tempfile::TempDir;

/// How long one run of the binary may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);
/// How often a bounded wait looks again.
pub const POLL: Duration = Duration::from_millis(20);

/// A trust domain and a relay config in a temporary folder.
pub struct Fixture {
    /// Holds every file; removed on drop.
    pub dir: TempDir,
    /// The trust domain `--dev` would build.
    pub domain: DevDomain,
    /// The relay's config file.
    pub config: PathBuf,
}

impl Fixture {
    /// A domain whose relay listens on `listen`, with `extra` lines appended to its config.
    pub fn new(listen: SocketAddr, extra: &str) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let domain = devdomain::ensure(dir.path(), listen).expect("dev domain");
        let config = dir.path().join("relay.toml");
        let text = format!(
            "listen = \"{listen}\"\n\
             key = \"relay.key\"\n\
             root = \"{}\"\n\
             roster = \"roster.signed\"\n\
             data_dir = \"data\"\n\
             {extra}\n",
            domain.root
        );
        std::fs::write(&config, text).expect("write relay.toml");
        Fixture {
            dir,
            domain,
            config,
        }
    }

    /// A path inside the fixture's folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The root's signing key, from `root.key`.
    pub fn root_key(&self) -> SigningSecret {
        let key = keyio::load_unattended(&self.path("root.key"), KeyKind::Root).expect("root");
        key.into_signing(KeyKind::Root).expect("a root key")
    }

    /// Signs the next version of `roster`, valid for `valid_for` from now.
    pub fn sign(&self, roster: &Roster, valid_for: Duration) -> (Vec<u8>, Roster) {
        rosterfile::sign(roster, &self.root_key(), valid_for).expect("sign")
    }

    /// Replaces the configured roster file with `signed`.
    pub fn write_roster(&self, signed: &[u8]) {
        std::fs::write(&self.domain.roster_path, signed).expect("write roster");
    }
}

/// What a finished run printed and how it exited.
pub struct Run {
    /// The exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// The relay binary with `args`, run to completion within [`DEADLINE`].
pub fn relay(args: &[&str]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_breakglass-relay"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start breakglass-relay");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("breakglass-relay {args:?} ran longer than {DEADLINE:?}");
        }
        thread::sleep(POLL);
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    let out = child.stdout.as_mut().expect("piped");
    out.read_to_string(&mut stdout).expect("stdout");
    let err = child.stderr.as_mut().expect("piped");
    err.read_to_string(&mut stderr).expect("stderr");
    Run {
        code: status.code().expect("exited, not killed by a signal"),
        stdout,
        stderr,
    }
}

/// `breakglass-relay check --config CONFIG` plus `args`.
pub fn check(config: &Path, args: &[&str]) -> Run {
    let config = config.to_str().expect("a UTF-8 temporary path");
    let mut all = vec!["check", "--config", config];
    all.extend_from_slice(args);
    relay(&all)
}

/// A loopback UDP address free a moment ago.
pub fn free_udp() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    socket.local_addr().expect("udp addr")
}

/// A loopback TCP address free a moment ago.
pub fn free_tcp() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind tcp");
    listener.local_addr().expect("tcp addr")
}

/// A `serve` process, killed when dropped (also when the test panics).
pub struct Served {
    child: Child,
    /// Where its standard error goes.
    pub log: PathBuf,
}

impl Served {
    /// Starts `breakglass-relay serve --config CONFIG`, logging to `log`.
    pub fn start(config: &Path, log: PathBuf) -> Served {
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_breakglass-relay"))
            .arg("serve")
            .arg("--config")
            .arg(config)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start breakglass-relay serve");
        Served { child, log }
    }

    /// What it logged so far.
    pub fn logged(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails the test if the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("wait") {
            panic!("the relay exited ({status}):\n{}", self.logged());
        }
    }

    /// Waits until `ready` holds, within [`DEADLINE`], failing if the relay exits first.
    pub fn wait_for(&mut self, what: &str, mut ready: impl FnMut(&Served) -> bool) {
        let started = Instant::now();
        while !ready(self) {
            self.assert_running();
            assert!(
                started.elapsed() < DEADLINE,
                "no {what} within {DEADLINE:?}:\n{}",
                self.logged()
            );
            thread::sleep(POLL);
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
