//! One fixture through the plugin, with `plugin run`'s loader and runner: a fresh instance
//! and an empty store, batches of at most `batch_rows` rows, then the listed queries.

use std::path::Path;

use crate::tools::plugin_run::{
    CacheArgs, LoadOptions, ParsedInput, RunSummary, Runner, group_batches, load_plugin,
    message_line,
};

use super::diff::Outcome;
use super::expectations::{Expectations, KvValue};

/// What `plugin` did with `parsed` under `settings` (its `config` and `batch_rows`), and the
/// answers to `settings`' queries. Plugin failures are in the outcome; only a plugin that
/// cannot be loaded is an error.
pub(super) fn replay(
    plugin: &Path,
    cache: &CacheArgs,
    settings: &Expectations,
    parsed: ParsedInput,
) -> anyhow::Result<Outcome> {
    let loaded = load_plugin(&LoadOptions {
        plugin: plugin.to_path_buf(),
        config: settings.config.clone(),
        max_body_bytes: crate::tools::plugin_run::DEFAULT_MAX_BODY_BYTES,
        cache: cache.clone(),
        ..LoadOptions::default()
    })?;
    let version = &loaded.version;
    let mut outcome = Outcome::default();
    if parsed.unfinished_rows > 0 {
        outcome.failures.push(format!(
            "  {} rows at the end are in a `batch` run no numeric token finishes",
            parsed.unfinished_rows
        ));
    }
    let (batches, _) = group_batches(
        parsed.batches,
        |stream| version.wants(stream),
        settings.batch_rows,
    );
    let mut runner = Runner::new(version);
    let mut summary = RunSummary::default();
    for batch in &batches {
        let report = runner.call(batch, &mut summary);
        let label = format!("{} {} {}", batch.stream, batch.instance, batch.token);
        if let Some(failure) = &report.failure {
            outcome.failures.push(format!(
                "  batch {label:?} FAILED {}: {}",
                failure.reason.as_str(),
                message_line(failure)
            ));
        }
        let lines = report.lines();
        if !lines.is_empty() {
            outcome.effects.insert(label.clone(), lines);
        }
        outcome.order.push(label);
    }
    outcome.kv = runner
        .kv_entries()
        .into_iter()
        .map(|(key, value)| (key, KvValue::of(&value)))
        .collect();
    for query in &settings.queries {
        let args: Vec<(String, String)> = query
            .args
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let answer = runner
            .query(&query.name, &args, &mut summary)
            .map_err(|f| format!("{}: {}", f.reason.as_str(), message_line(&f)));
        outcome.answers.push(answer);
    }
    Ok(outcome)
}
