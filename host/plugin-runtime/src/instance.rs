//! [`PluginInstance`]: one instantiated plugin in its own `Store`, and its calls, each under
//! its CPU deadline and its host memory budget, with failures classified by the limit that
//! stopped them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::InstancePre;
use wasmtime::{Store, StoreContextMut, Trap, UpdateDeadline, WasmBacktrace};

use crate::bindings::authorizer::Access;
use crate::bindings::fields::FieldValue;
use crate::bindings::types::{Batch, Cursor, Description, Effect, ErrorKind, PluginError, Row};
use crate::bindings::{
    authorizer, authorizer_v2, authorizer_v3, handler_v1, handler_v2, handler_v3, handler_v4,
};
use crate::budget::Charge;
use crate::effects;
use crate::error::{Failure, FailureReason};
use crate::limits::{EPOCH_TICK, LimitHit};
use crate::packed::pack;
use crate::push::Push;
use crate::row_fields::{Extracted, FieldPaths};
use crate::state::PluginState;
use crate::version::ExportIndices;

/// Part of wasmtime's message when a call passed the host more than its hostcall fuel allowed
/// (the error type is private to wasmtime): such a call failed for want of host memory.
const HOSTCALL_FUEL_EXHAUSTED: &str = "fuel allocated for hostcalls has been exhausted";

/// What a successful `on-batch` returned: its effects and pushes, and the host memory they
/// hold until they are applied (drop the charge then).
#[derive(Debug)]
pub struct BatchEffects {
    /// The effects, checked against the grant and the effect limits.
    pub effects: Vec<Effect>,
    /// The pushes made through the `push` import during the call, in call order, each checked
    /// against the grant; the reader writes them to its outbox with the cursor.
    pub pushes: Vec<Push>,
    /// Their bytes, held against the plugin's host memory budget.
    pub charge: Charge,
}

/// An instance's exports, by the `streamhost:plugin` version it was built against.
enum Exports {
    V1(handler_v1::Guest),
    V2(handler_v2::Guest, Option<authorizer_v2::Guest>),
    V3(handler_v3::Guest, Option<authorizer_v3::Guest>),
    V4(handler_v4::Guest, Option<authorizer::Guest>),
}

/// Calls `$call` with `$h` bound to the `handler` export of `$exports`, whatever its version
/// (they are different types with the same methods).
macro_rules! handler {
    ($exports:expr, |$h:ident| $call:expr) => {
        match $exports {
            Exports::V1($h) => $call,
            Exports::V2($h, _) => $call,
            Exports::V3($h, _) => $call,
            Exports::V4($h, _) => $call,
        }
    };
}

/// An instance and its store. After a failure that [`FailureReason::needs_fresh_instance`],
/// drop it and instantiate again.
pub struct PluginInstance {
    store: Store<PluginState>,
    exports: Exports,
    /// The row fields extracted for `on-batch` (from 0.3.0).
    fields: Arc<FieldPaths>,
    /// Whether calls are held to the host memory budget (always, except to measure its cost).
    accounting: bool,
    /// The memory it held when `init` or `restore` last returned: its size at rest.
    memory_at_rest: usize,
}

impl PluginInstance {
    pub(crate) fn new(
        mut store: Store<PluginState>,
        pre: &InstancePre<PluginState>,
        indices: &ExportIndices,
        fields: Arc<FieldPaths>,
    ) -> Result<PluginInstance, Failure> {
        let init_deadline = Duration::from_millis(store.data().caps.limits.init_deadline_ms);
        set_deadline(&mut store, init_deadline);
        let exports = pre.instantiate(&mut store).and_then(|instance| {
            Ok(match indices {
                ExportIndices::V1(handler) => Exports::V1(handler.load(&mut store, &instance)?),
                ExportIndices::V2 {
                    handler,
                    authorizer,
                } => Exports::V2(
                    handler.load(&mut store, &instance)?,
                    authorizer
                        .as_ref()
                        .map(|a| a.load(&mut store, &instance))
                        .transpose()?,
                ),
                ExportIndices::V3 {
                    handler,
                    authorizer,
                } => Exports::V3(
                    handler.load(&mut store, &instance)?,
                    authorizer
                        .as_ref()
                        .map(|a| a.load(&mut store, &instance))
                        .transpose()?,
                ),
                ExportIndices::V4 {
                    handler,
                    authorizer,
                } => Exports::V4(
                    handler.load(&mut store, &instance)?,
                    authorizer
                        .as_ref()
                        .map(|a| a.load(&mut store, &instance))
                        .transpose()?,
                ),
            })
        });
        match exports {
            Ok(exports) => Ok(PluginInstance {
                store,
                exports,
                fields,
                accounting: true,
                memory_at_rest: 0,
            }),
            Err(error) => Err(classify(&store, error)),
        }
    }

    fn call<T>(
        &mut self,
        deadline: Duration,
        f: impl FnOnce(&Exports, &mut Store<PluginState>) -> wasmtime::Result<T>,
    ) -> Result<T, Failure> {
        set_deadline(&mut self.store, deadline);
        let state = self.store.data_mut();
        state.limiter.clear_hit();
        state.kv_quota_hit = false;
        state.host_memory_hit = false;
        // Outbound HTTP only in on-batch, which allows it inside its closure.
        let deadline_at = state.deadline;
        if let Some((_, hooks)) = state.http.as_mut() {
            hooks.begin_call(deadline_at, false);
        }
        // Whatever the call passes the host (its return value, each import's arguments) is
        // copied only while it fits what is left of the budget.
        let fuel = match self.accounting {
            true => state
                .services
                .budget()
                .available(state.caps.limits.host_memory_bytes()),
            false => usize::MAX,
        };
        self.store.set_hostcall_fuel(fuel);
        f(&self.exports, &mut self.store).map_err(|error| classify(&self.store, error))
    }

    /// `describe`.
    pub fn describe(&mut self) -> Result<Description, Failure> {
        let deadline = self.limit(|l| l.init_deadline_ms);
        self.call(deadline, |b, s| handler!(b, |h| h.call_describe(s)))
    }

    /// `wanted-fields` (0.3.0); earlier components want none.
    pub fn wanted_fields(&mut self) -> Result<Vec<String>, Failure> {
        let deadline = self.limit(|l| l.init_deadline_ms);
        self.call(deadline, |b, s| match b {
            Exports::V3(h, _) => h.call_wanted_fields(s),
            Exports::V4(h, _) => h.call_wanted_fields(s),
            Exports::V1(_) | Exports::V2(..) => Ok(Vec::new()),
        })
    }

    /// `init` with the plugin's configuration and cursors.
    pub fn init(&mut self, resume_after: &[Cursor]) -> Result<(), Failure> {
        let deadline = self.limit(|l| l.init_deadline_ms);
        let config = self.store.data().caps.config_json.clone();
        let result = self.call(deadline, |b, s| {
            handler!(b, |h| h.call_init(s, &config, resume_after))
        })?;
        result.map_err(|e| self.plugin_failure(e))?;
        self.memory_at_rest = self.memory_peak();
        Ok(())
    }

    /// `restore` from a previous version's snapshot.
    pub fn restore(&mut self, state: &[u8], resume_after: &[Cursor]) -> Result<(), Failure> {
        let deadline = self.limit(|l| l.init_deadline_ms);
        let config = self.store.data().caps.config_json.clone();
        let result = self.call(deadline, |b, s| {
            handler!(b, |h| h.call_restore(s, &config, state, resume_after))
        })?;
        result.map_err(|e| self.plugin_failure(e))?;
        self.memory_at_rest = self.memory_peak();
        Ok(())
    }

    /// `snapshot`.
    pub fn snapshot(&mut self) -> Result<Vec<u8>, Failure> {
        let deadline = self.limit(|l| l.init_deadline_ms);
        let result = self.call(deadline, |b, s| handler!(b, |h| h.call_snapshot(s)))?;
        result.map_err(|e| self.plugin_failure(e))
    }

    /// `on-batch`, its effects and pushes checked against the grant and the effect limits
    /// (together) and charged to the host memory budget. A plugin from 0.3.0 on is handed the
    /// fields it wanted, extracted from every row; from 0.4.0 on, batch and fields packed
    /// (`packed`). The key-value writes it made stay pending in the
    /// plugin's store: the caller commits or discards them. The pushes of a call that fails
    /// are dropped.
    pub fn on_batch(&mut self, batch: &Batch) -> Result<BatchEffects, Failure> {
        let deadline = self
            .store
            .data()
            .caps
            .limits
            .batch_deadline(batch.rows.len());
        let (fields, _fields_charge) = match self.exports {
            Exports::V3(..) | Exports::V4(..) => self.extract_fields(&batch.rows)?,
            Exports::V1(_) | Exports::V2(..) => (Vec::new(), Charge::default()),
        };
        // 0.4.0 gets the values copied once into its packed batch; 0.3.0 a `field-value` each.
        let packed = match self.exports {
            Exports::V4(..) => Some(pack(batch, &fields).map_err(|message| {
                Failure::new(FailureReason::Limit(LimitHit::HostMemory), message)
            })?),
            _ => None,
        };
        let field_values: Vec<FieldValue> = match self.exports {
            Exports::V3(..) => fields.iter().map(Extracted::to_field_value).collect(),
            _ => Vec::new(),
        };
        self.store.data_mut().pushes.open();
        let result = self.call(deadline, |b, s| {
            if let Some((_, hooks)) = s.data_mut().http.as_mut() {
                hooks.allow();
            }
            match (b, &packed) {
                (Exports::V1(h), _) => h.call_on_batch(s, batch),
                (Exports::V2(h, _), _) => h.call_on_batch(s, batch),
                (Exports::V3(h, _), _) => h.call_on_batch(s, batch, &field_values),
                (Exports::V4(h, _), Some(packed)) => h.call_on_batch(s, packed),
                (Exports::V4(..), None) => Err(wasmtime::Error::msg("the batch was not packed")),
            }
        });
        let (pushes, push_charge) = self.store.data_mut().pushes.close();
        let effects = result?.map_err(|e| self.plugin_failure(e))?;
        effects::validate(&effects, &pushes, &self.store.data().caps)?;
        let charge = match self.accounting {
            true => {
                let mut charge = self
                    .store
                    .data()
                    .services
                    .budget()
                    .charge(effects::held_bytes(&effects));
                charge.absorb(push_charge);
                charge
            }
            false => Charge::default(),
        };
        Ok(BatchEffects {
            effects,
            pushes,
            charge,
        })
    }

    /// The row fields of `rows`, held against the plugin's host memory budget until the call
    /// returns; a failure (`host-memory`) when they would not fit what is left of it.
    fn extract_fields<'row>(
        &self,
        rows: &'row [Row],
    ) -> Result<(Vec<Extracted<'row>>, Charge), Failure> {
        let state = self.store.data();
        let budget = state.services.budget();
        let limit = state.caps.limits.host_memory_bytes();
        let room = match self.accounting {
            true => budget.available(limit),
            false => usize::MAX,
        };
        match self.fields.extract(rows, room) {
            Ok((values, bytes)) => {
                let charge = match self.accounting {
                    true => budget.charge(bytes),
                    false => Charge::default(),
                };
                Ok((values, charge))
            }
            Err(bytes) => Err(Failure::new(
                FailureReason::Limit(LimitHit::HostMemory),
                format!(
                    "the row fields wanted-fields names reached {bytes} bytes in this batch, \
                     more than the {room} bytes left of the host memory budget of {limit} \
                     bytes (limits.host_memory_mib = {})",
                    state.caps.limits.host_memory_mib
                ),
            )),
        }
    }

    /// Turns the host memory accounting off (`false`) or back on. Off, nothing holds the
    /// plugin to `host_memory_mib`: only for measuring what the accounting costs
    /// (`streamhost bench plugins`).
    pub fn set_host_accounting(&mut self, on: bool) {
        self.accounting = on;
    }

    /// `query`.
    pub fn query(&mut self, name: &str, args: &[(String, String)]) -> Result<String, Failure> {
        let deadline = self.limit(|l| l.query_deadline_ms);
        let result = self.call(deadline, |b, s| {
            handler!(b, |h| h.call_query(s, name, args))
        })?;
        result.map_err(|e| self.plugin_failure(e))
    }

    /// `authorize` (the `authorizer` export, since 0.2.0), under `deadline` or the plugin's
    /// query deadline, whichever is shorter. A plugin without the export fails the call.
    pub fn authorize(
        &mut self,
        subject: &str,
        access: &Access,
        deadline: Duration,
    ) -> Result<bool, Failure> {
        if !matches!(
            self.exports,
            Exports::V2(_, Some(_)) | Exports::V3(_, Some(_)) | Exports::V4(_, Some(_))
        ) {
            return Err(Failure::new(
                FailureReason::Trap,
                "the plugin exports no streamhost:plugin/authorizer",
            ));
        }
        let deadline = deadline.min(self.limit(|l| l.query_deadline_ms));
        let result = self.call(deadline, |b, s| match b {
            Exports::V4(_, Some(a)) => a.call_authorize(s, subject, access),
            Exports::V3(_, Some(a)) => a.call_authorize(s, subject, &access_v3(access)),
            Exports::V2(_, Some(a)) => a.call_authorize(s, subject, &access_v2(access)),
            _ => Err(wasmtime::Error::msg("no authorizer export")),
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

    /// Whether the instance has grown by three quarters of the room its memory budget left it
    /// at rest (after `init` or `restore`). WebAssembly memory never shrinks, so a guest that
    /// keeps what it should free (componentize-py 0.25.1 keeps every value `kv.set` hands over)
    /// only ever grows: the host replaces such an instance between batches, as it would after
    /// a failure, before a call fails at the budget.
    pub fn has_outgrown(&self) -> bool {
        let budget = self.store.data().caps.limits.memory_bytes();
        let room = budget.saturating_sub(self.memory_at_rest);
        self.memory_peak().saturating_sub(self.memory_at_rest) >= room / 4 * 3
    }

    /// Whether the key-value quota refused a write during the last call.
    pub fn kv_quota_hit(&self) -> bool {
        self.store.data().kv_quota_hit
    }

    fn limit(&self, f: impl FnOnce(&crate::Limits) -> u64) -> Duration {
        Duration::from_millis(f(&self.store.data().caps.limits))
    }
}

/// Sets the store's deadline to `deadline` from now: the epoch check fires after about that
/// many ticks, and [`epoch_reached`] traps only once the clock has really passed it.
fn set_deadline(store: &mut Store<PluginState>, deadline: Duration) {
    store.data_mut().deadline = Instant::now() + deadline;
    store.set_epoch_deadline(ticks_for(deadline));
}

/// Whole epoch ticks covering `time`, plus one (a tick may be about to fire).
fn ticks_for(time: Duration) -> u64 {
    time.as_micros().div_ceil(EPOCH_TICK.as_micros()) as u64 + 1
}

/// Called by wasmtime when the epoch deadline is reached. The ticker may catch up several
/// ticks at once after a late wake-up, so the epoch can run ahead of the clock: the call is
/// only stopped once its deadline has really passed, and otherwise goes on for the rest.
pub(crate) fn epoch_reached(
    store: StoreContextMut<'_, PluginState>,
) -> wasmtime::Result<UpdateDeadline> {
    Ok(match ticks_left(store.data().deadline, Instant::now()) {
        Some(ticks) => UpdateDeadline::Continue(ticks),
        None => UpdateDeadline::Interrupt,
    })
}

/// The epoch ticks to wait for before checking again, or `None` once `deadline` has passed.
fn ticks_left(deadline: Instant, now: Instant) -> Option<u64> {
    let left = deadline.saturating_duration_since(now);
    (!left.is_zero()).then(|| ticks_for(left))
}

/// Names what stopped a call that returned a wasmtime error.
fn classify(store: &Store<PluginState>, error: wasmtime::Error) -> Failure {
    let state = store.data();
    let reason = if state.limiter.was_hit() {
        FailureReason::Limit(LimitHit::Memory)
    } else if state.host_memory_hit || is_hostcall_fuel_exhausted(&error) {
        FailureReason::Limit(LimitHit::HostMemory)
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
        None if is_hostcall_fuel_exhausted(&error) => format!(
            "the call passed the host more than the {} bytes left of its host memory budget \
             (limits.host_memory_mib = {})",
            store.hostcall_fuel(),
            state.caps.limits.host_memory_mib
        ),
        None => error.root_cause().to_string(),
    };
    Failure {
        reason,
        message,
        backtrace,
        stderr: state.stderr_text(),
    }
}

/// Whether `error` is wasmtime refusing to copy more than the call's hostcall fuel.
fn is_hostcall_fuel_exhausted(error: &wasmtime::Error) -> bool {
    error
        .chain()
        .any(|cause| cause.to_string().contains(HOSTCALL_FUEL_EXHAUSTED))
}

/// `access` as an earlier version's `authorizer` export takes it (the same shape, each
/// version its own type).
macro_rules! access_of {
    ($name:ident, $version:ident, $label:literal) => {
        #[doc = concat!("`access` as ", $label, "'s `authorizer` export takes it.")]
        fn $name(access: &Access) -> $version::Access {
            match access {
                Access::Query(query) => $version::Access::Query($version::QueryAccess {
                    plugin: query.plugin.clone(),
                    name: query.name.clone(),
                    args: query.args.clone(),
                }),
                Access::Subscribe(topic) => $version::Access::Subscribe(topic.clone()),
            }
        }
    };
}

access_of!(access_v2, authorizer_v2, "0.2.0");
access_of!(access_v3, authorizer_v3, "0.3.0");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_epoch_ahead_of_the_clock_never_ends_a_call_early() {
        let now = Instant::now();
        let deadline = now + Duration::from_millis(5);
        // Reached early (the ticker caught up in a burst): wait about the time really left.
        assert_eq!(ticks_left(deadline, now), Some(6));
        assert_eq!(
            ticks_left(deadline, now + Duration::from_micros(4_500)),
            Some(2)
        );
        // Reached at or after the deadline: stop.
        assert_eq!(ticks_left(deadline, deadline), None);
        assert_eq!(
            ticks_left(deadline, deadline + Duration::from_millis(1)),
            None
        );
    }
}
