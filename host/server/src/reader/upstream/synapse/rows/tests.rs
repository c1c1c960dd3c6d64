//! Tests of [`super`]: every stream's fields, flags, arity errors.

#![allow(clippy::unwrap_used)]

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
