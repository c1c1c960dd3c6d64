//! Golden tests against the wire vectors generated and checked by Synapse 1.163.2's own code
//! (`tests/fixtures/vectors.json`, described in `tests/fixtures/README.md`).

use bytes::Bytes;
use serde_json::Value;
use streamhost_proto::{
    ClientCommand, Command, CommandName, DecodeError, ServerCommand, UserSyncState,
};

fn vectors() -> Value {
    let text = include_str!("fixtures/vectors.json");
    serde_json::from_str(text).expect("vectors.json is JSON")
}

fn group(name: &str) -> Vec<Value> {
    vectors()[name]
        .as_array()
        .expect("a group is an array")
        .clone()
}

fn line_of(vector: &Value) -> Bytes {
    match (&vector["line"], &vector["line_hex"]) {
        (Value::String(line), _) => Bytes::copy_from_slice(line.as_bytes()),
        (_, Value::String(hex)) => Bytes::from(
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                .collect::<Vec<u8>>(),
        ),
        _ => panic!("vector without a line: {vector}"),
    }
}

fn decode(vector: &Value) -> Command {
    let line = line_of(vector);
    let command = Command::decode(&line).unwrap_or_else(|e| panic!("{vector}: {e}"));
    assert_eq!(
        command.name().as_str(),
        vector["command"].as_str().expect("command name"),
        "{vector}"
    );
    command
}

fn str_field(fields: &Value, key: &str) -> String {
    fields[key]
        .as_str()
        .unwrap_or_else(|| panic!("field {key} in {fields}"))
        .to_owned()
}

fn int_field(fields: &Value, key: &str) -> i64 {
    fields[key]
        .as_i64()
        .unwrap_or_else(|| panic!("field {key} in {fields}"))
}

fn opt_str_field(fields: &Value, key: &str) -> Option<String> {
    fields[key].as_str().map(str::to_owned)
}

/// Asserts that the decoded command carries exactly the fields Synapse parsed.
fn assert_fields(command: &Command, vector: &Value) {
    let fields = &vector["fields"];
    let context = vector.to_string();
    match command {
        Command::Server(data)
        | Command::Error(data)
        | Command::Ping(data)
        | Command::Name(data)
        | Command::RemoteServerUp(data)
        | Command::NewActiveTask(data)
        | Command::CancelTask(data) => assert_eq!(*data, str_field(fields, "data"), "{context}"),
        Command::ClearUserSync(id) => {
            assert_eq!(*id, str_field(fields, "instance_id"), "{context}")
        }
        Command::Replicate => assert_eq!(fields, &serde_json::json!({}), "{context}"),
        Command::Rdata(rdata) => {
            assert_eq!(
                rdata.stream.as_str(),
                str_field(fields, "stream_name"),
                "{context}"
            );
            assert_eq!(
                rdata.instance.as_str(),
                str_field(fields, "instance_name"),
                "{context}"
            );
            assert_eq!(
                rdata.token.map(|t| t.0),
                fields["token"].as_i64(),
                "{context}"
            );
            assert_eq!(
                fields["token"].is_null(),
                rdata.token.is_none(),
                "{context}"
            );
            let row: Value = serde_json::from_str(rdata.row.as_str()).expect("row is JSON");
            assert_eq!(row, fields["row"], "{context}");
        }
        Command::Position(position) => {
            assert_eq!(
                position.stream.as_str(),
                str_field(fields, "stream_name"),
                "{context}"
            );
            assert_eq!(
                position.instance.as_str(),
                str_field(fields, "instance_name"),
                "{context}"
            );
            assert_eq!(
                position.prev.0,
                int_field(fields, "prev_token"),
                "{context}"
            );
            assert_eq!(position.new.0, int_field(fields, "new_token"), "{context}");
        }
        Command::UserSync(sync) => {
            assert_eq!(
                sync.instance_id,
                str_field(fields, "instance_id"),
                "{context}"
            );
            assert_eq!(sync.user_id, str_field(fields, "user_id"), "{context}");
            assert_eq!(
                sync.device_id,
                opt_str_field(fields, "device_id"),
                "{context}"
            );
            let syncing = fields["is_syncing"].as_bool().expect("is_syncing");
            assert_eq!(sync.state == UserSyncState::Start, syncing, "{context}");
            assert_eq!(
                sync.last_sync_ms,
                int_field(fields, "last_sync_ms"),
                "{context}"
            );
        }
        Command::FederationAck(ack) => {
            assert_eq!(
                ack.instance.as_str(),
                str_field(fields, "instance_name"),
                "{context}"
            );
            assert_eq!(ack.token.0, int_field(fields, "token"), "{context}");
        }
        Command::UserIp(ip) => {
            assert_eq!(ip.user_id, str_field(fields, "user_id"), "{context}");
            assert_eq!(
                ip.access_token,
                str_field(fields, "access_token"),
                "{context}"
            );
            assert_eq!(ip.ip, str_field(fields, "ip"), "{context}");
            assert_eq!(ip.user_agent, str_field(fields, "user_agent"), "{context}");
            assert_eq!(
                ip.device_id,
                opt_str_field(fields, "device_id"),
                "{context}"
            );
            assert_eq!(ip.last_seen_ms, int_field(fields, "last_seen"), "{context}");
        }
        Command::LockReleased(lock) => {
            assert_eq!(
                lock.instance,
                str_field(fields, "instance_name"),
                "{context}"
            );
            assert_eq!(lock.lock_name, str_field(fields, "lock_name"), "{context}");
            assert_eq!(lock.lock_key, str_field(fields, "lock_key"), "{context}");
        }
    }
}

fn encoded(command: &Command) -> String {
    let mut out = Vec::new();
    command.encode(&mut out).expect("encodes");
    String::from_utf8(out).expect("UTF-8")
}

fn assert_decodes_to_canonical(groups: &[&str]) -> usize {
    let mut checked = 0;
    for name in groups {
        for vector in group(name) {
            let command = decode(&vector);
            assert_fields(&command, &vector);
            let canonical = vector["canonical"].as_str().expect("canonical");
            assert_eq!(encoded(&command), format!("{canonical}\n"), "{vector}");
            checked += 1;
        }
    }
    checked
}

#[test]
fn valid_lines_decode_to_their_fields_and_encode_back_byte_for_byte() {
    for vector in group("valid") {
        assert_eq!(vector["line"], vector["canonical"], "{vector}");
    }
    assert_eq!(assert_decodes_to_canonical(&["valid"]), 56);
}

#[test]
fn quirk_lines_decode_to_their_fields_and_encode_to_synapses_form() {
    assert_eq!(assert_decodes_to_canonical(&["quirk"]), 16);
}

#[test]
fn row_invalid_lines_are_accepted_by_the_codec() {
    assert_eq!(assert_decodes_to_canonical(&["row_invalid"]), 8);
}

#[test]
fn invalid_lines_are_rejected() {
    let invalid = group("invalid");
    assert_eq!(invalid.len(), 36);
    for vector in invalid {
        let line = line_of(&vector);
        let error = Command::decode(&line).expect_err(&vector.to_string());
        let text = error.error_text(&line);
        assert!(text.starts_with("failed to parse line: "), "{text}");
        assert!(!text.contains('\n'), "{text}");
        for direction in [
            ServerCommand::decode(&line).map(|_| ()),
            ClientCommand::decode(&line).map(|_| ()),
        ] {
            assert_eq!(direction, Err(error.clone()), "{vector}");
        }
    }
}

#[test]
fn direction_follows_synapses_whitelists() {
    let root = vectors();
    let names = |key: &str| -> Vec<String> {
        root[key]
            .as_array()
            .expect("list")
            .iter()
            .map(|name| name.as_str().expect("name").to_owned())
            .collect()
    };
    let (server, client) = (
        names("valid_server_commands"),
        names("valid_client_commands"),
    );
    let all = names("all_commands");
    assert_eq!(all.len(), CommandName::ALL.len());
    for name in CommandName::ALL {
        let wire = name.as_str().to_owned();
        assert!(all.contains(&wire), "{wire}");
        assert_eq!(name.server_may_send(), server.contains(&wire), "{wire}");
        assert_eq!(name.client_may_send(), client.contains(&wire), "{wire}");
    }

    for vector in group("valid") {
        let line = line_of(&vector);
        let name = decode(&vector).name();
        let (server_ok, client_ok) = match vector["direction"].as_str().expect("direction") {
            "server->client" => (true, false),
            "client->server" => (false, true),
            "both" => (true, true),
            "redis-only" => (false, false),
            other => panic!("unknown direction {other}"),
        };
        let wrong = Err(DecodeError::WrongDirection { name });
        match ServerCommand::decode(&line) {
            Ok(command) => {
                assert!(server_ok, "{vector}");
                assert_eq!(command.name(), name);
            }
            Err(e) => {
                assert!(!server_ok, "{vector}");
                assert_eq!(Err::<(), _>(e.clone()), wrong.clone());
                assert_eq!(
                    e.error_text(&line),
                    format!("invalid command: {}", name.as_str())
                );
            }
        }
        match ClientCommand::decode(&line) {
            Ok(command) => {
                assert!(client_ok, "{vector}");
                assert_eq!(command.name(), name);
            }
            Err(e) => {
                assert!(!client_ok, "{vector}");
                assert_eq!(Err::<(), _>(e), wrong);
            }
        }
    }
}

#[test]
fn direction_typed_commands_encode_like_command() {
    for vector in group("valid") {
        let line = line_of(&vector);
        let canonical = format!("{}\n", vector["canonical"].as_str().expect("canonical"));
        if let Ok(command) = ServerCommand::decode(&line) {
            let mut out = Vec::new();
            command.encode(&mut out).expect("encodes");
            assert_eq!(String::from_utf8(out).expect("UTF-8"), canonical);
        }
        if let Ok(command) = ClientCommand::decode(&line) {
            let mut out = Vec::new();
            command.encode(&mut out).expect("encodes");
            assert_eq!(String::from_utf8(out).expect("UTF-8"), canonical);
        }
    }
}

#[test]
fn blank_lines_are_recognised_for_skipping() {
    assert!(streamhost_proto::is_blank(b""));
    assert!(streamhost_proto::is_blank(b" \t\r\x0b\x0c"));
    assert!(!streamhost_proto::is_blank(b" PING 1"));
    assert!(!streamhost_proto::is_blank("\u{a0}".as_bytes()));
}
