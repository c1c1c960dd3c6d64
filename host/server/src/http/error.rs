//! [`ApiError`]: every 4xx and 5xx answer, `{"errcode": ..., "error": message}`, plus
//! `retry_after_ms` and a `Retry-After` header on a 503 and a 507.

use axum::http::StatusCode;
use axum::http::header::{HeaderValue, RETRY_AFTER};
use axum::response::IntoResponse;

use super::response::{Response, json};

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

    /// A 503 with this code and message (the client may retry).
    pub fn unavailable(errcode: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            errcode,
            message: message.into(),
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

    /// An error answer made by something other than a handler (axum's rejections, a tower
    /// layer): the status is kept, the code is the usual one for it.
    pub fn from_status(status: StatusCode, message: impl Into<String>) -> ApiError {
        let errcode = match status {
            StatusCode::BAD_REQUEST => "M_BAD_REQUEST",
            StatusCode::UNAUTHORIZED => "M_UNAUTHORIZED",
            StatusCode::FORBIDDEN => "M_FORBIDDEN",
            StatusCode::NOT_FOUND => "M_NOT_FOUND",
            StatusCode::METHOD_NOT_ALLOWED => "M_UNRECOGNIZED",
            StatusCode::PAYLOAD_TOO_LARGE => "M_TOO_LARGE",
            StatusCode::SERVICE_UNAVAILABLE => "M_UNAVAILABLE",
            _ => "M_UNKNOWN",
        };
        ApiError {
            status,
            errcode,
            message: message.into(),
        }
    }
}

/// How long a client should wait before retrying a 503. Every request tries the database
/// again, so this only keeps an outage from becoming a storm of retries.
const RETRY_AFTER_SECS: u64 = 1;

/// How long a client should wait before retrying a 507 (a full disk): space comes back by an
/// operator's hand, so sooner retries would only fail again.
const FULL_DISK_RETRY_AFTER_SECS: u64 = 10;

impl IntoResponse for ApiError {
    /// The response for this error. A 503 (the log database is down, or the process is
    /// stopping) tells the client when to retry, as a `Retry-After` header and, Matrix-style,
    /// `retry_after_ms` in the body, so retrying clients do not spin through an outage. A 507
    /// (the disk is full) does too, with a longer wait.
    fn into_response(self) -> Response {
        let retry_after_secs = match self.status {
            StatusCode::SERVICE_UNAVAILABLE => RETRY_AFTER_SECS,
            StatusCode::INSUFFICIENT_STORAGE => FULL_DISK_RETRY_AFTER_SECS,
            _ => {
                return json(
                    self.status,
                    &serde_json::json!({ "errcode": self.errcode, "error": self.message }),
                );
            }
        };
        let mut response = json(
            self.status,
            &serde_json::json!({
                "errcode": self.errcode,
                "error": self.message,
                "retry_after_ms": retry_after_secs * 1_000,
            }),
        );
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
        response
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    async fn body(response: Response) -> serde_json::Value {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn a_503_and_a_507_say_when_to_retry_and_other_errors_do_not() {
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

        let full = ApiError {
            status: StatusCode::INSUFFICIENT_STORAGE,
            errcode: "M_INSUFFICIENT_STORAGE",
            message: "full".into(),
        }
        .into_response();
        assert_eq!(full.headers()[RETRY_AFTER], "10");
        assert_eq!(body(full).await["retry_after_ms"], 10_000);

        let bad = ApiError::bad_request("M_BAD_JSON", "no").into_response();
        assert!(bad.headers().get(RETRY_AFTER).is_none());
        assert!(body(bad).await.get("retry_after_ms").is_none());
    }
}
