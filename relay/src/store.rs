//! Durable store-and-forward: the only part of the relay that touches the disk.
//!
//! The store owns one sled 0.34 database holding a queue of opaque, end-to-end encrypted
//! envelopes per recipient, the (sender, message id) pairs seen recently, and the signed
//! roster in force. It never interprets an envelope or a roster.
//!
//! # Durability
//!
//! [`Store::enqueue`] and [`Store::set_roster`] answer only once their write is on stable
//! storage. sled's `flush` alone does not promise that: in 0.34.7 it writes each log
//! buffer with `pwrite` and then calls `sync_file_range(WAIT_BEFORE | WRITE | WAIT_AFTER)`
//! on that range of `db` (`pagecache/iobuf.rs`). That pushes the data pages to the device
//! but writes no file metadata (the size of a grown file, newly allocated extents) and
//! issues no cache flush to the device, so a power loss can still lose it; sled calls
//! `fsync` on `db` only from its periodic flusher thread (every 500 ms) and on segment
//! truncation. sled also writes `conf` when it creates a store and files in `blobs/` for
//! values too large for a log segment without ever fsyncing them, and renames `snap.*`
//! files into place without fsyncing the directory. So after `flush` every commit calls
//! `fsync` on `db` and, when a directory's entries changed since the last commit, on each
//! new file in it and on the directory (`blobs/` and the store directory); `conf` and the
//! directory's entry in its parent are synced once at open, since sled writes them only
//! then. The handles are opened once and kept.
//!
//! Writes go through one committer thread that takes every write waiting when it starts
//! a round and makes the round durable with one flush and one set of fsyncs (group
//! commit), so concurrent senders share the cost; [`StoreStats`] counts commits, writes
//! and the time spent waiting for the disk. A message and its seen-id, expiry entries and
//! sequence counter are applied as one sled batch, which sled recovers atomically, so a
//! crash at any instant (even `kill -9`, even power loss once acknowledged) leaves either
//! all of a write or none of it. Nothing depends on a clean shutdown.
//!
//! Removals ([`Store::ack`], [`Store::drop_recipient`], [`Store::expire`]) are not
//! fsynced: delivery is at-least-once, and a removal lost in a crash only means the
//! message is delivered again, which clients drop by message id. A wake-up is sent only
//! after the commit, but `pending` can see a message a moment before its commit completes;
//! if the relay then crashes, the sender is never acknowledged, retries, and the
//! recipient gets a duplicate that it drops.
//!
//! Known limit: sled 0.34 recovers a log damaged in the middle (a bad disk, not a crash)
//! by silently dropping everything after the damage. The store notices only a log that is
//! unreadable from the start (see [`Store::open`]); a partly damaged one opens with the
//! messages before the damage, and sequence numbers handed out after it are reused.

mod commit;
mod keys;
mod wake;

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use tokio::sync::oneshot;

use commit::{Committer, Counters, Message, Request, SyncFiles, Write};
pub use wake::Subscription;
use wake::Watchers;

/// How long a message waits for its recipient unless the operator says otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(21 * 24 * 60 * 60);

/// The file saying that the directory holds an initialised store.
pub(crate) const MARKER: &str = "breakglass-store";

/// What the marker file says to whoever finds it.
const MARKER_TEXT: &str = "This directory is a breakglass relay store (sled 0.34).\n";

/// Memory sled may use for its page cache.
const CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// What to do when sled cannot open a store that is not locked by another process.
const DAMAGED_HINT: &str = "if the store is damaged, move the directory aside and start \
    with an empty store; undelivered messages in it are lost, members keep their local \
    history";

/// What sled 0.34 says when another process holds the store's lock (`try_lock` fails with
/// `WouldBlock`, shown as its `Debug` form inside "could not acquire lock").
const LOCK_HELD: [&str; 3] = [
    "could not acquire lock",
    "WouldBlock",
    "Resource temporarily unavailable",
];

/// The relay's durable message queues and roster. Cheap to clone: every clone is a
/// handle on the same store, and the store closes when the last one is dropped.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

/// A message waiting for its recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queued {
    /// Its place in the recipient's queue; later messages have larger numbers.
    pub seq: u64,
    /// The envelope exactly as the sender handed it over.
    pub envelope: Vec<u8>,
}

/// Commit and queue counters, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Commits done since open; each is one sled flush plus one round of fsyncs.
    pub commits: u64,
    /// Writes (messages and rosters) those commits made durable.
    pub writes: u64,
    /// Writes handed to the committer and not answered yet.
    pub queued: u64,
    /// Time the last commit spent in sled's flush and the fsyncs, in microseconds.
    pub last_sync_micros: u64,
    /// Time all commits spent in sled's flush and the fsyncs, in microseconds.
    pub total_sync_micros: u64,
    /// Approximate number of queued messages, counting one per recipient.
    pub queue_depth: u64,
}

/// Why the store refused or failed an operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The sender already sent a message with this id, and that message is durable.
    #[error("duplicate message id from this sender")]
    Duplicate,
    /// The roster offered is not newer than the one stored.
    #[error("roster version {offered} is not newer than stored version {stored}")]
    RosterRollback {
        /// Version of the roster in force.
        stored: u64,
        /// Version of the roster refused.
        offered: u64,
    },
    /// A name is not a member name (`[a-z0-9._-]{1,64}`).
    #[error("invalid member name {0:?}")]
    Name(String),
    /// A message named no recipient.
    #[error("message has no recipients")]
    NoRecipients,
    /// The store path exists and is not a directory.
    #[error("store path {} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    /// Another process holds the store's lock.
    #[error(
        "store {} is in use by another process, probably a running breakglass-relay; \
         stop it first",
        .0.display()
    )]
    Locked(PathBuf),
    /// sled could not open the store directory.
    #[error("cannot open store {}: {reason}; {hint}", dir.display())]
    Open {
        /// The store directory.
        dir: PathBuf,
        /// What sled (or the file system) said.
        reason: String,
        /// What the operator can do about it.
        hint: &'static str,
    },
    /// sled failed a read or a removal.
    #[error("store i/o failed")]
    Sled(#[from] sled::Error),
    /// A value read from the store does not have the layout this version wrote.
    #[error("corrupt {0} in store")]
    Corrupt(&'static str),
    /// A commit failed earlier; no write is accepted until the relay restarts, because
    /// after a failed fsync the kernel may have dropped data it still reports as written.
    #[error("store stopped after a failed commit ({0}); restart the relay")]
    Failed(String),
    /// The committer thread is gone (it can only have panicked); the relay must restart.
    #[error("store is closed")]
    Closed,
}

impl Store {
    /// Opens (creating if needed) the store in `dir`; messages expire `ttl` after they
    /// are stored. Opening recovers from any crash; it scans the expiry index once to
    /// count the queued messages.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotADirectory`] when `dir` is a file; [`StoreError::Locked`] when
    /// another process holds it; [`StoreError::Open`] when the
    /// directory cannot be created, or when sled cannot
    /// read it or has lost its data (a marker file written at creation tells a damaged
    /// store from a new one), naming the directory, the reason and what to do.
    pub fn open(dir: &Path, ttl: Duration) -> Result<Store, StoreError> {
        if dir.exists() && !dir.is_dir() {
            return Err(StoreError::NotADirectory(dir.to_owned()));
        }
        create_private(dir).map_err(|e| StoreError::Open {
            dir: dir.to_owned(),
            reason: e.to_string(),
            hint: "check that the relay may create this directory",
        })?;
        let db = open_sled(dir)?;
        let open_error = |reason: String| StoreError::Open {
            dir: dir.to_owned(),
            reason,
            hint: DAMAGED_HINT,
        };
        let mut files = SyncFiles::open(dir).map_err(|e| open_error(e.to_string()))?;
        let next_seq = initialise(dir, &db, &mut files).map_err(open_error)?;
        let depth = count_queued(&db).map_err(|e| open_error(e.to_string()))?;
        tracing::info!(dir = %dir.display(), queued = depth, "store opened");
        Store::start(db, files, ttl, next_seq, depth).map_err(|e| open_error(e.to_string()))
    }

    /// Starts the committer thread on an opened database.
    fn start(
        db: sled::Db,
        files: SyncFiles,
        ttl: Duration,
        next_seq: u64,
        depth: u64,
    ) -> std::io::Result<Store> {
        let counters = Arc::new(Counters::with_depth(depth));
        let watchers = Arc::new(Watchers::default());
        let (requests, receiver) = mpsc::channel();
        #[cfg(test)]
        let gate = Arc::new(tokio::sync::Mutex::new(()));
        let committer = Committer {
            db: db.clone(),
            files,
            requests: receiver,
            counters: Arc::clone(&counters),
            watchers: Arc::clone(&watchers),
            next_seq,
            failed: None,
            #[cfg(test)]
            gate: Arc::clone(&gate),
        };
        let thread = std::thread::Builder::new().name("store-commit".into());
        let handle = thread.spawn(move || committer.run())?;

        let inner = Inner {
            db,
            ttl,
            requests: Some(requests),
            committer: Some(handle),
            counters,
            watchers,
            #[cfg(test)]
            gate,
        };
        Ok(Store {
            inner: Arc::new(inner),
        })
    }

    /// Stores `envelope` from `sender` in the queue of each recipient and returns once it
    /// is durable. It has the same sequence number in every one of those queues. The
    /// envelope is copied once here and shared by the queues in memory; on disk each queue
    /// holds its own copy. Dropping the future after the call started does not cancel the
    /// write.
    ///
    /// # Errors
    ///
    /// [`StoreError::Duplicate`] when `sender` already sent `id` within the TTL;
    /// [`StoreError::Name`] for a malformed name; [`StoreError::NoRecipients`];
    /// [`StoreError::Failed`] or [`StoreError::Closed`] when the store cannot write.
    pub async fn enqueue(
        &self,
        sender: &str,
        id: [u8; 16],
        recipients: &[String],
        envelope: &[u8],
    ) -> Result<(), StoreError> {
        keys::check_name(sender)?;
        let mut recipients = recipients.to_vec();
        recipients.sort_unstable();
        recipients.dedup();
        if recipients.is_empty() {
            return Err(StoreError::NoRecipients);
        }
        recipients
            .iter()
            .try_for_each(|name| keys::check_name(name))?;

        let ttl = u64::try_from(self.inner.ttl.as_millis()).unwrap_or(u64::MAX);
        let expires = keys::millis(SystemTime::now()).saturating_add(ttl);
        let message = Message {
            seen_key: keys::seen_key(sender, &id),
            recipients,
            value: keys::message_value(expires, envelope).into(),
            expires,
        };
        self.submit(Write::Message(message)).await.map(drop)
    }

    /// Up to `limit` unexpired messages for `recipient` with a sequence number above
    /// `after` (all of them when `None`), oldest first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Name`], [`StoreError::Sled`] or [`StoreError::Corrupt`].
    pub fn pending(
        &self,
        recipient: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Queued>, StoreError> {
        self.pending_at(recipient, after, limit, SystemTime::now())
    }

    /// Removes the listed messages from the queue of `recipient` and says how many were
    /// there. Sequence numbers of other recipients' messages match nothing. Not fsynced: a
    /// removal lost in a crash means one more delivery, which clients drop.
    ///
    /// # Errors
    ///
    /// [`StoreError::Name`], [`StoreError::Sled`] or [`StoreError::Corrupt`].
    pub fn ack(&self, recipient: &str, seqs: &[u64]) -> Result<usize, StoreError> {
        keys::check_name(recipient)?;
        let mut removed = 0;
        for &seq in seqs {
            removed += usize::from(self.remove_message(&keys::message_key(recipient, seq))?);
        }
        self.inner.counters.dequeued(removed);
        Ok(removed)
    }

    /// Removes every message queued for `recipient` (a member just revoked) and says how
    /// many there were. The time it takes grows with the queue: call it from a blocking
    /// task.
    ///
    /// # Errors
    ///
    /// [`StoreError::Name`], [`StoreError::Sled`] or [`StoreError::Corrupt`].
    pub fn drop_recipient(&self, recipient: &str) -> Result<usize, StoreError> {
        keys::check_name(recipient)?;
        let queue = self.inner.db.scan_prefix(keys::queue_prefix(recipient));
        let mut removed = 0;
        for key in queue.keys() {
            removed += usize::from(self.remove_message(&key?)?);
        }
        self.inner.counters.dequeued(removed);
        tracing::info!(recipient, removed, "dropped queue of revoked member");
        Ok(removed)
    }

    /// Removes the messages and seen-ids whose TTL ended at or before `now`; says how many
    /// messages (one per recipient) were removed. The time it takes grows with the number
    /// removed: call it from a blocking task.
    ///
    /// # Errors
    ///
    /// [`StoreError::Sled`] or [`StoreError::Corrupt`].
    pub fn expire(&self, now: SystemTime) -> Result<usize, StoreError> {
        let now = keys::millis(now);
        let (start, end) = keys::expired_range(now);
        let mut removed = 0;
        for entry in self.inner.db.range(start..end).keys() {
            let entry = entry?;
            let target = keys::expiry_target(&entry)?;
            if keys::is_message(target) {
                removed += usize::from(self.remove_message(target)?);
            } else {
                self.forget_seen(target, now)?;
            }
            self.inner.db.remove(&entry)?;
        }
        self.inner.counters.dequeued(removed);
        Ok(removed)
    }

    /// The signed roster in force, if one was ever stored.
    ///
    /// # Errors
    ///
    /// [`StoreError::Sled`] or [`StoreError::Corrupt`].
    pub fn roster(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.stored_roster()?.map(|(_, signed)| signed))
    }

    /// The version of the roster in force, if one was ever stored.
    ///
    /// # Errors
    ///
    /// [`StoreError::Sled`] or [`StoreError::Corrupt`].
    pub fn roster_version(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.stored_roster()?.map(|(version, _)| version))
    }

    /// Stores a verified, signed roster as the one in force and returns once it is
    /// durable. Storing the same version with the same bytes again changes nothing.
    ///
    /// # Errors
    ///
    /// [`StoreError::RosterRollback`] unless `version` is above the stored one;
    /// [`StoreError::Failed`] or [`StoreError::Closed`] when the store cannot write.
    pub async fn set_roster(&self, signed: &[u8], version: u64) -> Result<(), StoreError> {
        let write = Write::Roster {
            signed: signed.to_vec(),
            version,
        };
        self.submit(write).await.map(drop)
    }

    /// Learns when a message for `recipient` is stored; see [`Subscription`] for the
    /// order in which to subscribe and read.
    pub fn subscribe(&self, recipient: &str) -> Subscription {
        self.inner.watchers.subscribe(recipient)
    }

    /// The approximate number of queued messages, one per recipient. Counted at open,
    /// then kept up to date; it can drift from the truth only when the relay crashes
    /// between removing a message and removing its expiry entry, until the next open.
    pub fn queue_depth(&self) -> u64 {
        self.inner.counters.depth()
    }

    /// Commit and queue counters.
    pub fn stats(&self) -> StoreStats {
        self.inner.counters.snapshot()
    }

    /// Hands a write to the committer and waits for its answer.
    async fn submit(&self, write: Write) -> Result<u64, StoreError> {
        let requests = self.inner.requests.as_ref().ok_or(StoreError::Closed)?;
        let (reply, answer) = oneshot::channel();
        self.inner.counters.submitted();
        if requests.send(Request { write, reply }).is_err() {
            self.inner.counters.answered(1);
            return Err(StoreError::Closed);
        }
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// [`Store::pending`] as seen at `now`.
    fn pending_at(
        &self,
        recipient: &str,
        after: Option<u64>,
        limit: usize,
        now: SystemTime,
    ) -> Result<Vec<Queued>, StoreError> {
        keys::check_name(recipient)?;
        let Some((start, end)) = keys::queue_range(recipient, after) else {
            return Ok(Vec::new());
        };
        let now = keys::millis(now);
        let mut queued = Vec::new();
        for entry in self.inner.db.range(start..end) {
            if queued.len() >= limit {
                break;
            }
            let (key, value) = entry?;
            let (expires, envelope) = keys::split_prefixed(&value, "message")?;
            if expires > now {
                queued.push(Queued {
                    seq: keys::seq_of(&key)?,
                    envelope: envelope.to_vec(),
                });
            }
        }
        Ok(queued)
    }

    /// Removes one queued message and its expiry entry; says whether it was there.
    fn remove_message(&self, key: &[u8]) -> Result<bool, StoreError> {
        let Some(value) = self.inner.db.remove(key)? else {
            return Ok(false);
        };
        let (expires, _) = keys::split_prefixed(&value, "message")?;
        self.inner.db.remove(keys::expiry_key(expires, key))?;
        Ok(true)
    }

    /// Removes a seen-id unless it was stored again, with a later expiry, since.
    fn forget_seen(&self, key: &[u8], now: u64) -> Result<(), StoreError> {
        let Some(value) = self.inner.db.get(key)? else {
            return Ok(());
        };
        if keys::decode_u64(&value, "seen-id")? <= now {
            // Losing the race with a new commit of the same id leaves the new entry alone.
            let _ = self
                .inner
                .db
                .compare_and_swap(key, Some(value), None as Option<&[u8]>)?;
        }
        Ok(())
    }

    /// The stored roster's version and bytes.
    fn stored_roster(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let Some(value) = self.inner.db.get(keys::ROSTER)? else {
            return Ok(None);
        };
        let (version, signed) = keys::split_prefixed(&value, "roster")?;
        Ok(Some((version, signed.to_vec())))
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// What every [`Store`] clone shares.
struct Inner {
    db: sled::Db,
    ttl: Duration,
    /// Taken on drop to stop the committer.
    requests: Option<mpsc::Sender<Request>>,
    committer: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
    watchers: Arc<Watchers>,
    /// Held by tests to keep the committer from starting a round.
    #[cfg(test)]
    gate: Arc<tokio::sync::Mutex<()>>,
}

impl Drop for Inner {
    /// Stops the committer after its last round, so that sled's lock on the directory is
    /// released when the last handle is gone, and ends every subscription.
    fn drop(&mut self) {
        drop(self.requests.take());
        if let Some(handle) = self.committer.take() {
            if handle.join().is_err() {
                tracing::error!("store committer panicked");
            }
        }
        self.watchers.close();
    }
}

/// Creates the store directory, if missing, readable by the relay's user only: envelopes
/// are sealed, but who writes to whom and when is not.
fn create_private(dir: &Path) -> std::io::Result<()> {
    if dir.exists() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.recursive(true).create(dir)
}

/// Opens sled in `dir`, turning its errors, and any panic on a damaged store, into
/// [`StoreError::Open`].
fn open_sled(dir: &Path) -> Result<sled::Db, StoreError> {
    let config = sled::Config::new().path(dir).cache_capacity(CACHE_BYTES);
    let opened = panic::catch_unwind(AssertUnwindSafe(|| config.open()));
    let error = match opened {
        Ok(Ok(db)) => return Ok(db),
        Ok(Err(error)) => error,
        Err(panic) => sled::Error::ReportableBug(panic_message(panic.as_ref())),
    };
    let reason = error.to_string();
    if LOCK_HELD.iter().any(|s| reason.contains(s)) {
        return Err(StoreError::Locked(dir.to_owned()));
    }
    Err(StoreError::Open {
        dir: dir.to_owned(),
        reason,
        hint: DAMAGED_HINT,
    })
}

/// The text of a caught panic.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str));
    format!("sled panicked: {}", text.unwrap_or("no message"))
}

/// Returns the next sequence number to hand out, first making a new store recognisable.
///
/// sled opens a store whose `db` file is entirely unreadable as an empty one. A store
/// initialised here always holds the sequence counter before [`MARKER`] is created, so a
/// marker without a counter means sled has lost the data, and opening stops.
fn initialise(dir: &Path, db: &sled::Db, files: &mut SyncFiles) -> Result<u64, String> {
    let marker = dir.join(MARKER);
    let stored = db.get(keys::NEXT_SEQ).map_err(|e| e.to_string())?;
    match (stored, marker.exists()) {
        (Some(value), true) => {
            keys::decode_u64(&value, "sequence counter").map_err(|e| e.to_string())
        }
        (None, true) => {
            Err("sled found no data in a store that had some; its db file is damaged".into())
        }
        (stored, false) => {
            if stored.is_none() {
                db.insert(keys::NEXT_SEQ, &1_u64.to_be_bytes())
                    .map_err(|e| e.to_string())?;
            }
            db.flush().map_err(|e| e.to_string())?;
            write_marker(&marker, files).map_err(|e| e.to_string())?;
            initialise(dir, db, files)
        }
    }
}

/// Makes the counter durable, then creates the marker and makes it durable too.
fn write_marker(marker: &Path, files: &mut SyncFiles) -> std::io::Result<()> {
    files.sync()?;
    std::fs::write(marker, MARKER_TEXT)?;
    std::fs::File::open(marker)?.sync_all()?;
    files.sync()
}

/// Counts queued messages by their expiry entries, whose values are empty.
fn count_queued(db: &sled::Db) -> Result<u64, StoreError> {
    let mut count = 0;
    for entry in db.scan_prefix(keys::EXPIRIES).keys() {
        count += u64::from(keys::is_message(keys::expiry_target(&entry?)?));
    }
    Ok(count)
}

#[cfg(test)]
mod tests;
