//! Pushes (`docs/pushers.md`): the `webhook` plugin pushes every row to a [`PushReceiver`];
//! the reader's outbox and delivery worker get each push there at least once, in intent
//! exactly once (the receiver de-duplicates by `Idempotency-Key`), through reader SIGKILLs,
//! a receiver that is down, answers 500 or 429 with `Retry-After`; a 400 makes a dead push the
//! admin API lists, retries and drops.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::json;
use streamhost_integration_tests::plugins::{PluginFolder, grants_for};
use streamhost_integration_tests::process::Process;
use streamhost_integration_tests::push_receiver::{Answer, PushReceiver};
use streamhost_integration_tests::{
    ADMIN_TOKEN, TestReader, TestWriter, metric, rows_body, wait_until,
};
use streamhost_proto::Token;
use streamhost_server::client::ApiClient;
use streamhost_server::config::DestinationConfig;
use tokio::sync::Mutex;

/// The key the webhook plugin gives the only row of `token` on `events`.
fn key(token: Token) -> String {
    format!("events/master/{}/0", token.0)
}

/// A destination at `url` that retries fast.
fn destination(url: String) -> DestinationConfig {
    DestinationConfig {
        url,
        backoff_initial_ms: 50,
        backoff_max_ms: 400,
        timeout_ms: 2_000,
        ..DestinationConfig::default()
    }
}

/// A reader in this process running `webhook` (granted `push = ["webhook"]`) with
/// `[reader.destinations.webhook]` = `webhook`.
async fn push_reader(
    writer: &TestWriter,
    folder: &PluginFolder,
    webhook: DestinationConfig,
) -> TestReader {
    let dir = folder.path().to_path_buf();
    TestReader::spawn_with(writer, "pusher", None, move |config| {
        config.plugins.dir = Some(dir);
        config.plugins.grants = grants_for(&["webhook"]);
        config.plugins.admin_token = Some(ADMIN_TOKEN.into());
        config.plugins.retry_backoff_ms = 20;
        config.plugins.compile_cache = Some(concat!(env!("OUT_DIR"), "/compiled").into());
        config.destinations.insert("webhook".into(), webhook);
    })
    .await
}

/// Appends one row per token, `n` of them; their keys.
async fn append_rows(writer: &TestWriter, n: usize) -> Vec<String> {
    let rows: Vec<_> = (0..n).map(|i| json!({"i": i})).collect();
    writer
        .append("events", &rows)
        .await
        .into_iter()
        .map(key)
        .collect()
}

async fn wait_accepted(receiver: &PushReceiver, keys: &[String], timeout: Duration) {
    wait_until(timeout, "every push accepted by the receiver", || async {
        let accepted: BTreeSet<String> = receiver.accepted().into_iter().collect();
        keys.iter().all(|k| accepted.contains(k))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_answering_500_for_a_while_gets_every_push_after_it_recovers() {
    let writer = TestWriter::spawn(&["events"]).await;
    let receiver = PushReceiver::start().await;
    receiver.answer(Answer::Status(500));
    let folder = PluginFolder::with(&["webhook"]);
    let reader = push_reader(&writer, &folder, destination(receiver.url())).await;
    let keys = append_rows(&writer, 20).await;
    wait_until(
        Duration::from_secs(30),
        "retries of the failing pushes",
        || async { receiver.requests().len() >= 40 },
    )
    .await;
    receiver.answer(Answer::Ok);
    wait_accepted(&receiver, &keys, Duration::from_secs(30)).await;
    let accepted = receiver.accepted();
    assert_eq!(
        accepted.len(),
        keys.len(),
        "nothing but the pushes: {accepted:?}"
    );
    let first = &receiver.requests()[0];
    let header = |name: &str| {
        first
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header("content-type").as_deref(), Some("application/json"));
    assert!(keys.contains(&header("idempotency-key").unwrap()));
    let body: serde_json::Value = serde_json::from_slice(&first.body).unwrap();
    assert_eq!(body["stream"], "events");

    // (e) the metrics count it all.
    let (_, text) = reader.get("/metrics").await;
    let sample = |name: &str| {
        metric(
            &text,
            &format!("streamhost_{name}{{destination=\"webhook\"}}"),
        )
    };
    assert_eq!(sample("pushes_sent_total"), Some(20.0), "{text}");
    assert!(
        sample("push_attempts_failed_total").unwrap() >= 20.0,
        "{text}"
    );
    assert!(sample("pushes_retried_total").unwrap() >= 20.0, "{text}");
    assert!(
        sample("push_send_duration_seconds_count").unwrap() >= 40.0,
        "{text}"
    );
    assert!(sample("push_outbox_depth").is_some(), "{text}");
    assert!(sample("push_outbox_oldest_age_seconds").is_some(), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_answering_429_is_not_called_again_before_its_retry_after() {
    let writer = TestWriter::spawn(&["events"]).await;
    let receiver = PushReceiver::start().await;
    receiver.answer(Answer::TooMany { retry_after_s: 2 });
    let folder = PluginFolder::with(&["webhook"]);
    let reader = push_reader(
        &writer,
        &folder,
        DestinationConfig {
            concurrency: 1,
            ..destination(receiver.url())
        },
    )
    .await;
    let keys = append_rows(&writer, 5).await;
    wait_until(Duration::from_secs(30), "the first push", || async {
        !receiver.requests().is_empty()
    })
    .await;
    receiver.answer(Answer::Ok);
    wait_accepted(&receiver, &keys, Duration::from_secs(30)).await;
    let requests = receiver.requests();
    assert_eq!(requests[0].status, 429);
    let not_before = requests[0].at + Duration::from_secs(2) - Duration::from_millis(20);
    for later in &requests[1..] {
        assert!(
            later.at >= not_before,
            "called {:?} after a 429 with Retry-After: 2",
            later.at - requests[0].at
        );
    }
    // The one answered 429 was sent again, first: order per key held.
    assert_eq!(requests[1].key, requests[0].key);
    let (_, text) = reader.get("/metrics").await;
    assert_eq!(
        metric(
            &text,
            "streamhost_pushes_retried_total{destination=\"webhook\"}"
        ),
        Some(1.0),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_answered_400_is_dead_and_the_admin_api_lists_retries_and_drops_it() {
    let writer = TestWriter::spawn(&["events"]).await;
    let receiver = PushReceiver::start().await;
    receiver.answer(Answer::Status(400));
    let folder = PluginFolder::with(&["webhook"]);
    let reader = push_reader(&writer, &folder, destination(receiver.url())).await;
    let admin = reader.admin();
    let keys = append_rows(&writer, 2).await;
    let dead = || async {
        admin
            .get_json("/v1/admin/pushes/dead?destination=webhook&limit=10")
            .await
            .unwrap()["dead"]
            .as_array()
            .unwrap()
            .clone()
    };
    wait_until(Duration::from_secs(30), "two dead pushes", || async {
        dead().await.len() == 2
    })
    .await;
    let listed = dead().await;
    let mut dead_keys: Vec<String> = listed
        .iter()
        .map(|d| d["key"].as_str().unwrap().to_owned())
        .collect();
    dead_keys.sort();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(dead_keys, sorted);
    assert!(
        listed[0]["reason"].as_str().unwrap().contains("HTTP 400"),
        "{listed:?}"
    );
    assert_eq!(receiver.requests().len(), 2, "a 400 is not retried");
    let status = admin.get_json("/v1/admin/pushes").await.unwrap();
    assert_eq!(status["destinations"][0]["dead"], 2, "{status}");
    let status = reader.client().get_json("/v1/status").await.unwrap();
    assert_eq!(status["pushes"][0]["destination"], "webhook", "{status}");
    assert_eq!(status["pushes"][0]["dead"], 2, "{status}");
    // The other destinations' filter lists none.
    let none = admin
        .get_json("/v1/admin/pushes/dead?destination=other")
        .await
        .unwrap();
    assert_eq!(none["dead"].as_array().unwrap().len(), 0);

    receiver.answer(Answer::Ok);
    let (retry_id, drop_id) = (
        listed[0]["id"].as_i64().unwrap(),
        listed[1]["id"].as_i64().unwrap(),
    );
    let retried_key = listed[0]["key"].as_str().unwrap().to_owned();
    let send = |method: Method, path: String| {
        let admin = admin.clone();
        async move { admin.send(method, &path, Bytes::new()).await.unwrap().0 }
    };
    assert_eq!(
        send(
            Method::POST,
            format!("/v1/admin/pushes/dead/{retry_id}/retry")
        )
        .await,
        StatusCode::OK
    );
    wait_accepted(
        &receiver,
        std::slice::from_ref(&retried_key),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        send(Method::DELETE, format!("/v1/admin/pushes/dead/{drop_id}")).await,
        StatusCode::OK
    );
    assert!(dead().await.is_empty());
    assert_eq!(
        send(Method::DELETE, format!("/v1/admin/pushes/dead/{drop_id}")).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(
            Method::POST,
            format!("/v1/admin/pushes/dead/{drop_id}/retry")
        )
        .await,
        StatusCode::NOT_FOUND
    );
    // Without the admin token: refused.
    let (status, _) = reader.get("/v1/admin/pushes").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, text) = reader.get("/metrics").await;
    assert_eq!(
        metric(
            &text,
            "streamhost_pushes_dead_total{destination=\"webhook\"}"
        ),
        Some(2.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_pushing_to_an_undeclared_destination_is_refused_at_start() {
    let writer = TestWriter::spawn(&["events"]).await;
    let folder = PluginFolder::with(&["webhook"]);
    let dir = folder.path().to_path_buf();
    let config = streamhost_server::config::ReaderConfig {
        writer: writer.replication_addr().to_string(),
        writer_http: writer.url(),
        data: tempfile::tempdir().unwrap().path().join("r"),
        plugins: streamhost_server::config::PluginsConfig {
            dir: Some(dir),
            grants: grants_for(&["webhook"]),
            ..Default::default()
        },
        ..Default::default()
    };
    let error = streamhost_server::reader::Reader::bind(config, None, Default::default())
        .await
        .err()
        .expect("refused");
    let text = format!("{error:#}");
    assert!(
        text.contains("reader.plugins.grants.webhook.push") && text.contains("webhook"),
        "{text}"
    );
}

/// Appends one-row requests until stopped; the tokens they got.
fn keep_appending(
    client: ApiClient,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<Token>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut i = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let rows: Vec<_> = (i..i + 10).map(|i| json!({"i": i})).collect();
            if let Ok(tokens) = client.append("events", rows_body(&rows), false).await {
                acked.lock().await.extend(tokens);
                i += 10;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

/// The reader's configuration file for the SIGKILL test.
fn reader_toml(dir: &Path, writer: &TestWriter, plugins: &Path, url: &str) -> std::path::PathBuf {
    let quote = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let text = format!(
        "[reader]\n\
         writer = {writer}\n\
         writer_http = {writer_http}\n\
         http = \"127.0.0.1:0\"\n\
         data = {data}\n\
         name = \"killed-pusher\"\n\
         reconnect_max_ms = 500\n\
         \n\
         [reader.plugins]\n\
         dir = {plugins}\n\
         admin_token = {ADMIN_TOKEN:?}\n\
         retry_backoff_ms = 20\n\
         compile_cache = {cache}\n\
         \n\
         [reader.plugins.grants.webhook]\n\
         streams = [\"*\"]\n\
         push = [\"webhook\"]\n\
         \n\
         [reader.destinations.webhook]\n\
         url = {url}\n\
         backoff_initial_ms = 50\n\
         backoff_max_ms = 500\n\
         timeout_ms = 2000\n\
         max_attempts = 1000\n",
        writer = quote(&writer.replication_addr().to_string()),
        writer_http = quote(&writer.url()),
        data = quote(dir.join("reader").to_str().unwrap()),
        plugins = quote(plugins.to_str().unwrap()),
        cache = quote(concat!(env!("OUT_DIR"), "/compiled")),
        url = quote(url),
    );
    let path = dir.join("reader.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Must show: exactly once in intent under faults. Rows flow while the reader is killed with
/// SIGKILL three times and the receiver is down twice; at the end every row's key reached the
/// receiver, each key's first delivery counted once, none missing, none unexpected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_is_pushed_exactly_once_in_intent_through_reader_sigkills_and_receiver_outages() {
    let writer = TestWriter::spawn(&["events"]).await;
    let mut receiver = PushReceiver::start().await;
    let folder = PluginFolder::with(&["webhook"]);
    let dir = tempfile::tempdir().unwrap();
    let config = reader_toml(dir.path(), &writer, folder.path(), &receiver.url());
    let spawn = || async {
        Process::spawn(
            env!("CARGO_BIN_EXE_streamhost-under-test"),
            &["reader", "--config", config.to_str().unwrap()],
        )
        .await
    };
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let appender = keep_appending(writer.client(), stop.clone(), acked.clone());

    let mut reader = spawn().await;
    for round in 0..3 {
        let before = receiver.accepted().len();
        wait_until(Duration::from_secs(60), "more pushes accepted", || async {
            receiver.accepted().len() > before + 50
        })
        .await;
        if round > 0 {
            receiver.stop();
        }
        reader.kill_9().await;
        let acked_before = acked.lock().await.len();
        wait_until(
            Duration::from_secs(30),
            "more rows while the reader is down",
            || async { acked.lock().await.len() > acked_before + 50 },
        )
        .await;
        reader = spawn().await;
        if round > 0 {
            // The reader's retries meet a closed port for a while.
            tokio::time::sleep(Duration::from_millis(300)).await;
            receiver.restart().await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    appender.await.unwrap();
    let expected: Vec<String> = acked.lock().await.iter().copied().map(key).collect();
    wait_accepted(&receiver, &expected, Duration::from_secs(120)).await;
    assert!(reader.terminate().await.success());

    let accepted = receiver.accepted();
    let unique: BTreeSet<&String> = accepted.iter().collect();
    assert_eq!(unique.len(), accepted.len(), "a key counted twice");
    let expected: BTreeSet<&String> = expected.iter().collect();
    assert_eq!(unique, expected, "every row's key, nothing else");
    eprintln!(
        "{} rows pushed; {} requests, {} repeated deliveries the receiver dropped by key",
        expected.len(),
        receiver.requests().len(),
        receiver.duplicates()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_pushing_to_an_undeclared_destination_is_refused_at_load() {
    let writer = TestWriter::spawn(&["events"]).await;
    let folder = PluginFolder::with(&["webhook"]);
    let mut grants = grants_for(&["webhook"]);
    grants.get_mut("webhook").unwrap().push = vec!["*".into()];
    let dir = folder.path().to_path_buf();
    // `*` passes the start-up check; no destination is declared, so the load fails.
    let reader = TestReader::spawn_with(&writer, "undeclared", None, move |config| {
        config.plugins.dir = Some(dir);
        config.plugins.grants = grants;
        config.plugins.admin_token = Some(ADMIN_TOKEN.into());
        config.plugins.compile_cache = Some(concat!(env!("OUT_DIR"), "/compiled").into());
    })
    .await;
    let detail = reader.plugin("webhook").await;
    assert_eq!(detail["state"], "failed", "{detail}");
    let reason = detail["reason"].as_str().unwrap();
    assert!(
        reason.contains("pushes to destination \"webhook\", which the reader does not declare"),
        "{reason}"
    );
}
