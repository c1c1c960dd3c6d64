//! A hook for tools that watch a reader's plugins at work (`streamhost plugin dev`): each batch
//! a plugin's `on-batch` returned, with its effects and the log lines it wrote, and each failed
//! call's report. Set once with [`PluginHost::observe`](super::PluginHost::observe); a reader
//! without an observer pays one uncontended lock of the plugin's log book per batch for it.

use streamhost_plugin_runtime::Effect;

use super::slot::FailureReport;

/// Told about the plugins' calls, on the plugin's worker thread: keep it quick.
pub trait PluginObserver: Send + Sync + 'static {
    /// `on-batch` returned for `batch` (its effects are applied when its group commits).
    fn batch_applied(&self, batch: &AppliedBatch<'_>);
    /// A call failed; the same report the admin API shows.
    fn call_failed(&self, report: &FailureReport);
}

/// One batch a plugin applied, as a [`PluginObserver`] sees it.
#[derive(Debug)]
pub struct AppliedBatch<'a> {
    /// The plugin.
    pub plugin: &'a str,
    /// The sha256 of the version that applied it.
    pub version: &'a str,
    /// The batch's stream.
    pub stream: &'a str,
    /// The batch's instance.
    pub instance: &'a str,
    /// The batch's token range `(prev_token, token]`.
    pub tokens: (i64, i64),
    /// Rows in the batch.
    pub rows: usize,
    /// What the call returned.
    pub effects: &'a [Effect],
    /// The log lines the plugin wrote during the call (at most the last 20).
    pub log_lines: Vec<String>,
}
