//! `streamhost plugin test [DIR]`: replays each fixture of `DIR/tests/` through the plugin
//! built in `DIR/build/<name>/` (or `--plugin`) and compares what it did (effects and pushes
//! per batch, the key-value store after the run, the answers to the listed queries) with the
//! fixture's expectations file. Any difference, failed batch or missing expectations file is
//! printed and makes the command fail; `--update` rewrites the expectations instead.
//! Formats: docs/plugins.md, "Testing a plugin".
//!
//! Files: `fixture` (`tests/*.jsonl` and `tests/*.rdata` into token batches), `expectations`
//! (`tests/<fixture>.expected.toml`: parse and render), `diff` (what differs, named), `replay`
//! (one fixture through the plugin, with `plugin run`'s loader and runner).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use streamhost_plugin_runtime::Manifest;
use tokio_util::sync::CancellationToken;

use crate::tools::plugin_run::CacheArgs;

pub mod diff;
pub mod expectations;
pub mod fixture;
mod replay;

use self::diff::{Outcome, differences};
use self::expectations::{Expectations, expectations_path, render};

/// Flags of `streamhost plugin test`.
#[derive(Debug, clap::Args)]
pub struct PluginTestArgs {
    /// The plugin's project folder (plugin.toml, tests/) [default: the current folder].
    #[arg(value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
    /// Rewrite the expectations from what the plugin does now.
    #[arg(long)]
    pub update: bool,
    /// The built plugin: a folder with plugin.toml and one .wasm, or the .wasm
    /// [default: DIR/build/<name>, where `streamhost plugin build` writes it].
    #[arg(long, value_name = "PATH")]
    pub plugin: Option<PathBuf>,
    /// Run this fixture only (a .jsonl or .rdata file).
    #[arg(long, value_name = "FILE")]
    pub fixture: Option<PathBuf>,
    /// The compile cache.
    #[command(flatten)]
    pub cache: CacheArgs,
}

/// Runs the plugin's tests; an error when any fails.
pub fn run(
    args: &PluginTestArgs,
    out: &mut dyn Write,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let plugin = match &args.plugin {
        Some(path) => path.clone(),
        None => built_plugin(&args.dir)?,
    };
    let fixtures = match &args.fixture {
        Some(path) => vec![path.clone()],
        None => fixture::fixtures_in(&args.dir.join("tests"))?,
    };
    anyhow::ensure!(
        !fixtures.is_empty(),
        "no fixtures in {} (*.jsonl or *.rdata)",
        args.dir.join("tests").display()
    );
    let mut failed = 0;
    for path in &fixtures {
        anyhow::ensure!(!shutdown.is_cancelled(), "interrupted");
        let shown = path.strip_prefix(&args.dir).unwrap_or(path).display();
        let expectations_file = expectations_path(path);
        let expected = expectations::load(&expectations_file)?;
        let settings = expected.clone().unwrap_or_default();
        let parsed = fixture::read_fixture(path)?;
        let outcome = replay::replay(&plugin, &args.cache, &settings, parsed)?;
        if args.update {
            let updated = updated(&settings, &outcome);
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            let text = render(&updated, &name.unwrap_or_default(), &outcome.order);
            std::fs::write(&expectations_file, text)
                .with_context(|| format!("writing {}", expectations_file.display()))?;
            writeln!(out, "updated {}", expectations_file.display())?;
        }
        let mut problems = outcome.failures.clone();
        match (&expected, args.update) {
            (_, true) => {}
            (None, false) => problems.push(format!(
                "  no expectations file {}: `streamhost plugin test --update` writes it",
                expectations_file.display()
            )),
            (Some(expected), false) => problems.extend(differences(expected, &outcome)),
        }
        if problems.is_empty() {
            writeln!(out, "ok {shown} ({})", counts(&outcome))?;
        } else {
            failed += 1;
            writeln!(out, "FAIL {shown}")?;
            for line in problems {
                writeln!(out, "{line}")?;
            }
        }
    }
    anyhow::ensure!(
        failed == 0,
        "{failed} of {} fixtures failed",
        fixtures.len()
    );
    writeln!(out, "{} fixtures passed", fixtures.len())?;
    Ok(())
}

/// Where `streamhost plugin build DIR` writes the plugin: `DIR/build/<name>`.
fn built_plugin(dir: &Path) -> anyhow::Result<PathBuf> {
    let manifest = Manifest::load(&dir.join("plugin.toml"))
        .with_context(|| format!("{} is not a plugin project", dir.display()))?;
    let built = dir.join("build").join(&manifest.name);
    anyhow::ensure!(
        built.join("plugin.toml").is_file(),
        "no built plugin in {}: run `streamhost plugin build {}` first (or name one with --plugin)",
        built.display(),
        dir.display()
    );
    Ok(built)
}

/// The expectations `--update` writes: the settings and queries kept, the rest as it ran.
fn updated(settings: &Expectations, outcome: &Outcome) -> Expectations {
    let mut queries = settings.queries.clone();
    for (query, answer) in queries.iter_mut().zip(&outcome.answers) {
        if let Ok(answer) = answer {
            query.answer = Some(answer.clone());
        }
    }
    Expectations {
        batch_rows: settings.batch_rows,
        config: settings.config.clone(),
        effects: outcome.effects.clone(),
        kv: outcome.kv.clone(),
        queries,
    }
}

/// `N batches, N effects, N keys, N queries`.
fn counts(outcome: &Outcome) -> String {
    let effects: usize = outcome.effects.values().map(Vec::len).sum();
    format!(
        "{} batches, {effects} effects, {} keys, {} queries",
        outcome.order.len(),
        outcome.kv.len(),
        outcome.answers.len()
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::expectations::{ExpectedQuery, KvValue};
    use super::*;

    #[test]
    fn an_update_keeps_settings_and_queries_and_takes_the_rest_from_the_run() {
        let settings = Expectations {
            batch_rows: 3,
            effects: [("old 1".to_owned(), vec!["notify a b".to_owned()])].into(),
            queries: vec![
                ExpectedQuery {
                    name: "q".into(),
                    args: [("k".to_owned(), "v".to_owned())].into(),
                    answer: None,
                },
                ExpectedQuery {
                    name: "broken".into(),
                    args: Default::default(),
                    answer: Some("kept".into()),
                },
            ],
            ..Expectations::default()
        };
        let outcome = Outcome {
            order: vec!["s master 1".into()],
            effects: [("s master 1".to_owned(), vec!["invalidate c k".to_owned()])].into(),
            kv: [("k".to_owned(), KvValue::Text("v".into()))].into(),
            answers: vec![Ok("yes".into()), Err("trap: boom".into())],
            failures: Vec::new(),
        };
        let new = updated(&settings, &outcome);
        assert_eq!(new.batch_rows, 3);
        assert_eq!(new.effects, outcome.effects);
        assert_eq!(new.kv, outcome.kv);
        assert_eq!(new.queries[0].answer.as_deref(), Some("yes"));
        assert_eq!(new.queries[1].answer.as_deref(), Some("kept"));
        assert_eq!(counts(&outcome), "1 batches, 1 effects, 1 keys, 2 queries");
    }

    #[test]
    fn a_project_without_a_build_is_named_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("plugin.toml"), "name = \"p\"\n").unwrap();
        let error = built_plugin(dir.path()).unwrap_err().to_string();
        assert!(error.contains("streamhost plugin build"), "{error}");
        assert!(built_plugin(&dir.path().join("nothing")).is_err());
    }
}
