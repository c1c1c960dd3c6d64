//! Control between batches: wake, stop, resume after a quarantine, reload (see `reload`) and
//! queries, answered on the plugin's instance so an answer reflects exactly the applied
//! cursors.

use std::sync::Arc;
use std::time::Duration;

use super::super::query_cache::cache_key;
use super::super::slot::{Control, PluginRunState, QueryError};
use super::{Halt, Worker};

impl Worker {
    /// Obeys `control`; a stop (or a stop during the resync after a resume) halts.
    pub(super) fn handle(&mut self, control: Control) -> Result<(), Halt> {
        match control {
            Control::Wake => {}
            Control::Stop => return Err(Halt::Stop),
            Control::Query { name, args, reply } => {
                let _ = reply.send(self.query(&name, &args));
            }
            Control::Reload { version, reply } => {
                let _ = reply.send(self.swap(version));
            }
            Control::Resume { reply } => {
                let was = self.quarantined;
                if was {
                    self.quarantined = false;
                    self.instance = None;
                    self.slot.status().state = PluginRunState::Running;
                    tracing::info!(plugin = %self.slot.name(), "quarantine lifted");
                    self.resync()?;
                }
                let _ = reply.send(was);
            }
        }
        Ok(())
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
        let result = match self.ensure_instance() {
            Ok(instance) => instance.query(name, args),
            Err(failure) => Err(failure),
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
                self.report("query", None, (1, Duration::ZERO), &failure, None);
                Err(QueryError::Failed(failure))
            }
        }
    }
}
