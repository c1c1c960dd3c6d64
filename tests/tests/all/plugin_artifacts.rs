//! Every plugin built from `plugins/` loads under the grants its manifest asks for and
//! describes itself by its folder's name, so a new plugin is tested from the moment it exists.

use std::path::{Path, PathBuf};

use streamhost_integration_tests::plugins::{ALL_PLUGINS, PLUGINS_DIR};
use streamhost_plugin_runtime::{
    Grant, Manifest, PluginFiles, PluginVersion, Runtime, RuntimeConfig,
};

#[test]
fn every_built_plugin_loads_and_describes_itself() {
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(concat!(env!("OUT_DIR"), "/compiled").into()),
        ..RuntimeConfig::default()
    })
    .unwrap();
    assert!(ALL_PLUGINS.len() >= 4, "{ALL_PLUGINS:?}");
    for name in ALL_PLUGINS {
        let files = PluginFiles::in_dir(&Path::new(PLUGINS_DIR).join(name)).unwrap();
        let manifest = Manifest::load(&files.manifest).unwrap();
        let grant = Grant::everything_asked(&manifest).unwrap();
        let version =
            PluginVersion::load(&runtime, &files, &grant).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(version.description().name, *name);
        assert!(
            !version.description().streams.is_empty(),
            "{name} wants no stream"
        );
        assert!(
            source_folder(name).join("README.md").is_file(),
            "{name} has no README"
        );
    }
}

/// The source folder of the built plugin `name`: `plugins/<name>`, or for the Python and
/// JavaScript twins `plugins/python/<name without -py>` and `plugins/javascript/<… -js>`.
fn source_folder(name: &str) -> PathBuf {
    let plugins = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins");
    if let Some(base) = name.strip_suffix("-py") {
        plugins.join("python").join(base)
    } else if let Some(base) = name.strip_suffix("-js") {
        plugins.join("javascript").join(base)
    } else {
        plugins.join(name)
    }
}
