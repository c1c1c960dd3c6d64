//! `GET /v1/notifications?topics=a,b&since=N&timeout_ms=T`: a long poll answering a
//! [`NotificationPage`](super::NotificationPage) as JSON.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;

use super::{Notifications, PAGE_MAX, topics_param, u64_param};
use crate::http::{ApiError, Params, Response, json};

/// Default long-poll wait.
pub(super) const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// Longest long-poll wait a client may ask for.
pub(super) const MAX_TIMEOUT_MS: u64 = 60_000;
/// [`MAX_TIMEOUT_MS`] as a duration.
pub(super) const MAX_TIMEOUT: Duration = Duration::from_millis(MAX_TIMEOUT_MS);

/// The long poll's `(topics, since, timeout_ms)`: `topics` is required; `since` defaults to 0;
/// `timeout_ms` defaults to 30000 and is capped at 60000.
pub(super) fn params(params: &Params) -> Result<(Vec<String>, u64, u64), ApiError> {
    let topics = topics_param(params)?;
    let since = u64_param(params, "since")?.unwrap_or(0);
    let timeout_ms = u64_param(params, "timeout_ms")?
        .unwrap_or(DEFAULT_TIMEOUT_MS)
        .min(MAX_TIMEOUT_MS);
    Ok((topics, since, timeout_ms))
}

/// Waits for a matching notification after `since`, or the timeout.
pub(super) async fn answer(
    State(notifications): State<Notifications>,
    query: Params,
) -> Result<Response, ApiError> {
    let (topics, since, timeout_ms) = params(&query)?;
    let page = notifications
        .hub
        .wait(&topics, since, Duration::from_millis(timeout_ms), PAGE_MAX)
        .await;
    Ok(json(StatusCode::OK, &page))
}
