//! Group commit and rollback: the ready batches, the sink's resets, the changed positions and
//! the gaps found go to the database in one transaction; then the ledger, the status, the
//! counters and the plugins' feed learn of it. A failed transaction forgets everything not
//! committed; one that failed on a full disk is also reported as such (`disk_full` in the
//! status) until a commit succeeds.

use anyhow::Context;
use streamhost_proto::{InstanceName, StreamName, Token};

use super::{HashMap, Processor, ProcessorError, RUN_START};
use crate::reader::disk::is_disk_full;
use crate::reader::ledger::Key;
use crate::reader::sink::Batch;
use crate::reader::store::{ReaderStore, Run};

impl Processor {
    /// Commits the ready batches and changed positions in one transaction, then publishes
    /// status and metrics. On failure rolls back to the committed positions (see module docs)
    /// and returns [`ProcessorError::CommitFailed`].
    pub(crate) async fn commit(&mut self) -> Result<(), ProcessorError> {
        if self.ready.is_empty() && self.ledger.is_clean() && self.gaps.is_empty() {
            self.publish(&HashMap::default());
            return Ok(());
        }
        let positions: Vec<(StreamName, InstanceName, Token, Run)> = self
            .ledger
            .pending()
            .into_iter()
            .map(|((stream, instance), token, run)| (stream, instance, token, run))
            .collect();
        if let Err(error) = self.write(&positions).await {
            if is_disk_full(&error) {
                self.shared.set_disk_full(Some(&format!("{error:#}")));
            }
            self.rollback();
            self.fail(format!("applying batches: {error:#}"), "apply")
                .await;
            return Err(ProcessorError::CommitFailed);
        }
        self.committed_group();
        Ok(())
    }

    /// The transaction on a connection of its own, which is closed rather than pooled again
    /// when the transaction fails: SQLite may leave a transaction open after a failed
    /// statement or `COMMIT` (a full disk), which sqlx no longer tracks, and such a connection
    /// would go on reading an old snapshot.
    async fn write(
        &self,
        positions: &[(StreamName, InstanceName, Token, Run)],
    ) -> anyhow::Result<()> {
        let mut conn = self
            .store
            .pool()
            .acquire()
            .await
            .context("taking a connection")?;
        let result = self.write_on(&mut conn, positions).await;
        if result.is_err() {
            conn.close_on_drop();
        }
        result
    }

    /// The transaction: the sink's resets, the ready batches and `positions`.
    async fn write_on(
        &self,
        conn: &mut sqlx::SqliteConnection,
        positions: &[(StreamName, InstanceName, Token, Run)],
    ) -> anyhow::Result<()> {
        let mut tx = sqlx::Connection::begin(conn)
            .await
            .context("beginning a transaction")?;
        for reset in &self.resets {
            self.sink
                .reset(&reset.key.0, &reset.key.1, RUN_START, &mut tx)
                .await
                .context("the sink failed to reset")?;
        }
        if !self.ready.is_empty() {
            self.sink
                .apply(&self.ready, &mut tx)
                .await
                .context("the sink failed")?;
        }
        ReaderStore::write_positions(&mut tx, positions)
            .await
            .context("writing positions")?;
        ReaderStore::write_gaps(&mut tx, &self.gaps)
            .await
            .context("recording gaps")?;
        tx.commit().await.context("committing")
    }

    /// After the transaction committed: counts it, reports its resets, moves the ledger's
    /// committed side, hands the group to the plugins and publishes the status.
    fn committed_group(&mut self) {
        self.shared.metrics.commits.inc();
        self.shared.set_disk_full(None);
        self.pause.reset();
        self.gaps.clear();
        let batches = std::mem::take(&mut self.ready);
        self.ready_rows = 0;
        self.ready_bytes = 0;
        let applied = self.count_applied(&batches);
        let resets = self.report_resets();
        let committed = self.ledger.commit();
        for entry in &committed {
            self.touched.insert(entry.key.clone());
        }
        self.publish_to_feed(batches, &committed, resets);
        self.observe_stamps();
        self.publish(&applied);
    }

    /// Counts `batches` in the per-stream counters; returns (batches, rows) per key.
    fn count_applied(&mut self, batches: &[Batch]) -> HashMap<Key, (u64, u64)> {
        let mut applied: HashMap<Key, (u64, u64)> = HashMap::default();
        for batch in batches {
            let counters = self.counters(&batch.stream).clone();
            counters.batches.inc();
            counters.rows.add(batch.rows.len() as u64);
            let entry = applied
                .entry((batch.stream.clone(), batch.instance.clone()))
                .or_default();
            entry.0 += 1;
            entry.1 += batch.rows.len() as u64;
        }
        applied
    }

    /// Forgets everything not committed.
    fn rollback(&mut self) {
        self.ready.clear();
        self.ready_rows = 0;
        self.ready_bytes = 0;
        self.resets.clear();
        self.gaps.clear();
        self.ledger.rollback();
        self.forget_connection();
    }
}
