//! The host-managed cache of plugin query answers: one least-recently-used cache shared by
//! all plugins, bounded both by entry count and by bytes, keyed by (plugin, cache, key).
//!
//! Keys come from a plugin's query key template filled in by [`cache_key`].

use std::sync::{Arc, Mutex, MutexGuard};

use lru::LruCache;
use serde::Serialize;

/// Identity of one cached answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct EntryKey {
    plugin: String,
    cache: String,
    key: String,
}

/// Counters and sizes of a [`QueryCache`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    /// Answers held.
    pub entries: usize,
    /// Bytes held, counted as key length plus answer length per entry.
    pub bytes: usize,
    /// Lookups that found an answer.
    pub hits: u64,
    /// Lookups that found nothing.
    pub misses: u64,
    /// Answers dropped to stay within the bounds (not counting invalidations).
    pub evictions: u64,
}

struct Inner {
    lru: LruCache<EntryKey, Arc<str>>,
    bytes: usize,
    hits: u64,
    misses: u64,
    evictions: u64,
}

/// A bounded, thread-safe LRU cache of plugin query answers.
///
/// An entry's size is `key.len() + answer.len()`; the cache keeps at most `max_entries`
/// entries and `max_bytes` bytes, evicting the least recently used first. An answer larger
/// than `max_bytes` on its own is not cached.
pub struct QueryCache {
    inner: Mutex<Inner>,
    max_entries: usize,
    max_bytes: usize,
}

fn entry_size(key: &EntryKey, answer: &str) -> usize {
    key.key.len() + answer.len()
}

impl QueryCache {
    /// An empty cache holding at most `max_entries` answers and `max_bytes` bytes.
    pub fn new(max_entries: usize, max_bytes: usize) -> QueryCache {
        QueryCache {
            inner: Mutex::new(Inner {
                lru: LruCache::unbounded(),
                bytes: 0,
                hits: 0,
                misses: 0,
                evictions: 0,
            }),
            max_entries,
            max_bytes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The cache's invariants hold between statements, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached answer, marking it most recently used.
    pub fn get(&self, plugin: &str, cache: &str, key: &str) -> Option<Arc<str>> {
        let id = EntryKey {
            plugin: plugin.to_owned(),
            cache: cache.to_owned(),
            key: key.to_owned(),
        };
        let mut inner = self.lock();
        match inner.lru.get(&id).cloned() {
            Some(answer) => {
                inner.hits += 1;
                Some(answer)
            }
            None => {
                inner.misses += 1;
                None
            }
        }
    }

    /// Caches `answer`, replacing any previous answer for the same key, then evicts the least
    /// recently used entries until both bounds hold.
    pub fn insert(&self, plugin: &str, cache: &str, key: &str, answer: Arc<str>) {
        let id = EntryKey {
            plugin: plugin.to_owned(),
            cache: cache.to_owned(),
            key: key.to_owned(),
        };
        let size = entry_size(&id, &answer);
        let mut inner = self.lock();
        if let Some(old) = inner.lru.pop(&id) {
            inner.bytes -= entry_size(&id, &old);
        }
        if size > self.max_bytes || self.max_entries == 0 {
            return;
        }
        inner.bytes += size;
        inner.lru.push(id, answer);
        while inner.lru.len() > self.max_entries || inner.bytes > self.max_bytes {
            let Some((old_id, old)) = inner.lru.pop_lru() else {
                break;
            };
            inner.bytes -= entry_size(&old_id, &old);
            inner.evictions += 1;
        }
    }

    /// Drops one answer, if cached.
    pub fn invalidate(&self, plugin: &str, cache: &str, key: &str) {
        let id = EntryKey {
            plugin: plugin.to_owned(),
            cache: cache.to_owned(),
            key: key.to_owned(),
        };
        let mut inner = self.lock();
        if let Some(old) = inner.lru.pop(&id) {
            inner.bytes -= entry_size(&id, &old);
        }
    }

    /// Drops every answer of one cache of one plugin.
    pub fn invalidate_all(&self, plugin: &str, cache: &str) {
        self.remove_where(|id| id.plugin == plugin && id.cache == cache);
    }

    /// Drops every answer of a plugin (when it is unloaded or replaced).
    pub fn remove_plugin(&self, plugin: &str) {
        self.remove_where(|id| id.plugin == plugin);
    }

    fn remove_where(&self, matches: impl Fn(&EntryKey) -> bool) {
        let mut inner = self.lock();
        let doomed: Vec<EntryKey> = inner
            .lru
            .iter()
            .filter(|(id, _)| matches(id))
            .map(|(id, _)| id.clone())
            .collect();
        for id in doomed {
            if let Some(old) = inner.lru.pop(&id) {
                inner.bytes -= entry_size(&id, &old);
            }
        }
    }

    /// Current sizes and counters.
    pub fn stats(&self) -> CacheStats {
        let inner = self.lock();
        CacheStats {
            entries: inner.lru.len(),
            bytes: inner.bytes,
            hits: inner.hits,
            misses: inner.misses,
            evictions: inner.evictions,
        }
    }
}

/// Fills in a query key template: each `{name}` becomes the value of argument `name`.
///
/// A placeholder naming no argument, an empty `{}` or an unclosed `{` is an error; a lone `}`
/// is kept as is.
pub fn cache_key(template: &str, args: &[(String, String)]) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("unclosed {{ in query key template {template:?}"))?;
        let name = &after[..close];
        if name.is_empty() {
            return Err(format!("empty {{}} in query key template {template:?}"));
        }
        let value = args
            .iter()
            .find(|(arg, _)| arg == name)
            .map(|(_, value)| value)
            .ok_or_else(|| format!("missing query argument {name}"))?;
        out.push_str(value);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    fn args(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn get_after_insert_counts_hits_and_misses() {
        let cache = QueryCache::new(10, 1000);
        assert_eq!(cache.get("p", "c", "k"), None);
        cache.insert("p", "c", "k", answer("v"));
        assert_eq!(cache.get("p", "c", "k").as_deref(), Some("v"));
        assert_eq!(cache.get("p", "other", "k"), None);
        assert_eq!(cache.get("q", "c", "k"), None);
        let stats = cache.stats();
        assert_eq!(
            stats,
            CacheStats {
                entries: 1,
                bytes: 2,
                hits: 1,
                misses: 3,
                evictions: 0
            }
        );
    }

    #[test]
    fn evicts_least_recently_used_by_count() {
        let cache = QueryCache::new(2, 1000);
        cache.insert("p", "c", "a", answer("1"));
        cache.insert("p", "c", "b", answer("2"));
        // Touch a so b is the least recently used.
        assert!(cache.get("p", "c", "a").is_some());
        cache.insert("p", "c", "c", answer("3"));
        assert!(cache.get("p", "c", "a").is_some());
        assert!(cache.get("p", "c", "b").is_none());
        assert!(cache.get("p", "c", "c").is_some());
        assert_eq!(cache.stats().entries, 2);
        assert_eq!(cache.stats().evictions, 1);
    }

    #[test]
    fn evicts_by_bytes() {
        // Each entry: key 1 byte + answer 4 bytes = 5 bytes.
        let cache = QueryCache::new(100, 12);
        cache.insert("p", "c", "a", answer("aaaa"));
        cache.insert("p", "c", "b", answer("bbbb"));
        assert_eq!(cache.stats().bytes, 10);
        cache.insert("p", "c", "c", answer("cccc"));
        let stats = cache.stats();
        assert_eq!(stats.entries, 2);
        assert_eq!(stats.bytes, 10);
        assert_eq!(stats.evictions, 1);
        assert!(cache.get("p", "c", "a").is_none());
        assert!(cache.get("p", "c", "b").is_some());
        assert!(cache.get("p", "c", "c").is_some());
    }

    #[test]
    fn oversized_answer_is_not_cached() {
        let cache = QueryCache::new(100, 8);
        cache.insert("p", "c", "k", answer("ok"));
        cache.insert("p", "c", "big", answer("0123456789"));
        assert!(cache.get("p", "c", "big").is_none());
        assert!(cache.get("p", "c", "k").is_some());
        // Replacing an entry with an oversized answer drops the old one.
        cache.insert("p", "c", "k", answer("0123456789"));
        assert!(cache.get("p", "c", "k").is_none());
        assert_eq!(cache.stats().bytes, 0);
        assert_eq!(cache.stats().evictions, 0);
    }

    #[test]
    fn replacing_an_entry_updates_bytes() {
        let cache = QueryCache::new(10, 1000);
        cache.insert("p", "c", "k", answer("short"));
        cache.insert("p", "c", "k", answer("much longer"));
        let stats = cache.stats();
        assert_eq!(stats.entries, 1);
        assert_eq!(stats.bytes, 1 + "much longer".len());
        assert_eq!(cache.get("p", "c", "k").as_deref(), Some("much longer"));
    }

    #[test]
    fn invalidate_drops_one_entry() {
        let cache = QueryCache::new(10, 1000);
        cache.insert("p", "c", "a", answer("1"));
        cache.insert("p", "c", "b", answer("2"));
        cache.invalidate("p", "c", "a");
        cache.invalidate("p", "c", "missing");
        assert!(cache.get("p", "c", "a").is_none());
        assert!(cache.get("p", "c", "b").is_some());
        assert_eq!(cache.stats().bytes, 2);
        assert_eq!(cache.stats().evictions, 0);
    }

    #[test]
    fn invalidate_all_touches_only_that_plugin_and_cache() {
        let cache = QueryCache::new(10, 1000);
        cache.insert("p", "c", "a", answer("1"));
        cache.insert("p", "c", "b", answer("2"));
        cache.insert("p", "d", "a", answer("3"));
        cache.insert("q", "c", "a", answer("4"));
        cache.invalidate_all("p", "c");
        assert!(cache.get("p", "c", "a").is_none());
        assert!(cache.get("p", "c", "b").is_none());
        assert_eq!(cache.get("p", "d", "a").as_deref(), Some("3"));
        assert_eq!(cache.get("q", "c", "a").as_deref(), Some("4"));
        let stats = cache.stats();
        assert_eq!(stats.entries, 2);
        assert_eq!(stats.bytes, 4);
        assert_eq!(stats.evictions, 0);
    }

    #[test]
    fn remove_plugin_drops_all_its_caches() {
        let cache = QueryCache::new(10, 1000);
        cache.insert("p", "c", "a", answer("1"));
        cache.insert("p", "d", "a", answer("2"));
        cache.insert("q", "c", "a", answer("3"));
        cache.remove_plugin("p");
        assert!(cache.get("p", "c", "a").is_none());
        assert!(cache.get("p", "d", "a").is_none());
        assert!(cache.get("q", "c", "a").is_some());
        assert_eq!(cache.stats().entries, 1);
        assert_eq!(cache.stats().bytes, 2);
    }

    #[test]
    fn zero_entries_caches_nothing() {
        let cache = QueryCache::new(0, 1000);
        cache.insert("p", "c", "a", answer("1"));
        assert!(cache.get("p", "c", "a").is_none());
        assert_eq!(cache.stats().entries, 0);
    }

    #[test]
    fn usable_from_many_threads() {
        let cache = Arc::new(QueryCache::new(50, 10_000));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let cache = Arc::clone(&cache);
                std::thread::spawn(move || {
                    for i in 0..100 {
                        let key = format!("{t}-{i}");
                        cache.insert("p", "c", &key, answer(&key));
                        let _ = cache.get("p", "c", &key);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let stats = cache.stats();
        assert_eq!(stats.entries, 50);
        assert_eq!(stats.hits + stats.misses, 400);
        assert_eq!(stats.evictions, 350);
    }

    #[test]
    fn cache_key_fills_placeholders() {
        let a = args(&[("room", "!r:x"), ("limit", "10")]);
        assert_eq!(
            cache_key("timeline/{room}/{limit}", &a).unwrap(),
            "timeline/!r:x/10"
        );
        assert_eq!(cache_key("{room}{room}", &a).unwrap(), "!r:x!r:x");
        assert_eq!(cache_key("constant", &a).unwrap(), "constant");
        assert_eq!(cache_key("", &a).unwrap(), "");
        assert_eq!(cache_key("a}b", &a).unwrap(), "a}b");
    }

    #[test]
    fn cache_key_errors() {
        let a = args(&[("room", "!r:x")]);
        assert_eq!(
            cache_key("t/{user}", &a).unwrap_err(),
            "missing query argument user"
        );
        assert!(cache_key("t/{room", &a).unwrap_err().contains("unclosed"));
        assert!(cache_key("t/{}", &a).unwrap_err().contains("empty"));
    }
}
