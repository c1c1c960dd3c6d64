//! The appender: the one task that writes to the log. Requests that arrive while a commit
//! is in flight are committed together in the next transaction (group commit), so one fsync
//! serves many clients; each request is still atomic and answered only after its commit.

use std::sync::Arc;

use streamhost_log::{AppendRequest, Log};
use streamhost_proto::Token;
use tokio::sync::{Notify, mpsc, oneshot};

use super::streams::StreamSet;
use crate::metrics::{Counter, CounterVec, Registry};

/// Most rows committed in one transaction; more requests wait for the next one.
const MAX_ROWS_PER_COMMIT: usize = 50_000;

/// Requests waiting for the appender; senders wait (backpressure) when it is full.
const QUEUE_DEPTH: usize = 1_024;

/// A request could not be committed.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The log failed; nothing of the request was committed.
    #[error("committing to the log: {0}")]
    Log(String),
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
        };
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
                tracing::error!(error = %e, requests = replies.len(), "append failed; nothing committed");
                for reply in replies {
                    let _ = reply.send(Err(AppendError::Log(e.to_string())));
                }
            }
        }
    }
}
