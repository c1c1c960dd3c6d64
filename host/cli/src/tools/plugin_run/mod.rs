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
//! Key-value writes are committed after each successful batch and discarded after a failure,
//! as the reader does. A failed batch is reported and not retried; a failure that poisons the
//! instance is followed by a fresh instance and `init` (with the cursors so far). Plugin
//! failures are the report, not an error: only a plugin that cannot be loaded or an input that
//! cannot be read makes the command fail.
//!
//! Files: `input` (the lines read and grouped into plugin batches), `runner` (the plugin's
//! instance and the calls), `report` (text and JSON output).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use streamhost_plugin_runtime::{
    Destination, Grant, HttpBackend, HttpFixtures, Manifest, PluginFiles, PluginVersion, Runtime,
    RuntimeConfig,
};
use tokio_util::sync::CancellationToken;

mod input;
mod report;
mod runner;

pub use self::input::{ParsedInput, group_batches, parse_input};
use self::report::{report_loaded, write_http, write_report, write_summary};
use self::runner::Runner;

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
    /// Answers to the plugin's outbound HTTP requests (TOML, or JSON if it ends in `.json`):
    /// `[[fixture]] method, url, status, headers, body`. A request no fixture matches is
    /// refused; without this flag every request is. Never the network.
    #[arg(long, value_name = "FILE")]
    pub http_fixtures: Option<PathBuf>,
}

/// What a run did, as its summary line reports it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RunSummary {
    /// Plugin batches handed to the plugin (failed ones included).
    pub batches: usize,
    /// Rows in those batches.
    pub rows: usize,
    /// Effects returned by the successful batches.
    pub effects: usize,
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

    let files = plugin_files(&args.plugin)?;
    let manifest = Manifest::load(&files.manifest)?;
    let mut grant = Grant::everything_asked(&manifest)?;
    grant.directory = args.directory.clone();
    if let Some(config) = &args.config {
        grant.config = Some(parse_config(config)?);
    }
    let fixtures = Arc::new(match &args.http_fixtures {
        Some(path) => HttpFixtures::load(path).map_err(anyhow::Error::msg)?,
        None => HttpFixtures::default(),
    });
    let destinations = fixtures
        .destinations()
        .iter()
        .map(|(name, url)| {
            let destination = Destination {
                url: url.clone(),
                headers: Vec::new(),
                max_body_bytes: usize::MAX,
            };
            (name.clone(), destination)
        })
        .collect();
    let runtime = Runtime::new(RuntimeConfig {
        destinations: Arc::new(destinations),
        http_backend: HttpBackend::Fixtures(fixtures.clone()),
        ..RuntimeConfig::default()
    })
    .context("starting the wasm engine")?;
    let version = PluginVersion::load(&runtime, &files, &grant)?;
    report_loaded(out, &version, &files, args.json)?;

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

    let mut runner = Runner::new(&version);
    for batch in &batches {
        if shutdown.is_cancelled() {
            summary.interrupted = true;
            break;
        }
        let report = runner.call(batch, &mut summary);
        write_report(out, batch, &report, args.json)?;
        write_http(out, &fixtures.take_seen(), args.json)?;
    }
    summary.total_time = started.elapsed();
    write_summary(out, &summary, args.json)?;
    Ok(summary)
}

/// The files of `path`: a plugin folder, or a `.wasm` whose folder holds `plugin.toml`.
fn plugin_files(path: &Path) -> anyhow::Result<PluginFiles> {
    if path.is_dir() {
        return Ok(PluginFiles::in_dir(path)?);
    }
    anyhow::ensure!(
        path.extension().is_some_and(|ext| ext == "wasm") && path.is_file(),
        "{}: not a plugin folder or a .wasm file",
        path.display()
    );
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let manifest = dir.join("plugin.toml");
    anyhow::ensure!(
        manifest.is_file(),
        "{}: no plugin.toml beside {}",
        dir.display(),
        path.display()
    );
    Ok(PluginFiles {
        dir,
        manifest,
        wasm: path.to_path_buf(),
    })
}

/// `--config`: a JSON object, as the TOML table a grant carries.
fn parse_config(text: &str) -> anyhow::Result<toml::Table> {
    serde_json::from_str(text).context("--config must be a JSON object (without nulls)")
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
        assert_eq!(args.plugin, Path::new("target/plugins/room-timeline"));
        assert_eq!((args.batch_rows, args.json, args.config), (16, true, None));
    }

    #[test]
    fn config_must_be_a_json_object() {
        let table = parse_config(r#"{"keep": 10, "name": "x"}"#).unwrap();
        assert_eq!(table["keep"].as_integer(), Some(10));
        assert!(parse_config("[1]").is_err());
        assert!(parse_config(r#"{"a": null}"#).is_err());
    }
}
