//! A reader following a live Synapse (`[reader.synapse]`): the real binary as a process, the
//! real Redis at `STREAMHOST_TEST_REDIS`, a channel per test, and a scripted fake Synapse
//! replaying the Redis traffic of a real Synapse deployment (`real-session-1.txt`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use streamhost_integration_tests::certs::TestCa;
use streamhost_integration_tests::plugins::PluginFolder;
use streamhost_integration_tests::process::Process;
use streamhost_integration_tests::redis::{redis_addr, redis_url, unique_server_name};
use streamhost_integration_tests::synapse::{FakeSynapse, Script};
use streamhost_integration_tests::{metric, stream, wait_until};
use streamhost_server::client::ApiClient;
use streamhost_server::reader::ReaderStore;

const WAIT: Duration = Duration::from_secs(30);

/// The reader's instance name in the fake deployment.
const NAME: &str = "streamhost1";

/// The capture's one room.
const ROOM: &str = "!NxFe4NCL4wSCqHU3qxHJ7a1NsbVQukFWnTxfosx6eDM";

/// A `reader.toml` following `server_name` on the Redis at `url`, running `stream-stats`
/// and `membership`, recording every row.
fn reader_toml(data: &Path, plugins: &Path, server_name: &str, url: &str) -> String {
    let redis = redis_addr(url);
    format!(
        r#"[reader]
name = "{NAME}"
data = {data:?}
http = "127.0.0.1:0"
record_rows = true

[reader.plugins]
dir = {plugins:?}
[reader.plugins.grants.stream-stats]
streams = ["*"]
caches = ["count"]
kv = true
[reader.plugins.grants.membership]
streams = ["events"]
topics = ["membership:*"]

[reader.synapse]
server_name = "{server_name}"
[reader.synapse.redis]
host = "{}"
port = {}
ping_interval_ms = 2000
reconnect_max_ms = 500
"#,
        redis.ip(),
        redis.port(),
        data = data.display().to_string(),
        plugins = plugins.display().to_string(),
    )
}

/// [`reader_toml`] with `extra` appended, written to `dir/reader.toml`, the reader's data in
/// `dir/reader`; returns the data folder and the file's path.
fn write_reader_toml(
    dir: &Path,
    plugins: &Path,
    server_name: &str,
    url: &str,
    extra: &str,
) -> (PathBuf, String) {
    let data = dir.join("reader");
    let config = dir.join("reader.toml");
    std::fs::write(
        &config,
        reader_toml(&data, plugins, server_name, url) + extra,
    )
    .unwrap();
    (data, config.to_str().unwrap().to_owned())
}

async fn count(client: &ApiClient, stream: &str) -> u64 {
    client
        .get_json(&format!("/v1/query/stream-stats/count?stream={stream}"))
        .await
        .ok()
        .and_then(|v| v.as_u64())
        .unwrap_or(0)
}

/// Starts a reader process with the config file at `config` and waits for its first message on
/// the bus, which must be `REPLICATE `: it has subscribed. Returns the process and its API.
pub(crate) async fn start_reader(synapse: &mut FakeSynapse, config: &str) -> (Process, ApiClient) {
    start_reader_with_env(synapse, config, &[]).await
}

/// [`start_reader`] with these environment variables set for the process.
pub(crate) async fn start_reader_with_env(
    synapse: &mut FakeSynapse,
    config: &str,
    env: &[(&str, &Path)],
) -> (Process, ApiClient) {
    let reader = Process::spawn_with_env(
        env!("CARGO_BIN_EXE_streamhost-under-test"),
        &["reader", "--config", config],
        env,
    )
    .await;
    let client = ApiClient::new(format!("http://{}", reader.addr("http")));
    assert_eq!(
        synapse.next_heard(WAIT).await.as_deref(),
        Some("REPLICATE "),
        "the reader's first message"
    );
    (reader, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_synapse_reader_process_hands_every_row_of_a_real_session_to_its_plugins_once() {
    let url = redis_url().await;
    let server_name = unique_server_name("synapse");
    let script = Script::from_capture();
    let mut expected = script.rows_per_stream();
    assert_eq!(expected.values().sum::<usize>(), 141, "{expected:?}");

    let folder = PluginFolder::with(&["stream-stats", "membership"]);
    let dir = tempfile::tempdir().unwrap();
    let (data, config) = write_reader_toml(dir.path(), folder.path(), &server_name, &url, "");

    // Synapse is up before the reader: it hears the reader's REPLICATE and answers it.
    let mut synapse = FakeSynapse::connect(&url, &server_name).await;
    let (reader, client) = start_reader(&mut synapse, &config).await;

    synapse.publish(&script.announcements).await;
    // Its own echoes: ignored (else `events` would get a row from instance streamhost1).
    synapse
        .publish_line(&format!("POSITION events {NAME} 1 900"))
        .await;
    synapse
        .publish_line(&format!(
            r#"RDATA events {NAME} 901 ["ev",["$echo","{ROOM}","m.room.message",null,null,null,null,0,0]]"#
        ))
        .await;
    // Malformed: an unknown command, a bad POSITION, a typing row Synapse's parser refuses
    // (its token 1 is then delivered by the real row that follows).
    synapse.publish_line("NOT_A_COMMAND x").await;
    synapse.publish_line("POSITION typing master x 1").await;
    synapse
        .publish_line(&format!(r#"RDATA typing master 1 ["{ROOM}"]"#))
        .await;
    synapse.publish(&script.rows).await;
    synapse.publish(&script.tail).await;
    // A gap: receipts are at 23; the main process says it last published 30.
    synapse.publish_line("POSITION receipts master 30 31").await;
    synapse
        .publish_line(&format!(
            r#"RDATA receipts master 32 ["{ROOM}","m.read","@bob:localhost","$after-the-gap",null,{{"ts":1795663740000}}]"#
        ))
        .await;
    *expected.get_mut("receipts").unwrap() += 1;

    for (stream, rows) in &expected {
        wait_until(
            WAIT,
            &format!("stream-stats to count {rows} {stream} rows"),
            || async { count(&client, stream).await == *rows as u64 },
        )
        .await;
    }

    let status = client.get_json("/v1/status").await.unwrap();
    assert!(
        status["writer"]
            .as_str()
            .unwrap()
            .starts_with(&format!("synapse {server_name} via redis ")),
        "{status}"
    );
    let streams = status["streams"].as_array().unwrap();
    assert!(
        streams.iter().all(|s| s["instance"] != NAME),
        "own echoes ignored: {status}"
    );
    for entry in streams {
        let (name, gaps) = (entry["stream"].as_str().unwrap(), &entry["gaps"]);
        if name == "receipts" && entry["instance"] == "master" {
            assert_eq!(*gaps, 1, "{entry}");
            assert_eq!(entry["last_gap"], serde_json::json!({"from": 23, "to": 31}));
            assert_eq!(entry["position"], 32);
        } else {
            assert_eq!(*gaps, 0, "{entry}");
        }
    }
    let metrics = client
        .send(hyper::Method::GET, "/metrics", bytes::Bytes::new())
        .await
        .unwrap()
        .1;
    let metrics = String::from_utf8(metrics.to_vec()).unwrap();
    let m = |name: &str| metric(&metrics, name).unwrap_or(0.0);
    assert_eq!(
        m("streamhost_reader_redis_malformed_total"),
        3.0,
        "{metrics}"
    );
    assert_eq!(m("streamhost_reader_redis_echoes_ignored_total"), 2.0);
    assert_eq!(
        m(r#"streamhost_reader_redis_received_total{command="USER_IP"}"#),
        0.0
    );
    assert_eq!(
        m(r#"streamhost_reader_redis_received_total{command="USER_SYNC"}"#),
        4.0
    );
    assert_eq!(
        m(r#"streamhost_reader_redis_published_total{command="REPLICATE"}"#),
        1.0
    );
    assert_eq!(
        m(r#"streamhost_reader_gaps_total{stream="receipts",instance="master"}"#),
        1.0
    );
    for (stream, rows) in &expected {
        assert_eq!(
            m(&format!(
                r#"streamhost_reader_rows_applied_total{{stream="{stream}"}}"#
            )),
            *rows as f64,
            "{stream}"
        );
    }
    assert_eq!(m(r#"streamhost_reader_errors_total{reason="apply"}"#), 0.0);
    assert_eq!(
        m(r#"streamhost_plugin_rows_total{plugin="stream-stats"}"#),
        expected.values().sum::<usize>() as f64,
        "the plugin metrics carry one streamhost_ prefix"
    );

    // The membership plugin: one notification per m.room.member event, in token order.
    let page = client
        .get_json(&format!(
            "/v1/notifications?topics=membership:{ROOM}&since=0&timeout_ms=1000"
        ))
        .await
        .unwrap();
    let changes: Vec<Value> = page["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| serde_json::from_str(n["payload"].as_str().unwrap()).unwrap())
        .collect();
    let summary: Vec<(String, String)> = changes
        .iter()
        .map(|c| {
            (
                c["user_id"].as_str().unwrap().to_owned(),
                c["membership"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(summary.len(), 5, "{page}");
    assert_eq!(
        summary[0],
        ("@alice:localhost".to_owned(), "join".to_owned())
    );
    assert!(
        changes
            .iter()
            .all(|c| c["room_id"] == ROOM && c["event_id"].as_str().unwrap().starts_with('$'))
    );

    // Nothing but that one REPLICATE came from the reader: no POSITION, no stream name.
    assert_eq!(synapse.heard_from_others().await, Vec::<String>::new());

    assert!(reader.terminate().await.success());
    // Exactly once, as objects: the recording sink refuses a repeated (stream, instance,
    // token, seq), and every row has Synapse's field names.
    let store = ReaderStore::open(&data.join("reader.sqlite"))
        .await
        .unwrap();
    let mut recorded = BTreeMap::new();
    for name in expected.keys() {
        let rows = store.recorded_rows(&stream(name)).await.unwrap();
        for (instance, _, row) in &rows {
            assert_eq!(instance.as_str(), "master");
            let value: Value = serde_json::from_str(row.as_str()).unwrap();
            assert!(value.is_object(), "{name}: {row}");
        }
        recorded.insert(name.clone(), rows.len());
    }
    assert_eq!(recorded, expected);
    let typing = store.recorded_rows(&stream("typing")).await.unwrap();
    assert_eq!(
        typing[0].2.as_str(),
        format!(r#"{{"room_id":"{ROOM}","user_ids":["@alice:localhost"]}}"#)
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_added_to_a_running_synapse_reader_reports_its_gap_and_follows_on() {
    let url = redis_url().await;
    let server_name = unique_server_name("synapse-late");
    let script = Script::from_capture();
    let events = script.rows_per_stream()["events"] as u64;
    let folder = PluginFolder::with(&["stream-stats"]);
    let dir = tempfile::tempdir().unwrap();
    let (_, config) = write_reader_toml(dir.path(), folder.path(), &server_name, &url, "");
    let mut synapse = FakeSynapse::connect(&url, &server_name).await;
    let (reader, client) = start_reader(&mut synapse, &config).await;
    synapse.publish(&script.announcements).await;
    synapse.publish(&script.rows).await;
    wait_until(WAIT, "stream-stats to count the events", || async {
        count(&client, "events").await == events
    })
    .await;

    // membership arrives late: the session's events are in Synapse's database only.
    folder.install("membership", "membership");
    wait_until(WAIT, "membership to report its gap", || async {
        let metrics = client
            .send(hyper::Method::GET, "/metrics", bytes::Bytes::new())
            .await
            .map(|(_, body)| String::from_utf8_lossy(&body).into_owned())
            .unwrap_or_default();
        metric(
            &metrics,
            r#"streamhost_plugin_gaps_total{plugin="membership",stream="events"}"#,
        ) == Some(1.0)
    })
    .await;
    // It follows on from there: the next membership change is notified.
    let last = script
        .rows
        .iter()
        .filter_map(|m| m.line.strip_prefix("RDATA events master "))
        .filter_map(|rest| rest.split(' ').next()?.parse::<i64>().ok())
        .max()
        .unwrap();
    synapse
        .publish_line(&format!(
            r#"RDATA events master {} ["ev",["$late","{ROOM}","m.room.member","@dave:localhost",null,null,"join",0,0]]"#,
            last + 1
        ))
        .await;
    let page = client
        .get_json(&format!(
            "/v1/notifications?topics=membership:{ROOM}&since=0&timeout_ms=20000"
        ))
        .await
        .unwrap();
    let notifications = page["notifications"].as_array().unwrap();
    assert_eq!(notifications.len(), 1, "{page}");
    let change: Value =
        serde_json::from_str(notifications[0]["payload"].as_str().unwrap()).unwrap();
    assert_eq!(change["user_id"], "@dave:localhost");
    assert_eq!(change["token"], last + 1);
    let plugins = client.get_json("/v1/plugins").await.unwrap();
    assert!(plugins.to_string().contains("membership"), "{plugins}");
    assert!(reader.terminate().await.success());
}

/// Synapse's first run of `typing`: the capture's announcements, then rows 1 to 4, all
/// counted by `stream-stats`.
async fn first_typing_run(synapse: &mut FakeSynapse, script: &Script, client: &ApiClient) {
    synapse.publish(&script.announcements).await;
    for token in 1..=4 {
        synapse
            .publish_line(&typing_row(token, "@alice:localhost"))
            .await;
    }
    wait_until(WAIT, "stream-stats to count 4 typing rows", || async {
        count(client, "typing").await == 4
    })
    .await;
}

/// `RDATA typing master <token>` with `user` typing in the capture's room.
fn typing_row(token: i64, user: &str) -> String {
    format!(r#"RDATA typing master {token} ["{ROOM}",["{user}"]]"#)
}

async fn metrics(client: &ApiClient) -> String {
    client
        .send(hyper::Method::GET, "/metrics", bytes::Bytes::new())
        .await
        .map(|(_, body)| String::from_utf8_lossy(&body).into_owned())
        .unwrap_or_default()
}

/// The plugin's cursor of `stream` (instance `master`) in `GET /v1/plugins`.
async fn plugin_cursor(client: &ApiClient, plugin: &str, stream: &str) -> Option<i64> {
    let plugins = client.get_json("/v1/plugins").await.ok()?;
    plugins.as_array()?.iter().find(|p| p["name"] == plugin)?["cursors"]
        .as_array()?
        .iter()
        .find(|c| c["stream"] == stream && c["instance"] == "master")?["token"]
        .as_i64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_synapse_restart_resets_typing_and_plugins_get_the_new_rows_once() {
    let url = redis_url().await;
    let server_name = unique_server_name("synapse-reset");
    let script = Script::from_capture();
    let folder = PluginFolder::with(&["stream-stats"]);
    let dir = tempfile::tempdir().unwrap();
    let (data, config) = write_reader_toml(dir.path(), folder.path(), &server_name, &url, "");
    let mut synapse = FakeSynapse::connect(&url, &server_name).await;
    let (reader, client) = start_reader(&mut synapse, &config).await;
    first_typing_run(&mut synapse, &script, &client).await;

    // Synapse's main process restarts: its typing serial starts again at 0, it announces
    // that, and its next rows are 1, 2, 3.
    synapse.publish_line("POSITION typing master 0 0").await;
    for token in 1..=3 {
        synapse
            .publish_line(&typing_row(token, "@bob:localhost"))
            .await;
    }
    wait_until(
        WAIT,
        "stream-stats to count the 3 new typing rows",
        || async { count(&client, "typing").await == 7 },
    )
    .await;
    wait_until(WAIT, "the plugin's typing cursor to reach 3", || async {
        plugin_cursor(&client, "stream-stats", "typing").await == Some(3)
    })
    .await;
    let status = client.get_json("/v1/status").await.unwrap();
    let typing = status["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stream"] == "typing" && s["instance"] == "master")
        .unwrap();
    assert_eq!(typing["resets"], 1, "{typing}");
    assert_eq!(
        typing["last_reset"],
        serde_json::json!({"from": 4, "to": 0})
    );
    assert_eq!(typing["position"], 3, "{typing}");
    assert_eq!((&typing["gaps"], &typing["lag"]), (&0.into(), &0.into()));
    let text = metrics(&client).await;
    let m = |name: &str| metric(&text, name).unwrap_or(0.0);
    assert_eq!(
        m(r#"streamhost_reader_stream_resets_total{stream="typing",instance="master"}"#),
        1.0,
        "{text}"
    );
    assert_eq!(
        m(r#"streamhost_plugin_stream_resets_total{plugin="stream-stats",stream="typing"}"#),
        1.0
    );
    assert_eq!(
        m(r#"streamhost_reader_rdata_dropped_total{stream="typing",reason="old_token"}"#),
        0.0
    );
    assert_eq!(
        m(r#"streamhost_reader_writer_behind_total{stream="typing"}"#),
        0.0
    );
    assert!(reader.terminate().await.success());
    // The reader published nothing but its REPLICATE (this also drains the fake's own echoes,
    // a REPLICATE of the capture among them, so the next message heard is the new reader's).
    assert_eq!(synapse.heard_from_others().await, Vec::<String>::new());

    // The reader restarts after the reset: nothing is delivered again, and the next row of
    // the new run is delivered once.
    let (reader, client) = start_reader(&mut synapse, &config).await;
    synapse.publish_line("POSITION typing master 3 3").await;
    synapse
        .publish_line(&typing_row(4, "@carol:localhost"))
        .await;
    wait_until(WAIT, "the plugin's typing cursor to reach 4", || async {
        plugin_cursor(&client, "stream-stats", "typing").await == Some(4)
    })
    .await;
    assert_eq!(
        count(&client, "typing").await,
        8,
        "4 + 3 + 1 rows, each once"
    );
    let text = metrics(&client).await;
    assert_eq!(
        metric(
            &text,
            r#"streamhost_reader_stream_resets_total{stream="typing",instance="master"}"#
        )
        .unwrap_or(0.0),
        0.0,
        "a POSITION of the same run is no reset"
    );
    assert!(reader.terminate().await.success());

    // The recording sink keeps the writer's current run, each row once.
    let store = ReaderStore::open(&data.join("reader.sqlite"))
        .await
        .unwrap();
    let rows: Vec<(i64, String)> = store
        .recorded_rows(&stream("typing"))
        .await
        .unwrap()
        .into_iter()
        .map(|(_, token, row)| (token.0, row.as_str().to_owned()))
        .collect();
    let row = |user: &str| format!(r#"{{"room_id":"{ROOM}","user_ids":["{user}"]}}"#);
    assert_eq!(
        rows,
        vec![
            (1, row("@bob:localhost")),
            (2, row("@bob:localhost")),
            (3, row("@bob:localhost")),
            (4, row("@carol:localhost")),
        ]
    );
    store.close().await;
}

/// A stand-in for Synapse's HTTP replication listener that serves `rows` of the `typing`
/// stream (token, user) from `get_repl_stream_updates`, one connection at a time; returns
/// its port and the query strings it was asked.
async fn serve_typing(rows: Vec<(i64, &'static str)>) -> (u16, Arc<Mutex<Vec<String>>>) {
    serve_typing_over(None, rows).await
}

/// [`serve_typing`], over HTTPS when given an acceptor.
async fn serve_typing_over(
    tls: Option<tokio_rustls::TlsAcceptor>,
    rows: Vec<(i64, &'static str)>,
) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let log = asked.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            match &tls {
                Some(acceptor) => {
                    if let Ok(socket) = acceptor.accept(socket).await {
                        answer_typing(socket, &rows, &log).await;
                    }
                }
                None => answer_typing(socket, &rows, &log).await,
            }
        }
    });
    (port, asked)
}

/// Reads one request from `socket` and answers it with the `rows` in its token range.
async fn answer_typing<S>(mut socket: S, rows: &[(i64, &'static str)], log: &Mutex<Vec<String>>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let request = String::from_utf8_lossy(&request).into_owned();
    let target = request.split(' ').nth(1).unwrap_or_default().to_owned();
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let token = |name: &str| -> i64 {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let (from, upto) = (token("from_token"), token("upto_token"));
    log.lock().unwrap().push(query.to_owned());
    let updates: Vec<Value> = rows
        .iter()
        .filter(|(t, _)| *t > from && *t <= upto)
        .map(|(t, user)| serde_json::json!([t, [ROOM, [user]]]))
        .collect();
    let body = if target.starts_with("/_synapse/replication/get_repl_stream_updates/typing/") {
        serde_json::json!({"updates": updates, "upto_token": upto, "limited": false}).to_string()
    } else {
        r#"{"errcode":"M_UNKNOWN","error":"Unknown stream"}"#.to_owned()
    };
    let answer = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = socket.write_all(answer.as_bytes()).await;
    let _ = socket.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_is_caught_up_over_https_when_instance_map_says_tls() {
    let url = redis_url().await;
    let server_name = unique_server_name("synapse-https");
    let dir = tempfile::tempdir().unwrap();
    // Synapse's replication listener behind TLS, with a certificate from a private CA that
    // the reader trusts through SSL_CERT_FILE (as an operator adds a CA to the system's).
    let ca = TestCa::new(dir.path(), "replication-ca");
    let acceptor = ca.tls_acceptor(dir.path(), &["localhost"]);
    let rows = vec![
        (1, "@alice:localhost"),
        (2, "@bob:localhost"),
        (3, "@carol:localhost"),
    ];
    let (port, asked) = serve_typing_over(Some(acceptor), rows).await;
    let folder = PluginFolder::with(&["stream-stats"]);
    let instance_map = format!(
        "[reader.synapse.instance_map.main]\nhost = \"localhost\"\nport = {port}\ntls = true\n"
    );
    let (_, config) =
        write_reader_toml(dir.path(), folder.path(), &server_name, &url, &instance_map);
    let mut synapse = FakeSynapse::connect(&url, &server_name).await;
    let (_reader, client) = start_reader_with_env(
        &mut synapse,
        &config,
        &[("SSL_CERT_FILE", ca.cert_file.as_path())],
    )
    .await;
    // The reader joins typing at 0, then learns Synapse is at 3: it fetches (0, 3] over HTTPS.
    synapse.publish_line("POSITION typing master 0 0").await;
    synapse.publish_line("POSITION typing master 3 3").await;
    wait_until(WAIT, "3 typing rows fetched over HTTPS", || async {
        count(&client, "typing").await == 3
    })
    .await;
    assert_eq!(
        *asked.lock().unwrap(),
        vec!["from_token=0&upto_token=3".to_owned()]
    );
    let status = client.get_json("/v1/status").await.unwrap();
    let typing = status["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stream"] == "typing")
        .unwrap();
    assert_eq!(typing["gaps"], 0, "{status}");
    assert_eq!(typing["position"], 3, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_missed_a_synapse_restart_gets_the_new_run_from_its_start() {
    let url = redis_url().await;
    let server_name = unique_server_name("synapse-reset-behind");
    let script = Script::from_capture();
    let with_plugin = PluginFolder::with(&["stream-stats"]);
    let without = PluginFolder::with(&[]);
    let (port, asked) = serve_typing(vec![(1, "@dan:localhost"), (2, "@erin:localhost")]).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("reader");
    let config = |plugins: &Path, name: &str| {
        let path = dir.path().join(name);
        let toml = reader_toml(&data, plugins, &server_name, &url)
            + &format!("[reader.synapse.instance_map.main]\nhost = \"127.0.0.1\"\nport = {port}\n");
        std::fs::write(&path, toml).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let (with_plugin, without) = (
        config(with_plugin.path(), "with.toml"),
        config(without.path(), "without.toml"),
    );
    let mut synapse = FakeSynapse::connect(&url, &server_name).await;

    // The plugin sees typing 1..4 of Synapse's first run.
    let (reader, client) = start_reader(&mut synapse, &with_plugin).await;
    first_typing_run(&mut synapse, &script, &client).await;
    assert!(reader.terminate().await.success());
    assert_eq!(synapse.heard_from_others().await, Vec::<String>::new());

    // Synapse restarts while the reader runs without the plugin: the reader follows the new
    // run (1, 2); the plugin's cursor stays at 4 of the first run.
    let (reader, client) = start_reader(&mut synapse, &without).await;
    synapse.publish_line("POSITION typing master 0 0").await;
    synapse.publish_line(&typing_row(1, "@dan:localhost")).await;
    synapse
        .publish_line(&typing_row(2, "@erin:localhost"))
        .await;
    wait_until(WAIT, "the reader to follow the new run to 2", || async {
        let status = client.get_json("/v1/status").await.unwrap_or_default();
        status["streams"].as_array().is_some_and(|streams| {
            streams
                .iter()
                .any(|s| s["stream"] == "typing" && s["position"] == 2 && s["resets"] == 1)
        })
    })
    .await;
    assert!(reader.terminate().await.success());
    assert_eq!(synapse.heard_from_others().await, Vec::<String>::new());

    // The plugin is back: its cursor is of an earlier run, so it starts the new run from 0
    // and fetches (0, 2] from Synapse's HTTP endpoint, each row once.
    let reader = Process::spawn(
        env!("CARGO_BIN_EXE_streamhost-under-test"),
        &["reader", "--config", &with_plugin],
    )
    .await;
    let client = ApiClient::new(format!("http://{}", reader.addr("http")));
    wait_until(WAIT, "the plugin's typing cursor to reach 2", || async {
        plugin_cursor(&client, "stream-stats", "typing").await == Some(2)
    })
    .await;
    assert_eq!(count(&client, "typing").await, 6, "4 + the new run's 2");
    assert_eq!(
        *asked.lock().unwrap(),
        vec!["from_token=0&upto_token=2".to_owned()]
    );
    let text = metrics(&client).await;
    assert_eq!(
        metric(
            &text,
            r#"streamhost_plugin_stream_resets_total{plugin="stream-stats",stream="typing"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            r#"streamhost_plugin_gaps_total{plugin="stream-stats",stream="typing"}"#
        )
        .unwrap_or(0.0),
        0.0
    );
    assert!(reader.terminate().await.success());
}
