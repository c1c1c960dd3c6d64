//! Control between batches: wake, stop, quarantine on the operator's request, resume after a
//! quarantine, reload (see `reload`) and the queued queries, answered on the plugin's instance
//! so an answer reflects exactly the applied cursors: at most `per_batch` of them between two
//! groups; one whose client has gone is dropped unrun, one that waited past its deadline is
//! answered 503 unrun.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::super::query_cache::cache_key;
use super::super::slot::{AuthorizeCall, Control, PluginRunState, QueryError};
use super::{Halt, Worker};

impl Worker {
    /// Obeys `control`; a stop (or a stop during the resync after a resume) halts.
    pub(super) fn handle(&mut self, control: Control) -> Result<(), Halt> {
        match control {
            Control::Wake => {}
            Control::Stop => return Err(Halt::Stop),
            Control::Reload { version, reply } => {
                let _ = reply.send(self.swap(version));
            }
            Control::Authorize(call) => self.authorize(call),
            Control::Resume { reply } => {
                let was = self.quarantined;
                if was {
                    self.quarantined = false;
                    self.quarantined_gauge.set(0);
                    self.instance = None;
                    self.slot.status().state = PluginRunState::Running;
                    tracing::info!(plugin = %self.slot.name(), "quarantine lifted");
                    self.resync()?;
                }
                let _ = reply.send(was);
            }
            Control::Quarantine { reason, reply } => {
                let already = self.quarantined;
                if !already {
                    tracing::warn!(plugin = %self.slot.name(), %reason, "plugin quarantined by the operator");
                    self.quarantine(reason);
                }
                let _ = reply.send(!already);
            }
        }
        Ok(())
    }

    /// Answers queued queries until `per_batch` have run or none waits; those whose client
    /// has gone or whose deadline has passed are dropped without running (and not counted).
    pub(super) fn answer_queries(&mut self) {
        let mut ran = 0;
        while ran < self.ctx.queries_per_batch {
            let Some(queued) = self.slot.queries().pop() else {
                return;
            };
            let dropped = if queued.reply.is_closed() {
                "client-gone"
            } else if Instant::now() > queued.deadline {
                let _ = queued.reply.send(Err(QueryError::Unavailable(format!(
                    "the query waited longer than {} ms in plugin {}'s queue \
                     (reader.plugins.queries.queue_timeout_ms)",
                    self.ctx.queue_timeout.as_millis(),
                    self.slot.name()
                ))));
                "expired"
            } else {
                ran += 1;
                let _ = queued.reply.send(self.query(&queued.name, &queued.args));
                continue;
            };
            self.ctx
                .metrics
                .queries_dropped
                .with(&[self.slot.name(), dropped])
                .inc();
        }
    }

    /// Answers an authorizer question on the plugin's instance (between batches, so the
    /// verdict reflects exactly the applied cursors), unless the asker gave up or its deadline
    /// passed. Failures are reported like a query's, and deny.
    fn authorize(&mut self, call: AuthorizeCall) {
        let left = call.deadline.saturating_duration_since(Instant::now());
        if call.reply.is_closed() || left.is_zero() {
            return;
        }
        if self.quarantined {
            let _ = call
                .reply
                .send(Err(format!("plugin {} is quarantined", self.slot.name())));
            return;
        }
        let started = Instant::now();
        let result = match self.ensure_instance() {
            Ok(instance) => instance.authorize(&call.subject, &call.access, left),
            Err(failure) => Err(failure),
        };
        self.services.kv().discard();
        let verdict = result.map_err(|failure| {
            if failure.reason.needs_fresh_instance() {
                self.instance = None;
            }
            self.report("authorize", None, (1, started.elapsed()), &failure, None);
            failure.to_string()
        });
        let _ = call.reply.send(verdict);
    }

    /// Answers a query on the plugin's instance (between batches, so its answer reflects
    /// exactly the applied cursors) and caches it.
    fn query(&mut self, name: &str, args: &[(String, String)]) -> Result<Arc<str>, QueryError> {
        if self.quarantined {
            return Err(QueryError::Unavailable(format!(
                "plugin {} is quarantined",
                self.slot.name()
            )));
        }
        let description = self.version.description();
        let Some(spec) = description.queries.iter().find(|q| q.name == name) else {
            return Err(QueryError::BadRequest(format!(
                "plugin {} has no query {name}",
                self.slot.name()
            )));
        };
        let key = cache_key(&spec.key, args).map_err(QueryError::BadRequest)?;
        let plugin = self.slot.name().to_string();
        if let Some(answer) = self.ctx.cache.get(&plugin, &spec.cache, &key) {
            return Ok(answer);
        }
        let cache = spec.cache.clone();
        // The report's duration is the `query` call's own, not a fresh instance's `init`.
        let (result, duration) = match self.ensure_instance() {
            Ok(instance) => {
                let started = Instant::now();
                let result = instance.query(name, args);
                let duration = started.elapsed();
                self.ctx
                    .metrics
                    .query_duration
                    .with(&[&plugin, name])
                    .observe(duration.as_secs_f64());
                (result, duration)
            }
            Err(failure) => (Err(failure), Duration::ZERO),
        };
        // Queries read state; whatever they wrote is not part of any batch.
        self.services.kv().discard();
        match result {
            Ok(answer) => {
                let answer: Arc<str> = answer.into();
                self.ctx.cache.insert(&plugin, &cache, &key, answer.clone());
                Ok(answer)
            }
            Err(failure) => {
                if failure.reason.needs_fresh_instance() {
                    self.instance = None;
                }
                self.report("query", None, (1, duration), &failure, None);
                Err(QueryError::Failed(failure))
            }
        }
    }
}
