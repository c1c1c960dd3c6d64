//! The reader against scripted writers: a TCP server that plays lines (including a real
//! Synapse capture) and a catch-up endpoint answering from a table, over real sockets on
//! port 0.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::response::IntoResponse;
use hyper::StatusCode;
use streamhost_proto::{RowJson, StreamName, Token};
use streamhost_server::config::{ListenerConfig, ReaderConfig};
use streamhost_server::http::{ApiError, Params, json};
use streamhost_server::metrics::Registry;
use streamhost_server::net::accept::{Acceptor, ConnectionMetrics};
use streamhost_server::reader::{
    Batch, BatchSink, BoxFuture, ConnectionState, Reader, RecordingSink,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);

async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn stream(s: &str) -> StreamName {
    StreamName::new(s).unwrap()
}

/// A replication server whose connections the test drives line by line.
struct ScriptedWriter {
    addr: SocketAddr,
    connections: mpsc::UnboundedReceiver<Conn>,
}

struct Conn {
    lines: Lines<BufReader<OwnedReadHalf>>,
    write: OwnedWriteHalf,
}

impl ScriptedWriter {
    async fn bind() -> ScriptedWriter {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, connections) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (read, write) = socket.into_split();
                if tx
                    .send(Conn {
                        lines: BufReader::new(read).lines(),
                        write,
                    })
                    .is_err()
                {
                    return;
                }
            }
        });
        ScriptedWriter { addr, connections }
    }

    /// The next connection, after checking the reader's opening lines.
    async fn accept(&mut self, name: &str) -> Conn {
        let mut conn = tokio::time::timeout(WAIT, self.connections.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(conn.line().await.unwrap(), format!("NAME {name}"));
        assert!(conn.line().await.unwrap().starts_with("PING "));
        assert_eq!(conn.line().await.unwrap(), "REPLICATE ");
        conn
    }
}

impl Conn {
    /// The next line from the reader, `None` once it closed.
    async fn line(&mut self) -> Option<String> {
        tokio::time::timeout(WAIT, self.lines.next_line())
            .await
            .unwrap()
            .unwrap()
    }

    async fn send(&mut self, lines: &[&str]) {
        let mut text = lines.join("\n");
        text.push('\n');
        self.write.write_all(text.as_bytes()).await.unwrap();
    }
}

/// Per stream, the writer's rows as (token, row JSON).
type CatchupTable = HashMap<String, Vec<(i64, String)>>;

/// A catch-up endpoint serving rows from a table, `page` rows at most per answer (never
/// cutting a token), recording each request as (stream, from, upto).
#[derive(Clone, Default)]
struct ScriptedCatchup {
    rows: Arc<Mutex<CatchupTable>>,
    requests: Arc<Mutex<Vec<(String, i64, i64)>>>,
    page: usize,
}

impl ScriptedCatchup {
    async fn serve(page: usize, shutdown: CancellationToken) -> (ScriptedCatchup, String) {
        let catchup = ScriptedCatchup {
            page,
            ..ScriptedCatchup::default()
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let url = format!("http://{addr}");
        let served = catchup.clone();
        let router = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let catchup = served.clone();
            async move { catchup.answer(request) }
        });
        let acceptor = Acceptor::new(
            listener,
            "catchup",
            &ListenerConfig::on(addr),
            &ConnectionMetrics::register(&Registry::new()),
        );
        tokio::spawn(streamhost_server::http::serve(
            acceptor, None, router, shutdown,
        ));
        (catchup, url)
    }

    fn set(&self, stream: &str, rows: &[(i64, &str)]) {
        let rows = rows.iter().map(|(t, r)| (*t, r.to_string())).collect();
        self.rows.lock().unwrap().insert(stream.to_owned(), rows);
    }

    fn answer(&self, request: axum::extract::Request) -> streamhost_server::http::Response {
        let path = request.uri().path().to_owned();
        let Some(rest) = path.strip_prefix("/_synapse/replication/get_repl_stream_updates/") else {
            return ApiError::not_found("no").into_response();
        };
        let (name, txn) = rest.split_once('/').unwrap();
        assert_eq!(txn.len(), 10, "a 10-character transaction id");
        let params = Params::from_uri(request.uri()).unwrap();
        let from: i64 = params.get("from_token").unwrap().parse().unwrap();
        let upto: i64 = params.get("upto_token").unwrap().parse().unwrap();
        self.requests
            .lock()
            .unwrap()
            .push((name.to_owned(), from, upto));
        let table = self.rows.lock().unwrap();
        let rows = table.get(name).cloned().unwrap_or_default();
        let mut updates: Vec<(i64, &str)> = Vec::new();
        let mut limited = false;
        for (token, row) in &rows {
            if *token <= from || *token > upto {
                continue;
            }
            if updates.len() >= self.page && updates.last().is_some_and(|(t, _)| t != token) {
                limited = true;
                break;
            }
            updates.push((*token, row));
        }
        let upto = if limited {
            updates.last().unwrap().0
        } else {
            upto
        };
        let updates: Vec<serde_json::Value> = updates
            .iter()
            .map(|(t, r)| {
                serde_json::json!([t, serde_json::from_str::<serde_json::Value>(r).unwrap()])
            })
            .collect();
        json(
            StatusCode::OK,
            &serde_json::json!({"updates": updates, "upto_token": upto, "limited": limited}),
        )
    }

    fn requests(&self) -> Vec<(String, i64, i64)> {
        self.requests.lock().unwrap().clone()
    }
}

/// A reader of a scripted writer, with its own data folder.
struct TestReader {
    reader: Option<Reader>,
    shutdown: CancellationToken,
    config: ReaderConfig,
}

impl TestReader {
    fn config(writer: &ScriptedWriter, catchup_url: &str, data: &std::path::Path) -> ReaderConfig {
        ReaderConfig {
            writer: writer.addr.to_string(),
            writer_http: catchup_url.to_owned(),
            http: ListenerConfig::on(SocketAddr::from(([127, 0, 0, 1], 0))),
            data: data.to_owned(),
            name: "test-reader".into(),
            record_rows: true,
            reconnect_max_ms: 200,
            ..ReaderConfig::default()
        }
    }

    async fn start(config: ReaderConfig, sink: Option<Arc<dyn BatchSink>>) -> TestReader {
        let shutdown = CancellationToken::new();
        let reader = Reader::bind(config.clone(), sink, shutdown.clone())
            .await
            .unwrap();
        TestReader {
            reader: Some(reader),
            shutdown,
            config,
        }
    }

    fn reader(&self) -> &Reader {
        self.reader.as_ref().unwrap()
    }

    async fn position(&self, s: &str, i: &str) -> i64 {
        let positions = self.reader().store().positions().await.unwrap();
        positions
            .into_iter()
            .find(|(ps, pi, _)| ps.as_str() == s && pi.as_str() == i)
            .map_or(0, |(_, _, t)| t.0)
    }

    /// Waits until (s, i) is committed up to `token` and the status shows it (the status is
    /// published after the commit).
    async fn wait_for(&self, s: &str, i: &str, token: i64) {
        wait_until(&format!("{s}/{i} to reach {token}"), || async {
            self.reader()
                .status()
                .stream(s, i)
                .is_some_and(|st| st.position.0 >= token)
        })
        .await;
        assert!(self.position(s, i).await >= token);
    }

    async fn rows(&self, s: &str) -> Vec<(String, i64, String)> {
        let rows = self
            .reader()
            .store()
            .recorded_rows(&stream(s))
            .await
            .unwrap();
        rows.into_iter()
            .map(|(i, t, r)| (i.to_string(), t.0, r.as_str().to_owned()))
            .collect()
    }

    /// Shuts down and checks that it takes well under the brief's ~1 s.
    async fn stop(&mut self) {
        self.shutdown.cancel();
        let started = Instant::now();
        self.reader.take().unwrap().join().await.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "shutdown took {:?}",
            started.elapsed()
        );
    }

    async fn metrics(&self) -> String {
        http_get(self.reader().http_addr(), "/metrics").await.1
    }
}

/// A GET over a fresh connection: (status, body).
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(WAIT, socket.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}

/// What the reader must record for a capture: per stream, (instance, token, row) in order,
/// `batch` rows carrying the token of the numeric row that ends their run.
fn expected_rows(lines: &[&str]) -> BTreeMap<String, Vec<(String, i64, String)>> {
    let mut expected: BTreeMap<String, Vec<(String, i64, String)>> = BTreeMap::new();
    let mut runs: HashMap<(String, String), Vec<String>> = HashMap::new();
    for line in lines {
        let Some(rest) = line.strip_prefix("RDATA ") else {
            continue;
        };
        let mut fields = rest.splitn(4, ' ');
        let (s, i, token, row) = (
            fields.next().unwrap(),
            fields.next().unwrap(),
            fields.next().unwrap(),
            fields.next().unwrap(),
        );
        let row = RowJson::parse(row.as_bytes()).unwrap().as_str().to_owned();
        let run = runs.entry((s.to_owned(), i.to_owned())).or_default();
        run.push(row);
        if token == "batch" {
            continue;
        }
        let token: i64 = token.parse().unwrap();
        for row in run.drain(..) {
            expected
                .entry(s.to_owned())
                .or_default()
                .push((i.to_owned(), token, row));
        }
    }
    assert!(
        runs.values().all(Vec::is_empty),
        "the capture ends every run"
    );
    expected
}

#[tokio::test]
async fn a_real_synapse_session_reaches_the_recording_sink_exactly_once() {
    let capture = include_str!("fixtures/real-session-1.txt");
    let lines: Vec<&str> = capture
        .lines()
        .take_while(|l| !l.starts_with("# ---- Redis"))
        .filter_map(|l| l.strip_prefix("S "))
        .collect();
    let expected = expected_rows(&lines);
    assert_eq!(
        expected.values().map(Vec::len).sum::<usize>(),
        141,
        "every RDATA of the capture"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("RDATA events master batch "))
    );

    let services = CancellationToken::new();
    let (catchup, url) = ScriptedCatchup::serve(100, services.clone()).await;
    let mut writer = ScriptedWriter::bind().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = TestReader::config(&writer, &url, dir.path());
    config.server_name = Some("localhost".into());
    let mut reader = TestReader::start(config, None).await;

    let mut conn = writer.accept("test-reader").await;
    conn.send(&lines).await;
    for (s, rows) in &expected {
        let last = rows.last().unwrap();
        reader.wait_for(s, &last.0, last.1).await;
    }
    for (s, rows) in &expected {
        assert_eq!(&reader.rows(s).await, rows, "stream {s}");
    }
    // Streams announced at position 1 were caught up from 0 (an empty answer), the others not.
    let requests = catchup.requests();
    assert!(requests.contains(&("events".into(), 0, 1)), "{requests:?}");
    assert!(
        !requests.iter().any(|(s, _, _)| s == "typing"),
        "{requests:?}"
    );

    let status = reader.reader().status();
    assert_eq!(status.connection.state, ConnectionState::Connected);
    assert_eq!(status.connection.server_name.as_deref(), Some("localhost"));
    assert_eq!(status.reconnects, 0);
    let events = status.stream("events", "master").unwrap();
    assert_eq!(
        (events.position, events.writer_position, events.lag),
        (Token(65), Token(65), 0)
    );
    assert_eq!(events.rows_applied, 77);
    let metrics = reader.metrics().await;
    assert!(
        metrics.contains("streamhost_reader_commands_in_total{command=\"RDATA\"} 141"),
        "{metrics}"
    );
    assert!(
        metrics.contains("streamhost_reader_rows_applied_total{stream=\"events\"} 77"),
        "{metrics}"
    );
    assert!(
        metrics.contains("streamhost_reader_position{stream=\"typing\",instance=\"master\"} 26"),
        "{metrics}"
    );

    reader.stop().await;
    assert_eq!(conn.line().await, None, "the reader closed the connection");
    services.cancel();
}

#[tokio::test]
async fn a_gap_is_caught_up_after_a_reconnect_and_a_restart_repeats_nothing() {
    let services = CancellationToken::new();
    let (catchup, url) = ScriptedCatchup::serve(2, services.clone()).await;
    // The writer's whole log; the reader only sees part of it live.
    catchup.set(
        "events",
        &[
            (2, "[2]"),
            (3, "[3,0]"),
            (3, "[3,1]"),
            (4, "[4]"),
            (5, "[5,0]"),
            (5, "[5,1]"),
            (6, "[6]"),
            (7, "[7]"),
        ],
    );
    let mut writer = ScriptedWriter::bind().await;
    let dir = tempfile::tempdir().unwrap();
    let config = TestReader::config(&writer, &url, dir.path());
    let mut reader = TestReader::start(config, None).await;

    let mut conn = writer.accept("test-reader").await;
    conn.send(&[
        "SERVER test",
        "POSITION events master 1 1",
        "RDATA events master 2 [2]",
        "RDATA events master batch [3,0]",
        "RDATA events master 3 [3,1]",
    ])
    .await;
    reader.wait_for("events", "master", 3).await;
    drop(conn);

    // The writer moved on while the reader was away.
    let mut conn = writer.accept("test-reader").await;
    conn.send(&[
        "SERVER test",
        "POSITION events master 6 6",
        "RDATA events master 7 [7]",
    ])
    .await;
    reader.wait_for("events", "master", 7).await;
    let all = vec![
        ("master".into(), 2, "[2]".into()),
        ("master".into(), 3, "[3,0]".into()),
        ("master".into(), 3, "[3,1]".into()),
        ("master".into(), 4, "[4]".into()),
        ("master".into(), 5, "[5,0]".into()),
        ("master".into(), 5, "[5,1]".into()),
        ("master".into(), 6, "[6]".into()),
        ("master".into(), 7, "[7]".into()),
    ];
    assert_eq!(reader.rows("events").await, all);
    let gap_requests: Vec<_> = catchup
        .requests()
        .into_iter()
        .filter(|(_, from, _)| *from >= 3)
        .collect();
    assert_eq!(
        gap_requests,
        vec![("events".into(), 3, 6), ("events".into(), 5, 6)],
        "limited answers are followed"
    );
    assert!(reader.reader().status().reconnects >= 1);

    // A restarted reader resumes from its stored position: nothing is fetched or applied twice.
    reader.stop().await;
    drop(conn);
    let fetched = catchup.requests().len();
    let mut reader = TestReader::start(reader.config.clone(), None).await;
    let mut conn = writer.accept("test-reader").await;
    conn.send(&[
        "SERVER test",
        "POSITION events master 7 7",
        "RDATA events master 7 [7]",
        "RDATA events master 8 [8]",
    ])
    .await;
    reader.wait_for("events", "master", 8).await;
    assert_eq!(catchup.requests().len(), fetched, "no catch-up needed");
    let mut with_eight = all.clone();
    with_eight.push(("master".into(), 8, "[8]".into()));
    assert_eq!(reader.rows("events").await, with_eight);
    let metrics = reader.metrics().await;
    assert!(
        metrics.contains(
            "streamhost_reader_rdata_dropped_total{stream=\"events\",reason=\"old_token\"} 1"
        ),
        "{metrics}"
    );
    reader.stop().await;
    services.cancel();
}

#[tokio::test]
async fn a_wrong_server_name_is_answered_wrong_remote_and_retried() {
    let services = CancellationToken::new();
    let (_catchup, url) = ScriptedCatchup::serve(100, services.clone()).await;
    let mut writer = ScriptedWriter::bind().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = TestReader::config(&writer, &url, dir.path());
    config.server_name = Some("expected.example".into());
    let mut reader = TestReader::start(config, None).await;

    let mut conn = writer.accept("test-reader").await;
    conn.send(&["SERVER other.example"]).await;
    assert_eq!(conn.line().await.as_deref(), Some("ERROR Wrong remote"));
    assert_eq!(conn.line().await, None);
    // It tries again (and fails again the same way).
    let mut again = writer.accept("test-reader").await;
    again.send(&["SERVER other.example"]).await;
    assert_eq!(again.line().await.as_deref(), Some("ERROR Wrong remote"));
    wait_until("the status to show the error", || async {
        let status = reader.reader().status();
        status.reconnects >= 1
            && status
                .connection
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("expected.example"))
    })
    .await;
    reader.stop().await;
    services.cancel();
}

#[tokio::test]
async fn an_undecodable_line_is_answered_with_error_and_the_reader_reconnects() {
    let services = CancellationToken::new();
    let (_catchup, url) = ScriptedCatchup::serve(100, services.clone()).await;
    let mut writer = ScriptedWriter::bind().await;
    let dir = tempfile::tempdir().unwrap();
    let mut reader = TestReader::start(TestReader::config(&writer, &url, dir.path()), None).await;

    let mut conn = writer.accept("test-reader").await;
    conn.send(&[
        "SERVER test",
        "POSITION events master 1 1",
        "RDATA events master 2 not-json",
    ])
    .await;
    let error = conn.line().await.unwrap();
    assert!(error.starts_with("ERROR failed to parse line: "), "{error}");
    assert_eq!(conn.line().await, None);
    let mut conn = writer.accept("test-reader").await;
    conn.send(&[
        "SERVER test",
        "POSITION events master 1 1",
        "RDATA events master 2 [2]",
    ])
    .await;
    reader.wait_for("events", "master", 2).await;
    assert_eq!(
        reader.rows("events").await,
        vec![("master".into(), 2, "[2]".into())]
    );
    assert!(
        reader
            .metrics()
            .await
            .contains("streamhost_reader_errors_total{reason=\"decode\"} 1")
    );
    reader.stop().await;
    services.cancel();
}

#[tokio::test]
async fn the_reader_pings_when_idle_and_drops_a_silent_writer() {
    let services = CancellationToken::new();
    let (_catchup, url) = ScriptedCatchup::serve(100, services.clone()).await;
    let mut writer = ScriptedWriter::bind().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = TestReader::config(&writer, &url, dir.path());
    config.ping_interval_ms = 50;
    config.ping_timeout_ms = 400;
    let mut reader = TestReader::start(config, None).await;

    let mut conn = writer.accept("test-reader").await;
    // Before the writer PINGs, silence is allowed: the reader only PINGs.
    for _ in 0..3 {
        assert!(conn.line().await.unwrap().starts_with("PING "));
    }
    let started = Instant::now();
    conn.send(&["SERVER test", "PING 1"]).await;
    let mut pings = 0;
    let last = loop {
        let line = conn.line().await.unwrap();
        if !line.starts_with("PING ") {
            break line;
        }
        pings += 1;
    };
    assert_eq!(last, "ERROR ping timeout");
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    assert!(pings >= 2, "kept pinging while waiting ({pings})");
    assert_eq!(conn.line().await, None);
    let _again = writer.accept("test-reader").await;
    assert!(
        reader
            .metrics()
            .await
            .contains("streamhost_reader_errors_total{reason=\"ping_timeout\"} 1")
    );
    reader.stop().await;
    services.cancel();
}

/// The recording sink, slowed down, so a one-command queue is full most of the time.
struct SlowSink;

impl BatchSink for SlowSink {
    fn apply<'a>(
        &'a self,
        batches: &'a [Batch],
        tx: &'a mut sqlx::SqliteConnection,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            RecordingSink.apply(batches, tx).await
        })
    }
}

#[tokio::test]
async fn a_full_queue_stops_reading_without_losing_or_repeating_rows() {
    let services = CancellationToken::new();
    let (_catchup, url) = ScriptedCatchup::serve(100, services.clone()).await;
    let mut writer = ScriptedWriter::bind().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = TestReader::config(&writer, &url, dir.path());
    config.inbound_queue = 1;
    let mut reader = TestReader::start(config, Some(Arc::new(SlowSink))).await;

    let mut conn = writer.accept("test-reader").await;
    let mut lines = vec![
        "SERVER test".to_owned(),
        "POSITION events master 1 1".to_owned(),
    ];
    for token in 2..=1001 {
        if token % 3 == 0 {
            lines.push(format!("RDATA events master batch [{token},0]"));
        }
        lines.push(format!("RDATA events master {token} [{token}]"));
    }
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    conn.send(&lines).await;
    reader.wait_for("events", "master", 1001).await;
    let rows = reader.rows("events").await;
    assert_eq!(rows.len(), 1000 + 333);
    let expected = expected_rows(&lines);
    assert_eq!(rows, expected["events"]);
    reader.stop().await;
    services.cancel();
}

#[tokio::test]
async fn the_http_api_serves_status_metrics_and_json_404s() {
    let services = CancellationToken::new();
    let (_catchup, url) = ScriptedCatchup::serve(100, services.clone()).await;
    let mut writer = ScriptedWriter::bind().await;
    let dir = tempfile::tempdir().unwrap();
    let mut reader = TestReader::start(TestReader::config(&writer, &url, dir.path()), None).await;
    let mut conn = writer.accept("test-reader").await;
    conn.send(&[
        "SERVER test",
        "POSITION events master 1 1",
        "RDATA events master 2 [2]",
        "POSITION events master 2 9",
    ])
    .await;
    reader.wait_for("events", "master", 9).await;

    let addr = reader.reader().http_addr();
    let (code, body) = http_get(addr, "/v1/status").await;
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["name"], "test-reader");
    assert_eq!(status["writer"], writer.addr.to_string());
    assert_eq!(status["connection"]["state"], "connected");
    assert_eq!(status["reconnects"], 0);
    assert_eq!(status["disk_full"], false);
    assert_eq!(
        status["streams"][0],
        serde_json::json!({
            "stream": "events", "instance": "master", "position": 9, "writer_position": 9, "lag": 0,
            "lag_seconds": 0.0, "rows_applied": 1, "batches_applied": 1, "gaps": 0, "last_gap": null,
            "trimmed": 0, "last_trimmed": null, "resets": 0, "last_reset": null
        })
    );

    let (code, metrics) = http_get(addr, "/metrics").await;
    assert_eq!(code, 200);
    for needle in [
        "streamhost_reader_commands_in_total{command=\"POSITION\"} 2",
        "streamhost_reader_batches_applied_total{stream=\"events\"} 1",
        "streamhost_reader_catchup_requests_total{stream=\"events\"} 1",
        "streamhost_reader_lag{stream=\"events\",instance=\"master\"} 0",
        "streamhost_reader_connected 1",
        "streamhost_reader_disk_full 0",
    ] {
        // Whole lines: a `# HELP` text must not pass for a sample.
        assert!(
            metrics.lines().any(|line| line == needle),
            "{needle} in {metrics}"
        );
    }

    let (code, body) = http_get(addr, "/nope").await;
    assert_eq!(code, 404);
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["errcode"], "M_NOT_FOUND");
    reader.stop().await;
    services.cancel();
}

#[test]
fn status_json_names_the_connection_states() {
    for (state, word) in [
        (ConnectionState::Connecting, "connecting"),
        (ConnectionState::Connected, "connected"),
        (ConnectionState::BackingOff, "backing-off"),
        (ConnectionState::Stopped, "stopped"),
    ] {
        assert_eq!(serde_json::to_value(state).unwrap(), word);
    }
}

/// Redis at `STREAMHOST_TEST_REDIS` (default `redis://127.0.0.1:6379`); panics when absent.
async fn test_redis() -> (String, redis::aio::MultiplexedConnection) {
    let url = std::env::var("STREAMHOST_TEST_REDIS")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let client = redis::Client::open(url.as_str()).unwrap();
    let conn = tokio::time::timeout(WAIT, client.get_multiplexed_async_connection())
        .await
        .unwrap_or_else(|_| panic!("this test needs a real Redis at {url}: connect timed out"))
        .unwrap_or_else(|e| panic!("this test needs a real Redis at {url}: {e}"));
    (url, conn)
}

#[tokio::test]
async fn a_real_synapse_redis_session_reaches_the_reader_exactly_once_without_its_echoes() {
    use futures_util::StreamExt as _;

    let capture = include_str!("fixtures/real-session-1.txt");
    // The master's RDATA/POSITION lines (the Redis section omits the ones identical to these),
    // then the other instances' messages of the Redis section, on their channels. The master's
    // own Redis POSITIONs are left out: the capture does not keep their order relative to the
    // RDATA they followed.
    let master: Vec<&str> = capture
        .lines()
        .take_while(|l| !l.starts_with("# ---- Redis"))
        .filter_map(|l| l.strip_prefix("S "))
        .filter(|l| l.starts_with("RDATA ") || l.starts_with("POSITION "))
        .collect();
    let others: Vec<(&str, &str)> = capture
        .lines()
        .filter_map(|l| l.strip_prefix("P "))
        .map(|l| l.split_once(' ').unwrap())
        .filter(|(_, line)| !line.contains(" master "))
        .collect();
    assert!(
        others
            .iter()
            .any(|(_, l)| l.starts_with("POSITION caches worker1"))
    );
    let expected = expected_rows(&master);

    let (url, mut publisher) = test_redis().await;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let channel = format!("t-synapse-{}-{nanos:x}", std::process::id());
    // Watch the channel like a Synapse process would, to see the reader's REPLICATE.
    let client = redis::Client::open(url.as_str()).unwrap();
    let (mut sink, mut messages) = client.get_async_pubsub().await.unwrap().split();
    sink.subscribe(&channel).await.unwrap();

    let services = CancellationToken::new();
    let (_catchup, catchup_url) = ScriptedCatchup::serve(100, services.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = TestReader::config(&ScriptedWriter::bind().await, &catchup_url, dir.path());
    // Named as the capture's worker: worker1's POSITIONs are this reader's own echoes.
    config.name = "worker1".into();
    config.server_name = Some(channel.clone());
    config.redis = Some(streamhost_server::config::RedisConfig {
        url: url.clone().into(),
        ping_interval_ms: 2_000,
        reconnect_max_ms: 200,
        ..streamhost_server::config::RedisConfig::default()
    });
    let mut reader = TestReader::start(config, None).await;
    let first = tokio::time::timeout(WAIT, messages.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        first.get_payload_bytes(),
        b"REPLICATE ",
        "subscribed, then REPLICATE"
    );

    let echo = r#"RDATA events worker1 999 ["an echo"]"#;
    let mut pipe = redis::pipe();
    for line in master.iter().chain([&echo]) {
        pipe.cmd("PUBLISH").arg(&channel).arg(*line).ignore();
    }
    for (on, line) in &others {
        let on = on.replacen("localhost", &channel, 1);
        pipe.cmd("PUBLISH").arg(on).arg(*line).ignore();
    }
    pipe.query_async::<()>(&mut publisher).await.unwrap();

    for (s, rows) in &expected {
        let last = rows.last().unwrap();
        reader.wait_for(s, &last.0, last.1).await;
    }
    wait_until("the last messages to be counted", || async {
        reader
            .metrics()
            .await
            .contains("streamhost_reader_redis_received_total{command=\"USER_SYNC\"} 4")
    })
    .await;
    for (s, rows) in &expected {
        assert_eq!(&reader.rows(s).await, rows, "stream {s}");
    }
    let metrics = reader.metrics().await;
    for want in [
        "streamhost_reader_redis_echoes_ignored_total 3",
        "streamhost_reader_redis_malformed_total 0",
        "streamhost_reader_redis_received_total{command=\"USER_IP\"} 0",
        "streamhost_reader_commands_in_total{command=\"RDATA\"} 142",
    ] {
        assert!(metrics.contains(want), "{want} in {metrics}");
    }
    assert_eq!(reader.reader().status().reconnects, 0);
    reader.stop().await;
    services.cancel();
}
