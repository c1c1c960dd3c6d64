//! `streamhost chaos`: a soak under faults with exactly-once accounting. It runs a writer
//! (SQLite, or PostgreSQL with `--db postgres`) and readers (TCP ones behind its own proxy,
//! Redis ones on its own Redis server) as child processes of this executable, clients
//! appending with retries, and injects faults on a schedule drawn from `--seed`: SIGKILL and
//! restart of the writer and of readers, cut, delayed and reset replication links, Redis and
//! PostgreSQL crashes, and with `--plugins` a plugin hot-reloaded and a plugin made to trap.
//! At the end it checks the history (every acknowledged append, every row each reader and
//! plugin applied) against the writer's log, prints the faults by kind and the checks, and
//! fails on any violation.
//!
//! Files: `schedule` (the seeded fault schedule), `processes` (the writer and readers as
//! children), `servers` (Redis and PostgreSQL of its own), `proxy` (the replication links),
//! `cluster` (all of them and how a fault is injected), `plugins` (the readers' plugins with
//! `--plugins`), `history` (the clients and what was acknowledged), `checks` (the end
//! checks), `report` (the summary).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use streamhost_server::client::ApiClient;
use tokio_util::sync::CancellationToken;

use self::cluster::{Cluster, Plan, STREAMS};
use self::history::History;
use self::report::Summary;
use self::schedule::{Fault, Schedule, fresh_seed};

mod checks;
mod cluster;
mod history;
mod plugins;
mod processes;
mod proxy;
mod report;
mod schedule;
mod servers;

/// How long the readers get to reach the writer's positions once the faults stop.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(120);

/// The writer's instance name (the default).
const INSTANCE: &str = "master";

/// The log's database.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Db {
    /// A SQLite file in the run's folder.
    Sqlite,
    /// A PostgreSQL server the tool starts (initdb) in the run's folder.
    Postgres,
}

/// Flags of `streamhost chaos`.
#[derive(Debug, clap::Args)]
pub struct ChaosArgs {
    /// Seconds of faults; then the clients stop, the readers catch up and the checks run.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub duration: u64,
    /// Seed of the fault schedule (printed at the start; the same seed replays the same
    /// faults in the same order) [default: a fresh one].
    #[arg(long)]
    pub seed: Option<u64>,
    /// The log's database.
    #[arg(long, value_enum, default_value_t = Db::Sqlite)]
    pub db: Db,
    /// Readers following over TCP, each behind the tool's proxy.
    #[arg(long, default_value_t = 2)]
    pub tcp_readers: usize,
    /// Readers following over Redis pub/sub (0: no Redis server is started).
    #[arg(long, default_value_t = 1)]
    pub redis_readers: usize,
    /// Clients appending concurrently.
    #[arg(long, default_value_t = 4)]
    pub clients: u64,
    /// Built plugins (`scripts/build-plugins --with-evil DIR`): every reader runs
    /// DIR/stream-stats, hot-reloaded as a fault, and DIR/evil, made to trap as a fault; both
    /// plugins' row counts are checked [default: no plugins].
    #[arg(long, value_name = "DIR")]
    pub plugins: Option<std::path::PathBuf>,
    /// Keep the run's folder (data and every process's log) even when the run passes.
    #[arg(long)]
    pub keep: bool,
}

/// Runs the soak; an error when a check is violated (the run's folder is then kept).
pub async fn run(args: ChaosArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    anyhow::ensure!(args.clients > 0, "--clients must be positive");
    anyhow::ensure!(
        args.tcp_readers + args.redis_readers > 0,
        "at least one reader is needed"
    );
    let seed = args.seed.unwrap_or_else(fresh_seed);
    let dir = tempfile::Builder::new()
        .prefix("streamhost-chaos-")
        .tempdir()
        .context("creating the run's folder")?;
    println!("streamhost chaos: seed {seed} (--seed {seed} replays the schedule)");
    println!("  data and logs in {}", dir.path().display());
    let result = run_in(&args, seed, dir.path(), shutdown).await;
    if matches!(result, Ok(true)) && !args.keep {
        return Ok(());
    }
    let kept = dir.keep();
    match result {
        Ok(true) => Ok(()),
        Ok(false) => anyhow::bail!(
            "violations found; the run's folder {} is kept",
            kept.display()
        ),
        Err(e) => Err(e.context(format!("the run's folder {} is kept", kept.display()))),
    }
}

/// The run in `dir`; whether every check passed.
async fn run_in(
    args: &ChaosArgs,
    seed: u64,
    dir: &Path,
    shutdown: CancellationToken,
) -> anyhow::Result<bool> {
    let plan = Plan {
        postgres: args.db == Db::Postgres,
        tcp_readers: args.tcp_readers,
        redis_readers: args.redis_readers,
        plugins: args.plugins.clone(),
    };
    let mut cluster = Cluster::start(dir, &plan).await?;
    println!(
        "  writer {} ({}), {} TCP readers, {} Redis readers, {} clients, {} s",
        cluster.writer_url,
        db_name(args.db),
        args.tcp_readers,
        args.redis_readers,
        args.clients,
        args.duration
    );
    let oracle = streamhost_log::Log::open_read_only(&cluster.log_url)
        .await
        .context("opening the writer's log to read it back")?;
    let history = Arc::new(Mutex::new(History::default()));
    let ends = history::Ends {
        writer: ApiClient::new(cluster.writer_url.clone()),
        oracle: oracle.clone(),
        history: history.clone(),
    };
    let streams = || STREAMS.iter().map(|s| s.to_string()).collect();
    let clients_stop = CancellationToken::new();
    let mut clients: Vec<_> = (0..args.clients)
        .map(|n| {
            let stop = clients_stop.clone();
            tokio::spawn(history::client(n, seed, ends.clone(), streams(), stop))
        })
        .collect();
    // The plugin-trap faults' rows come from one more client, numbered after the others.
    let (trap_holds, holds) = tokio::sync::mpsc::unbounded_channel();
    clients.push(tokio::spawn(history::trap_rows(
        args.clients,
        seed,
        ends,
        streams(),
        holds,
    )));

    let mut schedule = Schedule::new(seed, cluster.shape());
    let mut faults: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut problems = Vec::new();
    let started = Instant::now();
    let end = started + Duration::from_secs(args.duration);
    let mut next_progress = started + Duration::from_secs(10);
    while Instant::now() < end && !shutdown.is_cancelled() {
        let step = schedule.next_step();
        tokio::select! {
            () = tokio::time::sleep(step.pause) => {}
            () = shutdown.cancelled() => break,
        }
        tracing::debug!(?step, "fault");
        match step.fault {
            // Not a fault of the cluster's: a row for the trap client to append.
            Fault::TrapPlugin => trap_holds.send(step.hold)?,
            _ => cluster.inject(step).await?,
        }
        *faults.entry(step.fault.kind()).or_default() += 1;
        problems.extend(cluster.restart_exited().await?);
        if Instant::now() >= next_progress {
            next_progress += Duration::from_secs(10);
            println!(
                "  {:>4} s: {} faults, {} rows acknowledged",
                started.elapsed().as_secs(),
                faults.values().sum::<u64>(),
                history.lock().expect("history lock").acked.len()
            );
        }
    }
    let seconds = started.elapsed().as_secs();

    clients_stop.cancel();
    drop(trap_holds);
    for client in clients {
        tokio::time::timeout(CATCH_UP_TIMEOUT, client)
            .await
            .context("a client did not finish its last append within 120 s")??;
    }
    let log = cluster::read_log(&oracle).await?;
    oracle.close().await;
    for reader in cluster.wait_caught_up(&log, CATCH_UP_TIMEOUT).await {
        problems.push(format!(
            "{reader} did not reach the writer's positions within {CATCH_UP_TIMEOUT:?}"
        ));
    }
    let mut plugin_checks = Vec::new();
    if cluster.has_plugins() {
        let want: BTreeMap<String, u64> = log
            .iter()
            .map(|(s, r)| (s.clone(), r.len() as u64))
            .collect();
        let deadline = Instant::now() + CATCH_UP_TIMEOUT;
        for (reader, url) in cluster.readers.iter().zip(&cluster.reader_urls) {
            for plugin in [plugins::PLUGIN, plugins::TRAPPING] {
                let counts = plugins::counts(url, plugin, &want, deadline).await;
                let name = format!("{} {plugin}", reader.name);
                plugin_checks.push(checks::plugin_counts(&log, &name, &counts));
            }
        }
    }
    problems.extend(cluster.stop().await);
    let applied = cluster.applied().await?;
    let failures = cluster.plugin_failures()?;
    cluster.stop_servers().await;
    let history = std::mem::take(&mut *history.lock().expect("history lock"));
    let mut checks = checks::run(&log, &history, &applied, INSTANCE);
    checks.extend(plugin_checks);
    let summary = Summary {
        seed,
        db: db_name(args.db),
        seconds,
        faults: &faults,
        history: &history,
        failures: cluster.has_plugins().then_some(failures),
        problems: &problems,
        checks: &checks,
    };
    summary.write(&mut std::io::stdout().lock())?;
    Ok(summary.passed())
}

fn db_name(db: Db) -> &'static str {
    match db {
        Db::Sqlite => "sqlite",
        Db::Postgres => "postgres",
    }
}
