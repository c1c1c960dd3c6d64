//! `streamhost plugin test`: replays fixtures through a plugin and compares with its
//! expectations file. (Contract placeholder: its owner replaces it.)

use std::io::Write;
use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

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
