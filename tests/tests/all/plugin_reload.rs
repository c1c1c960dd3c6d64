//! Hot reload: plugins swapped while rows keep arriving lose nothing and apply nothing twice;
//! a version that fails to load leaves the old one running; the folder watcher reloads on a
//! change.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use streamhost_integration_tests::plugins::{PluginFolder, grants_for};
use streamhost_integration_tests::{TestReader, TestWriter, spawn_plugin_reader, wait_until};

const WAIT: Duration = Duration::from_secs(60);
const ROOMS: [&str; 3] = ["!a:x", "!b:x", "!c:x"];

/// Every notification on `topic`, oldest first, following pages.
async fn notifications(reader: &TestReader, topic: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut since = 0;
    loop {
        let page = reader
            .client()
            .get_json(&format!(
                "/v1/notifications?topics={topic}&since={since}&timeout_ms=1"
            ))
            .await
            .unwrap();
        assert_eq!(page["missed"], false, "the ring dropped notifications");
        let batch = page["notifications"].as_array().unwrap().clone();
        if batch.is_empty() {
            return all;
        }
        since = page["next"].as_u64().unwrap();
        all.extend(batch);
    }
}

async fn reload(reader: &TestReader, plugin: &str) -> (hyper::StatusCode, String) {
    let (status, body) = reader
        .admin()
        .send(
            hyper::Method::POST,
            &format!("/v1/admin/plugins/{plugin}/reload"),
            bytes::Bytes::new(),
        )
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloading_twenty_times_under_load_loses_and_repeats_nothing() {
    reloads_under_load_lose_and_repeat_nothing("notifier", 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_plugin_reloads_under_load_losing_and_repeating_nothing() {
    reloads_under_load_lose_and_repeat_nothing("notifier-py", 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_plugin_reloads_under_load_losing_and_repeating_nothing() {
    reloads_under_load_lose_and_repeat_nothing("notifier-js", 5).await;
}

/// Reloads `notifier` (one of the notifier implementations) and `stream-stats` `rounds` times
/// while a client appends, then checks every room's notifications equal the written rows.
async fn reloads_under_load_lose_and_repeat_nothing(notifier: &str, rounds: u64) {
    let writer = TestWriter::spawn(&["messages"]).await;
    let plugins = [notifier, "stream-stats"];
    let folder = PluginFolder::with(&plugins);
    let reader = spawn_plugin_reader(&writer, "r", &folder, grants_for(&plugins)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let client = writer.client();
    let writing = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut written: Vec<Value> = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) || n < 200 {
                let rows: Vec<Value> = (0..1 + n % 3)
                    .map(|i| json!({"room": ROOMS[(n + i) % 3], "sender": "@a:x", "body": format!("m{n}.{i}")}))
                    .collect();
                let body = streamhost_integration_tests::rows_body(&rows);
                client.append("messages", body, false).await.unwrap();
                written.extend(rows);
                n += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            written
        })
    };
    // notifier snapshots and restores its state across reloads; stream-stats starts fresh
    // from init (its state is in the key-value store).
    for round in 0..rounds {
        for plugin in plugins {
            let (status, body) = reload(&reader, plugin).await;
            assert_eq!(status, 200, "reload {round} of {plugin}: {body}");
        }
    }
    stop.store(true, Ordering::Relaxed);
    let written = writing.await.unwrap();

    let total = written.len().to_string();
    wait_until(WAIT, "stream-stats to count every row", || async {
        reader
            .get("/v1/query/stream-stats/count?stream=messages")
            .await
            .1
            == total
    })
    .await;
    for room in ROOMS {
        let expected: Vec<&Value> = written.iter().filter(|r| r["room"] == room).collect();
        let got = notifications(&reader, &format!("room:{room}")).await;
        let payloads: Vec<Value> = got
            .iter()
            .map(|n| serde_json::from_str(n["payload"].as_str().unwrap()).unwrap())
            .collect();
        assert_eq!(payloads.len(), expected.len(), "room {room}");
        assert!(
            payloads.iter().zip(&expected).all(|(a, b)| a == *b),
            "room {room}"
        );
    }
    for plugin in plugins {
        let detail = reader.plugin(plugin).await;
        assert_eq!(detail["reloads"], rounds, "{detail}");
        assert_eq!(detail["state"], "running", "{detail}");
    }
    // notifier carried its in-memory count of sent notifications through every reload.
    let sent = reader.get(&format!("/v1/query/{notifier}/sent")).await.1;
    assert_eq!(sent, written.len().to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_that_fails_to_load_leaves_the_old_one_running() {
    let writer = TestWriter::spawn(&["messages"]).await;
    let folder = PluginFolder::with(&["room-timeline"]);
    let mut grants = grants_for(&["room-timeline"]);
    grants.extend(grants_for(&["notifier"]));
    let reader = spawn_plugin_reader(&writer, "r", &folder, grants).await;
    let running = reader.plugin("room-timeline").await["version"].clone();
    // The notifier's component in room-timeline's folder: describe names another plugin.
    let dir = folder.plugin_dir("room-timeline");
    std::fs::remove_file(dir.join("room-timeline.wasm")).unwrap();
    std::fs::copy(
        std::path::Path::new(streamhost_integration_tests::plugins::NOTIFIER_WASM),
        dir.join("notifier.wasm"),
    )
    .unwrap();
    let (status, body) = reload(&reader, "room-timeline").await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("describe says its name is"), "{body}");
    let detail = reader.plugin("room-timeline").await;
    assert_eq!(detail["version"], running);
    assert_eq!(detail["state"], "running");
    assert!(detail["reload_failures"].as_u64().unwrap() >= 1);
    let tokens = writer
        .append("messages", &[json!({"room": "!a:x", "body": "still here"})])
        .await;
    let (status, body) = reader
        .get(&format!(
            "/v1/query/room-timeline/timeline?room=!a:x&min_token=messages:{}",
            tokens[0].0
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("still here"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_folder_watcher_reloads_a_changed_plugin() {
    let writer = TestWriter::spawn(&["messages"]).await;
    let folder = PluginFolder::with(&["stream-stats"]);
    let reader = spawn_plugin_reader(&writer, "r", &folder, grants_for(&["stream-stats"])).await;
    wait_until(WAIT, "stream-stats to run", || async {
        reader.plugin("stream-stats").await["state"] == "running"
    })
    .await;
    folder.edit_manifest("stream-stats", |text| {
        format!("{text}\n[limits]\nquery_deadline_ms = 90\n")
    });
    wait_until(WAIT, "the watcher to reload stream-stats", || async {
        let detail = reader.plugin("stream-stats").await;
        detail["reloads"] == 1 && detail["limits"]["query_deadline_ms"] == 90
    })
    .await;
    // A change the grant does not cover is refused and the running version stays.
    folder.edit_manifest("stream-stats", |text| {
        text.replace("query_deadline_ms = 90", "query_deadline_ms = 5000")
    });
    wait_until(
        WAIT,
        "the watcher to refuse the ungranted limit",
        || async { reader.plugin("stream-stats").await["reload_failures"] == 1 },
    )
    .await;
    let detail = reader.plugin("stream-stats").await;
    assert_eq!(detail["limits"]["query_deadline_ms"], 90, "{detail}");
    assert_eq!(detail["state"], "running");
}
