//! `streamhost plugin dev`: watches a plugin's source folder, rebuilds it on save and
//! hot-reloads it into a local writer and reader run in this process (as the demo runs them),
//! fed with the demo's traffic (`--rate`) or a capture file (`--input`). It prints each build
//! and reload, and each batch the plugin applies with its effects and log lines, and each
//! failure, as they happen. A failed build or reload leaves the running version in place.
//!
//! The reader is told about the plugin's calls through its observer hook
//! ([`PluginHost::observe`](streamhost_server::reader::plugins::PluginHost::observe)) and
//! reloads are asked for directly (the reader does not watch the folder), so each reload's
//! result is printed and the first batch after it is the new version's.
//!
//! Files: `source` (the watched folder's fingerprint; building), `session` (the writer, the
//! reader and their traffic), `report` (what is printed), `measure` (`--measure-reload`).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use self::report::{Printer, short};
use self::session::Session;

mod measure;
mod report;
mod session;
mod source;

/// Longest `--measure-reload` waits for one run's first batch.
const MEASURE_TIMEOUT: Duration = Duration::from_secs(600);

/// Flags of `streamhost plugin dev`.
#[derive(Debug, clap::Args)]
pub struct PluginDevArgs {
    /// The plugin's folder [default: the current folder]: its source (Rust, Python or
    /// JavaScript), or a `plugin.toml` beside a component built by other means.
    #[arg(value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
    /// Rows per second of the demo's traffic (its four streams); 0 writes none.
    #[arg(long, default_value_t = 10)]
    pub rate: u64,
    /// A capture file (`RDATA` lines, as `plugin run --input` reads) appended to the writer
    /// at the start and again after each reload.
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// One JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
    /// Where the guest toolchains are installed [default: $STREAMHOST_GUEST_TOOLCHAINS, else
    /// ~/.cache/streamhost/toolchains].
    #[arg(long, value_name = "DIR")]
    pub toolchains: Option<PathBuf>,
    /// Benchmark: save N changes to the source one after the other, print the time from each
    /// save to the first batch the reloaded version applied and their median, then exit.
    #[arg(long, value_name = "N")]
    pub measure_reload: Option<u32>,
    /// The compile cache the dev reader shares with the other plugin tools.
    #[command(flatten)]
    pub cache: crate::tools::plugin_run::CacheArgs,
}

/// What the loop works with.
struct Dev {
    dir: PathBuf,
    plugins: PathBuf,
    toolchains: PathBuf,
    printer: Arc<Printer>,
    capture: Option<Vec<(String, Bytes)>>,
    /// The folder as last built.
    seen: Vec<(PathBuf, std::time::SystemTime, u64)>,
}

/// Runs until `shutdown` (or, with `--measure-reload`, until the runs are done).
pub async fn run(args: PluginDevArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let dir = args
        .dir
        .canonicalize()
        .with_context(|| format!("opening the plugin folder {}", args.dir.display()))?;
    anyhow::ensure!(
        dir.join("plugin.toml").is_file(),
        "{} has no plugin.toml (start one with `streamhost plugin new`)",
        dir.display()
    );
    let measuring = args.measure_reload.is_some();
    anyhow::ensure!(
        !measuring || args.rate > 0 || args.input.is_some(),
        "--measure-reload needs traffic: a --rate above 0 or an --input"
    );
    let work = tempfile::tempdir().context("creating a temporary folder")?;
    let plugins = work.path().join("plugins");
    std::fs::create_dir_all(&plugins).context("creating the dev plugins folder")?;
    let capture = match &args.input {
        Some(file) => Some(session::capture_batches(file)?),
        None => None,
    };
    let mut dev = Dev {
        seen: source::fingerprint(&dir),
        dir,
        plugins,
        toolchains: args
            .toolchains
            .clone()
            .unwrap_or_else(streamhost_plugin_build::default_toolchains_dir),
        printer: Arc::new(Printer::new(args.json)),
        capture,
    };
    dev.printer.emit(
        format!(
            "streamhost plugin dev: watching {} (Ctrl-C stops)",
            dev.dir.display()
        ),
        json!({"event": "watching", "dir": dev.dir}),
    );
    // Until a first build succeeds there is nothing to run.
    let name = loop {
        if let Some(built) = dev.build().await {
            break built.name;
        }
        if !dev.wait_for_change(&shutdown).await {
            return Ok(());
        }
    };
    let mut streams: BTreeSet<String> = streamhost_plugin_runtime::Manifest::load_in(&dev.dir)?
        .streams
        .into_iter()
        .collect();
    streams.extend(dev.capture.iter().flatten().map(|(s, _)| s.clone()));
    let session = Session::start(work.path(), &dev.plugins, &streams, args.cache.folder()).await?;
    session.plugins()?.observe(dev.printer.clone());
    dev.report_state(&session, &name);
    dev.printer.emit(
        format!("  {}", session.banner()),
        json!({"event": "started", "session": session.banner()}),
    );
    if args.rate > 0 {
        session.generate(args.rate);
    }
    dev.replay(&session).await;
    let result = match args.measure_reload {
        Some(runs) => dev.measure(&session, &name, runs, &shutdown).await,
        None => {
            while dev.wait_for_change(&shutdown).await {
                dev.rebuild(&session, &name).await;
            }
            Ok(())
        }
    };
    session.stop().await?;
    result
}

impl Dev {
    /// Builds into the dev plugins folder, printing the result.
    async fn build(&mut self) -> Option<source::Built> {
        let (dir, plugins, toolchains) = (
            self.dir.clone(),
            self.plugins.clone(),
            self.toolchains.clone(),
        );
        let started = Instant::now();
        let built = tokio::task::spawn_blocking(move || source::build(&dir, &plugins, &toolchains))
            .await
            .unwrap_or_else(|e| Err(anyhow::anyhow!("the build task failed: {e}")));
        self.seen = source::fingerprint(&self.dir);
        match built {
            Ok(built) => {
                self.printer.build_ok(&built, started.elapsed());
                Some(built)
            }
            Err(error) => {
                self.printer.build_failed(&error, started.elapsed());
                None
            }
        }
    }

    /// Rebuilds and reloads; returns the running version once the new one runs.
    async fn rebuild(&mut self, session: &Session, name: &str) -> Option<String> {
        let built = self.build().await?;
        if built.name != name {
            self.printer.emit(
                format!(
                    "the plugin is now named {}: restart plugin dev to run it",
                    built.name
                ),
                json!({"event": "reload", "ok": false, "error": "renamed", "plugin": built.name}),
            );
            return None;
        }
        let started = Instant::now();
        let result = match session.plugins() {
            Ok(plugins) => plugins.reload(name).await,
            Err(e) => Err(e.to_string()),
        };
        self.printer.reloaded(name, &result, started.elapsed());
        let sha = result.ok()?;
        self.replay(session).await;
        Some(sha)
    }

    /// Appends the capture file's rows to the writer, if there is one.
    async fn replay(&self, session: &Session) {
        let Some(batches) = &self.capture else {
            return;
        };
        if let Err(error) = session::replay(&session.writer_client(), batches).await {
            self.printer.emit(
                format!("replaying the capture failed: {error:#}"),
                json!({"event": "input", "ok": false, "error": format!("{error:#}")}),
            );
        }
    }

    /// Prints the plugin's state when it is not running (a failed first load).
    fn report_state(&self, session: &Session, name: &str) {
        let slot = session.plugins().ok().and_then(|p| p.slot(name));
        match slot.map(|s| s.run_state()) {
            Some(streamhost_server::reader::plugins::PluginRunState::Running) => {}
            state => self.printer.emit(
                format!("{name} is not running: {state:?} (save a fix to reload it)"),
                json!({"event": "state", "plugin": name, "state": format!("{state:?}")}),
            ),
        }
    }

    /// Waits until a watched file changed and the folder has been quiet for
    /// [`source::DEBOUNCE`]; false on `shutdown`.
    async fn wait_for_change(&mut self, shutdown: &CancellationToken) -> bool {
        loop {
            tokio::select! {
                () = tokio::time::sleep(source::POLL) => {}
                () = shutdown.cancelled() => return false,
            }
            let now = source::fingerprint(&self.dir);
            if now == self.seen {
                continue;
            }
            // Quiet for the debounce time: the save is complete.
            let mut last = now;
            loop {
                tokio::select! {
                    () = tokio::time::sleep(source::DEBOUNCE) => {}
                    () = shutdown.cancelled() => return false,
                }
                let again = source::fingerprint(&self.dir);
                if again == last {
                    self.seen = again;
                    return true;
                }
                last = again;
            }
        }
    }

    /// `--measure-reload`: see the `measure` module.
    async fn measure(
        &mut self,
        session: &Session,
        name: &str,
        runs: u32,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        self.printer.send_applied(tx);
        tokio::time::timeout(MEASURE_TIMEOUT, rx.recv())
            .await
            .context("no batch applied by the first version")?;
        let edit = measure::Edit::of(&self.dir)?;
        let mut times = Vec::new();
        let mut outcome = Ok(());
        for n in 1..=runs {
            let saved = edit.save(n)?;
            if !self.wait_for_change(shutdown).await {
                break;
            }
            let Some(sha) = self.rebuild(session, name).await else {
                outcome = Err(anyhow::anyhow!("run {n}: the build or reload failed"));
                break;
            };
            let reloaded = Instant::now();
            let applied = loop {
                match tokio::time::timeout(MEASURE_TIMEOUT, rx.recv()).await {
                    Ok(Some((version, at))) if version == sha && at >= reloaded => break Some(at),
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break None,
                }
            };
            let Some(applied) = applied else {
                outcome = Err(anyhow::anyhow!(
                    "run {n}: no batch from the reloaded version"
                ));
                break;
            };
            let took = applied - saved;
            times.push(took);
            self.printer.emit(
                format!("measure run {n}: save to first batch of {} in {} ms", short(&sha), took.as_millis()),
                json!({"event": "measure-run", "run": n, "sha256": sha, "ms": took.as_millis() as u64}),
            );
        }
        edit.restore()?;
        outcome?;
        let median = measure::median(&times);
        let language = streamhost_plugin_build::Language::of_folder(&self.dir)
            .map_or("prebuilt".to_string(), |l| format!("{l:?}").to_lowercase());
        self.printer.emit(
            format!(
                "measure: {name} ({language}) save to first batch applied by the reloaded version: median {} ms over {} runs",
                median.as_millis(),
                times.len()
            ),
            json!({"event": "measure", "plugin": name, "language": language, "runs": times.len(),
                   "median_ms": median.as_millis() as u64,
                   "ms": times.iter().map(|t| t.as_millis() as u64).collect::<Vec<_>>()}),
        );
        Ok(())
    }
}
