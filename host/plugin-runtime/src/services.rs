//! What one plugin's host interfaces act on, shared by all its instances and versions: its
//! key-value store, its log book, its counters, its host memory budget and the row source.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::budget::{Charge, HostBudget};
use crate::kv::KvStore;

/// Longest log line kept; longer ones are cut.
pub const MAX_LOG_LINE_BYTES: usize = 1024;

/// Log lines kept for trap reports.
const RECENT_LOG_LINES: usize = 20;

/// Distinct counter names per plugin; more are ignored.
pub const MAX_COUNTERS: usize = 100;

/// Longest counter name, in bytes; a longer one fails the call with reason `host-memory`.
pub const MAX_COUNTER_NAME_BYTES: usize = 128;

/// Bytes one counter costs the host besides its name (its value and map entry).
const COUNTER_ENTRY_BYTES: usize = 64;

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
    /// Lines kept since the plugin started.
    kept: u64,
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
            kept: 0,
            recent: VecDeque::new(),
        }
    }

    /// Whether the rate allows one more line now (it is then counted); a line over the rate
    /// is counted as dropped. Asked before the line is read from the guest.
    pub fn admit(&mut self) -> bool {
        let now = Instant::now();
        let burst = self.per_second * 10.0;
        let refill = now.duration_since(self.refilled).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + refill).min(burst);
        self.refilled = now;
        if self.tokens < 1.0 {
            self.dropped += 1;
            return false;
        }
        self.tokens -= 1.0;
        true
    }

    /// Keeps an admitted line, cut to [`MAX_LOG_LINE_BYTES`], among the recent ones.
    pub fn keep(&mut self, line: &str) -> String {
        let mut end = line.len().min(MAX_LOG_LINE_BYTES);
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        let line = line[..end].to_string();
        if self.recent.len() == RECENT_LOG_LINES {
            self.recent.pop_front();
        }
        self.recent.push_back(line.clone());
        self.kept += 1;
        line
    }

    /// Lines kept since the plugin started: a mark for [`LogBook::since`].
    pub fn kept(&self) -> u64 {
        self.kept
    }

    /// The lines kept after `mark` (an earlier [`LogBook::kept`]), oldest first; only the
    /// last of them if more were written than are kept for trap reports.
    pub fn since(&self, mark: u64) -> Vec<String> {
        let new = usize::try_from(self.kept.saturating_sub(mark)).unwrap_or(usize::MAX);
        let skip = self.recent.len().saturating_sub(new);
        self.recent.iter().skip(skip).cloned().collect()
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
    counters: Mutex<Counters>,
    budget: Arc<HostBudget>,
    rows: Option<Arc<dyn RowSource>>,
}

/// The plugin's counters and the host memory their names hold.
#[derive(Default)]
struct Counters {
    values: BTreeMap<String, u64>,
    charge: Charge,
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
            counters: Mutex::new(Counters::default()),
            budget: Arc::new(HostBudget::default()),
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
        lock(&self.counters).values.clone()
    }

    /// The host memory held for the plugin.
    pub fn budget(&self) -> &Arc<HostBudget> {
        &self.budget
    }

    /// Adds `delta` to the counter `name` (at most [`MAX_COUNTERS`] names; more are ignored).
    /// A new name is charged to the budget, which must have room for it.
    pub(crate) fn add_counter(
        &self,
        name: &str,
        delta: u64,
        budget_bytes: usize,
    ) -> Result<(), String> {
        if name.len() > MAX_COUNTER_NAME_BYTES {
            return Err(format!(
                "counter name of {} bytes; the limit is {MAX_COUNTER_NAME_BYTES}",
                name.len()
            ));
        }
        let mut counters = lock(&self.counters);
        if let Some(value) = counters.values.get_mut(name) {
            *value = value.saturating_add(delta);
            return Ok(());
        }
        if counters.values.len() >= MAX_COUNTERS {
            return Ok(());
        }
        let cost = name.len() + COUNTER_ENTRY_BYTES;
        if self.budget.available(budget_bytes) < cost {
            return Err(format!(
                "a new counter needs {cost} bytes of host memory and the budget of {budget_bytes} bytes is spent"
            ));
        }
        let charge = self.budget.charge(cost);
        counters.charge.absorb(charge);
        counters.values.insert(name.to_owned(), delta);
        Ok(())
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
        let admitted = (0..100).filter(|_| book.admit()).count();
        assert!((10..=11).contains(&admitted), "{admitted}");
        assert!(book.dropped() >= 89);
        let mut book = LogBook::new(100);
        let line = book.keep(&"é".repeat(1000));
        assert!(line.len() <= MAX_LOG_LINE_BYTES && line.len() >= MAX_LOG_LINE_BYTES - 1);
        assert_eq!(book.recent(), vec![line]);
    }

    #[test]
    fn counters_stop_taking_new_names_at_the_cap() {
        let services = PluginServices::new("p", KvStore::default(), 10, None);
        for n in 0..MAX_COUNTERS + 5 {
            services.add_counter(&format!("c{n}"), 1, 1 << 20).unwrap();
        }
        services.add_counter("c0", 2, 1 << 20).unwrap();
        let counters = services.counters();
        assert_eq!(counters.len(), MAX_COUNTERS);
        assert_eq!(counters["c0"], 3);
        let held = services.budget().held();
        assert!(held >= MAX_COUNTERS * COUNTER_ENTRY_BYTES, "{held}");
    }

    #[test]
    fn counter_names_are_bounded_and_charged_to_the_host_budget() {
        let services = PluginServices::new("p", KvStore::default(), 10, None);
        let long = "x".repeat(MAX_COUNTER_NAME_BYTES + 1);
        assert!(
            services
                .add_counter(&long, 1, 1 << 20)
                .unwrap_err()
                .contains("limit is 128")
        );
        let error = services.add_counter("a", 1, 10).unwrap_err();
        assert!(error.contains("budget of 10 bytes"), "{error}");
        assert!(services.counters().is_empty());
        assert_eq!(services.budget().held(), 0);
    }
}
