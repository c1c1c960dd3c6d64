//! `GET /v1/notifications/stream?topics=a,b`: server-sent events (axum's `Sse`), one `notify`
//! event per matching notification in seq order.
//!
//! Resumes after a `Last-Event-ID` header (or a `since` parameter) by first sending the
//! ring's matching notifications after it; otherwise starts with the next notification. A
//! client so far behind that the ring lapped it gets an `event: missed` with
//! `data: {"next": seq}` (the stream continues after `seq`). A `: keep-alive` comment goes
//! out after 15 s without an event. The stream ends when the client disconnects or shutdown
//! begins.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Notification, NotificationHub, Notifications, PAGE_MAX, bad_param};
use super::{topics_param, u64_param};
use crate::http::{ApiError, Params};

/// Events buffered between an event stream's task and its connection.
pub(super) const STREAM_BUFFER: usize = 64;

/// Starts a stream's task and answers its events.
pub(super) async fn answer(
    State(notifications): State<Notifications>,
    params: Params,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let topics = topics_param(&params)?;
    let last_event_id = match headers.get("last-event-id") {
        None => None,
        Some(value) => match value.to_str().ok().map(str::trim).map(str::parse::<u64>) {
            Some(Ok(id)) => Some(id),
            _ => return Err(bad_param("Last-Event-ID", "a non-negative integer")),
        },
    };
    let since = match last_event_id {
        Some(id) => id,
        None => u64_param(&params, "since")?.unwrap_or_else(|| notifications.hub.latest_seq()),
    };
    let (sender, events) = mpsc::channel(STREAM_BUFFER);
    tokio::spawn(run_stream(
        notifications.hub,
        topics,
        since,
        sender,
        notifications.shutdown,
    ));
    let events = futures_util::stream::unfold(events, |mut events| async move {
        let event = events.recv().await?;
        Some((Ok(event), events))
    });
    let keep_alive = KeepAlive::new()
        .interval(notifications.keep_alive)
        .text("keep-alive");
    Ok(Sse::new(events).keep_alive(keep_alive))
}

/// The event of one notification.
fn notify_event(notification: &Notification) -> Event {
    let data = serde_json::to_string(notification).expect("serialising a notification");
    Event::default()
        .id(notification.seq.to_string())
        .event("notify")
        .data(data)
}

/// The event telling the client that notifications after its position were dropped; the
/// stream continues after `next`.
fn missed_event(next: u64) -> Event {
    Event::default()
        .id(next.to_string())
        .event("missed")
        .data(format!("{{\"next\":{next}}}"))
}

/// Sends an event unless the client has gone or shutdown began; false means stop.
async fn send(events: &mpsc::Sender<Event>, shutdown: &CancellationToken, event: Event) -> bool {
    tokio::select! {
        sent = events.send(event) => sent.is_ok(),
        () = shutdown.cancelled() => false,
    }
}

/// Feeds one event stream until the client disconnects or `shutdown` fires.
async fn run_stream(
    hub: Arc<NotificationHub>,
    topics: Vec<String>,
    mut since: u64,
    events: mpsc::Sender<Event>,
    shutdown: CancellationToken,
) {
    let mut changes = hub.subscribe();
    loop {
        changes.borrow_and_update();
        let (page, dropped_through) = hub.read_with_gap(&topics, since, PAGE_MAX);
        // The client's position fell out of the ring (or is from a previous run): the stream
        // continues with the oldest notification still held.
        if page.missed && !send(&events, &shutdown, missed_event(dropped_through)).await {
            return;
        }
        let full = page.notifications.len() == PAGE_MAX;
        for notification in &page.notifications {
            if !send(&events, &shutdown, notify_event(notification)).await {
                return;
            }
        }
        since = page.next;
        if full {
            // More may be waiting; read again before sleeping.
            continue;
        }
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = events.closed() => return,
            () = shutdown.cancelled() => return,
        }
    }
}
