//! The real binary as a process, killed with SIGKILL mid-stream: acknowledged rows survive
//! and every reader ends with exactly the log, once each, in order.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;
use streamhost_integration_tests::process::Process;
use streamhost_integration_tests::{TestReader, TestWriter, rows_body, stream, wait_until};
use streamhost_proto::Token;
use streamhost_server::client::ApiClient;
use streamhost_server::reader::ReaderStore;
use tokio::sync::Mutex;

/// Appends 100-row requests until stopped or a request fails; returns the acknowledged
/// (token, index) pairs.
fn keep_appending(
    client: ApiClient,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(Token, usize)>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut next = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let rows: Vec<_> = (next..next + 100).map(|i| json!({"i": i})).collect();
            match client.append("events", rows_body(&rows), false).await {
                Ok(tokens) => {
                    let mut acked = acked.lock().await;
                    acked.extend(tokens.into_iter().zip(next..));
                    next += 100;
                }
                Err(_) => return,
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_killed_with_sigkill_resumes_without_gap_or_repeat() {
    let writer = TestWriter::spawn(&["events"]).await;
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().join("reader");
    let args = |http: &str| {
        vec![
            "reader".to_string(),
            "--writer".into(),
            writer.replication_addr().to_string(),
            "--writer-http".into(),
            writer.url(),
            "--http".into(),
            http.to_string(),
            "--data".into(),
            data_dir.to_str().unwrap().to_string(),
            "--name".into(),
            "killed".into(),
            "--record-rows".into(),
        ]
    };
    let spawn = |args: Vec<String>| async move {
        Process::spawn(
            env!("CARGO_BIN_EXE_streamhost-under-test"),
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        )
        .await
    };

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let appender = keep_appending(writer.client(), stop.clone(), acked.clone());
    let reader = spawn(args("127.0.0.1:0")).await;
    let status = ApiClient::new(format!("http://{}", reader.addr("http")));
    wait_until(
        Duration::from_secs(30),
        "the reader to apply some rows",
        || async {
            status.get_json("/v1/status").await.is_ok_and(|s| {
                s["streams"].as_array().is_some_and(|a| {
                    a.iter()
                        .any(|e| e["position"].as_i64().unwrap_or(0) > 2_000)
                })
            })
        },
    )
    .await;
    reader.kill_9().await;
    // Rows keep coming while the reader is dead.
    let before = acked.lock().await.len();
    wait_until(
        Duration::from_secs(30),
        "more rows while the reader is down",
        || async { acked.lock().await.len() > before + 1_000 },
    )
    .await;
    let reader = spawn(args("127.0.0.1:0")).await;
    stop.store(true, Ordering::Relaxed);
    appender.await.unwrap();
    let last = acked.lock().await.last().unwrap().0;
    let status = ApiClient::new(format!("http://{}", reader.addr("http")));
    wait_until(
        Duration::from_secs(60),
        "the restarted reader to catch up",
        || async {
            status.get_json("/v1/status").await.is_ok_and(|s| {
                s["streams"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|e| e["position"].as_i64() == Some(last.0)))
            })
        },
    )
    .await;
    assert!(reader.terminate().await.success(), "clean exit on SIGTERM");

    let store = ReaderStore::open(&data_dir.join("reader.sqlite"))
        .await
        .unwrap();
    let rows = store.recorded_rows(&stream("events")).await.unwrap();
    let acked = acked.lock().await;
    assert_eq!(
        rows.len(),
        acked.len(),
        "every acknowledged row exactly once"
    );
    for ((_, token, row), (acked_token, i)) in rows.iter().zip(acked.iter()) {
        assert_eq!(token, acked_token);
        assert_eq!(row.as_str(), format!("{{\"i\":{i}}}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_rows_survive_a_writer_sigkill_and_reach_every_reader_once() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().join("writer").to_str().unwrap().to_string();
    let writer_args = |http: String, replication: String| {
        vec![
            "writer".to_string(),
            "--http".into(),
            http,
            "--replication".into(),
            replication,
            "--data".into(),
            data_dir.clone(),
            "--stream".into(),
            "events".into(),
        ]
    };
    let spawn = |args: Vec<String>| async move {
        Process::spawn(
            env!("CARGO_BIN_EXE_streamhost-under-test"),
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        )
        .await
    };
    let writer = spawn(writer_args("127.0.0.1:0".into(), "127.0.0.1:0".into())).await;
    let (http, replication) = (writer.addr("http"), writer.addr("replication"));
    let url = format!("http://{http}");
    let readers = [
        TestReader::spawn_to(replication, url.clone(), "r1", None, |_| {}).await,
        TestReader::spawn_to(replication, url.clone(), "r2", None, |_| {}).await,
    ];

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let appender = keep_appending(ApiClient::new(url.clone()), stop.clone(), acked.clone());
    wait_until(
        Duration::from_secs(30),
        "some acknowledged rows",
        || async { acked.lock().await.len() >= 3_000 },
    )
    .await;
    writer.kill_9().await;
    appender.await.unwrap(); // ends at the first failed request
    let acked_before_kill = acked.lock().await.clone();

    // Same addresses, same log.
    let writer = spawn(writer_args(http.to_string(), replication.to_string())).await;
    let client = ApiClient::new(url.clone());
    let position = client.get_json("/v1/streams").await.unwrap()["streams"][0]["position"]
        .as_i64()
        .unwrap();
    let last_acked = acked_before_kill.last().unwrap().0;
    assert!(
        position >= last_acked.0,
        "the log holds every acknowledged row ({position} < {last_acked})"
    );
    let more = client
        .append("events", rows_body(&[json!("after restart")]), false)
        .await
        .unwrap();

    for reader in &readers {
        reader
            .wait_for("events", more[0], Duration::from_secs(60))
            .await;
        let rows = reader.rows("events").await;
        let tokens: Vec<i64> = rows.iter().map(|(_, t, _)| t.0).collect();
        assert_eq!(
            tokens,
            (2..=more[0].0).collect::<Vec<_>>(),
            "{}: the whole log, once, in order",
            reader.config.name
        );
        for ((_, token, row), (acked_token, i)) in rows.iter().zip(&acked_before_kill) {
            assert_eq!(
                (token, row.as_str()),
                (acked_token, format!("{{\"i\":{i}}}").as_str())
            );
        }
    }
    assert!(writer.terminate().await.success());
}
