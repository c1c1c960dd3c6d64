//! Multi-machine deployment (`docs/deployment.md`) on one machine: the writer and three
//! readers are processes of the real binary, each started from its own config file shaped
//! like the guide's, with the writer's log on the real PostgreSQL (a schema of its own) and
//! replication over the real Redis (a channel of its own). Every reader must end with exactly
//! the written rows, read back from its own `reader.sqlite` (the recording sink) after a
//! clean SIGTERM exit. A PostgreSQL restart, played by a proxy the test cuts (the machine's
//! server is shared), costs 503s and nothing else. And the guide's own files (`deploy/`)
//! parse, match what the guide shows, and run with the example plugins.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use hyper::{Method, StatusCode};
use serde_json::json;
use streamhost_integration_tests::plugins::PluginFolder;
use streamhost_integration_tests::postgres::{self, Schema};
use streamhost_integration_tests::process::Process;
use streamhost_integration_tests::proxy::TcpProxy;
use streamhost_integration_tests::redis::{redis_addr, redis_url, unique_server_name};
use streamhost_integration_tests::{metric, rows_body, stream, wait_until};
use streamhost_log::{Log, ORIGIN};
use streamhost_proto::{RowJson, Token};
use streamhost_server::client::ApiClient;
use streamhost_server::config::ConfigFile;
use streamhost_server::reader::ReaderStore;

use crate::replication::Written;

const WRITE_TOKEN: &str = "test-write-token";
const REPLICATION_SECRET: &str = "test-replication-secret";

/// A TOML string literal.
fn quote(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// Writes `text` to `dir/name`, checks that it parses as a config file, returns the path.
fn config_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    ConfigFile::load(&path).unwrap_or_else(|e| panic!("{name}: {e:#}\n{text}"));
    path
}

/// The writer's file: log on PostgreSQL at `log_url`, Redis at `redis`, tokens required.
fn writer_toml(
    dir: &Path,
    streams: &[&str],
    server_name: &str,
    log_url: &str,
    redis: &str,
) -> PathBuf {
    let streams: Vec<String> = streams.iter().map(|s| quote(s)).collect();
    let text = format!(
        "[writer]\n\
         http = \"127.0.0.1:0\"\n\
         replication = \"127.0.0.1:0\"\n\
         data = {data}\n\
         streams = [{streams}]\n\
         server_name = {server_name}\n\
         write_token = {WRITE_TOKEN:?}\n\
         replication_secret = {REPLICATION_SECRET:?}\n\
         \n\
         [writer.database]\n\
         url = {log_url}\n\
         \n\
         [writer.redis]\n\
         url = {redis}\n\
         ping_interval_ms = 2000\n\
         reconnect_max_ms = 500\n",
        data = quote(dir.join("writer").to_str().unwrap()),
        streams = streams.join(", "),
        server_name = quote(server_name),
        log_url = quote(log_url),
        redis = quote(redis),
    );
    config_file(dir, "writer.toml", &text)
}

/// How a reader catches up.
enum Catchup<'a> {
    /// Over the writer's HTTP endpoint.
    Writer,
    /// Straight from the log database at this URL.
    Database(&'a str),
}

/// A recording reader's file: Redis at `redis`, catch-up as `catchup`.
fn reader_toml(
    dir: &Path,
    name: &str,
    server_name: &str,
    writer_http: &str,
    redis: &str,
    catchup: Catchup<'_>,
) -> PathBuf {
    let log_database = match catchup {
        Catchup::Writer => String::new(),
        Catchup::Database(url) => format!("log_database_url = {}\n", quote(url)),
    };
    let text = format!(
        "[reader]\n\
         writer_http = {writer_http}\n\
         http = \"127.0.0.1:0\"\n\
         data = {data}\n\
         name = {name}\n\
         server_name = {server_name}\n\
         replication_secret = {REPLICATION_SECRET:?}\n\
         record_rows = true\n\
         reconnect_max_ms = 500\n\
         {log_database}\
         \n\
         [reader.redis]\n\
         url = {redis}\n\
         ping_interval_ms = 2000\n\
         reconnect_max_ms = 500\n",
        writer_http = quote(writer_http),
        data = quote(dir.join(name).to_str().unwrap()),
        name = quote(name),
        server_name = quote(server_name),
        redis = quote(redis),
    );
    config_file(dir, &format!("{name}.toml"), &text)
}

/// `streamhost <role> --config <file>`, its log on stderr or in `log`.
async fn start(role: &str, config: &Path, log: Option<&Path>) -> Process {
    let args = [role, "--config", config.to_str().unwrap()];
    let program = env!("CARGO_BIN_EXE_streamhost-under-test");
    match log {
        Some(log) => Process::spawn_logging(program, &args, log).await,
        None => Process::spawn(program, &args).await,
    }
}

fn http_client(process: &Process) -> ApiClient {
    ApiClient::new(format!("http://{}", process.addr("http")))
}

async fn metrics(client: &ApiClient) -> String {
    let (status, body) = client
        .send(Method::GET, "/metrics", bytes::Bytes::new())
        .await
        .expect("GET /metrics");
    assert_eq!(status, StatusCode::OK);
    String::from_utf8(body.to_vec()).expect("UTF-8 metrics")
}

async fn wait_subscribed(reader: &ApiClient) {
    wait_until(Duration::from_secs(20), "the reader subscribed", || async {
        metric(&metrics(reader).await, "streamhost_reader_redis_connected") == Some(1.0)
    })
    .await;
}

/// Waits until the reader's `/v1/status` shows `(stream, master)` at `token` for every
/// stream of `last`, with no lag.
async fn wait_applied(reader: &ApiClient, last: &BTreeMap<String, Token>, timeout: Duration) {
    wait_until(timeout, "the reader to apply every row", || async {
        let Ok(status) = reader.get_json("/v1/status").await else {
            return false;
        };
        last.iter().all(|(name, token)| {
            status["streams"].as_array().is_some_and(|streams| {
                streams.iter().any(|s| {
                    s["stream"] == name.as_str()
                        && s["instance"] == "master"
                        && s["position"].as_i64() == Some(token.0)
                        && s["lag"].as_i64() == Some(0)
                })
            })
        })
    })
    .await;
}

/// Stops a reader with SIGTERM and returns what its recording sink kept, per stream.
async fn recorded(reader: Process, data: &Path, streams: &[&str]) -> Written {
    assert!(reader.terminate().await.success(), "clean exit on SIGTERM");
    let store = ReaderStore::open(&data.join("reader.sqlite"))
        .await
        .unwrap();
    let mut all = Written::new();
    for name in streams {
        let rows = store.recorded_rows(&stream(name)).await.unwrap();
        for (instance, _, _) in &rows {
            assert_eq!(instance.as_str(), "master");
        }
        all.insert(
            name.to_string(),
            rows.into_iter().map(|(_, t, r)| (t, r)).collect(),
        );
    }
    all
}

/// Every row of `streams` in the log, read straight from PostgreSQL.
async fn log_rows(url: &str, streams: &[&str]) -> Written {
    let log = Log::open_read_only(url).await.unwrap();
    let mut all = Written::new();
    for name in streams {
        let rows = log
            .read_range(&stream(name), ORIGIN, Token(i64::MAX), 10_000_000)
            .await
            .unwrap();
        assert!(!rows.limited);
        all.insert(name.to_string(), rows.rows);
    }
    log.close().await;
    all
}

fn last_tokens(written: &Written) -> BTreeMap<String, Token> {
    written
        .iter()
        .map(|(name, rows)| (name.clone(), rows.last().map_or(ORIGIN, |(t, _)| *t)))
        .collect()
}

/// Appends `per_stream` rows to each stream, one task per stream, `request_rows` per
/// request; every tenth request shares one token (a `batch` run on the wire).
async fn append_rows(
    client: &ApiClient,
    streams: &[&str],
    per_stream: usize,
    request_rows: usize,
    round: usize,
) -> Written {
    let mut tasks = Vec::new();
    for name in streams {
        let (client, name) = (client.clone(), name.to_string());
        tasks.push(tokio::spawn(async move {
            let mut written = Vec::new();
            for (r, start) in (0..per_stream).step_by(request_rows).enumerate() {
                let rows: Vec<_> = (start..(start + request_rows).min(per_stream))
                    .map(|i| json!([name, round, i, "é"]))
                    .collect();
                let tokens = client
                    .append(&name, rows_body(&rows), r % 10 == 9)
                    .await
                    .expect("append");
                for (token, row) in tokens.into_iter().zip(&rows) {
                    written.push((token, RowJson::parse(row.to_string().as_bytes()).unwrap()));
                }
            }
            (name, written)
        }));
    }
    let mut all = Written::new();
    for task in tasks {
        let (name, rows) = task.await.unwrap();
        all.insert(name, rows);
    }
    all
}

fn extend(written: &mut Written, more: Written) {
    for (name, rows) in more {
        written.entry(name).or_default().extend(rows);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_and_three_reader_processes_on_postgres_and_redis_end_with_exactly_the_written_rows()
 {
    const STREAMS: [&str; 4] = ["events", "receipts", "typing", "presence"];
    let redis = redis_url().await;
    let schema = Schema::create().await;
    let server_name = unique_server_name("deploy");
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();

    let writer_file = writer_toml(dir, &STREAMS, &server_name, &schema.url(), &redis);
    let writer = start("writer", &writer_file, None).await;
    let writer_http = format!("http://{}", writer.addr("http"));
    let client = ApiClient::new(writer_http.clone()).with_bearer(WRITE_TOKEN);

    // Two readers from the start: one catches up over the writer's endpoint, one straight
    // from PostgreSQL; the third joins halfway and starts with a catch-up.
    let files = [
        reader_toml(
            dir,
            "reader-1",
            &server_name,
            &writer_http,
            &redis,
            Catchup::Writer,
        ),
        reader_toml(
            dir,
            "reader-2",
            &server_name,
            &writer_http,
            &redis,
            Catchup::Database(&schema.url()),
        ),
        reader_toml(
            dir,
            "reader-3",
            &server_name,
            &writer_http,
            &redis,
            Catchup::Writer,
        ),
    ];
    let mut readers = Vec::new();
    for file in &files[..2] {
        let reader = start("reader", file, None).await;
        wait_subscribed(&http_client(&reader)).await;
        readers.push(reader);
    }

    // The write token is required.
    let (status, _) = ApiClient::new(writer_http.clone())
        .send(
            Method::POST,
            "/v1/streams/events/rows",
            rows_body(&[json!(1)]),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let mut written = append_rows(&client, &STREAMS, 5_000, 100, 0).await;
    let (more, late) = tokio::join!(append_rows(&client, &STREAMS, 5_000, 100, 1), async {
        start("reader", &files[2], None).await
    });
    extend(&mut written, more);
    readers.push(late);
    assert_eq!(written.values().map(Vec::len).sum::<usize>(), 40_000);
    assert_eq!(
        log_rows(&schema.url(), &STREAMS).await,
        written,
        "the log is what was acknowledged"
    );

    let last = last_tokens(&written);
    for (reader, name) in readers
        .into_iter()
        .zip(["reader-1", "reader-2", "reader-3"])
    {
        let api = http_client(&reader);
        wait_applied(&api, &last, Duration::from_secs(120)).await;
        let status = api.get_json("/v1/status").await.unwrap();
        assert_eq!(
            status["connection"]["state"], "connected",
            "{name}: {status}"
        );
        let got = recorded(reader, &dir.join(name), &STREAMS).await;
        for (stream, rows) in &written {
            assert_eq!(
                got[stream].len(),
                rows.len(),
                "{name}: row count of {stream}"
            );
            assert!(
                got[stream] == *rows,
                "{name}: the rows of {stream}, once each, in order"
            );
        }
    }
    assert!(
        writer.terminate().await.success(),
        "the writer exits cleanly"
    );
}

/// How an append ended.
enum Outcome {
    /// 200: these tokens.
    Acknowledged(Vec<Token>),
    /// 503, nothing committed.
    Failed,
    /// 503, the connection was lost at COMMIT: maybe committed.
    Unknown,
}

/// Appends small requests of unique rows to `streams` in turn until `stop`, keeping every
/// request and how it ended.
fn keep_appending(
    client: ApiClient,
    c: usize,
    streams: &'static [&'static str],
    stop: Arc<AtomicBool>,
    acknowledged: Arc<AtomicUsize>,
    unavailable: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<Vec<(&'static str, Vec<RowJson>, Outcome)>> {
    tokio::spawn(async move {
        let mut requests = Vec::new();
        let mut i = 0usize;
        while !stop.load(Ordering::SeqCst) {
            let name = streams[i % streams.len()];
            let rows: Vec<_> = (0..1 + i % 20).map(|k| json!(["pg", c, i, k])).collect();
            i += 1;
            let (status, body) = client
                .send(
                    Method::POST,
                    &format!("/v1/streams/{name}/rows"),
                    rows_body(&rows),
                )
                .await
                .expect("the writer answers, database or not");
            let answer: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
            let outcome = match status {
                StatusCode::OK => {
                    acknowledged.fetch_add(rows.len(), Ordering::SeqCst);
                    Outcome::Acknowledged(
                        answer["tokens"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|t| Token(t.as_i64().unwrap()))
                            .collect(),
                    )
                }
                StatusCode::SERVICE_UNAVAILABLE => {
                    unavailable.fetch_add(1, Ordering::SeqCst);
                    assert_eq!(answer["errcode"], "M_UNAVAILABLE", "{answer}");
                    assert_eq!(answer["retry_after_ms"], 1_000, "{answer}");
                    let message = answer["error"].as_str().unwrap();
                    if message.contains("may have been committed") {
                        Outcome::Unknown
                    } else {
                        assert!(message.contains("nothing of this request"), "{answer}");
                        Outcome::Failed
                    }
                }
                other => panic!("append answered {other}: {answer}"),
            };
            let rows = rows
                .iter()
                .map(|r| RowJson::parse(r.to_string().as_bytes()).unwrap())
                .collect();
            requests.push((name, rows, outcome));
        }
        requests
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_costs_503s_and_no_row_is_lost_or_repeated() {
    const STREAMS: &[&str] = &["events", "receipts"];
    const OUTAGE: Duration = Duration::from_secs(3);
    let redis = redis_url().await;
    let schema = Schema::create().await;
    let server_name = unique_server_name("pg-restart");
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    // The writer reaches PostgreSQL through `database`, the proxy the test cuts. reader-db
    // catches up from PostgreSQL through it too, and follows Redis through `network`.
    let database = TcpProxy::start(postgres::server_addr()).await;
    let network = TcpProxy::start(redis_addr(&redis)).await;
    let through_proxy = schema.url_through(database.addr());

    let writer_file = writer_toml(dir, STREAMS, &server_name, &through_proxy, &redis);
    let writer_log = dir.join("writer.log");
    let writer = start("writer", &writer_file, Some(&writer_log)).await;
    let writer_http = format!("http://{}", writer.addr("http"));
    let writer_api = ApiClient::new(writer_http.clone());
    let reader_http = start(
        "reader",
        &reader_toml(
            dir,
            "reader-http",
            &server_name,
            &writer_http,
            &redis,
            Catchup::Writer,
        ),
        None,
    )
    .await;
    let reader_db = start(
        "reader",
        &reader_toml(
            dir,
            "reader-db",
            &server_name,
            &writer_http,
            &format!("redis://{}", network.addr()),
            Catchup::Database(&through_proxy),
        ),
        None,
    )
    .await;
    for reader in [&reader_http, &reader_db] {
        wait_subscribed(&http_client(reader)).await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let unavailable = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..3)
        .map(|c| {
            keep_appending(
                ApiClient::new(writer_http.clone()).with_bearer(WRITE_TOKEN),
                c,
                STREAMS,
                stop.clone(),
                acknowledged.clone(),
                unavailable.clone(),
            )
        })
        .collect();
    let acked_at_least = |n: usize| {
        let acknowledged = acknowledged.clone();
        async move {
            wait_until(
                Duration::from_secs(60),
                &format!("{n} rows acknowledged"),
                || async { acknowledged.load(Ordering::SeqCst) >= n },
            )
            .await
        }
    };
    acked_at_least(2_000).await;

    // PostgreSQL "restarts": every connection drops and new ones are refused. reader-db loses
    // Redis as well, so it must catch up from the restarted database afterwards.
    network.cut();
    database.cut();
    let cut_at = tokio::time::Instant::now();
    wait_until(Duration::from_secs(30), "appends answered 503", || async {
        unavailable.load(Ordering::SeqCst) >= 3
    })
    .await;
    wait_until(Duration::from_secs(10), "log_database_up 0", || async {
        metric(&metrics(&writer_api).await, "streamhost_log_database_up") == Some(0.0)
    })
    .await;
    // A restart takes a while: the database stays away for at least OUTAGE, however fast the
    // 503s come.
    tokio::time::sleep_until(cut_at + OUTAGE).await;
    database.restore();
    let after = acknowledged.load(Ordering::SeqCst);
    acked_at_least(after + 2_000).await;
    network.restore();
    acked_at_least(acknowledged.load(Ordering::SeqCst) + 1_000).await;
    stop.store(true, Ordering::SeqCst);
    let mut requests = Vec::new();
    for client in clients {
        requests.extend(client.await.unwrap());
    }

    // The log: tokens without a gap, no row twice, every acknowledged row at its token, and
    // nothing of a request answered "nothing committed".
    let log = log_rows(&schema.url(), STREAMS).await;
    let mut unknown_committed = 0;
    for name in STREAMS {
        let rows = &log[*name];
        let tokens: Vec<i64> = rows.iter().map(|(t, _)| t.0).collect();
        assert_eq!(
            tokens,
            (2..2 + rows.len() as i64).collect::<Vec<_>>(),
            "{name}: one token per row, no gap"
        );
        let texts: std::collections::BTreeSet<&str> =
            rows.iter().map(|(_, r)| r.as_str()).collect();
        assert_eq!(texts.len(), rows.len(), "{name}: no row twice");
        let at: BTreeMap<&str, Token> = rows.iter().map(|(t, r)| (r.as_str(), *t)).collect();
        for (stream_name, sent, outcome) in requests.iter().filter(|(s, _, _)| s == name) {
            let found: Vec<Option<&Token>> = sent.iter().map(|r| at.get(r.as_str())).collect();
            match outcome {
                Outcome::Acknowledged(tokens) => {
                    let expected: Vec<Option<&Token>> = tokens.iter().map(Some).collect();
                    assert_eq!(
                        found, expected,
                        "{stream_name}: acknowledged rows at their tokens"
                    );
                }
                Outcome::Failed => assert!(
                    found.iter().all(Option::is_none),
                    "{stream_name}: a request answered 'nothing committed' is not in the log"
                ),
                Outcome::Unknown => {
                    assert!(
                        found.iter().all(Option::is_some) || found.iter().all(Option::is_none),
                        "{stream_name}: a request is in the log whole or not at all"
                    );
                    unknown_committed += usize::from(found[0].is_some());
                }
            }
        }
        let sent: usize = requests
            .iter()
            .filter(|(s, _, _)| s == name)
            .map(|(_, r, _)| r.len())
            .sum();
        assert!(
            rows.len() <= sent,
            "{name}: nothing in the log that was not sent"
        );
    }
    println!(
        "requests {}, answered 503: {}, of which maybe-committed and in the log: {unknown_committed}",
        requests.len(),
        unavailable.load(Ordering::SeqCst)
    );

    // Both readers converge to exactly the log.
    let last = last_tokens(&log);
    for (reader, name) in [(reader_http, "reader-http"), (reader_db, "reader-db")] {
        let api = http_client(&reader);
        wait_applied(&api, &last, Duration::from_secs(60)).await;
        if name == "reader-db" {
            let m = metrics(&api).await;
            assert!(
                m.lines()
                    .any(|l| l.starts_with("streamhost_reader_catchup_rows_total{")
                        && !l.ends_with(" 0")),
                "reader-db caught up from PostgreSQL after the outage:\n{m}"
            );
        }
        let got = recorded(reader, &dir.join(name), STREAMS).await;
        assert!(got == log, "{name} has exactly the log");
    }

    // Metrics and the log say what happened.
    let m = metrics(&writer_api).await;
    assert!(
        metric(&m, "streamhost_append_failures_total") >= Some(1.0),
        "{m}"
    );
    assert_eq!(metric(&m, "streamhost_log_database_up"), Some(1.0), "{m}");
    assert!(
        writer.terminate().await.success(),
        "the writer exits cleanly"
    );
    let text = std::fs::read_to_string(&writer_log).unwrap();
    let failures_logged = text.matches("append failed").count();
    assert!(
        (1..=3).contains(&failures_logged),
        "the outage is logged when it starts and every 5 s, not once per failed commit \
         ({failures_logged} lines, {} requests answered 503):\n{text}",
        unavailable.load(Ordering::SeqCst)
    );
    assert!(
        text.contains("log database is back"),
        "the recovery is logged:\n{text}"
    );
}

/// A file of the repository, by its path from the root.
fn repo_file(path: &str) -> (PathBuf, String) {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    let text = std::fs::read_to_string(&full)
        .unwrap_or_else(|e| panic!("reading {}: {e}", full.display()));
    (full, text)
}

/// The file without its leading comment block: what the guide shows of it.
fn without_header(text: &str) -> &str {
    let mut rest = text;
    while rest.starts_with('#') || rest.starts_with('\n') {
        rest = rest.split_once('\n').map_or("", |(_, r)| r);
    }
    rest
}

/// Parses and validates `text`, then runs the secure-defaults check on the addresses it
/// binds; `from_environment` first sets the tokens the file leaves to environment variables
/// (compose.yaml's), as the command line would.
fn parses_and_validates(what: &str, text: &str, from_environment: bool) {
    let mut config = ConfigFile::parse(text).unwrap_or_else(|e| panic!("{what}: {e:#}"));
    if from_environment {
        let (writer, reader) = (&mut config.writer, &mut config.reader);
        writer.write_token = Some("STREAMHOST_WRITE_TOKEN".into());
        writer.replication_secret = Some("STREAMHOST_REPLICATION_SECRET".into());
        writer.read_token = Some("STREAMHOST_READ_TOKEN".into());
        reader.read_token = Some("STREAMHOST_READ_TOKEN".into());
        reader.plugins.admin_token = Some("STREAMHOST_ADMIN_TOKEN".into());
    }
    let (writer, reader) = (&config.writer, &config.reader);
    writer
        .validate()
        .and_then(|()| writer.check_exposure(writer.http.address, writer.replication.address))
        .unwrap_or_else(|e| panic!("{what} [writer]: {e:#}"));
    reader
        .validate()
        .and_then(|()| reader.check_exposure(reader.http.address))
        .unwrap_or_else(|e| panic!("{what} [reader]: {e:#}"));
}

#[test]
fn the_guides_config_files_parse_and_appear_in_it_as_they_are() {
    let (_, guide) = repo_file("docs/deployment.md");
    let blocks: Vec<&str> = guide
        .split("```toml\n")
        .skip(1)
        .map(|rest| rest.split_once("```").expect("a closed block").0)
        .collect();
    // Every block parses; the shipped files (below) also validate. Other blocks (the TLS
    // example) name files of the hosts, which validation would open.
    for (i, block) in blocks.iter().enumerate() {
        ConfigFile::parse(block)
            .unwrap_or_else(|e| panic!("docs/deployment.md TOML block {i}: {e:#}"));
    }
    // The container files leave their tokens to compose.yaml's environment.
    let (_, compose) = repo_file("deploy/container/compose.yaml");
    for variable in [
        "STREAMHOST_WRITE_TOKEN",
        "STREAMHOST_REPLICATION_SECRET",
        "STREAMHOST_READ_TOKEN",
        "STREAMHOST_ADMIN_TOKEN",
    ] {
        assert!(compose.contains(variable), "compose.yaml sets {variable}");
    }
    for path in [
        "deploy/config/writer.toml",
        "deploy/config/reader-1.toml",
        "deploy/container/writer.toml",
        "deploy/container/reader.toml",
    ] {
        let (_, text) = repo_file(path);
        parses_and_validates(path, &text, path.starts_with("deploy/container/"));
        if path.starts_with("deploy/config/") {
            assert!(
                blocks.contains(&without_header(&text)),
                "docs/deployment.md shows {path} as it is"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guides_config_files_run_against_postgres_redis_and_the_example_plugins() {
    let redis = redis_url().await;
    let schema = Schema::create().await;
    let server_name = unique_server_name("guide");
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let plugins = PluginFolder::with(&["room-timeline", "notifier", "stream-stats"]);
    let program = env!("CARGO_BIN_EXE_streamhost-under-test");

    // The files as shipped; flags replace only what names hosts, folders and the channel.
    let (writer_file, _) = repo_file("deploy/config/writer.toml");
    let writer_data = dir.join("writer");
    let writer = Process::spawn(
        program,
        &[
            "writer",
            "--config",
            writer_file.to_str().unwrap(),
            "--http",
            "127.0.0.1:0",
            "--replication",
            "127.0.0.1:0",
            "--data",
            writer_data.to_str().unwrap(),
            "--database-url",
            &schema.url(),
            "--redis-url",
            &redis,
            "--server-name",
            &server_name,
        ],
    )
    .await;
    let writer_http = format!("http://{}", writer.addr("http"));
    let mut readers = Vec::new();
    for (file, name) in [
        ("deploy/config/reader-1.toml", "reader-1"),
        ("deploy/container/reader.toml", "reader-2"),
    ] {
        let (file, _) = repo_file(file);
        let data = dir.join(name);
        // Secrets are never flags: the admin token comes from the environment.
        let reader = Process::spawn_with_env(
            program,
            &[
                "reader",
                "--config",
                file.to_str().unwrap(),
                "--name",
                name,
                "--http",
                "127.0.0.1:0",
                "--data",
                data.to_str().unwrap(),
                "--writer-http",
                &writer_http,
                "--log-database-url",
                &schema.url(),
                "--redis-url",
                &redis,
                "--server-name",
                &server_name,
                "--plugins",
                plugins.path().to_str().unwrap(),
            ],
            &[("STREAMHOST_ADMIN_TOKEN", Path::new("CHANGE-ME-admin"))],
        )
        .await;
        // reader-1.toml sets a read token; the admin token passes the read endpoints too.
        wait_subscribed(&http_client(&reader).with_bearer("CHANGE-ME-admin")).await;
        readers.push(reader);
    }

    // The file's write token is the one required.
    let messages: Vec<_> = (0..20)
        .map(|i| json!({"room": "!a:x", "sender": "@a:x", "body": format!("hi {i}")}))
        .collect();
    let client = ApiClient::new(writer_http).with_bearer("CHANGE-ME-write");
    let tokens = client
        .append("messages", rows_body(&messages), false)
        .await
        .expect("append with the file's write token");
    let last = tokens.last().unwrap();
    for (reader, configured_token) in readers.into_iter().zip([true, false]) {
        let api = http_client(&reader);
        let admin = api.clone().with_bearer("CHANGE-ME-admin");
        // reader-1.toml configures an API token for the application; the container's reader
        // takes only tokens issued through its admin API.
        let token = if configured_token {
            "CHANGE-ME-app-token".to_owned()
        } else {
            let body = json!({"subject": "app", "queries": ["room-timeline/*"]}).to_string();
            let (status, issued) = admin
                .send(Method::POST, "/v1/admin/tokens", bytes::Bytes::from(body))
                .await
                .unwrap();
            assert_eq!(status, StatusCode::CREATED, "{issued:?}");
            let issued: serde_json::Value = serde_json::from_slice(&issued).unwrap();
            issued["token"].as_str().unwrap().to_owned()
        };
        let timeline = api
            .clone()
            .with_bearer(token)
            .get_json(&format!(
                "/v1/query/room-timeline/timeline?room=!a:x&min_token=messages:{last}"
            ))
            .await
            .unwrap();
        assert_eq!(timeline, json!(messages), "the plugin saw every message");
        let loaded = admin.get_json("/v1/admin/plugins").await.unwrap();
        let states: Vec<&str> = loaded
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["state"].as_str().unwrap())
            .collect();
        assert_eq!(states, ["running"; 3], "{loaded}");
        assert!(reader.terminate().await.success());
    }
    assert!(writer.terminate().await.success());
}
