//! The plugin's source folder: a fingerprint of its files (polled; the build output,
//! `target/`, `node_modules/`, `__pycache__/` and hidden folders are left out) and building it
//! into the reader's plugins folder.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use streamhost_plugin_build::{BuildOptions, Language};

/// Folders never watched: build output and tool caches.
const IGNORED: [&str; 5] = ["target", "node_modules", "__pycache__", "build", "out"];

/// Quiet time after the last change before building (an editor's save writes several files).
pub(super) const DEBOUNCE: Duration = Duration::from_millis(150);

/// How often the folder is looked at.
pub(super) const POLL: Duration = Duration::from_millis(50);

/// Every watched file with its modification time and size, sorted: two fingerprints differ
/// when a file was saved, added or removed.
pub(super) fn fingerprint(dir: &Path) -> Vec<(PathBuf, SystemTime, u64)> {
    let mut files = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                if !name.starts_with('.') && !IGNORED.contains(&name.as_str()) {
                    folders.push(path);
                }
            } else if let Ok(modified) = meta.modified() {
                files.push((path, modified, meta.len()));
            }
        }
    }
    files.sort();
    files
}

/// What a build placed in the reader's plugins folder.
pub(super) struct Built {
    /// The manifest's name.
    pub(super) name: String,
    /// `rust`, `python`, `javascript`, or `prebuilt` (a component copied as it is).
    pub(super) from: &'static str,
    /// The component's size in bytes.
    pub(super) size: u64,
    /// The component's sha256.
    pub(super) sha256: String,
    /// The builder's warnings.
    pub(super) warnings: Vec<String>,
}

/// Builds the plugin in `dir` into `out/<name>/`. A folder holding a component already built
/// (`plugin.toml` and `<name>.wasm`, no source of a known language) is copied as it is.
pub(super) fn build(dir: &Path, out: &Path, toolchains: &Path) -> anyhow::Result<Built> {
    if let Ok(language) = Language::of_folder(dir) {
        let options = BuildOptions {
            out: out.to_path_buf(),
            toolchains: toolchains.to_path_buf(),
            // A save waits for this build: compiling JavaScript ahead of time would add about
            // 10 s to each, for a speed the dev loop does not need.
            ahead_of_time: None,
        };
        let built = streamhost_plugin_build::build(dir, &options)?;
        return Ok(Built {
            name: built.name,
            from: match language {
                Language::Rust => "rust",
                Language::Python => "python",
                Language::JavaScript => "javascript",
            },
            size: built.size,
            sha256: built.sha256,
            warnings: built.warnings,
        });
    }
    copy_built(dir, out)
}

/// The component a prebuilt folder holds: `<name>.wasm` beside `plugin.toml`.
pub(super) fn prebuilt_wasm(dir: &Path) -> anyhow::Result<PathBuf> {
    let manifest = streamhost_plugin_runtime::Manifest::load_in(dir)
        .with_context(|| format!("reading {}/plugin.toml", dir.display()))?;
    let wasm = dir.join(format!("{}.wasm", manifest.name));
    anyhow::ensure!(
        wasm.is_file(),
        "{} holds no plugin source (Cargo.toml, plugin.py or plugin.js) nor a built {}",
        dir.display(),
        wasm.display()
    );
    Ok(wasm)
}

/// Copies a prebuilt plugin into `out/<name>/`, the component last (renamed into place), so
/// the reader never loads half of it.
fn copy_built(dir: &Path, out: &Path) -> anyhow::Result<Built> {
    let wasm = prebuilt_wasm(dir)?;
    let manifest = streamhost_plugin_runtime::Manifest::load_in(dir)?;
    let target = out.join(&manifest.name);
    std::fs::create_dir_all(&target).with_context(|| format!("creating {}", target.display()))?;
    std::fs::copy(dir.join("plugin.toml"), target.join("plugin.toml"))
        .context("copying plugin.toml")?;
    let placed = target.join(format!("{}.wasm", manifest.name));
    let partial = target.join(format!(".{}.wasm.partial", manifest.name));
    std::fs::copy(&wasm, &partial).context("copying the component")?;
    std::fs::rename(&partial, &placed).context("placing the component")?;
    let (size, sha256) = streamhost_plugin_build::size_and_sha256(&placed)?;
    Ok(Built {
        name: manifest.name,
        from: "prebuilt",
        size,
        sha256,
        warnings: Vec::new(),
    })
}
