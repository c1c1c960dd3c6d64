//! `streamhost plugin new`: a self-contained plugin project in any folder
//! ([`streamhost_plugin_build::scaffold::create`]), then the files written and the commands
//! that come next.

use std::io::Write;
use std::path::{Path, PathBuf};

use streamhost_plugin_build::Language;
use streamhost_plugin_build::scaffold::{self, NewPlugin};

/// Flags of `streamhost plugin new`.
#[derive(Debug, clap::Args)]
pub struct PluginNewArgs {
    /// The plugin's name: lowercase letters, digits and `-`; also the folder's name.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// The language: rust, python or javascript.
    #[arg(long = "lang", value_name = "LANG")]
    pub language: String,
    /// A stream the plugin wants; repeat for several [default: messages].
    #[arg(long = "stream", value_name = "NAME")]
    pub streams: Vec<String>,
    /// The folder the project's folder is created in [default: the current folder].
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub parent: PathBuf,
}

/// Writes the project and says what to do next.
pub fn run(args: &PluginNewArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let language = Language::parse(&args.language).ok_or_else(|| {
        anyhow::anyhow!("--lang {}: use rust, python or javascript", args.language)
    })?;
    let dir = scaffold::create(
        &args.parent,
        &NewPlugin {
            name: args.name.clone(),
            language,
            streams: args.streams.clone(),
        },
    )?;
    writeln!(out, "wrote {} ({language} plugin):", dir.display())?;
    for file in listing(&dir)? {
        writeln!(out, "  {file}")?;
    }
    writeln!(out, "next:")?;
    writeln!(out, "  cd {}", dir.display())?;
    writeln!(
        out,
        "  streamhost plugin build   # writes build/{0}/{0}.wasm and build/{0}/plugin.toml",
        args.name
    )?;
    writeln!(
        out,
        "  streamhost plugin test    # replays tests/*.jsonl, compares with tests/*.expected.toml"
    )?;
    writeln!(
        out,
        "  streamhost plugin dev     # rebuilds on save and reloads into a local writer and reader"
    )?;
    Ok(())
}

/// The project's files, relative and sorted, with the carried folders (`wit/`, the SDK) as
/// one line each.
fn listing(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut lines = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder)? {
            let path = entry?.path();
            let relative = path
                .strip_prefix(dir)
                .unwrap_or(&path)
                .to_string_lossy()
                .replace('\\', "/");
            match (path.is_dir(), relative.as_str()) {
                (true, "wit") => lines.push("wit/  (the streamhost:plugin interface)".into()),
                (true, "streamhost-sdk") => {
                    lines.push("streamhost-sdk/  (the Rust SDK, crate streamhost-guest-sdk)".into())
                }
                (true, _) => stack.push(path),
                (false, _) => lines.push(relative),
            }
        }
    }
    lines.sort();
    Ok(lines)
}
