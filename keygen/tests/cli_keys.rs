//! `breakglass-keygen root|member|relay new` and `pubkey`, run as a person would: the key
//! files they write, what they print, and what they refuse.

mod common;

use common::{fingerprint_in, mode, one_line, set_mode, Workdir};

#[test]
fn a_new_root_key_is_written_0600_and_its_public_key_is_printed() {
    let w = Workdir::new();
    let run = w.run(&["root", "new", "--out", "root.key"], "");
    assert_eq!(run.code, 0, "{run:#?}");
    let public = one_line(&run.stdout);
    assert!(public.starts_with("bgroot1"), "{public}");
    assert_eq!(mode(&w.path("root.key")), 0o600);
    assert_eq!(w.pubkey("root.key"), public);
    assert_eq!(w.names(), ["root.key"], "a temporary file was left behind");
}

#[test]
fn a_new_member_key_is_written_0600_and_its_public_key_is_printed() {
    let w = Workdir::new();
    let run = w.run(
        &["member", "new", "--name", "alice", "--out", "alice.key"],
        "",
    );
    assert_eq!(run.code, 0, "{run:#?}");
    let public = one_line(&run.stdout);
    assert!(public.starts_with("bgmember1"), "{public}");
    assert!(run.stderr.contains("alice"), "{run:#?}");
    assert_eq!(mode(&w.path("alice.key")), 0o600);
    assert_eq!(w.pubkey("alice.key"), public);
}

#[test]
fn a_new_relay_key_prints_a_relay_key_string() {
    let w = Workdir::new();
    let public = w.new_key("relay", "relay.key");
    assert!(public.starts_with("bgrelay1"), "{public}");
    assert_eq!(mode(&w.path("relay.key")), 0o600);
    assert_eq!(w.pubkey("relay.key"), public);
}

#[test]
fn key_files_are_0600_even_with_a_umask_of_zero() {
    let w = Workdir::new();
    // The wrapper really clears the umask: an ordinary new file comes out 0666.
    let control = w.run_other_with_umask_zero("sh", &["-c", ": > control"]);
    assert_eq!(control.code, 0, "{control:#?}");
    assert_eq!(
        mode(&w.path("control")),
        0o666,
        "the umask wrapper does not work"
    );

    let runs = [
        vec!["root", "new", "--out", "root.key"],
        vec!["member", "new", "--name", "alice", "--out", "alice.key"],
        vec!["relay", "new", "--out", "relay.key"],
        vec!["root", "new", "--out", "root.key", "--force"],
    ];
    for args in runs {
        let run = w.run_with_umask_zero(&args, "");
        assert_eq!(run.code, 0, "{args:?}: {run:#?}");
        let file = args[args.iter().position(|a| *a == "--out").expect("--out") + 1];
        assert_eq!(mode(&w.path(file)), 0o600, "{args:?}");
        assert_eq!(w.pubkey(file), one_line(&run.stdout), "{args:?}");
    }
}

#[test]
fn the_fingerprint_printed_at_creation_is_the_one_pubkey_gives() {
    let w = Workdir::new();
    let run = w.run(&["root", "new", "--out", "root.key"], "");
    assert_eq!(run.code, 0, "{run:#?}");
    let printed = fingerprint_in(&run.stderr);
    let asked = one_line(&w.ok(&["pubkey", "root.key", "--fingerprint"], ""));
    assert_eq!(asked, printed);
    assert_eq!(asked.len(), 24, "{asked}");
}

#[test]
fn an_existing_key_file_is_kept_unless_force_is_given() {
    let w = Workdir::new();
    let first = w.new_key("root", "root.key");
    let before = w.read("root.key");

    let refused = w.fails(
        &["root", "new", "--out", "root.key"],
        "",
        1,
        &["root.key", "already exists", "--force"],
    );
    assert!(refused.stdout.is_empty(), "no key was made: {refused:#?}");
    assert_eq!(w.read("root.key"), before, "the original file changed");
    assert_eq!(w.names(), ["root.key"], "a temporary file was left behind");

    let second = one_line(&w.ok(&["root", "new", "--out", "root.key", "--force"], ""));
    assert_ne!(second, first);
    assert_eq!(w.pubkey("root.key"), second);
    assert_eq!(mode(&w.path("root.key")), 0o600);
    assert_eq!(w.names(), ["root.key"], "a temporary file was left behind");
}

#[test]
fn a_key_file_that_others_can_read_is_refused_naming_the_file_and_the_fix() {
    let w = Workdir::new();
    w.new_key("member", "alice.key");
    for bits in [0o644, 0o640, 0o604] {
        set_mode(&w.path("alice.key"), bits);
        let run = w.fails(&["pubkey", "alice.key"], "", 1, &["alice.key", "chmod 600"]);
        assert!(run.stdout.is_empty(), "{run:#?}");
    }
    set_mode(&w.path("alice.key"), 0o600);
    w.pubkey("alice.key");
}

#[test]
fn a_key_file_whose_public_line_was_swapped_is_refused_naming_the_file() {
    let w = Workdir::new();
    let alice = w.new_key("member", "alice.key");
    let bob = w.new_key("member", "bob.key");
    let swapped = w.read_text("alice.key").replace(&alice, &bob);
    assert!(swapped.contains(&format!("public: {bob}")), "{swapped}");
    w.write_key_text("forged.key", &swapped);

    let run = w.fails(
        &["pubkey", "forged.key"],
        "",
        1,
        &["forged.key", "does not match the public key"],
    );
    assert!(run.stdout.is_empty(), "{run:#?}");
    assert_eq!(
        run.stderr.matches("does not match").count(),
        1,
        "the cause is printed once: {run:#?}"
    );
}

#[test]
fn a_missing_key_file_is_named_and_its_cause_given_once() {
    let w = Workdir::new();
    let run = w.fails(
        &["pubkey", "nowhere.key"],
        "",
        1,
        &["nowhere.key", "No such file"],
    );
    assert_eq!(run.stderr.matches("No such file").count(), 1, "{run:#?}");
}

#[test]
fn a_file_that_is_not_a_key_file_is_refused_naming_the_line() {
    let w = Workdir::new();
    w.write_key_text("notes.key", "hello world\n");
    w.fails(&["pubkey", "notes.key"], "", 1, &["notes.key", "line 1"]);
}

#[test]
fn an_unknown_subcommand_is_a_usage_error() {
    let w = Workdir::new();
    w.fails(
        &["frobnicate"],
        "",
        2,
        &["unrecognized subcommand", "Usage:"],
    );
    w.fails(&["root", "rotate"], "", 2, &["unrecognized subcommand"]);
}

#[test]
fn a_missing_out_is_a_usage_error_that_names_it() {
    let w = Workdir::new();
    w.fails(&["root", "new"], "", 2, &["--out"]);
    w.fails(&["member", "new", "--name", "alice"], "", 2, &["--out"]);
    w.fails(&["member", "new", "--out", "alice.key"], "", 2, &["--name"]);
    assert!(w.names().is_empty(), "{:?}", w.names());
}

#[test]
fn a_member_name_that_is_not_safe_as_a_file_name_is_refused_before_any_key_is_written() {
    let w = Workdir::new();
    for name in [
        "../x",
        "a/b",
        "Alice",
        "",
        "-x",
        "bo\u{7}b",
        &"a".repeat(65),
    ] {
        let name_arg = format!("--name={name}");
        let run = w.fails(
            &["member", "new", &name_arg, "--out", "x.key"],
            "",
            1,
            &["invalid name", "a-z, 0-9"],
        );
        assert!(run.stdout.is_empty(), "{run:#?}");
        assert!(w.names().is_empty(), "{name:?} left {:?}", w.names());
    }
}
