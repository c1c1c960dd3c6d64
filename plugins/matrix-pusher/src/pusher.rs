//! One `events` row in, the pushes it causes out: the plugin's logic without the host.

use serde::Deserialize;

use crate::notify::{Config, notify_body, push_key};
use crate::rules::{candidates, evaluate};
use crate::synapse::{FetchError, Http, fetch};

/// The fields of an `events` row this plugin reads (`docs/synapse.md`).
#[derive(Debug, Deserialize)]
pub struct EventRow {
    /// `ev` for a new event (`state`, `state-all` are current-state changes).
    pub kind: String,
    /// The event's id.
    #[serde(default)]
    pub event_id: Option<String>,
    /// The room.
    #[serde(default)]
    pub room_id: Option<String>,
    /// The event type.
    #[serde(default, rename = "type")]
    pub event_type: Option<String>,
    /// The state key (state events only).
    #[serde(default)]
    pub state_key: Option<String>,
    /// The membership of an `m.room.member` event.
    #[serde(default)]
    pub membership: Option<String>,
    /// Rejected by the authorization rules.
    #[serde(default)]
    pub rejected: bool,
    /// An outlier (not part of the room's timeline here).
    #[serde(default)]
    pub outlier: bool,
}

/// One push to make: (key, body).
pub type Out = (String, Vec<u8>);

/// Whether a row may notify anyone under the rules evaluated (so it is worth fetching): a new,
/// accepted, non-outlier event that is a message-like event or an invite.
pub fn worth_fetching(row: &EventRow) -> bool {
    if row.kind != "ev" || row.rejected || row.outlier || row.event_id.is_none() {
        return false;
    }
    match row.event_type.as_deref() {
        Some("m.room.member") => row.membership.as_deref() == Some("invite"),
        Some("m.reaction") => false,
        // Other state events (names, topics, power levels) notify no one here.
        _ => row.state_key.is_none(),
    }
}

/// The pushes of one row's data (a JSON object; anything else is ignored).
pub fn process(config: &Config, http: &mut dyn Http, data: &str) -> Result<Vec<Out>, FetchError> {
    if !data.trim_start().starts_with('{') {
        return Ok(Vec::new());
    }
    let Ok(row) = serde_json::from_str::<EventRow>(data) else {
        return Ok(Vec::new());
    };
    if !worth_fetching(&row) {
        return Ok(Vec::new());
    }
    let (Some(event_id), Some(room_id)) = (&row.event_id, &row.room_id) else {
        return Ok(Vec::new());
    };
    let fetched = match fetch(http, config.api, &config.synapse, room_id, event_id) {
        Ok(f) => f,
        Err(FetchError::Missing(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let context = fetched.context();
    let users = candidates(&fetched.event, &fetched.room);
    let mut out = Vec::new();
    for user in &config.users {
        if !users.contains(&user.user_id) {
            continue;
        }
        let Some(decision) = evaluate(
            &fetched.event,
            &user.user_id,
            &fetched.room,
            config.messages,
        ) else {
            continue;
        };
        for pusher in &user.pushers {
            let body = notify_body(&fetched.event, &user.user_id, pusher, &decision, &context);
            out.push((
                push_key(event_id, &user.user_id, &pusher.pushkey),
                body.to_string().into_bytes(),
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use std::collections::BTreeMap;

    /// Answers GETs from a table; unknown URLs are 404.
    struct Table(BTreeMap<String, (u16, Value)>, Vec<String>);

    impl Http for Table {
        fn get(&mut self, url: &str) -> Result<(u16, Vec<u8>), String> {
            self.1.push(url.to_string());
            Ok(match self.0.get(url) {
                Some((s, v)) => (*s, v.to_string().into_bytes()),
                None => (404, b"{}".to_vec()),
            })
        }
    }

    fn config() -> Config {
        serde_json::from_value(json!({
            "synapse": "http://syn:8008/", "gateway": "gw",
            "users": [
                {"user_id": "@bob:x", "pushers": [
                    {"app_id": "a", "pushkey": "b1", "pushkey_ts": 5, "data": {"url": "http://gw"}},
                    {"app_id": "a", "pushkey": "b2"}]},
                {"user_id": "@alice:x", "pushers": [{"app_id": "a", "pushkey": "a1"}]}
            ]
        }))
        .expect("config")
    }

    fn member(user: &str, membership: &str, name: &str) -> Value {
        json!({"type": "m.room.member", "state_key": user,
               "content": {"membership": membership, "displayname": name}})
    }

    fn context_url(room: &str, event: &str) -> String {
        format!(
            "http://syn:8008/_synapse/admin/v1/rooms/{}/context/{}?limit=0",
            crate::synapse::encode(room),
            crate::synapse::encode(event)
        )
    }

    #[test]
    fn a_one_to_one_message_pushes_to_each_pusher_of_the_other_member() {
        let event = json!({"event_id": "$m/1", "room_id": "!r:x", "type": "m.room.message",
                           "sender": "@alice:x", "content": {"msgtype": "m.text", "body": "hi"}});
        let state = json!([member("@alice:x", "join", "Alice"), member("@bob:x", "join", "Bob"),
                           {"type": "m.room.name", "state_key": "", "content": {"name": "Tea"}}]);
        let mut http = Table(
            BTreeMap::from([(
                context_url("!r:x", "$m/1"),
                (200, json!({"event": event, "state": state})),
            )]),
            Vec::new(),
        );
        let row = r#"{"kind":"ev","event_id":"$m/1","room_id":"!r:x","type":"m.room.message","state_key":null,"redacts":null,"relates_to":null,"membership":null,"rejected":false,"outlier":false}"#;
        let out = process(&config(), &mut http, row).expect("process");
        assert_eq!(http.1, [context_url("!r:x", "$m/1")]);
        assert!(http.1[0].contains("%24m%2F1") && http.1[0].contains("%21r%3Ax"));
        let keys: Vec<&str> = out.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["$m/1/@bob:x/b1", "$m/1/@bob:x/b2"]);
        let body: Value = serde_json::from_slice(&out[0].1).expect("json");
        let n = &body["notification"];
        assert_eq!(n["room_name"], "Tea");
        assert_eq!(n["sender_display_name"], "Alice");
        assert_eq!(n["devices"][0]["pushkey_ts"], 5);
        assert_eq!(n["devices"][0]["data"], json!({}));
        assert_eq!(n["prio"], "high");
    }

    #[test]
    fn rows_that_cannot_notify_are_not_fetched() {
        let mut http = Table(BTreeMap::new(), Vec::new());
        for row in [
            r#"{"kind":"state","room_id":"!r:x","type":"m.room.name","state_key":"","event_id":"$n"}"#,
            r#"{"kind":"ev","event_id":"$j","room_id":"!r:x","type":"m.room.member","state_key":"@a:x","membership":"join","rejected":false,"outlier":false}"#,
            r#"{"kind":"ev","event_id":"$t","room_id":"!r:x","type":"m.room.topic","state_key":"","rejected":false,"outlier":false}"#,
            r#"{"kind":"ev","event_id":"$x","room_id":"!r:x","type":"m.room.message","rejected":true,"outlier":false}"#,
            r#"["ev",["$lCkk","!NxFe","m.room.message",null,null,null,null,0,0]]"#,
        ] {
            assert_eq!(
                process(&config(), &mut http, row).expect("ok"),
                Vec::<Out>::new()
            );
        }
        assert!(http.1.is_empty(), "{:?}", http.1);
    }

    #[test]
    fn a_missing_event_is_skipped_and_a_failing_synapse_retries() {
        let row = r#"{"kind":"ev","event_id":"$gone","room_id":"!r:x","type":"m.room.message","rejected":false,"outlier":false}"#;
        let mut http = Table(BTreeMap::new(), Vec::new());
        assert_eq!(process(&config(), &mut http, row), Ok(Vec::new()));
        let mut http = Table(
            BTreeMap::from([(context_url("!r:x", "$gone"), (502, json!({})))]),
            Vec::new(),
        );
        assert!(matches!(
            process(&config(), &mut http, row),
            Err(FetchError::Retry(_))
        ));
    }
}
