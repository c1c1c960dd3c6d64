//! `streamhost bench redis`: delivery over Redis pub/sub against TCP, in one process: rows/s
//! to 1 and 8 readers, and one-row append-to-reader latency p50/p99 (see BENCHMARKS.md).
//! Needs a Redis server (`--redis URL`, default `redis://127.0.0.1:6379`). With `--redis-tls
//! URL` (and its CA and client certificate, as `scripts/bench-redis-tls` sets up) each figure
//! is also taken over TLS, against plain Redis on the same server.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use streamhost_server::client::ApiClient;
use streamhost_server::config::{ListenerConfig, ReaderConfig, RedisConfig, WriterConfig};
use streamhost_server::reader::Reader;
use streamhost_server::writer::Writer;

/// Rows per append request in throughput runs.
const REQUEST_ROWS: usize = 500;
/// One-row appends timed for latency.
const LATENCY_SAMPLES: usize = 300;

/// How the readers follow the writer: TCP, or Redis with this configuration (plain or TLS).
#[derive(Clone, Debug)]
enum Transport {
    Tcp,
    Redis(RedisConfig),
}

/// Prints the suite's Markdown table: Redis against TCP, and with `tls` TLS Redis against
/// plain Redis (`redis` should then be the same server's plain port).
pub(crate) async fn run(
    redis: RedisConfig,
    tls: Option<RedisConfig>,
    rows: usize,
    runs: usize,
) -> anyhow::Result<()> {
    let with_tls = tls
        .as_ref()
        .map(|t| format!(", TLS Redis at {}", t.url.redacted()))
        .unwrap_or_default();
    println!(
        "streamhost bench redis: Redis at {}{with_tls}, {rows} rows per run, median of {runs} runs\n",
        redis.url.redacted()
    );
    if cfg!(debug_assertions) {
        println!("(debug build: these figures mean nothing; use `cargo run --release`)\n");
    }
    let mut transports = vec![Transport::Redis(redis), Transport::Tcp];
    transports.extend(tls.map(Transport::Redis));
    if transports.len() == 3 {
        println!(
            "| measurement | Redis mode | TCP mode | Redis / TCP | TLS Redis | TLS / plain Redis |"
        );
        println!("|---|---|---|---|---|---|");
    } else {
        println!("| measurement | Redis mode | TCP mode | Redis / TCP |");
        println!("|---|---|---|---|");
    }
    for readers in [1, 8] {
        let mut rates = vec![Vec::new(); transports.len()];
        for _ in 0..runs {
            for (transport, rates) in transports.iter().zip(&mut rates) {
                rates.push(delivery(transport, rows, readers).await?);
            }
        }
        let rates: Vec<f64> = rates.into_iter().map(median).collect();
        let mut line = format!(
            "| delivery to {readers} reader(s) (rows/s) | {:.0} | {:.0} | {:.2} |",
            rates[0],
            rates[1],
            rates[0] / rates[1]
        );
        if let Some(tls) = rates.get(2) {
            line += &format!(" {tls:.0} | {:.2} |", tls / rates[0]);
        }
        println!("{line}");
    }
    let mut latencies = Vec::new();
    for transport in &transports {
        latencies.push(latency(transport).await?);
    }
    let (redis, tcp) = (latencies[0], latencies[1]);
    let mut line = format!(
        "| append to reader, one row at a time (ms, p50 / p99 of {LATENCY_SAMPLES}) | {:.2} / {:.2} | {:.2} / {:.2} | {:.2} (p50) |",
        redis.0,
        redis.1,
        tcp.0,
        tcp.1,
        redis.0 / tcp.0
    );
    if let Some(tls) = latencies.get(2) {
        line += &format!(
            " {:.2} / {:.2} | {:.2} (p50) |",
            tls.0,
            tls.1,
            tls.0 / redis.0
        );
    }
    println!("{line}");
    Ok(())
}

struct Setup {
    writer: Writer,
    readers: Vec<Reader>,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

async fn start(transport: &Transport, readers: usize) -> anyhow::Result<Setup> {
    let dir = tempfile::tempdir()?;
    let shutdown = CancellationToken::new();
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    // A channel of its own, so runs never hear each other (pub/sub is global in Redis).
    let server_name = format!("bench-{:016x}", rand::random::<u64>());
    let redis = match transport {
        Transport::Redis(config) => Some(config.clone()),
        Transport::Tcp => None,
    };
    let writer = Writer::bind(
        WriterConfig {
            http: ListenerConfig::on(loopback),
            replication: ListenerConfig::on(loopback),
            data: dir.path().join("writer"),
            server_name: server_name.clone(),
            redis: redis.clone(),
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
            http: ListenerConfig::on(loopback),
            data: dir.path().join(format!("reader-{n}")),
            name: format!("bench-{n}"),
            server_name: Some(server_name.clone()),
            redis: redis.clone(),
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
async fn delivery(transport: &Transport, rows: usize, readers: usize) -> anyhow::Result<f64> {
    let setup = start(transport, readers).await?;
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
async fn latency(transport: &Transport) -> anyhow::Result<(f64, f64)> {
    let setup = start(transport, 1).await?;
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
