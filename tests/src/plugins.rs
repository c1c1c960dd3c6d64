//! The plugins of `plugins/`, built from source by `tests/build.rs` (release, `wasm32-wasip2`)
//! and laid out the way the reader loads them: `PLUGINS_DIR/<name>/plugin.toml` and
//! `PLUGINS_DIR/<name>/<name>.wasm`, one folder per plugin, `evil` included.
//!
//! Each plugin has `<NAME>_DIR` (its folder) and `<NAME>_WASM` (its component), the name in
//! upper case with `_` for `-`: `ROOM_TIMELINE_DIR`, `NOTIFIER_WASM`, `STREAM_STATS_DIR`,
//! `EVIL_WASM`, …; [`ALL_PLUGINS`] names them all.

include!(concat!(env!("OUT_DIR"), "/plugins.rs"));

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use streamhost_plugin_runtime::{Grant, Manifest};

/// A temporary plugins folder holding copies of some of the built plugins, so a test can
/// change them (hot reload) without touching the build's.
pub struct PluginFolder {
    dir: tempfile::TempDir,
}

impl PluginFolder {
    /// A folder with copies of the plugins named `names` (e.g. `"room-timeline"`).
    pub fn with(names: &[&str]) -> PluginFolder {
        let folder = PluginFolder {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        for name in names {
            folder.install(name, name);
        }
        folder
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The folder of plugin `folder`.
    pub fn plugin_dir(&self, folder: &str) -> PathBuf {
        self.dir.path().join(folder)
    }

    /// Copies the built plugin `built` into sub-folder `folder` (replacing its files; the
    /// `.wasm` is renamed into place so a watcher never sees half a file).
    pub fn install(&self, built: &str, folder: &str) {
        let source = Path::new(PLUGINS_DIR).join(built);
        let target = self.plugin_dir(folder);
        std::fs::create_dir_all(&target).expect("create plugin folder");
        let wasm = format!("{built}.wasm");
        let staging = self.dir.path().join(format!(".{folder}.wasm.tmp"));
        std::fs::copy(source.join(&wasm), &staging).expect("copy wasm");
        std::fs::copy(source.join("plugin.toml"), target.join("plugin.toml"))
            .expect("copy manifest");
        std::fs::rename(&staging, target.join(&wasm)).expect("move wasm into place");
    }

    /// Rewrites sub-folder `folder`'s `plugin.toml` with `edit`.
    pub fn edit_manifest(&self, folder: &str, edit: impl FnOnce(String) -> String) {
        let path = self.plugin_dir(folder).join("plugin.toml");
        let text = std::fs::read_to_string(&path).expect("read manifest");
        std::fs::write(&path, edit(text)).expect("write manifest");
    }
}

/// Grants every plugin named in `names` exactly what its built manifest asks for.
pub fn grants_for(names: &[&str]) -> BTreeMap<String, Grant> {
    names
        .iter()
        .map(|name| {
            let path = Path::new(PLUGINS_DIR).join(name).join("plugin.toml");
            let manifest = Manifest::load(&path).expect("manifest");
            let grant = Grant::everything_asked(&manifest).expect("grant");
            (manifest.name, grant)
        })
        .collect()
}
