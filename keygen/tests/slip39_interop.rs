//! Interoperability with the SLIP-39 reference implementation, the Python package
//! `shamir_mnemonic`: its shares combine with ours and ours with its.
//!
//! Without python3 and the package these tests print why and pass, except under CI (the
//! `CI` environment variable set), where they fail: CI installs the package with
//! `pip install shamir-mnemonic`.

use std::io::Write;
use std::process::{Command, Stdio};

use breakglass_keygen::slip39;
use rand_core::{OsRng, RngCore};

/// Reads mnemonics from stdin, one per line, and prints the combined secret in hex.
const PY_COMBINE: &str = r#"
import sys, shamir_mnemonic
mnemonics = [line for line in sys.stdin.read().splitlines() if line.strip()]
print(shamir_mnemonic.combine_mnemonics(mnemonics, sys.argv[1].encode()).hex())
"#;

/// Splits the hex secret in argv[1] per the JSON spec in argv[2] and prints every
/// mnemonic, one per line, grouped in order.
const PY_GENERATE: &str = r#"
import json, sys, shamir_mnemonic
spec = json.loads(sys.argv[2])
groups = shamir_mnemonic.generate_mnemonics(
    spec["group_threshold"],
    [tuple(g) for g in spec["groups"]],
    bytes.fromhex(sys.argv[1]),
    spec["passphrase"].encode(),
    extendable=spec["extendable"],
    iteration_exponent=spec["iteration_exponent"],
)
for group in groups:
    for mnemonic in group:
        print(mnemonic)
"#;

/// Whether the reference implementation can be run here; panics under CI if not.
fn reference_available() -> bool {
    let probe = Command::new("python3")
        .args(["-c", "import shamir_mnemonic"])
        .output();
    if probe.is_ok_and(|out| out.status.success()) {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "python3 shamir_mnemonic is required in CI (pip install shamir-mnemonic)"
    );
    eprintln!("skipping: python3 shamir_mnemonic not installed (pip install shamir-mnemonic)");
    false
}

/// Runs a Python script with arguments and stdin; returns its stdout.
fn python(script: &str, args: &[&str], stdin: &str) -> String {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 starts");
    let mut input = child.stdin.take().expect("stdin is piped");
    input
        .write_all(stdin.as_bytes())
        .expect("python3 reads stdin");
    drop(input);
    let out = child.wait_with_output().expect("python3 finishes");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "python3 failed: {stderr}");
    String::from_utf8(out.stdout).expect("python3 prints UTF-8")
}

fn random_secret(len: usize) -> Vec<u8> {
    let mut secret = vec![0u8; len];
    OsRng.fill_bytes(&mut secret);
    secret
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn the_reference_combines_our_shares() {
    if !reference_available() {
        return;
    }
    for (len, threshold, count, chosen) in [(16, 2, 3, &[0, 2][..]), (32, 3, 5, &[4, 1, 2][..])] {
        let secret = random_secret(len);
        let shares = slip39::split(&secret, threshold, count).expect("valid parameters");
        let input: String = chosen.iter().map(|&i| format!("{}\n", shares[i])).collect();
        let recovered = python(PY_COMBINE, &[""], &input);
        assert_eq!(recovered.trim(), hex(&secret), "{threshold}-of-{count}");
    }
}

#[test]
fn we_combine_the_references_two_of_three_extendable_shares() {
    if !reference_available() {
        return;
    }
    let secret = random_secret(32);
    let spec = r#"{"group_threshold": 1, "groups": [[2, 3]], "passphrase": "",
                   "extendable": true, "iteration_exponent": 1}"#;
    let output = python(PY_GENERATE, &[&hex(&secret), spec], "");
    let shares: Vec<String> = output.lines().map(str::to_owned).collect();
    assert_eq!(shares.len(), 3);
    for pair in [[0, 1], [0, 2], [2, 1]] {
        let chosen: Vec<String> = pair.iter().map(|&i| shares[i].clone()).collect();
        let recovered = slip39::combine(&chosen, b"").expect("reference shares combine");
        assert_eq!(hex(&recovered), hex(&secret), "shares {pair:?}");
    }
}

#[test]
fn we_combine_the_references_non_extendable_groups_with_a_passphrase() {
    if !reference_available() {
        return;
    }
    let secret = random_secret(16);
    let spec = r#"{"group_threshold": 2, "groups": [[1, 1], [2, 3], [3, 5]],
                   "passphrase": "TREZOR", "extendable": false, "iteration_exponent": 0}"#;
    let output = python(PY_GENERATE, &[&hex(&secret), spec], "");
    let shares: Vec<&str> = output.lines().collect();
    assert_eq!(shares.len(), 9);
    // The 1-of-1 group's share, and two of the 2-of-3 group's.
    let chosen: Vec<String> = [shares[0], shares[3], shares[1]]
        .map(str::to_owned)
        .to_vec();
    let recovered = slip39::combine(&chosen, b"TREZOR").expect("reference shares combine");
    assert_eq!(hex(&recovered), hex(&secret));
}
