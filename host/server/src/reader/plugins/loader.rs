//! Finding plugins in the plugins folder, loading them off the async threads, starting their
//! workers, reloading them (admin API or folder watcher) and the [`RowSource`] their `rows`
//! import reads through.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use streamhost_plugin_runtime::{
    Cursor, KvStore, Manifest, PluginFiles, PluginServices, PluginVersion, RowSource,
};
use streamhost_proto::{StreamName, Token};

use super::PluginHost;
use super::feed::Feed;
use super::slot::{Control, FailureReport, PluginRunState, PluginSlot};
use super::worker::Worker;
use crate::reader::catchup::CatchupSource;

/// Quiet time after the last change in the folder before reloading (a copy fires many events).
const WATCH_DEBOUNCE: Duration = Duration::from_millis(250);

/// Loads every plugin folder in `dir`; failures are reported on their slot and logged.
pub(super) async fn load_all(host: &Arc<PluginHost>, dir: &Path) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            tracing::error!(dir = %dir.display(), %error, "cannot read the plugins folder");
            return;
        }
    };
    let mut folders: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    folders.sort();
    for folder in folders {
        if let Err(error) = reload(host, folder.clone()).await {
            tracing::error!(folder = %folder.display(), %error, "plugin not loaded");
        }
    }
}

/// The plugin name a folder declares (its manifest's), or the folder's name.
fn declared_name(dir: &Path) -> String {
    Manifest::load_in(dir).map(|m| m.name).unwrap_or_else(|_| {
        dir.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    })
}

/// Loads (compiling off the async threads) the plugin in `dir` under its grant.
async fn load_version(host: &Arc<PluginHost>, dir: PathBuf) -> Result<Arc<PluginVersion>, String> {
    let runtime = host.runtime.clone();
    let grants = host.config.grants.clone();
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _in_span = span.enter();
        let files = PluginFiles::in_dir(&dir).map_err(|e| e.to_string())?;
        let manifest = Manifest::load_in(&dir).map_err(|e| e.to_string())?;
        let declared = &runtime.config().destinations;
        if let Some(missing) = manifest.push.iter().find(|d| !declared.contains_key(*d)) {
            return Err(format!(
                "plugin {} pushes to destination {missing:?}, which the reader does not \
                 declare (add [reader.destinations.{missing}])",
                manifest.name
            ));
        }
        let grant = grants.get(&manifest.name).cloned().unwrap_or_default();
        PluginVersion::load(&runtime, &files, &grant)
            .map(Arc::new)
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| format!("loading task failed: {e}"))?
}

/// Loads the plugin in `dir` and swaps it in (or starts it). Returns the running version's
/// sha256; on failure the old version, if any, keeps running and the failure is reported.
pub(super) async fn reload(host: &Arc<PluginHost>, dir: PathBuf) -> Result<String, String> {
    let name = declared_name(&dir);
    let slot = match host.slot(&name) {
        Some(slot) => slot,
        None => new_slot(host, &name, &dir).await?,
    };
    let version = match load_version(host, dir).await {
        Ok(version) => version,
        Err(message) => {
            let mut status = slot.status();
            status.reload_failures += 1;
            if status.version.is_none() {
                status.state = PluginRunState::Failed(message.clone());
            }
            drop(status);
            host.ctx.metrics.reloads.with(&[&name, "failed"]).inc();
            tracing::error!(plugin = %name, error = %message, "plugin failed to load");
            return Err(message);
        }
    };
    let sha = version.sha256().to_string();
    let (reply, answer) = tokio::sync::oneshot::channel();
    if slot.send(Control::Reload {
        version: version.clone(),
        reply,
    }) {
        return match answer.await {
            Ok(Ok(())) => Ok(sha),
            Ok(Err(message)) => Err(message),
            Err(_) => Err(format!("plugin {name} stopped during the reload")),
        };
    }
    start(host, &slot, version).await.map(|()| sha)
}

/// A slot for `name`, with its key-value store loaded from the database.
async fn new_slot(
    host: &Arc<PluginHost>,
    name: &str,
    dir: &Path,
) -> Result<Arc<PluginSlot>, String> {
    let entries = host
        .ctx
        .store
        .kv(name)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let limits = Manifest::load_in(dir)
        .ok()
        .and_then(|m| {
            host.config
                .grants
                .get(&m.name)
                .and_then(|g| g.limits.clone())
        })
        .unwrap_or_default();
    let rows: Arc<dyn RowSource> = Arc::new(CatchupRows {
        catchup: host.ctx.catchup.clone(),
        feed: host.ctx.feed.clone(),
        handle: host.ctx.handle.clone(),
    });
    let services = PluginServices::new(
        name,
        KvStore::with_entries(entries),
        limits.log_lines_per_second,
        Some(rows),
    );
    let slot = Arc::new(PluginSlot::new(
        name.to_string(),
        dir.to_path_buf(),
        services,
        host.config.queries.queue_depth,
    ));
    host.slots
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .insert(name.to_string(), slot.clone());
    Ok(slot)
}

/// Starts `version` on `slot`: a first instance initialised from the persisted cursors, then
/// the worker thread.
async fn start(
    host: &Arc<PluginHost>,
    slot: &Arc<PluginSlot>,
    version: Arc<PluginVersion>,
) -> Result<(), String> {
    let (cursors, runs) = host
        .ctx
        .store
        .cursors(slot.name())
        .await
        .map_err(|e| format!("{e:#}"))?;
    let resume_after: Vec<Cursor> = cursors
        .iter()
        .map(|((stream, instance), token)| Cursor {
            stream: stream.as_str().to_string(),
            instance: instance.as_str().to_string(),
            token: token.0,
        })
        .collect();
    let services = slot.services().clone();
    let first = version.clone();
    let span = tracing::Span::current();
    let started = tokio::task::spawn_blocking(move || {
        let _in_span = span.enter();
        let mut instance = first.instantiate(services.clone())?;
        instance.init(&resume_after)?;
        services.kv().stage();
        Ok(instance)
    })
    .await
    .map_err(|e| format!("starting task failed: {e}"))?;
    let instance = match started {
        Ok(instance) => instance,
        Err(failure) => {
            slot.services().kv().discard();
            let message = format!("init failed: {failure}");
            let mut status = slot.status();
            status.state = PluginRunState::Failed(message.clone());
            let report = FailureReport {
                at_ms: 0,
                plugin: slot.name().to_string(),
                version: version.sha256().to_string(),
                call: "init".into(),
                stream: None,
                instance: None,
                tokens: None,
                attempt: 1,
                duration_us: 0,
                failure,
                log_lines: slot.services().log().recent(),
                batch_file: None,
            };
            if let Some(observer) = host.ctx.observer.get() {
                observer.call_failed(&report);
            }
            status.report(report);
            tracing::error!(plugin = %slot.name(), error = %message, "plugin failed to start");
            return Err(message);
        }
    };
    let (tx, rx) = std::sync::mpsc::channel();
    slot.set_worker(Some(tx));
    {
        let mut status = slot.status();
        status.version = Some(version.clone());
        status.state = PluginRunState::Running;
        status.cursors = cursors.clone();
    }
    let worker = Worker::new(
        slot.clone(),
        host.ctx.clone(),
        version,
        instance,
        (cursors, runs),
        rx,
    );
    // The worker's log lines carry the span they were started in (the reader's name).
    let span = tracing::Span::current();
    let thread = std::thread::Builder::new()
        .name(format!("plugin-{}", slot.name()))
        .spawn(move || span.in_scope(|| worker.run()))
        .map_err(|e| format!("starting the plugin thread: {e}"))?;
    host.threads
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(thread);
    Ok(())
}

/// Watches `dir` and reloads a plugin folder after its files change.
pub(super) fn watch(host: Arc<PluginHost>, dir: PathBuf) -> anyhow::Result<()> {
    use notify::Watcher as _;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Reading a plugin (loading it) is an event too; only changes matter.
        if let Ok(event) = event
            && (event.kind.is_create() || event.kind.is_modify() || event.kind.is_remove())
        {
            for path in event.paths {
                let _ = tx.send(path);
            }
        }
    })?;
    watcher.watch(&dir, notify::RecursiveMode::Recursive)?;
    let shutdown = host.shutdown.clone();
    let span = tracing::Span::current();
    tokio::spawn(tracing::Instrument::instrument(
        async move {
            let _watcher = watcher;
            loop {
                let first = tokio::select! {
                    path = rx.recv() => match path { Some(p) => p, None => return },
                    () = shutdown.cancelled() => return,
                };
                let mut changed = HashSet::new();
                changed.extend(plugin_folder(&dir, &first));
                // Wait for the folder to go quiet.
                while let Ok(Some(path)) = tokio::time::timeout(WATCH_DEBOUNCE, rx.recv()).await {
                    changed.extend(plugin_folder(&dir, &path));
                }
                for folder in changed {
                    if !folder.join("plugin.toml").is_file() || unchanged(&host, &folder) {
                        continue;
                    }
                    match reload(&host, folder.clone()).await {
                        Ok(sha) => {
                            tracing::info!(folder = %folder.display(), %sha, "plugin folder changed; reloaded")
                        }
                        Err(error) => {
                            tracing::warn!(folder = %folder.display(), %error, "plugin folder changed; reload failed")
                        }
                    }
                }
            }
        },
        span,
    ));
    Ok(())
}

/// Whether the folder holds exactly the running version (same component, same manifest).
fn unchanged(host: &PluginHost, folder: &Path) -> bool {
    let Some(slot) = host.slot(&declared_name(folder)) else {
        return false;
    };
    let Some(running) = slot.status().version.clone() else {
        return false;
    };
    let Ok(files) = PluginFiles::in_dir(folder) else {
        return false;
    };
    let Ok((manifest, (), bytes)) = files.read(|_| Ok(((), u64::MAX))) else {
        return false;
    };
    streamhost_plugin_runtime::sha256_hex(&bytes) == running.sha256()
        && &manifest == running.manifest()
}

/// The plugin folder (a direct child of `dir`) that `path` is in.
fn plugin_folder(dir: &Path, path: &Path) -> Option<PathBuf> {
    let relative = path.strip_prefix(dir).ok()?;
    let first = relative.components().next()?;
    Some(dir.join(first))
}

/// The `rows` import's source: the writer's catch-up endpoint, up to the reader's position.
struct CatchupRows {
    catchup: Arc<dyn CatchupSource>,
    feed: Arc<Feed>,
    handle: tokio::runtime::Handle,
}

impl RowSource for CatchupRows {
    fn read(&self, stream: &str, from: i64, limit: u32) -> Result<Vec<(i64, String)>, String> {
        let name = StreamName::new(stream).map_err(|e| e.to_string())?;
        let upto = self.feed.position_of(stream);
        if Token(from) >= upto {
            return Ok(Vec::new());
        }
        let page = self
            .handle
            .block_on(self.catchup.fetch(&name, Token(from), upto))
            .map_err(|e| e.to_string())?;
        let mut rows: Vec<(i64, String)> = Vec::new();
        for (token, row) in page.updates {
            let over = rows.len() >= limit as usize;
            if over && rows.last().is_none_or(|(t, _)| *t != token.0) {
                break;
            }
            rows.push((token.0, row.as_str().to_string()));
        }
        Ok(rows)
    }
}
