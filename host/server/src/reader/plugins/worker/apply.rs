//! Applying: each commit of the feed (or each key of a catch-up to the reader's positions)
//! becomes `on-batch` calls for the rows above the plugin's cursors, after entering the
//! writer's new run where it restarted its tokens; each group ends with a commit.

use std::sync::Arc;

use streamhost_plugin_runtime::{Batch as WasmBatch, Row};
use streamhost_proto::{RowJson, Token};

use super::super::feed::{Commit, Key, RUN_START, ReaderPositions, Run};
use super::{Group, Halt, MAX_BATCH_ROWS, Worker};

impl Worker {
    /// Applies the commits' rows above the plugin's cursors.
    pub(super) fn process(&mut self, commits: &[Arc<Commit>]) -> Result<(), Halt> {
        let mut group = Group::default();
        let result = (|| {
            for commit in commits {
                for reset in &commit.resets {
                    self.enter_run(&reset.key, reset.run, &mut group);
                }
                for advance in &commit.advances {
                    // Also here, not only on the commit's resets: a failed commit of this
                    // worker may have taken its cursor back to an earlier run.
                    self.enter_run(&advance.key, advance.run, &mut group);
                    let cursor = self.cursor(&advance.key);
                    if cursor >= advance.after {
                        continue;
                    }
                    if cursor < advance.before {
                        self.fill_gap(&advance.key, cursor, advance.before, &mut group)?;
                    }
                    let cursor = self.cursor(&advance.key);
                    let rows: Vec<(Token, &RowJson)> = commit
                        .batches
                        .iter()
                        .filter(|b| b.stream == advance.key.0 && b.instance == advance.key.1)
                        .filter(|b| b.token > cursor)
                        .flat_map(|b| b.rows.iter().map(move |r| (b.token, r)))
                        .collect();
                    self.apply_rows(&advance.key, &rows, &mut group)?;
                    self.cursors.set(&advance.key, advance.after);
                    group.dirty = true;
                }
            }
            Ok(())
        })();
        self.flush(&mut group);
        result
    }

    /// Catches every key up to `positions`, first moving cursors of an earlier run of their
    /// writer back to the start of the current one.
    pub(super) fn catch_up_to(&mut self, positions: &ReaderPositions) -> Result<(), Halt> {
        let mut group = Group::default();
        let result = (|| {
            for (key, position) in &positions.tokens {
                self.enter_run(key, positions.run(key), &mut group);
                let cursor = self.cursor(key);
                if cursor < *position {
                    self.fill_gap(key, cursor, *position, &mut group)?;
                    self.cursors.set(key, *position);
                    group.dirty = true;
                }
            }
            Ok(())
        })();
        self.flush(&mut group);
        result
    }

    /// Moves the cursor of `key` back to [`RUN_START`] when it belongs to a run of the writer
    /// before `run` (the writer restarted its tokens since), so the new run's rows are applied
    /// from its start. Reported once the group commits.
    pub(super) fn enter_run(&mut self, key: &Key, run: Run, group: &mut Group) {
        if self.cursors.run(key) >= run {
            return;
        }
        group.dirty = true;
        if let Some(before) = self.cursors.reset(key, run)
            && before > RUN_START
        {
            group.resets.push((key.clone(), before, run));
        }
    }

    /// Hands `rows` (token order) to the plugin in batches cut between tokens.
    pub(super) fn apply_rows(
        &mut self,
        key: &Key,
        rows: &[(Token, &RowJson)],
        group: &mut Group,
    ) -> Result<(), Halt> {
        if rows.is_empty() {
            return Ok(());
        }
        if !self.version.wants(key.0.as_str()) {
            let last = rows[rows.len() - 1].0;
            self.cursors.set(key, last);
            group.dirty = true;
            return Ok(());
        }
        let mut start = 0;
        while start < rows.len() {
            let mut end = (start + MAX_BATCH_ROWS).min(rows.len());
            while end < rows.len() && rows[end].0 == rows[end - 1].0 {
                end += 1;
            }
            let chunk = &rows[start..end];
            let batch = WasmBatch {
                stream: key.0.as_str().to_string(),
                instance: key.1.as_str().to_string(),
                prev_token: self.cursor(key).0,
                token: chunk[chunk.len() - 1].0.0,
                rows: chunk
                    .iter()
                    .map(|(token, row)| Row {
                        token: token.0,
                        data: row.as_str().to_string(),
                    })
                    .collect(),
            };
            self.call_batch(&batch, group)?;
            self.cursors.set(key, Token(batch.token));
            group.dirty = true;
            start = end;
            if self.group_is_heavy(group) {
                self.flush(group);
            }
        }
        Ok(())
    }
}
