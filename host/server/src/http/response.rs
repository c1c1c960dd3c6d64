//! Successful answers: JSON, a body with its content type, metrics (Prometheus text or
//! OpenMetrics).

use axum::body::Body;
use axum::http::StatusCode;
use axum::http::header::{CONTENT_TYPE, HeaderValue};
use bytes::Bytes;
use serde::Serialize;

/// An HTTP response.
pub type Response = axum::response::Response;

/// A JSON response.
pub fn json(status: StatusCode, value: &impl Serialize) -> Response {
    let body = serde_json::to_vec(value).expect("serialising a JSON answer cannot fail");
    with_type(status, body.into(), "application/json")
}

/// A response with a body and content type.
pub fn with_type(status: StatusCode, body: Bytes, content_type: &'static str) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A registry's metrics in the format the request's `Accept` header asks for: OpenMetrics
/// when it names `application/openmetrics-text` (as Prometheus does), else the Prometheus
/// text format 0.0.4.
pub fn metrics(registry: &crate::metrics::Registry, headers: &axum::http::HeaderMap) -> Response {
    let accept = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let format = crate::metrics::Format::negotiate(accept);
    with_type(
        StatusCode::OK,
        registry.render_as(format).into(),
        format.content_type(),
    )
}
