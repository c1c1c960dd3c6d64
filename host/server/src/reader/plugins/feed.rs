//! The feed: batches the reader has committed, kept in memory (bounded by rows and by bytes,
//! [`FeedBounds`]) for the plugin workers, each of which follows it at its own pace with its
//! own cursors. Past either bound the oldest commits go (the newest is always kept), and a
//! worker that needed them is lapped: it catches up from the writer, as below.
//!
//! Each [`Commit`] lists, per (stream, instance), the reader's position before and after it
//! ([`Advance`]); the rows in between are exactly the commit's batches of that key. A worker
//! whose cursor is at or past `before` can take the rows above its cursor and move to
//! `after`; one further behind (it was quarantined, added late, or the feed dropped what it
//! needed) fetches the gap from the writer first.
//!
//! A writer that restarted its tokens (Synapse's `typing`, `federation`, `presence_federation`)
//! moves the reader's position of its key back: the commit that does so carries a [`Reset`]
//! naming the key's new [`Run`], and its advance of that key starts at [`RUN_START`]; every
//! advance names the run of its tokens. A worker whose cursor belongs to an earlier run moves
//! it back to [`RUN_START`] before it applies the commit; one that skipped the reset's commit
//! compares runs ([`ReaderPositions::runs`]).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use streamhost_proto::{InstanceName, StreamName, Token};

use crate::config::PluginsConfig;
use crate::reader::Batch;
pub(crate) use crate::reader::store::{RUN_START, Run};

/// A (stream, instance) pair.
pub(crate) type Key = (StreamName, InstanceName);

/// The reader's position of one key moving with a commit, within the writer's `run`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Advance {
    pub(crate) key: Key,
    pub(crate) before: Token,
    pub(crate) after: Token,
    pub(crate) run: Run,
}

/// The writer of `key` restarted its tokens: the commit's rows of `key` belong to `run`, whose
/// tokens start again above [`RUN_START`]. Applies before the commit's advances.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Reset {
    pub(crate) key: Key,
    pub(crate) run: Run,
}

/// One committed group of the reader.
#[derive(Debug)]
pub(crate) struct Commit {
    pub(crate) seq: u64,
    pub(crate) batches: Vec<Batch>,
    pub(crate) advances: Vec<Advance>,
    pub(crate) resets: Vec<Reset>,
}

/// The reader's committed positions: the token of every key and, for keys whose writer
/// restarted its tokens, the run that token belongs to (absent: run 0).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ReaderPositions {
    pub(crate) tokens: HashMap<Key, Token>,
    pub(crate) runs: HashMap<Key, Run>,
}

impl ReaderPositions {
    /// The run of `key`.
    pub(crate) fn run(&self, key: &Key) -> Run {
        self.runs.get(key).copied().unwrap_or_default()
    }
}

/// What a worker finds when it reads the feed.
pub(crate) enum FeedRead {
    /// Commits after the worker's sequence number, oldest first.
    Commits(Vec<Arc<Commit>>),
    /// The feed no longer holds what follows the worker's sequence number: catch up to
    /// `positions` (as of `seq`) from the writer, then follow on from `seq`.
    Lapped {
        seq: u64,
        positions: ReaderPositions,
    },
    /// Nothing new.
    Empty,
}

type Waker = Arc<dyn Fn() + Send + Sync>;

/// The highest token of `stream` over its instances in `tokens` (0 if none).
pub(crate) fn highest_of(tokens: &HashMap<Key, Token>, stream: &str) -> Token {
    tokens
        .iter()
        .filter(|((s, _), _)| s.as_str() == stream)
        .map(|(_, t)| *t)
        .max()
        .unwrap_or(Token(0))
}

/// Bytes counted for each row besides its JSON text (its `Bytes` handle and slot).
const ROW_OVERHEAD: usize = 48;
/// Bytes counted for each commit besides its rows.
const COMMIT_OVERHEAD: usize = 256;

/// How much the feed keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FeedBounds {
    /// Most rows, over all commits.
    pub(crate) rows: usize,
    /// Most bytes, over all commits.
    pub(crate) bytes: usize,
}

impl FeedBounds {
    /// The bounds `feed_rows` and `feed_mib` set.
    pub(crate) fn of(config: &PluginsConfig) -> FeedBounds {
        FeedBounds {
            rows: config.feed_rows,
            bytes: config.feed_mib.saturating_mul(1 << 20),
        }
    }
}

/// The rows and bytes a commit's batches count for.
fn size_of(batches: &[Batch]) -> (usize, usize) {
    batches
        .iter()
        .fold((0, COMMIT_OVERHEAD), |(rows, bytes), batch| {
            let text: usize = batch.rows.iter().map(|r| r.len() + ROW_OVERHEAD).sum();
            (rows + batch.rows.len(), bytes + text)
        })
}

struct Inner {
    commits: VecDeque<Arc<Commit>>,
    rows: usize,
    bytes: usize,
    last_seq: u64,
    positions: ReaderPositions,
    wakers: HashMap<u64, Waker>,
    next_waker: u64,
}

/// The feed. Shared by the processor (which publishes) and the workers (which read).
pub(crate) struct Feed {
    inner: Mutex<Inner>,
    bounds: FeedBounds,
}

impl Feed {
    /// A feed keeping what `bounds` allow, starting from the reader's committed `positions`.
    pub(crate) fn new(bounds: FeedBounds, positions: ReaderPositions) -> Feed {
        Feed {
            inner: Mutex::new(Inner {
                commits: VecDeque::new(),
                rows: 0,
                bytes: 0,
                last_seq: 0,
                positions,
                wakers: HashMap::new(),
                next_waker: 0,
            }),
            bounds,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a committed group and wakes the workers.
    pub(crate) fn publish(&self, batches: Vec<Batch>, advances: Vec<Advance>, resets: Vec<Reset>) {
        if advances.is_empty() && resets.is_empty() {
            return;
        }
        let wakers: Vec<Waker> = {
            let mut inner = self.lock();
            inner.last_seq += 1;
            let (rows, bytes) = size_of(&batches);
            for reset in &resets {
                inner.positions.tokens.insert(reset.key.clone(), RUN_START);
                inner.positions.runs.insert(reset.key.clone(), reset.run);
            }
            for advance in &advances {
                inner
                    .positions
                    .tokens
                    .insert(advance.key.clone(), advance.after);
            }
            let seq = inner.last_seq;
            inner.commits.push_back(Arc::new(Commit {
                seq,
                batches,
                advances,
                resets,
            }));
            inner.rows += rows;
            inner.bytes += bytes;
            // Keep at least the newest commit, however large.
            while (inner.rows > self.bounds.rows || inner.bytes > self.bounds.bytes)
                && inner.commits.len() > 1
            {
                if let Some(old) = inner.commits.pop_front() {
                    let (rows, bytes) = size_of(&old.batches);
                    inner.rows -= rows;
                    inner.bytes -= bytes;
                }
            }
            inner.wakers.values().cloned().collect()
        };
        for wake in wakers {
            wake();
        }
    }

    /// Commits after `seq`, at least one and about `max_rows` rows at most.
    pub(crate) fn read(&self, seq: u64, max_rows: usize) -> FeedRead {
        let inner = self.lock();
        if seq >= inner.last_seq {
            return FeedRead::Empty;
        }
        let first = inner.commits.front().map_or(inner.last_seq + 1, |c| c.seq);
        if seq + 1 < first {
            return FeedRead::Lapped {
                seq: inner.last_seq,
                positions: inner.positions.clone(),
            };
        }
        let mut rows = 0;
        let mut out = Vec::new();
        for commit in inner.commits.iter().skip((seq + 1 - first) as usize) {
            let size: usize = commit.batches.iter().map(|b| b.rows.len()).sum();
            if !out.is_empty() && rows + size > max_rows {
                break;
            }
            rows += size;
            out.push(commit.clone());
        }
        FeedRead::Commits(out)
    }

    /// The newest sequence number and the reader's positions as of it.
    pub(crate) fn snapshot(&self) -> (u64, ReaderPositions) {
        let inner = self.lock();
        (inner.last_seq, inner.positions.clone())
    }

    /// The reader's committed position of `stream` (the highest over its instances).
    pub(crate) fn position_of(&self, stream: &str) -> Token {
        highest_of(&self.lock().positions.tokens, stream)
    }

    /// Calls `wake` after every publish until [`Feed::unsubscribe`]; returns its id.
    pub(crate) fn subscribe(&self, wake: Waker) -> u64 {
        let mut inner = self.lock();
        inner.next_waker += 1;
        let id = inner.next_waker;
        inner.wakers.insert(id, wake);
        id
    }

    /// Stops waking `id`.
    pub(crate) fn unsubscribe(&self, id: u64) {
        self.lock().wakers.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use streamhost_proto::RowJson;

    use super::*;

    fn key() -> Key {
        (
            StreamName::new("s").unwrap(),
            InstanceName::new("w").unwrap(),
        )
    }

    /// Bounds of `rows` rows and no byte bound to speak of.
    fn rows(rows: usize) -> FeedBounds {
        FeedBounds {
            rows,
            bytes: usize::MAX,
        }
    }

    fn commit(feed: &Feed, before: i64, after: i64, rows: usize) {
        let batch = Batch {
            stream: key().0,
            instance: key().1,
            prev: Token(before),
            token: Token(after),
            rows: (0..rows).map(|_| RowJson::parse(b"{}").unwrap()).collect(),
        };
        feed.publish(
            vec![batch],
            vec![Advance {
                key: key(),
                before: Token(before),
                after: Token(after),
                run: Run::default(),
            }],
            Vec::new(),
        );
    }

    #[test]
    fn readers_get_commits_in_order_bounded_by_rows() {
        let feed = Feed::new(rows(100), ReaderPositions::default());
        let woken = Arc::new(AtomicUsize::new(0));
        let counter = woken.clone();
        let id = feed.subscribe(Arc::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        }));
        for n in 0..4 {
            commit(&feed, n, n + 1, 10);
        }
        assert_eq!(woken.load(Ordering::SeqCst), 4);
        let FeedRead::Commits(commits) = feed.read(1, 25) else {
            panic!("expected commits")
        };
        assert_eq!(
            commits.iter().map(|c| c.seq).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert!(matches!(feed.read(4, 25), FeedRead::Empty));
        feed.unsubscribe(id);
        commit(&feed, 4, 5, 1);
        assert_eq!(woken.load(Ordering::SeqCst), 4);
        assert_eq!(feed.position_of("s"), Token(5));
    }

    #[test]
    fn a_reader_the_feed_dropped_is_told_to_catch_up_to_the_positions() {
        let feed = Feed::new(rows(15), ReaderPositions::default());
        for n in 0..3 {
            commit(&feed, n, n + 1, 10);
        }
        let FeedRead::Lapped { seq, positions } = feed.read(0, 100) else {
            panic!("expected lapped")
        };
        assert_eq!(seq, 3);
        assert_eq!(positions.tokens[&key()], Token(3));
        let FeedRead::Commits(commits) = feed.read(2, 100) else {
            panic!("the newest commit is kept")
        };
        assert_eq!(commits.len(), 1);
    }

    #[test]
    fn bytes_bound_the_feed_as_rows_do() {
        // Each 10-row commit of `{}` rows counts 10 * (2 + 48) + 256 = 756 bytes.
        let bounds = FeedBounds {
            rows: 1_000,
            bytes: 1_600,
        };
        let feed = Feed::new(bounds, ReaderPositions::default());
        for n in 0..4 {
            commit(&feed, n, n + 1, 10);
        }
        assert!(matches!(feed.read(1, 100), FeedRead::Lapped { seq: 4, .. }));
        let FeedRead::Commits(commits) = feed.read(2, 100) else {
            panic!("the newest two commits fit")
        };
        assert_eq!(commits.iter().map(|c| c.seq).collect::<Vec<_>>(), [3, 4]);
        // One commit larger than the whole bound is still kept, alone.
        commit(&feed, 4, 5, 100);
        assert!(matches!(feed.read(4, 100), FeedRead::Commits(c) if c.len() == 1));
        assert!(matches!(feed.read(3, 100), FeedRead::Lapped { .. }));
    }

    #[test]
    fn a_reset_moves_the_position_back_and_starts_a_new_run() {
        let feed = Feed::new(rows(15), ReaderPositions::default());
        commit(&feed, 0, 8, 10);
        feed.publish(
            Vec::new(),
            Vec::new(),
            vec![Reset {
                key: key(),
                run: Run(1),
            }],
        );
        let FeedRead::Commits(commits) = feed.read(1, 100) else {
            panic!("a reset alone is a commit")
        };
        assert_eq!(commits[0].resets[0].run, Run(1));
        commit(&feed, 0, 2, 10);
        let FeedRead::Lapped { positions, .. } = feed.read(0, 100) else {
            panic!("expected lapped")
        };
        assert_eq!(positions.tokens[&key()], Token(2));
        assert_eq!(
            positions.run(&key()),
            Run(1),
            "a lapped reader learns the run"
        );
    }
}
