//! The official SLIP-39 test vectors (`vectors.json` of trezor/python-shamir-mnemonic,
//! including the extendable-flag vectors), run against `slip39::combine`.
//!
//! Each entry is `[description, mnemonics, master secret hex, BIP-32 xprv]`; an empty
//! secret marks a set that must be refused. The passphrase is "TREZOR" throughout.

use breakglass_keygen::slip39;

/// Vectors in the fixture, and how many of them are valid sets.
const VECTOR_COUNT: usize = 45;
const VALID_COUNT: usize = 15;

type Vector = (String, Vec<String>, String, String);

fn vectors() -> Vec<Vector> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/slip39_vectors.json"
    );
    let text = std::fs::read_to_string(path).expect("fixture is readable");
    serde_json::from_str(&text).expect("fixture is a list of 4-element vectors")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The outcome of one vector as a line for the failure report, or `None` if it passed.
fn failure((description, mnemonics, secret, _xprv): &Vector) -> Option<String> {
    let result = slip39::combine(mnemonics, b"TREZOR");
    match (secret.is_empty(), result) {
        (false, Ok(recovered)) if hex(&recovered) == *secret => None,
        (false, Ok(recovered)) => Some(format!("{description}: got {}", hex(&recovered))),
        (false, Err(err)) => Some(format!("{description}: refused: {err}")),
        (true, Err(_)) => None,
        (true, Ok(_)) => Some(format!("{description}: accepted an invalid set")),
    }
}

#[test]
fn the_fixture_holds_every_official_vector() {
    let vectors = vectors();
    assert_eq!(vectors.len(), VECTOR_COUNT);
    let valid = vectors
        .iter()
        .filter(|(_, _, secret, _)| !secret.is_empty())
        .count();
    assert_eq!(valid, VALID_COUNT);
}

#[test]
fn valid_vectors_recover_their_secret_and_invalid_ones_are_refused() {
    let vectors = vectors();
    assert_eq!(vectors.len(), VECTOR_COUNT);
    let failures: Vec<String> = vectors.iter().filter_map(failure).collect();
    assert!(
        failures.is_empty(),
        "failing vectors:\n{}",
        failures.join("\n")
    );
}
