//! `streamhost plugin build`: builds a plugin folder (Rust, Python or JavaScript, told by its
//! files) into the layout a reader loads, `OUT/<name>/{plugin.toml,<name>.wasm}`, with
//! [`streamhost_plugin_build::build`], and prints the component's path, size and sha256 and
//! any warning.

use std::io::Write;
use std::path::PathBuf;

use streamhost_plugin_build::{BuildOptions, default_toolchains_dir};

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
pub fn run(args: &PluginBuildArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let default_out = || match args.dir.as_os_str() == "." {
        // `build`, not `./build`: the printed path reads as the author typed the command.
        true => PathBuf::from("build"),
        false => args.dir.join("build"),
    };
    let toolchains = default_toolchains_dir();
    let options = BuildOptions {
        out: args.out.clone().unwrap_or_else(default_out),
        ahead_of_time: Some(toolchains.clone()),
        toolchains,
    };
    let built = streamhost_plugin_build::build(&args.dir, &options)?;
    writeln!(
        out,
        "{}  {} bytes  sha256 {}",
        built.wasm.display(),
        built.size,
        built.sha256
    )?;
    for warning in &built.warnings {
        writeln!(out, "warning: {warning}")?;
    }
    Ok(())
}
