//! Pruning what plugins leave behind (`[reader.plugins.retention]`): dead letters in
//! `reader.sqlite` and failing batches' files in `plugin-failures/`, each by count and by age.
//! Runs once at start, then every `interval_ms`; a failure is logged and tried again next time.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use super::HostContext;
use crate::clock::unix_ms;
use crate::config::PluginRetention;
use crate::metrics::{Counter, Registry};

/// One day, in milliseconds.
const DAY_MS: u64 = 86_400_000;

/// The pruning task's counters.
struct Pruned {
    dead_letters: Counter,
    failure_files: Counter,
}

/// Starts the task that prunes until `shutdown`.
pub(super) fn spawn(
    ctx: Arc<HostContext>,
    config: PluginRetention,
    registry: &Registry,
    shutdown: CancellationToken,
) {
    let pruned = registry.counter_vec(
        "plugin_pruned_total",
        "Dead letters and failure files deleted by [reader.plugins.retention], by kind \
         (dead_letters, failure_files).",
        &["kind"],
    );
    let pruned = Pruned {
        dead_letters: pruned.with(&["dead_letters"]),
        failure_files: pruned.with(&["failure_files"]),
    };
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_millis(config.interval_ms));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = shutdown.cancelled() => return,
            }
            prune_once(&ctx, &config, &pruned).await;
        }
    });
}

/// One pass over both.
async fn prune_once(ctx: &Arc<HostContext>, config: &PluginRetention, pruned: &Pruned) {
    let before_ms = match config.dead_letter_days {
        0 => 0,
        days => unix_ms().saturating_sub(days.saturating_mul(DAY_MS)) as i64,
    };
    match ctx
        .store
        .prune_dead_letters(config.dead_letters, before_ms)
        .await
    {
        Ok(0) => {}
        Ok(n) => {
            pruned.dead_letters.add(n);
            tracing::info!(dead_letters = n, "pruned dead letters");
        }
        Err(error) => tracing::warn!(error = %format!("{error:#}"), "pruning dead letters failed"),
    }
    let before = match config.failure_file_days {
        0 => None,
        days => SystemTime::now().checked_sub(Duration::from_millis(days.saturating_mul(DAY_MS))),
    };
    let keep = config.failure_files;
    let files = ctx.clone();
    match tokio::task::spawn_blocking(move || files.failures.prune(keep, before)).await {
        Ok(Ok(0)) => {}
        Ok(Ok(n)) => {
            pruned.failure_files.add(n);
            tracing::info!(failure_files = n, "pruned failure files");
        }
        Ok(Err(error)) => tracing::warn!(%error, "pruning failure files failed"),
        Err(error) => tracing::warn!(%error, "pruning failure files stopped"),
    }
}
