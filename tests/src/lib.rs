//! The integration-test harness: writers and readers on loopback port 0 with temporary
//! SQLite files (or a fresh PostgreSQL schema for the writer's log), raw replication clients,
//! polling helpers, the real binary as a process, a scripted fake Synapse on Redis, a Redis
//! of a test's own with TLS, test certificates (`certs`), a PostgreSQL of a test's own with
//! TLS, a reader process for hostile plugins (`hostile`), a raw server-sent event client
//! (`sse`), headless Chromium over WebDriver (`browser`), and a small tmpfs of a test's own that
//! it fills to the last byte (`small_disk`).

pub mod browser;
pub mod certs;
pub mod hostile;
pub mod plugins;
pub mod postgres;
pub mod postgres_tls;
pub mod process;
pub mod proxy;
pub mod push_receiver;
pub mod raw;
pub mod redis;
pub mod redis_auth;
pub mod redis_tls;
pub mod small_disk;
pub mod sse;
pub mod synapse;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use streamhost_proto::{InstanceName, RowJson, StreamName, Token};
use streamhost_server::client::ApiClient;
use streamhost_server::config::{ListenerConfig, ReaderConfig, WriterConfig};
use streamhost_server::reader::Reader;
use streamhost_server::writer::Writer;
use tokio_util::sync::CancellationToken;

/// Polls `check` every 10 ms until it returns true, failing after `timeout` with `what`.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Ok(done) = tokio::time::timeout(left, check()).await else {
            panic!("timed out after {timeout:?} waiting for {what} (a check did not return)");
        };
        if done {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The value of one sample in Prometheus text: `sample` is the name with its labels as
/// printed (`streamhost_reader_redis_connected`, `x_total{reason="closed"}`); `None` when it
/// is not there (a labelled counter appears at its first increment). Whole lines are matched,
/// so a `# HELP` text never passes for a sample.
pub fn metric(text: &str, sample: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
        .map(|value| {
            value
                .trim()
                .parse()
                .unwrap_or_else(|e| panic!("{sample}: {e}"))
        })
}

/// A stream name for tests.
pub fn stream(name: &str) -> StreamName {
    StreamName::new(name).expect("test stream names are valid")
}

/// Builds a JSON array body from rows.
pub fn rows_body(rows: &[serde_json::Value]) -> Bytes {
    serde_json::to_vec(rows).expect("JSON").into()
}

/// A writer running in this process on 127.0.0.1:0, with its log in a temporary folder.
pub struct TestWriter {
    /// The writer's configuration (its `data` folder survives restarts).
    pub config: WriterConfig,
    writer: Option<Writer>,
    shutdown: CancellationToken,
    _dir: Option<tempfile::TempDir>,
    schema: Option<postgres::Schema>,
}

/// Which database a test writer keeps its log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogBackend {
    /// `log.sqlite` in the writer's temporary data folder.
    Sqlite,
    /// A fresh schema on the test PostgreSQL server.
    Postgres,
}

impl TestWriter {
    /// Starts a writer with its log on `backend`, after `adjust`.
    pub async fn spawn_on(
        backend: LogBackend,
        streams: &[&str],
        adjust: impl FnOnce(&mut WriterConfig),
    ) -> TestWriter {
        match backend {
            LogBackend::Sqlite => TestWriter::spawn_with(streams, adjust).await,
            LogBackend::Postgres => TestWriter::spawn_postgres(streams, adjust).await,
        }
    }

    /// Starts a writer whose log is in a fresh PostgreSQL schema (its connections carry the
    /// schema's name as `application_name`).
    pub async fn spawn_postgres(
        streams: &[&str],
        adjust: impl FnOnce(&mut WriterConfig),
    ) -> TestWriter {
        let schema = postgres::Schema::create().await;
        let url = schema.url();
        let mut writer = TestWriter::spawn_with(streams, move |config| {
            config.database.url = Some(url.into());
            adjust(config);
        })
        .await;
        writer.schema = Some(schema);
        writer
    }

    /// The writer's PostgreSQL schema, if its log is in one.
    pub fn schema(&self) -> Option<&postgres::Schema> {
        self.schema.as_ref()
    }

    /// The URL of the writer's log database (`sqlite://...` or `postgres://...`), for readers
    /// that catch up from it.
    pub fn log_url(&self) -> String {
        match &self.config.database.url {
            Some(url) => url.expose().to_owned(),
            None => format!("sqlite://{}", self.config.log_path().display()),
        }
    }

    /// Starts a writer with these streams and otherwise default settings.
    pub async fn spawn(streams: &[&str]) -> TestWriter {
        TestWriter::spawn_with(streams, |_| {}).await
    }

    /// Starts a writer after `adjust` has changed its configuration.
    pub async fn spawn_with(
        streams: &[&str],
        adjust: impl FnOnce(&mut WriterConfig),
    ) -> TestWriter {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = WriterConfig {
            data: dir.path().join("writer"),
            streams: streams.iter().map(|s| s.to_string()).collect(),
            ..WriterConfig::default()
        };
        adjust(&mut config);
        let mut writer = TestWriter {
            config,
            writer: None,
            shutdown: CancellationToken::new(),
            _dir: Some(dir),
            schema: None,
        };
        writer
            .start(
                SocketAddr::from(([127, 0, 0, 1], 0)),
                SocketAddr::from(([127, 0, 0, 1], 0)),
            )
            .await;
        writer
    }

    async fn start(&mut self, http: SocketAddr, replication: SocketAddr) {
        self.shutdown = CancellationToken::new();
        self.config.http.address = http;
        self.config.replication.address = replication;
        let writer = Writer::bind(self.config.clone(), self.shutdown.clone())
            .await
            .expect("writer starts");
        self.writer = Some(writer);
    }

    fn running(&self) -> &Writer {
        self.writer.as_ref().expect("writer is running")
    }

    /// The HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.running().http_addr()
    }

    /// The replication address.
    pub fn replication_addr(&self) -> SocketAddr {
        self.running().replication_addr()
    }

    /// The HTTP base URL (`https://` when the HTTP listener has TLS).
    pub fn url(&self) -> String {
        let scheme = if self.config.http.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.http_addr())
    }

    /// A client for the writer's API.
    pub fn client(&self) -> ApiClient {
        ApiClient::new(self.url())
    }

    /// Appends rows (JSON values) to `stream` and returns their tokens.
    pub async fn append(&self, stream: &str, rows: &[serde_json::Value]) -> Vec<Token> {
        self.client()
            .append(stream, rows_body(rows), false)
            .await
            .expect("append succeeds")
    }

    /// Shuts the writer down cleanly and waits for it.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(writer) = self.writer.take() {
            writer.join().await.expect("writer shuts down cleanly");
        }
    }

    /// Stops the writer and starts it again on the same addresses and log.
    pub async fn restart(&mut self) {
        let (http, replication) = (self.http_addr(), self.replication_addr());
        self.stop().await;
        self.start(http, replication).await;
    }
}

impl Drop for TestWriter {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A reader running in this process, following a writer, with the recording sink.
pub struct TestReader {
    /// The reader's configuration.
    pub config: ReaderConfig,
    reader: Option<Reader>,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl TestReader {
    /// Starts a recording reader of `writer` named `name`.
    pub async fn spawn(writer: &TestWriter, name: &str) -> TestReader {
        TestReader::spawn_with(writer, name, None, |_| {}).await
    }

    /// Starts a reader with a custom sink (`None`: the recording sink) and configuration.
    pub async fn spawn_with(
        writer: &TestWriter,
        name: &str,
        sink: Option<std::sync::Arc<dyn streamhost_server::reader::BatchSink>>,
        adjust: impl FnOnce(&mut ReaderConfig),
    ) -> TestReader {
        TestReader::spawn_to(writer.replication_addr(), writer.url(), name, sink, adjust).await
    }

    /// Starts a reader of the writer at these addresses (a writer process, say).
    pub async fn spawn_to(
        replication: SocketAddr,
        writer_url: String,
        name: &str,
        sink: Option<std::sync::Arc<dyn streamhost_server::reader::BatchSink>>,
        adjust: impl FnOnce(&mut ReaderConfig),
    ) -> TestReader {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = ReaderConfig {
            writer: replication.to_string(),
            writer_http: writer_url,
            http: ListenerConfig::on(SocketAddr::from(([127, 0, 0, 1], 0))),
            data: dir.path().join(name),
            name: name.to_owned(),
            record_rows: true,
            reconnect_max_ms: 500,
            ..ReaderConfig::default()
        };
        adjust(&mut config);
        let shutdown = CancellationToken::new();
        let reader = Reader::bind(config.clone(), sink, shutdown.clone())
            .await
            .expect("reader starts");
        TestReader {
            config,
            reader: Some(reader),
            shutdown,
            _dir: dir,
        }
    }

    /// The running reader.
    pub fn reader(&self) -> &Reader {
        self.reader.as_ref().expect("reader is running")
    }

    /// Every recorded row of `stream` as (instance, token, row).
    pub async fn rows(&self, stream_name: &str) -> Vec<(InstanceName, Token, RowJson)> {
        self.reader()
            .store()
            .recorded_rows(&stream(stream_name))
            .await
            .expect("read recorded rows")
    }

    /// The applied position of `(stream, master)`, or 0.
    pub async fn position(&self, stream_name: &str) -> Token {
        let positions = self
            .reader()
            .store()
            .positions()
            .await
            .expect("read positions");
        positions
            .into_iter()
            .find(|(s, i, _)| s.as_str() == stream_name && i.as_str() == "master")
            .map_or(Token(0), |(_, _, t)| t)
    }

    /// Waits until `(stream, master)` has been applied up to `token`.
    pub async fn wait_for(&self, stream_name: &str, token: Token, timeout: Duration) {
        wait_until(
            timeout,
            &format!("{} to reach {stream_name} {token}", self.config.name),
            || async { self.position(stream_name).await >= token },
        )
        .await;
    }

    /// Shuts the reader down and waits for it.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(reader) = self.reader.take() {
            reader.join().await.expect("reader shuts down cleanly");
        }
    }

    /// Stops the reader and starts it again on the same data folder (with the recording or
    /// discarding sink, as configured) after `adjust` changed its configuration; its HTTP
    /// port changes.
    pub async fn restart_with(&mut self, adjust: impl FnOnce(&mut ReaderConfig)) {
        self.stop().await;
        adjust(&mut self.config);
        self.shutdown = CancellationToken::new();
        let reader = Reader::bind(self.config.clone(), None, self.shutdown.clone())
            .await
            .expect("reader restarts");
        self.reader = Some(reader);
    }

    /// The data folder (survives `stop`).
    pub fn data_dir(&self) -> PathBuf {
        self.config.data.clone()
    }
}

impl Drop for TestReader {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A reader with plugins: the plugins folder, grants and admin token, on top of `adjust`.
pub async fn spawn_plugin_reader(
    writer: &TestWriter,
    name: &str,
    folder: &plugins::PluginFolder,
    grants: std::collections::BTreeMap<String, streamhost_plugin_runtime::Grant>,
) -> TestReader {
    let dir = folder.path().to_path_buf();
    TestReader::spawn_with(writer, name, None, move |config| {
        config.plugins.dir = Some(dir);
        config.plugins.grants = grants;
        config.plugins.admin_token = Some(ADMIN_TOKEN.into());
        config.plugins.retry_backoff_ms = 20;
        // Compiling a component in a debug build takes a second or more; share the results.
        config.plugins.compile_cache = Some(PathBuf::from(concat!(env!("OUT_DIR"), "/compiled")));
    })
    .await
}

/// The admin token of [`spawn_plugin_reader`]'s readers.
pub const ADMIN_TOKEN: &str = "test-admin-token";

impl TestReader {
    /// A client of this reader's HTTP API.
    pub fn client(&self) -> ApiClient {
        ApiClient::new(format!("http://{}", self.reader().http_addr()))
    }

    /// A client of this reader's admin API.
    pub fn admin(&self) -> ApiClient {
        self.client().with_bearer(ADMIN_TOKEN)
    }

    /// `GET path`: the status and body as text.
    pub async fn get(&self, path: &str) -> (hyper::StatusCode, String) {
        let (status, body) = self
            .client()
            .send(hyper::Method::GET, path, Bytes::new())
            .await
            .expect("GET");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// The plugin `name` as `GET /v1/admin/plugins` shows it.
    pub async fn plugin(&self, name: &str) -> serde_json::Value {
        let all = self
            .admin()
            .get_json("/v1/admin/plugins")
            .await
            .expect("admin plugins");
        all.as_array()
            .and_then(|a| a.iter().find(|p| p["name"] == name).cloned())
            .unwrap_or_else(|| panic!("no plugin {name} in {all}"))
    }
}
