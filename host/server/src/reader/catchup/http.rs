//! [`HttpCatchup`]: the client of the writer's catch-up endpoint
//! (`GET /_synapse/replication/get_repl_stream_updates/{stream}/{txn_id}`, docs/replication.md,
//! "Catch-up endpoint").

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use hyper::{Method, StatusCode};
use rand::Rng;
use serde::Deserialize;
use serde_json::value::RawValue;
use streamhost_proto::{RowJson, StreamName, Token};

use super::{CatchupError, CatchupPage, CatchupSource, REQUEST_TIMEOUT};
use streamhost_log::percent_encode;

use crate::client::ApiClient;
use crate::config::Secret;
use crate::net::tls::ClientTls;
use crate::reader::sink::BoxFuture;

/// The client of the writer's catch-up endpoint.
#[derive(Debug)]
pub struct HttpCatchup {
    base: String,
    secret: Option<Secret>,
    /// `[reader.writer_tls]` for an `https://` base; none verifies against the system's roots.
    tls: Option<Arc<ClientTls>>,
    /// The pooled client and the generation of `tls` it was made with: a reload of the TLS
    /// files makes a new client (and pool) at the next fetch.
    client: Mutex<(u64, ApiClient)>,
}

impl HttpCatchup {
    /// A client for the writer at `base` (`http://HOST:PORT` or `https://HOST:PORT`),
    /// sending `Authorization: Bearer <secret>` when a secret is given, with `tls` for
    /// `https://`.
    pub fn new(base: &str, secret: Option<Secret>, tls: Option<Arc<ClientTls>>) -> HttpCatchup {
        let (generation, client) = HttpCatchup::client_of(base, &secret, tls.as_deref());
        HttpCatchup {
            base: base.to_owned(),
            secret,
            tls,
            client: Mutex::new((generation, client)),
        }
    }

    fn client_of(base: &str, secret: &Option<Secret>, tls: Option<&ClientTls>) -> (u64, ApiClient) {
        let (generation, client) = match tls {
            Some(tls) => (tls.current().0, ApiClient::with_tls(base, tls)),
            None => (0, ApiClient::new(base)),
        };
        match secret {
            Some(secret) => (generation, client.with_bearer(secret.clone())),
            None => (generation, client),
        }
    }

    /// The client to use now: the same pool until the TLS files are reloaded.
    fn client(&self) -> ApiClient {
        let mut current = self.client.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tls) = &self.tls
            && tls.current().0 != current.0
        {
            *current = HttpCatchup::client_of(&self.base, &self.secret, Some(tls));
        }
        current.1.clone()
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
        self.client()
            .send(Method::GET, path, Bytes::new())
            .await
            .map_err(|e| CatchupError::Transport(format!("{}{path}: {e:#}", self.base)))
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
            if status == StatusCode::GONE {
                return Err(parse_gone(&body));
            }
            if !status.is_success() {
                let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
                return Err(CatchupError::Status { status, body: text });
            }
            parse_page(&body)
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

/// The body of a 410: `trimmed_upto` (and `earliest_token`) beside the usual `errcode` and
/// `error`.
#[derive(Deserialize)]
struct WireGone {
    trimmed_upto: i64,
    earliest_token: Option<i64>,
}

/// Reads a 410 answer: [`CatchupError::Trimmed`], or `Malformed` when it does not say how far.
fn parse_gone(body: &[u8]) -> CatchupError {
    match serde_json::from_slice::<WireGone>(body) {
        Ok(gone) => CatchupError::Trimmed {
            trimmed_upto: Token(gone.trimmed_upto),
            earliest: gone.earliest_token.map(Token),
        },
        Err(e) => CatchupError::Malformed(format!("410 answer without trimmed_upto: {e}")),
    }
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
    fn a_410_says_how_far_the_writer_trimmed() {
        let body =
            br#"{"errcode":"M_TRIMMED","error":"trimmed","trimmed_upto":41,"earliest_token":42}"#;
        assert!(matches!(
            parse_gone(body),
            CatchupError::Trimmed {
                trimmed_upto: Token(41),
                earliest: Some(Token(42))
            }
        ));
        assert!(matches!(
            parse_gone(br#"{"errcode":"M_TRIMMED","error":"x"}"#),
            CatchupError::Malformed(_)
        ));
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
