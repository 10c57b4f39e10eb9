//! deploy/, checked against the real binaries: the example configs (with real keys and a
//! real roster in place of their placeholders) parse with the programs that read them, the
//! systemd units' command lines run, every unit passes `systemd-analyze verify` where that
//! tool exists, the cron line runs the same self-test as the timer, and the container
//! files agree with the workspace. No container engine runs here, so the image is never
//! built; only its consistency is checked.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use breakglass_keygen::keyio;
use breakglass_protocol::KeyKind;
use breakglass_tests::{binary, run_bounded, Domain, RelayProcess};

/// The placeholders the example configs carry for the keys.
const ROOT_PLACEHOLDER: &str = "bgroot1REPLACE-WITH-YOUR-ROOT-KEY";
const RELAY_PLACEHOLDER: &str = "bgrelay1REPLACE-WITH-THE-RELAY-KEY";
/// The relay address the examples use; the tests put their loopback relay's there.
const EXAMPLE_RELAY: &str = "203.0.113.7:7443";
/// The probe's member name in `deploy/probe.toml`.
const PROBE: &str = "probe-mon1";
/// How long one command may run.
const DEADLINE: Duration = Duration::from_secs(30);
/// The unit files under `deploy/systemd`.
const UNITS: [&str; 3] = [
    "breakglass-relay.service",
    "breakglass-selftest.service",
    "breakglass-selftest.timer",
];

#[test]
fn the_example_relay_config_parses_with_the_real_relay() {
    let domain = Domain::new(&[("alice", &["ops"])], &["ops"]).expect("domain");
    let config = example(&domain, "relay.toml", &[]);

    let check = run(
        &binary("breakglass-relay").expect("built"),
        &["check", "--config", &config.display().to_string()],
    );

    assert_ne!(
        check.code, 3,
        "the example relay config is unreadable: {check:#?}"
    );
    assert!((0..=2).contains(&check.code), "{check:#?}");
    assert_parsed(&check, "invalid relay config");
}

#[test]
fn the_relay_unit_serves_the_example_config() {
    let domain = Domain::new(&[("alice", &["ops"])], &["ops"]).expect("domain");
    let config = example(&domain, "relay.toml", &[("0.0.0.0:7443", "127.0.0.1:0")]);
    let exec = exec_start("breakglass-relay.service");
    let exec = localise(
        &exec,
        &[("/etc/breakglass/relay.toml", &config.display().to_string())],
    );

    let log = domain.path().join("unit-relay.log");
    let (program, args) = exec.split_first().expect("a command");
    let mut relay = Command::new(program)
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).expect("a log file"))
        .spawn()
        .expect("the relay starts");
    let started = wait_for(&log, "relay started", Duration::from_secs(10));
    let _ = relay.kill();
    let _ = relay.wait();

    let text = fs::read_to_string(&log).unwrap_or_default();
    assert!(
        started,
        "the unit's command line did not serve: {exec:?}\n{text}"
    );
}

#[test]
fn the_example_client_config_parses_with_the_real_client() {
    let (domain, relay) = serving(&[("alice", &["ops"])]);
    let addr = relay.addr().to_string();
    let config = example(&domain, "client.toml", &[(EXAMPLE_RELAY, &addr)]);

    let audit = run(
        &binary("breakglass").expect("built"),
        &["--config", &config.display().to_string(), "audit"],
    );

    assert_ne!(
        audit.code, 3,
        "the example client config is unreadable: {audit:#?}"
    );
    assert_parsed(&audit, "invalid client config");
}

#[test]
fn the_probe_example_passes_the_timers_selftest() {
    let (domain, relay) = serving(&[("alice", &["ops"]), (PROBE, &[])]);
    let dir = domain.path().display().to_string();
    fs::copy(
        domain.path().join(format!("{PROBE}.key")),
        domain.path().join("probe.key"),
    )
    .expect("the probe key is installed");
    let textfiles = domain.path().join("textfile_collector");
    fs::create_dir(&textfiles).expect("the collector's folder");
    let addr = relay.addr().to_string();
    let probe_data = format!("{dir}/probe-data");
    let config = example(
        &domain,
        "probe.toml",
        &[
            (EXAMPLE_RELAY, &addr),
            ("/etc/breakglass/", &format!("{dir}/")),
            ("/var/lib/breakglass-probe", &probe_data),
        ],
    );
    let exec = exec_start("breakglass-selftest.service");
    let exec = localise(
        &exec,
        &[
            ("/etc/breakglass/probe.toml", &config.display().to_string()),
            (
                "/var/lib/node_exporter/textfile_collector/",
                &format!("{}/", textfiles.display()),
            ),
        ],
    );

    let (program, args) = exec.split_first().expect("a command");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let selftest = run(Path::new(program), &args);

    assert_eq!(selftest.code, 0, "{selftest:#?}");
    assert!(
        selftest.stdout.starts_with("BREAKGLASS OK"),
        "{selftest:#?}"
    );
    let prom = fs::read_to_string(textfiles.join("breakglass.prom")).expect("the text file");
    assert!(prom.contains("breakglass_selftest_status 0"), "{prom}");
    let audit = run(
        &binary("breakglass").expect("built"),
        &["--config", &config.display().to_string(), "audit"],
    );
    assert_ne!(audit.code, 3, "{audit:#?}");
    assert_parsed(&audit, "invalid client config");
}

#[test]
fn the_cron_line_runs_the_timers_selftest_every_15_minutes_as_the_probe_user() {
    let cron = read(&deploy("cron/breakglass-selftest"));
    let jobs: Vec<&str> = cron
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter(|l| !l.split_whitespace().next().is_some_and(|w| w.contains('=')))
        .collect();
    assert_eq!(jobs.len(), 1, "one job line: {jobs:?}");
    let fields: Vec<&str> = jobs[0].split_whitespace().collect();

    assert_eq!(fields[..5], ["*/15", "*", "*", "*", "*"], "{jobs:?}");
    assert_eq!(fields[5], "breakglass-probe", "{jobs:?}");
    let command: Vec<&str> = fields[6..]
        .iter()
        .copied()
        .take_while(|w| *w != "2>&1")
        .collect();
    let unit = exec_start("breakglass-selftest.service");
    let unit: Vec<&str> = unit
        .iter()
        .map(|w| w.trim_start_matches("/usr/local/bin/"))
        .collect();
    assert_eq!(
        command, unit,
        "the cron job and the timer's unit run different commands"
    );
}

#[test]
fn every_unit_file_passes_systemd_analyze_verify() {
    let Some(analyze) = on_path("systemd-analyze") else {
        println!("skipped: systemd-analyze is not installed, so the unit files are not verified");
        return;
    };
    let bin = binary("breakglass").expect("built");
    let bin = bin
        .parent()
        .expect("the binaries' folder")
        .display()
        .to_string();
    let dir = tempfile::tempdir().expect("a temporary folder");
    let mut files = Vec::new();
    for unit in UNITS {
        // verify checks that ExecStart= names an executable: point it at the built ones.
        let text = read(&deploy(&format!("systemd/{unit}")));
        let text = text.replace("/usr/local/bin/", &format!("{bin}/"));
        let path = dir.path().join(unit);
        fs::write(&path, text).expect("a unit copy");
        files.push(path.display().to_string());
    }

    let mut args = vec!["verify", "--man=no"];
    args.extend(files.iter().map(String::as_str));
    let verify = run(&analyze, &args);

    assert_eq!(verify.code, 0, "systemd-analyze verify failed: {verify:#?}");
    let about_ours: Vec<&str> = verify
        .stderr
        .lines()
        .filter(|l| l.contains("breakglass"))
        .collect();
    assert!(
        about_ours.is_empty(),
        "systemd-analyze warns: {about_ours:#?}"
    );
}

#[test]
fn the_relay_unit_is_hardened_as_the_deploy_readme_says() {
    let unit = read(&deploy("systemd/breakglass-relay.service"));
    let settings: Vec<&str> = unit.lines().map(str::trim).collect();
    for wanted in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/breakglass",
        "StateDirectory=breakglass",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "RestrictNamespaces=yes",
        "LockPersonality=yes",
        "MemoryDenyWriteExecute=yes",
        "SystemCallFilter=@system-service",
        "SystemCallFilter=~@privileged @resources",
        "SystemCallArchitectures=native",
        "CapabilityBoundingSet=",
        "MemoryMax=512M",
        "Restart=always",
        "RestartSec=1s",
    ] {
        assert!(
            settings.contains(&wanted),
            "the relay unit lacks `{wanted}`"
        );
    }
    assert!(settings.iter().any(|l| l.starts_with("LimitNOFILE=")));
    assert!(settings
        .iter()
        .any(|l| l.starts_with("User=") && *l != "User=root"));
    let timer = read(&deploy("systemd/breakglass-selftest.timer"));
    for wanted in [
        "OnCalendar=*:0/15",
        "Persistent=true",
        "RandomizedDelaySec=60",
    ] {
        assert!(
            timer.lines().any(|l| l.trim() == wanted),
            "the timer lacks `{wanted}`"
        );
    }
}

#[test]
fn the_container_files_agree_with_the_workspace() {
    let containerfile = read(&deploy("container/Containerfile"));
    let compose = read(&deploy("container/compose.yaml"));
    let manifests = workspace_manifests();

    for package in flag_values(&containerfile, "-p") {
        let declared = format!("name = \"{package}\"");
        assert!(
            manifests.iter().any(|m| m.contains(&declared)),
            "no package {package}"
        );
        assert_ne!(
            package, "breakglass-keygen",
            "keygen must stay off networked hosts"
        );
    }
    for built in ["breakglass-relay", "breakglass"] {
        assert!(containerfile.contains(&format!("target/release/{built} ")));
    }
    assert!(containerfile.lines().any(|l| l.trim() == "EXPOSE 7443/udp"));
    assert!(
        compose.contains("\"7443:7443/udp\""),
        "compose publishes another port"
    );
    let relay_toml = read(&deploy("relay.toml"));
    assert!(
        relay_toml.contains("listen = \"0.0.0.0:7443\""),
        "relay.toml listens elsewhere"
    );
    let user = containerfile
        .lines()
        .filter_map(|l| l.strip_prefix("USER "))
        .next_back();
    assert!(
        user.is_some_and(|u| !u.starts_with('0') && u != "root"),
        "{user:?}"
    );
    assert!(compose.contains("read_only: true"));
    for file in ["relay.toml", "relay.key", "roster.signed"] {
        let mount = format!(":/etc/breakglass/{file}:ro");
        assert!(
            compose.contains(&mount),
            "compose lacks the read-only mount {mount}"
        );
    }
    assert!(
        compose.contains("data:/var/lib/breakglass"),
        "no data volume"
    );
    assert!(containerfile.contains("VOLUME [\"/var/lib/breakglass\"]"));
    assert!(containerfile.contains("\"--config\", \"/etc/breakglass/relay.toml\""));
    assert!(containerfile.contains("NOT BUILT BY THE TEST SUITE"));
    assert!(compose.contains("NOT STARTED BY THE TEST SUITE"));
}

/// A domain with `members` and its relay serving.
fn serving(members: &[(&str, &[&str])]) -> (Domain, RelayProcess) {
    let domain = Domain::new(members, &["ops"]).expect("domain");
    let relay = RelayProcess::spawn(&domain).expect("the relay starts");
    (domain, relay)
}

/// Writes `deploy/NAME` into the domain's folder as `example-NAME`, its key placeholders
/// replaced by the domain's keys and `more` applied; returns its path.
fn example(domain: &Domain, name: &str, more: &[(&str, &str)]) -> PathBuf {
    let text = read(&deploy(name));
    assert!(
        text.contains(ROOT_PLACEHOLDER),
        "{name} has no root placeholder any more"
    );
    let root = keyio::load_unattended(&domain.path().join("root.key"), KeyKind::Root)
        .expect("the root key")
        .public_string();
    let mut text = text
        .replace(ROOT_PLACEHOLDER, &root)
        .replace(RELAY_PLACEHOLDER, &domain.relay_public().to_string());
    for (from, to) in more {
        text = text.replace(from, to);
    }
    assert!(
        !text.contains("REPLACE"),
        "{name} has a placeholder the test does not fill"
    );
    let path = domain.path().join(format!("example-{name}"));
    fs::write(&path, text).expect("the example is written");
    path
}

/// The words of the unit's `ExecStart=`.
fn exec_start(unit: &str) -> Vec<String> {
    let text = read(&deploy(&format!("systemd/{unit}")));
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("ExecStart="));
    let line = line.unwrap_or_else(|| panic!("{unit} has no ExecStart="));
    line.split_whitespace().map(str::to_owned).collect()
}

/// `words` with each `from` prefix replaced by `to`.
fn localise(words: &[String], map: &[(&str, &str)]) -> Vec<String> {
    let bin = binary("breakglass").expect("built");
    let bin = format!("{}/", bin.parent().expect("the binaries' folder").display());
    let mut map = map.to_vec();
    map.push(("/usr/local/bin/", &bin));
    words
        .iter()
        .map(|w| {
            let found = map.iter().find(|(from, _)| w.starts_with(from));
            found.map_or_else(
                || w.clone(),
                |(from, to)| format!("{to}{}", &w[from.len()..]),
            )
        })
        .collect()
}

/// Fails if the output says the config file could not be read or clap refused the command.
fn assert_parsed(step: &Step, invalid: &str) {
    let said = format!("{}{}", step.stdout, step.stderr);
    let unreadable = ["cannot read relay config", "cannot read config"];
    for refusal in [invalid, "unknown field", "unrecognized subcommand"]
        .iter()
        .chain(&unreadable)
    {
        assert!(!said.contains(refusal), "said {refusal:?}: {step:#?}");
    }
}

fn deploy(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(name)
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every `Cargo.toml` of the workspace's members.
fn workspace_manifests() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let entries = fs::read_dir(&root).expect("the workspace lists");
    entries
        .filter_map(|e| fs::read_to_string(e.ok()?.path().join("Cargo.toml")).ok())
        .collect()
}

/// The words after each `flag` in `text`.
fn flag_values<'a>(text: &'a str, flag: &str) -> Vec<&'a str> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let values = words.windows(2).filter(|w| w[0] == flag).map(|w| w[1]);
    let values: Vec<&str> = values.collect();
    assert!(!values.is_empty(), "no {flag} in the Containerfile's build");
    values
}

fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Waits at most `timeout` for `needle` to appear in the file at `log`.
fn wait_for(log: &Path, needle: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if fs::read_to_string(log).is_ok_and(|t| t.contains(needle)) {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    false
}

/// What one command did.
#[derive(Debug)]
struct Step {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `program` with `args`, killing it and failing the test after [`DEADLINE`].
fn run(program: &Path, args: &[&str]) -> Step {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_remove("RUST_LOG")
        .env_remove("BREAKGLASS_CONFIG");
    let done = run_bounded(cmd, None, DEADLINE)
        .unwrap_or_else(|e| panic!("cannot run {}: {e:#}", program.display()));
    if done.timed_out() {
        panic!("{} {args:?} ran over {DEADLINE:?}", program.display());
    }
    Step {
        code: done.code().unwrap_or(-1),
        stdout: done.stdout,
        stderr: done.stderr,
    }
}
