//! docs/runbook.md, run end to end with the real binaries.
//!
//! Each runbook section names the test here that runs it. The test plays the section on
//! three folders standing for the machines the runbook names: the offline machine
//! (`breakglass-keygen`, the root key, the roster source), a laptop (`breakglass` with the
//! members' configs), and the relay host, whose `/etc/breakglass/` is the harness domain's
//! folder and whose `/var/lib/breakglass/data` is the relay's store there. Files carried
//! on the USB stick are copied by the test. `systemctl` and `journalctl` for
//! `breakglass-relay` act on the harness's relay process and its log files; the unit file
//! itself is checked by `tests/tests/deploy.rs`.
//!
//! Every command of the section runs through `sh`, exactly as written there (with the
//! example relay address and the relay host's paths mapped to the test's), in the order
//! written: each step is compared with the next command of the section before it runs,
//! and a section with commands left over fails. A runbook command that is wrong, missing
//! here or out of order therefore fails the test that exercises its section.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use breakglass_keygen::rosterfile;
use breakglass_protocol::roster::Relay;
use breakglass_tests::{binary, client, run_bounded_group, Background, Domain, RelayProcess};

/// The runbook, as the tests read it.
const RUNBOOK: &str = include_str!("../../docs/runbook.md");
/// The deployment guide, whose commands are checked against `--help` too.
const DEPLOY_README: &str = include_str!("../../deploy/README.md");
/// The relay address the runbook's examples use; mapped to the test relay's.
const EXAMPLE_RELAY: &str = "203.0.113.7:7443";
/// How long one step may run before the test fails.
const STEP_DEADLINE: Duration = Duration::from_secs(30);
/// The programs whose subcommands the documentation must get right.
const BINARIES: [&str; 3] = ["breakglass", "breakglass-keygen", "breakglass-relay"];

/// Where a runbook step runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Machine {
    /// The offline machine: `root.key`, `roster.toml`, `r1.pub`, `roster.signed`.
    Offline,
    /// A responder's or administrator's laptop: `NAME.toml`, `NAME.key`,
    /// `client-template.toml`.
    Laptop,
    /// The relay host, working in the folder of the USB stick.
    RelayHost,
}

impl Machine {
    fn folder(self) -> &'static str {
        match self {
            Machine::Offline => "offline",
            Machine::Laptop => "laptop",
            Machine::RelayHost => "usb",
        }
    }
}

/// What one command did.
#[derive(Debug)]
struct Step {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Step {
    fn ok(stdout: String) -> Step {
        Step {
            code: 0,
            stdout,
            stderr: String::new(),
        }
    }

    fn failed(stderr: String) -> Step {
        Step {
            code: 1,
            stdout: String::new(),
            stderr,
        }
    }
}

/// A drill of one runbook section: a trust domain with its relay serving, the machines'
/// folders, and the section's commands still to run.
struct Drill {
    test: &'static str,
    domain: Domain,
    relay: RelayProcess,
    to_run: Vec<String>,
    done: usize,
}

impl Drill {
    /// Sets up the section tested by `test` with `members` (the first is an admin), all in
    /// `#ops`, a relay `r1` serving them, and the machines laid out.
    fn new(test: &'static str, members: &[&str]) -> Drill {
        let to_run = section_commands(RUNBOOK, test);
        assert!(!to_run.is_empty(), "the runbook has no commands for {test}");
        let members: Vec<(&str, &[&str])> = members.iter().map(|m| (*m, &["ops"][..])).collect();
        let domain = Domain::new(&members, &["ops"]).expect("the trust domain is built");
        let relay = RelayProcess::spawn(&domain).expect("the relay starts");
        let drill = Drill {
            test,
            domain,
            relay,
            to_run,
            done: 0,
        };
        drill.lay_out();
        drill
    }

    /// Fills the machines' folders as an administrator would have left them.
    fn lay_out(&self) {
        for machine in [Machine::Offline, Machine::Laptop, Machine::RelayHost] {
            fs::create_dir_all(self.dir(machine)).expect("a machine folder");
        }
        let home = self.domain.path();
        let offline = self.dir(Machine::Offline);
        copy(&home.join("root.key"), &offline.join("root.key"));
        copy(&home.join("roster.signed"), &offline.join("roster.signed"));
        let relay_key = self.domain.relay_public();
        let mut source = self.domain.roster();
        source.relays.push(Relay {
            name: "r1".parse().expect("a relay name"),
            address: self.relay.addr().to_string(),
            key: relay_key,
        });
        rosterfile::save_source(&offline.join("roster.toml"), &source).expect("source saved");
        write(&offline.join("r1.pub"), &format!("{relay_key}\n"));

        let laptop = self.dir(Machine::Laptop);
        for member in &source.members {
            let name = member.name.as_str();
            let config = self.domain.client_config(name).expect("a client config");
            copy(&config, &laptop.join(format!("{name}.toml")));
            copy(
                &home.join(format!("{name}.key")),
                &laptop.join(format!("{name}.key")),
            );
        }
        let template = read(&laptop.join("alice.toml")).replace("alice", "NAME");
        write(&laptop.join("client-template.toml"), &template);
    }

    fn dir(&self, machine: Machine) -> PathBuf {
        self.domain.path().join(machine.folder())
    }

    /// Runs the section's next command, which must be `command`, on `machine`; fails the
    /// test unless it exits 0.
    fn step(&mut self, machine: Machine, command: &str) -> Step {
        self.step_with_input(machine, command, "")
    }

    /// As [`Drill::step`], typing `input` at the command.
    fn step_with_input(&mut self, machine: Machine, command: &str, input: &str) -> Step {
        let expected = self.to_run.get(self.done).map(String::as_str);
        assert_eq!(
            Some(command),
            expected,
            "step {} of the runbook section tested by {} differs from what the test runs \
             (section: {:#?})",
            self.done + 1,
            self.test,
            self.to_run
        );
        self.done += 1;
        let step = self.execute(machine, command, input);
        assert_eq!(
            step.code, 0,
            "runbook step `{command}` on the {machine:?} failed: {step:#?}"
        );
        step
    }

    /// Runs a command that is not a runbook step: setting the scene or checking a result.
    fn aside(&mut self, machine: Machine, command: &str, input: &str) -> Step {
        self.execute(machine, command, input)
    }

    /// As [`Drill::aside`], failing the test unless it exits 0.
    fn aside_ok(&mut self, machine: Machine, command: &str) -> Step {
        let step = self.aside(machine, command, "");
        assert_eq!(
            step.code, 0,
            "`{command}` on the {machine:?} failed: {step:#?}"
        );
        step
    }

    /// Carries `files` from one machine to another, as on a USB stick.
    fn carry(&self, from: Machine, to: Machine, files: &[&str]) {
        for file in files {
            copy(&self.dir(from).join(file), &self.dir(to).join(file));
        }
    }

    /// Fails unless every command of the section ran.
    fn finish(self) {
        assert_eq!(
            self.done,
            self.to_run.len(),
            "the runbook section tested by {} has commands this test never ran: {:#?}",
            self.test,
            &self.to_run[self.done..]
        );
    }

    fn execute(&mut self, machine: Machine, command: &str, input: &str) -> Step {
        if machine == Machine::RelayHost {
            if let Some(step) = self.service(command) {
                return step;
            }
        }
        let local = self.localise(command);
        shell(&local, &self.dir(machine), input)
    }

    /// The runbook's example address and relay host paths, as this test has them.
    fn localise(&self, command: &str) -> String {
        let home = self.domain.path().display().to_string();
        command
            .replace(EXAMPLE_RELAY, &self.relay.addr().to_string())
            .replace("/var/lib/breakglass/data", &format!("{home}/relay-data"))
            .replace("/etc/breakglass/", &format!("{home}/"))
    }

    /// `systemctl` and `journalctl` for the relay's unit, acting on the relay process.
    fn service(&mut self, command: &str) -> Option<Step> {
        let words: Vec<&str> = command.split_whitespace().collect();
        match words.as_slice() {
            ["systemctl", action, "breakglass-relay"] => {
                let result = match *action {
                    "stop" => self.relay.kill(),
                    "start" | "restart" => self.relay.restart(),
                    other => panic!("the test does not stand in for `systemctl {other}`"),
                };
                Some(match result {
                    Ok(()) => Step::ok(String::new()),
                    Err(e) => Step::failed(format!("{e:#}")),
                })
            }
            ["journalctl", "-u", "breakglass-relay", "-n", lines, "--no-pager"] => {
                let lines = lines.parse().expect("a line count");
                Some(Step::ok(self.journal(lines)))
            }
            [first, ..] if matches!(*first, "systemctl" | "journalctl") => {
                panic!("the test does not stand in for `{command}`")
            }
            _ => None,
        }
    }

    /// The last `lines` lines the relay logged over all its starts, failed ones included.
    fn journal(&self, lines: usize) -> String {
        let mut logs: Vec<(u32, PathBuf)> = fs::read_dir(self.domain.path())
            .expect("the domain folder lists")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter_map(|p| {
                let name = p.file_name()?.to_str()?.to_owned();
                let n = name
                    .strip_prefix("relay-")?
                    .strip_suffix(".log")?
                    .parse()
                    .ok()?;
                Some((n, p))
            })
            .collect();
        logs.sort();
        let text: String = logs.iter().map(|(_, p)| read(p)).collect();
        let all: Vec<&str> = text.lines().collect();
        let tail = &all[all.len().saturating_sub(lines)..];
        tail.iter().map(|l| format!("{l}\n")).collect()
    }

    /// Pushes the offline machine's `roster.signed` from alice's laptop, not as a step.
    fn push_offline_roster(&mut self) {
        self.carry(Machine::Offline, Machine::Laptop, &["roster.signed"]);
        let push = "breakglass --config alice.toml roster push roster.signed";
        self.aside_ok(Machine::Laptop, push);
    }
}

#[test]
fn activate_when_sso_is_down() {
    let mut d = Drill::new("activate_when_sso_is_down", &["alice", "bob"]);
    let waiting = client(
        &d.domain,
        "bob",
        &["send", "alice", "bob here, VPN is down too"],
    );
    assert!(waiting.expect("bob's client runs").success());

    let selftest = d.step(Machine::Laptop, "breakglass --config alice.toml selftest");
    assert!(
        selftest.stdout.starts_with("BREAKGLASS OK"),
        "{selftest:#?}"
    );
    let shown = d.step(
        Machine::Laptop,
        "breakglass --config alice.toml roster show",
    );
    let root = fingerprint_of(&mut d, "root.key");
    assert!(shown
        .stdout
        .contains(&format!("verified against root {root}")));
    assert!(lists_member(&shown.stdout, "bob"), "{shown:#?}");
    let read = d.step(Machine::Laptop, "breakglass --config alice.toml read");
    assert!(
        read.stdout.contains("bob here, VPN is down too"),
        "{read:#?}"
    );
    d.step(
        Machine::Laptop,
        "breakglass --config alice.toml send '#ops' \"SSO down since 09:40; alice is incident lead; updates here\"",
    );
    d.step_with_input(
        Machine::Laptop,
        "breakglass --config alice.toml chat '#ops'",
        "who is on call for the database?\n/quit\n",
    );

    let bob = client(&d.domain, "bob", &["read"]).expect("bob's client runs");
    assert!(bob.stdout.contains("alice is incident lead"), "{bob:#?}");
    assert!(
        bob.stdout.contains("who is on call for the database?"),
        "{bob:#?}"
    );
    d.finish();
}

#[test]
fn enrol_from_paper() {
    let mut d = Drill::new("enrol_from_paper", &["alice", "bob"]);
    let page = paper_backup_of_a_new_member(&mut d, "carol");
    let on_paper = fingerprint_line(&page);

    let restored = d.step_with_input(
        Machine::Laptop,
        "breakglass-keygen paper restore --kind member --out carol.key",
        &page,
    );
    assert!(restored.stderr.contains(&on_paper), "{restored:#?}");
    d.step(
        Machine::Laptop,
        "breakglass-keygen pubkey carol.key > carol.pub",
    );
    let told = d.step(
        Machine::Laptop,
        "breakglass-keygen pubkey --fingerprint carol.key",
    );
    assert_eq!(told.stdout.trim(), on_paper);
    d.carry(Machine::Laptop, Machine::Offline, &["carol.pub"]);
    d.step(
        Machine::Offline,
        "breakglass-keygen roster add roster.toml member --name carol --key \"$(cat carol.pub)\" --channel ops",
    );
    let source = d.step(
        Machine::Offline,
        "breakglass-keygen roster show roster.toml",
    );
    assert!(source.stdout.contains(&on_paper), "{source:#?}");
    d.step(
        Machine::Offline,
        "breakglass-keygen roster sign roster.toml --root root.key --out roster.signed",
    );
    let card = d.step(
        Machine::Offline,
        "breakglass-keygen pincard --roster roster.signed --root root.key --svg pincard.svg",
    );
    assert!(card.stdout.contains(&on_paper) && card.stdout.contains("roster version 2"));
    d.carry(Machine::Offline, Machine::Laptop, &["roster.signed"]);
    let push = d.step(
        Machine::Laptop,
        "breakglass --config alice.toml roster push roster.signed",
    );
    assert!(
        push.stdout.contains("roster version 2 in force"),
        "{push:#?}"
    );
    d.step(
        Machine::Laptop,
        "sed 's/NAME/carol/g' client-template.toml > carol.toml",
    );
    let selftest = d.step(Machine::Laptop, "breakglass --config carol.toml selftest");
    assert!(
        selftest.stdout.starts_with("BREAKGLASS OK"),
        "{selftest:#?}"
    );
    let shown = d.step(
        Machine::Laptop,
        "breakglass --config carol.toml roster show",
    );
    assert!(lists_member(&shown.stdout, "carol"), "{shown:#?}");

    let welcome = "breakglass --config alice.toml send '#ops' 'welcome carol'";
    d.aside_ok(Machine::Laptop, welcome);
    let read = d.aside_ok(Machine::Laptop, "breakglass --config carol.toml read");
    assert!(
        read.stdout
            .contains("alice → #ops (verified): welcome carol"),
        "{read:#?}"
    );
    d.finish();
}

#[test]
fn revoke_lost_laptop() {
    let mut d = Drill::new("revoke_lost_laptop", &["alice", "bob", "carol"]);
    let mut bob = Background::spawn(&d.domain, "bob", &["tail"]).expect("bob tails");
    let hello = "breakglass --config alice.toml send bob 'are you there?'";
    d.aside_ok(Machine::Laptop, hello);
    let line = bob.next_line(Duration::from_secs(10));
    assert!(
        line.is_some_and(|l| l.contains("are you there?")),
        "bob is not connected"
    );

    d.step(
        Machine::Offline,
        "breakglass-keygen roster remove roster.toml bob",
    );
    d.step(
        Machine::Offline,
        "breakglass-keygen roster sign roster.toml --root root.key --out roster.signed",
    );
    d.carry(Machine::Offline, Machine::Laptop, &["roster.signed"]);
    d.step(
        Machine::Laptop,
        "breakglass --config alice.toml roster push roster.signed",
    );
    let exited = bob
        .wait_exit(Duration::from_secs(10))
        .expect("bob's tail waits");
    assert!(
        exited.is_some(),
        "bob's connection stayed open after the push"
    );
    let shown = d.step(
        Machine::Laptop,
        "breakglass --config alice.toml roster show",
    );
    assert!(shown.stdout.starts_with("roster version 2"), "{shown:#?}");
    assert!(!lists_member(&shown.stdout, "bob"), "{shown:#?}");
    d.step(
        Machine::Laptop,
        "breakglass --config alice.toml send '#ops' \"bob's laptop is lost: bob is revoked; call him by phone\"",
    );

    let stolen = client(&d.domain, "bob", &["read"]).expect("bob's client runs");
    assert!(!stolen.success(), "the stolen key still reads: {stolen:#?}");
    let carol = client(&d.domain, "carol", &["read"]).expect("carol's client runs");
    assert!(carol.stdout.contains("bob is revoked"), "{carol:#?}");
    d.finish();
}

#[test]
fn rotate_relay_key() {
    let mut d = Drill::new("rotate_relay_key", &["alice", "bob"]);

    d.step(
        Machine::Offline,
        "breakglass-keygen relay new --out r1-new.key > r1-new.pub",
    );
    let new_fingerprint = fingerprint_of(&mut d, "r1-new.key");
    d.step(
        Machine::Offline,
        "breakglass-keygen roster remove roster.toml r1",
    );
    d.step(
        Machine::Offline,
        "breakglass-keygen roster add roster.toml relay --name r1 --address 203.0.113.7:7443 --key r1-new.key",
    );
    d.step(
        Machine::Offline,
        "breakglass-keygen roster sign roster.toml --root root.key --out roster.signed",
    );
    d.carry(Machine::Offline, Machine::Laptop, &["roster.signed"]);
    d.step(
        Machine::Laptop,
        "breakglass --config alice.toml roster push roster.signed",
    );
    d.carry(
        Machine::Offline,
        Machine::RelayHost,
        &["r1-new.key", "roster.signed"],
    );
    d.step(
        Machine::RelayHost,
        "cp r1-new.key /etc/breakglass/relay.key",
    );
    d.step(
        Machine::RelayHost,
        "cp roster.signed /etc/breakglass/roster.signed",
    );
    let installed = d.domain.path().join("relay.key");
    assert_eq!(mode(&installed), 0o600, "the relay key lost its mode");
    d.step(Machine::RelayHost, "systemctl restart breakglass-relay");
    let journal = d.step(
        Machine::RelayHost,
        "journalctl -u breakglass-relay -n 20 --no-pager",
    );
    let started = journal
        .stdout
        .lines()
        .rfind(|l| l.contains("relay started"));
    let started = started.expect("a start line");
    assert!(
        started.contains(&format!("relay={new_fingerprint}")),
        "{journal:#?}"
    );
    d.step(Machine::RelayHost, "shred -u r1-new.key");
    assert!(!d.dir(Machine::RelayHost).join("r1-new.key").exists());

    let stale = client(&d.domain, "bob", &["selftest"]).expect("bob's client runs");
    assert_eq!(stale.status.code(), Some(2), "{stale:#?}");
    assert!(stale.stdout.contains("presented key"), "{stale:#?}");
    d.carry(Machine::Offline, Machine::Laptop, &["r1.pub", "r1-new.pub"]);
    d.step(
        Machine::Laptop,
        "sed -i \"s/$(cat r1.pub)/$(cat r1-new.pub)/\" alice.toml",
    );
    let selftest = d.step(Machine::Laptop, "breakglass --config alice.toml selftest");
    assert!(
        selftest.stdout.starts_with("BREAKGLASS OK"),
        "{selftest:#?}"
    );
    d.step(
        Machine::Laptop,
        "sed -i \"s/$(cat r1.pub)/$(cat r1-new.pub)/\" client-template.toml",
    );
    let new_pin = read(&d.dir(Machine::Offline).join("r1-new.pub"));
    let template = read(&d.dir(Machine::Laptop).join("client-template.toml"));
    assert!(template.contains(new_pin.trim()), "{template}");
    d.step(Machine::Offline, "mv r1-new.pub r1.pub");
    d.step(Machine::Offline, "shred -u r1-new.key");
    assert_eq!(read(&d.dir(Machine::Offline).join("r1.pub")), new_pin);
    assert!(!d.dir(Machine::Offline).join("r1-new.key").exists());
    d.finish();
}

#[test]
fn restore_root_from_shares() {
    let mut d = Drill::new("restore_root_from_shares", &["alice", "bob"]);
    let split = "breakglass-keygen paper split root.key --threshold 2 --shares 3";
    let shares = d.aside_ok(Machine::Offline, split).stdout;
    let shares: Vec<&str> = shares.lines().collect();
    assert_eq!(shares.len(), 3, "{shares:#?}");
    let card = "breakglass-keygen pincard --roster roster.signed --root root.key";
    let card = d.aside_ok(Machine::Offline, card).stdout;
    let on_card = card_root_fingerprint(&card);
    fs::remove_file(d.dir(Machine::Offline).join("root.key")).expect("the disk fails");

    let typed = format!("{}\n{}\n", shares[2], shares[0]);
    d.step_with_input(
        Machine::Offline,
        "breakglass-keygen paper combine --kind root --out root.key",
        &typed,
    );
    let restored = d.step(
        Machine::Offline,
        "breakglass-keygen pubkey --fingerprint root.key",
    );
    assert_eq!(restored.stdout.trim(), on_card);
    let verified = d.step(
        Machine::Offline,
        "breakglass-keygen roster verify roster.signed --root root.key",
    );
    assert!(
        verified.stdout.starts_with("OK: roster version 1"),
        "{verified:#?}"
    );

    let sign = "breakglass-keygen roster sign roster.toml --root root.key --out roster.signed";
    d.aside_ok(Machine::Offline, sign);
    d.push_offline_roster();
    d.finish();
}

#[test]
fn recover_relay_store() {
    let mut d = Drill::new("recover_relay_store", &["alice", "bob", "carol"]);
    d.aside_ok(
        Machine::Offline,
        "breakglass-keygen roster remove roster.toml bob",
    );
    let sign = "breakglass-keygen roster sign roster.toml --root root.key --out roster.signed";
    d.aside_ok(Machine::Offline, sign);
    d.push_offline_roster();
    let waiting = "breakglass --config alice.toml send carol 'the runbook is in the binder'";
    d.aside_ok(Machine::Laptop, waiting);
    d.relay.kill().expect("the relay host loses power");
    fs::remove_file(d.domain.relay_data().join("db")).expect("sled's file is lost");
    let failed = d
        .relay
        .restart()
        .expect_err("a damaged store does not open");
    assert!(
        format!("{failed:#}").contains("cannot open store"),
        "{failed:#}"
    );

    let journal = d.step(
        Machine::RelayHost,
        "journalctl -u breakglass-relay -n 20 --no-pager",
    );
    assert!(journal.stdout.contains("cannot open store"), "{journal:#?}");
    assert!(
        journal.stdout.contains("move the directory aside"),
        "{journal:#?}"
    );
    d.step(Machine::RelayHost, "systemctl stop breakglass-relay");
    d.step(
        Machine::RelayHost,
        "mv /var/lib/breakglass/data /var/lib/breakglass/data.broken",
    );
    assert!(d.domain.path().join("relay-data.broken").is_dir());
    d.carry(Machine::Offline, Machine::RelayHost, &["roster.signed"]);
    d.step(
        Machine::RelayHost,
        "cp roster.signed /etc/breakglass/roster.signed",
    );
    d.step(Machine::RelayHost, "systemctl start breakglass-relay");
    let journal = d.step(
        Machine::RelayHost,
        "journalctl -u breakglass-relay -n 20 --no-pager",
    );
    let started = journal
        .stdout
        .lines()
        .rfind(|l| l.contains("relay started"));
    assert!(
        started.is_some_and(|l| l.contains("roster_version=2")),
        "{journal:#?}"
    );
    let selftest = d.step(Machine::Laptop, "breakglass --config alice.toml selftest");
    assert!(
        selftest.stdout.starts_with("BREAKGLASS OK"),
        "{selftest:#?}"
    );
    let shown = d.step(
        Machine::Laptop,
        "breakglass --config alice.toml roster show",
    );
    assert!(shown.stdout.starts_with("roster version 2"), "{shown:#?}");
    assert!(
        !lists_member(&shown.stdout, "bob"),
        "a revoked member is back: {shown:#?}"
    );
    d.step(
        Machine::Laptop,
        "breakglass --config alice.toml send '#ops' \"relay r1 store was reset at 11:20: resend anything unanswered\"",
    );

    let revoked = client(&d.domain, "bob", &["read"]).expect("bob's client runs");
    assert!(
        !revoked.success(),
        "bob came back with the old store: {revoked:#?}"
    );
    let history = read(&d.dir(Machine::Laptop).join("alice.data/history.jsonl"));
    assert!(
        history.contains("the runbook is in the binder"),
        "{history}"
    );
    let carol = client(&d.domain, "carol", &["read"]).expect("carol's client runs");
    assert!(
        carol.stdout.contains("resend anything unanswered"),
        "{carol:#?}"
    );
    assert!(
        !carol.stdout.contains("the runbook is in the binder"),
        "{carol:#?}"
    );
    d.finish();
}

#[test]
fn stand_down() {
    let mut d = Drill::new("stand_down", &["alice", "bob", "carol"]);
    d.step(
        Machine::Laptop,
        "breakglass --config alice.toml send '#ops' \"SSO is back; standing down breakglass; carry on in the usual channel\"",
    );
    d.step(Machine::Laptop, "breakglass --config alice.toml read");
    d.step(
        Machine::Offline,
        "breakglass-keygen roster remove roster.toml carol",
    );
    d.step(
        Machine::Offline,
        "breakglass-keygen roster sign roster.toml --root root.key --out roster.signed",
    );
    let card = d.step(
        Machine::Offline,
        "breakglass-keygen pincard --roster roster.signed --root root.key --svg pincard.svg",
    );
    assert!(!card.stdout.contains("carol"), "{card:#?}");
    assert!(read(&d.dir(Machine::Offline).join("pincard.svg")).starts_with("<svg"));
    d.carry(Machine::Offline, Machine::Laptop, &["roster.signed"]);
    d.step(
        Machine::Laptop,
        "breakglass --config alice.toml roster push roster.signed",
    );
    let selftest = d.step(Machine::Laptop, "breakglass --config alice.toml selftest");
    assert!(
        selftest.stdout.starts_with("BREAKGLASS OK"),
        "{selftest:#?}"
    );

    let carol = client(&d.domain, "carol", &["read"]).expect("carol's client runs");
    assert!(!carol.success(), "carol is still a member: {carol:#?}");
    let bob = client(&d.domain, "bob", &["read"]).expect("bob's client runs");
    assert!(bob.stdout.contains("standing down breakglass"), "{bob:#?}");
    d.finish();
}

#[test]
fn every_runbook_section_with_commands_names_a_test_here() {
    let source = read(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/runbook.rs"
    )));
    for section in sections(RUNBOOK) {
        let title = section.lines().next().unwrap_or_default();
        let tests: Vec<&str> = section
            .lines()
            .filter_map(|l| {
                l.trim()
                    .strip_prefix("<!-- tested by: tests/tests/runbook.rs::")
            })
            .filter_map(|rest| rest.strip_suffix(" -->"))
            .collect();
        if sh_commands(&section).is_empty() {
            assert!(
                tests.is_empty(),
                "{title}: names a test but has no commands"
            );
            continue;
        }
        assert_eq!(
            tests.len(),
            1,
            "{title}: name exactly one test, as <!-- tested by: … -->"
        );
        let test = tests[0];
        assert!(
            source.contains(&format!("#[test]\nfn {test}() {{")),
            "{title}: names the test {test}, which is not in tests/tests/runbook.rs"
        );
    }
}

#[test]
fn every_breakglass_command_in_the_docs_uses_subcommands_its_help_lists() {
    let mut help = Help::default();
    let docs = [
        ("docs/runbook.md", RUNBOOK),
        ("deploy/README.md", DEPLOY_README),
    ];
    let mut checked = 0;
    for (doc, text) in docs {
        for command in sh_commands(text) {
            for segment in segments(&words(&command)) {
                if let Some(problem) = help.check(&segment) {
                    panic!("{doc}: `{command}`: {problem}");
                }
                checked += 1;
            }
        }
    }
    assert!(
        checked > 20,
        "only {checked} commands found: the parser is broken"
    );
}

#[test]
fn the_parser_reads_sh_blocks_and_skips_comments_and_other_blocks() {
    let doc = "## 1. A\n\n1. Do.\n   ```sh\n   # a comment\n   one --a  # why\n   two \\\n     --b\n   ```\n\
               ```toml\nnot = \"a command\"\n```\n## 2. B\n```sh\nthree '#ops'\n```\n";
    assert_eq!(sh_commands(doc), ["one --a", "two --b", "three '#ops'"]);
    assert_eq!(sections(doc).len(), 2);
    let parts = segments(&words("a 'b c' \"$(d e)\" | f > g && breakglass x"));
    assert_eq!(
        parts,
        [
            vec!["a", "b c", "$(d e)"],
            vec!["f"],
            vec!["breakglass", "x"]
        ]
    );
}

/// Makes a member key for `name` on the offline machine, prints its paper page and
/// deletes the key file: only the paper is left, as for a responder enrolled before.
fn paper_backup_of_a_new_member(d: &mut Drill, name: &str) -> String {
    let file = format!("{name}-onboarding.key");
    let new = format!("breakglass-keygen member new --name {name} --out {file}");
    d.aside_ok(Machine::Offline, &new);
    let page = d.aside_ok(
        Machine::Offline,
        &format!("breakglass-keygen paper show {file}"),
    );
    fs::remove_file(d.dir(Machine::Offline).join(file)).expect("the key file is deleted");
    page.stdout
}

/// The fingerprint of a key file on the offline machine.
fn fingerprint_of(d: &mut Drill, file: &str) -> String {
    let command = format!("breakglass-keygen pubkey --fingerprint {file}");
    d.aside_ok(Machine::Offline, &command)
        .stdout
        .trim()
        .to_owned()
}

/// The value of the `fingerprint: …` line of a paper page.
fn fingerprint_line(page: &str) -> String {
    let line = page.lines().find_map(|l| l.strip_prefix("fingerprint: "));
    line.expect("a fingerprint line").trim().to_owned()
}

/// The root fingerprint printed on a pin card.
fn card_root_fingerprint(card: &str) -> String {
    let mut lines = card.lines().skip_while(|l| !l.starts_with("ROOT KEY"));
    let line = lines.find_map(|l| l.trim().strip_prefix("fingerprint"));
    line.expect("a root fingerprint on the card")
        .trim()
        .to_owned()
}

/// Whether a `roster show` table lists the member `name`.
fn lists_member(table: &str, name: &str) -> bool {
    let members = table
        .lines()
        .skip_while(|l| *l != "members:")
        .skip(1)
        .take_while(|l| l.starts_with("  "));
    members
        .into_iter()
        .any(|l| l.split_whitespace().next() == Some(name))
}

/// The sections of a Markdown document, each from its `## ` heading to the next.
fn sections(doc: &str) -> Vec<String> {
    let mut sections: Vec<String> = Vec::new();
    for line in doc.lines() {
        if line.starts_with("## ") {
            sections.push(String::new());
        }
        if let Some(current) = sections.last_mut() {
            current.push_str(line);
            current.push('\n');
        }
    }
    sections
}

/// The commands of the runbook section whose comment names `test`.
fn section_commands(doc: &str, test: &str) -> Vec<String> {
    let marker = format!("<!-- tested by: tests/tests/runbook.rs::{test} -->");
    let section = sections(doc).into_iter().find(|s| s.contains(&marker));
    sh_commands(&section.unwrap_or_else(|| panic!("no runbook section is tested by {test}")))
}

/// The commands in the ```` ```sh ```` blocks of `text`, in order: comment lines and blank
/// lines skipped, a trailing `  # comment` cut, `\` continuations joined.
fn sh_commands(text: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut fence: Option<bool> = None;
    let mut pending = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("```") {
            fence = if fence.is_some() {
                None
            } else {
                Some(line == "```sh")
            };
            continue;
        }
        if fence != Some(true) || line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.split("  # ").next().unwrap_or(line).trim_end();
        match line.strip_suffix('\\') {
            Some(head) => {
                pending.push_str(head.trim_end());
                pending.push(' ');
            }
            None => {
                pending.push_str(line);
                commands.push(std::mem::take(&mut pending));
            }
        }
    }
    commands
}

/// A command line's words as `sh` would split them, quotes removed (no expansion).
fn words(command: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    for c in command.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.get_or_insert_with(String::new).push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            (None, c) if c.is_whitespace() => words.extend(word.take()),
            (None, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

/// The simple commands of a pipeline or list, each up to its first redirection.
fn segments(words: &[String]) -> Vec<Vec<String>> {
    let mut segments = vec![Vec::new()];
    let mut redirected = false;
    for word in words {
        if matches!(word.as_str(), "|" | "||" | "&&" | ";") {
            segments.push(Vec::new());
            redirected = false;
        } else if word
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .starts_with(['>', '<'])
        {
            redirected = true;
        } else if !redirected {
            segments
                .last_mut()
                .expect("one segment at least")
                .push(word.clone());
        }
    }
    segments.retain(|s| !s.is_empty());
    segments
}

/// The subcommands each binary's `--help` lists, asked once.
#[derive(Default)]
struct Help {
    lists: HashMap<Vec<String>, Vec<String>>,
}

impl Help {
    /// Why `segment` is not a valid use of a breakglass binary, if it is one and is not.
    ///
    /// The command word is the first, or the first after `--` behind `runuser` or `sudo`.
    /// The first word after it that is not an option is checked against the binary's
    /// `--help`; when that subcommand has subcommands of its own, so is the next one.
    fn check(&mut self, segment: &[String]) -> Option<String> {
        let first = segment.first()?;
        let at = if matches!(basename(first), "runuser" | "sudo") {
            segment.iter().position(|w| w == "--")? + 1
        } else {
            0
        };
        let program = basename(segment.get(at)?).to_owned();
        if !BINARIES.contains(&program.as_str()) {
            return None;
        }
        let mut path = vec![program];
        let mut rest = segment[at + 1..].iter();
        while let Some(word) = rest.next() {
            if path.len() > 2 {
                return None;
            }
            if matches!(word.as_str(), "--config" | "-c" | "--listen") {
                rest.next();
                continue;
            }
            if word.starts_with('-') {
                continue;
            }
            let listed = self.subcommands(&path);
            if listed.is_empty() {
                return None;
            }
            if !listed.contains(word) {
                let asked = path.join(" ");
                return Some(format!(
                    "`{asked} --help` lists no `{word}` (only {listed:?})"
                ));
            }
            path.push(word.clone());
        }
        None
    }

    fn subcommands(&mut self, path: &[String]) -> Vec<String> {
        self.lists
            .entry(path.to_vec())
            .or_insert_with(|| listed_subcommands(path))
            .clone()
    }
}

/// The subcommands under `Commands:` in `PROGRAM SUB… --help`.
fn listed_subcommands(path: &[String]) -> Vec<String> {
    let program = binary(&path[0]).expect("the binaries are built");
    let out = Command::new(program)
        .args(&path[1..])
        .arg("--help")
        .output()
        .expect("--help runs");
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "`{} --help` failed: {help}",
        path.join(" ")
    );
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn basename(word: &str) -> &str {
    word.rsplit('/').next().unwrap_or(word)
}

/// Runs `command` with `sh -c` in `dir`, the workspace's binaries first on `PATH`, typing
/// `input`; kills its whole process group and fails the test after [`STEP_DEADLINE`].
fn shell(command: &str, dir: &Path, input: &str) -> Step {
    let bin = binary("breakglass").expect("the binaries are built");
    let bin = bin.parent().expect("the binaries' folder");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut sh = Command::new("sh");
    sh.args(["-c", command])
        .current_dir(dir)
        .env("PATH", path)
        .env_remove("RUST_LOG")
        .env_remove("BREAKGLASS_CONFIG");
    // A group of its own: killing only `sh` would leave its pipelines running.
    let input = Some(input.as_bytes().to_vec());
    let done = run_bounded_group(sh, input, STEP_DEADLINE).expect("sh runs");
    if done.timed_out() {
        panic!("`{command}` ran over {STEP_DEADLINE:?} and was killed");
    }
    Step {
        code: done.code().unwrap_or(-1),
        stdout: done.stdout,
        stderr: done.stderr,
    }
}

fn copy(from: &Path, to: &Path) {
    fs::copy(from, to).unwrap_or_else(|e| panic!("cannot copy {}: {e}", from.display()));
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn write(path: &Path, text: &str) {
    fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .expect("the file exists")
        .permissions()
        .mode()
        & 0o777
}
