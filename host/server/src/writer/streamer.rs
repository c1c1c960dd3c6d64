//! The streamer: the one task that turns committed rows into `RDATA` and `POSITION` lines for
//! every replication connection.
//!
//! Nothing is sent from the write path: a commit pokes the streamer, which reads what is new
//! since the last token it sent, in bounded batches (from the in-memory tail, or the log when
//! the tail does not reach back), exactly as catch-up reads it. A `REPLICATE` from any client
//! makes it announce `POSITION s me last last` for every stream on every connection first.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use streamhost_log::{Log, LogError, Updates};
use streamhost_proto::{
    CommandName, InstanceName, Position, Rdata, RowJson, ServerCommand, StreamName, Token,
};
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

use super::streams::StreamSet;

/// One encoded command line (with its `\n`) as broadcast to every connection.
#[derive(Clone, Debug)]
pub struct Frame {
    /// The command, for metrics.
    pub name: CommandName,
    /// The wire line including `\n`.
    pub line: Bytes,
    /// For the line that completes a commit (its token is the commit's position): when the
    /// log committed it, in microseconds since the Unix epoch. A TCP connection may send it
    /// ahead of the line as a `PING` (see `fanout::tcp`), for the readers' write-to-apply.
    pub stamp: Option<u64>,
}

impl Frame {
    /// Encodes a command; `None` (logged) if it cannot be sent, e.g. over the line cap.
    pub fn encode(command: &ServerCommand) -> Option<Frame> {
        let mut line = Vec::new();
        match command.encode(&mut line) {
            Ok(()) => Some(Frame {
                name: command.name(),
                line: line.into(),
                stamp: None,
            }),
            Err(e) => {
                tracing::error!(error = %e, "cannot send command");
                None
            }
        }
    }
}

/// How connections ask the streamer for work.
#[derive(Debug, Default)]
pub struct StreamerSignals {
    /// Notified after every commit and every announce request.
    pub poke: Arc<Notify>,
    announce: AtomicBool,
}

impl StreamerSignals {
    /// Asks for a `POSITION` announcement of every stream on every connection (on `REPLICATE`).
    pub fn request_announce(&self) {
        self.announce.store(true, Ordering::SeqCst);
        self.poke.notify_one();
    }
}

/// What the streamer reads from and sends to.
pub struct Streamer {
    /// The log, for rows the tail no longer holds.
    pub log: Log,
    /// The streams and their tails.
    pub streams: Arc<StreamSet>,
    /// This writer's instance name.
    pub instance: InstanceName,
    /// Pokes and announce requests.
    pub signals: Arc<StreamerSignals>,
    /// Where frames go, to every connection.
    pub frames: broadcast::Sender<Frame>,
    /// Most rows read per stream per pass.
    pub batch_rows: usize,
    /// The streamer waits while the slowest connection has this many frames unread, so it
    /// never laps a peer that is reading; a peer that stopped reading is closed by its
    /// connection (`ERROR Failed to keep up`), which releases the wait.
    pub high_water: usize,
}

impl Streamer {
    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut last_sent: HashMap<StreamName, Token> = self
            .streams
            .iter()
            .map(|(name, recent)| (name.clone(), recent.position()))
            .collect();
        loop {
            tokio::select! {
                () = self.signals.poke.notified() => {}
                () = shutdown.cancelled() => return,
            }
            while self.pass(&mut last_sent).await {
                if shutdown.is_cancelled() {
                    return;
                }
                // Let connection tasks drain between batches.
                tokio::task::yield_now().await;
            }
        }
    }

    /// One pass over every stream; true if anything was sent (call again).
    async fn pass(&self, last_sent: &mut HashMap<StreamName, Token>) -> bool {
        let mut progressed = false;
        if self.signals.announce.swap(false, Ordering::SeqCst) {
            for (stream, _) in self.streams.iter() {
                let last = last_sent[stream];
                self.send(&ServerCommand::Position(Position {
                    stream: stream.clone(),
                    instance: self.instance.clone(),
                    prev: last,
                    new: last,
                }));
            }
        }
        for (stream, recent) in self.streams.iter() {
            let last = last_sent
                .get_mut(stream)
                .expect("every stream has a last token");
            let position = recent.position();
            if *last >= position {
                continue;
            }
            if self.frames.receiver_count() == 0 {
                // Nobody to tell: fast-forward, as Synapse does. New connections get a
                // POSITION and catch up over HTTP.
                *last = position;
                recent.note_streamed(position);
                continue;
            }
            self.wait_for_room().await;
            let updates = match recent.read(*last, position, self.batch_rows) {
                Some(updates) => updates,
                None => match self
                    .log
                    .read_range(stream, *last, position, self.batch_rows)
                    .await
                {
                    Ok(updates) => updates,
                    Err(LogError::Trimmed { trimmed_upto, .. }) => {
                        // Trimmed before it was sent (another appender's retention on a
                        // shared log): say so with a POSITION whose `prev` is past the gap,
                        // so every reader behind it catches up, meets the 410 and records
                        // the gap, rather than skipping it unnoticed.
                        tracing::warn!(%stream, from = last.0, trimmed_upto = trimmed_upto.0, "rows were trimmed before they were streamed");
                        self.send(&ServerCommand::Position(Position {
                            stream: stream.clone(),
                            instance: self.instance.clone(),
                            prev: trimmed_upto,
                            new: trimmed_upto,
                        }));
                        *last = trimmed_upto;
                        recent.note_streamed(trimmed_upto);
                        progressed = true;
                        continue;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, %stream, "reading the log for replication; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        return true;
                    }
                },
            };
            // The commit time travels with the line that reaches the last commit's position.
            let (commit_position, commit_us) = recent.last_commit();
            let stamp = (commit_position == updates.upto).then_some(commit_us);
            self.send_updates(stream, *last, &updates, stamp);
            *last = updates.upto;
            recent.note_streamed(updates.upto);
            progressed = true;
        }
        progressed
    }

    async fn wait_for_room(&self) {
        while self.frames.len() >= self.high_water {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Sends `updates`; `stamp` (the commit time of `updates.upto`) goes with the line that
    /// carries that token.
    fn send_updates(
        &self,
        stream: &StreamName,
        last: Token,
        updates: &Updates,
        stamp: Option<u64>,
    ) {
        let rows = &updates.rows;
        let sent_upto = rows.last().map_or(last, |(token, _)| *token);
        let position_follows = updates.upto > sent_upto;
        for (i, (token, row)) in rows.iter().enumerate() {
            let shares_next = rows.get(i + 1).is_some_and(|(next, _)| next == token);
            let last_line = i + 1 == rows.len() && !position_follows;
            self.send_rdata(
                stream,
                if shares_next { None } else { Some(*token) },
                row,
                stamp.filter(|_| last_line),
            );
        }
        if position_follows {
            self.send_stamped(
                &ServerCommand::Position(Position {
                    stream: stream.clone(),
                    instance: self.instance.clone(),
                    prev: sent_upto,
                    new: updates.upto,
                }),
                stamp,
            );
        }
    }

    fn send_rdata(
        &self,
        stream: &StreamName,
        token: Option<Token>,
        row: &RowJson,
        stamp: Option<u64>,
    ) {
        self.send_stamped(
            &ServerCommand::Rdata(Rdata {
                stream: stream.clone(),
                instance: self.instance.clone(),
                token,
                row: row.clone(),
            }),
            stamp,
        );
    }

    fn send(&self, command: &ServerCommand) {
        self.send_stamped(command, None);
    }

    fn send_stamped(&self, command: &ServerCommand, stamp: Option<u64>) {
        if let Some(mut frame) = Frame::encode(command) {
            frame.stamp = stamp;
            // No receivers is fine: nobody is connected.
            let _ = self.frames.send(frame);
        }
    }
}
