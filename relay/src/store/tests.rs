use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use tempfile::TempDir;
use tokio::task::JoinSet;

use super::*;

const HOUR: Duration = Duration::from_secs(3600);

fn temp_store() -> (TempDir, Store) {
    let dir = TempDir::new().unwrap();
    let store = Store::open(&dir.path().join("store"), HOUR).unwrap();
    (dir, store)
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|name| (*name).to_owned()).collect()
}

fn id(n: u8) -> [u8; 16] {
    [n; 16]
}

fn seqs(queued: &[Queued]) -> Vec<u64> {
    queued.iter().map(|q| q.seq).collect()
}

#[tokio::test]
async fn pending_returns_messages_in_the_order_sent_and_ack_removes_them() {
    let (_dir, store) = temp_store();
    for n in 0..5 {
        store
            .enqueue("alice", id(n), &names(&["bob"]), &[n; 40])
            .await
            .unwrap();
    }

    let pending = store.pending("bob", None, 10).unwrap();
    assert_eq!(pending.len(), 5);
    assert!(pending.windows(2).all(|pair| pair[0].seq < pair[1].seq));
    let envelopes: Vec<u8> = pending.iter().map(|q| q.envelope[0]).collect();
    assert_eq!(envelopes, [0, 1, 2, 3, 4]);
    assert_eq!(
        store.pending("bob", Some(pending[1].seq), 2).unwrap(),
        pending[2..4]
    );

    assert_eq!(store.ack("bob", &seqs(&pending[..3])).unwrap(), 3);
    assert_eq!(store.pending("bob", None, 10).unwrap(), pending[3..]);
    assert_eq!(store.queue_depth(), 2);
}

#[tokio::test]
async fn acking_another_recipients_seq_removes_nothing() {
    let (_dir, store) = temp_store();
    store
        .enqueue("alice", id(1), &names(&["bob"]), b"for bob")
        .await
        .unwrap();
    let seq = store.pending("bob", None, 1).unwrap()[0].seq;

    assert_eq!(store.ack("carol", &[seq]).unwrap(), 0);
    assert_eq!(store.ack("bob", &[seq + 1]).unwrap(), 0);
    assert_eq!(seqs(&store.pending("bob", None, 10).unwrap()), [seq]);
}

#[tokio::test]
async fn a_message_to_several_recipients_is_queued_for_each() {
    let (_dir, store) = temp_store();
    let to = names(&["bob", "carol", "bob"]);
    store.enqueue("alice", id(1), &to, b"hello").await.unwrap();
    let seq = store.pending("carol", None, 1).unwrap()[0].seq;

    for name in ["bob", "carol"] {
        let pending = store.pending(name, None, 10).unwrap();
        assert_eq!(
            pending,
            [Queued {
                seq,
                envelope: b"hello".to_vec()
            }]
        );
    }
    assert_eq!(store.queue_depth(), 2);
    assert_eq!(store.ack("bob", &[seq]).unwrap(), 1);
    assert_eq!(store.pending("carol", None, 10).unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_enqueues_share_commits() {
    let (_dir, store) = temp_store();
    let mut tasks = JoinSet::new();
    for n in 0..100 {
        let store = store.clone();
        tasks.spawn(async move { store.enqueue("alice", id(n), &names(&["bob"]), b"x").await });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap().unwrap();
    }

    let stats = store.stats();
    assert_eq!(stats.writes, 100);
    assert!(stats.commits < 50, "{stats:?}");
    assert_eq!(store.pending("bob", None, 200).unwrap().len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_takes_every_write_waiting_when_it_starts() {
    let (_dir, store) = temp_store();
    let held = store.inner.gate.lock().await;
    let mut tasks = JoinSet::new();
    for n in 0..100 {
        let store = store.clone();
        tasks.spawn(async move { store.enqueue("alice", id(n), &names(&["bob"]), b"x").await });
    }
    while store.stats().queued < 100 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    drop(held);
    while let Some(result) = tasks.join_next().await {
        result.unwrap().unwrap();
    }
    let stats = store.stats();
    assert_eq!((stats.writes, stats.queued), (100, 0));
    // One round, or two if the last sender was between counting and sending.
    assert!(stats.commits <= 2, "{stats:?}");
}

#[tokio::test]
async fn a_duplicate_message_id_is_refused_and_stores_nothing() {
    let (_dir, store) = temp_store();
    store
        .enqueue("alice", id(7), &names(&["bob"]), b"first")
        .await
        .unwrap();

    let again = store
        .enqueue("alice", id(7), &names(&["carol"]), b"second")
        .await;
    assert!(matches!(again, Err(StoreError::Duplicate)), "{again:?}");
    assert!(store.pending("carol", None, 10).unwrap().is_empty());
    assert_eq!(store.pending("bob", None, 10).unwrap().len(), 1);
    assert_eq!(store.stats().writes, 1);

    store
        .enqueue("dave", id(7), &names(&["bob"]), b"same id, other sender")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_in_the_same_commit_are_refused() {
    let (_dir, store) = temp_store();
    let held = store.inner.gate.lock().await;
    let mut tasks = JoinSet::new();
    for _ in 0..10 {
        let store = store.clone();
        tasks.spawn(async move { store.enqueue("alice", id(1), &names(&["bob"]), b"x").await });
    }
    while store.stats().queued < 10 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    drop(held);
    let results = tasks.join_all().await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert_eq!(store.pending("bob", None, 10).unwrap().len(), 1);
}

#[tokio::test]
async fn expired_messages_are_hidden_and_expire_deletes_them() {
    let (_dir, store) = temp_store();
    store
        .enqueue("alice", id(1), &names(&["bob", "carol"]), b"old")
        .await
        .unwrap();
    let later = SystemTime::now() + 2 * HOUR;

    assert_eq!(store.pending("bob", None, 10).unwrap().len(), 1);
    assert!(store.pending_at("bob", None, 10, later).unwrap().is_empty());

    assert_eq!(store.expire(SystemTime::now()).unwrap(), 0);
    assert_eq!(store.expire(later).unwrap(), 2);
    assert!(store.pending("bob", None, 10).unwrap().is_empty());
    assert_eq!(store.queue_depth(), 0);
    assert_eq!(store.inner.db.len(), 1, "only the sequence counter is left");
}

#[tokio::test]
async fn a_seen_id_expires_with_the_ttl() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path(), Duration::from_millis(1)).unwrap();
    store
        .enqueue("alice", id(1), &names(&["bob"]), b"x")
        .await
        .unwrap();
    std::thread::sleep(Duration::from_millis(5));

    store
        .enqueue("alice", id(1), &names(&["bob"]), b"x")
        .await
        .unwrap();
    assert_eq!(store.expire(SystemTime::now() + HOUR).unwrap(), 2);
    assert_eq!(store.inner.db.len(), 1, "only the sequence counter is left");
}

#[tokio::test]
async fn drop_recipient_removes_only_that_members_queue() {
    let (_dir, store) = temp_store();
    store
        .enqueue("alice", id(1), &names(&["bob", "bobby"]), b"a")
        .await
        .unwrap();
    store
        .enqueue("alice", id(2), &names(&["bob"]), b"b")
        .await
        .unwrap();

    assert_eq!(store.drop_recipient("bob").unwrap(), 2);
    assert!(store.pending("bob", None, 10).unwrap().is_empty());
    assert_eq!(store.pending("bobby", None, 10).unwrap().len(), 1);
    assert_eq!(store.queue_depth(), 1);
    assert_eq!(store.expire(SystemTime::now() + 2 * HOUR).unwrap(), 1);
}

#[tokio::test]
async fn messages_and_roster_survive_reopening() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path(), HOUR).unwrap();
    store
        .enqueue("alice", id(1), &names(&["bob"]), b"one")
        .await
        .unwrap();
    store.set_roster(b"signed roster v3", 3).await.unwrap();
    drop(store);

    let store = Store::open(dir.path(), HOUR).unwrap();
    assert_eq!(
        store.roster().unwrap().as_deref(),
        Some(&b"signed roster v3"[..])
    );
    assert_eq!(store.roster_version().unwrap(), Some(3));
    assert_eq!(store.queue_depth(), 1);
    store
        .enqueue("alice", id(2), &names(&["bob"]), b"two")
        .await
        .unwrap();
    let again = store
        .enqueue("alice", id(1), &names(&["bob"]), b"one")
        .await;
    assert!(matches!(again, Err(StoreError::Duplicate)), "{again:?}");
    let pending = store.pending("bob", None, 10).unwrap();
    let envelopes: Vec<&[u8]> = pending.iter().map(|q| q.envelope.as_slice()).collect();
    assert_eq!(envelopes, [&b"one"[..], b"two"]);
    assert!(
        pending[0].seq < pending[1].seq,
        "sequence numbers keep growing after reopen"
    );
}

#[tokio::test]
async fn an_abandoned_store_keeps_every_acknowledged_write() {
    let dir = TempDir::new().unwrap();
    let live = dir.path().join("live");
    let store = Store::open(&live, HOUR).unwrap();
    for n in 0..50 {
        store
            .enqueue("alice", id(n), &names(&["bob"]), &[n; 300])
            .await
            .unwrap();
    }
    store.set_roster(b"roster", 1).await.unwrap();

    // The files as they are now, with no clean close, are what `kill -9` would leave.
    let image = dir.path().join("image");
    copy_dir(&live, &image);
    std::mem::forget(store);

    let store = Store::open(&image, HOUR).unwrap();
    let pending = store.pending("bob", None, 100).unwrap();
    assert_eq!(pending.len(), 50);
    assert!(pending
        .iter()
        .enumerate()
        .all(|(n, q)| q.envelope == [n as u8; 300]));
    assert_eq!(store.roster_version().unwrap(), Some(1));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Where [`crash_child`] writes; set only in the child process.
const CRASH_DIR: &str = "BREAKGLASS_STORE_CRASH_DIR";

#[test]
fn a_store_killed_mid_write_keeps_every_acknowledged_message() {
    let dir = TempDir::new().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "store::tests::crash_child",
            "--ignored",
            "--nocapture",
        ])
        .env(CRASH_DIR, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = Vec::new();
    while acked.len() < 300 {
        let line = lines.next().unwrap().unwrap();
        if let Some(envelope) = line.strip_prefix("acked ") {
            acked.push(envelope.to_owned());
        }
    }

    // SIGKILL while the writers are still going; the pipe stays open until it is dead.
    child.kill().unwrap();
    child.wait().unwrap();
    drop(lines);
    let store = Store::open(dir.path(), HOUR).unwrap();
    let pending = store.pending("bob", None, usize::MAX).unwrap();
    let stored: Vec<String> = pending.iter().map(|q| hex(&q.envelope)).collect();
    let lost: Vec<&String> = acked.iter().filter(|ack| !stored.contains(ack)).collect();
    assert!(lost.is_empty(), "lost acknowledged messages {lost:?}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Run by [`a_store_killed_mid_write_keeps_every_acknowledged_message`] in a child process,
/// which it kills with SIGKILL while eight writers are busy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child process by a crash test"]
async fn crash_child() {
    let Some(dir) = std::env::var_os(CRASH_DIR) else {
        return;
    };
    let store = Store::open(Path::new(&dir), HOUR).unwrap();
    let mut writers = JoinSet::new();
    for writer in 0..8u8 {
        let store = store.clone();
        writers.spawn(async move {
            for n in 0..=u8::MAX {
                let mut message = id(n);
                message[0] = writer;
                let envelope = [[writer, n].as_slice(), &[0xEE; 500]].concat();
                store
                    .enqueue("alice", message, &names(&["bob"]), &envelope)
                    .await
                    .unwrap();
                println!("acked {}", hex(&envelope));
            }
        });
    }
    writers.join_all().await;
}

#[test]
fn opening_a_regular_file_is_refused() {
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("store");
    std::fs::write(&file, b"not a store").unwrap();

    let error = Store::open(&file, HOUR).unwrap_err();
    assert!(matches!(error, StoreError::NotADirectory(_)), "{error:?}");
    assert!(error.to_string().contains("is not a directory"), "{error}");
}

#[test]
fn opening_a_damaged_store_names_the_directory_and_the_way_out() {
    for damaged in [&["conf"][..], &["db"], &["conf", "db"]] {
        let dir = TempDir::new().unwrap();
        let store = Store::open(dir.path(), HOUR).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime
            .block_on(store.enqueue("alice", id(1), &names(&["bob"]), b"x"))
            .unwrap();
        drop(store);
        for file in damaged {
            std::fs::write(dir.path().join(file), [0xA5; 4096]).unwrap();
        }

        let error = Store::open(dir.path(), HOUR).unwrap_err().to_string();
        assert!(error.contains(&dir.path().display().to_string()), "{error}");
        assert!(error.contains("move the directory aside"), "{error}");
    }
}

#[test]
fn opening_a_store_in_use_says_so() {
    let (dir, _store) = temp_store();
    let error = Store::open(&dir.path().join("store"), HOUR)
        .unwrap_err()
        .to_string();
    assert!(error.contains("another process"), "{error}");
    assert!(
        !error.contains("Os {") && !error.contains("WouldBlock"),
        "{error}"
    );
    assert!(!error.contains('\n'), "{error}");
}

#[tokio::test]
async fn an_older_roster_is_refused() {
    let (_dir, store) = temp_store();
    store.set_roster(b"v2", 2).await.unwrap();
    store.set_roster(b"v2", 2).await.unwrap();

    let older = store.set_roster(b"v1", 1).await;
    assert!(matches!(
        older,
        Err(StoreError::RosterRollback {
            stored: 2,
            offered: 1
        })
    ));
    let other = store.set_roster(b"another v2", 2).await;
    assert!(
        matches!(other, Err(StoreError::RosterRollback { .. })),
        "{other:?}"
    );
    assert_eq!(store.roster().unwrap().as_deref(), Some(&b"v2"[..]));
}

#[tokio::test]
async fn subscribe_wakes_on_enqueue_for_that_recipient_only() {
    let (_dir, store) = temp_store();
    let mut bob = store.subscribe("bob");
    let mut carol = store.subscribe("carol");

    store
        .enqueue("alice", id(1), &names(&["bob"]), b"x")
        .await
        .unwrap();
    store
        .enqueue("alice", id(2), &names(&["bob"]), b"y")
        .await
        .unwrap();
    let wait = Duration::from_secs(5);
    tokio::time::timeout(wait, bob.changed()).await.unwrap();
    let quiet = Duration::from_millis(50);
    assert!(
        tokio::time::timeout(quiet, bob.changed()).await.is_err(),
        "one wake-up for both"
    );
    assert!(tokio::time::timeout(quiet, carol.changed()).await.is_err());
}

#[tokio::test]
async fn the_last_subscription_to_go_removes_its_entry() {
    let (_dir, store) = temp_store();
    let first = store.subscribe("bob");
    let second = store.subscribe("bob");
    assert_eq!(store.inner.watchers.watched(), 1);

    drop(first);
    assert_eq!(store.inner.watchers.watched(), 1);
    drop(second);
    assert_eq!(store.inner.watchers.watched(), 0);
}

#[tokio::test]
async fn a_subscription_outliving_the_store_never_wakes() {
    let (_dir, store) = temp_store();
    let mut bob = store.subscribe("bob");
    drop(store);

    let quiet = Duration::from_millis(50);
    assert!(
        tokio::time::timeout(quiet, bob.changed()).await.is_err(),
        "no wake-up loop"
    );
}

#[tokio::test]
async fn malformed_names_are_refused() {
    let (_dir, store) = temp_store();
    for name in ["", "Bob", "bob\0", "a/b", &"a".repeat(65)] {
        let result = store.enqueue(name, id(1), &names(&["bob"]), b"x").await;
        assert!(
            matches!(result, Err(StoreError::Name(_))),
            "{name:?}: {result:?}"
        );
        assert!(matches!(
            store.pending(name, None, 1),
            Err(StoreError::Name(_))
        ));
    }
    let none = store.enqueue("alice", id(1), &[], b"x").await;
    assert!(matches!(none, Err(StoreError::NoRecipients)), "{none:?}");
}

/// Prints how many messages per second reach the disk with 1 and with 32 concurrent
/// writers, and how many commits each message costs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --ignored --nocapture"]
async fn throughput() {
    for (writers, each) in [(1_u16, 1000_u16), (32, 250)] {
        let (_dir, store) = temp_store();
        let started = Instant::now();
        let mut tasks = JoinSet::new();
        for writer in 0..writers {
            let store = store.clone();
            tasks.spawn(async move {
                for n in 0..each {
                    let mut message = [0; 16];
                    message[..4].copy_from_slice(&[writer.to_be_bytes(), n.to_be_bytes()].concat());
                    store
                        .enqueue("alice", message, &names(&["bob"]), &[7; 1024])
                        .await
                        .unwrap();
                }
            });
        }
        tasks.join_all().await;

        let seconds = started.elapsed().as_secs_f64();
        let stats = store.stats();
        println!(
            "{writers:>2} writers: {:.0} messages/s, {:.3} commits per message, {} us per sync",
            stats.writes as f64 / seconds,
            stats.commits as f64 / stats.writes as f64,
            stats.total_sync_micros / stats.commits,
        );
    }
}

#[test]
fn a_new_store_directory_is_private_to_the_relay() {
    use std::os::unix::fs::PermissionsExt;

    let (dir, _store) = temp_store();
    let mode = std::fs::metadata(dir.path().join("store"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
}
