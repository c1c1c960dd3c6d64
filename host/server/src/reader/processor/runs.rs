//! Runs: a `POSITION` of a resettable stream below the reader's position means its writer
//! restarted its tokens. The reader commits what it has, enters the key's next [`Run`] at
//! [`RUN_START`], and reports the reset once the commit that carries it is done.

use streamhost_proto::Token;

use super::{Processor, ProcessorError, RUN_START};
use crate::reader::ledger::Key;
use crate::reader::plugins::Reset;
use crate::reader::store::Run;

/// A writer's restart found by a `POSITION`, waiting for the next commit.
#[derive(Debug)]
pub(super) struct PendingReset {
    pub(super) key: Key,
    /// The reader's position in the writer's earlier run.
    from: Token,
    /// The `POSITION`'s new token.
    to: Token,
}

impl Processor {
    /// The writer of `key` restarted its tokens (it is at `new`, below the reader's `cur`):
    /// commits what is ready (rows of the earlier run), then moves the position back to
    /// [`RUN_START`] in the next run; the caller applies the `POSITION` from there, so rows of
    /// the new run up to `new` are fetched, or reported as a gap. Reported once committed.
    /// An error if the commit failed (the stream then stays disconnected).
    pub(super) async fn reset(
        &mut self,
        key: &Key,
        cur: Token,
        new: Token,
    ) -> Result<(), ProcessorError> {
        self.commit().await?;
        let run = self.ledger.run(key).next();
        self.ledger.reset(key, run);
        // Known from now on, even with no position before, so the new run is stored.
        self.ledger.set(key, RUN_START);
        // The writer's position of the new run; the earlier run's was higher.
        self.writer_positions.insert(key.clone(), new);
        self.touched.insert(key.clone());
        self.resets.push(PendingReset {
            key: key.clone(),
            from: cur,
            to: new,
        });
        Ok(())
    }

    /// Reports the resets a commit just wrote; returns them for the plugins' feed.
    pub(super) fn report_resets(&mut self) -> Vec<Reset> {
        let resets = std::mem::take(&mut self.resets);
        let mut feed_resets = Vec::with_capacity(resets.len());
        for reset in resets {
            let run = self.ledger.run(&reset.key);
            self.report_reset(&reset, run);
            feed_resets.push(Reset {
                key: reset.key,
                run,
            });
        }
        feed_resets
    }

    /// Reports a committed reset: a warning, `reader_stream_resets_total` and the stream's
    /// entry in the status.
    fn report_reset(&self, reset: &PendingReset, run: Run) {
        let key = &reset.key;
        tracing::warn!(
            stream = %key.0, instance = %key.1, from = reset.from.0, to = reset.to.0, run = run.0,
            "the writer restarted this stream's tokens: following its new run from `to` (rows up to `to` are fetched or reported as a gap)"
        );
        self.shared
            .metrics
            .resets
            .with(&[key.0.as_str(), key.1.as_str()])
            .inc();
        self.shared.update_stream(key, |f| {
            f.resets += 1;
            f.last_reset = Some((reset.from, reset.to));
        });
    }
}
