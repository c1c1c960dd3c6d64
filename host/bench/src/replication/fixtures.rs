//! What the replication measurements share: Synapse-like rows, a writer on a temporary
//! folder, concurrent appending clients, a durable SQLite baseline file, waiting.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use streamhost_proto::Token;
use streamhost_server::client::ApiClient;
use streamhost_server::config::{DatabaseConfig, ListenerConfig, ServerTlsConfig, WriterConfig};
use streamhost_server::writer::Writer;
use tokio_util::sync::CancellationToken;

use super::{CLIENTS, REQUEST_ROWS};

/// A Synapse-like `events` row.
pub(super) fn event_row(n: usize) -> serde_json::Value {
    serde_json::json!([
        "ev",
        [
            format!("$ev{n}AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"),
            format!("!room{}:example.org", n % 50),
            "m.room.message",
            null,
            null,
            null,
            null,
            false,
            false
        ]
    ])
}

/// `rows` rows as JSON request bodies of [`REQUEST_ROWS`] rows each.
pub(super) fn request_bodies(rows: usize) -> Vec<Bytes> {
    (0..rows / REQUEST_ROWS)
        .map(|r| {
            let rows: Vec<_> = (0..REQUEST_ROWS)
                .map(|i| event_row(r * REQUEST_ROWS + i))
                .collect();
            Bytes::from(serde_json::to_vec(&rows).expect("JSON"))
        })
        .collect()
}

/// A writer on a temporary folder, stopped by its own token.
pub(super) struct BenchWriter {
    pub(super) writer: Writer,
    pub(super) shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl BenchWriter {
    /// A writer with its log in SQLite in a temporary folder.
    pub(super) async fn start() -> anyhow::Result<BenchWriter> {
        BenchWriter::start_on(None).await
    }

    /// A writer with its log at `database_url` (none: SQLite in a temporary folder).
    pub(super) async fn start_on(database_url: Option<String>) -> anyhow::Result<BenchWriter> {
        BenchWriter::start_with(database_url, None).await
    }

    /// A writer with its log at `database_url` and, with `replication_tls`, TLS on its
    /// replication listener.
    pub(super) async fn start_with(
        database_url: Option<String>,
        replication_tls: Option<ServerTlsConfig>,
    ) -> anyhow::Result<BenchWriter> {
        let dir = tempfile::tempdir()?;
        let shutdown = CancellationToken::new();
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let config = WriterConfig {
            http: ListenerConfig::on(loopback),
            replication: ListenerConfig {
                tls: replication_tls,
                ..ListenerConfig::on(loopback)
            },
            data: dir.path().join("writer"),
            database: DatabaseConfig {
                url: database_url.map(Into::into),
                password_file: None,
            },
            ..WriterConfig::default()
        };
        let writer = Writer::bind(config, shutdown.clone()).await?;
        Ok(BenchWriter {
            writer,
            shutdown,
            _dir: dir,
        })
    }

    /// A client of the writer's HTTP API.
    pub(super) fn client(&self) -> ApiClient {
        ApiClient::new(format!("http://{}", self.writer.http_addr()))
    }

    /// Stops the writer and waits for it.
    pub(super) async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.writer.join().await
    }
}

/// Appends `bodies` from `CLIENTS` concurrent clients; returns the last token.
pub(super) async fn append_all(client: &ApiClient, bodies: Vec<Bytes>) -> anyhow::Result<Token> {
    let queue = Arc::new(Mutex::new(bodies));
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (client, queue) = (client.clone(), queue.clone());
        tasks.push(tokio::spawn(async move {
            let mut last = Token(0);
            loop {
                let next = queue.lock().expect("queue lock").pop();
                let Some(body) = next else {
                    return Ok::<_, anyhow::Error>(last);
                };
                let tokens = client.append("events", body, false).await?;
                last = last.max(*tokens.last().expect("non-empty request"));
            }
        }));
    }
    let mut last = Token(0);
    for task in tasks {
        last = last.max(task.await??);
    }
    Ok(last)
}

/// A fresh SQLite file with the writer's durability pragmas (WAL, `synchronous = FULL`), for
/// the baselines; the folder lives as long as the returned guard.
pub(super) async fn durable_sqlite() -> anyhow::Result<(tempfile::TempDir, sqlx::SqlitePool)> {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
    let dir = tempfile::tempdir()?;
    let options = SqliteConnectOptions::new()
        .filename(dir.path().join("baseline.sqlite"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full);
    let pool = sqlx::SqlitePool::connect_with(options).await?;
    Ok((dir, pool))
}

/// Polls `done` every millisecond until it holds; an error after `timeout`.
pub(super) async fn wait_for(
    timeout: Duration,
    mut done: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !done() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "benchmark did not finish within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}
