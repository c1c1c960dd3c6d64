//! `streamhost demo`: a writer, two readers and a traffic generator in one process on a
//! temporary SQLite file, with a status line each second. Ctrl-C (or `--duration`) stops it.
//! `--rate 0` starts no generator: the rows are the ones you append. Each reader's log lines
//! name it (`reader{name=reader-1}`).
//!
//! With `--plugins DIR` (as `scripts/demo` passes, after `scripts/build-plugins`) both readers
//! load the plugins of `DIR`, each granted what its `plugin.toml` asks for, and every second
//! the demo shows a cached read and the notifications it received. `DIR` is watched: replace
//! a plugin's files and the readers hot-reload it.
//!
//! Stdout carries only the banner and the status lines; the log goes to `demo.log` in the
//! demo's data folder (the banner names it), and to stderr as well with `--verbose`. The folder
//! is removed when the demo stops cleanly and kept, with its log, when it fails.
//!
//! Files: `cluster` (the writer and the readers), `traffic` (the generator), `status` (the
//! line printed each second).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use streamhost_server::client::ApiClient;
use tokio_util::sync::CancellationToken;

use self::cluster::Cluster;
use crate::logging::{LogFormat, LogOutput, init_tracing};

mod cluster;
mod status;
pub(crate) mod traffic;

pub(crate) use self::cluster::demo_plugins;

/// The demo's streams: Synapse-like event, receipt and typing rows, and chat messages for the
/// example plugins.
pub(crate) const STREAMS: [&str; 4] = ["events", "receipts", "typing", "messages"];

/// The room whose cached timeline and notifications the demo shows.
const SHOWN_ROOM: &str = "!room0:demo.streamhost";

/// Flags of `streamhost demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<u64>,
    /// Rows per second the generator writes; 0 writes none (append your own rows to the
    /// writer's HTTP API).
    #[arg(long, default_value_t = 2_000)]
    pub rate: u64,
    /// Rows per append request.
    #[arg(long, default_value_t = 50)]
    pub batch: u64,
    /// Plugins folder (one sub-folder per plugin) both readers load, each plugin granted what
    /// its plugin.toml asks for; `scripts/build-plugins` builds the examples into
    /// `target/plugins`.
    #[arg(long, value_name = "DIR")]
    pub plugins: Option<std::path::PathBuf>,
    /// Log on stderr too (the log always goes to demo.log in the demo's data folder).
    #[arg(long)]
    pub verbose: bool,
}

/// The log file's name in the demo's data folder.
const LOG_FILE: &str = "demo.log";

/// Runs the demo until `shutdown` or the duration ends, logging in `log_format` to its log
/// file (and stderr with `--verbose`).
pub async fn run(
    args: DemoArgs,
    log_format: LogFormat,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    anyhow::ensure!(args.batch > 0, "--batch must be positive");
    let dir = tempfile::tempdir().context("creating a temporary folder")?;
    let log = dir.path().join(LOG_FILE);
    let file = std::fs::File::create(&log)
        .with_context(|| format!("creating the demo's log file {}", log.display()))?;
    init_tracing(
        log_format,
        LogOutput {
            file: Some(file),
            stderr: args.verbose,
        },
    );
    let result = run_in(&args, dir.path(), &log, shutdown).await;
    if result.is_err() {
        // Its log says what went wrong.
        let kept = dir.keep();
        return result.with_context(|| {
            format!(
                "the demo's folder {} is kept; its log is {}",
                kept.display(),
                kept.join(LOG_FILE).display()
            )
        });
    }
    result
}

/// The demo in `dir`, its log at `log`.
async fn run_in(
    args: &DemoArgs,
    dir: &Path,
    log: &Path,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let cluster = Cluster::start(dir, args.plugins.as_deref()).await?;
    cluster.print_banner(dir, log, args.verbose);

    let written = Arc::new(AtomicU64::new(0));
    let traffic = CancellationToken::new();
    let generator = (args.rate > 0).then(|| {
        tokio::spawn(traffic::generate(
            ApiClient::new(cluster.writer_url()),
            args.rate,
            args.batch,
            written.clone(),
            traffic.clone(),
        ))
    });
    if generator.is_none() {
        println!(
            "  --rate 0: no generated traffic; append rows with POST {}/v1/streams/STREAM/rows",
            cluster.writer_url()
        );
    }
    let duration = args.duration.map(Duration::from_secs);
    status::report_each_second(&cluster, &written, duration, &shutdown).await;

    // Stop the traffic, give the readers a moment to apply the last rows, then stop everything.
    traffic.cancel();
    if let Some(generator) = generator {
        let _ = generator.await;
    }
    cluster.drain(written.load(Ordering::Relaxed)).await;
    let broken = cluster.broken_plugins();
    cluster.stop().await?;
    anyhow::ensure!(
        broken.is_empty(),
        "plugins not running at the end: {}",
        broken.join("; ")
    );
    println!(
        "streamhost demo: stopped cleanly ({} rows written)",
        written.load(Ordering::Relaxed)
    );
    Ok(())
}
