//! Where completed batches go: the [`BatchSink`] trait, the recording sink and the discarding
//! sink.
//!
//! The processor calls a sink with the reader database's open transaction and writes the new
//! positions in that same transaction, so a sink that keeps its effects in that database moves
//! with the positions: after a crash a batch is either applied and past the position, or
//! neither. The plugin runtime implements this trait too.

use std::future::Future;
use std::pin::Pin;

use sqlx::{QueryBuilder, SqliteConnection};
use streamhost_proto::{InstanceName, RowJson, StreamName, Token};

/// A boxed, sendable future, as [`BatchSink::apply`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Every row one instance wrote to one stream at one token, in wire order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// The stream.
    pub stream: StreamName,
    /// The writer that produced the rows.
    pub instance: InstanceName,
    /// The reader's position for (stream, instance) before this batch.
    pub prev: Token,
    /// The rows' token; the position for (stream, instance) after this batch.
    pub token: Token,
    /// The rows, at least one.
    pub rows: Vec<RowJson>,
}

/// Consumes completed batches inside the reader's database transaction.
///
/// `batches` are in token order per (stream, instance). An error rolls the whole group back
/// (the sink's writes in `tx` and the positions); the reader then reconnects and fetches the
/// rows again, so an `apply` that fails must have had no effect outside `tx`.
pub trait BatchSink: Send + Sync + 'static {
    /// Applies `batches`, writing any durable effect through `tx`.
    fn apply<'a>(
        &'a self,
        batches: &'a [Batch],
        tx: &'a mut SqliteConnection,
    ) -> BoxFuture<'a, anyhow::Result<()>>;

    /// The writer of (`stream`, `instance`) restarted its tokens (a Synapse process restarting
    /// resets `typing`, `federation` and `presence_federation` to 0): the reader's position
    /// moved back to `to`, and tokens above `to` will be delivered again, with the writer's
    /// new rows. Called in the commit's transaction, before that commit's batches. The
    /// default keeps nothing, so it does nothing.
    fn reset<'a>(
        &'a self,
        stream: &'a StreamName,
        instance: &'a InstanceName,
        to: Token,
        tx: &'a mut SqliteConnection,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        let _ = (stream, instance, to, tx);
        Box::pin(async { Ok(()) })
    }
}

/// Rows per multi-row `INSERT`: 5 bound values each stays well under SQLite's 32,766 limit.
const INSERT_CHUNK_ROWS: usize = 1_000;

/// Keeps every row in the reader database's `recorded_rows` table (`record_rows = true`).
///
/// A row delivered twice violates the table's primary key and fails the transaction: the
/// recording sink exists to prove "exactly once", so it must not hide a repeat. The table
/// holds the writer's current run: when the writer restarts its tokens
/// ([`BatchSink::reset`]), the rows of its earlier run above the new position are deleted,
/// since the new run reuses their tokens.
#[derive(Clone, Copy, Debug, Default)]
pub struct RecordingSink;

impl BatchSink for RecordingSink {
    fn apply<'a>(
        &'a self,
        batches: &'a [Batch],
        tx: &'a mut SqliteConnection,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let rows: Vec<(&Batch, i64, &RowJson)> = batches
                .iter()
                .flat_map(|batch| {
                    batch
                        .rows
                        .iter()
                        .enumerate()
                        .map(move |(seq, row)| (batch, seq as i64, row))
                })
                .collect();
            for chunk in rows.chunks(INSERT_CHUNK_ROWS) {
                let mut insert = QueryBuilder::new(
                    "INSERT INTO recorded_rows (stream, instance, token, seq, row_json) ",
                );
                insert.push_values(chunk, |mut values, (batch, seq, row)| {
                    values
                        .push_bind(batch.stream.as_str())
                        .push_bind(batch.instance.as_str())
                        .push_bind(batch.token.0)
                        .push_bind(*seq)
                        .push_bind(row.as_str());
                });
                insert.build().execute(&mut *tx).await?;
            }
            Ok(())
        })
    }

    fn reset<'a>(
        &'a self,
        stream: &'a StreamName,
        instance: &'a InstanceName,
        to: Token,
        tx: &'a mut SqliteConnection,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            sqlx::query(
                "DELETE FROM recorded_rows WHERE stream = ? AND instance = ? AND token > ?",
            )
            .bind(stream.as_str())
            .bind(instance.as_str())
            .bind(to.0)
            .execute(&mut *tx)
            .await?;
            Ok(())
        })
    }
}

/// Accepts every batch and keeps nothing (a reader that only tracks positions).
#[derive(Clone, Copy, Debug, Default)]
pub struct DiscardSink;

impl BatchSink for DiscardSink {
    fn apply<'a>(
        &'a self,
        _batches: &'a [Batch],
        _tx: &'a mut SqliteConnection,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async { Ok(()) })
    }
}
