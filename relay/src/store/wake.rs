//! Wake-ups for live delivery: one `watch` channel per recipient somebody is waiting for.
//!
//! A watch channel holds only the latest sequence number stored for its recipient, so a
//! slow connection task never lags or loses a wake-up: however many messages arrive while
//! it is busy, it sees one change and reads them all with `pending`. An entry exists only
//! while a [`Subscription`] for that recipient is alive; the last one to go removes it.
//! Entries are created and removed under the map's lock, which makes the receiver count
//! checked on removal exact.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

/// The watch channels of the recipients somebody is waiting for.
#[derive(Default)]
pub(super) struct Watchers {
    channels: Mutex<HashMap<String, watch::Sender<u64>>>,
}

impl Watchers {
    /// Starts watching `recipient`; the subscription stops when dropped.
    pub(super) fn subscribe(self: &Arc<Self>, recipient: &str) -> Subscription {
        let mut channels = self.lock();
        let sender = channels
            .entry(recipient.to_owned())
            .or_insert_with(|| watch::Sender::new(0));
        Subscription {
            receiver: Some(sender.subscribe()),
            recipient: recipient.to_owned(),
            watchers: Arc::clone(self),
        }
    }

    /// Tells the subscribers of each recipient the latest sequence number stored for it.
    pub(super) fn notify(&self, stored: &[(String, u64)]) {
        if stored.is_empty() {
            return;
        }
        let channels = self.lock();
        for (recipient, seq) in stored {
            if let Some(sender) = channels.get(recipient) {
                sender.send_replace(*seq);
            }
        }
    }

    /// Ends every subscription: their `changed` no longer completes.
    pub(super) fn close(&self) {
        self.lock().clear();
    }

    /// How many recipients have a live subscription.
    #[cfg(test)]
    pub(super) fn watched(&self) -> usize {
        self.lock().len()
    }

    /// Poisoning cannot leave the map inconsistent: every critical section is one map call.
    fn lock(&self) -> MutexGuard<'_, HashMap<String, watch::Sender<u64>>> {
        self.channels.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Learns when a new message for one recipient has been stored durably.
///
/// Subscribe first, then read `pending`, then await [`Subscription::changed`] and read
/// `pending` again after each wake-up: a message stored between subscribing and the first
/// read is then either in that read or behind the next wake-up, never missed.
pub struct Subscription {
    receiver: Option<watch::Receiver<u64>>,
    recipient: String,
    watchers: Arc<Watchers>,
}

impl Subscription {
    /// Waits until a message for this recipient has been stored since the last call (or
    /// since subscribing). Several messages may be behind one wake-up. Once the store has
    /// been dropped this never completes, so a caller selecting on it along with its
    /// connection's end is not woken in a loop.
    pub async fn changed(&mut self) {
        if let Some(receiver) = self.receiver.as_mut() {
            if receiver.changed().await.is_ok() {
                return;
            }
        }
        std::future::pending::<()>().await;
    }

    /// The recipient this subscription watches.
    pub fn recipient(&self) -> &str {
        &self.recipient
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("recipient", &self.recipient)
            .finish()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut channels = self.watchers.lock();
        drop(self.receiver.take());
        let unwatched = channels
            .get(&self.recipient)
            .is_some_and(|sender| sender.receiver_count() == 0);
        if unwatched {
            channels.remove(&self.recipient);
        }
    }
}
