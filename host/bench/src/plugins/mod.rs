//! `streamhost bench plugins`: what running reader logic as a sandboxed Wasm plugin costs.
//!
//! Files: `wasm` (the `room-timeline` plugin against the same logic native, and
//! instantiation), `reader` (a reader with the example plugins against one without, and the
//! hot-reload pause), `languages` (the same plugin in Rust, Python and JavaScript).

use std::path::PathBuf;

mod languages;
mod reader;
mod wasm;

pub(crate) use reader::rates_only as reader_only;

/// What the plugin suites run on.
#[derive(Clone, Debug)]
pub(crate) struct Suite {
    /// The folder `scripts/build-plugins` filled.
    pub(crate) plugins: PathBuf,
    /// Rows per run.
    pub(crate) rows: usize,
    /// Runs of each measurement.
    pub(crate) runs: usize,
    /// Every engine writes `/tmp/perf-<pid>.map` (`--perf-map`).
    pub(crate) perf_map: bool,
}

impl Suite {
    /// The engine settings of the suite's own runtimes: the defaults, with `perf_map`.
    fn runtime_config(&self) -> streamhost_plugin_runtime::RuntimeConfig {
        streamhost_plugin_runtime::RuntimeConfig {
            perf_map: self.perf_map,
            ..streamhost_plugin_runtime::RuntimeConfig::default()
        }
    }
}

/// Runs only the languages table (`streamhost bench plugin-languages`).
pub(crate) async fn languages_only(suite: Suite) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || languages::run(&suite)).await?
}

/// Runs the three parts in turn.
pub(crate) async fn run(suite: Suite) -> anyhow::Result<()> {
    let first = suite.clone();
    tokio::task::spawn_blocking(move || wasm::run(&first)).await??;
    reader::run(&suite).await?;
    tokio::task::spawn_blocking(move || languages::run(&suite)).await?
}
