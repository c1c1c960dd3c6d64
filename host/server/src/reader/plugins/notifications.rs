//! The notification hub: plugins' `notify(topic, payload)` effects land in an in-memory ring
//! of the last N notifications, numbered from 1, which HTTP clients read by long poll
//! (`GET /v1/notifications`) or as server-sent events (`GET /v1/notifications/stream`).
//!
//! Plugin workers are plain threads, so [`NotificationHub::publish`] is synchronous: it takes
//! a std mutex for a moment and bumps a `tokio::sync::watch` of the latest sequence number,
//! which wakes every waiter and stream.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Request, StatusCode};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::http::{self, ApiError, Response};

/// Default long-poll wait.
const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// Longest long-poll wait a client may ask for.
const MAX_TIMEOUT_MS: u64 = 60_000;
/// Most notifications in one long-poll answer or one event-stream read of the ring.
const PAGE_MAX: usize = 1000;
/// Interval of the event stream's keep-alive comments.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Frames buffered between an event stream's task and its connection.
const STREAM_BUFFER: usize = 64;

/// One notification published by a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notification {
    /// Position in the hub, from 1, strictly increasing.
    pub seq: u64,
    /// The plugin that published it.
    pub plugin: String,
    /// Its topic; readers subscribe by exact topic.
    pub topic: String,
    /// Its payload, usually JSON text, delivered as a string.
    pub payload: String,
}

/// An answer of [`NotificationHub::wait`] and of the long-poll endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotificationPage {
    /// The `since` to pass next time: the seq of the last notification returned, or, when
    /// none matched, the latest seq examined (unchanged if nothing was published).
    pub next: u64,
    /// Matching notifications with seq > since, in seq order.
    pub notifications: Vec<Notification>,
    /// `since` was older than the ring holds: notifications after it were dropped, and some
    /// of them may have matched.
    pub missed: bool,
}

struct Ring {
    items: VecDeque<Arc<Notification>>,
    /// The seq of the newest notification (0 before any).
    latest: u64,
    /// The seq of the newest notification dropped from the ring (0 before any).
    dropped_through: u64,
}

/// An in-memory ring of the last notifications, with waiters.
pub struct NotificationHub {
    ring: Mutex<Ring>,
    capacity: usize,
    latest: watch::Sender<u64>,
}

impl NotificationHub {
    /// A hub keeping the last `capacity` notifications (at least one).
    pub fn new(capacity: usize) -> NotificationHub {
        let capacity = capacity.max(1);
        NotificationHub {
            ring: Mutex::new(Ring {
                items: VecDeque::with_capacity(capacity.min(4096)),
                latest: 0,
                dropped_through: 0,
            }),
            capacity,
            latest: watch::Sender::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Ring> {
        // The ring is consistent between statements, so a poisoned lock is still usable.
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `(topic, payload)` items from `plugin` and wakes waiters. Synchronous and
    /// cheap: callable from plugin worker threads.
    pub fn publish(&self, plugin: &str, items: Vec<(String, String)>) {
        if items.is_empty() {
            return;
        }
        let latest = {
            let mut ring = self.lock();
            for (topic, payload) in items {
                ring.latest += 1;
                let seq = ring.latest;
                ring.items.push_back(Arc::new(Notification {
                    seq,
                    plugin: plugin.to_owned(),
                    topic,
                    payload,
                }));
                if ring.items.len() > self.capacity
                    && let Some(old) = ring.items.pop_front()
                {
                    ring.dropped_through = old.seq;
                }
            }
            ring.latest
        };
        self.latest.send_replace(latest);
    }

    /// The seq of the newest notification (0 before any).
    pub fn latest_seq(&self) -> u64 {
        *self.latest.borrow()
    }

    /// A receiver of the latest seq, changed on every publish; pair it with
    /// [`NotificationHub::read`] (subscribe first, then read, then await a change).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.latest.subscribe()
    }

    /// The notifications after `since` matching `topics`, at most `max` (at least one), without
    /// waiting.
    ///
    /// A `since` beyond the latest seq (from a previous run of the reader) counts as 0 with
    /// `missed` set.
    pub fn read(&self, topics: &[String], since: u64, max: usize) -> NotificationPage {
        self.read_with_gap(topics, since, max).0
    }

    /// [`NotificationHub::read`], plus the seq of the newest notification dropped from the
    /// ring, read under the same lock.
    fn read_with_gap(&self, topics: &[String], since: u64, max: usize) -> (NotificationPage, u64) {
        let max = max.max(1);
        let ring = self.lock();
        let (since, stale) = if since > ring.latest {
            (0, true)
        } else {
            (since, false)
        };
        let missed = stale || since < ring.dropped_through;
        // Items are in seq order without gaps: skip straight to the first one after `since`.
        let first = ring.items.front().map_or(0, |n| n.seq);
        let skip = usize::try_from(since.saturating_add(1).saturating_sub(first)).unwrap_or(0);
        let mut notifications = Vec::new();
        let mut next = ring.latest.max(since);
        for item in ring.items.iter().skip(skip) {
            if topics.iter().any(|t| *t == item.topic) {
                notifications.push(Notification::clone(item));
                if notifications.len() == max {
                    next = item.seq;
                    break;
                }
            }
        }
        let page = NotificationPage {
            next,
            notifications,
            missed,
        };
        (page, ring.dropped_through)
    }

    /// Waits until a notification after `since` matches one of `topics` (exact match), or
    /// `timeout` passes, and answers at most `max` of them. Returns at once when some already
    /// match or when `missed` is set.
    pub async fn wait(
        &self,
        topics: &[String],
        since: u64,
        timeout: Duration,
        max: usize,
    ) -> NotificationPage {
        let mut changes = self.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut since = since;
        loop {
            changes.borrow_and_update();
            let page = self.read(topics, since, max);
            if !page.notifications.is_empty() || page.missed {
                return page;
            }
            // Nothing matched up to page.next; later reads need only look past it.
            since = page.next;
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                // Timed out, or the hub is gone (cannot happen while `self` is borrowed).
                Ok(Err(_)) | Err(_) => return self.read(topics, since, max),
            }
        }
    }
}

fn bad_param(name: &str, what: &str) -> ApiError {
    ApiError::bad_request("M_INVALID_PARAM", format!("{name} must be {what}"))
}

/// The `topics` parameter: comma-separated, at least one non-empty topic.
fn topics_param<B>(request: &Request<B>) -> Result<Vec<String>, ApiError> {
    let topics: Vec<String> = http::query_param(request, "topics")
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
fn u64_param<B>(request: &Request<B>, name: &str) -> Result<Option<u64>, ApiError> {
    match http::query_param(request, name) {
        None => Ok(None),
        Some(value) => value
            .parse::<u64>()
            .map(Some)
            .map_err(|_| bad_param(name, "a non-negative integer")),
    }
}

/// The long poll's `(topics, since, timeout_ms)`.
fn long_poll_params<B>(request: &Request<B>) -> Result<(Vec<String>, u64, u64), ApiError> {
    let topics = topics_param(request)?;
    let since = u64_param(request, "since")?.unwrap_or(0);
    let timeout_ms = u64_param(request, "timeout_ms")?
        .unwrap_or(DEFAULT_TIMEOUT_MS)
        .min(MAX_TIMEOUT_MS);
    Ok((topics, since, timeout_ms))
}

/// `GET /v1/notifications?topics=a,b&since=N&timeout_ms=T`: a long poll answering a
/// [`NotificationPage`] as JSON.
///
/// `topics` is required; `since` defaults to 0; `timeout_ms` defaults to 30000 and is capped
/// at 60000.
pub async fn long_poll<B>(hub: &Arc<NotificationHub>, request: &Request<B>) -> Response {
    let (topics, since, timeout_ms) = match long_poll_params(request) {
        Ok(parsed) => parsed,
        Err(e) => return e.into_response(),
    };
    let page = hub
        .wait(&topics, since, Duration::from_millis(timeout_ms), PAGE_MAX)
        .await;
    http::json(StatusCode::OK, &page)
}

/// A response body fed by a channel of frames; it ends when the sender is dropped, and
/// dropping it (the client went away) makes the sender's next send fail.
struct ChannelBody {
    frames: mpsc::Receiver<Bytes>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.frames
            .poll_recv(cx)
            .map(|frame| frame.map(|bytes| Ok(Frame::data(bytes))))
    }
}

/// The SSE frame of one notification.
fn notify_frame(notification: &Notification) -> Bytes {
    let data = serde_json::to_string(notification).expect("serialising a notification");
    format!("id: {}\nevent: notify\ndata: {data}\n\n", notification.seq).into()
}

/// The SSE frame telling the client that notifications after its position were dropped;
/// the stream continues after `next`.
fn missed_frame(next: u64) -> Bytes {
    format!("id: {next}\nevent: missed\ndata: {{\"next\":{next}}}\n\n").into()
}

/// Sends a frame unless the client has gone or shutdown began; false means stop.
async fn send(frames: &mpsc::Sender<Bytes>, shutdown: &CancellationToken, frame: Bytes) -> bool {
    tokio::select! {
        sent = frames.send(frame) => sent.is_ok(),
        () = shutdown.cancelled() => false,
    }
}

/// Feeds one event stream until the client disconnects or `shutdown` fires.
async fn run_stream(
    hub: Arc<NotificationHub>,
    topics: Vec<String>,
    mut since: u64,
    frames: mpsc::Sender<Bytes>,
    shutdown: CancellationToken,
    keep_alive_every: Duration,
) {
    let mut changes = hub.subscribe();
    let mut keep_alive = tokio::time::interval_at(
        tokio::time::Instant::now() + keep_alive_every,
        keep_alive_every,
    );
    keep_alive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        changes.borrow_and_update();
        let (page, dropped_through) = hub.read_with_gap(&topics, since, PAGE_MAX);
        // The client's position fell out of the ring (or is from a previous run): the stream
        // continues with the oldest notification still held.
        if page.missed && !send(&frames, &shutdown, missed_frame(dropped_through)).await {
            return;
        }
        let full = page.notifications.len() == PAGE_MAX;
        for notification in &page.notifications {
            if !send(&frames, &shutdown, notify_frame(notification)).await {
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
            _ = keep_alive.tick() => {
                if !send(&frames, &shutdown, Bytes::from_static(b": keep-alive\n\n")).await {
                    return;
                }
            }
            () = frames.closed() => return,
            () = shutdown.cancelled() => return,
        }
    }
}

/// `GET /v1/notifications/stream?topics=a,b`: server-sent events, one `notify` event per
/// matching notification in seq order.
///
/// Resumes after a `Last-Event-ID` header (or a `since` parameter) by first sending the
/// ring's matching notifications after it; otherwise starts with the next notification. A
/// client so far behind that the ring lapped it gets an `event: missed` with
/// `data: {"next": seq}` (the stream continues after `seq`). A `: keep-alive` comment goes
/// out every 15 s. The stream ends when the client disconnects or `shutdown` fires.
pub fn event_stream<B>(
    hub: &Arc<NotificationHub>,
    request: &Request<B>,
    shutdown: &CancellationToken,
) -> Response {
    event_stream_with(hub, request, shutdown, KEEP_ALIVE)
}

/// [`event_stream`] with its keep-alive interval.
fn event_stream_with<B>(
    hub: &Arc<NotificationHub>,
    request: &Request<B>,
    shutdown: &CancellationToken,
    keep_alive_every: Duration,
) -> Response {
    let topics = match topics_param(request) {
        Ok(topics) => topics,
        Err(e) => return e.into_response(),
    };
    let last_event_id = match request.headers().get("last-event-id") {
        None => None,
        Some(value) => match value.to_str().ok().map(str::trim).map(str::parse::<u64>) {
            Some(Ok(id)) => Some(id),
            _ => return bad_param("Last-Event-ID", "a non-negative integer").into_response(),
        },
    };
    let since = match last_event_id {
        Some(id) => id,
        None => match u64_param(request, "since") {
            Ok(Some(since)) => since,
            Ok(None) => hub.latest_seq(),
            Err(e) => return e.into_response(),
        },
    };
    let (sender, frames) = mpsc::channel(STREAM_BUFFER);
    tokio::spawn(run_stream(
        Arc::clone(hub),
        topics,
        since,
        sender,
        shutdown.clone(),
        keep_alive_every,
    ));
    let mut response = hyper::Response::new(ChannelBody { frames }.boxed());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Empty;

    fn topics(names: &[&str]) -> Vec<String> {
        names.iter().map(|t| (*t).to_owned()).collect()
    }

    fn items(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(t, p)| ((*t).to_owned(), (*p).to_owned()))
            .collect()
    }

    fn seqs(page: &NotificationPage) -> Vec<u64> {
        page.notifications.iter().map(|n| n.seq).collect()
    }

    fn get(uri: &str) -> Request<Empty<Bytes>> {
        Request::get(uri).body(Empty::new()).unwrap()
    }

    async fn body_json(response: Response) -> serde_json::Value {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    /// The next frame of an event stream, as text, or None at its end.
    async fn next_frame(body: &mut http::ResponseBody) -> Option<String> {
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("a frame within 5 s")?
            .unwrap();
        let data = frame.into_data().unwrap();
        Some(String::from_utf8(data.to_vec()).unwrap())
    }

    fn notify_text(seq: u64, plugin: &str, topic: &str, payload: &str) -> String {
        let n = Notification {
            seq,
            plugin: plugin.into(),
            topic: topic.into(),
            payload: payload.into(),
        };
        format!(
            "id: {seq}\nevent: notify\ndata: {}\n\n",
            serde_json::to_string(&n).unwrap()
        )
    }

    #[tokio::test]
    async fn publish_then_wait_returns_in_order() {
        let hub = NotificationHub::new(16);
        assert_eq!(hub.latest_seq(), 0);
        hub.publish("p", items(&[("a", "1"), ("a", "2")]));
        hub.publish("q", items(&[("a", "3")]));
        assert_eq!(hub.latest_seq(), 3);
        let page = hub
            .wait(&topics(&["a"]), 0, Duration::from_secs(5), 100)
            .await;
        assert_eq!(seqs(&page), vec![1, 2, 3]);
        assert_eq!(page.next, 3);
        assert!(!page.missed);
        assert_eq!(page.notifications[2].plugin, "q");
        assert_eq!(page.notifications[1].payload, "2");
        let page = hub
            .wait(&topics(&["a"]), 1, Duration::from_secs(5), 100)
            .await;
        assert_eq!(seqs(&page), vec![2, 3]);
    }

    #[tokio::test]
    async fn wait_respects_max() {
        let hub = NotificationHub::new(16);
        hub.publish("p", items(&[("a", "1"), ("a", "2"), ("a", "3")]));
        let page = hub
            .wait(&topics(&["a"]), 0, Duration::from_secs(5), 2)
            .await;
        assert_eq!(seqs(&page), vec![1, 2]);
        assert_eq!(page.next, 2);
        let page = hub
            .wait(&topics(&["a"]), page.next, Duration::from_secs(5), 2)
            .await;
        assert_eq!(seqs(&page), vec![3]);
        assert_eq!(page.next, 3);
    }

    #[tokio::test]
    async fn wait_filters_by_exact_topic() {
        let hub = NotificationHub::new(16);
        hub.publish(
            "p",
            items(&[("a", "1"), ("b", "2"), ("ab", "3"), ("c", "4"), ("a", "5")]),
        );
        let page = hub
            .wait(&topics(&["a", "c"]), 0, Duration::from_secs(5), 100)
            .await;
        assert_eq!(seqs(&page), vec![1, 4, 5]);
        let page = hub
            .wait(&topics(&["b"]), 0, Duration::from_secs(5), 100)
            .await;
        assert_eq!(seqs(&page), vec![2]);
        assert_eq!(page.next, 5);
    }

    #[tokio::test]
    async fn wait_times_out_empty_with_next_unchanged() {
        let hub = NotificationHub::new(16);
        let page = hub
            .wait(&topics(&["a"]), 0, Duration::from_millis(100), 100)
            .await;
        assert!(page.notifications.is_empty());
        assert_eq!(page.next, 0);
        assert!(!page.missed);

        // Non-matching notifications move `next` past them, but do not end the wait early.
        hub.publish("p", items(&[("b", "1")]));
        let started = tokio::time::Instant::now();
        let page = hub
            .wait(&topics(&["a"]), 0, Duration::from_millis(100), 100)
            .await;
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert!(page.notifications.is_empty());
        assert_eq!(page.next, 1);
    }

    #[tokio::test]
    async fn missed_after_ring_overflow() {
        let hub = NotificationHub::new(3);
        hub.publish(
            "p",
            items(&[("a", "1"), ("a", "2"), ("a", "3"), ("a", "4"), ("a", "5")]),
        );
        let page = hub
            .wait(&topics(&["a"]), 0, Duration::from_secs(5), 100)
            .await;
        assert!(page.missed);
        assert_eq!(seqs(&page), vec![3, 4, 5]);
        // Since 1: seq 2 was dropped.
        assert!(
            hub.wait(&topics(&["a"]), 1, Duration::from_secs(5), 100)
                .await
                .missed
        );
        // Since 2: everything after it is still held.
        let page = hub
            .wait(&topics(&["a"]), 2, Duration::from_secs(5), 100)
            .await;
        assert!(!page.missed);
        assert_eq!(seqs(&page), vec![3, 4, 5]);
    }

    #[tokio::test]
    async fn since_from_a_previous_run_is_missed() {
        let hub = NotificationHub::new(8);
        hub.publish("p", items(&[("a", "1")]));
        let page = hub
            .wait(&topics(&["a"]), 50, Duration::from_secs(5), 100)
            .await;
        assert!(page.missed);
        assert_eq!(seqs(&page), vec![1]);
        assert_eq!(page.next, 1);
    }

    #[tokio::test]
    async fn waiter_woken_by_publish_from_std_thread() {
        let hub = Arc::new(NotificationHub::new(16));
        hub.publish("p", items(&[("other", "0")]));
        let publisher = {
            let hub = Arc::clone(&hub);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                hub.publish("p", items(&[("other", "1")]));
                std::thread::sleep(Duration::from_millis(50));
                hub.publish("p", items(&[("a", "x")]));
            })
        };
        let started = std::time::Instant::now();
        let page = hub
            .wait(&topics(&["a"]), 1, Duration::from_secs(10), 100)
            .await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(seqs(&page), vec![3]);
        assert_eq!(page.notifications[0].payload, "x");
        publisher.join().unwrap();
    }

    #[tokio::test]
    async fn long_poll_answers_json() {
        let hub = Arc::new(NotificationHub::new(16));
        hub.publish("p", items(&[("a", "{\"n\":1}"), ("b", "2")]));
        let response = long_poll(&hub, &get("/v1/notifications?topics=a,b&since=1")).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body = body_json(response).await;
        assert_eq!(
            body,
            serde_json::json!({
                "next": 2,
                "missed": false,
                "notifications": [{"seq": 2, "plugin": "p", "topic": "b", "payload": "2"}],
            })
        );
        let body = body_json(long_poll(&hub, &get("/v1/notifications?topics=a")).await).await;
        assert_eq!(body["notifications"][0]["payload"], "{\"n\":1}");
    }

    #[tokio::test]
    async fn long_poll_times_out() {
        let hub = Arc::new(NotificationHub::new(16));
        let started = tokio::time::Instant::now();
        let response = long_poll(
            &hub,
            &get("/v1/notifications?topics=a&since=0&timeout_ms=250"),
        )
        .await;
        assert!(started.elapsed() >= Duration::from_millis(250));
        assert!(started.elapsed() < Duration::from_millis(1250));
        let body = body_json(response).await;
        assert_eq!(
            body,
            serde_json::json!({"next": 0, "missed": false, "notifications": []})
        );
    }

    #[test]
    fn long_poll_parameters_default_and_cap() {
        let (topics, since, timeout_ms) =
            long_poll_params(&get("/v1/notifications?topics=a,%20b,,c")).unwrap();
        assert_eq!(topics, vec!["a", "b", "c"]);
        assert_eq!(since, 0);
        assert_eq!(timeout_ms, DEFAULT_TIMEOUT_MS);
        let (_, since, timeout_ms) =
            long_poll_params(&get("/v1/notifications?topics=a&since=7&timeout_ms=999999")).unwrap();
        assert_eq!(since, 7);
        assert_eq!(timeout_ms, MAX_TIMEOUT_MS);
    }

    #[tokio::test]
    async fn long_poll_rejects_bad_parameters() {
        let hub = Arc::new(NotificationHub::new(16));
        for (uri, needle) in [
            ("/v1/notifications", "topics"),
            ("/v1/notifications?topics=", "topics"),
            ("/v1/notifications?topics=,,", "topics"),
            ("/v1/notifications?topics=a&since=x", "since"),
            ("/v1/notifications?topics=a&since=-1", "since"),
            ("/v1/notifications?topics=a&timeout_ms=1.5", "timeout_ms"),
        ] {
            let response = long_poll(&hub, &get(uri)).await;
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{uri}");
            let body = body_json(response).await;
            assert!(
                body["error"].as_str().unwrap().contains(needle),
                "{uri}: {body}"
            );
        }
    }

    #[tokio::test]
    async fn event_stream_sends_new_matching_notifications() {
        let hub = Arc::new(NotificationHub::new(16));
        hub.publish("p", items(&[("a", "old")]));
        let shutdown = CancellationToken::new();
        let response = event_stream(&hub, &get("/v1/notifications/stream?topics=a"), &shutdown);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[CONTENT_TYPE], "text/event-stream");
        assert_eq!(response.headers()[CACHE_CONTROL], "no-cache");
        let mut body = response.into_body();
        hub.publish("p", items(&[("b", "skip"), ("a", "{\"x\":1}")]));
        assert_eq!(
            next_frame(&mut body).await.unwrap(),
            notify_text(3, "p", "a", "{\"x\":1}")
        );
        hub.publish("q", items(&[("a", "line\nbreak")]));
        let frame = next_frame(&mut body).await.unwrap();
        assert_eq!(frame, notify_text(4, "q", "a", "line\nbreak"));
        // The payload's newline is escaped inside the JSON, so the event stays one data line.
        assert_eq!(frame.matches('\n').count(), 4);
        shutdown.cancel();
        assert_eq!(next_frame(&mut body).await, None);
    }

    #[tokio::test]
    async fn event_stream_resumes_after_last_event_id() {
        let hub = Arc::new(NotificationHub::new(16));
        hub.publish(
            "p",
            items(&[("a", "1"), ("b", "2"), ("a", "3"), ("a", "4")]),
        );
        let shutdown = CancellationToken::new();
        let request = Request::get("/v1/notifications/stream?topics=a&since=0")
            .header("Last-Event-ID", "1")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let mut body = event_stream(&hub, &request, &shutdown).into_body();
        assert_eq!(
            next_frame(&mut body).await.unwrap(),
            notify_text(3, "p", "a", "3")
        );
        assert_eq!(
            next_frame(&mut body).await.unwrap(),
            notify_text(4, "p", "a", "4")
        );
        hub.publish("p", items(&[("a", "5")]));
        assert_eq!(
            next_frame(&mut body).await.unwrap(),
            notify_text(5, "p", "a", "5")
        );
        shutdown.cancel();
        assert_eq!(next_frame(&mut body).await, None);
    }

    #[tokio::test]
    async fn event_stream_resumes_after_since() {
        let hub = Arc::new(NotificationHub::new(16));
        hub.publish("p", items(&[("a", "1"), ("a", "2")]));
        let shutdown = CancellationToken::new();
        let mut body = event_stream(
            &hub,
            &get("/v1/notifications/stream?topics=a&since=0"),
            &shutdown,
        )
        .into_body();
        assert_eq!(
            next_frame(&mut body).await.unwrap(),
            notify_text(1, "p", "a", "1")
        );
        assert_eq!(
            next_frame(&mut body).await.unwrap(),
            notify_text(2, "p", "a", "2")
        );
        shutdown.cancel();
        assert_eq!(next_frame(&mut body).await, None);
    }

    #[tokio::test]
    async fn event_stream_reports_missed_then_continues() {
        let hub = Arc::new(NotificationHub::new(2));
        hub.publish(
            "p",
            items(&[("a", "1"), ("a", "2"), ("a", "3"), ("a", "4")]),
        );
        let shutdown = CancellationToken::new();
        let request = Request::get("/v1/notifications/stream?topics=a")
            .header("last-event-id", "1")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let mut body = event_stream(&hub, &request, &shutdown).into_body();
        assert_eq!(
            next_frame(&mut body).await.unwrap(),
            "id: 2\nevent: missed\ndata: {\"next\":2}\n\n"
        );
        assert_eq!(
            next_frame(&mut body).await.unwrap(),
            notify_text(3, "p", "a", "3")
        );
        assert_eq!(
            next_frame(&mut body).await.unwrap(),
            notify_text(4, "p", "a", "4")
        );
        shutdown.cancel();
        assert_eq!(next_frame(&mut body).await, None);
    }

    #[tokio::test]
    async fn event_stream_lapped_while_client_is_slow() {
        let hub = Arc::new(NotificationHub::new(4));
        let shutdown = CancellationToken::new();
        let mut body =
            event_stream(&hub, &get("/v1/notifications/stream?topics=a"), &shutdown).into_body();
        // Let the stream task start at seq 0, then overflow both its buffer and the ring
        // without reading.
        tokio::task::yield_now().await;
        let total = STREAM_BUFFER as u64 + 20;
        for i in 1..=total {
            hub.publish("p", vec![("a".into(), i.to_string())]);
            tokio::task::yield_now().await;
        }
        let mut seen = Vec::new();
        let mut missed = 0;
        loop {
            let frame = next_frame(&mut body).await.unwrap();
            if frame.contains("event: missed") {
                missed += 1;
                continue;
            }
            let seq: u64 = frame
                .strip_prefix("id: ")
                .and_then(|rest| rest.split('\n').next())
                .unwrap()
                .parse()
                .unwrap();
            seen.push(seq);
            if seq == total {
                break;
            }
        }
        assert_eq!(missed, 1, "{seen:?}");
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
        assert!(seen.len() < total as usize);
        shutdown.cancel();
        assert_eq!(next_frame(&mut body).await, None);
    }

    #[tokio::test]
    async fn event_stream_keep_alive() {
        let hub = Arc::new(NotificationHub::new(4));
        let shutdown = CancellationToken::new();
        let every = Duration::from_millis(100);
        let mut body = event_stream_with(
            &hub,
            &get("/v1/notifications/stream?topics=a"),
            &shutdown,
            every,
        )
        .into_body();
        let started = tokio::time::Instant::now();
        assert_eq!(next_frame(&mut body).await.unwrap(), ": keep-alive\n\n");
        assert!(started.elapsed() >= every);
        hub.publish("p", items(&[("a", "1")]));
        assert_eq!(
            next_frame(&mut body).await.unwrap(),
            notify_text(1, "p", "a", "1")
        );
        assert_eq!(next_frame(&mut body).await.unwrap(), ": keep-alive\n\n");
        shutdown.cancel();
        assert_eq!(next_frame(&mut body).await, None);
    }

    #[tokio::test]
    async fn event_stream_task_stops_when_client_goes() {
        let hub = Arc::new(NotificationHub::new(4));
        let shutdown = CancellationToken::new();
        let body =
            event_stream(&hub, &get("/v1/notifications/stream?topics=a"), &shutdown).into_body();
        tokio::task::yield_now().await;
        assert_eq!(Arc::strong_count(&hub), 2);
        drop(body);
        // The task notices the closed channel and drops its hub handle.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&hub) > 1 {
            assert!(tokio::time::Instant::now() < deadline, "task still running");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn event_stream_rejects_bad_parameters() {
        let hub = Arc::new(NotificationHub::new(4));
        let shutdown = CancellationToken::new();
        let response = event_stream(&hub, &get("/v1/notifications/stream"), &shutdown);
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let request = Request::get("/v1/notifications/stream?topics=a")
            .header("last-event-id", "abc")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = event_stream(&hub, &request, &shutdown);
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert!(
            body_json(response).await["error"]
                .as_str()
                .unwrap()
                .contains("Last-Event-ID")
        );
    }

    /// The handlers' futures must be Send to run under `tokio::spawn` with hyper's body.
    #[allow(dead_code)]
    fn long_poll_future_is_send(
        hub: &Arc<NotificationHub>,
        request: &Request<hyper::body::Incoming>,
    ) {
        fn is_send<T: Send>(_: T) {}
        is_send(long_poll(hub, request));
    }
}
