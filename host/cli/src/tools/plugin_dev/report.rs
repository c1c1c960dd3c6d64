//! What `plugin dev` prints as it happens: each build and reload, each batch the plugin
//! applied (its effects and log lines) and each failure (its message, with the file and line
//! when the plugin's error report has them), as text or one JSON object per line.

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use streamhost_plugin_runtime::{Effect, Invalidation, Notification};
use streamhost_server::reader::plugins::{AppliedBatch, FailureReport, PluginObserver};
use tokio::sync::mpsc::UnboundedSender;

/// Prints events to stdout, one line each (text, or JSON with `--json`).
pub(super) struct Printer {
    json: bool,
    /// Told when a batch applies, for `--measure-reload`.
    applied: Mutex<Option<UnboundedSender<(String, Instant)>>>,
}

impl Printer {
    pub(super) fn new(json: bool) -> Printer {
        Printer {
            json,
            applied: Mutex::new(None),
        }
    }

    /// Sends (version, when) of every applied batch to `tx` from now on.
    pub(super) fn send_applied(&self, tx: UnboundedSender<(String, Instant)>) {
        *self.applied.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
    }

    /// Prints `text`, or `value` as one JSON line.
    pub(super) fn emit(&self, text: String, value: Value) {
        let mut out = std::io::stdout().lock();
        let _ = match self.json {
            true => writeln!(out, "{value}"),
            false => writeln!(out, "{text}"),
        };
        let _ = out.flush();
    }

    /// A finished build.
    pub(super) fn build_ok(&self, built: &super::source::Built, took: Duration) {
        self.emit(
            format!(
                "build ok: {} ({}) {} bytes sha256 {} in {}",
                built.name,
                built.from,
                built.size,
                short(&built.sha256),
                seconds(took)
            ),
            json!({"event": "build", "ok": true, "plugin": built.name, "from": built.from,
                   "size": built.size, "sha256": built.sha256, "ms": took.as_millis() as u64}),
        );
        for warning in &built.warnings {
            self.emit(
                format!("build warning: {warning}"),
                json!({"event": "build-warning", "message": warning}),
            );
        }
    }

    /// A failed build: the old version keeps running.
    pub(super) fn build_failed(&self, error: &anyhow::Error, took: Duration) {
        let message = format!("{error:#}");
        self.emit(
            format!(
                "build FAILED in {} (the running version stays):\n{message}",
                seconds(took)
            ),
            json!({"event": "build", "ok": false, "error": message, "ms": took.as_millis() as u64}),
        );
    }

    /// A reload's result.
    pub(super) fn reloaded(&self, plugin: &str, result: &Result<String, String>, took: Duration) {
        let (text, value) = match result {
            Ok(sha) => (
                format!(
                    "reload ok: {plugin} now runs {} ({})",
                    short(sha),
                    seconds(took)
                ),
                json!({"event": "reload", "ok": true, "plugin": plugin, "sha256": sha, "ms": took.as_millis() as u64}),
            ),
            Err(error) => (
                format!("reload FAILED: {plugin}: {error} (the running version stays)"),
                json!({"event": "reload", "ok": false, "plugin": plugin, "error": error}),
            ),
        };
        self.emit(text, value);
    }
}

impl PluginObserver for Printer {
    fn batch_applied(&self, batch: &AppliedBatch<'_>) {
        if let Some(tx) = &*self.applied.lock().unwrap_or_else(|p| p.into_inner()) {
            let _ = tx.send((batch.version.to_string(), Instant::now()));
        }
        let (from, to) = batch.tokens;
        let mut text = format!(
            "batch {}@{} {} ({from}, {to}] {} row{}: {} effect{}",
            batch.plugin,
            short(batch.version),
            batch.stream,
            batch.rows,
            plural(batch.rows),
            batch.effects.len(),
            plural(batch.effects.len())
        );
        for effect in batch.effects {
            text.push_str(&format!("\n  {}", effect_text(effect)));
        }
        for line in &batch.log_lines {
            text.push_str(&format!("\n  log: {line}"));
        }
        self.emit(
            text,
            json!({"event": "batch", "plugin": batch.plugin, "version": batch.version,
                   "stream": batch.stream, "instance": batch.instance, "prev_token": from,
                   "token": to, "rows": batch.rows,
                   "effects": batch.effects.iter().map(effect_json).collect::<Vec<_>>(),
                   "log": batch.log_lines}),
        );
    }

    fn call_failed(&self, report: &FailureReport) {
        let failure = &report.failure;
        let mut text = format!(
            "FAILED {}@{} {}{} attempt {}: {}: {}",
            report.plugin,
            short(&report.version),
            report.call,
            report
                .tokens
                .map(|(a, b)| format!(" {} ({a}, {b}]", report.stream.as_deref().unwrap_or("")))
                .unwrap_or_default(),
            report.attempt,
            failure.reason.as_str(),
            failure.message
        );
        if let Some(backtrace) = failure.backtrace.as_deref().filter(|b| !b.is_empty()) {
            for line in backtrace.lines() {
                text.push_str(&format!("\n  | {line}"));
            }
        }
        for line in &report.log_lines {
            text.push_str(&format!("\n  log: {line}"));
        }
        self.emit(
            text,
            json!({"event": "failure", "plugin": report.plugin, "version": report.version,
                   "call": report.call, "stream": report.stream, "tokens": report.tokens,
                   "attempt": report.attempt, "reason": failure.reason.as_str(),
                   "message": failure.message, "backtrace": failure.backtrace,
                   "log": report.log_lines}),
        );
    }
}

fn effect_text(effect: &Effect) -> String {
    match effect {
        Effect::Invalidate(Invalidation { cache, key }) => format!("invalidate {cache} {key}"),
        Effect::InvalidateAll(cache) => format!("invalidate-all {cache}"),
        Effect::Notify(Notification { topic, payload }) => format!("notify {topic} {payload}"),
    }
}

fn effect_json(effect: &Effect) -> Value {
    match effect {
        Effect::Invalidate(Invalidation { cache, key }) => {
            json!({"invalidate": {"cache": cache, "key": key}})
        }
        Effect::InvalidateAll(cache) => json!({"invalidate-all": cache}),
        Effect::Notify(Notification { topic, payload }) => {
            json!({"notify": {"topic": topic, "payload": payload}})
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The first 12 hex digits of a sha256.
pub(super) fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

fn seconds(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}
