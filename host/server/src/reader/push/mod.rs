//! Pushes (`docs/pushers.md`): delivering what plugins pushed. A plugin's `push` calls are
//! written to the outbox in the same transaction as its cursor (`plugins::store`); here one
//! task per destination (a [`lane::Lane`]) sends them, in order per (destination, key), with
//! `Idempotency-Key: <key>`, retrying with back-off and moving those it gives up on to the dead
//! pushes. Plugin batches never wait for delivery: a commit only wakes the lanes.
//!
//! ```text
//! plugin worker ──commit (cursor + push_outbox)──▶ wake ──▶ lane per destination ──POST──▶ url
//!                                                              │ 2xx: delete   │ 429/5xx/error: back-off
//!                                                              └ 4xx, attempts, age: push_dead
//! ```
//!
//! File map: `outbox` (the tables), `lane` (one destination's task), `sender` (its HTTP
//! client), `policy` (verdicts, back-off, `Retry-After`), `metrics`, `admin` (dead pushes and
//! status under `/v1/admin/pushes`).

pub(crate) mod admin;
mod lane;
mod metrics;
pub(crate) mod outbox;
mod policy;
mod sender;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use self::lane::Lane;
use self::metrics::PushMetrics;
use self::outbox::{Depth, Outbox};
use self::sender::Sender;
use crate::clock::unix_ms;
use crate::config::DestinationConfig;
use crate::metrics::Registry;

/// How often the depth and age gauges are refreshed.
const GAUGES_EVERY: Duration = Duration::from_secs(1);

/// The running delivery worker.
pub(crate) struct PushDelivery {
    outbox: Outbox,
    wake: watch::Sender<u64>,
    destinations: Vec<String>,
}

impl PushDelivery {
    /// Starts a lane per destination and the gauges' refresher, until `shutdown`. A bad
    /// destination (header, `ca_file`) fails here.
    pub(crate) fn start(
        destinations: &BTreeMap<String, DestinationConfig>,
        pool: sqlx::SqlitePool,
        registry: &Registry,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Arc<PushDelivery>> {
        let outbox = Outbox::new(pool);
        let metrics = PushMetrics::new(registry);
        let (wake, _) = watch::channel(0u64);
        let mut lanes = Vec::new();
        for (name, config) in destinations {
            let sender = Sender::new(name, config)?;
            lanes.push(Lane::new(
                name.clone(),
                config.clone(),
                sender,
                outbox.clone(),
                &metrics,
            ));
        }
        for lane in lanes {
            tokio::spawn(tracing::Instrument::in_current_span(
                lane.run(wake.subscribe(), shutdown.clone()),
            ));
        }
        let delivery = Arc::new(PushDelivery {
            outbox,
            wake,
            destinations: destinations.keys().cloned().collect(),
        });
        tokio::spawn(refresh_gauges(delivery.clone(), metrics, shutdown.clone()));
        Ok(delivery)
    }

    /// Tells the lanes that pushes were committed.
    pub(crate) fn wake(&self) {
        self.wake.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Depth, oldest push and dead pushes of every declared destination.
    pub(crate) async fn depths(&self) -> anyhow::Result<Vec<Depth>> {
        let mut found: BTreeMap<String, Depth> = self
            .outbox
            .depths()
            .await?
            .into_iter()
            .map(|d| (d.destination.clone(), d))
            .collect();
        for name in &self.destinations {
            found.entry(name.clone()).or_insert_with(|| Depth {
                destination: name.clone(),
                depth: 0,
                oldest_ms: None,
                dead: 0,
            });
        }
        Ok(found.into_values().collect())
    }

    /// The outbox tables.
    pub(crate) fn outbox(&self) -> &Outbox {
        &self.outbox
    }
}

/// Sets `push_outbox_depth` and `push_outbox_oldest_age_seconds` every [`GAUGES_EVERY`].
async fn refresh_gauges(
    delivery: Arc<PushDelivery>,
    metrics: PushMetrics,
    shutdown: CancellationToken,
) {
    let mut every = tokio::time::interval(GAUGES_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let Ok(depths) = delivery.depths().await else {
            continue;
        };
        let now_ms = unix_ms() as i64;
        for depth in depths {
            let by = [depth.destination.as_str()];
            metrics.depth.with(&by).set(depth.depth);
            let age = depth
                .oldest_ms
                .map_or(0, |oldest| (now_ms - oldest).max(0) / 1_000);
            metrics.oldest_age.with(&by).set(age);
        }
    }
}
