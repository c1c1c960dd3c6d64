//! Every plugin built from `plugins/` loads under the grants its manifest asks for and
//! describes itself by its folder's name, so a new plugin is tested from the moment it exists.

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
        let files = PluginFiles::in_dir(&std::path::Path::new(PLUGINS_DIR).join(name)).unwrap();
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
            std::fs::read_dir(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../plugins")
                    .join(name)
            )
            .unwrap()
            .any(|e| e.unwrap().file_name() == "README.md"),
            "{name} has no README"
        );
    }
}
