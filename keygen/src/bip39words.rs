//! BIP-39 paper words for a 32-byte seed.
//!
//! A member's or the root's 32-byte seed is written on paper as BIP-39 *entropy*: 24
//! English words carrying 256 bits of seed and an 8-bit checksum, so any BIP-39 tool reads
//! the same 32 bytes back. The PBKDF2 step of BIP-39 is not used: the entropy is the seed.
//! The `bip39` crate owns the word list and the checksum; this module owns what a person
//! types: Unicode normalisation (NFKD, as BIP-39 asks), case, numbering, four-letter
//! prefixes, and error messages that point at the one word to fix.
//!
//! Shortcoming: `bip39` 2.2 keeps the bit buffers of `Mnemonic::from_entropy` on its
//! stack without wiping them, so a copy of the seed may outlive the call there. Everything
//! this module allocates is zeroized.

use std::fmt::Write as _;

use bip39::{Language, Mnemonic};
use unicode_normalization::UnicodeNormalization;
use zeroize::Zeroizing;

/// Words on a breakglass paper key: 256 bits of seed and 8 checksum bits, 11 bits a word.
pub const WORD_COUNT: usize = 24;

/// Shorter BIP-39 phrase lengths, which hold less than a 32-byte seed.
const SHORTER_PHRASES: [usize; 4] = [12, 15, 18, 21];

/// BIP-39 English words are unique in their first four letters.
const MIN_PREFIX: usize = 4;

/// The farthest (in edits) a word may be from a typed one to be suggested.
const MAX_SUGGESTION_DISTANCE: usize = 2;

/// How many words an error suggests at most.
const MAX_SUGGESTIONS: usize = 3;

/// The longest BIP-39 English word.
const LONGEST_WORD: usize = 8;

/// How much of an unknown word an error repeats, in characters.
const SHOWN_WORD_CHARS: usize = 24;

/// Columns in [`layout`]; 24 words make six rows.
const LAYOUT_COLUMNS: usize = 4;

/// Why typed paper words do not give back a seed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaperError {
    /// The input does not hold 24 words.
    #[error("found {found} words, expected 24")]
    WordCount {
        /// How many words the input held, numbering left out.
        found: usize,
    },
    /// The input is a shorter BIP-39 phrase, which cannot hold a breakglass key.
    #[error("found {found} valid words, but breakglass keys are always 24 words")]
    ShorterPhrase {
        /// How many words the input held: 12, 15, 18 or 21.
        found: usize,
    },
    /// A word is not in the BIP-39 English list, even as a prefix.
    #[error("word {position} {word:?} is not a bip-39 word{}", did_you_mean(.suggestions))]
    UnknownWord {
        /// Where the word stands, counting from 1.
        position: usize,
        /// The word as typed (normalised, lowercased, cut short if very long).
        word: String,
        /// The nearest list words by edit distance, nearest first.
        suggestions: Vec<&'static str>,
    },
    /// A word is shorter than four letters and is not itself a list word.
    #[error("word {position} {word:?} needs 4 letters or more{}", did_you_mean(.candidates))]
    TooShort {
        /// Where the word stands, counting from 1.
        position: usize,
        /// The word as typed (normalised and lowercased).
        word: String,
        /// The first list words that start with it.
        candidates: Vec<&'static str>,
    },
    /// Every word is in the list but the checksum they carry does not match.
    #[error("the words are all valid but one is wrong or they are out of order")]
    Checksum,
}

/// The 24 words for a 32-byte seed, in order.
///
/// The words come back as owned strings so that the whole list is wiped on drop: a list
/// of `&'static str` would point into the word list and give the words away, and could
/// not be wiped.
pub fn seed_to_words(seed: &[u8; 32]) -> Zeroizing<Vec<String>> {
    let mnemonic = english_mnemonic(seed);
    let mut words = Zeroizing::new(Vec::with_capacity(WORD_COUNT));
    words.extend(mnemonic.words().map(String::from));
    words
}

/// Parses words typed or pasted by a person back into the 32-byte seed.
///
/// Accepts any case and any whitespace or commas between words, applies NFKD first (so
/// full-width letters and no-break spaces work), skips numbering such as `1.`, `1)` or
/// `12:` (as printed by [`layout`]), and takes any prefix of at least four letters that
/// names a single word. Numbers are labels only: the words must come in order.
///
/// # Errors
///
/// [`PaperError::WordCount`] or [`PaperError::ShorterPhrase`] unless there are 24 words;
/// [`PaperError::UnknownWord`] or [`PaperError::TooShort`] for the first word that does
/// not name one list word; [`PaperError::Checksum`] when the words do not fit together.
pub fn words_to_seed(input: &str) -> Result<Zeroizing<[u8; 32]>, PaperError> {
    let text = normalize(input);
    let tokens: Vec<&str> = text
        .split(is_separator)
        .filter_map(strip_numbering)
        .collect();
    check_count(&tokens)?;

    let mut indices = Zeroizing::new([0u16; WORD_COUNT]);
    for (position, (slot, token)) in indices.iter_mut().zip(&tokens).enumerate() {
        *slot = resolve(position + 1, token)?;
    }
    seed_from_indices(&indices)
}

/// Numbered words in rows of four, for printing: ` 1. abandon    2. ability ...`.
///
/// Numbers run along the rows, so text copied from the page and pasted into
/// [`words_to_seed`] keeps the words in order. The result holds the whole phrase and is
/// wiped on drop; print it with `as_str()`.
pub fn layout<S: AsRef<str>>(words: &[S]) -> Zeroizing<String> {
    let number_width = words.len().to_string().len();
    let word_width = words
        .iter()
        .map(|w| w.as_ref().chars().count())
        .max()
        .unwrap_or(0);
    let word_bytes = words.iter().map(|w| w.as_ref().len()).max().unwrap_or(0);
    // Room for the padding and for letters wider than a byte.
    let cell = number_width + 2 + word_width + word_bytes + 3;
    let rows = words.len().div_ceil(LAYOUT_COLUMNS);
    // Sized once, so that growing the string never leaves an unwiped copy behind.
    let mut out = Zeroizing::new(String::with_capacity(rows * (LAYOUT_COLUMNS * cell + 1)));
    for (row, chunk) in words.chunks(LAYOUT_COLUMNS).enumerate() {
        write_row(
            &mut out,
            row * LAYOUT_COLUMNS,
            chunk,
            number_width,
            word_width,
        );
    }
    out
}

/// Appends one line of [`layout`], the first word numbered `first + 1`.
fn write_row<S: AsRef<str>>(
    out: &mut String,
    first: usize,
    chunk: &[S],
    number_width: usize,
    word_width: usize,
) {
    let mut line = Zeroizing::new(String::with_capacity(out.capacity() - out.len()));
    for (column, word) in chunk.iter().enumerate() {
        let number = first + column + 1;
        // Writing to a String cannot fail.
        let _ = write!(
            line,
            "{number:>number_width$}. {:<word_width$}   ",
            word.as_ref()
        );
    }
    out.push_str(line.trim_end());
    out.push('\n');
}

/// The crate's English mnemonic for a seed; it also computes the checksum.
fn english_mnemonic(seed: &[u8; 32]) -> Mnemonic {
    Mnemonic::from_entropy_in(Language::English, seed)
        .expect("32 bytes is a valid BIP-39 entropy length")
}

/// NFKD, then lowercase, into one buffer sized up front so no unwiped copy is left.
fn normalize(input: &str) -> Zeroizing<String> {
    let chars = || {
        input
            .nfkd()
            .flat_map(char::to_lowercase)
            .filter(|c| !is_invisible(*c))
    };
    let mut text = Zeroizing::new(String::with_capacity(chars().map(char::len_utf8).sum()));
    text.extend(chars());
    text
}

/// Zero-width characters and the byte-order mark, which NFKD keeps and pastes carry.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}')
}

/// Word separators: any Unicode whitespace, and commas from pasted lists.
fn is_separator(c: char) -> bool {
    c.is_whitespace() || c == ','
}

/// Drops a leading `12`, `12.`, `12)` or `12:`; `None` when nothing else is left.
fn strip_numbering(token: &str) -> Option<&str> {
    let rest = token.trim_start_matches(|c: char| c.is_ascii_digit());
    let numbered = rest.len() < token.len();
    let rest = if numbered {
        rest.strip_prefix(['.', ')', ':']).unwrap_or(rest)
    } else {
        rest
    };
    (!rest.is_empty()).then_some(rest)
}

/// Refuses any count but 24, telling a shorter valid phrase from a miscount.
fn check_count(tokens: &[&str]) -> Result<(), PaperError> {
    let found = tokens.len();
    if found == WORD_COUNT {
        return Ok(());
    }
    let all_words = || {
        (1..)
            .zip(tokens)
            .all(|(position, token)| resolve(position, token).is_ok())
    };
    if SHORTER_PHRASES.contains(&found) && all_words() {
        Err(PaperError::ShorterPhrase { found })
    } else {
        Err(PaperError::WordCount { found })
    }
}

/// The list index of a typed word: the whole word, or a prefix of at least four letters.
fn resolve(position: usize, token: &str) -> Result<u16, PaperError> {
    let english = Language::English;
    if let Some(index) = english.find_word(token) {
        return Ok(index);
    }
    match english.words_by_prefix(token) {
        [] => Err(unknown_word(position, token)),
        [word] if token.chars().count() >= MIN_PREFIX => english
            .find_word(word)
            .ok_or_else(|| unknown_word(position, token)),
        // Several matches need a prefix under four letters: the English list is unique
        // in its first four (BIP-39, "Wordlist").
        candidates => Err(PaperError::TooShort {
            position,
            word: token.to_owned(),
            candidates: candidates.iter().take(MAX_SUGGESTIONS).copied().collect(),
        }),
    }
}

/// Rebuilds the seed from 24 word indices and checks it against their checksum.
fn seed_from_indices(indices: &[u16; WORD_COUNT]) -> Result<Zeroizing<[u8; 32]>, PaperError> {
    let bits = pack(indices);
    let mut seed = Zeroizing::new([0u8; 32]);
    seed.copy_from_slice(&bits[..32]);
    if english_mnemonic(&seed).checksum() == bits[32] {
        Ok(seed)
    } else {
        Err(PaperError::Checksum)
    }
}

/// The 264 bits of 24 eleven-bit indices, most significant first (BIP-39, "Generating
/// the mnemonic"): the 32-byte seed, then the checksum byte.
///
/// Packed here rather than with `Mnemonic::to_entropy_array`, which re-detects the
/// language and panics when another enabled word list shares the words (rust-bip39 #106).
fn pack(indices: &[u16; WORD_COUNT]) -> Zeroizing<[u8; 33]> {
    let mut bits = Zeroizing::new([0u8; 33]);
    for (word, &index) in indices.iter().enumerate() {
        for bit in 0..11 {
            let at = word * 11 + bit;
            let value = u8::from((index >> (10 - bit)) & 1 == 1);
            bits[at / 8] |= value << (7 - at % 8);
        }
    }
    bits
}

/// The error for a word that is not in the list, with the nearest list words.
fn unknown_word(position: usize, token: &str) -> PaperError {
    PaperError::UnknownWord {
        position,
        word: token.chars().take(SHOWN_WORD_CHARS).collect(),
        suggestions: nearest_words(token),
    }
}

/// Up to three list words within two edits of `token` (or of its length's prefix of a
/// word), nearest first, list order among equals.
fn nearest_words(token: &str) -> Vec<&'static str> {
    let typed: Vec<char> = token.chars().collect();
    if typed.len() > LONGEST_WORD + MAX_SUGGESTION_DISTANCE {
        return Vec::new();
    }
    let mut scored: Vec<(usize, &'static str)> = Language::English
        .word_list()
        .iter()
        .map(|word| (typed_distance(&typed, word), *word))
        .filter(|(distance, _)| *distance <= MAX_SUGGESTION_DISTANCE)
        .collect();
    scored.sort_by_key(|(distance, _)| *distance);
    scored
        .into_iter()
        .take(MAX_SUGGESTIONS)
        .map(|(_, word)| word)
        .collect()
}

/// Edits from `typed` to `word`, also allowing `typed` to be a mistyped prefix of it.
fn typed_distance(typed: &[char], word: &str) -> usize {
    let word: Vec<char> = word.chars().collect();
    let whole = edit_distance(typed, &word);
    if typed.len() >= MIN_PREFIX && typed.len() < word.len() {
        whole.min(edit_distance(typed, &word[..typed.len()]))
    } else {
        whole
    }
}

/// Optimal string alignment distance: insertions, deletions, substitutions and swaps
/// of neighbours each cost one.
fn edit_distance(a: &[char], b: &[char]) -> usize {
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1).min(rows[i][j - 1] + 1);
            best = best.min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

/// `"; did you mean a, b or c?"`, or nothing when there is nothing to suggest.
fn did_you_mean(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [one] => format!("; did you mean {one}?"),
        [rest @ .., last] => format!("; did you mean {} or {last}?", rest.join(", ")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use super::*;
    use rand_core::{OsRng, RngCore};

    fn random_seed() -> [u8; 32] {
        let mut seed = [0u8; 32];
        OsRng.fill_bytes(&mut seed);
        seed
    }

    fn phrase(seed: &[u8; 32]) -> String {
        seed_to_words(seed).join(" ")
    }

    #[test]
    fn random_seeds_round_trip_through_words() {
        for _ in 0..64 {
            let seed = random_seed();
            let words = seed_to_words(&seed);
            assert_eq!(words.len(), WORD_COUNT);
            assert_eq!(*words_to_seed(&words.join(" ")).unwrap(), seed);
        }
    }

    #[test]
    fn words_are_read_in_any_case() {
        let seed = random_seed();
        let shouted = phrase(&seed).to_uppercase();
        assert_eq!(*words_to_seed(&shouted).unwrap(), seed);
    }

    #[test]
    fn tabs_newlines_commas_and_runs_of_spaces_separate_words() {
        let seed = random_seed();
        let words = seed_to_words(&seed);
        let messy = format!("\n\t  {}\t\r\n", words.join(" \t\n,  "));
        assert_eq!(*words_to_seed(&messy).unwrap(), seed);
    }

    #[test]
    fn printed_layout_reads_back_to_the_same_seed() {
        let seed = random_seed();
        let printed = layout(&seed_to_words(&seed));
        assert_eq!(*words_to_seed(&printed).unwrap(), seed);
    }

    #[test]
    fn numbering_styles_are_skipped() {
        let seed = random_seed();
        let numbered: Vec<String> = (1..)
            .zip(seed_to_words(&seed).iter())
            .map(|(n, w)| match n % 3 {
                0 => format!("{n}) {w}"),
                1 => format!("{n}: {w}"),
                _ => format!("{n}.{w}"),
            })
            .collect();
        assert_eq!(*words_to_seed(&numbered.join("\n")).unwrap(), seed);
    }

    #[test]
    fn layout_prints_six_aligned_rows_of_four_numbered_words() {
        let printed = layout(&seed_to_words(&[0x7f; 32]));
        let expected = concat!(
            " 1. legal      2. winner     3. thank      4. year\n",
            " 5. wave       6. sausage    7. worth      8. useful\n",
            " 9. legal     10. winner    11. thank     12. year\n",
            "13. wave      14. sausage   15. worth     16. useful\n",
            "17. legal     18. winner    19. thank     20. year\n",
            "21. wave      22. sausage   23. worth     24. title\n",
        );
        assert_eq!(printed.as_str(), expected);
    }

    #[test]
    fn four_letter_prefixes_and_three_letter_words_are_accepted() {
        let seed = random_seed();
        let short: Vec<String> = seed_to_words(&seed)
            .iter()
            .map(|w| w.chars().take(MIN_PREFIX).collect())
            .collect();
        assert_eq!(*words_to_seed(&short.join(" ")).unwrap(), seed);
    }

    #[test]
    fn full_width_letters_and_unicode_spaces_are_normalised() {
        let seed = random_seed();
        let wide: String = phrase(&seed)
            .to_uppercase()
            .chars()
            .map(|c| match c {
                ' ' => '\u{3000}',
                'A'..='Z' => char::from_u32(u32::from(c) - 0x41 + 0xFF21).unwrap(),
                other => other,
            })
            .collect();
        let input = format!("\u{FEFF}１．{}\u{00A0}", wide);
        assert_eq!(*words_to_seed(&input).unwrap(), seed);
    }

    #[test]
    fn twenty_three_words_are_refused_naming_the_count() {
        let words = seed_to_words(&random_seed());
        let err = words_to_seed(&words[..23].join(" ")).unwrap_err();
        assert_eq!(err, PaperError::WordCount { found: 23 });
        assert_eq!(err.to_string(), "found 23 words, expected 24");
    }

    #[test]
    fn twenty_five_words_are_refused_naming_the_count() {
        let input = format!("{} zoo", phrase(&random_seed()));
        let err = words_to_seed(&input).unwrap_err();
        assert!(err.to_string().contains("found 25 words"), "{err}");
    }

    #[test]
    fn shorter_bip39_phrases_are_refused_as_not_ours() {
        let twelve = "legal winner thank year wave sausage worth useful legal winner thank yellow";
        let err = words_to_seed(twelve).unwrap_err();
        assert_eq!(err, PaperError::ShorterPhrase { found: 12 });
        assert!(err.to_string().contains("always 24 words"), "{err}");
    }

    #[test]
    fn twelve_words_with_a_typo_are_a_plain_miscount() {
        let twelve = "legal winner thank year wave sausage worth useful legal winner thank yelow";
        assert_eq!(
            words_to_seed(twelve),
            Err(PaperError::WordCount { found: 12 })
        );
    }

    #[test]
    fn an_unknown_word_is_named_with_its_position_and_a_suggestion() {
        let mut words: Vec<String> = seed_to_words(&[0u8; 32]).to_vec();
        words[6] = "abandn".to_owned();
        let err = words_to_seed(&words.join(" ")).unwrap_err();
        assert_eq!(
            err,
            PaperError::UnknownWord {
                position: 7,
                word: "abandn".to_owned(),
                suggestions: vec!["abandon"],
            }
        );
        assert_eq!(
            err.to_string(),
            "word 7 \"abandn\" is not a bip-39 word; did you mean abandon?"
        );
    }

    #[test]
    fn an_error_never_repeats_the_other_words() {
        // A fixed seed, so that no word of the phrase is a word of the message.
        let mut words: Vec<String> = seed_to_words(&[0x80; 32]).to_vec();
        words[3] = "qqqqqq".to_owned();
        let message = words_to_seed(&words.join(" ")).unwrap_err().to_string();
        let repeated = (0..WORD_COUNT)
            .filter(|&i| i != 3)
            .any(|i| message.contains(&words[i]));
        assert!(!repeated, "{message}");
    }

    #[test]
    fn a_swapped_pair_of_words_fails_the_checksum() {
        let mut words: Vec<String> = seed_to_words(&[0x7f; 32]).to_vec();
        words.swap(0, 1);
        let err = words_to_seed(&words.join(" ")).unwrap_err();
        assert_eq!(err, PaperError::Checksum);
        assert!(err.to_string().contains("out of order"));
    }

    #[test]
    fn an_ambiguous_three_letter_prefix_is_refused() {
        let mut words: Vec<String> = seed_to_words(&random_seed()).to_vec();
        words[0] = "abs".to_owned();
        let err = words_to_seed(&words.join(" ")).unwrap_err();
        let PaperError::TooShort {
            position: 1,
            word,
            candidates,
        } = &err
        else {
            panic!("expected a too-short error, got {err:?}");
        };
        assert_eq!(word, "abs");
        assert_eq!(candidates, &["absent", "absorb", "abstract"]);
        assert!(err.to_string().contains("needs 4 letters or more"), "{err}");
    }

    #[test]
    fn three_letter_words_are_their_own_prefix() {
        assert_eq!(
            resolve(1, "ice"),
            Ok(Language::English.find_word("ice").unwrap())
        );
        assert_eq!(resolve(1, "zoo"), Ok(2047));
    }

    #[test]
    fn a_mistyped_prefix_still_gets_a_suggestion() {
        let PaperError::UnknownWord { suggestions, .. } = unknown_word(1, "abnd") else {
            unreachable!()
        };
        assert_eq!(suggestions.first(), Some(&"abandon"));
    }

    #[test]
    fn hostile_input_is_refused_without_panicking() {
        let long_word = "x".repeat(100_000);
        for input in [
            "", " ", "1.", "\u{0}", "ǅ", "\u{FDFA}", "12) 13:", &long_word,
        ] {
            assert!(words_to_seed(input).is_err(), "{input:?}");
        }
        let err = unknown_word(1, &long_word);
        assert!(err.to_string().len() < 100);
    }

    #[test]
    fn edit_distance_counts_swaps_as_one_edit() {
        let chars = |s: &str| s.chars().collect::<Vec<_>>();
        assert_eq!(edit_distance(&chars("abnadon"), &chars("abandon")), 1);
        assert_eq!(edit_distance(&chars("kitten"), &chars("sitting")), 3);
        assert_eq!(edit_distance(&chars(""), &chars("zoo")), 3);
    }
}
