//! The published BIP-39 English test vectors (trezor/python-mnemonic `vectors.json`), run
//! against the `bip39` crate as breakglass uses it and against our paper-word functions.
//!
//! Each vector is `[entropy hex, mnemonic, seed hex, xprv]`; the seed is the PBKDF2 output
//! for the passphrase "TREZOR". Breakglass does not use that seed, but checking it pins the
//! fixture to the published file. The xprv column is not checked.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

use bip39::{Language, Mnemonic};
use breakglass_keygen::bip39words::{seed_to_words, words_to_seed, PaperError};

/// All English vectors in the published file.
const ENGLISH_VECTORS: usize = 24;

/// The English vectors with 32 bytes of entropy (24 words), the length breakglass uses.
const SEED_VECTORS: usize = 8;

struct Vector {
    entropy: Vec<u8>,
    mnemonic: String,
    seed: Vec<u8>,
}

fn vectors() -> Vec<Vector> {
    let json: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/bip39_vectors.json")).unwrap();
    let english = json["english"].as_array().unwrap();
    english
        .iter()
        .map(|v| vector(v.as_array().unwrap()))
        .collect()
}

fn vector(fields: &[serde_json::Value]) -> Vector {
    let text = |i: usize| fields[i].as_str().unwrap().to_owned();
    Vector {
        entropy: hex(&text(0)),
        mnemonic: text(1),
        seed: hex(&text(2)),
    }
}

fn hex(text: &str) -> Vec<u8> {
    assert!(text.len() % 2 == 0, "odd hex length: {text}");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn the_fixture_holds_every_published_english_vector() {
    let all = vectors();
    assert_eq!(all.len(), ENGLISH_VECTORS);
    let seeds = all.iter().filter(|v| v.entropy.len() == 32).count();
    assert!(seeds > 0);
    assert_eq!(seeds, SEED_VECTORS);
}

#[test]
fn the_crate_turns_each_entropy_into_the_published_words_and_seed() {
    for v in vectors() {
        let mnemonic = Mnemonic::from_entropy_in(Language::English, &v.entropy).unwrap();
        assert_eq!(mnemonic.to_string(), v.mnemonic);
        assert_eq!(mnemonic.to_entropy(), v.entropy);
        assert_eq!(
            mnemonic.to_seed("TREZOR").to_vec(),
            v.seed,
            "{}",
            v.mnemonic
        );
        let parsed = Mnemonic::parse_in_normalized(Language::English, &v.mnemonic).unwrap();
        assert_eq!(parsed, mnemonic);
    }
}

#[test]
fn seed_to_words_gives_the_published_words_for_every_32_byte_vector() {
    let mut checked = 0;
    for v in vectors().iter().filter(|v| v.entropy.len() == 32) {
        let seed: [u8; 32] = v.entropy.as_slice().try_into().unwrap();
        assert_eq!(seed_to_words(&seed).join(" "), v.mnemonic);
        checked += 1;
    }
    assert!(checked > 0);
    assert_eq!(checked, SEED_VECTORS);
}

#[test]
fn words_to_seed_gives_the_published_entropy_for_every_32_byte_vector() {
    let mut checked = 0;
    for v in vectors().iter().filter(|v| v.entropy.len() == 32) {
        let seed = words_to_seed(&v.mnemonic).unwrap();
        assert_eq!(seed.as_slice(), v.entropy.as_slice(), "{}", v.mnemonic);
        checked += 1;
    }
    assert!(checked > 0);
    assert_eq!(checked, SEED_VECTORS);
}

#[test]
fn shorter_published_vectors_are_refused_as_not_breakglass_keys() {
    for v in vectors().iter().filter(|v| v.entropy.len() < 32) {
        let found = v.mnemonic.split_whitespace().count();
        assert_eq!(
            words_to_seed(&v.mnemonic),
            Err(PaperError::ShorterPhrase { found })
        );
    }
}
