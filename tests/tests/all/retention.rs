//! Retention end to end: a writer with a tight `[writer.retention]` trims its log while a
//! reader is away; the reader comes back, meets the catch-up endpoint's 410, reports the gap
//! (status, metric, `reader.sqlite`) and follows on from the earliest token kept, on SQLite
//! and on PostgreSQL, over TCP and when catching up from the log database. A catch-up in
//! progress holds its rows. Dead letters and failure files are pruned by count and age.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde_json::{Value, json};
use streamhost_integration_tests::plugins::{PluginFolder, grants_for};
use streamhost_integration_tests::{LogBackend, TestReader, TestWriter, metric, wait_until};
use streamhost_proto::Token;

const WAIT: Duration = Duration::from_secs(30);

on_both_backends!(
    a_reader_that_was_away_meets_the_410_and_follows_on_with_the_gap_recorded,
    a_reader_catching_up_from_the_log_database_follows_on_the_same_way,
);

/// A writer of `events` keeping at most 5 rows, trimming every 20 ms, holding nothing.
async fn tight_writer(backend: LogBackend) -> TestWriter {
    TestWriter::spawn_on(backend, &["events"], |config| {
        config.retention.max_rows = 5;
        config.retention.hold_ms = 0;
        config.retention.interval_ms = 20;
    })
    .await
}

fn rows(range: std::ops::Range<u32>) -> Vec<Value> {
    range.map(|n| json!({ "n": n })).collect()
}

/// `GET` the catch-up endpoint of `events` from `from` to `upto`: status and JSON body.
async fn catch_up(writer: &TestWriter, stream: &str, from: i64, upto: i64) -> (u16, Value) {
    let path = format!(
        "/_synapse/replication/get_repl_stream_updates/{stream}/txn?from_token={from}&upto_token={upto}"
    );
    let (status, body) = writer
        .client()
        .send(hyper::Method::GET, &path, Bytes::new())
        .await
        .unwrap();
    (status.as_u16(), serde_json::from_slice(&body).unwrap())
}

/// The writer's floor of `stream` as its metrics show it (polling the metric, not the
/// catch-up endpoint, places no hold).
async fn writer_floor(writer: &TestWriter, stream: &str) -> f64 {
    let (_, text) = writer
        .client()
        .send(hyper::Method::GET, "/metrics", Bytes::new())
        .await
        .unwrap();
    let sample = format!(r#"streamhost_retention_trimmed_upto{{stream="{stream}"}}"#);
    metric(&String::from_utf8_lossy(&text), &sample).unwrap_or(1.0)
}

/// Waits until the writer's floor of `stream` is at least `at_least`; returns the 410 its
/// catch-up from 1 to `last` then answers.
async fn wait_for_trim(writer: &TestWriter, stream: &str, at_least: i64, last: i64) -> Value {
    wait_until(WAIT, "the writer to trim", || async {
        writer_floor(writer, stream).await >= at_least as f64
    })
    .await;
    let (status, gone) = catch_up(writer, stream, 1, last).await;
    assert_eq!(status, 410, "{gone}");
    gone
}

/// What a reader that came back after a trim must show: every row up to `away_at`, then the
/// rows after the floor, one trimmed gap `(away_at, floor]` in its status, its metric and
/// `reader.sqlite`.
async fn assert_followed_on(reader: &TestReader, away_at: Token, floor: Token, last: Token) {
    reader.wait_for("events", last, WAIT).await;
    let tokens: Vec<i64> = reader
        .rows("events")
        .await
        .iter()
        .map(|(_, t, _)| t.0)
        .collect();
    let expected: Vec<i64> = (2..=away_at.0).chain(floor.0 + 1..=last.0).collect();
    assert_eq!(tokens, expected, "rows before the gap and after the floor");

    let status = reader.reader().status();
    let entry = status.stream("events", "master").unwrap();
    assert_eq!((entry.gaps, entry.trimmed), (1, 1), "{entry:?}");
    let range = entry.last_trimmed.unwrap();
    assert_eq!((range.from, range.to), (away_at.0, floor.0));
    let json = reader.client().get_json("/v1/status").await.unwrap();
    let shown = json["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stream"] == "events")
        .unwrap()
        .clone();
    assert_eq!(shown["trimmed"], 1, "{shown}");
    assert_eq!(
        shown["last_trimmed"],
        json!({ "from": away_at.0, "to": floor.0 }),
        "{shown}"
    );

    let (_, metrics) = reader.get("/metrics").await;
    let sample = r#"streamhost_reader_trimmed_gaps_total{stream="events",instance="master"}"#;
    assert_eq!(metric(&metrics, sample), Some(1.0), "{sample}");

    let gaps = reader.reader().store().gaps().await.unwrap();
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert_eq!(
        (gaps[0].from, gaps[0].to, gaps[0].reason.as_str()),
        (away_at, floor, "trimmed")
    );
}

async fn a_reader_that_was_away_meets_the_410_and_follows_on_with_the_gap_recorded(
    backend: LogBackend,
) {
    let writer = tight_writer(backend).await;
    let mut reader = TestReader::spawn(&writer, "away").await;
    let first = writer.append("events", &rows(0..3)).await;
    let away_at = *first.last().unwrap();
    reader.wait_for("events", away_at, WAIT).await;
    reader.stop().await;

    let later = writer.append("events", &rows(3..23)).await;
    let last = *later.last().unwrap();
    // Five rows kept: the floor reaches last - 5.
    let gone = wait_for_trim(&writer, "events", last.0 - 5, last.0).await;
    let floor = Token(gone["trimmed_upto"].as_i64().unwrap());
    assert_eq!(gone["errcode"], "M_TRIMMED", "{gone}");
    assert!(
        gone["error"].as_str().unwrap().contains("trimmed"),
        "{gone}"
    );
    assert_eq!(gone["earliest_token"], floor.0 + 1, "{gone}");
    // From the floor on, catch-up is served.
    let (status, kept) = catch_up(&writer, "events", floor.0, last.0).await;
    assert_eq!(status, 200, "{kept}");
    assert_eq!(kept["updates"][0][0], floor.0 + 1);

    // Back over TCP: the POSITION it gets is ahead, its catch-up meets the 410.
    reader.restart_with(|_| {}).await;
    assert_followed_on(&reader, away_at, floor, last).await;

    // Live rows keep coming after the gap, without another.
    let more = writer.append("events", &rows(23..25)).await;
    reader.wait_for("events", *more.last().unwrap(), WAIT).await;
    assert_eq!(
        reader
            .reader()
            .status()
            .stream("events", "master")
            .unwrap()
            .gaps,
        1
    );
}

async fn a_reader_catching_up_from_the_log_database_follows_on_the_same_way(backend: LogBackend) {
    let writer = tight_writer(backend).await;
    let log_url = writer.log_url();
    let mut reader = TestReader::spawn_with(&writer, "db", None, |config| {
        config.log_database_url = Some(log_url.into());
    })
    .await;
    let first = writer.append("events", &rows(0..2)).await;
    let away_at = *first.last().unwrap();
    reader.wait_for("events", away_at, WAIT).await;
    reader.stop().await;
    let later = writer.append("events", &rows(2..20)).await;
    let last = *later.last().unwrap();
    let gone = wait_for_trim(&writer, "events", last.0 - 5, last.0).await;
    let floor = Token(gone["trimmed_upto"].as_i64().unwrap());
    reader.restart_with(|_| {}).await;
    assert_followed_on(&reader, away_at, floor, last).await;
}

/// A catch-up request holds the rows after its `from_token` for `hold_ms`: a stream with one
/// is not trimmed in the pass that trims a stream without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catch_up_in_progress_holds_its_rows() {
    let writer = TestWriter::spawn_with(&["a_held", "b_free"], |config| {
        config.retention.max_rows = 2;
        config.retention.hold_ms = 600_000;
        config.retention.interval_ms = 20;
    })
    .await;
    writer.append("a_held", &rows(0..1)).await;
    let (status, _) = catch_up(&writer, "a_held", 1, 2).await;
    assert_eq!(status, 200);
    let held = writer.append("a_held", &rows(1..10)).await;
    let free = writer.append("b_free", &rows(0..10)).await;
    // Streams are trimmed in name order: the pass that trimmed b_free saw a_held's rows.
    wait_for_trim(&writer, "b_free", 2, free.last().unwrap().0).await;
    assert_eq!(writer_floor(&writer, "a_held").await, 1.0);
    let (status, page) = catch_up(&writer, "a_held", 1, held.last().unwrap().0).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["updates"].as_array().unwrap().len(), 10, "{page}");
}

/// Dead letters beyond `dead_letters` per plugin, and failure files beyond `failure_files`
/// or older than `failure_file_days`, are deleted by the pruning task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_and_failure_files_are_pruned_by_count_and_age() {
    let writer = TestWriter::spawn(&["messages"]).await;
    let folder = PluginFolder::with(&["evil"]);
    let mut grants = grants_for(&["evil"]);
    let mut config = toml::Table::new();
    config.insert("mode".into(), toml::Value::String("skip".into()));
    grants.get_mut("evil").unwrap().config = Some(config);
    let dir = folder.path().to_path_buf();
    // As `spawn_plugin_reader`, with `[reader.plugins.retention]` set.
    let reader = TestReader::spawn_with(&writer, "pruned", None, move |config| {
        config.plugins.dir = Some(dir);
        config.plugins.grants = grants;
        config.plugins.admin_token = Some(streamhost_integration_tests::ADMIN_TOKEN.into());
        config.plugins.compile_cache = Some(std::path::PathBuf::from(concat!(
            env!("OUT_DIR"),
            "/compiled"
        )));
        config.plugins.retention.dead_letters = 2;
        config.plugins.retention.failure_files = 3;
        config.plugins.retention.failure_file_days = 1;
        config.plugins.retention.interval_ms = 20;
    })
    .await;

    // Failure files: two from three days ago, five fresh.
    let failures = reader.data_dir().join("plugin-failures");
    let old = SystemTime::now() - Duration::from_secs(3 * 86_400);
    for n in 0..7 {
        let path = failures.join(format!("evil-messages-master-{n}.rdata"));
        std::fs::write(&path, "RDATA messages master 2 {}\n").unwrap();
        if n < 2 {
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
    }
    wait_until(WAIT, "failure files pruned to 3", || async {
        std::fs::read_dir(&failures).unwrap().count() == 3
    })
    .await;
    for n in 0..2 {
        let path = failures.join(format!("evil-messages-master-{n}.rdata"));
        assert!(!path.exists(), "{path:?} is older than a day");
    }

    // Dead letters: five skipped batches, the newest two kept.
    let mut last = 0;
    for n in 0..5 {
        last = writer.append("messages", &[json!({ "n": n })]).await[0].0;
    }
    let letters = "/v1/admin/plugins/evil/dead-letters";
    wait_until(WAIT, "dead letters pruned to the newest 2", || async {
        let Ok(list) = reader.admin().get_json(letters).await else {
            return false;
        };
        let list = list.as_array().cloned().unwrap_or_default();
        list.len() == 2 && list[0]["to_token"] == last
    })
    .await;
    let (_, metrics) = reader.get("/metrics").await;
    let files = metric(
        &metrics,
        r#"streamhost_plugin_pruned_total{kind="failure_files"}"#,
    );
    assert!(files >= Some(4.0), "{files:?}");
    let dead = metric(
        &metrics,
        r#"streamhost_plugin_pruned_total{kind="dead_letters"}"#,
    );
    assert!(dead >= Some(3.0), "{dead:?}");
}
