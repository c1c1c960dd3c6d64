//! `plugin.toml`, the manifest beside each `.wasm`: what the plugin asks for, and
//! [`PluginFiles`], a plugin's folder, whose files are read through a `cap_std` handle on it
//! (so a name inside it, or a symbolic link, cannot lead outside the folder).

use std::io::Read;
use std::path::{Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::Dir;

use serde::{Deserialize, Serialize};

use crate::error::LoadError;

/// The manifest's file name in a plugin folder.
const MANIFEST: &str = "plugin.toml";

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
    /// Destinations (`[reader.destinations.<name>]`) it pushes to through the `push` import.
    #[serde(default)]
    pub push: Vec<String>,
    /// What it may call through `wasi:http/outgoing-handler`: origins
    /// (`https://host[:port]`) or destination names (whose origin is allowed and whose headers
    /// the host attaches to requests under the destination's URL). The import is linked only
    /// when not empty.
    #[serde(default)]
    pub http: Vec<String>,
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

    /// Reads `plugin.toml` from the plugin folder `dir`, through a handle on the folder.
    pub fn load_in(dir: &Path) -> Result<Manifest, LoadError> {
        Manifest::read(&open_folder(dir)?, dir)
    }

    /// Reads `plugin.toml` through the handle `folder` on the plugin folder `dir`.
    fn read(folder: &Dir, dir: &Path) -> Result<Manifest, LoadError> {
        let path = dir.join(MANIFEST);
        let text = folder
            .read_to_string(MANIFEST)
            .map_err(|e| LoadError::Manifest {
                path: path.clone(),
                message: e.to_string(),
            })?;
        Manifest::parse(&text, &path)
    }
}

/// A handle on the plugin folder `dir`.
fn open_folder(dir: &Path) -> Result<Dir, LoadError> {
    Dir::open_ambient_dir(dir, ambient_authority()).map_err(|e| LoadError::Files {
        dir: dir.to_path_buf(),
        message: e.to_string(),
    })
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
        let files_error = |message: String| LoadError::Files {
            dir: dir.to_path_buf(),
            message,
        };
        let folder = open_folder(dir)?;
        if !folder.is_file(MANIFEST) {
            return Err(files_error("no plugin.toml".into()));
        }
        let entries = folder.entries().map_err(|e| files_error(e.to_string()))?;
        let mut wasm: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| dir.join(e.file_name())))
            .filter(|path| path.extension().is_some_and(|ext| ext == "wasm"))
            .collect();
        match wasm.len() {
            1 => Ok(PluginFiles {
                dir: dir.to_path_buf(),
                manifest: dir.join(MANIFEST),
                wasm: wasm.remove(0),
            }),
            0 => Err(files_error("no .wasm file beside plugin.toml".into())),
            n => Err(files_error(format!(
                "{n} .wasm files; a plugin folder holds exactly one"
            ))),
        }
    }

    /// Reads the manifest and the component through one handle on the folder. `limits_of`
    /// settles, from the manifest, a value handed back and the component's size limit: a
    /// larger component is refused ([`LoadError::TooLarge`]) without being read.
    pub fn read<T>(
        &self,
        limits_of: impl FnOnce(&Manifest) -> Result<(T, u64), LoadError>,
    ) -> Result<(Manifest, T, Vec<u8>), LoadError> {
        let folder = open_folder(&self.dir)?;
        let manifest = Manifest::read(&folder, &self.dir)?;
        let (settled, max_bytes) = limits_of(&manifest)?;
        let read_error = |e: std::io::Error| LoadError::Compile {
            plugin: manifest.name.clone(),
            message: format!("{}: {e}", self.wasm.display()),
        };
        let name = self.wasm.file_name().unwrap_or_default();
        let file = folder.open(name).map_err(read_error)?;
        let too_large = |size: u64| LoadError::TooLarge {
            plugin: manifest.name.clone(),
            path: self.wasm.clone(),
            size,
            limit: max_bytes,
        };
        let size = file.metadata().map_err(read_error)?.len();
        if size > max_bytes {
            return Err(too_large(size));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        file.take(max_bytes.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(read_error)?;
        if bytes.len() as u64 > max_bytes {
            return Err(too_large(bytes.len() as u64));
        }
        Ok((manifest, settled, bytes))
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
