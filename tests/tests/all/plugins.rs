//! Reader plugins end to end: rows written to the writer become effects on readers — cached
//! reads that change after a write, notifications by long-poll and server-sent events.

use std::time::Duration;

use serde_json::{Value, json};
use streamhost_integration_tests::plugins::{PluginFolder, grants_for};
use streamhost_integration_tests::{TestReader, TestWriter, spawn_plugin_reader, wait_until};

const EXAMPLES: [&str; 3] = ["room-timeline", "notifier", "stream-stats"];
const WAIT: Duration = Duration::from_secs(30);

fn message(room: &str, n: usize, mentions: &[&str]) -> Value {
    json!({"room": room, "sender": "@alice:x", "body": format!("message {n}"), "mentions": mentions})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_reads_follow_writes_on_two_readers_and_are_never_stale_at_min_token() {
    let writer = TestWriter::spawn(&["messages", "typing"]).await;
    let folder = PluginFolder::with(&EXAMPLES);
    let readers = [
        spawn_plugin_reader(&writer, "r1", &folder, grants_for(&EXAMPLES)).await,
        spawn_plugin_reader(&writer, "r2", &folder, grants_for(&EXAMPLES)).await,
    ];
    let mut expected: Vec<Value> = Vec::new();
    for round in 0..5 {
        let rows: Vec<Value> = (0..3)
            .map(|n| message("!a:x", round * 3 + n, &[]))
            .collect();
        let tokens = writer.append("messages", &rows).await;
        writer
            .append("messages", &[message("!b:x", round, &[])])
            .await;
        expected.extend(rows);
        let last = tokens.last().unwrap().0;
        for reader in &readers {
            let (status, body) = reader
                .get(&format!(
                    "/v1/query/room-timeline/timeline?room=!a:x&min_token=messages:{last}"
                ))
                .await;
            assert_eq!(status, 200, "{body}");
            let timeline: Vec<Value> = serde_json::from_str(&body).unwrap();
            assert_eq!(
                timeline, expected,
                "reader {} round {round}",
                reader.config.name
            );
        }
    }
    // The second read of an unchanged room is a cache hit with the same answer.
    let first = readers[0]
        .get("/v1/query/room-timeline/timeline?room=!b:x")
        .await;
    let response = readers[0]
        .client()
        .send(
            hyper::Method::GET,
            "/v1/query/room-timeline/timeline?room=!b:x",
            bytes::Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(first.1.as_bytes(), &response.1[..]);
    let count = readers[1]
        .get("/v1/query/stream-stats/count?stream=messages")
        .await;
    assert_eq!(count, (hyper::StatusCode::OK, "20".to_string()));
    writer.append("typing", &[json!({"user": "@a:x"})]).await;
    wait_until(WAIT, "stream-stats to count typing", || async {
        readers[1]
            .get("/v1/query/stream-stats/count?stream=typing")
            .await
            .1
            == "1"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_wakes_with_the_right_payload() {
    let writer = TestWriter::spawn(&["messages"]).await;
    let folder = PluginFolder::with(&["notifier"]);
    let reader = spawn_plugin_reader(&writer, "r", &folder, grants_for(&["notifier"])).await;
    wait_until(WAIT, "notifier to run", || async {
        reader.plugin("notifier").await["state"] == "running"
    })
    .await;
    let client = reader.client();
    let poll = tokio::spawn(async move {
        client
            .get_json("/v1/notifications?topics=user:@bob:x&since=0&timeout_ms=20000")
            .await
            .unwrap()
    });
    // Whether the poll is already waiting or starts after the rows arrive, it must answer
    // with exactly the mention (the hub's unit tests cover waking a waiting poll).
    writer.append("messages", &[message("!a:x", 1, &[])]).await;
    let row = message("!a:x", 2, &["@bob:x"]);
    writer.append("messages", std::slice::from_ref(&row)).await;
    let page = poll.await.unwrap();
    let notifications = page["notifications"].as_array().unwrap();
    assert_eq!(notifications.len(), 1, "{page}");
    assert_eq!(notifications[0]["topic"], "user:@bob:x");
    assert_eq!(notifications[0]["plugin"], "notifier");
    let payload: Value =
        serde_json::from_str(notifications[0]["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload, row);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_deliver_every_notification_in_order() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let writer = TestWriter::spawn(&["messages"]).await;
    let folder = PluginFolder::with(&["notifier"]);
    let reader = spawn_plugin_reader(&writer, "r", &folder, grants_for(&["notifier"])).await;
    let mut socket = tokio::net::TcpStream::connect(reader.reader().http_addr())
        .await
        .unwrap();
    socket
        .write_all(b"GET /v1/notifications/stream?topics=room:!a:x HTTP/1.1\r\nhost: r\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    let mut buffer = [0u8; 4096];
    // The headers arrive first: the subscription is in place before anything is written.
    while !text.contains("\r\n\r\n") {
        let n = socket.read(&mut buffer).await.unwrap();
        text.push_str(&String::from_utf8_lossy(&buffer[..n]));
    }
    assert!(text.contains("text/event-stream"), "{text}");
    let rows: Vec<Value> = (0..20)
        .map(|n| message(["!a:x", "!b:x"][n % 2], n, &[]))
        .collect();
    for row in &rows {
        writer.append("messages", std::slice::from_ref(row)).await;
    }
    let expected: Vec<&Value> = rows.iter().filter(|r| r["room"] == "!a:x").collect();
    let events = tokio::time::timeout(WAIT, async {
        loop {
            let events: Vec<Value> = text
                .lines()
                .filter_map(|line| line.strip_prefix("data: "))
                .map(|data| serde_json::from_str(data).unwrap())
                .collect();
            if events.len() >= expected.len() {
                return events;
            }
            let n = socket.read(&mut buffer).await.unwrap();
            assert!(n > 0, "stream closed: {text}");
            text.push_str(&String::from_utf8_lossy(&buffer[..n]));
        }
    })
    .await
    .expect("events in time");
    assert_eq!(events.len(), expected.len());
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    for (event, row) in events.iter().zip(expected) {
        assert_eq!(event["topic"], "room:!a:x");
        let payload: Value = serde_json::from_str(event["payload"].as_str().unwrap()).unwrap();
        assert_eq!(&payload, row);
    }
}

/// The admin view of `plugin` on a reader of `folder` under `grants`.
async fn loaded(
    folder: &PluginFolder,
    grants: std::collections::BTreeMap<String, streamhost_plugin_runtime::Grant>,
    plugin: &str,
) -> Value {
    let writer = TestWriter::spawn(&["messages"]).await;
    let reader = spawn_plugin_reader(&writer, "r", folder, grants).await;
    reader.plugin(plugin).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_whose_pinned_hash_differs_is_refused() {
    let folder = PluginFolder::with(&["notifier"]);
    let actual = streamhost_plugin_runtime::sha256_hex(
        &std::fs::read(streamhost_integration_tests::plugins::NOTIFIER_WASM).unwrap(),
    );
    let wrong = "0".repeat(64);
    folder.edit_manifest("notifier", |text| format!("sha256 = \"{wrong}\"\n{text}"));
    let detail = loaded(&folder, grants_for(&["notifier"]), "notifier").await;
    assert_eq!(detail["state"], "failed");
    let reason = detail["reason"].as_str().unwrap();
    assert!(reason.contains("sha256 mismatch"), "{reason}");
    assert!(reason.contains(&actual), "{reason}");
    // The right pin, from the operator's grant, loads.
    folder.edit_manifest("notifier", |text| {
        text.replace(&format!("sha256 = \"{wrong}\"\n"), "")
    });
    let mut grants = grants_for(&["notifier"]);
    grants.get_mut("notifier").unwrap().sha256 = Some(actual);
    assert_eq!(
        loaded(&folder, grants, "notifier").await["state"],
        "running"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_without_its_grants_is_refused_naming_each_one() {
    let folder = PluginFolder::with(&["room-timeline"]);
    let mut grants = grants_for(&["room-timeline"]);
    let grant = grants.get_mut("room-timeline").unwrap();
    grant.kv = false;
    grant.caches.clear();
    let detail = loaded(&folder, grants, "room-timeline").await;
    assert_eq!(detail["state"], "failed");
    let reason = detail["reason"].as_str().unwrap();
    assert!(
        reason.contains("not granted: cache timeline, kv"),
        "{reason}"
    );
    // No grant at all: deny by default.
    let detail = loaded(&folder, Default::default(), "room-timeline").await;
    assert!(
        detail["reason"]
            .as_str()
            .unwrap()
            .contains("stream messages"),
        "{detail}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_importing_what_its_manifest_does_not_ask_for_is_refused() {
    let folder = PluginFolder::with(&["room-timeline"]);
    folder.edit_manifest("room-timeline", |text| {
        text.replace("kv = true", "kv = false")
    });
    let mut grants = grants_for(&["room-timeline"]);
    grants.get_mut("room-timeline").unwrap().kv = false;
    let detail = loaded(&folder, grants, "room-timeline").await;
    let reason = detail["reason"].as_str().unwrap();
    assert!(
        reason.contains("imports streamhost:plugin/kv@0.4.0, which needs `kv = true`"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_and_state_survive_a_reader_restart_exactly() {
    let writer = TestWriter::spawn(&["messages"]).await;
    let plugins = ["room-timeline", "stream-stats"];
    let folder = PluginFolder::with(&plugins);
    let mut first = spawn_plugin_reader(&writer, "r", &folder, grants_for(&plugins)).await;
    let mut rows: Vec<Value> = (0..30).map(|n| message("!a:x", n, &[])).collect();
    let tokens = writer.append("messages", &rows).await;
    let last = tokens.last().unwrap().0;
    let (status, _) = first
        .get(&format!(
            "/v1/query/stream-stats/count?stream=messages&min_token=messages:{last}"
        ))
        .await;
    assert_eq!(status, 200);
    first.stop().await;
    let later: Vec<Value> = (30..90).map(|n| message("!a:x", n, &[])).collect();
    let tokens = writer.append("messages", &later).await;
    rows.extend(later);
    let data = first.data_dir();
    let dir = folder.path().to_path_buf();
    let grants = grants_for(&plugins);
    let second =
        streamhost_integration_tests::TestReader::spawn_with(&writer, "r", None, move |c| {
            c.data = data;
            c.plugins.dir = Some(dir);
            c.plugins.grants = grants;
        })
        .await;
    let last = tokens.last().unwrap().0;
    let count = second
        .get(&format!(
            "/v1/query/stream-stats/count?stream=messages&min_token=messages:{last}"
        ))
        .await;
    assert_eq!(count.1, "90");
    let timeline: Vec<Value> = serde_json::from_str(
        &second
            .get("/v1/query/room-timeline/timeline?room=!a:x")
            .await
            .1,
    )
    .unwrap();
    assert_eq!(timeline, rows[40..].to_vec(), "the last 50 rows, each once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantined_plugin_waits_behind_and_resumes_on_request() {
    let writer = TestWriter::spawn(&["messages"]).await;
    let folder = PluginFolder::with(&["evil"]);
    let mut grants = grants_for(&["evil"]);
    let mut config = toml::Table::new();
    config.insert("mode".into(), toml::Value::String("panic".into()));
    grants.get_mut("evil").unwrap().config = Some(config);
    let reader = spawn_plugin_reader(&writer, "r", &folder, grants).await;
    writer.append("messages", &[message("!a:x", 0, &[])]).await;
    wait_until(WAIT, "evil to be quarantined", || async {
        reader.plugin("evil").await["state"] == "quarantined"
    })
    .await;
    let evil = reader.plugin("evil").await;
    assert!(
        evil["lag"].as_i64().unwrap() > 0,
        "its cursor waits: {evil}"
    );
    let (status, _) = reader
        .admin()
        .send(
            hyper::Method::POST,
            "/v1/admin/plugins/evil/resume",
            bytes::Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    // It fails again on the same batch, four more times, and is quarantined again.
    wait_until(WAIT, "evil to fail again after the resume", || async {
        reader.plugin("evil").await["failures"]["trap"] == 8
    })
    .await;
    wait_until(WAIT, "evil to be quarantined again", || async {
        reader.plugin("evil").await["state"] == "quarantined"
    })
    .await;
    let (status, body) = reader
        .client()
        .send(hyper::Method::GET, "/v1/admin/plugins", bytes::Bytes::new())
        .await
        .unwrap();
    assert_eq!(status, 401, "the admin API needs the token: {body:?}");
}

/// `method path` on `reader`'s admin API with `body`: the status and the body as JSON (or as
/// a JSON string when it is not JSON).
async fn admin_call(
    reader: &TestReader,
    method: hyper::Method,
    path: &str,
    body: &str,
) -> (u16, Value) {
    let (status, body) = reader
        .admin()
        .send(method, path, bytes::Bytes::from(body.to_owned()))
        .await
        .unwrap();
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    (status.as_u16(), json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_quarantine_holds_a_plugin_back_until_resumed_and_ends_with_a_restart() {
    let writer = TestWriter::spawn(&["messages"]).await;
    let folder = PluginFolder::with(&["stream-stats"]);
    let mut reader =
        spawn_plugin_reader(&writer, "r", &folder, grants_for(&["stream-stats"])).await;
    let quarantine = "/v1/admin/plugins/stream-stats/quarantine";
    let count = |token: i64| {
        format!("/v1/query/stream-stats/count?stream=messages&min_token=messages:{token}")
    };
    let tokens = writer
        .append(
            "messages",
            &[message("!a:x", 0, &[]), message("!a:x", 1, &[])],
        )
        .await;
    assert_eq!(reader.get(&count(tokens[1].0)).await.1, "2");

    let (status, answer) = admin_call(
        &reader,
        hyper::Method::POST,
        quarantine,
        r#"{"reason": "disk full on the push target"}"#,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({"quarantined": true, "reason": "by operator: disk full on the push target"})
    );
    let stats = reader.plugin("stream-stats").await;
    assert_eq!(stats["state"], "quarantined", "{stats}");
    assert_eq!(stats["reason"], "by operator: disk full on the push target");
    let (status, answer) = admin_call(&reader, hyper::Method::POST, quarantine, "").await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["errcode"], "M_ALREADY_QUARANTINED");
    assert!(
        answer["error"].as_str().unwrap().contains("disk full"),
        "{answer}"
    );

    // The reader applies new rows; the plugin's cursor waits where it was.
    let tokens = writer
        .append(
            "messages",
            &[
                message("!a:x", 2, &[]),
                message("!a:x", 3, &[]),
                message("!a:x", 4, &[]),
            ],
        )
        .await;
    let last = tokens[2].0;
    reader.wait_for("messages", tokens[2], WAIT).await;
    let stats = reader.plugin("stream-stats").await;
    assert_eq!(stats["lag"], 3, "its cursor waits: {stats}");
    assert_eq!(stats["cursors"][0]["token"], last - 3, "{stats}");

    let (status, answer) = admin_call(
        &reader,
        hyper::Method::POST,
        "/v1/admin/plugins/stream-stats/resume",
        "",
    )
    .await;
    assert_eq!((status, answer), (200, json!({"resumed": true})));
    assert_eq!(
        reader.get(&count(last)).await.1,
        "5",
        "every row once, after the resume"
    );
    let (status, answer) = admin_call(
        &reader,
        hyper::Method::POST,
        "/v1/admin/plugins/stream-stats/resume",
        "",
    )
    .await;
    assert_eq!(
        (status, answer["errcode"].as_str()),
        (409, Some("M_NOT_QUARANTINED"))
    );

    // No reason, or a blank one: "by operator".
    for body in ["", "{}", r#"{"reason": "  "}"#, r#"{"reason": null}"#] {
        let (status, answer) = admin_call(&reader, hyper::Method::POST, quarantine, body).await;
        assert_eq!(
            (status, &answer["reason"]),
            (200, &json!("by operator")),
            "{body}: {answer}"
        );
        let (status, _) = admin_call(
            &reader,
            hyper::Method::POST,
            "/v1/admin/plugins/stream-stats/resume",
            "",
        )
        .await;
        assert_eq!(status, 200);
    }

    // An operator's quarantine is the reader's memory, as one the failures caused: a restart
    // starts the plugin again.
    let (status, _) = admin_call(
        &reader,
        hyper::Method::POST,
        quarantine,
        r#"{"reason": "x"}"#,
    )
    .await;
    assert_eq!(status, 200);
    reader.restart_with(|_| {}).await;
    wait_until(WAIT, "stream-stats to run after the restart", || async {
        reader.plugin("stream-stats").await["state"] == "running"
    })
    .await;
    assert_eq!(reader.get(&count(last)).await.1, "5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantine_refuses_a_bad_body_an_unknown_plugin_and_a_missing_token() {
    let writer = TestWriter::spawn(&["messages"]).await;
    let folder = PluginFolder::with(&["stream-stats"]);
    let reader = spawn_plugin_reader(&writer, "r", &folder, grants_for(&["stream-stats"])).await;
    let quarantine = "/v1/admin/plugins/stream-stats/quarantine";
    let long = format!(r#"{{"reason": "{}"}}"#, "x".repeat(1_001));
    for (body, errcode) in [
        ("not json", "M_BAD_JSON"),
        (r#"{"reason": 5}"#, "M_BAD_JSON"),
        (r#"{"why": "x"}"#, "M_BAD_JSON"),
        (r#"["x"]"#, "M_BAD_JSON"),
        (r#"{"reason": "two\nlines"}"#, "M_INVALID_PARAM"),
        (long.as_str(), "M_INVALID_PARAM"),
    ] {
        let (status, answer) = admin_call(&reader, hyper::Method::POST, quarantine, body).await;
        assert_eq!(
            (status, answer["errcode"].as_str()),
            (400, Some(errcode)),
            "{body}: {answer}"
        );
        assert!(!answer["error"].as_str().unwrap().is_empty());
    }
    assert_eq!(
        reader.plugin("stream-stats").await["state"],
        "running",
        "nothing was quarantined"
    );
    let (status, answer) = admin_call(
        &reader,
        hyper::Method::POST,
        "/v1/admin/plugins/nope/quarantine",
        "",
    )
    .await;
    assert_eq!(
        (status, answer["errcode"].as_str()),
        (404, Some("M_NOT_FOUND")),
        "{answer}"
    );
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("no plugin named nope")
    );
    let (status, _) = reader
        .client()
        .send(hyper::Method::POST, quarantine, bytes::Bytes::new())
        .await
        .unwrap();
    assert_eq!(status, 401);
    assert_eq!(reader.plugin("stream-stats").await["state"], "running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_newest_first_up_to_the_limit() {
    let writer = TestWriter::spawn(&["messages"]).await;
    let folder = PluginFolder::with(&["evil", "stream-stats"]);
    let mut grants = grants_for(&["evil", "stream-stats"]);
    let mut config = toml::Table::new();
    config.insert("mode".into(), toml::Value::String("skip".into()));
    grants.get_mut("evil").unwrap().config = Some(config);
    let reader = spawn_plugin_reader(&writer, "r", &folder, grants).await;
    let letters = "/v1/admin/plugins/evil/dead-letters";
    let mut tokens = Vec::new();
    for n in 0..3 {
        let token = writer.append("messages", &[message("!a:x", n, &[])]).await[0].0;
        tokens.push(token);
        wait_until(WAIT, "evil to skip the row", || async {
            let (_, list) = admin_call(&reader, hyper::Method::GET, letters, "").await;
            list[0]["to_token"] == token
        })
        .await;
    }
    let (status, list) = admin_call(&reader, hyper::Method::GET, letters, "").await;
    assert_eq!(status, 200, "{list}");
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 3, "{list:?}");
    let to: Vec<i64> = list
        .iter()
        .map(|l| l["to_token"].as_i64().unwrap())
        .collect();
    assert_eq!(to, [tokens[2], tokens[1], tokens[0]], "newest first");
    let newest = &list[0];
    assert_eq!(newest["stream"], "messages");
    assert_eq!(newest["instance"], "master");
    assert_eq!(newest["from_token"], tokens[1]);
    assert!(
        newest["reason"].as_str().unwrap().starts_with("evil skips"),
        "{newest}"
    );
    assert!(
        newest["at_ms"].as_i64().unwrap() > 1_577_836_800_000,
        "{newest}"
    );

    let (status, two) = admin_call(
        &reader,
        hyper::Method::GET,
        &format!("{letters}?limit=2"),
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(two.as_array().unwrap()[..], list[..2]);
    let (status, none) = admin_call(
        &reader,
        hyper::Method::GET,
        "/v1/admin/plugins/stream-stats/dead-letters?limit=1000",
        "",
    )
    .await;
    assert_eq!((status, none), (200, json!([])));
    for limit in ["0", "-1", "1001", "ten", ""] {
        let (status, answer) = admin_call(
            &reader,
            hyper::Method::GET,
            &format!("{letters}?limit={limit}"),
            "",
        )
        .await;
        assert_eq!(
            (status, answer["errcode"].as_str()),
            (400, Some("M_INVALID_PARAM")),
            "limit={limit}: {answer}"
        );
    }
    let (status, answer) = admin_call(
        &reader,
        hyper::Method::GET,
        "/v1/admin/plugins/nope/dead-letters",
        "",
    )
    .await;
    assert_eq!(
        (status, answer["errcode"].as_str()),
        (404, Some("M_NOT_FOUND")),
        "{answer}"
    );
    let (status, _) = reader
        .client()
        .send(hyper::Method::GET, letters, bytes::Bytes::new())
        .await
        .unwrap();
    assert_eq!(status, 401);
}
