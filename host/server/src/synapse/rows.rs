//! Synapse's stream rows as plugins see them: each `RDATA` row array (docs/replication.md,
//! "Synapse's streams")
//! becomes a JSON object with Synapse's field names, so a plugin reads `row.room_id` instead
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

/// Whether `stream` is one of Synapse's streams this module gives field names to.
pub fn is_known(stream: &str) -> bool {
    stream == "events" || stream == "federation" || shape_of(STREAMS, stream).is_some()
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
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn convert(stream: &str, row: &str) -> Result<String, RowError> {
        to_object(
            &StreamName::new(stream).unwrap(),
            &RowJson::parse(row.as_bytes()).unwrap(),
        )
        .map(|r| r.as_str().to_owned())
    }

    fn ok(stream: &str, row: &str) -> serde_json::Value {
        serde_json::from_str(&convert(stream, row).unwrap()).unwrap()
    }

    #[test]
    fn events_rows_of_each_kind_get_synapse_field_names() {
        let ev = ok(
            "events",
            r#"["ev",["$9fJq2Lw:example.org","!lobby:example.org","m.room.member","@ana:example.org",null,null,"join",false,false]]"#,
        );
        assert_eq!(
            ev,
            serde_json::json!({"kind":"ev","event_id":"$9fJq2Lw:example.org","room_id":"!lobby:example.org",
                "type":"m.room.member","state_key":"@ana:example.org","redacts":null,"relates_to":null,
                "membership":"join","rejected":false,"outlier":false})
        );
        let state = ok(
            "events",
            r#"["state",["!lobby:example.org","m.room.topic","",null]]"#,
        );
        assert_eq!(
            state,
            serde_json::json!({"kind":"state","room_id":"!lobby:example.org","type":"m.room.topic","state_key":"","event_id":null})
        );
        assert_eq!(
            ok("events", r#"["state-all",["!lobby:example.org"]]"#),
            serde_json::json!({"kind":"state-all","room_id":"!lobby:example.org"})
        );
    }

    #[test]
    fn sqlite_integer_flags_become_booleans_and_other_values_are_kept_byte_for_byte() {
        // As captured from a real Synapse on SQLite.
        let ev = convert(
            "events",
            r#"["ev",["$lCkk","!NxFe","m.room.member","@alice:localhost",null,null,"join",0,1]]"#,
        )
        .unwrap();
        assert!(
            ev.ends_with(r#""membership":"join","rejected":false,"outlier":true}"#),
            "{ev}"
        );
        let presence = convert(
            "presence",
            r#"["@bob:localhost","online",1795663725218,1795663725218,1795663724281,"caf\u00e9 \u2615",1]"#,
        )
        .unwrap();
        assert_eq!(
            presence,
            r#"{"user_id":"@bob:localhost","state":"online","last_active_ts":1795663725218,"last_federation_update_ts":1795663725218,"last_user_sync_ts":1795663724281,"status_msg":"caf\u00e9 \u2615","currently_active":true}"#
        );
        assert_eq!(
            ok("device_lists", r#"["@alice:localhost",false,0]"#),
            serde_json::json!({"user_id":"@alice:localhost","is_signature":false,"hosts_calculated":false})
        );
    }

    #[test]
    fn every_reference_stream_has_its_fields() {
        let cases: &[(&str, &str, serde_json::Value)] = &[
            (
                "backfill",
                r#"["$old1:remote.test","!lobby:example.org","m.room.message",null,null,null]"#,
                serde_json::json!({"event_id":"$old1:remote.test","room_id":"!lobby:example.org","type":"m.room.message","state_key":null,"redacts":null,"relates_to":null}),
            ),
            (
                "presence",
                r#"["@ana:example.org","online",1721800002000,1721800002000,1721800002500,"lunch",true]"#,
                serde_json::json!({"user_id":"@ana:example.org","state":"online","last_active_ts":1_721_800_002_000_i64,
                    "last_federation_update_ts":1_721_800_002_000_i64,"last_user_sync_ts":1_721_800_002_500_i64,
                    "status_msg":"lunch","currently_active":true}),
            ),
            (
                "presence_federation",
                r#"["remote.test","@ana:example.org"]"#,
                serde_json::json!({"destination":"remote.test","user_id":"@ana:example.org"}),
            ),
            (
                "typing",
                r#"["!lobby:example.org",["@ana:example.org","@ben:remote.test"]]"#,
                serde_json::json!({"room_id":"!lobby:example.org","user_ids":["@ana:example.org","@ben:remote.test"]}),
            ),
            (
                "receipts",
                r#"["!lobby:example.org","m.read","@ana:example.org","$9fJq2Lw:example.org",null,{"ts":1721800001000}]"#,
                serde_json::json!({"room_id":"!lobby:example.org","receipt_type":"m.read","user_id":"@ana:example.org","event_id":"$9fJq2Lw:example.org","thread_id":null,"data":{"ts":1_721_800_001_000_i64}}),
            ),
            (
                "push_rules",
                r#"["@ana:example.org"]"#,
                serde_json::json!({"user_id":"@ana:example.org"}),
            ),
            (
                "pushers",
                r#"["@ana:example.org","m.http","ZXhhbXBsZQ",false]"#,
                serde_json::json!({"user_id":"@ana:example.org","app_id":"m.http","pushkey":"ZXhhbXBsZQ","deleted":false}),
            ),
            (
                "caches",
                r#"["get_user_by_id",null,1721800000456]"#,
                serde_json::json!({"cache_func":"get_user_by_id","keys":null,"invalidation_ts":1_721_800_000_456_i64}),
            ),
            (
                "caches",
                r#"["_get_membership_from_event_id",[["$a","$b"]],1700000000000]"#,
                serde_json::json!({"cache_func":"_get_membership_from_event_id","keys":[["$a","$b"]],"invalidation_ts":1_700_000_000_000_i64}),
            ),
            (
                "device_lists",
                r#"["@ana:example.org",false,true]"#,
                serde_json::json!({"user_id":"@ana:example.org","is_signature":false,"hosts_calculated":true}),
            ),
            (
                "to_device",
                r#"["remote.test"]"#,
                serde_json::json!({"entity":"remote.test"}),
            ),
            (
                "account_data",
                r#"["@ana:example.org",null,"m.direct"]"#,
                serde_json::json!({"user_id":"@ana:example.org","room_id":null,"data_type":"m.direct"}),
            ),
            (
                "federation",
                r#"["e",{"edu_type":"m.receipt","content":{},"origin":"example.org","destination":"remote.test"}]"#,
                serde_json::json!({"kind":"e","data":{"edu_type":"m.receipt","content":{},"origin":"example.org","destination":"remote.test"}}),
            ),
            (
                "sticky_events",
                r#"["!lobby:example.org","$st1cky:example.org"]"#,
                serde_json::json!({"room_id":"!lobby:example.org","event_id":"$st1cky:example.org"}),
            ),
            (
                "thread_subscriptions",
                r#"["@ana:example.org","!lobby:example.org","$root:example.org"]"#,
                serde_json::json!({"user_id":"@ana:example.org","room_id":"!lobby:example.org","event_id":"$root:example.org"}),
            ),
            (
                "un_partial_stated_room",
                r#"["!lobby:example.org"]"#,
                serde_json::json!({"room_id":"!lobby:example.org"}),
            ),
            (
                "un_partial_stated_event",
                r#"["$9fJq2Lw:example.org",true]"#,
                serde_json::json!({"event_id":"$9fJq2Lw:example.org","rejection_status_changed":true}),
            ),
            (
                "quarantined_media",
                r#"["example.org","AbCdEfGh",true]"#,
                serde_json::json!({"origin":"example.org","media_id":"AbCdEfGh","quarantined":true}),
            ),
        ];
        for (stream, row, want) in cases {
            assert!(is_known(stream), "{stream}");
            assert_eq!(&ok(stream, row), want, "{stream} {row}");
        }
        for (stream, _) in STREAMS {
            assert!(
                cases.iter().any(|(s, _, _)| s == stream),
                "{stream} untested"
            );
        }
    }

    #[test]
    fn rows_synapse_refuses_are_refused() {
        // The reference vectors' ROW_INVALID lines of known streams.
        for (stream, row) in [
            ("typing", r#"["!r:example.com"]"#),
            ("typing", r#"["!r:example.com",[],3]"#),
            ("events", r#"["ev",["$e"]]"#),
            ("events", r#"["zz",[]]"#),
            ("events", r#"{}"#),
            (
                "receipts",
                r#"["!r:example.com","m.read","@u:example.com","$e",null]"#,
            ),
            ("presence", "null"),
            ("federation", r#"["x",{}]"#),
        ] {
            let err = convert(stream, row).unwrap_err();
            assert_eq!(err.stream, stream);
        }
        let err = convert("typing", r#"["!r:example.com"]"#).unwrap_err();
        assert!(
            err.to_string()
                .contains("1 fields, expected 2 (room_id, user_ids)"),
            "{err}"
        );
    }

    #[test]
    fn rows_of_streams_it_does_not_know_pass_unchanged() {
        let row = r#"["@alice:example.com","update",["displayname"]]"#;
        assert!(!is_known("profile_updates"));
        assert_eq!(convert("profile_updates", row).unwrap(), row);
    }
}
