use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use breakglass_protocol::roster::Roster;
use breakglass_protocol::{KeyKind, SigningSecret};

use super::*;

struct Fixture {
    dir: tempfile::TempDir,
    config: ClientConfig,
    root: SigningSecret,
}

/// A configuration in a fresh folder with one relay per address, a 0600 key file and no
/// kept roster.
fn fixture(addresses: &[&str], primary: Option<PrimaryStack>) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = SigningSecret::generate(KeyKind::Root);
    let key = dir.path().join("alice.key");
    std::fs::write(&key, "not read by the audit").expect("writes key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let relays = addresses
        .iter()
        .enumerate()
        .map(|(n, address)| RelayEntry {
            name: format!("r{n}"),
            address: (*address).into(),
            key: SigningSecret::generate(KeyKind::Relay).public(),
        })
        .collect();
    let config = ClientConfig {
        path: dir.path().join("alice.toml"),
        name: "alice".parse().expect("valid name"),
        key,
        root: root.public(),
        data_dir: dir.path().join("alice.data"),
        max_message: 1024,
        connect_timeout: Duration::from_secs(1),
        relays,
        primary,
    };
    Fixture { dir, config, root }
}

fn quiet() -> Surroundings {
    Surroundings {
        proxy_vars: Vec::new(),
        resolv_conf: PathBuf::from("/test/resolv.conf"),
        nameservers: Ok(vec!["192.0.2.53".parse().expect("ip")]),
        hosts_file: PathBuf::from("/test/hosts"),
        hosts: Vec::new(),
        now: Timestamp::now(),
    }
}

fn corp() -> PrimaryStack {
    PrimaryStack {
        sso_hosts: vec!["sso.corp.example".into()],
        idp_hosts: vec!["login.corp.example".into()],
        dns_resolvers: vec!["10.0.0.53".parse().expect("ip")],
        proxies: vec!["proxy.corp.example:3128".into()],
        tenant_ranges: vec!["10.0.0.0/8".parse().expect("cidr")],
        ..PrimaryStack::default()
    }
}

fn item<'a>(report: &'a Report, check: &str, subject: &str) -> &'a Item {
    report
        .items
        .iter()
        .find(|i| i.check == check && i.subject == subject)
        .unwrap_or_else(|| panic!("no {check} {subject} in {:#?}", report.items))
}

#[test]
fn ip_literal_relays_without_proxies_share_nothing() {
    let f = fixture(&["203.0.113.7:7443", "[2001:db8::7]:7443"], Some(corp()));
    let report = audit(&f.config, &quiet());
    assert_eq!(report.shared, 0, "{}", report.table());
    assert_eq!(report.code, 0);
    assert_eq!(item(&report, "dns", "r0").status, Status::Independent);
    assert!(item(&report, "dns", "r1").detail.contains("no DNS needed"));
    assert_eq!(item(&report, "network", "r0").status, Status::Independent);
    assert!(report.summary.contains("INDEPENDENT"), "{}", report.summary);
}

#[test]
fn a_relay_inside_a_tenant_range_is_shared() {
    let mut primary = corp();
    primary
        .tenant_ranges
        .push("2001:db8:c0::/48".parse().expect("cidr"));
    let f = fixture(&["10.1.2.3:7443", "[2001:db8:c0::9]:7443"], Some(primary));
    let report = audit(&f.config, &quiet());
    let r0 = item(&report, "network", "r0");
    assert_eq!(r0.status, Status::Shared);
    assert!(r0.detail.contains("10.0.0.0/8"), "{}", r0.detail);
    assert_eq!(item(&report, "network", "r1").status, Status::Shared);
    assert_eq!(report.code, 1);
    assert!(report.summary.contains("SHARED"), "{}", report.summary);
}

#[test]
fn an_ipv4_mapped_address_is_compared_as_ipv4() {
    let f = fixture(&["[::ffff:10.9.9.9]:7443"], Some(corp()));
    let report = audit(&f.config, &quiet());
    assert_eq!(item(&report, "network", "r0").status, Status::Shared);
}

#[test]
fn without_tenant_ranges_an_ip_relay_is_unknown_not_independent() {
    let f = fixture(&["192.168.1.9:7443"], None);
    let report = audit(&f.config, &quiet());
    let network = item(&report, "network", "r0");
    assert_eq!(network.status, Status::Unknown);
    assert!(
        network.detail.contains("private address"),
        "{}",
        network.detail
    );
    assert_eq!(report.code, 0);
    assert!(
        report.summary.contains("no [primary] table"),
        "{}",
        report.summary
    );
}

#[test]
fn a_host_name_relay_depends_on_the_resolvers_of_resolv_conf() {
    let f = fixture(&["relay.example.net:7443"], Some(corp()));
    let report = audit(&f.config, &quiet());
    let dns = item(&report, "dns", "r0");
    assert_eq!(dns.status, Status::Unknown);
    assert!(dns.detail.contains("depends on DNS"), "{}", dns.detail);
    assert!(dns.detail.contains("192.0.2.53"), "{}", dns.detail);
    assert_eq!(item(&report, "network", "r0").status, Status::Unknown);
}

#[test]
fn a_primary_resolver_in_resolv_conf_makes_dns_shared() {
    let f = fixture(&["relay.example.net:7443"], Some(corp()));
    let mut env = quiet();
    env.nameservers = Ok(vec![
        "192.0.2.53".parse().expect("ip"),
        "10.0.0.53".parse().expect("ip"),
    ]);
    let report = audit(&f.config, &env);
    let dns = item(&report, "dns", "r0");
    assert_eq!(dns.status, Status::Shared);
    assert!(dns.detail.contains("10.0.0.53"), "{}", dns.detail);
    assert_eq!(report.code, 1);
}

#[test]
fn an_unreadable_resolv_conf_leaves_dns_unknown() {
    let f = fixture(&["relay.example.net:7443"], Some(corp()));
    let mut env = quiet();
    env.nameservers = Err("No such file or directory".into());
    let report = audit(&f.config, &env);
    let dns = item(&report, "dns", "r0");
    assert_eq!(dns.status, Status::Unknown);
    assert!(dns.detail.contains("unreadable"), "{}", dns.detail);
}

#[test]
fn a_relay_named_under_a_primary_host_is_shared_and_a_lookalike_is_not() {
    let f = fixture(
        &[
            "bg.sso.corp.example:7443",
            "LOGIN.corp.example.:7443",
            "notsso.corp.example:1",
        ],
        Some(corp()),
    );
    let report = audit(&f.config, &quiet());
    let r0 = item(&report, "network", "r0");
    assert_eq!(r0.status, Status::Shared);
    assert!(
        r0.detail.contains("SSO host sso.corp.example"),
        "{}",
        r0.detail
    );
    assert_eq!(item(&report, "network", "r1").status, Status::Shared);
    assert_eq!(item(&report, "network", "r2").status, Status::Unknown);
}

#[test]
fn a_proxy_variable_with_a_host_name_relay_is_shared_without_its_credentials() {
    let f = fixture(&["relay.example.net:7443"], Some(corp()));
    let mut env = quiet();
    env.proxy_vars = vec![(
        "HTTPS_PROXY".into(),
        "http://user:pw@proxy.corp.example:3128/".into(),
    )];
    let report = audit(&f.config, &env);
    let proxy = item(&report, "proxy", "HTTPS_PROXY");
    assert_eq!(proxy.status, Status::Shared);
    assert!(
        proxy
            .detail
            .contains("proxy.corp.example:3128 (a primary proxy)"),
        "{}",
        proxy.detail
    );
    assert!(!proxy.detail.contains("pw"), "{}", proxy.detail);
    assert!(!proxy.detail.contains("user"), "{}", proxy.detail);
}

#[test]
fn a_proxy_variable_with_only_ip_relays_is_unknown() {
    let f = fixture(&["203.0.113.7:7443"], Some(corp()));
    let mut env = quiet();
    env.proxy_vars = vec![("all_proxy".into(), "socks5://10.0.0.1:1080".into())];
    let report = audit(&f.config, &env);
    let proxy = item(&report, "proxy", "all_proxy");
    assert_eq!(proxy.status, Status::Unknown);
    assert!(proxy.detail.contains("10.0.0.1:1080"), "{}", proxy.detail);
    assert_eq!(report.code, 0);
}

#[test]
fn no_proxy_variable_is_one_independent_line() {
    let f = fixture(&["203.0.113.7:7443"], None);
    let report = audit(&f.config, &quiet());
    assert_eq!(
        item(&report, "proxy", "environment").status,
        Status::Independent
    );
}

#[test]
fn proxy_hosts_lose_scheme_credentials_and_path() {
    assert_eq!(proxy_host("http://u:p@Proxy:8080/x?y"), "proxy:8080");
    assert_eq!(proxy_host("proxy.corp:3128"), "proxy.corp:3128");
    assert_eq!(proxy_host("http://a@b:c@host"), "host");
    assert_eq!(proxy_host(""), "");
    assert_eq!(proxy_host("http://u:p/w#x@proxy:1"), "proxy:1");
    assert_eq!(proxy_host("u:secret@10.0.0.1:3128"), "10.0.0.1:3128");
}

#[test]
fn addresses_are_classified_without_resolving() {
    assert_eq!(
        classify("127.0.0.1:7443"),
        Address::Literal("127.0.0.1".parse().expect("ip"))
    );
    assert_eq!(
        classify("[::1]:7443"),
        Address::Literal("::1".parse().expect("ip"))
    );
    assert_eq!(
        classify("Relay.Example.NET.:7443"),
        Address::Host("relay.example.net".into())
    );
    assert_eq!(classify("relay.example.net"), Address::Malformed);
    assert_eq!(classify(":7443"), Address::Malformed);
    assert_eq!(classify("host:99999"), Address::Malformed);
}

#[test]
fn a_malformed_address_is_unknown() {
    let f = fixture(&["no-port"], Some(corp()));
    let report = audit(&f.config, &quiet());
    assert_eq!(item(&report, "dns", "r0").status, Status::Unknown);
    assert_eq!(item(&report, "network", "r0").status, Status::Unknown);
}

#[test]
fn well_known_sync_folders_are_recognised() {
    let cases = [
        ("/home/a/OneDrive/bg/alice.key", "OneDrive"),
        ("/home/a/OneDrive - Contoso/alice.key", "OneDrive - Contoso"),
        ("/Users/a/Dropbox (Corp)/k", "Dropbox (Corp)"),
        ("/Users/a/Google Drive/k", "Google Drive"),
        (
            "/Users/a/Library/Mobile Documents/com~apple~CloudDocs/k",
            "Library/Mobile Documents",
        ),
        (
            "/Users/a/Library/CloudStorage/Box-Box/k",
            "Library/CloudStorage",
        ),
        ("/mnt/c/Users/a/k", "/mnt/c/Users"),
        ("/home/a/Box Sync/k", "Box Sync"),
    ];
    for (path, name) in cases {
        assert_eq!(
            synced_folder(Path::new(path)).as_deref(),
            Some(name),
            "{path}"
        );
    }
    for path in [
        "/home/a/onedrive-notes/k",
        "/home/a/bg/alice.key",
        "/mnt/data/Users/k",
    ] {
        assert_eq!(synced_folder(Path::new(path)), None, "{path}");
    }
}

#[test]
fn a_key_under_onedrive_is_shared() {
    let mut f = fixture(&["203.0.113.7:7443"], Some(corp()));
    let folder = f.dir.path().join("OneDrive - Contoso");
    std::fs::create_dir(&folder).expect("mkdir");
    f.config.key = folder.join("alice.key");
    let report = audit(&f.config, &quiet());
    let key = item(&report, "location", "key");
    assert_eq!(key.status, Status::Shared);
    assert!(key.detail.contains("OneDrive - Contoso"), "{}", key.detail);
    assert_eq!(
        item(&report, "location", "config").status,
        Status::Independent
    );
}

#[test]
fn a_data_folder_under_a_managed_prefix_is_shared() {
    let mut f = fixture(&["203.0.113.7:7443"], None);
    let managed = f.dir.path().join("corp-sync");
    f.config.primary = Some(PrimaryStack {
        managed_folders: vec![managed.clone()],
        ..PrimaryStack::default()
    });
    f.config.data_dir = managed.join("alice.data");
    let report = audit(&f.config, &quiet());
    let data = item(&report, "location", "data");
    assert_eq!(data.status, Status::Shared);
    assert!(data.detail.contains("managed_folders"), "{}", data.detail);
}

#[test]
fn a_symlink_into_a_sync_folder_is_followed() {
    let mut f = fixture(&["203.0.113.7:7443"], None);
    let synced = f.dir.path().join("Dropbox");
    std::fs::create_dir(&synced).expect("mkdir");
    let link = f.dir.path().join("keys");
    std::os::unix::fs::symlink(&synced, &link).expect("symlink");
    f.config.key = link.join("alice.key");
    let report = audit(&f.config, &quiet());
    assert_eq!(item(&report, "location", "key").status, Status::Shared);
}

#[test]
fn a_key_others_can_read_is_a_warning_not_a_coupling() {
    let f = fixture(&["203.0.113.7:7443"], Some(corp()));
    assert_eq!(
        item(&audit(&f.config, &quiet()), "key-mode", "key").status,
        Status::Ok
    );
    std::fs::set_permissions(&f.config.key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let report = audit(&f.config, &quiet());
    let mode = item(&report, "key-mode", "key");
    assert_eq!(mode.status, Status::Warning);
    assert!(mode.detail.contains("0644"), "{}", mode.detail);
    assert_eq!(report.code, 0);
}

fn keep_roster(f: &Fixture, issued: Timestamp, valid_for: Duration) {
    let signed = Roster::new(issued, valid_for).sign(&f.root).expect("signs");
    std::fs::create_dir_all(&f.config.data_dir).expect("mkdir");
    std::fs::write(f.config.data_dir.join("roster.signed"), signed).expect("writes");
}

#[test]
fn no_kept_roster_is_unknown() {
    let f = fixture(&["203.0.113.7:7443"], None);
    let report = audit(&f.config, &quiet());
    assert_eq!(
        item(&report, "roster", "roster.signed").status,
        Status::Unknown
    );
}

#[test]
fn the_kept_roster_expiry_is_ok_warning_or_expired() {
    let f = fixture(&["203.0.113.7:7443"], None);
    let now = Timestamp::now();
    let day = Duration::from_secs(86_400);
    let status = |f: &Fixture| item(&audit(&f.config, &quiet()), "roster", "roster.signed").status;
    keep_roster(&f, now, day * 90);
    assert_eq!(status(&f), Status::Ok);
    keep_roster(&f, now, day * 3);
    assert_eq!(status(&f), Status::Warning);
    keep_roster(&f, Timestamp(now.0 - 10 * 86_400), day);
    assert_eq!(status(&f), Status::Expired);
}

#[test]
fn a_kept_roster_from_another_root_is_a_warning() {
    let mut f = fixture(&["203.0.113.7:7443"], None);
    keep_roster(&f, Timestamp::now(), Duration::from_secs(86_400 * 90));
    f.config.root = SigningSecret::generate(KeyKind::Root).public();
    let report = audit(&f.config, &quiet());
    let roster = item(&report, "roster", "roster.signed");
    assert_eq!(roster.status, Status::Warning);
    assert!(
        roster.detail.contains("does not verify"),
        "{}",
        roster.detail
    );
}

#[test]
fn nameservers_are_read_from_resolv_conf_text() {
    let text = "# generated\nsearch corp.example\nnameserver 10.0.0.53\n\
                nameserver\tfe80::1%eth0\nnameserver not-an-ip\n  nameserver 192.0.2.1 # x\n\
                options ndots:2\n";
    let servers = parse_nameservers(text);
    let expected: Vec<IpAddr> = ["10.0.0.53", "fe80::1", "192.0.2.1"]
        .iter()
        .map(|s| s.parse().expect("ip"))
        .collect();
    assert_eq!(servers, expected);
}

#[test]
fn garbage_resolv_conf_never_panics() {
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for round in 0..200 {
        let len = (round * 37) % 3000;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                match seed % 7 {
                    0 => b'\n',
                    1 => b' ',
                    2 => b'%',
                    _ => seed.to_le_bytes()[1],
                }
            })
            .collect();
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse_nameservers(&text);
        let _ = parse_nameservers(&format!("nameserver {text}"));
    }
    let many = "nameserver 192.0.2.1\n".repeat(10_000);
    assert_eq!(parse_nameservers(&many).len(), MAX_NAMESERVERS);
}

#[test]
fn a_huge_resolv_conf_is_read_only_up_to_the_bound() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("resolv.conf");
    let mut text = "#".repeat(MAX_RESOLV_CONF as usize);
    text.push_str("\nnameserver 10.0.0.53\n");
    std::fs::write(&path, text).expect("writes");
    assert_eq!(read_nameservers(&path), Ok(Vec::new()));
    assert!(read_nameservers(&dir.path().join("missing")).is_err());
}

#[test]
fn the_table_has_a_header_a_line_per_item_and_the_summary() {
    let f = fixture(&["203.0.113.7:7443"], Some(corp()));
    let report = audit(&f.config, &quiet());
    let table = report.table();
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("STATUS"), "{table}");
    assert!(
        lines[0].contains("CHECK") && lines[0].ends_with("DETAIL"),
        "{table}"
    );
    assert_eq!(lines.len(), report.items.len() + 3, "{table}");
    assert_eq!(lines.last().copied(), Some(report.summary.as_str()));
    assert!(
        lines[1].starts_with("independent  identity login"),
        "{table}"
    );
}

#[test]
fn the_json_report_counts_every_status() {
    let f = fixture(&["10.1.1.1:7443"], Some(corp()));
    let report = audit(&f.config, &quiet());
    let json: serde_json::Value = serde_json::to_value(&report).expect("serialises");
    assert_eq!(json["shared"], 1);
    assert_eq!(json["code"], 1);
    let items = json["items"].as_array().expect("items");
    assert_eq!(items.len(), report.items.len());
    assert_eq!(items[0]["status"], "independent");
    assert_eq!(items[0]["check"], "identity");
    let total: u64 = [
        "shared",
        "unknown",
        "independent",
        "ok",
        "warning",
        "expired",
    ]
    .iter()
    .map(|k| json[k].as_u64().expect("count"))
    .sum();
    assert_eq!(total as usize, items.len());
}

#[test]
fn control_characters_from_outside_are_made_printable() {
    let f = fixture(&["relay.example.net:7443"], None);
    let mut env = quiet();
    env.proxy_vars = vec![("http_proxy".into(), "evil\x1b[2J\nhost:1".into())];
    let report = audit(&f.config, &env);
    let proxy = item(&report, "proxy", "http_proxy");
    assert!(
        !proxy.detail.chars().any(char::is_control),
        "{:?}",
        proxy.detail
    );
}

#[test]
fn a_primary_table_parses_every_field_and_refuses_unknown_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.toml");
    let root = SigningSecret::generate(KeyKind::Root).public();
    let relay = SigningSecret::generate(KeyKind::Relay).public();
    let head = format!(
        "name = \"a\"\nkey = \"a.key\"\nroot = \"{root}\"\n\
         [[relays]]\nname = \"r\"\naddress = \"203.0.113.7:1\"\nkey = \"{relay}\"\n"
    );
    let full = "[primary]\nidp_hosts = [\"i\"]\nsso_hosts = [\"s\"]\nmdm_hosts = [\"m\"]\n\
                dns_resolvers = [\"10.0.0.53\", \"fd00::53\"]\nproxies = [\"p:3128\"]\n\
                tenant_ranges = [\"10.0.0.0/8\", \"fd00::/8\"]\nmanaged_folders = [\"sync\"]\n";
    std::fs::write(&path, format!("{head}{full}")).expect("writes");
    let primary = ClientConfig::load(&path)
        .expect("loads")
        .primary
        .expect("has [primary]");
    assert_eq!(primary.tenant_ranges.len(), 2);
    assert_eq!(primary.dns_resolvers.len(), 2);
    assert_eq!(primary.managed_folders, vec![dir.path().join("sync")]);
    std::fs::write(&path, format!("{head}[primary]\n")).expect("writes");
    let empty = ClientConfig::load(&path).expect("loads").primary;
    assert_eq!(empty, Some(PrimaryStack::default()));
    std::fs::write(&path, format!("{head}[primary]\nidp = []\n")).expect("writes");
    assert!(ClientConfig::load(&path).is_err());
    std::fs::write(
        &path,
        format!("{head}[primary]\ndns_resolvers = [\"dns.corp\"]\n"),
    )
    .expect("writes");
    let err = format!("{:#}", ClientConfig::load(&path).expect_err("refused"));
    assert!(err.contains("\"dns.corp\" is not an IP address"), "{err}");
}

#[test]
fn a_relay_name_listed_in_the_hosts_file_needs_no_dns() {
    let f = fixture(&["relay.example.net:7443"], Some(corp()));
    let mut env = quiet();
    env.nameservers = Ok(vec!["10.0.0.53".parse().expect("ip")]);
    env.hosts = parse_hosts("# comment\n198.51.100.7  relay.example.net relay # trailing\n");
    let report = audit(&f.config, &env);
    let dns = item(&report, "dns", "r0");
    assert_eq!(dns.status, Status::Independent, "{dns:?}");
    assert!(dns.detail.contains("198.51.100.7"), "{dns:?}");
}

#[test]
fn garbage_in_the_hosts_file_is_ignored() {
    assert!(parse_hosts("\0\0 nonsense\n999.1.1.1 x\n::1\n").is_empty());
    assert_eq!(parse_hosts("::1 localhost ip6-localhost").len(), 1);
}
