//! `[reader.plugins]`: where the reader's plugins are, what each is granted, and the host's
//! bounds on them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{PluginRetention, QueriesConfig, RateLimitConfig, Secret};

/// The reader's plugins: where they are, what each is granted, and the host's bounds.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginsConfig {
    /// Folder with one sub-folder per plugin (`plugin.toml` and one `.wasm`); none loads no
    /// plugins.
    pub dir: Option<PathBuf>,
    /// Bearer token of the admin API (`/v1/admin/...`); without one the admin API answers 403.
    pub admin_token: Option<Secret>,
    /// A file holding `admin_token`, read at start.
    pub admin_token_file: Option<PathBuf>,
    /// Reload a plugin when its folder changes.
    pub watch: bool,
    /// Attempts on a fresh instance after a trap, limit or `fatal` before quarantine.
    pub retries: u32,
    /// Wait before the first retry, doubled for each further one.
    pub retry_backoff_ms: u64,
    /// Cached query answers kept (all plugins together).
    pub query_cache_entries: usize,
    /// Bytes of cached query answers kept, in MiB.
    pub query_cache_mib: usize,
    /// Notifications kept for long-polls and event streams to resume from.
    pub notifications: usize,
    /// Bytes of notifications kept, in MiB, over all plugins.
    pub notifications_mib: usize,
    /// Bytes of one plugin's notifications kept, in MiB: past it the plugin's own oldest go.
    pub notifications_plugin_mib: usize,
    /// Longest a query with `min_token` waits for the plugin to get there.
    pub min_token_timeout_ms: u64,
    /// Rows of committed batches kept in memory for plugins that are behind; further behind,
    /// they catch up from the writer.
    pub feed_rows: usize,
    /// Bytes of committed batches kept in memory for plugins that are behind, in MiB (with
    /// `feed_rows`, whichever is hit first).
    pub feed_mib: usize,
    /// Wasm stack per call, in KiB (one value for all plugins: wasmtime sets it per engine).
    pub max_wasm_stack_kib: usize,
    /// Folder of compiled components, by content hash [default: `<data>/compiled`].
    pub compile_cache: Option<PathBuf>,
    /// Write `/tmp/perf-<pid>.map` as plugins load, so that `perf` names their functions.
    pub perf_map: bool,
    /// What each plugin is granted, by plugin name (deny by default).
    pub grants: std::collections::BTreeMap<String, streamhost_plugin_runtime::Grant>,
    /// Each plugin's query queue and share of the query cache (`[reader.plugins.queries]`).
    pub queries: QueriesConfig,
    /// Requests per client address on the query and notification endpoints
    /// (`[reader.plugins.rate_limit]`).
    pub rate_limit: RateLimitConfig,
    /// Pruning of dead letters and failure files (`[reader.plugins.retention]`).
    pub retention: PluginRetention,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            dir: None,
            admin_token: None,
            admin_token_file: None,
            watch: true,
            retries: 3,
            retry_backoff_ms: 100,
            query_cache_entries: 10_000,
            query_cache_mib: 64,
            notifications: 10_000,
            notifications_mib: 32,
            notifications_plugin_mib: 8,
            min_token_timeout_ms: 5_000,
            feed_rows: 100_000,
            feed_mib: 32,
            max_wasm_stack_kib: 512,
            compile_cache: None,
            perf_map: false,
            grants: Default::default(),
            queries: QueriesConfig::default(),
            rate_limit: RateLimitConfig::default(),
            retention: PluginRetention::default(),
        }
    }
}
