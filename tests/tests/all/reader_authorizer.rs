//! The authorizer example end to end (`plugins/matrix-authorizer`, `docs/security.md`): two
//! users with tokens scoped to `room:*`, in different rooms (and one room together), each
//! receives exactly their own rooms' notifications over server-sent events and long-poll, and
//! a user who leaves a room stops receiving it from the next row on.

use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use streamhost_integration_tests::plugins::{PluginFolder, grants_for};
use streamhost_integration_tests::sse::EventStream;
use streamhost_integration_tests::{TestReader, TestWriter, spawn_plugin_reader, wait_until};
use streamhost_server::config::{AuthConfig, TokenConfig};

const PLUGINS: [&str; 3] = ["notifier", "room-timeline", "matrix-authorizer"];
const WAIT: Duration = Duration::from_secs(30);
const ALICE: &str = "alice-secret-0123456789";
const BOB: &str = "bob-secret-0123456789ab";

fn token(name: &str, secret: &str) -> TokenConfig {
    TokenConfig {
        name: name.into(),
        token: Some(secret.into()),
        subject: format!("@{name}:x"),
        queries: vec!["room-timeline/*".into()],
        topics: vec!["room:*".into()],
        ..TokenConfig::default()
    }
}

fn member(user: &str, room: &str, membership: &str) -> Value {
    json!({"kind": "ev", "event_id": format!("${user}{room}{membership}"), "room_id": room,
           "type": "m.room.member", "state_key": user, "membership": membership})
}

fn message(room: &str, body: &str) -> Value {
    json!({"room": room, "sender": "@x:x", "body": body, "mentions": []})
}

/// The bodies of the notifications in `events` (SSE data or long-poll items).
fn bodies(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let payload: Value = serde_json::from_str(e["payload"].as_str().unwrap()).unwrap();
            payload["body"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// A reader with the notifier, room-timeline and matrix-authorizer, alice's and bob's tokens.
async fn reader(writer: &TestWriter, folder: &PluginFolder) -> TestReader {
    let mut reader = spawn_plugin_reader(writer, "r", folder, grants_for(&PLUGINS)).await;
    reader
        .restart_with(|config| {
            config.auth = AuthConfig {
                tokens: vec![token("alice", ALICE), token("bob", BOB)],
                authorizer: Some("matrix-authorizer".into()),
                ..AuthConfig::default()
            };
        })
        .await;
    for plugin in PLUGINS {
        wait_until(WAIT, &format!("{plugin} to run"), || async {
            reader.plugin(plugin).await["state"] == "running"
        })
        .await;
    }
    reader
}

/// Long-polls `topics` as `secret` from `since` until `until` is among the bodies, following
/// `next`; a topic the authorizer refuses by then is dropped from the request. Every body,
/// and the `next` to go on from.
async fn long_poll_until(
    reader: &TestReader,
    secret: &str,
    topics: &mut Vec<&str>,
    mut since: u64,
    until: &str,
) -> (Vec<String>, u64) {
    let client = reader.client().with_bearer(secret);
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, async {
        while !got.iter().any(|b| b == until) {
            let path = format!(
                "/v1/notifications?topics={}&since={since}&timeout_ms=2000",
                topics.join(",")
            );
            let (status, body) = client.send(Method::GET, &path, Bytes::new()).await.unwrap();
            if status == StatusCode::FORBIDDEN {
                // The user left one of the rooms: refused at subscription from then on.
                let text = String::from_utf8_lossy(&body);
                let refused = topics.iter().position(|t| text.contains(t)).unwrap();
                topics.remove(refused);
                continue;
            }
            assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
            let page: Value = serde_json::from_slice(&body).unwrap();
            got.extend(bodies(page["notifications"].as_array().unwrap()));
            since = page["next"].as_u64().unwrap();
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{until} by long-poll; got {got:?}"));
    (got, since)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_user_receives_exactly_their_rooms_and_a_leave_takes_effect_from_the_next_row() {
    let writer = TestWriter::spawn(&["events", "messages"]).await;
    let folder = PluginFolder::with(&PLUGINS);
    let reader = reader(&writer, &folder).await;
    let addr = reader.reader().http_addr();
    // matrix-authorizer stays a 0.3.0 component; notifier is built with the SDK's 0.4.0: one
    // reader serves both.
    let authorizer = reader.plugin("matrix-authorizer").await;
    assert_eq!(
        (
            authorizer["interface"].as_str(),
            authorizer["authorizer"].as_bool()
        ),
        (Some("0.3.0"), Some(true))
    );
    let notifier = reader.plugin("notifier").await;
    assert_eq!(
        (
            notifier["interface"].as_str(),
            notifier["authorizer"].as_bool()
        ),
        (Some("0.4.0"), Some(false))
    );
    // Alice is in !a and !c, bob in !b and !c.
    writer
        .append(
            "events",
            &[
                member("@alice:x", "!a:x", "join"),
                member("@alice:x", "!c:x", "join"),
                member("@bob:x", "!b:x", "join"),
                member("@bob:x", "!c:x", "join"),
            ],
        )
        .await;
    let alice = reader.client().with_bearer(ALICE);
    wait_until(WAIT, "the authorizer to see alice join", || async {
        let path = "/v1/notifications?topics=room:!a:x,room:!c:x&timeout_ms=1";
        alice.send(Method::GET, path, Bytes::new()).await.unwrap().0 == StatusCode::OK
    })
    .await;
    // Outside their rooms, subscriptions and queries are refused.
    for (secret, room) in [(ALICE, "!b:x"), (BOB, "!a:x")] {
        let client = reader.client().with_bearer(secret);
        let path = format!("/v1/notifications?topics=room:{room}&timeout_ms=1");
        let (status, body) = client.send(Method::GET, &path, Bytes::new()).await.unwrap();
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{}",
            String::from_utf8_lossy(&body)
        );
        assert!(String::from_utf8_lossy(&body).contains("matrix-authorizer"));
        let (code, _) = EventStream::open(
            addr,
            &format!("/v1/notifications/stream?topics=room:{room}"),
            Some(secret),
        )
        .await;
        assert_eq!(code, 403);
        let query = format!("/v1/query/room-timeline/timeline?room={room}");
        let (status, _) = client
            .send(Method::GET, &query, Bytes::new())
            .await
            .unwrap();
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let (status, _) = alice
        .send(
            Method::GET,
            "/v1/query/room-timeline/timeline?room=!a:x",
            Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);

    let start = alice
        .get_json("/v1/notifications?topics=room:!a:x&timeout_ms=1")
        .await
        .unwrap()["next"]
        .as_u64()
        .unwrap();
    let (code, mut alice_events) = EventStream::open(
        addr,
        "/v1/notifications/stream?topics=room:!a:x,room:!c:x",
        Some(ALICE),
    )
    .await;
    assert_eq!(code, 200, "{}", alice_events.text());
    let (code, mut bob_events) = EventStream::open(
        addr,
        "/v1/notifications/stream?topics=room:!b:x,room:!c:x",
        Some(BOB),
    )
    .await;
    assert_eq!(code, 200, "{}", bob_events.text());

    // c1 while alice is in !c: both receive it, by either means.
    writer
        .append(
            "messages",
            &[
                message("!a:x", "a1"),
                message("!b:x", "b1"),
                message("!c:x", "c1"),
            ],
        )
        .await;
    assert_eq!(bodies(&alice_events.wait_for(2, WAIT).await), ["a1", "c1"]);
    assert_eq!(bodies(&bob_events.wait_for(2, WAIT).await), ["b1", "c1"]);
    let mut alice_topics = vec!["room:!a:x", "room:!c:x"];
    let mut bob_topics = vec!["room:!b:x", "room:!c:x"];
    let (polled, alice_next) =
        long_poll_until(&reader, ALICE, &mut alice_topics, start, "c1").await;
    assert_eq!(polled, ["a1", "c1"]);
    let (polled, bob_next) = long_poll_until(&reader, BOB, &mut bob_topics, start, "c1").await;
    assert_eq!(polled, ["b1", "c1"]);

    // Alice leaves !c; c2 comes right after her leave (no waiting in between), then a3.
    writer
        .append("events", &[member("@alice:x", "!c:x", "leave")])
        .await;
    writer
        .append(
            "messages",
            &[
                message("!c:x", "c2"),
                message("!b:x", "b2"),
                message("!a:x", "a3"),
            ],
        )
        .await;
    assert_eq!(
        bodies(&alice_events.wait_for(3, WAIT).await),
        ["a1", "c1", "a3"]
    );
    assert_eq!(
        bodies(&bob_events.wait_for(4, WAIT).await),
        ["b1", "c1", "c2", "b2"]
    );
    // Nothing more comes: not c2 for alice, not a room of the other.
    assert_eq!(
        alice_events
            .read_for(Duration::from_millis(300))
            .await
            .len(),
        3
    );
    assert_eq!(
        bob_events.read_for(Duration::from_millis(100)).await.len(),
        4
    );
    // Long-poll on from where each was: the same, exactly.
    let (polled, _) = long_poll_until(&reader, ALICE, &mut alice_topics, alice_next, "a3").await;
    assert_eq!(polled, ["a3"]);
    let (polled, _) = long_poll_until(&reader, BOB, &mut bob_topics, bob_next, "b2").await;
    assert_eq!(polled, ["c2", "b2"]);
    assert_eq!(bob_topics, ["room:!b:x", "room:!c:x"]);

    // Alice, having left, may no longer subscribe to !c or read its timeline.
    let (status, _) = alice
        .send(
            Method::GET,
            "/v1/notifications?topics=room:!c:x&timeout_ms=1",
            Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN);
    let metrics = reader.get("/metrics").await.1;
    assert!(
        metrics.contains("reader_authorizer_answers_total"),
        "{metrics}"
    );
}
