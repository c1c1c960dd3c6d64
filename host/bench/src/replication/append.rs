//! Durable append: rows/s through the writer's HTTP API, against the same rows inserted
//! straight into SQLite with the same durability (one transaction per request).

use std::time::Instant;

use super::REQUEST_ROWS;
use super::fixtures::{BenchWriter, append_all, durable_sqlite, event_row, request_bodies};

/// Rows/s of appends to a writer logging to SQLite.
pub(super) async fn bench_append(rows: usize) -> anyhow::Result<f64> {
    bench_append_to(None, rows).await
}

/// Rows/s of appends to a writer logging to `database_url` (none: SQLite).
pub(super) async fn bench_append_to(
    database_url: Option<String>,
    rows: usize,
) -> anyhow::Result<f64> {
    let writer = BenchWriter::start_on(database_url).await?;
    let bodies = request_bodies(rows);
    let total = bodies.len() * REQUEST_ROWS;
    let started = Instant::now();
    append_all(&writer.client(), bodies).await?;
    let rate = total as f64 / started.elapsed().as_secs_f64();
    writer.stop().await?;
    Ok(rate)
}

/// Rows/s of the same rows inserted with sqlx, one transaction per request.
pub(super) async fn bench_raw_sqlite(rows: usize) -> anyhow::Result<f64> {
    let (_dir, pool) = durable_sqlite().await?;
    sqlx::query("CREATE TABLE t (stream TEXT, token BIGINT, seq BIGINT, instance TEXT, row_json TEXT, PRIMARY KEY (stream, token, seq))")
        .execute(&pool)
        .await?;
    let texts: Vec<String> = (0..rows).map(|n| event_row(n).to_string()).collect();
    let started = Instant::now();
    for (chunk_index, chunk) in texts.chunks(REQUEST_ROWS).enumerate() {
        let mut tx = pool.begin().await?;
        let mut insert =
            sqlx::QueryBuilder::new("INSERT INTO t (stream, token, seq, instance, row_json) ");
        insert.push_values(chunk.iter().enumerate(), |mut v, (i, text)| {
            v.push_bind("events")
                .push_bind((chunk_index * REQUEST_ROWS + i) as i64)
                .push_bind(0i64)
                .push_bind("master")
                .push_bind(text);
        });
        insert.build().execute(&mut *tx).await?;
        tx.commit().await?;
    }
    let rate = rows as f64 / started.elapsed().as_secs_f64();
    pool.close().await;
    Ok(rate)
}
