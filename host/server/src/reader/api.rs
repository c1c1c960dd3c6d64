//! The reader's HTTP API: `GET /v1/status` and `GET /metrics` (see `docs/reader.md`), and the
//! plugin endpoints when plugins run (`plugins::api`).

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};

use super::plugins::{self, PluginHost};
use super::status::Shared;
use crate::http::{ApiError, Response, json, metrics};

/// Answers one request.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    plugins: Option<Arc<PluginHost>>,
    request: Request<Incoming>,
    _peer: SocketAddr,
) -> Response {
    let path = request.uri().path();
    let plugin_path = [
        "/v1/query/",
        "/v1/notifications",
        "/v1/plugins",
        "/v1/admin/",
    ]
    .iter()
    .any(|prefix| path.starts_with(prefix));
    if plugin_path {
        let Some(host) = plugins else {
            return ApiError::not_found(
                "this reader runs no plugins (start it with --plugins DIR)",
            )
            .into_response();
        };
        if let Some(response) = plugins::handle_api(&host, request).await {
            return response;
        }
        return ApiError::not_found("no such plugin endpoint").into_response();
    }
    let known = matches!(request.uri().path(), "/v1/status" | "/metrics");
    if known && request.method() != Method::GET {
        return ApiError {
            status: StatusCode::METHOD_NOT_ALLOWED,
            errcode: "M_UNRECOGNIZED",
            message: format!("{} is not allowed here", request.method()),
        }
        .into_response();
    }
    match request.uri().path() {
        "/v1/status" => match plugins {
            // With plugins, each one's state and lag joins the reader's own status.
            Some(host) => {
                let mut status = serde_json::to_value(shared.snapshot()).unwrap_or_default();
                status["plugins"] = plugins::summaries_json(&host);
                json(StatusCode::OK, &status)
            }
            None => json(StatusCode::OK, &shared.snapshot()),
        },
        "/metrics" => metrics(&shared.metrics.registry),
        path => ApiError::not_found(format!("no such endpoint: {path}")).into_response(),
    }
}
