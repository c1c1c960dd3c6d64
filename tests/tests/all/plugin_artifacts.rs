//! Every plugin built from `plugins/` loads under the grants its manifest asks for and
//! describes itself by its folder's name, so a new plugin is tested from the moment it exists.

use std::path::{Path, PathBuf};

use std::sync::Arc;
use streamhost_integration_tests::plugins::{ALL_PLUGINS, PLUGINS_DIR};

use streamhost_plugin_runtime::{
    Destination, Destinations, Grant, Manifest, PluginFiles, PluginVersion, Runtime, RuntimeConfig,
};

/// A destination for every name the built plugins push to or request under (the operator
/// declares them; a plugin naming an undeclared one is refused at load).
fn destinations_asked() -> Destinations {
    let mut map = std::collections::BTreeMap::new();
    for name in ALL_PLUGINS {
        let files = PluginFiles::in_dir(&Path::new(PLUGINS_DIR).join(name)).unwrap();
        let manifest = Manifest::load(&files.manifest).unwrap();
        let named = manifest.push.iter().chain(&manifest.http);
        for destination in named.filter(|d| !d.contains("://")) {
            map.insert(
                destination.clone(),
                Destination {
                    url: format!("http://{destination}.test"),
                    headers: Vec::new(),
                    max_body_bytes: 1 << 20,
                },
            );
        }
    }
    Arc::new(map)
}

#[test]
fn every_built_plugin_loads_and_describes_itself() {
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(concat!(env!("OUT_DIR"), "/compiled").into()),
        destinations: destinations_asked(),
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
