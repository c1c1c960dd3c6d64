//! `streamhost tail` against a real writer: every command decoded, one line each.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use streamhost_integration_tests::{TestWriter, wait_until};
use tokio_util::sync::CancellationToken;

/// An output both the tail task and the test can see.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

async fn tail(
    writer: &TestWriter,
    json: bool,
) -> (
    Shared,
    CancellationToken,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let out = Shared::default();
    let stop = CancellationToken::new();
    let task = tokio::spawn(streamhost_cli::tools::tail::run(
        writer.replication_addr().to_string(),
        "tail-test".into(),
        json,
        stop.clone(),
        out.clone(),
    ));
    (out, stop, task)
}

#[tokio::test]
async fn tail_prints_each_command_as_text_and_as_json() {
    let writer = TestWriter::spawn(&["events"]).await;
    let (text, stop_text, text_task) = tail(&writer, false).await;
    let (json_out, stop_json, json_task) = tail(&writer, true).await;
    wait_until(
        Duration::from_secs(10),
        "both tails to see the POSITION",
        || async {
            text.text().contains("POSITION events master 1 1")
                && json_out.text().contains("POSITION")
        },
    )
    .await;
    writer
        .client()
        .append("events", Bytes::from_static(b"[[\"a\"],[\"b\"]]"), true)
        .await
        .unwrap();
    wait_until(
        Duration::from_secs(10),
        "the rows in both tails",
        || async {
            text.text().contains(r#"RDATA events master 2 ["b"]"#)
                && json_out.text().lines().count() >= 7
        },
    )
    .await;
    stop_text.cancel();
    stop_json.cancel();
    text_task.await.unwrap().unwrap();
    json_task.await.unwrap().unwrap();

    let text = text.text();
    assert!(text.contains("SERVER localhost"), "{text}");
    assert!(
        text.contains(r#"RDATA events master batch ["a"]"#),
        "{text}"
    );
    let rows: Vec<serde_json::Value> = json_out
        .text()
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).expect("one JSON object per line")
        })
        .filter(|v| v["command"] == "RDATA")
        .collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["token"], json!(null));
    assert_eq!(rows[1]["token"], json!(2));
    assert_eq!(rows[1]["row"], json!(["b"]));
    assert_eq!(rows[1]["stream"], json!("events"));
}
