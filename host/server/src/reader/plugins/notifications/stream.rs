//! `GET /v1/notifications/stream?topics=a,b`: server-sent events (axum's `Sse`), one `notify`
//! event per matching notification in seq order.
//!
//! Resumes after a `Last-Event-ID` header (or a `since` parameter) by first sending the
//! ring's matching notifications after it; otherwise starts with the next notification. A
//! client so far behind that the ring lapped it gets an `event: missed` with
//! `data: {"next": seq}` (the stream continues after `seq`). A `: keep-alive` comment goes
//! out after 15 s without an event. The stream ends when the client disconnects or shutdown
//! begins. A slow client holds at most [`STREAM_BUFFER`] events and [`STREAM_BUFFER_BYTES`]
//! (one larger event goes alone) besides the page being sent. With `[reader.auth]`, only
//! notifications the token's [`Access`] keeps are sent, and the stream ends when the token is
//! revoked or expires.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::{Notification, NotificationHub, Notifications, PAGE_MAX, bad_param};
use super::{topics_param, u64_param};
use crate::http::{ApiError, Params};
use crate::reader::auth::Access;

/// Events buffered between an event stream's task and its connection.
pub(super) const STREAM_BUFFER: usize = 64;
/// Bytes of events buffered between an event stream's task and its connection.
pub(super) const STREAM_BUFFER_BYTES: usize = 1 << 20;

/// An event stream's buffer: events with the bytes they hold of it.
struct Buffer {
    events: mpsc::Sender<(Event, u32)>,
    room: Arc<Semaphore>,
}

/// Starts a stream's task and answers its events.
pub(super) async fn answer(
    State(notifications): State<Notifications>,
    Extension(access): Extension<Access>,
    params: Params,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let topics = topics_param(&params)?;
    access.check_topics(&topics).await?;
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
    let room = Arc::new(Semaphore::new(STREAM_BUFFER_BYTES));
    let buffer = Buffer {
        events: sender,
        room: room.clone(),
    };
    tokio::spawn(run_stream(
        notifications.hub,
        access,
        topics,
        since,
        buffer,
        notifications.shutdown,
    ));
    let events = futures_util::stream::unfold(events, move |mut events| {
        let room = room.clone();
        async move {
            let (event, bytes) = events.recv().await?;
            room.add_permits(bytes as usize);
            Some((Ok(event), events))
        }
    });
    let keep_alive = KeepAlive::new()
        .interval(notifications.keep_alive)
        .text("keep-alive");
    Ok(Sse::new(events).keep_alive(keep_alive))
}

/// The event of one notification, with the bytes it holds.
fn notify_event(notification: &Notification) -> (Event, usize) {
    let data = serde_json::to_string(notification).expect("serialising a notification");
    let bytes = data.len();
    let event = Event::default()
        .id(notification.seq.to_string())
        .event("notify")
        .data(data);
    (event, bytes)
}

/// The event telling the client that notifications after its position were dropped; the
/// stream continues after `next`.
fn missed_event(next: u64) -> Event {
    Event::default()
        .id(next.to_string())
        .event("missed")
        .data(format!("{{\"next\":{next}}}"))
}

/// Sends an event of `bytes` once the buffer has room for it, unless the client has gone or
/// shutdown began; false means stop.
async fn send(
    buffer: &Buffer,
    shutdown: &CancellationToken,
    (event, bytes): (Event, usize),
) -> bool {
    let bytes = u32::try_from(bytes.min(STREAM_BUFFER_BYTES)).unwrap_or(u32::MAX);
    let room = async {
        let permit = buffer.room.acquire_many(bytes).await.ok()?;
        let slot = buffer.events.reserve().await.ok()?;
        // The connection's side gives the bytes back when it takes the event.
        permit.forget();
        slot.send((event, bytes));
        Some(())
    };
    tokio::select! {
        sent = room => sent.is_some(),
        () = buffer.events.closed() => false,
        () = shutdown.cancelled() => false,
    }
}

/// Feeds one event stream until the client disconnects, `shutdown` fires or `access` ends
/// (its token revoked or expired); each notification goes out only if `access` keeps it.
async fn run_stream(
    hub: Arc<NotificationHub>,
    access: Access,
    topics: Vec<String>,
    mut since: u64,
    buffer: Buffer,
    shutdown: CancellationToken,
) {
    let mut changes = hub.subscribe();
    loop {
        changes.borrow_and_update();
        let (page, dropped_through) = hub.read_with_gap(&topics, since, PAGE_MAX);
        // The client's position fell out of the ring (or is from a previous run): the stream
        // continues with the oldest notification still held.
        if page.missed && !send(&buffer, &shutdown, (missed_event(dropped_through), 0)).await {
            return;
        }
        // A page cut by its count or bytes: more may be waiting.
        let full = page.next < hub.latest_seq();
        let Ok(kept) = access.keep(page.notifications).await else {
            return;
        };
        hub.delivered(&kept);
        for notification in &kept {
            if !send(&buffer, &shutdown, notify_event(notification)).await {
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
            () = buffer.events.closed() => return,
            () = shutdown.cancelled() => return,
            () = access.ended() => return,
        }
    }
}
