//! The writer's durable append-only log: streams, their positions and their rows, on sqlx.
//!
//! SQLite in WAL mode with `synchronous = FULL` is the embedded default, so a row is on disk
//! before [`Log::append`] returns and survives `kill -9` (and power loss). The schema
//! (`migrations/`) uses only types PostgreSQL takes as well.
//!
//! Tokens are allocated by the single writer process, which keeps each stream's position in
//! memory (read from the table at start) and advances it only after a commit; the first row
//! of a stream gets token 2 (position 1 is the implicit origin, as in Synapse). An append of
//! up to 1,000 rows is one `INSERT` statement, atomic on its own: one round trip to SQLite
//! and one fsync.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, SqlitePool};
use streamhost_proto::{InstanceName, JsonError, RowJson, StreamName, Token};

/// The position of a stream with no rows: Synapse's implicit origin.
pub const ORIGIN: Token = Token(1);

/// Rows per multi-row `INSERT`: 5 bound values each stays well under SQLite's 32,766 limit.
const INSERT_CHUNK_ROWS: usize = 1_000;

/// What can go wrong with the log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The database failed.
    #[error("log database: {0}")]
    Database(#[from] sqlx::Error),
    /// The schema migration failed.
    #[error("migrating the log schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stream that was never declared.
    #[error("unknown stream {0}")]
    UnknownStream(StreamName),
    /// A stored row or name is not what this version wrote (corruption or a foreign database).
    #[error("corrupt log: {0}")]
    Corrupt(String),
}

impl From<JsonError> for LogError {
    fn from(e: JsonError) -> Self {
        LogError::Corrupt(format!("stored row is not canonical JSON: {e}"))
    }
}

/// Result of a log operation.
pub type Result<T> = std::result::Result<T, LogError>;

/// One client request to append rows to one stream.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    /// The stream to append to.
    pub stream: StreamName,
    /// The rows, in order.
    pub rows: Vec<RowJson>,
    /// Give every row of the request one token (replicated as a `batch` run) instead of one
    /// token per row.
    pub shared_token: bool,
}

/// Rows of one stream read back from the log, shaped like Synapse's update functions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Updates {
    /// `(token, row)` in log order; rows that share a token are adjacent.
    pub rows: Vec<(Token, RowJson)>,
    /// Every row up to this token (and after the requested start) is in `rows`.
    pub upto: Token,
    /// There are more rows after `upto` in the requested range: call again from `upto`.
    pub limited: bool,
}

/// The durable log. Cloning shares the connection pool and the positions.
#[derive(Clone, Debug)]
pub struct Log {
    pool: SqlitePool,
    instance: InstanceName,
    /// Each declared stream's committed position.
    positions: Arc<Mutex<HashMap<StreamName, Token>>>,
}

impl Log {
    /// Opens (creating if needed) the SQLite log at `path` and brings its schema up to date.
    ///
    /// `instance` is recorded on every appended row.
    pub async fn open(path: &Path, instance: InstanceName) -> Result<Log> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        let log = Log {
            pool,
            instance,
            positions: Arc::default(),
        };
        log.load_positions().await?;
        Ok(log)
    }

    /// Opens the log from a database URL (`sqlite:PATH` or `sqlite://PATH`).
    pub async fn open_url(url: &str, instance: InstanceName) -> Result<Log> {
        let options = SqliteConnectOptions::from_str(url)?;
        let path = options.get_filename().to_owned();
        Log::open(&path, instance).await
    }

    /// Closes every connection (after a clean shutdown).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The instance name this log records on appended rows.
    pub fn instance(&self) -> &InstanceName {
        &self.instance
    }

    /// Declares `streams`, keeping the rows of those that already exist.
    pub async fn declare_streams(&self, streams: &[StreamName]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for stream in streams {
            sqlx::query("INSERT INTO streams (name) VALUES (?) ON CONFLICT (name) DO NOTHING")
                .bind(stream.as_str())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.load_positions().await
    }

    async fn load_positions(&self) -> Result<()> {
        let rows = sqlx::query(
            "SELECT name, (SELECT MAX(token) FROM stream_rows WHERE stream = streams.name) AS position \
             FROM streams ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut positions = HashMap::new();
        for row in rows {
            let name: String = row.try_get("name")?;
            let stream = StreamName::new(name).map_err(|e| LogError::Corrupt(e.to_string()))?;
            let position: Option<i64> = row.try_get("position")?;
            positions.insert(stream, position.map_or(ORIGIN, Token));
        }
        *self.positions.lock().expect("positions lock") = positions;
        Ok(())
    }

    /// Every declared stream and its position, by name.
    pub async fn positions(&self) -> Result<Vec<(StreamName, Token)>> {
        let positions = self.positions.lock().expect("positions lock");
        let mut all: Vec<_> = positions.iter().map(|(s, t)| (s.clone(), *t)).collect();
        all.sort();
        Ok(all)
    }

    /// Appends every request atomically (all or nothing) and returns each request's tokens,
    /// in order.
    ///
    /// The caller must be the only appender (the writer's appender task): tokens are allocated
    /// from the in-memory positions, which advance only once the commit succeeded.
    pub async fn append(&self, requests: &[AppendRequest]) -> Result<Vec<Vec<Token>>> {
        let mut positions: HashMap<&StreamName, i64> = HashMap::new();
        {
            let committed = self.positions.lock().expect("positions lock");
            for request in requests {
                let position = committed
                    .get(&request.stream)
                    .ok_or_else(|| LogError::UnknownStream(request.stream.clone()))?;
                positions.entry(&request.stream).or_insert(position.0);
            }
        }

        let mut all_tokens = Vec::with_capacity(requests.len());
        let mut pending: Vec<(&StreamName, i64, i64, &RowJson)> = Vec::new();
        for request in requests {
            let position = positions.get_mut(&request.stream).expect("looked up above");
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

        if pending.len() <= INSERT_CHUNK_ROWS {
            // One statement is atomic by itself: no BEGIN/COMMIT round trips.
            if !pending.is_empty() {
                self.insert(&pending, &self.pool).await?;
            }
        } else {
            let mut tx = self.pool.begin().await?;
            for chunk in pending.chunks(INSERT_CHUNK_ROWS) {
                self.insert(chunk, &mut *tx).await?;
            }
            tx.commit().await?;
        }

        let mut committed = self.positions.lock().expect("positions lock");
        for (stream, position) in positions {
            committed.insert(stream.clone(), Token(position));
        }
        Ok(all_tokens)
    }

    async fn insert<'e>(
        &self,
        rows: &[(&StreamName, i64, i64, &RowJson)],
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

    /// Reads the rows of `stream` with tokens in `(from, upto]`, at most about `limit` rows.
    ///
    /// Never cuts a token in half: when the limit falls inside a run of rows sharing a token,
    /// the run is left for the next call, or returned whole if it is the first token.
    pub async fn read_range(
        &self,
        stream: &StreamName,
        from: Token,
        upto: Token,
        limit: usize,
    ) -> Result<Updates> {
        let limit = limit.max(1);
        if upto <= from {
            return Ok(Updates {
                rows: Vec::new(),
                upto,
                limited: false,
            });
        }
        let fetched = sqlx::query(
            "SELECT token, row_json FROM stream_rows WHERE stream = ? AND token > ? AND token <= ? \
             ORDER BY token, seq LIMIT ?",
        )
        .bind(stream.as_str())
        .bind(from.0)
        .bind(upto.0)
        .bind((limit + 1) as i64)
        .fetch_all(&self.pool)
        .await?;
        let mut rows = decode_rows(fetched)?;
        if rows.len() <= limit {
            return Ok(Updates {
                rows,
                upto,
                limited: false,
            });
        }
        let boundary = rows[limit].0;
        rows.truncate(limit);
        rows.retain(|(token, _)| *token < boundary);
        if rows.is_empty() {
            // One token holds more rows than the limit: return that token whole.
            let whole = sqlx::query(
                "SELECT token, row_json FROM stream_rows WHERE stream = ? AND token = ? ORDER BY seq",
            )
            .bind(stream.as_str())
            .bind(boundary.0)
            .fetch_all(&self.pool)
            .await?;
            rows = decode_rows(whole)?;
            return Ok(Updates {
                rows,
                upto: boundary,
                limited: boundary < upto,
            });
        }
        let last = rows.last().expect("non-empty").0;
        Ok(Updates {
            rows,
            upto: last,
            limited: true,
        })
    }
}

fn decode_rows(rows: Vec<sqlx::sqlite::SqliteRow>) -> Result<Vec<(Token, RowJson)>> {
    rows.into_iter()
        .map(|row| {
            let token: i64 = row.try_get(0)?;
            let text: String = row.try_get(1)?;
            Ok((
                Token(token),
                RowJson::parse_bytes(bytes::Bytes::from(text))?,
            ))
        })
        .collect()
}
