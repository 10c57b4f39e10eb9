//! Small networks of Linux network namespaces for outage drills: hosts joined by a bridge
//! in a "switch" namespace, addresses in a private /24 that exists only inside them, hosts
//! made silently unreachable, and the real binaries run on a host with `ip netns exec`.
//!
//! Needs root and iproute2 (`ip`, `bridge`), plus `bash` for the UDP probe; no firewall
//! tool and no netem. Names carry the test process's id (`bg<pid>-<drill>-<role>`), so runs
//! never collide, and a run deletes what a killed earlier run left behind
//! ([`sweep_stale`]). Everything made here is removed on drop, also while a test unwinds
//! from a panic: processes still inside a namespace are killed by id, the namespace is
//! deleted, and so is its `/etc/netns/<name>` folder.
//!
//! Every wait is bounded: each command runs under [`run_within`], which kills it when it
//! runs over.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Context, Result};

use crate::{run_bounded, Run, POLL};

/// The MAC addresses given to blackholes, in order: locally administered (so no vendor's
/// interface has one) and owned by no interface in the drill.
const UNOWNED_MACS: [&str; 4] = [
    "02:00:5e:00:53:99",
    "02:00:5e:00:53:98",
    "02:00:5e:00:53:97",
    "02:00:5e:00:53:96",
];
/// The longest any `ip` invocation may take.
const IP_DEADLINE: Duration = Duration::from_secs(10);
/// Every name made here starts so.
const PREFIX: &str = "bg";
/// The bridge inside the switch namespace.
const BRIDGE: &str = "br0";
/// Each host's side of its link to the switch.
const HOST_IF: &str = "eth0";
/// Where iproute2 keeps named namespaces.
const NETNS_RUN: &str = "/run/netns";
/// Where `ip netns exec` finds files to bind over `/etc`.
const NETNS_ETC: &str = "/etc/netns";

/// Checks once per process that namespaces can be made here, after deleting the stale ones
/// killed runs left behind.
///
/// # Errors
///
/// When `ip` is missing, or creating a namespace fails (not root, no permission, no kernel
/// support); the message says which.
pub fn check_support() -> Result<()> {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    let checked = CHECKED.get_or_init(|| {
        if let Err(e) = sweep_stale() {
            eprintln!("warning: cannot sweep stale drill namespaces: {e:#}");
        }
        Namespace::create(&name("check", "ns"))
            .map(drop)
            .map_err(|e| format!("{e:#}"))
    });
    checked.clone().map_err(|e| anyhow!(e))
}

/// The namespace name for `role` in `drill`: `bg<pid>-<drill>-<role>`.
pub fn name(drill: &str, role: &str) -> String {
    format!("{PREFIX}{}-{drill}-{role}", std::process::id())
}

/// Deletes the namespaces (and their `/etc/netns` folders) that match this module's naming
/// pattern, were made before this run, and belong to a process that no longer exists;
/// returns their names. Namespaces of this process or of a live one are left alone.
///
/// # Errors
///
/// When the namespaces cannot be listed.
pub fn sweep_stale() -> Result<Vec<String>> {
    let listed = ip(&["netns", "list"])?;
    let mut names: Vec<String> = listed
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    if let Ok(folders) = fs::read_dir(NETNS_ETC) {
        names.extend(
            folders
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok()),
        );
    }
    names.sort();
    names.dedup();
    let now = SystemTime::now();
    let mut swept = Vec::new();
    for name in names.into_iter().filter(|n| is_stale(n, now)) {
        match remove_namespace(&name) {
            Ok(()) => swept.push(name),
            Err(e) => eprintln!("warning: cannot remove stale namespace {name}: {e:#}"),
        }
    }
    Ok(swept)
}

/// Whether `name` is `bg<pid>-<drill>-<role>` of a dead process, made before `now`.
fn is_stale(name: &str, now: SystemTime) -> bool {
    let Some(pid) = owner(name) else {
        return false;
    };
    if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
        return false;
    }
    let made = fs::metadata(Path::new(NETNS_RUN).join(name))
        .or_else(|_| fs::metadata(Path::new(NETNS_ETC).join(name)))
        .and_then(|m| m.modified());
    made.is_ok_and(|t| t < now)
}

/// The process id in a name of this module's pattern, or `None` for any other name.
fn owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, rest) = rest.split_once('-')?;
    let (drill, role) = rest.split_once('-')?;
    let word = |w: &str| {
        !w.is_empty()
            && w.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    let digits = !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit());
    (digits && word(drill) && word(role))
        .then(|| pid.parse().ok())
        .flatten()
}

/// A network namespace made by this process, deleted with its `/etc/netns` folder when
/// dropped; processes still running inside are killed first.
pub struct Namespace {
    name: String,
}

impl Namespace {
    /// Creates the namespace `name` and brings its loopback up.
    ///
    /// # Errors
    ///
    /// When `ip netns add` fails, typically because we are not root.
    pub fn create(name: &str) -> Result<Namespace> {
        ip(&["netns", "add", name])?;
        let ns = Namespace {
            name: name.to_string(),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        ns.ipv4_only()?;
        Ok(ns)
    }

    /// Turns IPv6 off for every interface of the namespace, present and future: the drills
    /// are IPv4, and IPv6's own chatter (neighbour discovery, router solicitations) would
    /// blur the count of what reached a blackhole.
    fn ipv4_only(&self) -> Result<()> {
        const SCRIPT: &str = "[ -d /proc/sys/net/ipv6 ] || exit 0\n\
                              echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6 &&\n\
                              echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6";
        let mut cmd = self.command("sh");
        cmd.args(["-c", SCRIPT]);
        let timed = run_within(cmd, IP_DEADLINE)?;
        if !timed.run.success() {
            bail!("cannot turn IPv6 off in {}: {:?}", self.name, timed.run);
        }
        Ok(())
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n NAME ARGS…` and returns its standard output.
    ///
    /// # Errors
    ///
    /// When `ip` fails; the message holds its standard error.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// `ip netns exec NAME PROGRAM`, to which the caller adds arguments.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Makes `resolver` the only name server of programs run in this namespace, with the C
    /// library's default timeouts, by writing `/etc/netns/NAME/resolv.conf`, which
    /// `ip netns exec` binds over `/etc/resolv.conf`.
    ///
    /// # Errors
    ///
    /// When the file cannot be written.
    pub fn use_resolver(&self, resolver: Ipv4Addr) -> Result<()> {
        let dir = Path::new(NETNS_ETC).join(&self.name);
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let file = dir.join("resolv.conf");
        fs::write(&file, format!("nameserver {resolver}\n"))
            .with_context(|| format!("cannot write {}", file.display()))
    }

    /// Sends one UDP datagram from this namespace to `to` and waits `wait` for an answer,
    /// with a connected socket so that an ICMP error comes back as a refusal.
    ///
    /// # Errors
    ///
    /// When the probe cannot run, or ends in none of the ways a [`Probe`] tells.
    pub fn udp_probe(&self, to: SocketAddrV4, wait: Duration) -> Result<Probe> {
        // bash's /dev/udp gives a connected socket; `read` reports an ICMP error as a read
        // error (status 1) and silence as a timeout (status above 128).
        const SCRIPT: &str = "exec 3<>\"/dev/udp/$1/$2\" || exit 3\n\
                              printf 'breakglass drill probe\\n' >&3 || exit 4\n\
                              read -r -n 1 -t \"$3\" -u 3 _";
        let mut cmd = self.command("bash");
        cmd.args(["-c", SCRIPT, "probe"])
            .arg(to.ip().to_string())
            .arg(to.port().to_string())
            .arg(format!("{:.3}", wait.as_secs_f64()));
        let timed = run_within(cmd, wait + IP_DEADLINE)?;
        let run = &timed.run;
        match run.status.code() {
            Some(0) => Ok(Probe::Answered),
            Some(1) if run.stderr.contains("refused") => Ok(Probe::Refused(run.stderr.clone())),
            Some(c) if c > 128 => Ok(Probe::Silent(timed.elapsed)),
            _ => bail!("the UDP probe of {to} from {} failed: {run:?}", self.name),
        }
    }

    fn remove(&self) -> Result<()> {
        remove_namespace(&self.name)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            eprintln!("warning: cannot remove namespace {}: {e:#}", self.name);
        }
    }
}

/// Kills what still runs in the namespace `name` (only what this module started, or a
/// killed run of it, can run in a namespace of its naming pattern), deletes the namespace
/// and its `/etc/netns` folder.
fn remove_namespace(name: &str) -> Result<()> {
    let exists = Path::new(NETNS_RUN).join(name).exists();
    if exists {
        for pid in ip(&["netns", "pids", name])?.split_whitespace() {
            let mut kill = Command::new("kill");
            kill.args(["-KILL", pid]);
            // It may have exited since it was listed; deleting the namespace is what counts.
            let _ = run_within(kill, IP_DEADLINE);
        }
        ip(&["netns", "del", name])?;
    }
    let etc = Path::new(NETNS_ETC).join(name);
    if etc.exists() {
        fs::remove_dir_all(&etc).with_context(|| format!("cannot remove {}", etc.display()))?;
    }
    Ok(())
}

/// What came back from a [`Namespace::udp_probe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Something answered.
    Answered,
    /// An ICMP error came back; holds what the prober said.
    Refused(String),
    /// Nothing came back in the time given; holds how long the probe took.
    Silent(Duration),
}

/// Hosts on one private /24 (`10.213.<pid % 200>.0/24`), joined by a bridge in a switch
/// namespace of their own; nothing connects it to the machine's own network, nor to another
/// `Lan` of the same process, which may use the same addresses.
pub struct Lan {
    // Hosts before the switch: fields drop in order, so hosts go first.
    hosts: Vec<Host>,
    switch: Namespace,
    drill: String,
    subnet: [u8; 3],
}

impl Lan {
    /// Creates the switch of the drill named `drill` (lowercase letters and digits).
    ///
    /// # Errors
    ///
    /// When the namespace or the bridge cannot be made.
    pub fn new(drill: &str) -> Result<Lan> {
        let switch = Namespace::create(&name(drill, "switch"))?;
        // Without snooping the bridge itself joins no multicast group, and so sends no IGMP
        // report that would reach a blackhole's port and blur its count.
        switch.ip(&words(&format!(
            "link add {BRIDGE} type bridge mcast_snooping 0"
        )))?;
        switch.ip(&["link", "set", BRIDGE, "up"])?;
        // 10.213.x.0/24 is not routed anywhere near here: it lives only on this bridge.
        let third = (std::process::id() % 200) as u8;
        Ok(Lan {
            hosts: Vec::new(),
            switch,
            drill: drill.to_string(),
            subnet: [10, 213, third],
        })
    }

    /// The address `.host` in this network.
    pub fn addr(&self, host: u8) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, host)
    }

    /// Adds the host `role` (lowercase letters and digits) at address `.host`, linked to
    /// the switch by a veth pair; returns its address.
    ///
    /// # Errors
    ///
    /// When a namespace, link or address cannot be made.
    pub fn add_host(&mut self, role: &str, host: u8) -> Result<Ipv4Addr> {
        let ns = Namespace::create(&name(&self.drill, role))?;
        let port = port_name(role);
        let (host_ns, switch_ns) = (ns.name(), self.switch.name());
        ip(&words(&format!(
            "link add {HOST_IF} netns {host_ns} type veth peer name {port} netns {switch_ns}"
        )))?;
        self.switch
            .ip(&["link", "set", &port, "master", BRIDGE, "up"])?;
        let addr = self.addr(host);
        ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", HOST_IF])?;
        ns.ip(&["link", "set", HOST_IF, "up"])?;
        self.hosts.push(Host {
            ns,
            role: role.to_string(),
            addr,
            sink: None,
        });
        Ok(addr)
    }

    /// Turns the host `role` into a blackhole: from every other host its address is silent.
    ///
    /// Every other host gets a permanent neighbour entry sending the address's frames to a
    /// MAC address nobody owns, so they leave the host without any ARP exchange, and no ARP
    /// failure or ICMP error ever comes back: each attempt waits for its own timeout. The
    /// switch hands those frames, and nothing else (flooding is off on that port), to
    /// `role`'s port, where its stack drops them as addressed to another host. So the
    /// blackholed host answers nothing, and its receive count
    /// ([`Host::rx_packets`]) is exactly the number of frames sent to it.
    ///
    /// Call it once every host is added; hosts added later can reach `role`.
    ///
    /// # Errors
    ///
    /// When `role` is unknown, or a switch setting or neighbour entry cannot be made.
    pub fn blackhole(&mut self, role: &str) -> Result<()> {
        let index = self.hosts.iter().filter(|h| h.sink.is_some()).count();
        let mac = *UNOWNED_MACS
            .get(index)
            .context("no unowned MAC address is left for another blackhole")?;
        let target = self.host(role)?.addr;
        let port = port_name(role);
        let switch = self.switch.name();
        let flags = "flood off mcast_flood off bcast_flood off learning off";
        let only_its_frames = format!("-n {switch} link set dev {port} {flags}");
        run_tool("bridge", &words(&only_its_frames))?;
        let fdb = format!("-n {switch} fdb replace {mac} dev {port} master static");
        run_tool("bridge", &words(&fdb))?;
        let neighbour = format!("neigh replace {target} lladdr {mac} dev {HOST_IF} nud permanent");
        for host in self.hosts.iter().filter(|h| h.role != role) {
            host.ns.ip(&words(&neighbour))?;
        }
        let host = self
            .hosts
            .iter_mut()
            .find(|h| h.role == role)
            .context("the blackholed host vanished")?;
        host.sink = Some(mac);
        Ok(())
    }

    /// The host added as `role`.
    ///
    /// # Errors
    ///
    /// When there is none.
    pub fn host(&self, role: &str) -> Result<&Host> {
        self.hosts
            .iter()
            .find(|h| h.role == role)
            .with_context(|| format!("no host {role} in drill {}", self.drill))
    }
}

/// The switch's side of the link to the host `role`; interface names have 15 bytes at most.
fn port_name(role: &str) -> String {
    format!("p-{role}").chars().take(15).collect()
}

/// One host of a [`Lan`]: a namespace with one interface, `eth0`, on the switch.
pub struct Host {
    ns: Namespace,
    role: String,
    addr: Ipv4Addr,
    /// The unowned MAC address its frames are sent to, once it is a blackhole.
    sink: Option<&'static str>,
}

impl Host {
    /// Its address.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// Its namespace.
    pub fn ns(&self) -> &Namespace {
        &self.ns
    }

    /// `ip netns exec` on this host; see [`Namespace::command`].
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        self.ns.command(program)
    }

    /// The MAC address frames to this host are sent to, once [`Lan::blackhole`] made it one.
    pub fn sink_mac(&self) -> Option<&'static str> {
        self.sink
    }

    /// How many frames this host's interface has received.
    ///
    /// # Errors
    ///
    /// When the count cannot be read.
    pub fn rx_packets(&self) -> Result<u64> {
        // `ip netns exec` mounts a /sys of the namespace, where the count lives.
        let mut cmd = self.command("cat");
        cmd.arg(format!("/sys/class/net/{HOST_IF}/statistics/rx_packets"));
        let timed = run_within(cmd, IP_DEADLINE)?;
        let text = timed.run.stdout.trim();
        text.parse()
            .with_context(|| format!("not a packet count from {}: {:?}", self.role, timed.run))
    }

    /// This host's neighbour entry for `target`, as `ip neigh show` prints it.
    ///
    /// # Errors
    ///
    /// When `ip` fails.
    pub fn neighbour(&self, target: Ipv4Addr) -> Result<String> {
        let target = target.to_string();
        let shown = self.ns.ip(&["neigh", "show", &target, "dev", HOST_IF])?;
        Ok(shown.trim().to_string())
    }
}

/// A finished command and how long it ran.
#[derive(Debug)]
pub struct Timed {
    /// What it did.
    pub run: Run,
    /// Its wall time, from start to exit.
    pub elapsed: Duration,
}

/// Runs `cmd` with no input, collecting its output, and waits for it at most `limit`
/// ([`run_bounded`]).
///
/// # Errors
///
/// When it cannot be started, or runs over `limit` (it is then killed and the error holds
/// what it printed).
pub fn run_within(cmd: Command, limit: Duration) -> Result<Timed> {
    let what = format!("{cmd:?}");
    let finished = run_bounded(cmd, None, limit)?;
    let elapsed = finished.elapsed;
    Ok(Timed {
        run: finished.into_run(what)?,
        elapsed,
    })
}

/// The words of a command line made of names and numbers only (no quoting needed).
fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// Runs `ip ARGS…` (bounded) and returns its standard output.
fn ip(args: &[&str]) -> Result<String> {
    run_tool("ip", args)
}

/// Runs an iproute2 tool (bounded) and returns its standard output.
fn run_tool(tool: &str, args: &[&str]) -> Result<String> {
    let mut cmd = Command::new(tool);
    cmd.args(args);
    let timed = run_within(cmd, IP_DEADLINE)?;
    if !timed.run.success() {
        bail!(
            "{tool} {} failed ({}): {}",
            args.join(" "),
            timed.run.status,
            timed.run.stderr.trim()
        );
    }
    Ok(timed.run.stdout)
}

/// A long-running process (a relay) whose standard output and error go to a log file;
/// killed with SIGKILL and reaped when dropped. `ip netns exec` replaces itself with the
/// program it runs, so the process killed is the program itself.
pub struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// Starts `cmd` with no input, logging to `log`.
    ///
    /// # Errors
    ///
    /// When the log cannot be created or the process cannot be started.
    pub fn spawn(mut cmd: Command, log: &Path) -> Result<Daemon> {
        let out = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        let err = out.try_clone()?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("cannot start {cmd:?}"))?;
        Ok(Daemon {
            child,
            log: log.to_path_buf(),
        })
    }

    /// Waits at most `limit` for a log line containing `needle`, and returns it.
    ///
    /// # Errors
    ///
    /// When the process exits first or the line does not come in time; the error holds
    /// the log.
    pub fn wait_for_line(&mut self, needle: &str, limit: Duration) -> Result<String> {
        let deadline = Instant::now() + limit;
        loop {
            let log = self.log();
            if let Some(line) = log.lines().find(|l| l.contains(needle)) {
                return Ok(line.to_string());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("exited ({status}) before logging {needle:?}:\n{log}");
            }
            if Instant::now() >= deadline {
                bail!("did not log {needle:?} within {limit:?}:\n{log}");
            }
            thread::sleep(POLL);
        }
    }

    /// Everything logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_this_pattern_give_their_owner() {
        assert_eq!(owner("bg4242-ip-relay"), Some(4242));
        assert_eq!(owner(&name("dns", "alice")), Some(std::process::id()));
    }

    #[test]
    fn other_names_are_never_taken_for_ours() {
        for other in [
            "bg-ip-relay",
            "bg12x-ip-relay",
            "bg12-relay",
            "bg12-ip-",
            "bg12-IP-relay",
            "bgp",
            "blue-12-ip-relay",
            "bg12-ip-relay-extra",
        ] {
            assert_eq!(owner(other), None, "{other}");
        }
    }
}
