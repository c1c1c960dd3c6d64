//! The `push` import end to end on the plugin side: `plugins/webhook` loaded under a grant
//! returns its pushes with the batch's effects, in call order; a plugin asking for `push`
//! without the grant, or importing it without asking, is refused at load; a refused push is
//! seen by the plugin and the pushes of a failed call are dropped; 0.1.0 components (no
//! `push`) still load beside a runtime that declares destinations.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};
use streamhost_integration_tests::plugins::{
    EVIL_ALIAS_DIR, EVIL_ALIAS_V0_2_DIR, EVIL_TABLE_DIR, EVIL_TABLE_V0_2_DIR, ROOM_TIMELINE_DIR,
    ROOM_TIMELINE_WASM, WEBHOOK_DIR, WEBHOOK_WASM,
};
use streamhost_plugin_runtime::{
    Batch, Destination, FailureReason, Grant, KvStore, Limits, Manifest, PluginFiles,
    PluginInstance, PluginServices, PluginVersion, Push, Row, Runtime, RuntimeConfig,
};

/// A runtime whose only destination is `webhook`, taking bodies up to `max_body_bytes`.
fn runtime(max_body_bytes: usize) -> Runtime {
    let destination = Destination {
        url: "https://hooks.example.org/in".into(),
        headers: vec![("Authorization".into(), "Bearer s3cret".into())],
        max_body_bytes,
    };
    Runtime::new(RuntimeConfig {
        cache_dir: Some(concat!(env!("OUT_DIR"), "/compiled").into()),
        pool_instances: 4,
        destinations: Arc::new(BTreeMap::from([("webhook".to_string(), destination)])),
        ..RuntimeConfig::default()
    })
    .unwrap()
}

/// The grant of everything `plugins/<dir>` asks for, with `config`.
fn grant(dir: &str, config: Value) -> Grant {
    let files = PluginFiles::in_dir(Path::new(dir)).unwrap();
    let manifest = Manifest::load(&files.manifest).unwrap();
    let table: toml::Table = serde_json::from_value(config).unwrap();
    Grant {
        config: Some(table),
        ..Grant::everything_asked(&manifest).unwrap()
    }
}

/// `webhook` loaded under `grant`, instantiated and initialised.
fn webhook(runtime: &Runtime, grant: &Grant) -> PluginInstance {
    let files = PluginFiles::in_dir(Path::new(WEBHOOK_DIR)).unwrap();
    let version = PluginVersion::load(runtime, &files, grant).unwrap();
    assert_eq!(version.interface_version(), "0.4.0");
    let services = PluginServices::new("webhook", KvStore::default(), 100, None);
    let mut instance = version.instantiate(services).unwrap();
    instance.init(&[]).unwrap();
    instance
}

fn batch(rows: &[(i64, &str)]) -> Batch {
    Batch {
        stream: "events".into(),
        instance: "master".into(),
        prev_token: 0,
        token: rows.last().map_or(0, |r| r.0),
        rows: rows
            .iter()
            .map(|&(token, data)| Row {
                token,
                data: data.into(),
            })
            .collect(),
    }
}

fn body(push: &Push) -> Value {
    serde_json::from_slice(&push.body).unwrap()
}

#[test]
fn webhook_returns_one_push_per_row_in_order_keyed_by_token_and_index() {
    let runtime = runtime(1 << 20);
    let mut instance = webhook(&runtime, &grant(WEBHOOK_DIR, json!({})));
    let rows = [
        (5, r#"{"type":"m.room.message","n":1}"#),
        (5, r#"{"type":"m.room.member","n":2}"#),
        (6, "not json"),
        (7, r#"[1, 2]"#),
    ];
    let effects = instance.on_batch(&batch(&rows)).unwrap();
    assert!(effects.effects.is_empty());
    let keys: Vec<&str> = effects.pushes.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "events/master/5/0",
            "events/master/5/1",
            "events/master/7/0"
        ]
    );
    assert!(effects.pushes.iter().all(|p| p.destination == "webhook"));
    assert_eq!(
        body(&effects.pushes[1]),
        json!({"stream": "events", "instance": "master", "token": 5,
               "row": {"type": "m.room.member", "n": 2}})
    );
    assert!(
        effects.charge.bytes() > 0,
        "the pushes are held against the budget"
    );
}

#[test]
fn webhook_filters_rows_on_a_top_level_field() {
    let runtime = runtime(1 << 20);
    let config = json!({"field": "type", "equals": "m.room.message"});
    let mut instance = webhook(&runtime, &grant(WEBHOOK_DIR, config));
    let rows = [
        (1, r#"{"type":"m.room.message"}"#),
        (2, r#"{"type":"m.room.member"}"#),
        (3, r#"{"content":{"type":"m.room.message"}}"#),
        (4, r#"{"type":"m.room.message","x":1}"#),
    ];
    let pushes = instance.on_batch(&batch(&rows)).unwrap().pushes;
    let keys: Vec<&str> = pushes.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["events/master/1/0", "events/master/4/0"]);
}

#[test]
fn asking_for_push_without_the_grant_is_refused_at_load() {
    let runtime = runtime(1 << 20);
    let files = PluginFiles::in_dir(Path::new(WEBHOOK_DIR)).unwrap();
    let ungranted = Grant {
        push: vec![],
        ..grant(WEBHOOK_DIR, json!({}))
    };
    let error = PluginVersion::load(&runtime, &files, &ungranted)
        .unwrap_err()
        .to_string();
    assert!(error.contains("push webhook"), "{error}");
}

#[test]
fn importing_push_without_asking_for_it_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(WEBHOOK_WASM, dir.path().join("webhook.wasm")).unwrap();
    std::fs::write(
        dir.path().join("plugin.toml"),
        "name = \"webhook\"\nstreams = [\"*\"]\n",
    )
    .unwrap();
    let files = PluginFiles::in_dir(dir.path()).unwrap();
    let manifest = Manifest::load(&files.manifest).unwrap();
    let grant = Grant {
        push: vec!["*".into()],
        ..Grant::everything_asked(&manifest).unwrap()
    };
    let error = PluginVersion::load(&runtime(1 << 20), &files, &grant)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("streamhost:plugin/push@0.4.0") && error.contains("push = [...]"),
        "{error}"
    );
}

#[test]
fn a_body_over_max_body_bytes_is_refused_to_the_plugin_and_fails_only_its_call() {
    let runtime = runtime(100);
    let mut instance = webhook(&runtime, &grant(WEBHOOK_DIR, json!({})));
    let big = format!(r#"{{"text":"{}"}}"#, "x".repeat(100));
    // The first row's push is accepted, the second's refused (too-large): the webhook turns
    // that into a skip, and the call's accepted push is dropped with it.
    let failure = instance
        .on_batch(&batch(&[(1, "{}"), (2, &big)]))
        .unwrap_err();
    assert_eq!(failure.reason, FailureReason::PluginSkip, "{failure}");
    assert!(failure.message.contains("max_body_bytes"), "{failure}");
    assert!(failure.message.contains("events/master/2/0"), "{failure}");
    let pushes = instance.on_batch(&batch(&[(3, "{}")])).unwrap().pushes;
    let keys: Vec<&str> = pushes.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["events/master/3/0"], "nothing of the failed call");
}

#[test]
fn an_undeclared_destination_and_the_effect_limits_are_refused_to_the_plugin() {
    let runtime = runtime(1 << 20);
    let mut other = grant(WEBHOOK_DIR, json!({"destination": "elsewhere"}));
    other.push = vec!["*".into()];
    let mut instance = webhook(&runtime, &other);
    let failure = instance.on_batch(&batch(&[(1, "{}")])).unwrap_err();
    assert_eq!(failure.reason, FailureReason::PluginFatal, "{failure}");
    assert!(failure.message.contains("not granted"), "{failure}");

    let mut few = grant(WEBHOOK_DIR, json!({}));
    few.limits = Some(Limits {
        max_effects: 2,
        ..few.limits.unwrap()
    });
    let files = PluginFiles::in_dir(Path::new(WEBHOOK_DIR)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(WEBHOOK_WASM, dir.path().join("webhook.wasm")).unwrap();
    let manifest = std::fs::read_to_string(&files.manifest).unwrap();
    std::fs::write(
        dir.path().join("plugin.toml"),
        format!("{manifest}\n[limits]\nmax_effects = 2\n"),
    )
    .unwrap();
    let files = PluginFiles::in_dir(dir.path()).unwrap();
    let version = PluginVersion::load(&runtime, &files, &few).unwrap();
    let services = PluginServices::new("webhook", KvStore::default(), 100, None);
    let mut instance = version.instantiate(services.clone()).unwrap();
    instance.init(&[]).unwrap();
    let two = instance.on_batch(&batch(&[(1, "{}"), (2, "{}")])).unwrap();
    assert_eq!(two.pushes.len(), 2);
    drop(two);
    assert_eq!(
        services.budget().held(),
        0,
        "applied pushes give their bytes back"
    );
    let failure = instance
        .on_batch(&batch(&[(1, "{}"), (2, "{}"), (3, "{}")]))
        .unwrap_err();
    assert_eq!(failure.reason, FailureReason::PluginSkip, "{failure}");
    assert!(failure.message.contains("effect limits"), "{failure}");
    assert_eq!(services.budget().held(), 0, "a failed call holds nothing");
}

/// The plugin `name` (its folder `dir`, its component `wasm`) loaded with its manifest asking
/// for `host_memory_mib = 1`, granted everything it asks.
fn with_1_mib_of_host_memory(name: &str, dir: &str, wasm: &str) -> PluginVersion {
    let folder = tempfile::tempdir().unwrap();
    std::fs::copy(wasm, folder.path().join(format!("{name}.wasm"))).unwrap();
    let manifest = std::fs::read_to_string(Path::new(dir).join("plugin.toml")).unwrap();
    std::fs::write(
        folder.path().join("plugin.toml"),
        format!("{manifest}\n[limits]\nhost_memory_mib = 1\n"),
    )
    .unwrap();
    let files = PluginFiles::in_dir(folder.path()).unwrap();
    let manifest = Manifest::load(&files.manifest).unwrap();
    let grant = Grant::everything_asked(&manifest).unwrap();
    PluginVersion::load(&runtime(1 << 20), &files, &grant).unwrap()
}

#[test]
fn pushes_the_host_memory_budget_cannot_hold_fail_the_call() {
    let version = with_1_mib_of_host_memory("webhook", WEBHOOK_DIR, WEBHOOK_WASM);
    let services = PluginServices::new("webhook", KvStore::default(), 100, None);
    let mut instance = version.instantiate(services.clone()).unwrap();
    instance.init(&[]).unwrap();
    // 30 pushes of 50 KB: 1.5 MB, over the 1 MiB budget from the 21st on.
    let row = format!(r#"{{"text":"{}"}}"#, "x".repeat(50_000));
    let rows: Vec<(i64, &str)> = (1..=30).map(|token| (token, row.as_str())).collect();
    let failure = instance.on_batch(&batch(&rows)).unwrap_err();
    assert_eq!(failure.reason.as_str(), "host-memory", "{failure}");
    assert!(failure.message.contains("push refused"), "{failure}");
    assert_eq!(
        services.budget().held(),
        0,
        "the failed call's pushes are given back"
    );
}

#[test]
fn components_built_against_0_1_0_still_load_beside_destinations() {
    let runtime = runtime(1 << 20);
    for dir in [EVIL_TABLE_DIR, EVIL_ALIAS_DIR] {
        let files = PluginFiles::in_dir(Path::new(dir)).unwrap();
        let version = PluginVersion::load(&runtime, &files, &grant(dir, json!({})))
            .unwrap_or_else(|e| panic!("{dir}: {e}"));
        assert_eq!(version.interface_version(), "0.1.0");
    }
}

#[test]
fn components_built_against_0_2_0_still_load_and_handle_batches() {
    let runtime = runtime(1 << 20);
    for dir in [EVIL_TABLE_V0_2_DIR, EVIL_ALIAS_V0_2_DIR] {
        let files = PluginFiles::in_dir(Path::new(dir)).unwrap();
        let version = PluginVersion::load(&runtime, &files, &grant(dir, json!({})))
            .unwrap_or_else(|e| panic!("{dir}: {e}"));
        assert_eq!(version.interface_version(), "0.2.0");
        assert!(
            version.wanted_fields().is_empty(),
            "0.2.0 has no wanted-fields"
        );
    }
    // evil-alias answers every batch with 5,000 effects naming one 8 MiB string: the host
    // memory budget stops the lift, which proves the 0.2.0 on-batch was called.
    let files = PluginFiles::in_dir(Path::new(EVIL_ALIAS_V0_2_DIR)).unwrap();
    let version =
        PluginVersion::load(&runtime, &files, &grant(EVIL_ALIAS_V0_2_DIR, json!({}))).unwrap();
    let services = PluginServices::new("evil-alias", KvStore::default(), 100, None);
    let mut instance = version.instantiate(services).unwrap();
    instance.init(&[]).unwrap();
    let failure = instance.on_batch(&batch(&[(1, "{}")])).unwrap_err();
    assert_eq!(failure.reason.as_str(), "host-memory", "{failure}");
}

#[test]
fn row_fields_the_host_memory_budget_cannot_hold_fail_the_call() {
    let version = with_1_mib_of_host_memory("room-timeline", ROOM_TIMELINE_DIR, ROOM_TIMELINE_WASM);
    assert_eq!(version.wanted_fields(), ["room"]);
    let services = PluginServices::new("room-timeline", KvStore::default(), 100, None);
    let mut instance = version.instantiate(services.clone()).unwrap();
    instance.init(&[]).unwrap();
    // Six rows whose `room` is 200 KB each: 1.2 MB of extracted text, over the 1 MiB budget.
    let row = format!(r#"{{"room":"!{}"}}"#, "r".repeat(200_000));
    let rows: Vec<(i64, &str)> = (1..=6).map(|token| (token, row.as_str())).collect();
    let failure = instance.on_batch(&batch(&rows)).unwrap_err();
    assert_eq!(failure.reason.as_str(), "host-memory", "{failure}");
    assert!(failure.message.contains("row fields"), "{failure}");
    assert_eq!(
        services.budget().held(),
        0,
        "nothing is held after the call"
    );
    // The refusal came before the call: the same instance goes on with ordinary rows.
    let effects = instance
        .on_batch(&batch(&[(7, r#"{"room":"!r:x","body":"hi"}"#)]))
        .unwrap();
    assert_eq!(
        effects.effects.len(),
        1,
        "one invalidation for the one room"
    );
}
