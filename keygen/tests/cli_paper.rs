//! Paper backups through the binary: `paper show` and `restore` (BIP-39 words), `paper
//! split` and `combine` (SLIP-39 shares), and passphrase-protected key files, with
//! standard input a pipe as in a script.

mod common;

use bip39::{Language, Mnemonic};
use breakglass_protocol::keyfile;
use common::{fingerprint_in, mode, one_line, Workdir};

/// A published BIP-39 vector with 32 bytes of entropy and no repeated neighbours
/// (trezor/python-mnemonic `vectors.json`, the last English one).
const VECTOR_ENTROPY: &str = "f585c11aec520db57dd353c69554b21a89b20fb0650966fa0a9d6f74fd989d8f";
const VECTOR_WORDS: &str = "void come effort suffer camp survey warrior heavy shoot primary \
                            clutch crush open amazing screen patrol group space point ten \
                            exist slush involve unfold";

fn vector_words() -> Vec<&'static str> {
    VECTOR_WORDS.split_whitespace().collect()
}

/// The 24 words of `paper show` output, in the order of their numbers.
fn numbered_words(page: &str) -> Vec<String> {
    let mut numbered: Vec<(usize, String)> = Vec::new();
    for line in page.lines() {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        for pair in tokens.chunks(2) {
            let Some(number) = pair[0].strip_suffix('.') else {
                break;
            };
            let Ok(number) = number.parse::<usize>() else {
                break;
            };
            numbered.push((
                number,
                pair.get(1).expect("a word after its number").to_string(),
            ));
        }
    }
    let numbers: Vec<usize> = numbered.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, (1..=24).collect::<Vec<_>>(), "{page}");
    numbered.into_iter().map(|(_, w)| w).collect()
}

/// Shares printed by `paper split` with standard output a pipe: one per line.
fn split(w: &Workdir, file: &str, threshold: &str, shares: &str) -> Vec<String> {
    let args = [
        "paper",
        "split",
        file,
        "--threshold",
        threshold,
        "--shares",
        shares,
    ];
    w.ok(&args, "").lines().map(str::to_owned).collect()
}

#[test]
fn paper_show_prints_24_numbered_bip39_words_and_the_fingerprint() {
    let w = Workdir::new();
    w.ok(
        &["member", "new", "--name", "alice", "--out", "alice.key"],
        "",
    );
    let page = w.ok(&["paper", "show", "alice.key"], "");

    let words = numbered_words(&page);
    let phrase = words.join(" ");
    let mnemonic = Mnemonic::parse_in(Language::English, &phrase).expect("valid BIP-39 words");
    let key = keyfile::decode(&w.read_text("alice.key"), None).expect("a key file");
    assert_eq!(mnemonic.to_entropy(), key.seed().expose().to_vec());

    let fingerprint = one_line(&w.ok(&["pubkey", "alice.key", "--fingerprint"], ""));
    assert_eq!(fingerprint_in(&page), fingerprint);
}

#[test]
fn the_whole_paper_show_output_pasted_back_restores_the_same_key() {
    let w = Workdir::new();
    for (kind, file) in [("member", "alice.key"), ("root", "root.key")] {
        let public = w.new_key(kind, file);
        let page = w.ok(&["paper", "show", file], "");
        let out = format!("restored-{file}");
        let args = ["paper", "restore", "--kind", kind, "--out", &out];
        let printed = one_line(&w.ok(&args, &page));
        assert_eq!(printed, public, "{kind}");
        assert_eq!(w.pubkey(&out), public, "{kind}");
        assert_eq!(mode(&w.path(&out)), 0o600, "{kind}");
    }
}

#[test]
fn published_bip39_words_restore_exactly_their_entropy_as_the_seed() {
    let w = Workdir::new();
    w.ok(
        &["paper", "restore", "--kind", "root", "--out", "root.key"],
        VECTOR_WORDS,
    );
    let key = keyfile::decode(&w.read_text("root.key"), None).expect("a key file");
    let hex: String = key
        .seed()
        .expose()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(hex, VECTOR_ENTROPY);
    let page = w.ok(&["paper", "show", "root.key"], "");
    assert_eq!(numbered_words(&page), vector_words());
}

#[test]
fn restore_refuses_a_wrong_word_count_and_writes_nothing() {
    let w = Workdir::new();
    let words = vector_words();
    let short = words[..23].join(" ");
    let long = format!("{VECTOR_WORDS} zoo");
    for (input, said) in [
        (short, "found 23 words, expected 24"),
        (long, "found 25 words"),
    ] {
        w.fails(
            &["paper", "restore", "--out", "restored.key"],
            &input,
            1,
            &[said],
        );
        assert!(w.names().is_empty(), "{:?}", w.names());
    }
}

#[test]
fn restore_names_the_position_of_an_unknown_word_and_writes_nothing() {
    let w = Workdir::new();
    let mut words = vector_words();
    words[6] = "qwerty";
    w.fails(
        &["paper", "restore", "--out", "restored.key"],
        &words.join(" "),
        1,
        &["word 7", "\"qwerty\"", "not a bip-39 word"],
    );
    assert!(w.names().is_empty(), "{:?}", w.names());
}

#[test]
fn restore_refuses_two_swapped_words_by_their_checksum_and_writes_nothing() {
    let w = Workdir::new();
    let mut words = vector_words();
    words.swap(2, 3);
    let swapped = words.join(" ");
    assert!(
        Mnemonic::parse_in(Language::English, &swapped).is_err(),
        "still valid"
    );
    w.fails(
        &["paper", "restore", "--out", "restored.key"],
        &swapped,
        1,
        &["wrong or they are out of order"],
    );
    assert!(w.names().is_empty(), "{:?}", w.names());
}

#[test]
fn restore_refuses_an_existing_file_before_reading_any_word() {
    let w = Workdir::new();
    let public = w.new_key("root", "root.key");
    let args = ["paper", "restore", "--kind", "root", "--out", "root.key"];
    // Words that cannot be read: the file is refused before they are looked at.
    w.fails(
        &args,
        "not words",
        1,
        &["root.key", "already exists", "--force"],
    );
    assert_eq!(w.pubkey("root.key"), public);
    w.ok(&[&args[..], &["--force"][..]].concat(), VECTOR_WORDS);
    assert_ne!(w.pubkey("root.key"), public);
}

#[test]
fn split_to_a_pipe_prints_one_share_per_line() {
    let w = Workdir::new();
    w.new_key("root", "root.key");
    let shares = split(&w, "root.key", "2", "3");
    assert_eq!(shares.len(), 3, "{shares:#?}");
    for share in &shares {
        let words: Vec<&str> = share.split(' ').collect();
        assert!(words.len() >= 20, "{share}");
        assert!(
            words
                .iter()
                .all(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase())),
            "{share}"
        );
    }
    assert_ne!(shares[0], shares[1]);
    assert_ne!(shares[1], shares[2]);
}

#[test]
fn any_two_of_three_shares_restore_the_root_key() {
    let w = Workdir::new();
    let public = w.new_key("root", "root.key");
    let shares = split(&w, "root.key", "2", "3");
    for (i, j) in [(0, 1), (0, 2), (1, 2), (2, 0)] {
        let out = format!("r{i}{j}.key");
        let input = format!("{}\n{}\n", shares[i], shares[j]);
        let printed = w.ok(
            &["paper", "combine", "--kind", "root", "--out", &out],
            &input,
        );
        assert_eq!(one_line(&printed), public, "shares {i} and {j}");
        assert_eq!(w.pubkey(&out), public, "shares {i} and {j}");
        assert_eq!(mode(&w.path(&out)), 0o600);
    }
}

#[test]
fn one_share_of_a_two_of_three_split_is_not_enough() {
    let w = Workdir::new();
    w.new_key("root", "root.key");
    let shares = split(&w, "root.key", "2", "3");
    w.fails(
        &["paper", "combine", "--kind", "root", "--out", "r.key"],
        &shares[0],
        1,
        &["not enough shares", "2 needed, 1 given"],
    );
    assert!(!w.exists("r.key"));
}

#[test]
fn shares_of_two_different_splits_do_not_combine() {
    let w = Workdir::new();
    w.new_key("root", "root.key");
    let first = split(&w, "root.key", "2", "3");
    let second = split(&w, "root.key", "2", "3");
    let input = format!("{}\n{}\n", first[0], second[1]);
    w.fails(
        &["paper", "combine", "--kind", "root", "--out", "r.key"],
        &input,
        1,
        &["share 2", "different set of shares"],
    );
    assert!(!w.exists("r.key"));
}

#[test]
fn a_share_with_one_changed_word_is_refused_by_its_checksum() {
    let w = Workdir::new();
    w.new_key("root", "root.key");
    let shares = split(&w, "root.key", "2", "3");
    let mut words: Vec<&str> = shares[1].split(' ').collect();
    words[10] = if words[10] == "academic" {
        "acid"
    } else {
        "academic"
    };
    let input = format!("{}\n{}\n", shares[0], words.join(" "));
    w.fails(
        &["paper", "combine", "--kind", "root", "--out", "r.key"],
        &input,
        1,
        &["share 2", "checksum"],
    );
    assert!(!w.exists("r.key"));
}

#[test]
fn combine_with_no_shares_says_so() {
    let w = Workdir::new();
    w.fails(
        &["paper", "combine", "--out", "r.key"],
        "\n\n",
        1,
        &["no shares"],
    );
    assert!(!w.exists("r.key"));
}

#[test]
fn split_refuses_a_threshold_above_the_share_count() {
    let w = Workdir::new();
    w.new_key("root", "root.key");
    let run = w.fails(
        &[
            "paper",
            "split",
            "root.key",
            "--threshold",
            "3",
            "--shares",
            "2",
        ],
        "",
        1,
        &["invalid parameters"],
    );
    assert!(run.stdout.is_empty(), "{run:#?}");
}

#[test]
fn a_new_encrypted_key_takes_its_passphrase_from_the_first_line_of_a_pipe() {
    let w = Workdir::new();
    let run = w.run(
        &["root", "new", "--encrypt", "--out", "root.key"],
        "correct horse\n",
    );
    assert_eq!(run.code, 0, "{run:#?}");
    let public = one_line(&run.stdout);
    assert_eq!(mode(&w.path("root.key")), 0o600);

    let text = w.read_text("root.key");
    assert!(text.lines().any(|l| l.starts_with("encryption:")), "{text}");
    assert!(!text.lines().any(|l| l.starts_with("seed:")), "{text}");

    let unlocked = w.ok(&["pubkey", "root.key"], "correct horse\n");
    assert_eq!(one_line(&unlocked), public);
    let args = ["pubkey", "root.key"];
    let run = w.fails(
        &args,
        "battery staple\n",
        1,
        &["root.key", "wrong passphrase"],
    );
    assert!(run.stdout.is_empty(), "{run:#?}");
    assert_eq!(
        run.stderr.matches("wrong passphrase").count(),
        1,
        "{run:#?}"
    );
}

#[test]
fn an_encrypted_key_with_no_passphrase_on_standard_input_says_the_input_ended() {
    let w = Workdir::new();
    w.ok(&["root", "new", "--encrypt", "--out", "root.key"], "pw\n");
    w.fails(
        &["pubkey", "root.key"],
        "",
        1,
        &["root.key", "standard input ended"],
    );
}

#[test]
fn an_empty_new_passphrase_is_refused_and_no_key_is_written() {
    let w = Workdir::new();
    for input in ["\n", ""] {
        w.fails(
            &[
                "member",
                "new",
                "--name",
                "alice",
                "--encrypt",
                "--out",
                "a.key",
            ],
            input,
            1,
            &["passphrase"],
        );
        assert!(w.names().is_empty(), "{:?}", w.names());
    }
}

#[test]
fn paper_show_of_an_encrypted_key_asks_for_its_passphrase() {
    let w = Workdir::new();
    w.ok(&["root", "new", "--encrypt", "--out", "root.key"], "pw\n");
    let page = w.ok(&["paper", "show", "root.key"], "pw\n");
    assert_eq!(numbered_words(&page).len(), 24);
    w.fails(
        &["paper", "show", "root.key"],
        "nope\n",
        1,
        &["wrong passphrase"],
    );
}

#[test]
fn restore_with_encrypt_reads_the_passphrase_line_before_the_words() {
    let w = Workdir::new();
    let public = w.new_key("member", "alice.key");
    let page = w.ok(&["paper", "show", "alice.key"], "");
    let input = format!("s3cret\n{page}");
    let args = [
        "paper",
        "restore",
        "--kind",
        "member",
        "--encrypt",
        "--out",
        "back.key",
    ];
    assert_eq!(one_line(&w.ok(&args, &input)), public);
    assert!(w.read_text("back.key").contains("encryption:"));
    assert_eq!(one_line(&w.ok(&["pubkey", "back.key"], "s3cret\n")), public);
}

#[test]
fn combine_with_encrypt_reads_the_passphrase_line_before_the_shares() {
    let w = Workdir::new();
    let public = w.new_key("root", "root.key");
    let shares = split(&w, "root.key", "2", "3");
    let input = format!("s3cret\n{}\n{}\n", shares[2], shares[0]);
    let args = [
        "paper",
        "combine",
        "--kind",
        "root",
        "--encrypt",
        "--out",
        "back.key",
    ];
    assert_eq!(one_line(&w.ok(&args, &input)), public);
    assert!(w.read_text("back.key").contains("encryption:"));
    assert_eq!(one_line(&w.ok(&["pubkey", "back.key"], "s3cret\n")), public);
}
