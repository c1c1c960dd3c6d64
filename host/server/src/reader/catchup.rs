//! Fetching the rows a reader missed: the [`CatchupSource`] trait the processor calls,
//! [`HttpCatchup`], the client of the writer's catch-up endpoint
//! (`GET /_synapse/replication/get_repl_stream_updates/{stream}/{txn_id}`, docs/replication.md,
//! "Catch-up endpoint"), and [`DbCatchup`], which reads the same pages straight from the
//! writer's log database.

use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use rand::Rng;
use serde::Deserialize;
use serde_json::value::RawValue;
use streamhost_proto::{RowJson, StreamName, Token};

use super::sink::BoxFuture;
use crate::client::ApiClient;

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
}

impl CatchupError {
    /// Whether trying again may help.
    pub fn is_transient(&self) -> bool {
        match self {
            CatchupError::Transport(_) => true,
            CatchupError::Status { status, .. } => status.is_server_error(),
            CatchupError::Malformed(_) | CatchupError::Unavailable(_) => false,
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

/// The client of the writer's catch-up endpoint.
#[derive(Clone, Debug)]
pub struct HttpCatchup {
    client: ApiClient,
}

impl HttpCatchup {
    /// A client for the writer at `base` (`http://HOST:PORT`), sending
    /// `Authorization: Bearer <secret>` when a secret is given.
    pub fn new(base: &str, secret: Option<String>) -> HttpCatchup {
        let client = ApiClient::new(base);
        let client = match secret {
            Some(secret) => client.with_bearer(secret),
            None => client,
        };
        HttpCatchup { client }
    }

    /// The request path for one fetch, with a fresh random 10-character transaction id.
    fn path(stream: &StreamName, from: Token, upto: Token) -> String {
        let txn_id: String = rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(10)
            .map(char::from)
            .collect();
        format!(
            "/_synapse/replication/get_repl_stream_updates/{}/{txn_id}?from_token={}&upto_token={}",
            percent_encode(stream.as_str()),
            from.0,
            upto.0
        )
    }

    async fn get(&self, path: &str) -> Result<(StatusCode, Bytes), CatchupError> {
        self.client
            .send(Method::GET, path, Bytes::new())
            .await
            .map_err(|e| CatchupError::Transport(format!("{}{path}: {e:#}", self.client.base())))
    }
}

impl CatchupSource for HttpCatchup {
    fn fetch<'a>(
        &'a self,
        stream: &'a StreamName,
        from: Token,
        upto: Token,
    ) -> BoxFuture<'a, Result<CatchupPage, CatchupError>> {
        Box::pin(async move {
            let path = HttpCatchup::path(stream, from, upto);
            let (status, body) = tokio::time::timeout(REQUEST_TIMEOUT, self.get(&path))
                .await
                .map_err(|_| CatchupError::Transport("timed out".into()))??;
            if !status.is_success() {
                let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
                return Err(CatchupError::Status { status, body: text });
            }
            parse_page(&body)
        })
    }
}

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
            // A database error is worth retrying: the processor's retries ride out a restart.
            .map_err(|e| CatchupError::Transport(e.to_string()))?;
            Ok(CatchupPage {
                updates: read.rows,
                upto: read.upto,
                limited: read.limited,
            })
        })
    }
}

#[derive(Deserialize)]
struct WirePage<'a> {
    #[serde(borrow)]
    updates: Vec<(i64, &'a RawValue)>,
    upto_token: i64,
    limited: bool,
}

/// Parses a 200 answer, keeping each row's JSON as canonical [`RowJson`].
fn parse_page(body: &[u8]) -> Result<CatchupPage, CatchupError> {
    let page: WirePage<'_> =
        serde_json::from_slice(body).map_err(|e| CatchupError::Malformed(e.to_string()))?;
    let updates = page
        .updates
        .into_iter()
        .map(|(token, raw)| {
            RowJson::parse(raw.get().as_bytes())
                .map(|row| (Token(token), row))
                .map_err(|e| CatchupError::Malformed(format!("row at token {token}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CatchupPage {
        updates,
        upto: Token(page.upto_token),
        limited: page.limited,
    })
}

/// Percent-encodes everything but RFC 3986 unreserved characters (a stream name as one path
/// segment, a Redis password in a URL).
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_answer_and_keeps_rows_canonical() {
        let page = parse_page(br#"{"updates":[[3,["a", 1]],[3,{"k":null}],[5,"\u00e9"]],"upto_token":5,"limited":true}"#)
            .unwrap();
        assert_eq!(page.upto, Token(5));
        assert!(page.limited);
        let rows: Vec<(i64, &str)> = page
            .updates
            .iter()
            .map(|(t, r)| (t.0, r.as_str()))
            .collect();
        assert_eq!(
            rows,
            vec![(3, r#"["a",1]"#), (3, r#"{"k":null}"#), (5, r#""\u00e9""#)]
        );
    }

    #[test]
    fn rejects_answers_that_break_the_contract() {
        assert!(matches!(parse_page(b"{}"), Err(CatchupError::Malformed(_))));
        assert!(matches!(
            parse_page(br#"{"updates":[[1,NaN]],"upto_token":1,"limited":false}"#),
            Err(CatchupError::Malformed(_))
        ));
    }

    #[test]
    fn path_escapes_the_stream_and_carries_a_fresh_txn_id() {
        let url = HttpCatchup::path(&StreamName::new("a/b%").unwrap(), Token(3), Token(9));
        let prefix = "/_synapse/replication/get_repl_stream_updates/a%2Fb%25/";
        assert!(url.starts_with(prefix), "{url}");
        let rest = &url[prefix.len()..];
        let (txn, query) = rest.split_once('?').unwrap();
        assert_eq!(txn.len(), 10);
        assert!(txn.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(query, "from_token=3&upto_token=9");
        assert_ne!(
            url,
            HttpCatchup::path(&StreamName::new("a/b%").unwrap(), Token(3), Token(9))
        );
    }
}
