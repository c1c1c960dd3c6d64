//! `streamhost bench redis`: delivery over Redis pub/sub against TCP, in one process: rows/s
//! to 1 and 8 readers, and one-row append-to-reader latency p50/p99 (see BENCHMARKS.md).
//! Needs a Redis server (`--redis URL`, default `redis://127.0.0.1:6379`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::client::ApiClient;
use crate::config::{ReaderConfig, RedisConfig, WriterConfig};
use crate::reader::Reader;
use crate::writer::Writer;

/// Rows per append request in throughput runs.
const REQUEST_ROWS: usize = 500;
/// One-row appends timed for latency.
const LATENCY_SAMPLES: usize = 300;

/// How the readers follow the writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Tcp,
    Redis,
}

/// Prints the suite's Markdown table.
pub async fn run(redis_url: &str, rows: usize, runs: usize) -> anyhow::Result<()> {
    println!(
        "streamhost bench redis: Redis at {redis_url}, {rows} rows per run, median of {runs} runs\n"
    );
    if cfg!(debug_assertions) {
        println!("(debug build: these figures mean nothing; use `cargo run --release`)\n");
    }
    println!("| measurement | Redis mode | TCP mode | ratio |");
    println!("|---|---|---|---|");
    for readers in [1, 8] {
        let mut redis = Vec::new();
        let mut tcp = Vec::new();
        for _ in 0..runs {
            tcp.push(delivery(redis_url, Transport::Tcp, rows, readers).await?);
            redis.push(delivery(redis_url, Transport::Redis, rows, readers).await?);
        }
        let (redis, tcp) = (median(redis), median(tcp));
        println!(
            "| delivery to {readers} reader(s) (rows/s) | {redis:.0} | {tcp:.0} | {:.2} |",
            redis / tcp
        );
    }
    let redis = latency(redis_url, Transport::Redis).await?;
    let tcp = latency(redis_url, Transport::Tcp).await?;
    println!(
        "| append to reader, one row at a time (ms, p50 / p99 of {LATENCY_SAMPLES}) | {:.2} / {:.2} | {:.2} / {:.2} | {:.2} (p50) |",
        redis.0,
        redis.1,
        tcp.0,
        tcp.1,
        redis.0 / tcp.0
    );
    Ok(())
}

struct Setup {
    writer: Writer,
    readers: Vec<Reader>,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

async fn start(redis_url: &str, transport: Transport, readers: usize) -> anyhow::Result<Setup> {
    let dir = tempfile::tempdir()?;
    let shutdown = CancellationToken::new();
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    // A channel of its own, so runs never hear each other (pub/sub is global in Redis).
    let server_name = format!("bench-{:016x}", rand::random::<u64>());
    let redis = RedisConfig {
        url: redis_url.to_string(),
        ..RedisConfig::default()
    };
    let writer = Writer::bind(
        WriterConfig {
            http: loopback,
            replication: loopback,
            data: dir.path().join("writer"),
            server_name: server_name.clone(),
            redis: (transport == Transport::Redis).then(|| redis.clone()),
            ..WriterConfig::default()
        },
        shutdown.clone(),
    )
    .await?;
    let mut running = Vec::new();
    for n in 0..readers {
        let config = ReaderConfig {
            writer: writer.replication_addr().to_string(),
            writer_http: format!("http://{}", writer.http_addr()),
            http: loopback,
            data: dir.path().join(format!("reader-{n}")),
            name: format!("bench-{n}"),
            server_name: Some(server_name.clone()),
            redis: (transport == Transport::Redis).then(|| redis.clone()),
            ..ReaderConfig::default()
        };
        running.push(Reader::bind(config, None, shutdown.clone()).await?);
    }
    let setup = Setup {
        writer,
        readers: running,
        shutdown,
        _dir: dir,
    };
    // Every reader has seen the writer's first POSITION.
    setup
        .wait(|r| r.status().stream("events", "master").is_some())
        .await?;
    Ok(setup)
}

impl Setup {
    async fn wait(&self, done: impl Fn(&Reader) -> bool) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(300);
        while !self.readers.iter().all(&done) {
            anyhow::ensure!(Instant::now() < deadline, "the readers did not get there");
            tokio::time::sleep(Duration::from_micros(100)).await;
        }
        Ok(())
    }

    fn client(&self) -> ApiClient {
        ApiClient::new(format!("http://{}", self.writer.http_addr()))
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        for reader in self.readers {
            reader.join().await?;
        }
        self.writer.join().await
    }
}

fn reached(reader: &Reader, token: i64) -> bool {
    reader
        .status()
        .stream("events", "master")
        .is_some_and(|s| s.position.0 >= token)
}

/// Rows/s from the first append until every reader has applied the last row.
async fn delivery(
    redis_url: &str,
    transport: Transport,
    rows: usize,
    readers: usize,
) -> anyhow::Result<f64> {
    let setup = start(redis_url, transport, readers).await?;
    let client = setup.client();
    let bodies: Vec<Bytes> = (0..rows.div_ceil(REQUEST_ROWS))
        .map(|r| {
            let rows: Vec<serde_json::Value> = (0..REQUEST_ROWS)
                .map(|i| {
                    serde_json::json!([
                        "ev",
                        [format!("$e{}", r * REQUEST_ROWS + i), "!room:bench"]
                    ])
                })
                .collect();
            Bytes::from(serde_json::to_vec(&rows).expect("JSON"))
        })
        .collect();
    let total = bodies.len() * REQUEST_ROWS;
    let started = Instant::now();
    let mut last = 0;
    for body in bodies {
        last = client
            .append("events", body, false)
            .await?
            .last()
            .map_or(last, |t| t.0);
    }
    setup.wait(|r| reached(r, last)).await?;
    let rate = total as f64 / started.elapsed().as_secs_f64();
    setup.stop().await?;
    Ok(rate)
}

/// p50 and p99, in ms, from sending a one-row append to the reader having applied it.
async fn latency(redis_url: &str, transport: Transport) -> anyhow::Result<(f64, f64)> {
    let setup = start(redis_url, transport, 1).await?;
    let client = setup.client();
    let mut samples = Vec::with_capacity(LATENCY_SAMPLES);
    for n in 0..LATENCY_SAMPLES {
        let body = Bytes::from(format!("[[\"ev\",[\"$l{n}\",\"!room:bench\"]]]"));
        let sent = Instant::now();
        let token = client.append("events", body, false).await?[0].0;
        setup.wait(|r| reached(r, token)).await?;
        samples.push(sent.elapsed().as_secs_f64() * 1e3);
    }
    setup.stop().await?;
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Ok((at(0.5), at(0.99)))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
