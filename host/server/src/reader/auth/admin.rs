//! The token endpoints of the admin API (behind the admin bearer token, nested at
//! `/v1/admin`):
//!
//! - `POST /v1/admin/tokens` with `{"subject": ..., "queries": [...], "topics": [...],
//!   "expires_in_s": N}` (`expires_in_s` optional): 201 with the token's `id`, its scope and
//!   its secret `token`, shown this once.
//! - `GET /v1/admin/tokens`: the issued tokens that have not expired, without secrets.
//! - `DELETE /v1/admin/tokens/{id}`: revokes one (404 if there is none).
//!
//! Without `[reader.auth]` enabled they answer 409: tokens would not be checked.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{Auth, IssuedToken};
use crate::http::{ApiError, Response, json};

/// The token routes, relative to `/v1/admin`.
pub(crate) fn router(auth: Option<Arc<Auth>>) -> Router {
    Router::new()
        .route("/tokens", get(list).post(issue))
        .route("/tokens/{id}", delete(revoke))
        .with_state(auth)
}

/// The body of `POST /v1/admin/tokens`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IssueRequest {
    subject: String,
    #[serde(default)]
    queries: Vec<String>,
    #[serde(default)]
    topics: Vec<String>,
    expires_in_s: Option<u64>,
}

/// The answer to `POST /v1/admin/tokens`.
#[derive(Serialize)]
struct Issued {
    #[serde(flatten)]
    token: IssuedToken,
    /// The secret, shown once.
    #[serde(rename = "token")]
    secret: String,
}

fn auth_of(auth: Option<Arc<Auth>>) -> Result<Arc<Auth>, ApiError> {
    auth.ok_or_else(|| ApiError {
        status: StatusCode::CONFLICT,
        errcode: "M_AUTH_OFF",
        message: "[reader.auth] is not enabled on this reader: tokens would not be checked".into(),
    })
}

/// `POST /v1/admin/tokens`.
async fn issue(State(auth): State<Option<Arc<Auth>>>, body: Bytes) -> Result<Response, ApiError> {
    let auth = auth_of(auth)?;
    let request: IssueRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("M_BAD_JSON", format!("the body: {e}")))?;
    if request.expires_in_s == Some(0) {
        return Err(ApiError::bad_request(
            "M_INVALID_PARAM",
            "expires_in_s must be > 0 (leave it out for a token that does not expire)",
        ));
    }
    super::Scope::new(&request.subject, &request.queries, &request.topics)
        .map_err(|e| ApiError::bad_request("M_INVALID_PARAM", format!("{e:#}")))?;
    let (token, secret) = auth
        .issue(
            &request.subject,
            request.queries,
            request.topics,
            request.expires_in_s.map(Duration::from_secs),
        )
        .await
        .map_err(ApiError::internal)?;
    tracing::info!(id = %token.id, subject = %token.subject, "API token issued");
    Ok(json(StatusCode::CREATED, &Issued { token, secret }))
}

/// `GET /v1/admin/tokens`.
async fn list(State(auth): State<Option<Arc<Auth>>>) -> Result<Response, ApiError> {
    let auth = auth_of(auth)?;
    Ok(json(StatusCode::OK, &auth.issued()))
}

/// `DELETE /v1/admin/tokens/{id}`.
async fn revoke(
    State(auth): State<Option<Arc<Auth>>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let auth = auth_of(auth)?;
    if !auth.revoke(&id).await.map_err(ApiError::internal)? {
        return Err(ApiError::not_found(format!("no issued token {id}")));
    }
    tracing::info!(%id, "API token revoked");
    Ok(json(StatusCode::OK, &serde_json::json!({ "revoked": id })))
}
