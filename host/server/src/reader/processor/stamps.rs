//! Write-to-apply: a Streamhost writer sends, at most once a ping interval, a `PING` carrying
//! a commit's time just before the line that reaches that commit's position
//! (`writer::fanout::tcp`). The processor ties the stamp to the next `RDATA`/`POSITION` with
//! a token and, once a commit of the reader database has moved that (stream, instance) to the
//! token, observes `now - commit time` in `streamhost_reader_write_to_apply_seconds`.
//!
//! The two times come from two clocks (the writer's and the reader's): skew between hosts
//! adds to or subtracts from every observation; a negative difference counts as 0.

use streamhost_proto::Token;

use super::Processor;
use crate::clock::unix_us;
use crate::reader::ledger::Key;

/// Stamps waiting for their commit, at most; beyond, the oldest is forgotten.
const MAX_WAITING: usize = 64;

/// The stamp not yet tied to a line, and those waiting for their commit.
#[derive(Debug, Default)]
pub(super) struct Stamps {
    next: Option<u64>,
    waiting: Vec<(Key, Token, u64)>,
}

impl Processor {
    /// A stamp arrived: it belongs to the next line with a token.
    pub(super) fn on_stamp(&mut self, stamp_us: u64) {
        self.stamps.next = Some(stamp_us);
    }

    /// A line reaching `token` of `key` arrived: ties the pending stamp, if any, to it.
    pub(super) fn tie_stamp(&mut self, key: &Key, token: Token) {
        let Some(stamp_us) = self.stamps.next.take() else {
            return;
        };
        if self.stamps.waiting.len() == MAX_WAITING {
            self.stamps.waiting.remove(0);
        }
        self.stamps.waiting.push((key.clone(), token, stamp_us));
    }

    /// After a commit: observes the stamps whose token is now committed.
    pub(super) fn observe_stamps(&mut self) {
        if self.stamps.waiting.is_empty() {
            return;
        }
        let now_us = unix_us();
        let mut waiting = std::mem::take(&mut self.stamps.waiting);
        waiting.retain(|(key, token, stamp_us)| {
            if self.ledger.committed_position(key) < *token {
                return true;
            }
            let seconds = now_us.saturating_sub(*stamp_us) as f64 / 1e6;
            self.shared
                .metrics
                .write_to_apply
                .with(&[key.0.as_str(), key.1.as_str()])
                .observe(seconds);
            false
        });
        self.stamps.waiting = waiting;
    }
}
