//! The `streamhost` commands and their flags; the writer's and reader's flags override the
//! config file.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use streamhost_server::config::{ConfigFile, ReaderConfig, WriterConfig};

/// Streamhost: an append-only log streamed over Synapse's replication protocol.
#[derive(Debug, Parser)]
#[command(
    name = "streamhost",
    version,
    about = "Streamhost: an append-only log streamed over Synapse's replication protocol"
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the writer: the durable log, its HTTP API and the replication server.
    Writer(WriterArgs),
    /// Run a reader that follows a writer and applies every row exactly once.
    Reader(ReaderArgs),
    /// Print a writer's replication traffic, decoded, one command per line.
    Tail(TailArgs),
    /// A writer, two readers and generated traffic in one process on a temporary SQLite file.
    Demo(crate::tools::demo::DemoArgs),
    /// Measure throughput and latency (see BENCHMARKS.md).
    Bench(streamhost_bench::BenchArgs),
    /// Work with reader plugins without a reader.
    Plugin(PluginArgs),
}

/// Flags of `streamhost writer`; each overrides the config file.
#[derive(Debug, Args)]
pub struct WriterArgs {
    /// TOML config file (its `[writer]` table).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// HTTP API address [default: 127.0.0.1:8480].
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// TCP replication address [default: 127.0.0.1:9092].
    #[arg(long, value_name = "ADDR")]
    pub replication: Option<SocketAddr>,
    /// Folder for the SQLite log [default: streamhost-data/writer].
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// The log's database: sqlite:PATH or postgres://USER@HOST/DB [default: the SQLite file
    /// log.sqlite in --data].
    #[arg(
        long,
        env = "STREAMHOST_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// A stream clients may append to; repeat for several [default: events].
    #[arg(long = "stream", value_name = "NAME")]
    pub streams: Vec<String>,
    /// Server name sent in SERVER [default: localhost]; also the Redis channel.
    #[arg(long, value_name = "NAME")]
    pub server_name: Option<String>,
    /// Also replicate over Redis pub/sub at this URL (redis://[:password@]host:port[/db]).
    #[arg(long, value_name = "URL")]
    pub redis_url: Option<String>,
    /// Instance name written on every row [default: master].
    #[arg(long, value_name = "NAME")]
    pub instance_name: Option<String>,
    /// Bearer token required to append rows.
    #[arg(
        long,
        env = "STREAMHOST_WRITE_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub write_token: Option<String>,
    /// Bearer token required by the catch-up endpoint.
    #[arg(
        long,
        env = "STREAMHOST_REPLICATION_SECRET",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub replication_secret: Option<String>,
    /// Bearer token required by /v1/streams and /metrics (the write token also passes).
    #[arg(
        long,
        env = "STREAMHOST_READ_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub read_token: Option<String>,
}

impl WriterArgs {
    /// The config file's `[writer]` table with these flags applied.
    pub fn resolve(&self) -> anyhow::Result<WriterConfig> {
        let mut config = match &self.config {
            Some(path) => ConfigFile::load(path)?.writer,
            None => WriterConfig::default(),
        };
        if let Some(v) = self.http {
            config.http.address = v;
        }
        if let Some(v) = self.replication {
            config.replication.address = v;
        }
        if let Some(v) = &self.data {
            config.data = v.clone();
        }
        if let Some(v) = &self.database_url {
            config.database.url = Some(v.clone());
        }
        if !self.streams.is_empty() {
            config.streams = self.streams.clone();
        }
        if let Some(v) = &self.server_name {
            config.server_name = v.clone();
        }
        if let Some(url) = &self.redis_url {
            config.redis.get_or_insert_with(Default::default).url = url.clone();
        }
        if let Some(v) = &self.instance_name {
            config.instance_name = v.clone();
        }
        if let Some(v) = &self.write_token {
            config.write_token = Some(v.clone());
        }
        if let Some(v) = &self.replication_secret {
            config.replication_secret = Some(v.clone());
        }
        if let Some(v) = &self.read_token {
            config.read_token = Some(v.clone());
        }
        config.validate()?;
        Ok(config)
    }
}

/// Flags of `streamhost reader`; each overrides the config file.
#[derive(Debug, Args)]
pub struct ReaderArgs {
    /// TOML config file (its `[reader]` table).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The writer's replication address [default: 127.0.0.1:9092].
    #[arg(long, value_name = "ADDR")]
    pub writer: Option<String>,
    /// The writer's HTTP URL, for catch-up [default: http://127.0.0.1:8480].
    #[arg(long, value_name = "URL")]
    pub writer_http: Option<String>,
    /// The reader's HTTP API address [default: 127.0.0.1:8481].
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// Folder for the reader's SQLite file [default: streamhost-data/reader].
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Name sent in NAME [default: reader].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Expected server name; a writer announcing another one is refused. With Redis, the
    /// channel.
    #[arg(long, value_name = "NAME")]
    pub server_name: Option<String>,
    /// Follow the writer over Redis pub/sub at this URL instead of TCP (needs --server-name).
    #[arg(long, value_name = "URL")]
    pub redis_url: Option<String>,
    /// Keep every delivered row in the reader's database (the recording sink).
    #[arg(long)]
    pub record_rows: bool,
    /// Bearer token for the writer's catch-up endpoint.
    #[arg(
        long,
        env = "STREAMHOST_REPLICATION_SECRET",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub replication_secret: Option<String>,
    /// Catch up straight from the writer's log database (sqlite:PATH or postgres://...,
    /// read only) instead of the writer's HTTP endpoint.
    #[arg(
        long,
        env = "STREAMHOST_LOG_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub log_database_url: Option<String>,
    /// Folder of Wasm plugins: one sub-folder per plugin with its plugin.toml and .wasm.
    #[arg(long, value_name = "DIR")]
    pub plugins: Option<PathBuf>,
    /// Bearer token of the plugin admin API.
    #[arg(
        long,
        env = "STREAMHOST_ADMIN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
    /// Bearer token required by /v1/status and /metrics (the admin token also passes).
    #[arg(
        long,
        env = "STREAMHOST_READ_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub read_token: Option<String>,
}

impl ReaderArgs {
    /// The config file's `[reader]` table with these flags applied.
    pub fn resolve(&self) -> anyhow::Result<ReaderConfig> {
        let mut config = match &self.config {
            Some(path) => ConfigFile::load(path)?.reader,
            None => ReaderConfig::default(),
        };
        if let Some(v) = &self.writer {
            config.writer = v.clone();
        }
        if let Some(v) = &self.writer_http {
            config.writer_http = v.clone();
        }
        if let Some(v) = self.http {
            config.http.address = v;
        }
        if let Some(v) = &self.data {
            config.data = v.clone();
        }
        if let Some(v) = &self.name {
            config.name = v.clone();
        }
        if let Some(v) = &self.server_name {
            config.server_name = Some(v.clone());
        }
        if let Some(url) = &self.redis_url {
            config.redis.get_or_insert_with(Default::default).url = url.clone();
        }
        if self.record_rows {
            config.record_rows = true;
        }
        if let Some(v) = &self.replication_secret {
            config.replication_secret = Some(v.clone());
        }
        if let Some(v) = &self.log_database_url {
            config.log_database_url = Some(v.clone());
        }
        if let Some(v) = &self.plugins {
            config.plugins.dir = Some(v.clone());
        }
        if let Some(v) = &self.admin_token {
            config.plugins.admin_token = Some(v.clone());
        }
        if let Some(v) = &self.read_token {
            config.read_token = Some(v.clone());
        }
        config.validate()?;
        Ok(config)
    }
}

/// Flags of `streamhost tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// The writer's replication address.
    #[arg(long, value_name = "HOST:PORT")]
    pub connect: String,
    /// One JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
    /// Name sent in NAME.
    #[arg(long, default_value = "streamhost-tail")]
    pub name: String,
}

/// Flags of `streamhost plugin`.
#[derive(Debug, Args)]
pub struct PluginArgs {
    /// What to do with a plugin.
    #[command(subcommand)]
    pub command: PluginCommand,
}

/// The `streamhost plugin` subcommands.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Replay recorded replication lines through one plugin and report every batch.
    Run(crate::tools::plugin_run::PluginRunArgs),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[writer]\nserver_name = \"file.example\"\nstreams = [\"a\"]\n",
        )
        .unwrap();
        let cli = Cli::try_parse_from([
            "streamhost",
            "writer",
            "--config",
            path.to_str().unwrap(),
            "--stream",
            "b",
            "--stream",
            "c",
        ])
        .unwrap();
        let Command::Writer(args) = cli.command else {
            panic!("writer")
        };
        let config = args.resolve().unwrap();
        assert_eq!(config.server_name, "file.example");
        assert_eq!(config.streams, vec!["b".to_string(), "c".to_string()]);
    }

    #[test]
    fn the_read_token_is_a_flag_of_both() {
        let cli = Cli::try_parse_from(["streamhost", "writer", "--read-token", "w"]).unwrap();
        let Command::Writer(args) = cli.command else {
            panic!("writer")
        };
        assert_eq!(args.resolve().unwrap().read_token.as_deref(), Some("w"));
        let cli = Cli::try_parse_from(["streamhost", "reader", "--read-token", "r"]).unwrap();
        let Command::Reader(args) = cli.command else {
            panic!("reader")
        };
        assert_eq!(args.resolve().unwrap().read_token.as_deref(), Some("r"));
    }
}
