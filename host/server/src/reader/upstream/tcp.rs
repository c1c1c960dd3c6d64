//! The `tcp` upstream: one TCP session with a writer (handshake, pings, decoding), queueing
//! `RDATA` and `POSITION` for the processor (docs/replication.md: "The TCP session",
//! "Keep-alive and back-pressure", "Errors"); the follow loop in [`super`] reconnects.
//! With `[reader.writer_tls]` the session runs over TLS (the handshake is part of connecting,
//! so a writer that cannot be verified is a failed connect, retried after the backoff); the
//! lines are the same either way.
//!
//! Backpressure: decoded commands go into a bounded channel. While it is full the session
//! stops reading the socket (it still sends `PING`s); the writer's send buffer then fills and
//! the writer closes the connection with `ERROR Failed to keep up`. The reader reconnects and
//! the `POSITION` rule fetches what it missed.

use std::sync::Arc;
use std::time::Duration;

use streamhost_proto::{ClientCommand, LineFramer, MAX_LINE_LENGTH, ServerCommand};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{Ended, Inlet, Lost, lost, until_dropped};
use crate::clock::unix_ms;
use crate::config::ReaderConfig;
use crate::metrics::Counter;
use crate::net::tls::{ClientTls, ClientTlsStream};
use crate::reader::inbound::{ConnId, Inbound};
use crate::reader::status::Shared;

/// Room made in the receive buffer before each read, so one read can take many lines.
const READ_CHUNK: usize = 64 * 1024;

/// Longest wait for the TCP connection to open (and its TLS handshake to finish).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest wait for one write to the socket; a writer that does not read for this long is
/// treated as gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the TCP upstream needs from the configuration.
#[derive(Clone, Debug)]
pub(crate) struct TcpConfig {
    /// The writer's `HOST:PORT`.
    pub(crate) writer: String,
    /// Sent in `NAME`.
    pub(crate) name: String,
    /// The `SERVER` name to insist on.
    pub(crate) server_name: Option<String>,
    pub(crate) reconnect_max: Duration,
    pub(crate) ping_interval: Duration,
    pub(crate) ping_timeout: Duration,
    /// `[reader.writer_tls]`: the session runs over TLS.
    pub(crate) tls: Option<Arc<ClientTls>>,
}

impl TcpConfig {
    /// The TCP settings of `config`, with its TLS built from `[reader.writer_tls]`.
    pub(crate) fn of(config: &ReaderConfig, tls: Option<Arc<ClientTls>>) -> TcpConfig {
        TcpConfig {
            writer: config.writer.clone(),
            name: config.name.clone(),
            server_name: config.server_name.clone(),
            reconnect_max: Duration::from_millis(config.reconnect_max_ms),
            ping_interval: Duration::from_millis(config.ping_interval_ms.max(1)),
            ping_timeout: Duration::from_millis(config.ping_timeout_ms.max(1)),
            tls,
        }
    }
}

/// An open connection to the writer: plain, or TLS.
pub(crate) enum Link {
    Plain(TcpStream),
    Tls(Box<ClientTlsStream<TcpStream>>),
}

/// The host part of `HOST:PORT` (`[::1]:9092` gives `::1`), the name a TLS writer is
/// verified against by default.
fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// The TCP upstream.
pub(crate) struct Tcp {
    config: TcpConfig,
}

impl Tcp {
    pub(crate) fn new(config: TcpConfig) -> Tcp {
        Tcp { config }
    }
}

impl Tcp {
    /// Opens the TCP connection and, with TLS, runs the handshake.
    async fn open(&self) -> std::io::Result<Link> {
        let stream = TcpStream::connect(&self.config.writer).await?;
        let _ = stream.set_nodelay(true);
        Ok(match &self.config.tls {
            None => Link::Plain(stream),
            Some(tls) => Link::Tls(Box::new(
                tls.connect(host_of(&self.config.writer), stream).await?,
            )),
        })
    }

    /// Runs one session on the two halves of a connection.
    async fn session<R, W>(&self, reader: R, writer: W, id: ConnId, inlet: &mut Inlet) -> Ended
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let shared = inlet.shared.clone();
        match Connection::open(&self.config, id, &shared, writer).await {
            Ok(connection) => connection.run(reader, inlet).await,
            Err(ended) => ended,
        }
    }
}

impl super::Transport for Tcp {
    type Link = Link;

    fn reconnect_max(&self) -> Duration {
        self.config.reconnect_max
    }

    async fn connect(&self) -> Result<Link, Lost> {
        let writer = &self.config.writer;
        match tokio::time::timeout(CONNECT_TIMEOUT, self.open()).await {
            Ok(Ok(link)) => Ok(link),
            Ok(Err(e)) => Err(Lost::new(
                false,
                "connect",
                format!("connecting to {writer}: {e}"),
            )),
            Err(_) => Err(Lost::new(
                false,
                "connect",
                format!("connecting to {writer}: timed out"),
            )),
        }
    }

    async fn run(&self, link: Link, id: ConnId, inlet: &mut Inlet) -> Ended {
        // The plain path keeps tokio's owned halves (no lock between them); TLS needs one
        // stream state for both directions.
        match link {
            Link::Plain(stream) => {
                let (reader, writer) = stream.into_split();
                self.session(reader, writer, id, inlet).await
            }
            Link::Tls(stream) => {
                let (reader, writer) = tokio::io::split(*stream);
                self.session(reader, writer, id, inlet).await
            }
        }
    }

    fn connected(&self, id: ConnId) {
        tracing::info!(writer = %self.config.writer, conn = id, "connected to the writer");
    }

    fn report(&self, lost: &Lost, retry_in: Duration) {
        tracing::warn!(error = %lost.error, retry_in_ms = retry_in.as_millis() as u64, "replication connection lost");
    }
}

/// One TCP connection to the writer, writing on `W`.
struct Connection<'a, W> {
    config: &'a TcpConfig,
    id: ConnId,
    shared: &'a Shared,
    sender: Sender<W>,
    /// `reader_commands_in_total`, by command (looked up once).
    commands_in: Vec<(&'static str, Counter)>,
    framer: LineFramer,
    /// A decoded command waiting for room in the processor's queue; while there is one, the
    /// socket is not read.
    waiting: Option<Inbound>,
    last_received: Instant,
    writer_pinged: bool,
    /// The writer's `SERVER` was accepted.
    established: bool,
    remote_error: Option<String>,
}

/// The sending half and when it last sent.
struct Sender<W> {
    socket: W,
    last_sent: Instant,
    buffer: Vec<u8>,
}

impl<W: AsyncWrite + Unpin> Sender<W> {
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

impl<'a, W: AsyncWrite + Unpin> Connection<'a, W> {
    /// Sends the handshake (`NAME`, `PING`, `REPLICATE`) on `writer`.
    async fn open(
        config: &'a TcpConfig,
        id: ConnId,
        shared: &'a Shared,
        writer: W,
    ) -> Result<Connection<'a, W>, Ended> {
        let mut sender = Sender {
            socket: writer,
            last_sent: Instant::now(),
            buffer: Vec::new(),
        };
        let hello = [
            ClientCommand::Name(config.name.clone()),
            ClientCommand::Ping(unix_ms().to_string()),
            ClientCommand::Replicate,
        ];
        if let Err(e) = sender.send(shared, &hello).await {
            return Err(lost(false, "io", format!("sending the handshake: {e}")));
        }
        let commands_in = [
            "SERVER",
            "RDATA",
            "POSITION",
            "ERROR",
            "PING",
            "REMOTE_SERVER_UP",
            "LOCK_RELEASED",
        ]
        .iter()
        .map(|name| (*name, shared.metrics.commands_in.with(&[name])))
        .collect();
        let connection = Connection {
            config,
            id,
            shared,
            sender,
            commands_in,
            framer: LineFramer::new(MAX_LINE_LENGTH),
            waiting: None,
            last_received: Instant::now(),
            writer_pinged: false,
            established: false,
            remote_error: None,
        };
        Ok(connection)
    }

    /// Reads, decodes and queues until the connection ends.
    async fn run<R: AsyncRead + Unpin>(mut self, mut reader: R, inlet: &mut Inlet) -> Ended {
        loop {
            if let Err(ended) = self.decode_buffered().await {
                return ended;
            }
            let waiting = self.waiting.is_some();
            if !waiting {
                self.framer.buffer_mut().reserve(READ_CHUNK);
            }
            let mut deadline = self.sender.last_sent + self.config.ping_interval;
            if self.writer_pinged && !waiting {
                deadline = deadline.min(self.last_received + self.config.ping_timeout);
            }
            let ended = tokio::select! {
                biased;
                ended = until_dropped(&inlet.shutdown, &mut inlet.drop_rx, self.id, self.established) => Err(ended),
                permit = inlet.tx.reserve_for(self.waiting.as_ref()), if waiting => match permit {
                    Ok(permit) => {
                        permit.send(self.waiting.take().expect("guarded by the branch condition"));
                        // Time spent waiting for the processor is not the writer's silence.
                        self.last_received = Instant::now();
                        Ok(())
                    }
                    Err(_) => Err(Ended::Stopped),
                },
                read = reader.read_buf(self.framer.buffer_mut()), if !waiting => self.on_read(read),
                () = tokio::time::sleep_until(deadline) => self.on_deadline().await,
            };
            if let Err(ended) = ended {
                return ended;
            }
        }
    }

    /// A loss, `established` as the session is now.
    fn lost(&self, reason: &'static str, error: impl Into<String>) -> Ended {
        lost(self.established, reason, error)
    }

    /// Decodes the buffered lines until one must wait for room in the processor's queue.
    async fn decode_buffered(&mut self) -> Result<(), Ended> {
        while self.waiting.is_none() {
            let line = match self.framer.next_line() {
                Ok(Some(line)) => line,
                Ok(None) => break,
                Err(e) => {
                    self.sender.send_error(self.shared, e.to_string()).await;
                    return Err(self.lost(
                        "line_too_long",
                        format!("writer sent a line over {MAX_LINE_LENGTH} bytes"),
                    ));
                }
            };
            if streamhost_proto::is_blank(&line) {
                continue;
            }
            self.last_received = Instant::now();
            let command = match ServerCommand::decode(&line) {
                Ok(command) => command,
                Err(e) => {
                    self.sender
                        .send_error(self.shared, e.error_text(&line))
                        .await;
                    return Err(
                        self.lost("decode", format!("undecodable line from the writer: {e}"))
                    );
                }
            };
            let name = command.name().as_str();
            if let Some((_, counter)) = self.commands_in.iter().find(|(n, _)| *n == name) {
                counter.inc();
            }
            self.on_command(command).await?;
        }
        Ok(())
    }

    /// Applies one command: `RDATA`/`POSITION` wait for the processor's queue; `SERVER` is
    /// checked against the name insisted on.
    async fn on_command(&mut self, command: ServerCommand) -> Result<(), Ended> {
        match command {
            ServerCommand::Server(server_name) => {
                self.shared.set_server_name(&server_name);
                if let Some(expected) = &self.config.server_name
                    && *expected != server_name
                {
                    self.sender
                        .send_error(self.shared, "Wrong remote".into())
                        .await;
                    return Err(self.lost(
                        "wrong_remote",
                        format!("writer is {server_name:?}, expected {expected:?}"),
                    ));
                }
                self.established = true;
            }
            ServerCommand::Ping(text) => {
                self.writer_pinged = true;
                if let Some(stamp_us) = streamhost_proto::stamp::decode_stamp(&text) {
                    self.waiting = Some(Inbound::Stamp(self.id, stamp_us));
                }
            }
            ServerCommand::Error(text) => {
                tracing::warn!(%text, "the writer sent ERROR");
                self.shared.metrics.errors.with(&["remote_error"]).inc();
                self.remote_error = Some(text);
            }
            ServerCommand::RemoteServerUp(_) | ServerCommand::LockReleased(_) => {}
            ServerCommand::Rdata(rdata) => self.waiting = Some(Inbound::Rdata(self.id, rdata)),
            ServerCommand::Position(position) => {
                self.waiting = Some(Inbound::Position(self.id, position))
            }
        }
        Ok(())
    }

    /// What a read from the socket means: more bytes, or the end.
    fn on_read(&mut self, read: std::io::Result<usize>) -> Result<(), Ended> {
        match read {
            Ok(0) => {
                let error = match &self.remote_error {
                    Some(text) => format!("the writer closed the connection after ERROR {text}"),
                    None => "the writer closed the connection".to_owned(),
                };
                Err(self.lost("closed", error))
            }
            Ok(_) => Ok(()),
            Err(e) => Err(self.lost("io", format!("reading: {e}"))),
        }
    }

    /// A timer fired: the writer has been silent past the ping timeout (once it pinged), or
    /// it is time to send a `PING`.
    async fn on_deadline(&mut self) -> Result<(), Ended> {
        let now = Instant::now();
        if self.writer_pinged
            && self.waiting.is_none()
            && now >= self.last_received + self.config.ping_timeout
        {
            self.sender
                .send_error(self.shared, "ping timeout".into())
                .await;
            return Err(self.lost(
                "ping_timeout",
                format!(
                    "nothing from the writer for {} ms",
                    self.config.ping_timeout.as_millis()
                ),
            ));
        }
        if now >= self.sender.last_sent + self.config.ping_interval
            && let Err(e) = self
                .sender
                .send(self.shared, &[ClientCommand::Ping(unix_ms().to_string())])
                .await
        {
            return Err(self.lost("io", format!("sending PING: {e}")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn the_host_of_an_address_drops_the_port_and_brackets() {
        assert_eq!(host_of("writer.internal:9092"), "writer.internal");
        assert_eq!(host_of("10.0.0.5:9092"), "10.0.0.5");
        assert_eq!(host_of("[::1]:9092"), "::1");
        assert_eq!(host_of("writer"), "writer");
    }
}
