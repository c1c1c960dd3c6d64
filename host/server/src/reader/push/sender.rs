//! [`Sender`]: one destination's HTTP client. Each attempt POSTs the body to the destination's
//! URL with its headers, its `Content-Type` and `Idempotency-Key: <key>`, under the per-attempt
//! timeout (connection to the end of the answer), and is judged by [`policy::judge`].
//! `https://` goes through rustls, trusting the system's roots or the destination's `ca_file`.

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use hyper::{HeaderMap, Method, Request, Uri};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::policy::{self, Verdict};
use crate::clock::unix_ms;
use crate::config::{ClientTlsConfig, DestinationConfig};
use crate::net::tls::ClientTls;

/// Most bytes of an answer's body read (the rest is dropped): kept as the error text.
const ANSWER_PREFIX_BYTES: usize = 1_024;
/// Longest a pooled connection is kept unused.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The header carrying a push's key.
pub(crate) const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// A destination's client.
pub(crate) struct Sender {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    url: Uri,
    headers: HeaderMap,
    timeout: Duration,
}

impl Sender {
    /// The client of destination `name`; a bad header or `ca_file` fails here, at start.
    pub(crate) fn new(name: &str, config: &DestinationConfig) -> anyhow::Result<Sender> {
        let what = format!("reader.destinations.{name}");
        let url: Uri = config
            .url
            .parse()
            .with_context(|| format!("{what}.url is not a URL"))?;
        let mut headers = HeaderMap::new();
        for (header, value) in &config.headers {
            let header = HeaderName::try_from(header.as_str())
                .with_context(|| format!("{what}.headers: {header:?} is not a header name"))?;
            let mut value = HeaderValue::try_from(value.expose())
                .with_context(|| format!("{what}.headers.{header}: not a header value"))?;
            value.set_sensitive(true);
            headers.insert(header, value);
        }
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::try_from(config.content_type.as_str())
                .with_context(|| format!("{what}.content_type: not a header value"))?,
        );
        let tls = ClientTls::new(
            &ClientTlsConfig {
                ca_file: config.ca_file.clone(),
                ..ClientTlsConfig::default()
            },
            &what,
        )?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.enforce_http(false);
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls.current().1.as_ref().clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(config.concurrency)
            .build(connector);
        Ok(Sender {
            client,
            url,
            headers,
            timeout: Duration::from_millis(config.timeout_ms),
        })
    }

    /// One attempt to deliver `body` under `key`.
    pub(crate) async fn send(&self, key: &str, body: Vec<u8>) -> Verdict {
        let attempt = async {
            let mut request = Request::builder()
                .method(Method::POST)
                .uri(self.url.clone())
                .body(Full::new(Bytes::from(body)))
                .map_err(|e| format!("building the request: {e}"))?;
            request.headers_mut().extend(self.headers.clone());
            let key = HeaderValue::try_from(key).map_err(|_| "the key is not a header value")?;
            request
                .headers_mut()
                .insert(HeaderName::from_static(IDEMPOTENCY_KEY), key);
            let answer = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("connection: {}", error_chain(&e)))?;
            let status = answer.status().as_u16();
            let retry_after = answer
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            // The answer's start, for the error text; a body that fails or is long is cut.
            let prefix = match Limited::new(answer.into_body(), ANSWER_PREFIX_BYTES)
                .collect()
                .await
            {
                Ok(body) => String::from_utf8_lossy(&body.to_bytes()).trim().to_owned(),
                Err(_) => String::new(),
            };
            Ok::<_, String>(policy::judge(
                status,
                retry_after.as_deref(),
                &prefix,
                unix_ms(),
            ))
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(verdict)) => verdict,
            Ok(Err(error)) => Verdict::Retry {
                error,
                not_before_ms: None,
            },
            Err(_) => Verdict::Retry {
                error: format!("timed out after {} ms", self.timeout.as_millis()),
                not_before_ms: None,
            },
        }
    }
}

/// An error with its sources, `a: b: c`.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
