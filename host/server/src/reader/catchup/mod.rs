//! Fetching the rows a reader missed: the [`CatchupSource`] trait the processor calls, and
//! the sources of a Streamhost writer's rows, chosen by the reader's upstream:
//! - `http`: [`HttpCatchup`], the client of the writer's catch-up endpoint
//!   (`GET /_synapse/replication/get_repl_stream_updates/{stream}/{txn_id}`, docs/replication.md,
//!   "Catch-up endpoint");
//! - `db`: [`DbCatchup`], which reads the same pages straight from the writer's log database.
//!
//! A Synapse upstream's source is `reader::upstream::synapse::catchup`.

mod db;
mod http;

use std::time::Duration;

use hyper::StatusCode;
use streamhost_proto::{RowJson, StreamName, Token};

pub use self::db::DbCatchup;
pub use self::http::HttpCatchup;
use super::sink::BoxFuture;

/// Longest wait for one catch-up answer. Generous: the writer answers from its log in
/// bounded pages, so a slow answer means a sick writer, and the processor retries.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// One answer of the catch-up endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatchupPage {
    /// `(token, row)` in order; rows sharing a token are adjacent.
    pub updates: Vec<(Token, RowJson)>,
    /// Every row up to this token is in `updates`.
    pub upto: Token,
    /// More rows follow: call again from `upto`.
    pub limited: bool,
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum CatchupError {
    /// The request could not be made or the answer not read (worth retrying).
    #[error("catch-up request failed: {0}")]
    Transport(String),
    /// The writer answered with an error status; 5xx are worth retrying, 4xx are not.
    #[error("catch-up answered {status}: {body}")]
    Status {
        /// The HTTP status.
        status: StatusCode,
        /// The start of the answer's body.
        body: String,
    },
    /// The answer is not what the endpoint promises.
    #[error("catch-up answer is malformed: {0}")]
    Malformed(String),
    /// No source can provide these rows (a Synapse stream whose rows are only in Synapse's
    /// database): the range is a gap, to be reported, never retried.
    #[error("no catch-up source: {0}")]
    Unavailable(String),
    /// The writer's retention trimmed rows after the request's `from` (HTTP 410): every row
    /// up to `trimmed_upto` is gone; asking again from `trimmed_upto` is served.
    #[error("rows up to token {trimmed_upto} were trimmed by the writer's retention")]
    Trimmed {
        /// The highest token trimmed.
        trimmed_upto: Token,
        /// The lowest token the writer still keeps, when it said.
        earliest: Option<Token>,
    },
}

impl CatchupError {
    /// Whether trying again may help.
    pub fn is_transient(&self) -> bool {
        match self {
            CatchupError::Transport(_) => true,
            CatchupError::Status { status, .. } => status.is_server_error(),
            CatchupError::Malformed(_)
            | CatchupError::Unavailable(_)
            | CatchupError::Trimmed { .. } => false,
        }
    }
}

/// Where the processor fetches `(from, upto]` of a stream. The writer's HTTP endpoint in
/// production; an in-memory table in tests.
pub trait CatchupSource: Send + Sync + 'static {
    /// The rows of `stream` with `from < token <= upto`, possibly only a first page.
    fn fetch<'a>(
        &'a self,
        stream: &'a StreamName,
        from: Token,
        upto: Token,
    ) -> BoxFuture<'a, Result<CatchupPage, CatchupError>>;
}
