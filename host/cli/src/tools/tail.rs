//! `streamhost tail`: connects to a writer as a replication client and prints every command
//! received (`<`) and sent (`>`), one per line, as wire text or as JSON objects.
//!
//! Text form: `< RDATA events master 12 ["x"]`, `> REPLICATE`; a line that does not decode is
//! printed as `! <error>: <line>`. JSON form: one object per line with `dir` (`in`, `out` or
//! `error`), `command` and the command's fields (`RDATA`'s `row` is the row's JSON value,
//! `token` is `null` for `batch`). See `docs/reader.md`.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;
use streamhost_proto::{ClientCommand, LineFramer, MAX_LINE_LENGTH, ServerCommand};
use streamhost_server::clock::unix_ms;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Send `PING` after this long without sending, so the writer's ping timeout never fires
/// (Synapse's `PING_TIME`).
const PING_INTERVAL: Duration = Duration::from_secs(5);

/// Longest wait for the TCP connection to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to the writer at `connect` (`HOST:PORT`), sends `NAME <name>`, `PING` and
/// `REPLICATE`, and prints the traffic to `out` until the writer closes the connection or
/// `shutdown` fires. A line that does not decode is printed, answered with `ERROR`, and
/// returned as an error.
pub async fn run(
    connect: String,
    name: String,
    json: bool,
    shutdown: CancellationToken,
    out: impl Write + Send,
) -> anyhow::Result<()> {
    let stream = tokio::select! {
        () = shutdown.cancelled() => return Ok(()),
        stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&connect)) => stream
            .map_err(|_| anyhow::anyhow!("connecting to {connect}: timed out"))?
            .with_context(|| format!("connecting to {connect}"))?,
    };
    let _ = stream.set_nodelay(true);
    let (mut reader, writer) = stream.into_split();
    let mut tail = Tail {
        out,
        json,
        writer,
        last_sent: Instant::now(),
    };
    tail.send(&[
        ClientCommand::Name(name),
        ClientCommand::Ping(unix_ms().to_string()),
        ClientCommand::Replicate,
    ])
    .await?;

    let mut framer = LineFramer::new(MAX_LINE_LENGTH);
    loop {
        loop {
            let line = match framer.next_line() {
                Ok(Some(line)) => line,
                Ok(None) => break,
                Err(e) => {
                    let error = e.to_string();
                    tail.print_error(&error, b"")?;
                    tail.send(&[ClientCommand::Error(error.clone())]).await?;
                    anyhow::bail!("the writer sent a line over {MAX_LINE_LENGTH} bytes");
                }
            };
            if streamhost_proto::is_blank(&line) {
                continue;
            }
            match ServerCommand::decode(&line) {
                Ok(command) => tail.print_in(&command, &line)?,
                Err(e) => {
                    tail.print_error(&e.to_string(), &line)?;
                    tail.send(&[ClientCommand::Error(e.error_text(&line))])
                        .await?;
                    anyhow::bail!("the writer sent an undecodable line: {e}");
                }
            }
        }
        framer.buffer_mut().reserve(64 * 1024);
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            read = reader.read_buf(framer.buffer_mut()) => {
                if read.context("reading from the writer")? == 0 {
                    return Ok(());
                }
            }
            () = tokio::time::sleep_until(tail.last_sent + PING_INTERVAL) => {
                tail.send(&[ClientCommand::Ping(unix_ms().to_string())]).await?;
            }
        }
    }
}

struct Tail<W> {
    out: W,
    json: bool,
    writer: tokio::net::tcp::OwnedWriteHalf,
    last_sent: Instant,
}

impl<W: Write> Tail<W> {
    async fn send(&mut self, commands: &[ClientCommand]) -> anyhow::Result<()> {
        let mut buffer = Vec::new();
        for command in commands {
            let start = buffer.len();
            command.encode(&mut buffer).context("encoding a command")?;
            let line = &buffer[start..];
            let line = line.strip_suffix(b"\n").unwrap_or(line);
            if self.json {
                self.print_json(&JsonLine {
                    dir: "out",
                    command: json_out(command),
                })?;
            } else {
                self.print_text('>', line)?;
            }
        }
        self.writer
            .write_all(&buffer)
            .await
            .context("writing to the writer")?;
        self.last_sent = Instant::now();
        Ok(())
    }

    fn print_in(&mut self, command: &ServerCommand, line: &Bytes) -> anyhow::Result<()> {
        if self.json {
            let rendered = json_in(command)?;
            self.print_json(&JsonLine {
                dir: "in",
                command: rendered,
            })
        } else {
            self.print_text('<', line)
        }
    }

    fn print_error(&mut self, error: &str, line: &[u8]) -> anyhow::Result<()> {
        let text = String::from_utf8_lossy(line);
        if self.json {
            self.print_json(&JsonLine {
                dir: "error",
                command: JsonCommand::Malformed { error, line: &text },
            })
        } else {
            writeln!(self.out, "! {error}: {text}")?;
            self.out.flush()?;
            Ok(())
        }
    }

    fn print_text(&mut self, marker: char, line: &[u8]) -> anyhow::Result<()> {
        let text = String::from_utf8_lossy(line);
        writeln!(self.out, "{marker} {}", text.trim_end())?;
        self.out.flush()?;
        Ok(())
    }

    fn print_json(&mut self, line: &JsonLine<'_>) -> anyhow::Result<()> {
        serde_json::to_writer(&mut self.out, line)?;
        self.out.write_all(b"\n")?;
        self.out.flush()?;
        Ok(())
    }
}

/// One JSON output line.
#[derive(Serialize)]
struct JsonLine<'a> {
    dir: &'static str,
    #[serde(flatten)]
    command: JsonCommand<'a>,
}

/// A command's fields in the JSON output.
#[derive(Serialize)]
#[serde(tag = "command")]
enum JsonCommand<'a> {
    #[serde(rename = "SERVER")]
    Server { name: &'a str },
    #[serde(rename = "RDATA")]
    Rdata {
        stream: &'a str,
        instance: &'a str,
        token: Option<i64>,
        row: &'a RawValue,
    },
    #[serde(rename = "POSITION")]
    Position {
        stream: &'a str,
        instance: &'a str,
        prev: i64,
        new: i64,
    },
    #[serde(rename = "ERROR")]
    Error { text: &'a str },
    #[serde(rename = "PING")]
    Ping { data: &'a str },
    #[serde(rename = "REMOTE_SERVER_UP")]
    RemoteServerUp { server_name: &'a str },
    #[serde(rename = "LOCK_RELEASED")]
    LockReleased {
        instance: &'a str,
        lock_name: &'a str,
        lock_key: &'a str,
    },
    #[serde(rename = "NAME")]
    Name { name: &'a str },
    #[serde(rename = "REPLICATE")]
    Replicate {},
    /// A sent command tail does not itself send; printed by name only.
    #[serde(rename = "OTHER")]
    Other { name: &'static str },
    /// A line that did not decode (`dir` is `error`).
    #[serde(rename = "MALFORMED")]
    Malformed { error: &'a str, line: &'a str },
}

fn json_in(command: &ServerCommand) -> anyhow::Result<JsonCommand<'_>> {
    Ok(match command {
        ServerCommand::Server(name) => JsonCommand::Server { name },
        ServerCommand::Rdata(rdata) => JsonCommand::Rdata {
            stream: rdata.stream.as_str(),
            instance: rdata.instance.as_str(),
            token: rdata.token.map(|t| t.0),
            row: serde_json::from_str(rdata.row.as_str()).context("re-reading a decoded row")?,
        },
        ServerCommand::Position(p) => JsonCommand::Position {
            stream: p.stream.as_str(),
            instance: p.instance.as_str(),
            prev: p.prev.0,
            new: p.new.0,
        },
        ServerCommand::Error(text) => JsonCommand::Error { text },
        ServerCommand::Ping(data) => JsonCommand::Ping { data },
        ServerCommand::RemoteServerUp(server_name) => JsonCommand::RemoteServerUp { server_name },
        ServerCommand::LockReleased(l) => JsonCommand::LockReleased {
            instance: &l.instance,
            lock_name: &l.lock_name,
            lock_key: &l.lock_key,
        },
    })
}

fn json_out(command: &ClientCommand) -> JsonCommand<'_> {
    match command {
        ClientCommand::Name(name) => JsonCommand::Name { name },
        ClientCommand::Replicate => JsonCommand::Replicate {},
        ClientCommand::Ping(data) => JsonCommand::Ping { data },
        ClientCommand::Error(text) => JsonCommand::Error { text },
        ClientCommand::UserSync(_) => JsonCommand::Other { name: "USER_SYNC" },
        ClientCommand::ClearUserSync(_) => JsonCommand::Other {
            name: "CLEAR_USER_SYNC",
        },
        ClientCommand::FederationAck(_) => JsonCommand::Other {
            name: "FEDERATION_ACK",
        },
        ClientCommand::UserIp(_) => JsonCommand::Other { name: "USER_IP" },
        ClientCommand::RemoteServerUp(server_name) => JsonCommand::RemoteServerUp { server_name },
        ClientCommand::LockReleased(l) => JsonCommand::LockReleased {
            instance: &l.instance,
            lock_name: &l.lock_name,
            lock_key: &l.lock_key,
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::net::TcpListener;

    use super::*;

    /// Accepts one client, reads its three opening lines, sends `script`, reads one more line
    /// if `read_reply`, then closes. Returns what the client sent.
    async fn scripted_writer(
        script: &'static str,
        read_reply: bool,
    ) -> (String, tokio::task::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let (read, mut write) = socket.into_split();
            let mut lines = BufReader::new(read).lines();
            let mut received = Vec::new();
            for _ in 0..3 {
                received.push(lines.next_line().await.unwrap().unwrap());
            }
            write.write_all(script.as_bytes()).await.unwrap();
            if read_reply {
                received.push(lines.next_line().await.unwrap().unwrap());
            }
            received
        });
        (addr, task)
    }

    const SCRIPT: &str = "SERVER localhost\nPING 1700000000000\n\nPOSITION events master 1 1\n\
        RDATA events master batch [\"a\",1]\nRDATA events master 12 {\"k\":\"\\u00e9\"}\n";

    #[tokio::test]
    async fn prints_sent_and_received_commands_as_text() {
        let (addr, writer) = scripted_writer(SCRIPT, false).await;
        let mut out = Vec::new();
        run(
            addr,
            "tailer".into(),
            false,
            CancellationToken::new(),
            &mut out,
        )
        .await
        .unwrap();
        let sent = writer.await.unwrap();
        assert_eq!(sent[0], "NAME tailer");
        assert!(sent[1].starts_with("PING "));
        assert_eq!(sent[2], "REPLICATE ");
        let out = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "> NAME tailer");
        assert!(lines[1].starts_with("> PING "));
        assert_eq!(lines[2], "> REPLICATE");
        assert_eq!(
            &lines[3..],
            [
                "< SERVER localhost",
                "< PING 1700000000000",
                "< POSITION events master 1 1",
                "< RDATA events master batch [\"a\",1]",
                "< RDATA events master 12 {\"k\":\"\\u00e9\"}",
            ]
        );
    }

    #[tokio::test]
    async fn prints_one_json_object_per_command() {
        let (addr, writer) = scripted_writer(SCRIPT, false).await;
        let mut out = Vec::new();
        run(
            addr,
            "tailer".into(),
            true,
            CancellationToken::new(),
            &mut out,
        )
        .await
        .unwrap();
        writer.await.unwrap();
        let out = String::from_utf8(out).unwrap();
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines[0],
            serde_json::json!({"dir": "out", "command": "NAME", "name": "tailer"})
        );
        assert_eq!(
            lines[2],
            serde_json::json!({"dir": "out", "command": "REPLICATE"})
        );
        assert_eq!(
            lines[3],
            serde_json::json!({"dir": "in", "command": "SERVER", "name": "localhost"})
        );
        assert_eq!(
            lines[5],
            serde_json::json!({"dir": "in", "command": "POSITION", "stream": "events", "instance": "master", "prev": 1, "new": 1})
        );
        // Rows are embedded exactly as they travelled.
        let raw: Vec<&str> = out.lines().collect();
        assert_eq!(
            raw[6],
            r#"{"dir":"in","command":"RDATA","stream":"events","instance":"master","token":null,"row":["a",1]}"#
        );
        assert_eq!(lines[7]["token"], 12);
        assert_eq!(lines[7]["row"], serde_json::json!({"k": "é"}));
    }

    #[tokio::test]
    async fn a_malformed_line_is_printed_answered_and_fails() {
        let (addr, writer) = scripted_writer("SERVER localhost\nBOGUS stuff\n", true).await;
        let mut out = Vec::new();
        let err = run(
            addr,
            "tailer".into(),
            false,
            CancellationToken::new(),
            &mut out,
        )
        .await
        .unwrap_err();
        assert!(format!("{err:#}").contains("undecodable"), "{err:#}");
        let sent = writer.await.unwrap();
        assert!(sent[3].starts_with("ERROR "), "{sent:?}");
        let out = String::from_utf8(out).unwrap();
        let last_lines: Vec<&str> = out.lines().rev().take(2).collect();
        assert!(last_lines[0].starts_with("> ERROR "), "{out}");
        assert!(
            last_lines[1].starts_with("! ") && last_lines[1].ends_with("BOGUS stuff"),
            "{out}"
        );
    }

    #[tokio::test]
    async fn shutdown_ends_a_quiet_tail() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let _server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(socket);
        });
        let shutdown = CancellationToken::new();
        let tail = tokio::spawn(run(addr, "t".into(), false, shutdown.clone(), Vec::new()));
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), tail)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}
