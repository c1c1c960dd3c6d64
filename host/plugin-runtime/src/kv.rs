//! The per-plugin key-value store: committed values in memory (loaded from the reader's
//! database), a call's writes pending beside them until the host commits or discards them.

use std::collections::HashMap;

/// A write waiting for the host's commit: `None` deletes.
pub type KvChange = (String, Option<Vec<u8>>);

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// Why a write was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvRefusal {
    /// Over the byte quota.
    Quota,
    /// Empty or too long key.
    BadKey,
}

/// One plugin's store. All versions of a plugin share it, so it survives reloads.
#[derive(Debug, Default)]
pub struct KvStore {
    committed: HashMap<String, Vec<u8>>,
    pending: HashMap<String, Option<Vec<u8>>>,
    committed_bytes: u64,
    pending_bytes: i64,
}

fn entry_bytes(key: &str, value: &[u8]) -> u64 {
    (key.len() + value.len()) as u64
}

impl KvStore {
    /// A store holding `entries` (as loaded from the database).
    pub fn with_entries(entries: impl IntoIterator<Item = (String, Vec<u8>)>) -> KvStore {
        let committed: HashMap<String, Vec<u8>> = entries.into_iter().collect();
        let committed_bytes = committed.iter().map(|(k, v)| entry_bytes(k, v)).sum();
        KvStore {
            committed,
            committed_bytes,
            ..KvStore::default()
        }
    }

    /// The value under `key`, counting this call's writes.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        match self.pending.get(key) {
            Some(value) => value.clone(),
            None => self.committed.get(key).cloned(),
        }
    }

    fn current_bytes(&self, key: &str) -> u64 {
        match self.pending.get(key) {
            Some(Some(value)) => entry_bytes(key, value),
            Some(None) => 0,
            None => self.committed.get(key).map_or(0, |v| entry_bytes(key, v)),
        }
    }

    /// Bytes held, counting this call's writes.
    pub fn bytes(&self) -> u64 {
        self.committed_bytes.saturating_add_signed(self.pending_bytes)
    }

    /// Stores `value` under `key` unless the store would exceed `quota` bytes.
    pub fn set(&mut self, key: String, value: Vec<u8>, quota: u64) -> Result<(), KvRefusal> {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(KvRefusal::BadKey);
        }
        let old = self.current_bytes(&key);
        let new = entry_bytes(&key, &value);
        if self.bytes() - old + new > quota {
            return Err(KvRefusal::Quota);
        }
        self.pending_bytes += new as i64 - old as i64;
        self.pending.insert(key, Some(value));
        Ok(())
    }

    /// Removes `key`.
    pub fn delete(&mut self, key: String) {
        let old = self.current_bytes(&key);
        self.pending_bytes -= old as i64;
        self.pending.insert(key, None);
    }

    /// This call's writes, for the host to persist (the store keeps them pending).
    pub fn pending(&self) -> Vec<KvChange> {
        self.pending
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Makes this call's writes committed (after the host persisted them).
    pub fn commit(&mut self) {
        for (key, value) in self.pending.drain() {
            match value {
                Some(value) => {
                    self.committed.insert(key, value);
                }
                None => {
                    self.committed.remove(&key);
                }
            }
        }
        self.committed_bytes = self.committed_bytes.saturating_add_signed(self.pending_bytes);
        self.pending_bytes = 0;
    }

    /// Forgets this call's writes (after a failure).
    pub fn discard(&mut self) {
        self.pending.clear();
        self.pending_bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_pending_until_committed_and_discard_forgets_them() {
        let mut kv = KvStore::with_entries([("a".to_string(), b"1".to_vec())]);
        kv.set("b".into(), b"22".to_vec(), 100).unwrap();
        kv.delete("a".into());
        assert_eq!(kv.get("b"), Some(b"22".to_vec()));
        assert_eq!(kv.get("a"), None);
        assert_eq!(kv.bytes(), 3);
        kv.discard();
        assert_eq!(kv.get("a"), Some(b"1".to_vec()));
        assert_eq!(kv.get("b"), None);
        kv.set("b".into(), b"22".to_vec(), 100).unwrap();
        assert_eq!(kv.pending(), vec![("b".to_string(), Some(b"22".to_vec()))]);
        kv.commit();
        assert_eq!(kv.bytes(), 5);
        assert!(kv.pending().is_empty());
    }

    #[test]
    fn the_quota_counts_keys_and_values_and_replacements() {
        let mut kv = KvStore::default();
        kv.set("k".into(), vec![0; 9], 10).unwrap();
        assert_eq!(kv.set("j".into(), vec![0; 1], 10), Err(KvRefusal::Quota));
        kv.set("k".into(), vec![0; 4], 10).unwrap();
        kv.set("j".into(), vec![0; 4], 10).unwrap();
        assert_eq!(kv.set(String::new(), vec![], 10), Err(KvRefusal::BadKey));
        assert_eq!(kv.set("x".repeat(2000), vec![], 1 << 20), Err(KvRefusal::BadKey));
    }
}
