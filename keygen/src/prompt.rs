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
/// At a terminal the words may come over several lines (a person may press Enter after
/// each row of the backup): it keeps asking until 24 words were typed or an empty line is
/// given, so no word is ever left to be typed into the shell with echo.
///
/// # Errors
///
/// When standard input cannot be read.
pub fn paper_words() -> io::Result<Zeroizing<String>> {
    if io::stdin().is_terminal() {
        eprintln!(
            "Type the 24 words, separated by spaces or over several lines (they are not \
             shown); an empty line ends early."
        );
        return gather_words(|count| {
            let question = if count == 0 {
                "words: ".to_string()
            } else {
                format!("words {}-: ", count + 1)
            };
            rpassword::prompt_password(question).map(Zeroizing::new)
        });
    }
    read_all_stdin()
}

/// The words of a paper backup.
const PAPER_WORDS: usize = 24;

/// The most lines asked for the words, so a confused entry ends.
const MAX_WORD_LINES: usize = 30;

/// Joins the lines `next_line` gives (it is passed the number of words so far) until
/// 24 words were entered, an empty line is given or 30 lines
/// were read.
///
/// # Errors
///
/// The errors of `next_line`.
pub fn gather_words(
    mut next_line: impl FnMut(usize) -> io::Result<Zeroizing<String>>,
) -> io::Result<Zeroizing<String>> {
    let mut all = Zeroizing::new(String::new());
    let mut count = 0;
    for _ in 0..MAX_WORD_LINES {
        let line = next_line(count)?;
        if line.trim().is_empty() {
            break;
        }
        count += count_words(&line);
        all.push_str(line.trim());
        all.push('\n');
        if count >= PAPER_WORDS {
            break;
        }
    }
    Ok(all)
}

/// The words in `line`, not counting the `N.` numbers a backup prints before its words.
fn count_words(line: &str) -> usize {
    let numbering = |token: &str| {
        token
            .strip_suffix('.')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    line.split_whitespace().filter(|t| !numbering(t)).count()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `lines` to [`gather_words`] and returns what it joined and how many lines it
    /// asked for.
    fn gather(lines: &[&str]) -> (String, usize) {
        let mut asked = 0;
        let words = gather_words(|_| {
            let line = lines.get(asked).copied().unwrap_or("");
            asked += 1;
            Ok(Zeroizing::new(line.to_string()))
        })
        .expect("no i/o here");
        (words.to_string(), asked)
    }

    fn words(n: usize) -> String {
        vec!["abandon"; n].join(" ")
    }

    #[test]
    fn all_24_words_on_one_line_are_one_entry() {
        let (text, asked) = gather(&[&words(24), "never asked"]);
        assert_eq!(asked, 1);
        assert_eq!(text.split_whitespace().count(), 24);
    }

    #[test]
    fn words_over_two_lines_are_asked_for_until_24() {
        let (text, asked) = gather(&[&words(12), &words(12), "never asked"]);
        assert_eq!(asked, 2);
        assert_eq!(text.split_whitespace().count(), 24);
    }

    #[test]
    fn numbering_is_not_counted_as_words() {
        let first: Vec<String> = (1..=12).map(|n| format!("{n}. abandon")).collect();
        let second: Vec<String> = (13..=24).map(|n| format!("{n}. abandon")).collect();
        let (text, asked) = gather(&[&first.join(" "), &second.join("  "), "never asked"]);
        assert_eq!(asked, 2);
        assert!(text.contains("24. abandon"), "{text}");
    }

    #[test]
    fn an_empty_line_ends_early() {
        let (text, asked) = gather(&[&words(12), "   ", "never asked"]);
        assert_eq!(asked, 2);
        assert_eq!(text.split_whitespace().count(), 12);
    }

    #[test]
    fn a_word_per_line_is_read_to_the_end_and_a_runaway_entry_is_bounded() {
        let one_each: Vec<&str> = vec!["abandon"; 40];
        let (text, asked) = gather(&one_each);
        assert_eq!(asked, 24);
        assert_eq!(text.split_whitespace().count(), 24);

        let numbers_only: Vec<&str> = vec!["1."; 40];
        let (_, asked) = gather(&numbers_only);
        assert_eq!(asked, MAX_WORD_LINES);
    }
}
