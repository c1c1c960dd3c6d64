//! The one task that applies replication commands in order: Synapse's `POSITION` rule, `batch`
//! runs, catch-up, and group commits of batches and positions (docs/replication.md, "Batch runs"
//! and "The POSITION rule").
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
//! [`RUN_START`] in a new [`Run`], and applies the `POSITION` from there (docs/replication.md,
//! "Streams that reset"). The commit that does so tells the sink ([`BatchSink::reset`]) and the
//! plugins' feed ([`Reset`](super::plugins::Reset)).
//!
//! One module per job: `connections` (which connection is current, which of its streams are
//! connected), `rdata` (the `RDATA` drop rules and ready batches), `position` (the `POSITION`
//! rule), `runs` (a writer's restarted tokens), `paging` (catch-up, page by page), `commit`
//! (group commit and rollback), `stats` (the status and per-stream counters), `plugin_feed`
//! (commits handed to the plugins), `failure` (the pause after failures, and
//! [`ProcessorError`]). Applied and committed positions are kept in a [`Ledger`].

mod commit;
mod connections;
mod failure;
mod paging;
mod plugin_feed;
mod position;
mod rdata;
mod runs;
mod stamps;
mod stats;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
// Fx hashing: these maps are keyed by stream and instance names and touched several times
// per row; SipHash's DoS resistance buys nothing for names the writer chose.
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use streamhost_proto::{StreamName, Token};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub(crate) use self::failure::ProcessorError;
use self::failure::pauses;
use self::runs::PendingReset;
use self::stats::StreamCounters;
use super::batches::BatchAssembler;
use super::catchup::CatchupSource;
use super::inbound::{ConnId, Inbound, InboundRx};
use super::ledger::{Key, Ledger};
use super::plugins::{Feed, ReaderPositions};
use super::sink::{Batch, BatchSink};
use super::status::Shared;
#[cfg(doc)]
use super::store::Run;
use super::store::{Gap, RUN_START, ReaderStore};
use crate::backoff::Backoff;

/// Rows after which a group is committed even if more commands are waiting. Bounds the
/// transaction and the memory of ready batches; 10,000 rows of a few hundred bytes each is a
/// few MiB. A smaller `inbound_queue` lowers it, and `inbound_queue_mib` bounds its bytes
/// (see [`Limits::new`]), so that ready batches never hold much more than the queue would.
pub(crate) const MAX_GROUP_ROWS: usize = 10_000;

/// The processor's bounds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Longest pause after repeated failures (the reconnect cap).
    pub(crate) max_pause: Duration,
    /// Rows per group commit at most.
    pub(crate) group_rows: usize,
    /// Bytes of rows per group commit at most (the row text; one batch may pass it).
    pub(crate) group_bytes: usize,
}

impl Limits {
    /// Groups of at most `min(MAX_GROUP_ROWS, inbound_queue)` rows and `inbound_bytes` bytes:
    /// the queue's bounds are the operator's bound on what the reader holds before it stops
    /// reading the socket.
    pub(crate) fn new(max_pause: Duration, inbound_queue: usize, inbound_bytes: usize) -> Limits {
        Limits {
            max_pause,
            group_rows: MAX_GROUP_ROWS.min(inbound_queue).max(1),
            group_bytes: inbound_bytes.max(1),
        }
    }
}

/// Commands applied per group at most, so positions (and status) move even when commands
/// carry few rows.
const MAX_GROUP_COMMANDS: usize = 50_000;

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

    /// Applied positions (including ready batches not yet committed) and runs, and the
    /// committed ones.
    ledger: Ledger,
    /// The writer's last known positions.
    writer_positions: HashMap<Key, Token>,
    /// Keys whose writer position changed since the last publish.
    touched: HashSet<Key>,
    /// Completed batches waiting for the next commit, in application order.
    ready: Vec<Batch>,
    ready_rows: usize,
    /// The bytes of row text in `ready`.
    ready_bytes: usize,
    /// Unfinished `batch` runs, per (stream, instance).
    assembler: BatchAssembler,
    /// The connection whose commands are being applied.
    conn: Option<ConnId>,
    /// Streams whose `POSITION` has been processed on `conn`.
    connected: HashSet<StreamName>,
    /// The pause after a failure; longer after each failure in a row, until a commit.
    pause: Backoff,
    counters: HashMap<StreamName, StreamCounters>,
    /// Where committed batches go for the plugins, when any run.
    feed: Option<Arc<Feed>>,
    /// Where a key with no position starts.
    first_position: FirstPosition,
    /// Streams whose writer restarts its tokens with its process.
    resettable: HashSet<StreamName>,
    /// Resets for the next commit, in the order found (each found with nothing else ready).
    resets: Vec<PendingReset>,
    /// Commit-time stamps, for write-to-apply.
    stamps: stamps::Stamps,
    /// Gaps found since the last commit, recorded with it.
    gaps: Vec<Gap>,
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
        let positions = store
            .positions()
            .await
            .context("reading the reader's positions")?;
        let runs = store.runs().await.context("reading the reader's runs")?;
        let ledger = Ledger::new(
            positions.into_iter().map(|(s, i, token)| ((s, i), token)),
            runs.into_iter().map(|(s, i, run)| ((s, i), run)),
        );
        for (key, token) in ledger.positions() {
            shared.update_stream(key, |f| f.position = token);
        }
        Ok(Processor {
            store,
            sink,
            catchup,
            shared,
            drop_tx,
            shutdown,
            pause: pauses(&limits),
            limits,
            ledger,
            writer_positions: HashMap::default(),
            touched: HashSet::default(),
            ready: Vec::new(),
            ready_rows: 0,
            ready_bytes: 0,
            assembler: BatchAssembler::default(),
            conn: None,
            connected: HashSet::default(),
            counters: HashMap::default(),
            feed: None,
            first_position: FirstPosition::CatchUp,
            resettable: HashSet::default(),
            resets: Vec::new(),
            stamps: stamps::Stamps::default(),
            gaps: Vec::new(),
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
                .ledger
                .committed_positions()
                .map(|(k, t)| (k.clone(), t))
                .collect(),
            runs: self
                .ledger
                .committed_runs()
                .map(|(k, r)| (k.clone(), r))
                .collect(),
        }
    }

    /// Applies commands until shutdown or until the connection task is gone, committing after
    /// each group; commits what is ready before returning.
    pub(crate) async fn run(mut self, mut rx: InboundRx) {
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
            self.take_queued(&mut rx).await;
            // A failed commit was reported and rolled back; the reconnect fetches its rows.
            let _ = self.commit().await;
        }
        let _ = self.commit().await;
    }

    /// Applies what is queued behind the first message of a group, until the group is full.
    /// When the queue runs dry it yields, and stops only when a yield brought nothing: the
    /// transports queue meanwhile what they have already read (on a busy reader there is
    /// usually more; on an idle one the yield returns at once), and one commit covers it
    /// instead of one commit each. Fewer, larger commits under load; no wait when idle
    /// (docs/design.md, decision 71).
    async fn take_queued(&mut self, rx: &mut InboundRx) {
        let mut handled = 1;
        let mut yielded = false;
        while !self.group_full() && handled < MAX_GROUP_COMMANDS && !self.shutdown.is_cancelled() {
            match rx.try_recv() {
                Some(message) => {
                    self.handle(message).await;
                    handled += 1;
                    yielded = false;
                }
                None if yielded => break,
                None => {
                    yielded = true;
                    tokio::task::yield_now().await;
                }
            }
        }
    }

    /// The ready batches have reached a group's rows or bytes: commit before taking more.
    fn group_full(&self) -> bool {
        self.ready_rows >= self.limits.group_rows || self.ready_bytes >= self.limits.group_bytes
    }

    /// Applies one message (batches become ready; nothing is committed unless a catch-up fills
    /// a group).
    pub(crate) async fn handle(&mut self, message: Inbound) {
        match message {
            Inbound::Connected(id) => self.connected_to(id),
            Inbound::Disconnected(id) => self.disconnected_from(id),
            Inbound::Rdata(id, rdata) if self.conn == Some(id) => self.on_rdata(rdata),
            Inbound::Position(id, position) if self.conn == Some(id) => {
                // A failure was reported where it happened: the stream stays disconnected on
                // this connection, which is being dropped (or the reader is stopping).
                if let Err(error) = self.on_position(position).await {
                    tracing::debug!(%error, "POSITION not applied");
                }
            }
            // Commands of a connection that is not current cannot be queued behind its
            // `Disconnected`; ignore them defensively.
            Inbound::Stamp(id, stamp_us) if self.conn == Some(id) => self.on_stamp(stamp_us),
            Inbound::Rdata(..) | Inbound::Position(..) | Inbound::Stamp(..) => {}
        }
    }
}
