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

impl From<JsonError> for LogError {
    fn from(e: JsonError) -> Self {
        LogError::Corrupt(format!("stored row is not canonical JSON: {e}"))
    }
}

/// Result of a log operation.
pub type Result<T> = std::result::Result<T, LogError>;
