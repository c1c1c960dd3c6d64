//! What a client may cost a reader's plugins: `[reader.plugins.queries]` (each plugin's query
//! queue and its share of the query cache) and `[reader.plugins.rate_limit]` (requests per
//! client address on the query and notification endpoints). `docs/configuration.md` and
//! `docs/plugins.md` ("What a plugin can and cannot cost the host") describe them.

use serde::{Deserialize, Serialize};

/// `[reader.plugins.queries]`: each plugin's queue of cache misses waiting for its worker, and
/// how much of the query cache one plugin's keys may hold.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueriesConfig {
    /// Cache misses waiting for one plugin's worker; a further one is answered 503 at once.
    pub queue_depth: usize,
    /// Longest a query waits in the queue; one that waited longer is dropped unrun (503).
    pub queue_timeout_ms: u64,
    /// Most queued queries the worker answers between two groups of batches, so a batch waits
    /// for at most this many queries (each within its `query_deadline_ms`).
    pub per_batch: usize,
    /// Cached answers one plugin keeps that were asked for at least twice (its working set).
    pub cache_keys: usize,
    /// Cached answers one plugin keeps that were asked for once (new keys, on probation): a
    /// flood of new arguments only ever replaces these.
    pub cache_window: usize,
}

impl Default for QueriesConfig {
    fn default() -> Self {
        QueriesConfig {
            queue_depth: 64,
            queue_timeout_ms: 1_000,
            per_batch: 1,
            cache_keys: 1_000,
            cache_window: 100,
        }
    }
}

/// `[reader.plugins.rate_limit]`: a token bucket per client address over the query and
/// notification endpoints (429 past it).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Requests per second one client address may make, sustained; 0 turns the limit off.
    pub per_second: u32,
    /// Requests one client address may make at once after a quiet spell.
    pub burst: u32,
    /// Client addresses remembered; past this the one seen least recently is forgotten (and
    /// starts again with a full bucket).
    pub clients: usize,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            per_second: 50,
            burst: 100,
            clients: 10_000,
        }
    }
}

impl QueriesConfig {
    /// Checks values that serde cannot.
    pub(super) fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.queue_depth > 0 && self.per_batch > 0,
            "reader.plugins.queries.queue_depth and per_batch must be > 0"
        );
        anyhow::ensure!(
            self.cache_window > 0,
            "reader.plugins.queries.cache_window must be > 0 (new answers are cached there first)"
        );
        Ok(())
    }
}

impl RateLimitConfig {
    /// Checks values that serde cannot.
    pub(super) fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.per_second == 0 || (self.burst > 0 && self.clients > 0),
            "reader.plugins.rate_limit: burst and clients must be > 0 (or per_second = 0 to \
             turn the limit off)"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::ConfigFile;

    #[test]
    fn defaults_parse_and_zero_depth_is_refused() {
        let config = ConfigFile::parse("").unwrap();
        assert_eq!(config.reader.plugins.queries.queue_depth, 64);
        assert_eq!(config.reader.plugins.rate_limit.per_second, 50);
        let config = ConfigFile::parse(
            "[reader.plugins.queries]\nqueue_depth = 0\n[reader.plugins.rate_limit]\nburst = 7\n",
        )
        .unwrap();
        assert_eq!(config.reader.plugins.rate_limit.burst, 7);
        let err = format!("{:#}", config.reader.validate().unwrap_err());
        assert!(err.contains("queue_depth"), "{err}");
        let err = ConfigFile::parse("[reader.plugins.rate_limit]\nburts = 1\n").unwrap_err();
        assert!(format!("{err:#}").contains("burts"), "{err:#}");
    }
}
