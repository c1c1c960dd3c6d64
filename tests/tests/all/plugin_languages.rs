//! Python and JavaScript plugins in a real reader: each language's evil plugin is contained
//! exactly as the Rust one is (an exception, an infinite loop, unbounded memory), the example
//! plugins of all three languages serve side by side with identical answers, and each
//! language's template builds and works.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use streamhost_integration_tests::plugins::{
    JAVASCRIPT_TEMPLATE_DIR, PYTHON_TEMPLATE_DIR, PluginFolder, grants_for,
};
use streamhost_integration_tests::{TestWriter, spawn_plugin_reader, wait_until};
use streamhost_plugin_runtime::{
    Batch, Effect, Grant, KvStore, Manifest, PluginFiles, PluginServices, PluginVersion, Row,
    Runtime, RuntimeConfig,
};

use crate::plugin_limits::{assert_stopped_at_the_deadline, quarantined};

const WAIT: Duration = Duration::from_secs(120);

/// The batch deadline `evil-py` and `evil-js` ask for (`batch_deadline_ms` in their manifests).
const EVIL_DEADLINE: Duration = Duration::from_millis(1_000);

fn failure_message(evil: &Value) -> &str {
    evil["reports"][0]["failure"]["message"].as_str().unwrap()
}

/// The line (from 1) of `plugins/<file>` holding `needle`, where a test plugin fails on
/// purpose: the failure must name it.
fn line_of(file: &str, needle: &str) -> usize {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins")
        .join(file);
    let source = std::fs::read_to_string(&path).unwrap();
    let found = source.lines().position(|line| line.contains(needle));
    found
        .map(|at| at + 1)
        .unwrap_or_else(|| panic!("{needle} in {}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_exception_is_a_fatal_error_naming_its_file_and_line() {
    let evil = quarantined("evil-py", Some("raise"), "fatal").await;
    let message = failure_message(&evil);
    // The file and line it was raised at.
    let line = line_of("python/evil/plugin.py", "str(batch.token // 0)");
    assert!(
        message.starts_with(&format!("plugin.py:{line}: ZeroDivisionError:")),
        "{message}"
    );
    let stderr = evil["reports"][0]["failure"]["stderr"].as_str().unwrap();
    assert!(stderr.contains("Traceback"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_infinite_loop_is_stopped_at_its_cpu_deadline() {
    let evil = quarantined("evil-py", Some("loop"), "cpu-deadline").await;
    assert_stopped_at_the_deadline(&evil, EVIL_DEADLINE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_memory_growth_is_stopped_at_its_budget() {
    let evil = quarantined("evil-py", Some("memory"), "memory").await;
    assert!(failure_message(&evil).contains("memory budget"), "{evil}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_exception_is_a_fatal_error_naming_its_file_and_line() {
    let evil = quarantined("evil-js", Some("throw"), "fatal").await;
    let message = failure_message(&evil);
    // The file, line and column it was thrown at.
    let line = line_of("javascript/evil/plugin.js", "return missing();");
    assert!(
        message.starts_with(&format!("plugin.js:{line}:")) && message.contains(": TypeError:"),
        "{message}"
    );
    let stderr = evil["reports"][0]["failure"]["stderr"].as_str().unwrap();
    assert!(
        stderr.contains("TypeError") && stderr.contains("onBatch"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_infinite_loop_is_stopped_at_its_cpu_deadline() {
    let evil = quarantined("evil-js", Some("loop"), "cpu-deadline").await;
    assert_stopped_at_the_deadline(&evil, EVIL_DEADLINE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_memory_growth_is_stopped_at_its_budget() {
    let evil = quarantined("evil-js", Some("memory"), "memory").await;
    assert!(failure_message(&evil).contains("memory budget"), "{evil}");
}

/// Every notification on `topic` so far.
async fn notifications(
    reader: &streamhost_integration_tests::TestReader,
    topic: &str,
) -> Vec<Value> {
    let page = reader
        .client()
        .get_json(&format!(
            "/v1/notifications?topics={topic}&since=0&timeout_ms=1"
        ))
        .await
        .unwrap();
    page["notifications"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_examples_of_every_language_serve_side_by_side_with_the_same_answers() {
    let writer = TestWriter::spawn(&["messages"]).await;
    let plugins = [
        "room-timeline",
        "room-timeline-py",
        "room-timeline-js",
        "notifier",
        "notifier-py",
        "notifier-js",
    ];
    let folder = PluginFolder::with(&plugins);
    let reader = spawn_plugin_reader(&writer, "r", &folder, grants_for(&plugins)).await;
    let rows: Vec<Value> = (0..60)
        .map(|i| json!({"room": format!("!r{}:x", i % 3), "body": format!("m{i} é😀"), "mentions": ["@u:x"]}))
        .collect();
    writer.append("messages", &rows).await;

    let expected_sent = (2 * rows.len()).to_string();
    for notifier in ["notifier", "notifier-py", "notifier-js"] {
        wait_until(WAIT, &format!("{notifier} to notify every row"), || async {
            reader.get(&format!("/v1/query/{notifier}/sent")).await.1 == expected_sent
        })
        .await;
    }
    for room in ["!r0:x", "!r1:x", "!r2:x"] {
        let query = |plugin: &str| format!("/v1/query/{plugin}/timeline?room={room}");
        let (status, rust) = reader.get(&query("room-timeline")).await;
        assert_eq!(status, 200, "{rust}");
        let timeline: Vec<Value> = serde_json::from_str(&rust).unwrap();
        assert_eq!(timeline.len(), 20, "{rust}");
        for plugin in ["room-timeline-py", "room-timeline-js"] {
            wait_until(WAIT, &format!("{plugin} to apply every row"), || async {
                reader.get(&query(plugin)).await.1 == rust
            })
            .await;
        }
        // Three notifiers, one notification each per row of the room.
        let got = notifications(&reader, &format!("room:{room}")).await;
        assert_eq!(got.len(), 3 * 20, "{room}");
    }
    for plugin in plugins {
        assert_eq!(reader.plugin(plugin).await["state"], "running", "{plugin}");
    }
}

/// The template of a language, built by tests/build.rs, loaded and handed one batch.
fn template_effects(dir: &str) -> Vec<Effect> {
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(concat!(env!("OUT_DIR"), "/compiled").into()),
        ..RuntimeConfig::default()
    })
    .unwrap();
    let files = PluginFiles::in_dir(Path::new(dir)).unwrap();
    let manifest = Manifest::load(&files.manifest).unwrap();
    let version = PluginVersion::load(
        &runtime,
        &files,
        &Grant::everything_asked(&manifest).unwrap(),
    )
    .unwrap();
    let services = PluginServices::new(version.name(), KvStore::default(), 100, None);
    let mut instance = version.instantiate(services).unwrap();
    instance.init(&[]).unwrap();
    let rows = (1..=3)
        .map(|token| Row {
            token,
            data: json!({"room": "!a:x", "body": "hi"}).to_string(),
        })
        .collect();
    let batch = Batch {
        stream: "messages".into(),
        instance: "master".into(),
        prev_token: 0,
        token: 3,
        rows,
    };
    instance.on_batch(&batch).unwrap().effects
}

fn assert_counts_three(effects: &[Effect]) {
    let texts: Vec<String> = effects
        .iter()
        .map(|effect| match effect {
            Effect::Invalidate(i) => format!("invalidate {} {}", i.cache, i.key),
            Effect::InvalidateAll(cache) => format!("invalidate-all {cache}"),
            Effect::Notify(n) => format!("notify {} {}", n.topic, n.payload),
        })
        .collect();
    assert_eq!(texts, ["invalidate count all", "notify count 3"]);
}

#[test]
fn the_python_template_builds_and_counts_rows() {
    assert_counts_three(&template_effects(PYTHON_TEMPLATE_DIR));
}

#[test]
fn the_javascript_template_builds_and_counts_rows() {
    assert_counts_three(&template_effects(JAVASCRIPT_TEMPLATE_DIR));
}
