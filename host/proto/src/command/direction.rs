//! Conversions between [`Command`] and the direction-typed [`ServerCommand`] and
//! [`ClientCommand`]; a failed conversion yields the command's name, which is what
//! `ERROR invalid command: <NAME>` needs.

use super::{ClientCommand, Command, CommandName, ServerCommand};

impl From<ServerCommand> for Command {
    fn from(command: ServerCommand) -> Self {
        match command {
            ServerCommand::Server(text) => Command::Server(text),
            ServerCommand::Rdata(rdata) => Command::Rdata(rdata),
            ServerCommand::Position(position) => Command::Position(position),
            ServerCommand::Error(text) => Command::Error(text),
            ServerCommand::Ping(text) => Command::Ping(text),
            ServerCommand::RemoteServerUp(text) => Command::RemoteServerUp(text),
            ServerCommand::LockReleased(lock) => Command::LockReleased(lock),
        }
    }
}

impl From<ClientCommand> for Command {
    fn from(command: ClientCommand) -> Self {
        match command {
            ClientCommand::Name(text) => Command::Name(text),
            ClientCommand::Replicate => Command::Replicate,
            ClientCommand::Ping(text) => Command::Ping(text),
            ClientCommand::UserSync(sync) => Command::UserSync(sync),
            ClientCommand::ClearUserSync(text) => Command::ClearUserSync(text),
            ClientCommand::FederationAck(ack) => Command::FederationAck(ack),
            ClientCommand::UserIp(ip) => Command::UserIp(ip),
            ClientCommand::Error(text) => Command::Error(text),
            ClientCommand::RemoteServerUp(text) => Command::RemoteServerUp(text),
            ClientCommand::LockReleased(lock) => Command::LockReleased(lock),
        }
    }
}

impl TryFrom<Command> for ServerCommand {
    /// The name of a command the server may not send.
    type Error = CommandName;

    fn try_from(command: Command) -> Result<Self, CommandName> {
        Ok(match command {
            Command::Server(text) => ServerCommand::Server(text),
            Command::Rdata(rdata) => ServerCommand::Rdata(rdata),
            Command::Position(position) => ServerCommand::Position(position),
            Command::Error(text) => ServerCommand::Error(text),
            Command::Ping(text) => ServerCommand::Ping(text),
            Command::RemoteServerUp(text) => ServerCommand::RemoteServerUp(text),
            Command::LockReleased(lock) => ServerCommand::LockReleased(lock),
            other @ (Command::Name(_)
            | Command::Replicate
            | Command::UserSync(_)
            | Command::ClearUserSync(_)
            | Command::FederationAck(_)
            | Command::UserIp(_)
            | Command::NewActiveTask(_)
            | Command::CancelTask(_)) => return Err(other.name()),
        })
    }
}

impl TryFrom<Command> for ClientCommand {
    /// The name of a command a client may not send.
    type Error = CommandName;

    fn try_from(command: Command) -> Result<Self, CommandName> {
        Ok(match command {
            Command::Name(text) => ClientCommand::Name(text),
            Command::Replicate => ClientCommand::Replicate,
            Command::Ping(text) => ClientCommand::Ping(text),
            Command::UserSync(sync) => ClientCommand::UserSync(sync),
            Command::ClearUserSync(text) => ClientCommand::ClearUserSync(text),
            Command::FederationAck(ack) => ClientCommand::FederationAck(ack),
            Command::UserIp(ip) => ClientCommand::UserIp(ip),
            Command::Error(text) => ClientCommand::Error(text),
            Command::RemoteServerUp(text) => ClientCommand::RemoteServerUp(text),
            Command::LockReleased(lock) => ClientCommand::LockReleased(lock),
            other @ (Command::Server(_)
            | Command::Rdata(_)
            | Command::Position(_)
            | Command::NewActiveTask(_)
            | Command::CancelTask(_)) => return Err(other.name()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sample of every command, for checking the conversions against the whitelists.
    fn one_of_each() -> Vec<Command> {
        vec![
            Command::Server(String::new()),
            Command::Rdata(crate::command::Rdata {
                stream: crate::StreamName::new("s").expect("valid"),
                instance: crate::InstanceName::new("i").expect("valid"),
                token: None,
                row: crate::RowJson::parse(b"[]").expect("valid"),
            }),
            Command::Position(crate::command::Position {
                stream: crate::StreamName::new("s").expect("valid"),
                instance: crate::InstanceName::new("i").expect("valid"),
                prev: crate::Token(1),
                new: crate::Token(2),
            }),
            Command::Error(String::new()),
            Command::Ping(String::new()),
            Command::Name(String::new()),
            Command::Replicate,
            Command::UserSync(crate::command::UserSync {
                instance_id: "i".to_owned(),
                user_id: "u".to_owned(),
                device_id: None,
                state: crate::command::UserSyncState::Start,
                last_sync_ms: 0,
            }),
            Command::ClearUserSync(String::new()),
            Command::FederationAck(crate::command::FederationAck {
                instance: crate::InstanceName::new("i").expect("valid"),
                token: crate::Token(0),
            }),
            Command::UserIp(crate::command::UserIp {
                user_id: "u".to_owned(),
                access_token: String::new(),
                ip: String::new(),
                user_agent: String::new(),
                device_id: None,
                last_seen_ms: 0,
            }),
            Command::RemoteServerUp(String::new()),
            Command::LockReleased(crate::command::LockReleased {
                instance: String::new(),
                lock_name: String::new(),
                lock_key: String::new(),
            }),
            Command::NewActiveTask(String::new()),
            Command::CancelTask(String::new()),
        ]
    }

    #[test]
    fn conversions_follow_the_whitelists() {
        let commands = one_of_each();
        let names: Vec<_> = commands.iter().map(Command::name).collect();
        assert_eq!(names, CommandName::ALL);
        for command in commands {
            let name = command.name();
            match ServerCommand::try_from(command.clone()) {
                Ok(server) => {
                    assert!(name.server_may_send());
                    assert_eq!(server.name(), name);
                    assert_eq!(Command::from(server), command);
                }
                Err(rejected) => {
                    assert!(!name.server_may_send());
                    assert_eq!(rejected, name);
                }
            }
            match ClientCommand::try_from(command.clone()) {
                Ok(client) => {
                    assert!(name.client_may_send());
                    assert_eq!(client.name(), name);
                    assert_eq!(Command::from(client), command);
                }
                Err(rejected) => {
                    assert!(!name.client_may_send());
                    assert_eq!(rejected, name);
                }
            }
        }
    }

    #[test]
    fn names_round_trip_through_the_wire_form() {
        for name in CommandName::ALL {
            assert_eq!(CommandName::from_wire(name.as_str()), Some(name));
        }
        assert_eq!(CommandName::from_wire("rdata"), None);
        assert_eq!(CommandName::from_wire(""), None);
    }
}
