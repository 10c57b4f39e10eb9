//! Asking a person for secrets: passphrases and paper words, never echoed.
//!
//! When standard input is a terminal the questions go to the terminal without echo; when
//! it is not (a pipe, a script, a test), secrets are read from standard input instead, so
//! the commands can be scripted without ever putting a secret in an argument. A passphrase
//! is then one line of standard input, asked once, and comes before any words or shares.

use std::io::{self, BufRead, IsTerminal, Read};

use zeroize::Zeroizing;

/// The most bytes read from standard input for words or shares.
const MAX_INPUT: u64 = 64 * 1024;

/// Asks for the passphrase of an existing key.
///
/// # Errors
///
/// When no terminal is available and standard input is closed.
pub fn passphrase() -> io::Result<Zeroizing<String>> {
    ask("passphrase for the key: ")
}

/// Asks twice for a new passphrase and refuses an empty or mismatched one.
///
/// # Errors
///
/// When the two entries differ or the passphrase is empty.
pub fn new_passphrase() -> io::Result<Zeroizing<String>> {
    let first = ask("new passphrase: ")?;
    if first.is_empty() {
        return Err(io::Error::other("the passphrase is empty"));
    }
    if io::stdin().is_terminal() {
        let again = ask("repeat the passphrase: ")?;
        if *again != *first {
            return Err(io::Error::other("the two passphrases differ"));
        }
    }
    Ok(first)
}

fn ask(question: &str) -> io::Result<Zeroizing<String>> {
    if io::stdin().is_terminal() {
        return rpassword::prompt_password(question).map(Zeroizing::new);
    }
    let mut line = Zeroizing::new(String::new());
    if io::stdin().lock().read_line(&mut line)? == 0 {
        // Without this an empty input would be tried as the passphrase, and reported
        // as a wrong one.
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "standard input ended before a passphrase line",
        ));
    }
    let trimmed = Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_string());
    Ok(trimmed)
}

/// Reads the 24 paper words: from the terminal without echo, or all of standard input.
///
/// # Errors
///
/// When standard input cannot be read.
pub fn paper_words() -> io::Result<Zeroizing<String>> {
    if io::stdin().is_terminal() {
        eprintln!("Type the 24 words, separated by spaces (they are not shown), then Enter.");
        return rpassword::prompt_password("words: ").map(Zeroizing::new);
    }
    read_all_stdin()
}

/// Reads SLIP-39 shares, one per line: at a terminal without echo until an empty line,
/// otherwise all of standard input.
///
/// # Errors
///
/// When standard input cannot be read.
pub fn shares() -> io::Result<Zeroizing<String>> {
    if !io::stdin().is_terminal() {
        return read_all_stdin();
    }
    eprintln!("Type one share per line (not shown); an empty line when done.");
    let mut all = Zeroizing::new(String::new());
    for n in 1.. {
        let line = Zeroizing::new(rpassword::prompt_password(format!("share {n}: "))?);
        if line.trim().is_empty() {
            break;
        }
        all.push_str(&line);
        all.push('\n');
    }
    Ok(all)
}

/// Reads all of standard input, bounded, into a wiped buffer.
///
/// # Errors
///
/// When standard input cannot be read or is not UTF-8.
pub fn read_all_stdin() -> io::Result<Zeroizing<String>> {
    let mut text = Zeroizing::new(String::new());
    io::stdin()
        .lock()
        .take(MAX_INPUT)
        .read_to_string(&mut text)?;
    Ok(text)
}
