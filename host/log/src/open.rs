//! Opening a log: connecting to SQLite or PostgreSQL, migrating the schema, declaring streams,
//! and what an open handle tells about itself.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use streamhost_proto::{InstanceName, StreamName};

use crate::{Backend, Log, LogError, Pool, Result};

/// Connections to PostgreSQL. The writer's appender uses one at a time; the streamer and
/// catch-up reads use the rest. Could become a setting if many readers catch up from SQL.
const PG_MAX_CONNECTIONS: u32 = 8;

/// Longest wait for a PostgreSQL connection before an operation fails (and an append
/// answers 503); short so a restarting database is reported quickly, not queued behind.
const PG_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

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
            .await
            .map_err(connect_error)?;
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
}

/// A failed first connection to PostgreSQL: [`LogError::Tls`] when TLS is what failed (sqlx
/// reports rustls's errors as its own `Tls`, or as I/O errors wrapping them), else
/// [`LogError::Database`].
fn connect_error(e: sqlx::Error) -> LogError {
    let tls = match &e {
        sqlx::Error::Tls(_) => true,
        sqlx::Error::Io(io) => io
            .get_ref()
            .is_some_and(|inner| inner.is::<rustls::Error>()),
        _ => false,
    };
    if tls {
        LogError::Tls(e)
    } else {
        LogError::Database(e)
    }
}
