//! Retention: trimming a stream's oldest rows, the floor below which reads are refused, and
//! the marks that date tokens so rows can be trimmed by age.
//!
//! A stream's *floor* (`streams.trimmed_upto`) is the highest token trimmed: every row at or
//! below it is gone. It is raised in the same transaction as rows are deleted, and
//! [`Log::read_range`] reads it after its rows, so a read that started from below the floor
//! fails with [`LogError::Trimmed`] instead of returning a range with rows missing. The
//! newest token of a stream is never trimmed: a stream's position is its highest token, so it
//! survives any trim.

use streamhost_proto::{StreamName, Token};

use crate::{Log, LogError, ORIGIN, Pool, Result};

/// Runs one query that returns at most one `BIGINT` (or `NULL`) on whichever pool the log
/// has. `$sqlite` and `$pg` are the same statement with each backend's placeholders.
macro_rules! scalar {
    ($log:expr, $sqlite:literal, $pg:literal $(, $arg:expr)* $(,)?) => {
        match &$log.pool {
            Pool::Sqlite(pool) => sqlx::query_scalar::<_, Option<i64>>($sqlite)
                $(.bind($arg))*
                .fetch_optional(pool)
                .await?
                .flatten(),
            Pool::Postgres(pool) => sqlx::query_scalar::<_, Option<i64>>($pg)
                $(.bind($arg))*
                .fetch_optional(pool)
                .await?
                .flatten(),
        }
    };
}

/// Whether a read from `from` would miss rows under the floor `floor`. No row has a token at
/// or below [`ORIGIN`], so a floor there (nothing trimmed) refuses nothing, even a read from 0.
pub fn trimmed_after(from: Token, floor: Token) -> bool {
    floor > ORIGIN && from < floor
}

/// What one [`Log::trim`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrimOutcome {
    /// The stream's floor after the trim: every row at or below it is gone.
    pub upto: Token,
    /// Rows deleted by this trim.
    pub rows: u64,
}

impl Log {
    /// The floor of `stream`: the highest token trimmed ([`ORIGIN`] when nothing was).
    pub async fn trimmed_upto(&self, stream: &StreamName) -> Result<Token> {
        let floor = scalar!(
            self,
            "SELECT trimmed_upto FROM streams WHERE name = ?1",
            "SELECT trimmed_upto FROM streams WHERE name = $1",
            stream.as_str(),
        );
        Ok(floor.map_or(ORIGIN, Token))
    }

    /// The lowest token of `stream` still in the log, if it has rows.
    pub async fn earliest_token(&self, stream: &StreamName) -> Result<Option<Token>> {
        Ok(scalar!(
            self,
            "SELECT MIN(token) FROM stream_rows WHERE stream = ?1",
            "SELECT MIN(token) FROM stream_rows WHERE stream = $1",
            stream.as_str(),
        )
        .map(Token))
    }

    /// Fails with [`LogError::Trimmed`] when rows after `from` have been trimmed.
    pub(crate) async fn check_floor(&self, stream: &StreamName, from: Token) -> Result<()> {
        let floor = self.trimmed_upto(stream).await?;
        if !trimmed_after(from, floor) {
            return Ok(());
        }
        Err(LogError::Trimmed {
            stream: stream.clone(),
            trimmed_upto: floor,
            earliest: self.earliest_token(stream).await?,
        })
    }

    /// Deletes the rows of `stream` with tokens at or below `upto`, in transactions of about
    /// `step_rows` rows each (so appends are never held behind one long delete), raising the
    /// floor in each. The stream's newest token is kept whatever `upto` says.
    pub async fn trim(
        &self,
        stream: &StreamName,
        upto: Token,
        step_rows: u64,
    ) -> Result<TrimOutcome> {
        if self.read_only {
            return Err(LogError::ReadOnly);
        }
        let mut floor = self.trimmed_upto(stream).await?;
        let Some(newest) = scalar!(
            self,
            "SELECT MAX(token) FROM stream_rows WHERE stream = ?1",
            "SELECT MAX(token) FROM stream_rows WHERE stream = $1",
            stream.as_str(),
        ) else {
            return Ok(TrimOutcome {
                upto: floor,
                rows: 0,
            });
        };
        let target = upto.min(Token(newest - 1));
        let offset = step_rows.max(1) as i64 - 1;
        let mut rows = 0;
        while floor < target {
            let step = scalar!(
                self,
                "SELECT token FROM stream_rows WHERE stream = ?1 AND token > ?2 \
                 ORDER BY token, seq LIMIT 1 OFFSET ?3",
                "SELECT token FROM stream_rows WHERE stream = $1 AND token > $2 \
                 ORDER BY token, seq LIMIT 1 OFFSET $3",
                stream.as_str(),
                floor.0,
                offset,
            )
            .map_or(target, |token| Token(token).min(target));
            rows += self.trim_step(stream, step).await?;
            floor = step;
        }
        self.forget_marks(stream, floor).await?;
        Ok(TrimOutcome { upto: floor, rows })
    }

    /// One transaction: raises the floor to `upto` and deletes the rows at or below it.
    async fn trim_step(&self, stream: &StreamName, upto: Token) -> Result<u64> {
        let deleted = match &self.pool {
            Pool::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query(
                    "UPDATE streams SET trimmed_upto = ?1 WHERE name = ?2 AND trimmed_upto < ?1",
                )
                .bind(upto.0)
                .bind(stream.as_str())
                .execute(&mut *tx)
                .await?;
                let done = sqlx::query("DELETE FROM stream_rows WHERE stream = ?1 AND token <= ?2")
                    .bind(stream.as_str())
                    .bind(upto.0)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                done.rows_affected()
            }
            Pool::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query(
                    "UPDATE streams SET trimmed_upto = $1 WHERE name = $2 AND trimmed_upto < $1",
                )
                .bind(upto.0)
                .bind(stream.as_str())
                .execute(&mut *tx)
                .await?;
                let done = sqlx::query("DELETE FROM stream_rows WHERE stream = $1 AND token <= $2")
                    .bind(stream.as_str())
                    .bind(upto.0)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                done.rows_affected()
            }
        };
        Ok(deleted)
    }

    /// The highest token to trim so that at most `keep` rows of `stream` remain (a token's
    /// rows go together, so a shared token at the edge may leave fewer); `None` when the
    /// stream has no more than `keep` rows.
    pub async fn cut_for_rows(&self, stream: &StreamName, keep: u64) -> Result<Option<Token>> {
        Ok(scalar!(
            self,
            "SELECT token FROM stream_rows WHERE stream = ?1 \
             ORDER BY token DESC, seq DESC LIMIT 1 OFFSET ?2",
            "SELECT token FROM stream_rows WHERE stream = $1 \
             ORDER BY token DESC, seq DESC LIMIT 1 OFFSET $2",
            stream.as_str(),
            keep as i64,
        )
        .map(Token))
    }

    /// The highest token to trim so that the rows of `stream` that remain hold at most
    /// `keep_bytes` bytes of JSON (rows are ASCII, so characters are bytes); `None` when they
    /// hold no more. Reads the whole stream: one pass per retention run.
    pub async fn cut_for_bytes(
        &self,
        stream: &StreamName,
        keep_bytes: u64,
    ) -> Result<Option<Token>> {
        Ok(scalar!(
            self,
            "SELECT token FROM (SELECT token, SUM(LENGTH(row_json)) OVER \
             (ORDER BY token DESC, seq DESC ROWS UNBOUNDED PRECEDING) AS total \
             FROM stream_rows WHERE stream = ?1) WHERE total > ?2 ORDER BY token DESC LIMIT 1",
            "SELECT token FROM (SELECT token, SUM(LENGTH(row_json)) OVER \
             (ORDER BY token DESC, seq DESC ROWS UNBOUNDED PRECEDING) AS total \
             FROM stream_rows WHERE stream = $1) AS kept WHERE total > $2 \
             ORDER BY token DESC LIMIT 1",
            stream.as_str(),
            keep_bytes as i64,
        )
        .map(Token))
    }

    /// The highest token of `stream` known to have been committed at or before `before_ms`
    /// (from the marks), if any.
    pub async fn cut_for_age(&self, stream: &StreamName, before_ms: i64) -> Result<Option<Token>> {
        Ok(scalar!(
            self,
            "SELECT MAX(token) FROM stream_marks WHERE stream = ?1 AND at_ms <= ?2",
            "SELECT MAX(token) FROM stream_marks WHERE stream = $1 AND at_ms <= $2",
            stream.as_str(),
            before_ms,
        )
        .map(Token))
    }

    /// Notes that every row of `stream` at or below `token` was committed by `at_ms` (ms since
    /// the Unix epoch), for [`Log::cut_for_age`]. A token already marked keeps its first time.
    pub async fn mark(&self, stream: &StreamName, token: Token, at_ms: i64) -> Result<()> {
        if self.read_only {
            return Err(LogError::ReadOnly);
        }
        match &self.pool {
            Pool::Sqlite(pool) => {
                sqlx::query(
                    "INSERT INTO stream_marks (stream, token, at_ms) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (stream, token) DO NOTHING",
                )
                .bind(stream.as_str())
                .bind(token.0)
                .bind(at_ms)
                .execute(pool)
                .await?;
            }
            Pool::Postgres(pool) => {
                sqlx::query(
                    "INSERT INTO stream_marks (stream, token, at_ms) VALUES ($1, $2, $3) \
                     ON CONFLICT (stream, token) DO NOTHING",
                )
                .bind(stream.as_str())
                .bind(token.0)
                .bind(at_ms)
                .execute(pool)
                .await?;
            }
        }
        Ok(())
    }

    /// Drops the marks of tokens at or below the floor: they date rows that are gone.
    async fn forget_marks(&self, stream: &StreamName, floor: Token) -> Result<()> {
        match &self.pool {
            Pool::Sqlite(pool) => {
                sqlx::query("DELETE FROM stream_marks WHERE stream = ?1 AND token <= ?2")
                    .bind(stream.as_str())
                    .bind(floor.0)
                    .execute(pool)
                    .await?;
            }
            Pool::Postgres(pool) => {
                sqlx::query("DELETE FROM stream_marks WHERE stream = $1 AND token <= $2")
                    .bind(stream.as_str())
                    .bind(floor.0)
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }
}
