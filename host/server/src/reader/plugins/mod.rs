//! Reader plugins: Wasm components that turn committed batches into cache invalidations and
//! notifications, each following the reader at its own pace. For plugin authors:
//! `docs/plugins.md`; the runtime itself is the `streamhost-plugin-runtime` crate.
//!
//! ```text
//! processor ──commit──▶ feed ──▶ worker (one thread per plugin) ──▶ plugin_cursors, plugin_kv
//!                         │        │  on-batch → effects                 (one transaction)
//!            writer ◀─────┘gaps    ├─▶ query cache (invalidate)      ◀── GET /v1/query/...
//!                                  └─▶ notification hub (notify)     ◀── GET /v1/notifications
//! ```
//!
//! File map: `feed` (committed batches in memory), `worker` (the per-plugin loop: applying,
//! gaps, the failure policy, commits, control, reloads; its cursors in a
//! `Ledger`), `slot` (a plugin's version, channel and status), `store` (plugin tables),
//! `loader` (finding, loading and reloading plugins; the folder watcher), [`query_cache`],
//! `query_queue` (each plugin's bounded queue of cache misses), [`notifications`], `api` (the
//! HTTP endpoints), `rate_limit` (requests per client address on them), `admin` (the admin
//! endpoints), `authorizer` (the `[reader.auth]` authorizer plugin, asked by `reader::auth`),
//! `observe` (the hook a tool such as `streamhost plugin dev` watches the calls through),
//! `prune` (dead letters and failure files pruned by count and age).

mod admin;
mod api;
mod authorizer;
mod feed;
mod files;
mod loader;
pub mod notifications;
mod observe;
mod prune;
pub mod query_cache;
mod query_queue;
mod rate_limit;
mod slot;
mod store;
mod worker;

pub use self::admin::REQUEST_TIMEOUT as ADMIN_REQUEST_TIMEOUT;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use anyhow::Context as _;

use streamhost_plugin_runtime::{Runtime, RuntimeConfig};
use tokio_util::sync::CancellationToken;

pub(crate) use self::api::{router as api_router, summaries_json};
#[cfg(test)]
pub(crate) use self::feed::FeedRead;
pub(crate) use self::feed::{Advance, Feed, FeedBounds, ReaderPositions, Reset};
use self::notifications::{NotificationHub, RingBounds};
pub use self::observe::{AppliedBatch, PluginObserver};
use self::query_cache::QueryCache;
pub use self::slot::{FailureReport, PluginRunState, PluginSlot};
use self::store::PluginStore;
use super::auth::{Auth, Authorize};
use super::catchup::CatchupSource;
use super::push::PushDelivery;
use crate::config::{AuthConfig, PluginsConfig};
use crate::metrics::{Buckets, CounterVec, GaugeVec, HistogramVec, Registry};

/// The plugin metrics on the reader's `/metrics`.
pub(crate) struct PluginMetrics {
    batches: CounterVec,
    rows: CounterVec,
    effects: CounterVec,
    failures: CounterVec,
    quarantines: CounterVec,
    reloads: CounterVec,
    counters: CounterVec,
    gaps: CounterVec,
    resets: CounterVec,
    recycles: CounterVec,
    notifications_dropped: CounterVec,
    queries_dropped: CounterVec,
    rate_limited: CounterVec,
    batch_duration: HistogramVec,
    query_duration: HistogramVec,
    quarantined: GaugeVec,
    notification_delivery: HistogramVec,
}

impl PluginMetrics {
    fn new(registry: &Registry) -> PluginMetrics {
        PluginMetrics {
            batch_duration: registry.histogram_vec(
                "plugin_batch_duration_seconds",
                "Time of one on-batch call of a plugin (each attempt, failed ones too).",
                &["plugin"],
                Buckets::FAST,
            ),
            query_duration: registry.histogram_vec(
                "plugin_query_duration_seconds",
                "Time of one query call on a plugin's instance (cache misses; hits never \
                 reach the plugin), by plugin and query.",
                &["plugin", "query"],
                Buckets::FAST,
            ),
            quarantined: registry.gauge_vec(
                "plugin_quarantined",
                "1 while a plugin is quarantined (automatically or by an operator), else 0.",
                &["plugin"],
            ),
            notification_delivery: registry.histogram_vec(
                "plugin_notification_delivery_seconds",
                "From a notification's publication (the commit of the plugin's group whose \
                 effect it is) to its sending to a waiting client (long poll or event \
                 stream), once per client it goes to.",
                &["plugin"],
                Buckets::END_TO_END,
            ),
            batches: registry.counter_vec(
                "plugin_batches_total",
                "Batches a plugin applied.",
                &["plugin"],
            ),
            rows: registry.counter_vec(
                "plugin_rows_total",
                "Rows a plugin applied.",
                &["plugin"],
            ),
            effects: registry.counter_vec(
                "plugin_effects_total",
                "Effects a plugin's batches applied.",
                &["plugin"],
            ),
            failures: registry.counter_vec(
                "plugin_failures_total",
                "Failed plugin calls by reason (trap, cpu-deadline, memory, stack, effects, outside-grant, retry, skip, fatal).",
                &["plugin", "reason"],
            ),
            quarantines: registry.counter_vec(
                "plugin_quarantines_total",
                "Times a plugin was quarantined.",
                &["plugin"],
            ),
            reloads: registry.counter_vec(
                "plugin_reloads_total",
                "Reloads by result (ok, failed).",
                &["plugin", "result"],
            ),
            counters: registry.counter_vec(
                "plugin_counter_total",
                "Counters plugins keep through the counters import.",
                &["plugin", "name"],
            ),
            gaps: registry.counter_vec(
                "plugin_gaps_total",
                "Ranges a plugin missed that no catch-up source can provide (it fell behind \
                 the feed while following a Synapse); each is a dead letter.",
                &["plugin", "stream"],
            ),
            resets: registry.counter_vec(
                "plugin_stream_resets_total",
                "Times a plugin's cursor moved back because the stream's writer restarted its \
                 tokens (Synapse's typing, federation, presence_federation); the plugin then \
                 gets the new run's rows from its start.",
                &["plugin", "stream"],
            ),
            recycles: registry.counter_vec(
                "plugin_instances_recycled_total",
                "Times a plugin's instance was replaced between batches because its memory had \
                 grown by three quarters of the room its budget left it at rest (a guest that \
                 never frees, such as componentize-py 0.25.1 after kv.set); the next batch \
                 starts on a fresh instance, with no failed call.",
                &["plugin"],
            ),
            notifications_dropped: registry.counter_vec(
                "plugin_notifications_dropped_total",
                "Notifications a plugin published that the ring dropped, by the bound that \
                 dropped them: entries or bytes (the whole ring), plugin_bytes (the plugin's \
                 own share).",
                &["plugin", "bound"],
            ),
            queries_dropped: registry.counter_vec(
                "plugin_queries_dropped_total",
                "Queries not run, by reason: queue-full (answered 503 at once), client-gone \
                 (the client left before the worker got to it), expired (waited longer than \
                 queue_timeout_ms; answered 503).",
                &["plugin", "reason"],
            ),
            rate_limited: registry.counter_vec(
                "reader_requests_rate_limited_total",
                "Requests to the query and notification endpoints answered 429 because their \
                 client address was over [reader.plugins.rate_limit].",
                &["endpoint"],
            ),
        }
    }
}

/// What every worker shares.
pub(crate) struct HostContext {
    store: PluginStore,
    catchup: Arc<dyn CatchupSource>,
    cache: Arc<QueryCache>,
    hub: Arc<NotificationHub>,
    feed: Arc<Feed>,
    handle: tokio::runtime::Handle,
    failures: files::FailureFiles,
    retries: u32,
    backoff: Duration,
    /// Queued queries answered at most between two groups.
    queries_per_batch: usize,
    /// Longest a query waits in its plugin's queue.
    queue_timeout: Duration,
    metrics: PluginMetrics,
    /// The delivery worker of the pushes, when destinations are declared.
    pushes: Option<Arc<PushDelivery>>,
    /// Told about every call, when a tool watches (`streamhost plugin dev`).
    observer: OnceLock<Arc<dyn PluginObserver>>,
}

/// The reader's plugins.
pub struct PluginHost {
    ctx: Arc<HostContext>,
    runtime: Arc<Runtime>,
    config: PluginsConfig,
    slots: RwLock<BTreeMap<String, Arc<PluginSlot>>>,
    threads: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>,
    shutdown: CancellationToken,
    /// The API tokens, when `[reader.auth]` is enabled.
    auth: Option<Arc<Auth>>,
}

impl PluginHost {
    /// Starts the plugins of `config.dir` (if any): loads each, starts its worker, watches the
    /// folder. A plugin that fails to load is reported and left out; the reader runs on.
    /// With `auth` enabled, the query and notification endpoints require its tokens.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn start(
        config: PluginsConfig,
        destinations: streamhost_plugin_runtime::Destinations,
        pushes: Option<Arc<PushDelivery>>,
        auth: &AuthConfig,
        data: PathBuf,
        pool: sqlx::SqlitePool,
        catchup: Arc<dyn CatchupSource>,
        registry: &Registry,
        positions: ReaderPositions,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Arc<PluginHost>> {
        let runtime_config = RuntimeConfig {
            cache_dir: Some(
                config
                    .compile_cache
                    .clone()
                    .unwrap_or_else(|| data.join("compiled")),
            ),
            max_wasm_stack: config.max_wasm_stack_kib.saturating_mul(1024),
            destinations,
            perf_map: config.perf_map,
            ..RuntimeConfig::default()
        };
        let runtime = tokio::task::spawn_blocking(move || Runtime::new(runtime_config)).await??;
        let metrics = PluginMetrics::new(registry);
        let authorizer = authorizer::Authorizer::of(auth, registry).map(Arc::new);
        let auth = match auth.is_enabled() {
            true => {
                let asked = authorizer.clone().map(|a| a as Arc<dyn Authorize>);
                Some(Arc::new(
                    Auth::open(auth, pool.clone(), registry, asked).await?,
                ))
            }
            false => None,
        };
        let ctx = Arc::new(HostContext {
            store: PluginStore::new(pool),
            catchup,
            cache: Arc::new(
                QueryCache::new(
                    config.query_cache_entries,
                    config.query_cache_mib.saturating_mul(1 << 20),
                )
                .per_plugin(config.queries.cache_keys, config.queries.cache_window),
            ),
            hub: Arc::new(
                NotificationHub::new(
                    RingBounds::of(&config),
                    Some(metrics.notifications_dropped.clone()),
                )
                .with_delivery_metric(metrics.notification_delivery.clone()),
            ),
            feed: Arc::new(Feed::new(FeedBounds::of(&config), positions)),
            handle: tokio::runtime::Handle::current(),
            failures: files::FailureFiles::open(&data).with_context(|| {
                format!(
                    "opening {} in the reader's data folder {}",
                    files::FAILURES_FOLDER,
                    data.display()
                )
            })?,
            retries: config.retries,
            backoff: Duration::from_millis(config.retry_backoff_ms),
            queries_per_batch: config.queries.per_batch,
            queue_timeout: Duration::from_millis(config.queries.queue_timeout_ms),
            metrics,
            pushes,
            observer: OnceLock::new(),
        });
        let host = Arc::new(PluginHost {
            ctx,
            runtime: Arc::new(runtime),
            config,
            slots: RwLock::new(BTreeMap::new()),
            threads: std::sync::Mutex::new(Vec::new()),
            shutdown,
            auth,
        });
        if let Some(authorizer) = &authorizer {
            authorizer.attach(Arc::downgrade(&host));
        }
        prune::spawn(
            host.ctx.clone(),
            host.config.retention.clone(),
            registry,
            host.shutdown.clone(),
        );
        if let Some(dir) = host.config.dir.clone() {
            loader::load_all(&host, &dir).await;
            if host.config.watch {
                loader::watch(host.clone(), dir)?;
            }
        }
        Ok(host)
    }

    /// Tells `observer` about every batch the plugins apply and every failed call from now
    /// on; false if an observer was already set.
    pub fn observe(&self, observer: Arc<dyn PluginObserver>) -> bool {
        self.ctx.observer.set(observer).is_ok()
    }

    /// The delivery worker of the pushes, when destinations are declared.
    pub(crate) fn pushes(&self) -> Option<&Arc<PushDelivery>> {
        self.ctx.pushes.as_ref()
    }

    /// The notification hub the plugins publish to.
    pub(crate) fn hub(&self) -> &Arc<NotificationHub> {
        &self.ctx.hub
    }

    /// The feed the processor publishes its commits to.
    pub(crate) fn feed(&self) -> &Arc<Feed> {
        &self.ctx.feed
    }

    /// The plugin named `name`.
    pub fn slot(&self, name: &str) -> Option<Arc<PluginSlot>> {
        self.slots
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Every plugin, by name.
    pub fn slots(&self) -> Vec<Arc<PluginSlot>> {
        self.slots
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Reloads `name` from its folder; the old version keeps running if the new one fails.
    /// Returns the running version's sha256.
    pub async fn reload(self: &Arc<Self>, name: &str) -> Result<String, String> {
        let slot = self
            .slot(name)
            .ok_or_else(|| format!("no plugin named {name}"))?;
        loader::reload(self, slot.dir().clone()).await
    }

    /// Lifts `name`'s quarantine; false if it was not quarantined.
    pub async fn resume(&self, name: &str) -> Result<bool, String> {
        let slot = self
            .slot(name)
            .ok_or_else(|| format!("no plugin named {name}"))?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        if !slot.send(slot::Control::Resume { reply }) {
            return Err(format!("plugin {name} is not running"));
        }
        answer.await.map_err(|_| format!("plugin {name} stopped"))
    }

    /// Quarantines `name` at its next batch boundary, as repeated failures would, with
    /// `reason` as its state's reason; false if it was quarantined already.
    pub async fn quarantine(&self, name: &str, reason: String) -> Result<bool, String> {
        let slot = self
            .slot(name)
            .ok_or_else(|| format!("no plugin named {name}"))?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        if !slot.send(slot::Control::Quarantine { reason, reply }) {
            return Err(format!("plugin {name} is not running"));
        }
        answer.await.map_err(|_| format!("plugin {name} stopped"))
    }

    /// Stops every worker after its current call and waits for the threads.
    pub(crate) async fn stop(&self) {
        for slot in self.slots() {
            slot.send(slot::Control::Stop);
            slot.set_worker(None);
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
    }
}
