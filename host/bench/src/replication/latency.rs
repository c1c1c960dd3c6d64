//! Latency: a one-row append acknowledged and delivered to a reader's sink, p50/p99, against
//! one fsync of a small file and one SQLite commit.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use streamhost_proto::Token;
use streamhost_server::config::{ListenerConfig, ReaderConfig};
use streamhost_server::reader::{Batch, BatchSink, BoxFuture, Reader};

use super::fixtures::{BenchWriter, durable_sqlite, event_row, wait_for};
use super::ms;

/// Prints the latency rows of the table.
pub(crate) async fn latency() -> anyhow::Result<()> {
    let latency = bench_latency(500).await?;
    let fsync = fsync_latency(500)?;
    let commit = sqlite_commit_latency(500).await?;
    println!(
        "| one-row SQLite commit (sqlx, WAL, synchronous=FULL), p50 / p99 (ms) | {:.2} / {:.2} | {:.2} / {:.2} (fsync p50 / p99) | p50 {:+.2} ms over fsync |",
        ms(commit.0),
        ms(commit.1),
        ms(fsync.0),
        ms(fsync.1),
        ms(commit.0) - ms(fsync.0)
    );
    println!(
        "| append acknowledged, p50 / p99 (ms) | {:.2} / {:.2} | {:.2} / {:.2} (fsync p50 / p99) | p50 {:+.2} ms over fsync |",
        ms(latency.acked.0),
        ms(latency.acked.1),
        ms(fsync.0),
        ms(fsync.1),
        ms(latency.acked.0) - ms(fsync.0)
    );
    println!(
        "| write-to-delivery latency p50 / p99 (ms) | {:.2} / {:.2} | {:.2} / {:.2} (fsync p50 / p99) | p50 {:+.2} ms over fsync |",
        ms(latency.delivered.0),
        ms(latency.delivered.1),
        ms(fsync.0),
        ms(fsync.1),
        ms(latency.delivered.0) - ms(fsync.0)
    );
    Ok(())
}

/// A sink that records when each token was applied.
#[derive(Default)]
struct ArrivalSink {
    arrivals: Mutex<Vec<(Token, Instant)>>,
}

impl BatchSink for ArrivalSink {
    fn apply<'a>(
        &'a self,
        batches: &'a [Batch],
        _tx: &'a mut sqlx::SqliteConnection,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        let now = Instant::now();
        let mut arrivals = self.arrivals.lock().expect("arrivals lock");
        arrivals.extend(batches.iter().map(|b| (b.token, now)));
        Box::pin(async { Ok(()) })
    }
}

/// p50 and p99 of one-row appends: until the HTTP answer, and until the reader's sink.
struct Latency {
    acked: (Duration, Duration),
    delivered: (Duration, Duration),
}

/// `samples` one-row appends, each timed to its answer and to the reader's sink.
async fn bench_latency(samples: usize) -> anyhow::Result<Latency> {
    let writer = BenchWriter::start().await?;
    let dir = tempfile::tempdir()?;
    let sink = Arc::new(ArrivalSink::default());
    let config = ReaderConfig {
        writer: writer.writer.replication_addr().to_string(),
        writer_http: format!("http://{}", writer.writer.http_addr()),
        http: ListenerConfig::on(SocketAddr::from(([127, 0, 0, 1], 0))),
        data: dir.path().join("reader"),
        name: "latency".into(),
        ..ReaderConfig::default()
    };
    let reader = Reader::bind(config, Some(sink.clone()), writer.shutdown.clone()).await?;
    wait_for(Duration::from_secs(30), || {
        reader.status().stream("events", "master").is_some()
    })
    .await?;
    let client = writer.client();
    let mut latencies = Vec::with_capacity(samples);
    let mut acks = Vec::with_capacity(samples);
    for n in 0..samples {
        let body = Bytes::from(serde_json::to_vec(&[event_row(n)])?);
        let sent = Instant::now();
        let token = client.append("events", body, false).await?[0];
        acks.push(sent.elapsed());
        let arrived = loop {
            let found = sink
                .arrivals
                .lock()
                .expect("arrivals lock")
                .iter()
                .find(|(t, _)| *t == token)
                .map(|(_, at)| *at);
            if let Some(at) = found {
                break at;
            }
            anyhow::ensure!(
                sent.elapsed() < Duration::from_secs(10),
                "row {token} never arrived"
            );
            tokio::time::sleep(Duration::from_micros(50)).await;
        };
        latencies.push(arrived.saturating_duration_since(sent));
    }
    writer.shutdown.cancel();
    reader.join().await?;
    writer.stop().await?;
    Ok(Latency {
        acked: percentiles(acks),
        delivered: percentiles(latencies),
    })
}

/// p50 and p99 of `samples`.
fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.50), at(0.99))
}

/// p50/p99 of committing one row with sqlx into SQLite with the writer's pragmas: what the
/// database alone costs per durable append.
async fn sqlite_commit_latency(samples: usize) -> anyhow::Result<(Duration, Duration)> {
    let (_dir, pool) = durable_sqlite().await?;
    sqlx::query("CREATE TABLE t (token BIGINT PRIMARY KEY, row_json TEXT)")
        .execute(&pool)
        .await?;
    let text = event_row(0).to_string();
    let mut latencies = Vec::with_capacity(samples);
    for n in 0..samples {
        let started = Instant::now();
        sqlx::query("INSERT INTO t (token, row_json) VALUES (?, ?)")
            .bind(n as i64)
            .bind(&text)
            .execute(&pool)
            .await?;
        latencies.push(started.elapsed());
    }
    pool.close().await;
    Ok(percentiles(latencies))
}

/// p50/p99 of writing a few bytes to a file and fsyncing it, in the same folder kind.
fn fsync_latency(samples: usize) -> anyhow::Result<(Duration, Duration)> {
    use std::io::Write;
    let dir = tempfile::tempdir()?;
    let mut file = std::fs::File::create(dir.path().join("fsync"))?;
    let mut latencies = Vec::with_capacity(samples);
    for n in 0..samples {
        let started = Instant::now();
        file.write_all(format!("{n}\n").as_bytes())?;
        file.sync_data().context("fsync")?;
        latencies.push(started.elapsed());
    }
    Ok(percentiles(latencies))
}
