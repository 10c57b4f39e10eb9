//! The client's local store: the history of messages seen and sent, and the newest roster.
//!
//! The history is an append-only file of JSON lines (`history.jsonl`) in the data folder,
//! not a database: several client processes of one member (a `chat` in one terminal, a
//! `send` in another) may use it at once, which sled's single-process lock would forbid.
//! Each record is one `write` to a file opened with `O_APPEND`, so concurrent writers do
//! not interleave within a line; a torn last line after a crash is skipped on reading.
//! Message ids seen are kept in memory to drop duplicates that arrive through several
//! relays or are delivered again after a lost acknowledgement.
//!
//! The newest verified roster is kept as `roster.signed`, so a relay that later serves an
//! older roster is caught as a rollback and cannot bring back a removed member.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// Lines longer than this are skipped when the history is read.
const MAX_LINE: usize = 2 * 1024 * 1024;

/// One message as the history keeps it and `--json` prints it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The message id, hex.
    pub id: String,
    /// `in` for received, `out` for sent.
    pub direction: String,
    /// The sender's name.
    pub from: String,
    /// The destination: a name or `#channel`.
    pub to: String,
    /// When the sender sealed it (RFC 3339).
    pub sent_at: String,
    /// The text.
    pub text: String,
    /// Whether the signature and membership checks passed (always true for shown messages).
    pub verified: bool,
    /// The relay it came through, or the relays it was accepted by.
    pub relay: String,
}

/// The local history of one member.
pub struct History {
    dir: PathBuf,
    file: File,
    seen: HashSet<String>,
}

impl History {
    /// Opens (creating it, mode 0700) the data folder and reads the history.
    ///
    /// # Errors
    ///
    /// When the folder or the file cannot be created or read.
    pub fn open(dir: &Path) -> Result<Self> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create data folder {}", dir.display()))?;
        let path = dir.join("history.jsonl");
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot open history {}", path.display()))?;
        let seen = read_ids(&path)?;
        end_torn_line(&file, &path)?;
        Ok(History {
            dir: dir.to_path_buf(),
            file,
            seen,
        })
    }

    /// Whether a message id was already recorded.
    pub fn seen(&self, id: &str) -> bool {
        self.seen.contains(id)
    }

    /// Appends a record; returns false (and writes nothing) when its id was seen before.
    ///
    /// # Errors
    ///
    /// When the history file cannot be written.
    pub fn record(&mut self, record: &Record) -> Result<bool> {
        if !self.seen.insert(record.id.clone()) {
            return Ok(false);
        }
        let mut line = serde_json::to_vec(record)?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .with_context(|| format!("cannot write history in {}", self.dir.display()))?;
        Ok(true)
    }

    /// Every record, oldest first.
    ///
    /// # Errors
    ///
    /// When the file cannot be read.
    pub fn records(&self) -> Result<Vec<Record>> {
        let file = File::open(self.dir.join("history.jsonl"))?;
        Ok(lines(file)
            .filter_map(|l| serde_json::from_str(&l).ok())
            .collect())
    }

    /// The newest roster kept, if any.
    pub fn roster(&self) -> Option<Vec<u8>> {
        fs::read(self.dir.join("roster.signed")).ok()
    }

    /// Keeps `signed` as the newest roster.
    ///
    /// # Errors
    ///
    /// When it cannot be written.
    pub fn save_roster(&self, signed: &[u8]) -> Result<()> {
        breakglass_keygen::keyio::write_public(&self.dir.join("roster.signed"), signed)
            .with_context(|| format!("cannot keep the roster in {}", self.dir.display()))
    }
}

/// Ends a line torn by a crash, so the next record starts on a line of its own.
fn end_torn_line(mut file: &File, path: &Path) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    if last[0] != b'\n' {
        file.write_all(b"\n")
            .with_context(|| format!("cannot repair {}", path.display()))?;
    }
    Ok(())
}

fn read_ids(path: &Path) -> Result<HashSet<String>> {
    #[derive(Deserialize)]
    struct IdOnly {
        id: String,
    }
    let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(lines(file)
        .filter_map(|l| serde_json::from_str::<IdOnly>(&l).ok())
        .map(|r| r.id)
        .collect())
}

/// The lines of a file, skipping unreadable and overlong ones.
fn lines(file: File) -> impl Iterator<Item = String> {
    BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .filter(|l| l.len() <= MAX_LINE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> Record {
        Record {
            id: id.into(),
            direction: "in".into(),
            from: "alice".into(),
            to: "bob".into(),
            sent_at: "2026-01-01T00:00:00Z".into(),
            text: "hi".into(),
            verified: true,
            relay: "dev".into(),
        }
    }

    #[test]
    fn a_message_id_is_recorded_once_across_reopens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut h = History::open(dir.path()).expect("opens");
        assert!(h.record(&record("aa")).expect("writes"));
        assert!(!h.record(&record("aa")).expect("writes"));
        drop(h);
        let mut h = History::open(dir.path()).expect("reopens");
        assert!(h.seen("aa"));
        assert!(!h.record(&record("aa")).expect("writes"));
        assert_eq!(h.records().expect("reads").len(), 1);
    }

    #[test]
    fn a_torn_last_line_is_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut h = History::open(dir.path()).expect("opens");
        h.record(&record("aa")).expect("writes");
        drop(h);
        let path = dir.path().join("history.jsonl");
        let mut f = OpenOptions::new().append(true).open(&path).expect("opens");
        f.write_all(b"{\"id\":\"bb\",\"dire").expect("writes");
        let mut h = History::open(dir.path()).expect("reopens");
        assert!(h.seen("aa"));
        assert!(!h.seen("bb"));
        h.record(&record("cc")).expect("writes");
        drop(h);
        let h = History::open(dir.path()).expect("reopens");
        assert!(h.seen("cc"), "a record after a torn line was lost");
    }
}
