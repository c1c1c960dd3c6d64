//! `streamhost bench`: throughput and latency figures of Streamhost, each next to a baseline
//! measured in the same process (see BENCHMARKS.md). The `streamhost` binary's `bench`
//! command parses [`BenchArgs`] and calls [`run`].
//!
//! File map:
//! - `replication/`: the `replication` suite and its parts (`parse`, `latency`, `delivery`,
//!   `postgres`): durable append, delivery to readers, latency, the reader's parse.
//! - `plugins/`: the `plugins` suite: a Wasm plugin vs the same logic native (`wasm`), a reader
//!   with plugins vs without (`reader`), Python and JavaScript vs Rust (`languages`).
//! - `pushes`: the `pushes` suite: the outbox's throughput to a local receiver, and a reader
//!   whose plugin pushes every row vs the same plugin pushing nothing.
//! - `redis`: the `redis` suite, Redis mode vs TCP mode (and TLS Redis vs plain).

use streamhost_server::config::RedisConfig;

use crate::replication::REQUEST_ROWS;

mod plugins;
mod pushes;
mod redis;
mod replication;

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
    /// In the `plugins` and `plugin-reader` suites, write `/tmp/perf-<pid>.map` as plugins
    /// load, so that a `perf record` of the run names their functions.
    #[arg(long)]
    pub perf_map: bool,
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
    /// Only the delivery figures (1, 4 and 16 readers; TLS vs plain replication to 1).
    Delivery,
    /// Durable append with the log on PostgreSQL (`--postgres URL`) vs raw PostgreSQL inserts
    /// and vs the SQLite log.
    Postgres,
    /// Wasm plugin cost: room-timeline per row vs the same logic native, instantiation, a
    /// reader with three plugins vs without, reload pauses (needs `scripts/build-plugins`).
    Plugins,
    /// Only the `plugins` suite's reader figure: `--runs` alternating pairs of the reader
    /// with the three example plugins and without, each pair's ratio and the medians.
    PluginReader,
    /// Only the `plugins` suite's languages table: `room-timeline` in Rust, Python and
    /// JavaScript (needs `scripts/build-plugins --all-languages`).
    PluginLanguages,
    /// Pushes: outbox throughput to a local receiver answering 200 at once, and a reader's
    /// rows/s with the `webhook` plugin pushing every row vs pushing none (needs
    /// `scripts/build-plugins --with-webhook DIR` and `--plugins DIR`).
    Pushes,
    /// Redis mode vs TCP mode: delivery to 1 and 8 readers, latency (needs a Redis server);
    /// with `--redis-tls`, also TLS Redis vs plain Redis.
    Redis,
}

/// Runs the chosen suite and prints a Markdown table.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.runs > 0 && args.rows >= REQUEST_ROWS,
        "--runs > 0 and --rows >= {REQUEST_ROWS}"
    );
    match args.suite {
        BenchSuite::Replication => replication::all(args.rows, args.runs).await,
        BenchSuite::Parse => {
            replication::print_header(args.rows, args.runs);
            replication::parse(args.rows, args.runs).await
        }
        BenchSuite::Latency => {
            replication::print_header(args.rows, args.runs);
            replication::latency().await
        }
        BenchSuite::Delivery => {
            replication::print_header(args.rows, args.runs);
            replication::delivery_alone(args.rows, args.runs).await
        }
        BenchSuite::Postgres => {
            replication::print_header(args.rows, args.runs);
            replication::postgres(&args.postgres, args.rows, args.runs).await
        }
        BenchSuite::Plugins => plugins::run(plugin_suite(args)).await,
        BenchSuite::PluginReader => plugins::reader_only(plugin_suite(args)).await,
        BenchSuite::PluginLanguages => plugins::languages_only(plugin_suite(args)).await,
        BenchSuite::Pushes => pushes::run(&args.plugins, args.rows, args.runs).await,
        BenchSuite::Redis => {
            let redis = RedisConfig {
                url: args.redis.clone().into(),
                ..RedisConfig::default()
            };
            let tls = args.redis_tls.clone().map(|url| RedisConfig {
                url: url.into(),
                ca_file: args.redis_ca_file.clone(),
                certificate_file: args.redis_certificate_file.clone(),
                private_key_file: args.redis_private_key_file.clone(),
                ..RedisConfig::default()
            });
            for config in [Some(&redis), tls.as_ref()].into_iter().flatten() {
                config.validate("bench redis")?;
            }
            redis::run(redis, tls, args.rows, args.runs).await
        }
    }
}

/// The plugin suites' part of `args`.
fn plugin_suite(args: BenchArgs) -> plugins::Suite {
    plugins::Suite {
        plugins: args.plugins,
        rows: args.rows,
        runs: args.runs,
        perf_map: args.perf_map,
    }
}
