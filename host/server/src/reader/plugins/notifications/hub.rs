//! The notification hub: plugins' `notify(topic, payload)` effects land in an in-memory ring
//! (bounded by count and bytes, and by bytes per plugin: [`Ring`]), numbered from 1, which
//! waiters read after a sequence number.
//!
//! Plugin workers are plain threads, so [`NotificationHub::publish`] is synchronous: it takes
//! a std mutex for a moment and bumps a `tokio::sync::watch` of the latest sequence number,
//! which wakes every waiter and stream.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

use super::ring::{Bound, Ring, RingBounds, weight};
use crate::metrics::{CounterVec, HistogramVec};

/// Bytes of notifications one read copies out of the ring at most (one larger notification
/// goes alone), so a page answered to a client never costs more.
pub const PAGE_BYTES: usize = 4 << 20;

/// One notification published by a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notification {
    /// Position in the hub, from 1, strictly increasing.
    pub seq: u64,
    /// The plugin that published it.
    pub plugin: String,
    /// Its topic; readers subscribe by exact topic.
    pub topic: String,
    /// Its payload, usually JSON text, delivered as a string.
    pub payload: String,
    /// The row that produced it, when a plugin's batch did (not sent to clients): an
    /// authorizer is asked about it only once it has applied that row.
    #[serde(skip)]
    pub source: Option<Source>,
    /// When it was published (its plugin's group committed), for the delivery latency.
    #[serde(skip)]
    pub published: Instant,
}

impl crate::reader::auth::Delivered for Notification {
    fn topic(&self) -> &str {
        &self.topic
    }

    fn source(&self) -> Option<(&str, i64)> {
        self.source.as_ref().map(|s| (&*s.stream, s.token))
    }
}

/// Where in the log a notification comes from: the last token of the batch that produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The batch's stream (shared by the batch's notifications).
    pub stream: Arc<str>,
    /// The batch's last token.
    pub token: i64,
}

/// An answer of [`NotificationHub::wait`] and of the long-poll endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotificationPage {
    /// The `since` to pass next time: the seq of the last notification returned, or, when
    /// none matched, the latest seq examined (unchanged if nothing was published).
    pub next: u64,
    /// Matching notifications with seq > since, in seq order.
    pub notifications: Vec<Notification>,
    /// Notifications after `since` on one of the requested topics were dropped from the ring
    /// (or `since` is from a previous run of the reader).
    pub missed: bool,
}

/// Counts `evicted` in `dropped` (labels `plugin`, `bound`), one series lookup per run of
/// the same plugin and bound rather than one per notification: a full ring evicts one for
/// nearly every notification published.
fn count_dropped(dropped: &CounterVec, evicted: &[(Arc<Notification>, Bound)]) {
    let mut rest = evicted;
    while let Some((first, bound)) = rest.first() {
        let run = rest
            .iter()
            .take_while(|(item, b)| b == bound && item.plugin == first.plugin)
            .count();
        dropped
            .with(&[&first.plugin, bound.label()])
            .add(run as u64);
        rest = &rest[run..];
    }
}

/// An in-memory ring of the last notifications ([`Ring`]), with waiters.
pub struct NotificationHub {
    ring: Mutex<Ring>,
    latest: watch::Sender<u64>,
    /// `plugin_notifications_dropped_total{plugin, bound}`, when the hub reports drops.
    dropped: Option<CounterVec>,
    /// `plugin_notification_delivery_seconds{plugin}`, when the hub reports deliveries.
    delivery: Option<HistogramVec>,
}

impl NotificationHub {
    /// A hub keeping the notifications `bounds` allow, counting drops in `dropped` (labels
    /// `plugin`, `bound`) if given.
    pub fn new(bounds: RingBounds, dropped: Option<CounterVec>) -> NotificationHub {
        NotificationHub {
            ring: Mutex::new(Ring::new(bounds)),
            latest: watch::Sender::new(0),
            dropped,
            delivery: None,
        }
    }

    /// Observes in `delivery` (label `plugin`) how long each notification delivered waited.
    pub fn with_delivery_metric(mut self, delivery: HistogramVec) -> NotificationHub {
        self.delivery = Some(delivery);
        self
    }

    /// Records that `notifications` are being sent to a client: the time since each was
    /// published.
    pub fn delivered(&self, notifications: &[Notification]) {
        if let Some(delivery) = &self.delivery {
            for n in notifications {
                delivery.with(&[&n.plugin]).observe_since(n.published);
            }
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Ring> {
        // The ring is consistent between statements, so a poisoned lock is still usable.
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `(topic, payload)` items from `plugin` and wakes waiters. Synchronous and
    /// cheap: callable from plugin worker threads.
    pub fn publish(&self, plugin: &str, items: Vec<(String, String)>) {
        self.publish_from(
            plugin,
            items.into_iter().map(|(t, p)| (t, p, None)).collect(),
        );
    }

    /// [`NotificationHub::publish`] of `(topic, payload, source)` items.
    pub fn publish_from(&self, plugin: &str, items: Vec<(String, String, Option<Source>)>) {
        if items.is_empty() {
            return;
        }
        let mut evicted = Vec::new();
        let latest = {
            let mut ring = self.lock();
            for (topic, payload, source) in items {
                ring.push(plugin, topic, payload, source, &mut evicted);
            }
            ring.latest()
        };
        self.latest.send_replace(latest);
        if let Some(dropped) = &self.dropped {
            count_dropped(dropped, &evicted);
        }
        // The dropped notifications are freed here, outside the lock.
    }

    /// The seq of the newest notification (0 before any).
    pub fn latest_seq(&self) -> u64 {
        *self.latest.borrow()
    }

    /// The newest `max` notifications still held (any topic), oldest first.
    pub fn recent(&self, max: usize) -> Vec<Notification> {
        let ring = self.lock();
        let since = ring.latest().saturating_sub(max as u64);
        ring.after(since).map(|n| Notification::clone(n)).collect()
    }

    /// A receiver of the latest seq, changed on every publish; pair it with
    /// [`NotificationHub::read`] (subscribe first, then read, then await a change).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.latest.subscribe()
    }

    /// The notifications after `since` matching `topics`, at most `max` and about
    /// [`PAGE_BYTES`] (at least one), without waiting.
    ///
    /// A `since` beyond the latest seq (from a previous run of the reader) counts as 0 with
    /// `missed` set.
    pub fn read(&self, topics: &[String], since: u64, max: usize) -> NotificationPage {
        self.read_with_gap(topics, since, max).0
    }

    /// [`NotificationHub::read`], plus the seq of the newest notification dropped after
    /// `since` that may have matched `topics` (0 if none; for a `since` from a previous run,
    /// the newest dropped at all), read under the same lock.
    pub(super) fn read_with_gap(
        &self,
        topics: &[String],
        since: u64,
        max: usize,
    ) -> (NotificationPage, u64) {
        let max = max.max(1);
        let ring = self.lock();
        let latest = ring.latest();
        let (since, stale) = if since > latest {
            (0, true)
        } else {
            (since, false)
        };
        let gap = if stale {
            ring.dropped_through()
        } else {
            ring.gap_after(topics, since)
        };
        let mut notifications = Vec::new();
        let mut bytes = 0;
        let mut next = latest.max(since);
        for item in ring.after(since) {
            if topics.iter().any(|t| *t == item.topic) {
                notifications.push(Notification::clone(item));
                bytes += weight(&item.plugin, &item.topic, &item.payload);
                if notifications.len() == max || bytes >= PAGE_BYTES {
                    next = item.seq;
                    break;
                }
            }
        }
        let page = NotificationPage {
            next,
            notifications,
            missed: stale || gap > 0,
        };
        (page, gap)
    }

    /// Waits until a notification after `since` matches one of `topics` (exact match), or
    /// `timeout` passes, and answers at most `max` of them. Returns at once when some already
    /// match or when `missed` is set.
    pub async fn wait(
        &self,
        topics: &[String],
        since: u64,
        timeout: Duration,
        max: usize,
    ) -> NotificationPage {
        let mut changes = self.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut since = since;
        loop {
            changes.borrow_and_update();
            let page = self.read(topics, since, max);
            if !page.notifications.is_empty() || page.missed {
                return page;
            }
            // Nothing matched up to page.next; later reads need only look past it.
            since = page.next;
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                // Timed out, or the hub is gone (cannot happen while `self` is borrowed).
                Ok(Err(_)) | Err(_) => return self.read(topics, since, max),
            }
        }
    }
}
