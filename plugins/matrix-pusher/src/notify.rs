//! Push Gateway API `notify` bodies and the plugin's configuration (pure, no host calls).
//!
//! The body follows the Matrix Push Gateway API (`POST /_matrix/push/v1/notify`), as Synapse's
//! HTTP pusher fills it: one request per pusher (device), `prio` `high` when a sound or a
//! highlight is asked for, `counts` without `unread` (the plugin does not keep Synapse's unread
//! counts), `devices[0].data` the pusher's data without `url` and `format`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::rules::{Decision, str_at};

/// The plugin's configuration (`[reader.plugins.config.matrix-pusher]`, as JSON).
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// Synapse's base URL (`http://127.0.0.1:8008`): a granted `http` origin or destination.
    pub synapse: String,
    /// The Synapse API to read events through: `admin` (default) or `client`.
    #[serde(default)]
    pub api: crate::synapse::Api,
    /// The push destination to send `notify` requests to (a granted `push` destination).
    pub gateway: String,
    /// Also evaluate `.m.rule.message` (every message notifies); default off.
    #[serde(default)]
    pub messages: bool,
    /// The local users to push for.
    pub users: Vec<User>,
}

/// A local user and their pushers.
#[derive(Debug, Clone, Deserialize)]
pub struct User {
    /// The Matrix user id, `@bob:example.org`.
    pub user_id: String,
    /// The user's pushers (one `notify` request each).
    pub pushers: Vec<Pusher>,
}

/// One pusher (device) of a user, as in Synapse's `GET /pushers`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Pusher {
    /// The application id, e.g. `com.example.app.ios`.
    pub app_id: String,
    /// The device's push key.
    pub pushkey: String,
    /// When the push key was last updated (ms since the epoch).
    #[serde(default)]
    pub pushkey_ts: i64,
    /// The pusher's data; `url` and `format` are not sent to the gateway.
    #[serde(default)]
    pub data: Map<String, Value>,
}

/// What the notification says about the room beyond the event.
#[derive(Debug, Clone, Default)]
pub struct RoomContext {
    /// The sender's display name in the room.
    pub sender_display_name: Option<String>,
    /// The room's `m.room.name`.
    pub room_name: Option<String>,
}

/// The idempotency key of one push: `<event_id>/<user>/<pushkey>`.
pub fn push_key(event_id: &str, user: &str, pushkey: &str) -> String {
    format!("{event_id}/{user}/{pushkey}")
}

/// The `notify` request body for one user's pusher.
pub fn notify_body(
    event: &Value,
    user: &str,
    pusher: &Pusher,
    decision: &Decision,
    room: &RoomContext,
) -> Value {
    let mut tweaks = Map::new();
    // Every rule here that sets a sound also sets `highlight`, `false` when it does not
    // highlight (`.m.rule.invite_for_me`, `.m.rule.room_one_to_one`), as Synapse sends them.
    if decision.sound {
        tweaks.insert("sound".into(), json!("default"));
        tweaks.insert("highlight".into(), json!(decision.highlight));
    } else if decision.highlight {
        tweaks.insert("highlight".into(), json!(true));
    }
    let high = decision.sound || decision.highlight;
    let mut data = pusher.data.clone();
    data.remove("url");
    data.remove("format");
    let mut n = Map::new();
    n.insert("id".into(), event["event_id"].clone());
    n.insert("event_id".into(), event["event_id"].clone());
    n.insert("room_id".into(), event["room_id"].clone());
    n.insert("type".into(), event["type"].clone());
    n.insert("sender".into(), event["sender"].clone());
    n.insert("prio".into(), json!(if high { "high" } else { "low" }));
    n.insert("counts".into(), json!({}));
    n.insert(
        "devices".into(),
        json!([{
            "app_id": pusher.app_id,
            "pushkey": pusher.pushkey,
            "pushkey_ts": pusher.pushkey_ts,
            "data": data,
            "tweaks": tweaks,
        }]),
    );
    if let Some(content) = event.get("content") {
        n.insert("content".into(), content.clone());
    }
    if str_at(event, &["type"]) == Some("m.room.member") {
        if let Some(membership) = str_at(event, &["content", "membership"]) {
            n.insert("membership".into(), json!(membership));
        }
        n.insert(
            "user_is_target".into(),
            json!(str_at(event, &["state_key"]) == Some(user)),
        );
    }
    if let Some(name) = &room.sender_display_name {
        n.insert("sender_display_name".into(), json!(name));
    }
    if let Some(name) = &room.room_name {
        n.insert("room_name".into(), json!(name));
    }
    json!({ "notification": n })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_follows_the_push_gateway_api() {
        let event = json!({"event_id": "$e", "room_id": "!r:x", "type": "m.room.message",
                           "sender": "@alice:x", "content": {"msgtype": "m.text", "body": "hi"}});
        let pusher = Pusher {
            app_id: "app".into(),
            pushkey: "key1".into(),
            pushkey_ts: 12,
            data: serde_json::from_value(
                json!({"url": "http://gw/_matrix/push/v1/notify", "x": 1}),
            )
            .expect("map"),
        };
        let decision = Decision {
            rule: ".m.rule.room_one_to_one",
            sound: true,
            highlight: false,
        };
        let room = RoomContext {
            sender_display_name: Some("Alice".into()),
            room_name: None,
        };
        let body = notify_body(&event, "@bob:x", &pusher, &decision, &room);
        assert_eq!(
            body,
            json!({"notification": {
                "id": "$e", "event_id": "$e", "room_id": "!r:x", "type": "m.room.message",
                "sender": "@alice:x", "sender_display_name": "Alice", "prio": "high",
                "content": {"msgtype": "m.text", "body": "hi"}, "counts": {},
                "devices": [{"app_id": "app", "pushkey": "key1", "pushkey_ts": 12,
                             "data": {"x": 1}, "tweaks": {"sound": "default", "highlight": false}}]}})
        );
        assert_eq!(push_key("$e", "@bob:x", "key1"), "$e/@bob:x/key1");
    }

    #[test]
    fn an_invite_says_whom_it_targets() {
        let event = json!({"event_id": "$i", "room_id": "!r:x", "type": "m.room.member",
                           "sender": "@alice:x", "state_key": "@dan:x",
                           "content": {"membership": "invite"}});
        let pusher = Pusher {
            app_id: "a".into(),
            pushkey: "k".into(),
            pushkey_ts: 0,
            data: Map::new(),
        };
        let d = Decision {
            rule: ".m.rule.invite_for_me",
            sound: true,
            highlight: false,
        };
        let body = notify_body(&event, "@dan:x", &pusher, &d, &RoomContext::default());
        assert_eq!(body["notification"]["user_is_target"], json!(true));
        assert_eq!(body["notification"]["membership"], json!("invite"));
    }
}
