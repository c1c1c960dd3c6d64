//! `room-timeline`: keeps the last 50 messages of every room in the key-value store and
//! answers `GET /v1/query/room-timeline/timeline?room=…` with them.
//!
//! A `messages` row is a JSON object such as
//! `{"room": "!r:x", "sender": "@a:x", "body": "hi", "mentions": ["@b:x"]}`. Rows that do not
//! parse as JSON (by `Row::json`'s rules) or are not objects with a string `room` are ignored.
//! The timeline of room `R` is stored under the key `room:R` as a JSON array of the rows' texts,
//! oldest first, each exactly as the writer stored it; the query answers the texts joined into
//! one JSON array. Every batch evicts `room:R` from the cache `timeline` once for each room it
//! touched. The Python and JavaScript versions (`plugins/python/room-timeline`,
//! `plugins/javascript/room-timeline`) do exactly the same, checked by the conformance suite.

use serde_json::Value;
use streamhost_guest_sdk::{
    Batch, Cursor, Description, Effect, Plugin, PluginError, export_plugin, kv, required_arg,
};

/// How many messages a room's timeline keeps.
const KEEP: usize = 50;

/// The plugin; all its state is in the key-value store.
struct RoomTimeline;

fn key(room: &str) -> String {
    format!("room:{room}")
}

/// The room of a message row, or `None` for a row this plugin ignores.
fn room_of(data: &str) -> Option<String> {
    match serde_json::from_str::<Value>(data).ok()? {
        Value::Object(mut message) => match message.remove("room")? {
            Value::String(room) => Some(room),
            _ => None,
        },
        _ => None,
    }
}

impl Plugin for RoomTimeline {
    fn describe() -> Description {
        Description::new("room-timeline", env!("CARGO_PKG_VERSION"))
            .stream("messages")
            .query("timeline", "timeline", "room:{room}")
    }

    fn init(_config: &str, _resume_after: &[Cursor]) -> Result<Self, PluginError> {
        Ok(RoomTimeline)
    }

    fn on_batch(&mut self, batch: Batch) -> Result<Vec<Effect>, PluginError> {
        // The batch's new rows per room, rooms in order of first appearance (a batch touches
        // few rooms, so a linear search beats a map).
        let mut rooms: Vec<(String, Vec<String>)> = Vec::new();
        for row in batch.rows {
            let Some(room) = room_of(&row.data) else {
                continue;
            };
            match rooms.iter_mut().find(|(r, _)| *r == room) {
                Some((_, texts)) => texts.push(row.data),
                None => rooms.push((room, vec![row.data])),
            }
        }

        let mut effects = Vec::with_capacity(rooms.len());
        for (room, new_rows) in rooms {
            let key = key(&room);
            let mut timeline: Vec<String> = kv::get_json(&key)?.unwrap_or_default();
            timeline.extend(new_rows);
            if timeline.len() > KEEP {
                timeline.drain(..timeline.len() - KEEP);
            }
            kv::set_json(&key, &timeline)?;
            effects.push(Effect::invalidate("timeline", key));
        }
        Ok(effects)
    }

    fn query(&mut self, name: &str, args: &[(String, String)]) -> Result<String, PluginError> {
        match name {
            "timeline" => {
                let room = required_arg(args, "room")?;
                let timeline: Vec<String> = kv::get_json(&key(room))?.unwrap_or_default();
                Ok(format!("[{}]", timeline.join(",")))
            }
            _ => Err(PluginError::fatal(format!("unknown query `{name}`"))),
        }
    }
}

export_plugin!(RoomTimeline);
