//! The per-plugin key-value store in three layers: committed values (as in the reader's
//! database), writes staged by successful calls not yet persisted, and the current call's
//! pending writes. A failed call discards only its own writes; a persisted group commits the
//! staged ones. Values are shared (`Arc<[u8]>`), so neither a `get` handed to a plugin nor the
//! group's writes handed to the database clone them.

use std::collections::HashMap;
use std::sync::Arc;

/// A stored value, shared between the store's layers, the plugin's `get` and the commit.
pub type KvValue = Arc<[u8]>;

/// A write to persist: `None` deletes.
pub type KvChange = (String, Option<KvValue>);

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
    committed: HashMap<String, KvValue>,
    staged: HashMap<String, Option<KvValue>>,
    pending: HashMap<String, Option<KvValue>>,
    committed_bytes: u64,
    staged_bytes: i64,
    pending_bytes: i64,
}

fn entry_bytes(key: &str, value: &[u8]) -> u64 {
    (key.len() + value.len()) as u64
}

impl KvStore {
    /// A store holding `entries` (as loaded from the database).
    pub fn with_entries(entries: impl IntoIterator<Item = (String, Vec<u8>)>) -> KvStore {
        let committed: HashMap<String, KvValue> = entries
            .into_iter()
            .map(|(key, value)| (key, value.into()))
            .collect();
        let committed_bytes = committed.iter().map(|(k, v)| entry_bytes(k, v)).sum();
        KvStore {
            committed,
            committed_bytes,
            ..KvStore::default()
        }
    }

    fn current(&self, key: &str) -> Option<&KvValue> {
        match self.pending.get(key).or_else(|| self.staged.get(key)) {
            Some(value) => value.as_ref(),
            None => self.committed.get(key),
        }
    }

    /// The value under `key`, counting staged and pending writes (shared, not copied).
    pub fn get(&self, key: &str) -> Option<KvValue> {
        self.current(key).cloned()
    }

    fn current_bytes(&self, key: &str) -> u64 {
        self.current(key).map_or(0, |v| entry_bytes(key, v))
    }

    /// Bytes held, counting staged and pending writes.
    pub fn bytes(&self) -> u64 {
        self.committed_bytes
            .saturating_add_signed(self.staged_bytes + self.pending_bytes)
    }

    /// The committed values, sorted by key (what `streamhost plugin test` compares).
    pub fn committed_entries(&self) -> std::collections::BTreeMap<String, Vec<u8>> {
        self.committed
            .iter()
            .map(|(k, v)| (k.clone(), v.to_vec()))
            .collect()
    }

    /// Stores `value` under `key` unless the store would exceed `quota` bytes.
    pub fn set(
        &mut self,
        key: String,
        value: impl Into<KvValue>,
        quota: u64,
    ) -> Result<(), KvRefusal> {
        let value = value.into();
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

    /// Removes `key`. Removing a key the store does not hold records nothing, so deletes
    /// cost the host at most what the plugin's stored keys already take.
    pub fn delete(&mut self, key: &str) {
        if self.current(key).is_none() {
            return;
        }
        let old = self.current_bytes(key);
        self.pending_bytes -= old as i64;
        self.pending.insert(key.to_owned(), None);
    }

    /// Keeps the current call's writes (it succeeded) until the group is persisted.
    pub fn stage(&mut self) {
        self.staged.extend(self.pending.drain());
        self.staged_bytes += self.pending_bytes;
        self.pending_bytes = 0;
    }

    /// Forgets the current call's writes (it failed).
    pub fn discard(&mut self) {
        self.pending.clear();
        self.pending_bytes = 0;
    }

    /// The staged writes, for the host to persist (values shared, not copied).
    pub fn staged(&self) -> Vec<KvChange> {
        self.staged
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Makes the staged writes committed (the host persisted them).
    pub fn commit(&mut self) {
        for (key, value) in self.staged.drain() {
            match value {
                Some(value) => {
                    self.committed.insert(key, value);
                }
                None => {
                    self.committed.remove(&key);
                }
            }
        }
        self.committed_bytes = self
            .committed_bytes
            .saturating_add_signed(self.staged_bytes);
        self.staged_bytes = 0;
    }

    /// Forgets staged and pending writes (persisting them failed).
    pub fn discard_all(&mut self) {
        self.discard();
        self.staged.clear();
        self.staged_bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_call_discards_only_its_own_writes() {
        let mut kv = KvStore::with_entries([("a".to_string(), b"1".to_vec())]);
        kv.set("b".into(), b"22".to_vec(), 100).unwrap();
        kv.stage();
        kv.delete("a");
        kv.set("b".into(), b"333".to_vec(), 100).unwrap();
        assert_eq!(kv.get("a"), None);
        assert_eq!(kv.bytes(), 4);
        kv.discard();
        assert_eq!(kv.get("a").as_deref(), Some(&b"1"[..]));
        assert_eq!(kv.get("b").as_deref(), Some(&b"22"[..]));
        assert_eq!(
            kv.staged(),
            vec![("b".to_string(), Some(KvValue::from(&b"22"[..])))]
        );
        kv.commit();
        assert_eq!(kv.bytes(), 5);
        assert!(kv.staged().is_empty());
        kv.set("c".into(), vec![], 100).unwrap();
        kv.stage();
        kv.discard_all();
        assert_eq!(kv.get("c"), None);
        assert_eq!(kv.bytes(), 5);
    }

    #[test]
    fn deleting_keys_the_store_does_not_hold_records_nothing() {
        let mut kv = KvStore::with_entries([("a".to_string(), b"1".to_vec())]);
        for n in 0..10_000 {
            kv.delete(&format!("missing-{n}"));
        }
        assert!(kv.pending.is_empty());
        kv.delete("a");
        kv.delete("a");
        assert_eq!(kv.pending.len(), 1);
        kv.stage();
        kv.delete("a");
        assert!(kv.pending.is_empty(), "a staged delete is not repeated");
        assert_eq!(kv.bytes(), 0);
    }

    #[test]
    fn the_quota_counts_keys_and_values_and_replacements() {
        let mut kv = KvStore::default();
        kv.set("k".into(), vec![0; 9], 10).unwrap();
        assert_eq!(kv.set("j".into(), vec![0; 1], 10), Err(KvRefusal::Quota));
        kv.stage();
        kv.set("k".into(), vec![0; 4], 10).unwrap();
        kv.set("j".into(), vec![0; 4], 10).unwrap();
        assert_eq!(kv.set(String::new(), vec![], 10), Err(KvRefusal::BadKey));
        assert_eq!(
            kv.set("x".repeat(2000), vec![], 1 << 20),
            Err(KvRefusal::BadKey)
        );
    }
}
