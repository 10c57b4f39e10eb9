//! `breakglass-relay --dev` as a new user runs it, and a relay restarted after a crash.
//!
//! The dev tests run the real relay binary on a folder of their own and a fixed loopback
//! port found free just before; the restart tests use the harness's domain.

use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use breakglass_relay::transport;
use breakglass_tests::{
    binary, client, client_with_config, Background, Domain, RelayProcess, RELAY_START,
};
use tempfile::TempDir;

/// A dev relay process; killed when dropped.
struct DevRelay {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl DevRelay {
    /// Starts `breakglass-relay --dev DIR --listen ADDR` and waits until it serves.
    fn start(dir: &Path, listen: SocketAddr, name: &str) -> DevRelay {
        let logs = dir.parent().expect("the dev folder has a parent");
        let stdout = logs.join(format!("{name}.out"));
        let stderr = logs.join(format!("{name}.err"));
        let child = dev_command(dir, &listen.to_string())
            .stdout(fs::File::create(&stdout).expect("stdout file"))
            .stderr(fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("the relay starts");
        let mut relay = DevRelay {
            child,
            stdout,
            stderr,
        };
        relay.wait_serving();
        relay
    }

    fn wait_serving(&mut self) {
        let deadline = Instant::now() + RELAY_START;
        while !self.stderr().contains("relay started") {
            let exited = self.child.try_wait().expect("try_wait");
            assert!(exited.is_none(), "the dev relay exited: {}", self.stderr());
            assert!(Instant::now() < deadline, "no start: {}", self.stderr());
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn stdout(&self) -> String {
        fs::read_to_string(&self.stdout).unwrap_or_default()
    }
}

impl Drop for DevRelay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dev_command(dir: &Path, listen: &str) -> Command {
    let mut cmd = Command::new(binary("breakglass-relay").expect("relay binary"));
    cmd.arg("--dev")
        .arg(dir)
        .args(["--listen", listen])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    cmd
}

/// Runs a dev relay expected to fail at once; bounded by the harness's start deadline.
fn dev_fails(dir: &Path, listen: &str) -> Output {
    let mut child = dev_command(dir, listen)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the relay starts");
    let deadline = Instant::now() + RELAY_START;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("the dev relay kept running");
        }
        thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    assert!(!out.status.success(), "{out:?}");
    out
}

/// A loopback address whose UDP port was free a moment ago.
fn free_addr() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.local_addr().expect("local addr")
}

fn dev_folder() -> (TempDir, PathBuf) {
    let top = tempfile::tempdir().expect("tempdir");
    let dir = top.path().join("dev");
    (top, dir)
}

/// The bytes and inode of a file: a rewrite by rename changes the inode even when the
/// bytes come out the same.
fn snapshot(path: &Path) -> (Vec<u8>, u64) {
    let bytes = fs::read(path).expect("read");
    (bytes, fs::metadata(path).expect("metadata").ino())
}

#[test]
fn a_second_dev_relay_on_the_same_folder_fails_before_writing_anything() {
    let (_top, dir) = dev_folder();
    let _first = DevRelay::start(&dir, free_addr(), "first");
    let files = ["alice.toml", "bob.toml", "roster.signed", "roster.toml"].map(|f| dir.join(f));
    let before = files.each_ref().map(|f| snapshot(f));

    let second = dev_fails(&dir, &free_addr().to_string());

    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("another process"), "{stderr}");
    assert!(!stderr.contains("Os {"), "{stderr}");
    assert!(!String::from_utf8_lossy(&second.stdout).contains("try"));
    for (file, old) in files.iter().zip(before) {
        assert!(snapshot(file) == old, "{} was rewritten", file.display());
    }
}

#[test]
fn dev_mode_refuses_port_zero() {
    let (_top, dir) = dev_folder();
    let out = dev_fails(&dir, "127.0.0.1:0");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("port 0"), "{stderr}");
    assert!(!dir.join("alice.toml").exists());
}

#[test]
fn dev_mode_refuses_a_file_as_its_folder() {
    let (top, _dir) = dev_folder();
    let file = top.path().join("notes.txt");
    fs::write(&file, "mine").expect("write");
    let out = dev_fails(&file, &free_addr().to_string());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("notes.txt is not a directory"), "{stderr}");
    assert_eq!(fs::read_to_string(&file).expect("read"), "mine");
}

#[test]
fn an_edited_client_config_survives_a_restart_on_the_same_address() {
    let (_top, dir) = dev_folder();
    let addr = free_addr();
    let first = DevRelay::start(&dir, addr, "first");
    assert!(
        first.stdout().contains("try"),
        "no banner: {}",
        first.stdout()
    );
    drop(first);
    let alice = dir.join("alice.toml");
    let mut text = fs::read_to_string(&alice).expect("read");
    text.push_str("# alice's own note\n");
    fs::write(&alice, &text).expect("write");

    let second = DevRelay::start(&dir, addr, "second");
    assert_eq!(fs::read_to_string(&alice).expect("read"), text);
    assert!(!second.stderr().contains("rewrote"), "{}", second.stderr());
    drop(second);

    let moved = free_addr();
    let third = DevRelay::start(&dir, moved, "third");
    let now = fs::read_to_string(&alice).expect("read");
    assert!(now.contains(&moved.to_string()), "{now}");
    assert!(third.stderr().contains("rewrote"), "{}", third.stderr());
}

#[test]
fn the_dev_roster_can_be_edited_signed_and_pushed_by_alice() {
    let (_top, dir) = dev_folder();
    let _relay = DevRelay::start(&dir, free_addr(), "relay");
    let source = dir.join("roster.toml");
    let text = fs::read_to_string(&source).expect("roster.toml exists");
    assert!(text.contains("version = 1"), "{text}");

    let signed = Command::new(binary("breakglass-keygen").expect("keygen binary"))
        .current_dir(&dir)
        .args(["roster", "sign", "roster.toml", "--root", "root.key"])
        .args(["--out", "roster.signed"])
        .output()
        .expect("keygen runs");
    assert!(signed.status.success(), "{signed:?}");

    let signed = dir.join("roster.signed");
    let signed = signed.to_str().expect("UTF-8 path");
    let pushed = client_with_config(&dir.join("alice.toml"), &["roster", "push", signed], None)
        .expect("client runs");
    assert!(pushed.success(), "{pushed:#?}");
    assert!(pushed.stdout.contains("version 2"), "{pushed:#?}");
}

fn alice_and_bob() -> (Domain, RelayProcess) {
    let domain = Domain::new(&[("alice", &["ops"]), ("bob", &["ops"])], &["ops"]).expect("domain");
    let relay = RelayProcess::spawn(&domain).expect("relay starts");
    (domain, relay)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_restarted_after_a_crash_resets_the_old_connections_at_once() {
    let (domain, mut relay) = alice_and_bob();
    let alice = domain.member_secret("alice").expect("alice's key");
    let pinned = *domain.relay_public().verifying_key();
    let (config, _pin) = transport::client_config(alice.signing_key(), pinned).expect("config");
    let endpoint = transport::client_endpoint("127.0.0.1:0".parse().expect("addr")).expect("ep");
    let conn = endpoint
        .connect_with(config, relay.addr(), transport::SERVER_NAME)
        .expect("connect")
        .await
        .expect("handshake");

    tokio::task::block_in_place(|| relay.restart()).expect("restarts");
    let started = Instant::now();
    let probe = async {
        let (mut send, mut recv) = conn.open_bi().await?;
        send.write_all(b"anyone there?").await?;
        send.finish()?;
        recv.read_to_end(1024).await?;
        anyhow::Ok(())
    };
    let outcome = tokio::time::timeout(Duration::from_secs(3), probe).await;

    assert!(outcome.is_ok_and(|r| r.is_err()), "no reset within 3 s");
    let reason = conn.close_reason();
    assert!(
        matches!(reason, Some(quinn::ConnectionError::Reset)),
        "{reason:?} after {:?}",
        started.elapsed()
    );
}

#[test]
fn a_tail_notices_a_restarted_relay_long_before_the_idle_timeout() {
    let (domain, mut relay) = alice_and_bob();
    let tail = Background::spawn(&domain, "bob", &["tail"]).expect("tail starts");
    let sent = client(&domain, "alice", &["send", "bob", "before the crash"]).expect("send");
    assert!(sent.success(), "{sent:#?}");
    let line = tail.next_line(Duration::from_secs(10));
    assert!(
        line.is_some_and(|l| l.contains("before the crash")),
        "{}",
        tail.stderr()
    );

    relay.restart().expect("restarts");
    let sent = client(&domain, "alice", &["send", "bob", "after the crash"]).expect("send");
    assert!(sent.success(), "{sent:#?}");

    // One keep-alive (10 s) and one reconnect delay (3 s), well inside the 30 s idle timeout.
    let line = tail.next_line(Duration::from_secs(18));
    assert!(
        line.is_some_and(|l| l.contains("after the crash")),
        "{}",
        tail.stderr()
    );
}
