//! Synapse's stream rows as plugins see them: each `RDATA` row array (docs/replication.md,
//! "Synapse's streams") becomes a JSON object with Synapse's field names, so a plugin reads `row.room_id` instead
//! of `row[0]`. The per-stream field lists are in `docs/synapse.md`.
//!
//! Synapse itself only checks a row's arity (`ROW_TYPE(*row)`), so this does the same: a row
//! of a known stream with the wrong number of fields (or an `events`/`federation` row of an
//! unknown kind) is an error, and the caller drops it as Synapse does ("Failed to parse
//! RDATA"). Values are copied byte for byte, with one exception: flags that Synapse's SQLite
//! main process sends as `0`/`1` (`rejected`, `outlier`, `currently_active`, ...) become
//! `false`/`true`. Rows of streams not listed here (a newer Synapse's, e.g. `profile_updates`)
//! pass through unchanged.

use serde::Deserialize;
use serde_json::value::RawValue;
use streamhost_proto::{RowJson, StreamName};

/// How a field's value is copied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// As sent.
    Value,
    /// A flag: `0`/`1` become `false`/`true`; anything else is copied as sent.
    Flag,
}

use Kind::{Flag, Value};

/// A row shape: the field names in wire order.
type Shape = &'static [(&'static str, Kind)];

/// The streams whose rows are plain arrays, and their fields (docs/replication.md,
/// "Synapse's streams").
const STREAMS: &[(&str, Shape)] = &[
    (
        "backfill",
        &[
            ("event_id", Value),
            ("room_id", Value),
            ("type", Value),
            ("state_key", Value),
            ("redacts", Value),
            ("relates_to", Value),
        ],
    ),
    (
        "presence",
        &[
            ("user_id", Value),
            ("state", Value),
            ("last_active_ts", Value),
            ("last_federation_update_ts", Value),
            ("last_user_sync_ts", Value),
            ("status_msg", Value),
            ("currently_active", Flag),
        ],
    ),
    (
        "presence_federation",
        &[("destination", Value), ("user_id", Value)],
    ),
    ("typing", &[("room_id", Value), ("user_ids", Value)]),
    (
        "receipts",
        &[
            ("room_id", Value),
            ("receipt_type", Value),
            ("user_id", Value),
            ("event_id", Value),
            ("thread_id", Value),
            ("data", Value),
        ],
    ),
    ("push_rules", &[("user_id", Value)]),
    (
        "pushers",
        &[
            ("user_id", Value),
            ("app_id", Value),
            ("pushkey", Value),
            ("deleted", Flag),
        ],
    ),
    (
        "caches",
        &[
            ("cache_func", Value),
            ("keys", Value),
            ("invalidation_ts", Value),
        ],
    ),
    (
        "device_lists",
        &[
            ("user_id", Value),
            ("is_signature", Flag),
            ("hosts_calculated", Flag),
        ],
    ),
    ("to_device", &[("entity", Value)]),
    (
        "account_data",
        &[("user_id", Value), ("room_id", Value), ("data_type", Value)],
    ),
    ("sticky_events", &[("room_id", Value), ("event_id", Value)]),
    (
        "thread_subscriptions",
        &[("user_id", Value), ("room_id", Value), ("event_id", Value)],
    ),
    ("un_partial_stated_room", &[("room_id", Value)]),
    (
        "un_partial_stated_event",
        &[("event_id", Value), ("rejection_status_changed", Flag)],
    ),
    (
        "quarantined_media",
        &[
            ("origin", Value),
            ("media_id", Value),
            ("quarantined", Flag),
        ],
    ),
];

/// The `events` row kinds (`[kind, [fields...]]`, docs/replication.md, "Row kinds of events").
const EVENT_KINDS: &[(&str, Shape)] = &[
    (
        "ev",
        &[
            ("event_id", Value),
            ("room_id", Value),
            ("type", Value),
            ("state_key", Value),
            ("redacts", Value),
            ("relates_to", Value),
            ("membership", Value),
            ("rejected", Flag),
            ("outlier", Flag),
        ],
    ),
    (
        "state",
        &[
            ("room_id", Value),
            ("type", Value),
            ("state_key", Value),
            ("event_id", Value),
        ],
    ),
    ("state-all", &[("room_id", Value)]),
];

/// The `federation` row kinds (`[kind, data]`).
const FEDERATION_KINDS: &[&str] = &["e", "k", "pd"];

/// Why a row of a known stream was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{stream} row {row}: {reason}")]
pub struct RowError {
    /// The stream.
    pub stream: String,
    /// The start of the row.
    pub row: String,
    /// What was wrong.
    pub reason: String,
}

/// Whether `stream` is one of Synapse's streams this module gives field names to (the tests'
/// check that every stream of the reference has its fields).
#[cfg(test)]
pub fn is_known(stream: &str) -> bool {
    stream == "events" || stream == "federation" || shape_of(STREAMS, stream).is_some()
}

/// The streams this module converts: `events`, `federation` and every plain-array stream.
pub(crate) fn converted_streams() -> impl Iterator<Item = &'static str> {
    ["events", "federation"]
        .into_iter()
        .chain(STREAMS.iter().map(|(name, _)| *name))
}

fn shape_of(table: &[(&str, Shape)], name: &str) -> Option<Shape> {
    table.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// The object a plugin sees for `row` of `stream` (see the module docs).
pub fn to_object(stream: &StreamName, row: &RowJson) -> Result<RowJson, RowError> {
    let name = stream.as_str();
    let error = |reason: String| RowError {
        stream: name.to_owned(),
        row: row.as_str().chars().take(120).collect(),
        reason,
    };
    let text = match name {
        "events" => {
            let (kind, fields) = kind_and_data(row).map_err(error)?;
            let shape = shape_of(EVENT_KINDS, &kind)
                .ok_or_else(|| error(format!("unknown events row kind {kind:?}")))?;
            let fields: Vec<&RawValue> = serde_json::from_str(fields.get())
                .map_err(|_| error("the fields of an events row are not an array".into()))?;
            object(Some(&kind), shape, &fields).map_err(error)?
        }
        "federation" => {
            let (kind, data) = kind_and_data(row).map_err(error)?;
            if !FEDERATION_KINDS.contains(&kind.as_str()) {
                return Err(error(format!("unknown federation row kind {kind:?}")));
            }
            object(Some(&kind), &[("data", Value)], &[data]).map_err(error)?
        }
        _ => {
            let Some(shape) = shape_of(STREAMS, name) else {
                return Ok(row.clone());
            };
            let fields: Vec<&RawValue> =
                serde_json::from_str(row.as_str()).map_err(|_| error("not a JSON array".into()))?;
            object(None, shape, &fields).map_err(error)?
        }
    };
    RowJson::parse(text.as_bytes()).map_err(|e| error(format!("rebuilt row is not JSON: {e}")))
}

/// Splits `[kind, data]`.
fn kind_and_data(row: &RowJson) -> Result<(String, &RawValue), String> {
    #[derive(Deserialize)]
    struct Pair<'a>(String, #[serde(borrow)] &'a RawValue);
    let Pair(kind, data) = serde_json::from_str(row.as_str())
        .map_err(|_| "not a [kind, data] array with a string kind".to_owned())?;
    Ok((kind, data))
}

/// `{"kind":…,"name":value,…}` from canonical parts (so the result is canonical too).
fn object(kind: Option<&str>, shape: Shape, fields: &[&RawValue]) -> Result<String, String> {
    if fields.len() != shape.len() {
        return Err(format!(
            "{} fields, expected {} ({})",
            fields.len(),
            shape.len(),
            shape.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
        ));
    }
    let mut out =
        String::with_capacity(64 + fields.iter().map(|f| f.get().len() + 24).sum::<usize>());
    out.push('{');
    if let Some(kind) = kind {
        // A kind came out of a JSON string; re-encode it the way Synapse would.
        let encoded = serde_json::to_string(kind).map_err(|e| e.to_string())?;
        out.push_str("\"kind\":");
        out.push_str(&encoded);
        out.push(',');
    }
    for (n, ((name, kind), value)) in shape.iter().zip(fields).enumerate() {
        if n > 0 {
            out.push(',');
        }
        out.push('"');
        out.push_str(name);
        out.push_str("\":");
        out.push_str(match (kind, value.get()) {
            (Flag, "0") => "false",
            (Flag, "1") => "true",
            (_, raw) => raw,
        });
    }
    out.push('}');
    Ok(out)
}

#[cfg(test)]
mod tests;
