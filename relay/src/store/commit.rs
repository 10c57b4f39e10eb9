//! The committer: the one thread that writes enqueued messages and rosters to sled and
//! makes them durable, many writes per fsync.
//!
//! Callers hand it a [`Request`] over a channel and await a oneshot reply. Each round takes
//! every request waiting at that moment, stages them all into one sled batch, applies it,
//! makes it durable with [`SyncFiles::sync`] and only then answers every caller of the
//! round. Writes that arrive during a commit wait for the next round, so N concurrent
//! writers share about one fsync. Being the only writer of new messages, the committer also
//! owns the sequence counter and the duplicate check, so neither needs a lock.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Instant, SystemTime};

use sled::{Batch, Db, IVec};
use tokio::sync::oneshot;

use super::keys;
use super::wake::Watchers;
use super::{StoreError, StoreStats};

/// Most requests staged in one round, to bound the memory of a batch.
const ROUND_MAX: usize = 4096;

/// One durable write and where to send its outcome.
pub(super) struct Request {
    pub(super) write: Write,
    pub(super) reply: Reply,
}

/// The answer to a [`Request`]: the message's sequence number, or the roster's version.
pub(super) type Outcome = Result<u64, StoreError>;

/// Where the committer sends an [`Outcome`].
pub(super) type Reply = oneshot::Sender<Outcome>;

/// What a [`Request`] writes.
pub(super) enum Write {
    /// A message for one or more recipients; answered with its sequence number.
    Message(Message),
    /// A signed roster and its version; answered with the version.
    Roster { signed: Vec<u8>, version: u64 },
}

/// A message ready to stage: keys and value are built by the caller, off this thread.
pub(super) struct Message {
    pub(super) seen_key: Vec<u8>,
    /// Distinct, validated member names.
    pub(super) recipients: Vec<String>,
    /// Expiry, then envelope; shared (not copied) between the recipients' queues.
    pub(super) value: IVec,
    pub(super) expires: u64,
}

/// Counters shared between the committer, the store handles and metrics scrapes.
#[derive(Default)]
pub(super) struct Counters {
    commits: AtomicU64,
    writes: AtomicU64,
    queued: AtomicU64,
    last_sync_micros: AtomicU64,
    total_sync_micros: AtomicU64,
    depth: AtomicU64,
}

impl Counters {
    /// Starts the queue depth at the count found when opening.
    pub(super) fn with_depth(depth: u64) -> Counters {
        let counters = Counters::default();
        counters.depth.store(depth, Ordering::Relaxed);
        counters
    }

    /// Counts a request handed to the committer and not yet answered.
    pub(super) fn submitted(&self) {
        self.queued.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts messages removed from queues, by ack, expiry or revocation.
    pub(super) fn dequeued(&self, removed: usize) {
        let removed = u64::try_from(removed).unwrap_or(u64::MAX);
        let update = |depth: u64| Some(depth.saturating_sub(removed));
        let _ = self
            .depth
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, update);
    }

    /// The approximate number of queued messages.
    pub(super) fn depth(&self) -> u64 {
        self.depth.load(Ordering::Relaxed)
    }

    /// A consistent-enough copy of every counter.
    pub(super) fn snapshot(&self) -> StoreStats {
        StoreStats {
            commits: self.commits.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            queued: self.queued.load(Ordering::Relaxed),
            last_sync_micros: self.last_sync_micros.load(Ordering::Relaxed),
            total_sync_micros: self.total_sync_micros.load(Ordering::Relaxed),
            queue_depth: self.depth(),
        }
    }

    fn committed(&self, writes: usize, stored: usize, micros: u64) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.writes.fetch_add(writes as u64, Ordering::Relaxed);
        self.depth.fetch_add(stored as u64, Ordering::Relaxed);
        self.last_sync_micros.store(micros, Ordering::Relaxed);
        self.total_sync_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Counts requests answered, or never handed over.
    pub(super) fn answered(&self, requests: usize) {
        self.queued.fetch_sub(requests as u64, Ordering::Relaxed);
    }
}

/// The committer thread's state.
pub(super) struct Committer {
    pub(super) db: Db,
    pub(super) files: SyncFiles,
    pub(super) requests: mpsc::Receiver<Request>,
    pub(super) counters: Arc<Counters>,
    pub(super) watchers: Arc<Watchers>,
    pub(super) next_seq: u64,
    /// Why the store stopped accepting writes, once a commit has failed.
    pub(super) failed: Option<String>,
    /// Held by tests to stop rounds from starting.
    #[cfg(test)]
    pub(super) gate: Arc<tokio::sync::Mutex<()>>,
}

/// One round's staged writes and the outcome owed to each caller.
struct Round {
    batch: Batch,
    outcomes: Vec<(Reply, Outcome)>,
    /// Seen-id keys staged in this round, which sled cannot see yet.
    seen: HashSet<Vec<u8>>,
    /// The roster version staged in this round, if any.
    roster: Option<(u64, Vec<u8>)>,
    /// Queue entries staged, and the wake-ups to send once durable.
    wakes: Vec<(String, u64)>,
    writes: usize,
}

impl Committer {
    /// Runs rounds until every store handle is gone.
    pub(super) fn run(mut self) {
        while let Ok(first) = self.requests.recv() {
            #[cfg(test)]
            let gate = Arc::clone(&self.gate);
            #[cfg(test)]
            let _held = gate.blocking_lock();
            let requests = self.gather(first);
            self.commit(requests);
        }
    }

    /// Takes `first` and every request already waiting behind it.
    fn gather(&self, first: Request) -> Vec<Request> {
        let mut requests = vec![first];
        while requests.len() < ROUND_MAX {
            match self.requests.try_recv() {
                Ok(request) => requests.push(request),
                Err(_) => break,
            }
        }
        requests
    }

    /// Stages, makes durable and answers one round of requests.
    fn commit(&mut self, requests: Vec<Request>) {
        let count = requests.len();
        let mut round = Round::new();
        for request in requests {
            let outcome = self.stage(&mut round, request.write);
            round.outcomes.push((request.reply, outcome));
        }

        if round.writes > 0 {
            self.make_durable(&mut round);
        }

        self.counters.answered(count);
        if self.failed.is_none() {
            self.watchers.notify(&round.wakes);
        }
        for (reply, outcome) in round.outcomes {
            let _ = reply.send(outcome);
        }
    }

    /// Stages one write into the round, or says why it is refused.
    fn stage(&mut self, round: &mut Round, write: Write) -> Outcome {
        if let Some(reason) = &self.failed {
            return Err(StoreError::Failed(reason.clone()));
        }
        match write {
            Write::Message(message) => self.stage_message(round, message),
            Write::Roster { signed, version } => self.stage_roster(round, signed, version),
        }
    }

    fn stage_message(&mut self, round: &mut Round, message: Message) -> Result<u64, StoreError> {
        if round.seen.contains(&message.seen_key) || self.seen_alive(&message.seen_key)? {
            return Err(StoreError::Duplicate);
        }
        let seq = self.next_seq;
        self.next_seq += 1;

        let batch = &mut round.batch;
        batch.insert(
            keys::expiry_key(message.expires, &message.seen_key),
            IVec::default(),
        );
        batch.insert(message.seen_key.as_slice(), &message.expires.to_be_bytes());
        for recipient in message.recipients {
            let key = keys::message_key(&recipient, seq);
            batch.insert(keys::expiry_key(message.expires, &key), IVec::default());
            batch.insert(key, message.value.clone());
            round.wakes.push((recipient, seq));
        }
        batch.insert(keys::NEXT_SEQ, &self.next_seq.to_be_bytes());

        round.seen.insert(message.seen_key);
        round.writes += 1;
        Ok(seq)
    }

    /// Whether a seen-id is on disk and has not expired yet.
    fn seen_alive(&self, key: &[u8]) -> Result<bool, StoreError> {
        let Some(value) = self.db.get(key)? else {
            return Ok(false);
        };
        let expires = keys::decode_u64(&value, "seen-id")?;
        Ok(expires > keys::millis(SystemTime::now()))
    }

    fn stage_roster(
        &mut self,
        round: &mut Round,
        signed: Vec<u8>,
        version: u64,
    ) -> Result<u64, StoreError> {
        if let Some((stored, bytes)) = self.current_roster(round)? {
            if stored == version && bytes == signed {
                return Ok(version);
            }
            if stored >= version {
                return Err(StoreError::RosterRollback {
                    stored,
                    offered: version,
                });
            }
        }
        round
            .batch
            .insert(keys::ROSTER, keys::prefixed(version, &signed));
        round.roster = Some((version, signed));
        round.writes += 1;
        Ok(version)
    }

    /// The roster staged in this round, else the one on disk.
    fn current_roster(&self, round: &Round) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        if let Some(staged) = &round.roster {
            return Ok(Some(staged.clone()));
        }
        let Some(value) = self.db.get(keys::ROSTER)? else {
            return Ok(None);
        };
        let (version, signed) = keys::split_prefixed(&value, "roster")?;
        Ok(Some((version, signed.to_vec())))
    }

    /// Applies the round's batch and waits until it is on stable storage. On failure every
    /// staged write is answered with [`StoreError::Failed`] and so is every later one.
    fn make_durable(&mut self, round: &mut Round) {
        match self.write_and_sync(std::mem::take(&mut round.batch)) {
            Ok(micros) => self
                .counters
                .committed(round.writes, round.wakes.len(), micros),
            Err(reason) => self.fail(round, reason),
        }
    }

    /// Applies `batch`, then flushes and fsyncs; returns the microseconds the latter took.
    fn write_and_sync(&mut self, batch: Batch) -> Result<u64, String> {
        self.db.apply_batch(batch).map_err(|e| e.to_string())?;
        let started = Instant::now();
        self.db.flush().map_err(|e| e.to_string())?;
        self.files.sync().map_err(|e| e.to_string())?;
        Ok(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    /// Refuses the round's writes, and every later one, after a failed commit.
    ///
    /// After a failed `fsync` Linux may already have marked the unwritten pages clean, so a
    /// retry can report success for data that never reached the disk; only reopening, which
    /// reads back what is really there, is safe.
    fn fail(&mut self, round: &mut Round, reason: String) {
        tracing::error!(
            %reason,
            "store commit failed; refusing writes until the relay is restarted"
        );
        for (_, outcome) in &mut round.outcomes {
            if outcome.is_ok() {
                *outcome = Err(StoreError::Failed(reason.clone()));
            }
        }
        self.failed = Some(reason);
    }
}

impl Round {
    fn new() -> Round {
        Round {
            batch: Batch::default(),
            outcomes: Vec::new(),
            seen: HashSet::new(),
            roster: None,
            wakes: Vec::new(),
            writes: 0,
        }
    }
}

/// Open handles on the files sled writes, to `fsync` them after sled's own flush.
///
/// sled 0.34 writes `db` (the log, grown and truncated in place), `conf` (once, when the
/// store is created; never fsynced by sled), `blobs/<lsn>` (values too large for a log
/// segment; written and never fsynced by sled) and `snap.<lsn>` (fsynced, then renamed
/// into place without a directory fsync).
pub(super) struct SyncFiles {
    db: File,
    dir: Listing,
    blobs: Listing,
}

impl SyncFiles {
    /// Opens the handles and makes durable everything sled wrote while opening or before a
    /// crash, including the store directory's own entry in its parent.
    pub(super) fn open(dir: &Path) -> io::Result<SyncFiles> {
        File::open(dir.join("conf"))?.sync_all()?;
        let mut files = SyncFiles {
            db: File::open(dir.join("db"))?,
            dir: Listing::open(dir)?,
            blobs: Listing::open(&dir.join("blobs"))?,
        };
        files.sync()?;
        if let Some(parent) = dir.canonicalize()?.parent() {
            File::open(parent)?.sync_all()?;
        }
        Ok(files)
    }

    /// `fsync`s the log, then any file that appeared since the last call (new blobs, a
    /// renamed snapshot) and the directory naming it.
    pub(super) fn sync(&mut self) -> io::Result<()> {
        self.db.sync_all()?;
        self.blobs.sync_changes()?;
        self.dir.sync_changes()
    }
}

/// A directory and the names it held when last made durable.
///
/// Reading a small directory costs a few microseconds; an `fsync` of one, even unchanged,
/// costs about a hundred on ext4, so the directory is synced only when its names change.
struct Listing {
    path: PathBuf,
    handle: File,
    names: HashSet<OsString>,
}

impl Listing {
    /// Opens `path`, with nothing in it counted as durable yet.
    fn open(path: &Path) -> io::Result<Listing> {
        let handle = File::open(path)?;
        Ok(Listing {
            path: path.to_owned(),
            handle,
            names: HashSet::new(),
        })
    }

    /// `fsync`s the entries added since the last call, then the directory itself, if its
    /// names changed at all. sled never rewrites a file under an existing name.
    fn sync_changes(&mut self) -> io::Result<()> {
        let mut names = HashSet::with_capacity(self.names.len());
        for entry in fs::read_dir(&self.path)? {
            names.insert(entry?.file_name());
        }
        if names == self.names {
            return Ok(());
        }
        for name in names.difference(&self.names) {
            sync_if_present(&self.path.join(name))?;
        }
        self.handle.sync_all()?;
        self.names = names;
        Ok(())
    }
}

/// `fsync`s a file or directory that sled may delete at any moment.
fn sync_if_present(path: &Path) -> io::Result<()> {
    match File::open(path) {
        Ok(file) => file.sync_all(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}
