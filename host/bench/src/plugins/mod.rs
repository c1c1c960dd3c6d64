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

/// Runs the three parts in turn on the plugins built into `plugins`.
pub(crate) async fn run(plugins: PathBuf, rows: usize, runs: usize) -> anyhow::Result<()> {
    let dir = plugins.clone();
    tokio::task::spawn_blocking(move || wasm::run(&dir, rows, runs)).await??;
    reader::run(&plugins, rows, runs).await?;
    tokio::task::spawn_blocking(move || languages::run(&plugins, rows, runs)).await?
}
