//! The cluster under test: the servers (Redis, PostgreSQL), the writer, the readers (TCP
//! ones behind their own proxy, Redis ones on the Redis server), how each fault is injected
//! and healed, and what the readers applied, read from their databases at the end.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use streamhost_proto::{StreamName, Token};
use streamhost_server::client::ApiClient;
use streamhost_server::reader::ReaderStore;

use super::checks::{Applied, LogRows};
use super::plugins::{Failures, ReaderPlugins};
use super::processes::{Node, free_port};
use super::proxy::Proxy;
use super::schedule::{Fault, Shape, Step};
use super::servers::Server;

/// The server name the writer announces (and the Redis channel).
pub(super) const SERVER_NAME: &str = "chaos.streamhost";

/// The streams the clients append to.
pub(super) const STREAMS: [&str; 3] = ["alpha", "beta", "gamma"];

/// What to start.
#[derive(Clone, Debug)]
pub(super) struct Plan {
    /// The log in PostgreSQL (a server of the tool's own) instead of SQLite.
    pub(super) postgres: bool,
    /// Readers following over TCP, each behind a proxy.
    pub(super) tcp_readers: usize,
    /// Readers following over Redis pub/sub.
    pub(super) redis_readers: usize,
    /// Built plugins (`scripts/build-plugins --with-evil`): every reader runs `stream-stats`
    /// and `evil` from them.
    pub(super) plugins: Option<PathBuf>,
}

/// Everything running.
pub(super) struct Cluster {
    pub(super) writer: Node,
    pub(super) readers: Vec<Node>,
    reader_data: Vec<PathBuf>,
    /// The readers' HTTP APIs.
    pub(super) reader_urls: Vec<String>,
    proxies: Vec<Proxy>,
    /// Each reader's plugins, with `--plugins`.
    plugins: Vec<ReaderPlugins>,
    pub(super) redis: Option<Server>,
    pub(super) postgres: Option<Server>,
    /// The writer's HTTP API.
    pub(super) writer_url: String,
    /// The writer's log database, for the read-only handle.
    pub(super) log_url: String,
}

impl Cluster {
    /// Starts the servers, the writer, the proxies and the readers, data and logs in `dir`.
    pub(super) async fn start(dir: &Path, plan: &Plan) -> anyhow::Result<Cluster> {
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs)?;
        let redis = match plan.redis_readers > 0 {
            true => Some(Server::redis(dir).await?),
            false => None,
        };
        let postgres = match plan.postgres {
            true => Some(Server::postgres(dir).await?),
            false => None,
        };
        let http = format!("127.0.0.1:{}", free_port()?);
        let replication: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let writer_data = dir.join("writer");
        let log_url = match &postgres {
            Some(pg) => pg.postgres_url(),
            None => format!("sqlite:{}", writer_data.join("log.sqlite").display()),
        };
        let mut args = words(&[
            "writer",
            "--http",
            &http,
            "--replication",
            &replication.to_string(),
            "--server-name",
            SERVER_NAME,
        ]);
        args.extend(["--data".to_string(), writer_data.display().to_string()]);
        for stream in STREAMS {
            args.extend(words(&["--stream", stream]));
        }
        if let Some(pg) = &postgres {
            args.extend(words(&["--database-url", &pg.postgres_url()]));
        }
        if let Some(redis) = &redis {
            args.extend(words(&["--redis-url", &redis.redis_url()]));
        }
        let mut writer = Node::new("writer", args, &logs);
        writer.start().await?;
        let writer_url = format!("http://{http}");

        let mut cluster = Cluster {
            writer,
            readers: Vec::new(),
            reader_data: Vec::new(),
            reader_urls: Vec::new(),
            proxies: Vec::new(),
            plugins: Vec::new(),
            redis,
            postgres,
            writer_url,
            log_url,
        };
        for n in 0..plan.tcp_readers + plan.redis_readers {
            let name = format!("reader-{}", n + 1);
            let data = dir.join(&name);
            let http = format!("127.0.0.1:{}", free_port()?);
            let upstream = if n < plan.tcp_readers {
                let proxy = Proxy::start(replication).await?;
                let addr = proxy.addr().to_string();
                cluster.proxies.push(proxy);
                addr
            } else {
                replication.to_string()
            };
            let mut args = words(&[
                "reader",
                "--writer",
                &upstream,
                "--writer-http",
                &cluster.writer_url,
                "--http",
                &http,
                "--name",
                &name,
                "--server-name",
                SERVER_NAME,
                "--record-rows",
            ]);
            args.extend(["--data".to_string(), data.display().to_string()]);
            if let Some(source) = &plan.plugins {
                let plugins = ReaderPlugins::install(source, &dir.join(format!("{name}-plugins")))?;
                args.extend(["--plugins".to_string(), plugins.dir.display().to_string()]);
                args.extend(["--config".to_string(), plugins.config.display().to_string()]);
                cluster.plugins.push(plugins);
            }
            if n >= plan.tcp_readers {
                let redis = cluster.redis.as_ref().context("Redis readers need Redis")?;
                args.extend(words(&["--redis-url", &redis.redis_url()]));
            }
            let mut reader = Node::new(&name, args, &logs);
            reader.start().await?;
            cluster.readers.push(reader);
            cluster.reader_data.push(data);
            cluster.reader_urls.push(format!("http://{http}"));
        }
        Ok(cluster)
    }

    /// Whether the readers run a plugin.
    pub(super) fn has_plugins(&self) -> bool {
        !self.plugins.is_empty()
    }

    /// The faults this cluster can take.
    pub(super) fn shape(&self) -> Shape {
        Shape {
            readers: self.readers.len(),
            tcp_readers: self.proxies.len(),
            redis: self.redis.is_some(),
            postgres: self.postgres.is_some(),
            plugins: !self.plugins.is_empty(),
        }
    }

    /// Injects `step`'s fault, holds it, and heals it (the process or server started again,
    /// the link restored).
    pub(super) async fn inject(&mut self, step: Step) -> anyhow::Result<()> {
        match step.fault {
            Fault::KillWriter => {
                self.writer.kill_9().await?;
                tokio::time::sleep(step.hold).await;
                self.writer.start().await?;
            }
            Fault::KillReader(n) => {
                self.readers[n].kill_9().await?;
                tokio::time::sleep(step.hold).await;
                self.readers[n].start().await?;
            }
            Fault::CutLink(n) => {
                self.proxies[n].cut();
                tokio::time::sleep(step.hold).await;
                self.proxies[n].heal();
            }
            Fault::DelayLink(n) => {
                self.proxies[n].delay(step.hold / 10);
                tokio::time::sleep(step.hold).await;
                self.proxies[n].heal();
            }
            Fault::ResetLink(n) => self.proxies[n].reset(),
            Fault::RestartRedis => {
                let redis = self.redis.as_mut().context("no Redis")?;
                redis.crash().await?;
                tokio::time::sleep(step.hold).await;
                redis.start().await?;
            }
            Fault::RestartPostgres => {
                let pg = self.postgres.as_mut().context("no PostgreSQL")?;
                pg.crash().await?;
                tokio::time::sleep(step.hold).await;
                pg.start().await?;
            }
            Fault::ReloadPlugin(n) => self.plugins[n].reload()?,
            Fault::TrapPlugin => {
                anyhow::bail!("a plugin trap is a client's row, not injected here")
            }
        }
        Ok(())
    }

    /// The processes that exited without the tool killing them, each started again; one
    /// line each for the report.
    pub(super) async fn restart_exited(&mut self) -> anyhow::Result<Vec<String>> {
        let mut exited = Vec::new();
        for node in std::iter::once(&mut self.writer).chain(self.readers.iter_mut()) {
            if let Some(status) = node.exited() {
                exited.push(format!(
                    "{} exited on its own ({status}); see {}",
                    node.name,
                    node.log().display()
                ));
                node.kill_9().await?;
                node.start().await?;
            }
        }
        Ok(exited)
    }

    /// Waits (up to `timeout`) until every reader reports the positions of `log`; returns the
    /// readers that did not get there.
    pub(super) async fn wait_caught_up(&self, log: &LogRows, timeout: Duration) -> Vec<String> {
        let want: HashMap<&str, i64> = log
            .iter()
            .map(|(s, rows)| (s.as_str(), rows.last().map_or(1, |(t, _)| t.0)))
            .collect();
        let deadline = Instant::now() + timeout;
        let mut behind: Vec<String> = self.readers.iter().map(|r| r.name.clone()).collect();
        while !behind.is_empty() && Instant::now() < deadline {
            let mut still = Vec::new();
            for (reader, url) in self.readers.iter().zip(&self.reader_urls) {
                let status = ApiClient::new(url.clone()).get_json("/v1/status").await;
                let positions: HashMap<String, i64> = status
                    .ok()
                    .and_then(|s| s["streams"].as_array().cloned())
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|e| {
                        Some((e["stream"].as_str()?.to_owned(), e["position"].as_i64()?))
                    })
                    .collect();
                let done = want
                    .iter()
                    .all(|(s, t)| positions.get(*s).copied().unwrap_or(1) == *t);
                if !done {
                    still.push(reader.name.clone());
                }
            }
            behind = still;
            if !behind.is_empty() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        behind
    }

    /// Stops the readers and the writer with SIGTERM (each must exit cleanly), then the
    /// servers; returns what went wrong, one line each.
    pub(super) async fn stop(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        for node in self
            .readers
            .iter_mut()
            .chain(std::iter::once(&mut self.writer))
        {
            if let Err(e) = node.terminate().await {
                problems.push(format!("{e:#}"));
            }
        }
        for proxy in &self.proxies {
            proxy.heal();
        }
        problems
    }

    /// Stops the servers.
    pub(super) async fn stop_servers(&mut self) {
        if let Some(redis) = &mut self.redis {
            redis.stop().await;
        }
        if let Some(pg) = &mut self.postgres {
            pg.stop().await;
        }
    }

    /// The batches the readers' plugins failed on, all readers together.
    pub(super) fn plugin_failures(&self) -> anyhow::Result<Failures> {
        let mut all = Failures::default();
        for data in &self.reader_data {
            let one = Failures::read(data)?;
            all.batches += one.batches;
            all.trapped += one.trapped;
        }
        Ok(all)
    }

    /// What each reader applied, from its database (after [`Cluster::stop`]).
    pub(super) async fn applied(&self) -> anyhow::Result<Vec<Applied>> {
        let mut all = Vec::new();
        for (reader, data) in self.readers.iter().zip(&self.reader_data) {
            let store = ReaderStore::open(&data.join("reader.sqlite")).await?;
            let mut applied = Applied {
                name: reader.name.clone(),
                ..Applied::default()
            };
            for (stream, instance, token) in store.positions().await? {
                applied.positions.insert(
                    (stream.as_str().to_owned(), instance.as_str().to_owned()),
                    token,
                );
            }
            for stream in STREAMS {
                let rows = store.recorded_rows(&StreamName::new(stream)?).await?;
                applied.rows.insert(
                    stream.to_owned(),
                    rows.into_iter()
                        .map(|(i, t, r)| (i.as_str().to_owned(), t, r.as_str().to_owned()))
                        .collect(),
                );
            }
            all.push(applied);
        }
        Ok(all)
    }
}

/// The writer's whole log, read through `oracle`.
pub(super) async fn read_log(oracle: &streamhost_log::Log) -> anyhow::Result<LogRows> {
    let mut log = LogRows::new();
    for stream in STREAMS {
        let name = StreamName::new(stream)?;
        let mut rows = Vec::new();
        let mut from = Token(1);
        loop {
            let page = oracle
                .read_range(&name, from, Token(i64::MAX), 10_000)
                .await?;
            rows.extend(
                page.rows
                    .into_iter()
                    .map(|(t, r)| (t, r.as_str().to_owned())),
            );
            if !page.limited {
                break;
            }
            from = page.upto;
        }
        log.insert(stream.to_owned(), rows);
    }
    Ok(log)
}

fn words(w: &[&str]) -> Vec<String> {
    w.iter().map(|s| s.to_string()).collect()
}
