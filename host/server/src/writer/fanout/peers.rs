//! [`Peers`]: the replication connections open now, with the `NAME` each peer gave and the
//! commands waiting to be written to it, for the console's list of readers
//! (`crate::console`). Each connection holds a [`PeerEntry`] that removes it when dropped.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;

use crate::clock::unix_ms;

/// One open replication connection, as the console shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerView {
    /// The `NAME` the peer sent; `None` until it does.
    pub name: Option<String>,
    /// The peer's address.
    pub address: String,
    /// `handshake` until `NAME` or `REPLICATE`, then `streaming`; `failed-to-keep-up` once
    /// the writer has given the peer up (it is being closed).
    pub state: &'static str,
    /// When the connection opened, Unix milliseconds.
    pub connected_at_ms: u64,
    /// Commands the streamer has sent that wait to be written to this peer.
    pub pending: u64,
}

/// One connection's figures, written by its tasks without a lock (the write loop sets
/// `pending` after every write) and read by the console.
#[derive(Debug)]
struct PeerCell {
    address: String,
    connected_at_ms: u64,
    name: Mutex<Option<String>>,
    state: AtomicU8,
    pending: AtomicU64,
}

const HANDSHAKE: u8 = 0;
const STREAMING: u8 = 1;
const GAVE_UP: u8 = 2;

impl PeerCell {
    fn view(&self) -> PeerView {
        PeerView {
            name: self.name.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            address: self.address.clone(),
            state: match self.state.load(Ordering::Relaxed) {
                HANDSHAKE => "handshake",
                STREAMING => "streaming",
                _ => "failed-to-keep-up",
            },
            connected_at_ms: self.connected_at_ms,
            pending: self.pending.load(Ordering::Relaxed),
        }
    }
}

/// The open replication connections, by connection number.
#[derive(Debug, Default)]
pub struct Peers {
    next: AtomicU64,
    open: Mutex<BTreeMap<u64, Arc<PeerCell>>>,
}

impl Peers {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, Arc<PeerCell>>> {
        // Each statement leaves the map consistent, so a poisoned lock is still usable.
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a connection from `address`; it stays listed while the entry lives.
    pub fn register(self: &Arc<Self>, address: SocketAddr) -> PeerEntry {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let cell = Arc::new(PeerCell {
            address: address.to_string(),
            connected_at_ms: unix_ms(),
            name: Mutex::new(None),
            state: AtomicU8::new(HANDSHAKE),
            pending: AtomicU64::new(0),
        });
        self.lock().insert(id, Arc::clone(&cell));
        PeerEntry {
            peers: Arc::clone(self),
            id,
            cell,
        }
    }

    /// Every open connection, oldest first.
    pub fn list(&self) -> Vec<PeerView> {
        let cells: Vec<Arc<PeerCell>> = self.lock().values().cloned().collect();
        cells.iter().map(|c| c.view()).collect()
    }
}

/// A connection's place in [`Peers`]; dropping it removes the connection.
#[derive(Debug)]
pub struct PeerEntry {
    peers: Arc<Peers>,
    id: u64,
    cell: Arc<PeerCell>,
}

impl PeerEntry {
    /// The peer sent `NAME name`.
    pub fn named(&self, name: &str) {
        *self.cell.name.lock().unwrap_or_else(|e| e.into_inner()) = Some(name.to_owned());
        self.introduced();
    }

    /// The peer sent `NAME` or `REPLICATE`.
    pub fn introduced(&self) {
        let _ = self.cell.state.compare_exchange(
            HANDSHAKE,
            STREAMING,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// `pending` commands wait to be written to the peer.
    pub fn pending(&self, pending: usize) {
        self.cell.pending.store(pending as u64, Ordering::Relaxed);
    }

    /// The writer gave the peer up (`ERROR Failed to keep up`).
    pub fn gave_up(&self) {
        self.cell.state.store(GAVE_UP, Ordering::Relaxed);
    }
}

impl Drop for PeerEntry {
    fn drop(&mut self) {
        self.peers.lock().remove(&self.id);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_listed_with_its_name_until_its_entry_drops() {
        let peers = Arc::new(Peers::default());
        let first = peers.register("127.0.0.1:1".parse().unwrap());
        let second = peers.register("127.0.0.1:2".parse().unwrap());
        assert_eq!(peers.list()[0].state, "handshake");
        first.named("reader-1");
        first.pending(7);
        second.introduced();
        second.gave_up();
        let list = peers.list();
        assert_eq!(list[0].name.as_deref(), Some("reader-1"));
        assert_eq!((list[0].state, list[0].pending), ("streaming", 7));
        assert_eq!(
            (list[1].name.as_deref(), list[1].state),
            (None, "failed-to-keep-up")
        );
        drop(first);
        assert_eq!(peers.list().len(), 1);
        assert_eq!(peers.list()[0].address, "127.0.0.1:2");
    }
}
