//! A full disk under the writer and under a reader, on a small tmpfs each test mounts itself
//! (`small_disk`): the writer answers 507 and loses nothing it acknowledged, the reader stops
//! applying and says so; both carry on by themselves once space is freed.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use streamhost_integration_tests::small_disk::{SmallDisk, SmallTablespace};
use streamhost_integration_tests::{TestReader, TestWriter, metric, rows_body, wait_until};
use streamhost_server::client::ApiClient;

/// The small disk's size: room for the database, its WAL and `-shm`, and little more.
const DISK_MIB: u64 = 16;

/// Bytes of padding in each row, so the disk fills within a few hundred requests.
const PAD: usize = 1_000;

/// Requests sent at once in each round: they meet in the writer's group commits.
const CONCURRENT: usize = 4;

/// What one append request came to.
enum Outcome {
    /// 200: the rows' ids with their tokens.
    Acked(Vec<(String, i64)>),
    /// 507: the answer's body.
    Full(Value),
}

/// Appends `rows` rows with ids `{tag}-{i}` and says how it went; any answer but 200 or 507
/// fails the test.
async fn append(client: &ApiClient, tag: &str, rows: usize) -> Outcome {
    let ids: Vec<String> = (0..rows).map(|i| format!("{tag}-{i}")).collect();
    let body: Vec<Value> = ids
        .iter()
        .map(|id| json!({ "id": id, "pad": "x".repeat(PAD) }))
        .collect();
    let (status, answer) = client
        .send(Method::POST, "/v1/streams/events/rows", rows_body(&body))
        .await
        .expect("the writer answers");
    let answer: Value = serde_json::from_slice(&answer).expect("a JSON answer");
    match status {
        StatusCode::OK => {
            let tokens = answer["tokens"].as_array().expect("tokens");
            assert_eq!(tokens.len(), rows, "{answer}");
            Outcome::Acked(
                ids.into_iter()
                    .zip(tokens.iter().map(|t| t.as_i64().unwrap()))
                    .collect(),
            )
        }
        StatusCode::INSUFFICIENT_STORAGE => Outcome::Full(answer),
        other => panic!("append answered {other}: {answer}"),
    }
}

/// A round of [`CONCURRENT`] appends; the acknowledged rows go into `acked` (id → token).
/// Returns the 507 answers.
async fn round(client: &ApiClient, round: usize, acked: &mut BTreeMap<String, i64>) -> Vec<Value> {
    let tags: Vec<String> = (0..CONCURRENT).map(|n| format!("r{round}c{n}")).collect();
    let outcomes = join_all(tags.iter().map(|tag| append(client, tag, 20))).await;
    let mut full = Vec::new();
    for outcome in outcomes {
        match outcome {
            Outcome::Acked(rows) => acked.extend(rows),
            Outcome::Full(answer) => full.push(answer),
        }
    }
    full
}

async fn metrics(client: &ApiClient) -> String {
    let (_, body) = client
        .send(Method::GET, "/metrics", Bytes::new())
        .await
        .expect("metrics");
    String::from_utf8_lossy(&body).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_whose_sqlite_disk_fills_answers_507_loses_nothing_acknowledged_and_recovers() {
    let disk = SmallDisk::mount(DISK_MIB);
    let writer = TestWriter::spawn_with(&["events"], |c| {
        c.data = disk.path().join("writer");
    })
    .await;
    a_full_disk_refuses_appends_until_space_is_freed(&writer, &disk).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_whose_postgres_disk_fills_answers_507_loses_nothing_acknowledged_and_recovers() {
    let disk = SmallDisk::mount(DISK_MIB);
    // The log's tables on the small disk; PostgreSQL's WAL and catalogs on its own.
    let space = SmallTablespace::create(&disk).await;
    let url = space.url();
    let writer = TestWriter::spawn_with(&["events"], |c| {
        c.database.url = Some(url.into());
    })
    .await;
    a_full_disk_refuses_appends_until_space_is_freed(&writer, &disk).await;
}

/// Appends before, while and after `disk` (where `writer`'s log is) is full: each round is
/// [`CONCURRENT`] requests at once, so they meet in group commits. While full every request
/// is answered 507 with the message; no restart is needed after; and every acknowledged row,
/// and no other, is in the log and reaches a reader.
async fn a_full_disk_refuses_appends_until_space_is_freed(writer: &TestWriter, disk: &SmallDisk) {
    let reader = TestReader::spawn(writer, "follower").await;
    let client = writer.client();
    let mut acked = BTreeMap::new();
    for n in 0..5 {
        assert!(round(&client, n, &mut acked).await.is_empty());
    }
    let before_full = acked.len();

    // Filled to the last byte. The WAL's pages already on disk may take a few more commits;
    // then every group fails, and each of its requests is answered 507.
    let filler = disk.fill();
    assert!(filler > 0, "the filler took what was left");
    let mut refused = Vec::new();
    let mut rounds = 5;
    while refused.is_empty() {
        assert!(rounds < 1_000, "no append was refused on a full disk");
        refused = round(&client, rounds, &mut acked).await;
        rounds += 1;
    }
    for answer in &refused {
        assert_eq!(answer["errcode"], "M_INSUFFICIENT_STORAGE", "{answer}");
        let message = answer["error"].as_str().unwrap();
        assert!(
            message.contains("out of disk space") && message.contains("nothing of this request"),
            "{answer}"
        );
        assert_eq!(answer["retry_after_ms"], 10_000, "{answer}");
    }
    // It stays refused while the disk is full, and says so in its metrics.
    for _ in 0..3 {
        assert_eq!(round(&client, rounds, &mut acked).await.len(), CONCURRENT);
        rounds += 1;
    }
    let text = metrics(&client).await;
    assert_eq!(
        metric(&text, "streamhost_log_disk_full"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(metric(&text, "streamhost_log_database_up"), Some(0.0));

    // Space is back: the next appends commit, with no restart.
    disk.free();
    for _ in 0..5 {
        assert!(
            round(&client, rounds, &mut acked).await.is_empty(),
            "appends commit once space is freed"
        );
        rounds += 1;
    }
    let text = metrics(&client).await;
    assert_eq!(
        metric(&text, "streamhost_log_disk_full"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(metric(&text, "streamhost_log_database_up"), Some(1.0));
    assert!(acked.len() >= before_full + 5 * CONCURRENT * 20);

    // Every acknowledged row is in the log, with its token, and reaches a reader; nothing
    // refused is there (a refused group was rolled back whole).
    let last = *acked.values().max().unwrap();
    reader
        .wait_for(
            "events",
            streamhost_proto::Token(last),
            Duration::from_secs(60),
        )
        .await;
    let delivered: BTreeMap<String, i64> = reader
        .rows("events")
        .await
        .into_iter()
        .map(|(_, token, row)| {
            let row: Value = serde_json::from_str(row.as_str()).unwrap();
            (row["id"].as_str().unwrap().to_owned(), token.0)
        })
        .collect();
    assert_eq!(
        delivered.len(),
        reader.rows("events").await.len(),
        "no row delivered twice"
    );
    assert_eq!(
        delivered, acked,
        "the log holds exactly the acknowledged rows"
    );
}

/// The reader's status and its `reader_disk_full` gauge.
async fn reader_disk_full(reader: &TestReader) -> (bool, Option<f64>) {
    let (_, text) = reader.get("/metrics").await;
    (
        reader.reader().status().disk_full,
        metric(&text, "streamhost_reader_disk_full"),
    )
}

/// The `apply` failures the reader counted so far.
async fn apply_errors(reader: &TestReader) -> f64 {
    let (_, text) = reader.get("/metrics").await;
    metric(&text, "streamhost_reader_errors_total{reason=\"apply\"}").unwrap_or(0.0)
}

/// The tokens recorded for `events`, in order.
async fn recorded_tokens(reader: &TestReader) -> Vec<i64> {
    reader
        .rows("events")
        .await
        .iter()
        .map(|(_, token, _)| token.0)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_whose_disk_fills_stops_applying_reports_it_and_resumes_with_every_row_once() {
    let writer = TestWriter::spawn(&["events"]).await;
    let disk = SmallDisk::mount(DISK_MIB);
    let reader = TestReader::spawn_with(&writer, "cramped", None, |c| {
        c.data = disk.path().join("reader");
    })
    .await;
    let client = writer.client();
    let mut acked = BTreeMap::new();
    round(&client, 0, &mut acked).await;
    let first = *acked.values().max().unwrap();
    reader
        .wait_for(
            "events",
            streamhost_proto::Token(first),
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(reader_disk_full(&reader).await, (false, Some(0.0)));

    // The reader's disk fills; the writer's does not. Rows keep coming until the reader
    // cannot commit them.
    disk.fill();
    let mut rounds = 1;
    while !reader.reader().status().disk_full {
        assert!(rounds < 1_000, "the reader never reported its full disk");
        assert!(round(&client, rounds, &mut acked).await.is_empty());
        rounds += 1;
        let wanted = *acked.values().max().unwrap();
        // Each round waits for the reader to apply it or to fail trying.
        wait_until(
            Duration::from_secs(30),
            "the reader to apply or fail",
            || async {
                reader.position("events").await.0 >= wanted || reader.reader().status().disk_full
            },
        )
        .await;
    }
    let last = *acked.values().max().unwrap();
    let (full, gauge) = reader_disk_full(&reader).await;
    assert!(full);
    assert_eq!(gauge, Some(1.0));

    // It stopped applying: through two more failed attempts (with its back-off between
    // them) its position stays where it was committed, below the writer's, and it recorded
    // exactly the rows up to that position.
    let stuck = reader.position("events").await.0;
    assert!(stuck < last, "stuck at {stuck}, the writer at {last}");
    let errors = apply_errors(&reader).await;
    wait_until(
        Duration::from_secs(30),
        "two more attempts to apply",
        || async { apply_errors(&reader).await >= errors + 2.0 },
    )
    .await;
    assert_eq!(reader.position("events").await.0, stuck);
    assert_eq!(
        recorded_tokens(&reader).await,
        (2..=stuck).collect::<Vec<_>>(),
        "nothing applied without being recorded"
    );

    // Space is back: it resumes by itself and applies every row once.
    disk.free();
    reader
        .wait_for(
            "events",
            streamhost_proto::Token(last),
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(
        recorded_tokens(&reader).await,
        (2..=last).collect::<Vec<_>>()
    );
    let delivered: BTreeMap<String, i64> = reader
        .rows("events")
        .await
        .into_iter()
        .map(|(_, token, row)| {
            let row: Value = serde_json::from_str(row.as_str()).unwrap();
            (row["id"].as_str().unwrap().to_owned(), token.0)
        })
        .collect();
    assert_eq!(delivered, acked, "every row applied once, with its token");
    wait_until(Duration::from_secs(10), "the status to clear", || async {
        reader_disk_full(&reader).await == (false, Some(0.0))
    })
    .await;
}
