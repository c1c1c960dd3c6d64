//! [`Bearer`]: `Authorization: Bearer <secret>` checked by a tower layer (tower-http's
//! `ValidateRequestHeaderLayer`) before the handler runs.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header::AUTHORIZATION};
use axum::response::IntoResponse;
use tower_http::validate_request::{ValidateRequest, ValidateRequestHeaderLayer};

use super::error::ApiError;
use super::response::Response;

/// Which requests a [`Bearer`] check lets through. Its `Debug` shows whether a secret is
/// set, never the secret.
#[derive(Clone)]
pub struct Bearer {
    secret: Option<Arc<str>>,
    /// Further secrets accepted in place of `secret` (when it is set).
    also: Vec<Arc<str>>,
    /// The answer when no secret is configured; `None` lets every request through.
    unset: Option<ApiError>,
}

impl Bearer {
    /// Requires `secret` when one is configured; without one the endpoint is open.
    pub fn optional(secret: Option<&str>) -> Bearer {
        Bearer {
            secret: secret.map(Arc::from),
            also: Vec::new(),
            unset: None,
        }
    }

    /// Requires `secret`; without one every request gets a 403 `M_FORBIDDEN` with `message`
    /// (the endpoints are off).
    pub fn required(secret: Option<&str>, message: &str) -> Bearer {
        Bearer {
            secret: secret.map(Arc::from),
            also: Vec::new(),
            unset: Some(ApiError {
                status: StatusCode::FORBIDDEN,
                errcode: "M_FORBIDDEN",
                message: message.into(),
            }),
        }
    }

    /// Also accepts `other` (when set) wherever this check's own secret is required: a
    /// stronger token (the write or admin token) opening the read endpoints. Without a secret
    /// of its own the check stays as it was (open, or off).
    pub fn or(mut self, other: Option<&str>) -> Bearer {
        self.also.extend(other.map(Arc::from));
        self
    }

    /// The layer checking this.
    pub fn layer(self) -> ValidateRequestHeaderLayer<Bearer> {
        ValidateRequestHeaderLayer::custom(self)
    }

    fn check(&self, given: Option<&str>) -> Result<(), ApiError> {
        let Some(secret) = &self.secret else {
            return self.unset.clone().map_or(Ok(()), Err);
        };
        let Some(given) = given.and_then(|v| v.strip_prefix("Bearer ")) else {
            return Err(ApiError::unauthorized());
        };
        // Every secret is compared, so the time taken does not say which one matched.
        let matched = std::iter::once(secret)
            .chain(&self.also)
            .fold(false, |matched, s| {
                constant_time_eq(given.as_bytes(), s.as_bytes()) | matched
            });
        if matched {
            Ok(())
        } else {
            Err(ApiError::unauthorized())
        }
    }
}

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bearer")
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .field("unset", &self.unset)
            .finish()
    }
}

impl<B> ValidateRequest<B> for Bearer {
    type ResponseBody = Body;

    fn validate(&mut self, request: &mut Request<B>) -> Result<(), Response> {
        let given = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        self.check(given).map_err(IntoResponse::into_response)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn open_without_a_secret_unless_required() {
        assert_eq!(Bearer::optional(None).check(None), Ok(()));
        let off = Bearer::required(None, "off").check(Some("Bearer x"));
        assert_eq!(off.unwrap_err().status, StatusCode::FORBIDDEN);
    }

    #[test]
    fn another_secret_opens_what_the_first_guards_but_not_what_is_open_or_off() {
        let read = Bearer::optional(Some("read")).or(Some("write")).or(None);
        assert_eq!(read.check(Some("Bearer read")), Ok(()));
        assert_eq!(read.check(Some("Bearer write")), Ok(()));
        for wrong in [None, Some("Bearer"), Some("Bearer other"), Some("write")] {
            let error = read.check(wrong).unwrap_err();
            assert_eq!(error.status, StatusCode::UNAUTHORIZED, "{wrong:?}");
        }
        assert_eq!(Bearer::optional(None).or(Some("write")).check(None), Ok(()));
        let off = Bearer::required(None, "off").or(Some("write"));
        assert_eq!(
            off.check(Some("Bearer write")).unwrap_err().status,
            StatusCode::FORBIDDEN
        );
    }

    #[test]
    fn the_secret_must_match_exactly() {
        for bearer in [
            Bearer::optional(Some("s3cret")),
            Bearer::required(Some("s3cret"), "off"),
        ] {
            assert_eq!(bearer.check(Some("Bearer s3cret")), Ok(()));
            for wrong in [
                None,
                Some("s3cret"),
                Some("Bearer s3cre"),
                Some("Bearer s3cret "),
            ] {
                let error = bearer.check(wrong).unwrap_err();
                assert_eq!(error.status, StatusCode::UNAUTHORIZED, "{wrong:?}");
            }
            let shown = format!("{bearer:?}");
            assert!(
                !shown.contains("s3cret") && shown.contains("***"),
                "{shown}"
            );
        }
    }
}
