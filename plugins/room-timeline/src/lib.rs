//! `room-timeline`: keeps the last 50 messages of every room in the key-value store and
//! answers `GET /v1/query/room-timeline/timeline?room=…` with them.
//!
//! A `messages` row is a JSON object such as
//! `{"room": "!r:x", "sender": "@a:x", "body": "hi", "mentions": ["@b:x"]}`. Rows that are not
//! JSON objects with a string `room` are ignored. The timeline of room `R` is stored under the
//! key `room:R` as a JSON array of the rows, oldest first, each exactly as the writer stored
//! it; every batch evicts `room:R` from the cache `timeline` once for each room it touched.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;
use streamhost_guest_sdk::{
    Batch, Cursor, Description, Effect, Plugin, PluginError, export_plugin, kv, required_arg,
};

/// How many messages a room's timeline keeps.
const KEEP: usize = 50;

/// The fields of a message this plugin reads.
#[derive(Deserialize)]
struct Message {
    room: String,
}

/// The plugin; all its state is in the key-value store.
struct RoomTimeline;

fn key(room: &str) -> String {
    format!("room:{room}")
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
        // The batch's new rows per room, rooms in order of first appearance.
        let mut rooms: Vec<(String, Vec<&RawValue>)> = Vec::new();
        let mut index: BTreeMap<String, usize> = BTreeMap::new();
        for row in &batch.rows {
            // A struct also deserializes from a JSON array: insist on an object.
            if !row.data.trim_start().starts_with('{') {
                continue;
            }
            let Ok(message) = serde_json::from_str::<Message>(&row.data) else {
                continue;
            };
            let Ok(raw) = serde_json::from_str::<&RawValue>(&row.data) else {
                continue;
            };
            let i = *index.entry(message.room.clone()).or_insert_with(|| {
                rooms.push((message.room, Vec::new()));
                rooms.len() - 1
            });
            rooms[i].1.push(raw);
        }

        let mut effects = Vec::with_capacity(rooms.len());
        for (room, new_rows) in rooms {
            let key = key(&room);
            let mut timeline: Vec<Box<RawValue>> = kv::get_json(&key)?.unwrap_or_default();
            timeline.extend(new_rows.into_iter().map(RawValue::to_owned));
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
                match kv::get(&key(room)) {
                    None => Ok("[]".to_owned()),
                    Some(bytes) => String::from_utf8(bytes).map_err(|_| {
                        PluginError::fatal(format!("timeline of {room} is not UTF-8"))
                    }),
                }
            }
            _ => Err(PluginError::fatal(format!("unknown query `{name}`"))),
        }
    }
}

export_plugin!(RoomTimeline);
