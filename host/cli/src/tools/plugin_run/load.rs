//! Loading one plugin for the plugin tools: its files, a grant of everything it asks for, the
//! run's destinations and HTTP fixtures, and an engine with the tools' compile cache.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use streamhost_plugin_runtime::{
    Destination, Destinations, Grant, HttpBackend, HttpFixtures, Manifest, PluginFiles,
    PluginVersion, Runtime,
};

use super::compile::{CacheArgs, runtime_config_with_cache, with_spinner};

/// What a plugin is loaded with.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// A plugin folder, or a `.wasm` beside its `plugin.toml`.
    pub plugin: PathBuf,
    /// The configuration handed to `init`.
    pub config: Option<toml::Table>,
    /// Host folder granted at the manifest's `directory`.
    pub directory: Option<PathBuf>,
    /// `max_body_bytes` of the declared destinations.
    pub max_body_bytes: usize,
    /// Answers to outbound HTTP requests (`--http-fixtures`).
    pub http_fixtures: Option<PathBuf>,
    /// The compile cache.
    pub cache: CacheArgs,
    /// Write `/tmp/perf-<pid>.map` for `perf` (`--perf-map`).
    pub perf_map: bool,
}

/// A loaded plugin and what it runs on. The runtime must outlive the calls (its ticker
/// enforces the deadlines).
pub struct LoadedPlugin {
    /// The engine.
    pub runtime: Runtime,
    /// The compiled, described plugin.
    pub version: PluginVersion,
    /// Its files.
    pub files: PluginFiles,
    /// The HTTP fixtures, with the requests seen so far.
    pub fixtures: Arc<HttpFixtures>,
}

/// Loads the plugin `options` names, granted everything its manifest asks for.
pub fn load_plugin(options: &LoadOptions) -> anyhow::Result<LoadedPlugin> {
    let files = plugin_files(&options.plugin)?;
    let manifest = Manifest::load(&files.manifest)?;
    let mut grant = Grant::everything_asked(&manifest)?;
    grant.directory = options.directory.clone();
    grant.config = options.config.clone();
    let fixtures = Arc::new(match &options.http_fixtures {
        Some(path) => HttpFixtures::load(path).map_err(anyhow::Error::msg)?,
        None => HttpFixtures::default(),
    });
    let runtime = Runtime::new(streamhost_plugin_runtime::RuntimeConfig {
        destinations: declared_destinations(&manifest, options.max_body_bytes, &fixtures),
        http_backend: HttpBackend::Fixtures(fixtures.clone()),
        perf_map: options.perf_map,
        ..runtime_config_with_cache(&options.cache)
    })
    .context("starting the wasm engine")?;
    let size = std::fs::metadata(&files.wasm).map_or(0, |m| m.len());
    let message = format!(
        "loading {} ({} KiB; compiling if it is not in the cache)",
        manifest.name,
        size.div_ceil(1024)
    );
    let version = with_spinner(message, || PluginVersion::load(&runtime, &files, &grant))?;
    Ok(LoadedPlugin {
        runtime,
        version,
        files,
        fixtures,
    })
}

/// The files of `path`: a plugin folder, or a `.wasm` whose folder holds `plugin.toml`.
pub fn plugin_files(path: &Path) -> anyhow::Result<PluginFiles> {
    if path.is_dir() {
        return Ok(PluginFiles::in_dir(path)?);
    }
    anyhow::ensure!(
        path.extension().is_some_and(|ext| ext == "wasm") && path.is_file(),
        "{}: not a plugin folder or a .wasm file",
        path.display()
    );
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let manifest = dir.join("plugin.toml");
    anyhow::ensure!(
        manifest.is_file(),
        "{}: no plugin.toml beside {}",
        dir.display(),
        path.display()
    );
    Ok(PluginFiles {
        dir,
        manifest,
        wasm: path.to_path_buf(),
    })
}

/// Every destination `manifest` asks to push to, declared for the run: pushes are only
/// reported, so there is no URL and no header.
pub(super) fn declared_destinations(
    manifest: &Manifest,
    max_body_bytes: usize,
    fixtures: &HttpFixtures,
) -> Destinations {
    let destination = |url: &str| Destination {
        url: url.to_owned(),
        headers: Vec::new(),
        max_body_bytes,
    };
    let mut declared: std::collections::BTreeMap<String, Destination> = manifest
        .push
        .iter()
        .filter(|name| name.as_str() != "*")
        .map(|name| (name.clone(), destination("")))
        .collect();
    for (name, url) in fixtures.destinations() {
        declared.insert(name.clone(), destination(url));
    }
    Arc::new(declared)
}

/// `--config`: a JSON object, as the TOML table a grant carries.
pub fn parse_config(text: &str) -> anyhow::Result<toml::Table> {
    serde_json::from_str(text).context("--config must be a JSON object (without nulls)")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_manifests_destinations_are_declared_for_the_run() {
        let manifest = Manifest::parse(
            "name = \"w\"\npush = [\"hook\", \"*\", \"other\"]\n",
            Path::new("plugin.toml"),
        )
        .unwrap();
        let declared = declared_destinations(&manifest, 10, &HttpFixtures::default());
        assert_eq!(declared.keys().collect::<Vec<_>>(), ["hook", "other"]);
        assert_eq!(declared["hook"].max_body_bytes, 10);
    }

    #[test]
    fn config_must_be_a_json_object() {
        let table = parse_config(r#"{"keep": 10, "name": "x"}"#).unwrap();
        assert_eq!(table["keep"].as_integer(), Some(10));
        assert!(parse_config("[1]").is_err());
        assert!(parse_config(r#"{"a": null}"#).is_err());
    }
}
