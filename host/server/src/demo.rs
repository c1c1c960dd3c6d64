//! `streamhost demo`: a writer, two readers and a traffic generator in one process on a
//! temporary SQLite file, with a status line each second. Ctrl-C (or `--duration`) stops it.
//!
//! With `--plugins DIR` (as `scripts/demo` passes, after `scripts/build-plugins`) both readers
//! load the plugins of `DIR`, each granted what its `plugin.toml` asks for, and every second
//! the demo shows a cached read and the notifications it received. `DIR` is watched: replace
//! a plugin's files and the readers hot-reload it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::client::ApiClient;
use crate::config::{ReaderConfig, WriterConfig};
use crate::reader::{Reader, ReaderStatus};
use crate::writer::Writer;

/// The demo's streams: Synapse-like event, receipt and typing rows, and chat messages for the
/// example plugins.
const STREAMS: [&str; 4] = ["events", "receipts", "typing", "messages"];

/// The room whose cached timeline and notifications the demo shows.
const SHOWN_ROOM: &str = "!room0:demo.streamhost";

/// Flags of `streamhost demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<u64>,
    /// Rows per second the generator writes.
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
}

/// Runs the demo until `shutdown` or the duration ends.
pub async fn run(args: DemoArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.rate > 0 && args.batch > 0,
        "--rate and --batch must be positive"
    );
    let dir = tempfile::tempdir().context("creating a temporary folder")?;
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let services = CancellationToken::new();

    let writer_config = WriterConfig {
        http: loopback,
        replication: loopback,
        data: dir.path().join("writer"),
        streams: STREAMS.iter().map(|s| s.to_string()).collect(),
        server_name: "demo.streamhost".into(),
        ..WriterConfig::default()
    };
    let writer = Writer::bind(writer_config, services.clone()).await?;
    let writer_url = format!("http://{}", writer.http_addr());
    let plugins = match &args.plugins {
        Some(dir) => Some(demo_plugins(dir)?),
        None => None,
    };
    let admin_token = format!("demo-{:016x}", rand::random::<u64>());
    let mut readers = Vec::new();
    for n in 1..=2 {
        let mut config = ReaderConfig {
            writer: writer.replication_addr().to_string(),
            writer_http: writer_url.clone(),
            http: loopback,
            data: dir.path().join(format!("reader-{n}")),
            name: format!("reader-{n}"),
            server_name: Some("demo.streamhost".into()),
            ..ReaderConfig::default()
        };
        if let Some(plugins) = &plugins {
            config.plugins = plugins.clone();
            config.plugins.admin_token = Some(admin_token.clone());
        }
        readers.push(Reader::bind(config, None, services.clone()).await?);
    }
    println!("streamhost demo: data in {}", dir.path().display());
    println!(
        "  writer  http://{}  replication {}",
        writer.http_addr(),
        writer.replication_addr()
    );
    for reader in &readers {
        println!("  reader  http://{}/v1/status", reader.http_addr());
    }
    println!(
        "  try: streamhost tail --connect {}    (Ctrl-C stops the demo)",
        writer.replication_addr()
    );
    if let Some(plugins) = &plugins {
        let names: Vec<&String> = plugins.grants.keys().collect();
        let first = readers[0].http_addr();
        println!(
            "  plugins from {} on both readers: {names:?} (replace their files to hot-reload)",
            plugins
                .dir
                .as_ref()
                .map_or(String::new(), |d| d.display().to_string())
        );
        println!("  try: curl 'http://{first}/v1/query/room-timeline/timeline?room={SHOWN_ROOM}'");
        println!(
            "       curl -N 'http://{first}/v1/notifications/stream?topics=room:{SHOWN_ROOM}'"
        );
        println!(
            "       curl -H 'Authorization: Bearer {admin_token}' http://{first}/v1/admin/plugins"
        );
    } else {
        println!(
            "  (no plugins: run scripts/demo, or pass --plugins DIR after scripts/build-plugins)"
        );
    }
    let watcher = plugins
        .as_ref()
        .map(|_| PluginView::new(readers[0].http_addr()));

    let written = Arc::new(AtomicU64::new(0));
    let traffic = CancellationToken::new();
    let generator = tokio::spawn(generate(
        ApiClient::new(writer_url),
        args.rate,
        args.batch,
        written.clone(),
        traffic.clone(),
    ));

    let started = Instant::now();
    let deadline = args
        .duration
        .map(|secs| started + Duration::from_secs(secs));
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let mut last_written = 0;
    let mut last_applied = vec![0u64; readers.len()];
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.cancelled() => break,
        }
        let now_written = written.load(Ordering::Relaxed);
        let mut line = format!(
            "[{:>4}s] written {:>6} rows/s ({} total)",
            started.elapsed().as_secs(),
            now_written - last_written,
            now_written
        );
        last_written = now_written;
        for (reader, last) in readers.iter().zip(last_applied.iter_mut()) {
            let status = reader.status();
            let applied = rows_applied(&status);
            line.push_str(&format!(
                " | {}: {:>6} rows/s, lag {}, {}",
                status.name,
                applied - *last,
                lag(&status),
                connection_word(&status)
            ));
            *last = applied;
        }
        println!("{line}");
        if let Some(view) = &watcher {
            println!("{}", view.line().await);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
    }

    // Stop the traffic, give the readers a moment to apply the last rows, then stop everything.
    traffic.cancel();
    let _ = generator.await;
    // The readers started before the traffic, so each has applied every row once it has
    // applied as many rows as were acknowledged.
    let total = written.load(Ordering::Relaxed);
    let drain_deadline = Instant::now() + Duration::from_secs(5);
    while readers.iter().any(|r| rows_applied(&r.status()) < total)
        && Instant::now() < drain_deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A plugin that is not running at the end is a failed demo (CI runs it).
    let mut broken = Vec::new();
    for reader in &readers {
        for slot in reader.plugins().map(|h| h.slots()).unwrap_or_default() {
            let state = slot.status().state.clone();
            if state != crate::reader::plugins::PluginRunState::Running {
                broken.push(format!(
                    "{} on {}: {state:?}",
                    slot.name(),
                    reader.status().name
                ));
            }
        }
    }
    services.cancel();
    for reader in readers {
        let status = reader.status();
        println!(
            "{}: {} rows applied, lag {} at exit",
            status.name,
            rows_applied(&status),
            lag(&status)
        );
        reader.join().await?;
    }
    writer.join().await?;
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

async fn generate(
    client: ApiClient,
    rate: u64,
    batch: u64,
    written: Arc<AtomicU64>,
    stop: CancellationToken,
) {
    let period = Duration::from_secs_f64(batch as f64 / rate as f64);
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stop.cancelled() => return,
        }
        let stream = STREAMS[(n % STREAMS.len() as u64) as usize];
        let rows: Vec<serde_json::Value> = (0..batch)
            .map(|i| demo_row(stream, n * batch + i))
            .collect();
        let body = Bytes::from(serde_json::to_vec(&rows).expect("JSON"));
        // Receipts of one request share a token, to show `batch` runs.
        match client.append(stream, body, stream == "receipts").await {
            Ok(tokens) => {
                written.fetch_add(tokens.len() as u64, Ordering::Relaxed);
            }
            Err(e) if stop.is_cancelled() => {
                tracing::debug!(error = %e, "append during shutdown");
                return;
            }
            Err(e) => tracing::warn!(error = %e, "demo append failed"),
        }
        n += 1;
    }
}

/// Plugin settings for the demo: every sub-folder of `dir` with a `plugin.toml`, granted what
/// it asks for (a real deployment grants explicitly, see `docs/plugins.md`).
fn demo_plugins(dir: &std::path::Path) -> anyhow::Result<crate::config::PluginsConfig> {
    let mut config = crate::config::PluginsConfig {
        dir: Some(dir.to_path_buf()),
        ..Default::default()
    };
    let entries = std::fs::read_dir(dir).with_context(|| {
        format!(
            "reading the plugins folder {} (run scripts/build-plugins)",
            dir.display()
        )
    })?;
    for entry in entries {
        let manifest = entry?.path().join("plugin.toml");
        if manifest.is_file() {
            let manifest = streamhost_plugin_runtime::Manifest::load(&manifest)?;
            let grant = streamhost_plugin_runtime::Grant::everything_asked(&manifest)?;
            config.grants.insert(manifest.name.clone(), grant);
        }
    }
    anyhow::ensure!(
        !config.grants.is_empty(),
        "no plugins in {} (run scripts/build-plugins)",
        dir.display()
    );
    Ok(config)
}

/// What the demo shows of the plugins each second: a cached read and new notifications.
struct PluginView {
    client: ApiClient,
    since: std::sync::atomic::AtomicU64,
}

impl PluginView {
    fn new(reader: SocketAddr) -> PluginView {
        PluginView {
            client: ApiClient::new(format!("http://{reader}")),
            since: AtomicU64::new(0),
        }
    }

    async fn line(&self) -> String {
        let path = format!("/v1/query/room-timeline/timeline?room={SHOWN_ROOM}");
        let timeline = match self.client.get_json(&path).await {
            Ok(serde_json::Value::Array(rows)) => format!(
                "{} messages, last {:?}",
                rows.len(),
                rows.last().and_then(|r| r["body"].as_str()).unwrap_or("-")
            ),
            Ok(other) => other.to_string(),
            Err(e) => format!("({e})"),
        };
        let count = self
            .client
            .get_json("/v1/query/stream-stats/count?stream=messages")
            .await
            .map_or_else(|e| format!("({e})"), |v| v.to_string());
        let since = self.since.load(Ordering::Relaxed);
        let path = format!("/v1/notifications?topics=room:{SHOWN_ROOM}&since={since}&timeout_ms=0");
        let notified = match self.client.get_json(&path).await {
            Ok(page) => {
                self.since
                    .store(page["next"].as_u64().unwrap_or(since), Ordering::Relaxed);
                let list = page["notifications"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                format!("{} new", list.len())
            }
            Err(e) => format!("({e})"),
        };
        format!(
            "        reader-1 plugins: timeline {SHOWN_ROOM}: {timeline} | messages counted {count} | notifications room:{SHOWN_ROOM}: {notified}"
        )
    }
}

/// A row shaped like Synapse's rows for `stream` (identifiers only, as Synapse sends), or a
/// chat message for `messages`.
fn demo_row(stream: &str, n: u64) -> serde_json::Value {
    let room = format!("!room{}:demo.streamhost", n % 7);
    let user = format!("@user{}:demo.streamhost", n % 13);
    match stream {
        "messages" => {
            let mentions: Vec<String> = if n.is_multiple_of(5) {
                vec![format!("@user{}:demo.streamhost", (n + 1) % 13)]
            } else {
                Vec::new()
            };
            serde_json::json!({"room": room, "sender": user, "body": format!("hello {n}"), "mentions": mentions})
        }
        "events" => serde_json::json!([
            "ev",
            [
                format!("$event{n}"),
                room,
                "m.room.message",
                null,
                null,
                null,
                null,
                false,
                false
            ]
        ]),
        "receipts" => {
            serde_json::json!([room, "m.read", user, format!("$event{n}"), null, {"ts": 1_700_000_000_000u64 + n}])
        }
        _ => serde_json::json!([room, [user]]),
    }
}

fn rows_applied(status: &ReaderStatus) -> u64 {
    status.streams.iter().map(|s| s.rows_applied).sum()
}

fn lag(status: &ReaderStatus) -> i64 {
    status.streams.iter().map(|s| s.lag).sum()
}

fn connection_word(status: &ReaderStatus) -> &'static str {
    match status.connection.state {
        crate::reader::ConnectionState::Connected => "connected",
        crate::reader::ConnectionState::Connecting => "connecting",
        crate::reader::ConnectionState::BackingOff => "reconnecting",
        crate::reader::ConnectionState::Stopped => "stopped",
    }
}
