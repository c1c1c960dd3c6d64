//! The `kv` import, linked by hand (arguments read in place from the guest's memory), on the
//! plugin side, through each language's SDK: values set by `plugins/evil` and its Python and
//! JavaScript twins (`kv-values`) are staged byte for byte; a value past the plugin's
//! key-value quota answers `quota-exceeded`, which every SDK turns into a fatal error; a value
//! larger than what is left of the host memory budget fails the call with `host-memory` and
//! nothing is staged.

use serde_json::{Value, json};
use std::path::Path;

use streamhost_integration_tests::plugins::PLUGINS_DIR;
use streamhost_plugin_runtime::{
    Batch, Failure, FailureReason, Grant, KvStore, LimitHit, Manifest, PluginFiles, PluginInstance,
    PluginServices, PluginVersion, Row, Runtime, RuntimeConfig,
};

/// The key-value quota the copy of `evil` asks for in its manifest.
const QUOTA: u64 = 100_000;

/// The first key `kv-values` sets (`numbered`: ten digits and a dash).
const FIRST_KEY: &str = "0000000000-";

/// The `evil` plugin in each language.
const EVILS: [&str; 3] = ["evil", "evil-py", "evil-js"];

/// `plugin` (one of [`EVILS`]) in `mode = "kv-values"` with `count` and `bytes`, its manifest
/// asking for a key-value quota of [`QUOTA`] bytes (the host memory budget stays the default
/// 16 MiB), initialised on a fresh store; and that store's services.
fn evil_setting(
    plugin: &str,
    count: u64,
    bytes: usize,
) -> (PluginInstance, std::sync::Arc<PluginServices>) {
    let dir = tempfile::tempdir().unwrap();
    for file in std::fs::read_dir(Path::new(PLUGINS_DIR).join(plugin)).unwrap() {
        let file = file.unwrap();
        std::fs::copy(file.path(), dir.path().join(file.file_name())).unwrap();
    }
    let manifest_path = dir.path().join("plugin.toml");
    let manifest = std::fs::read_to_string(&manifest_path).unwrap();
    // The Python and JavaScript manifests end with a `[limits]` table already.
    let limits = match manifest.contains("[limits]") {
        true => "",
        false => "\n[limits]",
    };
    std::fs::write(
        &manifest_path,
        format!("{manifest}{limits}\nkv_quota_bytes = {QUOTA}\n"),
    )
    .unwrap();
    let files = PluginFiles::in_dir(dir.path()).unwrap();
    let manifest = Manifest::load(&files.manifest).unwrap();
    let config: Value = json!({"mode": "kv-values", "count": count, "bytes": bytes});
    let grant = Grant {
        config: Some(serde_json::from_value(config).unwrap()),
        ..Grant::everything_asked(&manifest).unwrap()
    };
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(concat!(env!("OUT_DIR"), "/compiled").into()),
        pool_instances: 2,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let version = PluginVersion::load(&runtime, &files, &grant).unwrap();
    let services = PluginServices::new(plugin, KvStore::default(), 100, None);
    let mut instance = version.instantiate(services.clone()).unwrap();
    instance.init(&[]).unwrap();
    (instance, services)
}

fn one_row() -> Batch {
    Batch {
        stream: "messages".into(),
        instance: "master".into(),
        prev_token: 0,
        token: 1,
        rows: vec![Row {
            token: 1,
            data: r#"{"room": "!a:x"}"#.into(),
        }],
    }
}

fn failure(instance: &mut PluginInstance) -> Failure {
    match instance.on_batch(&one_row()) {
        Ok(_) => panic!("the batch should fail"),
        Err(failure) => failure,
    }
}

#[test]
fn values_within_the_quota_are_staged_byte_for_byte() {
    for plugin in EVILS {
        let (mut instance, services) = evil_setting(plugin, 3, 10_000);
        instance.on_batch(&one_row()).unwrap();
        assert!(!instance.kv_quota_hit(), "{plugin}");
        let kv = services.kv();
        for key in [FIRST_KEY, "0000000001-", "0000000002-"] {
            assert_eq!(
                kv.get(key).as_deref(),
                Some(&[b'v'; 10_000][..]),
                "{plugin} {key}"
            );
        }
        assert_eq!(kv.get("0000000003-"), None, "{plugin}");
    }
}

#[test]
fn a_value_past_the_quota_is_refused_to_the_plugin_as_quota_exceeded() {
    for plugin in EVILS {
        let (mut instance, services) = evil_setting(plugin, 1, 2 * QUOTA as usize);
        let failure = failure(&mut instance);
        assert_eq!(failure.reason, FailureReason::PluginFatal, "{failure:?}");
        // Rust: `kv quota exceeded`; Python: `quota_exceeded`; JavaScript: `quota-exceeded`.
        assert!(
            failure.message.contains("quota") && failure.message.contains("exceeded"),
            "{plugin}: {failure:?}"
        );
        assert!(instance.kv_quota_hit(), "{plugin}");
        assert_eq!(services.kv().get(FIRST_KEY), None, "{plugin}");
    }
}

#[test]
fn a_value_larger_than_the_host_memory_left_fails_the_call_and_stages_nothing() {
    for plugin in EVILS {
        let (mut instance, services) = evil_setting(plugin, 1, 20 << 20);
        let failure = failure(&mut instance);
        assert_eq!(
            failure.reason,
            FailureReason::Limit(LimitHit::HostMemory),
            "{plugin}: {failure:?}"
        );
        assert!(
            !instance.kv_quota_hit(),
            "{plugin}: refused before the quota is asked"
        );
        assert_eq!(services.kv().get(FIRST_KEY), None, "{plugin}");
    }
}
