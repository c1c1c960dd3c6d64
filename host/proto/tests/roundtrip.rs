//! Property tests: every command encodes and decodes back to itself, and `RowJson` agrees with
//! serde_json on what random JSON values mean while producing Synapse's canonical text.

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::Value;
use streamhost_proto::{
    ClientCommand, Command, FederationAck, InstanceName, LockReleased, Position, Rdata, RowJson,
    ServerCommand, StreamName, Token, UserIp, UserSync, UserSyncState,
};

/// A space-delimited field: no space, tab or line break, not empty.
fn field() -> impl Strategy<Value = String> {
    "[^ \t\r\n]{1,24}"
}

/// Free text as carried by SERVER, PING, ERROR...: anything but `\n`, spaces included.
fn free_text() -> impl Strategy<Value = String> {
    "[^\n]{0,40}"
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((any::<String>(), inner), 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

fn row() -> impl Strategy<Value = RowJson> {
    json_value().prop_map(|value| {
        let text = serde_json::to_vec(&value).expect("serialisable");
        RowJson::parse(&text).expect("serde_json output is valid JSON")
    })
}

fn token() -> impl Strategy<Value = Token> {
    any::<i64>().prop_map(Token)
}

fn rdata() -> impl Strategy<Value = Rdata> {
    (field(), field(), prop::option::of(token()), row()).prop_map(|(s, i, token, row)| Rdata {
        stream: StreamName::new(s).expect("valid"),
        instance: InstanceName::new(i).expect("valid"),
        token,
        row,
    })
}

fn position() -> impl Strategy<Value = Position> {
    (field(), field(), token(), token()).prop_map(|(s, i, prev, new)| Position {
        stream: StreamName::new(s).expect("valid"),
        instance: InstanceName::new(i).expect("valid"),
        prev,
        new,
    })
}

fn user_sync() -> impl Strategy<Value = UserSync> {
    let device = prop::option::of(field().prop_filter("not the None marker", |d| d != "None"));
    (field(), field(), device, any::<bool>(), any::<i64>()).prop_map(
        |(instance_id, user_id, device_id, start, last_sync_ms)| UserSync {
            instance_id,
            user_id,
            device_id,
            state: if start {
                UserSyncState::Start
            } else {
                UserSyncState::End
            },
            last_sync_ms,
        },
    )
}

fn federation_ack() -> impl Strategy<Value = FederationAck> {
    (field(), token()).prop_map(|(instance, token)| FederationAck {
        instance: InstanceName::new(instance).expect("valid"),
        token,
    })
}

fn user_ip() -> impl Strategy<Value = UserIp> {
    let s = || any::<String>();
    (field(), s(), s(), s(), prop::option::of(s()), any::<i64>()).prop_map(
        |(user_id, access_token, ip, user_agent, device_id, last_seen_ms)| UserIp {
            user_id,
            access_token,
            ip,
            user_agent,
            device_id,
            last_seen_ms,
        },
    )
}

fn lock_released() -> impl Strategy<Value = LockReleased> {
    (any::<String>(), any::<String>(), any::<String>()).prop_map(
        |(instance, lock_name, lock_key)| LockReleased {
            instance,
            lock_name,
            lock_key,
        },
    )
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        free_text().prop_map(Command::Server),
        rdata().prop_map(Command::Rdata),
        position().prop_map(Command::Position),
        free_text().prop_map(Command::Error),
        free_text().prop_map(Command::Ping),
        free_text().prop_map(Command::Name),
        Just(Command::Replicate),
        user_sync().prop_map(Command::UserSync),
        free_text().prop_map(Command::ClearUserSync),
        federation_ack().prop_map(Command::FederationAck),
        user_ip().prop_map(Command::UserIp),
        free_text().prop_map(Command::RemoteServerUp),
        lock_released().prop_map(Command::LockReleased),
        free_text().prop_map(Command::NewActiveTask),
        free_text().prop_map(Command::CancelTask),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_command_round_trips(command in command()) {
        let mut out = Vec::new();
        command.encode(&mut out).expect("encodes");
        prop_assert_eq!(out.pop(), Some(b'\n'));
        let line = Bytes::from(out);
        prop_assert_eq!(Command::decode(&line).expect("decodes"), command.clone());

        let name = command.name();
        match ServerCommand::try_from(command.clone()) {
            Ok(server) => prop_assert_eq!(ServerCommand::decode(&line).expect("decodes"), server),
            Err(_) => prop_assert!(!name.server_may_send()),
        }
        match ClientCommand::try_from(command) {
            Ok(client) => prop_assert_eq!(ClientCommand::decode(&line).expect("decodes"), client),
            Err(_) => prop_assert!(!name.client_may_send()),
        }
    }

    #[test]
    fn row_json_is_idempotent_and_its_output_takes_the_fast_path(value in json_value()) {
        let pretty = serde_json::to_vec_pretty(&value).expect("serialisable");
        let first = RowJson::parse(&pretty).expect("valid");
        let again = RowJson::parse_bytes(first.clone().into_bytes()).expect("valid");
        prop_assert_eq!(&again, &first);
        // Shared, not copied: the scanner recognised the output as canonical.
        prop_assert_eq!(again.as_bytes().as_ptr(), first.as_bytes().as_ptr());
    }

    #[test]
    fn row_json_means_what_serde_json_means(value in json_value()) {
        let compact = serde_json::to_vec(&value).expect("serialisable");
        let pretty = serde_json::to_vec_pretty(&value).expect("serialisable");
        let from_compact = RowJson::parse(&compact).expect("valid");
        let from_pretty = RowJson::parse(&pretty).expect("valid");
        prop_assert_eq!(&from_compact, &from_pretty);
        prop_assert!(from_compact.as_bytes().iter().all(|b| (0x20..0x7f).contains(b)));
        let reparsed: Value = serde_json::from_str(from_compact.as_str()).expect("JSON");
        // Exact: the workspace's serde_json parses floats correctly rounded (`float_roundtrip`),
        // subnormals included.
        prop_assert_eq!(&reparsed, &value);
    }
}
