//! Delivery: rows/s from the first append to the last reader's position, to 1, 4 and 16
//! readers, against the append rate alone; and to 1 reader over TLS (mTLS) against the same
//! run in plain TCP, the two alternating run by run. Each row also says how many readers
//! reconnected during each run: a reader the writer gave up (`ERROR Failed to keep up`)
//! caught up over HTTP instead of streaming, which the figure must not be mistaken for.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use streamhost_server::config::{ClientTlsConfig, ListenerConfig, ReaderConfig};
use streamhost_server::reader::Reader;

use super::append::bench_append;
use super::certs::BenchCerts;
use super::fixtures::{BenchWriter, append_all, request_bodies, wait_for};
use super::{REQUEST_ROWS, median_of};

/// The delivery figures alone (the `delivery` suite), against a fresh append figure.
pub(crate) async fn delivery_alone(rows: usize, runs: usize) -> anyhow::Result<()> {
    let append = median_of(runs, || bench_append(rows)).await?;
    delivery(rows, runs, append).await
}

/// Prints the delivery rows of the table, against `append` rows/s.
pub(super) async fn delivery(rows: usize, runs: usize, append: f64) -> anyhow::Result<()> {
    for readers in [1, 4, 16] {
        let reconnected = std::cell::RefCell::new(Vec::with_capacity(runs));
        let delivery = median_of(runs, || async {
            let run = bench_delivery(rows, readers, None).await?;
            reconnected.borrow_mut().push(run.reconnected.to_string());
            Ok(run.rate)
        })
        .await?;
        println!(
            "| delivery to {readers} reader(s), append to last reader's position (rows/s; readers that reconnected and caught up over HTTP, per run: {}) | {delivery:.0} | {append:.0} (append alone) | {:.2} |",
            reconnected.borrow().join(", "),
            delivery / append
        );
    }
    let (tls, plain) = tls_against_plain(rows, runs).await?;
    println!(
        "| delivery to 1 reader over TLS replication (mTLS), append to reader's position (rows/s) | {tls:.0} | {plain:.0} (plain TCP, alternating runs) | {:.2} |",
        tls / plain
    );
    Ok(())
}

/// Medians of delivery to one reader over TLS and over plain TCP, the runs alternating so
/// both see the same machine.
async fn tls_against_plain(rows: usize, runs: usize) -> anyhow::Result<(f64, f64)> {
    let certs = BenchCerts::make()?;
    let (mut tls, mut plain) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    for _ in 0..runs {
        plain.push(bench_delivery(rows, 1, None).await?.rate);
        tls.push(bench_delivery(rows, 1, Some(&certs)).await?.rate);
    }
    for rates in [&mut tls, &mut plain] {
        rates.sort_by(f64::total_cmp);
    }
    Ok((tls[runs / 2], plain[runs / 2]))
}

/// One delivery run.
struct DeliveryRun {
    /// Rows/s from the first append until every reader had the last row.
    rate: f64,
    /// Readers that reconnected during the run (given up by the writer, or lost).
    reconnected: usize,
}

/// Rows/s from the first append until each of `readers` readers has the last row; with
/// `certs`, over TLS replication with client certificates.
async fn bench_delivery(
    rows: usize,
    readers: usize,
    certs: Option<&BenchCerts>,
) -> anyhow::Result<DeliveryRun> {
    let writer = BenchWriter::start_with(None, certs.map(|c| c.server.clone())).await?;
    let writer_tls: Option<ClientTlsConfig> = certs.map(|c| c.client.clone());
    let dir = tempfile::tempdir()?;
    let mut running = Vec::new();
    for n in 0..readers {
        let config = ReaderConfig {
            writer: writer.writer.replication_addr().to_string(),
            writer_http: format!("http://{}", writer.writer.http_addr()),
            http: ListenerConfig::on(SocketAddr::from(([127, 0, 0, 1], 0))),
            data: dir.path().join(format!("reader-{n}")),
            name: format!("bench-{n}"),
            writer_tls: writer_tls.clone(),
            ..ReaderConfig::default()
        };
        running.push(Reader::bind(config, None, writer.shutdown.clone()).await?);
    }
    // Wait until every reader is connected and has seen its first POSITION.
    wait_for(Duration::from_secs(30), || {
        running
            .iter()
            .all(|r| r.status().stream("events", "master").is_some())
    })
    .await?;
    let bodies = request_bodies(rows);
    let total = bodies.len() * REQUEST_ROWS;
    let started = Instant::now();
    let last = append_all(&writer.client(), bodies).await?;
    wait_for(Duration::from_secs(300), || {
        running.iter().all(|r| {
            r.status()
                .stream("events", "master")
                .is_some_and(|s| s.position >= last)
        })
    })
    .await?;
    let rate = total as f64 / started.elapsed().as_secs_f64();
    let reconnected = running.iter().filter(|r| r.status().reconnects > 0).count();
    writer.shutdown.cancel();
    for reader in running {
        reader.join().await?;
    }
    writer.stop().await?;
    Ok(DeliveryRun { rate, reconnected })
}
