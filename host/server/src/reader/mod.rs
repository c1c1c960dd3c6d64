//! `streamhost reader`: follows a writer over Synapse's replication protocol and hands every
//! batch, exactly once and in token order per (stream, instance), to a [`BatchSink`].
//!
//! Behaviour, HTTP API and configuration: `docs/reader.md`. Protocol:
//! `docs/replication.md` (from "The TCP session" to "Streams that reset").
//!
//! ```text
//!  writer ──TCP──▶ upstream ────bounded queue──▶ processor ──▶ sink + positions (one transaction)
//!    ▲  (NAME, PING, REPLICATE;        (POSITION rule, batch runs,        │
//!    │   reconnect with backoff)        group commit)                     ▼
//!    └──────────── HTTP catch-up ◀──────────┘                          store (reader.sqlite)
//! ```
//!
//! File map:
//! - [`upstream`]: the one upstream followed (`tcp`, `redis` or `synapse`), chosen once from
//!   the configuration: the follow loop (sessions, pings, reconnects, backpressure), its
//!   catch-up source and how the status names it.
//! - `inbound`: [`inbound::Inbound`], what every transport feeds the processor.
//! - `processor`: applying commands in order, one module per job (connections, the `RDATA`
//!   rules, the `POSITION` rule, runs, catch-up paging, group commits, status, the plugins'
//!   feed, failure pauses).
//! - `ledger`: applied and committed positions per (stream, instance), kept by the processor
//!   and by every plugin worker.
//! - [`batches`]: assembling `batch` runs per (stream, instance).
//! - [`catchup`]: the [`catchup::CatchupSource`] trait; fetching missed rows from the writer's
//!   catch-up endpoint (or its database).
//! - [`sink`]: [`Batch`], [`BatchSink`], the recording and discarding sinks.
//! - [`store`]: the reader's SQLite database.
//! - `disk`: telling a commit that failed on a full disk from other failures.
//! - [`status`]: [`ReaderStatus`] and the metrics.
//! - [`plugins`]: the Wasm plugins, their workers and their HTTP endpoints.
//! - `push`: delivering the plugins' pushes from the outbox to their destinations.
//! - `api`: the HTTP API.

mod api;
pub mod auth;
pub mod batches;
pub mod catchup;
mod console;
mod disk;
pub(crate) mod inbound;
pub(crate) mod lag;
pub(crate) mod ledger;
pub mod plugins;
pub(crate) mod processor;
pub(crate) mod push;
pub mod sink;
pub mod status;
pub mod store;
pub(crate) mod upstream;

use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use self::batches::BatchAssembler;
use self::plugins::PluginHost;
use self::processor::{Limits, Processor};
pub use self::sink::{Batch, BatchSink, BoxFuture, DiscardSink, RecordingSink};
use self::status::Shared;
pub use self::status::{
    ConnectionState, ConnectionStatus, GapRange, ReaderStatus, ResetRange, StreamStatus,
};
pub use self::store::{ReaderStore, Run};
use self::upstream::{Inlet, Upstream};
use crate::config::ReaderConfig;
use crate::http::Bearer;
use crate::net::accept::{self, Acceptor, ConnectionMetrics};
use crate::net::tls::{self, ServerTls};

/// A running reader: its connection, processor and HTTP API tasks.
pub struct Reader {
    http_addr: SocketAddr,
    shared: Arc<Shared>,
    store: ReaderStore,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
    plugins: Option<Arc<PluginHost>>,
}

impl Reader {
    /// Reads the configuration's secret files, opens the reader's database, then starts
    /// following `config`'s upstream and serving the HTTP API on `http`, until `shutdown`
    /// fires.
    ///
    /// `sink` receives the batches; `None` means the recording sink when `config.record_rows`,
    /// else a sink that discards them (positions are still kept).
    ///
    /// Everything the reader logs is in a `reader` span naming it (`reader{name=reader-1}`),
    /// so the log lines of readers sharing a process (the demo, `plugin dev`) say whose they are.
    pub async fn start(
        config: ReaderConfig,
        http: TcpListener,
        sink: Option<Arc<dyn BatchSink>>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Reader> {
        let span = tracing::info_span!("reader", name = %config.name);
        tracing::Instrument::instrument(Reader::start_named(config, http, sink, shutdown), span)
            .await
    }

    /// [`Reader::start`] inside the reader's span.
    async fn start_named(
        mut config: ReaderConfig,
        http: TcpListener,
        sink: Option<Arc<dyn BatchSink>>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Reader> {
        config.load_secrets()?;
        config.validate()?;
        let http_tls = ServerTls::of(&config.http, "reader.http", tls::ALPN_HTTP1)?;
        let http_addr = http
            .local_addr()
            .context("reading the HTTP listener's address")?;
        config.check_exposure(http_addr)?;
        let upstream = Upstream::choose(&config).await?;
        let store = open_store(&config).await?;
        let shared = Arc::new(Shared::new(
            config.name.clone(),
            upstream.description().to_owned(),
        ));
        // Any task ending (shutdown, or a panic) stops the others.
        let stop = shutdown.child_token();
        let (drop_tx, drop_rx) = watch::channel(0);
        let (tx, rx) = inbound::queue(
            config.inbound_queue,
            config.inbound_queue_mib.saturating_mul(1 << 20),
        );
        let processor = Processor::new(
            store.clone(),
            sink.unwrap_or_else(|| default_sink(&config)),
            upstream.catchup(),
            shared.clone(),
            drop_tx,
            stop.clone(),
            Limits::new(
                Duration::from_millis(config.reconnect_max_ms),
                config.inbound_queue,
                config.inbound_queue_mib.saturating_mul(1 << 20),
            ),
        )
        .await?;
        let processor = upstream.configure(processor);
        let (processor, plugins) =
            start_plugins(&config, processor, &upstream, &store, &shared, &stop).await?;
        let inlet = Inlet {
            tx,
            drop_rx,
            shared: shared.clone(),
            shutdown: stop.clone(),
        };
        let connections = ConnectionMetrics::register(&shared.metrics.registry);
        let http = Acceptor::new(http, "reader.http", &config.http, &connections);
        let read = Bearer::optional(config.read_token.as_deref())
            .or(config.plugins.admin_token.as_deref());
        let console = crate::console::router(
            Arc::new(console::ReaderSource {
                shared: shared.clone(),
                plugins: plugins.clone(),
                admin: config.plugins.admin_token.is_some(),
            }),
            // The admin token; only a reader without one shows its console to the read token.
            Bearer::optional(
                config
                    .plugins
                    .admin_token
                    .as_deref()
                    .or(config.read_token.as_deref()),
            ),
            stop.clone(),
        );
        let router = api::router(shared.clone(), plugins.clone(), read, console);
        let tasks = vec![
            spawn_guarded("processor", &stop, processor.run(rx)),
            spawn_guarded("connection", &stop, upstream.follow(inlet)),
            spawn_guarded(
                "http",
                &stop,
                crate::http::serve(http, http_tls, router, stop.clone()),
            ),
        ];
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
    /// Binds `config.http.address` (port 0 picks a free port), then [`Reader::start`]s.
    pub async fn bind(
        config: ReaderConfig,
        sink: Option<Arc<dyn BatchSink>>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Reader> {
        let listener = accept::bind(config.http.address).with_context(|| {
            format!(
                "binding the reader's HTTP listener on {}",
                config.http.address
            )
        })?;
        Reader::start(config, listener, sink, shutdown).await
    }
}

/// `streamhost reader`: binds `config.http.address`, announces the address on stdout
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

/// Creates the data folder and opens the reader's database in it.
async fn open_store(config: &ReaderConfig) -> anyhow::Result<ReaderStore> {
    std::fs::create_dir_all(&config.data).with_context(|| {
        format!(
            "creating the reader's data folder {}",
            config.data.display()
        )
    })?;
    ReaderStore::open(&config.db_path()).await
}

/// The sink when none is given: recording with `record_rows`, else discarding.
fn default_sink(config: &ReaderConfig) -> Arc<dyn BatchSink> {
    if config.record_rows {
        Arc::new(RecordingSink)
    } else {
        Arc::new(DiscardSink)
    }
}

/// Starts the plugins when `[reader.plugins] dir` is set, and has the processor feed them.
async fn start_plugins(
    config: &ReaderConfig,
    processor: Processor,
    upstream: &Upstream,
    store: &ReaderStore,
    shared: &Shared,
    stop: &CancellationToken,
) -> anyhow::Result<(Processor, Option<Arc<PluginHost>>)> {
    if config.plugins.dir.is_none() {
        return Ok((processor, None));
    }
    let positions = processor.committed();
    let pushes = match config.destinations.is_empty() {
        true => None,
        false => Some(push::PushDelivery::start(
            &config.destinations,
            store.pool().clone(),
            &shared.metrics.registry,
            stop,
        )?),
    };
    let host = PluginHost::start(
        config.plugins.clone(),
        crate::config::destinations_for_plugins(&config.destinations),
        pushes,
        &config.auth,
        config.data.clone(),
        store.pool().clone(),
        upstream.catchup(),
        &shared.metrics.registry,
        positions,
        stop.clone(),
    )
    .await?;
    let processor = processor.with_feed(host.feed().clone());
    Ok((processor, Some(host)))
}

/// Spawns `task`; its end (shutdown, or a panic) stops the reader's other tasks.
fn spawn_guarded(
    name: &'static str,
    stop: &CancellationToken,
    task: impl Future<Output = ()> + Send + 'static,
) -> (&'static str, JoinHandle<()>) {
    let guard = stop.clone().drop_guard();
    // The reader's span (its name) goes with the task, so its log lines say which reader.
    let handle = tokio::spawn(tracing::Instrument::in_current_span(async move {
        let _guard = guard;
        task.await;
    }));
    (name, handle)
}
