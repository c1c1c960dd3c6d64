//! The writer's durable append-only log: streams, their positions and their rows, on sqlx.
//!
//! Two backends, chosen by the database URL, with the same schema (`migrations/`, plain
//! `BIGINT` and `TEXT`, applied by `sqlx::migrate!` to either) and the same behaviour:
//!
//! - **SQLite** (a path or `sqlite:` URL; the default): WAL mode with `synchronous = FULL`, so
//!   a row is on disk before [`Log::append`] returns and survives `kill -9` (and power loss).
//!   The writer process is the only appender: it keeps each stream's position in memory (read
//!   from the table at start) and advances it only after a commit. An append of up to 1,000
//!   rows is one `INSERT` statement, atomic on its own: one round trip and one fsync.
//! - **PostgreSQL** (`postgres://` or `postgresql://`): several appenders (two writer
//!   processes, a tool) may share a stream. An append is one transaction that takes a
//!   transaction-scoped advisory lock per stream (in name order, so appenders never deadlock),
//!   reads each stream's highest token under it, and inserts every row with one `UNNEST`
//!   statement; the lock serialises appenders, so tokens never repeat or go backwards, and the
//!   in-memory positions follow whatever another appender committed. Acknowledged means
//!   committed (PostgreSQL's default `synchronous_commit = on`).
//!
//! In both, the first row of a stream gets token 2 (position 1 is the implicit origin, as in
//! Synapse). [`Log::open_read_only`] opens either database for reading only (readers catching
//! up straight from the shared database).

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, QueryBuilder, SqlitePool};
use streamhost_proto::{InstanceName, JsonError, RowJson, StreamName, Token};

/// The position of a stream with no rows: Synapse's implicit origin.
pub const ORIGIN: Token = Token(1);

/// Rows per multi-row `INSERT` on SQLite: 5 bound values each stays well under SQLite's
/// 32,766 limit. (PostgreSQL binds whole columns as arrays, one statement per append.)
const INSERT_CHUNK_ROWS: usize = 1_000;

/// Connections to PostgreSQL. The writer's appender uses one at a time; the streamer and
/// catch-up reads use the rest. Could become a setting if many readers catch up from SQL.
const PG_MAX_CONNECTIONS: u32 = 8;

/// Longest wait for a PostgreSQL connection before an operation fails (and an append
/// answers 503); short so a restarting database is reported quickly, not queued behind.
const PG_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// A database URL this log cannot open.
    #[error("log database URL: {0}")]
    Url(String),
    /// The connection was lost while committing and could not be re-established to check:
    /// the rows may or may not be in the log.
    #[error("commit outcome unknown (the database connection was lost at COMMIT): {0}")]
    CommitUnknown(sqlx::Error),
    /// An append on a log opened with [`Log::open_read_only`].
    #[error("the log was opened read-only")]
    ReadOnly,
}

impl From<JsonError> for LogError {
    fn from(e: JsonError) -> Self {
        LogError::Corrupt(format!("stored row is not canonical JSON: {e}"))
    }
}

/// Result of a log operation.
pub type Result<T> = std::result::Result<T, LogError>;

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file (`sqlite:PATH`, `sqlite://PATH`).
    Sqlite,
    /// A PostgreSQL database (`postgres://...`, `postgresql://...`).
    Postgres,
}

impl Backend {
    /// The backend of `url`, or an error naming the schemes this log takes (the URL itself
    /// is not repeated: it may hold a password).
    pub fn of_url(url: &str) -> Result<Backend> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            let scheme = url.split_once(':').map_or("(none)", |(scheme, _)| scheme);
            Err(LogError::Url(format!(
                "scheme {scheme:?} is not supported: use sqlite:PATH or postgres://USER@HOST/DB"
            )))
        }
    }

    /// `sqlite` or `postgres`, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// `url` with any password replaced by `***`, for logs, error messages and status: the one in
/// the authority (`user:secret@`) and a `password=`/`pass=` query parameter (PostgreSQL's and
/// the `redis` crate's UNIX-socket form).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(query)),
        None => (rest, None),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let rest = match rest[..authority_end].rfind('@') {
        Some(at) => match rest[..at].split_once(':') {
            Some((user, _)) => format!("{user}:***{}", &rest[at..]),
            None => rest.to_owned(),
        },
        None => rest.to_owned(),
    };
    let query = query.map(|query| {
        let pairs: Vec<&str> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some(("password", _)) => "password=***",
                Some(("pass", _)) => "pass=***",
                _ => pair,
            })
            .collect();
        format!("?{}", pairs.join("&"))
    });
    format!("{scheme}://{rest}{}", query.unwrap_or_default())
}

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
    pool: Pool,
    instance: InstanceName,
    read_only: bool,
    /// Each declared stream's committed position, as far as this handle knows.
    positions: Arc<Mutex<HashMap<StreamName, Token>>>,
}

#[derive(Clone, Debug)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// One row to insert: (stream, token, seq, row).
type PendingRow<'a> = (&'a StreamName, i64, i64, &'a RowJson);

impl Log {
    /// Opens (creating if needed) the SQLite log at `path` and brings its schema up to date.
    ///
    /// `instance` is recorded on every appended row.
    pub async fn open(path: &Path, instance: InstanceName) -> Result<Log> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true);
        Log::open_sqlite(options, instance, false).await
    }

    /// Opens the log a database URL names (`sqlite:PATH`, `sqlite://PATH`, `postgres://...`)
    /// and brings its schema up to date. A SQLite file is created if missing; a PostgreSQL
    /// database must exist (the tables are created in the connection's `search_path`, which
    /// the URL can set: `?options[search_path]=SCHEMA`).
    pub async fn open_url(url: &str, instance: InstanceName) -> Result<Log> {
        match Backend::of_url(url)? {
            Backend::Sqlite => {
                let options = SqliteConnectOptions::from_str(url)?.create_if_missing(true);
                Log::open_sqlite(options, instance, false).await
            }
            Backend::Postgres => {
                Log::open_postgres(PgConnectOptions::from_str(url)?, instance, false).await
            }
        }
    }

    /// Opens an existing log for reading only: no migration, no stream declared, and
    /// [`Log::append`] fails. Readers catch up from the writer's database with it.
    pub async fn open_read_only(url: &str) -> Result<Log> {
        let instance = InstanceName::new("read-only").expect("a valid instance name");
        match Backend::of_url(url)? {
            Backend::Sqlite => {
                let options = SqliteConnectOptions::from_str(url)?.read_only(true);
                Log::open_sqlite(options, instance, true).await
            }
            Backend::Postgres => {
                Log::open_postgres(PgConnectOptions::from_str(url)?, instance, true).await
            }
        }
    }

    async fn open_sqlite(
        options: SqliteConnectOptions,
        instance: InstanceName,
        read_only: bool,
    ) -> Result<Log> {
        let options = options
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        if !read_only {
            sqlx::migrate!("./migrations").run(&pool).await?;
        }
        Log::finish_open(Pool::Sqlite(pool), instance, read_only).await
    }

    async fn open_postgres(
        options: PgConnectOptions,
        instance: InstanceName,
        read_only: bool,
    ) -> Result<Log> {
        // `test_before_acquire` (sqlx's default) pings a pooled connection before handing it
        // out, so connections a restarted server dropped are replaced, not reused.
        let pool = PgPoolOptions::new()
            .max_connections(PG_MAX_CONNECTIONS)
            .acquire_timeout(PG_ACQUIRE_TIMEOUT)
            .test_before_acquire(true)
            .connect_with(options)
            .await?;
        if !read_only {
            // The same migrations as SQLite: the schema uses only types both take.
            sqlx::migrate!("./migrations").run(&pool).await?;
        }
        Log::finish_open(Pool::Postgres(pool), instance, read_only).await
    }

    async fn finish_open(pool: Pool, instance: InstanceName, read_only: bool) -> Result<Log> {
        let log = Log {
            pool,
            instance,
            read_only,
            positions: Arc::default(),
        };
        log.load_positions().await?;
        Ok(log)
    }

    /// Closes every connection (after a clean shutdown).
    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite(pool) => pool.close().await,
            Pool::Postgres(pool) => pool.close().await,
        }
    }

    /// The database this log is in.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// The instance name this log records on appended rows.
    pub fn instance(&self) -> &InstanceName {
        &self.instance
    }

    /// Declares `streams`, keeping the rows of those that already exist.
    pub async fn declare_streams(&self, streams: &[StreamName]) -> Result<()> {
        if self.read_only {
            return Err(LogError::ReadOnly);
        }
        match &self.pool {
            Pool::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                for stream in streams {
                    sqlx::query(
                        "INSERT INTO streams (name) VALUES (?) ON CONFLICT (name) DO NOTHING",
                    )
                    .bind(stream.as_str())
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
            }
            Pool::Postgres(pool) => {
                let names: Vec<&str> = streams.iter().map(StreamName::as_str).collect();
                sqlx::query(
                    "INSERT INTO streams (name) SELECT UNNEST($1::text[]) ON CONFLICT (name) DO NOTHING",
                )
                .bind(&names)
                .execute(pool)
                .await?;
            }
        }
        self.load_positions().await
    }

    async fn load_positions(&self) -> Result<()> {
        const SQL: &str = "SELECT name, (SELECT MAX(token) FROM stream_rows WHERE stream = streams.name) \
             FROM streams ORDER BY name";
        let rows: Vec<(String, Option<i64>)> = match &self.pool {
            Pool::Sqlite(pool) => sqlx::query_as(SQL).fetch_all(pool).await?,
            Pool::Postgres(pool) => sqlx::query_as(SQL).fetch_all(pool).await?,
        };
        let mut positions = HashMap::new();
        for (name, position) in rows {
            let stream = StreamName::new(name).map_err(|e| LogError::Corrupt(e.to_string()))?;
            positions.insert(stream, position.map_or(ORIGIN, Token));
        }
        *self.positions.lock().expect("positions lock") = positions;
        Ok(())
    }

    /// Every declared stream and its position, by name: the positions this handle read at
    /// open or committed since (on PostgreSQL also what other appenders committed before this
    /// handle's last append).
    pub async fn positions(&self) -> Result<Vec<(StreamName, Token)>> {
        let positions = self.positions.lock().expect("positions lock");
        let mut all: Vec<_> = positions.iter().map(|(s, t)| (s.clone(), *t)).collect();
        all.sort();
        Ok(all)
    }

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
        if requests.iter().all(|r| r.rows.is_empty()) {
            return Ok(vec![Vec::new(); requests.len()]);
        }
        match &self.pool {
            Pool::Sqlite(pool) => {
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
            Pool::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let mut streams: Vec<&StreamName> = positions.keys().copied().collect();
                streams.sort();
                // Name order everywhere, so two appenders never wait on each other in a cycle.
                // The key includes the schema: logs in other schemas do not contend.
                for stream in &streams {
                    sqlx::query(
                        "SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || '/' || $1, 0))",
                    )
                    .bind(stream.as_str())
                    .execute(&mut *tx)
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
                .fetch_all(&mut *tx)
                .await?;
                for (name, max) in current {
                    let stream = streams
                        .iter()
                        .find(|s| s.as_str() == name)
                        .expect("asked for these names");
                    positions.insert(*stream, max.unwrap_or(ORIGIN.0));
                }
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
        }
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

    /// Records committed positions; never moves one backwards (another handle of the same
    /// log may have recorded a later one).
    fn advance(&self, positions: HashMap<&StreamName, i64>) {
        let mut committed = self.positions.lock().expect("positions lock");
        for (stream, position) in positions {
            let entry = committed.entry(stream.clone()).or_insert(ORIGIN);
            *entry = (*entry).max(Token(position));
        }
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
        let mut rows = self
            .select(stream, from, upto, Some((limit + 1) as i64))
            .await?;
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
            rows = self
                .select(stream, Token(boundary.0 - 1), boundary, None)
                .await?;
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

    /// Rows of `stream` with tokens in `(from, upto]` in log order, at most `limit`.
    async fn select(
        &self,
        stream: &StreamName,
        from: Token,
        upto: Token,
        limit: Option<i64>,
    ) -> Result<Vec<(Token, RowJson)>> {
        let limit = limit.unwrap_or(i64::MAX);
        let rows: Vec<(i64, String)> = match &self.pool {
            Pool::Sqlite(pool) => {
                sqlx::query_as(
                    "SELECT token, row_json FROM stream_rows WHERE stream = ? AND token > ? \
                     AND token <= ? ORDER BY token, seq LIMIT ?",
                )
                .bind(stream.as_str())
                .bind(from.0)
                .bind(upto.0)
                .bind(limit)
                .fetch_all(pool)
                .await?
            }
            Pool::Postgres(pool) => {
                sqlx::query_as(
                    "SELECT token, row_json FROM stream_rows WHERE stream = $1 AND token > $2 \
                     AND token <= $3 ORDER BY token, seq LIMIT $4",
                )
                .bind(stream.as_str())
                .bind(from.0)
                .bind(upto.0)
                .bind(limit)
                .fetch_all(pool)
                .await?
            }
        };
        rows.into_iter()
            .map(|(token, text)| {
                Ok((
                    Token(token),
                    RowJson::parse_bytes(bytes::Bytes::from(text))?,
                ))
            })
            .collect()
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
