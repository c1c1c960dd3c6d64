//! The one task that applies replication commands in order: Synapse's `POSITION` rule, `batch`
//! runs, catch-up, and group commits of batches and positions (reference §2.10, §2.11).
//!
//! The connection task feeds it [`Inbound`] messages through a bounded channel. Per
//! connection, a stream is "connected" once its first `POSITION` has been processed; `RDATA`
//! before that is dropped, because the `POSITION`'s catch-up fetches it. Everything a closed
//! connection queued is still processed: those rows are valid, and the `Disconnected` message
//! that follows them resets the per-connection state.
//!
//! Positions in memory run ahead of the database by at most one group: batches that are ready
//! wait in `ready` until [`Processor::commit`] hands them to the sink and writes the positions
//! in the same transaction. A failed commit rolls both back, restores the committed positions
//! and reconnects, and the `POSITION` rule fetches the lost rows again.
//!
//! A `POSITION` below the reader's position means the writer is behind. For most streams that
//! is a writer restored from an older state, and the reader keeps its position. For the
//! *resettable* streams ([`Processor::with_resettable_streams`]: Synapse's in-memory `typing`,
//! `federation`, `presence_federation`, whose tokens restart at 0 with their process) it means
//! the writer restarted: the reader commits what it has, moves the position back to
//! [`RUN_START`] in a new [`Run`], and applies the `POSITION` from there (reference §2.11 step
//! 4, rule 36). The commit that does so tells the sink ([`BatchSink::reset`]) and the plugins'
//! feed ([`Reset`]).

// Fx hashing: these maps are keyed by stream and instance names and touched several times
// per row; SipHash's DoS resistance buys nothing for names the writer chose.
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use streamhost_proto::{InstanceName, Position, Rdata, RowJson, StreamName, Token};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::batches::BatchAssembler;
use super::catchup::{CatchupError, CatchupPage, CatchupSource};
use super::inbound::{ConnId, Inbound};
use super::plugins::{Advance, Feed, ReaderPositions, Reset};
use super::sink::{Batch, BatchSink};
use super::status::Shared;
use super::store::{RUN_START, ReaderStore, Run};
use crate::metrics::Counter;

/// A (stream, writer instance) pair: the unit of positions and `batch` runs.
pub(crate) type Key = (StreamName, InstanceName);

/// Rows after which a group is committed even if more commands are waiting. Bounds the
/// transaction and the memory of ready batches; 10,000 rows of a few hundred bytes each is a
/// few MiB. A smaller `inbound_queue` lowers it (see [`Limits::new`]), so that ready batches
/// never hold much more than the queue would.
pub(crate) const MAX_GROUP_ROWS: usize = 10_000;

/// The processor's bounds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Longest pause after repeated failures (the reconnect cap).
    pub(crate) max_pause: Duration,
    /// Rows per group commit at most.
    pub(crate) group_rows: usize,
}

impl Limits {
    /// Groups of at most `min(MAX_GROUP_ROWS, inbound_queue)` rows: the queue size is the
    /// operator's bound on what the reader holds before it stops reading the socket.
    pub(crate) fn new(max_pause: Duration, inbound_queue: usize) -> Limits {
        Limits {
            max_pause,
            group_rows: MAX_GROUP_ROWS.min(inbound_queue).max(1),
        }
    }
}

/// Commands applied per group at most, so positions (and status) move even when commands
/// carry few rows.
const MAX_GROUP_COMMANDS: usize = 50_000;

/// Tries of one catch-up request when the failure is transient.
const CATCHUP_ATTEMPTS: u32 = 5;

/// First pause after a failure (catch-up retry, failed commit); doubles up to the reconnect cap.
const FIRST_PAUSE: Duration = Duration::from_millis(100);

/// Where a (stream, instance) the reader has no position for starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FirstPosition {
    /// From the beginning: its first `POSITION` catches up from 0 (a Streamhost writer, whose
    /// log holds everything).
    CatchUp,
    /// At the first `POSITION`'s new token: a reader joining a live Synapse, whose history is
    /// in Synapse's database, starts from now (not a gap).
    Join,
}

/// Why a catch-up request gave no page.
enum NoPage {
    /// No source has these rows: a gap to report (the reason says why).
    Unavailable(String),
    /// It failed (already reported, the connection is being dropped) or the reader stops.
    Failed,
}

/// A writer's restart found by a `POSITION`, waiting for the next commit.
#[derive(Debug)]
struct PendingReset {
    key: Key,
    /// The reader's position in the writer's earlier run.
    from: Token,
    /// The `POSITION`'s new token.
    to: Token,
}

/// Counters of one stream, looked up once.
#[derive(Clone, Debug)]
struct StreamCounters {
    dropped_not_connected: Counter,
    dropped_old_token: Counter,
    batches: Counter,
    rows: Counter,
    catchup_requests: Counter,
    catchup_rows: Counter,
}

/// The processor and its state; see the module docs.
pub(crate) struct Processor {
    store: ReaderStore,
    sink: Arc<dyn BatchSink>,
    catchup: Arc<dyn CatchupSource>,
    shared: Arc<Shared>,
    /// Asks the connection task to drop the connection with this id.
    drop_tx: watch::Sender<ConnId>,
    shutdown: CancellationToken,
    limits: Limits,

    /// Applied positions, including ready batches not yet committed. Absent means 0.
    positions: HashMap<Key, Token>,
    /// Positions as of the last commit.
    committed: HashMap<Key, Token>,
    /// Keys whose position changed since the last commit.
    dirty: HashSet<Key>,
    /// The writer's last known positions.
    writer_positions: HashMap<Key, Token>,
    /// Keys whose writer position changed since the last publish.
    touched: HashSet<Key>,
    /// Completed batches waiting for the next commit, in application order.
    ready: Vec<Batch>,
    ready_rows: usize,
    /// Unfinished `batch` runs, per (stream, instance).
    assembler: BatchAssembler,
    /// The connection whose commands are being applied.
    conn: Option<ConnId>,
    /// Streams whose `POSITION` has been processed on `conn`.
    connected: HashSet<StreamName>,
    /// Failures in a row, for the pause before going on.
    failures: u32,
    counters: HashMap<StreamName, StreamCounters>,
    /// Where committed batches go for the plugins, when any run.
    feed: Option<Arc<Feed>>,
    /// Where a key with no position starts.
    first_position: FirstPosition,
    /// Streams whose writer restarts its tokens with its process.
    resettable: HashSet<StreamName>,
    /// The writer's run of each key, including resets not yet committed. Absent means run 0.
    runs: HashMap<Key, Run>,
    /// Runs as of the last commit.
    committed_runs: HashMap<Key, Run>,
    /// Resets for the next commit, in the order found (each found with nothing else ready).
    resets: Vec<PendingReset>,
}

impl Processor {
    /// A processor starting from the positions stored in `store`.
    pub(crate) async fn new(
        store: ReaderStore,
        sink: Arc<dyn BatchSink>,
        catchup: Arc<dyn CatchupSource>,
        shared: Arc<Shared>,
        drop_tx: watch::Sender<ConnId>,
        shutdown: CancellationToken,
        limits: Limits,
    ) -> anyhow::Result<Processor> {
        let stored = store
            .positions()
            .await
            .context("reading the reader's positions")?;
        let positions: HashMap<Key, Token> = stored
            .into_iter()
            .map(|(stream, instance, token)| ((stream, instance), token))
            .collect();
        for (key, token) in &positions {
            shared.update_stream(key, |f| f.position = *token);
        }
        let runs: HashMap<Key, Run> = store
            .runs()
            .await
            .context("reading the reader's runs")?
            .into_iter()
            .map(|(stream, instance, run)| ((stream, instance), run))
            .collect();
        Ok(Processor {
            store,
            sink,
            catchup,
            shared,
            drop_tx,
            shutdown,
            limits,
            committed: positions.clone(),
            positions,
            dirty: HashSet::default(),
            writer_positions: HashMap::default(),
            touched: HashSet::default(),
            ready: Vec::new(),
            ready_rows: 0,
            assembler: BatchAssembler::default(),
            conn: None,
            connected: HashSet::default(),
            failures: 0,
            counters: HashMap::default(),
            feed: None,
            first_position: FirstPosition::CatchUp,
            resettable: HashSet::default(),
            committed_runs: runs.clone(),
            runs,
            resets: Vec::new(),
        })
    }

    /// Publishes every commit to `feed` as well (for the plugins).
    pub(crate) fn with_feed(mut self, feed: Arc<Feed>) -> Processor {
        self.feed = Some(feed);
        self
    }

    /// Starts keys with no position as `first` says (default [`FirstPosition::CatchUp`]).
    pub(crate) fn with_first_position(mut self, first: FirstPosition) -> Processor {
        self.first_position = first;
        self
    }

    /// Treats a `POSITION` of one of `streams` below the reader's position as its writer
    /// restarting its tokens (see the module docs) rather than a writer that is behind.
    pub(crate) fn with_resettable_streams(
        mut self,
        streams: impl IntoIterator<Item = StreamName>,
    ) -> Processor {
        self.resettable = streams.into_iter().collect();
        self
    }

    /// The committed positions and runs.
    pub(crate) fn committed(&self) -> ReaderPositions {
        ReaderPositions {
            tokens: self
                .committed
                .iter()
                .map(|(k, t)| (k.clone(), *t))
                .collect(),
            runs: self
                .committed_runs
                .iter()
                .map(|(k, r)| (k.clone(), *r))
                .collect(),
        }
    }

    /// Applies commands until shutdown or until the connection task is gone, committing after
    /// each group; commits what is ready before returning.
    pub(crate) async fn run(mut self, mut rx: mpsc::Receiver<Inbound>) {
        loop {
            let message = tokio::select! {
                biased;
                () = self.shutdown.cancelled() => break,
                message = rx.recv() => match message {
                    Some(message) => message,
                    None => break,
                },
            };
            self.handle(message).await;
            let mut handled = 1;
            while self.ready_rows < self.limits.group_rows
                && handled < MAX_GROUP_COMMANDS
                && !self.shutdown.is_cancelled()
            {
                match rx.try_recv() {
                    Ok(message) => self.handle(message).await,
                    Err(_) => break,
                }
                handled += 1;
            }
            self.commit().await;
        }
        self.commit().await;
    }

    /// Applies one message (batches become ready; nothing is committed unless a catch-up fills
    /// a group).
    pub(crate) async fn handle(&mut self, message: Inbound) {
        match message {
            Inbound::Connected(id) => {
                self.conn = Some(id);
                self.forget_connection();
            }
            Inbound::Disconnected(id) => {
                if self.conn == Some(id) {
                    self.conn = None;
                }
                self.forget_connection();
            }
            Inbound::Rdata(id, rdata) if self.conn == Some(id) => self.on_rdata(rdata),
            Inbound::Position(id, position) if self.conn == Some(id) => {
                self.on_position(position).await
            }
            // Commands of a connection that is not current cannot be queued behind its
            // `Disconnected`; ignore them defensively.
            Inbound::Rdata(..) | Inbound::Position(..) => {}
        }
    }

    fn forget_connection(&mut self) {
        self.connected.clear();
        self.assembler.clear_all();
    }

    fn position(&self, key: &Key) -> Token {
        self.positions.get(key).copied().unwrap_or(Token(0))
    }

    fn run_of(&self, key: &Key) -> Run {
        self.runs.get(key).copied().unwrap_or_default()
    }

    fn counters(&mut self, stream: &StreamName) -> &StreamCounters {
        if !self.counters.contains_key(stream) {
            let m = &self.shared.metrics;
            let s = stream.as_str();
            let counters = StreamCounters {
                dropped_not_connected: m.rdata_dropped.with(&[s, "not_connected"]),
                dropped_old_token: m.rdata_dropped.with(&[s, "old_token"]),
                batches: m.batches_applied.with(&[s]),
                rows: m.rows_applied.with(&[s]),
                catchup_requests: m.catchup_requests.with(&[s]),
                catchup_rows: m.catchup_rows.with(&[s]),
            };
            self.counters.insert(stream.clone(), counters);
        }
        &self.counters[stream]
    }

    fn note_writer_position(&mut self, key: &Key, token: Token) {
        match self.writer_positions.get_mut(key) {
            Some(known) if *known >= token => return,
            Some(known) => *known = token,
            None => {
                self.writer_positions.insert(key.clone(), token);
            }
        }
        if !self.touched.contains(key) {
            self.touched.insert(key.clone());
        }
    }

    /// Moves the applied position of `key` forward to `token` (never backwards).
    fn advance(&mut self, key: &Key, token: Token) {
        if token <= self.position(key) {
            return;
        }
        self.positions.insert(key.clone(), token);
        if !self.dirty.contains(key) {
            self.dirty.insert(key.clone());
        }
    }

    fn deliver(&mut self, key: &Key, token: Token, rows: Vec<RowJson>) {
        let batch = Batch {
            stream: key.0.clone(),
            instance: key.1.clone(),
            prev: Token(0),
            token,
            rows,
        };
        self.push_ready(key, batch);
    }

    /// Queues `batch` (of `key`) for the next commit and moves the position to its token.
    fn push_ready(&mut self, key: &Key, mut batch: Batch) {
        batch.prev = self.position(key);
        debug_assert!(batch.token > batch.prev, "batches only move forwards");
        self.ready_rows += batch.rows.len();
        self.advance(key, batch.token);
        self.ready.push(batch);
    }

    fn on_rdata(&mut self, rdata: Rdata) {
        if !self.connected.contains(&rdata.stream) {
            tracing::debug!(stream = %rdata.stream, instance = %rdata.instance, "RDATA before the stream's POSITION on this connection: dropped");
            self.counters(&rdata.stream).dropped_not_connected.inc();
            return;
        }
        let Some(batch) = self.assembler.push(rdata) else {
            return;
        };
        let key = (batch.stream.clone(), batch.instance.clone());
        self.note_writer_position(&key, batch.token);
        if batch.token > self.position(&key) {
            self.push_ready(&key, batch);
        } else {
            tracing::debug!(stream = %key.0, instance = %key.1, token = %batch.token, "RDATA at or below the applied position: dropped");
            self.counters(&key.0)
                .dropped_old_token
                .add(batch.rows.len() as u64);
        }
    }

    async fn on_position(&mut self, position: Position) {
        let Position {
            stream,
            instance,
            prev,
            new,
        } = position;
        let key = (stream, instance);
        self.note_writer_position(&key, new);
        let cleared = self.assembler.clear(&key.0, &key.1);
        if cleared > 0 {
            tracing::debug!(stream = %key.0, instance = %key.1, rows = cleared, "POSITION cleared an unfinished batch run");
        }
        let cur = self.position(&key);
        if self.first_position == FirstPosition::Join && !self.positions.contains_key(&key) {
            tracing::info!(stream = %key.0, instance = %key.1, token = %new, "following a new stream from its announced position");
            // Known from now on, even at token 0: a later jump is a gap, not another join.
            self.positions.insert(key.clone(), new);
            self.dirty.insert(key.clone());
        } else if cur > new && self.resettable.contains(&key.0) {
            // The writer restarted: the rule applies from the start of its new run, so rows of
            // that run it did not send live are fetched, or reported as a gap.
            if !self.reset(&key, cur, new).await {
                return;
            }
            if RUN_START < prev && !self.catch_up(&key, RUN_START, new).await {
                return;
            }
        } else if cur > new {
            tracing::warn!(
                stream = %key.0, instance = %key.1, position = %cur, writer_position = %new,
                "the writer is behind this reader (restored from an older state?); keeping the position"
            );
            self.shared
                .metrics
                .writer_behind
                .with(&[key.0.as_str()])
                .inc();
        } else if cur < prev && !self.catch_up(&key, cur, new).await {
            return;
        }
        self.advance(&key, new);
        self.connected.insert(key.0);
    }

    /// The writer of `key` restarted its tokens (it is at `new`, below the reader's `cur`):
    /// commits what is ready (rows of the earlier run), then moves the position back to
    /// [`RUN_START`] in the next run; the caller applies the `POSITION` from there, so rows of
    /// the new run up to `new` are fetched, or reported as a gap. Reported once committed.
    /// False if the commit failed (the stream then stays disconnected).
    async fn reset(&mut self, key: &Key, cur: Token, new: Token) -> bool {
        if !self.commit().await {
            return false;
        }
        let run = self.run_of(key).next();
        self.runs.insert(key.clone(), run);
        self.positions.insert(key.clone(), RUN_START);
        self.dirty.insert(key.clone());
        // The writer's position of the new run; the earlier run's was higher.
        self.writer_positions.insert(key.clone(), new);
        self.touched.insert(key.clone());
        self.resets.push(PendingReset {
            key: key.clone(),
            from: cur,
            to: new,
        });
        true
    }

    /// Fetches and delivers `(cur, new]` of `key`, following `limited`. False if it could not
    /// (the stream then stays disconnected on this connection).
    async fn catch_up(&mut self, key: &Key, cur: Token, new: Token) -> bool {
        let mut from = cur;
        loop {
            let page = match self.fetch(&key.0, from, new).await {
                Ok(page) => page,
                Err(NoPage::Unavailable(reason)) => {
                    self.report_gap(key, from, new, &reason);
                    return true;
                }
                Err(NoPage::Failed) => return false,
            };
            self.counters(&key.0)
                .catchup_rows
                .add(page.updates.len() as u64);
            if let Err(reason) = check_page(&page, from, new) {
                self.fail(
                    format!("catch-up of {} from {from} to {new}: {reason}", key.0),
                    "catchup",
                )
                .await;
                return false;
            }
            let limited = page.limited;
            let upto = page.upto;
            let mut updates = page.updates.into_iter().peekable();
            while let Some((token, row)) = updates.next() {
                let mut rows = vec![row];
                while let Some((_, row)) = updates.next_if(|(next, _)| *next == token) {
                    rows.push(row);
                }
                if token > self.position(key) {
                    self.deliver(key, token, rows);
                } else {
                    self.counters(&key.0)
                        .dropped_old_token
                        .add(rows.len() as u64);
                }
            }
            if !limited {
                return true;
            }
            self.advance(key, upto);
            from = upto;
            if from >= new {
                return true;
            }
            if self.ready_rows >= self.limits.group_rows && !self.commit().await {
                return false;
            }
        }
    }

    /// Reports that `(from, to]` of `key` was missed and cannot be fetched: a warning, the
    /// `reader_gaps_total` metric and the stream's entry in the status. The position then
    /// moves on to `to` (the caller's `POSITION`), so the gap is reported once.
    fn report_gap(&mut self, key: &Key, from: Token, to: Token, reason: &str) {
        tracing::warn!(
            stream = %key.0, instance = %key.1, from = from.0, to = to.0, %reason,
            "gap: rows in (from, to] were missed and cannot be fetched; following on from `to`"
        );
        self.shared
            .metrics
            .gaps
            .with(&[key.0.as_str(), key.1.as_str()])
            .inc();
        self.shared.update_stream(key, |f| {
            f.gaps += 1;
            f.last_gap = Some((from, to));
        });
    }

    /// One catch-up request with retries of transient failures.
    async fn fetch(
        &mut self,
        stream: &StreamName,
        from: Token,
        upto: Token,
    ) -> Result<CatchupPage, NoPage> {
        let mut pause = FIRST_PAUSE;
        for attempt in 1..=CATCHUP_ATTEMPTS {
            self.counters(stream).catchup_requests.inc();
            let result = tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return Err(NoPage::Failed),
                result = self.catchup.fetch(stream, from, upto) => result,
            };
            let error = match result {
                Ok(page) => return Ok(page),
                Err(CatchupError::Unavailable(reason)) => return Err(NoPage::Unavailable(reason)),
                Err(error) => error,
            };
            if !error.is_transient() || attempt == CATCHUP_ATTEMPTS {
                let message = format!("catch-up of {stream} from {from} to {upto}: {error}");
                self.fail(message, "catchup").await;
                return Err(NoPage::Failed);
            }
            self.shared.metrics.errors.with(&["catchup"]).inc();
            tracing::debug!(%stream, %error, attempt, "catch-up failed; retrying");
            tokio::select! {
                () = self.shutdown.cancelled() => return Err(NoPage::Failed),
                () = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(self.limits.max_pause);
        }
        Err(NoPage::Failed)
    }

    /// Commits the ready batches and changed positions in one transaction, then publishes
    /// status and metrics. On failure rolls back to the committed positions (see module docs);
    /// returns whether it committed.
    pub(crate) async fn commit(&mut self) -> bool {
        if self.ready.is_empty() && self.dirty.is_empty() {
            self.publish(&HashMap::default());
            return true;
        }
        let positions: Vec<(StreamName, InstanceName, Token, Run)> = self
            .dirty
            .iter()
            .map(|key| {
                let (token, run) = (self.position(key), self.run_of(key));
                (key.0.clone(), key.1.clone(), token, run)
            })
            .collect();
        let result = async {
            let mut tx = self
                .store
                .pool()
                .begin()
                .await
                .context("beginning a transaction")?;
            for reset in &self.resets {
                self.sink
                    .reset(&reset.key.0, &reset.key.1, RUN_START, &mut tx)
                    .await
                    .context("the sink failed to reset")?;
            }
            if !self.ready.is_empty() {
                self.sink
                    .apply(&self.ready, &mut tx)
                    .await
                    .context("the sink failed")?;
            }
            ReaderStore::write_positions(&mut tx, &positions)
                .await
                .context("writing positions")?;
            tx.commit().await.context("committing")?;
            anyhow::Ok(())
        }
        .await;
        if let Err(error) = result {
            self.rollback();
            self.fail(format!("applying batches: {error:#}"), "apply")
                .await;
            return false;
        }
        self.shared.metrics.commits.inc();
        self.failures = 0;
        let mut applied: HashMap<Key, (u64, u64)> = HashMap::default();
        let batches = std::mem::take(&mut self.ready);
        for batch in &batches {
            let counters = self.counters(&batch.stream).clone();
            counters.batches.inc();
            counters.rows.add(batch.rows.len() as u64);
            let entry = applied
                .entry((batch.stream.clone(), batch.instance.clone()))
                .or_default();
            entry.0 += 1;
            entry.1 += batch.rows.len() as u64;
        }
        self.ready_rows = 0;
        let resets = std::mem::take(&mut self.resets);
        let mut feed_resets = Vec::with_capacity(resets.len());
        for reset in resets {
            let run = self.run_of(&reset.key);
            self.report_reset(&reset, run);
            self.committed.insert(reset.key.clone(), RUN_START);
            self.committed_runs.insert(reset.key.clone(), run);
            feed_resets.push(Reset {
                key: reset.key,
                run,
            });
        }
        let mut advances = Vec::with_capacity(positions.len());
        for (stream, instance, token, _) in positions {
            let key = (stream, instance);
            self.dirty.remove(&key);
            let before = self
                .committed
                .insert(key.clone(), token)
                .unwrap_or(Token(0));
            if self.feed.is_some() && token > before {
                advances.push(Advance {
                    key: key.clone(),
                    before,
                    after: token,
                    run: self.run_of(&key),
                });
            }
            self.touched.insert(key);
        }
        if let Some(feed) = &self.feed {
            feed.publish(batches, advances, feed_resets);
        }
        self.publish(&applied);
        true
    }

    /// Pushes changed positions and counts to the status and gauges.
    fn publish(&mut self, applied: &HashMap<Key, (u64, u64)>) {
        for key in std::mem::take(&mut self.touched) {
            let position = self.committed.get(&key).copied().unwrap_or(Token(0));
            let writer = self.writer_positions.get(&key).copied().unwrap_or(Token(0));
            let (batches, rows) = applied.get(&key).copied().unwrap_or_default();
            self.shared.update_stream(&key, |f| {
                f.position = position;
                f.writer_position = writer;
                f.batches_applied += batches;
                f.rows_applied += rows;
            });
        }
    }

    /// Reports a committed reset: a warning, `reader_stream_resets_total` and the stream's
    /// entry in the status.
    fn report_reset(&self, reset: &PendingReset, run: Run) {
        let key = &reset.key;
        tracing::warn!(
            stream = %key.0, instance = %key.1, from = reset.from.0, to = reset.to.0, run = run.0,
            "the writer restarted this stream's tokens: following its new run from `to` (rows up to `to` are fetched or reported as a gap)"
        );
        self.shared
            .metrics
            .resets
            .with(&[key.0.as_str(), key.1.as_str()])
            .inc();
        self.shared.update_stream(key, |f| {
            f.resets += 1;
            f.last_reset = Some((reset.from, reset.to));
        });
    }

    /// Forgets everything not committed.
    fn rollback(&mut self) {
        self.ready.clear();
        self.ready_rows = 0;
        self.dirty.clear();
        self.resets.clear();
        self.runs = self.committed_runs.clone();
        self.positions = self.committed.clone();
        self.forget_connection();
    }

    /// Handles a failure that leaves this connection's view incomplete: records it, asks for
    /// a new connection (whose `POSITION`s fetch what is missing) and pauses, longer after each
    /// failure in a row.
    async fn fail(&mut self, message: String, reason: &'static str) {
        tracing::warn!(error = %message, "reader processing failed; reconnecting");
        self.shared.metrics.errors.with(&[reason]).inc();
        self.shared.note_error(message);
        if let Some(id) = self.conn {
            self.drop_tx.send_replace(id);
        }
        self.forget_connection();
        let pause = FIRST_PAUSE
            .saturating_mul(1u32 << self.failures.min(16))
            .min(self.limits.max_pause);
        self.failures += 1;
        tokio::select! {
            () = self.shutdown.cancelled() => {}
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// Checks a catch-up answer against the endpoint's contract for a request of `(from, new]`.
fn check_page(page: &CatchupPage, from: Token, new: Token) -> Result<(), String> {
    let limit = if page.limited { page.upto } else { new };
    if page.limited && (page.upto <= from || page.upto > new) {
        return Err(format!(
            "limited answer with upto_token {} outside ({from}, {new}]",
            page.upto
        ));
    }
    let mut last = from;
    for (token, _) in &page.updates {
        if *token <= from || *token > limit {
            return Err(format!("row at token {token} outside ({from}, {limit}]"));
        }
        if *token < last {
            return Err(format!("rows out of order: {token} after {last}"));
        }
        last = *token;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::reader::plugins::FeedRead;
    use crate::reader::sink::BoxFuture;
    use crate::reader::status::{GapRange, ResetRange};

    fn stream(s: &str) -> StreamName {
        StreamName::new(s).unwrap()
    }

    fn instance(s: &str) -> InstanceName {
        InstanceName::new(s).unwrap()
    }

    fn row(s: &str) -> RowJson {
        RowJson::parse(s.as_bytes()).unwrap()
    }

    fn rdata(s: &str, i: &str, token: Option<i64>, r: &str) -> Rdata {
        Rdata {
            stream: stream(s),
            instance: instance(i),
            token: token.map(Token),
            row: row(r),
        }
    }

    fn position(s: &str, i: &str, prev: i64, new: i64) -> Position {
        Position {
            stream: stream(s),
            instance: instance(i),
            prev: Token(prev),
            new: Token(new),
        }
    }

    /// Keeps every batch it is given, and every reset as (stream, instance, to, batches
    /// received before it).
    #[derive(Default)]
    struct CollectingSink {
        batches: Mutex<Vec<Batch>>,
        resets: Mutex<Vec<(String, String, i64, usize)>>,
        fail: std::sync::atomic::AtomicBool,
    }

    impl BatchSink for CollectingSink {
        fn apply<'a>(
            &'a self,
            batches: &'a [Batch],
            _tx: &'a mut sqlx::SqliteConnection,
        ) -> BoxFuture<'a, anyhow::Result<()>> {
            Box::pin(async move {
                if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
                    anyhow::bail!("sink refuses");
                }
                self.batches.lock().unwrap().extend_from_slice(batches);
                Ok(())
            })
        }

        fn reset<'a>(
            &'a self,
            stream: &'a StreamName,
            instance: &'a InstanceName,
            to: Token,
            _tx: &'a mut sqlx::SqliteConnection,
        ) -> BoxFuture<'a, anyhow::Result<()>> {
            Box::pin(async move {
                let before = self.batches.lock().unwrap().len();
                self.resets.lock().unwrap().push((
                    stream.to_string(),
                    instance.to_string(),
                    to.0,
                    before,
                ));
                Ok(())
            })
        }
    }

    /// Serves one stream's rows from memory, `page` rows at most per answer (never cutting a
    /// token), and records every request.
    struct MemoryCatchup {
        rows: Vec<(Token, RowJson)>,
        page: usize,
        requests: Mutex<Vec<(StreamName, Token, Token)>>,
        broken: bool,
        /// Answers `Unavailable` (a Synapse stream with no catch-up source).
        unavailable: bool,
    }

    impl MemoryCatchup {
        fn new(rows: &[(i64, &str)], page: usize) -> MemoryCatchup {
            MemoryCatchup {
                rows: rows.iter().map(|(t, r)| (Token(*t), row(r))).collect(),
                page,
                requests: Mutex::new(Vec::new()),
                broken: false,
                unavailable: false,
            }
        }
    }

    impl CatchupSource for MemoryCatchup {
        fn fetch<'a>(
            &'a self,
            stream: &'a StreamName,
            from: Token,
            upto: Token,
        ) -> BoxFuture<'a, Result<CatchupPage, CatchupError>> {
            Box::pin(async move {
                self.requests
                    .lock()
                    .unwrap()
                    .push((stream.clone(), from, upto));
                if self.unavailable {
                    return Err(CatchupError::Unavailable(
                        "only in Synapse's database".into(),
                    ));
                }
                if self.broken {
                    return Err(CatchupError::Status {
                        status: hyper::StatusCode::BAD_REQUEST,
                        body: "Unknown stream".into(),
                    });
                }
                let mut updates: Vec<(Token, RowJson)> = Vec::new();
                let mut limited = false;
                for (token, r) in &self.rows {
                    if *token <= from || *token > upto {
                        continue;
                    }
                    if updates.len() >= self.page && updates.last().is_some_and(|(t, _)| t != token)
                    {
                        limited = true;
                        break;
                    }
                    updates.push((*token, r.clone()));
                }
                let upto = if limited {
                    updates.last().expect("limited after rows").0
                } else {
                    upto
                };
                Ok(CatchupPage {
                    updates,
                    upto,
                    limited,
                })
            })
        }
    }

    struct Harness {
        processor: Processor,
        sink: Arc<CollectingSink>,
        catchup: Arc<MemoryCatchup>,
        drop_rx: watch::Receiver<ConnId>,
        store: ReaderStore,
        _dir: tempfile::TempDir,
    }

    async fn harness(catchup: MemoryCatchup) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store = ReaderStore::open(&dir.path().join("reader.sqlite"))
            .await
            .unwrap();
        let sink = Arc::new(CollectingSink::default());
        let catchup = Arc::new(catchup);
        let shared = Arc::new(Shared::new("test".into(), "nowhere".into()));
        let (drop_tx, drop_rx) = watch::channel(0);
        let processor = Processor::new(
            store.clone(),
            sink.clone(),
            catchup.clone(),
            shared,
            drop_tx,
            CancellationToken::new(),
            Limits::new(Duration::from_millis(1), 100_000),
        )
        .await
        .unwrap();
        Harness {
            processor,
            sink,
            catchup,
            drop_rx,
            store,
            _dir: dir,
        }
    }

    impl Harness {
        /// Follows a Synapse: joins new streams at their announcement, `typing` resets.
        fn synapse(mut self) -> Harness {
            self.processor = self
                .processor
                .with_first_position(FirstPosition::Join)
                .with_resettable_streams([stream("typing")]);
            self
        }

        /// A new processor on the same database, sink and catch-up source (a reader restart),
        /// following a Synapse.
        async fn restart(mut self) -> Harness {
            let (drop_tx, drop_rx) = watch::channel(0);
            self.processor = Processor::new(
                self.store.clone(),
                self.sink.clone(),
                self.catchup.clone(),
                Arc::new(Shared::new("test".into(), "nowhere".into())),
                drop_tx,
                CancellationToken::new(),
                Limits::new(Duration::from_millis(1), 100_000),
            )
            .await
            .unwrap();
            self.drop_rx = drop_rx;
            self.synapse()
        }

        async fn runs(&self) -> Vec<(String, String, i64)> {
            self.store
                .runs()
                .await
                .unwrap()
                .into_iter()
                .map(|(s, i, r)| (s.to_string(), i.to_string(), r.0))
                .collect()
        }

        async fn feed(&mut self, messages: Vec<Inbound>) {
            for m in messages {
                self.processor.handle(m).await;
            }
            assert!(self.processor.commit().await);
        }

        /// (stream, instance, prev, token, rows) of every batch delivered so far.
        fn delivered(&self) -> Vec<Delivered> {
            self.sink
                .batches
                .lock()
                .unwrap()
                .iter()
                .map(|b| {
                    (
                        b.stream.to_string(),
                        b.instance.to_string(),
                        b.prev.0,
                        b.token.0,
                        b.rows.iter().map(|r| r.as_str().to_owned()).collect(),
                    )
                })
                .collect()
        }

        async fn stored(&self) -> Vec<(String, String, i64)> {
            self.store
                .positions()
                .await
                .unwrap()
                .into_iter()
                .map(|(s, i, t)| (s.to_string(), i.to_string(), t.0))
                .collect()
        }
    }

    /// A delivered batch: (stream, instance, prev, token, rows).
    type Delivered = (String, String, i64, i64, Vec<String>);

    fn b(s: &str, i: &str, prev: i64, token: i64, rows: &[&str]) -> Delivered {
        (
            s.into(),
            i.into(),
            prev,
            token,
            rows.iter().map(|r| r.to_string()).collect(),
        )
    }

    #[tokio::test]
    async fn position_within_prev_and_new_only_advances() {
        let mut h = harness(MemoryCatchup::new(&[(3, "[3]")], 100)).await;
        h.feed(vec![
            Inbound::Connected(1),
            Inbound::Position(1, position("events", "master", 0, 5)),
        ])
        .await;
        assert!(
            h.catchup.requests.lock().unwrap().is_empty(),
            "no fetch when prev <= cur <= new"
        );
        assert!(h.delivered().is_empty());
        assert_eq!(
            h.stored().await,
            vec![("events".into(), "master".into(), 5)]
        );
        // RDATA above the position is delivered from the position.
        h.feed(vec![Inbound::Rdata(
            1,
            rdata("events", "master", Some(6), "[6]"),
        )])
        .await;
        assert_eq!(h.delivered(), vec![b("events", "master", 5, 6, &["[6]"])]);
        assert_eq!(
            h.stored().await,
            vec![("events".into(), "master".into(), 6)]
        );
    }

    #[tokio::test]
    async fn gap_is_fetched_following_limited_and_delivered_by_token() {
        let rows = [
            (2, "[2]"),
            (3, "[3,0]"),
            (3, "[3,1]"),
            (4, "[4]"),
            (6, "[6]"),
            (7, "[7]"),
        ];
        let mut h = harness(MemoryCatchup::new(&rows, 2)).await;
        h.feed(vec![
            Inbound::Connected(1),
            Inbound::Position(1, position("events", "master", 6, 8)),
            Inbound::Rdata(1, rdata("events", "master", Some(9), "[9]")),
        ])
        .await;
        assert_eq!(
            *h.catchup.requests.lock().unwrap(),
            vec![
                (stream("events"), Token(0), Token(8)),
                (stream("events"), Token(3), Token(8)),
                (stream("events"), Token(6), Token(8)),
            ]
        );
        assert_eq!(
            h.delivered(),
            vec![
                b("events", "master", 0, 2, &["[2]"]),
                b("events", "master", 2, 3, &["[3,0]", "[3,1]"]),
                b("events", "master", 3, 4, &["[4]"]),
                b("events", "master", 4, 6, &["[6]"]),
                b("events", "master", 6, 7, &["[7]"]),
                b("events", "master", 8, 9, &["[9]"]),
            ]
        );
        assert_eq!(
            h.stored().await,
            vec![("events".into(), "master".into(), 9)]
        );
    }

    #[tokio::test]
    async fn writer_behind_the_reader_never_moves_it_back_or_redelivers() {
        let mut h = harness(MemoryCatchup::new(&[], 100)).await;
        h.feed(vec![
            Inbound::Connected(1),
            Inbound::Position(1, position("events", "master", 10, 10)),
        ])
        .await;
        let fetched = h.catchup.requests.lock().unwrap().len();
        assert_eq!(
            h.stored().await,
            vec![("events".into(), "master".into(), 10)]
        );
        h.feed(vec![
            Inbound::Disconnected(1),
            Inbound::Connected(2),
            Inbound::Position(2, position("events", "master", 4, 4)),
            Inbound::Rdata(2, rdata("events", "master", Some(5), "[5]")),
            Inbound::Rdata(2, rdata("events", "master", Some(11), "[11]")),
        ])
        .await;
        assert_eq!(
            h.catchup.requests.lock().unwrap().len(),
            fetched,
            "no fetch when cur > new"
        );
        assert_eq!(
            h.delivered(),
            vec![b("events", "master", 10, 11, &["[11]"])]
        );
        assert_eq!(
            h.stored().await,
            vec![("events".into(), "master".into(), 11)]
        );
        let text = h.processor.shared.metrics.registry.render();
        assert!(
            text.contains("streamhost_reader_writer_behind_total{stream=\"events\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "streamhost_reader_rdata_dropped_total{stream=\"events\",reason=\"old_token\"} 1"
            ),
            "{text}"
        );
    }

    #[tokio::test]
    async fn rdata_before_the_streams_position_is_dropped_on_each_connection() {
        let mut h = harness(MemoryCatchup::new(&[], 100)).await;
        h.feed(vec![
            Inbound::Connected(1),
            Inbound::Rdata(1, rdata("events", "master", Some(2), "[2]")),
            Inbound::Position(1, position("typing", "master", 0, 0)),
            Inbound::Rdata(1, rdata("events", "master", Some(3), "[3]")),
            Inbound::Position(1, position("events", "master", 3, 3)),
            Inbound::Rdata(1, rdata("events", "master", Some(4), "[4]")),
            Inbound::Disconnected(1),
            Inbound::Connected(2),
            Inbound::Rdata(2, rdata("events", "master", Some(5), "[5]")),
            Inbound::Position(2, position("events", "master", 5, 5)),
            Inbound::Rdata(2, rdata("events", "master", Some(6), "[6]")),
        ])
        .await;
        assert_eq!(
            h.delivered(),
            vec![
                b("events", "master", 3, 4, &["[4]"]),
                b("events", "master", 5, 6, &["[6]"])
            ]
        );
        let text = h.processor.shared.metrics.registry.render();
        assert!(
            text.contains("streamhost_reader_rdata_dropped_total{stream=\"events\",reason=\"not_connected\"} 3"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn batch_runs_are_kept_per_instance_even_when_interleaved() {
        let mut h = harness(MemoryCatchup::new(&[], 100)).await;
        h.feed(vec![
            Inbound::Connected(1),
            Inbound::Position(1, position("events", "a", 0, 0)),
            Inbound::Position(1, position("events", "b", 0, 0)),
            Inbound::Rdata(1, rdata("events", "a", None, "[\"a1\"]")),
            Inbound::Rdata(1, rdata("events", "b", None, "[\"b1\"]")),
            Inbound::Rdata(1, rdata("events", "a", None, "[\"a2\"]")),
            Inbound::Rdata(1, rdata("events", "b", Some(7), "[\"b2\"]")),
            Inbound::Rdata(1, rdata("events", "a", Some(3), "[\"a3\"]")),
            Inbound::Rdata(1, rdata("events", "a", Some(4), "[\"a4\"]")),
        ])
        .await;
        assert_eq!(
            h.delivered(),
            vec![
                b("events", "b", 0, 7, &["[\"b1\"]", "[\"b2\"]"]),
                b("events", "a", 0, 3, &["[\"a1\"]", "[\"a2\"]", "[\"a3\"]"]),
                b("events", "a", 3, 4, &["[\"a4\"]"]),
            ]
        );
        assert_eq!(
            h.stored().await,
            vec![
                ("events".into(), "a".into(), 4),
                ("events".into(), "b".into(), 7)
            ]
        );
    }

    #[tokio::test]
    async fn a_run_ending_at_an_old_token_is_dropped_whole() {
        let mut h = harness(MemoryCatchup::new(&[], 100)).await;
        h.feed(vec![
            Inbound::Connected(1),
            Inbound::Position(1, position("events", "master", 5, 5)),
            Inbound::Rdata(1, rdata("events", "master", None, "[1]")),
            Inbound::Rdata(1, rdata("events", "master", None, "[2]")),
            Inbound::Rdata(1, rdata("events", "master", Some(5), "[3]")),
            Inbound::Rdata(1, rdata("events", "master", Some(4), "[4]")),
            Inbound::Rdata(1, rdata("events", "master", None, "[6]")),
            Inbound::Rdata(1, rdata("events", "master", Some(6), "[7]")),
        ])
        .await;
        assert_eq!(
            h.delivered(),
            vec![b("events", "master", 5, 6, &["[6]", "[7]"])]
        );
        let text = h.processor.shared.metrics.registry.render();
        assert!(
            text.contains(
                "streamhost_reader_rdata_dropped_total{stream=\"events\",reason=\"old_token\"} 4"
            ),
            "{text}"
        );
    }

    #[tokio::test]
    async fn position_clears_the_unfinished_run_and_catch_up_rereads_it() {
        let mut h = harness(MemoryCatchup::new(&[(3, "[\"x\"]"), (3, "[\"y\"]")], 100)).await;
        h.feed(vec![
            Inbound::Connected(1),
            Inbound::Position(1, position("events", "master", 1, 1)),
            Inbound::Rdata(1, rdata("events", "master", None, "[\"x\"]")),
            Inbound::Rdata(1, rdata("events", "other", None, "[\"o\"]")),
            // A gap: the reader is at 1, the writer says it last published 3.
            Inbound::Position(1, position("events", "master", 3, 3)),
            Inbound::Rdata(1, rdata("events", "master", Some(4), "[\"z\"]")),
            Inbound::Rdata(1, rdata("events", "other", Some(2), "[\"p\"]")),
        ])
        .await;
        assert_eq!(
            h.delivered(),
            vec![
                b("events", "master", 1, 3, &["[\"x\"]", "[\"y\"]"]),
                b("events", "master", 3, 4, &["[\"z\"]"]),
                // Only the named instance's run is cleared.
                b("events", "other", 0, 2, &["[\"o\"]", "[\"p\"]"]),
            ]
        );
    }

    #[tokio::test]
    async fn a_disconnect_forgets_pending_runs_but_queued_rows_still_apply() {
        let mut h = harness(MemoryCatchup::new(&[], 100)).await;
        h.feed(vec![
            Inbound::Connected(1),
            Inbound::Position(1, position("events", "master", 0, 0)),
            Inbound::Rdata(1, rdata("events", "master", Some(2), "[2]")),
            Inbound::Rdata(1, rdata("events", "master", None, "[3]")),
            Inbound::Disconnected(1),
            Inbound::Connected(2),
            Inbound::Position(2, position("events", "master", 2, 2)),
            Inbound::Rdata(2, rdata("events", "master", Some(3), "[4]")),
        ])
        .await;
        assert_eq!(
            h.delivered(),
            vec![
                b("events", "master", 0, 2, &["[2]"]),
                b("events", "master", 2, 3, &["[4]"])
            ]
        );
    }

    #[tokio::test]
    async fn a_failed_commit_rolls_back_and_asks_for_a_new_connection() {
        let mut h = harness(MemoryCatchup::new(&[], 100)).await;
        h.feed(vec![
            Inbound::Connected(1),
            Inbound::Position(1, position("events", "master", 0, 2)),
        ])
        .await;
        h.sink.fail.store(true, std::sync::atomic::Ordering::SeqCst);
        h.processor
            .handle(Inbound::Rdata(1, rdata("events", "master", Some(3), "[3]")))
            .await;
        assert!(!h.processor.commit().await);
        assert_eq!(*h.drop_rx.borrow(), 1, "asked to drop connection 1");
        assert_eq!(
            h.stored().await,
            vec![("events".into(), "master".into(), 2)]
        );
        assert_eq!(
            h.processor
                .position(&(stream("events"), instance("master"))),
            Token(2)
        );
        // The stream is disconnected until the next POSITION, which catches up from 2.
        h.sink
            .fail
            .store(false, std::sync::atomic::Ordering::SeqCst);
        h.feed(vec![Inbound::Rdata(
            1,
            rdata("events", "master", Some(4), "[4]"),
        )])
        .await;
        assert!(h.delivered().is_empty());
    }

    #[tokio::test]
    async fn a_failing_catch_up_leaves_the_stream_disconnected() {
        let mut catchup = MemoryCatchup::new(&[], 100);
        catchup.broken = true;
        let mut h = harness(catchup).await;
        h.feed(vec![
            Inbound::Connected(1),
            Inbound::Position(1, position("events", "master", 1, 1)),
            Inbound::Rdata(1, rdata("events", "master", Some(2), "[2]")),
        ])
        .await;
        assert_eq!(
            h.catchup.requests.lock().unwrap().len(),
            1,
            "a 400 is not retried"
        );
        assert!(h.delivered().is_empty());
        assert!(h.stored().await.is_empty());
        assert_eq!(*h.drop_rx.borrow(), 1);
    }

    #[tokio::test]
    async fn a_gap_no_source_can_fill_is_reported_once_and_the_stream_follows_on() {
        let mut catchup = MemoryCatchup::new(&[], 100);
        catchup.unavailable = true;
        let mut h = harness(catchup).await;
        h.feed(vec![
            Inbound::Connected(1),
            Inbound::Position(1, position("receipts", "master", 0, 0)),
            Inbound::Rdata(1, rdata("receipts", "master", Some(2), "[2]")),
            // The reader is at 2; the writer last published 5: (2, 6] cannot be fetched.
            Inbound::Position(1, position("receipts", "master", 5, 6)),
            Inbound::Rdata(1, rdata("receipts", "master", Some(7), "[7]")),
        ])
        .await;
        assert_eq!(
            h.delivered(),
            vec![
                b("receipts", "master", 0, 2, &["[2]"]),
                b("receipts", "master", 6, 7, &["[7]"]),
            ]
        );
        assert_eq!(*h.drop_rx.borrow(), 0, "a gap does not drop the connection");
        let status = h.processor.shared.snapshot();
        let stream = status.stream("receipts", "master").unwrap();
        assert_eq!(
            (stream.gaps, stream.last_gap),
            (1, Some(GapRange { from: 2, to: 6 }))
        );
        let text = h.processor.shared.metrics.registry.render();
        assert!(
            text.contains(
                "streamhost_reader_gaps_total{stream=\"receipts\",instance=\"master\"} 1"
            ),
            "{text}"
        );
    }

    #[tokio::test]
    async fn joining_a_live_synapse_starts_unknown_streams_at_their_announcement() {
        let mut catchup = MemoryCatchup::new(&[], 100);
        catchup.unavailable = true;
        let mut h = harness(catchup).await;
        h.processor = h.processor.with_first_position(FirstPosition::Join);
        h.feed(vec![
            Inbound::Connected(1),
            Inbound::Position(1, position("events", "master", 4533, 4533)),
            Inbound::Rdata(1, rdata("events", "master", Some(4534), "[1]")),
            Inbound::Position(1, position("typing", "master", 0, 0)),
            Inbound::Position(1, position("typing", "master", 4, 5)),
        ])
        .await;
        let status = h.processor.shared.snapshot();
        let typing = status.stream("typing", "master").unwrap();
        assert_eq!(
            (typing.gaps, typing.last_gap),
            (1, Some(GapRange { from: 0, to: 5 })),
            "joined at 0, so (0, 5] was missed"
        );
        assert_eq!(
            h.delivered(),
            vec![b("events", "master", 4533, 4534, &["[1]"])]
        );
        assert_eq!(
            *h.catchup.requests.lock().unwrap(),
            vec![(stream("typing"), Token(0), Token(5))],
            "joining fetches nothing; only the typing gap was asked for"
        );
        // Known from now on: a later jump is a gap.
        h.feed(vec![Inbound::Position(
            1,
            position("events", "master", 4540, 4540),
        )])
        .await;
        let status = h.processor.shared.snapshot();
        let stream = status.stream("events", "master").unwrap();
        assert_eq!(
            (stream.gaps, stream.last_gap),
            (
                1,
                Some(GapRange {
                    from: 4534,
                    to: 4540
                })
            )
        );
        assert_eq!(stream.position, Token(4540));
    }

    #[test]
    fn catch_up_answers_outside_the_request_are_rejected() {
        let page = |updates: &[i64], upto: i64, limited: bool| CatchupPage {
            updates: updates.iter().map(|t| (Token(*t), row("[]"))).collect(),
            upto: Token(upto),
            limited,
        };
        assert!(check_page(&page(&[2, 3, 3], 5, false), Token(1), Token(5)).is_ok());
        assert!(check_page(&page(&[1], 5, false), Token(1), Token(5)).is_err());
        assert!(check_page(&page(&[6], 6, false), Token(1), Token(5)).is_err());
        assert!(check_page(&page(&[3, 2], 5, false), Token(1), Token(5)).is_err());
        assert!(check_page(&page(&[2, 4], 3, true), Token(1), Token(5)).is_err());
        assert!(
            check_page(&page(&[], 1, true), Token(1), Token(5)).is_err(),
            "no progress"
        );
    }

    #[tokio::test]
    async fn a_restarted_typing_writer_is_followed_back_to_its_new_run() {
        let mut h = harness(MemoryCatchup::new(&[], 100)).await.synapse();
        let feed = Arc::new(Feed::new(1_000, ReaderPositions::default()));
        h.processor = h.processor.with_feed(feed.clone());
        h.feed(vec![
            Inbound::Connected(1),
            Inbound::Position(1, position("typing", "master", 0, 0)),
            Inbound::Rdata(1, rdata("typing", "master", Some(1), "[1]")),
            Inbound::Rdata(1, rdata("typing", "master", Some(2), "[2]")),
            Inbound::Rdata(1, rdata("typing", "master", Some(3), "[3]")),
            // Synapse restarted: its first announcement, then its new run's rows.
            Inbound::Position(1, position("typing", "master", 0, 0)),
            Inbound::Rdata(1, rdata("typing", "master", Some(1), r#"["new1"]"#)),
            Inbound::Rdata(1, rdata("typing", "master", Some(2), r#"["new2"]"#)),
        ])
        .await;
        assert_eq!(
            h.delivered(),
            vec![
                b("typing", "master", 0, 1, &["[1]"]),
                b("typing", "master", 1, 2, &["[2]"]),
                b("typing", "master", 2, 3, &["[3]"]),
                b("typing", "master", 0, 1, &[r#"["new1"]"#]),
                b("typing", "master", 1, 2, &[r#"["new2"]"#]),
            ]
        );
        assert_eq!(
            *h.sink.resets.lock().unwrap(),
            vec![("typing".into(), "master".into(), 0, 3)],
            "the sink hears of the reset after the earlier run's rows, before the new run's"
        );
        assert!(h.catchup.requests.lock().unwrap().is_empty());
        assert_eq!(
            h.stored().await,
            vec![("typing".into(), "master".into(), 2)]
        );
        assert_eq!(h.runs().await, vec![("typing".into(), "master".into(), 1)]);
        let status = h.processor.shared.snapshot();
        let typing = status.stream("typing", "master").unwrap();
        assert_eq!(
            (typing.resets, typing.last_reset),
            (1, Some(ResetRange { from: 3, to: 0 }))
        );
        assert_eq!(
            (typing.position, typing.writer_position),
            (Token(2), Token(2))
        );
        assert_eq!((typing.gaps, typing.lag), (0, 0));
        let text = h.processor.shared.metrics.registry.render();
        assert!(
            text.contains(
                "streamhost_reader_stream_resets_total{stream=\"typing\",instance=\"master\"} 1"
            ),
            "{text}"
        );
        assert!(
            !text.contains("streamhost_reader_writer_behind_total{"),
            "{text}"
        );
        assert!(
            text.lines()
                .filter(|l| l.contains("reason=\"old_token\""))
                .all(|l| l.ends_with(" 0")),
            "no row dropped as old: {text}"
        );
        // The plugins' feed: the reset, then the new run's advance from its start.
        let FeedRead::Commits(commits) = feed.read(0, 1_000) else {
            panic!("expected commits")
        };
        let key = (stream("typing"), instance("master"));
        let reset = commits.iter().find(|c| !c.resets.is_empty()).unwrap();
        assert_eq!(
            reset.resets,
            vec![Reset {
                key: key.clone(),
                run: Run(1)
            }]
        );
        assert_eq!(
            reset.advances,
            vec![Advance {
                key,
                before: Token(0),
                after: Token(2),
                run: Run(1)
            }]
        );
        assert_eq!(reset.batches.len(), 2);
    }

    #[tokio::test]
    async fn a_database_stream_below_the_reader_is_not_a_reset() {
        let mut h = harness(MemoryCatchup::new(&[], 100)).await.synapse();
        h.feed(vec![
            Inbound::Connected(1),
            Inbound::Position(1, position("events", "master", 10, 10)),
            Inbound::Position(1, position("events", "master", 4, 4)),
            Inbound::Rdata(1, rdata("events", "master", Some(5), "[5]")),
        ])
        .await;
        assert!(h.delivered().is_empty());
        assert!(h.sink.resets.lock().unwrap().is_empty());
        assert_eq!(
            h.stored().await,
            vec![("events".into(), "master".into(), 10)]
        );
        assert!(h.runs().await.is_empty());
        let status = h.processor.shared.snapshot();
        let events = status.stream("events", "master").unwrap();
        assert_eq!((events.resets, events.last_reset), (0, None));
        let text = h.processor.shared.metrics.registry.render();
        assert!(
            text.contains("streamhost_reader_writer_behind_total{stream=\"events\"} 1"),
            "{text}"
        );
        assert!(
            !text.contains("streamhost_reader_stream_resets_total{"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_reset_is_persisted_and_one_found_after_a_reader_restart_fetches_the_new_run() {
        let rows = [(1, "[\"n1\"]"), (2, "[\"n2\"]"), (3, "[\"n3\"]")];
        let mut h = harness(MemoryCatchup::new(&rows, 100)).await.synapse();
        h.feed(vec![
            Inbound::Connected(1),
            Inbound::Position(1, position("typing", "master", 7, 7)),
            Inbound::Rdata(1, rdata("typing", "master", Some(8), "[8]")),
        ])
        .await;
        // The reader stops; Synapse restarts and writes three typing rows meanwhile.
        let mut h = h.restart().await;
        h.feed(vec![
            Inbound::Connected(1),
            Inbound::Position(1, position("typing", "master", 3, 3)),
            Inbound::Rdata(1, rdata("typing", "master", Some(4), "[\"n4\"]")),
        ])
        .await;
        assert_eq!(
            *h.catchup.requests.lock().unwrap(),
            vec![(stream("typing"), Token(0), Token(3))],
            "the new run's rows up to the announcement are fetched from its start"
        );
        assert_eq!(
            h.delivered()[1..],
            [
                b("typing", "master", 0, 1, &["[\"n1\"]"]),
                b("typing", "master", 1, 2, &["[\"n2\"]"]),
                b("typing", "master", 2, 3, &["[\"n3\"]"]),
                b("typing", "master", 3, 4, &["[\"n4\"]"]),
            ]
        );
        let status = h.processor.shared.snapshot();
        let typing = status.stream("typing", "master").unwrap();
        assert_eq!(
            (typing.resets, typing.last_reset, typing.gaps),
            (1, Some(ResetRange { from: 8, to: 3 }), 0)
        );
        // Persisted: another restart keeps run 1 and position 4, and a POSITION of the same
        // run is no reset.
        let mut h = h.restart().await;
        h.feed(vec![
            Inbound::Connected(1),
            Inbound::Position(1, position("typing", "master", 4, 4)),
            Inbound::Rdata(1, rdata("typing", "master", Some(5), "[\"n5\"]")),
        ])
        .await;
        assert_eq!(
            h.stored().await,
            vec![("typing".into(), "master".into(), 5)]
        );
        assert_eq!(h.runs().await, vec![("typing".into(), "master".into(), 1)]);
        assert_eq!(h.processor.shared.snapshot().streams[0].resets, 0);
        assert_eq!(h.delivered().len(), 6);
    }

    #[tokio::test]
    async fn a_reset_whose_new_rows_cannot_be_fetched_reports_them_as_a_gap() {
        let mut catchup = MemoryCatchup::new(&[], 100);
        catchup.unavailable = true;
        let mut h = harness(catchup).await.synapse();
        h.feed(vec![
            Inbound::Connected(1),
            Inbound::Position(1, position("typing", "master", 9, 9)),
            Inbound::Position(1, position("typing", "master", 2, 2)),
            Inbound::Rdata(1, rdata("typing", "master", Some(3), "[3]")),
        ])
        .await;
        assert_eq!(h.delivered(), vec![b("typing", "master", 2, 3, &["[3]"])]);
        let status = h.processor.shared.snapshot();
        let typing = status.stream("typing", "master").unwrap();
        assert_eq!(
            (typing.resets, typing.last_reset),
            (1, Some(ResetRange { from: 9, to: 2 }))
        );
        assert_eq!(
            (typing.gaps, typing.last_gap),
            (1, Some(GapRange { from: 0, to: 2 }))
        );
    }
}
