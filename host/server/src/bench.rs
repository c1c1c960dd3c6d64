//! `streamhost bench replication`: throughput and latency of the replication path, each
//! figure next to a baseline measured in the same process (see BENCHMARKS.md).
//!
//! - append: durable rows/s through the writer's HTTP API vs the same rows inserted straight
//!   into SQLite with the same durability (one transaction per request).
//! - delivery: rows/s from first append to the last reader's position, to 1, 4 and 16 readers.
//! - latency: one-row append to the reader's sink, p50/p99, vs one fsync of a small file.
//! - parse: reader-side decode + batch assembly of RDATA lines on one core vs splitting the
//!   same lines and parsing each row with serde_json.
//! - postgres: the durable-append run with the log on PostgreSQL (a fresh schema on
//!   `--postgres URL`) vs the same rows inserted straight into PostgreSQL, and vs the SQLite
//!   append run.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use streamhost_proto::{LineFramer, MAX_LINE_LENGTH, ServerCommand, Token};
use tokio_util::sync::CancellationToken;

use crate::client::ApiClient;
use crate::config::{ReaderConfig, RedisConfig, WriterConfig};
use crate::reader::{Batch, BatchSink, BoxFuture, Reader};
use crate::writer::Writer;

/// Flags of `streamhost bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(value_enum, default_value_t = BenchSuite::Replication)]
    pub suite: BenchSuite,
    /// Rows per throughput run.
    #[arg(long, default_value_t = 100_000)]
    pub rows: usize,
    /// Runs of each measurement; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// The PostgreSQL server of the `postgres` suite (a fresh schema is made and dropped).
    #[arg(
        long,
        value_name = "URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    pub postgres: String,
    /// The built plugins (`scripts/build-plugins`), for the `plugins` suite.
    #[arg(long, value_name = "DIR", default_value = "target/plugins")]
    pub plugins: std::path::PathBuf,
    /// The Redis server of the `redis` suite.
    #[arg(long, value_name = "URL", default_value = "redis://127.0.0.1:6379")]
    pub redis: String,
    /// Also measure the `redis` suite over TLS at this `rediss://` URL (the same server as
    /// `--redis`, for a fair ratio; `scripts/bench-redis-tls` sets one up).
    #[arg(long, value_name = "URL")]
    pub redis_tls: Option<String>,
    /// The CA file that signed the TLS Redis's certificate.
    #[arg(long, value_name = "FILE", requires = "redis_tls")]
    pub redis_ca_file: Option<std::path::PathBuf>,
    /// The client certificate presented to the TLS Redis.
    #[arg(long, value_name = "FILE", requires = "redis_tls")]
    pub redis_certificate_file: Option<std::path::PathBuf>,
    /// Its private key.
    #[arg(long, value_name = "FILE", requires = "redis_tls")]
    pub redis_private_key_file: Option<std::path::PathBuf>,
}

/// The benchmark suites.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum BenchSuite {
    /// Append, delivery, latency and parse figures of the replication path.
    Replication,
    /// Only the reader's parse + batch figure (seconds, not minutes).
    Parse,
    /// Only the latency figures.
    Latency,
    /// Only the delivery figures (1, 4 and 16 readers).
    Delivery,
    /// Durable append with the log on PostgreSQL (`--postgres URL`) vs raw PostgreSQL inserts
    /// and vs the SQLite log.
    Postgres,
    /// Wasm plugin cost: room-timeline per row vs the same logic native, instantiation, a
    /// reader with three plugins vs without, reload pauses (needs `scripts/build-plugins`).
    Plugins,
    /// Redis mode vs TCP mode: delivery to 1 and 8 readers, latency (needs a Redis server);
    /// with `--redis-tls`, also TLS Redis vs plain Redis.
    Redis,
}

/// Rows per append request in throughput runs.
const REQUEST_ROWS: usize = 500;
/// Concurrent appending clients in throughput runs.
const CLIENTS: usize = 4;

/// Runs the chosen suite and prints a Markdown table.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.runs > 0 && args.rows >= REQUEST_ROWS,
        "--runs > 0 and --rows >= {REQUEST_ROWS}"
    );
    match args.suite {
        BenchSuite::Replication => replication(args.rows, args.runs).await,
        BenchSuite::Parse => {
            print_header(args.rows, args.runs);
            parse(args.rows, args.runs).await
        }
        BenchSuite::Latency => {
            print_header(args.rows, args.runs);
            latency().await
        }
        BenchSuite::Delivery => {
            print_header(args.rows, args.runs);
            let append = median_of(args.runs, || bench_append(args.rows)).await?;
            delivery(args.rows, args.runs, append).await
        }
        BenchSuite::Postgres => {
            print_header(args.rows, args.runs);
            postgres(&args.postgres, args.rows, args.runs).await
        }
        BenchSuite::Plugins => {
            let (plugins, rows, runs) = (args.plugins, args.rows, args.runs);
            let dir = plugins.clone();
            tokio::task::spawn_blocking(move || crate::bench_plugins::run(&dir, rows, runs))
                .await??;
            crate::bench_plugin_host::run(&plugins, rows, runs).await?;
            tokio::task::spawn_blocking(move || {
                crate::bench_plugin_languages::run(&plugins, rows, runs)
            })
            .await?
        }
        BenchSuite::Redis => {
            let redis = RedisConfig {
                url: args.redis.clone(),
                ..RedisConfig::default()
            };
            let tls = args.redis_tls.clone().map(|url| RedisConfig {
                url,
                ca_file: args.redis_ca_file.clone(),
                certificate_file: args.redis_certificate_file.clone(),
                private_key_file: args.redis_private_key_file.clone(),
                ..RedisConfig::default()
            });
            for config in [Some(&redis), tls.as_ref()].into_iter().flatten() {
                config.validate("bench redis")?;
            }
            crate::bench_redis::run(redis, tls, args.rows, args.runs).await
        }
    }
}

fn print_header(rows: usize, runs: usize) {
    println!("streamhost bench: {rows} rows per run, median of {runs} runs\n");
    println!("| measurement | streamhost | baseline | ratio |");
    println!("|---|---|---|---|");
}

async fn parse(rows: usize, runs: usize) -> anyhow::Result<()> {
    let rows = rows.max(200_000);
    let wire = wire_lines(rows);
    let parse = median_of(runs, || async { Ok(bench_parse(&wire, rows)) }).await?;
    let naive = median_of(runs, || async { Ok(bench_naive_parse(&wire, rows)) }).await?;
    println!(
        "| reader parse + batch, one core (rows/s) | {parse:.0} | {naive:.0} (split + serde_json::Value) | {:.2} |",
        parse / naive
    );
    Ok(())
}

async fn replication(rows: usize, runs: usize) -> anyhow::Result<()> {
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

async fn postgres(url: &str, rows: usize, runs: usize) -> anyhow::Result<()> {
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

async fn latency() -> anyhow::Result<()> {
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

async fn delivery(rows: usize, runs: usize, append: f64) -> anyhow::Result<()> {
    for readers in [1, 4, 16] {
        let delivery = median_of(runs, || bench_delivery(rows, readers)).await?;
        println!(
            "| delivery to {readers} reader(s), append to last reader's position (rows/s) | {delivery:.0} | {append:.0} (append alone) | {:.2} |",
            delivery / append
        );
    }

    Ok(())
}

async fn median_of<F, Fut>(runs: usize, mut measure: F) -> anyhow::Result<f64>
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

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A Synapse-like `events` row.
fn event_row(n: usize) -> serde_json::Value {
    serde_json::json!([
        "ev",
        [
            format!("$ev{n}AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"),
            format!("!room{}:example.org", n % 50),
            "m.room.message",
            null,
            null,
            null,
            null,
            false,
            false
        ]
    ])
}

fn request_bodies(rows: usize) -> Vec<Bytes> {
    (0..rows / REQUEST_ROWS)
        .map(|r| {
            let rows: Vec<_> = (0..REQUEST_ROWS)
                .map(|i| event_row(r * REQUEST_ROWS + i))
                .collect();
            Bytes::from(serde_json::to_vec(&rows).expect("JSON"))
        })
        .collect()
}

struct BenchWriter {
    writer: Writer,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl BenchWriter {
    async fn start() -> anyhow::Result<BenchWriter> {
        BenchWriter::start_on(None).await
    }

    /// A writer with its log at `database_url` (none: SQLite in a temporary folder).
    async fn start_on(database_url: Option<String>) -> anyhow::Result<BenchWriter> {
        let dir = tempfile::tempdir()?;
        let shutdown = CancellationToken::new();
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let config = WriterConfig {
            http: loopback,
            replication: loopback,
            data: dir.path().join("writer"),
            database: crate::config::DatabaseConfig { url: database_url },
            ..WriterConfig::default()
        };
        let writer = Writer::bind(config, shutdown.clone()).await?;
        Ok(BenchWriter {
            writer,
            shutdown,
            _dir: dir,
        })
    }

    fn client(&self) -> ApiClient {
        ApiClient::new(format!("http://{}", self.writer.http_addr()))
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.writer.join().await
    }
}

/// Appends `bodies` from `CLIENTS` concurrent clients; returns the last token.
async fn append_all(client: &ApiClient, bodies: Vec<Bytes>) -> anyhow::Result<Token> {
    let queue = Arc::new(Mutex::new(bodies));
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (client, queue) = (client.clone(), queue.clone());
        tasks.push(tokio::spawn(async move {
            let mut last = Token(0);
            loop {
                let next = queue.lock().expect("queue lock").pop();
                let Some(body) = next else {
                    return Ok::<_, anyhow::Error>(last);
                };
                let tokens = client.append("events", body, false).await?;
                last = last.max(*tokens.last().expect("non-empty request"));
            }
        }));
    }
    let mut last = Token(0);
    for task in tasks {
        last = last.max(task.await??);
    }
    Ok(last)
}

async fn bench_append(rows: usize) -> anyhow::Result<f64> {
    bench_append_to(None, rows).await
}

async fn bench_append_to(database_url: Option<String>, rows: usize) -> anyhow::Result<f64> {
    let writer = BenchWriter::start_on(database_url).await?;
    let bodies = request_bodies(rows);
    let total = bodies.len() * REQUEST_ROWS;
    let started = Instant::now();
    append_all(&writer.client(), bodies).await?;
    let rate = total as f64 / started.elapsed().as_secs_f64();
    writer.stop().await?;
    Ok(rate)
}

/// A fresh SQLite file with the writer's durability pragmas (WAL, `synchronous = FULL`), for
/// the baselines; the folder lives as long as the returned guard.
async fn durable_sqlite() -> anyhow::Result<(tempfile::TempDir, sqlx::SqlitePool)> {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
    let dir = tempfile::tempdir()?;
    let options = SqliteConnectOptions::new()
        .filename(dir.path().join("baseline.sqlite"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full);
    let pool = sqlx::SqlitePool::connect_with(options).await?;
    Ok((dir, pool))
}

async fn bench_raw_sqlite(rows: usize) -> anyhow::Result<f64> {
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

async fn bench_delivery(rows: usize, readers: usize) -> anyhow::Result<f64> {
    let writer = BenchWriter::start().await?;
    let dir = tempfile::tempdir()?;
    let mut running = Vec::new();
    for n in 0..readers {
        let config = ReaderConfig {
            writer: writer.writer.replication_addr().to_string(),
            writer_http: format!("http://{}", writer.writer.http_addr()),
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            data: dir.path().join(format!("reader-{n}")),
            name: format!("bench-{n}"),
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
    writer.shutdown.cancel();
    for reader in running {
        reader.join().await?;
    }
    writer.stop().await?;
    Ok(rate)
}

async fn wait_for(timeout: Duration, mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !done() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "benchmark did not finish within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
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

async fn bench_latency(samples: usize) -> anyhow::Result<Latency> {
    let writer = BenchWriter::start().await?;
    let dir = tempfile::tempdir()?;
    let sink = Arc::new(ArrivalSink::default());
    let config = ReaderConfig {
        writer: writer.writer.replication_addr().to_string(),
        writer_http: format!("http://{}", writer.writer.http_addr()),
        http: SocketAddr::from(([127, 0, 0, 1], 0)),
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

/// Encoded RDATA lines like a live Synapse stream: mostly single rows, some `batch` runs.
fn wire_lines(rows: usize) -> Bytes {
    let mut out = Vec::new();
    let mut token = 2;
    let mut n = 0;
    while n < rows {
        let run = if n % 10 == 0 { 3 } else { 1 };
        for i in 0..run {
            let row = streamhost_proto::RowJson::parse(event_row(n).to_string().as_bytes())
                .expect("canonical");
            let command = ServerCommand::Rdata(streamhost_proto::Rdata {
                stream: streamhost_proto::StreamName::new("events").expect("name"),
                instance: streamhost_proto::InstanceName::new("master").expect("name"),
                token: if i + 1 == run {
                    Some(Token(token))
                } else {
                    None
                },
                row,
            });
            command.encode(&mut out).expect("encodable");
            n += 1;
        }
        token += 1;
    }
    out.into()
}

fn bench_parse(wire: &Bytes, rows: usize) -> f64 {
    let started = Instant::now();
    let mut framer = LineFramer::new(MAX_LINE_LENGTH);
    framer.buffer_mut().extend_from_slice(wire);
    let mut assembler = crate::reader::BatchAssembler::default();
    let mut applied = 0usize;
    while let Ok(Some(line)) = framer.next_line() {
        if let Ok(ServerCommand::Rdata(rdata)) = ServerCommand::decode(&line)
            && let Some(batch) = assembler.push(rdata)
        {
            applied += batch.rows.len();
        }
    }
    assert_eq!(applied, rows, "every row assembled into a batch");
    rows as f64 / started.elapsed().as_secs_f64()
}

fn bench_naive_parse(wire: &Bytes, rows: usize) -> f64 {
    let started = Instant::now();
    let mut buffer = BytesMut::from(&wire[..]);
    let mut parsed = 0usize;
    while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
        let line = buffer.split_to(end + 1);
        let text = std::str::from_utf8(&line[..end]).expect("UTF-8");
        let mut fields = text.splitn(5, ' ');
        let (_, _, _, _, row) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        );
        let value: serde_json::Value = serde_json::from_str(row.expect("row")).expect("JSON");
        std::hint::black_box(value);
        parsed += 1;
    }
    assert_eq!(parsed, rows);
    rows as f64 / started.elapsed().as_secs_f64()
}
