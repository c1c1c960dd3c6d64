//! `GET /v1/notifications?topics=a,b&since=N&timeout_ms=T`: a long poll answering a
//! [`NotificationPage`] as JSON, holding only what the request's [`Access`] may receive.

use std::time::Duration;

use axum::extract::{Extension, State};
use axum::http::StatusCode;
use tokio::time::Instant;

use super::{NotificationPage, Notifications, PAGE_MAX, topics_param, u64_param};
use crate::http::{ApiError, Params, Response, json};
use crate::reader::auth::Access;

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

/// Waits for a matching notification after `since` that the request's [`Access`] may
/// receive, or the timeout.
pub(super) async fn answer(
    State(notifications): State<Notifications>,
    Extension(access): Extension<Access>,
    query: Params,
) -> Result<Response, ApiError> {
    let (topics, mut since, timeout_ms) = params(&query)?;
    access.check_topics(&topics).await?;
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let page = notifications.hub.wait(&topics, since, left, PAGE_MAX).await;
        let kept = access.keep(page.notifications).await?;
        // Every one withheld: wait on after them, for what is left of the timeout.
        if kept.is_empty() && !page.missed && !left.is_zero() && page.next > since {
            since = page.next;
            continue;
        }
        notifications.hub.delivered(&kept);
        let page = NotificationPage {
            notifications: kept,
            ..page
        };
        return Ok(json(StatusCode::OK, &page));
    }
}
