//! Retention: the task that trims each stream's log by age, row count and size
//! (`[writer.retention]`), the holds catch-up requests place on the rows after them, and the
//! 410 a catch-up from below the floor gets.
//!
//! Each run, per stream with a limit: note a mark (position, now) for the age limit, ask the
//! log where each limit cuts, take the highest cut, then lower it to what must stay: the
//! newest token (the stream's position lives in it), everything the streamer has not sent
//! yet, and the rows after any catch-up request made within `hold_ms`. The tail's floor is
//! raised before the log deletes, so no read comes back short (design.md, decision 57).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use streamhost_log::Log;
use streamhost_proto::{StreamName, Token};
use tokio_util::sync::CancellationToken;

use super::recent::RecentRows;
use super::streams::StreamSet;
use crate::clock::unix_ms;
use crate::config::{RetentionLimits, WriterRetention};
use crate::http::{self, Response};
use crate::metrics::{Counter, Gauge, Registry};

/// Holds kept per stream; past it the highest `from` tokens go (the lowest is what counts).
const MAX_HOLDS: usize = 1_024;

/// The `from_token`s of recent catch-up requests, per stream: the rows after the lowest one
/// are kept until `hold` has passed since its request.
#[derive(Debug)]
pub struct CatchupHolds {
    hold: Duration,
    by_stream: Mutex<HashMap<StreamName, BTreeMap<Token, Instant>>>,
}

impl CatchupHolds {
    /// Holds lasting `hold` (zero: none are kept).
    pub fn new(hold: Duration) -> CatchupHolds {
        CatchupHolds {
            hold,
            by_stream: Mutex::default(),
        }
    }

    /// A catch-up of `stream` from `from` was just served.
    pub fn note(&self, stream: &StreamName, from: Token) {
        if self.hold.is_zero() {
            return;
        }
        let mut by_stream = self.by_stream.lock().expect("holds lock");
        let holds = by_stream.entry(stream.clone()).or_default();
        holds.insert(from, Instant::now());
        while holds.len() > MAX_HOLDS {
            holds.pop_last();
        }
    }

    /// The lowest `from` still held for `stream`, forgetting the expired ones.
    pub fn lowest(&self, stream: &StreamName) -> Option<Token> {
        let mut by_stream = self.by_stream.lock().expect("holds lock");
        let holds = by_stream.get_mut(stream)?;
        holds.retain(|_, at| at.elapsed() < self.hold);
        holds.keys().next().copied()
    }
}

/// The 410 of a catch-up from below the floor, in the shape of every error
/// (`{"errcode", "error"}`) plus `trimmed_upto` (ask again from it) and `earliest_token`
/// (the lowest token still kept, when known).
pub fn gone(stream: &StreamName, from: Token, floor: Token, earliest: Option<Token>) -> Response {
    http::json(
        StatusCode::GONE,
        &serde_json::json!({
            "errcode": "M_TRIMMED",
            "error": format!(
                "rows of stream {stream} after token {from} up to {floor} were trimmed by \
                 retention; catch up from token {floor}"
            ),
            "trimmed_upto": floor.0,
            "earliest_token": earliest.map(|t| t.0),
        }),
    )
}

/// One stream's retention metrics.
struct StreamMetrics {
    trimmed_rows: Counter,
    floor: Gauge,
}

/// The retention task: what it reads and where it reports.
pub struct Retention {
    log: Log,
    streams: Arc<StreamSet>,
    holds: Arc<CatchupHolds>,
    config: WriterRetention,
    metrics: HashMap<StreamName, StreamMetrics>,
    failures: Counter,
}

impl Retention {
    /// Sets each stream's floor from the log and registers the metrics.
    pub async fn new(
        log: Log,
        streams: Arc<StreamSet>,
        holds: Arc<CatchupHolds>,
        config: WriterRetention,
        registry: &Registry,
    ) -> anyhow::Result<Retention> {
        let trimmed_rows = registry.counter_vec(
            "retention_trimmed_rows_total",
            "Rows deleted from the log by retention, by stream.",
            &["stream"],
        );
        let floor = registry.gauge_vec(
            "retention_trimmed_upto",
            "The highest token trimmed from the log (1: none); catch-up from below it is \
             answered 410, by stream.",
            &["stream"],
        );
        let mut metrics = HashMap::new();
        for (stream, recent) in streams.iter() {
            let trimmed = log.trimmed_upto(stream).await?;
            recent.trim(trimmed);
            let label = [stream.as_str()];
            let stream_metrics = StreamMetrics {
                trimmed_rows: trimmed_rows.with(&label),
                floor: floor.with(&label),
            };
            stream_metrics.floor.set(trimmed.0);
            metrics.insert(stream.clone(), stream_metrics);
        }
        let failures = registry.counter(
            "retention_failures_total",
            "Retention runs of a stream that failed (logged; the next run tries again).",
        );
        Ok(Retention {
            log,
            streams,
            holds,
            config,
            metrics,
            failures,
        })
    }

    /// Whether any stream has a limit (else the task need not run).
    pub fn enabled(&self) -> bool {
        self.streams
            .iter()
            .any(|(stream, _)| self.config.limits(stream).any())
    }

    /// Runs every `interval_ms` until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(Duration::from_millis(self.config.interval_ms));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = shutdown.cancelled() => return,
            }
            for (stream, recent) in self.streams.iter() {
                let limits = self.config.limits(stream);
                if !limits.any() {
                    continue;
                }
                if let Err(error) = self.run_stream(stream, recent, limits).await {
                    self.failures.inc();
                    tracing::warn!(%stream, error = %error, "retention run failed; trying again next run");
                }
            }
        }
    }

    /// One run on one stream.
    async fn run_stream(
        &self,
        stream: &StreamName,
        recent: &RecentRows,
        limits: RetentionLimits,
    ) -> streamhost_log::Result<()> {
        let position = recent.position();
        let now_ms = unix_ms() as i64;
        if limits.max_age_s > 0 && position > recent.floor() {
            self.log.mark(stream, position, now_ms).await?;
        }
        let Some(cut) = self.cut(stream, limits, now_ms).await? else {
            return Ok(());
        };
        let mut upto = cut.min(Token(position.0 - 1)).min(recent.streamed());
        if let Some(held) = self.holds.lowest(stream) {
            upto = upto.min(held);
        }
        if upto <= recent.floor() {
            return Ok(());
        }
        recent.trim(upto);
        let outcome = self.log.trim(stream, upto, self.config.step_rows).await?;
        let metrics = &self.metrics[stream];
        metrics.trimmed_rows.add(outcome.rows);
        metrics.floor.set(outcome.upto.0);
        tracing::info!(%stream, trimmed_upto = outcome.upto.0, rows = outcome.rows, wanted = cut.0, "retention trimmed the log");
        Ok(())
    }

    /// The highest token any limit wants trimmed.
    async fn cut(
        &self,
        stream: &StreamName,
        limits: RetentionLimits,
        now_ms: i64,
    ) -> streamhost_log::Result<Option<Token>> {
        let mut cut: Option<Token> = None;
        if limits.max_age_s > 0 {
            let before = now_ms.saturating_sub((limits.max_age_s as i64).saturating_mul(1_000));
            cut = cut.max(self.log.cut_for_age(stream, before).await?);
        }
        if limits.max_rows > 0 {
            cut = cut.max(self.log.cut_for_rows(stream, limits.max_rows).await?);
        }
        if limits.max_bytes > 0 {
            cut = cut.max(self.log.cut_for_bytes(stream, limits.max_bytes).await?);
        }
        Ok(cut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::unwrap_used)]
    fn name(s: &str) -> StreamName {
        StreamName::new(s).unwrap()
    }

    #[test]
    fn holds_keep_the_lowest_from_until_they_expire() {
        let holds = CatchupHolds::new(Duration::from_millis(200));
        let events = name("events");
        assert_eq!(holds.lowest(&events), None);
        holds.note(&events, Token(9));
        holds.note(&events, Token(4));
        holds.note(&name("typing"), Token(1));
        assert_eq!(holds.lowest(&events), Some(Token(4)));
        let deadline = Instant::now() + Duration::from_secs(10);
        while holds.lowest(&events).is_some() {
            assert!(Instant::now() < deadline, "the holds expire");
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_zero_hold_keeps_nothing() {
        let holds = CatchupHolds::new(Duration::ZERO);
        holds.note(&name("events"), Token(3));
        assert_eq!(holds.lowest(&name("events")), None);
    }
}
