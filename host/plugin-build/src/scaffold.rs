//! `streamhost plugin new`: writes a self-contained plugin project in any folder, for Rust,
//! Python or JavaScript: the source of a small working plugin (it counts rows per room in the
//! key-value store, invalidates a cached query and notifies a topic), its `plugin.toml`, the
//! WIT, for Rust the SDK (Python and JavaScript builds add the carried helper layer
//! themselves), a README, and a fixture with its expectations for `streamhost plugin test`.
//!
//! A Rust project carries the SDK as `streamhost-sdk/` beside `wit/` (its bindings read
//! `../wit` and `wit-http`, so the carried sources are used unchanged) and a `Cargo.lock`
//! pinning the SDK's dependencies. Files: `files` (what each language's project holds),
//! `expectations` (the expectations file of the fixture).

use std::path::{Path, PathBuf};

use crate::Language;

mod expectations;
mod files;

/// What `streamhost plugin new` was asked for.
#[derive(Debug, Clone)]
pub struct NewPlugin {
    /// The plugin's name (its folder's name too).
    pub name: String,
    /// Its language.
    pub language: Language,
    /// The streams it wants (empty: the template's default).
    pub streams: Vec<String>,
}

/// The streams of a plugin that names none.
pub const DEFAULT_STREAMS: &[&str] = &["messages"];

/// Writes the project for `plugin` into `parent/<name>` and returns that folder. Refuses a
/// name that is not lowercase letters, digits and `-` (starting with a letter), a stream name
/// with other characters than letters, digits, `_`, `-`, `.` or `*`, and a target folder that
/// exists and is not empty. The files are written into a hidden sibling folder first and moved
/// into place at the end, so a failure leaves no half project.
pub fn create(parent: &Path, plugin: &NewPlugin) -> anyhow::Result<PathBuf> {
    check_name(&plugin.name)?;
    for stream in &plugin.streams {
        check_stream(stream)?;
    }
    let mut plugin = plugin.clone();
    if plugin.streams.is_empty() {
        plugin.streams = DEFAULT_STREAMS.iter().map(|s| s.to_string()).collect();
    }
    let target = parent.join(&plugin.name);
    if target.exists() {
        let empty = std::fs::read_dir(&target)
            .map(|mut entries| entries.next().is_none())
            .unwrap_or(false);
        anyhow::ensure!(
            empty,
            "{} already exists and is not an empty folder; pick another name or --parent",
            target.display()
        );
    }
    std::fs::create_dir_all(parent)
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", parent.display()))?;
    let staging = parent.join(format!(".{}.new-{}", plugin.name, std::process::id()));
    let written = write_files(&staging, &files::project(&plugin)).and_then(|()| {
        if target.exists() {
            std::fs::remove_dir(&target)
                .map_err(|e| anyhow::anyhow!("replacing the empty {}: {e}", target.display()))?;
        }
        std::fs::rename(&staging, &target)
            .map_err(|e| anyhow::anyhow!("moving the project to {}: {e}", target.display()))
    });
    if let Err(error) = written {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(error);
    }
    Ok(target)
}

/// Writes `files` under `dir`.
fn write_files(dir: &Path, files: &[files::File]) -> anyhow::Result<()> {
    for (path, text) in files {
        let target = dir.join(path);
        if let Some(folder) = target.parent() {
            std::fs::create_dir_all(folder)
                .map_err(|e| anyhow::anyhow!("creating {}: {e}", folder.display()))?;
        }
        std::fs::write(&target, text)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", target.display()))?;
    }
    Ok(())
}

/// A plugin name: a lowercase letter, then lowercase letters, digits and `-`.
fn check_name(name: &str) -> anyhow::Result<()> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
        && name.len() <= 64;
    anyhow::ensure!(
        valid,
        "plugin name {name:?}: use lowercase letters, digits and `-` (at most 64, starting with \
         a letter, not ending with `-`), for example `room-counts`"
    );
    Ok(())
}

/// A stream name as a manifest names it (`*` for every granted stream).
fn check_stream(stream: &str) -> anyhow::Result<()> {
    let valid = !stream.is_empty()
        && stream
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '*'));
    anyhow::ensure!(
        valid,
        "stream name {stream:?}: use letters, digits, `_`, `-`, `.` (or `*` for every granted \
         stream)"
    );
    Ok(())
}

#[cfg(test)]
mod tests;
