//! The evil set: each misbehaving plugin is stopped by its limit (or refused at load), reported
//! with the right reason, and quarantined after its retries, while a bystander plugin on the
//! same reader keeps up and the reader keeps serving.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use streamhost_integration_tests::plugins::{PluginFolder, grants_for};
use streamhost_integration_tests::{
    TestReader, TestWriter, metric, spawn_plugin_reader, wait_until,
};

const WAIT: Duration = Duration::from_secs(60);
/// Time a noisy shared machine may add to a deadline (thread scheduling), beyond the two
/// epoch ticks wasmtime itself may take.
pub(crate) const SCHEDULING_SLACK: Duration = Duration::from_millis(250);

/// A reader running `evil` in `mode` beside the `stream-stats` bystander.
async fn evil_reader(writer: &TestWriter, mode: &str) -> (TestReader, PluginFolder) {
    bad_reader(writer, "evil", Some(mode)).await
}

/// A reader running the misbehaving `plugin` (configured with `mode`) beside the
/// `stream-stats` bystander.
async fn bad_reader(
    writer: &TestWriter,
    plugin: &str,
    mode: Option<&str>,
) -> (TestReader, PluginFolder) {
    let folder = PluginFolder::with(&[plugin, "stream-stats"]);
    let mut grants = grants_for(&[plugin, "stream-stats"]);
    if let Some(mode) = mode {
        let mut config = toml::Table::new();
        config.insert("mode".into(), toml::Value::String(mode.into()));
        grants.get_mut(plugin).unwrap().config = Some(config);
    }
    let reader = spawn_plugin_reader(writer, "r", &folder, grants).await;
    (reader, folder)
}

fn messages(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"room": "!a:x", "sender": "@a:x", "body": format!("m{i}")}))
        .collect()
}

/// Writes rows, waits for the evil plugin's quarantine, and checks the bystander kept up.
async fn quarantined_with(mode: &str, reason: &str) -> Value {
    quarantined("evil", Some(mode), reason).await
}

/// Writes rows, waits for `plugin`'s quarantine, and checks the bystander kept up.
pub(crate) async fn quarantined(plugin: &str, mode: Option<&str>, reason: &str) -> Value {
    let writer = TestWriter::spawn(&["messages"]).await;
    let (reader, _folder) = bad_reader(&writer, plugin, mode).await;
    writer.append("messages", &messages(3)).await;
    let started = Instant::now();
    // The bystander is not held up by the evil plugin's retries.
    wait_until(WAIT, "the bystander to count every row", || async {
        reader
            .get("/v1/query/stream-stats/count?stream=messages")
            .await
            .1
            == "3"
    })
    .await;
    let bystander_time = started.elapsed();
    wait_until(
        WAIT,
        &format!("{plugin} ({mode:?}) to be quarantined"),
        || async { reader.plugin(plugin).await["state"] == "quarantined" },
    )
    .await;
    let evil = reader.plugin(plugin).await;
    let reports = evil["reports"].as_array().unwrap();
    assert!(!reports.is_empty(), "{evil}");
    for report in reports {
        assert_eq!(report["failure"]["reason"], reason, "{report}");
        assert_eq!(report["call"], "on-batch");
    }
    assert_eq!(
        reports.len(),
        4,
        "one first attempt and three retries: {evil}"
    );
    assert!(
        evil["reason"].as_str().unwrap().contains(reason),
        "{}",
        evil["reason"]
    );
    // The failing batch was kept for `streamhost plugin run`.
    let file = reports[0]["batch_file"].as_str().expect("batch file");
    let lines = std::fs::read_to_string(file).unwrap();
    // The first batch: the three rows, or (when they reached the reader in two commits, as
    // happens on a loaded machine) the first of them.
    assert!((1..=3).contains(&lines.lines().count()), "{lines}");
    for (line, token) in lines.lines().zip(2..) {
        assert!(
            line.starts_with(&format!("RDATA messages master {token} ")),
            "{lines}"
        );
    }
    // The reader and the bystander go on.
    writer.append("messages", &messages(2)).await;
    wait_until(WAIT, "the bystander to count the later rows", || async {
        reader
            .get("/v1/query/stream-stats/count?stream=messages")
            .await
            .1
            == "5"
    })
    .await;
    let status = reader.client().get_json("/v1/status").await.unwrap();
    assert_eq!(status["connection"]["state"], "connected", "{status}");
    assert!(
        bystander_time < Duration::from_secs(5),
        "bystander held up: {bystander_time:?}"
    );
    evil
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_loop_is_stopped_at_its_cpu_deadline() {
    let evil = quarantined_with("loop", "cpu-deadline").await;
    assert_stopped_at_the_deadline(&evil, Duration::from_millis(100));
}

/// Each attempt of a 3-row batch ran its whole deadline (`base` + 3 × 50 µs: a deadline never
/// ends a call early, the clock is checked when the epoch reaches it) and not longer than
/// wasmtime's two extra ticks plus scheduling slack.
pub(crate) fn assert_stopped_at_the_deadline(evil: &Value, base: Duration) {
    let tick = streamhost_plugin_runtime::EPOCH_TICK;
    let deadline = base + Duration::from_micros(150);
    let limit = deadline + 2 * tick;
    for report in evil["reports"].as_array().unwrap() {
        let took = Duration::from_micros(report["duration_us"].as_u64().unwrap());
        assert!(took >= deadline, "stopped early: {took:?}");
        assert!(took <= limit + SCHEDULING_SLACK, "stopped late: {took:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_bomb_is_stopped_at_its_budget() {
    let evil = quarantined_with("memory", "memory").await;
    let message = evil["reports"][0]["failure"]["message"].as_str().unwrap();
    assert!(message.contains("memory budget"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaking_instance_is_replaced_before_a_call_fails_at_its_budget() {
    // Each batch leaks 4 MiB; 30 batches would hold 120 MiB of the 64 MiB budget. The reader
    // replaces the instance between batches once it has grown by three quarters of its room.
    let writer = TestWriter::spawn(&["messages"]).await;
    let (reader, _folder) = evil_reader(&writer, "leak").await;
    for applied in 1..=30u64 {
        writer.append("messages", &messages(1)).await;
        wait_until(WAIT, &format!("evil to apply row {applied}"), || async {
            reader.plugin("evil").await["rows"].as_u64() == Some(applied)
        })
        .await;
    }
    let evil = reader.plugin("evil").await;
    assert_eq!(evil["state"], "running", "{evil}");
    assert_eq!(evil["reports"], json!([]), "no call failed: {evil}");
    let (_, text) = reader.get("/metrics").await;
    let sample = |name: &str| metric(&text, &format!("streamhost_plugin_{name}"));
    let recycled = sample("instances_recycled_total{plugin=\"evil\"}").unwrap();
    assert!((2.0..=3.0).contains(&recycled), "{text}");
    assert_eq!(
        sample("failures_total{plugin=\"evil\",reason=\"memory\"}"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample("instances_recycled_total{plugin=\"stream-stats\"}"),
        Some(0.0),
        "a plugin that does not grow keeps its instance: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_bomb_is_stopped_at_its_budget() {
    let evil = quarantined("evil-table", None, "memory").await;
    let message = evil["reports"][0]["failure"]["message"].as_str().unwrap();
    assert!(message.contains("table growth"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_recursion_is_stopped_at_the_stack_limit() {
    quarantined_with("recursion", "stack").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_effect_flood_is_refused_whole() {
    let evil = quarantined_with("effects", "effects").await;
    let message = evil["reports"][0]["failure"]["message"].as_str().unwrap();
    assert!(message.contains("20000 effects"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_effect_outside_the_grant_is_a_plugin_error() {
    let evil = quarantined_with("grant", "outside-grant").await;
    let message = evil["reports"][0]["failure"]["message"].as_str().unwrap();
    assert!(message.contains("cache not-granted"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_on_batch_is_a_trap_with_its_message() {
    let evil = quarantined_with("panic", "trap").await;
    let report = &evil["reports"][0];
    assert!(
        report["failure"]["stderr"]
            .as_str()
            .unwrap()
            .contains("panicked"),
        "{report}"
    );
    assert!(report["failure"]["backtrace"].is_string(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_a_file_outside_the_grant_fails_inside_the_sandbox() {
    let evil = quarantined_with("read-file", "fatal").await;
    let message = evil["reports"][0]["failure"]["message"].as_str().unwrap();
    assert!(message.starts_with("read failed"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_flood_is_cut_to_the_rate_and_stopped_by_the_deadline() {
    let writer = TestWriter::spawn(&["messages"]).await;
    let (reader, _folder) = evil_reader(&writer, "log").await;
    writer.append("messages", &messages(1)).await;
    wait_until(WAIT, "evil (log) to be quarantined", || async {
        reader.plugin("evil").await["state"] == "quarantined"
    })
    .await;
    let evil = reader.plugin("evil").await;
    assert!(
        evil["log_lines_dropped"].as_u64().unwrap() > 10_000,
        "{evil}"
    );
    assert_eq!(evil["reports"][0]["failure"]["reason"], "cpu-deadline");
    // The burst allowance is ten seconds of the rate (100 lines/s by default).
    assert!(evil["reports"][0]["log_lines"].as_array().unwrap().len() <= 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_in_init_fails_the_load_and_the_reader_runs_on() {
    let writer = TestWriter::spawn(&["messages"]).await;
    let (reader, _folder) = evil_reader(&writer, "init-trap").await;
    let evil = reader.plugin("evil").await;
    assert_eq!(evil["state"], "failed", "{evil}");
    assert!(
        evil["reason"].as_str().unwrap().contains("init failed"),
        "{evil}"
    );
    assert_eq!(evil["reports"][0]["call"], "init");
    writer.append("messages", &messages(2)).await;
    wait_until(WAIT, "the bystander to count every row", || async {
        reader
            .get("/v1/query/stream-stats/count?stream=messages")
            .await
            .1
            == "2"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_that_passes_applies_the_batch_exactly_once() {
    let writer = TestWriter::spawn(&["messages"]).await;
    let (reader, _folder) = evil_reader(&writer, "flaky").await;
    let mut last = 0;
    for i in 0..5 {
        let tokens = writer.append("messages", &messages(1 + i % 2)).await;
        last = tokens.last().unwrap().0;
    }
    // `evil` notifies each batch's last token; batches may span several appends.
    let batch_tokens = || async {
        let page = reader
            .client()
            .get_json("/v1/notifications?topics=evil&since=0&timeout_ms=1")
            .await
            .unwrap();
        page["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["payload"].as_str().unwrap().parse::<i64>().unwrap())
            .collect::<Vec<i64>>()
    };
    wait_until(WAIT, "the last batch's notification", || async {
        batch_tokens().await.last() == Some(&last)
    })
    .await;
    let tokens = batch_tokens().await;
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "each batch applied once, in order: {tokens:?}"
    );
    let evil = reader.plugin("evil").await;
    assert_eq!(evil["state"], "running", "{evil}");
    assert_eq!(
        evil["failures"]["retry"].as_u64().unwrap(),
        1,
        "only the first call of the one instance fails: {evil}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skipped_batch_becomes_a_dead_letter_and_the_cursor_moves_on() {
    let writer = TestWriter::spawn(&["messages"]).await;
    let (reader, _folder) = evil_reader(&writer, "skip").await;
    let tokens = writer.append("messages", &messages(4)).await;
    let last = tokens.last().unwrap().0;
    wait_until(WAIT, "evil's cursor to pass the skipped rows", || async {
        let evil = reader.plugin("evil").await;
        evil["lag"] == 0 && evil["cursors"][0]["token"] == last
    })
    .await;
    let evil = reader.plugin("evil").await;
    assert_eq!(evil["state"], "running", "{evil}");
    let letters = evil["dead_letters"].as_array().unwrap();
    assert!(!letters.is_empty(), "{evil}");
    assert_eq!(letters[0]["to_token"], last, "{evil}");
    assert!(
        letters[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("evil skips")
    );
    // Newest first; together they cover every token from the origin to the last, once.
    let mut ranges: Vec<(i64, i64)> = letters
        .iter()
        .map(|l| {
            (
                l["from_token"].as_i64().unwrap(),
                l["to_token"].as_i64().unwrap(),
            )
        })
        .collect();
    ranges.sort();
    assert!(ranges[0].0 <= 1, "{ranges:?}");
    assert!(ranges.windows(2).all(|w| w[0].1 == w[1].0), "{ranges:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_directory_is_readable_and_nothing_else_is() {
    let writer = TestWriter::spawn(&["messages"]).await;
    let folder = PluginFolder::with(&["evil"]);
    folder.edit_manifest("evil", |text| format!("directory = \"/etc\"\n{text}"));
    let shared = tempfile::tempdir().unwrap();
    std::fs::write(shared.path().join("passwd"), "granted:x:1:1").unwrap();
    let mut grants = grants_for(&["evil"]);
    let grant = grants.get_mut("evil").unwrap();
    grant.directory = Some(shared.path().to_path_buf());
    let mut config = toml::Table::new();
    config.insert("mode".into(), toml::Value::String("read-file".into()));
    grant.config = Some(config);
    let reader = spawn_plugin_reader(&writer, "r", &folder, grants).await;
    writer.append("messages", &messages(1)).await;
    let page = reader
        .client()
        .get_json("/v1/notifications?topics=evil&since=0&timeout_ms=30000")
        .await
        .unwrap();
    // The guest's /etc is the granted folder, not the host's.
    assert_eq!(
        page["notifications"][0]["payload"], "granted:x:1:1",
        "{page}"
    );
}
