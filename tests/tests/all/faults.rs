//! Faults around a real reader: a reader too slow to read is cut off and catches up; a
//! misbehaving client does not disturb a reader that keeps streaming.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::Method;
use serde_json::json;
use streamhost_integration_tests::raw::RawClient;
use streamhost_integration_tests::{TestReader, TestWriter, rows_body, wait_until};
use streamhost_server::reader::{Batch, BatchSink, BoxFuture, RecordingSink};
use tokio::sync::watch;

/// The recording sink behind a gate the test opens.
struct GatedSink {
    open: watch::Receiver<bool>,
}

impl BatchSink for GatedSink {
    fn apply<'a>(
        &'a self,
        batches: &'a [Batch],
        tx: &'a mut sqlx::SqliteConnection,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let mut open = self.open.clone();
            open.wait_for(|open| *open).await?;
            RecordingSink.apply(batches, tx).await
        })
    }
}

async fn writer_metric(writer: &TestWriter, needle: &str) -> bool {
    let (_, body) = writer
        .client()
        .send(Method::GET, "/metrics", Bytes::new())
        .await
        .expect("metrics");
    String::from_utf8_lossy(&body).contains(needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_reading_is_cut_off_then_reconnects_and_catches_up() {
    let writer = TestWriter::spawn_with(&["events"], |c| c.max_pending_commands = 100).await;
    let (gate, open) = watch::channel(false);
    let reader = TestReader::spawn_with(
        &writer,
        "stalled",
        Some(Arc::new(GatedSink { open })),
        |c| {
            c.inbound_queue = 50;
        },
    )
    .await;
    wait_until(Duration::from_secs(10), "reader connected", || async {
        reader
            .reader()
            .status()
            .stream("events", "master")
            .is_some()
    })
    .await;

    // The sink is shut: the reader's queue fills, it stops reading, the writer gives up on it.
    let row = json!(["x".repeat(500)]);
    let mut last = None;
    for _ in 0..40 {
        let rows: Vec<_> = (0..500).map(|_| row.clone()).collect();
        last = writer
            .client()
            .append("events", rows_body(&rows), false)
            .await
            .unwrap()
            .last()
            .copied();
        if writer_metric(
            &writer,
            "streamhost_replication_errors_total{reason=\"failed_to_keep_up\"}",
        )
        .await
        {
            break;
        }
    }
    wait_until(
        Duration::from_secs(30),
        "the writer to cut the reader off",
        || {
            writer_metric(
                &writer,
                "streamhost_replication_errors_total{reason=\"failed_to_keep_up\"}",
            )
        },
    )
    .await;

    gate.send(true).unwrap();
    let last = last.unwrap();
    reader
        .wait_for("events", last, Duration::from_secs(60))
        .await;
    let rows = reader.rows("events").await;
    let tokens: Vec<i64> = rows.iter().map(|(_, t, _)| t.0).collect();
    assert_eq!(
        tokens,
        (2..=last.0).collect::<Vec<_>>(),
        "every row once, in order"
    );
    let status = reader.reader().status();
    assert!(status.reconnects >= 1);
    let last_error = status.connection.last_error.unwrap_or_default();
    assert!(
        last_error.contains("ERROR Failed to keep up"),
        "the reader saw why: {last_error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_client_is_closed_while_a_reader_keeps_streaming() {
    let writer = TestWriter::spawn(&["events"]).await;
    let reader = TestReader::spawn(&writer, "steady").await;
    let first = writer.append("events", &[json!(1), json!(2)]).await;
    reader
        .wait_for("events", first[1], Duration::from_secs(10))
        .await;

    let mut bad = RawClient::connect(writer.replication_addr()).await;
    bad.send_raw(b"\x00\x01 not a command\n").await;
    let lines = bad.read_to_close(Duration::from_secs(10)).await;
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with("ERROR failed to parse line:"),
        "{lines:?}"
    );

    let more = writer.append("events", &[json!(3)]).await;
    reader
        .wait_for("events", more[0], Duration::from_secs(10))
        .await;
    assert_eq!(reader.rows("events").await.len(), 3);
    assert_eq!(
        reader.reader().status().reconnects,
        0,
        "the reader's own connection was untouched"
    );
}
