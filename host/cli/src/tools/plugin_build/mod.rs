//! `streamhost plugin build`: builds a plugin folder into the layout a reader loads. (Contract
//! placeholder: its owner replaces it.)

use std::io::Write;
use std::path::PathBuf;

/// Flags of `streamhost plugin build`.
#[derive(Debug, clap::Args)]
pub struct PluginBuildArgs {
    /// The plugin's folder [default: the current folder].
    #[arg(value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
    /// Where `<name>/plugin.toml` and `<name>/<name>.wasm` are written [default: DIR/build].
    #[arg(long, value_name = "OUT")]
    pub out: Option<PathBuf>,
}

/// Builds the plugin and prints its path, size and sha256.
pub fn run(args: &PluginBuildArgs, _out: &mut dyn Write) -> anyhow::Result<()> {
    anyhow::bail!("plugin build {}: not written yet", args.dir.display())
}
