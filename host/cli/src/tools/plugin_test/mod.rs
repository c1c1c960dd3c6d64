//! `streamhost plugin test`: replays fixtures through a plugin and compares with its
//! expectations file. (Formats first; the command follows.)
//!
//! Files: `fixture` (`tests/*.jsonl` and `tests/*.rdata` into token batches), `expectations`
//! (`tests/<fixture>.expected.toml`: parse and render), `diff` (what differs, named).

use std::io::Write;
use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

pub mod diff;
pub mod expectations;
pub mod fixture;

/// Flags of `streamhost plugin test`.
#[derive(Debug, clap::Args)]
pub struct PluginTestArgs {
    /// The plugin's folder [default: the current folder].
    #[arg(value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
    /// Rewrite the expectations from what the plugin does now.
    #[arg(long)]
    pub update: bool,
}

/// Runs the plugin's tests; an error when any fails.
pub fn run(
    args: &PluginTestArgs,
    _out: &mut dyn Write,
    _shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    anyhow::bail!("plugin test {}: not written yet", args.dir.display())
}
