//! The `RDATA` rules: rows of a stream not connected on this connection are dropped (its
//! `POSITION`'s catch-up fetches them), a closed `batch` run becomes a ready batch when its
//! token is above the applied position and is dropped otherwise.

use streamhost_proto::{Rdata, RowJson, Token};

use super::Processor;
use crate::reader::ledger::Key;
use crate::reader::sink::Batch;

impl Processor {
    /// The applied position of `key`.
    pub(super) fn position(&self, key: &Key) -> Token {
        self.ledger.position(key)
    }

    pub(super) fn on_rdata(&mut self, rdata: Rdata) {
        if !self.connected.contains(&rdata.stream) {
            tracing::debug!(stream = %rdata.stream, instance = %rdata.instance, "RDATA before the stream's POSITION on this connection: dropped");
            self.counters(&rdata.stream).dropped_not_connected.inc();
            return;
        }
        let Some(batch) = self.assembler.push(rdata) else {
            return;
        };
        let key = (batch.stream.clone(), batch.instance.clone());
        self.note_writer_position(&key, batch.token);
        if batch.token > self.position(&key) {
            self.tie_stamp(&key, batch.token);
            self.push_ready(&key, batch);
        } else {
            tracing::debug!(stream = %key.0, instance = %key.1, token = %batch.token, "RDATA at or below the applied position: dropped");
            self.counters(&key.0)
                .dropped_old_token
                .add(batch.rows.len() as u64);
        }
    }

    /// Queues the rows of `key` at `token` (fetched by a catch-up) for the next commit.
    pub(super) fn deliver(&mut self, key: &Key, token: Token, rows: Vec<RowJson>) {
        let batch = Batch {
            stream: key.0.clone(),
            instance: key.1.clone(),
            prev: Token(0),
            token,
            rows,
        };
        self.push_ready(key, batch);
    }

    /// Queues `batch` (of `key`) for the next commit and moves the position to its token.
    fn push_ready(&mut self, key: &Key, mut batch: Batch) {
        batch.prev = self.position(key);
        debug_assert!(batch.token > batch.prev, "batches only move forwards");
        self.ready_rows += batch.rows.len();
        self.ready_bytes += batch.rows.iter().map(RowJson::len).sum::<usize>();
        self.ledger.advance(key, batch.token);
        self.ready.push(batch);
    }
}
