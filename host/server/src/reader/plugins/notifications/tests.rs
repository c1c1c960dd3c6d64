#![allow(clippy::unwrap_used)]

use std::future::Future;

use axum::body::Body;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{Request, StatusCode};
use bytes::Bytes;
use futures_util::FutureExt;
use http_body_util::{BodyExt, Empty};
use tower::ServiceExt;

use super::long_poll::{DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS};
use super::stream::STREAM_BUFFER;
use super::*;
use crate::http::Response;

/// A hub bounded by count only.
fn hub_of(entries: usize) -> NotificationHub {
    let bounds = RingBounds {
        entries,
        bytes: usize::MAX,
        plugin_bytes: usize::MAX,
    };
    NotificationHub::new(bounds, None)
}

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

/// The answer of the notification router (event streams' keep-alive every `every`).
fn call(
    hub: &Arc<NotificationHub>,
    request: &Request<Empty<Bytes>>,
    shutdown: &CancellationToken,
    every: Duration,
) -> impl Future<Output = Response> {
    let mut copy = Request::get(request.uri().clone())
        .body(Body::empty())
        .unwrap();
    *copy.headers_mut() = request.headers().clone();
    crate::reader::auth::layer(router_with(Arc::clone(hub), shutdown.clone(), every), None)
        .oneshot(copy)
        .map(|answer| answer.unwrap())
}

async fn long_poll(hub: &Arc<NotificationHub>, request: &Request<Empty<Bytes>>) -> Response {
    call(hub, request, &CancellationToken::new(), KEEP_ALIVE).await
}

fn long_poll_params(request: &Request<Empty<Bytes>>) -> Result<(Vec<String>, u64, u64), ApiError> {
    long_poll::params(&Params::from_uri(request.uri()).unwrap())
}

fn event_stream(
    hub: &Arc<NotificationHub>,
    request: &Request<Empty<Bytes>>,
    shutdown: &CancellationToken,
) -> Response {
    event_stream_with(hub, request, shutdown, KEEP_ALIVE)
}

/// An event stream answers at once: its headers go out before any event.
fn event_stream_with(
    hub: &Arc<NotificationHub>,
    request: &Request<Empty<Bytes>>,
    shutdown: &CancellationToken,
    every: Duration,
) -> Response {
    call(hub, request, shutdown, every)
        .now_or_never()
        .expect("an event stream answers at once")
}

async fn body_json(response: Response) -> serde_json::Value {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

/// The next frame of an event stream, as text, or None at its end.
async fn next_frame(body: &mut Body) -> Option<String> {
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
        source: None,
        published: std::time::Instant::now(),
    };
    format!(
        "id: {seq}\nevent: notify\ndata: {}\n\n",
        serde_json::to_string(&n).unwrap()
    )
}

#[tokio::test]
async fn publish_then_wait_returns_in_order() {
    let hub = hub_of(16);
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
    let hub = hub_of(16);
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
    let hub = hub_of(16);
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
    let hub = hub_of(16);
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
    let hub = hub_of(3);
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
    let hub = hub_of(8);
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
    let hub = Arc::new(hub_of(16));
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
    let hub = Arc::new(hub_of(16));
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
    let hub = Arc::new(hub_of(16));
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
    let hub = Arc::new(hub_of(16));
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
    let hub = Arc::new(hub_of(16));
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
    let hub = Arc::new(hub_of(16));
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
    let hub = Arc::new(hub_of(16));
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
    let hub = Arc::new(hub_of(2));
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
    let hub = Arc::new(hub_of(4));
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
    let hub = Arc::new(hub_of(4));
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
    let hub = Arc::new(hub_of(4));
    let shutdown = CancellationToken::new();
    let body = event_stream(&hub, &get("/v1/notifications/stream?topics=a"), &shutdown).into_body();
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
    let hub = Arc::new(hub_of(4));
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
