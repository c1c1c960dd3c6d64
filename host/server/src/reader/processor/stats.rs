//! The status and the per-stream counters: positions, writer positions and applied counts go
//! to the reader's status after every commit; counters are looked up once per stream.

use super::{HashMap, Processor};
use crate::metrics::{Counter, Histogram};
use crate::reader::ledger::Key;
use streamhost_proto::StreamName;

/// Counters of one stream, looked up once.
#[derive(Clone, Debug)]
pub(super) struct StreamCounters {
    pub(super) dropped_not_connected: Counter,
    pub(super) dropped_old_token: Counter,
    pub(super) batches: Counter,
    pub(super) rows: Counter,
    pub(super) catchup_requests: Counter,
    pub(super) catchup_rows: Counter,
    pub(super) catchup_duration: Histogram,
}

impl Processor {
    /// The counters of `stream`.
    pub(super) fn counters(&mut self, stream: &StreamName) -> &StreamCounters {
        if !self.counters.contains_key(stream) {
            let m = &self.shared.metrics;
            let s = stream.as_str();
            let counters = StreamCounters {
                dropped_not_connected: m.rdata_dropped.with(&[s, "not_connected"]),
                dropped_old_token: m.rdata_dropped.with(&[s, "old_token"]),
                batches: m.batches_applied.with(&[s]),
                rows: m.rows_applied.with(&[s]),
                catchup_requests: m.catchup_requests.with(&[s]),
                catchup_rows: m.catchup_rows.with(&[s]),
                catchup_duration: m.catchup_duration.with(&[s]),
            };
            self.counters.insert(stream.clone(), counters);
        }
        &self.counters[stream]
    }

    /// Pushes changed positions and counts (`applied`: batches and rows per key) to the
    /// status and gauges.
    pub(super) fn publish(&mut self, applied: &HashMap<Key, (u64, u64)>) {
        for key in std::mem::take(&mut self.touched) {
            let position = self.ledger.committed_position(&key);
            let writer = self.writer_positions.get(&key).copied().unwrap_or_default();
            let (batches, rows) = applied.get(&key).copied().unwrap_or_default();
            self.shared.update_stream(&key, |f| {
                f.position = position;
                f.writer_position = writer;
                f.batches_applied += batches;
                f.rows_applied += rows;
            });
        }
    }
}
