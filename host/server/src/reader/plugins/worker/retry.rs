//! The failure policy of `on-batch`: a failed call is reported (with the batch kept as a file
//! for `streamhost plugin run`), then retried after a wait, on a fresh instance when the
//! failure needs one; `skip` makes a dead letter; after `retries` further failures the plugin
//! is quarantined (`docs/plugins.md`, "Failures").

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use streamhost_plugin_runtime::{Batch as WasmBatch, Effect, Failure, FailureReason};
use streamhost_proto::{RowJson, ServerCommand, Token};

use super::super::notifications::Source;
use super::super::observe::AppliedBatch;
use super::super::slot::{FailureReport, PluginRunState};
use super::super::store::DeadLetter;
use super::{Group, Halt, Worker};
use crate::backoff::Backoff;
use crate::clock::unix_ms;
use crate::reader::push::outbox::Staged;

/// Doublings of the wait between attempts at most: the longest is 1,024 × `retry_backoff_ms`.
const MAX_DOUBLINGS: u32 = 10;

/// The waits between attempts of one batch: windows from `first` (`retry_backoff_ms`)
/// doubling up to 1,024 × `first`, each wait drawn from `[first, window]`. A retry never comes
/// sooner than `retry_backoff_ms`, nor later than the doubled wait.
fn retry_waits(first: Duration) -> Backoff {
    Backoff::new(first, first.saturating_mul(1 << MAX_DOUBLINGS)).with_floor(first)
}

impl Worker {
    /// Calls `on-batch` under the failure policy.
    pub(super) fn call_batch(&mut self, batch: &WasmBatch, group: &mut Group) -> Result<(), Halt> {
        let mut attempt = 0u32;
        let mut batch_file = None;
        let mut waits = retry_waits(self.ctx.backoff);
        loop {
            attempt += 1;
            let log_mark = self.services.log().kept();
            let started = Instant::now();
            let result = match self.ensure_instance() {
                Ok(instance) => instance.on_batch(batch),
                Err(failure) => Err(failure),
            };
            let duration = started.elapsed();
            self.batch_duration.observe(duration.as_secs_f64());
            let failure = match result {
                Ok(returned) => {
                    self.services.kv().stage();
                    self.observe_batch(batch, &returned.effects, log_mark);
                    if !returned.effects.is_empty() {
                        let source = Source {
                            stream: Arc::from(batch.stream.as_str()),
                            token: batch.token,
                        };
                        group.sources.push((returned.effects.len(), source));
                    }
                    group.effects.extend(returned.effects);
                    group
                        .pushes
                        .extend(returned.pushes.into_iter().map(|push| Staged {
                            push,
                            stream: batch.stream.clone(),
                            token: batch.token,
                        }));
                    group.charge.absorb(returned.charge);
                    group.batches += 1;
                    group.rows += batch.rows.len() as u64;
                    return Ok(());
                }
                Err(failure) => failure,
            };
            self.services.kv().discard();
            if failure.reason.needs_fresh_instance() {
                self.instance = None;
            }
            if batch_file.is_none() && failure.reason != FailureReason::PluginSkip {
                batch_file = self.write_batch_file(batch);
            }
            self.report(
                "on-batch",
                Some(batch),
                (attempt, duration),
                &failure,
                batch_file.clone(),
            );
            self.ctx
                .metrics
                .failures
                .with(&[self.slot.name(), failure.reason.as_str()])
                .inc();
            if failure.reason == FailureReason::PluginSkip {
                group.dead.push(DeadLetter {
                    stream: batch.stream.clone(),
                    instance: batch.instance.clone(),
                    from_token: batch.prev_token,
                    to_token: batch.token,
                    reason: failure.message.clone(),
                    at_ms: unix_ms() as i64,
                });
                group.dirty = true;
                return Ok(());
            }
            if attempt > self.ctx.retries {
                // Commit what succeeded before this batch, then stop here.
                self.flush(group);
                let reason = format!(
                    "{} after {attempt} attempts on {} {} ({}, {}]: {}",
                    failure.reason.as_str(),
                    batch.stream,
                    batch.instance,
                    batch.prev_token,
                    batch.token,
                    failure.message
                );
                tracing::error!(plugin = %self.slot.name(), %reason, "plugin quarantined");
                self.quarantine(reason);
                return Err(Halt::Quarantined);
            }
            self.wait(waits.next_delay())?;
        }
    }

    /// Stops applying until a resume or a reload; the reader and other plugins go on. The
    /// same for a quarantine the failures caused and one the operator asked for.
    pub(super) fn quarantine(&mut self, reason: String) {
        self.quarantined = true;
        self.quarantined_gauge.set(1);
        self.instance = None;
        self.slot.status().state = PluginRunState::Quarantined(reason);
        self.ctx.metrics.quarantines.with(&[self.slot.name()]).inc();
    }

    /// Reports a failed call: a warning, and the plugin's status (its last reports).
    pub(super) fn report(
        &self,
        call: &str,
        batch: Option<&WasmBatch>,
        (attempt, duration): (u32, Duration),
        failure: &Failure,
        batch_file: Option<PathBuf>,
    ) {
        let report = FailureReport {
            at_ms: unix_ms(),
            plugin: self.slot.name().to_string(),
            version: self.version.sha256().to_string(),
            call: call.to_string(),
            stream: batch.map(|b| b.stream.clone()),
            instance: batch.map(|b| b.instance.clone()),
            tokens: batch.map(|b| (b.prev_token, b.token)),
            attempt,
            duration_us: duration.as_micros() as u64,
            failure: failure.clone(),
            log_lines: self.services.log().recent(),
            batch_file,
        };
        tracing::warn!(
            plugin = %report.plugin,
            version = %report.version,
            call,
            reason = failure.reason.as_str(),
            tokens = ?report.tokens,
            attempt,
            message = %failure.message,
            backtrace = failure.backtrace.as_deref().unwrap_or(""),
            "plugin call failed"
        );
        if let Some(observer) = self.ctx.observer.get() {
            observer.call_failed(&report);
        }
        self.slot.status().report(report);
    }

    /// Tells the observer, if any, that `batch` returned `effects`, with the log lines the
    /// call wrote (those kept after `log_mark`).
    fn observe_batch(&self, batch: &WasmBatch, effects: &[Effect], log_mark: u64) {
        let Some(observer) = self.ctx.observer.get() else {
            return;
        };
        observer.batch_applied(&AppliedBatch {
            plugin: self.slot.name(),
            version: self.version.sha256(),
            stream: &batch.stream,
            instance: &batch.instance,
            tokens: (batch.prev_token, batch.token),
            rows: batch.rows.len(),
            effects,
            log_lines: self.services.log().since(log_mark),
        });
    }

    /// Writes `batch` as RDATA lines for `streamhost plugin run --input`; returns the path.
    fn write_batch_file(&self, batch: &WasmBatch) -> Option<PathBuf> {
        let mut out = Vec::new();
        for (n, row) in batch.rows.iter().enumerate() {
            // Rows sharing a token go out as Synapse sends them: `batch` until the last.
            let more_of_this_token = batch.rows.get(n + 1).is_some_and(|r| r.token == row.token);
            let command = ServerCommand::Rdata(streamhost_proto::Rdata {
                stream: streamhost_proto::StreamName::new(&batch.stream).ok()?,
                instance: streamhost_proto::InstanceName::new(&batch.instance).ok()?,
                token: (!more_of_this_token).then_some(Token(row.token)),
                row: RowJson::parse(row.data.as_bytes()).ok()?,
            });
            command.encode(&mut out).ok()?;
        }
        let (from, to) = (batch.prev_token.to_string(), batch.token.to_string());
        let parts = [self.slot.name(), &batch.stream, &batch.instance, &from, &to];
        let written = self.ctx.failures.write(&parts, &out);
        match written {
            Ok(path) => Some(path),
            Err(error) => {
                tracing::warn!(plugin = %self.slot.name(), stream = %batch.stream, %error, "could not keep the failing batch");
                None
            }
        }
    }
}
