//! The demo's processes in one: a writer and two readers on a temporary folder, the plugins
//! they load, and how they are stopped.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use streamhost_server::config::{ListenerConfig, PluginsConfig, ReaderConfig, WriterConfig};
use streamhost_server::reader::Reader;
use streamhost_server::reader::plugins::PluginRunState;
use streamhost_server::writer::Writer;
use tokio_util::sync::CancellationToken;

use super::status::{lag, rows_applied};
use super::{SHOWN_ROOM, STREAMS};

/// The writer, the two readers, and what they were started with.
pub(super) struct Cluster {
    pub(super) writer: Writer,
    pub(super) readers: Vec<Reader>,
    /// Cancelled to stop the writer and the readers.
    services: CancellationToken,
    /// The plugins both readers load, if any.
    plugins: Option<PluginsConfig>,
    /// Bearer token of the readers' plugin admin API.
    admin_token: String,
}

impl Cluster {
    /// Starts the writer and two readers with their data in `dir`, the readers loading the
    /// plugins of `plugins` if given.
    pub(super) async fn start(dir: &Path, plugins: Option<&Path>) -> anyhow::Result<Cluster> {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let services = CancellationToken::new();

        let writer_config = WriterConfig {
            http: ListenerConfig::on(loopback),
            replication: ListenerConfig::on(loopback),
            data: dir.join("writer"),
            streams: STREAMS.iter().map(|s| s.to_string()).collect(),
            server_name: "demo.streamhost".into(),
            ..WriterConfig::default()
        };
        let writer = Writer::bind(writer_config, services.clone()).await?;
        let writer_url = format!("http://{}", writer.http_addr());
        let plugins = match plugins {
            Some(dir) => Some(demo_plugins(dir)?),
            None => None,
        };
        let admin_token = format!("demo-{:016x}", rand::random::<u64>());
        let mut readers = Vec::new();
        for n in 1..=2 {
            let mut config = ReaderConfig {
                writer: writer.replication_addr().to_string(),
                writer_http: writer_url.clone(),
                http: ListenerConfig::on(loopback),
                data: dir.join(format!("reader-{n}")),
                name: format!("reader-{n}"),
                server_name: Some("demo.streamhost".into()),
                ..ReaderConfig::default()
            };
            if let Some(plugins) = &plugins {
                config.plugins = plugins.clone();
                config.plugins.admin_token = Some(admin_token.as_str().into());
            }
            readers.push(Reader::bind(config, None, services.clone()).await?);
        }
        Ok(Cluster {
            writer,
            readers,
            services,
            plugins,
            admin_token,
        })
    }

    /// Whether the readers load plugins.
    pub(super) fn has_plugins(&self) -> bool {
        self.plugins.is_some()
    }

    /// The writer's HTTP API.
    pub(super) fn writer_url(&self) -> String {
        format!("http://{}", self.writer.http_addr())
    }

    /// What runs where, where the log goes, and what to try.
    pub(super) fn print_banner(&self, dir: &Path, log: &Path, verbose: bool) {
        println!("streamhost demo: data in {}", dir.display());
        println!(
            "  logs    {}{}",
            log.display(),
            if verbose { " and stderr" } else { "" }
        );
        println!(
            "  writer  http://{}  replication {}",
            self.writer.http_addr(),
            self.writer.replication_addr()
        );
        // The writer runs without a read token here, so its console needs none.
        println!("  console http://{}/console", self.writer.http_addr());
        for reader in &self.readers {
            println!("  reader  http://{}/v1/status", reader.http_addr());
            match self.plugins.is_some() {
                true => println!(
                    "  console http://{}/console#token={}",
                    reader.http_addr(),
                    self.admin_token
                ),
                false => println!("  console http://{}/console", reader.http_addr()),
            }
        }
        println!(
            "  try: streamhost tail --connect {}    (Ctrl-C stops the demo)",
            self.writer.replication_addr()
        );
        let Some(plugins) = &self.plugins else {
            println!(
                "  (no plugins: run scripts/demo, or pass --plugins DIR after scripts/build-plugins)"
            );
            return;
        };
        let names: Vec<&String> = plugins.grants.keys().collect();
        let first = self.readers[0].http_addr();
        let admin_token = &self.admin_token;
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
            "       STREAMHOST_ADMIN_TOKEN={admin_token} streamhost admin plugins --url http://{first}"
        );
    }

    /// Waits (up to 5 s) until every reader has applied `total` rows.
    ///
    /// The readers started before the traffic, so each has applied every row once it has
    /// applied as many rows as were acknowledged.
    pub(super) async fn drain(&self, total: u64) {
        let drain_deadline = Instant::now() + Duration::from_secs(5);
        while self
            .readers
            .iter()
            .any(|r| rows_applied(&r.status()) < total)
            && Instant::now() < drain_deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The plugins not running, one description each (a plugin that is not running at the
    /// end is a failed demo: CI runs it).
    pub(super) fn broken_plugins(&self) -> Vec<String> {
        let mut broken = Vec::new();
        for reader in &self.readers {
            for slot in reader.plugins().map(|h| h.slots()).unwrap_or_default() {
                let state = slot.run_state();
                if state != PluginRunState::Running {
                    broken.push(format!(
                        "{} on {}: {state:?}",
                        slot.name(),
                        reader.status().name
                    ));
                }
            }
        }
        broken
    }

    /// Stops the readers and the writer, printing what each reader applied.
    pub(super) async fn stop(self) -> anyhow::Result<()> {
        self.services.cancel();
        for reader in self.readers {
            let status = reader.status();
            println!(
                "{}: {} rows applied, lag {} at exit",
                status.name,
                rows_applied(&status),
                lag(&status)
            );
            reader.join().await?;
        }
        self.writer.join().await
    }
}

/// Plugin settings for the demo: every sub-folder of `dir` with a `plugin.toml`, granted what
/// it asks for (a real deployment grants explicitly, see `docs/plugins.md`).
pub(crate) fn demo_plugins(dir: &Path) -> anyhow::Result<PluginsConfig> {
    let mut config = PluginsConfig {
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
