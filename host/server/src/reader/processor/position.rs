//! Synapse's `POSITION` rule (docs/replication.md, "The POSITION rule"): a `POSITION` clears
//! the key's unfinished `batch` run, catches up from the applied position to its `new` token
//! (or joins there, or enters the writer's new run), and connects its stream on this
//! connection.

use streamhost_proto::{Position, Token};

use super::{FirstPosition, Processor, ProcessorError, RUN_START};
use crate::reader::ledger::Key;

impl Processor {
    /// Applies `position`; on an error the stream stays disconnected on this connection.
    pub(super) async fn on_position(&mut self, position: Position) -> Result<(), ProcessorError> {
        let Position {
            stream,
            instance,
            prev,
            new,
        } = position;
        let key = (stream, instance);
        self.note_writer_position(&key, new);
        self.tie_stamp(&key, new);
        let cleared = self.assembler.clear(&key.0, &key.1);
        if cleared > 0 {
            tracing::debug!(stream = %key.0, instance = %key.1, rows = cleared, "POSITION cleared an unfinished batch run");
        }
        let cur = self.position(&key);
        if self.first_position == FirstPosition::Join && !self.ledger.knows(&key) {
            tracing::info!(stream = %key.0, instance = %key.1, token = %new, "following a new stream from its announced position");
            // Known from now on, even at token 0: a later jump is a gap, not another join.
            self.ledger.set(&key, new);
        } else if cur > new && self.resettable.contains(&key.0) {
            // The writer restarted: the rule applies from the start of its new run, so rows of
            // that run it did not send live are fetched, or reported as a gap.
            self.reset(&key, cur, new).await?;
            if RUN_START < prev {
                self.catch_up(&key, RUN_START, new).await?;
            }
        } else if cur > new {
            tracing::warn!(
                stream = %key.0, instance = %key.1, position = %cur, writer_position = %new,
                "the writer is behind this reader (restored from an older state?); keeping the position"
            );
            self.shared
                .metrics
                .writer_behind
                .with(&[key.0.as_str()])
                .inc();
        } else if cur < prev {
            self.catch_up(&key, cur, new).await?;
        }
        self.ledger.advance(&key, new);
        self.connected.insert(key.0);
        Ok(())
    }

    /// Records the writer's position of `key` (the highest seen) for the status.
    pub(super) fn note_writer_position(&mut self, key: &Key, token: Token) {
        match self.writer_positions.get_mut(key) {
            Some(known) if *known >= token => return,
            Some(known) => *known = token,
            None => {
                self.writer_positions.insert(key.clone(), token);
                // The key's gap series at zero from the start, so `increase()` sees the first.
                let labels = [key.0.as_str(), key.1.as_str()];
                self.shared.metrics.gaps.with(&labels);
                self.shared.metrics.trimmed.with(&labels);
            }
        }
        if !self.touched.contains(key) {
            self.touched.insert(key.clone());
        }
    }
}
