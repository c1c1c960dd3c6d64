//! The cross-language conformance suite for pushers: `matrix-pusher` (Rust, the reference) and
//! `matrix-pusher-py` get the same `events` rows and the same HTTP answers (Synapse's admin API,
//! from fixtures: the runtime's `HttpBackend::Fixtures`) and must make the same pushes (same
//! destination, key and body bytes) and the same requests, batch by batch.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Value, json};
use streamhost_integration_tests::plugins::PLUGINS_DIR;
use streamhost_plugin_runtime::{
    Batch, Destination, FixtureResponse, Grant, HttpBackend, HttpFixtures, KvStore, Manifest,
    PluginFiles, PluginServices, PluginVersion, Row, Runtime, RuntimeConfig,
};

const SYNAPSE: &str = "http://synapse.test:8008";

/// The implementations, the Rust reference first.
const IMPLEMENTATIONS: &[&str] = &["matrix-pusher", "matrix-pusher-py"];

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn member(user: &str, membership: &str, name: Option<&str>) -> Value {
    let mut content = json!({"membership": membership});
    if let Some(name) = name {
        content["displayname"] = json!(name);
    }
    json!({"type": "m.room.member", "state_key": user, "sender": user, "content": content})
}

/// The events of the script, each with the room state Synapse's admin API answers with.
fn events() -> Vec<(Value, Vec<Value>)> {
    let trio = vec![
        member("@alice:x", "join", Some("Alice Liddell")),
        member("@bob:x", "join", Some("Bobby Tables")),
        member("@carol:x", "join", Some("Carol Danvers")),
        json!({"type": "m.room.name", "state_key": "", "content": {"name": "Trio ☕"}}),
    ];
    let pair = vec![
        member("@alice:x", "join", Some("Alice Liddell")),
        member("@dan:x", "join", None),
        member("@carol:x", "invite", Some("Carol Danvers")),
    ];
    let msg = |id: &str, room: &str, sender: &str, content: Value| {
        json!({"event_id": id, "room_id": room, "type": "m.room.message", "sender": sender,
               "origin_server_ts": 1, "content": content})
    };
    vec![
        (
            msg(
                "$1",
                "!trio:x",
                "@alice:x",
                json!({"msgtype": "m.text", "body": "morning"}),
            ),
            trio.clone(),
        ),
        (
            msg(
                "$2",
                "!trio:x",
                "@alice:x",
                json!({"msgtype": "m.text", "body": "@bob:x: look",
             "m.mentions": {"user_ids": ["@bob:x"]}}),
            ),
            trio.clone(),
        ),
        (
            msg(
                "$3",
                "!trio:x",
                "@bob:x",
                json!({"msgtype": "m.text", "body": "CAROL DANVERS, lunch? \"ok\"\n\u{1F600}"}),
            ),
            trio.clone(),
        ),
        (
            msg(
                "$4",
                "!trio:x",
                "@carol:x",
                json!({"msgtype": "m.text", "body": "ask alice"}),
            ),
            trio.clone(),
        ),
        (
            msg(
                "$5",
                "!trio:x",
                "@carol:x",
                json!({"msgtype": "m.notice", "body": "alice"}),
            ),
            trio.clone(),
        ),
        (
            msg(
                "$6",
                "!trio:x",
                "@carol:x",
                json!({"msgtype": "m.text", "body": "Bobby Tables", "m.mentions": {}}),
            ),
            trio.clone(),
        ),
        (
            msg(
                "$7",
                "!pair:x",
                "@alice:x",
                json!({"msgtype": "m.text", "body": "hi", "n": [1, 2.5, null, true]}),
            ),
            pair.clone(),
        ),
        (
            msg(
                "$8",
                "!pair:x",
                "@dan:x",
                json!({"msgtype": "m.text", "body": "* hi",
             "m.relates_to": {"rel_type": "m.replace", "event_id": "$7"}}),
            ),
            pair.clone(),
        ),
        (
            json!({"event_id": "$9", "room_id": "!pair:x", "type": "m.room.member", "sender": "@alice:x",
                "state_key": "@carol:x", "content": {"membership": "invite", "displayname": "Carol Danvers"}}),
            pair.clone(),
        ),
    ]
}

fn row_of(token: i64, event: &Value) -> Row {
    let membership = event["content"]["membership"].as_str();
    let data = json!({"kind": "ev", "event_id": event["event_id"], "room_id": event["room_id"],
        "type": event["type"], "state_key": event.get("state_key"), "redacts": null,
        "relates_to": null, "membership": membership.filter(|_| event["type"] == "m.room.member"),
        "rejected": false, "outlier": false});
    Row {
        token,
        data: data.to_string(),
    }
}

fn fixtures() -> Vec<FixtureResponse> {
    let mut fixtures: Vec<FixtureResponse> = events()
        .into_iter()
        .map(|(event, state)| FixtureResponse {
            method: Some("GET".into()),
            url: format!(
                "{SYNAPSE}/_synapse/admin/v1/rooms/{}/context/{}?limit=0",
                encode(event["room_id"].as_str().unwrap()),
                encode(event["event_id"].as_str().unwrap())
            ),
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: json!({"event": event, "state": state, "events_before": [], "events_after": []})
                .to_string(),
        })
        .collect();
    // An event Synapse does not show: skipped by both.
    fixtures.push(FixtureResponse {
        method: None,
        url: format!(
            "{SYNAPSE}/_synapse/admin/v1/rooms/{}/context/{}?limit=0",
            encode("!trio:x"),
            encode("$gone")
        ),
        status: 404,
        headers: Vec::new(),
        body: r#"{"errcode":"M_NOT_FOUND"}"#.into(),
    });
    fixtures
}

fn config() -> toml::Table {
    let users: Vec<Value> = ["@alice:x", "@bob:x", "@carol:x", "@dan:x"]
        .iter()
        .map(|u| {
            json!({"user_id": u, "pushers": [
            {"app_id": "app", "pushkey": format!("{u}-phone"), "pushkey_ts": 7,
             "data": {"url": "http://gw.test/_matrix/push/v1/notify", "format": "full", "x": "y"}},
            {"app_id": "app", "pushkey": format!("{u}-tablet")}]})
        })
        .collect();
    let config = json!({"synapse": SYNAPSE, "gateway": "matrix-gateway", "users": users});
    toml::Table::try_from(config).unwrap()
}

/// Runs every batch on a fresh instance: per batch, the pushes and the requests made.
fn run(name: &str) -> Vec<String> {
    let fixtures = Arc::new(HttpFixtures::new(fixtures()));
    let destinations = [
        (
            "synapse",
            SYNAPSE,
            vec![("Authorization".to_string(), "Bearer secret".to_string())],
        ),
        (
            "matrix-gateway",
            "http://gw.test/_matrix/push/v1/notify",
            Vec::new(),
        ),
    ]
    .into_iter()
    .map(|(n, url, headers)| {
        (
            n.to_string(),
            Destination {
                url: url.into(),
                headers,
                max_body_bytes: 1 << 20,
            },
        )
    })
    .collect();
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(PathBuf::from(concat!(env!("OUT_DIR"), "/compiled"))),
        destinations: Arc::new(destinations),
        http_backend: HttpBackend::Fixtures(fixtures.clone()),
        ..RuntimeConfig::default()
    })
    .unwrap();
    let files = PluginFiles::in_dir(&std::path::Path::new(PLUGINS_DIR).join(name)).unwrap();
    let manifest = Manifest::load(&files.manifest).unwrap();
    let mut grant = Grant::everything_asked(&manifest).unwrap();
    grant.config = Some(config());
    let version = PluginVersion::load(&runtime, &files, &grant)
        .unwrap_or_else(|e| panic!("load {name}: {e}"));
    let services = PluginServices::new(version.name(), KvStore::default(), 1_000, None);
    let mut instance = version.instantiate(services).unwrap();
    instance.init(&[]).unwrap();
    let mut rows: Vec<Row> = events()
        .iter()
        .zip(1..)
        .map(|((e, _), t)| row_of(t, e))
        .collect();
    rows.insert(
        3,
        Row {
            token: 100,
            data: row_of(
                0,
                &json!({"event_id": "$gone", "room_id": "!trio:x",
        "type": "m.room.message"}),
            )
            .data,
        },
    );
    rows.push(Row { token: 101, data: r#"{"kind":"state","room_id":"!trio:x","type":"m.room.name","state_key":"","event_id":"$n"}"#.into() });
    rows.push(Row {
        token: 102,
        data: r#"["ev",["$x","!trio:x","m.room.message",null,null,null,null,0,0]]"#.into(),
    });
    let mut lines = Vec::new();
    for (n, chunk) in rows.chunks(4).enumerate() {
        let batch = Batch {
            stream: "events".into(),
            instance: "master".into(),
            prev_token: 0,
            token: chunk.last().unwrap().token,
            rows: chunk.to_vec(),
        };
        let effects = instance
            .on_batch(&batch)
            .unwrap_or_else(|f| panic!("{name} failed batch {n}: {f:?}"));
        lines.push(format!(
            "batch {n}: {} effects, {} pushes",
            effects.effects.len(),
            effects.pushes.len()
        ));
        for push in &effects.pushes {
            lines.push(format!(
                "push {} {} {}",
                push.destination,
                push.key,
                String::from_utf8_lossy(&push.body)
            ));
        }
        for seen in fixtures.take_seen() {
            lines.push(format!(
                "request {} {} {:?} {:?}",
                seen.method, seen.url, seen.status, seen.refused
            ));
        }
    }
    lines
}

#[test]
fn matrix_pusher_languages_push_alike() {
    let reference = run(IMPLEMENTATIONS[0]);
    let pushes = reference.iter().filter(|l| l.starts_with("push ")).count();
    // $2 bob x2, $3 carol x2, $4 alice x2, $7 dan x2, $9 carol x2.
    assert_eq!(pushes, 10, "{reference:#?}");
    assert!(
        reference
            .iter()
            .any(|l| l.starts_with("push matrix-gateway $9/@carol:x/@carol:x-phone "))
    );
    for name in &IMPLEMENTATIONS[1..] {
        let got = run(name);
        let at = reference.iter().zip(&got).position(|(a, b)| a != b);
        assert!(
            got == reference,
            "{name} departs from {} at line {at:?}:\n reference: {:#?}\n {name}: {:#?}",
            IMPLEMENTATIONS[0],
            at.map(|i| &reference[i..]),
            at.map(|i| &got[i..])
        );
    }
}
