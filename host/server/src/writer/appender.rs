//! The appender: the one task that writes to the log. Requests that arrive while a commit
//! is in flight are committed together in the next transaction (group commit), so one fsync
//! serves many clients; each request is still atomic and answered only after its commit.
//!
//! A failed commit (a PostgreSQL log restarting, say) answers its requests with an error and
//! the next group tries again on a fresh connection; the failure and the recovery are logged
//! and counted (`append_failures_total`, `log_database_up`). While the database stays away,
//! clients retrying fail a commit every few milliseconds: the log gets the first failure and
//! then one line per [`FAILURE_LOG_INTERVAL`], the metrics every one.
//!
//! A full disk (SQLite's `SQLITE_FULL`, PostgreSQL's `53100 disk_full`) is told apart
//! ([`AppendError::DiskFull`], answered 507, `log_disk_full` 1): the failed statement or
//! transaction was rolled back, so nothing of its group is in the log and nothing was
//! acknowledged. The next group tries again, so appends succeed once space is freed.

use std::sync::Arc;
use std::time::Duration;

use streamhost_log::{AppendRequest, Log, LogError};
use streamhost_proto::{StreamName, Token};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;

use super::streams::StreamSet;
use crate::metrics::{Counter, CounterVec, Gauge, Registry};

/// Most rows committed in one transaction; more requests wait for the next one.
const MAX_ROWS_PER_COMMIT: usize = 50_000;

/// Requests waiting for the appender; senders wait (backpressure) when it is full.
const QUEUE_DEPTH: usize = 1_024;

/// While commits keep failing, at most one log line per this long after the first (each
/// saying how many failed so far); `append_failures_total` counts every one.
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// A request could not be committed.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The log failed; nothing of the request was committed.
    #[error("committing to the log: {0}")]
    Log(String),
    /// The log's disk is full; nothing of the request was committed. Appends succeed again
    /// once space is freed, without a restart: every group tries the database again.
    #[error("the log's disk is full: {0}")]
    DiskFull(String),
    /// The connection was lost at COMMIT and the outcome could not be checked: the rows may
    /// be in the log.
    #[error("commit outcome unknown: {0}")]
    Unknown(String),
    /// The writer is shutting down.
    #[error("the writer is shutting down")]
    ShuttingDown,
}

/// Where a request's answer goes.
type Reply = oneshot::Sender<Result<Vec<Token>, AppendError>>;

/// A queued request and where its answer goes.
struct Job {
    request: AppendRequest,
    reply: Reply,
}

/// A handle for appending; cheap to clone.
#[derive(Clone)]
pub struct Appender {
    jobs: mpsc::Sender<Job>,
}

struct AppendMetrics {
    rows: CounterVec,
    commits: Counter,
    requests: Counter,
    failures: Counter,
    database_up: Gauge,
    disk_full: Gauge,
    skipped: CounterVec,
}

impl Appender {
    /// Starts the appender task. It ends when every handle is dropped, after committing
    /// what was queued. `poke` is notified after each commit.
    pub fn spawn(
        log: Log,
        streams: Arc<StreamSet>,
        poke: Arc<Notify>,
        registry: &Registry,
    ) -> (Appender, tokio::task::JoinHandle<()>) {
        let (jobs, receiver) = mpsc::channel(QUEUE_DEPTH);
        let metrics = AppendMetrics {
            rows: registry.counter_vec(
                "rows_appended_total",
                "Rows committed to the log, by stream.",
                &["stream"],
            ),
            commits: registry.counter(
                "append_commits_total",
                "Log transactions committed (group commits).",
            ),
            requests: registry.counter("append_requests_total", "Append requests committed."),
            failures: registry.counter(
                "append_failures_total",
                "Log transactions that failed (their requests answered 503, or 507 on a full disk).",
            ),
            database_up: registry.gauge(
                "log_database_up",
                "1 while the last log commit succeeded, 0 after a failed one.",
            ),
            disk_full: registry.gauge(
                "log_disk_full",
                "1 while the last log commit failed because the log's disk is full (appends \
                 answered 507), 0 otherwise.",
            ),
            skipped: registry.counter_vec(
                "append_tokens_skipped_total",
                "Tokens committed outside this writer's answers (another appender, or a commit \
                 whose answer was lost), streamed from the log.",
                &["stream"],
            ),
        };
        metrics.database_up.set(1);
        let task = tokio::spawn(run(log, streams, poke, receiver, metrics));
        (Appender { jobs }, task)
    }

    /// Commits `request` and returns the tokens its rows got, after the commit is durable.
    pub async fn append(&self, request: AppendRequest) -> Result<Vec<Token>, AppendError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { request, reply })
            .await
            .map_err(|_| AppendError::ShuttingDown)?;
        answer.await.map_err(|_| AppendError::ShuttingDown)?
    }
}

/// The appender task: collects a group of queued requests, commits it, answers its
/// waiters, and again, until every handle is dropped and the queue is drained.
async fn run(
    log: Log,
    streams: Arc<StreamSet>,
    poke: Arc<Notify>,
    mut receiver: mpsc::Receiver<Job>,
    metrics: AppendMetrics,
) {
    let mut task = Task {
        log,
        streams,
        poke,
        metrics,
        health: Health::new(),
    };
    while let Some(first) = receiver.recv().await {
        let jobs = collect_group(first, &mut receiver);
        task.commit(jobs).await;
    }
}

/// `first` and whatever requests are already queued behind it, up to
/// [`MAX_ROWS_PER_COMMIT`] rows: one group commit.
fn collect_group(first: Job, receiver: &mut mpsc::Receiver<Job>) -> Vec<Job> {
    let mut rows = first.request.rows.len();
    let mut jobs = vec![first];
    while rows < MAX_ROWS_PER_COMMIT {
        match receiver.try_recv() {
            Ok(job) => {
                rows += job.request.rows.len();
                jobs.push(job);
            }
            Err(_) => break,
        }
    }
    jobs
}

/// What the appender task works with.
struct Task {
    log: Log,
    streams: Arc<StreamSet>,
    poke: Arc<Notify>,
    metrics: AppendMetrics,
    health: Health,
}

/// Failed commits since the last success, when the first of them failed, and when one
/// was last logged.
struct Health {
    failed_commits: u64,
    failing_since: Instant,
    last_logged: Instant,
}

impl Health {
    fn new() -> Health {
        Health {
            failed_commits: 0,
            failing_since: Instant::now(),
            last_logged: Instant::now(),
        }
    }
}

impl Task {
    /// Commits `jobs` in one transaction and answers each of them.
    async fn commit(&mut self, jobs: Vec<Job>) {
        // Requests and replies apart, so the log borrows the rows and the tail then takes them
        // without a copy.
        let (requests, replies): (Vec<AppendRequest>, Vec<_>) =
            jobs.into_iter().map(|job| (job.request, job.reply)).unzip();
        match self.log.append(&requests).await {
            Ok(all_tokens) => {
                let committed_us = crate::clock::unix_us();
                self.committed();
                self.skip_foreign_rows(&requests, &all_tokens);
                self.answer(requests, replies, all_tokens, committed_us);
                self.poke.notify_one();
            }
            Err(e) => {
                self.failed(&e, replies.len());
                answer_failure(&e, replies);
            }
        }
    }

    /// Counts a successful commit, and logs the recovery when commits had been failing.
    fn committed(&mut self) {
        let metrics = &self.metrics;
        let health = &mut self.health;
        metrics.commits.inc();
        if health.failed_commits > 0 {
            tracing::info!(
                failed_commits = health.failed_commits,
                down_ms = health.failing_since.elapsed().as_millis() as u64,
                "log database is back: appends commit again"
            );
            health.failed_commits = 0;
            metrics.database_up.set(1);
            metrics.disk_full.set(0);
        }
    }

    /// Moves a stream's tail past rows committed by someone else (another appender, or a
    /// commit whose answer was lost), so the streamer reads them from the log.
    fn skip_foreign_rows(&self, requests: &[AppendRequest], all_tokens: &[Vec<Token>]) {
        let mut seen: Vec<&StreamName> = Vec::new();
        for (request, tokens) in requests.iter().zip(all_tokens) {
            // The first tokens of a stream in this group follow the position the log
            // found under its lock; above the tail's, someone else committed rows.
            let Some(first) = tokens.first() else {
                continue;
            };
            if seen.contains(&&request.stream) {
                continue;
            }
            seen.push(&request.stream);
            let recent = self
                .streams
                .get(&request.stream)
                .expect("requests name declared streams");
            let known = recent.position();
            if first.0 - 1 > known.0 {
                tracing::warn!(
                    stream = %request.stream,
                    from = known.0,
                    to = first.0 - 1,
                    "rows committed outside this writer's answers (another appender, or \
                     a commit whose answer was lost): streaming them from the log"
                );
                self.metrics
                    .skipped
                    .with(&[request.stream.as_str()])
                    .add((first.0 - 1 - known.0) as u64);
                recent.skip_to(Token(first.0 - 1));
            }
        }
    }

    /// Hands each committed request's rows to its stream's tail and answers its waiter.
    fn answer(
        &self,
        requests: Vec<AppendRequest>,
        replies: Vec<Reply>,
        all_tokens: Vec<Vec<Token>>,
        committed_us: u64,
    ) {
        for ((request, reply), tokens) in requests.into_iter().zip(replies).zip(all_tokens) {
            let recent = self
                .streams
                .get(&request.stream)
                .expect("requests name declared streams");
            self.metrics
                .rows
                .with(&[request.stream.as_str()])
                .add(tokens.len() as u64);
            if let Some(last) = tokens.last() {
                recent.push(
                    tokens.iter().copied().zip(request.rows),
                    *last,
                    committed_us,
                );
            }
            self.metrics.requests.inc();
            let _ = reply.send(Ok(tokens));
        }
    }

    /// Counts a failed commit of `requests` requests, and logs the first of a series and then
    /// one per [`FAILURE_LOG_INTERVAL`].
    fn failed(&mut self, e: &LogError, requests: usize) {
        let health = &mut self.health;
        health.failed_commits += 1;
        self.metrics.failures.inc();
        self.metrics.database_up.set(0);
        let disk_full = e.is_disk_full();
        if disk_full && self.metrics.disk_full.get() == 0 {
            // Its own line whatever the interval: the operator must act (free space).
            tracing::error!(
                error = %e,
                "the log's disk is full: appends are answered 507 until space is freed"
            );
        }
        self.metrics.disk_full.set(i64::from(disk_full));
        if health.failed_commits == 1 {
            health.failing_since = Instant::now();
        }
        if health.failed_commits == 1 || health.last_logged.elapsed() >= FAILURE_LOG_INTERVAL {
            health.last_logged = Instant::now();
            tracing::error!(
                error = %e,
                requests,
                failed_commits = health.failed_commits,
                down_ms = health.failing_since.elapsed().as_millis() as u64,
                "append failed: answering 503 until the log database is back"
            );
        }
    }
}

/// Answers every waiter of a failed commit with its error.
fn answer_failure(e: &LogError, replies: Vec<Reply>) {
    let unknown = matches!(e, LogError::CommitUnknown(_));
    let disk_full = e.is_disk_full();
    for reply in replies {
        let error = if unknown {
            AppendError::Unknown(e.to_string())
        } else if disk_full {
            AppendError::DiskFull(e.to_string())
        } else {
            AppendError::Log(e.to_string())
        };
        let _ = reply.send(Err(error));
    }
}
