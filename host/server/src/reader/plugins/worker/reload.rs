//! Reloads: a new version takes over at a batch boundary, from the old instance's snapshot
//! when both versions support snapshots, else from `init` with the cursors; a version that
//! fails to start leaves the old one running.

use std::sync::Arc;
use std::time::Instant;

use streamhost_plugin_runtime::PluginVersion;

use super::super::slot::{Control, PluginRunState};
use super::Worker;

impl Worker {
    /// Swaps in `version` at this batch boundary: snapshot the old instance when both
    /// versions support it, then restore (or init) a fresh instance of the new one. On any
    /// failure the old version keeps running.
    pub(super) fn swap(&mut self, version: Arc<PluginVersion>) -> Result<(), String> {
        let started = Instant::now();
        let carry = self.version.description().snapshots && version.description().snapshots;
        let snapshot = match (&mut self.instance, carry) {
            (Some(instance), true) => match instance.snapshot() {
                Ok(state) => Some(state),
                Err(failure) => {
                    if failure.reason.needs_fresh_instance() {
                        self.instance = None;
                    }
                    // Reported like any failed call (an over-large snapshot is `host-memory`).
                    self.report("snapshot", None, (1, started.elapsed()), &failure, None);
                    tracing::warn!(plugin = %self.slot.name(), "snapshot failed; the new version starts with init");
                    None
                }
            },
            _ => None,
        };
        let resume_after = self.resume_after();
        let started_new = version
            .instantiate(self.services.clone())
            .and_then(|mut instance| {
                match &snapshot {
                    Some(state) => instance.restore(state, &resume_after)?,
                    None => instance.init(&resume_after)?,
                }
                Ok(instance)
            });
        match started_new {
            Ok(instance) => {
                self.services.kv().stage();
                let pause = started.elapsed();
                let old = std::mem::replace(&mut self.version, version.clone());
                self.instance = Some(instance);
                self.ctx.cache.remove_plugin(self.slot.name());
                {
                    let mut status = self.slot.status();
                    status.version = Some(version.clone());
                    status.reloads += 1;
                    status.pause(pause);
                    if self.quarantined {
                        status.state = PluginRunState::Running;
                    }
                }
                self.ctx
                    .metrics
                    .reloads
                    .with(&[self.slot.name(), "ok"])
                    .inc();
                tracing::info!(plugin = %self.slot.name(), from = %old.sha256(), to = %version.sha256(), pause_us = pause.as_micros() as u64, restored = snapshot.is_some(), "plugin reloaded");
                if self.quarantined {
                    self.quarantined = false;
                    self.quarantined_gauge.set(0);
                    self.deferred.push(Control::Wake);
                    let _ = self.resync();
                }
                Ok(())
            }
            Err(failure) => {
                self.services.kv().discard();
                self.slot.status().reload_failures += 1;
                self.ctx
                    .metrics
                    .reloads
                    .with(&[self.slot.name(), "failed"])
                    .inc();
                let message = format!(
                    "new version {} failed to start: {failure}",
                    version.sha256()
                );
                self.report("reload", None, (1, started.elapsed()), &failure, None);
                tracing::error!(plugin = %self.slot.name(), %message, "reload failed; the old version keeps running");
                Err(message)
            }
        }
    }
}
