//! `breakglass-keygen` runs on an offline machine and links no networking crate at all
//! (DESIGN.md, "Layout"): this walks its normal dependency tree, as cargo resolves it for
//! this package alone, and fails on any crate that opens sockets, resolves names or
//! speaks TLS or HTTP.

use std::process::Command;

/// Crates that bring networking, an async I/O runtime, TLS or name resolution.
const NETWORKING: [&str; 25] = [
    "tokio",
    "quinn",
    "quinn-proto",
    "quinn-udp",
    "rustls",
    "hyper",
    "reqwest",
    "ureq",
    "curl",
    "socket2",
    "mio",
    "async-std",
    "trust-dns-resolver",
    "hickory-resolver",
    "hickory-proto",
    "native-tls",
    "openssl",
    "h2",
    "h3",
    "surf",
    "isahc",
    "attohttpc",
    "tungstenite",
    "libp2p",
    "smol",
];

/// The package names in `cargo tree -p PACKAGE -e normal`, one per crate.
fn dependency_names(package: &str) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["tree", "-p", package, "-e", "normal", "--prefix", "none"])
        .arg("--offline")
        .output()
        .expect("cargo runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "cargo tree failed: {stderr}");
    let tree = String::from_utf8(output.stdout).expect("cargo tree prints UTF-8");
    let mut names: Vec<String> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(|name| name.replace('_', "-"))
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn keygen_links_no_networking_crate() {
    let names = dependency_names("breakglass-keygen");
    assert!(
        names.iter().any(|n| n == "breakglass-protocol"),
        "the tree does not list breakglass-protocol, so it was not read right: {names:?}"
    );
    assert!(names.iter().any(|n| n == "breakglass-keygen"), "{names:?}");
    let found = networking(&names);
    assert!(
        found.is_empty(),
        "breakglass-keygen must stay offline, but links {found:?}; see `cargo tree -p \
         breakglass-keygen -e normal -i <crate>` for the path"
    );
}

#[test]
fn the_check_finds_the_networking_crates_of_the_relay() {
    let names = dependency_names("breakglass-relay");
    let found = networking(&names);
    assert!(
        found.iter().any(|n| *n == "tokio") && found.iter().any(|n| *n == "quinn"),
        "the relay serves QUIC on tokio, yet the check found only {found:?} in {names:?}"
    );
}

fn networking(names: &[String]) -> Vec<&String> {
    names
        .iter()
        .filter(|n| NETWORKING.contains(&n.as_str()))
        .collect()
}
