//! Builds reader plugins from source in Rust, Python and JavaScript, and writes new plugin
//! projects, without a clone of the repository: the WIT, the Rust SDK and the Python and
//! JavaScript helper layers are carried in this crate ([`assets`]), versioned with it.
//!
//! [`build`] turns a plugin folder into the layout a reader loads, `OUT/<name>/plugin.toml` and
//! `OUT/<name>/<name>.wasm`, with the pinned toolchain of the folder's [`Language`] (installed
//! into [`BuildOptions::toolchains`] on first use). Builds are reproducible: the same source
//! and toolchain give the same bytes. `streamhost plugin build` and the tests' build script
//! both call it.
//!
//! Files: `assets` (what the binary carries), `language` (which language a folder holds),
//! `world` (the narrowed world a Python or JavaScript plugin is componentized against),
//! `imports` (the warning for a component importing what its `plugin.toml` does not ask for),
//! `rust`, `python`, `javascript` (one builder each; the last two share `stage`, and `usage`
//! warns of helper calls their manifest does not ask for), `weval` (the ahead-of-time compiler
//! JavaScript builds run), `scaffold` (`streamhost plugin new`).

use std::path::{Path, PathBuf};

pub mod assets;
pub mod imports;
mod javascript;
pub mod language;
mod python;
mod rust;
pub mod scaffold;
mod stage;
mod usage;
mod weval;
pub mod world;

pub use language::Language;

/// Where and how [`build`] works.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The folder the plugin's layout is written into: `out/<name>/`.
    pub out: PathBuf,
    /// The folder holding the installed guest toolchains (a venv, `node_modules`); see
    /// [`default_toolchains_dir`].
    pub toolchains: PathBuf,
    /// `Some(folder)`: a JavaScript plugin is compiled ahead of time (componentize-js's
    /// `--aot`) by the weval installed into `folder/weval` on first use, usually `toolchains`
    /// (the tests' build keeps its guest toolchains to itself but shares weval, which may take
    /// minutes to build, per machine). A build about 10 s longer and a plugin's calls 8–16 %
    /// shorter. `None`: interpreted, as `plugin dev`'s rebuild on save builds. Rust and Python
    /// builds ignore it.
    pub ahead_of_time: Option<PathBuf>,
}

/// A plugin [`build`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltPlugin {
    /// The manifest's `name`.
    pub name: String,
    /// The language it was built from.
    pub language: Language,
    /// `out/<name>`: the folder a reader loads.
    pub dir: PathBuf,
    /// `out/<name>/<name>.wasm`.
    pub wasm: PathBuf,
    /// The component's size in bytes.
    pub size: u64,
    /// The component's sha256, lowercase hex (what a grant's `sha256` pins).
    pub sha256: String,
    /// Problems that do not stop the build, one sentence each (for example a component
    /// importing an interface its `plugin.toml` does not ask for).
    pub warnings: Vec<String>,
}

/// Builds the plugin in `dir` (a folder holding `plugin.toml` and the language's source) and
/// writes `options.out/<name>/{plugin.toml,<name>.wasm}`. The old files are replaced only once
/// the new component exists, so a reader watching `out` never sees half a plugin.
pub fn build(dir: &Path, options: &BuildOptions) -> anyhow::Result<BuiltPlugin> {
    match Language::of_folder(dir)? {
        Language::Rust => rust::build(dir, options),
        Language::Python => python::build(dir, options),
        Language::JavaScript => javascript::build(dir, options),
    }
}

/// The guest toolchains' folder when none is given: `$STREAMHOST_GUEST_TOOLCHAINS`, else
/// `$XDG_CACHE_HOME/streamhost/toolchains`, else `~/.cache/streamhost/toolchains`.
pub fn default_toolchains_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("STREAMHOST_GUEST_TOOLCHAINS") {
        return PathBuf::from(dir);
    }
    cache_home().join("streamhost").join("toolchains")
}

/// `$XDG_CACHE_HOME`, else `~/.cache`, else `.cache` in the current folder.
pub fn cache_home() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => PathBuf::from(home).join(".cache"),
        None => PathBuf::from(".cache"),
    }
}

/// Size and sha256 of the file at `path`.
pub fn size_and_sha256(path: &Path) -> anyhow::Result<(u64, String)> {
    use sha2::Digest;
    let bytes =
        std::fs::read(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    Ok((
        bytes.len() as u64,
        hex::encode(sha2::Sha256::digest(&bytes)),
    ))
}
