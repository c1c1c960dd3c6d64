//! [`Ledger`]: where each (stream, instance) stands, as applied and as committed.
//!
//! The processor and every plugin worker apply rows ahead of their database: a position (a
//! worker's cursor) moves as rows are applied and is written with the group that applied
//! them. The ledger keeps both sides for every key, each with the writer's [`Run`] its token
//! belongs to. [`Ledger::commit`] makes the applied side the committed one after the group's
//! transaction committed; [`Ledger::rollback`] goes back to the committed side after it
//! failed. [`Ledger::reset`] starts a writer's new run (its tokens restarted at
//! [`RUN_START`]).

// Fx hashing: these maps are keyed by stream and instance names and touched several times
// per row; SipHash's DoS resistance buys nothing for names the writer chose.
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use streamhost_proto::{InstanceName, StreamName, Token};

use super::store::{RUN_START, Run};

/// A (stream, writer instance) pair: the unit of positions and `batch` runs.
pub(crate) type Key = (StreamName, InstanceName);

/// A key's position as a commit wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Committed {
    /// The key.
    pub(crate) key: Key,
    /// The committed position before the commit: [`RUN_START`] when the commit enters a new
    /// run, since the earlier run's tokens do not compare with the new run's.
    pub(crate) before: Token,
    /// The position committed.
    pub(crate) after: Token,
    /// The run `after` belongs to.
    pub(crate) run: Run,
}

/// Applied and committed positions and runs per key; see the module docs. A key with no
/// position is at token 0 of run 0.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    /// Positions as applied, committed or not.
    applied: HashMap<Key, Token>,
    /// Positions as of the last commit.
    committed: HashMap<Key, Token>,
    /// Runs as applied, including resets not yet committed.
    runs: HashMap<Key, Run>,
    /// Runs as of the last commit.
    committed_runs: HashMap<Key, Run>,
    /// Keys whose position or run moved since the last commit or rollback.
    changed: HashSet<Key>,
}

impl Ledger {
    /// A ledger whose applied and committed sides are the stored `tokens` and `runs`.
    pub(crate) fn new(
        tokens: impl IntoIterator<Item = (Key, Token)>,
        runs: impl IntoIterator<Item = (Key, Run)>,
    ) -> Ledger {
        let committed: HashMap<Key, Token> = tokens.into_iter().collect();
        let committed_runs: HashMap<Key, Run> = runs.into_iter().collect();
        Ledger {
            applied: committed.clone(),
            committed,
            runs: committed_runs.clone(),
            committed_runs,
            changed: HashSet::default(),
        }
    }

    /// The applied position of `key` (0 if it has none).
    pub(crate) fn position(&self, key: &Key) -> Token {
        self.applied.get(key).copied().unwrap_or(Token(0))
    }

    /// Whether `key` has an applied position (even token 0).
    pub(crate) fn knows(&self, key: &Key) -> bool {
        self.applied.contains_key(key)
    }

    /// The applied run of `key` (run 0 if it has none).
    pub(crate) fn run(&self, key: &Key) -> Run {
        self.runs.get(key).copied().unwrap_or_default()
    }

    /// Every applied position.
    pub(crate) fn positions(&self) -> impl Iterator<Item = (&Key, Token)> {
        self.applied.iter().map(|(key, token)| (key, *token))
    }

    /// The committed position of `key` (0 if it has none).
    pub(crate) fn committed_position(&self, key: &Key) -> Token {
        self.committed.get(key).copied().unwrap_or(Token(0))
    }

    /// Every committed position.
    pub(crate) fn committed_positions(&self) -> impl Iterator<Item = (&Key, Token)> {
        self.committed.iter().map(|(key, token)| (key, *token))
    }

    /// Every committed run (keys absent are in run 0).
    pub(crate) fn committed_runs(&self) -> impl Iterator<Item = (&Key, Run)> {
        self.committed_runs.iter().map(|(key, run)| (key, *run))
    }

    /// Moves the applied position of `key` forward to `token` (never backwards).
    pub(crate) fn advance(&mut self, key: &Key, token: Token) {
        if token > self.position(key) {
            self.set(key, token);
        }
    }

    /// Puts the applied position of `key` at `token`, whichever way that moves it.
    pub(crate) fn set(&mut self, key: &Key, token: Token) {
        self.applied.insert(key.clone(), token);
        self.mark(key);
    }

    /// Enters the writer's `run` for `key`: its position, if it has one, moves back to
    /// [`RUN_START`]. Returns the position it had.
    pub(crate) fn reset(&mut self, key: &Key, run: Run) -> Option<Token> {
        self.runs.insert(key.clone(), run);
        self.mark(key);
        self.applied
            .get_mut(key)
            .map(|token| std::mem::replace(token, RUN_START))
    }

    /// Whether nothing moved since the last commit or rollback.
    pub(crate) fn is_clean(&self) -> bool {
        self.changed.is_empty()
    }

    /// The applied positions (with their runs) that differ from the committed ones: what the
    /// next commit writes.
    pub(crate) fn pending(&self) -> Vec<(Key, Token, Run)> {
        self.changed
            .iter()
            .filter_map(|key| {
                let token = *self.applied.get(key)?;
                let moved = self.committed.get(key) != Some(&token)
                    || self.committed_runs.get(key) != self.runs.get(key);
                moved.then(|| (key.clone(), token, self.run(key)))
            })
            .collect()
    }

    /// Records that [`Ledger::pending`] was committed: the applied side becomes the
    /// committed one. Returns what moved.
    pub(crate) fn commit(&mut self) -> Vec<Committed> {
        let committed = self
            .pending()
            .into_iter()
            .map(|(key, after, run)| {
                let new_run = self.committed_runs.get(&key) != self.runs.get(&key);
                let before = if new_run {
                    RUN_START
                } else {
                    self.committed_position(&key)
                };
                Committed {
                    key,
                    before,
                    after,
                    run,
                }
            })
            .collect();
        for key in std::mem::take(&mut self.changed) {
            if let Some(token) = self.applied.get(&key) {
                self.committed.insert(key.clone(), *token);
            }
            if let Some(run) = self.runs.get(&key) {
                self.committed_runs.insert(key, *run);
            }
        }
        committed
    }

    /// Forgets everything not committed: the applied side goes back to the committed one.
    pub(crate) fn rollback(&mut self) {
        self.applied = self.committed.clone();
        self.runs = self.committed_runs.clone();
        self.changed.clear();
    }

    fn mark(&mut self, key: &Key) {
        if !self.changed.contains(key) {
            self.changed.insert(key.clone());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(stream: &str) -> Key {
        (
            StreamName::new(stream).unwrap(),
            InstanceName::new("master").unwrap(),
        )
    }

    #[test]
    fn advance_moves_only_forwards_and_leaves_the_committed_side() {
        let mut ledger = Ledger::new([(key("a"), Token(5))], []);
        ledger.advance(&key("a"), Token(3));
        assert!(ledger.is_clean(), "moving backwards is no move");
        ledger.advance(&key("a"), Token(8));
        ledger.advance(&key("b"), Token(2));
        assert_eq!(ledger.position(&key("a")), Token(8));
        assert_eq!(ledger.committed_position(&key("a")), Token(5));
        assert_eq!(ledger.committed_position(&key("b")), Token(0));
        assert!(!ledger.knows(&key("c")));
        let mut pending = ledger.pending();
        pending.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(
            pending,
            vec![(key("a"), Token(8), Run(0)), (key("b"), Token(2), Run(0))]
        );
    }

    #[test]
    fn commit_makes_the_applied_side_committed_and_says_what_moved() {
        let mut ledger = Ledger::new([(key("a"), Token(5))], []);
        ledger.advance(&key("a"), Token(8));
        ledger.set(&key("b"), Token(0));
        let mut committed = ledger.commit();
        committed.sort_by(|x, y| x.key.cmp(&y.key));
        assert_eq!(
            committed,
            vec![
                Committed {
                    key: key("a"),
                    before: Token(5),
                    after: Token(8),
                    run: Run(0)
                },
                Committed {
                    key: key("b"),
                    before: Token(0),
                    after: Token(0),
                    run: Run(0)
                },
            ]
        );
        assert!(ledger.is_clean());
        assert!(ledger.pending().is_empty());
        assert_eq!(ledger.committed_position(&key("a")), Token(8));
        assert!(ledger.committed_positions().any(|(k, _)| *k == key("b")));
    }

    #[test]
    fn setting_a_position_back_to_the_committed_one_writes_nothing() {
        let mut ledger = Ledger::new([(key("a"), Token(5))], []);
        ledger.set(&key("a"), Token(7));
        ledger.set(&key("a"), Token(5));
        assert!(ledger.pending().is_empty());
        assert!(ledger.commit().is_empty());
    }

    #[test]
    fn rollback_restores_the_committed_positions_and_runs() {
        let mut ledger = Ledger::new([(key("a"), Token(5))], [(key("a"), Run(2))]);
        ledger.advance(&key("a"), Token(9));
        ledger.advance(&key("b"), Token(4));
        ledger.reset(&key("a"), Run(3));
        ledger.rollback();
        assert!(ledger.is_clean());
        assert_eq!(ledger.position(&key("a")), Token(5));
        assert_eq!(ledger.run(&key("a")), Run(2));
        assert!(!ledger.knows(&key("b")), "never committed, so forgotten");
        assert!(ledger.pending().is_empty());
    }

    #[test]
    fn a_reset_moves_the_position_back_in_a_new_run_and_commits_from_run_start() {
        let mut ledger = Ledger::new([(key("a"), Token(50))], []);
        assert_eq!(ledger.reset(&key("a"), Run(1)), Some(Token(50)));
        assert_eq!(ledger.position(&key("a")), RUN_START);
        assert_eq!(ledger.run(&key("a")), Run(1));
        assert_eq!(ledger.committed_position(&key("a")), Token(50));
        ledger.advance(&key("a"), Token(7));
        assert_eq!(
            ledger.commit(),
            vec![Committed {
                key: key("a"),
                before: RUN_START,
                after: Token(7),
                run: Run(1)
            }],
            "the earlier run's 50 does not compare with the new run's 7"
        );
        assert_eq!(
            ledger.committed_runs().collect::<Vec<_>>(),
            vec![(&key("a"), Run(1))]
        );
    }

    #[test]
    fn a_reset_of_a_key_with_no_position_records_only_the_run() {
        let mut ledger = Ledger::default();
        assert_eq!(ledger.reset(&key("a"), Run(1)), None);
        assert!(!ledger.knows(&key("a")));
        assert!(ledger.pending().is_empty(), "no position to write");
        assert!(ledger.commit().is_empty());
        assert_eq!(
            ledger.committed_runs().collect::<Vec<_>>(),
            vec![(&key("a"), Run(1))]
        );
    }
}
