//! The host-managed cache of plugin query answers, shared by all plugins, bounded by entry
//! count and by bytes, keyed by (plugin, cache, key).
//!
//! Each plugin's answers are in two segments (a segmented LRU): a key answered once waits on
//! probation (at most `window` of them per plugin); asked for again while cached, it joins the
//! plugin's working set (at most `keys` per plugin; past that, the working set's least recently
//! used answer goes back on probation). A flood of new arguments therefore only ever replaces
//! answers on probation: the working set survives it (`docs/design.md`). When the shared
//! bounds are exceeded, the least recently used answer on probation (of any plugin) goes first,
//! and only when none is left the least recently used of a working set.
//!
//! Keys come from a plugin's query key template filled in by [`cache_key`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use lru::LruCache;
use serde::Serialize;

/// Identity of one cached answer within a plugin: (cache, key).
type Id = (String, String);

/// One cached answer and when it was last used (a tick of the whole cache).
struct Entry {
    answer: Arc<str>,
    used: u64,
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

/// One plugin's answers: new keys on probation, and its working set.
struct Segments {
    probation: LruCache<Id, Entry>,
    protected: LruCache<Id, Entry>,
}

/// Which segment.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Segment {
    Probation,
    Protected,
}

const SEGMENTS: [Segment; 2] = [Segment::Probation, Segment::Protected];

impl Segments {
    fn new() -> Segments {
        Segments {
            probation: LruCache::unbounded(),
            protected: LruCache::unbounded(),
        }
    }

    fn of(&mut self, segment: Segment) -> &mut LruCache<Id, Entry> {
        match segment {
            Segment::Probation => &mut self.probation,
            Segment::Protected => &mut self.protected,
        }
    }

    fn peek(&self, segment: Segment) -> &LruCache<Id, Entry> {
        match segment {
            Segment::Probation => &self.probation,
            Segment::Protected => &self.protected,
        }
    }
}

struct Inner {
    plugins: HashMap<String, Segments>,
    entries: usize,
    bytes: usize,
    tick: u64,
    hits: u64,
    misses: u64,
    evictions: u64,
}

/// A bounded, thread-safe, scan-resistant cache of plugin query answers (see the module docs).
///
/// An entry's size is `key.len() + answer.len()`; the cache keeps at most `max_entries`
/// entries and `max_bytes` bytes. An answer larger than `max_bytes` on its own is not cached.
pub struct QueryCache {
    inner: Mutex<Inner>,
    max_entries: usize,
    max_bytes: usize,
    keys_per_plugin: usize,
    window_per_plugin: usize,
}

fn entry_size(id: &Id, answer: &str) -> usize {
    id.1.len() + answer.len()
}

fn id(cache: &str, key: &str) -> Id {
    (cache.to_owned(), key.to_owned())
}

impl Inner {
    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// Removes one answer from wherever it is; the segment it was in.
    fn remove(&mut self, plugin: &str, id: &Id) -> Option<Segment> {
        let segments = self.plugins.get_mut(plugin)?;
        for segment in SEGMENTS {
            if let Some(old) = segments.of(segment).pop(id) {
                self.entries -= 1;
                self.bytes -= entry_size(id, &old.answer);
                return Some(segment);
            }
        }
        None
    }

    /// Drops the least recently used answer of `segment` of `plugin`.
    fn evict_from(&mut self, plugin: &str, segment: Segment) -> bool {
        let Some(segments) = self.plugins.get_mut(plugin) else {
            return false;
        };
        let Some((id, old)) = segments.of(segment).pop_lru() else {
            return false;
        };
        self.entries -= 1;
        self.bytes -= entry_size(&id, &old.answer);
        self.evictions += 1;
        true
    }

    /// Drops the least recently used answer on probation of any plugin, else the least
    /// recently used of any working set; false when the cache is empty.
    fn evict_oldest(&mut self) -> bool {
        for segment in SEGMENTS {
            let oldest = self
                .plugins
                .iter()
                .filter_map(|(plugin, s)| Some((s.peek(segment).peek_lru()?.1.used, plugin)))
                .min()
                .map(|(_, plugin)| plugin.clone());
            if let Some(plugin) = oldest {
                return self.evict_from(&plugin, segment);
            }
        }
        false
    }
}

impl QueryCache {
    /// An empty cache holding at most `max_entries` answers and `max_bytes` bytes, with no
    /// bound of its own per plugin (see [`QueryCache::per_plugin`]).
    pub fn new(max_entries: usize, max_bytes: usize) -> QueryCache {
        QueryCache {
            inner: Mutex::new(Inner {
                plugins: HashMap::new(),
                entries: 0,
                bytes: 0,
                tick: 0,
                hits: 0,
                misses: 0,
                evictions: 0,
            }),
            max_entries,
            max_bytes,
            keys_per_plugin: usize::MAX,
            window_per_plugin: usize::MAX,
        }
    }

    /// The same cache keeping at most `keys` answers in each plugin's working set and
    /// `window` answers on probation (`window` is at least 1).
    pub fn per_plugin(self, keys: usize, window: usize) -> QueryCache {
        QueryCache {
            keys_per_plugin: keys,
            window_per_plugin: window.max(1),
            ..self
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The cache's invariants hold between statements, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached answer, marking it most recently used; an answer on probation joins its
    /// plugin's working set.
    pub fn get(&self, plugin: &str, cache: &str, key: &str) -> Option<Arc<str>> {
        let id = id(cache, key);
        let mut guard = self.lock();
        let inner = &mut *guard;
        let tick = inner.next_tick();
        let Some(segments) = inner.plugins.get_mut(plugin) else {
            inner.misses += 1;
            return None;
        };
        if let Some(entry) = segments.of(Segment::Protected).get_mut(&id) {
            entry.used = tick;
            let answer = entry.answer.clone();
            inner.hits += 1;
            return Some(answer);
        }
        let Some(mut entry) = segments.of(Segment::Probation).pop(&id) else {
            inner.misses += 1;
            return None;
        };
        entry.used = tick;
        let answer = entry.answer.clone();
        segments.of(Segment::Protected).push(id, entry);
        if segments.protected.len() > self.keys_per_plugin {
            // The working set's least recently used answer goes back on probation.
            if let Some((old_id, old)) = segments.of(Segment::Protected).pop_lru() {
                segments.of(Segment::Probation).push(old_id, old);
            }
        }
        let over_window = segments.probation.len() > self.window_per_plugin;
        if over_window {
            inner.evict_from(plugin, Segment::Probation);
        }
        inner.hits += 1;
        Some(answer)
    }

    /// Caches `answer` (on probation, or in the working set when it replaces an answer there),
    /// then evicts until the plugin's window and the shared bounds hold.
    pub fn insert(&self, plugin: &str, cache: &str, key: &str, answer: Arc<str>) {
        let id = id(cache, key);
        let size = entry_size(&id, &answer);
        let mut guard = self.lock();
        let inner = &mut *guard;
        let was = inner.remove(plugin, &id);
        if size > self.max_bytes || self.max_entries == 0 || self.keys_per_plugin == 0 {
            return;
        }
        let segment = was.unwrap_or(Segment::Probation);
        let used = inner.next_tick();
        inner.entries += 1;
        inner.bytes += size;
        let segments = inner
            .plugins
            .entry(plugin.to_owned())
            .or_insert_with(Segments::new);
        segments.of(segment).push(id, Entry { answer, used });
        let over_window = segments.probation.len() > self.window_per_plugin;
        if over_window {
            inner.evict_from(plugin, Segment::Probation);
        }
        while (inner.entries > self.max_entries || inner.bytes > self.max_bytes)
            && inner.evict_oldest()
        {}
    }

    /// Drops one answer, if cached.
    pub fn invalidate(&self, plugin: &str, cache: &str, key: &str) {
        self.lock().remove(plugin, &id(cache, key));
    }

    /// Drops every answer of one cache of one plugin.
    pub fn invalidate_all(&self, plugin: &str, cache: &str) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let Some(segments) = inner.plugins.get_mut(plugin) else {
            return;
        };
        let mut dropped = (0, 0);
        for segment in SEGMENTS {
            let lru = segments.of(segment);
            let doomed: Vec<Id> = lru
                .iter()
                .filter(|(id, _)| id.0 == cache)
                .map(|(id, _)| id.clone())
                .collect();
            for id in doomed {
                if let Some(old) = lru.pop(&id) {
                    dropped.0 += 1;
                    dropped.1 += entry_size(&id, &old.answer);
                }
            }
        }
        inner.entries -= dropped.0;
        inner.bytes -= dropped.1;
    }

    /// Drops every answer of a plugin (when it is unloaded or replaced).
    pub fn remove_plugin(&self, plugin: &str) {
        let mut inner = self.lock();
        let Some(segments) = inner.plugins.remove(plugin) else {
            return;
        };
        for segment in SEGMENTS {
            for (id, old) in segments.peek(segment) {
                inner.entries -= 1;
                inner.bytes -= entry_size(id, &old.answer);
            }
        }
    }

    /// Current sizes and counters.
    pub fn stats(&self) -> CacheStats {
        let inner = self.lock();
        CacheStats {
            entries: inner.entries,
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
    fn a_flood_of_new_keys_leaves_the_working_set_cached() {
        let cache = QueryCache::new(1_000, 1 << 20).per_plugin(10, 5);
        cache.insert("p", "c", "hot", answer("h"));
        // Asked for again: it joins the working set.
        assert!(cache.get("p", "c", "hot").is_some());
        cache.insert("q", "c", "other", answer("o"));
        assert!(cache.get("q", "c", "other").is_some());
        for i in 0..10_000 {
            let key = format!("flood-{i}");
            assert!(cache.get("p", "c", &key).is_none());
            cache.insert("p", "c", &key, answer("x"));
        }
        assert_eq!(cache.get("p", "c", "hot").as_deref(), Some("h"));
        assert_eq!(cache.get("q", "c", "other").as_deref(), Some("o"));
        // The flood holds at most the window: 5 on probation, plus the two working sets.
        assert_eq!(cache.stats().entries, 7);
        assert_eq!(cache.stats().evictions, 10_000 - 5);
    }

    #[test]
    fn the_shared_bounds_evict_probation_before_any_working_set() {
        let cache = QueryCache::new(4, 1 << 20).per_plugin(10, 10);
        cache.insert("p", "c", "hot", answer("h"));
        assert!(cache.get("p", "c", "hot").is_some());
        for i in 0..100 {
            cache.insert("q", "c", &format!("new-{i}"), answer("x"));
        }
        assert!(cache.get("p", "c", "hot").is_some());
        assert!(cache.get("q", "c", "new-99").is_some());
        assert_eq!(cache.stats().entries, 4);
    }

    #[test]
    fn a_full_working_set_sends_its_oldest_back_on_probation() {
        let cache = QueryCache::new(100, 1 << 20).per_plugin(2, 1);
        for key in ["a", "b", "c"] {
            cache.insert("p", "c", key, answer(key));
            assert!(cache.get("p", "c", key).is_some());
        }
        // `a` went back on probation (window 1), still cached.
        assert_eq!(cache.stats().entries, 3);
        cache.insert("p", "c", "d", answer("d"));
        // `d` took the one probation place: `a` is gone, `b` and `c` stay.
        assert!(cache.get("p", "c", "a").is_none());
        assert!(cache.get("p", "c", "b").is_some());
        assert!(cache.get("p", "c", "c").is_some());
        assert_eq!(cache.stats().entries, 3);
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
