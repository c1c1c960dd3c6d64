//! [`PluginInstance`]: one instantiated plugin in its own `Store`, and its calls, each under
//! its CPU deadline, with failures classified by the limit that stopped them.

use std::time::Duration;

use wasmtime::{Store, Trap, WasmBacktrace};

use crate::bindings::types::{Batch, Cursor, Description, Effect, ErrorKind, PluginError};
use crate::bindings::{Reader, ReaderPre};
use crate::effects;
use crate::error::{Failure, FailureReason};
use crate::limits::{EPOCH_TICK, LimitHit};
use crate::state::PluginState;

/// An instance and its store. After a failure that [`FailureReason::needs_fresh_instance`],
/// drop it and instantiate again.
pub struct PluginInstance {
    store: Store<PluginState>,
    bindings: Reader,
}

impl PluginInstance {
    pub(crate) fn new(
        mut store: Store<PluginState>,
        pre: &ReaderPre<PluginState>,
    ) -> Result<PluginInstance, Failure> {
        let init_deadline = Duration::from_millis(store.data().caps.limits.init_deadline_ms);
        set_deadline(&mut store, init_deadline);
        match pre.instantiate(&mut store) {
            Ok(bindings) => Ok(PluginInstance { store, bindings }),
            Err(error) => Err(classify(&store, error)),
        }
    }

    fn call<T>(
        &mut self,
        deadline: Duration,
        f: impl FnOnce(&Reader, &mut Store<PluginState>) -> wasmtime::Result<T>,
    ) -> Result<T, Failure> {
        set_deadline(&mut self.store, deadline);
        self.store.data_mut().limiter.clear_hit();
        self.store.data_mut().kv_quota_hit = false;
        f(&self.bindings, &mut self.store).map_err(|error| classify(&self.store, error))
    }

    /// `describe`.
    pub fn describe(&mut self) -> Result<Description, Failure> {
        let deadline = self.limit(|l| l.init_deadline_ms);
        self.call(deadline, |b, s| {
            b.streamhost_plugin_handler().call_describe(s)
        })
    }

    /// `init` with the plugin's configuration and cursors.
    pub fn init(&mut self, resume_after: &[Cursor]) -> Result<(), Failure> {
        let deadline = self.limit(|l| l.init_deadline_ms);
        let config = self.store.data().caps.config_json.clone();
        let result = self.call(deadline, |b, s| {
            b.streamhost_plugin_handler()
                .call_init(s, &config, resume_after)
        })?;
        result.map_err(|e| self.plugin_failure(e))
    }

    /// `restore` from a previous version's snapshot.
    pub fn restore(&mut self, state: &[u8], resume_after: &[Cursor]) -> Result<(), Failure> {
        let deadline = self.limit(|l| l.init_deadline_ms);
        let config = self.store.data().caps.config_json.clone();
        let result = self.call(deadline, |b, s| {
            b.streamhost_plugin_handler()
                .call_restore(s, &config, state, resume_after)
        })?;
        result.map_err(|e| self.plugin_failure(e))
    }

    /// `snapshot`.
    pub fn snapshot(&mut self) -> Result<Vec<u8>, Failure> {
        let deadline = self.limit(|l| l.init_deadline_ms);
        let result = self.call(deadline, |b, s| {
            b.streamhost_plugin_handler().call_snapshot(s)
        })?;
        result.map_err(|e| self.plugin_failure(e))
    }

    /// `on-batch`, its effects checked against the grant and the effect limits. The key-value
    /// writes it made stay pending in the plugin's store: the caller commits or discards them.
    pub fn on_batch(&mut self, batch: &Batch) -> Result<Vec<Effect>, Failure> {
        let deadline = self
            .store
            .data()
            .caps
            .limits
            .batch_deadline(batch.rows.len());
        let result = self.call(deadline, |b, s| {
            b.streamhost_plugin_handler().call_on_batch(s, batch)
        })?;
        let effects = result.map_err(|e| self.plugin_failure(e))?;
        effects::validate(&effects, &self.store.data().caps)?;
        Ok(effects)
    }

    /// `query`.
    pub fn query(&mut self, name: &str, args: &[(String, String)]) -> Result<String, Failure> {
        let deadline = self.limit(|l| l.query_deadline_ms);
        let result = self.call(deadline, |b, s| {
            b.streamhost_plugin_handler().call_query(s, name, args)
        })?;
        result.map_err(|e| self.plugin_failure(e))
    }

    /// The failure a plugin reported, with what it wrote to stderr (the Python traceback or
    /// JavaScript stack of an exception its SDK turned into an error).
    fn plugin_failure(&self, error: PluginError) -> Failure {
        let reason = match error.kind {
            ErrorKind::Retry => FailureReason::PluginRetry,
            ErrorKind::Skip => FailureReason::PluginSkip,
            ErrorKind::Fatal => FailureReason::PluginFatal,
        };
        Failure {
            stderr: self.store.data().stderr_text(),
            ..Failure::new(reason, error.message)
        }
    }

    /// The most memory (memories and tables) this instance has held.
    pub fn memory_peak(&self) -> usize {
        self.store.data().limiter.peak()
    }

    /// Whether the key-value quota refused a write during the last call.
    pub fn kv_quota_hit(&self) -> bool {
        self.store.data().kv_quota_hit
    }

    fn limit(&self, f: impl FnOnce(&crate::Limits) -> u64) -> Duration {
        Duration::from_millis(f(&self.store.data().caps.limits))
    }
}

/// Sets the store's deadline to `deadline` from now, in whole epoch ticks plus one (a tick may
/// be about to fire).
fn set_deadline(store: &mut Store<PluginState>, deadline: Duration) {
    let ticks = deadline.as_micros().div_ceil(EPOCH_TICK.as_micros()) as u64 + 1;
    store.set_epoch_deadline(ticks);
}

/// Names what stopped a call that returned a wasmtime error.
fn classify(store: &Store<PluginState>, error: wasmtime::Error) -> Failure {
    let state = store.data();
    let reason = if state.limiter.was_hit() {
        FailureReason::Limit(LimitHit::Memory)
    } else {
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => FailureReason::Limit(LimitHit::CpuDeadline),
            Some(Trap::StackOverflow) => FailureReason::Limit(LimitHit::Stack),
            _ => FailureReason::Trap,
        }
    };
    let backtrace = error
        .downcast_ref::<WasmBacktrace>()
        .map(|trace| format!("{trace}"));
    // The root cause is what stopped the call (a trap, the memory budget); the context
    // above it is the backtrace, reported separately.
    let message = match error.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => error.root_cause().to_string(),
    };
    Failure {
        reason,
        message,
        backtrace,
        stderr: state.stderr_text(),
    }
}
