//! `matrix-authorizer`: who may read which Matrix room, from the room memberships of the
//! `events` stream; the reader asks it through its `authorizer` export (`[reader.auth]
//! authorizer`, `docs/security.md`).
//!
//! - For each `events` row of kind `ev`, type `m.room.member`, with a `state_key` and a
//!   `membership`, not rejected (the row objects of `docs/synapse.md`), it records in its
//!   key-value store whether `state_key` is joined to `room_id` (a `join` sets the key, any
//!   other membership removes it). It reads those fields through the host's row fields
//!   (`wanted-fields`, [`FIELDS`]) and parses no JSON; of a key a row holds twice, the last
//!   counts. The store commits with the plugin's cursor, so the state survives restarts and
//!   reloads and is never ahead of or behind the rows applied.
//! - `authorize(subject, subscribe(topic))`: `room:<room>` and `membership:<room>` while
//!   `subject` is joined to `<room>`; `user:<subject>` always; anything else never.
//! - `authorize(subject, query(room-timeline, <any>, args))`: while `subject` is joined to
//!   the `room` argument; any other plugin's queries never.

/// The bindings `wit-bindgen` generates for the `authorizing-reader` world of
/// `streamhost:plugin@0.3.0` (`wit/previous/0.3.0`). This plugin stays on 0.3.0 on purpose:
/// it is the tests' real component of that version, whose loading, batches and `authorize`
/// calls a host speaking 0.4.0 must keep serving (`docs/plugins.md`, "Versioning the
/// interface").
#[allow(missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        world: "authorizing-reader",
        path: "../../wit/previous/0.3.0",
    });
}

use bindings::exports::streamhost::plugin::authorizer::{self, Access, QueryAccess};
use bindings::exports::streamhost::plugin::handler;
use bindings::streamhost::plugin::fields::FieldValue;
use bindings::streamhost::plugin::kv;
use bindings::streamhost::plugin::types::{
    Batch, Cursor, Description, Effect, ErrorKind, PluginError,
};

/// The fields of an `events` row this plugin reads, extracted by the host (`wanted-fields`)
/// in this order: it parses no JSON.
const FIELDS: [&str; 6] = [
    "kind",
    "room_id",
    "type",
    "state_key",
    "membership",
    "rejected",
];

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

/// The string a field holds, if it is one.
fn text(value: &FieldValue) -> Option<&str> {
    match value {
        FieldValue::Text(text) => Some(text),
        _ => None,
    }
}

/// The membership change a row makes, if it is one: (room, user, joined). `fields` are the
/// row's values of [`FIELDS`]: a row that is not a JSON object has them all absent.
fn membership_change(fields: &[FieldValue]) -> Option<(&str, &str, bool)> {
    let [kind, room, event_type, state_key, membership, rejected] = fields else {
        return None;
    };
    let not_rejected = matches!(rejected, FieldValue::Absent | FieldValue::Boolean(false));
    if text(kind)? != "ev" || text(event_type)? != "m.room.member" || !not_rejected {
        return None;
    }
    let (room, user) = (text(room)?, text(state_key)?);
    if room.contains('\n') || user.contains('\n') {
        return None;
    }
    Some((room, user, text(membership)? == "join"))
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
        FIELDS.iter().map(|name| name.to_string()).collect()
    }

    fn on_batch(batch: Batch, fields: Vec<FieldValue>) -> Result<Vec<Effect>, PluginError> {
        for (_, row_fields) in batch.rows.iter().zip(fields.chunks(FIELDS.len())) {
            let Some((room, user, joined)) = membership_change(row_fields) else {
                continue;
            };
            let key = member_key(room, user);
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
