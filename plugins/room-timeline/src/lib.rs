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
            let timeline = append(&key, &stored, &new_rows)?;
            kv::set(&key, &timeline)
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
                let texts: Vec<&[u8]> = decode(&key, &stored)?.iter().map(|e| e.text).collect();
                let mut answer = Vec::with_capacity(stored.len() + 2);
                answer.push(b'[');
                answer.extend(texts.join(&b","[..]));
                answer.push(b']');
                String::from_utf8(answer)
                    .map_err(|_| PluginError::fatal(format!("timeline {key} is not UTF-8")))
            }
            _ => Err(PluginError::fatal(format!("unknown query `{name}`"))),
        }
    }
}

/// One entry of a stored timeline: where its `<len>:` starts, and its text.
struct Entry<'a> {
    start: usize,
    text: &'a [u8],
}

/// The entries of a stored timeline: `<len>:<text>` repeated, `len` the text's bytes in decimal.
fn decode<'a>(key: &str, stored: &'a [u8]) -> Result<Vec<Entry<'a>>, PluginError> {
    let corrupt = || PluginError::fatal(format!("timeline {key} is not `<len>:<text>` entries"));
    let mut entries = Vec::with_capacity(KEEP + 1);
    let mut start = 0;
    while start < stored.len() {
        let rest = &stored[start..];
        let colon = rest.iter().position(|&b| b == b':').ok_or_else(corrupt)?;
        let len: usize = std::str::from_utf8(&rest[..colon])
            .ok()
            .and_then(|digits| digits.parse().ok())
            .ok_or_else(corrupt)?;
        let text = rest.get(colon + 1..colon + 1 + len).ok_or_else(corrupt)?;
        entries.push(Entry { start, text });
        start += colon + 1 + len;
    }
    Ok(entries)
}

/// The stored timeline with `new_rows` appended, keeping the last [`KEEP`]: the old entries
/// kept are copied as stored (the whole value is still checked), only the new ones encoded.
fn append(key: &str, stored: &[u8], new_rows: &[&[u8]]) -> Result<Vec<u8>, PluginError> {
    let old = decode(key, stored)?;
    let new_rows = &new_rows[new_rows.len().saturating_sub(KEEP)..];
    let dropped = (old.len() + new_rows.len()).saturating_sub(KEEP);
    let kept = old
        .get(dropped)
        .map_or(&[][..], |entry| &stored[entry.start..]);
    let mut timeline =
        Vec::with_capacity(kept.len() + new_rows.iter().map(|r| r.len() + 8).sum::<usize>());
    timeline.extend_from_slice(kept);
    for row in new_rows {
        timeline.extend_from_slice(row.len().to_string().as_bytes());
        timeline.push(b':');
        timeline.extend_from_slice(row);
    }
    Ok(timeline)
}

export_plugin!(RoomTimeline);
