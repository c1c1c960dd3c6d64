//! The bounded in-memory tail of each stream: the newest committed rows and the stream's
//! position, so the streamer and catch-up rarely read SQL. Bounded by rows and by bytes
//! ([`TailBounds`]); past either, the oldest tokens go and reads of them go to the log.
//! It also holds the stream's retention floor (the highest token trimmed from the log) and
//! how far the streamer has sent, which retention never trims past.

use std::collections::VecDeque;
use std::sync::Mutex;

use streamhost_log::Updates;
use streamhost_proto::{RowJson, Token};

use crate::config::WriterConfig;

/// Bytes counted for each row besides its JSON text (its token, `Bytes` handle and slot).
const ROW_OVERHEAD: usize = 48;

/// How much of a stream the tail keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TailBounds {
    /// Most rows (0: keep none, every read goes to the log).
    pub rows: usize,
    /// Most bytes of rows, counting [`ROW_OVERHEAD`] for each.
    pub bytes: usize,
}

impl TailBounds {
    /// The bounds `tail_rows` and `tail_mib` set.
    pub(crate) fn of(config: &WriterConfig) -> TailBounds {
        TailBounds {
            rows: config.tail_rows,
            bytes: config.tail_mib.saturating_mul(1 << 20),
        }
    }
}

fn weight(row: &RowJson) -> usize {
    row.len() + ROW_OVERHEAD
}

/// One stream's committed position and its most recent rows.
#[derive(Debug)]
pub struct RecentRows {
    inner: Mutex<Inner>,
    bounds: TailBounds,
}

#[derive(Debug)]
struct Inner {
    rows: VecDeque<(Token, RowJson)>,
    /// The bytes `rows` count for.
    bytes: usize,
    /// Every row with a token above this is in `rows`.
    complete_after: Token,
    position: Token,
    /// The position of the last commit pushed, and when it committed (µs since the epoch).
    last_commit: (Token, u64),
    /// The highest token trimmed from the log: reads from below it are refused.
    floor: Token,
    /// The highest token the streamer has put in the ring.
    streamed: Token,
}

impl RecentRows {
    /// A tail at `position` holding nothing yet, keeping what `bounds` allow.
    pub fn new(position: Token, bounds: TailBounds) -> RecentRows {
        RecentRows {
            inner: Mutex::new(Inner {
                rows: VecDeque::new(),
                bytes: 0,
                complete_after: position,
                position,
                last_commit: (position, 0),
                floor: streamhost_log::ORIGIN,
                streamed: position,
            }),
            bounds,
        }
    }

    /// The committed position.
    pub fn position(&self) -> Token {
        self.inner.lock().expect("tail lock").position
    }

    /// The position of the last commit pushed and when it committed (µs since the Unix
    /// epoch; 0 before any).
    pub fn last_commit(&self) -> (Token, u64) {
        self.inner.lock().expect("tail lock").last_commit
    }

    /// The highest token trimmed from the log ([`streamhost_log::ORIGIN`] when none).
    pub fn floor(&self) -> Token {
        self.inner.lock().expect("tail lock").floor
    }

    /// Raises the floor to `upto` and drops the rows at or below it, before the log deletes
    /// them: from then on a read from below `upto` is refused, so none can come back short.
    pub fn trim(&self, upto: Token) {
        let mut inner = self.inner.lock().expect("tail lock");
        if upto <= inner.floor {
            return;
        }
        inner.floor = upto;
        while let Some((_, row)) = inner.rows.pop_front_if(|(t, _)| *t <= upto) {
            inner.bytes -= weight(&row);
        }
        inner.complete_after = inner.complete_after.max(upto);
    }

    /// The highest token the streamer has sent (or passed over with nobody connected).
    pub fn streamed(&self) -> Token {
        self.inner.lock().expect("tail lock").streamed
    }

    /// Records that the streamer has sent everything up to `token`.
    pub fn note_streamed(&self, token: Token) {
        let mut inner = self.inner.lock().expect("tail lock");
        inner.streamed = inner.streamed.max(token);
    }

    /// Records rows just committed and the new position. `rows` are in token order and above
    /// the current position; `committed_us` is when their commit returned (µs since the
    /// epoch).
    pub fn push(
        &self,
        rows: impl IntoIterator<Item = (Token, RowJson)>,
        position: Token,
        committed_us: u64,
    ) {
        let mut inner = self.inner.lock().expect("tail lock");
        if position > inner.last_commit.0 {
            inner.last_commit = (position, committed_us);
        }
        for (token, row) in rows {
            inner.bytes += weight(&row);
            inner.rows.push_back((token, row));
        }
        inner.position = inner.position.max(position);
        if self.bounds.rows == 0 {
            inner.rows.clear();
            inner.bytes = 0;
            inner.complete_after = inner.position;
            return;
        }
        while inner.rows.len() > self.bounds.rows || inner.bytes > self.bounds.bytes {
            let Some((evicted, row)) = inner.rows.pop_front() else {
                break;
            };
            inner.bytes -= weight(&row);
            // Drop the rest of a shared token too, so the tail never holds half a token.
            while let Some((_, row)) = inner.rows.pop_front_if(|(t, _)| *t == evicted) {
                inner.bytes -= weight(&row);
            }
            inner.complete_after = evicted;
        }
    }

    /// Moves the position to `position` for rows this writer committed without holding them
    /// (another appender on a shared PostgreSQL log, or a commit whose answer was lost): the
    /// tail then holds nothing at or below `position`, so those rows are read from the log.
    pub fn skip_to(&self, position: Token) {
        let mut inner = self.inner.lock().expect("tail lock");
        if position <= inner.position {
            return;
        }
        inner.rows.clear();
        inner.bytes = 0;
        inner.position = position;
        inner.complete_after = position;
    }

    /// Rows with tokens in `(from, upto]`, about `limit` of them without cutting a token, or
    /// `None` when rows after `from` have been evicted (read the log instead).
    pub fn read(&self, from: Token, upto: Token, limit: usize) -> Option<Updates> {
        let inner = self.inner.lock().expect("tail lock");
        if from < inner.complete_after {
            return None;
        }
        let upto = upto.min(inner.position);
        let start = inner.rows.partition_point(|(t, _)| *t <= from);
        let mut rows = Vec::new();
        let mut limited = false;
        for (token, row) in inner.rows.range(start..) {
            if *token > upto {
                break;
            }
            if rows.len() >= limit.max(1) && rows.last().is_some_and(|(last, _)| last != token) {
                limited = true;
                break;
            }
            rows.push((*token, row.clone()));
        }
        let upto = if limited {
            rows.last().map_or(upto, |(t, _)| *t)
        } else {
            upto
        };
        Some(Updates {
            rows,
            upto,
            limited,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_bounds_come_from_tail_rows_and_tail_mib() {
        let config = crate::config::ConfigFile::parse("[writer]\ntail_rows = 7\ntail_mib = 2\n")
            .unwrap()
            .writer;
        let bounds = TailBounds::of(&config);
        assert_eq!((bounds.rows, bounds.bytes), (7, 2 << 20));
    }

    fn row(n: i64) -> (Token, RowJson) {
        (
            Token(n),
            RowJson::parse(format!("[{n}]").as_bytes()).unwrap(),
        )
    }

    fn rows(rows: usize) -> TailBounds {
        TailBounds {
            rows,
            bytes: usize::MAX,
        }
    }

    #[test]
    fn reads_within_limit_without_cutting_a_token() {
        let tail = RecentRows::new(Token(1), rows(100));
        tail.push([row(2), row(3), row(3), row(4)], Token(4), 0);
        let first = tail.read(Token(1), Token(4), 2).unwrap();
        assert_eq!(
            first.rows.iter().map(|r| r.0.0).collect::<Vec<_>>(),
            vec![2, 3, 3]
        );
        assert!(first.limited);
        assert_eq!(first.upto, Token(3));
        let rest = tail.read(first.upto, Token(4), 2).unwrap();
        assert_eq!(rest.rows.len(), 1);
        assert!(!rest.limited);
        assert_eq!(rest.upto, Token(4));
    }

    #[test]
    fn evicted_range_is_not_served() {
        let tail = RecentRows::new(Token(1), rows(2));
        tail.push([row(2), row(3), row(4)], Token(4), 0);
        assert!(tail.read(Token(1), Token(4), 10).is_none());
        assert_eq!(tail.read(Token(2), Token(4), 10).unwrap().rows.len(), 2);
    }

    #[test]
    fn bytes_bound_the_tail_without_cutting_a_token() {
        // Each row `[n]` (one digit) counts 3 + 48 = 51 bytes: 120 bytes hold two rows.
        let bounds = TailBounds {
            rows: 100,
            bytes: 120,
        };
        let tail = RecentRows::new(Token(1), bounds);
        tail.push([row(2), row(3), row(3), row(4)], Token(4), 0);
        assert!(tail.read(Token(2), Token(4), 10).is_none(), "both 3s went");
        let updates = tail.read(Token(3), Token(4), 10).unwrap();
        assert_eq!(updates.rows, vec![row(4)]);
        tail.push([row(5), row(6)], Token(6), 0);
        assert!(tail.read(Token(3), Token(6), 10).is_none());
        assert_eq!(tail.read(Token(4), Token(6), 10).unwrap().rows.len(), 2);
    }

    #[test]
    fn a_row_larger_than_the_bytes_is_left_to_the_log() {
        let bounds = TailBounds {
            rows: 100,
            bytes: 10,
        };
        let tail = RecentRows::new(Token(1), bounds);
        tail.push([row(2)], Token(2), 0);
        assert!(tail.read(Token(1), Token(2), 10).is_none());
        assert_eq!(tail.read(Token(2), Token(2), 10).unwrap().rows, vec![]);
        assert_eq!(tail.position(), Token(2));
    }

    #[test]
    fn rows_committed_elsewhere_are_left_to_the_log() {
        let tail = RecentRows::new(Token(1), rows(10));
        tail.push([row(2)], Token(2), 0);
        tail.skip_to(Token(4));
        tail.push([row(5)], Token(5), 0);
        assert_eq!(tail.position(), Token(5));
        assert!(
            tail.read(Token(2), Token(5), 10).is_none(),
            "3 and 4 are not here"
        );
        assert_eq!(
            tail.read(Token(4), Token(5), 10).unwrap().rows,
            vec![row(5)]
        );
    }

    #[test]
    fn a_trim_raises_the_floor_and_drops_the_rows_under_it() {
        let tail = RecentRows::new(Token(1), rows(10));
        tail.push([row(2), row(3), row(4)], Token(4), 0);
        tail.trim(Token(3));
        assert_eq!(tail.floor(), Token(3));
        assert!(tail.read(Token(2), Token(4), 10).is_none());
        assert_eq!(
            tail.read(Token(3), Token(4), 10).unwrap().rows,
            vec![row(4)]
        );
        tail.trim(Token(2));
        assert_eq!(tail.floor(), Token(3), "never lowered");
    }

    #[test]
    fn upto_is_clamped_to_the_position() {
        let tail = RecentRows::new(Token(1), rows(10));
        tail.push([row(2)], Token(2), 0);
        let updates = tail.read(Token(1), Token(99), 10).unwrap();
        assert_eq!(updates.upto, Token(2));
        assert!(!updates.limited);
    }
}
