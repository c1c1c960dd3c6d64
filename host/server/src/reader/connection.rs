//! The replication client: connects to the writer, reconnects with backoff, and runs one TCP
//! session at a time (handshake, pings, decoding), queueing `RDATA` and `POSITION` for the
//! processor (docs/replication.md: "The TCP session", "Keep-alive and back-pressure",
//! "Errors").
//!
//! Backpressure: decoded commands go into a bounded channel. While it is full the session
//! stops reading the socket (it still sends `PING`s); the writer's send buffer then fills and
//! the writer closes the connection with `ERROR Failed to keep up`. The reader reconnects and
//! the `POSITION` rule fetches what it missed.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use streamhost_proto::{ClientCommand, LineFramer, MAX_LINE_LENGTH, ServerCommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::inbound::{ConnId, Inbound};
use super::status::{ConnectionState, Shared};

/// First wait before reconnecting; doubles up to `reconnect_max_ms`.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// Room made in the receive buffer before each read, so one read can take many lines.
const READ_CHUNK: usize = 64 * 1024;

/// Longest wait for the TCP connection to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest wait for one write to the socket; a writer that does not read for this long is
/// treated as gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the connection task needs from the configuration.
#[derive(Clone, Debug)]
pub(crate) struct ConnectionConfig {
    /// The writer's `HOST:PORT`.
    pub(crate) writer: String,
    /// Sent in `NAME`.
    pub(crate) name: String,
    /// The `SERVER` name to insist on.
    pub(crate) server_name: Option<String>,
    pub(crate) reconnect_max: Duration,
    pub(crate) ping_interval: Duration,
    pub(crate) ping_timeout: Duration,
}

/// How a session ended.
enum Ended {
    /// Shutdown, or the processor is gone.
    Stopped,
    /// The connection ended; `established` if the writer's `SERVER` was accepted.
    Lost {
        established: bool,
        reason: &'static str,
        error: String,
    },
}

/// Connects, runs sessions and reconnects until `shutdown`.
pub(crate) async fn run(
    config: ConnectionConfig,
    tx: mpsc::Sender<Inbound>,
    shared: Arc<Shared>,
    mut drop_rx: watch::Receiver<ConnId>,
    shutdown: CancellationToken,
) {
    let mut backoff = FIRST_BACKOFF;
    let mut conn_id: ConnId = 0;
    let mut attempts: u64 = 0;
    while !shutdown.is_cancelled() {
        if attempts > 0 {
            shared.count_reconnect();
        }
        attempts += 1;
        shared.set_connection(ConnectionState::Connecting, None);
        let connecting = tokio::select! {
            () = shutdown.cancelled() => break,
            connecting = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&config.writer)) => connecting,
        };
        let ended = match connecting {
            Ok(Ok(stream)) => {
                conn_id += 1;
                if !queue(&tx, Inbound::Connected(conn_id), &shutdown).await {
                    break;
                }
                shared.set_connection(ConnectionState::Connected, None);
                tracing::info!(writer = %config.writer, conn = conn_id, "connected to the writer");
                let session = Session {
                    config: &config,
                    id: conn_id,
                    shared: &shared,
                    shutdown: &shutdown,
                };
                let ended = session.run(stream, &tx, &mut drop_rx).await;
                if !queue(&tx, Inbound::Disconnected(conn_id), &shutdown).await {
                    break;
                }
                ended
            }
            Ok(Err(e)) => Ended::Lost {
                established: false,
                reason: "connect",
                error: format!("connecting to {}: {e}", config.writer),
            },
            Err(_) => Ended::Lost {
                established: false,
                reason: "connect",
                error: format!("connecting to {}: timed out", config.writer),
            },
        };
        let Ended::Lost {
            established,
            reason,
            error,
        } = ended
        else {
            break;
        };
        if established {
            backoff = FIRST_BACKOFF;
        }
        shared.metrics.errors.with(&[reason]).inc();
        tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "replication connection lost");
        shared.set_connection(ConnectionState::BackingOff, Some(error));
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(config.reconnect_max.max(FIRST_BACKOFF));
    }
    shared.set_connection(ConnectionState::Stopped, None);
}

/// Queues `message` for the processor; false on shutdown or if the processor is gone.
async fn queue(tx: &mpsc::Sender<Inbound>, message: Inbound, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => false,
        sent = tx.send(message) => sent.is_ok(),
    }
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// One TCP connection to the writer.
struct Session<'a> {
    config: &'a ConnectionConfig,
    id: ConnId,
    shared: &'a Shared,
    shutdown: &'a CancellationToken,
}

/// The sending half and when it last sent.
struct Sender {
    socket: OwnedWriteHalf,
    last_sent: Instant,
    buffer: Vec<u8>,
}

impl Sender {
    /// Encodes and writes `commands` in one write.
    async fn send(&mut self, shared: &Shared, commands: &[ClientCommand]) -> std::io::Result<()> {
        self.buffer.clear();
        for command in commands {
            if let Err(e) = command.encode(&mut self.buffer) {
                // Only free text can fail to encode (an ERROR built from a bad line); skip it.
                tracing::warn!(error = %e, "not sending a command that cannot be encoded");
                continue;
            }
            shared
                .metrics
                .commands_out
                .with(&[command.name().as_str()])
                .inc();
        }
        tokio::time::timeout(WRITE_TIMEOUT, self.socket.write_all(&self.buffer))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "write timed out"))??;
        self.last_sent = Instant::now();
        Ok(())
    }

    /// Sends `ERROR <text>` before closing; failures do not matter any more.
    async fn send_error(&mut self, shared: &Shared, text: String) {
        let _ = self.send(shared, &[ClientCommand::Error(text)]).await;
    }
}

impl Session<'_> {
    fn lost(established: bool, reason: &'static str, error: impl Into<String>) -> Ended {
        Ended::Lost {
            established,
            reason,
            error: error.into(),
        }
    }

    async fn run(
        self,
        stream: TcpStream,
        tx: &mpsc::Sender<Inbound>,
        drop_rx: &mut watch::Receiver<ConnId>,
    ) -> Ended {
        let _ = stream.set_nodelay(true);
        let (mut reader, writer) = stream.into_split();
        let mut sender = Sender {
            socket: writer,
            last_sent: Instant::now(),
            buffer: Vec::new(),
        };
        let hello = [
            ClientCommand::Name(self.config.name.clone()),
            ClientCommand::Ping(now_ms().to_string()),
            ClientCommand::Replicate,
        ];
        if let Err(e) = sender.send(self.shared, &hello).await {
            return Session::lost(false, "io", format!("sending the handshake: {e}"));
        }

        let commands_in: Vec<_> = [
            "SERVER",
            "RDATA",
            "POSITION",
            "ERROR",
            "PING",
            "REMOTE_SERVER_UP",
            "LOCK_RELEASED",
        ]
        .iter()
        .map(|name| (*name, self.shared.metrics.commands_in.with(&[name])))
        .collect();
        let mut framer = LineFramer::new(MAX_LINE_LENGTH);
        // A decoded command waiting for room in the processor's queue; while there is one, the
        // socket is not read.
        let mut waiting: Option<Inbound> = None;
        let mut last_received = Instant::now();
        let mut writer_pinged = false;
        let mut established = false;
        let mut remote_error: Option<String> = None;
        loop {
            while waiting.is_none() {
                let line = match framer.next_line() {
                    Ok(Some(line)) => line,
                    Ok(None) => break,
                    Err(e) => {
                        sender.send_error(self.shared, e.to_string()).await;
                        return Session::lost(
                            established,
                            "line_too_long",
                            format!("writer sent a line over {MAX_LINE_LENGTH} bytes"),
                        );
                    }
                };
                if streamhost_proto::is_blank(&line) {
                    continue;
                }
                last_received = Instant::now();
                let command = match ServerCommand::decode(&line) {
                    Ok(command) => command,
                    Err(e) => {
                        sender.send_error(self.shared, e.error_text(&line)).await;
                        return Session::lost(
                            established,
                            "decode",
                            format!("undecodable line from the writer: {e}"),
                        );
                    }
                };
                let name = command.name().as_str();
                if let Some((_, counter)) = commands_in.iter().find(|(n, _)| *n == name) {
                    counter.inc();
                }
                match command {
                    ServerCommand::Server(server_name) => {
                        self.shared.set_server_name(&server_name);
                        if let Some(expected) = &self.config.server_name
                            && *expected != server_name
                        {
                            sender.send_error(self.shared, "Wrong remote".into()).await;
                            return Session::lost(
                                established,
                                "wrong_remote",
                                format!("writer is {server_name:?}, expected {expected:?}"),
                            );
                        }
                        established = true;
                    }
                    ServerCommand::Ping(_) => writer_pinged = true,
                    ServerCommand::Error(text) => {
                        tracing::warn!(%text, "the writer sent ERROR");
                        self.shared.metrics.errors.with(&["remote_error"]).inc();
                        remote_error = Some(text);
                    }
                    ServerCommand::RemoteServerUp(_) | ServerCommand::LockReleased(_) => {}
                    ServerCommand::Rdata(rdata) => waiting = Some(Inbound::Rdata(self.id, rdata)),
                    ServerCommand::Position(position) => {
                        waiting = Some(Inbound::Position(self.id, position))
                    }
                }
            }

            if waiting.is_none() {
                framer.buffer_mut().reserve(READ_CHUNK);
            }
            let mut deadline = sender.last_sent + self.config.ping_interval;
            if writer_pinged && waiting.is_none() {
                deadline = deadline.min(last_received + self.config.ping_timeout);
            }
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return Ended::Stopped,
                asked = async { drop_rx.wait_for(|id| *id == self.id).await.is_ok() } => {
                    if !asked {
                        return Ended::Stopped;
                    }
                    return Session::lost(established, "processor", "the processor asked for a new connection");
                }
                permit = tx.reserve(), if waiting.is_some() => {
                    let Ok(permit) = permit else { return Ended::Stopped };
                    permit.send(waiting.take().expect("guarded by the branch condition"));
                    // Time spent waiting for the processor is not the writer's silence.
                    last_received = Instant::now();
                }
                read = reader.read_buf(framer.buffer_mut()), if waiting.is_none() => match read {
                    Ok(0) => {
                        let error = match remote_error {
                            Some(text) => format!("the writer closed the connection after ERROR {text}"),
                            None => "the writer closed the connection".to_owned(),
                        };
                        return Session::lost(established, "closed", error);
                    }
                    Ok(_) => {}
                    Err(e) => return Session::lost(established, "io", format!("reading: {e}")),
                },
                () = tokio::time::sleep_until(deadline) => {
                    let now = Instant::now();
                    if writer_pinged && waiting.is_none() && now >= last_received + self.config.ping_timeout {
                        sender.send_error(self.shared, "ping timeout".into()).await;
                        return Session::lost(
                            established,
                            "ping_timeout",
                            format!("nothing from the writer for {} ms", self.config.ping_timeout.as_millis()),
                        );
                    }
                    if now >= sender.last_sent + self.config.ping_interval
                        && let Err(e) = sender.send(self.shared, &[ClientCommand::Ping(now_ms().to_string())]).await
                    {
                        return Session::lost(established, "io", format!("sending PING: {e}"));
                    }
                }
            }
        }
    }
}
