//! `streamhost bench pushes`: the outbox's throughput (pushes/s from the writer's append,
//! through the `webhook` plugin's commit to the outbox, to a local receiver that answers 200
//! at once) and what pushing costs a reader's rows/s: the same reader and plugin, once pushing
//! every row, once with a filter that matches no row (the plugin runs, nothing is pushed).
//! Median of `runs` runs of each.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use streamhost_server::client::ApiClient;
use streamhost_server::config::{
    DestinationConfig, ListenerConfig, PluginsConfig, ReaderConfig, WriterConfig,
};
use streamhost_server::reader::Reader;
use streamhost_server::writer::Writer;

/// Rows per append request.
const REQUEST_ROWS: usize = 500;
/// Pushes in flight per destination.
const CONCURRENCY: usize = 16;

/// Prints the suite's Markdown table.
pub(crate) async fn run(plugins: &Path, rows: usize, runs: usize) -> anyhow::Result<()> {
    let mut delivered = Vec::new();
    let mut pushing = Vec::new();
    let mut silent = Vec::new();
    for _ in 0..runs {
        let (applied, sent) = measure(plugins, rows, true).await?;
        pushing.push(applied);
        delivered.push(sent);
        silent.push(measure(plugins, rows, false).await?.0);
    }
    let (delivered, pushing, silent) = (median(delivered), median(pushing), median(silent));
    println!("\n{rows} rows, one push per row, median of {runs} runs, concurrency {CONCURRENCY}\n");
    println!("| measure | Streamhost | baseline | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| outbox throughput: pushes/s from the first append until the receiver had every push | {delivered:.0} | – | – |"
    );
    println!(
        "| reader rows/s, webhook pushing every row (until its cursor is at the end) | {pushing:.0} | {silent:.0} (webhook with a filter no row passes) | {:.2} |",
        pushing / silent
    );
    Ok(())
}

/// One run: the reader's rows/s (until the plugin's cursor reached the last row) and the
/// pushes/s (until the receiver had them all; 0 when `push` is false).
async fn measure(plugins: &Path, rows: usize, push: bool) -> anyhow::Result<(f64, f64)> {
    let received = Arc::new(AtomicU64::new(0));
    let shutdown = CancellationToken::new();
    let receiver = serve(received.clone(), shutdown.clone()).await?;
    let dir = tempfile::tempdir()?;
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
        plugins: webhook(plugins, dir.path(), push)?,
        ..ReaderConfig::default()
    };
    config.destinations.insert(
        "webhook".into(),
        DestinationConfig {
            url: format!("http://{receiver}/push"),
            concurrency: CONCURRENCY,
            ..DestinationConfig::default()
        },
    );
    let reader = Reader::bind(config, None, shutdown.clone()).await?;
    let client = ApiClient::new(format!("http://{}", writer.http_addr()));
    let total = rows.div_ceil(REQUEST_ROWS) * REQUEST_ROWS;
    let started = Instant::now();
    let mut last = 0;
    for r in 0..total / REQUEST_ROWS {
        let body: Vec<serde_json::Value> = (0..REQUEST_ROWS)
            .map(|i| serde_json::json!({"n": r * REQUEST_ROWS + i, "body": "hello"}))
            .collect();
        let tokens = client
            .append("messages", Bytes::from(serde_json::to_vec(&body)?), false)
            .await?;
        last = tokens.last().map_or(last, |t| t.0);
    }
    let host = reader.plugins().expect("the webhook runs").clone();
    let slot = host.slot("webhook").expect("the webhook runs");
    let deadline = Instant::now() + Duration::from_secs(600);
    while slot.cursor_of("messages").0 < last {
        anyhow::ensure!(Instant::now() < deadline, "the plugin did not catch up");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let applied = total as f64 / started.elapsed().as_secs_f64();
    let mut sent = 0.0;
    if push {
        while received.load(Ordering::Relaxed) < total as u64 {
            anyhow::ensure!(Instant::now() < deadline, "the pushes did not all arrive");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        sent = total as f64 / started.elapsed().as_secs_f64();
    }
    shutdown.cancel();
    reader.join().await?;
    writer.join().await?;
    Ok((applied, sent))
}

/// `webhook` alone in a folder, granted `push = ["webhook"]`; with `push` false its filter
/// passes no row.
fn webhook(plugins: &Path, dir: &Path, push: bool) -> anyhow::Result<PluginsConfig> {
    let folder = dir.join("plugins");
    let copy = folder.join("webhook");
    std::fs::create_dir_all(&copy)?;
    for file in std::fs::read_dir(plugins.join("webhook"))? {
        let file = file?;
        std::fs::copy(file.path(), copy.join(file.file_name()))?;
    }
    let manifest = streamhost_plugin_runtime::Manifest::load(&copy.join("plugin.toml"))?;
    let mut grant = streamhost_plugin_runtime::Grant::everything_asked(&manifest)?;
    if !push {
        grant.config = Some(toml::from_str("field = \"body\"\nequals = \"never\"\n")?);
    }
    let mut config = PluginsConfig {
        dir: Some(folder),
        watch: false,
        compile_cache: Some(dir.join("compiled")),
        ..PluginsConfig::default()
    };
    config.grants.insert(manifest.name, grant);
    Ok(config)
}

/// A receiver that answers every request 200 at once and counts them.
async fn serve(count: Arc<AtomicU64>, shutdown: CancellationToken) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                accepted = listener.accept() => if let Ok((socket, _)) = accepted {
                    tokio::spawn(answer(socket, count.clone()));
                }
            }
        }
    });
    Ok(addr)
}

/// Answers each HTTP/1.1 request on `socket` (headers, then `content-length` bytes) with an
/// empty 200.
async fn answer(mut socket: TcpStream, count: Arc<AtomicU64>) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        while let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buffer.len() < end + 4 + length {
                break;
            }
            buffer.drain(..end + 4 + length);
            count.fetch_add(1, Ordering::Relaxed);
            if socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await
                .is_err()
            {
                return;
            }
        }
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
