//! Notifications: plugins' `notify(topic, payload)` effects kept in a ring ([`hub`]), read by
//! HTTP clients by long poll (`GET /v1/notifications`, `long_poll`) or as server-sent events
//! (`GET /v1/notifications/stream`, `stream`).

mod hub;
mod long_poll;
mod ring;
mod slots;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

pub use self::hub::{Notification, NotificationHub, NotificationPage, Source};
pub use self::ring::RingBounds;
use crate::http::{self, ApiError, Params};

/// Most notifications in one long-poll answer or one event-stream read of the ring (which
/// also stops at about `hub::PAGE_BYTES`).
const PAGE_MAX: usize = 1000;
/// Interval of the event stream's keep-alive comments.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How much longer than the longest long poll a request may take before the request timeout
/// answers.
const TIMEOUT_MARGIN: Duration = Duration::from_secs(30);

/// What the notification endpoints share.
#[derive(Clone)]
struct Notifications {
    hub: Arc<NotificationHub>,
    /// Ends every event stream.
    shutdown: CancellationToken,
    keep_alive: Duration,
}

/// `GET /v1/notifications` and `GET /v1/notifications/stream` on `hub`; event streams end when
/// `shutdown` fires.
pub(crate) fn router(hub: Arc<NotificationHub>, shutdown: CancellationToken) -> Router {
    router_with(hub, shutdown, KEEP_ALIVE)
}

/// [`router`] with its event streams' keep-alive interval.
fn router_with(
    hub: Arc<NotificationHub>,
    shutdown: CancellationToken,
    keep_alive: Duration,
) -> Router {
    Router::new()
        .route("/v1/notifications", get(long_poll::answer))
        .route("/v1/notifications/stream", get(stream::answer))
        .layer(http::layers::timeout(
            long_poll::MAX_TIMEOUT + TIMEOUT_MARGIN,
        ))
        .with_state(Notifications {
            hub,
            shutdown,
            keep_alive,
        })
}

fn bad_param(name: &str, what: &str) -> ApiError {
    ApiError::bad_request("M_INVALID_PARAM", format!("{name} must be {what}"))
}

/// The `topics` parameter: comma-separated, at least one non-empty topic.
fn topics_param(params: &Params) -> Result<Vec<String>, ApiError> {
    let topics: Vec<String> = params
        .get("topics")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    if topics.is_empty() {
        return Err(ApiError::bad_request(
            "M_MISSING_PARAM",
            "topics is required: a comma-separated list of topics",
        ));
    }
    Ok(topics)
}

/// An optional non-negative integer parameter.
fn u64_param(params: &Params, name: &str) -> Result<Option<u64>, ApiError> {
    match params.get(name) {
        None => Ok(None),
        Some(value) => value
            .parse::<u64>()
            .map(Some)
            .map_err(|_| bad_param(name, "a non-negative integer")),
    }
}

#[cfg(test)]
mod tests;
