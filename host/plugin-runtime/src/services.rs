//! What one plugin's host interfaces act on, shared by all its instances and versions: its
//! key-value store, its log book, its counters and the row source.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::kv::KvStore;

/// Longest log line kept; longer ones are cut.
pub const MAX_LOG_LINE_BYTES: usize = 1024;

/// Log lines kept for trap reports.
const RECENT_LOG_LINES: usize = 20;

/// Distinct counter names per plugin; more are ignored.
pub const MAX_COUNTERS: usize = 100;

/// Read access to the log's rows, for the `rows` import. Called on the plugin's thread, so it
/// may block.
pub trait RowSource: Send + Sync + 'static {
    /// Up to `limit` rows `(token, json)` of `stream` above `from`, in token order.
    fn read(&self, stream: &str, from: i64, limit: u32) -> Result<Vec<(i64, String)>, String>;
}

/// A plugin's log lines: a token-bucket rate and the last lines for trap reports.
#[derive(Debug)]
pub struct LogBook {
    per_second: f64,
    tokens: f64,
    refilled: Instant,
    dropped: u64,
    recent: VecDeque<String>,
}

impl LogBook {
    fn new(per_second: u32) -> LogBook {
        let per_second = f64::from(per_second.max(1));
        LogBook {
            per_second,
            tokens: per_second * 10.0,
            refilled: Instant::now(),
            dropped: 0,
            recent: VecDeque::new(),
        }
    }

    /// Takes one line if the rate allows (cut to [`MAX_LOG_LINE_BYTES`]); `None` if dropped.
    pub fn admit(&mut self, line: &str) -> Option<String> {
        let now = Instant::now();
        let burst = self.per_second * 10.0;
        let refill = now.duration_since(self.refilled).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + refill).min(burst);
        self.refilled = now;
        if self.tokens < 1.0 {
            self.dropped += 1;
            return None;
        }
        self.tokens -= 1.0;
        let mut end = line.len().min(MAX_LOG_LINE_BYTES);
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        let line = line[..end].to_string();
        if self.recent.len() == RECENT_LOG_LINES {
            self.recent.pop_front();
        }
        self.recent.push_back(line.clone());
        Some(line)
    }

    /// Lines dropped over the rate since the plugin started.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The last lines written, oldest first.
    pub fn recent(&self) -> Vec<String> {
        self.recent.iter().cloned().collect()
    }
}

/// The shared state behind one plugin's host interfaces.
pub struct PluginServices {
    name: String,
    kv: Mutex<KvStore>,
    log: Mutex<LogBook>,
    counters: Mutex<BTreeMap<String, u64>>,
    rows: Option<Arc<dyn RowSource>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind; keep using it.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl PluginServices {
    /// Services for the plugin `name` with the store `kv`, logging at most
    /// `log_lines_per_second`, reading rows from `rows`.
    pub fn new(
        name: &str,
        kv: KvStore,
        log_lines_per_second: u32,
        rows: Option<Arc<dyn RowSource>>,
    ) -> Arc<PluginServices> {
        Arc::new(PluginServices {
            name: name.to_string(),
            kv: Mutex::new(kv),
            log: Mutex::new(LogBook::new(log_lines_per_second)),
            counters: Mutex::new(BTreeMap::new()),
            rows,
        })
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key-value store.
    pub fn kv(&self) -> MutexGuard<'_, KvStore> {
        lock(&self.kv)
    }

    /// The log book.
    pub fn log(&self) -> MutexGuard<'_, LogBook> {
        lock(&self.log)
    }

    /// The counters' current values.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        lock(&self.counters).clone()
    }

    pub(crate) fn add_counter(&self, name: String, delta: u64) {
        let mut counters = lock(&self.counters);
        let full = counters.len() >= MAX_COUNTERS;
        match counters.get_mut(&name) {
            Some(value) => *value = value.saturating_add(delta),
            None if !full => {
                counters.insert(name, delta);
            }
            None => {}
        }
    }

    pub(crate) fn rows(&self) -> Option<&Arc<dyn RowSource>> {
        self.rows.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_rate_allows_a_burst_then_drops_and_lines_are_cut() {
        let mut book = LogBook::new(1);
        let admitted = (0..100).filter(|_| book.admit("x").is_some()).count();
        assert!((10..=11).contains(&admitted), "{admitted}");
        assert!(book.dropped() >= 89);
        let mut book = LogBook::new(100);
        let line = book.admit(&"é".repeat(1000)).unwrap();
        assert!(line.len() <= MAX_LOG_LINE_BYTES && line.len() >= MAX_LOG_LINE_BYTES - 1);
    }

    #[test]
    fn counters_stop_taking_new_names_at_the_cap() {
        let services = PluginServices::new("p", KvStore::default(), 10, None);
        for n in 0..MAX_COUNTERS + 5 {
            services.add_counter(format!("c{n}"), 1);
        }
        services.add_counter("c0".into(), 2);
        let counters = services.counters();
        assert_eq!(counters.len(), MAX_COUNTERS);
        assert_eq!(counters["c0"], 3);
    }
}
