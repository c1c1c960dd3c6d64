//! [`Lane`]: the delivery task of one destination. It keeps a window of the destination's
//! waiting pushes (ids and keys, in id order), starts those that are due — never one whose key
//! has an earlier push still waiting or in flight, at most `concurrency` at once, at most
//! `rate_per_second` — and applies each attempt's [`Verdict`] to the outbox. A 429's
//! `Retry-After` pauses the whole destination until then.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::metrics::PushMetrics;
use super::outbox::{Outbox, Waiting};
use super::policy::{self, Verdict};
use super::sender::Sender;
use crate::clock::unix_ms;
use crate::config::DestinationConfig;
use crate::metrics::{Counter, Histogram};

/// Most waiting pushes a lane holds in memory; more are read as these leave.
const WINDOW: usize = 1_024;
/// The outbox is read again at least this often (pushes put back by the admin API, or
/// written while a read failed).
const POLL: Duration = Duration::from_secs(1);
/// Wait after a failed database access.
const DATABASE_RETRY: Duration = Duration::from_secs(1);

/// One attempt's end: the push, its verdict and how long it took.
type Finished = (i64, Verdict, Duration);

/// The pushes of `window` (by id: the push and whether it is in flight) to start at `now_ms`,
/// at most `slots`, in id order, and when the earliest one held back by its back-off is due.
/// A push is held back while an earlier push of its key waits or is in flight: pushes of one
/// key are delivered in order.
fn choose(
    window: &BTreeMap<i64, (Waiting, bool)>,
    now_ms: u64,
    slots: usize,
) -> (Vec<(i64, String)>, Option<u64>) {
    let mut blocked: HashSet<&str> = HashSet::new();
    let mut next_due = None::<u64>;
    let mut due = Vec::new();
    for (id, (push, flying)) in window {
        if due.len() >= slots {
            break;
        }
        let free = blocked.insert(push.key.as_str());
        if *flying || !free {
            continue;
        }
        if push.next_attempt_ms > now_ms {
            next_due = Some(next_due.map_or(push.next_attempt_ms, |n| n.min(push.next_attempt_ms)));
            continue;
        }
        due.push((*id, push.key.clone()));
    }
    (due, next_due)
}

/// A destination's counters, looked up once.
struct Counters {
    sent: Counter,
    failed: Counter,
    retried: Counter,
    dead: Counter,
    send_duration: Histogram,
}

/// One destination's delivery; see the module docs.
pub(crate) struct Lane {
    name: String,
    config: DestinationConfig,
    sender: Arc<Sender>,
    outbox: Outbox,
    counters: Counters,
    /// Waiting pushes by id, and whether each is in flight.
    window: BTreeMap<i64, (Waiting, bool)>,
    /// The highest id read from the outbox.
    last_id: i64,
    /// Whether the last read filled the window (so more may wait).
    more: bool,
    /// Not called before this time (Unix ms): a `Retry-After`.
    paused_until_ms: u64,
    /// The earliest next start the rate limit allows.
    next_start: Instant,
    in_flight: JoinSet<Finished>,
}

impl Lane {
    pub(crate) fn new(
        name: String,
        config: DestinationConfig,
        sender: Sender,
        outbox: Outbox,
        metrics: &PushMetrics,
    ) -> Lane {
        let by = [name.as_str()];
        let counters = Counters {
            sent: metrics.sent.with(&by),
            failed: metrics.failed.with(&by),
            retried: metrics.retried.with(&by),
            dead: metrics.dead.with(&by),
            send_duration: metrics.send_duration.with(&by),
        };
        Lane {
            name,
            config,
            sender: Arc::new(sender),
            outbox,
            counters,
            window: BTreeMap::new(),
            last_id: 0,
            more: true,
            paused_until_ms: 0,
            next_start: Instant::now(),
            in_flight: JoinSet::new(),
        }
    }

    /// Delivers until `shutdown`; `wake` changes after every commit that wrote pushes.
    pub(crate) async fn run(mut self, mut wake: watch::Receiver<u64>, shutdown: CancellationToken) {
        match self.outbox.paused_until(&self.name).await {
            Ok(until) => self.paused_until_ms = until,
            Err(error) => {
                tracing::warn!(destination = %self.name, error = %format!("{error:#}"), "reading the outbox")
            }
        }
        let mut poll = tokio::time::interval(POLL);
        loop {
            if self.more && self.window.len() < WINDOW && !self.read().await {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(DATABASE_RETRY) => continue,
                }
            }
            let next_due = self.start_due().await;
            let sleep = next_due.map_or(POLL, |at| at.saturating_duration_since(Instant::now()));
            tokio::select! {
                _ = shutdown.cancelled() => break,
                changed = wake.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    self.more = true;
                }
                Some(finished) = self.in_flight.join_next(), if !self.in_flight.is_empty() => {
                    if let Ok((id, verdict, took)) = finished {
                        self.settle(id, verdict, took).await;
                    }
                }
                _ = poll.tick() => self.more = true,
                _ = tokio::time::sleep(sleep) => {}
            }
        }
        // Attempts in flight are dropped: their pushes stay in the outbox and are sent again
        // after the restart (at least once; the key lets the receiver drop the repeat).
        self.in_flight.abort_all();
    }

    /// Reads more waiting pushes into the window; false on a database error.
    async fn read(&mut self) -> bool {
        let room = WINDOW - self.window.len();
        match self.outbox.waiting(&self.name, self.last_id, room).await {
            Ok(rows) => {
                self.more = rows.len() == room;
                for row in rows {
                    self.last_id = self.last_id.max(row.id);
                    self.window.insert(row.id, (row, false));
                }
                true
            }
            Err(error) => {
                tracing::warn!(destination = %self.name, error = %format!("{error:#}"), "reading the outbox failed");
                false
            }
        }
    }

    /// Starts every push that may start now; returns when the next one may be due.
    async fn start_due(&mut self) -> Option<Instant> {
        let now_ms = unix_ms();
        let now = Instant::now();
        let at_ms = |ms: u64| now + Duration::from_millis(ms.saturating_sub(now_ms));
        if self.paused_until_ms > now_ms {
            return Some(at_ms(self.paused_until_ms));
        }
        let slots = self.config.concurrency.saturating_sub(self.in_flight.len());
        let (due, next_due_ms) = choose(&self.window, now_ms, slots);
        let next_due = next_due_ms.map(at_ms);
        for (id, key) in due {
            if self.config.rate_per_second > 0 {
                let now = Instant::now();
                if self.next_start > now {
                    return Some(self.next_start);
                }
                let gap = Duration::from_secs(1) / self.config.rate_per_second;
                let earliest = now.checked_sub(gap).unwrap_or(now);
                self.next_start = self.next_start.max(earliest) + gap;
            }
            let body = match self.outbox.body(id).await {
                Ok(Some(body)) => body,
                Ok(None) => {
                    // Gone (dropped or delivered by an earlier run): forget it.
                    self.window.remove(&id);
                    continue;
                }
                Err(error) => {
                    tracing::warn!(destination = %self.name, error = %format!("{error:#}"), "reading a push failed");
                    return Some(Instant::now() + DATABASE_RETRY);
                }
            };
            if let Some((_, flying)) = self.window.get_mut(&id) {
                *flying = true;
            }
            let sender = self.sender.clone();
            self.in_flight.spawn(async move {
                let started = Instant::now();
                let verdict = sender.send(&key, body).await;
                (id, verdict, started.elapsed())
            });
        }
        next_due
    }

    /// Applies an attempt's verdict to the outbox, the window and the metrics.
    async fn settle(&mut self, id: i64, verdict: Verdict, took: Duration) {
        self.counters.send_duration.observe(took.as_secs_f64());
        let Some((push, _)) = self.window.get(&id).cloned() else {
            return;
        };
        let now_ms = unix_ms();
        let attempts = push.attempts.saturating_add(1);
        let written = match verdict {
            Verdict::Delivered => {
                self.counters.sent.inc();
                self.outbox.delete(id).await.map(|()| None)
            }
            Verdict::Reject { reason } => {
                self.counters.failed.inc();
                self.bury(id, attempts, &reason, &reason, now_ms).await
            }
            Verdict::Retry {
                error,
                not_before_ms,
            } => {
                self.counters.failed.inc();
                let age_s = now_ms.saturating_sub(push.created_ms) / 1_000;
                if attempts >= self.config.max_attempts {
                    let reason = format!("gave up after {attempts} attempts: {error}");
                    self.bury(id, attempts, &error, &reason, now_ms).await
                } else if age_s >= self.config.max_age_s {
                    let reason = format!("older than max_age_s ({age_s} s): {error}");
                    self.bury(id, attempts, &error, &reason, now_ms).await
                } else {
                    self.counters.retried.inc();
                    let wait = policy::backoff(
                        attempts,
                        Duration::from_millis(self.config.backoff_initial_ms),
                        Duration::from_millis(self.config.backoff_max_ms),
                    );
                    let mut next = now_ms.saturating_add(wait.as_millis() as u64);
                    if let Some(not_before) = not_before_ms {
                        self.paused_until_ms = self.paused_until_ms.max(not_before);
                        next = next.max(not_before);
                    }
                    tracing::debug!(destination = %self.name, id, attempts, %error, "push failed; retrying later");
                    self.outbox
                        .reschedule(id, attempts, next, &error)
                        .await
                        .map(|()| Some((attempts, next)))
                }
            }
        };
        match written {
            Ok(None) => {
                self.window.remove(&id);
            }
            Ok(Some((attempts, next))) => {
                if let Some((push, flying)) = self.window.get_mut(&id) {
                    push.attempts = attempts;
                    push.next_attempt_ms = next;
                    *flying = false;
                }
            }
            Err(error) => {
                // The push stays as it was in the outbox: it is tried again.
                tracing::warn!(destination = %self.name, id, error = %format!("{error:#}"), "recording a push's attempt failed");
                if let Some((push, flying)) = self.window.get_mut(&id) {
                    push.next_attempt_ms = now_ms + DATABASE_RETRY.as_millis() as u64;
                    *flying = false;
                }
            }
        }
    }

    /// Moves a push to the dead pushes.
    async fn bury(
        &self,
        id: i64,
        attempts: u32,
        error: &str,
        reason: &str,
        now_ms: u64,
    ) -> anyhow::Result<Option<(u32, u64)>> {
        tracing::warn!(destination = %self.name, id, %reason, "push moved to the dead pushes");
        self.counters.dead.inc();
        self.outbox
            .bury(id, attempts, error, reason, now_ms)
            .await
            .map(|()| None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(pushes: &[(i64, &str, u64, bool)]) -> BTreeMap<i64, (Waiting, bool)> {
        pushes
            .iter()
            .map(|&(id, key, next_attempt_ms, flying)| {
                let push = Waiting {
                    id,
                    key: key.into(),
                    created_ms: 0,
                    attempts: 0,
                    next_attempt_ms,
                };
                (id, (push, flying))
            })
            .collect()
    }

    fn ids(due: &[(i64, String)]) -> Vec<i64> {
        due.iter().map(|(id, _)| *id).collect()
    }

    #[test]
    fn one_push_per_key_at_a_time_in_id_order() {
        let w = window(&[
            (1, "a", 0, false),
            (2, "a", 0, false),
            (3, "b", 0, false),
            (4, "c", 0, false),
        ]);
        let (due, next) = choose(&w, 100, 10);
        assert_eq!(
            ids(&due),
            [1, 3, 4],
            "the second push of a waits for the first"
        );
        assert_eq!(next, None);
    }

    #[test]
    fn a_key_in_flight_or_backing_off_holds_its_later_pushes() {
        let w = window(&[
            (1, "a", 0, true),
            (2, "a", 0, false),
            (3, "b", 500, false),
            (4, "b", 0, false),
            (5, "c", 0, false),
        ]);
        let (due, next) = choose(&w, 100, 10);
        assert_eq!(ids(&due), [5]);
        assert_eq!(next, Some(500), "b's first push is due at 500");
        let (due, _) = choose(&w, 500, 10);
        assert_eq!(
            ids(&due),
            [3, 5],
            "then b's first, never its second before it"
        );
    }

    #[test]
    fn at_most_the_free_slots_start() {
        let w = window(&[(1, "a", 0, false), (2, "b", 0, false), (3, "c", 0, false)]);
        assert_eq!(ids(&choose(&w, 0, 2).0), [1, 2]);
        assert!(choose(&w, 0, 0).0.is_empty());
    }
}
