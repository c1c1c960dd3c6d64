//! The notification hub: plugins' `notify(topic, payload)` effects land in an in-memory ring
//! of the last N notifications, numbered from 1, which waiters read after a sequence number.
//!
//! Plugin workers are plain threads, so [`NotificationHub::publish`] is synchronous: it takes
//! a std mutex for a moment and bumps a `tokio::sync::watch` of the latest sequence number,
//! which wakes every waiter and stream.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

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
}

/// An answer of [`NotificationHub::wait`] and of the long-poll endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotificationPage {
    /// The `since` to pass next time: the seq of the last notification returned, or, when
    /// none matched, the latest seq examined (unchanged if nothing was published).
    pub next: u64,
    /// Matching notifications with seq > since, in seq order.
    pub notifications: Vec<Notification>,
    /// `since` was older than the ring holds: notifications after it were dropped, and some
    /// of them may have matched.
    pub missed: bool,
}

struct Ring {
    items: VecDeque<Arc<Notification>>,
    /// The seq of the newest notification (0 before any).
    latest: u64,
    /// The seq of the newest notification dropped from the ring (0 before any).
    dropped_through: u64,
}

/// An in-memory ring of the last notifications, with waiters.
pub struct NotificationHub {
    ring: Mutex<Ring>,
    capacity: usize,
    latest: watch::Sender<u64>,
}

impl NotificationHub {
    /// A hub keeping the last `capacity` notifications (at least one).
    pub fn new(capacity: usize) -> NotificationHub {
        let capacity = capacity.max(1);
        NotificationHub {
            ring: Mutex::new(Ring {
                items: VecDeque::with_capacity(capacity.min(4096)),
                latest: 0,
                dropped_through: 0,
            }),
            capacity,
            latest: watch::Sender::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Ring> {
        // The ring is consistent between statements, so a poisoned lock is still usable.
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `(topic, payload)` items from `plugin` and wakes waiters. Synchronous and
    /// cheap: callable from plugin worker threads.
    pub fn publish(&self, plugin: &str, items: Vec<(String, String)>) {
        if items.is_empty() {
            return;
        }
        let latest = {
            let mut ring = self.lock();
            for (topic, payload) in items {
                ring.latest += 1;
                let seq = ring.latest;
                ring.items.push_back(Arc::new(Notification {
                    seq,
                    plugin: plugin.to_owned(),
                    topic,
                    payload,
                }));
                if ring.items.len() > self.capacity
                    && let Some(old) = ring.items.pop_front()
                {
                    ring.dropped_through = old.seq;
                }
            }
            ring.latest
        };
        self.latest.send_replace(latest);
    }

    /// The seq of the newest notification (0 before any).
    pub fn latest_seq(&self) -> u64 {
        *self.latest.borrow()
    }

    /// A receiver of the latest seq, changed on every publish; pair it with
    /// [`NotificationHub::read`] (subscribe first, then read, then await a change).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.latest.subscribe()
    }

    /// The notifications after `since` matching `topics`, at most `max` (at least one), without
    /// waiting.
    ///
    /// A `since` beyond the latest seq (from a previous run of the reader) counts as 0 with
    /// `missed` set.
    pub fn read(&self, topics: &[String], since: u64, max: usize) -> NotificationPage {
        self.read_with_gap(topics, since, max).0
    }

    /// [`NotificationHub::read`], plus the seq of the newest notification dropped from the
    /// ring, read under the same lock.
    pub(super) fn read_with_gap(
        &self,
        topics: &[String],
        since: u64,
        max: usize,
    ) -> (NotificationPage, u64) {
        let max = max.max(1);
        let ring = self.lock();
        let (since, stale) = if since > ring.latest {
            (0, true)
        } else {
            (since, false)
        };
        let missed = stale || since < ring.dropped_through;
        // Items are in seq order without gaps: skip straight to the first one after `since`.
        let first = ring.items.front().map_or(0, |n| n.seq);
        let skip = usize::try_from(since.saturating_add(1).saturating_sub(first)).unwrap_or(0);
        let mut notifications = Vec::new();
        let mut next = ring.latest.max(since);
        for item in ring.items.iter().skip(skip) {
            if topics.iter().any(|t| *t == item.topic) {
                notifications.push(Notification::clone(item));
                if notifications.len() == max {
                    next = item.seq;
                    break;
                }
            }
        }
        let page = NotificationPage {
            next,
            notifications,
            missed,
        };
        (page, ring.dropped_through)
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
