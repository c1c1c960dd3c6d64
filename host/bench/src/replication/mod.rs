//! `streamhost bench replication`: throughput and latency of the replication path, each
//! figure next to a baseline measured in the same process (see BENCHMARKS.md).
//!
//! - append: durable rows/s through the writer's HTTP API vs the same rows inserted straight
//!   into SQLite with the same durability (one transaction per request).
//! - delivery: rows/s from first append to the last reader's position, to 1, 4 and 16 readers;
//!   to 1 reader over TLS replication (mTLS) vs plain TCP.
//! - latency: one-row append to the reader's sink, p50/p99, vs one fsync of a small file.
//! - parse: reader-side decode + batch assembly of RDATA lines on one core vs splitting the
//!   same lines and parsing each row with serde_json.
//! - postgres: the durable-append run with the log on PostgreSQL (a fresh schema on
//!   `--postgres URL`) vs the same rows inserted straight into PostgreSQL, and vs the SQLite
//!   append run.
//!
//! Files: `fixtures` (rows, a writer, appending clients), `certs` (TLS files), `append`,
//! `delivery`, `latency`,
//! `parse` and `postgres` (one measurement each, with its baseline).

use std::time::Duration;

mod append;
mod certs;
mod delivery;
mod fixtures;
mod latency;
mod parse;
mod postgres;

use self::append::{bench_append, bench_raw_sqlite};
use self::delivery::delivery;
pub(crate) use self::delivery::delivery_alone;
pub(crate) use self::latency::latency;
pub(crate) use self::parse::parse;
pub(crate) use self::postgres::postgres;

/// Rows per append request in throughput runs.
pub(crate) const REQUEST_ROWS: usize = 500;
/// Concurrent appending clients in throughput runs.
pub(super) const CLIENTS: usize = 4;

/// The column headings of the table every suite but `plugins` and `redis` prints.
pub(crate) fn print_header(rows: usize, runs: usize) {
    println!("streamhost bench: {rows} rows per run, median of {runs} runs\n");
    println!("| measurement | streamhost | baseline | ratio |");
    println!("|---|---|---|---|");
}

/// The whole suite: append, parse, delivery and latency.
pub(crate) async fn all(rows: usize, runs: usize) -> anyhow::Result<()> {
    print_header(rows, runs);

    let append = median_of(runs, || bench_append(rows)).await?;
    let raw = median_of(runs, || bench_raw_sqlite(rows)).await?;
    println!(
        "| durable append, {CLIENTS} clients x {REQUEST_ROWS} rows/request (rows/s) | {append:.0} | {raw:.0} (sqlx insert, same fsync) | {:.2} |",
        append / raw
    );

    parse(rows, runs).await?;

    delivery(rows, runs, append).await?;
    latency().await
}

/// The median of `runs` measurements.
pub(super) async fn median_of<F, Fut>(runs: usize, mut measure: F) -> anyhow::Result<f64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<f64>>,
{
    let mut values = Vec::with_capacity(runs);
    for _ in 0..runs {
        values.push(measure().await?);
    }
    values.sort_by(f64::total_cmp);
    Ok(values[values.len() / 2])
}

/// `d` in milliseconds.
pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
