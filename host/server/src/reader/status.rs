//! What a reader reports about itself: the [`ReaderStatus`] snapshot (`GET /v1/status`) and
//! the Prometheus metrics (`GET /metrics`), both fed by the connection and processor tasks.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use serde::{Serialize, Serializer};
use streamhost_proto::{InstanceName, StreamName, Token};

use super::lag::LagClock;
use crate::metrics::{
    Buckets, Counter, CounterVec, FloatGaugeVec, Gauge, GaugeVec, HistogramVec, Registry,
};

/// Where the replication connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectionState {
    /// Opening the TCP connection.
    Connecting,
    /// Connected; commands are flowing.
    Connected,
    /// The last attempt or connection failed; waiting before the next attempt.
    BackingOff,
    /// Shut down.
    Stopped,
}

/// The replication connection, as `GET /v1/status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConnectionStatus {
    /// The state.
    pub state: ConnectionState,
    /// Why the last connection ended or the last attempt failed; kept after reconnecting.
    pub last_error: Option<String>,
    /// The name the writer sent in `SERVER` on the current or last connection.
    pub server_name: Option<String>,
}

/// One (stream, instance) the reader follows.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StreamStatus {
    /// The stream.
    #[serde(serialize_with = "display")]
    pub stream: StreamName,
    /// The writer instance.
    #[serde(serialize_with = "display")]
    pub instance: InstanceName,
    /// The committed position: every batch up to it has been applied.
    #[serde(serialize_with = "token")]
    pub position: Token,
    /// The writer's last known position (the highest `POSITION` new token or `RDATA` token
    /// seen), or the committed position if higher.
    #[serde(serialize_with = "token")]
    pub writer_position: Token,
    /// `writer_position - position`, never negative.
    pub lag: i64,
    /// Seconds the oldest row not yet applied has waited since the reader saw its position
    /// (0 when caught up); `streamhost_reader_lag_seconds`.
    pub lag_seconds: f64,
    /// Rows applied (committed) since the reader started.
    pub rows_applied: u64,
    /// Batches applied (committed) since the reader started.
    pub batches_applied: u64,
    /// Ranges of rows missed and not fetchable (a Synapse stream whose rows are only in
    /// Synapse's database, or rows the writer trimmed) since the reader started; every one is
    /// also a row of `reader_gaps` in `reader.sqlite`.
    pub gaps: u64,
    /// The latest of those ranges.
    pub last_gap: Option<GapRange>,
    /// Of `gaps`, the ranges the writer had trimmed by retention before this reader fetched
    /// them (its catch-up answered 410); the reader followed on from the earliest token kept.
    pub trimmed: u64,
    /// The latest of those ranges.
    pub last_trimmed: Option<GapRange>,
    /// Times the writer restarted its tokens (a Synapse process restarting resets `typing`,
    /// `federation` and `presence_federation`) and the reader followed it back, since the
    /// reader started.
    pub resets: u64,
    /// The latest of those restarts.
    pub last_reset: Option<ResetRange>,
}

/// Tokens `(from, to]` of a (stream, instance) whose rows the reader never received.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct GapRange {
    /// The reader's position when the gap was found (excluded).
    pub from: i64,
    /// The position it moved on to (included).
    pub to: i64,
}

/// A writer restarting its tokens: the reader was at `from`, the writer's first `POSITION`
/// after its restart said `to` (below `from`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ResetRange {
    /// The reader's position in the writer's earlier run.
    pub from: i64,
    /// The writer's position in its new run.
    pub to: i64,
}

/// A snapshot of a reader (`GET /v1/status`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReaderStatus {
    /// The reader's `NAME`.
    pub name: String,
    /// The writer's replication address.
    pub writer: String,
    /// The replication connection.
    pub connection: ConnectionStatus,
    /// Connection attempts after the first.
    pub reconnects: u64,
    /// True while the reader's last commit failed because its disk is full: it applies
    /// nothing (its positions stay where they were committed) and tries again after a
    /// back-off until space is freed; `streamhost_reader_disk_full`.
    pub disk_full: bool,
    /// Every (stream, instance) seen or stored, by stream then instance.
    pub streams: Vec<StreamStatus>,
}

impl ReaderStatus {
    /// The entry of one (stream, instance), if known.
    pub fn stream(&self, stream: &str, instance: &str) -> Option<&StreamStatus> {
        self.streams
            .iter()
            .find(|s| s.stream.as_str() == stream && s.instance.as_str() == instance)
    }
}

fn display<S: Serializer, T: std::fmt::Display>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

fn token<S: Serializer>(value: &Token, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_i64(value.0)
}

/// The reader's metrics, registered once.
#[derive(Debug)]
pub(crate) struct ReaderMetrics {
    pub(crate) registry: Registry,
    pub(crate) commands_in: CounterVec,
    pub(crate) commands_out: CounterVec,
    pub(crate) rdata_dropped: CounterVec,
    pub(crate) batches_applied: CounterVec,
    pub(crate) rows_applied: CounterVec,
    pub(crate) catchup_requests: CounterVec,
    pub(crate) catchup_rows: CounterVec,
    pub(crate) writer_behind: CounterVec,
    pub(crate) gaps: CounterVec,
    pub(crate) trimmed: CounterVec,
    pub(crate) resets: CounterVec,
    pub(crate) reconnects: Counter,
    pub(crate) errors: CounterVec,
    pub(crate) commits: Counter,
    pub(crate) connected: Gauge,
    pub(crate) disk_full: Gauge,
    pub(crate) position: GaugeVec,
    pub(crate) writer_position: GaugeVec,
    pub(crate) lag: GaugeVec,
    pub(crate) lag_seconds: FloatGaugeVec,
    pub(crate) write_to_apply: HistogramVec,
    pub(crate) catchup_duration: HistogramVec,
}

impl ReaderMetrics {
    fn new() -> ReaderMetrics {
        let r = Registry::new();
        let per_stream = |name: &str, help: &str| r.counter_vec(name, help, &["stream"]);
        let per_key = |name: &str, help: &str| r.gauge_vec(name, help, &["stream", "instance"]);
        let metrics = ReaderMetrics {
            commands_in: r.counter_vec(
                "reader_commands_in_total",
                "Replication commands received, by command.",
                &["command"],
            ),
            commands_out: r.counter_vec(
                "reader_commands_out_total",
                "Replication commands sent, by command.",
                &["command"],
            ),
            rdata_dropped: r.counter_vec(
                "reader_rdata_dropped_total",
                "RDATA rows dropped: not_connected (before the stream's POSITION on this \
                 connection) or old_token (token not above the applied position).",
                &["stream", "reason"],
            ),
            batches_applied: per_stream("reader_batches_applied_total", "Batches committed."),
            rows_applied: per_stream("reader_rows_applied_total", "Rows committed."),
            catchup_requests: per_stream(
                "reader_catchup_requests_total",
                "Catch-up requests made (including retries).",
            ),
            catchup_rows: per_stream("reader_catchup_rows_total", "Rows received from catch-up."),
            writer_behind: per_stream(
                "reader_writer_behind_total",
                "POSITIONs whose new token is below the applied position (writer restored \
                 from an older state); the reader keeps its position.",
            ),
            gaps: r.counter_vec(
                "reader_gaps_total",
                "Token ranges missed that no catch-up source can provide (Synapse streams \
                 whose rows are only in Synapse's database); each is logged with its range.",
                &["stream", "instance"],
            ),
            trimmed: r.counter_vec(
                "reader_trimmed_gaps_total",
                "Catch-ups answered 410 by the writer (rows trimmed by its retention before \
                 this reader fetched them); each is also a gap, logged with its range and \
                 recorded in reader.sqlite.",
                &["stream", "instance"],
            ),
            resets: r.counter_vec(
                "reader_stream_resets_total",
                "Restarts of a writer's tokens followed back (Synapse's typing, federation and \
                 presence_federation restart at 0 with their process); each is logged with the \
                 old and new token.",
                &["stream", "instance"],
            ),
            reconnects: r.counter(
                "reader_reconnects_total",
                "Connection attempts after the first.",
            ),
            errors: r.counter_vec(
                "reader_errors_total",
                "Failures by reason (connect, io, closed, decode, line_too_long, wrong_remote, \
                 ping_timeout, remote_error, catchup, apply, processor).",
                &["reason"],
            ),
            commits: r.counter(
                "reader_commits_total",
                "Group commits of the reader database.",
            ),
            connected: r.gauge("reader_connected", "1 while connected to the writer."),
            disk_full: r.gauge(
                "reader_disk_full",
                "1 while the reader's last commit failed because its disk is full (it applies \
                 nothing until space is freed), 0 otherwise.",
            ),
            position: per_key("reader_position", "Committed position."),
            writer_position: per_key(
                "reader_writer_position",
                "The writer's last known position.",
            ),
            lag: per_key("reader_lag", "writer_position - position, never negative."),
            lag_seconds: r.float_gauge_vec(
                "reader_lag_seconds",
                "How long the writer's position has been ahead of the committed position \
                 without the reader catching up (0 when caught up); computed at each scrape.",
                &["stream", "instance"],
            ),
            write_to_apply: r.histogram_vec(
                "reader_write_to_apply_seconds",
                "From the writer's commit to this reader's commit of the same token, sampled \
                 (a Streamhost writer stamps at most one commit per ping interval on each \
                 TCP connection); the two hosts' clock skew adds in, negatives count as 0.",
                &["stream", "instance"],
                Buckets::END_TO_END,
            ),
            catchup_duration: r.histogram_vec(
                "reader_catchup_duration_seconds",
                "Time of one catch-up fetch (HTTP or database), by stream.",
                &["stream"],
                Buckets::REMOTE,
            ),
            registry: r,
        };
        // At zero from the start, so `rate()` sees the first error.
        for reason in [
            "connect",
            "io",
            "closed",
            "decode",
            "line_too_long",
            "wrong_remote",
            "ping_timeout",
            "remote_error",
            "catchup",
            "apply",
            "processor",
        ] {
            metrics.errors.with(&[reason]);
        }
        metrics
    }
}

/// Per (stream, instance) figures behind [`StreamStatus`].
#[derive(Clone, Debug, Default)]
pub(crate) struct StreamFigures {
    pub(crate) position: Token,
    pub(crate) writer_position: Token,
    pub(crate) rows_applied: u64,
    pub(crate) batches_applied: u64,
    pub(crate) gaps: u64,
    pub(crate) last_gap: Option<(Token, Token)>,
    pub(crate) trimmed: u64,
    pub(crate) last_trimmed: Option<(Token, Token)>,
    pub(crate) resets: u64,
    pub(crate) last_reset: Option<(Token, Token)>,
    /// When each writer position not yet applied was first seen (the lag in seconds).
    pub(crate) lag_clock: LagClock,
}

#[derive(Debug)]
struct State {
    connection: ConnectionStatus,
    reconnects: u64,
    disk_full: bool,
    streams: BTreeMap<(StreamName, InstanceName), StreamFigures>,
}

/// State shared by the reader's tasks and its HTTP API.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) metrics: ReaderMetrics,
    name: String,
    writer: String,
    state: Mutex<State>,
}

impl Shared {
    pub(crate) fn new(name: String, writer: String) -> Shared {
        Shared {
            metrics: ReaderMetrics::new(),
            name,
            writer,
            state: Mutex::new(State {
                connection: ConnectionStatus {
                    state: ConnectionState::Connecting,
                    last_error: None,
                    server_name: None,
                },
                reconnects: 0,
                disk_full: false,
                streams: BTreeMap::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("reader status lock")
    }

    /// Sets the connection state; `error` replaces the last error when given.
    pub(crate) fn set_connection(&self, state: ConnectionState, error: Option<String>) {
        self.metrics
            .connected
            .set(i64::from(state == ConnectionState::Connected));
        let mut s = self.lock();
        s.connection.state = state;
        if error.is_some() {
            s.connection.last_error = error;
        }
    }

    pub(crate) fn set_server_name(&self, name: &str) {
        self.lock().connection.server_name = Some(name.to_owned());
    }

    pub(crate) fn count_reconnect(&self) {
        self.metrics.reconnects.inc();
        self.lock().reconnects += 1;
    }

    /// Records errors that do not end a connection (catch-up, apply) for the status.
    pub(crate) fn note_error(&self, error: String) {
        self.lock().connection.last_error = Some(error);
    }

    /// Records whether the reader's disk is full (`error`: the failed commit's error while
    /// it is), logging when it fills and when space is back.
    pub(crate) fn set_disk_full(&self, error: Option<&str>) {
        let full = error.is_some();
        if !full && self.metrics.disk_full.get() == 0 {
            // The usual case, after every commit: nothing to change.
            return;
        }
        let was = std::mem::replace(&mut self.lock().disk_full, full);
        self.metrics.disk_full.set(i64::from(full));
        match error {
            Some(error) if !was => tracing::error!(
                %error,
                "the reader's disk is full: applying nothing until space is freed (retrying \
                 with a back-off)"
            ),
            None if was => tracing::info!("the reader's disk has space again: applying resumed"),
            _ => {}
        }
    }

    /// Updates the figures of `key` through `update` and refreshes its gauges.
    pub(crate) fn update_stream(
        &self,
        key: &(StreamName, InstanceName),
        update: impl FnOnce(&mut StreamFigures),
    ) {
        let (position, writer_position) = {
            let mut s = self.lock();
            let figures = s.streams.entry(key.clone()).or_default();
            update(figures);
            let (writer, position) = (figures.writer_position, figures.position);
            figures.lag_clock.observe(writer, position, Instant::now());
            (figures.position, figures.writer_position)
        };
        let labels = [key.0.as_str(), key.1.as_str()];
        let writer = writer_position.max(position);
        self.metrics.position.with(&labels).set(position.0);
        self.metrics.writer_position.with(&labels).set(writer.0);
        self.metrics
            .lag
            .with(&labels)
            .set(writer.0.saturating_sub(position.0));
    }

    /// Sets `reader_lag_seconds` of every stream: how long its oldest unapplied row has waited
    /// (before a scrape).
    pub(crate) fn refresh_lag_seconds(&self) {
        let s = self.lock();
        let now = Instant::now();
        for ((stream, instance), figures) in &s.streams {
            let seconds = figures.lag_clock.seconds(now);
            self.metrics
                .lag_seconds
                .with(&[stream.as_str(), instance.as_str()])
                .set(seconds);
        }
    }

    pub(crate) fn snapshot(&self) -> ReaderStatus {
        let s = self.lock();
        let now = Instant::now();
        ReaderStatus {
            name: self.name.clone(),
            writer: self.writer.clone(),
            connection: s.connection.clone(),
            reconnects: s.reconnects,
            disk_full: s.disk_full,
            streams: s
                .streams
                .iter()
                .map(|((stream, instance), f)| {
                    let writer_position = f.writer_position.max(f.position);
                    StreamStatus {
                        stream: stream.clone(),
                        instance: instance.clone(),
                        position: f.position,
                        writer_position,
                        lag: writer_position.0.saturating_sub(f.position.0),
                        lag_seconds: f.lag_clock.seconds(now),
                        rows_applied: f.rows_applied,
                        batches_applied: f.batches_applied,
                        gaps: f.gaps,
                        last_gap: f.last_gap.map(|(from, to)| GapRange {
                            from: from.0,
                            to: to.0,
                        }),
                        trimmed: f.trimmed,
                        last_trimmed: f.last_trimmed.map(|(from, to)| GapRange {
                            from: from.0,
                            to: to.0,
                        }),
                        resets: f.resets,
                        last_reset: f.last_reset.map(|(from, to)| ResetRange {
                            from: from.0,
                            to: to.0,
                        }),
                    }
                })
                .collect(),
        }
    }
}
