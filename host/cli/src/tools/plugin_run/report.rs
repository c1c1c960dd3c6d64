//! The report of `plugin run`: the plugin loaded, one line per batch and a summary, as text
//! or as one JSON object per line.

use std::io::Write;
use std::time::Duration;

use serde_json::json;
use streamhost_plugin_runtime::{
    Batch, Effect, Failure, HttpExchange, Invalidation, Notification, PluginFiles, PluginVersion,
    Push,
};

use super::RunSummary;
use super::runner::CallReport;

/// Effects listed per batch in the text report; the rest are counted (`--json` lists all).
const TEXT_EFFECTS: usize = 8;

/// Characters of a notification payload shown in the text report.
const TEXT_PAYLOAD_CHARS: usize = 60;

pub(super) fn report_loaded(
    out: &mut dyn Write,
    version: &PluginVersion,
    files: &PluginFiles,
    json: bool,
) -> anyhow::Result<()> {
    let description = version.description();
    if json {
        let line = json!({"plugin": {
            "name": version.name(),
            "version": description.version,
            "wasm": files.wasm,
            "sha256": version.sha256(),
            "bytes": version.component_bytes(),
            "compile_ms": version.compile_time().as_secs_f64() * 1e3,
            "streams": description.streams,
        }});
        writeln!(out, "{line}")?;
    } else {
        writeln!(
            out,
            "loaded {} {} from {} ({} KiB, sha256 {}…, compiled in {}); streams: {}",
            version.name(),
            description.version,
            files.wasm.display(),
            version.component_bytes().div_ceil(1024),
            &version.sha256()[..12.min(version.sha256().len())],
            duration_text(version.compile_time()),
            description.streams.join(", ")
        )?;
    }
    Ok(())
}

/// The outbound HTTP requests of the batch just reported, one line each (`--http-fixtures`).
pub(super) fn write_http(
    out: &mut dyn Write,
    exchanges: &[HttpExchange],
    json: bool,
) -> anyhow::Result<()> {
    for exchange in exchanges {
        if json {
            let line = json!({"http": {
                "method": exchange.method,
                "url": exchange.url,
                "status": exchange.status,
                "refused": exchange.refused,
            }});
            writeln!(out, "{line}")?;
        } else {
            writeln!(out, "    http: {exchange}")?;
        }
    }
    Ok(())
}

pub(super) fn write_report(
    out: &mut dyn Write,
    batch: &Batch,
    report: &CallReport,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        let failure = report.failure.as_ref().map(|f| {
            json!({
                "reason": f.reason.as_str(),
                "message": f.message,
                "backtrace": f.backtrace,
                "stderr": f.stderr,
            })
        });
        let line = json!({
            "stream": batch.stream,
            "instance": batch.instance,
            "prev_token": batch.prev_token,
            "token": batch.token,
            "rows": batch.rows.len(),
            "effects": report.effects.iter().map(effect_json).collect::<Vec<_>>(),
            "pushes": report.pushes.iter().map(push_json).collect::<Vec<_>>(),
            "call_us": report.call_time.as_secs_f64() * 1e6,
            "memory_peak": report.memory_peak,
            "failure": failure,
        });
        writeln!(out, "{line}")?;
        return Ok(());
    }
    let outcome = match &report.failure {
        None => {
            let mut listed: Vec<String> = report
                .effects
                .iter()
                .take(TEXT_EFFECTS)
                .map(effect_text)
                .collect();
            if report.effects.len() > TEXT_EFFECTS {
                listed.push(format!("+{} more", report.effects.len() - TEXT_EFFECTS));
            }
            let mut outcome = format!("{} effects [{}]", report.effects.len(), listed.join(", "));
            if !report.pushes.is_empty() {
                let mut pushed: Vec<String> = report
                    .pushes
                    .iter()
                    .take(TEXT_EFFECTS)
                    .map(push_text)
                    .collect();
                if report.pushes.len() > TEXT_EFFECTS {
                    pushed.push(format!("+{} more", report.pushes.len() - TEXT_EFFECTS));
                }
                outcome.push_str(&format!(
                    ", {} pushes [{}]",
                    report.pushes.len(),
                    pushed.join(", ")
                ));
            }
            outcome
        }
        Some(failure) => format!(
            "FAILED {}: {}",
            failure.reason.as_str(),
            message_line(failure)
        ),
    };
    writeln!(
        out,
        "{} {} {}..{} {} rows: {}  {}  mem {:.1} MiB",
        batch.stream,
        batch.instance,
        batch.prev_token,
        batch.token,
        batch.rows.len(),
        outcome,
        duration_text(report.call_time),
        report.memory_peak as f64 / f64::from(1 << 20),
    )?;
    if let Some(failure) = &report.failure {
        for line in failure.backtrace.iter().flat_map(|trace| trace.lines()) {
            writeln!(out, "    {line}")?;
        }
        for line in failure.stderr.lines() {
            writeln!(out, "    stderr: {line}")?;
        }
    }
    Ok(())
}

pub(super) fn write_summary(
    out: &mut dyn Write,
    summary: &RunSummary,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        let line = json!({"summary": {
            "batches": summary.batches,
            "rows": summary.rows,
            "effects": summary.effects,
            "pushes": summary.pushes,
            "failures": summary.failures,
            "instances": summary.instances,
            "skipped_rows": summary.skipped_rows,
            "unfinished_rows": summary.unfinished_rows,
            "call_ms": summary.call_time.as_secs_f64() * 1e3,
            "total_ms": summary.total_time.as_secs_f64() * 1e3,
            "interrupted": summary.interrupted,
        }});
        writeln!(out, "{line}")?;
        return Ok(());
    }
    let failed: usize = summary.failures.values().sum();
    let reasons: Vec<String> = summary
        .failures
        .iter()
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect();
    let failures = if reasons.is_empty() {
        "0 failures".to_owned()
    } else {
        format!("{failed} failures ({})", reasons.join(", "))
    };
    writeln!(
        out,
        "summary: {} batches, {} rows, {} effects, {} pushes, {failures}, {} instances; {} rows of other streams, {} rows in unfinished runs; calls {}, total {}{}",
        summary.batches,
        summary.rows,
        summary.effects,
        summary.pushes,
        summary.instances,
        summary.skipped_rows,
        summary.unfinished_rows,
        duration_text(summary.call_time),
        duration_text(summary.total_time),
        if summary.interrupted {
            " (interrupted)"
        } else {
            ""
        },
    )?;
    Ok(())
}

/// A failure's message on one line, without the backtrace wasmtime may have prefixed to it
/// (the text report prints the backtrace below).
pub(crate) fn message_line(failure: &Failure) -> String {
    let mut message = failure.message.as_str();
    if let Some(rest) = failure
        .backtrace
        .as_deref()
        .and_then(|trace| message.strip_prefix(trace))
    {
        message = rest.trim_start_matches(':').trim_start();
    }
    message
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" / ")
}

fn effect_json(effect: &Effect) -> serde_json::Value {
    match effect {
        Effect::Invalidate(Invalidation { cache, key }) => {
            json!({"invalidate": {"cache": cache, "key": key}})
        }
        Effect::InvalidateAll(cache) => json!({ "invalidate-all": cache }),
        Effect::Notify(Notification { topic, payload }) => {
            json!({"notify": {"topic": topic, "payload": payload}})
        }
    }
}

/// An effect on one line, whole: `invalidate <cache> <key>`, `invalidate-all <cache>`,
/// `notify <topic> <payload>`.
pub(crate) fn effect_line(effect: &Effect) -> String {
    match effect {
        Effect::Invalidate(Invalidation { cache, key }) => format!("invalidate {cache} {key}"),
        Effect::InvalidateAll(cache) => format!("invalidate-all {cache}"),
        Effect::Notify(Notification { topic, payload }) => format!("notify {topic} {payload}"),
    }
}

/// A push on one line, whole: `push <destination> <key> <body>`, the body as text when it is
/// UTF-8, else `hex:<bytes in hex>`.
pub(crate) fn push_line(push: &Push) -> String {
    let body = match std::str::from_utf8(&push.body) {
        Ok(text) => text.to_owned(),
        Err(_) => format!("hex:{}", hex_of(&push.body)),
    };
    format!("push {} {} {body}", push.destination, push.key)
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn effect_text(effect: &Effect) -> String {
    match effect {
        Effect::Invalidate(Invalidation { cache, key }) => format!("invalidate {cache} {key}"),
        Effect::InvalidateAll(cache) => format!("invalidate-all {cache}"),
        Effect::Notify(Notification { topic, payload }) => {
            let mut shown: String = payload.chars().take(TEXT_PAYLOAD_CHARS).collect();
            if shown.len() < payload.len() {
                shown.push('…');
            }
            format!("notify {topic} {shown}")
        }
    }
}

/// A push as JSON: its body as `body` when it is UTF-8 text, else as `body_hex`.
fn push_json(push: &Push) -> serde_json::Value {
    match std::str::from_utf8(&push.body) {
        Ok(text) => json!({"destination": push.destination, "key": push.key, "body": text}),
        Err(_) => json!({
            "destination": push.destination,
            "key": push.key,
            "body_hex": hex_of(&push.body),
        }),
    }
}

/// A push on one line: destination, key and the body's start (its size when not UTF-8).
fn push_text(push: &Push) -> String {
    let body = match std::str::from_utf8(&push.body) {
        Ok(text) => {
            let mut shown: String = text.chars().take(TEXT_PAYLOAD_CHARS).collect();
            if shown.len() < text.len() {
                shown.push('…');
            }
            shown
        }
        Err(_) => format!("<{} bytes, not UTF-8>", push.body.len()),
    };
    format!("push {} {} {body}", push.destination, push.key)
}

fn duration_text(d: Duration) -> String {
    let micros = d.as_secs_f64() * 1e6;
    if micros < 1_000.0 {
        format!("{micros:.0} µs")
    } else if micros < 1_000_000.0 {
        format!("{:.2} ms", micros / 1e3)
    } else {
        format!("{:.2} s", micros / 1e6)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_message_fits_on_one_line_without_its_backtrace() {
        let mut failure = Failure::new(
            streamhost_plugin_runtime::FailureReason::Trap,
            "error while executing at wasm backtrace:\n    0: 0x1 - f: memory budget exceeded",
        );
        failure.backtrace = Some("error while executing at wasm backtrace:\n    0: 0x1 - f".into());
        assert_eq!(message_line(&failure), "memory budget exceeded");
        failure.backtrace = None;
        failure.message = "first\n  second".into();
        assert_eq!(message_line(&failure), "first / second");
    }

    #[test]
    fn pushes_show_their_body_as_text_when_it_is_utf8() {
        let push = |body: &[u8]| Push {
            destination: "hook".into(),
            key: "k/1".into(),
            body: body.to_vec(),
        };
        assert_eq!(push_text(&push(b"{\"a\":1}")), "push hook k/1 {\"a\":1}");
        assert_eq!(
            push_text(&push(&[0xff, 0])),
            "push hook k/1 <2 bytes, not UTF-8>"
        );
        assert_eq!(
            push_json(&push(b"x")),
            json!({"destination": "hook", "key": "k/1", "body": "x"})
        );
        assert_eq!(push_json(&push(&[0xff]))["body_hex"], "ff");
        assert_eq!(push_line(&push(&[0xff, 1])), "push hook k/1 hex:ff01");
        assert_eq!(push_line(&push(b"a b")), "push hook k/1 a b");
    }
}
