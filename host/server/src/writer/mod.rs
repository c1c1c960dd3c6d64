//! `streamhost writer`: the durable log, its HTTP API and its fan-outs: the TCP replication
//! server and, when configured, Redis replication beside it (`fanout`).
//!
//! ```text
//! POST rows ─▶ api ─▶ appender (group commit) ─▶ log (SQLite or PostgreSQL, durable commit)
//!                          │ after commit: rows into the tail, poke
//!                          ▼
//!                       streamer ─▶ ring of encoded lines ─▶ fanout (tcp, redis) ─▶ reader
//!                          ▲  reads (last sent, position] from the tail, or the log
//!              REPLICATE ──┘  (announce POSITIONs)
//! ```
//!
//! With `[writer.retention]`, a task trims each stream's oldest rows (`retention`).

pub(crate) mod api;
mod appender;
mod console;
pub(crate) mod fanout;
mod recent;
mod retention;
pub(crate) mod streamer;
pub(crate) mod streams;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use streamhost_log::Log;
use streamhost_proto::{InstanceName, StreamName, Token};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use appender::{AppendError, Appender};
pub(crate) use recent::TailBounds;
pub use streamer::Frame;

use crate::config::WriterConfig;
use crate::metrics::Registry;
use crate::net::accept::{self, Acceptor, ConnectionMetrics};
use crate::net::tls::{self, ServerTls};
use api::{ApiMetrics, WriterApi};
use fanout::Ring;
use fanout::redis::RedisWriter;
use fanout::tcp::ReplicationContext;
use retention::{CatchupHolds, Retention};
use streamer::Streamer;
use streams::StreamSet;

/// A running writer.
pub struct Writer {
    http_addr: SocketAddr,
    replication_addr: SocketAddr,
    http: JoinHandle<()>,
    appender: JoinHandle<()>,
    streamer: JoinHandle<()>,
    replication: JoinHandle<()>,
    redis: Option<JoinHandle<()>>,
    retention: Option<JoinHandle<()>>,
    log: Log,
}

impl Writer {
    /// Reads the configuration's secret files, opens the log and serves HTTP and replication
    /// on the given (already bound) listeners until `shutdown` fires. A listener bound to a
    /// non-loopback address without authentication is refused first (`config::exposure`).
    pub async fn start(
        mut config: WriterConfig,
        http: TcpListener,
        replication: TcpListener,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Writer> {
        config.load_secrets()?;
        config.validate()?;
        let http_addr = http.local_addr()?;
        let replication_addr = replication.local_addr()?;
        config.check_exposure(http_addr, replication_addr)?;
        fanout::redis::check(&config)?;
        let instance = config.instance()?;
        let declared = config.stream_names()?;
        let log = open_log(&config, &instance).await?;
        let positions = declared_positions(&log, &declared).await?;
        let streams = Arc::new(StreamSet::new(positions, TailBounds::of(&config)));
        let registry = Arc::new(Registry::new());
        let ring = Ring::new(config.max_pending_commands);
        let (appender, appender_task) = Appender::spawn(
            log.clone(),
            streams.clone(),
            ring.signals.poke.clone(),
            &registry,
        );
        // With `[writer.redis]`, the ring is also published on Redis (beside TCP).
        let redis = RedisWriter::of(&config, &instance, &declared, &ring, &registry);
        let streamer = Streamer {
            log: log.clone(),
            streams: streams.clone(),
            instance: instance.clone(),
            signals: ring.signals.clone(),
            frames: ring.frames.clone(),
            batch_rows: config.stream_batch_rows,
            high_water: ring.high_water,
        };
        let streamer_task = tokio::spawn(streamer.run(shutdown.clone()));
        let holds = Arc::new(CatchupHolds::new(config.retention.hold()));
        let retention = Retention::new(
            log.clone(),
            streams.clone(),
            holds.clone(),
            config.retention.clone(),
            &registry,
        )
        .await
        .context("reading the log's retention floors")?;
        let retention_task = retention
            .enabled()
            .then(|| tokio::spawn(retention.run(shutdown.clone())));
        let replication_tls =
            ServerTls::of(&config.replication, "writer.replication", tls::ALPN_NONE)?;
        let http_tls = ServerTls::of(&config.http, "writer.http", tls::ALPN_HTTP1)?;
        let context = Arc::new(ReplicationContext::new(
            &config,
            &ring,
            &registry,
            replication_tls,
        ));
        let peers = context.peers.clone();
        let redis_task = redis.map(|redis| tokio::spawn(redis.run(shutdown.clone())));
        let connections = ConnectionMetrics::register(&registry);
        let replication = Acceptor::new(
            replication,
            "writer.replication",
            &config.replication,
            &connections,
        );
        let http = Acceptor::new(http, "writer.http", &config.http, &connections);
        let replication_task =
            tokio::spawn(fanout::tcp::serve(replication, context, shutdown.clone()));
        let console = crate::console::router(
            Arc::new(console::WriterSource {
                name: instance.as_str().to_owned(),
                server_name: config.server_name.clone(),
                streams: streams.clone(),
                peers,
            }),
            api::read_bearer(&config.read_token, &config.write_token),
            shutdown.clone(),
        );
        let api = writer_api(
            &config,
            appender,
            streams,
            log.clone(),
            instance,
            registry,
            holds,
        );
        let http_task = tokio::spawn(crate::http::serve(
            http,
            http_tls,
            api::router(api, console),
            shutdown.clone(),
        ));
        tracing::info!(%http_addr, %replication_addr, "writer listening");
        Ok(Writer {
            http_addr,
            replication_addr,
            http: http_task,
            appender: appender_task,
            streamer: streamer_task,
            replication: replication_task,
            redis: redis_task,
            retention: retention_task,
            log,
        })
    }

    /// Where the HTTP API listens.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Where the replication server listens.
    pub fn replication_addr(&self) -> SocketAddr {
        self.replication_addr
    }

    /// Waits for every task to finish after shutdown: in-flight appends are committed and
    /// answered, connections closed, the log closed.
    pub async fn join(self) -> anyhow::Result<()> {
        self.http.await.context("HTTP server task")?;
        // The HTTP server held the last appender handle; the appender now drains and ends.
        self.appender.await.context("appender task")?;
        self.streamer.await.context("streamer task")?;
        self.replication.await.context("replication server task")?;
        if let Some(redis) = self.redis {
            redis.await.context("Redis replication task")?;
        }
        if let Some(retention) = self.retention {
            retention.await.context("retention task")?;
        }
        self.log.close().await;
        Ok(())
    }
}

impl Writer {
    /// Binds `config.http.address` and `config.replication.address` (port 0 picks a free port), then
    /// [`Writer::start`]s.
    pub async fn bind(config: WriterConfig, shutdown: CancellationToken) -> anyhow::Result<Writer> {
        let http = accept::bind(config.http.address)
            .with_context(|| format!("binding HTTP on {}", config.http.address))?;
        let replication = accept::bind(config.replication.address)
            .with_context(|| format!("binding replication on {}", config.replication.address))?;
        Writer::start(config, http, replication, shutdown).await
    }
}

/// Binds the configured addresses, prints them, and runs until `shutdown`.
pub async fn run(config: WriterConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let writer = Writer::bind(config, shutdown).await?;
    println!(
        "streamhost writer listening http={} replication={}",
        writer.http_addr(),
        writer.replication_addr()
    );
    writer.join().await
}

/// Opens the log `config` names (`[writer.database] url`, else the SQLite file in the data
/// folder, created if need be).
async fn open_log(config: &WriterConfig, instance: &InstanceName) -> anyhow::Result<Log> {
    let log = match &config.database.url {
        None => {
            std::fs::create_dir_all(&config.data)
                .with_context(|| format!("creating data folder {}", config.data.display()))?;
            Log::open(&config.log_path(), instance.clone())
                .await
                .with_context(|| format!("opening log {}", config.log_path().display()))?
        }
        Some(url) => Log::open_url(url, instance.clone())
            .await
            .with_context(|| format!("opening log {}", streamhost_log::redact_url(url)))?,
    };
    tracing::info!(backend = log.backend().as_str(), "log open");
    Ok(log)
}

/// Declares the streams in the log and reads their positions.
async fn declared_positions(
    log: &Log,
    declared: &[StreamName],
) -> anyhow::Result<Vec<(StreamName, Token)>> {
    log.declare_streams(declared)
        .await
        .context("declaring streams")?;
    Ok(log
        .positions()
        .await
        .context("reading stream positions")?
        .into_iter()
        .filter(|(name, _)| declared.contains(name))
        .collect())
}

/// The HTTP API over the appender, the tail and the log.
fn writer_api(
    config: &WriterConfig,
    appender: Appender,
    streams: Arc<StreamSet>,
    log: Log,
    instance: InstanceName,
    registry: Arc<Registry>,
    holds: Arc<CatchupHolds>,
) -> Arc<WriterApi> {
    let metrics = ApiMetrics::register(&registry, &streams);
    Arc::new(WriterApi {
        appender,
        streams,
        log,
        instance,
        server_name: config.server_name.clone(),
        write_token: config.write_token.clone(),
        replication_secret: config.replication_secret.clone(),
        read_token: config.read_token.clone(),
        max_body_bytes: config.max_body_bytes,
        max_append_rows: config.max_append_rows,
        catchup_row_limit: config.catchup_row_limit,
        metrics,
        registry,
        holds,
    })
}
