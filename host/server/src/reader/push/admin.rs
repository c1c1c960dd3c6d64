//! The push admin endpoints, merged into the reader's admin router (`/v1/admin`, behind the
//! admin token): `GET /v1/admin/pushes` (depth, oldest push and dead pushes per destination),
//! `GET /v1/admin/pushes/dead?destination=&limit=`, `POST /v1/admin/pushes/dead/{id}/retry`
//! (back to the outbox) and `DELETE /v1/admin/pushes/dead/{id}`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{OriginalUri, Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};

use super::PushDelivery;
use crate::http::{ApiError, Response, json, params::Params};

/// Most dead pushes one listing returns.
const MAX_LIMIT: i64 = 1_000;

/// The push routes, for merging into the admin router.
pub(crate) fn router(delivery: Arc<PushDelivery>) -> Router {
    Router::new()
        .route("/pushes", get(status))
        .route("/pushes/dead", get(dead))
        .route("/pushes/dead/{id}/retry", post(retry))
        .route("/pushes/dead/{id}", delete(drop_dead))
        .with_state(delivery)
}

/// `GET /v1/admin/pushes`.
async fn status(State(delivery): State<Arc<PushDelivery>>) -> Result<Response, ApiError> {
    let depths = delivery.depths().await.map_err(ApiError::internal)?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "destinations": depths }),
    ))
}

/// `GET /v1/admin/pushes/dead?destination=NAME&limit=N` (newest first; limit 100 by default).
async fn dead(
    State(delivery): State<Arc<PushDelivery>>,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, ApiError> {
    let params = Params::from_uri(&uri)?;
    let limit = match params.get("limit") {
        None => 100,
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "M_INVALID_PARAM",
                    format!("limit must be a number from 1 to {MAX_LIMIT}"),
                )
            })?,
    };
    let pushes = delivery
        .outbox()
        .dead(params.get("destination"), limit)
        .await
        .map_err(ApiError::internal)?;
    Ok(json(StatusCode::OK, &serde_json::json!({ "dead": pushes })))
}

/// `POST /v1/admin/pushes/dead/{id}/retry`.
async fn retry(
    State(delivery): State<Arc<PushDelivery>>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    match delivery.outbox().revive(id).await {
        Ok(Some(destination)) => {
            delivery.wake();
            Ok(json(
                StatusCode::OK,
                &serde_json::json!({ "retried": id, "destination": destination }),
            ))
        }
        Ok(None) => Err(ApiError::not_found(format!("no dead push {id}"))),
        Err(error) => Err(ApiError::internal(error)),
    }
}

/// `DELETE /v1/admin/pushes/dead/{id}`.
async fn drop_dead(
    State(delivery): State<Arc<PushDelivery>>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    match delivery.outbox().drop_dead(id).await {
        Ok(true) => Ok(json(StatusCode::OK, &serde_json::json!({ "dropped": id }))),
        Ok(false) => Err(ApiError::not_found(format!("no dead push {id}"))),
        Err(error) => Err(ApiError::internal(error)),
    }
}
