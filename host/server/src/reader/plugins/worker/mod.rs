//! The plugin worker: one OS thread per plugin that follows the feed with the plugin's own
//! cursors, calls the plugin, and applies each group's effects together with its cursors and
//! key-value writes (`docs/plugins.md`, "Exactly once").
//!
//! Wasm calls are synchronous and may run for their whole deadline, so they never run on the
//! async threads; the few async steps (the database, catch-up fetches) are driven with the
//! runtime's handle. Between batches the worker answers queries (at most
//! `[reader.plugins.queries] per_batch` between two groups, so queries never hold batches back
//! for long), swaps versions and obeys stop requests, so a reload never interrupts a call.
//!
//! Each cursor carries the writer's [`Run`] it belongs to. When the writer of a stream restarts
//! its tokens (a [`Reset`](super::feed::Reset) in a commit, or a higher run in the reader's
//! positions after the worker fell behind), the cursor moves back to [`RUN_START`] in the new
//! run before anything of that run is applied, and is committed so with the group: the plugin
//! gets the new run's rows once, and a restart neither repeats nor drops them.

//!
//! One module per job: `apply` (commits and catch-ups turned into batches for the plugin),
//! `gaps` (fetching what the feed no longer holds, or reporting it missed), `retry` (the
//! failure policy: retries, reports, quarantine), `commit` (a group's transaction and its
//! effects), `control` (stop, resume, and the queued queries), `reload` (swapping versions: snapshot and
//! restore). Cursors, applied and committed, are kept in a [`Ledger`].

mod apply;
mod commit;
mod control;
mod gaps;
mod reload;
mod retry;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use streamhost_plugin_runtime::{
    Charge, Cursor, Effect, Failure, PluginInstance, PluginServices, PluginVersion,
};
use streamhost_proto::Token;

use super::HostContext;
use super::feed::{FeedRead, Key, Run};
use super::notifications::Source;
use super::slot::{Control, PluginSlot};
use super::store::DeadLetter;
use crate::backoff::Backoff;
use crate::metrics::{Gauge, Histogram};
use crate::reader::ledger::Ledger;
use crate::reader::push::outbox::Staged;

/// Most rows handed to one `on-batch` call; batches are cut only between tokens, so one
/// token with more rows makes a larger batch.
pub(crate) const MAX_BATCH_ROWS: usize = 1_024;
/// Most rows taken from the feed into one group (one database commit). A group is also
/// committed early once its effects hold half the plugin's host memory budget.
const GROUP_ROWS: usize = 4_096;
/// Wait between attempts to fetch a gap from the writer.
const CATCHUP_RETRY: Duration = Duration::from_secs(1);
/// First wait after a failed commit of the plugin's state (a full disk, say); doubles after
/// each failure in a row up to [`COMMIT_RETRY_MAX`].
const COMMIT_RETRY_FIRST: Duration = Duration::from_millis(100);
/// Longest wait after failed commits.
const COMMIT_RETRY_MAX: Duration = Duration::from_secs(10);

/// Why processing stopped early.
enum Halt {
    /// A stop was requested.
    Stop,
    /// The plugin was quarantined.
    Quarantined,
}

/// What one group collects until it is committed.
#[derive(Default)]
struct Group {
    effects: Vec<Effect>,
    /// The batches `effects` came from, in order: each batch's count of effects, and its
    /// stream and last token.
    sources: Vec<(usize, Source)>,
    /// The pushes of the group's batches, each with its batch: written to the outbox with
    /// the cursors.
    pushes: Vec<Staged>,
    /// The host memory `effects` hold, given back when the group is flushed.
    charge: Charge,
    dead: Vec<DeadLetter>,
    batches: u64,
    rows: u64,
    dirty: bool,
    /// Cursors moved back to a writer's new run: (key, the cursor before, the run).
    resets: Vec<(Key, Token, Run)>,
}

/// The `reason` labels of `plugin_failures_total` (`FailureReason::as_str`).
const FAILURE_REASONS: [&str; 12] = [
    "retry",
    "skip",
    "fatal",
    "trap",
    "outside-grant",
    "cpu-deadline",
    "memory",
    "stack",
    "effects",
    "kv-quota",
    "log-rate",
    "host-memory",
];

/// One plugin's worker; see the module docs.
pub(crate) struct Worker {
    slot: Arc<PluginSlot>,
    ctx: Arc<HostContext>,
    version: Arc<PluginVersion>,
    services: Arc<PluginServices>,
    instance: Option<PluginInstance>,
    /// The plugin's cursors (and the writer's run of each), applied and committed.
    cursors: Ledger,
    seq: u64,
    rx: Receiver<Control>,
    deferred: Vec<Control>,
    quarantined: bool,
    counters_seen: HashMap<String, u64>,
    /// `plugin_batch_duration_seconds` of this plugin, looked up once.
    batch_duration: Histogram,
    /// `plugin_quarantined` of this plugin: 1 while `quarantined`.
    quarantined_gauge: Gauge,
    /// The last group's commit failed: wait, then apply its rows again from the reader's
    /// positions.
    commit_failed: bool,
    /// The waits after failed commits; reset by a commit.
    commit_pauses: Backoff,
}

impl Worker {
    /// A worker for `slot` running `version` from `cursors` (and their runs); `instance` is
    /// already initialised.
    pub(crate) fn new(
        slot: Arc<PluginSlot>,
        ctx: Arc<HostContext>,
        version: Arc<PluginVersion>,
        instance: PluginInstance,
        (cursors, runs): (HashMap<Key, Token>, HashMap<Key, Run>),
        rx: Receiver<Control>,
    ) -> Worker {
        let services = slot.services().clone();
        let batch_duration = ctx.metrics.batch_duration.with(&[slot.name()]);
        let quarantined_gauge = ctx.metrics.quarantined.with(&[slot.name()]);
        quarantined_gauge.set(0);
        // The plugin's failure and recycle series, and its gap series of the streams it names,
        // at zero from the start, so `rate()` and `increase()` see the first of each.
        ctx.metrics.recycles.with(&[slot.name()]);
        for stream in version.description().streams.iter().filter(|s| *s != "*") {
            ctx.metrics.gaps.with(&[slot.name(), stream]);
        }
        for reason in FAILURE_REASONS {
            ctx.metrics.failures.with(&[slot.name(), reason]);
        }
        Worker {
            slot,
            ctx,
            version,
            services,
            instance: Some(instance),
            cursors: Ledger::new(cursors, runs),
            seq: 0,
            rx,
            deferred: Vec::new(),
            quarantined: false,
            counters_seen: HashMap::new(),
            batch_duration,
            quarantined_gauge,
            commit_failed: false,
            commit_pauses: Backoff::new(COMMIT_RETRY_FIRST, COMMIT_RETRY_MAX),
        }
    }

    /// Runs until stopped.
    pub(crate) fn run(mut self) {
        let name = self.slot.name().to_string();
        let wake_slot = self.slot.clone();
        let waker = self.ctx.feed.subscribe(Arc::new(move || wake_slot.wake()));
        tracing::info!(plugin = %name, version = %self.version.sha256(), "plugin running");
        if self.resync().is_ok() {
            let _ = self.follow();
        }
        // Their clients hear that the plugin stopped.
        self.slot.queries().clear();
        self.ctx.feed.unsubscribe(waker);
        tracing::info!(plugin = %name, "plugin worker stopped");
    }

    /// Follows the feed, between groups obeying the requests on `rx` and answering at most
    /// `per_batch` queued queries, until stopped.
    fn follow(&mut self) -> Result<(), Halt> {
        loop {
            // Before looking at the queue and the feed, so news after this wakes the loop.
            self.slot.woken();
            for control in std::mem::take(&mut self.deferred) {
                self.handle(control)?;
            }
            while let Ok(control) = self.rx.try_recv() {
                self.handle(control)?;
            }
            self.answer_queries();
            let queries_wait = !self.slot.queries().is_empty();
            if self.quarantined {
                if queries_wait {
                    continue;
                }
                match self.rx.recv() {
                    Ok(control) => self.handle(control)?,
                    Err(_) => return Err(Halt::Stop),
                }
                continue;
            }
            if std::mem::take(&mut self.commit_failed) {
                // Its rows are applied again from the reader's positions, not only when the
                // next commit of the feed arrives.
                let pause = self.commit_pauses.next_delay();
                self.wait(pause)?;
                self.resync()?;
                continue;
            }
            match self.ctx.feed.read(self.seq, GROUP_ROWS) {
                FeedRead::Commits(commits) => {
                    let last = commits.last().map_or(self.seq, |c| c.seq);
                    match self.process(&commits) {
                        Ok(()) => self.seq = last,
                        Err(Halt::Quarantined) => self.seq = last,
                        Err(Halt::Stop) => return Err(Halt::Stop),
                    }
                }
                FeedRead::Lapped { seq, positions } => match self.catch_up_to(&positions) {
                    Ok(()) | Err(Halt::Quarantined) => self.seq = seq,
                    Err(Halt::Stop) => return Err(Halt::Stop),
                },
                FeedRead::Empty if queries_wait => {}
                FeedRead::Empty => match self.rx.recv_timeout(Duration::from_secs(1)) {
                    Ok(control) => self.handle(control)?,
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return Err(Halt::Stop),
                },
            }
        }
    }

    /// Catches up to the reader's current positions from the writer, then follows the feed
    /// from there.
    fn resync(&mut self) -> Result<(), Halt> {
        let (seq, positions) = self.ctx.feed.snapshot();
        let result = self.catch_up_to(&positions);
        self.seq = seq;
        match result {
            Err(Halt::Stop) => Err(Halt::Stop),
            _ => Ok(()),
        }
    }

    /// The current instance, instantiating and initialising a fresh one if needed.
    fn ensure_instance(&mut self) -> Result<&mut PluginInstance, Failure> {
        if self.instance.is_none() {
            let mut instance = self.version.instantiate(self.services.clone())?;
            instance.init(&self.resume_after())?;
            self.services.kv().stage();
            self.instance = Some(instance);
        }
        Ok(self.instance.as_mut().expect("set just above"))
    }

    /// The cursors an instance starts from (`init`, `restore`).
    fn resume_after(&self) -> Vec<Cursor> {
        self.cursors
            .positions()
            .map(|((stream, instance), token)| Cursor {
                stream: stream.as_str().to_string(),
                instance: instance.as_str().to_string(),
                token: token.0,
            })
            .collect()
    }

    /// The applied cursor of `key`.
    fn cursor(&self, key: &Key) -> Token {
        self.cursors.position(key)
    }

    /// Waits `duration` while still obeying a stop; other requests wait for the loop.
    fn wait(&mut self, duration: Duration) -> Result<(), Halt> {
        let deadline = Instant::now() + duration;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            match self.rx.recv_timeout(left) {
                Ok(Control::Stop) | Err(RecvTimeoutError::Disconnected) => return Err(Halt::Stop),
                Ok(Control::Wake) => {}
                Ok(other) => self.deferred.push(other),
                Err(RecvTimeoutError::Timeout) => return Ok(()),
            }
        }
    }
}
