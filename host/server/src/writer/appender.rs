//! The appender: the one task that writes to the log. Requests that arrive while a commit
//! is in flight are committed together in the next transaction (group commit), so one fsync
//! serves many clients; each request is still atomic and answered only after its commit.
//!
//! A failed commit (a PostgreSQL log restarting, say) answers its requests with an error and
//! the next group tries again on a fresh connection; the failure and the recovery are logged
//! and counted (`append_failures_total`, `log_database_up`). While the database stays away,
//! clients retrying fail a commit every few milliseconds: the log gets the first failure and
//! then one line per [`FAILURE_LOG_INTERVAL`], the metrics every one.

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
    /// The connection was lost at COMMIT and the outcome could not be checked: the rows may
    /// be in the log.
    #[error("commit outcome unknown: {0}")]
    Unknown(String),
    /// The writer is shutting down.
    #[error("the writer is shutting down")]
    ShuttingDown,
}

struct Job {
    request: AppendRequest,
    reply: oneshot::Sender<Result<Vec<Token>, AppendError>>,
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
                "Log transactions that failed (their requests answered 503).",
            ),
            database_up: registry.gauge(
                "log_database_up",
                "1 while the last log commit succeeded, 0 after a failed one.",
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

async fn run(
    log: Log,
    streams: Arc<StreamSet>,
    poke: Arc<Notify>,
    mut receiver: mpsc::Receiver<Job>,
    metrics: AppendMetrics,
) {
    // Failed commits since the last success, when the first of them failed, and when one
    // was last logged.
    let mut failed_commits = 0u64;
    let mut failing_since = Instant::now();
    let mut last_logged = Instant::now();
    while let Some(first) = receiver.recv().await {
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
        // Requests and replies apart, so the log borrows the rows and the tail then takes them
        // without a copy.
        let (requests, replies): (Vec<AppendRequest>, Vec<_>) =
            jobs.into_iter().map(|job| (job.request, job.reply)).unzip();
        match log.append(&requests).await {
            Ok(all_tokens) => {
                metrics.commits.inc();
                if failed_commits > 0 {
                    tracing::info!(
                        failed_commits,
                        down_ms = failing_since.elapsed().as_millis() as u64,
                        "log database is back: appends commit again"
                    );
                    failed_commits = 0;
                    metrics.database_up.set(1);
                }
                let mut seen: Vec<&StreamName> = Vec::new();
                for (request, tokens) in requests.iter().zip(&all_tokens) {
                    // The first tokens of a stream in this group follow the position the log
                    // found under its lock; above the tail's, someone else committed rows.
                    let Some(first) = tokens.first() else {
                        continue;
                    };
                    if seen.contains(&&request.stream) {
                        continue;
                    }
                    seen.push(&request.stream);
                    let recent = streams
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
                        metrics
                            .skipped
                            .with(&[request.stream.as_str()])
                            .add((first.0 - 1 - known.0) as u64);
                        recent.skip_to(Token(first.0 - 1));
                    }
                }
                for ((request, reply), tokens) in requests.into_iter().zip(replies).zip(all_tokens)
                {
                    let recent = streams
                        .get(&request.stream)
                        .expect("requests name declared streams");
                    metrics
                        .rows
                        .with(&[request.stream.as_str()])
                        .add(tokens.len() as u64);
                    if let Some(last) = tokens.last() {
                        recent.push(tokens.iter().copied().zip(request.rows), *last);
                    }
                    metrics.requests.inc();
                    let _ = reply.send(Ok(tokens));
                }
                poke.notify_one();
            }
            Err(e) => {
                failed_commits += 1;
                metrics.failures.inc();
                metrics.database_up.set(0);
                if failed_commits == 1 {
                    failing_since = Instant::now();
                }
                if failed_commits == 1 || last_logged.elapsed() >= FAILURE_LOG_INTERVAL {
                    last_logged = Instant::now();
                    tracing::error!(
                        error = %e,
                        requests = replies.len(),
                        failed_commits,
                        down_ms = failing_since.elapsed().as_millis() as u64,
                        "append failed: answering 503 until the log database is back"
                    );
                }
                let unknown = matches!(e, LogError::CommitUnknown(_));
                for reply in replies {
                    let error = if unknown {
                        AppendError::Unknown(e.to_string())
                    } else {
                        AppendError::Log(e.to_string())
                    };
                    let _ = reply.send(Err(error));
                }
            }
        }
    }
}
