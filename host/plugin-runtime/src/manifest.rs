//! `plugin.toml`, the manifest beside each `.wasm`: what the plugin asks for.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::LoadError;

/// Limits a plugin may ask for; a missing field means the default (see [`crate::Limits`]).
pub type LimitRequest = toml::Table;

/// What a plugin asks for. Unknown keys are errors, so a typo never silently drops a request.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The plugin's name; `describe` must return the same.
    pub name: String,
    /// The sha256 (hex) the `.wasm` must have, when pinned.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Streams whose batches it wants; `*` means every granted stream.
    #[serde(default)]
    pub streams: Vec<String>,
    /// Caches it may invalidate (and that its queries fill).
    #[serde(default)]
    pub caches: Vec<String>,
    /// Topic patterns it may notify; a trailing `*` matches any suffix.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Whether it uses the key-value store.
    #[serde(default)]
    pub kv: bool,
    /// Streams it may read through the `rows` import.
    #[serde(default)]
    pub read_rows: Vec<String>,
    /// Guest path of a read-only directory it asks for.
    #[serde(default)]
    pub directory: Option<String>,
    /// Limits it asks for instead of the defaults.
    #[serde(default)]
    pub limits: LimitRequest,
}

impl Manifest {
    /// Parses a manifest's text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Manifest, LoadError> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| LoadError::Manifest {
            path: origin.to_path_buf(),
            message: e.to_string(),
        })?;
        if manifest.name.is_empty() {
            return Err(LoadError::Manifest {
                path: origin.to_path_buf(),
                message: "`name` must not be empty".into(),
            });
        }
        Ok(manifest)
    }

    /// Reads `plugin.toml` from `path`.
    pub fn load(path: &Path) -> Result<Manifest, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|e| LoadError::Manifest {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Manifest::parse(&text, path)
    }
}

/// A plugin on disk: a folder holding `plugin.toml` and exactly one `.wasm`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginFiles {
    /// The folder.
    pub dir: PathBuf,
    /// Its `plugin.toml`.
    pub manifest: PathBuf,
    /// Its component.
    pub wasm: PathBuf,
}

impl PluginFiles {
    /// Finds the manifest and the one `.wasm` in `dir`.
    pub fn in_dir(dir: &Path) -> Result<PluginFiles, LoadError> {
        let manifest = dir.join("plugin.toml");
        if !manifest.is_file() {
            return Err(LoadError::Files {
                dir: dir.to_path_buf(),
                message: "no plugin.toml".into(),
            });
        }
        let entries = std::fs::read_dir(dir).map_err(|e| LoadError::Files {
            dir: dir.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut wasm: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "wasm"))
            .collect();
        match wasm.len() {
            1 => Ok(PluginFiles {
                dir: dir.to_path_buf(),
                manifest,
                wasm: wasm.remove(0),
            }),
            0 => Err(LoadError::Files {
                dir: dir.to_path_buf(),
                message: "no .wasm file beside plugin.toml".into(),
            }),
            n => Err(LoadError::Files {
                dir: dir.to_path_buf(),
                message: format!("{n} .wasm files; a plugin folder holds exactly one"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_manifest_parses() {
        let text = r#"
            name = "room-timeline"
            sha256 = "ab"
            streams = ["messages"]
            caches = ["timeline"]
            topics = ["room:*"]
            kv = true
            read_rows = ["messages"]
            directory = "/data"
            [limits]
            memory_mib = 128
        "#;
        let manifest = Manifest::parse(text, Path::new("plugin.toml")).unwrap();
        assert_eq!(manifest.name, "room-timeline");
        assert!(manifest.kv);
        assert_eq!(
            manifest.limits.get("memory_mib").unwrap().as_integer(),
            Some(128)
        );
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let error = Manifest::parse("name = \"x\"\nstreamz = []\n", Path::new("p/plugin.toml"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("streamz"), "{error}");
        assert!(error.contains("p/plugin.toml"), "{error}");
    }
}
