//! Reader plugins end to end: rows written to the writer become effects on readers — cached
//! reads that change after a write, notifications by long-poll and server-sent events.

use std::time::Duration;

use serde_json::{Value, json};
use streamhost_integration_tests::plugins::{PluginFolder, grants_for};
use streamhost_integration_tests::{TestWriter, spawn_plugin_reader, wait_until};

const EXAMPLES: [&str; 3] = ["room-timeline", "notifier", "stream-stats"];
const WAIT: Duration = Duration::from_secs(30);

fn message(room: &str, n: usize, mentions: &[&str]) -> Value {
    json!({"room": room, "sender": "@alice:x", "body": format!("message {n}"), "mentions": mentions})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_reads_follow_writes_on_two_readers_and_are_never_stale_at_min_token() {
    let writer = TestWriter::spawn(&["messages", "typing"]).await;
    let folder = PluginFolder::with(&EXAMPLES);
    let readers = [
        spawn_plugin_reader(&writer, "r1", &folder, grants_for(&EXAMPLES)).await,
        spawn_plugin_reader(&writer, "r2", &folder, grants_for(&EXAMPLES)).await,
    ];
    let mut expected: Vec<Value> = Vec::new();
    for round in 0..5 {
        let rows: Vec<Value> = (0..3)
            .map(|n| message("!a:x", round * 3 + n, &[]))
            .collect();
        let tokens = writer.append("messages", &rows).await;
        writer
            .append("messages", &[message("!b:x", round, &[])])
            .await;
        expected.extend(rows);
        let last = tokens.last().unwrap().0;
        for reader in &readers {
            let (status, body) = reader
                .get(&format!(
                    "/v1/query/room-timeline/timeline?room=!a:x&min_token=messages:{last}"
                ))
                .await;
            assert_eq!(status, 200, "{body}");
            let timeline: Vec<Value> = serde_json::from_str(&body).unwrap();
            assert_eq!(
                timeline, expected,
                "reader {} round {round}",
                reader.config.name
            );
        }
    }
    // The second read of an unchanged room is a cache hit with the same answer.
    let first = readers[0]
        .get("/v1/query/room-timeline/timeline?room=!b:x")
        .await;
    let response = readers[0]
        .client()
        .send(
            hyper::Method::GET,
            "/v1/query/room-timeline/timeline?room=!b:x",
            bytes::Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(first.1.as_bytes(), &response.1[..]);
    let count = readers[1]
        .get("/v1/query/stream-stats/count?stream=messages")
        .await;
    assert_eq!(count, (hyper::StatusCode::OK, "20".to_string()));
    writer.append("typing", &[json!({"user": "@a:x"})]).await;
    wait_until(WAIT, "stream-stats to count typing", || async {
        readers[1]
            .get("/v1/query/stream-stats/count?stream=typing")
            .await
            .1
            == "1"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_wakes_with_the_right_payload() {
    let writer = TestWriter::spawn(&["messages"]).await;
    let folder = PluginFolder::with(&["notifier"]);
    let reader = spawn_plugin_reader(&writer, "r", &folder, grants_for(&["notifier"])).await;
    wait_until(WAIT, "notifier to run", || async {
        reader.plugin("notifier").await["state"] == "running"
    })
    .await;
    let client = reader.client();
    let poll = tokio::spawn(async move {
        client
            .get_json("/v1/notifications?topics=user:@bob:x&since=0&timeout_ms=20000")
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    writer.append("messages", &[message("!a:x", 1, &[])]).await;
    let row = message("!a:x", 2, &["@bob:x"]);
    writer.append("messages", std::slice::from_ref(&row)).await;
    let page = poll.await.unwrap();
    let notifications = page["notifications"].as_array().unwrap();
    assert_eq!(notifications.len(), 1, "{page}");
    assert_eq!(notifications[0]["topic"], "user:@bob:x");
    assert_eq!(notifications[0]["plugin"], "notifier");
    let payload: Value =
        serde_json::from_str(notifications[0]["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload, row);
}
