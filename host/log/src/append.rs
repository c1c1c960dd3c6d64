//! Appending: allocating tokens after each stream's position and inserting the rows in one
//! atomic commit (one statement on SQLite, one locked transaction on PostgreSQL).

use std::collections::HashMap;

use sqlx::{PgPool, QueryBuilder, SqlitePool};
use streamhost_proto::{RowJson, StreamName, Token};

use crate::{AppendRequest, Log, LogError, ORIGIN, Pool, Result};

/// Rows per multi-row `INSERT` on SQLite: 5 bound values each stays well under SQLite's
/// 32,766 limit. (PostgreSQL binds whole columns as arrays, one statement per append.)
const INSERT_CHUNK_ROWS: usize = 1_000;

/// One row to insert: (stream, token, seq, row).
type PendingRow<'a> = (&'a StreamName, i64, i64, &'a RowJson);

impl Log {
    /// Appends every request atomically (all or nothing) and returns each request's tokens,
    /// in order. Each stream's tokens follow its position without a gap.
    ///
    /// On SQLite the caller must be the only appender (the writer's appender task): tokens
    /// are allocated from the in-memory positions, which advance only once the commit
    /// succeeded. On PostgreSQL any number of handles and processes may append at once.
    pub async fn append(&self, requests: &[AppendRequest]) -> Result<Vec<Vec<Token>>> {
        if self.read_only {
            return Err(LogError::ReadOnly);
        }
        let positions = self.requested_positions(requests)?;
        if requests.iter().all(|r| r.rows.is_empty()) {
            return Ok(vec![Vec::new(); requests.len()]);
        }
        match &self.pool {
            Pool::Sqlite(pool) => self.append_sqlite(pool, requests, positions).await,
            Pool::Postgres(pool) => self.append_postgres(pool, requests, positions).await,
        }
    }

    /// The committed position of every stream `requests` name, or an error for one that was
    /// never declared.
    fn requested_positions<'a>(
        &self,
        requests: &'a [AppendRequest],
    ) -> Result<HashMap<&'a StreamName, i64>> {
        let mut positions: HashMap<&StreamName, i64> = HashMap::new();
        let committed = self.positions.lock().expect("positions lock");
        for request in requests {
            let position = committed
                .get(&request.stream)
                .ok_or_else(|| LogError::UnknownStream(request.stream.clone()))?;
            positions.entry(&request.stream).or_insert(position.0);
        }
        Ok(positions)
    }

    /// The single appender's append: tokens from the in-memory positions, rows in one
    /// statement (or one transaction of statements when there are many).
    async fn append_sqlite<'a>(
        &self,
        pool: &SqlitePool,
        requests: &'a [AppendRequest],
        mut positions: HashMap<&'a StreamName, i64>,
    ) -> Result<Vec<Vec<Token>>> {
        let (all_tokens, pending) = allocate(requests, &mut positions);
        if pending.len() <= INSERT_CHUNK_ROWS {
            // One statement is atomic by itself: no BEGIN/COMMIT round trips.
            self.insert_sqlite(&pending, pool).await?;
        } else {
            let mut tx = pool.begin().await?;
            for chunk in pending.chunks(INSERT_CHUNK_ROWS) {
                self.insert_sqlite(chunk, &mut *tx).await?;
            }
            tx.commit().await?;
        }
        self.advance(positions);
        Ok(all_tokens)
    }

    /// A shared log's append: one transaction that locks the streams, reads their positions
    /// under the locks, inserts, and commits (checking a COMMIT whose answer was lost).
    async fn append_postgres<'a>(
        &self,
        pool: &PgPool,
        requests: &'a [AppendRequest],
        mut positions: HashMap<&'a StreamName, i64>,
    ) -> Result<Vec<Vec<Token>>> {
        let mut tx = pool.begin().await?;
        lock_and_read_positions(&mut tx, &mut positions).await?;
        let (all_tokens, pending) = allocate(requests, &mut positions);
        self.insert_postgres(&pending, &mut tx).await?;
        if let Err(e) = tx.commit().await {
            // A connection lost at COMMIT leaves the outcome unknown: look it up, so a
            // commit that happened is acknowledged rather than retried (a duplicate).
            match self.committed(pool, pending[0]).await {
                Ok(true) => {
                    tracing::warn!(error = %e, "the answer to COMMIT was lost, but the rows are committed");
                }
                Ok(false) => return Err(e.into()),
                Err(_) => return Err(LogError::CommitUnknown(e)),
            }
        }
        self.advance(positions);
        Ok(all_tokens)
    }

    /// Whether `row` (the first of an append whose COMMIT failed) is in the log, over a fresh
    /// connection. Nobody else can have written this (stream, token, seq) with this instance
    /// and these bytes: the lock made this append the only one to allocate the token.
    async fn committed(&self, pool: &PgPool, row: PendingRow<'_>) -> Result<bool> {
        let (stream, token, seq, json) = row;
        let stored: Option<(String, String)> = sqlx::query_as(
            "SELECT instance, row_json FROM stream_rows WHERE stream = $1 AND token = $2 AND seq = $3",
        )
        .bind(stream.as_str())
        .bind(token)
        .bind(seq)
        .fetch_optional(pool)
        .await?;
        Ok(stored.is_some_and(|(instance, text)| {
            instance == self.instance.as_str() && text == json.as_str()
        }))
    }

    async fn insert_sqlite<'e>(
        &self,
        rows: &[PendingRow<'_>],
        executor: impl sqlx::SqliteExecutor<'e>,
    ) -> Result<()> {
        let mut insert =
            QueryBuilder::new("INSERT INTO stream_rows (stream, token, seq, instance, row_json) ");
        insert.push_values(rows, |mut values, (stream, token, seq, row)| {
            values
                .push_bind(stream.as_str())
                .push_bind(*token)
                .push_bind(*seq)
                .push_bind(self.instance.as_str())
                .push_bind(row.as_str());
        });
        insert.build().execute(executor).await?;
        Ok(())
    }

    /// One statement for any number of rows: each column bound as one array.
    async fn insert_postgres(
        &self,
        rows: &[PendingRow<'_>],
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    ) -> Result<()> {
        let mut streams = Vec::with_capacity(rows.len());
        let mut tokens = Vec::with_capacity(rows.len());
        let mut seqs = Vec::with_capacity(rows.len());
        let mut texts = Vec::with_capacity(rows.len());
        for (stream, token, seq, row) in rows {
            streams.push(stream.as_str());
            tokens.push(*token);
            seqs.push(*seq);
            texts.push(row.as_str());
        }
        sqlx::query(
            "INSERT INTO stream_rows (stream, token, seq, instance, row_json) \
             SELECT s, t, q, $4, r FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $5::text[]) AS u(s, t, q, r)",
        )
        .bind(&streams)
        .bind(&tokens)
        .bind(&seqs)
        .bind(self.instance.as_str())
        .bind(&texts)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

/// Gives every row its token, following each stream's position in `positions` (which it
/// advances), and returns each request's tokens and the rows to insert.
fn allocate<'a>(
    requests: &'a [AppendRequest],
    positions: &mut HashMap<&'a StreamName, i64>,
) -> (Vec<Vec<Token>>, Vec<PendingRow<'a>>) {
    let mut all_tokens = Vec::with_capacity(requests.len());
    let mut pending = Vec::new();
    for request in requests {
        let position = positions
            .get_mut(&request.stream)
            .expect("every requested stream has a position");
        let mut tokens = Vec::with_capacity(request.rows.len());
        if request.shared_token && !request.rows.is_empty() {
            *position += 1;
        }
        for (seq, row) in request.rows.iter().enumerate() {
            let seq = if request.shared_token {
                seq as i64
            } else {
                *position += 1;
                0
            };
            tokens.push(Token(*position));
            pending.push((&request.stream, *position, seq, row));
        }
        all_tokens.push(tokens);
    }
    (all_tokens, pending)
}

/// Takes each stream's advisory lock in `tx` and sets its position in `positions` to the
/// highest token committed, as seen after the locks are held.
async fn lock_and_read_positions(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    positions: &mut HashMap<&StreamName, i64>,
) -> Result<()> {
    let mut streams: Vec<&StreamName> = positions.keys().copied().collect();
    streams.sort();
    // Name order everywhere, so two appenders never wait on each other in a cycle.
    // The key includes the schema: logs in other schemas do not contend.
    for stream in &streams {
        sqlx::query(
            "SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || '/' || $1, 0))",
        )
        .bind(stream.as_str())
        .execute(&mut **tx)
        .await?;
    }
    // A statement of its own: its snapshot is taken after the locks are held, so
    // it sees every row a previous lock holder committed.
    let names: Vec<&str> = streams.iter().map(|s| s.as_str()).collect();
    let current: Vec<(String, Option<i64>)> = sqlx::query_as(
        "SELECT name, (SELECT MAX(token) FROM stream_rows WHERE stream = name) \
         FROM UNNEST($1::text[]) AS s(name)",
    )
    .bind(&names)
    .fetch_all(&mut **tx)
    .await?;
    for (name, max) in current {
        let stream = streams
            .iter()
            .find(|s| s.as_str() == name)
            .expect("asked for these names");
        positions.insert(*stream, max.unwrap_or(ORIGIN.0));
    }
    Ok(())
}
