//! A group's commit: the plugin's changed cursors, its key-value writes, dead letters and
//! pushes (to the outbox) in one transaction, after which the push delivery is woken; only
//! then are the group's effects applied (cache evictions, notifications), its metrics
//! counted and the cursors published. A failed commit (a full disk, say) forgets the
//! group: the cursors go back, and after a back-off the rows are fetched and applied again.
//! After a commit, an instance whose memory has outgrown its budget's room is dropped, so
//! the next batch starts on a fresh one.

use streamhost_plugin_runtime::{Effect, Invalidation, Notification};

use super::super::notifications::Source;
use super::{Group, Worker};
use crate::reader::disk::is_disk_full;

impl Worker {
    /// Whether the group's effects hold half the plugin's host memory budget: committed then,
    /// so buffering never starves the next call of the budget.
    pub(super) fn group_is_heavy(&self, group: &Group) -> bool {
        let budget = self.version.capabilities().limits.host_memory_bytes();
        group.charge.bytes() > budget / 2
    }

    /// Commits the group's cursors, key-value writes and dead letters, then applies its
    /// effects and publishes the cursors. A failed commit forgets the group: the cursors go
    /// back and the rows are fetched again.
    pub(super) fn flush(&mut self, group: &mut Group) {
        let mut group = std::mem::take(group);
        if !group.dirty {
            return;
        }
        let changed = self.cursors.pending();
        let kv = self.services.kv().staged();
        let name = self.slot.name().to_string();
        let committed = self.ctx.handle.block_on(self.ctx.store.commit(
            &name,
            &changed,
            &kv,
            &group.dead,
            &group.pushes,
        ));
        if let Err(error) = committed {
            let disk_full = is_disk_full(&error);
            tracing::error!(plugin = %name, error = %format!("{error:#}"), disk_full, "committing plugin state failed; the rows will be applied again after a back-off");
            self.services.kv().discard_all();
            self.cursors.rollback();
            self.instance = None;
            self.commit_failed = true;
            return;
        }
        self.commit_pauses.reset();
        self.services.kv().commit();
        self.cursors.commit();
        if !group.pushes.is_empty()
            && let Some(pushes) = &self.ctx.pushes
        {
            pushes.wake();
        }
        for (key, before, run) in &group.resets {
            tracing::info!(
                plugin = %name, stream = %key.0, instance = %key.1, cursor = before.0, run = run.0,
                "the writer restarted this stream's tokens: the plugin's cursor moved back to the start of its new run"
            );
            self.ctx.metrics.resets.with(&[&name, key.0.as_str()]).inc();
        }
        let effects = group.effects.len() as u64;
        self.apply_effects(
            &name,
            std::mem::take(&mut group.effects),
            std::mem::take(&mut group.sources),
        );
        self.count(&name, &group, effects);
        self.slot.publish_cursors(
            self.cursors
                .positions()
                .map(|(key, token)| (key.clone(), token))
                .collect(),
        );
        self.recycle_if_outgrown(&name);
    }

    /// Drops the instance when [`PluginInstance::has_outgrown`] its memory budget: the next
    /// batch instantiates and initialises a fresh one from the committed cursors, as after a
    /// failure, but no call fails. Between groups nothing is lost: the key-value store and
    /// the cursors are committed, and what a plugin keeps only in its instance is, by the
    /// plugin contract, allowed to vanish at any fresh instance.
    ///
    /// [`PluginInstance::has_outgrown`]: streamhost_plugin_runtime::PluginInstance::has_outgrown
    fn recycle_if_outgrown(&mut self, name: &str) {
        let Some(instance) = &self.instance else {
            return;
        };
        if !instance.has_outgrown() {
            return;
        }
        tracing::info!(
            plugin = %name,
            memory_mib = instance.memory_peak() >> 20,
            budget_mib = self.version.capabilities().limits.memory_mib,
            "the plugin's instance grew by three quarters of its memory budget's room; the next batch starts on a fresh instance"
        );
        self.ctx.metrics.recycles.with(&[name]).inc();
        self.instance = None;
    }

    /// Applies a committed group's effects: cache evictions, then its notifications at once,
    /// each with the batch it came from (`sources`: each batch's count of effects, in order).
    /// The effects' strings move into the notifications; nothing is copied.
    fn apply_effects(&self, name: &str, effects: Vec<Effect>, sources: Vec<(usize, Source)>) {
        let mut notifications = Vec::with_capacity(effects.len());
        let mut effects = effects.into_iter();
        for (count, source) in sources {
            for effect in effects.by_ref().take(count) {
                match effect {
                    Effect::Invalidate(Invalidation { cache, key }) => {
                        self.ctx.cache.invalidate(name, &cache, &key)
                    }
                    Effect::InvalidateAll(cache) => self.ctx.cache.invalidate_all(name, &cache),
                    Effect::Notify(Notification { topic, payload }) => {
                        notifications.push((topic, payload, Some(source.clone())))
                    }
                }
            }
        }
        if !notifications.is_empty() {
            self.ctx.hub.publish_from(name, notifications);
        }
    }

    /// Counts a committed group (which had `effects` effects) in the metrics (with the
    /// plugin's own counters) and status.
    fn count(&mut self, name: &str, group: &Group, effects: u64) {
        let metrics = &self.ctx.metrics;
        metrics.batches.with(&[name]).add(group.batches);
        metrics.rows.with(&[name]).add(group.rows);
        metrics.effects.with(&[name]).add(effects);
        for (counter, value) in self.services.counters() {
            let seen = self.counters_seen.entry(counter.clone()).or_default();
            if value > *seen {
                metrics.counters.with(&[name, &counter]).add(value - *seen);
                *seen = value;
            }
        }
        let mut status = self.slot.status();
        status.batches += group.batches;
        status.rows += group.rows;
        status.effects += effects;
    }
}
