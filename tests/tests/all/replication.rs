//! Writer and readers together: exactly-once, in-order delivery at volume, readers joining
//! late, restarting, a writer restarting under them, and readers catching up straight from
//! the writer's database. Each scenario runs with the writer's log on SQLite and on
//! PostgreSQL (`<scenario>::sqlite`, `<scenario>::postgres`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use streamhost_integration_tests::{LogBackend, TestReader, TestWriter, rows_body};
use streamhost_proto::{RowJson, Token};

const STREAMS: [&str; 5] = ["events", "receipts", "typing", "presence", "caches"];

/// What the writer acknowledged, per stream: (token, row) in log order.
pub(crate) type Written = BTreeMap<String, Vec<(Token, RowJson)>>;

/// Appends `per_stream` rows to each stream from one task per stream; every tenth request
/// shares one token, so `batch` runs are exercised.
pub(crate) async fn write_rows(
    writer: &TestWriter,
    streams: &[&str],
    per_stream: usize,
    request_rows: usize,
) -> Written {
    let mut tasks = Vec::new();
    for (s, name) in streams.iter().enumerate() {
        let client = writer.client();
        let name = name.to_string();
        tasks.push(tokio::spawn(async move {
            let mut written = Vec::new();
            for (r, start) in (0..per_stream).step_by(request_rows).enumerate() {
                let rows: Vec<_> = (start..(start + request_rows).min(per_stream))
                    .map(|i| json!([name, i, "é", {"s": s}]))
                    .collect();
                let shared = r % 10 == 9;
                let tokens = client
                    .append(&name, rows_body(&rows), shared)
                    .await
                    .expect("append");
                for (token, row) in tokens.into_iter().zip(&rows) {
                    written.push((
                        token,
                        RowJson::parse(row.to_string().as_bytes()).expect("canonical"),
                    ));
                }
            }
            (name, written)
        }));
    }
    let mut all = Written::new();
    for task in tasks {
        let (name, rows) = task.await.expect("writer task");
        all.insert(name, rows);
    }
    all
}

on_both_backends!(
    two_readers_get_exactly_the_100k_written_rows_over_5_streams,
    a_restarted_reader_resumes_without_gap_or_repeat,
    readers_reconnect_and_catch_up_after_a_writer_restart_mid_stream,
    a_reader_catches_up_from_the_writers_database_without_its_endpoint,
);

pub(crate) async fn assert_reader_has_exactly(
    reader: &TestReader,
    written: &Written,
    timeout: Duration,
) {
    for (stream, rows) in written {
        let last = rows.last().map_or(Token(1), |(t, _)| *t);
        reader.wait_for(stream, last, timeout).await;
        let got: Vec<(Token, RowJson)> = reader
            .rows(stream)
            .await
            .into_iter()
            .map(|(_, t, r)| (t, r))
            .collect();
        assert_eq!(
            got.len(),
            rows.len(),
            "{}: row count on {stream}",
            reader.config.name
        );
        assert!(
            got == *rows,
            "{}: rows of {stream} differ from what was written",
            reader.config.name
        );
    }
}

async fn two_readers_get_exactly_the_100k_written_rows_over_5_streams(backend: LogBackend) {
    let writer = TestWriter::spawn_on(backend, &STREAMS, |_| {}).await;
    let early = TestReader::spawn(&writer, "early").await;
    // Half the rows before the second reader exists: it starts with a catch-up.
    let first = write_rows(&writer, &STREAMS, 10_000, 500).await;
    let late = TestReader::spawn(&writer, "late").await;
    let second = write_rows(&writer, &STREAMS, 10_000, 500).await;
    let mut written = first;
    for (stream, rows) in second {
        written.get_mut(&stream).expect("same streams").extend(rows);
    }
    assert_eq!(written.values().map(Vec::len).sum::<usize>(), 100_000);
    for reader in [&early, &late] {
        assert_reader_has_exactly(reader, &written, Duration::from_secs(120)).await;
    }
}

async fn a_restarted_reader_resumes_without_gap_or_repeat(backend: LogBackend) {
    let writer = TestWriter::spawn_on(backend, &["events"], |_| {}).await;
    let mut reader = TestReader::spawn(&writer, "restarted").await;
    let mut written = write_rows(&writer, &["events"], 3_000, 100).await;
    reader
        .wait_for(
            "events",
            written["events"].last().unwrap().0,
            Duration::from_secs(60),
        )
        .await;
    reader.stop().await;
    let more = write_rows(&writer, &["events"], 3_000, 100).await;
    written
        .get_mut("events")
        .unwrap()
        .extend(more["events"].clone());
    // Same data folder: positions and recorded rows are where the first run left them.
    let config = reader.config.clone();
    let resumed = TestReader::spawn_with(&writer, "restarted", None, |c| *c = config).await;
    assert_reader_has_exactly(&resumed, &written, Duration::from_secs(60)).await;
}

async fn readers_reconnect_and_catch_up_after_a_writer_restart_mid_stream(backend: LogBackend) {
    let mut writer = TestWriter::spawn_on(backend, &["events", "receipts"], |_| {}).await;
    let readers = [
        TestReader::spawn(&writer, "a").await,
        TestReader::spawn(&writer, "b").await,
    ];
    let mut written = write_rows(&writer, &["events", "receipts"], 2_000, 100).await;
    writer.restart().await;
    let more = write_rows(&writer, &["events", "receipts"], 2_000, 100).await;
    for (stream, rows) in more {
        written.get_mut(&stream).unwrap().extend(rows);
    }
    for reader in &readers {
        assert_reader_has_exactly(reader, &written, Duration::from_secs(60)).await;
        let status = reader.reader().status();
        assert!(
            status.reconnects >= 1,
            "{} reconnected: {status:?}",
            reader.config.name
        );
    }
}

/// A reader given the writer's log database (`log_database_url`) and an HTTP endpoint where
/// nothing listens: joining late, it can only catch up from the database, and it must end
/// with exactly what was written.
async fn a_reader_catches_up_from_the_writers_database_without_its_endpoint(backend: LogBackend) {
    let writer = TestWriter::spawn_on(backend, &["events", "receipts"], |_| {}).await;
    let mut written = write_rows(&writer, &["events", "receipts"], 3_000, 100).await;
    let log_url = writer.log_url();
    let reader = TestReader::spawn_with(&writer, "from-db", None, |config| {
        config.log_database_url = Some(log_url.into());
        config.writer_http = "http://127.0.0.1:1".into();
    })
    .await;
    let more = write_rows(&writer, &["events", "receipts"], 1_000, 100).await;
    for (stream, rows) in more {
        written.get_mut(&stream).unwrap().extend(rows);
    }
    assert_reader_has_exactly(&reader, &written, Duration::from_secs(60)).await;
    let (_, metrics) = reader.get("/metrics").await;
    assert!(
        metrics.contains("streamhost_reader_catchup_requests_total{stream=\"events\"}"),
        "the reader caught up: {metrics}"
    );
}
