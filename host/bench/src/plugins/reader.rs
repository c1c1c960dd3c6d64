//! `streamhost bench plugins`, the reader half: rows/s of a reader running the three example
//! plugins against the same reader without plugins (in one process), and the pause a hot
//! reload makes at its batch boundary.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use streamhost_server::client::ApiClient;
use streamhost_server::config::{ListenerConfig, PluginsConfig, ReaderConfig, WriterConfig};
use streamhost_server::reader::Reader;
use streamhost_server::writer::Writer;

/// The plugins the reader runs.
const PLUGINS: [&str; 3] = ["room-timeline", "notifier", "stream-stats"];
/// Rows per append request.
const REQUEST_ROWS: usize = 500;
/// Reloads measured for the cut-over pause.
const RELOADS: usize = 200;

/// Prints the reader figures as rows of the suite's Markdown table.
pub(super) async fn run(suite: &super::Suite) -> anyhow::Result<()> {
    let (config, _only) = plugin_config(suite)?;
    with_and_without(&config, suite.rows, suite.runs).await?;
    let pauses = reload_pauses(config).await?;
    println!(
        "| reload cut-over pause, notifier with snapshot (µs, p50 / p99 of {RELOADS} under writes) | {:.0} / {:.0} | – | – |",
        percentile(&pauses, 0.5),
        percentile(&pauses, 0.99)
    );
    Ok(())
}

/// Prints only the reader with the three plugins against the same reader without
/// (`streamhost bench plugin-reader`): `runs` alternating pairs, each pair's ratio, and the
/// medians.
pub(crate) async fn rates_only(suite: super::Suite) -> anyhow::Result<()> {
    let (config, _only) = plugin_config(&suite)?;
    println!("| measurement | with plugins | baseline | ratio |");
    println!("|---|---|---|---|");
    with_and_without(&config, suite.rows, suite.runs).await
}

/// `runs` alternating pairs of the reader without and with the plugins of `config`: prints
/// each pair (when more than one) and the medians as Markdown table rows. Besides rows/s,
/// the process's CPU time per row (writer, reader, plugins and client together, every
/// thread): on a shared machine it moves less than the rate, and the difference is what the
/// plugins cost.
async fn with_and_without(config: &PluginsConfig, rows: usize, runs: usize) -> anyhow::Result<()> {
    let mut with = Vec::new();
    let mut without = Vec::new();
    for run in 1..=runs {
        without.push(reader_rate(rows, None).await?);
        with.push(reader_rate(rows, Some(config.clone())).await?);
        if runs > 1 {
            let (w, wo) = (&with[run - 1], &without[run - 1]);
            println!(
                "| pair {run}: reader rows/s with {} plugins / without (CPU µs per row) | {:.0} ({:.2}) | {:.0} ({:.2}) | {:.2} |",
                PLUGINS.len(),
                w.rate,
                w.cpu_us,
                wo.rate,
                wo.cpu_us,
                w.rate / wo.rate
            );
        }
    }
    let ratios = with.iter().zip(&without).map(|(w, wo)| w.rate / wo.rate);
    let ratio = median(ratios.collect());
    let (cpu_with, cpu_without) = (
        median(with.iter().map(|r| r.cpu_us).collect()),
        median(without.iter().map(|r| r.cpu_us).collect()),
    );
    let (with, without) = (
        median(with.iter().map(|r| r.rate).collect()),
        median(without.iter().map(|r| r.rate).collect()),
    );
    println!(
        "| reader rows/s with {} plugins loaded (until every plugin's cursor is at the end) | {with:.0} | {without:.0} (the same reader, no plugins) | {ratio:.2} (median of the pairs' ratios) |",
        PLUGINS.len(),
    );
    println!(
        "| process CPU µs per row, same runs (writer, reader, plugins, client) | {cpu_with:.2} | {cpu_without:.2} | {:.2} (the plugins: {:.2} µs per row) |",
        cpu_with / cpu_without,
        cpu_with - cpu_without
    );
    Ok(())
}

/// The example plugins of `dir`, each granted what it asks for.
/// The folder holds other plugins too (`membership`, the Python and JavaScript twins): the
/// reader gets a copy holding only [`PLUGINS`], which lives as long as the returned folder.
fn plugin_config(suite: &super::Suite) -> anyhow::Result<(PluginsConfig, tempfile::TempDir)> {
    let dir = &suite.plugins;
    let only = tempfile::tempdir()?;
    let mut config = PluginsConfig {
        dir: Some(only.path().to_path_buf()),
        watch: false,
        perf_map: suite.perf_map,
        ..PluginsConfig::default()
    };
    for name in PLUGINS {
        let copy = only.path().join(name);
        std::fs::create_dir(&copy)?;
        for file in std::fs::read_dir(dir.join(name))? {
            let file = file?;
            std::fs::copy(file.path(), copy.join(file.file_name()))?;
        }
        let manifest = streamhost_plugin_runtime::Manifest::load(&copy.join("plugin.toml"))?;
        config.grants.insert(
            manifest.name.clone(),
            streamhost_plugin_runtime::Grant::everything_asked(&manifest)?,
        );
    }
    Ok((config, only))
}

struct Setup {
    writer: Writer,
    reader: Reader,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

async fn start(plugins: Option<PluginsConfig>) -> anyhow::Result<Setup> {
    let dir = tempfile::tempdir()?;
    let shutdown = CancellationToken::new();
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let writer = Writer::bind(
        WriterConfig {
            http: ListenerConfig::on(loopback),
            replication: ListenerConfig::on(loopback),
            data: dir.path().join("writer"),
            streams: vec!["messages".into()],
            ..WriterConfig::default()
        },
        shutdown.clone(),
    )
    .await?;
    let mut config = ReaderConfig {
        writer: writer.replication_addr().to_string(),
        writer_http: format!("http://{}", writer.http_addr()),
        http: ListenerConfig::on(loopback),
        data: dir.path().join("reader"),
        name: "bench".into(),
        ..ReaderConfig::default()
    };
    if let Some(plugins) = plugins {
        let mut plugins = plugins;
        plugins.compile_cache = Some(dir.path().join("compiled"));
        config.plugins = plugins;
    }
    let reader = Reader::bind(config, None, shutdown.clone()).await?;
    Ok(Setup {
        writer,
        reader,
        shutdown,
        _dir: dir,
    })
}

impl Setup {
    async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.reader.join().await?;
        self.writer.join().await
    }

    /// Whether the reader, and every plugin, has applied up to `token`.
    fn caught_up(&self, token: i64) -> bool {
        let reader = self
            .reader
            .status()
            .stream("messages", "master")
            .is_some_and(|s| s.position.0 >= token);
        let plugins = self.reader.plugins().is_none_or(|host| {
            host.slots()
                .iter()
                .all(|slot| slot.cursor_of("messages").0 >= token)
        });
        reader && plugins
    }
}

fn bodies(rows: usize) -> Vec<Bytes> {
    (0..rows.div_ceil(REQUEST_ROWS))
        .map(|r| {
            let rows: Vec<serde_json::Value> = (0..REQUEST_ROWS)
                .map(|i| {
                    let n = r * REQUEST_ROWS + i;
                    serde_json::json!({"room": format!("!r{}:bench", n % 100), "sender": format!("@u{}:bench", n % 50), "body": format!("hello {n}"), "mentions": [format!("@u{}:bench", (n + 1) % 50)]})
                })
                .collect();
            Bytes::from(serde_json::to_vec(&rows).expect("JSON"))
        })
        .collect()
}

/// One run of [`reader_rate`].
struct Rate {
    /// Rows per second.
    rate: f64,
    /// The process's CPU time per row, µs.
    cpu_us: f64,
}

/// The CPU time all of the process's threads have used.
fn process_cpu() -> Duration {
    let time = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(time.tv_sec as u64, time.tv_nsec as u32)
}

/// Rows/s from the first append until the reader (and its plugins) applied the last row,
/// and the process's CPU time per row meanwhile.
async fn reader_rate(rows: usize, plugins: Option<PluginsConfig>) -> anyhow::Result<Rate> {
    let setup = start(plugins).await?;
    let client = ApiClient::new(format!("http://{}", setup.writer.http_addr()));
    let bodies = bodies(rows);
    let total = bodies.len() * REQUEST_ROWS;
    let started = Instant::now();
    let cpu_before = process_cpu();
    let mut last = 0;
    for body in bodies {
        let tokens = client.append("messages", body, false).await?;
        last = tokens.last().map_or(last, |t| t.0);
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while !setup.caught_up(last) {
        anyhow::ensure!(Instant::now() < deadline, "the reader did not catch up");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    let cpu_us = (process_cpu() - cpu_before).as_secs_f64() * 1e6 / total as f64;
    setup.stop().await?;
    Ok(Rate { rate, cpu_us })
}

/// Reloads notifier [`RELOADS`] times while rows keep arriving; the pauses in µs.
async fn reload_pauses(plugins: PluginsConfig) -> anyhow::Result<Vec<f64>> {
    let setup = start(Some(plugins)).await?;
    let client = ApiClient::new(format!("http://{}", setup.writer.http_addr()));
    let stop = CancellationToken::new();
    let writing = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.is_cancelled() {
                let body = Bytes::from(format!(
                    "[{{\"room\":\"!r{}:bench\",\"sender\":\"@u:bench\",\"body\":\"m{n}\"}}]",
                    n % 10
                ));
                let _ = client.append("messages", body, false).await;
                n += 1;
            }
        })
    };
    let host = Arc::clone(setup.reader.plugins().expect("plugins run"));
    for _ in 0..RELOADS {
        host.reload("notifier").await.map_err(anyhow::Error::msg)?;
    }
    stop.cancel();
    writing.await?;
    let slot = host.slot("notifier").expect("notifier runs");
    let pauses: Vec<f64> = slot
        .cutover_pauses()
        .iter()
        .map(|p| p.as_secs_f64() * 1e6)
        .collect();
    setup.stop().await?;
    Ok(pauses)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn percentile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted
        .get(((sorted.len() as f64 - 1.0) * q).round() as usize)
        .copied()
        .unwrap_or(0.0)
}
