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

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use serde_json::json;
use streamhost_plugin_runtime::{
    Batch, Cursor, Effect, Failure, Grant, Invalidation, KvStore, Manifest, Notification,
    PluginFiles, PluginInstance, PluginServices, PluginVersion, Row, Runtime, RuntimeConfig,
};
use streamhost_proto::{Command, is_blank};
use tokio_util::sync::CancellationToken;

use crate::reader::BatchAssembler;

/// Effects listed per batch in the text report; the rest are counted (`--json` lists all).
const TEXT_EFFECTS: usize = 8;

/// Characters of a notification payload shown in the text report.
const TEXT_PAYLOAD_CHARS: usize = 60;

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

/// The token batches of an input, in order, with what could not be used.
#[derive(Debug, Default)]
pub struct ParsedInput {
    /// One batch per numeric token, `batch` runs assembled.
    pub batches: Vec<crate::reader::Batch>,
    /// Rows of `batch` runs left unfinished at the end.
    pub unfinished_rows: usize,
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
    let runtime = Runtime::new(RuntimeConfig::default()).context("starting the wasm engine")?;
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

    let limits = &version.capabilities().limits;
    let services = PluginServices::new(
        version.name(),
        KvStore::default(),
        limits.log_lines_per_second,
        None,
    );
    let mut runner = Runner {
        version: &version,
        services,
        instance: None,
        cursors: BTreeMap::new(),
    };
    for batch in &batches {
        if shutdown.is_cancelled() {
            summary.interrupted = true;
            break;
        }
        let report = runner.call(batch, &mut summary);
        write_report(out, batch, &report, args.json)?;
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

/// Decodes the input's lines and assembles its `RDATA` rows into token batches.
///
/// A line that is neither blank, a `#` comment, a capture line (`S `, `C `, `P <channel> `)
/// nor a replication command is an error naming its number. `C` lines (client to server)
/// never carry rows and are skipped.
pub fn parse_input(input: &[u8]) -> anyhow::Result<ParsedInput> {
    let mut assembler = BatchAssembler::default();
    let mut parsed = ParsedInput::default();
    for (index, line) in input.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(command_line) = command_of(line) else {
            continue;
        };
        let command = Command::decode(&Bytes::copy_from_slice(command_line))
            .with_context(|| format!("line {}", index + 1))?;
        if let Command::Rdata(rdata) = command
            && let Some(batch) = assembler.push(rdata)
        {
            parsed.batches.push(batch);
        }
    }
    parsed.unfinished_rows = assembler.pending_rows();
    Ok(parsed)
}

/// The replication line a line of the input carries, if any.
fn command_of(line: &[u8]) -> Option<&[u8]> {
    if is_blank(line) || line.starts_with(b"#") || line.starts_with(b"C ") {
        return None;
    }
    if let Some(rest) = line.strip_prefix(b"S ") {
        return Some(rest);
    }
    if let Some(rest) = line.strip_prefix(b"P ") {
        // `P <channel> <line>`: the Redis channel, then the published line.
        let space = rest.iter().position(|b| *b == b' ')?;
        return Some(&rest[space + 1..]);
    }
    Some(line)
}

/// Groups consecutive token batches of one (stream, instance) that `wants` accepts into plugin
/// batches of at most `max_rows` rows, cutting only between tokens. Returns the batches and
/// the number of rows not wanted.
pub fn group_batches(
    token_batches: Vec<crate::reader::Batch>,
    wants: impl Fn(&str) -> bool,
    max_rows: usize,
) -> (Vec<Batch>, usize) {
    let mut batches: Vec<Batch> = Vec::new();
    let mut skipped = 0;
    for token_batch in token_batches {
        if !wants(token_batch.stream.as_str()) {
            skipped += token_batch.rows.len();
            continue;
        }
        let token = token_batch.token.0;
        let rows = token_batch.rows.iter().map(|row| Row {
            token,
            data: row.as_str().to_owned(),
        });
        match batches.last_mut() {
            Some(last)
                if last.stream == token_batch.stream.as_str()
                    && last.instance == token_batch.instance.as_str()
                    && last.rows.len() + token_batch.rows.len() <= max_rows =>
            {
                last.rows.extend(rows);
                last.token = token;
            }
            _ => {
                batches.push(Batch {
                    stream: token_batch.stream.as_str().to_owned(),
                    instance: token_batch.instance.as_str().to_owned(),
                    prev_token: token_batch.prev.0,
                    token,
                    rows: rows.collect(),
                });
            }
        }
    }
    (batches, skipped)
}

/// What one plugin batch did.
struct CallReport {
    effects: Vec<Effect>,
    call_time: Duration,
    memory_peak: usize,
    failure: Option<Failure>,
}

/// The plugin's services and its current instance (none after a poisoning failure).
struct Runner<'a> {
    version: &'a PluginVersion,
    services: Arc<PluginServices>,
    instance: Option<PluginInstance>,
    /// The last token handled per (stream, instance), handed to `init` of a fresh instance.
    cursors: BTreeMap<(String, String), i64>,
}

impl Runner<'_> {
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
            self.services.kv().commit();
            self.instance = Some(instance);
        }
        Ok(self
            .instance
            .as_mut()
            .expect("an instance was just created"))
    }

    /// Hands `batch` to the plugin, commits or discards its key-value writes, and counts it.
    fn call(&mut self, batch: &Batch, summary: &mut RunSummary) -> CallReport {
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
            Ok(effects) => {
                self.services.kv().commit();
                summary.effects += effects.len();
                self.cursors
                    .insert((batch.stream.clone(), batch.instance.clone()), batch.token);
                CallReport {
                    effects,
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
                    call_time,
                    memory_peak,
                    failure: Some(failure),
                }
            }
        }
    }
}

fn report_loaded(
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

fn write_report(
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
            format!("{} effects [{}]", report.effects.len(), listed.join(", "))
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

fn write_summary(out: &mut dyn Write, summary: &RunSummary, json: bool) -> anyhow::Result<()> {
    if json {
        let line = json!({"summary": {
            "batches": summary.batches,
            "rows": summary.rows,
            "effects": summary.effects,
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
        "summary: {} batches, {} rows, {} effects, {failures}, {} instances; {} rows of other streams, {} rows in unfinished runs; calls {}, total {}{}",
        summary.batches,
        summary.rows,
        summary.effects,
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
fn message_line(failure: &Failure) -> String {
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

    fn tokens(batches: &[Batch]) -> Vec<(&str, &str, i64, i64, usize)> {
        batches
            .iter()
            .map(|b| {
                (
                    b.stream.as_str(),
                    b.instance.as_str(),
                    b.prev_token,
                    b.token,
                    b.rows.len(),
                )
            })
            .collect()
    }

    #[test]
    fn raw_lines_assemble_batch_runs_and_ignore_other_commands() {
        let input = b"POSITION messages master 0 0\n\
            RDATA messages master batch {\"room\":\"!a:x\"}\n\
            RDATA messages master 3 {\"room\":\"!b:x\"}\n\
            PING 123\n\
            \n\
            RDATA typing master 7 [\"!a:x\"]\n\
            RDATA messages master 4 {\"room\":\"!a:x\"}\n\
            RDATA messages master batch {\"room\":\"!c:x\"}\n";
        let parsed = parse_input(input).unwrap();
        let summary: Vec<_> = parsed
            .batches
            .iter()
            .map(|b| (b.stream.as_str(), b.prev.0, b.token.0, b.rows.len()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("messages", 0, 3, 2),
                ("typing", 0, 7, 1),
                ("messages", 3, 4, 1)
            ]
        );
        assert_eq!(parsed.unfinished_rows, 1);
    }

    #[test]
    fn capture_lines_carry_rows_after_their_tag_and_channel() {
        let input = b"# a comment\n\
            C NAME capture\n\
            S SERVER localhost\n\
            S RDATA messages master 2 {\"room\":\"!a:x\"}\n\
            P localhost RDATA messages worker1 5 {\"room\":\"!b:x\"}\n\
            P localhost/USER_IP USER_IP @bob:x [\"t\",\"::1\",\"ua\",\"D\",1]\n";
        let parsed = parse_input(input).unwrap();
        let got: Vec<_> = parsed
            .batches
            .iter()
            .map(|b| (b.instance.as_str(), b.token.0, b.rows[0].as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("master", 2, r#"{"room":"!a:x"}"#),
                ("worker1", 5, r#"{"room":"!b:x"}"#)
            ]
        );
    }

    #[test]
    fn the_real_synapse_capture_yields_all_its_rows() {
        let capture = include_bytes!("../tests/fixtures/real-session-1.txt");
        let parsed = parse_input(capture).unwrap();
        let rows: usize = parsed.batches.iter().map(|b| b.rows.len()).sum();
        assert_eq!(rows, 141, "every RDATA of the capture");
        assert_eq!(parsed.unfinished_rows, 0);
        let (batches, skipped) = group_batches(parsed.batches, |s| s == "events", 1024);
        assert!(!batches.is_empty());
        assert!(batches.iter().all(|b| b.stream == "events"));
        assert_eq!(
            skipped + batches.iter().map(|b| b.rows.len()).sum::<usize>(),
            141
        );
    }

    #[test]
    fn a_malformed_line_is_an_error_naming_it() {
        let error =
            parse_input(b"RDATA messages master 1 {}\nRDATA messages master x {}\n").unwrap_err();
        assert!(format!("{error:#}").contains("line 2"), "{error:#}");
    }

    #[test]
    fn grouping_joins_consecutive_tokens_and_cuts_only_between_them() {
        let mut input = String::new();
        // Tokens 1..=3 of one row each, then token 4 with three rows, then token 5.
        for token in 1..=3 {
            input += &format!("RDATA messages master {token} {{\"n\":{token}}}\n");
        }
        input += "RDATA messages master batch {\"n\":40}\n";
        input += "RDATA messages master batch {\"n\":41}\n";
        input += "RDATA messages master 4 {\"n\":42}\n";
        input += "RDATA messages master 5 {\"n\":5}\n";
        // Another instance interrupts the run; an unwanted stream does not.
        input += "RDATA typing master 9 []\n";
        input += "RDATA messages master 6 {\"n\":6}\n";
        input += "RDATA messages worker 2 {\"n\":7}\n";
        input += "RDATA messages master 7 {\"n\":8}\n";
        let parsed = parse_input(input.as_bytes()).unwrap();
        let wants = |s: &str| s == "messages";

        let (batches, skipped) = group_batches(parsed.batches, wants, 5);
        assert_eq!(skipped, 1);
        assert_eq!(
            tokens(&batches),
            vec![
                ("messages", "master", 0, 3, 3),
                // Token 4's three rows do not fit beside tokens 1..=3: a new batch.
                ("messages", "master", 3, 6, 5),
                ("messages", "worker", 0, 2, 1),
                ("messages", "master", 6, 7, 1),
            ]
        );
        let rows: Vec<i64> = batches[1].rows.iter().map(|r| r.token).collect();
        assert_eq!(rows, vec![4, 4, 4, 5, 6]);
    }

    #[test]
    fn a_token_larger_than_the_batch_limit_stays_whole() {
        let input = "RDATA messages master batch {}\nRDATA messages master batch {}\n\
                     RDATA messages master 1 {}\nRDATA messages master 2 {}\n";
        let parsed = parse_input(input.as_bytes()).unwrap();
        let (batches, _) = group_batches(parsed.batches, |_| true, 1);
        assert_eq!(
            tokens(&batches),
            vec![
                ("messages", "master", 0, 1, 3),
                ("messages", "master", 1, 2, 1)
            ]
        );
    }

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
    fn config_must_be_a_json_object() {
        let table = parse_config(r#"{"keep": 10, "name": "x"}"#).unwrap();
        assert_eq!(table["keep"].as_integer(), Some(10));
        assert!(parse_config("[1]").is_err());
        assert!(parse_config(r#"{"a": null}"#).is_err());
    }
}
