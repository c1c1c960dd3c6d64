//! `streamhost reader`: follows a writer over Synapse's replication protocol and hands every
//! batch, exactly once and in token order per (stream, instance), to a [`BatchSink`].
//!
//! Behaviour, HTTP API and configuration: `docs/reader.md`. Protocol:
//! `docs/replication.md` (from "The TCP session" to "Streams that reset").
//!
//! ```text
//!  writer ──TCP──▶ connection ──bounded queue──▶ processor ──▶ sink + positions (one transaction)
//!    ▲  (NAME, PING, REPLICATE;        (POSITION rule, batch runs,        │
//!    │   reconnect with backoff)        group commit)                     ▼
//!    └──────────── HTTP catch-up ◀──────────┘                          store (reader.sqlite)
//! ```
//!
//! File map:
//! - `connection`: TCP sessions, pings, reconnects, backpressure (or, with `[reader.redis]`
//!   or `[reader.synapse]`, [`crate::redis_mode`]'s subscriber in its place).
//! - `inbound`: [`inbound::Inbound`], what every transport feeds the processor.
//! - `processor`: applying commands in order, one module per job (connections, the `RDATA`
//!   rules, the `POSITION` rule, runs, catch-up paging, group commits, status, the plugins'
//!   feed, failure pauses).
//! - `ledger`: applied and committed positions per (stream, instance), kept by the processor
//!   and by every plugin worker.
//! - [`batches`]: assembling `batch` runs per (stream, instance).
//! - [`catchup`]: fetching missed rows from the writer's catch-up endpoint (or its database).
//! - [`sink`]: [`Batch`], [`BatchSink`], the recording and discarding sinks.
//! - [`store`]: the reader's SQLite database.
//! - [`status`]: [`ReaderStatus`] and the metrics.
//! - [`plugins`]: the Wasm plugins, their workers and their HTTP endpoints.
//! - `api`: the HTTP API.

mod api;
pub mod batches;
pub mod catchup;
mod connection;
pub(crate) mod inbound;
pub(crate) mod ledger;
pub mod plugins;
pub(crate) mod processor;
pub mod sink;
pub mod status;
pub mod store;

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use streamhost_proto::StreamName;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use self::batches::BatchAssembler;
use self::catchup::{CatchupSource, DbCatchup, HttpCatchup};
use self::connection::ConnectionConfig;
use self::plugins::PluginHost;
use self::processor::{FirstPosition, Limits, Processor};
pub use self::sink::{Batch, BatchSink, BoxFuture, DiscardSink, RecordingSink};
use self::status::Shared;
pub use self::status::{
    ConnectionState, ConnectionStatus, GapRange, ReaderStatus, ResetRange, StreamStatus,
};
pub use self::store::{ReaderStore, Run};
use crate::config::ReaderConfig;
use crate::redis_mode::reader::{RedisReaderConfig, RowFormat};
use crate::synapse::catchup::SynapseCatchup;

/// A running reader: its connection, processor and HTTP API tasks.
pub struct Reader {
    http_addr: SocketAddr,
    shared: Arc<Shared>,
    store: ReaderStore,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
    plugins: Option<Arc<PluginHost>>,
}

impl Reader {
    /// Opens the reader's database, then starts following `config.writer` and serving the
    /// HTTP API on `http`, until `shutdown` fires.
    ///
    /// `sink` receives the batches; `None` means the recording sink when `config.record_rows`,
    /// else a sink that discards them (positions are still kept).
    pub async fn start(
        config: ReaderConfig,
        http: TcpListener,
        sink: Option<Arc<dyn BatchSink>>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Reader> {
        config.validate()?;
        std::fs::create_dir_all(&config.data).with_context(|| {
            format!(
                "creating the reader's data folder {}",
                config.data.display()
            )
        })?;
        let store = ReaderStore::open(&config.db_path()).await?;
        let http_addr = http
            .local_addr()
            .context("reading the HTTP listener's address")?;
        let sink = sink.unwrap_or_else(|| {
            if config.record_rows {
                Arc::new(RecordingSink)
            } else {
                Arc::new(DiscardSink)
            }
        });
        let followed = match (&config.synapse, &config.redis) {
            (Some(synapse), _) => crate::synapse::describe(synapse),
            (None, Some(redis)) => crate::redis_mode::describe(
                redis,
                &crate::redis_mode::channel(config.server_name.as_deref().unwrap_or_default()),
            ),
            (None, None) => config.writer.clone(),
        };
        let shared = Arc::new(Shared::new(config.name.clone(), followed));
        let catchup: Arc<dyn CatchupSource> = match (&config.synapse, &config.log_database_url) {
            (Some(synapse), _) => Arc::new(SynapseCatchup::new(synapse)),
            (None, Some(url)) => Arc::new(DbCatchup::open(url).await?),
            (None, None) => Arc::new(HttpCatchup::new(
                &config.writer_http,
                config.replication_secret.clone(),
            )),
        };
        let reconnect_max = Duration::from_millis(config.reconnect_max_ms);
        // Any task ending (shutdown, or a panic) stops the others.
        let stop = shutdown.child_token();
        let (drop_tx, drop_rx) = watch::channel(0);
        let (tx, rx) = mpsc::channel(config.inbound_queue);
        let mut processor = Processor::new(
            store.clone(),
            sink,
            catchup.clone(),
            shared.clone(),
            drop_tx,
            stop.clone(),
            Limits::new(reconnect_max, config.inbound_queue),
        )
        .await?;
        if config.synapse.is_some() {
            processor = processor
                .with_first_position(FirstPosition::Join)
                .with_resettable_streams(
                    crate::synapse::RESETTABLE_STREAMS
                        .iter()
                        .map(|s| StreamName::new(*s).expect("a valid stream name")),
                );
        }
        let plugins = match &config.plugins.dir {
            Some(_) => {
                let positions = processor.committed();
                let host = PluginHost::start(
                    config.plugins.clone(),
                    config.data.clone(),
                    store.pool().clone(),
                    catchup,
                    &shared.metrics.registry,
                    positions,
                    stop.clone(),
                )
                .await?;
                processor = processor.with_feed(host.feed().clone());
                Some(host)
            }
            None => None,
        };

        let connection = ConnectionConfig {
            writer: config.writer.clone(),
            name: config.name.clone(),
            server_name: config.server_name.clone(),
            reconnect_max,
            ping_interval: Duration::from_millis(config.ping_interval_ms.max(1)),
            ping_timeout: Duration::from_millis(config.ping_timeout_ms.max(1)),
        };
        let mut tasks = Vec::new();
        let guard = stop.clone().drop_guard();
        tasks.push((
            "processor",
            tokio::spawn(async move {
                let _guard = guard;
                processor.run(rx).await;
            }),
        ));
        let (guard, task_shared, task_stop) =
            (stop.clone().drop_guard(), shared.clone(), stop.clone());
        let redis = match &config.synapse {
            Some(synapse) => Some(RedisReaderConfig {
                redis: synapse.redis_config()?,
                channel: crate::redis_mode::channel(&synapse.server_name),
                name: config.name.clone(),
                rows: RowFormat::SynapseObjects,
            }),
            None => config.redis.clone().map(|redis| RedisReaderConfig {
                redis,
                channel: crate::redis_mode::channel(
                    config.server_name.as_deref().unwrap_or_default(),
                ),
                name: config.name.clone(),
                rows: RowFormat::AsSent,
            }),
        };
        tasks.push((
            "connection",
            tokio::spawn(async move {
                let _guard = guard;
                match redis {
                    Some(redis) => {
                        crate::redis_mode::reader::run(redis, tx, task_shared, drop_rx, task_stop)
                            .await
                    }
                    None => connection::run(connection, tx, task_shared, drop_rx, task_stop).await,
                }
            }),
        ));
        let (guard, api_shared, task_stop) =
            (stop.clone().drop_guard(), shared.clone(), stop.clone());
        let api_plugins = plugins.clone();
        tasks.push((
            "http",
            tokio::spawn(async move {
                let _guard = guard;
                crate::http::serve(http, api::router(api_shared, api_plugins), task_stop).await;
            }),
        ));
        tracing::info!(follows = %shared.snapshot().writer, name = %config.name, http = %http_addr, "reader started");
        Ok(Reader {
            http_addr,
            shared,
            store,
            tasks,
            plugins,
        })
    }

    /// The address the HTTP API is bound to.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// A snapshot of the connection and of every (stream, instance) followed.
    pub fn status(&self) -> ReaderStatus {
        self.shared.snapshot()
    }

    /// The plugins, when the reader runs any.
    pub fn plugins(&self) -> Option<&Arc<PluginHost>> {
        self.plugins.as_ref()
    }

    /// The reader's database (positions, recorded rows).
    pub fn store(&self) -> &ReaderStore {
        &self.store
    }

    /// Waits for every task to finish (after `shutdown` fired); what was applied is committed
    /// by then.
    pub async fn join(self) -> anyhow::Result<()> {
        let mut result = Ok(());
        for (name, task) in self.tasks {
            if let Err(e) = task.await
                && result.is_ok()
            {
                result = Err(anyhow::anyhow!("reader {name} task failed: {e}"));
            }
        }
        if let Some(plugins) = &self.plugins {
            plugins.stop().await;
        }
        self.store.close().await;
        result
    }
}

impl Reader {
    /// Binds `config.http` (port 0 picks a free port), then [`Reader::start`]s.
    pub async fn bind(
        config: ReaderConfig,
        sink: Option<Arc<dyn BatchSink>>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Reader> {
        let listener = TcpListener::bind(config.http)
            .await
            .with_context(|| format!("binding the reader's HTTP listener on {}", config.http))?;
        Reader::start(config, listener, sink, shutdown).await
    }
}

/// `streamhost reader`: binds `config.http`, announces the address on stdout
/// (`streamhost reader listening http=<addr>`) and runs until `shutdown`.
pub async fn run(config: ReaderConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let reader = Reader::bind(config, None, shutdown).await?;
    let addr = reader.http_addr();
    tracing::info!(http = %addr, "reader listening");
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "streamhost reader listening http={addr}").context("writing to stdout")?;
    stdout.flush().context("writing to stdout")?;
    drop(stdout);
    reader.join().await
}
