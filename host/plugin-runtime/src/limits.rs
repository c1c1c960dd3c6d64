//! Per-plugin limits and the [`BudgetLimiter`] that enforces the memory budget inside wasmtime.
//!
//! Every limit here is enforced by the engine or the host interfaces, never by watching from
//! outside: CPU by epoch deadlines, memory and tables by a `ResourceLimiter`, stack by the
//! engine's `max_wasm_stack`, host memory by wasmtime's hostcall fuel (`budget`), effects and
//! key-value bytes by the host.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long one epoch tick lasts; deadlines are counted in ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// The limits one plugin runs under. Defaults are the documented ones (`docs/plugins.md`);
/// `plugin.toml` may ask for others and the operator's grant caps what it gets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// CPU time of one `on-batch` call, before the per-row part.
    pub batch_deadline_ms: u64,
    /// CPU time added per row of a batch, in microseconds.
    pub batch_deadline_per_row_us: u64,
    /// The most a batch's deadline can grow to.
    pub batch_deadline_max_ms: u64,
    /// CPU time of `init`, `restore` and `snapshot`.
    pub init_deadline_ms: u64,
    /// CPU time of one `query` call.
    pub query_deadline_ms: u64,
    /// One budget over all the plugin's linear memories and tables together.
    pub memory_mib: u64,
    /// Host memory the plugin may cause outside its sandbox: what one call passes the host
    /// (effects, log lines, counter names, key-value writes, snapshots, query answers) plus
    /// what the host still holds for it (effects not yet applied, counter names).
    pub host_memory_mib: u64,
    /// Effects one batch may return.
    pub max_effects: usize,
    /// Bytes of effects (all strings together) one batch may return.
    pub max_effect_bytes: usize,
    /// Bytes (keys plus values) the plugin's key-value store may hold.
    pub kv_quota_bytes: u64,
    /// Log lines per second the plugin may write; a burst of ten seconds' worth is allowed.
    pub log_lines_per_second: u32,
    /// Size of the `.wasm` file.
    pub max_component_bytes: u64,
    /// Wall time one outbound HTTP request may take, from sending it to the end of its
    /// response body; never more than what is left of the call's deadline (the time a call
    /// waits for a server counts against its deadline like CPU time).
    pub http_timeout_ms: u64,
    /// Bytes of one outbound HTTP response body; a larger body fails the request.
    pub max_http_response_bytes: u64,
    /// Outbound HTTP requests one `on-batch` call may make.
    pub max_http_requests: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            batch_deadline_ms: 100,
            batch_deadline_per_row_us: 50,
            batch_deadline_max_ms: 2_000,
            init_deadline_ms: 3_000,
            query_deadline_ms: 100,
            memory_mib: 64,
            host_memory_mib: 16,
            max_effects: 10_000,
            max_effect_bytes: 4 << 20,
            kv_quota_bytes: 16 << 20,
            log_lines_per_second: 100,
            max_component_bytes: 32 << 20,
            http_timeout_ms: 5_000,
            max_http_response_bytes: 1 << 20,
            max_http_requests: 16,
        }
    }
}

impl Limits {
    /// The CPU deadline of a batch of `rows` rows: the base plus the per-row part, capped.
    pub fn batch_deadline(&self, rows: usize) -> Duration {
        let micros = self
            .batch_deadline_ms
            .saturating_mul(1_000)
            .saturating_add(self.batch_deadline_per_row_us.saturating_mul(rows as u64));
        Duration::from_micros(micros).min(Duration::from_millis(self.batch_deadline_max_ms))
    }

    /// The memory budget in bytes.
    pub fn memory_bytes(&self) -> usize {
        usize::try_from(self.memory_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }

    /// The host memory budget in bytes.
    pub fn host_memory_bytes(&self) -> usize {
        usize::try_from(self.host_memory_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }

    /// The names and values of the limits in `self` that exceed those of `cap`.
    pub fn exceeding(&self, cap: &Limits) -> Vec<String> {
        let pairs: [(&str, u64, u64); 15] = [
            (
                "batch_deadline_ms",
                self.batch_deadline_ms,
                cap.batch_deadline_ms,
            ),
            (
                "batch_deadline_per_row_us",
                self.batch_deadline_per_row_us,
                cap.batch_deadline_per_row_us,
            ),
            (
                "batch_deadline_max_ms",
                self.batch_deadline_max_ms,
                cap.batch_deadline_max_ms,
            ),
            (
                "init_deadline_ms",
                self.init_deadline_ms,
                cap.init_deadline_ms,
            ),
            (
                "query_deadline_ms",
                self.query_deadline_ms,
                cap.query_deadline_ms,
            ),
            ("memory_mib", self.memory_mib, cap.memory_mib),
            ("host_memory_mib", self.host_memory_mib, cap.host_memory_mib),
            (
                "max_effects",
                self.max_effects as u64,
                cap.max_effects as u64,
            ),
            (
                "max_effect_bytes",
                self.max_effect_bytes as u64,
                cap.max_effect_bytes as u64,
            ),
            ("kv_quota_bytes", self.kv_quota_bytes, cap.kv_quota_bytes),
            (
                "log_lines_per_second",
                u64::from(self.log_lines_per_second),
                u64::from(cap.log_lines_per_second),
            ),
            (
                "max_component_bytes",
                self.max_component_bytes,
                cap.max_component_bytes,
            ),
            ("http_timeout_ms", self.http_timeout_ms, cap.http_timeout_ms),
            (
                "max_http_response_bytes",
                self.max_http_response_bytes,
                cap.max_http_response_bytes,
            ),
            (
                "max_http_requests",
                u64::from(self.max_http_requests),
                u64::from(cap.max_http_requests),
            ),
        ];
        pairs
            .iter()
            .filter(|(_, asked, cap)| asked > cap)
            .map(|(name, asked, cap)| format!("limits.{name} = {asked} (granted {cap})"))
            .collect()
    }
}

/// Which limit stopped a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LimitHit {
    /// The CPU deadline passed (epoch interruption).
    CpuDeadline,
    /// Memories and tables together would exceed the budget.
    Memory,
    /// The wasm stack overflowed.
    Stack,
    /// More effects, or more effect bytes, than a batch may return.
    Effects,
    /// The key-value quota refused a write.
    KvQuota,
    /// Log lines were dropped over the rate.
    LogRate,
    /// The plugin would make the host hold more than its `host_memory_mib`.
    HostMemory,
}

impl LimitHit {
    /// The name used in reports and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitHit::CpuDeadline => "cpu-deadline",
            LimitHit::Memory => "memory",
            LimitHit::Stack => "stack",
            LimitHit::Effects => "effects",
            LimitHit::KvQuota => "kv-quota",
            LimitHit::LogRate => "log-rate",
            LimitHit::HostMemory => "host-memory",
        }
    }
}

/// Bytes wasmtime spends per table element (a pointer, as `ResourceLimiter` documents).
const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();

/// One memory budget over every linear memory and table of one store.
///
/// wasmtime reports each memory and table separately; this sums them, so a component with
/// several core modules (Python, JavaScript) cannot multiply its budget.
#[derive(Debug)]
pub struct BudgetLimiter {
    budget: usize,
    used: usize,
    peak: usize,
    hit: bool,
}

impl BudgetLimiter {
    /// A limiter allowing `budget` bytes in all.
    pub fn new(budget: usize) -> BudgetLimiter {
        BudgetLimiter {
            budget,
            used: 0,
            peak: 0,
            hit: false,
        }
    }

    /// The most the store's memories and tables have held together.
    pub fn peak(&self) -> usize {
        self.peak
    }

    /// Whether a growth was refused since the last [`BudgetLimiter::clear_hit`].
    pub fn was_hit(&self) -> bool {
        self.hit
    }

    /// Forgets a refused growth (before the next call).
    pub fn clear_hit(&mut self) {
        self.hit = false;
    }

    fn grow(&mut self, current: usize, desired: usize) -> wasmtime::Result<bool> {
        let added = desired.saturating_sub(current);
        let after = self.used.saturating_add(added);
        if after > self.budget {
            self.hit = true;
            // An error (not `Ok(false)`) traps at once, with a message naming the limit,
            // instead of letting the guest see a failed `memory.grow` and abort obscurely.
            return Err(wasmtime::Error::msg(format!(
                "memory budget of {} bytes exceeded: growing to {after} bytes",
                self.budget
            )));
        }
        self.used = after;
        self.peak = self.peak.max(after);
        Ok(true)
    }
}

impl wasmtime::ResourceLimiter for BudgetLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(current, desired)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // The pooling allocator caps every table's elements; past that cap the growth would
        // fail quietly (`table.grow` gives -1). Stop the plugin instead, naming the limit.
        if let Some(maximum) = maximum
            && desired > maximum
        {
            self.hit = true;
            return Err(wasmtime::Error::msg(format!(
                "memory budget: table growth to {desired} elements exceeds the limit of {maximum}"
            )));
        }
        self.grow(
            current.saturating_mul(TABLE_ELEMENT_BYTES),
            desired.saturating_mul(TABLE_ELEMENT_BYTES),
        )
    }
}

#[cfg(test)]
mod tests {
    use wasmtime::ResourceLimiter;

    use super::*;

    #[test]
    fn batch_deadline_grows_per_row_and_is_capped() {
        let limits = Limits::default();
        assert_eq!(limits.batch_deadline(0), Duration::from_millis(100));
        assert_eq!(limits.batch_deadline(1_000), Duration::from_millis(150));
        assert_eq!(limits.batch_deadline(1_000_000), Duration::from_secs(2));
    }

    #[test]
    fn memories_and_tables_share_one_budget() {
        let mut limiter = BudgetLimiter::new(1_000);
        assert!(limiter.memory_growing(0, 600, None).unwrap());
        assert!(limiter.table_growing(0, 40, None).unwrap()); // 320 bytes on 64-bit
        assert!(limiter.memory_growing(0, 100, None).is_err());
        assert!(limiter.was_hit());
        assert_eq!(limiter.peak(), 600 + 40 * TABLE_ELEMENT_BYTES);
    }

    #[test]
    fn exceeding_names_each_limit_over_the_cap() {
        let asked = Limits {
            memory_mib: 256,
            ..Limits::default()
        };
        assert_eq!(
            asked.exceeding(&Limits::default()),
            vec!["limits.memory_mib = 256 (granted 64)".to_string()]
        );
        assert!(Limits::default().exceeding(&Limits::default()).is_empty());
    }
}
