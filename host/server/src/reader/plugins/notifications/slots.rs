//! [`Slots`]: the ring's notifications in seq order, in a deque. Pushing is O(1); seqs only
//! grow, so finding one to evict is a binary search over contiguous slots (no tree nodes to
//! allocate or rebalance). Evicting from the middle (a plugin's own oldest behind another
//! plugin's older one) leaves an empty slot, which goes when it reaches the front or when
//! empty slots outnumber the held ones (then the deque is compacted, O(n) once per n
//! evictions).

use std::collections::VecDeque;
use std::sync::Arc;

use super::hub::Notification;

/// Empty slots kept before a compaction is considered, so a small ring never compacts.
const SLACK: usize = 64;

/// A notification and the bytes it counts for, or the place of an evicted one.
struct Slot {
    seq: u64,
    held: Option<(Arc<Notification>, usize)>,
}

/// The held notifications, by seq.
#[derive(Default)]
pub(super) struct Slots {
    slots: VecDeque<Slot>,
    held: usize,
}

impl Slots {
    /// Notifications held.
    pub(super) fn len(&self) -> usize {
        self.held
    }

    /// Adds `item`, counting `weight` bytes; its seq is above every seq pushed before.
    pub(super) fn push(&mut self, item: Arc<Notification>, weight: usize) {
        debug_assert!(self.slots.back().is_none_or(|s| s.seq < item.seq));
        self.slots.push_back(Slot {
            seq: item.seq,
            held: Some((item, weight)),
        });
        self.held += 1;
    }

    /// Takes the notification numbered `seq` out, with its weight.
    pub(super) fn remove(&mut self, seq: u64) -> Option<(Arc<Notification>, usize)> {
        let at = self.slots.partition_point(|s| s.seq < seq);
        let taken = self
            .slots
            .get_mut(at)
            .filter(|s| s.seq == seq)?
            .held
            .take()?;
        self.held -= 1;
        while self.slots.front().is_some_and(|s| s.held.is_none()) {
            self.slots.pop_front();
        }
        if self.slots.len() > 2 * self.held + SLACK {
            self.slots.retain(|s| s.held.is_some());
        }
        Some(taken)
    }

    /// The notifications held after `since`, in seq order.
    pub(super) fn after(&self, since: u64) -> impl Iterator<Item = &Arc<Notification>> {
        let start = self.slots.partition_point(|s| s.seq <= since);
        self.slots
            .range(start..)
            .filter_map(|s| s.held.as_ref().map(|(item, _)| item))
    }

    /// Slots in the deque, held or empty.
    #[cfg(test)]
    fn capacity_used(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn notification(seq: u64) -> Arc<Notification> {
        Arc::new(Notification {
            seq,
            plugin: "p".into(),
            topic: "t".into(),
            payload: String::new(),
            source: None,
            published: std::time::Instant::now(),
        })
    }

    fn seqs_after(slots: &Slots, since: u64) -> Vec<u64> {
        slots.after(since).map(|n| n.seq).collect()
    }

    #[test]
    fn removal_anywhere_keeps_the_order_and_the_rest() {
        let mut slots = Slots::default();
        for seq in 1..=6 {
            slots.push(notification(seq), 10 * seq as usize);
        }
        assert_eq!(slots.remove(4).map(|(n, w)| (n.seq, w)), Some((4, 40)));
        assert!(slots.remove(4).is_none(), "already taken");
        assert!(slots.remove(9).is_none(), "never pushed");
        assert_eq!(slots.remove(1).map(|(n, _)| n.seq), Some(1));
        assert_eq!(slots.len(), 4);
        assert_eq!(seqs_after(&slots, 0), vec![2, 3, 5, 6]);
        assert_eq!(seqs_after(&slots, 3), vec![5, 6]);
        assert_eq!(seqs_after(&slots, 4), vec![5, 6]);
        assert_eq!(seqs_after(&slots, 6), Vec::<u64>::new());
    }

    #[test]
    fn an_old_survivor_does_not_let_empty_slots_pile_up() {
        // One quiet notification at the front while a flood behind it is evicted as it comes:
        // the empty slots are compacted away instead of growing with the flood.
        let mut slots = Slots::default();
        slots.push(notification(1), 1);
        for seq in 2..100_000 {
            slots.push(notification(seq), 1);
            if seq > 11 {
                assert!(slots.remove(seq - 10).is_some());
            }
        }
        assert_eq!(slots.len(), 11);
        assert!(slots.capacity_used() <= 2 * 11 + SLACK + 1);
        let after: Vec<u64> = seqs_after(&slots, 0);
        assert_eq!(after[0], 1);
        assert_eq!(after[1..], (99_990..100_000).collect::<Vec<_>>()[..]);
    }
}
