//! The plugins' feed: every commit goes to it (when plugins run) with the reader's position
//! of each key before and after, and the resets it carried.

use super::Processor;
use crate::reader::ledger::Committed;
use crate::reader::plugins::{Advance, Reset};
use crate::reader::sink::Batch;

impl Processor {
    /// Hands a committed group to the feed: its `batches`, the keys that moved forward and
    /// the `resets`.
    pub(super) fn publish_to_feed(
        &self,
        batches: Vec<Batch>,
        committed: &[Committed],
        resets: Vec<Reset>,
    ) {
        let Some(feed) = &self.feed else {
            return;
        };
        let advances = committed
            .iter()
            .filter(|c| c.after > c.before)
            .map(|c| Advance {
                key: c.key.clone(),
                before: c.before,
                after: c.after,
                run: c.run,
            })
            .collect();
        feed.publish(batches, advances, resets);
    }
}
