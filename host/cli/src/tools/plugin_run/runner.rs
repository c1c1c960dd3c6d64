//! One plugin's instance and the calls `plugin run` makes to it (their effects and pushes):
//! key-value writes committed after a successful batch and discarded after a failure, a fresh
//! instance (and `init` with the cursors so far) after a failure that poisons it, or, as a
//! reader does, after a successful batch that left it grown by three quarters of its memory
//! budget's room (`PluginInstance::has_outgrown`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use streamhost_plugin_runtime::{
    Batch, Cursor, Effect, Failure, KvStore, PluginInstance, PluginServices, PluginVersion, Push,
};

use super::RunSummary;
use super::report::{effect_line, push_line};

/// What one plugin batch did.
pub(crate) struct CallReport {
    /// What the plugin returned (none after a failure).
    pub(crate) effects: Vec<Effect>,
    /// The pushes it made, in call order (none after a failure).
    pub(crate) pushes: Vec<Push>,
    /// Time in `on-batch`.
    pub(crate) call_time: Duration,
    /// The instance's linear-memory high-water.
    pub(crate) memory_peak: usize,
    /// Why the batch failed, if it did.
    pub(crate) failure: Option<Failure>,
}

impl CallReport {
    /// Its effects, then its pushes, each on one line (the forms of `plugin test`'s
    /// expectations).
    pub(crate) fn lines(&self) -> Vec<String> {
        let effects = self.effects.iter().map(effect_line);
        effects.chain(self.pushes.iter().map(push_line)).collect()
    }
}

/// The plugin's services and its current instance (none after a poisoning failure).
pub(crate) struct Runner<'a> {
    version: &'a PluginVersion,
    services: Arc<PluginServices>,
    instance: Option<PluginInstance>,
    /// The last token handled per (stream, instance), handed to `init` of a fresh instance.
    cursors: BTreeMap<(String, String), i64>,
}

impl<'a> Runner<'a> {
    /// A runner of `version` with fresh services and no instance yet.
    pub(crate) fn new(version: &'a PluginVersion) -> Runner<'a> {
        let services = PluginServices::new(
            version.name(),
            KvStore::default(),
            version.capabilities().limits.log_lines_per_second,
            None,
        );
        Runner {
            version,
            services,
            instance: None,
            cursors: BTreeMap::new(),
        }
    }

    /// The current instance, or a fresh one after `init` with the cursors so far.
    fn instance(&mut self, summary: &mut RunSummary) -> Result<&mut PluginInstance, Failure> {
        if self.instance.is_none() {
            let mut instance = self.version.instantiate(self.services.clone())?;
            summary.instances += 1;
            let cursors: Vec<Cursor> = self
                .cursors
                .iter()
                .map(|((stream, instance), token)| Cursor {
                    stream: stream.clone(),
                    instance: instance.clone(),
                    token: *token,
                })
                .collect();
            instance.init(&cursors)?;
            self.commit_kv();
            self.instance = Some(instance);
        }
        Ok(self
            .instance
            .as_mut()
            .expect("an instance was just created"))
    }

    /// Makes the last call's key-value writes committed, as the reader does once it has
    /// persisted them (staged, then committed).
    fn commit_kv(&self) {
        let mut kv = self.services.kv();
        kv.stage();
        kv.commit();
    }

    /// The key-value store's committed values.
    pub(crate) fn kv_entries(&self) -> BTreeMap<String, Vec<u8>> {
        self.services.kv().committed_entries()
    }

    /// Asks query `name` with `args` of the current instance (a fresh one if a failure
    /// poisoned the last); `Err` names the failure. A failure that poisons the instance drops
    /// it, as after a batch.
    pub(crate) fn query(
        &mut self,
        name: &str,
        args: &[(String, String)],
        summary: &mut RunSummary,
    ) -> Result<String, Failure> {
        let result = self.instance(summary)?.query(name, args);
        if let Err(failure) = &result
            && failure.reason.needs_fresh_instance()
        {
            self.instance = None;
        }
        result
    }

    /// Hands `batch` to the plugin, commits or discards its key-value writes, and counts it.
    pub(crate) fn call(&mut self, batch: &Batch, summary: &mut RunSummary) -> CallReport {
        summary.batches += 1;
        summary.rows += batch.rows.len();
        let (result, call_time, memory_peak) = match self.instance(summary) {
            Ok(instance) => {
                let started = Instant::now();
                let result = instance.on_batch(batch);
                let call_time = started.elapsed();
                (result, call_time, instance.memory_peak())
            }
            // `instantiate` or `init` failed: the batch was never handed over.
            Err(failure) => (Err(failure), Duration::ZERO, 0),
        };
        summary.call_time += call_time;
        match result {
            Ok(returned) => {
                let (effects, pushes) = (returned.effects, returned.pushes);
                self.commit_kv();
                summary.effects += effects.len();
                summary.pushes += pushes.len();
                self.cursors
                    .insert((batch.stream.clone(), batch.instance.clone()), batch.token);
                if self
                    .instance
                    .as_ref()
                    .is_some_and(PluginInstance::has_outgrown)
                {
                    self.instance = None;
                }
                CallReport {
                    effects,
                    pushes,
                    call_time,
                    memory_peak,
                    failure: None,
                }
            }
            Err(failure) => {
                self.services.kv().discard();
                *summary
                    .failures
                    .entry(failure.reason.as_str().to_owned())
                    .or_default() += 1;
                if failure.reason.needs_fresh_instance() {
                    self.instance = None;
                }
                CallReport {
                    effects: Vec::new(),
                    pushes: Vec::new(),
                    call_time,
                    memory_peak,
                    failure: Some(failure),
                }
            }
        }
    }
}
