//! Decoding wire lines into commands, with Synapse's exact parsing rules.
//!
//! The line splits at its first space into name and arguments (no space: empty arguments);
//! each command then splits its arguments the way its Synapse `from_line` does, integers are
//! parsed with Python `int()` rules and JSON with Python `json.loads` rules.

use bytes::Bytes;
use memchr::memchr;

use super::{
    ClientCommand, Command, CommandName, DecodeError, FederationAck, LockReleased, Position, Rdata,
    ServerCommand, UserIp, UserSync, UserSyncState,
};
use crate::json::{Item, JsonError, RowJson, array_items};
use crate::pyint::{IntError, parse_i64};
use crate::token::{InstanceName, StreamName, Token};

/// How much of a field a `Malformed` reason quotes.
const FIELD_EXCERPT: usize = 64;

impl Command {
    /// Decodes one line (without its `\n`).
    ///
    /// Any command is accepted, whatever its direction: this is what a Redis subscriber
    /// needs. TCP peers decode [`ServerCommand`] or [`ClientCommand`] instead. Blank lines
    /// should be skipped (see [`super::is_blank`]) before calling this.
    pub fn decode(line: &Bytes) -> Result<Command, DecodeError> {
        if let Some(rdata) = decode_rdata_fast(line) {
            return Ok(Command::Rdata(rdata));
        }
        let text = std::str::from_utf8(line).map_err(|_| DecodeError::NotUtf8)?;
        let (name, args_start) = match memchr(b' ', line) {
            Some(space) => (&text[..space], space + 1),
            None => (text, text.len()),
        };
        let args = &text[args_start..];
        let command = CommandName::from_wire(name).ok_or_else(|| DecodeError::UnknownCommand {
            name: super::excerpt(name.as_bytes(), FIELD_EXCERPT),
        })?;
        let malformed = |reason: String| DecodeError::Malformed { command, reason };
        Ok(match command {
            CommandName::Server => Command::Server(args.to_owned()),
            CommandName::Error => Command::Error(args.to_owned()),
            CommandName::Ping => Command::Ping(args.to_owned()),
            CommandName::Name => Command::Name(args.to_owned()),
            CommandName::Replicate => Command::Replicate,
            CommandName::ClearUserSync => Command::ClearUserSync(args.to_owned()),
            CommandName::RemoteServerUp => Command::RemoteServerUp(args.to_owned()),
            CommandName::NewActiveTask => Command::NewActiveTask(args.to_owned()),
            CommandName::CancelTask => Command::CancelTask(args.to_owned()),
            CommandName::Rdata => {
                Command::Rdata(decode_rdata(line, args_start, args).map_err(malformed)?)
            }
            CommandName::Position => Command::Position(decode_position(args).map_err(malformed)?),
            CommandName::UserSync => Command::UserSync(decode_user_sync(args).map_err(malformed)?),
            CommandName::FederationAck => {
                Command::FederationAck(decode_federation_ack(args).map_err(malformed)?)
            }
            CommandName::UserIp => Command::UserIp(decode_user_ip(args).map_err(malformed)?),
            CommandName::LockReleased => {
                Command::LockReleased(decode_lock_released(args).map_err(malformed)?)
            }
        })
    }
}

impl ServerCommand {
    /// Decodes a line received from the TCP server: what a client (reader) calls. A known
    /// command the server may not send is [`DecodeError::WrongDirection`]; as in Synapse, the
    /// arguments are parsed (and can fail) first.
    pub fn decode(line: &Bytes) -> Result<ServerCommand, DecodeError> {
        ServerCommand::try_from(Command::decode(line)?)
            .map_err(|name| DecodeError::WrongDirection { name })
    }
}

impl ClientCommand {
    /// Decodes a line received from a TCP client: what the server (writer) calls. A known
    /// command a client may not send is [`DecodeError::WrongDirection`]; as in Synapse, the
    /// arguments are parsed (and can fail) first.
    pub fn decode(line: &Bytes) -> Result<ClientCommand, DecodeError> {
        ClientCommand::try_from(Command::decode(line)?)
            .map_err(|name| DecodeError::WrongDirection { name })
    }
}

/// `field` quoted for an error message, cut to [`FIELD_EXCERPT`] bytes.
fn quoted(field: &str) -> String {
    format!("{:?}", super::excerpt(field.as_bytes(), FIELD_EXCERPT))
}

fn int_field(what: &str, field: &str) -> Result<i64, String> {
    parse_i64(field).map_err(|e| match e {
        IntError::Invalid => format!("{what} {} is not an integer", quoted(field)),
        IntError::OutOfRange => format!("{what} {} is out of the 64-bit range", quoted(field)),
    })
}

fn json_reason(what: &str, e: &JsonError) -> String {
    format!(
        "{what} is not valid JSON: {} at byte {}",
        e.reason, e.offset
    )
}

/// Splits like Python's `args.split(" ", n - 1)` and requires exactly `n` parts.
fn split_exact<const N: usize>(args: &str) -> Result<[&str; N], String> {
    // memchr on bytes: a space is ASCII, so every cut is a char boundary.
    let bytes = args.as_bytes();
    let mut parts = [""; N];
    let mut start = 0;
    for (count, part) in parts.iter_mut().enumerate().take(N - 1) {
        match memchr(b' ', &bytes[start..]) {
            Some(offset) => {
                *part = &args[start..start + offset];
                start += offset + 1;
            }
            None => return Err(format!("expected {N} fields, got {}", count + 1)),
        }
    }
    parts[N - 1] = &args[start..];
    Ok(parts)
}

/// Splits like Python's `args.split(" ")` (unlimited) and requires exactly `n` parts.
fn split_all<const N: usize>(args: &str) -> Result<[&str; N], String> {
    let count = args.split(' ').count();
    if count != N {
        return Err(format!("expected {N} fields, got {count}"));
    }
    split_exact::<N>(args)
}

/// The hot path of a reader: a well-formed `RDATA` line, decoded without validating the row
/// as UTF-8 twice (the row's JSON scan accepts only ASCII and the rewriter checks UTF-8
/// itself). `None` for anything else, which then takes the general path, so errors and their
/// precedence (UTF-8 first, as in Synapse) are exactly the general path's.
fn decode_rdata_fast(line: &Bytes) -> Option<Rdata> {
    let args = line.strip_prefix(b"RDATA ")?;
    let mut cuts = [0usize; 3];
    let mut start = 0;
    for cut in &mut cuts {
        start += memchr(b' ', &args[start..])?;
        *cut = start;
        start += 1;
    }
    let fields = std::str::from_utf8(&args[..cuts[2]]).ok()?;
    let token = match &fields[cuts[1] + 1..] {
        "batch" => None,
        other => Some(Token(parse_i64(other).ok()?)),
    };
    let row_start = b"RDATA ".len() + cuts[2] + 1;
    let row = RowJson::parse_bytes(line.slice(row_start..)).ok()?;
    Some(Rdata {
        stream: StreamName::from_wire(&fields[..cuts[0]]),
        instance: InstanceName::from_wire(&fields[cuts[0] + 1..cuts[1]]),
        token,
        row,
    })
}

fn decode_rdata(line: &Bytes, args_start: usize, args: &str) -> Result<Rdata, String> {
    let [stream, instance, token, row] = split_exact::<4>(args)?;
    let token = match token {
        "batch" => None,
        other => Some(Token(int_field("token", other)?)),
    };
    let row_start = args_start + (args.len() - row.len());
    let row = RowJson::parse_bytes(line.slice(row_start..)).map_err(|e| json_reason("row", &e))?;
    Ok(Rdata {
        stream: StreamName::from_wire(stream),
        instance: InstanceName::from_wire(instance),
        token,
        row,
    })
}

fn decode_position(args: &str) -> Result<Position, String> {
    let [stream, instance, prev, new] = split_exact::<4>(args)?;
    Ok(Position {
        stream: StreamName::from_wire(stream),
        instance: InstanceName::from_wire(instance),
        prev: Token(int_field("prev_token", prev)?),
        new: Token(int_field("new_token", new)?),
    })
}

fn decode_user_sync(args: &str) -> Result<UserSync, String> {
    let [instance_id, user_id, device_id, state, last_sync_ms] = split_all::<5>(args)?;
    let state = match state {
        "start" => UserSyncState::Start,
        "end" => UserSyncState::End,
        other => return Err(format!("state {} is neither start nor end", quoted(other))),
    };
    Ok(UserSync {
        instance_id: instance_id.to_owned(),
        user_id: user_id.to_owned(),
        device_id: (device_id != "None").then(|| device_id.to_owned()),
        state,
        last_sync_ms: int_field("last_sync_ms", last_sync_ms)?,
    })
}

fn decode_federation_ack(args: &str) -> Result<FederationAck, String> {
    let [instance, token] = split_all::<2>(args)?;
    Ok(FederationAck {
        instance: InstanceName::from_wire(instance),
        token: Token(int_field("token", token)?),
    })
}

/// The elements of a JSON array argument, which must have exactly `N`.
fn json_array<const N: usize>(what: &str, text: &str) -> Result<[Item; N], String> {
    let json = RowJson::parse(text.as_bytes()).map_err(|e| json_reason(what, &e))?;
    let items = array_items(json.as_str()).ok_or_else(|| format!("{what} is not a JSON array"))?;
    let count = items.len();
    <[Item; N]>::try_from(items).map_err(|_| format!("{what} has {count} elements, expected {N}"))
}

fn string_item(what: &str, item: Item) -> Result<String, String> {
    match item {
        Item::Str(text) => Ok(text),
        other => Err(format!("{what} is {}, not a string", describe(&other))),
    }
}

fn describe(item: &Item) -> &'static str {
    match item {
        Item::Str(_) => "a string",
        Item::Null => "null",
        Item::Int(_) => "an integer",
        Item::Other(kind) => kind,
    }
}

fn decode_user_ip(args: &str) -> Result<UserIp, String> {
    let [user_id, json] = split_exact::<2>(args)?;
    let [access_token, ip, user_agent, device_id, last_seen] = json_array::<5>("data", json)?;
    Ok(UserIp {
        user_id: user_id.to_owned(),
        access_token: string_item("access_token", access_token)?,
        ip: string_item("ip", ip)?,
        user_agent: string_item("user_agent", user_agent)?,
        device_id: match device_id {
            Item::Null => None,
            other => Some(string_item("device_id", other)?),
        },
        last_seen_ms: match last_seen {
            Item::Int(ms) => ms,
            other => return Err(format!("last_seen is {}, not an integer", describe(&other))),
        },
    })
}

fn decode_lock_released(args: &str) -> Result<LockReleased, String> {
    let [instance, lock_name, lock_key] = json_array::<3>("data", args)?;
    Ok(LockReleased {
        instance: string_item("instance", instance)?,
        lock_name: string_item("lock_name", lock_name)?,
        lock_key: string_item("lock_key", lock_key)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(line: &str) -> Result<Command, DecodeError> {
        Command::decode(&Bytes::copy_from_slice(line.as_bytes()))
    }

    fn reason(line: &str) -> String {
        match decode(line) {
            Err(DecodeError::Malformed { reason, .. }) => reason,
            other => panic!("{line:?} gave {other:?}"),
        }
    }

    #[test]
    fn malformed_reasons_say_what_was_wrong() {
        assert_eq!(reason("RDATA events master 1"), "expected 4 fields, got 3");
        assert_eq!(
            reason("RDATA events master abc [1]"),
            "token \"abc\" is not an integer"
        );
        assert_eq!(
            reason("POSITION events master 1 2 3"),
            "new_token \"2 3\" is not an integer"
        );
        assert_eq!(
            reason("POSITION s i 1 99999999999999999999"),
            "new_token \"99999999999999999999\" is out of the 64-bit range"
        );
        assert_eq!(
            reason("USER_SYNC a @u:x DEV START 1"),
            "state \"START\" is neither start nor end"
        );
        assert_eq!(reason("FEDERATION_ACK fed 1 2"), "expected 2 fields, got 3");
        assert_eq!(
            reason("USER_IP @u:x [\"t\",\"ip\",\"ua\",null]"),
            "data has 4 elements, expected 5"
        );
        assert_eq!(
            reason("USER_IP @u:x [\"t\",\"ip\",\"ua\",null,1.5]"),
            "last_seen is a float, not an integer"
        );
        assert_eq!(reason("USER_IP @u:x {}"), "data is not a JSON array");
        assert_eq!(
            reason("LOCK_RELEASED [\"a\",\"b\",1]"),
            "lock_key is an integer, not a string"
        );
        assert_eq!(
            reason("RDATA events master 1 [1] [2]"),
            "row is not valid JSON: Extra data at byte 4"
        );
    }

    #[test]
    fn unknown_and_non_utf8_lines_are_rejected() {
        assert_eq!(
            decode(""),
            Err(DecodeError::UnknownCommand {
                name: String::new()
            })
        );
        assert_eq!(
            decode("PING\t1"),
            Err(DecodeError::UnknownCommand {
                name: "PING\t1".to_owned()
            })
        );
        assert_eq!(
            Command::decode(&Bytes::from_static(b"PING \xff\xfe")),
            Err(DecodeError::NotUtf8)
        );
    }

    #[test]
    fn rdata_row_shares_the_line_buffer() {
        let line = Bytes::from_static(b"RDATA typing master 5 [\"!r:x\",[]]");
        let Ok(Command::Rdata(rdata)) = Command::decode(&line) else {
            panic!("RDATA expected");
        };
        assert_eq!(rdata.row.as_bytes().as_ptr(), line[22..].as_ptr());
    }

    #[test]
    fn rdata_fast_path_keeps_the_general_errors() {
        let bad_row = Bytes::from_static(b"RDATA events master 1 [\"\xff\"]");
        assert_eq!(Command::decode(&bad_row), Err(DecodeError::NotUtf8));
        let bad_field = Bytes::from_static(b"RDATA ev\xffents master");
        assert_eq!(Command::decode(&bad_field), Err(DecodeError::NotUtf8));
        let short = Bytes::from_static(b"RDATA events master 1");
        assert!(matches!(
            Command::decode(&short),
            Err(DecodeError::Malformed { .. })
        ));
        let quirky = Bytes::from_static(b"RDATA typing master +5 [ 1 ]");
        let Ok(Command::Rdata(rdata)) = Command::decode(&quirky) else {
            panic!("quirk accepted");
        };
        assert_eq!((rdata.token, rdata.row.as_str()), (Some(Token(5)), "[1]"));
    }

    #[test]
    fn direction_is_checked_after_parsing() {
        let line = Bytes::from_static(b"RDATA events master 1 [1]");
        assert_eq!(
            ClientCommand::decode(&line),
            Err(DecodeError::WrongDirection {
                name: CommandName::Rdata
            })
        );
        assert!(matches!(
            ClientCommand::decode(&Bytes::from_static(b"RDATA events master x [1]")),
            Err(DecodeError::Malformed { .. })
        ));
        assert!(ServerCommand::decode(&line).is_ok());
    }
}
