//! The replication commands, their decoding from and encoding to wire lines.
//!
//! Format of every line: `NAME + " " + arguments`, UTF-8, no newline inside. See
//! `docs/replication.md` for each command's arguments.
//!
//! The types live here; `command/decode.rs` parses lines with Synapse's rules,
//! `command/encode.rs` writes them, and `command/direction.rs` converts between [`Command`] and
//! the direction-typed enums.

mod decode;
mod direction;
mod encode;

use crate::json::RowJson;
use crate::token::{InstanceName, StreamName, Token};

/// `RDATA <stream> <instance> <token|batch> <row_json>`: one row of a stream.
///
/// Format: `RDATA events master 54 ["ev",["$e","!r:example.com","m.room.message",null,null,null,null,false,false]]`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rdata {
    /// The stream the row belongs to.
    pub stream: StreamName,
    /// The process that wrote the row.
    pub instance: InstanceName,
    /// The row's token, or `None` for `batch`: more rows with the same token follow.
    pub token: Option<Token>,
    /// The row, canonical JSON.
    pub row: RowJson,
}

/// `POSITION <stream> <instance> <prev_token> <new_token>`: the instance wrote no rows to the
/// stream in `(prev_token, new_token]`; its position is now `new_token`.
///
/// Format: `POSITION events master 53 53`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    /// The stream.
    pub stream: StreamName,
    /// The writer whose position this is.
    pub instance: InstanceName,
    /// The last token this writer published before.
    pub prev: Token,
    /// The writer's position now.
    pub new: Token,
}

/// Whether a user started or stopped syncing (`USER_SYNC`'s fourth field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserSyncState {
    /// `start`
    Start,
    /// `end`
    End,
}

/// `USER_SYNC <instance_id> <user_id> <device_id|None> <start|end> <last_sync_ms>`.
///
/// Format: `USER_SYNC 7c8f0a1b2c3d4e5f @alice:example.com ABCDEFGHIJ start 1700000000123`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserSync {
    /// The sending process's random instance id (not its instance name).
    pub instance_id: String,
    /// The user.
    pub user_id: String,
    /// The device, `None` on the wire when absent.
    pub device_id: Option<String>,
    /// Started or stopped syncing.
    pub state: UserSyncState,
    /// Milliseconds since the epoch of the last sync.
    pub last_sync_ms: i64,
}

/// `FEDERATION_ACK <instance_name> <token>`.
///
/// Format: `FEDERATION_ACK federation_sender1 1234`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FederationAck {
    /// The federation sender acknowledging.
    pub instance: InstanceName,
    /// The `federation` stream token processed.
    pub token: Token,
}

/// `USER_IP <user_id> [access_token, ip, user_agent, device_id|null, last_seen_ms]`.
///
/// Format: `USER_IP @alice:example.com ["syt_x","127.0.0.1","curl/7.88.1","ABCDEFGHIJ",1700000000789]`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserIp {
    /// The user seen.
    pub user_id: String,
    /// The access token used.
    pub access_token: String,
    /// The client's IP address.
    pub ip: String,
    /// The client's user agent.
    pub user_agent: String,
    /// The device, if known.
    pub device_id: Option<String>,
    /// Milliseconds since the epoch.
    pub last_seen_ms: i64,
}

/// `LOCK_RELEASED [instance, lock_name, lock_key]`.
///
/// Format: `LOCK_RELEASED ["master","pusher_lock","@alice:example.com"]`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockReleased {
    /// The instance that released the lock.
    pub instance: String,
    /// The lock's name.
    pub lock_name: String,
    /// The lock's key.
    pub lock_key: String,
}

/// The name of a command, as the first field of its line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CommandName {
    /// `SERVER`
    Server,
    /// `RDATA`
    Rdata,
    /// `POSITION`
    Position,
    /// `ERROR`
    Error,
    /// `PING`
    Ping,
    /// `NAME`
    Name,
    /// `REPLICATE`
    Replicate,
    /// `USER_SYNC`
    UserSync,
    /// `CLEAR_USER_SYNC`
    ClearUserSync,
    /// `FEDERATION_ACK`
    FederationAck,
    /// `USER_IP`
    UserIp,
    /// `REMOTE_SERVER_UP`
    RemoteServerUp,
    /// `LOCK_RELEASED`
    LockReleased,
    /// `NEW_ACTIVE_TASK` (Redis only: in neither TCP direction's whitelist)
    NewActiveTask,
    /// `CANCEL_TASK` (Redis only)
    CancelTask,
}

/// Any command, with no direction: what a Redis subscriber may see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `SERVER <server_name>`: the writer's `server_name`, sent first on connect.
    ///
    /// Format: `SERVER example.com`
    Server(String),
    /// `RDATA <stream> <instance> <token|batch> <row_json>`: one stream row.
    ///
    /// Format: `RDATA caches master 1044 ["get_user_by_id",["@alice:example.com"],1700000000000]`
    Rdata(Rdata),
    /// `POSITION <stream> <instance> <prev_token> <new_token>`: a writer's position.
    ///
    /// Format: `POSITION events master 53 53`
    Position(Position),
    /// `ERROR <text>`: the sender is about to close (or, received, is only logged).
    ///
    /// Format: `ERROR invalid command: RDATA`
    Error(String),
    /// `PING <text>` (Synapse sends a millisecond timestamp); keeps the connection alive.
    ///
    /// Format: `PING 1700000000000`
    Ping(String),
    /// `NAME <client_name>`: the client's name, for the server's logs.
    ///
    /// Format: `NAME generic_worker1`
    Name(String),
    /// `REPLICATE `: asks for a `POSITION` of every stream (arguments are ignored).
    ///
    /// Format: `REPLICATE `
    Replicate,
    /// `USER_SYNC <instance_id> <user_id> <device_id|None> <start|end> <last_sync_ms>`.
    ///
    /// Format: `USER_SYNC 7c8f0a1b2c3d4e5f @alice:example.com None end 1700000000456`
    UserSync(UserSync),
    /// `CLEAR_USER_SYNC <instance_id>`: drop every sync of a stopping process.
    ///
    /// Format: `CLEAR_USER_SYNC 7c8f0a1b2c3d4e5f`
    ClearUserSync(String),
    /// `FEDERATION_ACK <instance_name> <token>`.
    ///
    /// Format: `FEDERATION_ACK federation_sender1 1234`
    FederationAck(FederationAck),
    /// `USER_IP <user_id> <json array>`: a client request was seen.
    ///
    /// Format: `USER_IP @bob:example.com ["syt_x","::1","Element/1.11",null,1700000001000]`
    UserIp(UserIp),
    /// `REMOTE_SERVER_UP <server_name>`: reset federation backoff for it.
    ///
    /// Format: `REMOTE_SERVER_UP matrix.org`
    RemoteServerUp(String),
    /// `LOCK_RELEASED <json array>`: a cross-worker lock was released.
    ///
    /// Format: `LOCK_RELEASED ["master","pusher_lock","@alice:example.com"]`
    LockReleased(LockReleased),
    /// `NEW_ACTIVE_TASK <task_id>`: a scheduled task was added (Redis only).
    ///
    /// Format: `NEW_ACTIVE_TASK GjBkXqPvAVwFhiSn`
    NewActiveTask(String),
    /// `CANCEL_TASK <task_id>`: a scheduled task was cancelled (Redis only).
    ///
    /// Format: `CANCEL_TASK GjBkXqPvAVwFhiSn`
    CancelTask(String),
}

/// A command the TCP server (the writer) may send, and so the only ones a client accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerCommand {
    /// `SERVER <server_name>`: the writer's `server_name`, sent first on connect.
    ///
    /// Format: `SERVER example.com`
    Server(String),
    /// `RDATA <stream> <instance> <token|batch> <row_json>`: one stream row.
    ///
    /// Format: `RDATA caches master 1044 ["get_user_by_id",["@alice:example.com"],1700000000000]`
    Rdata(Rdata),
    /// `POSITION <stream> <instance> <prev_token> <new_token>`: a writer's position.
    ///
    /// Format: `POSITION events master 53 53`
    Position(Position),
    /// `ERROR <text>`: the sender is about to close (or, received, is only logged).
    ///
    /// Format: `ERROR invalid command: RDATA`
    Error(String),
    /// `PING <text>` (Synapse sends a millisecond timestamp); keeps the connection alive.
    ///
    /// Format: `PING 1700000000000`
    Ping(String),
    /// `REMOTE_SERVER_UP <server_name>`: reset federation backoff for it.
    ///
    /// Format: `REMOTE_SERVER_UP matrix.org`
    RemoteServerUp(String),
    /// `LOCK_RELEASED <json array>`: a cross-worker lock was released.
    ///
    /// Format: `LOCK_RELEASED ["master","pusher_lock","@alice:example.com"]`
    LockReleased(LockReleased),
}

/// A command a TCP client (a reader) may send, and so the only ones the server accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientCommand {
    /// `NAME <client_name>`: the client's name, for the server's logs.
    ///
    /// Format: `NAME generic_worker1`
    Name(String),
    /// `REPLICATE `: asks for a `POSITION` of every stream (arguments are ignored).
    ///
    /// Format: `REPLICATE `
    Replicate,
    /// `PING <text>` (Synapse sends a millisecond timestamp); keeps the connection alive.
    ///
    /// Format: `PING 1700000000000`
    Ping(String),
    /// `USER_SYNC <instance_id> <user_id> <device_id|None> <start|end> <last_sync_ms>`.
    ///
    /// Format: `USER_SYNC 7c8f0a1b2c3d4e5f @alice:example.com None end 1700000000456`
    UserSync(UserSync),
    /// `CLEAR_USER_SYNC <instance_id>`: drop every sync of a stopping process.
    ///
    /// Format: `CLEAR_USER_SYNC 7c8f0a1b2c3d4e5f`
    ClearUserSync(String),
    /// `FEDERATION_ACK <instance_name> <token>`.
    ///
    /// Format: `FEDERATION_ACK federation_sender1 1234`
    FederationAck(FederationAck),
    /// `USER_IP <user_id> <json array>`: a client request was seen.
    ///
    /// Format: `USER_IP @bob:example.com ["syt_x","::1","Element/1.11",null,1700000001000]`
    UserIp(UserIp),
    /// `ERROR <text>`: the sender is about to close (or, received, is only logged).
    ///
    /// Format: `ERROR invalid command: RDATA`
    Error(String),
    /// `REMOTE_SERVER_UP <server_name>`: reset federation backoff for it.
    ///
    /// Format: `REMOTE_SERVER_UP matrix.org`
    RemoteServerUp(String),
    /// `LOCK_RELEASED <json array>`: a cross-worker lock was released.
    ///
    /// Format: `LOCK_RELEASED ["master","pusher_lock","@alice:example.com"]`
    LockReleased(LockReleased),
}

/// Why a line could not be decoded. Over TCP every variant means: send `ERROR` and close.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The line is not UTF-8.
    #[error("line is not UTF-8")]
    NotUtf8,
    /// The first field names no command (case-sensitive), including an empty line.
    #[error("unknown command {name:?}")]
    UnknownCommand {
        /// The first field, lossily decoded and cut to 64 bytes.
        name: String,
    },
    /// A known command that this side must not receive over TCP.
    #[error("invalid command: {}", name.as_str())]
    WrongDirection {
        /// The command received.
        name: CommandName,
    },
    /// A known command whose arguments do not parse.
    #[error("malformed {}: {reason}", command.as_str())]
    Malformed {
        /// The command.
        command: CommandName,
        /// What was wrong, for the `ERROR` line and logs.
        reason: String,
    },
}

/// A command that cannot be sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The encoded line would exceed [`crate::MAX_LINE_LENGTH`] bytes.
    #[error("{} line of {len} bytes exceeds the {max}-byte cap", command.as_str())]
    TooLong {
        /// The command.
        command: CommandName,
        /// Its encoded length without the newline.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// A free-text field contains a newline, which would split the line.
    #[error("{} argument contains a newline", command.as_str())]
    Newline {
        /// The command.
        command: CommandName,
    },
    /// A field holds a value that its wire form cannot carry (it would decode differently):
    /// a space inside a space-delimited field, or a `USER_SYNC` device id of `None` or empty.
    #[error("{} field {field} cannot be encoded: {reason}", command.as_str())]
    Unrepresentable {
        /// The command.
        command: CommandName,
        /// The field, as named in the command's struct.
        field: &'static str,
        /// Why it cannot be written.
        reason: &'static str,
    },
}

impl CommandName {
    /// Every command, in declaration order.
    pub const ALL: [CommandName; 15] = [
        CommandName::Server,
        CommandName::Rdata,
        CommandName::Position,
        CommandName::Error,
        CommandName::Ping,
        CommandName::Name,
        CommandName::Replicate,
        CommandName::UserSync,
        CommandName::ClearUserSync,
        CommandName::FederationAck,
        CommandName::UserIp,
        CommandName::RemoteServerUp,
        CommandName::LockReleased,
        CommandName::NewActiveTask,
        CommandName::CancelTask,
    ];

    /// The name as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandName::Server => "SERVER",
            CommandName::Rdata => "RDATA",
            CommandName::Position => "POSITION",
            CommandName::Error => "ERROR",
            CommandName::Ping => "PING",
            CommandName::Name => "NAME",
            CommandName::Replicate => "REPLICATE",
            CommandName::UserSync => "USER_SYNC",
            CommandName::ClearUserSync => "CLEAR_USER_SYNC",
            CommandName::FederationAck => "FEDERATION_ACK",
            CommandName::UserIp => "USER_IP",
            CommandName::RemoteServerUp => "REMOTE_SERVER_UP",
            CommandName::LockReleased => "LOCK_RELEASED",
            CommandName::NewActiveTask => "NEW_ACTIVE_TASK",
            CommandName::CancelTask => "CANCEL_TASK",
        }
    }

    /// The command a line's first field names; exact and case-sensitive, as Synapse matches.
    pub fn from_wire(name: &str) -> Option<Self> {
        Some(match name {
            "SERVER" => CommandName::Server,
            "RDATA" => CommandName::Rdata,
            "POSITION" => CommandName::Position,
            "ERROR" => CommandName::Error,
            "PING" => CommandName::Ping,
            "NAME" => CommandName::Name,
            "REPLICATE" => CommandName::Replicate,
            "USER_SYNC" => CommandName::UserSync,
            "CLEAR_USER_SYNC" => CommandName::ClearUserSync,
            "FEDERATION_ACK" => CommandName::FederationAck,
            "USER_IP" => CommandName::UserIp,
            "REMOTE_SERVER_UP" => CommandName::RemoteServerUp,
            "LOCK_RELEASED" => CommandName::LockReleased,
            "NEW_ACTIVE_TASK" => CommandName::NewActiveTask,
            "CANCEL_TASK" => CommandName::CancelTask,
            _ => return None,
        })
    }

    /// Whether the TCP server may send it, so a TCP client accepts it (Synapse's
    /// `VALID_SERVER_COMMANDS`).
    pub fn server_may_send(self) -> bool {
        matches!(
            self,
            CommandName::Server
                | CommandName::Rdata
                | CommandName::Position
                | CommandName::Error
                | CommandName::Ping
                | CommandName::RemoteServerUp
                | CommandName::LockReleased
        )
    }

    /// Whether a TCP client may send it, so the TCP server accepts it (Synapse's
    /// `VALID_CLIENT_COMMANDS`).
    pub fn client_may_send(self) -> bool {
        matches!(
            self,
            CommandName::Name
                | CommandName::Replicate
                | CommandName::Ping
                | CommandName::UserSync
                | CommandName::ClearUserSync
                | CommandName::FederationAck
                | CommandName::UserIp
                | CommandName::Error
                | CommandName::RemoteServerUp
                | CommandName::LockReleased
        )
    }
}

impl std::fmt::Display for CommandName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a received line is empty or only ASCII whitespace (what Python's `bytes.strip()`
/// removes). Receivers skip such lines before decoding, as Synapse does; [`Command::decode`]
/// itself rejects an empty line.
pub fn is_blank(line: &[u8]) -> bool {
    line.iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c'))
}

/// How much of the offending line an `ERROR` text quotes.
const ERROR_LINE_EXCERPT: usize = 200;

impl DecodeError {
    /// The text of the `ERROR` line to send a TCP peer before closing, as Synapse words it:
    /// `invalid command: <NAME>` for [`DecodeError::WrongDirection`], otherwise
    /// `failed to parse line: <reason> (<line>):` with the line quoted and cut to 200 bytes
    /// (Synapse's trailing colon included). Never contains a newline.
    pub fn error_text(&self, line: &[u8]) -> String {
        let text = match self {
            DecodeError::WrongDirection { name } => format!("invalid command: {name}"),
            other => {
                let excerpt = excerpt(line, ERROR_LINE_EXCERPT);
                format!("failed to parse line: {other} ({excerpt:?}):")
            }
        };
        // Every user-supplied part above is Debug-quoted already; this is belt and braces.
        text.replace(['\n', '\r'], " ")
    }
}

/// At most `max` bytes of `line`, cut at a character boundary, lossily decoded.
pub(crate) fn excerpt(line: &[u8], max: usize) -> String {
    let mut end = line.len().min(max);
    if let Ok(text) = std::str::from_utf8(line) {
        while !text.is_char_boundary(end) {
            end -= 1;
        }
    }
    String::from_utf8_lossy(&line[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn error_text(line: &[u8]) -> String {
        let error = Command::decode(&Bytes::copy_from_slice(line)).expect_err("invalid line");
        error.error_text(line)
    }

    #[test]
    fn wrong_direction_text_is_synapses() {
        let error = DecodeError::WrongDirection {
            name: CommandName::Rdata,
        };
        assert_eq!(error.error_text(b"RDATA ..."), "invalid command: RDATA");
    }

    #[test]
    fn parse_failure_text_quotes_reason_and_line() {
        assert_eq!(
            error_text(b"FOO bar"),
            r#"failed to parse line: unknown command "FOO" ("FOO bar"):"#
        );
        assert_eq!(
            error_text(b"POSITION events master 1 x"),
            r#"failed to parse line: malformed POSITION: new_token "x" is not an integer ("POSITION events master 1 x"):"#
        );
        assert_eq!(
            error_text(b"PING \xff"),
            "failed to parse line: line is not UTF-8 (\"PING \u{fffd}\"):"
        );
    }

    #[test]
    fn parse_failure_text_is_one_bounded_line() {
        let mut line = b"RDATA s i 1 [\"".to_vec();
        line.extend("é\n".repeat(5000).as_bytes());
        let text = error_text(&line);
        assert!(!text.contains(['\n', '\r']), "{text}");
        assert!(text.len() < 400, "{}", text.len());
        // Cut at a character boundary: no replacement character from a split `é`.
        assert!(!text.contains('\u{fffd}'), "{text}");

        let text = error_text(format!("{}\r\n", "x".repeat(300)).as_bytes());
        assert!(!text.contains(['\n', '\r']), "{text}");
    }

    #[test]
    fn blank_lines_are_ascii_whitespace_only() {
        assert!(is_blank(b""));
        assert!(is_blank(b" \t\r\n\x0b\x0c"));
        assert!(!is_blank(b" x "));
        assert!(!is_blank("\u{3000}".as_bytes()));
    }
}
