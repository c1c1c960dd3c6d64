//! `matrix-authorizer`: who may read which Matrix room, from the room memberships of the
//! `events` stream; the reader asks it through its `authorizer` export (`[reader.auth]
//! authorizer`, `docs/security.md`).
//!
//! - For each `events` row of kind `ev`, type `m.room.member`, with a `state_key` and a
//!   `membership`, not rejected (the row objects of `docs/synapse.md`), it records in its
//!   key-value store whether `state_key` is joined to `room_id` (a `join` sets the key, any
//!   other membership removes it). The store commits with the plugin's cursor, so the state
//!   survives restarts and reloads and is never ahead of or behind the rows applied.
//! - `authorize(subject, subscribe(topic))`: `room:<room>` and `membership:<room>` while
//!   `subject` is joined to `<room>`; `user:<subject>` always; anything else never.
//! - `authorize(subject, query(room-timeline, <any>, args))`: while `subject` is joined to
//!   the `room` argument; any other plugin's queries never.

/// The bindings `wit-bindgen` generates for the `authorizing-reader` world.
#[allow(missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        world: "authorizing-reader",
        path: "../../wit",
    });
}

use bindings::exports::streamhost::plugin::authorizer::{self, Access, QueryAccess};
use bindings::exports::streamhost::plugin::handler;
use bindings::streamhost::plugin::fields::FieldValue;
use bindings::streamhost::plugin::kv;
use bindings::streamhost::plugin::types::{
    Batch, Cursor, Description, Effect, ErrorKind, PluginError,
};
use serde::Deserialize;

/// The fields of an `events` row this plugin reads.
#[derive(Deserialize)]
struct EventRow {
    kind: String,
    room_id: String,
    #[serde(default, rename = "type")]
    event_type: Option<String>,
    #[serde(default)]
    state_key: Option<String>,
    #[serde(default)]
    membership: Option<String>,
    #[serde(default)]
    rejected: bool,
}

/// The key-value key recording that `user` is joined to `room` (neither holds a newline).
fn member_key(room: &str, user: &str) -> String {
    format!("joined\n{room}\n{user}")
}

/// Whether `user` is joined to `room`.
fn joined(room: &str, user: &str) -> bool {
    !room.contains('\n') && !user.contains('\n') && kv::get(&member_key(room, user)).is_some()
}

fn error(kind: ErrorKind, message: impl Into<String>) -> PluginError {
    PluginError {
        kind,
        message: message.into(),
    }
}

/// The membership change a row makes, if it is one: (room, user, joined).
fn membership_change(data: &str) -> Option<(String, String, bool)> {
    // A struct also deserializes from a JSON array: insist on an object.
    if !data.trim_start().starts_with('{') {
        return None;
    }
    let event: EventRow = serde_json::from_str(data).ok()?;
    if event.kind != "ev" || event.event_type.as_deref() != Some("m.room.member") || event.rejected
    {
        return None;
    }
    let user = event.state_key?;
    let membership = event.membership?;
    if event.room_id.contains('\n') || user.contains('\n') {
        return None;
    }
    Some((event.room_id, user, membership == "join"))
}

/// The plugin (its state is in the key-value store).
struct MatrixAuthorizer;

impl handler::Guest for MatrixAuthorizer {
    fn describe() -> Description {
        Description {
            name: "matrix-authorizer".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            streams: vec!["events".into()],
            queries: Vec::new(),
            snapshots: false,
        }
    }

    fn init(_config: String, _resume_after: Vec<Cursor>) -> Result<(), PluginError> {
        Ok(())
    }

    fn wanted_fields() -> Vec<String> {
        Vec::new()
    }

    fn on_batch(batch: Batch, _fields: Vec<FieldValue>) -> Result<Vec<Effect>, PluginError> {
        for row in &batch.rows {
            let Some((room, user, joined)) = membership_change(&row.data) else {
                continue;
            };
            let key = member_key(&room, &user);
            if joined {
                kv::set(&key, b"1").map_err(|e| {
                    error(
                        ErrorKind::Fatal,
                        format!("recording {user} in {room}: {e:?}"),
                    )
                })?;
            } else {
                kv::delete(&key);
            }
        }
        Ok(Vec::new())
    }

    fn query(name: String, _args: Vec<(String, String)>) -> Result<String, PluginError> {
        Err(error(
            ErrorKind::Skip,
            format!("matrix-authorizer answers no query {name}"),
        ))
    }

    fn snapshot() -> Result<Vec<u8>, PluginError> {
        Err(error(ErrorKind::Fatal, "no snapshots: the state is in kv"))
    }

    fn restore(
        _config: String,
        _state: Vec<u8>,
        _resume_after: Vec<Cursor>,
    ) -> Result<(), PluginError> {
        Err(error(ErrorKind::Fatal, "no snapshots: the state is in kv"))
    }
}

impl authorizer::Guest for MatrixAuthorizer {
    fn authorize(subject: String, access: Access) -> Result<bool, PluginError> {
        Ok(match access {
            Access::Subscribe(topic) => {
                match topic
                    .strip_prefix("room:")
                    .or_else(|| topic.strip_prefix("membership:"))
                {
                    Some(room) => joined(room, &subject),
                    None => topic.strip_prefix("user:") == Some(subject.as_str()),
                }
            }
            Access::Query(QueryAccess { plugin, args, .. }) => {
                let room = args.iter().find(|(k, _)| k == "room").map(|(_, v)| v);
                plugin == "room-timeline" && room.is_some_and(|room| joined(room, &subject))
            }
        })
    }
}

bindings::export!(MatrixAuthorizer with_types_in bindings);
