//! `streamhost demo`: a writer, two readers and a traffic generator in one process on a
//! temporary SQLite file, with a status line each second. Ctrl-C (or `--duration`) stops it.

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

/// The demo's streams: Synapse-like event, receipt and typing rows.
const STREAMS: [&str; 3] = ["events", "receipts", "typing"];

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
    let mut readers = Vec::new();
    for n in 1..=2 {
        let config = ReaderConfig {
            writer: writer.replication_addr().to_string(),
            writer_http: writer_url.clone(),
            http: loopback,
            data: dir.path().join(format!("reader-{n}")),
            name: format!("reader-{n}"),
            server_name: Some("demo.streamhost".into()),
            ..ReaderConfig::default()
        };
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

/// A row shaped like Synapse's rows for `stream` (identifiers only, as Synapse sends).
fn demo_row(stream: &str, n: u64) -> serde_json::Value {
    let room = format!("!room{}:demo.streamhost", n % 7);
    let user = format!("@user{}:demo.streamhost", n % 13);
    match stream {
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
