//! `room-timeline`: keeps the last 50 messages of every room in the key-value store and
//! answers `GET /v1/query/room-timeline/timeline?room=…` with them.
//!
//! A `messages` row is a JSON object such as
//! `{"room": "!r:x", "sender": "@a:x", "body": "hi", "mentions": ["@b:x"]}`. The plugin asks the
//! host for the field `room` (`Plugin::FIELDS`), so it parses no JSON itself; rows without a
//! string `room` (including rows that are not JSON objects) are ignored.
//! The timeline of room `R` is stored under the key `room:R` as the rows' texts, oldest first,
//! each exactly as the writer stored it and prefixed by its length in bytes (`<len>:<text>`,
//! repeated): appending needs no JSON work at all. The query answers the texts joined into one
//! JSON array. Every batch evicts `room:R` from the cache `timeline` once for each room it
//! touched. The Python and JavaScript versions (`plugins/python/room-timeline`,
//! `plugins/javascript/room-timeline`) do exactly the same, checked by the conformance suite.

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

impl Plugin for RoomTimeline {
    const FIELDS: &'static [&'static str] = &["room"];

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
        let mut rooms: Vec<(&str, Vec<&[u8]>)> = Vec::new();
        for (row, fields) in batch.rows_with_fields() {
            let Some(room) = fields.text("room") else {
                continue;
            };
            match rooms.iter_mut().find(|(r, _)| *r == room) {
                Some((_, texts)) => texts.push(row.data.as_bytes()),
                None => rooms.push((room, vec![row.data.as_bytes()])),
            }
        }

        let mut effects = Vec::with_capacity(rooms.len());
        for (room, new_rows) in rooms {
            let key = key(room);
            let stored = kv::get(&key).unwrap_or_default();
            let mut timeline = decode(&key, &stored)?;
            timeline.extend(new_rows);
            let keep = timeline.len().saturating_sub(KEEP);
            kv::set(&key, &encode(&timeline[keep..]))
                .map_err(|e| PluginError::fatal(format!("kv set of {key}: {e:?}")))?;
            effects.push(Effect::invalidate("timeline", key));
        }
        Ok(effects)
    }

    fn query(&mut self, name: &str, args: &[(String, String)]) -> Result<String, PluginError> {
        match name {
            "timeline" => {
                let key = key(required_arg(args, "room")?);
                let stored = kv::get(&key).unwrap_or_default();
                let timeline = decode(&key, &stored)?;
                let mut answer = Vec::with_capacity(stored.len() + 2);
                answer.push(b'[');
                answer.extend(timeline.join(&b","[..]));
                answer.push(b']');
                String::from_utf8(answer)
                    .map_err(|_| PluginError::fatal(format!("timeline {key} is not UTF-8")))
            }
            _ => Err(PluginError::fatal(format!("unknown query `{name}`"))),
        }
    }
}

/// The rows of a stored timeline: `<len>:<text>` repeated, `len` the text's bytes in decimal.
fn decode<'a>(key: &str, mut stored: &'a [u8]) -> Result<Vec<&'a [u8]>, PluginError> {
    let corrupt = || PluginError::fatal(format!("timeline {key} is not `<len>:<text>` entries"));
    let mut rows = Vec::with_capacity(KEEP + 1);
    while !stored.is_empty() {
        let colon = stored.iter().position(|&b| b == b':').ok_or_else(corrupt)?;
        let len: usize = std::str::from_utf8(&stored[..colon])
            .ok()
            .and_then(|digits| digits.parse().ok())
            .ok_or_else(corrupt)?;
        let text = stored.get(colon + 1..colon + 1 + len).ok_or_else(corrupt)?;
        rows.push(text);
        stored = &stored[colon + 1 + len..];
    }
    Ok(rows)
}

/// A timeline as stored (see [`decode`]).
fn encode(rows: &[&[u8]]) -> Vec<u8> {
    let mut stored = Vec::with_capacity(rows.iter().map(|r| r.len() + 8).sum());
    for row in rows {
        stored.extend_from_slice(row.len().to_string().as_bytes());
        stored.push(b':');
        stored.extend_from_slice(row);
    }
    stored
}

export_plugin!(RoomTimeline);
