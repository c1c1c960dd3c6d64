//! [`QueryQueue`]: one plugin's cache misses waiting for its worker, bounded in number
//! (`[reader.plugins.queries] queue_depth`; full, the client gets a 503 at once) and each with a
//! deadline (`queue_timeout_ms`). The worker takes at most `per_batch` of them between two
//! groups of batches, and drops unrun a query whose client has gone or whose deadline passed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::oneshot;

use super::slot::QueryError;

/// Where a query's answer goes.
pub(crate) type Reply = oneshot::Sender<Result<Arc<str>, QueryError>>;

/// A read the cache missed, waiting for the plugin's worker.
pub(crate) struct QueuedQuery {
    /// The query's name.
    pub(crate) name: String,
    /// Its arguments, in order.
    pub(crate) args: Vec<(String, String)>,
    /// Where the answer goes; closed once the client has gone.
    pub(crate) reply: Reply,
    /// When the query stops being worth running.
    pub(crate) deadline: Instant,
}

/// Why a query was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct QueueFull {
    /// The queue's depth.
    pub(crate) depth: usize,
}

/// One plugin's bounded queue of [`QueuedQuery`]s.
pub(crate) struct QueryQueue {
    items: Mutex<VecDeque<QueuedQuery>>,
    depth: usize,
}

impl QueryQueue {
    /// An empty queue holding at most `depth` queries.
    pub(crate) fn new(depth: usize) -> QueryQueue {
        QueryQueue {
            items: Mutex::new(VecDeque::new()),
            depth,
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<QueuedQuery>> {
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `query`, unless `depth` queries wait already.
    pub(crate) fn push(&self, query: QueuedQuery) -> Result<(), QueueFull> {
        let mut items = self.lock();
        if items.len() >= self.depth {
            return Err(QueueFull { depth: self.depth });
        }
        items.push_back(query);
        Ok(())
    }

    /// The oldest waiting query.
    pub(crate) fn pop(&self) -> Option<QueuedQuery> {
        self.lock().pop_front()
    }

    /// Whether no query waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Drops every waiting query (its client hears the plugin stopped).
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn query(n: usize) -> (QueuedQuery, oneshot::Receiver<Result<Arc<str>, QueryError>>) {
        let (reply, answer) = oneshot::channel();
        let query = QueuedQuery {
            name: format!("q{n}"),
            args: Vec::new(),
            reply,
            deadline: Instant::now() + Duration::from_secs(1),
        };
        (query, answer)
    }

    #[test]
    fn holds_at_most_its_depth_in_order() {
        let queue = QueryQueue::new(2);
        let (a, _a) = query(1);
        let (b, _b) = query(2);
        let (c, _c) = query(3);
        queue.push(a).unwrap();
        queue.push(b).unwrap();
        assert_eq!(queue.push(c).unwrap_err(), QueueFull { depth: 2 });
        assert_eq!(queue.pop().unwrap().name, "q1");
        let (d, _d) = query(4);
        queue.push(d).unwrap();
        assert_eq!(queue.pop().unwrap().name, "q2");
        assert_eq!(queue.pop().unwrap().name, "q4");
        assert!(queue.is_empty());
    }

    #[test]
    fn a_gone_client_shows_as_a_closed_reply_and_clear_tells_waiting_ones() {
        let queue = QueryQueue::new(4);
        let (gone, answer) = query(1);
        drop(answer);
        assert!(gone.reply.is_closed());
        let (waiting, mut answer) = query(2);
        queue.push(waiting).unwrap();
        queue.clear();
        assert!(answer.try_recv().is_err());
        assert!(queue.is_empty());
    }
}
