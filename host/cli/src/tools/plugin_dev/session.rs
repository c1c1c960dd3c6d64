//! The local writer and reader `plugin dev` runs in-process (as the demo does), the reader
//! loading the one plugin from the dev plugins folder, and the traffic fed to the writer:
//! the demo's generator, or the rows of a capture file.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use anyhow::Context;
use bytes::Bytes;
use streamhost_server::client::ApiClient;
use streamhost_server::config::{ListenerConfig, ReaderConfig, WriterConfig};
use streamhost_server::reader::Reader;
use streamhost_server::reader::plugins::PluginHost;
use streamhost_server::writer::Writer;
use tokio_util::sync::CancellationToken;

use crate::tools::demo::{STREAMS, demo_plugins, traffic};

/// The dev writer and reader.
pub(super) struct Session {
    writer: Writer,
    reader: Reader,
    services: CancellationToken,
}

impl Session {
    /// Starts a writer declaring the demo's streams and `streams`, and a reader loading the
    /// plugins of `plugins` (each granted what it asks for) without watching the folder:
    /// `plugin dev` reloads them itself, to report each reload's result. Compiled components
    /// go to `compile_cache` (else the reader's data folder).
    pub(super) async fn start(
        data: &Path,
        plugins: &Path,
        streams: &BTreeSet<String>,
        compile_cache: Option<PathBuf>,
    ) -> anyhow::Result<Session> {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let services = CancellationToken::new();
        let mut declared: BTreeSet<String> = STREAMS.iter().map(|s| s.to_string()).collect();
        declared.extend(streams.iter().cloned());
        let writer = Writer::bind(
            WriterConfig {
                http: ListenerConfig::on(loopback),
                replication: ListenerConfig::on(loopback),
                data: data.join("writer"),
                streams: declared.into_iter().collect(),
                server_name: "demo.streamhost".into(),
                ..WriterConfig::default()
            },
            services.clone(),
        )
        .await?;
        let mut config = ReaderConfig {
            writer: writer.replication_addr().to_string(),
            writer_http: format!("http://{}", writer.http_addr()),
            http: ListenerConfig::on(loopback),
            data: data.join("reader"),
            name: "dev".into(),
            server_name: Some("demo.streamhost".into()),
            ..ReaderConfig::default()
        };
        config.plugins = demo_plugins(plugins)?;
        config.plugins.watch = false;
        config.plugins.compile_cache = compile_cache;
        let reader = Reader::bind(config, None, services.clone()).await?;
        Ok(Session {
            writer,
            reader,
            services,
        })
    }

    /// The reader's plugins.
    pub(super) fn plugins(&self) -> anyhow::Result<&Arc<PluginHost>> {
        self.reader
            .plugins()
            .context("the dev reader runs no plugins")
    }

    /// A client of the writer's HTTP API.
    pub(super) fn writer_client(&self) -> ApiClient {
        ApiClient::new(format!("http://{}", self.writer.http_addr()))
    }

    /// What the dev session runs on, for the banner.
    pub(super) fn banner(&self) -> String {
        format!(
            "writer http://{} | reader http://{}",
            self.writer.http_addr(),
            self.reader.http_addr()
        )
    }

    /// Starts the demo's generator at `rate` rows per second (an append each 25 ms when the
    /// rate allows, round-robin over the demo's four streams); it stops with the session.
    pub(super) fn generate(&self, rate: u64) {
        tokio::spawn(traffic::generate(
            self.writer_client(),
            rate,
            (rate / 40).max(1),
            Arc::new(AtomicU64::new(0)),
            self.services.clone(),
        ));
    }

    /// Stops the reader and the writer.
    pub(super) async fn stop(self) -> anyhow::Result<()> {
        self.services.cancel();
        self.reader.join().await?;
        self.writer.join().await
    }
}

/// The batches of a capture file (`RDATA` lines, raw or as `streamhost tail` and the capture
/// tools write them): (stream, rows as one JSON array), one per token.
pub(super) fn capture_batches(file: &Path) -> anyhow::Result<Vec<(String, Bytes)>> {
    let text = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let parsed = crate::tools::plugin_run::parse_input(&text)
        .with_context(|| format!("reading {}", file.display()))?;
    Ok(parsed
        .batches
        .into_iter()
        .map(|batch| {
            let rows: Vec<&str> = batch.rows.iter().map(|r| r.as_str()).collect();
            let body = format!("[{}]", rows.join(","));
            (batch.stream.as_str().to_string(), Bytes::from(body))
        })
        .collect())
}

/// Appends the capture's batches to the writer, one token each, in order.
pub(super) async fn replay(client: &ApiClient, batches: &[(String, Bytes)]) -> anyhow::Result<()> {
    for (stream, body) in batches {
        client
            .append(stream, body.clone(), true)
            .await
            .with_context(|| format!("appending the capture's rows to stream {stream}"))?;
    }
    Ok(())
}
