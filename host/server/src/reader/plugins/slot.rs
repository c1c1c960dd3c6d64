//! [`PluginSlot`]: one plugin as the rest of the reader sees it — its current version, the
//! channel to its worker, and the status the APIs and metrics report.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use streamhost_plugin_runtime::{Failure, PluginServices, PluginVersion};
use streamhost_proto::Token;
use tokio::sync::{oneshot, watch};

use super::feed::Key;
use super::query_queue::{QueryQueue, QueueFull, QueuedQuery};

/// Failure reports kept per plugin for the admin API.
const KEPT_REPORTS: usize = 20;
/// Cut-over pauses kept per plugin.
const KEPT_PAUSES: usize = 1_000;

/// Where a plugin is in its life.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "reason")]
pub enum PluginRunState {
    /// Loaded and following the feed.
    Running,
    /// Stopped after repeated failures, or by the operator (`POST
    /// /v1/admin/plugins/{name}/quarantine`); its cursor waits. Lift with the admin API or a
    /// reload.
    Quarantined(String),
    /// Could not be loaded or initialised; nothing runs.
    Failed(String),
}

/// A failure of one call, as the admin API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct FailureReport {
    /// Unix milliseconds.
    pub at_ms: u64,
    /// The plugin.
    pub plugin: String,
    /// The version's sha256.
    pub version: String,
    /// What was called (`on-batch`, `init`, `query`, `reload`...).
    pub call: String,
    /// The batch's stream and instance, when a batch failed.
    pub stream: Option<String>,
    /// The batch's instance.
    pub instance: Option<String>,
    /// The batch's token range `(from, to]`.
    pub tokens: Option<(i64, i64)>,
    /// Which attempt this was (1 = first).
    pub attempt: u32,
    /// How long the failed call ran, in microseconds.
    pub duration_us: u64,
    /// What stopped it, with the trap's backtrace and stderr.
    pub failure: Failure,
    /// The plugin's last log lines.
    pub log_lines: Vec<String>,
    /// Where the failing batch was written, for `streamhost plugin run --input`.
    pub batch_file: Option<PathBuf>,
}

/// What the worker reports, read by the APIs.
#[derive(Debug)]
pub(crate) struct SlotStatus {
    pub(crate) state: PluginRunState,
    pub(crate) version: Option<Arc<PluginVersion>>,
    pub(crate) cursors: HashMap<Key, Token>,
    pub(crate) batches: u64,
    pub(crate) rows: u64,
    pub(crate) effects: u64,
    pub(crate) failures: BTreeMap<&'static str, u64>,
    pub(crate) reports: VecDeque<FailureReport>,
    pub(crate) reloads: u64,
    pub(crate) reload_failures: u64,
    pub(crate) cutover_pauses: VecDeque<Duration>,
}

impl SlotStatus {
    pub(crate) fn report(&mut self, report: FailureReport) {
        *self
            .failures
            .entry(report.failure.reason.as_str())
            .or_default() += 1;
        if self.reports.len() == KEPT_REPORTS {
            self.reports.pop_front();
        }
        self.reports.push_back(report);
    }

    pub(crate) fn pause(&mut self, pause: Duration) {
        if self.cutover_pauses.len() == KEPT_PAUSES {
            self.cutover_pauses.pop_front();
        }
        self.cutover_pauses.push_back(pause);
    }
}

/// A request to a plugin's worker, handled between batches.
pub(crate) enum Control {
    /// The feed has news.
    Wake,
    /// Swap in a loaded version at the next batch boundary.
    Reload {
        version: Arc<PluginVersion>,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Lift a quarantine.
    Resume { reply: oneshot::Sender<bool> },
    /// Quarantine now, for the operator's `reason`; the reply is false if the plugin already
    /// was.
    Quarantine {
        reason: String,
        reply: oneshot::Sender<bool>,
    },
    /// Ask the plugin's `authorizer` export (`reader::auth`).
    Authorize(AuthorizeCall),
    /// Finish and exit.
    Stop,
}

/// One question for an authorizer plugin, answered between batches on its instance.
#[derive(Debug)]
pub(crate) struct AuthorizeCall {
    /// The API token's subject.
    pub(crate) subject: String,
    /// What it asks to do.
    pub(crate) access: streamhost_plugin_runtime::Access,
    /// When the answer stops being wanted; the call's own deadline is what is left of it.
    pub(crate) deadline: Instant,
    /// Where the verdict goes; closed once the asker gave up.
    pub(crate) reply: oneshot::Sender<Result<bool, String>>,
}

/// Why a read could not be answered.
#[derive(Clone, Debug)]
pub(crate) enum QueryError {
    /// No such query, or a bad argument: the client's fault.
    BadRequest(String),
    /// The plugin is quarantined or failed, or the query waited past its queue deadline.
    Unavailable(String),
    /// The plugin failed to answer.
    Failed(Failure),
}

/// Why a read could not be queued.
#[derive(Debug)]
pub(crate) enum Enqueue {
    /// No worker runs.
    NotRunning,
    /// The queue is full.
    Full(QueueFull),
}

/// One plugin.
pub struct PluginSlot {
    name: String,
    dir: PathBuf,
    services: Arc<PluginServices>,
    control: Mutex<Option<std::sync::mpsc::Sender<Control>>>,
    queries: QueryQueue,
    wake_pending: AtomicBool,
    status: Mutex<SlotStatus>,
    cursor_moves: watch::Sender<u64>,
}

impl PluginSlot {
    /// A slot with no worker yet, queueing at most `queue_depth` queries.
    pub(crate) fn new(
        name: String,
        dir: PathBuf,
        services: Arc<PluginServices>,
        queue_depth: usize,
    ) -> PluginSlot {
        PluginSlot {
            name,
            dir,
            services,
            control: Mutex::new(None),
            queries: QueryQueue::new(queue_depth),
            wake_pending: AtomicBool::new(false),
            status: Mutex::new(SlotStatus {
                state: PluginRunState::Failed("not started".into()),
                version: None,
                cursors: HashMap::new(),
                batches: 0,
                rows: 0,
                effects: 0,
                failures: BTreeMap::new(),
                reports: VecDeque::new(),
                reloads: 0,
                reload_failures: 0,
                cutover_pauses: VecDeque::new(),
            }),
            cursor_moves: watch::channel(0).0,
        }
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The plugin's folder.
    pub(crate) fn dir(&self) -> &PathBuf {
        &self.dir
    }

    pub(crate) fn services(&self) -> &Arc<PluginServices> {
        &self.services
    }

    pub(crate) fn status(&self) -> MutexGuard<'_, SlotStatus> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the plugin is running, and if not, why.
    pub fn run_state(&self) -> PluginRunState {
        self.status().state.clone()
    }

    /// The pauses of the last hot reloads' cut-overs, oldest first.
    pub fn cutover_pauses(&self) -> Vec<Duration> {
        self.status().cutover_pauses.iter().copied().collect()
    }

    pub(crate) fn set_worker(&self, sender: Option<std::sync::mpsc::Sender<Control>>) {
        *self.control.lock().unwrap_or_else(|p| p.into_inner()) = sender;
    }

    /// Sends `control` to the worker; false when no worker runs.
    pub(crate) fn send(&self, control: Control) -> bool {
        let sender = self.control.lock().unwrap_or_else(|p| p.into_inner());
        sender.as_ref().is_some_and(|s| s.send(control).is_ok())
    }

    /// Queues a read for the worker and wakes it; the query's reply is dropped unanswered when
    /// no worker runs.
    pub(crate) fn enqueue(&self, query: QueuedQuery) -> Result<(), Enqueue> {
        if self
            .control
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
        {
            return Err(Enqueue::NotRunning);
        }
        self.queries.push(query).map_err(Enqueue::Full)?;
        self.wake();
        Ok(())
    }

    /// The queries waiting for the worker.
    pub(crate) fn queries(&self) -> &QueryQueue {
        &self.queries
    }

    /// Wakes the worker, once until its loop comes round again.
    pub(crate) fn wake(&self) {
        if !self.wake_pending.swap(true, Ordering::AcqRel) {
            self.send(Control::Wake);
        }
    }

    pub(crate) fn woken(&self) {
        self.wake_pending.store(false, Ordering::Release);
    }

    /// Publishes new cursors (after their effects were applied).
    pub(crate) fn publish_cursors(&self, cursors: HashMap<Key, Token>) {
        self.status().cursors = cursors;
        self.cursor_moves.send_modify(|n| *n += 1);
    }

    /// How many times the cursors moved: changes whenever the plugin applied something.
    pub(crate) fn cursor_generation(&self) -> u64 {
        *self.cursor_moves.borrow()
    }

    /// Sends an authorizer question to the worker; false when no worker runs.
    pub(crate) fn authorize(&self, call: AuthorizeCall) -> bool {
        self.send(Control::Authorize(call))
    }

    /// The plugin's cursor for `stream` (the highest over its instances).
    pub fn cursor_of(&self, stream: &str) -> Token {
        super::feed::highest_of(&self.status().cursors, stream)
    }

    /// Waits until the cursor of `stream` reaches `token`, or `timeout`; true if it did.
    pub(crate) async fn wait_for_cursor(
        &self,
        stream: &str,
        token: Token,
        timeout: Duration,
    ) -> bool {
        let mut moves = self.cursor_moves.subscribe();
        let reached = async {
            loop {
                if self.cursor_of(stream) >= token {
                    return;
                }
                if moves.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(timeout, reached).await.is_ok() && self.cursor_of(stream) >= token
    }
}
