//! `[reader.auth]` end to end: API tokens on the query, long-poll and event-stream endpoints
//! (401 without or with a wrong token, 403 outside the scope, 200 inside it), tokens issued
//! and revoked through the admin API, and issued tokens surviving a restart.

use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use streamhost_integration_tests::plugins::{PluginFolder, grants_for};
use streamhost_integration_tests::sse::EventStream;
use streamhost_integration_tests::{TestReader, TestWriter, spawn_plugin_reader, wait_until};
use streamhost_server::client::ApiClient;
use streamhost_server::config::{AuthConfig, TokenConfig};

const PLUGINS: [&str; 2] = ["room-timeline", "notifier"];
const WAIT: Duration = Duration::from_secs(30);
const ALICE: &str = "alice-secret-0123456789";

fn message(room: &str, n: usize, mentions: &[&str]) -> Value {
    json!({"room": room, "sender": "@x:x", "body": format!("message {n}"), "mentions": mentions})
}

/// Alice may read room-timeline's queries and receive `room:!a:x` and her own `user:` topic.
fn auth() -> AuthConfig {
    AuthConfig {
        tokens: vec![TokenConfig {
            name: "alice".into(),
            token: Some(ALICE.into()),
            subject: "@alice:x".into(),
            queries: vec!["room-timeline/*".into()],
            topics: vec!["room:!a:x".into(), "user:{subject}".into()],
            ..TokenConfig::default()
        }],
        ..AuthConfig::default()
    }
}

async fn reader(writer: &TestWriter, folder: &PluginFolder, auth: AuthConfig) -> TestReader {
    let mut reader = spawn_plugin_reader(writer, "r", folder, grants_for(&PLUGINS)).await;
    restart_with(&mut reader, auth).await;
    reader
}

/// Restarts `reader` on its data folder with `auth`, and waits for its plugins.
async fn restart_with(reader: &mut TestReader, auth: AuthConfig) {
    reader.restart_with(|config| config.auth = auth).await;
    for plugin in PLUGINS {
        wait_until(WAIT, &format!("{plugin} to run"), || async {
            reader.plugin(plugin).await["state"] == "running"
        })
        .await;
    }
}

async fn status(client: &ApiClient, path: &str) -> (StatusCode, String) {
    let (status, body) = client.send(Method::GET, path, Bytes::new()).await.unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_need_a_token_whose_scope_covers_them() {
    let writer = TestWriter::spawn(&["messages"]).await;
    let folder = PluginFolder::with(&PLUGINS);
    let reader = reader(&writer, &folder, auth()).await;
    let token = writer.append("messages", &[message("!a:x", 1, &[])]).await[0];
    let read = format!(
        "/v1/query/room-timeline/timeline?room=!a:x&min_token=messages:{}",
        token.0
    );
    for client in [
        reader.client(),
        reader.client().with_bearer("wrong-0123456789abcdef"),
    ] {
        let (status, body) = status(&client, &read).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert!(!body.contains("message 1"), "{body}");
    }
    let alice = reader.client().with_bearer(ALICE);
    let (code, body) = status(&alice, &read).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()[0]["body"],
        "message 1"
    );
    let (code, body) = status(&alice, "/v1/query/notifier/sent").await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body.contains("notifier/sent") && body.contains("room-timeline/*"),
        "{body}"
    );
    // A plugin that does not exist is outside the scope too: nothing is said about it.
    let (code, _) = status(&alice, "/v1/query/nothing/here").await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    // The admin token is no API token.
    let (code, _) = status(&reader.admin(), &read).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    let metrics = reader.get("/metrics").await.1;
    assert!(metrics.contains("reader_auth_denied_total"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_need_a_token_and_deliver_only_its_topics() {
    let writer = TestWriter::spawn(&["messages"]).await;
    let folder = PluginFolder::with(&PLUGINS);
    let reader = reader(&writer, &folder, auth()).await;
    let addr = reader.reader().http_addr();
    let alice = reader.client().with_bearer(ALICE);
    let poll = "/v1/notifications?topics=room:!a:x&since=0&timeout_ms=100";
    let (code, _) = status(&reader.client(), poll).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    let (code, body) = status(
        &alice,
        "/v1/notifications?topics=room:!a:x,room:!b:x&timeout_ms=100",
    )
    .await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("room:!b:x"), "{body}");
    let (code, body) = status(
        &alice,
        "/v1/notifications?topics=user:@bob:x&timeout_ms=100",
    )
    .await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    let stream = "/v1/notifications/stream?topics=room:!a:x,user:@alice:x";
    for bearer in [None, Some("wrong-0123456789abcdef")] {
        let (code, _) = EventStream::open(addr, stream, bearer).await;
        assert_eq!(code, 401);
    }
    let (code, _) = EventStream::open(
        addr,
        "/v1/notifications/stream?topics=room:!b:x",
        Some(ALICE),
    )
    .await;
    assert_eq!(code, 403);
    let (code, mut events) = EventStream::open(addr, stream, Some(ALICE)).await;
    assert_eq!(code, 200, "{}", events.text());
    writer
        .append(
            "messages",
            &[
                message("!b:x", 1, &["@bob:x"]),
                message("!a:x", 2, &["@alice:x"]),
                message("!b:x", 3, &["@alice:x"]),
            ],
        )
        .await;
    let got = events.wait_for(3, WAIT).await;
    let topics: Vec<&str> = got.iter().map(|e| e["topic"].as_str().unwrap()).collect();
    assert_eq!(topics, ["room:!a:x", "user:@alice:x", "user:@alice:x"]);
    let page = alice
        .get_json("/v1/notifications?topics=room:!a:x,user:@alice:x&since=0&timeout_ms=5000")
        .await
        .unwrap();
    let topics: Vec<&str> = page["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["topic"].as_str().unwrap())
        .collect();
    assert_eq!(
        topics,
        ["room:!a:x", "user:@alice:x", "user:@alice:x"],
        "{page}"
    );
    // Nothing more arrived on the stream: not room:!b:x, not user:@bob:x.
    assert_eq!(events.read_for(Duration::from_millis(300)).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issued_tokens_work_until_revoked_and_survive_a_restart() {
    let writer = TestWriter::spawn(&["messages"]).await;
    let folder = PluginFolder::with(&PLUGINS);
    let only_issued = AuthConfig {
        enabled: Some(true),
        ..AuthConfig::default()
    };
    let reader = reader(&writer, &folder, only_issued.clone()).await;
    let admin = reader.admin();
    // Only the admin token issues.
    let body = Bytes::from(json!({"subject": "@bob:x", "topics": ["room:*"]}).to_string());
    let (code, _) = reader
        .client()
        .send(Method::POST, "/v1/admin/tokens", body.clone())
        .await
        .unwrap();
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    let (code, answer) = admin
        .send(Method::POST, "/v1/admin/tokens", body)
        .await
        .unwrap();
    assert_eq!(code, StatusCode::CREATED);
    let bob: Value = serde_json::from_slice(&answer).unwrap();
    let (bob_id, bob_secret) = (bob["id"].as_str().unwrap(), bob["token"].as_str().unwrap());
    assert_eq!(bob["subject"], "@bob:x");
    let bad = Bytes::from(json!({"subject": "@c:x", "queries": ["noslash"]}).to_string());
    let (code, answer) = admin
        .send(Method::POST, "/v1/admin/tokens", bad)
        .await
        .unwrap();
    assert_eq!(
        code,
        StatusCode::BAD_REQUEST,
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let keep = Bytes::from(
        json!({"subject": "@carol:x", "queries": ["room-timeline/timeline"], "expires_in_s": 3600})
            .to_string(),
    );
    let (code, answer) = admin
        .send(Method::POST, "/v1/admin/tokens", keep)
        .await
        .unwrap();
    assert_eq!(code, StatusCode::CREATED);
    let carol: Value = serde_json::from_slice(&answer).unwrap();
    let carol_secret = carol["token"].as_str().unwrap().to_owned();
    // The list shows both, without a secret.
    let list = admin.get_json("/v1/admin/tokens").await.unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    assert!(!list.to_string().contains(bob_secret), "{list}");
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|t| t.get("token").is_none())
    );

    let addr = reader.reader().http_addr();
    let (code, mut events) = EventStream::open(
        addr,
        "/v1/notifications/stream?topics=room:!a:x",
        Some(bob_secret),
    )
    .await;
    assert_eq!(code, 200);
    writer.append("messages", &[message("!a:x", 1, &[])]).await;
    events.wait_for(1, WAIT).await;
    let bob_client = reader.client().with_bearer(bob_secret);
    let (code, _) = status(&bob_client, "/v1/query/room-timeline/timeline?room=!a:x").await;
    assert_eq!(code, StatusCode::FORBIDDEN, "bob's scope has no queries");

    // Revoking ends the open stream and refuses the next request.
    let (code, _) = admin
        .send(
            Method::DELETE,
            &format!("/v1/admin/tokens/{bob_id}"),
            Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(code, StatusCode::OK);
    events.wait_closed(WAIT).await;
    let (code, _) = status(
        &bob_client,
        "/v1/notifications?topics=room:!a:x&timeout_ms=10",
    )
    .await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    let (code, _) = admin
        .send(
            Method::DELETE,
            &format!("/v1/admin/tokens/{bob_id}"),
            Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(code, StatusCode::NOT_FOUND);

    // Carol's token, and only hers, survives a restart.
    let mut reader = reader;
    restart_with(&mut reader, only_issued).await;
    let carol = reader.client().with_bearer(carol_secret.as_str());
    let (code, body) = status(&carol, "/v1/query/room-timeline/timeline?room=!a:x").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let (code, _) = status(
        &reader.client().with_bearer(bob_secret),
        "/v1/query/room-timeline/timeline?room=!a:x",
    )
    .await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    let list = reader.admin().get_json("/v1/admin/tokens").await.unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorizer_that_cannot_answer_denies() {
    let writer = TestWriter::spawn(&["messages"]).await;
    let folder = PluginFolder::with(&PLUGINS);
    // The notifier exports no `authorizer`: every question fails, so every one is denied.
    let config = AuthConfig {
        authorizer: Some("notifier".into()),
        ..auth()
    };
    let reader = reader(&writer, &folder, config).await;
    let alice = reader.client().with_bearer(ALICE);
    let (code, body) = status(&alice, "/v1/notifications?topics=room:!a:x&timeout_ms=10").await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("authorizer (plugin notifier)"), "{body}");
    let (code, _) = status(&alice, "/v1/query/room-timeline/timeline?room=!a:x").await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    let metrics = reader.get("/metrics").await.1;
    let failed = streamhost_integration_tests::metric(
        &metrics,
        "streamhost_reader_authorizer_failures_total{reason=\"failed\"}",
    );
    assert_eq!(failed, Some(2.0), "{metrics}");
    // The plugin's reports say why.
    let notifier = reader.plugin("notifier").await;
    let reports = notifier["reports"].to_string();
    assert!(
        reports.contains("authorize") && reports.contains("authorizer"),
        "{reports}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_auth_the_endpoints_stay_open_and_tokens_are_not_issued() {
    let writer = TestWriter::spawn(&["messages"]).await;
    let folder = PluginFolder::with(&PLUGINS);
    let reader = spawn_plugin_reader(&writer, "r", &folder, grants_for(&PLUGINS)).await;
    let (code, _) = status(
        &reader.client(),
        "/v1/notifications?topics=room:!a:x&timeout_ms=10",
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let body = Bytes::from(json!({"subject": "@bob:x"}).to_string());
    let (code, _) = reader
        .admin()
        .send(Method::POST, "/v1/admin/tokens", body)
        .await
        .unwrap();
    assert_eq!(code, StatusCode::CONFLICT);
}
