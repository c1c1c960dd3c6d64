//! The console's endpoints without a browser: what is open, what takes the token, the event
//! stream's framing, its cap and its end at shutdown.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use axum::body::Body;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;

/// A source whose snapshot carries a marker the page must never hold.
struct Marked;

impl Source for Marked {
    fn snapshot(&self) -> serde_json::Value {
        serde_json::json!({"role": "writer", "name": "w", "marker": "SECRET-FIGURE"})
    }
}

fn console(shutdown: &CancellationToken) -> Router {
    router(
        Arc::new(Marked),
        Bearer::optional(Some("read")).or(Some("write")),
        shutdown.clone(),
    )
}

fn get(uri: &str, token: Option<&str>) -> Request<Body> {
    let mut request = Request::get(uri);
    if let Some(token) = token {
        request = request.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    request.body(Body::empty()).unwrap()
}

async fn text(response: axum::response::Response) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn the_page_and_its_assets_are_open_and_hold_no_data() {
    let shutdown = CancellationToken::new();
    for (uri, kind) in [
        ("/console", "text/html"),
        ("/console/console.js", "text/javascript"),
        ("/console/console.css", "text/css"),
    ] {
        let response = console(&shutdown).oneshot(get(uri, None)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{uri}");
        let headers = response.headers();
        assert!(headers[CONTENT_TYPE].to_str().unwrap().starts_with(kind));
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"));
        let body = text(response).await;
        assert!(!body.contains("SECRET-FIGURE"), "{uri}");
        // Nothing from elsewhere: no CDN, no web fonts.
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "{uri}"
        );
    }
}

#[tokio::test]
async fn the_data_endpoints_take_the_token() {
    let shutdown = CancellationToken::new();
    for uri in ["/console/snapshot", "/console/events"] {
        for wrong in [None, Some("nope"), Some("")] {
            let response = console(&shutdown).oneshot(get(uri, wrong)).await.unwrap();
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{uri} {wrong:?}"
            );
            assert!(!text(response).await.contains("SECRET-FIGURE"));
        }
    }
    for token in ["read", "write"] {
        let response = console(&shutdown)
            .oneshot(get("/console/snapshot", Some(token)))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let snapshot: serde_json::Value = serde_json::from_str(&text(response).await).unwrap();
        assert_eq!(snapshot["marker"], "SECRET-FIGURE");
    }
    // No token configured: open, like /metrics.
    let open = router(Arc::new(Marked), Bearer::optional(None), shutdown.clone());
    let response = open.oneshot(get("/console/snapshot", None)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// Reads the body until `frames` complete events (blank-line separated) have arrived.
async fn frames(body: &mut Body, frames: usize) -> Vec<String> {
    let mut buffer = String::new();
    while buffer.matches("\n\n").count() < frames {
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("an event within 5 s")
            .expect("the stream goes on")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            buffer.push_str(std::str::from_utf8(&data).unwrap());
        }
    }
    buffer
        .split("\n\n")
        .take(frames)
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn events_are_snapshots_framed_as_server_sent_events() {
    let shutdown = CancellationToken::new();
    let started = tokio::time::Instant::now();
    let response = console(&shutdown)
        .oneshot(get("/console/events", Some("read")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CONTENT_TYPE], "text/event-stream");
    let mut body = response.into_body();
    let events = frames(&mut body, 3).await;
    for event in &events {
        let mut lines = event.lines();
        assert_eq!(lines.next(), Some("event: snapshot"), "{event:?}");
        let data = lines.next().unwrap().strip_prefix("data: ").unwrap();
        let snapshot: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(snapshot["marker"], "SECRET-FIGURE");
        assert_eq!(lines.next(), None, "{event:?}");
    }
    // The first at once, then one every period.
    let took = started.elapsed();
    assert!(
        took >= events::PERIOD * 2 && took < events::PERIOD * 6,
        "{took:?}"
    );
}

#[tokio::test]
async fn streams_are_capped_and_end_at_shutdown() {
    let shutdown = CancellationToken::new();
    let console = console(&shutdown);
    let mut open = Vec::new();
    for _ in 0..events::MAX_STREAMS {
        let response = console
            .clone()
            .oneshot(get("/console/events", Some("read")))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        open.push(response.into_body());
    }
    let refused = console
        .clone()
        .oneshot(get("/console/events", Some("read")))
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(text(refused).await.contains("console streams are open"));
    // Closing one frees its place.
    drop(open.pop());
    let again = console
        .clone()
        .oneshot(get("/console/events", Some("read")))
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    open.push(again.into_body());
    // Shutdown ends every stream: each body finishes (after what was already sent).
    shutdown.cancel();
    for body in open {
        let rest = tokio::time::timeout(Duration::from_secs(5), body.collect())
            .await
            .expect("the stream ends at shutdown");
        assert!(rest.is_ok());
    }
}
