//! A small HTTP/1.1 client for the writer's API, used by the demo, the benchmarks, tests and
//! catch-up. `https://` bases work too (a writer behind a TLS proxy, Synapse's
//! `instance_map.*.tls`, a writer's TLS listener): rustls, verifying against the system's
//! roots as Synapse does (which `SSL_CERT_FILE`/`SSL_CERT_DIR` can replace), or against
//! `[reader.writer_tls]`'s CA with its client certificate ([`ApiClient::with_tls`]).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode};
use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::ServerName;
use streamhost_proto::Token;

use crate::config::Secret;
use crate::net::tls::ClientTls;

/// Longest wait for a TCP connection to the server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest a pooled connection is reused after its last answer: well under the servers'
/// default header-read timeout (a listener's `handshake_timeout_ms`, 10 s), which also closes
/// idle kept-alive connections, so a request is not sent on a connection the server is
/// closing.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest a request waits for its whole answer (head and body) unless the client is given
/// another bound ([`ApiClient::with_timeout`]): longer than the writer's request timeout
/// (60 s) and the reader's for its status (30 s), which answer 503 when they pass, so it only
/// ends a request whose answer was lost. A caller that waits longer on purpose (the admin CLI,
/// a long poll) sets its own. One way to lose it, seen in the tests about once in 400 runs:
/// hyper's pooled client hands the request to a connection whose TLS 1.3 handshake the server
/// then refuses (an untrusted or missing client certificate shows after the client's side of
/// the handshake), and the request waits on that dead connection forever.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(90);

/// Largest answer body read, in bytes. The writer's answers are bounded pages (a catch-up
/// page is at most `catchup_row_limit` rows of at most 16 KiB); 256 MiB leaves room many times
/// over and still stops a runaway answer.
const MAX_ANSWER_BYTES: usize = 256 << 20;

/// A pooled HTTP client bound to one base URL (`http://HOST:PORT` or `https://…`).
#[derive(Clone, Debug)]
pub struct ApiClient {
    base: String,
    bearer: Option<Secret>,
    timeout: Duration,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// The TLS client configuration of an `ApiClient` without its own: the system's root
/// certificates (read once; `SSL_CERT_FILE` and `SSL_CERT_DIR` replace them), no client
/// certificate.
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            crate::net::tls::install_crypto_provider();
            Arc::new(
                rustls::ClientConfig::builder()
                    .with_root_certificates(crate::net::tls::system_roots())
                    .with_no_client_auth(),
            )
        })
        .clone()
}

/// An answer that was not a success.
#[derive(Debug, thiserror::Error)]
#[error("HTTP {status}: {body}")]
pub struct HttpError {
    /// The status.
    pub status: StatusCode,
    /// The body, as text.
    pub body: String,
}

impl ApiClient {
    /// A client for `base` (`http://HOST:PORT` or `https://HOST:PORT`, no trailing slash
    /// needed); `https://` verifies against the system's roots.
    pub fn new(base: impl Into<String>) -> ApiClient {
        ApiClient::build(base.into(), tls_config().as_ref().clone(), None)
    }

    /// A client for `base` whose `https://` connections use `tls` (its CA, its client
    /// certificate and its `server_name`), as configured now: a client made after a reload
    /// of `tls` uses the new files.
    pub fn with_tls(base: impl Into<String>, tls: &ClientTls) -> ApiClient {
        let (_, config) = tls.current();
        ApiClient::build(
            base.into(),
            config.as_ref().clone(),
            tls.server_name().cloned(),
        )
    }

    fn build(
        base: String,
        tls: rustls::ClientConfig,
        server_name: Option<ServerName<'static>>,
    ) -> ApiClient {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.enforce_http(false);
        let builder = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http();
        let builder = match server_name {
            Some(name) => builder.with_server_name_resolver(FixedServerNameResolver::new(name)),
            None => builder,
        };
        let connector = builder.enable_http1().wrap_connector(connector);
        ApiClient {
            base: base.trim_end_matches('/').to_owned(),
            bearer: None,
            timeout: REQUEST_TIMEOUT,
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(POOL_IDLE_TIMEOUT)
                .build(connector),
        }
    }

    /// Sends `Authorization: Bearer <token>` with every request.
    pub fn with_bearer(mut self, token: impl Into<Secret>) -> ApiClient {
        self.bearer = Some(token.into());
        self
    }

    /// Waits at most `timeout` for each answer instead of [`REQUEST_TIMEOUT`].
    pub fn with_timeout(mut self, timeout: Duration) -> ApiClient {
        self.timeout = timeout;
        self
    }

    /// The base URL, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request and returns the status and body, whatever the status; an error when
    /// the whole answer has not come within the client's timeout.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        // Named only when it is needed: appends go through here at the demo's full rate.
        let shown = method.clone();
        tokio::time::timeout(self.timeout, self.exchange(method, path, body))
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "no answer to {shown} {}{path} within {:?}",
                    self.base,
                    self.timeout
                )
            })?
    }

    /// One request and its whole answer, without a bound.
    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(token) = &self.bearer {
            request = request.header(
                hyper::header::AUTHORIZATION,
                format!("Bearer {}", token.expose()),
            );
        }
        if !body.is_empty() {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let response = self.client.request(request.body(Full::new(body))?).await?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reading the answer: {e}"))?
            .to_bytes();
        Ok((status, body))
    }

    /// GETs `path` and parses a successful JSON answer.
    pub async fn get_json(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let (status, body) = self.send(Method::GET, path, Bytes::new()).await?;
        ok_json(status, &body)
    }

    /// Appends `rows` (a JSON array body) to `stream` and returns the tokens they got.
    pub async fn append(
        &self,
        stream: &str,
        rows_json_array: Bytes,
        shared_token: bool,
    ) -> anyhow::Result<Vec<Token>> {
        let path = format!(
            "/v1/streams/{stream}/rows{}",
            if shared_token {
                "?shared_token=true"
            } else {
                ""
            }
        );
        let (status, body) = self.send(Method::POST, &path, rows_json_array).await?;
        let answer = ok_json(status, &body)?;
        let tokens = answer["tokens"]
            .as_array()
            .ok_or_else(|| anyhow::anyhow!("answer has no tokens: {answer}"))?
            .iter()
            .map(|t| {
                t.as_i64()
                    .map(Token)
                    .ok_or_else(|| anyhow::anyhow!("bad token {t}"))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(tokens)
    }
}

fn ok_json(status: StatusCode, body: &[u8]) -> anyhow::Result<serde_json::Value> {
    if !status.is_success() {
        return Err(HttpError {
            status,
            body: String::from_utf8_lossy(body).into_owned(),
        }
        .into());
    }
    Ok(serde_json::from_slice(body)?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A server that takes the request and never answers: the request fails once the client's
    /// timeout has passed, saying so, instead of waiting forever.
    #[tokio::test]
    async fn a_request_without_an_answer_fails_at_the_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let silent = tokio::spawn(async move {
            let (connection, _) = listener.accept().await.unwrap();
            // Held open, never answered.
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(connection);
        });
        let timeout = Duration::from_millis(300);
        let client = ApiClient::new(format!("http://{addr}")).with_timeout(timeout);
        let started = std::time::Instant::now();
        let error = client.get_json("/v1/status").await.unwrap_err().to_string();
        let took = started.elapsed();
        assert!(
            took >= timeout && took < Duration::from_secs(10),
            "{took:?}"
        );
        assert!(
            error.contains("no answer to GET") && error.contains("/v1/status"),
            "{error}"
        );
        silent.abort();
    }
}
