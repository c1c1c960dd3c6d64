//! [`DbCatchup`]: catch-up read straight from the writer's log database.

use streamhost_proto::{StreamName, Token};

use super::{CatchupError, CatchupPage, CatchupSource, REQUEST_TIMEOUT};
use crate::reader::sink::BoxFuture;

/// Catch-up straight from the writer's log database (`log_database_url`), read only: the
/// same bounded pages the writer's endpoint answers, without asking the writer. Readers on
/// other machines share a PostgreSQL log this way; the writer's HTTP load does not grow with
/// them.
#[derive(Clone, Debug)]
pub struct DbCatchup {
    log: streamhost_log::Log,
    row_limit: usize,
}

/// Rows per page read from the log database: the writer endpoint's default
/// `catchup_row_limit`.
const DB_CATCHUP_ROWS: usize = 1_000;

impl DbCatchup {
    /// Opens the log database at `url` (`sqlite:PATH` or `postgres://...`) for reading.
    pub async fn open(url: &str) -> anyhow::Result<DbCatchup> {
        use anyhow::Context as _;
        let log = streamhost_log::Log::open_read_only(url)
            .await
            .with_context(|| {
                format!(
                    "opening the log database {} for catch-up",
                    streamhost_log::redact_url(url)
                )
            })?;
        Ok(DbCatchup {
            log,
            row_limit: DB_CATCHUP_ROWS,
        })
    }
}

impl CatchupSource for DbCatchup {
    fn fetch<'a>(
        &'a self,
        stream: &'a StreamName,
        from: Token,
        upto: Token,
    ) -> BoxFuture<'a, Result<CatchupPage, CatchupError>> {
        Box::pin(async move {
            let read = tokio::time::timeout(
                REQUEST_TIMEOUT,
                self.log.read_range(stream, from, upto, self.row_limit),
            )
            .await
            .map_err(|_| CatchupError::Transport("log database read timed out".into()))?
            .map_err(|e| match e {
                streamhost_log::LogError::Trimmed {
                    trimmed_upto,
                    earliest,
                    ..
                } => CatchupError::Trimmed {
                    trimmed_upto,
                    earliest,
                },
                // A database error is worth retrying: the processor's retries ride out a
                // restart.
                e => CatchupError::Transport(e.to_string()),
            })?;
            Ok(CatchupPage {
                updates: read.rows,
                upto: read.upto,
                limited: read.limited,
            })
        })
    }
}
