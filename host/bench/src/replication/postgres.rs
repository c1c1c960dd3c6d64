//! PostgreSQL: durable append with the log on PostgreSQL (a fresh schema on `--postgres
//! URL`) against the same rows inserted straight into PostgreSQL, and against the SQLite log.

use std::time::Instant;

use anyhow::Context;

use super::append::{bench_append, bench_append_to};
use super::fixtures::event_row;
use super::{CLIENTS, REQUEST_ROWS, median_of};

/// Prints the PostgreSQL rows of the table.
pub(crate) async fn postgres(url: &str, rows: usize, runs: usize) -> anyhow::Result<()> {
    let schema = BenchSchema::create(url).await?;
    let append = median_of(runs, || async {
        schema.reset().await?;
        bench_append_to(Some(schema.url()), rows).await
    })
    .await?;
    let raw = median_of(runs, || async {
        schema.reset().await?;
        bench_raw_postgres(&schema.url(), rows).await
    })
    .await?;
    let sqlite = median_of(runs, || bench_append(rows)).await?;
    schema.remove().await;
    println!(
        "| durable append to PostgreSQL, {CLIENTS} clients x {REQUEST_ROWS} rows/request (rows/s) | {append:.0} | {raw:.0} (sqlx insert, one transaction per request) | {:.2} |",
        append / raw
    );
    println!(
        "| same, log on SQLite (rows/s) | {sqlite:.0} | {append:.0} (PostgreSQL) | {:.2} |",
        sqlite / append
    );
    Ok(())
}

/// A schema of the bench's own on the PostgreSQL server, emptied between runs.
struct BenchSchema {
    base: String,
    name: String,
}

impl BenchSchema {
    async fn create(base: &str) -> anyhow::Result<BenchSchema> {
        let name = format!("sh_bench_{}", std::process::id());
        let schema = BenchSchema {
            base: base.to_owned(),
            name,
        };
        schema.reset().await?;
        Ok(schema)
    }

    fn url(&self) -> String {
        let separator = if self.base.contains('?') { '&' } else { '?' };
        format!("{}{separator}options[search_path]={}", self.base, self.name)
    }

    async fn execute(&self, sql: String) -> anyhow::Result<()> {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(&self.base)
            .await
            .with_context(|| {
                format!(
                    "PostgreSQL is required at {} (--postgres URL)",
                    streamhost_log::redact_url(&self.base)
                )
            })?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await?;
        Ok(())
    }

    /// Drops and recreates the schema: every run starts from an empty log.
    async fn reset(&self) -> anyhow::Result<()> {
        self.execute(format!(
            "DROP SCHEMA IF EXISTS {0} CASCADE; CREATE SCHEMA {0}",
            self.name
        ))
        .await
    }

    async fn remove(&self) {
        let _ = self
            .execute(format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name))
            .await;
    }
}

/// Rows/s of the same rows inserted with sqlx, one transaction per request.
async fn bench_raw_postgres(url: &str, rows: usize) -> anyhow::Result<f64> {
    let pool = sqlx::PgPool::connect(url).await?;
    sqlx::query("CREATE TABLE t (stream TEXT, token BIGINT, seq BIGINT, instance TEXT, row_json TEXT, PRIMARY KEY (stream, token, seq))")
        .execute(&pool)
        .await?;
    let texts: Vec<String> = (0..rows).map(|n| event_row(n).to_string()).collect();
    let started = Instant::now();
    for (chunk_index, chunk) in texts.chunks(REQUEST_ROWS).enumerate() {
        let mut tx = pool.begin().await?;
        let tokens: Vec<i64> = (0..chunk.len())
            .map(|i| (chunk_index * REQUEST_ROWS + i) as i64)
            .collect();
        sqlx::query(
            "INSERT INTO t (stream, token, seq, instance, row_json) \
             SELECT 'events', t, 0, 'master', r FROM UNNEST($1::bigint[], $2::text[]) AS u(t, r)",
        )
        .bind(&tokens)
        .bind(chunk)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
    }
    let rate = rows as f64 / started.elapsed().as_secs_f64();
    pool.close().await;
    Ok(rate)
}
