//! The outage drill, in network namespaces: the corporate IdP and DNS resolver are down,
//! and responders on hosts of their own must still reach each other through the breakglass
//! relay. Down means blackholed, not refused: packets to them vanish, so every wait on them
//! is a real timeout.
//!
//! Each drill builds its own network on one private /24, `10.213.<pid % 200>.0/24`, that
//! exists only on a bridge in a switch namespace:
//!
//! | host  | address | what runs there                                       |
//! |-------|---------|-------------------------------------------------------|
//! | relay | .10     | `breakglass-relay serve`, UDP 7443                    |
//! | alice | .21     | a responder; its resolver is the corporate one        |
//! | bob   | .22     | a responder; its resolver is the corporate one        |
//! | idp   | .130    | the stand-in IdP, `idp.corp.example`; blackholed      |
//! | dns   | .153    | the stand-in corporate resolver; blackholed           |
//!
//! Every other host sends the blackholed hosts' frames to a MAC address nobody owns, which
//! the switch delivers to the blackholed host's port alone, where they are dropped unseen
//! (see `netns::Lan::blackhole`). So nothing ever answers, and each blackhole's receive
//! count is exactly what was sent to it: the drill checks that count, not only the
//! outcome of each command.
//!
//! The corporate range is `.128/25`, where the IdP and the resolver live; the relay is
//! outside it. With the relay named by IP address, the channel works and needs neither
//! (case 1). Named by a host name only the corporate resolver knows, the relay goes down
//! with DNS, and `selftest` and `audit` must say so (case 2).
//!
//! Needs root and iproute2. Without them the drill prints a `skipping:` line and passes,
//! except when `CI` is set: CI runs as root and must run the drill.

use std::fs;
use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use breakglass_keygen::keyio;
use breakglass_protocol::KeyKind;
use breakglass_tests::netns::{self, Daemon, Lan, Probe, Timed};
use breakglass_tests::{binary, Domain, CLIENT_DEADLINE, RELAY_START};
use serde_json::Value;

/// The relay host, and the port it serves on.
const RELAY: u8 = 10;
const RELAY_PORT: u16 = 7443;
/// The responders.
const ALICE: u8 = 21;
const BOB: u8 = 22;
/// The stand-in IdP and its name.
const IDP: u8 = 130;
const IDP_NAME: &str = "idp.corp.example";
/// The stand-in corporate resolver.
const RESOLVER: u8 = 153;
/// The corporate range, as a suffix to the drill's /24: `.128/25` holds IdP and resolver.
const CORPORATE: (u8, u8) = (128, 25);
/// The relay's name in case 2, known only to the (blackholed) corporate resolver.
const RELAY_NAME: &str = "relay.corp.example";

/// The proxy variables the client (and its audit) would honour.
const PROXY_VARS: [&str; 6] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// What a send or read may take when the relay is reachable.
const NORMAL: Duration = Duration::from_secs(5);
/// The self-test's own deadline (its default `--timeout`).
const SELFTEST_DEADLINE: Duration = Duration::from_secs(10);
/// The bound on a self-test that fails, deadline plus start-up and exit.
const SELFTEST_FAILS_WITHIN: Duration = Duration::from_secs(12);
/// How long a probe waits for an answer from a blackholed host.
const PROBE_WAIT: Duration = Duration::from_secs(1);

#[test]
fn responders_talk_through_a_relay_named_by_ip_while_idp_and_dns_are_blackholed() {
    let Some(drill) = Drill::start("ip", Naming::IpLiteral) else {
        return;
    };
    let before = drill.blackhole_counts();

    let send = drill.client("alice", &["send", "bob", "the IdP is down, use this"]);
    assert_done(&send, 0, NORMAL, "alice send");
    let read = drill.client("bob", &["read"]);
    assert_done(&read, 0, NORMAL, "bob read");
    assert!(
        read.run
            .stdout
            .contains("alice → bob (verified): the IdP is down, use this"),
        "bob did not read alice's message: {read:#?}"
    );

    let selftest = drill.client("alice", &["selftest"]);
    print!("{}", selftest.run.stdout);
    assert_done(&selftest, 0, SELFTEST_DEADLINE, "alice selftest");
    assert!(
        selftest.run.stdout.starts_with("BREAKGLASS OK"),
        "{selftest:#?}"
    );

    let audit = drill.audit("alice");
    assert_done(&audit.human, 0, NORMAL, "alice audit");
    assert!(
        audit.human.run.stdout.contains("INDEPENDENT"),
        "{:#?}",
        audit.human
    );
    assert_done(&audit.json, 0, NORMAL, "alice audit --json");
    assert_eq!(audit.report["shared"], 0, "{:#}", audit.report);
    for check in ["dns", "network"] {
        let item = audit.item(check);
        assert_eq!(item["status"], "independent", "{check}: {item:#}");
    }

    assert_eq!(
        drill.blackhole_counts(),
        before,
        "(idp, resolver) frames: with the relay named by IP, nothing may contact the IdP \
         or look a name up"
    );
}

#[test]
fn a_relay_named_through_the_blackholed_corporate_resolver_is_lost_with_dns_and_flagged() {
    let Some(drill) = Drill::start("dns", Naming::CorporateDns) else {
        return;
    };
    let (idp_before, dns_before) = drill.blackhole_counts();

    let selftest = drill.client("alice", &["selftest"]);
    print!("{}", selftest.run.stdout);
    assert_eq!(selftest.run.status.code(), Some(2), "{selftest:#?}");
    assert!(
        selftest.elapsed < SELFTEST_FAILS_WITHIN,
        "selftest took {:.1?}: {selftest:#?}",
        selftest.elapsed
    );
    assert!(
        selftest.run.stdout.starts_with("BREAKGLASS CRITICAL")
            && selftest.run.stdout.contains("DNS"),
        "selftest does not say DNS failed: {selftest:#?}"
    );

    let send = drill.client("alice", &["send", "bob", "anyone there?"]);
    assert_ne!(send.run.status.code(), Some(0), "{send:#?}");
    assert!(
        send.elapsed < SELFTEST_FAILS_WITHIN,
        "send took {:.1?}: {send:#?}",
        send.elapsed
    );
    assert!(send.run.stderr.contains("DNS"), "{send:#?}");

    let (idp_after, dns_after) = drill.blackhole_counts();
    assert!(
        dns_after > dns_before,
        "the client never asked the corporate resolver: {dns_before} → {dns_after} frames"
    );
    assert_eq!(idp_after, idp_before, "frames reached the IdP");

    let audit = drill.audit("alice");
    assert_done(&audit.human, 1, NORMAL, "alice audit");
    assert!(
        audit.human.run.stdout.contains("SHARED"),
        "{:#?}",
        audit.human
    );
    assert_done(&audit.json, 1, NORMAL, "alice audit --json");
    let dns = audit.item("dns");
    let detail = dns["detail"].as_str().unwrap_or_default();
    let resolver = drill.lan.addr(RESOLVER).to_string();
    assert_eq!(dns["status"], "shared", "{dns:#}");
    assert!(
        detail.contains(RELAY_NAME) && detail.contains(&resolver),
        "the audit does not say {RELAY_NAME} depends on resolver {resolver}: {dns:#}"
    );
}

/// How the client configurations name the relay.
#[derive(Clone, Copy)]
enum Naming {
    /// `10.213.x.10:7443`: no DNS at all.
    IpLiteral,
    /// `relay.corp.example:7443`, which only the blackholed resolver could resolve.
    CorporateDns,
}

/// One drill: its network, trust domain and running relay, torn down in that order's
/// reverse (relay killed, then namespaces deleted, then the domain's folder removed).
struct Drill {
    name: &'static str,
    // Fields drop in order: the relay must die before its namespace goes.
    relay: Daemon,
    lan: Lan,
    domain: Domain,
}

impl Drop for Drill {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("drill {}: relay log:\n{}", self.name, self.relay.log());
        }
    }
}

/// What `audit` and `audit --json` did.
#[derive(Debug)]
struct Audit {
    human: Timed,
    json: Timed,
    /// The JSON report.
    report: Value,
}

impl Audit {
    /// The report's line for `check` of the drill's one relay.
    fn item(&self, check: &str) -> &Value {
        let items = self.report["items"]
            .as_array()
            .expect("the report has items");
        items
            .iter()
            .find(|i| i["check"] == check && i["subject"] == "drill")
            .unwrap_or_else(|| panic!("no {check} line for the relay: {:#}", self.report))
    }
}

impl Drill {
    /// Builds the network, checks its blackholes, makes the trust domain and starts the
    /// relay; `None` (after a `skipping:` line) where namespaces cannot be made, unless CI.
    fn start(name: &'static str, naming: Naming) -> Option<Drill> {
        if let Err(e) = netns::check_support() {
            if std::env::var_os("CI").is_some() {
                panic!("CI must run the outage drill, but network namespaces fail: {e:#}");
            }
            println!("skipping: the outage drill needs network namespaces (root, iproute2): {e:#}");
            return None;
        }
        let started = Instant::now();
        let lan = network(name);
        println!("drill {name}: network built in {:.2?}", started.elapsed());
        check_blackholes(&lan);
        let members: &[(&str, &[&str])] = &[("alice", &["ops"]), ("bob", &["ops"])];
        let domain = Domain::new(members, &["ops"]).expect("the trust domain is built");
        let listen = SocketAddrV4::new(lan.addr(RELAY), RELAY_PORT);
        write_relay_config(&domain, listen);
        let relay = start_relay(&lan, &domain, listen);
        let address = match naming {
            Naming::IpLiteral => listen.to_string(),
            Naming::CorporateDns => format!("{RELAY_NAME}:{RELAY_PORT}"),
        };
        for member in ["alice", "bob"] {
            write_client_config(&domain, &lan, member, &address);
        }
        println!("drill {name}: ready in {:.2?}", started.elapsed());
        Some(Drill {
            name,
            relay,
            lan,
            domain,
        })
    }

    /// Runs `breakglass --config MEMBER.toml ARGS…` on `member`'s host, killed past
    /// [`CLIENT_DEADLINE`]; prints how it went.
    fn client(&self, member: &str, args: &[&str]) -> Timed {
        let host = self.lan.host(member).expect("the member has a host");
        let mut cmd = host.command(binary("breakglass").expect("the client is built"));
        cmd.arg("--config")
            .arg(self.config(member))
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("BREAKGLASS_CONFIG")
            .env_remove("BREAKGLASS_RESOLV_CONF");
        // The responder hosts of the drill have no proxy, whatever the machine running it.
        for proxy in PROXY_VARS {
            cmd.env_remove(proxy);
        }
        let timed = netns::run_within(cmd, CLIENT_DEADLINE).expect("the client finishes");
        let code = timed
            .run
            .status
            .code()
            .map_or("none".into(), |c| c.to_string());
        println!(
            "drill {}: {member} {}: exit {code} in {:.2?}",
            self.name,
            args.join(" "),
            timed.elapsed
        );
        timed
    }

    /// `audit` and `audit --json` on `member`'s host.
    fn audit(&self, member: &str) -> Audit {
        let human = self.client(member, &["audit"]);
        print!("{}", human.run.stdout);
        let json = self.client(member, &["audit", "--json"]);
        let report = serde_json::from_str(json.run.stdout.trim())
            .unwrap_or_else(|e| panic!("audit --json is not one JSON object ({e}): {json:#?}"));
        Audit {
            human,
            json,
            report,
        }
    }

    fn config(&self, member: &str) -> PathBuf {
        self.domain.path().join(format!("{member}.toml"))
    }

    /// Frames received so far by the IdP and by the resolver.
    fn blackhole_counts(&self) -> (u64, u64) {
        let count = |role| {
            let host = self.lan.host(role).expect("the stand-in exists");
            host.rx_packets().expect("its frame count is readable")
        };
        (count("idp"), count("dns"))
    }
}

/// The drill's hosts on their switch, with the IdP and the resolver blackholed and the
/// responders using the corporate resolver.
fn network(drill: &str) -> Lan {
    let mut lan = Lan::new(drill).expect("the switch is built");
    for (role, host) in [
        ("relay", RELAY),
        ("alice", ALICE),
        ("bob", BOB),
        ("idp", IDP),
        ("dns", RESOLVER),
    ] {
        lan.add_host(role, host).expect("the host is linked");
    }
    lan.blackhole("idp").expect("the IdP is blackholed");
    lan.blackhole("dns").expect("the resolver is blackholed");
    for responder in ["alice", "bob"] {
        let host = lan.host(responder).expect("the responder exists");
        host.ns()
            .use_resolver(lan.addr(RESOLVER))
            .expect("the resolver is configured");
    }
    lan
}

/// Proves the blackholes are silent, not refusing: each responder sends the IdP's and the
/// resolver's frames to an unowned MAC address; a UDP datagram from it to either is one
/// frame more at the blackholed host and brings back nothing (no answer, no ICMP error)
/// within [`PROBE_WAIT`]; and the same probe to a closed port on the relay host comes back
/// refused, so a refusal would have been seen.
fn check_blackholes(lan: &Lan) {
    let targets = [("idp", 443), ("dns", 53)];
    for responder in ["alice", "bob"] {
        let from = lan.host(responder).expect("the responder exists");
        for (role, _) in targets {
            let target = lan.host(role).expect("the stand-in exists");
            let mac = target.sink_mac().expect("it is a blackhole");
            let entry = from
                .neighbour(target.addr())
                .expect("neighbours are listed");
            assert!(
                entry.contains(mac) && entry.contains("PERMANENT"),
                "{responder} does not send {role}'s frames to {mac}: {entry:?}"
            );
        }
    }
    // One thread per blackhole, its probes one after the other, so that each count is
    // the probe's own frame.
    let probes: Vec<Vec<(String, u64, Probe, u64)>> = thread::scope(|s| {
        let running: Vec<_> = targets
            .iter()
            .map(|&(role, port)| s.spawn(move || probe_blackhole(lan, role, port)))
            .collect();
        running
            .into_iter()
            .map(|t| t.join().expect("the probe thread ends"))
            .collect()
    });
    for (path, before, probe, after) in probes.into_iter().flatten() {
        println!("blackhole {path}: {probe:?}, frames at the blackhole {before} → {after}");
        assert!(matches!(probe, Probe::Silent(_)), "{path}: {probe:?}");
        // The probe's one datagram, and nothing else, reached the blackhole.
        assert_eq!(after, before + 1, "{path}: frames at the blackhole");
    }
    let closed = SocketAddrV4::new(lan.addr(RELAY), 9);
    let alice = lan.host("alice").expect("alice exists");
    let control = alice
        .ns()
        .udp_probe(closed, PROBE_WAIT)
        .expect("the probe runs");
    assert!(
        matches!(control, Probe::Refused(_)),
        "a closed port on the relay host should refuse: {control:?}"
    );
}

/// Probes `role` at `port` from each responder in turn: what came back, and the
/// blackhole's frame count before and after.
fn probe_blackhole(lan: &Lan, role: &str, port: u16) -> Vec<(String, u64, Probe, u64)> {
    let target = lan.host(role).expect("the stand-in exists");
    let to = SocketAddrV4::new(target.addr(), port);
    let mut seen = Vec::new();
    for responder in ["alice", "bob"] {
        let from = lan.host(responder).expect("the responder exists");
        let before = target.rx_packets().expect("the count is readable");
        let probe = from.ns().udp_probe(to, PROBE_WAIT).expect("the probe runs");
        let after = target.rx_packets().expect("the count is readable");
        seen.push((format!("{responder} → {role} {to}"), before, probe, after));
    }
    seen
}

/// `relay.toml` serving `listen` from the domain's folder.
fn write_relay_config(domain: &Domain, listen: SocketAddrV4) {
    let text = format!(
        "listen = \"{listen}\"\nkey = \"relay.key\"\nroot = \"{}\"\n\
         roster = \"roster.signed\"\ndata_dir = \"relay-data\"\n",
        root_public(domain)
    );
    fs::write(domain.relay_config(), text).expect("relay.toml is written");
}

/// Starts the relay on its host and waits for it to say it serves `listen`.
fn start_relay(lan: &Lan, domain: &Domain, listen: SocketAddrV4) -> Daemon {
    let host = lan.host("relay").expect("the relay host exists");
    let mut cmd = host.command(binary("breakglass-relay").expect("the relay is built"));
    cmd.arg("serve")
        .arg("--config")
        .arg(domain.relay_config())
        .env("RUST_LOG", "info");
    let log = domain.path().join("relay.log");
    let mut relay = Daemon::spawn(cmd, &log).expect("the relay starts");
    let line = relay
        .wait_for_line("relay started", RELAY_START)
        .expect("the relay serves");
    assert!(
        line.contains(&format!("listen={listen}")),
        "the relay serves elsewhere: {line}"
    );
    relay
}

/// `MEMBER.toml`, naming the relay by `address`, with the corporate stack described in
/// `[primary]` for the audit. The connect timeout is left at its default on purpose: the
/// client's own deadline is what must bound a DNS lookup that never returns.
fn write_client_config(domain: &Domain, lan: &Lan, member: &str, address: &str) {
    let (from, bits) = CORPORATE;
    let text = format!(
        "name = \"{member}\"\nkey = \"{member}.key\"\ndata_dir = \"{member}.data\"\n\
         root = \"{root}\"\n\n\
         [[relays]]\nname = \"drill\"\naddress = \"{address}\"\nkey = \"{relay}\"\n\n\
         [primary]\nidp_hosts = [\"{IDP_NAME}\"]\ndns_resolvers = [\"{resolver}\"]\n\
         tenant_ranges = [\"{range}/{bits}\"]\n",
        root = root_public(domain),
        relay = domain.relay_public(),
        resolver = lan.addr(RESOLVER),
        range = lan.addr(from),
    );
    let path = domain.path().join(format!("{member}.toml"));
    fs::write(&path, text).expect("the client config is written");
}

/// The root key string, read back from the domain's `root.key`.
fn root_public(domain: &Domain) -> String {
    let key = keyio::load_unattended(&domain.path().join("root.key"), KeyKind::Root)
        .expect("root.key is readable");
    key.public_string()
}

/// Asserts that a command exited `code` in less than `within`.
fn assert_done(timed: &Timed, code: i32, within: Duration, what: &str) {
    assert_eq!(timed.run.status.code(), Some(code), "{what}: {timed:#?}");
    assert!(
        timed.elapsed < within,
        "{what} took {:.2?}, more than {within:?}: {timed:#?}",
        timed.elapsed
    );
}
