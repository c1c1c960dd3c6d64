//! Encoding commands into wire lines: `NAME + " " + arguments + "\n"`, as Synapse's `to_line`
//! writes them.

use super::{
    ClientCommand, Command, CommandName, EncodeError, FederationAck, LockReleased, Position, Rdata,
    ServerCommand, UserIp, UserSync, UserSyncState,
};
use crate::MAX_LINE_LENGTH;
use crate::json::push_str;

/// A borrowed command of either direction, so that all three enums share one encoder.
#[derive(Clone, Copy)]
enum CommandRef<'a> {
    Text(CommandName, &'a str),
    Rdata(&'a Rdata),
    Position(&'a Position),
    Replicate,
    UserSync(&'a UserSync),
    FederationAck(&'a FederationAck),
    UserIp(&'a UserIp),
    LockReleased(&'a LockReleased),
}

impl CommandRef<'_> {
    fn name(self) -> CommandName {
        match self {
            CommandRef::Text(name, _) => name,
            CommandRef::Rdata(_) => CommandName::Rdata,
            CommandRef::Position(_) => CommandName::Position,
            CommandRef::Replicate => CommandName::Replicate,
            CommandRef::UserSync(_) => CommandName::UserSync,
            CommandRef::FederationAck(_) => CommandName::FederationAck,
            CommandRef::UserIp(_) => CommandName::UserIp,
            CommandRef::LockReleased(_) => CommandName::LockReleased,
        }
    }

    /// Appends the line and its `\n` to `out`, or leaves `out` unchanged on error.
    fn encode(self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let command = self.name();
        self.check_fields()?;
        let start = out.len();
        out.extend_from_slice(command.as_str().as_bytes());
        out.push(b' ');
        self.write_args(out);
        let len = out.len() - start;
        let error = if memchr::memchr(b'\n', &out[start..]).is_some() {
            Some(EncodeError::Newline { command })
        } else if len > MAX_LINE_LENGTH {
            Some(EncodeError::TooLong {
                command,
                len,
                max: MAX_LINE_LENGTH,
            })
        } else {
            None
        };
        if let Some(error) = error {
            out.truncate(start);
            return Err(error);
        }
        out.push(b'\n');
        Ok(())
    }

    /// Rejects values whose wire form would decode to something else.
    fn check_fields(self) -> Result<(), EncodeError> {
        let command = self.name();
        let no_space = |field: &'static str, value: &str| {
            if value.contains(' ') {
                Err(EncodeError::Unrepresentable {
                    command,
                    field,
                    reason: "it contains a space, which would split it",
                })
            } else {
                Ok(())
            }
        };
        match self {
            CommandRef::UserSync(sync) => {
                no_space("instance_id", &sync.instance_id)?;
                no_space("user_id", &sync.user_id)?;
                if let Some(device) = &sync.device_id {
                    no_space("device_id", device)?;
                    if device.is_empty() || device == "None" {
                        return Err(EncodeError::Unrepresentable {
                            command,
                            field: "device_id",
                            reason: "an empty or `None` device id reads back as no device",
                        });
                    }
                }
                Ok(())
            }
            CommandRef::UserIp(ip) => no_space("user_id", &ip.user_id),
            // Stream and instance names cannot hold spaces (checked when built).
            _ => Ok(()),
        }
    }

    fn write_args(self, out: &mut Vec<u8>) {
        let mut ints = itoa::Buffer::new();
        match self {
            CommandRef::Text(_, text) => out.extend_from_slice(text.as_bytes()),
            CommandRef::Replicate => {}
            CommandRef::Rdata(rdata) => {
                out.extend_from_slice(rdata.stream.as_str().as_bytes());
                out.push(b' ');
                out.extend_from_slice(rdata.instance.as_str().as_bytes());
                out.push(b' ');
                match rdata.token {
                    Some(token) => out.extend_from_slice(ints.format(token.0).as_bytes()),
                    None => out.extend_from_slice(b"batch"),
                }
                out.push(b' ');
                out.extend_from_slice(rdata.row.as_bytes());
            }
            CommandRef::Position(position) => {
                out.extend_from_slice(position.stream.as_str().as_bytes());
                out.push(b' ');
                out.extend_from_slice(position.instance.as_str().as_bytes());
                out.push(b' ');
                out.extend_from_slice(ints.format(position.prev.0).as_bytes());
                out.push(b' ');
                out.extend_from_slice(ints.format(position.new.0).as_bytes());
            }
            CommandRef::UserSync(sync) => {
                out.extend_from_slice(sync.instance_id.as_bytes());
                out.push(b' ');
                out.extend_from_slice(sync.user_id.as_bytes());
                out.push(b' ');
                out.extend_from_slice(sync.device_id.as_deref().unwrap_or("None").as_bytes());
                out.push(b' ');
                out.extend_from_slice(match sync.state {
                    UserSyncState::Start => b"start",
                    UserSyncState::End => b"end",
                });
                out.push(b' ');
                out.extend_from_slice(ints.format(sync.last_sync_ms).as_bytes());
            }
            CommandRef::FederationAck(ack) => {
                out.extend_from_slice(ack.instance.as_str().as_bytes());
                out.push(b' ');
                out.extend_from_slice(ints.format(ack.token.0).as_bytes());
            }
            CommandRef::UserIp(ip) => {
                out.extend_from_slice(ip.user_id.as_bytes());
                out.extend_from_slice(b" [");
                push_str(out, &ip.access_token);
                out.push(b',');
                push_str(out, &ip.ip);
                out.push(b',');
                push_str(out, &ip.user_agent);
                out.push(b',');
                match &ip.device_id {
                    Some(device) => push_str(out, device),
                    None => out.extend_from_slice(b"null"),
                }
                out.push(b',');
                out.extend_from_slice(ints.format(ip.last_seen_ms).as_bytes());
                out.push(b']');
            }
            CommandRef::LockReleased(lock) => {
                out.push(b'[');
                push_str(out, &lock.instance);
                out.push(b',');
                push_str(out, &lock.lock_name);
                out.push(b',');
                push_str(out, &lock.lock_key);
                out.push(b']');
            }
        }
    }
}

impl Command {
    fn as_ref(&self) -> CommandRef<'_> {
        match self {
            Command::Server(text) => CommandRef::Text(CommandName::Server, text),
            Command::Rdata(rdata) => CommandRef::Rdata(rdata),
            Command::Position(position) => CommandRef::Position(position),
            Command::Error(text) => CommandRef::Text(CommandName::Error, text),
            Command::Ping(text) => CommandRef::Text(CommandName::Ping, text),
            Command::Name(text) => CommandRef::Text(CommandName::Name, text),
            Command::Replicate => CommandRef::Replicate,
            Command::UserSync(sync) => CommandRef::UserSync(sync),
            Command::ClearUserSync(text) => CommandRef::Text(CommandName::ClearUserSync, text),
            Command::FederationAck(ack) => CommandRef::FederationAck(ack),
            Command::UserIp(ip) => CommandRef::UserIp(ip),
            Command::RemoteServerUp(text) => CommandRef::Text(CommandName::RemoteServerUp, text),
            Command::LockReleased(lock) => CommandRef::LockReleased(lock),
            Command::NewActiveTask(text) => CommandRef::Text(CommandName::NewActiveTask, text),
            Command::CancelTask(text) => CommandRef::Text(CommandName::CancelTask, text),
        }
    }

    /// Appends the wire line and its `\n` to `out`; on error `out` is left as it was.
    ///
    /// Fails if the line (without `\n`) would exceed [`MAX_LINE_LENGTH`], if a free-text field
    /// holds a newline, or if a field cannot be represented (see [`EncodeError`]).
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.as_ref().encode(out)
    }

    /// The command's name.
    pub fn name(&self) -> CommandName {
        self.as_ref().name()
    }
}

impl ServerCommand {
    fn as_ref(&self) -> CommandRef<'_> {
        match self {
            ServerCommand::Server(text) => CommandRef::Text(CommandName::Server, text),
            ServerCommand::Rdata(rdata) => CommandRef::Rdata(rdata),
            ServerCommand::Position(position) => CommandRef::Position(position),
            ServerCommand::Error(text) => CommandRef::Text(CommandName::Error, text),
            ServerCommand::Ping(text) => CommandRef::Text(CommandName::Ping, text),
            ServerCommand::RemoteServerUp(text) => {
                CommandRef::Text(CommandName::RemoteServerUp, text)
            }
            ServerCommand::LockReleased(lock) => CommandRef::LockReleased(lock),
        }
    }

    /// Appends the wire line and its `\n` to `out`, as [`Command::encode`].
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.as_ref().encode(out)
    }

    /// The command's name.
    pub fn name(&self) -> CommandName {
        self.as_ref().name()
    }
}

impl ClientCommand {
    fn as_ref(&self) -> CommandRef<'_> {
        match self {
            ClientCommand::Name(text) => CommandRef::Text(CommandName::Name, text),
            ClientCommand::Replicate => CommandRef::Replicate,
            ClientCommand::Ping(text) => CommandRef::Text(CommandName::Ping, text),
            ClientCommand::UserSync(sync) => CommandRef::UserSync(sync),
            ClientCommand::ClearUserSync(text) => {
                CommandRef::Text(CommandName::ClearUserSync, text)
            }
            ClientCommand::FederationAck(ack) => CommandRef::FederationAck(ack),
            ClientCommand::UserIp(ip) => CommandRef::UserIp(ip),
            ClientCommand::Error(text) => CommandRef::Text(CommandName::Error, text),
            ClientCommand::RemoteServerUp(text) => {
                CommandRef::Text(CommandName::RemoteServerUp, text)
            }
            ClientCommand::LockReleased(lock) => CommandRef::LockReleased(lock),
        }
    }

    /// Appends the wire line and its `\n` to `out`, as [`Command::encode`].
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.as_ref().encode(out)
    }

    /// The command's name.
    pub fn name(&self) -> CommandName {
        self.as_ref().name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::RowJson;
    use crate::token::{InstanceName, StreamName, Token};

    fn encoded(command: &Command) -> Result<String, EncodeError> {
        let mut out = b"previous\n".to_vec();
        let result = command.encode(&mut out);
        let text = String::from_utf8(out).expect("UTF-8");
        match result {
            Ok(()) => Ok(text["previous\n".len()..].to_owned()),
            Err(e) => {
                assert_eq!(text, "previous\n", "out must be left unchanged on error");
                Err(e)
            }
        }
    }

    fn ping(len: usize) -> Command {
        Command::Ping("x".repeat(len - "PING ".len()))
    }

    #[test]
    fn zero_argument_commands_keep_their_space() {
        assert_eq!(encoded(&Command::Replicate).as_deref(), Ok("REPLICATE \n"));
        assert_eq!(
            encoded(&Command::Ping(String::new())).as_deref(),
            Ok("PING \n")
        );
    }

    #[test]
    fn line_cap_is_inclusive() {
        assert!(encoded(&ping(MAX_LINE_LENGTH)).is_ok());
        assert_eq!(
            encoded(&ping(MAX_LINE_LENGTH + 1)),
            Err(EncodeError::TooLong {
                command: CommandName::Ping,
                len: MAX_LINE_LENGTH + 1,
                max: MAX_LINE_LENGTH
            })
        );
    }

    #[test]
    fn newlines_and_unrepresentable_fields_are_refused() {
        assert_eq!(
            encoded(&Command::Error("a\nb".to_owned())),
            Err(EncodeError::Newline {
                command: CommandName::Error
            })
        );
        let sync = |device: Option<&str>, user: &str| {
            Command::UserSync(UserSync {
                instance_id: "i".to_owned(),
                user_id: user.to_owned(),
                device_id: device.map(str::to_owned),
                state: UserSyncState::End,
                last_sync_ms: 5,
            })
        };
        assert_eq!(
            encoded(&sync(None, "@u:x")).as_deref(),
            Ok("USER_SYNC i @u:x None end 5\n")
        );
        for bad in [
            sync(Some("None"), "@u:x"),
            sync(Some(""), "@u:x"),
            sync(None, "@u x"),
        ] {
            assert!(
                matches!(encoded(&bad), Err(EncodeError::Unrepresentable { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn json_arguments_are_canonical() {
        let rdata = Command::Rdata(Rdata {
            stream: StreamName::new("caches").expect("valid"),
            instance: InstanceName::new("master").expect("valid"),
            token: Some(Token(-3)),
            row: RowJson::parse(b"[\"caf\xc3\xa9\", null]").expect("valid"),
        });
        assert_eq!(
            encoded(&rdata).as_deref(),
            Ok("RDATA caches master -3 [\"caf\\u00e9\",null]\n")
        );
        let ip = Command::UserIp(UserIp {
            user_id: "@u:x".to_owned(),
            access_token: "t".to_owned(),
            ip: "::1".to_owned(),
            user_agent: "\u{1F600}\n".to_owned(),
            device_id: None,
            last_seen_ms: 1,
        });
        assert_eq!(
            encoded(&ip).as_deref(),
            Ok("USER_IP @u:x [\"t\",\"::1\",\"\\ud83d\\ude00\\n\",null,1]\n")
        );
    }
}
