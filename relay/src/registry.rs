//! The members connected right now, so a roster change can cut off the removed ones.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use quinn::{Connection, VarInt};

/// The QUIC application close code for a member removed from the roster.
pub const CLOSE_REVOKED: u32 = 0x10;
/// The QUIC application close code for a key that is not in the roster.
pub const CLOSE_NOT_MEMBER: u32 = 0x11;

/// Open connections by member name, each with the id of its registration.
type Members = HashMap<String, Vec<(u64, Connection)>>;

/// Who is connected, by member name.
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<Mutex<Members>>,
    next: Arc<AtomicU64>,
}

/// Removes its connection from the registry when dropped.
pub struct Registration {
    registry: Registry,
    name: String,
    id: u64,
}

impl Registry {
    /// Records a connection of `name`; it stays listed until the returned guard drops.
    pub fn add(&self, name: &str, conn: Connection) -> Registration {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock()
            .entry(name.to_string())
            .or_default()
            .push((id, conn));
        Registration {
            registry: self.clone(),
            name: name.to_string(),
            id,
        }
    }

    /// Closes every connection of `name`, saying why; returns how many were closed.
    pub fn close_member(&self, name: &str, reason: &str) -> usize {
        let conns = self.lock().remove(name).unwrap_or_default();
        for (_, conn) in &conns {
            conn.close(VarInt::from_u32(CLOSE_REVOKED), reason.as_bytes());
        }
        conns.len()
    }

    /// How many connections are open.
    pub fn connections(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    /// The names of the members connected.
    pub fn names(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Members> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut map = self.registry.lock();
        if let Some(list) = map.get_mut(&self.name) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                map.remove(&self.name);
            }
        }
    }
}
