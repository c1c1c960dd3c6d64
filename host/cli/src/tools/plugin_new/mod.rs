//! `streamhost plugin new`: a self-contained plugin project in any folder. (Contract
//! placeholder: its owner replaces it.)

use std::io::Write;
use std::path::PathBuf;

/// Flags of `streamhost plugin new`.
#[derive(Debug, clap::Args)]
pub struct PluginNewArgs {
    /// The plugin's name: lowercase letters, digits and `-`; also the folder's name.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// The language: rust, python or javascript.
    #[arg(long = "lang", value_name = "LANG")]
    pub language: String,
    /// A stream the plugin wants; repeat for several.
    #[arg(long = "stream", value_name = "NAME")]
    pub streams: Vec<String>,
    /// The folder the project's folder is created in [default: the current folder].
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub parent: PathBuf,
}

/// Writes the project and says what to do next.
pub fn run(args: &PluginNewArgs, _out: &mut dyn Write) -> anyhow::Result<()> {
    anyhow::bail!("plugin new {}: not written yet", args.name)
}
