//! The ring behind the notification hub: the newest notifications, bounded by count and by
//! bytes over all plugins, and by bytes per plugin.
//!
//! Eviction rule (design decision "notification ring shares"):
//! - a plugin's notifications never hold more than `plugin_bytes`: past it, the plugin's own
//!   oldest notifications go first; one larger than the whole share (or the whole ring) is
//!   numbered but never stored;
//! - past the global `entries` or `bytes`, the oldest notification of the plugin holding the
//!   most (entries or bytes, whichever bound is exceeded) goes, so a flooding plugin evicts its
//!   own notifications before anyone else's.
//!
//! A notification's weight is its topic, payload and plugin name plus [`OVERHEAD`]. Evictions
//! leave gaps anywhere in the sequence, so the ring remembers, per topic (by hash, at most
//! [`DROPPED_TOPICS`] of them), the newest seq it dropped: a reader is told `missed` only when a
//! notification on one of its topics after its position was dropped. Past that many topics the
//! oldest entries fold into a floor below which every position counts as missed.

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHasher};

use super::hub::{Notification, Source};
use super::slots::Slots;
use crate::config::PluginsConfig;

/// Bytes counted for each notification besides its strings: the `Arc`, the struct, its slots
/// in the ring and in its plugin's share.
pub const OVERHEAD: usize = 160;
/// Topics whose newest dropped seq the ring remembers exactly.
pub const DROPPED_TOPICS: usize = 4096;

/// The ring's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingBounds {
    /// Most notifications held, over all plugins.
    pub entries: usize,
    /// Most bytes held, over all plugins.
    pub bytes: usize,
    /// Most bytes one plugin's notifications hold.
    pub plugin_bytes: usize,
}

impl RingBounds {
    /// The bounds `notifications`, `notifications_mib` and `notifications_plugin_mib` set.
    pub(crate) fn of(config: &PluginsConfig) -> RingBounds {
        RingBounds {
            entries: config.notifications,
            bytes: config.notifications_mib.saturating_mul(1 << 20),
            plugin_bytes: config.notifications_plugin_mib.saturating_mul(1 << 20),
        }
    }
}

/// Which bound dropped a notification (the `bound` label of
/// `plugin_notifications_dropped_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// The ring's count of entries.
    Entries,
    /// The ring's bytes.
    Bytes,
    /// The publishing plugin's bytes.
    PluginBytes,
}

impl Bound {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Bound::Entries => "entries",
            Bound::Bytes => "bytes",
            Bound::PluginBytes => "plugin_bytes",
        }
    }
}

/// The bytes a notification counts for.
pub fn weight(plugin: &str, topic: &str, payload: &str) -> usize {
    OVERHEAD + plugin.len() + topic.len() + payload.len()
}

/// One plugin's notifications in the ring.
#[derive(Default)]
struct Share {
    seqs: VecDeque<u64>,
    bytes: usize,
}

/// The ring: notifications by seq, each plugin's share, and what was dropped.
pub struct Ring {
    bounds: RingBounds,
    items: Slots,
    /// Each plugin's share, by the plugin's name (shared, so evicting never copies it).
    shares: FxHashMap<Arc<str>, Share>,
    bytes: usize,
    /// The seq of the newest notification (0 before any).
    latest: u64,
    /// The seq of the newest notification dropped (0 before any).
    dropped_through: u64,
    /// Per topic hash, the newest seq dropped on that topic.
    dropped: FxHashMap<u64, u64>,
    /// The same entries as (seq, topic hash) in the order they were dropped, to fold the
    /// oldest into `floor`; an entry whose topic was dropped again since is stale (skipped,
    /// and compacted away once stale entries outnumber the live ones).
    dropped_order: VecDeque<(u64, u64)>,
    /// Every position below this counts as missed, whatever its topics.
    floor: u64,
}

/// A topic's key in `dropped`. Two topics hashing alike only make a reader of one told
/// `missed` when the other's notification was dropped, never the reverse.
fn topic_hash(topic: &str) -> u64 {
    let mut hasher = FxHasher::default();
    topic.hash(&mut hasher);
    hasher.finish()
}

impl Ring {
    /// An empty ring with `bounds` (each raised to at least 1).
    pub fn new(bounds: RingBounds) -> Ring {
        Ring {
            bounds: RingBounds {
                entries: bounds.entries.max(1),
                bytes: bounds.bytes.max(1),
                plugin_bytes: bounds.plugin_bytes.max(1),
            },
            items: Slots::default(),
            shares: FxHashMap::default(),
            bytes: 0,
            latest: 0,
            dropped_through: 0,
            dropped: FxHashMap::default(),
            dropped_order: VecDeque::new(),
            floor: 0,
        }
    }

    /// The seq of the newest notification (0 before any).
    pub fn latest(&self) -> u64 {
        self.latest
    }

    /// The seq of the newest notification dropped, on any topic (0 before any).
    pub fn dropped_through(&self) -> u64 {
        self.dropped_through
    }

    /// Numbers and adds a notification of `plugin`, then evicts what the bounds require,
    /// adding what was dropped to `evicted` (free it outside any lock).
    pub fn push(
        &mut self,
        plugin: &str,
        topic: String,
        payload: String,
        source: Option<Source>,
        evicted: &mut Vec<(Arc<Notification>, Bound)>,
    ) {
        self.latest += 1;
        let seq = self.latest;
        let weight = weight(plugin, &topic, &payload);
        let item = Arc::new(Notification {
            seq,
            plugin: plugin.to_owned(),
            topic,
            payload,
            source,
            published: std::time::Instant::now(),
        });
        if weight > self.bounds.plugin_bytes.min(self.bounds.bytes) {
            self.note_dropped(&item);
            evicted.push((item, Bound::PluginBytes));
            return;
        }
        if !self.shares.contains_key(plugin) {
            self.shares.insert(Arc::from(plugin), Share::default());
        }
        let share = self.shares.get_mut(plugin).expect("inserted just above");
        share.seqs.push_back(seq);
        share.bytes += weight;
        self.bytes += weight;
        self.items.push(item, weight);
        while self
            .shares
            .get(plugin)
            .is_some_and(|s| s.bytes > self.bounds.plugin_bytes)
        {
            evicted.extend(self.evict_oldest_of(plugin, Bound::PluginBytes));
        }
        loop {
            let bound = if self.items.len() > self.bounds.entries {
                Bound::Entries
            } else if self.bytes > self.bounds.bytes {
                Bound::Bytes
            } else {
                break;
            };
            let Some(victim) = self.heaviest(bound) else {
                break;
            };
            evicted.extend(self.evict_oldest_of(&victim, bound));
        }
    }

    /// The plugin holding the most entries (or bytes), the one with the oldest notification
    /// among equals.
    fn heaviest(&self, bound: Bound) -> Option<Arc<str>> {
        self.shares
            .iter()
            .max_by_key(|(_, share)| {
                let size = match bound {
                    Bound::Entries => share.seqs.len(),
                    Bound::Bytes | Bound::PluginBytes => share.bytes,
                };
                (size, std::cmp::Reverse(share.seqs.front().copied()))
            })
            .map(|(name, _)| name.clone())
    }

    /// Drops the oldest notification of `plugin`.
    fn evict_oldest_of(
        &mut self,
        plugin: &str,
        bound: Bound,
    ) -> Option<(Arc<Notification>, Bound)> {
        let share = self.shares.get_mut(plugin)?;
        let Some(seq) = share.seqs.pop_front() else {
            self.shares.remove(plugin);
            return None;
        };
        let (item, weight) = self.items.remove(seq)?;
        share.bytes -= weight;
        if share.seqs.is_empty() {
            self.shares.remove(plugin);
        }
        self.bytes -= weight;
        self.note_dropped(&item);
        Some((item, bound))
    }

    /// Remembers that `item` was dropped.
    fn note_dropped(&mut self, item: &Notification) {
        self.dropped_through = self.dropped_through.max(item.seq);
        let hash = topic_hash(&item.topic);
        self.dropped.insert(hash, item.seq);
        self.dropped_order.push_back((item.seq, hash));
        while self.dropped.len() > DROPPED_TOPICS {
            let Some((seq, hash)) = self.dropped_order.pop_front() else {
                break;
            };
            if self.dropped.get(&hash) == Some(&seq) {
                self.dropped.remove(&hash);
                self.floor = self.floor.max(seq);
            }
        }
        if self.dropped_order.len() > 2 * self.dropped.len() + DROPPED_TOPICS {
            let dropped = &self.dropped;
            self.dropped_order
                .retain(|(seq, hash)| dropped.get(hash) == Some(seq));
        }
    }

    /// The newest seq dropped after `since` that may have matched one of `topics` (0 if none).
    pub fn gap_after(&self, topics: &[String], since: u64) -> u64 {
        let mut gap = if since < self.floor { self.floor } else { 0 };
        for topic in topics {
            if let Some(&seq) = self.dropped.get(&topic_hash(topic))
                && seq > since
            {
                gap = gap.max(seq);
            }
        }
        gap
    }

    /// The notifications held after `since`, in seq order.
    pub fn after(&self, since: u64) -> impl Iterator<Item = &Arc<Notification>> {
        self.items.after(since)
    }

    /// Notifications and bytes held, over all plugins.
    #[cfg(test)]
    pub fn usage(&self) -> (usize, usize) {
        (self.items.len(), self.bytes)
    }

    /// Bytes held by `plugin`'s notifications.
    #[cfg(test)]
    pub fn plugin_bytes(&self, plugin: &str) -> usize {
        self.shares.get(plugin).map_or(0, |s| s.bytes)
    }
}

#[cfg(test)]
#[path = "ring_tests.rs"]
mod tests;
