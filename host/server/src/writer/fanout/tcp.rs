//! The `tcp` fan-out: the replication listener, one task pair per connection.
//!
//! The write half sends `SERVER` and `PING`, then every frame the streamer broadcasts, a
//! `PING` whenever it has been idle for the ping interval, and closes with
//! `ERROR Failed to keep up` when more than `max_pending` commands wait for a peer that does
//! not read. The read half decodes `ClientCommand`s: `REPLICATE` asks the streamer to
//! announce positions, the rest are counted; a bad line, a command a client may not send, a
//! line over the cap, no `NAME` or `REPLICATE` within the listener's handshake timeout (other
//! commands before them are fine), or silence past the ping timeout (once the peer has
//! PINGed) ends the connection with `ERROR <reason>`. Only that connection is affected.
//!
//! A line that completes a commit carries the commit's time (`Frame::stamp`); when no `PING`
//! went out for a ping interval, the write half sends `PING <µs since the epoch, 16 digits>`
//! just before it, for the readers' write-to-apply histogram (docs/design.md, decision 51).
//! The connection's series are labelled by the client's `NAME` (`unnamed` until it sends
//! one), not its address.
//!
//! Connections are accepted within the listener's `max_connections` (`crate::net::accept`);
//! each holds its slot until both halves end. With `[writer.replication.tls]` each connection
//! first runs its TLS handshake (within the listener's handshake timeout, in its own task); a
//! client whose certificate names none of `allowed_clients` gets
//! `ERROR client certificate not allowed` and nothing else. The lines are the same over TLS; a
//! plain listener sends exactly what it did without TLS support.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use streamhost_proto::{
    ClientCommand, DecodeError, LineFramer, MAX_LINE_LENGTH, ServerCommand, is_blank,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Ring;
use super::peers::{PeerEntry, Peers};
pub use super::tcp_metrics::ReplicationMetrics;
use super::tcp_metrics::{DepthShare, UNNAMED};
use super::tcp_out::{add_frame, push};
use crate::clock::unix_ms;
use crate::config::WriterConfig;
use crate::metrics::Registry;
use crate::net::accept::{Acceptor, ConnectionPermit};
use crate::net::tls::{Admission, ServerTls};
use crate::writer::streamer::{Frame, StreamerSignals};

/// Bytes gathered from the broadcast before one socket write.
const WRITE_CHUNK: usize = 64 * 1024;

/// How often a blocked write checks whether its peer has fallen too far behind.
const OVERFLOW_CHECK: Duration = Duration::from_millis(20);

/// What every connection shares.
pub struct ReplicationContext {
    /// Sent in `SERVER`.
    pub server_name: String,
    /// Where `REPLICATE` goes.
    pub signals: Arc<StreamerSignals>,
    /// The streamer's frames.
    pub frames: broadcast::Sender<Frame>,
    /// Pending commands allowed before `ERROR Failed to keep up`.
    pub max_pending: usize,
    /// Idle time before sending `PING`.
    pub ping_interval: Duration,
    /// Silence allowed once the peer has PINGed; also the longest wait for a closing write.
    pub ping_timeout: Duration,
    /// Longest a new connection may take to send `NAME` or `REPLICATE`.
    pub handshake_timeout: Duration,
    /// Counters and gauges.
    pub metrics: ReplicationMetrics,
    /// The listener's TLS, if it has one.
    pub tls: Option<Arc<ServerTls>>,
    /// The open connections, for the console.
    pub peers: Arc<Peers>,
}

/// What a refused client certificate is told before the connection closes.
const NOT_ALLOWED: &str = "client certificate not allowed";

impl ReplicationContext {
    /// What `config`'s connections share, reading `ring`, with the listener's `tls`.
    pub fn new(
        config: &WriterConfig,
        ring: &Ring,
        registry: &Registry,
        tls: Option<Arc<ServerTls>>,
    ) -> ReplicationContext {
        ReplicationContext {
            server_name: config.server_name.clone(),
            signals: ring.signals.clone(),
            frames: ring.frames.clone(),
            max_pending: config.max_pending_commands,
            ping_interval: config.ping_interval(),
            ping_timeout: config.ping_timeout(),
            handshake_timeout: config.replication.handshake_timeout(),
            metrics: ReplicationMetrics::register(registry),
            tls,
            peers: Arc::default(),
        }
    }
}

/// Accepts replication connections until `shutdown`, then waits for them to close.
pub async fn serve(
    mut acceptor: Acceptor,
    context: Arc<ReplicationContext>,
    shutdown: CancellationToken,
) {
    let tracker = TaskTracker::new();
    while let Some((stream, peer, permit)) = acceptor.accept(&shutdown).await {
        tracker.spawn(handle(
            stream,
            peer,
            permit,
            context.clone(),
            shutdown.child_token(),
        ));
    }
    tracker.close();
    tracker.wait().await;
}

#[tracing::instrument(skip_all, fields(%peer))]
async fn handle(
    stream: TcpStream,
    peer: SocketAddr,
    _permit: ConnectionPermit,
    context: Arc<ReplicationContext>,
    done: CancellationToken,
) {
    let handshake_deadline = Instant::now() + context.handshake_timeout;
    let _ = stream.set_nodelay(true);
    let Some(tls) = context.tls.clone() else {
        // The plain path keeps tokio's owned halves (no lock between them).
        let (read_half, write_half) = stream.into_split();
        return serve_connection(
            read_half,
            write_half,
            peer,
            handshake_deadline,
            context,
            done,
        )
        .await;
    };
    let accepted = tokio::select! {
        accepted = tls.accept(stream, peer) => accepted,
        () = done.cancelled() => return,
    };
    let Some((stream, admission)) = accepted else {
        return;
    };
    let (read_half, mut write_half) = tokio::io::split(stream);
    match admission {
        Admission::Allowed => {
            serve_connection(
                read_half,
                write_half,
                peer,
                handshake_deadline,
                context,
                done,
            )
            .await
        }
        Admission::Refused => {
            context.metrics.errors.with(&["client_not_allowed"]).inc();
            let mut out = Vec::new();
            push(
                &mut out,
                &context.metrics,
                &ServerCommand::Error(NOT_ALLOWED.into()),
            );
            let _ = tokio::time::timeout(context.ping_timeout, async {
                write_half.write_all(&out).await?;
                write_half.shutdown().await
            })
            .await;
        }
    }
}

/// Runs one connection on its two halves until it ends.
async fn serve_connection<R, W>(
    read_half: R,
    write_half: W,
    peer: SocketAddr,
    handshake_deadline: Instant,
    context: Arc<ReplicationContext>,
    done: CancellationToken,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    // Subscribe before anything is sent, so no frame after SERVER is missed.
    let frames = context.frames.subscribe();
    context.metrics.connections.add(1);
    tracing::info!("replication connection opened");
    let (close, close_requests) = mpsc::channel(1);
    let (name_tx, name_rx) = watch::channel(UNNAMED.to_owned());
    context.metrics.by_name.with(&[UNNAMED]).add(1);
    let entry = Arc::new(context.peers.register(peer));
    let writer = tokio::spawn(write_loop(
        write_half,
        frames,
        close_requests,
        context.clone(),
        done.clone(),
        name_rx,
        entry.clone(),
    ));
    read_loop(
        read_half,
        &context,
        &entry,
        close,
        handshake_deadline,
        done.clone(),
        &name_tx,
    )
    .await;
    let _ = writer.await;
    done.cancel();
    context.metrics.by_name.with(&[&name_tx.borrow()]).add(-1);
    context.metrics.connections.add(-1);
    tracing::info!("replication connection closed");
}

/// Reads the peer's commands until the connection ends. Until `NAME` or `REPLICATE` arrives,
/// `handshake_deadline` bounds the wait (a peer that connects and says nothing, or only
/// `PING`s, is closed then); Synapse's workers and this crate's reader send `NAME` first.
async fn read_loop(
    mut socket: impl AsyncRead + Unpin,
    context: &ReplicationContext,
    entry: &PeerEntry,
    close: mpsc::Sender<String>,
    handshake_deadline: Instant,
    done: CancellationToken,
    name: &watch::Sender<String>,
) {
    let mut framer = LineFramer::new(MAX_LINE_LENGTH);
    let mut ping_seen = false;
    let mut introduced = false;
    let mut last_command = Instant::now();
    loop {
        loop {
            let line = match framer.next_line() {
                Ok(Some(line)) => line,
                Ok(None) => break,
                Err(too_long) => {
                    context.metrics.errors.with(&["line_too_long"]).inc();
                    let _ = close.send(too_long.to_string()).await;
                    return;
                }
            };
            if is_blank(&line) {
                continue;
            }
            let command = match ClientCommand::decode(&line) {
                Ok(command) => command,
                Err(e) => {
                    context
                        .metrics
                        .errors
                        .with(&[decode_error_reason(&e)])
                        .inc();
                    tracing::warn!(error = %e, "bad replication line; closing");
                    let _ = close.send(e.error_text(&line)).await;
                    return;
                }
            };
            last_command = Instant::now();
            context.metrics.commands_in[&command.name()].inc();
            match command {
                ClientCommand::Ping(_) => ping_seen = true,
                ClientCommand::Replicate => {
                    introduced = true;
                    entry.introduced();
                    context.signals.request_announce();
                }
                ClientCommand::Name(client) => {
                    introduced = true;
                    entry.named(&client);
                    tracing::info!(%client, "client named itself");
                    let by_name = &context.metrics.by_name;
                    name.send_if_modified(|label| {
                        if *label == client {
                            return false;
                        }
                        by_name.with(&[label]).add(-1);
                        by_name.with(&[&client]).add(1);
                        *label = client;
                        true
                    });
                }
                ClientCommand::Error(text) => tracing::warn!(error = %text, "client sent ERROR"),
                // Accepted and counted; this writer has no presence, federation or lock state.
                ClientCommand::UserSync(_)
                | ClientCommand::ClearUserSync(_)
                | ClientCommand::FederationAck(_)
                | ClientCommand::UserIp(_)
                | ClientCommand::RemoteServerUp(_)
                | ClientCommand::LockReleased(_) => {}
            }
        }
        let timeout = tokio::time::sleep_until(last_command + context.ping_timeout);
        let handshake = tokio::time::sleep_until(handshake_deadline);
        tokio::select! {
            () = done.cancelled() => return,
            read = socket.read_buf(framer.buffer_mut()) => match read {
                Ok(0) | Err(_) => {
                    done.cancel();
                    return;
                }
                Ok(_) => {}
            },
            () = timeout, if ping_seen => {
                context.metrics.errors.with(&["ping_timeout"]).inc();
                tracing::warn!("no command within the ping timeout; closing");
                let _ = close.send("ping timeout".into()).await;
                return;
            }
            () = handshake, if !introduced => {
                context.metrics.errors.with(&["handshake_timeout"]).inc();
                tracing::warn!(
                    timeout_ms = context.handshake_timeout.as_millis() as u64,
                    "no NAME or REPLICATE within the handshake timeout; closing"
                );
                let _ = close
                    .send(format!(
                        "handshake timeout: no NAME or REPLICATE within {} ms",
                        context.handshake_timeout.as_millis()
                    ))
                    .await;
                return;
            }
        }
    }
}

fn decode_error_reason(error: &DecodeError) -> &'static str {
    match error {
        DecodeError::NotUtf8 => "not_utf8",
        DecodeError::UnknownCommand { .. } => "unknown_command",
        DecodeError::WrongDirection { .. } => "invalid_command",
        DecodeError::Malformed { .. } => "malformed",
    }
}

enum Flow {
    Continue,
    Overflow,
    Stop,
}

/// What happened while the write loop waited for something to send.
enum Event {
    /// Frames (or a `PING`) were added to the output.
    Output,
    /// The read half asked to close, with `ERROR <reason>` when there is one.
    Close(Option<String>),
    /// The connection is done (its other half ended, or shutdown).
    Done,
    /// The peer fell behind the ring: it failed to keep up.
    Lagged,
    /// The streamer is gone.
    Closed,
}

async fn write_loop(
    mut socket: impl AsyncWrite + Unpin,
    frames: broadcast::Receiver<Frame>,
    mut close_requests: mpsc::Receiver<String>,
    context: Arc<ReplicationContext>,
    done: CancellationToken,
    mut name: watch::Receiver<String>,
    entry: Arc<PeerEntry>,
) {
    let metrics = &context.metrics;
    // The depth series is the client's NAME's, shared with its other connections: this
    // connection adds its own depth and takes it back when it renames or ends.
    let mut depth = DepthShare {
        gauge: metrics.send_buffer.with(&[&name.borrow_and_update()]),
        shown: 0,
    };
    // When this connection last sent a PING: stamps are sent at most once a ping interval.
    let mut last_ping = Instant::now();
    // `None` once the peer has failed to keep up: dropping the receiver at once releases
    // the streamer, which waits for the slowest reader.
    let mut frames = Some(frames);
    let mut out = Vec::with_capacity(WRITE_CHUNK);
    push(
        &mut out,
        metrics,
        &ServerCommand::Server(context.server_name.clone()),
    );
    push(
        &mut out,
        metrics,
        &ServerCommand::Ping(unix_ms().to_string()),
    );
    // One timer for the connection's life, moved on after each write (cheaper than a new
    // one per wait, with a thousand connections each woken by every frame).
    let idle = tokio::time::sleep(context.ping_interval);
    tokio::pin!(idle);
    loop {
        if !out.is_empty() {
            match write_watching(&mut socket, &out, &mut frames, &context, &done).await {
                Flow::Continue => {
                    out.clear();
                    idle.as_mut().reset(Instant::now() + context.ping_interval);
                }
                Flow::Overflow => {
                    out.clear();
                    break;
                }
                Flow::Stop => return,
            }
        }
        let Some(receiver) = frames.as_mut() else {
            break;
        };
        let event = next_event(
            receiver,
            &mut close_requests,
            &mut out,
            idle.as_mut(),
            &mut last_ping,
            &context,
            &done,
        );
        match event.await {
            Event::Output => {}
            Event::Close(reason) => {
                if let Some(reason) = reason {
                    push(&mut out, metrics, &ServerCommand::Error(reason));
                    let _ =
                        tokio::time::timeout(context.ping_timeout, socket.write_all(&out)).await;
                }
                let _ = socket.shutdown().await;
                done.cancel();
                return;
            }
            Event::Done => return,
            Event::Lagged => {
                give_up(&mut frames, &context);
                out.clear();
                break;
            }
            Event::Closed => {
                let _ = socket.shutdown().await;
                done.cancel();
                return;
            }
        }
        if name.has_changed().unwrap_or(false) {
            depth.rename(metrics.send_buffer.with(&[&name.borrow_and_update()]));
        }
        if let Some(receiver) = &frames {
            depth.set(receiver.len() as i64);
            entry.pending(receiver.len());
        }
    }
    entry.gave_up();
    failed_to_keep_up(socket, &context, &done).await;
}

/// Waits for the next thing to do: frames from the ring (gathered up to [`WRITE_CHUNK`]), a
/// `PING` when `idle` (the ping interval after the last write) fires, a close request, or the
/// connection's end.
async fn next_event(
    receiver: &mut broadcast::Receiver<Frame>,
    close_requests: &mut mpsc::Receiver<String>,
    out: &mut Vec<u8>,
    idle: Pin<&mut Sleep>,
    last_ping: &mut Instant,
    context: &ReplicationContext,
    done: &CancellationToken,
) -> Event {
    let metrics = &context.metrics;
    tokio::select! {
        biased;
        reason = close_requests.recv() => Event::Close(reason),
        () = done.cancelled() => Event::Done,
        received = receiver.recv() => match received {
            Ok(frame) => {
                add_frame(out, context, last_ping, &frame);
                while out.len() < WRITE_CHUNK {
                    match receiver.try_recv() {
                        Ok(frame) => add_frame(out, context, last_ping, &frame),
                        Err(_) => break,
                    }
                }
                Event::Output
            }
            Err(broadcast::error::RecvError::Lagged(_)) => Event::Lagged,
            Err(broadcast::error::RecvError::Closed) => Event::Closed,
        },
        () = idle => {
            *last_ping = Instant::now();
            push(out, metrics, &ServerCommand::Ping(unix_ms().to_string()));
            Event::Output
        }
    }
}

/// Failed to keep up: what was being written is finished; says why and closes.
async fn failed_to_keep_up(
    mut socket: impl AsyncWrite + Unpin,
    context: &ReplicationContext,
    done: &CancellationToken,
) {
    let mut tail = Vec::new();
    push(
        &mut tail,
        &context.metrics,
        &ServerCommand::Error("Failed to keep up".into()),
    );
    let _ = tokio::time::timeout(context.ping_timeout, async {
        socket.write_all(&tail).await?;
        socket.shutdown().await
    })
    .await;
    done.cancel();
}

/// Records that the peer failed to keep up and stops collecting frames for it.
fn give_up(frames: &mut Option<broadcast::Receiver<Frame>>, context: &ReplicationContext) {
    *frames = None;
    context.metrics.errors.with(&["failed_to_keep_up"]).inc();
    tracing::warn!(
        max_pending = context.max_pending,
        "replication client failed to keep up; closing"
    );
}

/// Writes `out`, watching for the peer falling behind: while the socket does not take the
/// bytes and more than `max_pending` commands wait, the peer has failed to keep up (Synapse's
/// rule: pending commands pile up only while the transport is paused). The peer is then
/// given up at once (its frames dropped), but this write is still finished, within the ping
/// timeout, so the peer never sees half a line before the `ERROR`.
async fn write_watching(
    socket: &mut (impl AsyncWrite + Unpin),
    out: &[u8],
    frames: &mut Option<broadcast::Receiver<Frame>>,
    context: &ReplicationContext,
    done: &CancellationToken,
) -> Flow {
    let write = socket.write_all(out);
    tokio::pin!(write);
    let mut check = tokio::time::interval(OVERFLOW_CHECK);
    let give_up_deadline = tokio::time::sleep(Duration::MAX);
    tokio::pin!(give_up_deadline);
    loop {
        // The write first: when the socket takes the bytes at once (the usual case) the timers
        // are never polled, so never registered, which matters with a connection per reader
        // times thousands of writes a second (and a thousand idle connections at once).
        tokio::select! {
            biased;
            written = &mut write => {
                return match (written, frames.is_some()) {
                    (Ok(()), true) => Flow::Continue,
                    (Ok(()), false) => Flow::Overflow,
                    (Err(_), _) => {
                        done.cancel();
                        Flow::Stop
                    }
                };
            }
            _ = check.tick(), if frames.is_some() => {
                if frames.as_ref().is_some_and(|f| f.len() > context.max_pending) {
                    give_up(frames, context);
                    give_up_deadline.as_mut().reset(Instant::now() + context.ping_timeout);
                }
            }
            () = &mut give_up_deadline => {
                // The peer never read again: close without the ERROR it would not see.
                done.cancel();
                return Flow::Stop;
            }
            () = done.cancelled() => return Flow::Stop,
        }
    }
}
