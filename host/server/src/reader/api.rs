//! The reader's HTTP API: `GET /v1/status` and `GET /metrics` (see `docs/reader.md`).

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};

use super::status::Shared;
use crate::http::{ApiError, Response, json, metrics};

/// Answers one request.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
    _peer: SocketAddr,
) -> Response {
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
        "/v1/status" => json(StatusCode::OK, &shared.snapshot()),
        "/metrics" => metrics(&shared.metrics.registry),
        path => ApiError::not_found(format!("no such endpoint: {path}")).into_response(),
    }
}
