//! Gaps in the plugin's view: rows it needs that the feed no longer holds are fetched from
//! the catch-up source (retried until they come or a stop is requested); rows no source has
//! are a gap, reported with a dead letter and stepped over; so are rows the writer trimmed,
//! after which the plugin follows on from the earliest token kept.

use streamhost_proto::{RowJson, Token};

use super::super::feed::Key;
use super::super::store::DeadLetter;
use super::{CATCHUP_RETRY, Group, Halt, Worker};
use crate::clock::unix_ms;
use crate::reader::catchup::CatchupError;

impl Worker {
    /// Fetches `(from, to]` of `key` from the writer and applies it, retrying until it works
    /// or a stop is requested. When no source has the rows (a Synapse stream), the range is a
    /// gap: reported (warning, `streamhost_plugin_gaps_total`, a dead letter) and stepped over.
    pub(super) fn fill_gap(
        &mut self,
        key: &Key,
        from: Token,
        to: Token,
        group: &mut Group,
    ) -> Result<(), Halt> {
        let wanted = self.version.wants(key.0.as_str());
        let mut from = from;
        while from < to {
            if !wanted {
                self.cursors.set(key, to);
                return Ok(());
            }
            let page = self
                .ctx
                .handle
                .block_on(self.ctx.catchup.fetch(&key.0, from, to));
            match page {
                Ok(page) => {
                    let rows: Vec<(Token, &RowJson)> =
                        page.updates.iter().map(|(t, r)| (*t, r)).collect();
                    self.apply_rows(key, &rows, group)?;
                    let upto = if page.limited { page.upto } else { to };
                    if upto <= from {
                        tracing::warn!(plugin = %self.slot.name(), stream = %key.0, "catch-up made no progress");
                        self.wait(CATCHUP_RETRY)?;
                        continue;
                    }
                    self.cursors.set(key, upto);
                    group.dirty = true;
                    from = upto;
                }
                Err(CatchupError::Unavailable(reason)) => {
                    self.report_gap(key, from, to, &reason, group);
                    return Ok(());
                }
                Err(CatchupError::Trimmed { trimmed_upto, .. }) if trimmed_upto > from => {
                    // The writer's retention got there first: a gap up to the earliest token
                    // kept, then the rest as usual.
                    let upto = trimmed_upto.min(to);
                    self.report_gap(key, from, upto, "trimmed by the writer's retention", group);
                    from = upto;
                }
                Err(error) => {
                    tracing::warn!(plugin = %self.slot.name(), stream = %key.0, from = from.0, to = to.0, %error, "plugin catch-up failed; retrying");
                    self.wait(CATCHUP_RETRY)?;
                }
            }
        }
        Ok(())
    }

    /// Records that the plugin missed `(from, to]` of `key` for good and moves its cursor to
    /// `to`. The dead letter keeps the range for the admin API.
    fn report_gap(&mut self, key: &Key, from: Token, to: Token, reason: &str, group: &mut Group) {
        tracing::warn!(
            plugin = %self.slot.name(), stream = %key.0, instance = %key.1, from = from.0,
            to = to.0, %reason,
            "plugin gap: rows in (from, to] cannot be fetched; the plugin follows on from `to`"
        );
        self.ctx
            .metrics
            .gaps
            .with(&[self.slot.name(), key.0.as_str()])
            .inc();
        group.dead.push(DeadLetter {
            stream: key.0.as_str().to_string(),
            instance: key.1.as_str().to_string(),
            from_token: from.0,
            to_token: to.0,
            reason: format!("gap: {reason}"),
            at_ms: unix_ms() as i64,
        });
        self.cursors.set(key, to);
        group.dirty = true;
    }
}
