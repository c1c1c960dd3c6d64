//! `streamhost plugin new`: writes a self-contained plugin project. (Contract placeholder:
//! the helper that owns this file replaces it.)

use std::path::{Path, PathBuf};

use crate::Language;

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

/// Writes the project for `plugin` into `parent/<name>` and returns that folder.
pub fn create(parent: &Path, plugin: &NewPlugin) -> anyhow::Result<PathBuf> {
    anyhow::bail!(
        "{}: plugin new is not written yet ({})",
        parent.display(),
        plugin.name
    )
}
