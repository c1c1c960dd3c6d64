//! Successful answers: JSON, a body with its content type, Prometheus text.

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

/// The Prometheus text of a registry.
pub fn metrics(registry: &crate::metrics::Registry) -> Response {
    with_type(
        StatusCode::OK,
        registry.render().into(),
        "text/plain; version=0.0.4",
    )
}
