//! What every router wears: the 404 and 405 fallbacks, and the tower layers, outermost first:
//!
//! 1. request tracing (`TraceLayer`: a span per request, at debug level);
//! 2. JSON errors: an error answer that is not JSON already (axum's rejections, a layer's
//!    bare status) becomes an [`ApiError`] with its status;
//! 3. a concurrency limit shared by all routes ([`MAX_IN_FLIGHT`]; further requests wait);
//! 4. the body limit (`DefaultBodyLimit`: a body extracted by a handler is cut at the
//!    router's limit, a 413);
//! 5. a body-read timeout (the router's `body_read_timeout`, [`BODY_READ_TIMEOUT`] for the
//!    writer and the reader, without a byte of body fails the read, and the connection is
//!    closed after the error answer);
//!
//! and, per router, a request timeout around its handlers ([`timeout`]), which also bounds a
//! body read by a handler as a whole. Request heads have their own timeout in the connection
//! (the listener's `handshake_timeout_ms`, see `serve`).

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, OriginalUri};
use axum::http::header::CONTENT_TYPE;
use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tracing::Level;

use super::error::ApiError;
use super::response::Response;

/// Most requests one process answers at once; further ones wait for a turn. An event stream
/// holds a turn only until its headers are sent.
pub const MAX_IN_FLIGHT: usize = 4096;

/// Longest a request body of the writer's or the reader's API may pause between two pieces.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest error body of a layer or rejection kept as the error's message.
const MAX_ERROR_TEXT: usize = 4096;

/// The bounds of one router.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest request body a handler may extract (413 above).
    pub body_bytes: usize,
    /// Longest a request body may pause between two pieces.
    pub body_read_timeout: Duration,
}

/// `router` with the fallbacks and the shared layers (see the module documentation).
pub fn finish(router: Router, limits: Limits) -> Router {
    router
        .fallback(no_such_endpoint)
        .method_not_allowed_fallback(not_allowed)
        .layer(RequestBodyTimeoutLayer::new(limits.body_read_timeout))
        .layer(DefaultBodyLimit::max(limits.body_bytes))
        .layer(GlobalConcurrencyLimitLayer::new(MAX_IN_FLIGHT))
        .layer(axum::middleware::map_response(json_errors))
        .layer(TraceLayer::new_for_http().on_failure(DefaultOnFailure::new().level(Level::DEBUG)))
}

/// The request timeout of a router's handlers: a handler still running after `timeout` is
/// dropped and the client gets a 503 `M_UNAVAILABLE` (retry; a write may have happened).
pub fn timeout(timeout: Duration) -> TimeoutLayer {
    TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, timeout)
}

async fn no_such_endpoint(OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::not_found(format!("no such endpoint: {}", uri.path()))
}

async fn not_allowed(method: Method) -> ApiError {
    ApiError::from_status(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed here"),
    )
}

/// Turns an error answer that is not JSON into an [`ApiError`] of the same status, with its
/// text (or, when it has none, what the status means here) as the message.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), MAX_ERROR_TEXT)
        .await
        .unwrap_or_default();
    let message = match (text.is_empty(), status) {
        (false, _) => String::from_utf8_lossy(&text).into_owned(),
        (true, StatusCode::SERVICE_UNAVAILABLE) => {
            "the request did not finish in time; a write it made may have been committed \
             (check before retrying)"
                .into()
        }
        (true, _) => status.canonical_reason().unwrap_or("error").into(),
    };
    ApiError::from_status(status, message).into_response()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use axum::http::header::RETRY_AFTER;
    use axum::routing::{get, post};
    use bytes::Bytes;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    fn router() -> Router {
        let routes = Router::new()
            .route("/ok", get(|| async { "ok" }))
            .route("/body", post(|body: Bytes| async move { body }))
            .route("/path/{n}", get(|_: axum::extract::Path<u32>| async {}))
            .route(
                "/slow",
                get(|| tokio::time::sleep(Duration::from_secs(60)))
                    .layer(timeout(Duration::from_millis(10))),
            );
        finish(
            routes,
            Limits {
                body_bytes: 4,
                body_read_timeout: BODY_READ_TIMEOUT,
            },
        )
    }

    async fn call(request: Request<Body>) -> (StatusCode, Option<String>, serde_json::Value) {
        let response = router().oneshot(request).await.unwrap();
        let status = response.status();
        let retry = response
            .headers()
            .get(RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (status, retry, json)
    }

    fn get_(uri: &str) -> Request<Body> {
        Request::get(uri).body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn every_error_is_json_with_the_usual_status() {
        let (status, _, answer) = call(get_("/nope")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            answer,
            serde_json::json!({"errcode": "M_NOT_FOUND", "error": "no such endpoint: /nope"})
        );
        let (status, _, answer) = call(Request::post("/ok").body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(
            answer,
            serde_json::json!({"errcode": "M_UNRECOGNIZED", "error": "POST is not allowed here"})
        );
        let (status, _, answer) = call(get_("/path/x")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(answer["errcode"], "M_BAD_REQUEST", "{answer}");
        let big = Request::post("/body").body(Body::from("12345")).unwrap();
        let (status, _, answer) = call(big).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(answer["errcode"], "M_TOO_LARGE", "{answer}");
        let (status, retry, answer) = call(get_("/slow")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry.as_deref(), Some("1"));
        assert_eq!(answer["errcode"], "M_UNAVAILABLE", "{answer}");
        assert_eq!(answer["retry_after_ms"], 1_000, "{answer}");
    }

    #[tokio::test]
    async fn answers_pass_unchanged() {
        let response = router().oneshot(get_("/ok")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"ok");
    }
}
