//! `streamhost plugin dev`: rebuilds a plugin on save and hot-reloads it into a local writer
//! and reader. (Contract placeholder: its owner replaces it.)

use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

/// Flags of `streamhost plugin dev`.
#[derive(Debug, clap::Args)]
pub struct PluginDevArgs {
    /// The plugin's folder [default: the current folder].
    #[arg(value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
}

/// Runs until `shutdown`.
pub async fn run(args: PluginDevArgs, _shutdown: CancellationToken) -> anyhow::Result<()> {
    anyhow::bail!("plugin dev {}: not written yet", args.dir.display())
}
