//! `streamhost plugin run`: replays recorded replication traffic through one plugin, outside
//! any reader, and reports every call: its effects, its time, the instance's memory high-water
//! and any failure with the limit or trap that caused it.
//!
//! The input is either raw replication lines or the capture format of
//! `host/server/tests/fixtures/` (`S <line>`, `C <line>`, `P <channel> <line>`, `#` comments).
//! Only `RDATA` matters: `batch` runs are assembled as the reader assembles them
//! ([`BatchAssembler`]), and consecutive token batches of one (stream, instance) the plugin
//! wants are grouped into plugin batches of at most `--batch-rows` rows, cut only between
//! tokens (rows of one token always travel together). Everything else, `POSITION` included,
//! is ignored.
//!
//! Pushes (the `push` import) are reported beside the effects and go nowhere: every
//! destination the manifest's `push` names is declared for the run, with no URL or headers and
//! a `max_body_bytes` of `--max-body-bytes` (the reader's default, 65,536, unless given).
//!
//! Key-value writes are committed after each successful batch and discarded after a failure,
//! as the reader does. A failed batch is reported and not retried; a failure that poisons the
//! instance is followed by a fresh instance and `init` (with the cursors so far). Plugin
//! failures are the report, not an error: only a plugin that cannot be loaded or an input that
//! cannot be read makes the command fail.
//!
//! Outbound HTTP never reaches the network: requests are answered from `--http-fixtures` or
//! refused, through the runtime's send hook (`HttpBackend::Fixtures`), and each is printed
//! after its batch.
//!
//! `--query NAME --arg KEY=VALUE` asks a query after the replay and prints its answer. The
//! command fails (non-zero exit, from `lib.rs`) when a batch or the query failed.
//!
//! Files: `input` (the lines read and grouped into plugin batches), `load` (the plugin and
//! its engine), `compile` (the tools' shared compile cache and the compile spinner), `runner`
//! (the plugin's instance and the calls), `report` (text and JSON output). `plugin test` and
//! `plugin dev` use them too.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use tokio_util::sync::CancellationToken;

mod compile;
mod input;
mod load;
mod report;
mod runner;

pub use self::compile::{
    CACHE_ENV, CacheArgs, default_cache_dir, runtime_config_with_cache, with_spinner,
};
pub use self::input::{ParsedInput, group_batches, parse_input};
pub use self::load::{LoadOptions, LoadedPlugin, load_plugin, parse_config, plugin_files};
pub(crate) use self::report::message_line;
use self::report::{report_loaded, write_http, write_report, write_summary};
pub(crate) use self::runner::Runner;

/// Flags of `streamhost plugin run`.
#[derive(Debug, clap::Args)]
pub struct PluginRunArgs {
    /// The plugin: a folder holding plugin.toml and one .wasm, or a .wasm beside plugin.toml.
    #[arg(value_name = "PLUGIN")]
    pub plugin: PathBuf,
    /// Replication lines to replay: raw (`RDATA ...`) or a capture (`S RDATA ...`).
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
    /// The configuration handed to `init`, as a JSON object.
    #[arg(long, value_name = "JSON")]
    pub config: Option<String>,
    /// Most rows per plugin batch (a token's rows are never split, so one token may exceed it).
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub batch_rows: usize,
    /// One JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
    /// Host folder granted read-only at the path the manifest's `directory` asks for.
    #[arg(long, value_name = "DIR")]
    pub directory: Option<PathBuf>,
    /// `max_body_bytes` of the destinations the manifest's `push` names, each declared for the
    /// run (nothing is sent: pushes are printed beside the effects).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Answers to the plugin's outbound HTTP requests (TOML, or JSON if it ends in `.json`):
    /// `[[fixture]] method, url, status, headers, body`. A request no fixture matches is
    /// refused; without this flag every request is. Never the network.
    #[arg(long, value_name = "FILE")]
    pub http_fixtures: Option<PathBuf>,
    /// A query to ask after the replay (its answer is printed; a failure fails the command).
    #[arg(long, value_name = "NAME")]
    pub query: Option<String>,
    /// An argument of `--query`, `KEY=VALUE` (repeat for more).
    #[arg(long = "arg", value_name = "KEY=VALUE", requires = "query", value_parser = parse_arg)]
    pub args: Vec<(String, String)>,
    /// The compile cache.
    #[command(flatten)]
    pub cache: CacheArgs,
    /// Write `/tmp/perf-<pid>.map` as the plugin loads, so that a `perf record` of the run
    /// names the plugin's functions in `perf report` (see docs/plugins.md, "Profiling").
    #[arg(long)]
    pub perf_map: bool,
}

/// `KEY=VALUE` of `--arg`.
fn parse_arg(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

/// The reader's default `max_body_bytes` of a destination (`[reader.destinations.<name>]`).
pub const DEFAULT_MAX_BODY_BYTES: usize = 65_536;

/// What a run did, as its summary line reports it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RunSummary {
    /// Plugin batches handed to the plugin (failed ones included).
    pub batches: usize,
    /// Rows in those batches.
    pub rows: usize,
    /// Effects returned by the successful batches.
    pub effects: usize,
    /// Pushes made by the successful batches.
    pub pushes: usize,
    /// Failed batches by [`streamhost_plugin_runtime::FailureReason::as_str`].
    pub failures: BTreeMap<String, usize>,
    /// Instances created (the first, plus one after each poisoning failure).
    pub instances: usize,
    /// Rows of streams the plugin does not want.
    pub skipped_rows: usize,
    /// Rows of `batch` runs the input never finished.
    pub unfinished_rows: usize,
    /// Time spent in `on-batch` calls.
    pub call_time: Duration,
    /// Time from loading the plugin to the end of the replay.
    pub total_time: Duration,
    /// Whether a signal stopped the replay early.
    pub interrupted: bool,
    /// Whether `--query` failed.
    pub query_failed: bool,
}

impl RunSummary {
    /// An error when a batch or the query failed (the command then exits non-zero).
    pub fn ensure_no_failures(&self) -> anyhow::Result<()> {
        let failed: usize = self.failures.values().sum();
        anyhow::ensure!(failed == 0, "{failed} of {} batches failed", self.batches);
        anyhow::ensure!(!self.query_failed, "the query failed");
        Ok(())
    }
}

/// Loads the plugin, replays `--input` through it and writes the report to `out`.
///
/// Synchronous (every wasm call is): call it from a blocking thread. `shutdown` is checked
/// between batches; the summary is written either way.
pub fn run(
    args: &PluginRunArgs,
    out: &mut dyn Write,
    shutdown: &CancellationToken,
) -> anyhow::Result<RunSummary> {
    anyhow::ensure!(args.batch_rows > 0, "--batch-rows must be at least 1");
    let started = Instant::now();
    let input =
        std::fs::read(&args.input).with_context(|| format!("reading {}", args.input.display()))?;
    let parsed =
        parse_input(&input).with_context(|| format!("reading {}", args.input.display()))?;

    let config = args.config.as_deref().map(parse_config).transpose()?;
    let loaded = load_plugin(&LoadOptions {
        plugin: args.plugin.clone(),
        config,
        directory: args.directory.clone(),
        max_body_bytes: args.max_body_bytes,
        http_fixtures: args.http_fixtures.clone(),
        cache: args.cache.clone(),
        perf_map: args.perf_map,
    })?;
    let (version, fixtures) = (&loaded.version, &loaded.fixtures);
    report_loaded(out, version, &loaded.files, args.json)?;

    let mut summary = RunSummary {
        unfinished_rows: parsed.unfinished_rows,
        ..RunSummary::default()
    };
    let (batches, skipped_rows) = group_batches(
        parsed.batches,
        |stream| version.wants(stream),
        args.batch_rows,
    );
    summary.skipped_rows = skipped_rows;

    let mut runner = Runner::new(version);
    for batch in &batches {
        if shutdown.is_cancelled() {
            summary.interrupted = true;
            break;
        }
        let report = runner.call(batch, &mut summary);
        write_report(out, batch, &report, args.json)?;
        write_http(out, &fixtures.take_seen(), args.json)?;
    }
    if let Some(name) = &args.query
        && !summary.interrupted
    {
        let answer = runner.query(name, &args.args, &mut summary);
        summary.query_failed = answer.is_err();
        write_answer(out, name, &args.args, &answer, args.json)?;
    }
    summary.total_time = started.elapsed();
    write_summary(out, &summary, args.json)?;
    Ok(summary)
}

/// The answer to `--query`, or its failure.
fn write_answer(
    out: &mut dyn Write,
    name: &str,
    args: &[(String, String)],
    answer: &Result<String, streamhost_plugin_runtime::Failure>,
    json: bool,
) -> anyhow::Result<()> {
    let shown: Vec<String> = args.iter().map(|(k, v)| format!("{k}={v}")).collect();
    match (answer, json) {
        (Ok(answer), true) => writeln!(
            out,
            "{}",
            json!({"query": {"name": name, "args": shown, "answer": answer}})
        )?,
        (Err(failure), true) => writeln!(
            out,
            "{}",
            json!({"query": {"name": name, "args": shown, "failure": {
                "reason": failure.reason.as_str(), "message": failure.message}}})
        )?,
        (Ok(answer), false) => writeln!(out, "query {name} {}: {answer}", shown.join(" "))?,
        (Err(failure), false) => writeln!(
            out,
            "query {name} {}: FAILED {}: {}",
            shown.join(" "),
            failure.reason.as_str(),
            message_line(failure)
        )?,
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_reaches_these_flags() {
        use clap::Parser;

        let cli = crate::cli::Cli::try_parse_from([
            "streamhost",
            "plugin",
            "run",
            "target/plugins/room-timeline",
            "--input",
            "capture.txt",
            "--batch-rows",
            "16",
            "--json",
        ])
        .unwrap();
        let crate::cli::Command::Plugin(crate::cli::PluginArgs {
            command: crate::cli::PluginCommand::Run(args),
        }) = cli.command
        else {
            panic!("plugin run")
        };
        assert_eq!(
            args.plugin,
            std::path::Path::new("target/plugins/room-timeline")
        );
        assert_eq!((args.batch_rows, args.json, args.config), (16, true, None));
        assert_eq!(args.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert!(args.query.is_none() && !args.cache.no_cache);
    }

    #[test]
    fn a_query_takes_key_value_arguments() {
        use clap::Parser;

        let parse = |extra: &[&str]| {
            let mut line = vec!["streamhost", "plugin", "run", "p", "--input", "i"];
            line.extend_from_slice(extra);
            crate::cli::Cli::try_parse_from(line)
        };
        let cli = parse(&[
            "--query",
            "timeline",
            "--arg",
            "room=!a:x",
            "--arg",
            "n=a=b",
        ])
        .unwrap();
        let crate::cli::Command::Plugin(crate::cli::PluginArgs {
            command: crate::cli::PluginCommand::Run(args),
        }) = cli.command
        else {
            panic!("plugin run")
        };
        assert_eq!(args.query.as_deref(), Some("timeline"));
        assert_eq!(
            args.args,
            [
                ("room".to_owned(), "!a:x".to_owned()),
                ("n".into(), "a=b".into())
            ]
        );
        assert!(parse(&["--query", "q", "--arg", "novalue"]).is_err());
        assert!(parse(&["--arg", "a=b"]).is_err(), "--arg needs --query");
        assert!(parse(&["--cache", "/tmp/c", "--no-cache"]).is_err());
    }

    #[test]
    fn a_failed_batch_or_query_fails_the_run() {
        let mut summary = RunSummary::default();
        assert!(summary.ensure_no_failures().is_ok());
        summary.batches = 3;
        summary.failures.insert("trap".into(), 1);
        let error = summary.ensure_no_failures().unwrap_err().to_string();
        assert_eq!(error, "1 of 3 batches failed");
        summary.failures.clear();
        summary.query_failed = true;
        assert!(summary.ensure_no_failures().is_err());
    }
}
