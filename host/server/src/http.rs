//! What the writer's and reader's HTTP APIs share: serving hyper on a bound listener with
//! graceful shutdown, JSON answers, bounded body reads and the one API error type.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Body of every response (boxed so streaming answers can join later).
pub type ResponseBody = BoxBody<Bytes, Infallible>;
/// An HTTP response.
pub type Response = hyper::Response<ResponseBody>;

/// A client error or server failure, answered as `{"errcode": ..., "error": message}`.
///
/// `errcode` follows Synapse's names where Synapse defines the endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A Matrix-style error code (`M_NOT_FOUND`, `M_BAD_JSON`, ...).
    pub errcode: &'static str,
    /// A message for the client.
    pub message: String,
}

impl ApiError {
    /// A 400 with this code and message.
    pub fn bad_request(errcode: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            errcode,
            message: message.into(),
        }
    }

    /// A 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            errcode: "M_NOT_FOUND",
            message: message.into(),
        }
    }

    /// A 401 for a missing or wrong bearer token.
    pub fn unauthorized() -> ApiError {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            errcode: "M_UNAUTHORIZED",
            message: "missing or wrong bearer token".into(),
        }
    }

    /// A 500; the detail is logged here, once, and the client gets a generic message.
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %detail, "request failed");
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            errcode: "M_UNKNOWN",
            message: "internal error".into(),
        }
    }

    /// The response for this error. A 503 (the log database is down, or the process is
    /// stopping) tells the client when to retry, as a `Retry-After` header and, Matrix-style,
    /// `retry_after_ms` in the body, so retrying clients do not spin through an outage.
    pub fn into_response(self) -> Response {
        if self.status != StatusCode::SERVICE_UNAVAILABLE {
            return json(
                self.status,
                &serde_json::json!({ "errcode": self.errcode, "error": self.message }),
            );
        }
        let mut response = json(
            self.status,
            &serde_json::json!({
                "errcode": self.errcode,
                "error": self.message,
                "retry_after_ms": RETRY_AFTER_SECS * 1_000,
            }),
        );
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        response
    }
}

/// How long a client should wait before retrying a 503. Every request tries the database
/// again, so this only keeps an outage from becoming a storm of retries.
const RETRY_AFTER_SECS: u64 = 1;

/// A JSON response.
pub fn json(status: StatusCode, value: &impl Serialize) -> Response {
    let body = serde_json::to_vec(value).expect("serialising a JSON answer cannot fail");
    with_type(status, body.into(), "application/json")
}

/// A response with a body and content type.
pub fn with_type(status: StatusCode, body: Bytes, content_type: &'static str) -> Response {
    let mut response = hyper::Response::new(Full::new(body).boxed());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The Prometheus text of a registry.
pub fn metrics(registry: &crate::metrics::Registry) -> Response {
    with_type(
        StatusCode::OK,
        registry.render().into(),
        "text/plain; version=0.0.4",
    )
}

/// Reads a whole body of at most `max_bytes`; more is a 413.
pub async fn read_body(request: Request<Incoming>, max_bytes: usize) -> Result<Bytes, ApiError> {
    match Limited::new(request.into_body(), max_bytes).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            errcode: "M_TOO_LARGE",
            message: format!("request body exceeds {max_bytes} bytes"),
        }),
        Err(e) => Err(ApiError::bad_request(
            "M_BAD_REQUEST",
            format!("reading request body: {e}"),
        )),
    }
}

/// Checks `Authorization: Bearer <secret>` when a secret is configured.
pub fn check_bearer<B>(request: &Request<B>, secret: Option<&str>) -> Result<(), ApiError> {
    let Some(secret) = secret else { return Ok(()) };
    let given = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(given) if constant_time_eq(given.as_bytes(), secret.as_bytes()) => Ok(()),
        _ => Err(ApiError::unauthorized()),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of query parameter `name`, percent-decoded.
pub fn query_param<B>(request: &Request<B>, name: &str) -> Option<String> {
    let query = request.uri().query()?;
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key) == name).then(|| percent_decode(value))
    })
}

/// Every query parameter, percent-decoded, in order.
pub fn query_params<B>(request: &Request<B>) -> Vec<(String, String)> {
    let Some(query) = request.uri().query() else {
        return Vec::new();
    };
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Serves HTTP/1.1 on `listener` with `handler` until `shutdown` fires, then lets in-flight
/// requests finish.
pub async fn serve<H, F>(listener: TcpListener, handler: H, shutdown: CancellationToken)
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting an HTTP connection");
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let service = hyper::service::service_fn(move |request| {
            let answer = handler(request, peer);
            async move { Ok::<_, Infallible>(answer.await) }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, %peer, "HTTP connection ended with an error");
            }
        });
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), graceful.shutdown()).await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    async fn body(response: Response) -> serde_json::Value {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn a_503_says_when_to_retry_and_other_errors_do_not() {
        let unavailable = ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            errcode: "M_UNAVAILABLE",
            message: "down".into(),
        }
        .into_response();
        assert_eq!(unavailable.headers()[RETRY_AFTER], "1");
        let answer = body(unavailable).await;
        assert_eq!(answer["retry_after_ms"], 1_000, "{answer}");
        assert_eq!(answer["errcode"], "M_UNAVAILABLE");

        let bad = ApiError::bad_request("M_BAD_JSON", "no").into_response();
        assert!(bad.headers().get(RETRY_AFTER).is_none());
        assert!(body(bad).await.get("retry_after_ms").is_none());
    }
}
