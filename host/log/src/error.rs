//! What can go wrong with the log, and the result type of its operations.

use streamhost_proto::{JsonError, StreamName, Token};

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
    /// The TLS handshake with PostgreSQL failed (an untrusted certificate, a name it does not
    /// carry, a server without TLS under `sslmode=require`). Not a source-chained error:
    /// sqlx's message already ends with rustls's reason.
    #[error(
        "TLS with the log database failed: {0} (check the URL's sslmode and sslrootcert; \
         docs/configuration.md, \"PostgreSQL over TLS\")"
    )]
    Tls(sqlx::Error),
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
    /// A read from below the stream's floor: rows it asked for were trimmed by retention.
    #[error("rows of stream {stream} up to token {trimmed_upto} were trimmed from the log")]
    Trimmed {
        /// The stream read.
        stream: StreamName,
        /// The highest token trimmed: a read from this token on is served.
        trimmed_upto: Token,
        /// The lowest token still in the log (none if the stream has no rows).
        earliest: Option<Token>,
    },
}

impl LogError {
    /// Whether the log's storage is out of space: the failure lasts until an operator frees
    /// space (see [`is_disk_full`]), unlike a restarting database.
    pub fn is_disk_full(&self) -> bool {
        match self {
            LogError::Database(e) | LogError::CommitUnknown(e) => is_disk_full(e),
            _ => false,
        }
    }
}

/// SQLite's `SQLITE_FULL`: a write failed with `ENOSPC` (SQLite reports it so for the
/// database, its WAL and its journal).
const SQLITE_FULL: &str = "13";
/// SQLite's `SQLITE_IOERR_SHMSIZE`: the WAL index (`-shm`) could not be extended.
const SQLITE_IOERR_SHMSIZE: &str = "4874";
/// PostgreSQL's `disk_full` (class 53, "insufficient resources"): a table, index or
/// temporary file could not be extended. The rest of class 53 (out of memory, too many
/// connections) passes by itself and is not a full disk.
const PG_DISK_FULL: &str = "53100";

/// Whether `e` says the database's disk is full: SQLite's `SQLITE_FULL` (or a WAL index it
/// could not extend), PostgreSQL's `53100 disk_full`, or an I/O error `ENOSPC`.
pub fn is_disk_full(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            [SQLITE_FULL, SQLITE_IOERR_SHMSIZE, PG_DISK_FULL].contains(&&*code)
        }),
        sqlx::Error::Io(io) => io.kind() == std::io::ErrorKind::StorageFull,
        _ => false,
    }
}

impl From<JsonError> for LogError {
    fn from(e: JsonError) -> Self {
        LogError::Corrupt(format!("stored row is not canonical JSON: {e}"))
    }
}

/// Result of a log operation.
pub type Result<T> = std::result::Result<T, LogError>;
