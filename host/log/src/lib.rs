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
//!
//! Retention ([`Log::trim`], `trim.rs`) deletes a stream's oldest rows and raises its floor;
//! a read from below the floor fails with [`LogError::Trimmed`], never answers short.

mod append;
mod error;
mod open;
mod positions;
mod read;
mod trim;
mod url;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sqlx::{PgPool, SqlitePool};
use streamhost_proto::{InstanceName, RowJson, StreamName, Token};

pub use error::{LogError, Result, is_disk_full};
pub use trim::{TrimOutcome, trimmed_after};
pub use url::{Backend, has_password, percent_encode, redact_url, with_password};

/// The position of a stream with no rows: Synapse's implicit origin.
pub const ORIGIN: Token = Token(1);

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
