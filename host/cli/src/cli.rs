//! The `streamhost` commands and their flags; the writer's and reader's flags override the
//! config file. The completions and the man pages are generated from these definitions
//! (`tools::manual`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::logging::LogFormat;
use streamhost_server::config::{ConfigFile, Environment, ReaderConfig, WriterConfig};

/// Streamhost: an append-only log streamed over Synapse's replication protocol.
#[derive(Debug, Parser)]
#[command(
    name = "streamhost",
    version,
    about = "Streamhost: an append-only log streamed over Synapse's replication protocol"
)]
pub struct Cli {
    /// Log format, on stderr (the demo's go to its log file).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
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
    /// A soak under faults (process kills, cut links, server crashes) that checks every
    /// acknowledged row reached every reader exactly once; `--seed` replays a run.
    Chaos(crate::tools::chaos::ChaosArgs),
    /// Measure throughput and latency (see BENCHMARKS.md).
    Bench(streamhost_bench::BenchArgs),
    /// Work with reader plugins without a reader.
    Plugin(PluginArgs),
    /// Check a configuration and print its effective settings.
    Config(ConfigArgs),
    /// Configure a reader from a Synapse deployment's own configuration.
    Synapse(SynapseArgs),
    /// Ask a running reader's admin API: plugins, reload, quarantine, resume, dead letters,
    /// status.
    Admin(crate::tools::admin::AdminArgs),
    /// Print a completion script for a shell (bash, zsh, fish, elvish, powershell).
    Completions(crate::tools::manual::CompletionsArgs),
    /// Write the man pages, generated from these command definitions.
    Man(crate::tools::manual::ManArgs),
}

/// How `streamhost writer --help` and `streamhost reader --help` end: where secrets go.
const SECRETS_HELP: &str = "Every setting of the config file can also be an environment \
variable: its TOML path upper-cased, tables joined by a double underscore \
(STREAMHOST_WRITER__HTTP__ADDRESS=0.0.0.0:8480); the file is read first, then the \
environment, then these flags (docs/configuration.md, \"Environment variables\"). \
Secrets are never flags (`ps` shows a process's flags to every \
user of the machine). Set them in the environment (STREAMHOST_WRITE_TOKEN, \
STREAMHOST_REPLICATION_SECRET, STREAMHOST_ADMIN_TOKEN, STREAMHOST_READ_TOKEN; a database URL with its password in \
STREAMHOST_DATABASE_URL or STREAMHOST_LOG_DATABASE_URL), name a file holding them (the \
--*-file flags, or the *_file keys of the config file), or write them in the config file. \
A URL given as a flag must not hold a password.";

/// Flags of `streamhost writer`; each overrides the config file.
#[derive(Debug, Args)]
#[command(after_help = SECRETS_HELP)]
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
    /// The log's database: sqlite:PATH or postgres://USER@HOST/DB, without a password (put
    /// a URL with one in STREAMHOST_DATABASE_URL, or the password in [writer.database]
    /// password_file) [default: the SQLite file log.sqlite in --data].
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// A stream clients may append to; repeat for several [default: events].
    #[arg(long = "stream", value_name = "NAME")]
    pub streams: Vec<String>,
    /// Server name sent in SERVER [default: localhost]; also the Redis channel.
    #[arg(long, value_name = "NAME")]
    pub server_name: Option<String>,
    /// Also replicate over Redis pub/sub at this URL (redis://host:port[/db], without a
    /// password: put it in [writer.redis] password_file).
    #[arg(long, value_name = "URL")]
    pub redis_url: Option<String>,
    /// Instance name written on every row [default: master].
    #[arg(long, value_name = "NAME")]
    pub instance_name: Option<String>,
    /// A file holding the bearer token required to append rows (or STREAMHOST_WRITE_TOKEN).
    #[arg(long, value_name = "FILE")]
    pub write_token_file: Option<PathBuf>,
    /// A file holding the bearer token required by the catch-up endpoint (or
    /// STREAMHOST_REPLICATION_SECRET).
    #[arg(long, value_name = "FILE")]
    pub replication_secret_file: Option<PathBuf>,
    /// A file holding the bearer token required by /v1/streams, /v1/status and /metrics (or
    /// STREAMHOST_READ_TOKEN; the write token also passes).
    #[arg(long, value_name = "FILE")]
    pub read_token_file: Option<PathBuf>,
}

impl WriterArgs {
    /// The config file's `[writer]` table with the process's `STREAMHOST_…` environment and
    /// these flags over it, its secret files read.
    pub fn resolve(&self) -> anyhow::Result<WriterConfig> {
        self.resolve_with(&Environment::from_process()?)
    }

    /// [`WriterArgs::resolve`] with the environment `env`.
    pub fn resolve_with(&self, env: &Environment) -> anyhow::Result<WriterConfig> {
        let mut config = ConfigFile::resolve(self.config.as_deref(), env)?.writer;
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
            config.database.url = Some(url_flag("--database-url", v)?.into());
        }
        if !self.streams.is_empty() {
            config.streams = self.streams.clone();
        }
        if let Some(v) = &self.server_name {
            config.server_name = v.clone();
        }
        if let Some(url) = &self.redis_url {
            config.redis.get_or_insert_with(Default::default).url =
                url_flag("--redis-url", url)?.into();
        }
        if let Some(v) = &self.instance_name {
            config.instance_name = v.clone();
        }
        if let Some(v) = &self.write_token_file {
            config.write_token_file = Some(v.clone());
            config.write_token = None;
        }
        if let Some(v) = &self.replication_secret_file {
            config.replication_secret_file = Some(v.clone());
            config.replication_secret = None;
        }
        if let Some(v) = &self.read_token_file {
            config.read_token_file = Some(v.clone());
            config.read_token = None;
        }
        config.load_secrets()?;
        config.validate()?;
        Ok(config)
    }
}

/// Flags of `streamhost reader`; each overrides the config file.
#[derive(Debug, Args)]
#[command(after_help = SECRETS_HELP)]
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
    /// Follow the writer over Redis pub/sub at this URL instead of TCP (needs --server-name),
    /// without a password: put it in [reader.redis] password_file.
    #[arg(long, value_name = "URL")]
    pub redis_url: Option<String>,
    /// Keep every delivered row in the reader's database (the recording sink).
    #[arg(long)]
    pub record_rows: bool,
    /// A file holding the bearer token for the writer's catch-up endpoint (or
    /// STREAMHOST_REPLICATION_SECRET).
    #[arg(long, value_name = "FILE")]
    pub replication_secret_file: Option<PathBuf>,
    /// Catch up straight from the writer's log database (sqlite:PATH or postgres://..., read
    /// only) instead of the writer's HTTP endpoint; without a password (put a URL with one in
    /// STREAMHOST_LOG_DATABASE_URL, or the password in log_database_password_file).
    #[arg(long, value_name = "URL")]
    pub log_database_url: Option<String>,
    /// Folder of Wasm plugins: one sub-folder per plugin with its plugin.toml and .wasm.
    #[arg(long, value_name = "DIR")]
    pub plugins: Option<PathBuf>,
    /// A file holding the bearer token of the plugin admin API (or STREAMHOST_ADMIN_TOKEN).
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// A file holding the bearer token required by /v1/status and /metrics (or
    /// STREAMHOST_READ_TOKEN; the admin token also passes).
    #[arg(long, value_name = "FILE")]
    pub read_token_file: Option<PathBuf>,
}

impl ReaderArgs {
    /// The config file's `[reader]` table with the process's `STREAMHOST_…` environment and
    /// these flags over it, its secret files read.
    pub fn resolve(&self) -> anyhow::Result<ReaderConfig> {
        self.resolve_with(&Environment::from_process()?)
    }

    /// [`ReaderArgs::resolve`] with the environment `env`.
    pub fn resolve_with(&self, env: &Environment) -> anyhow::Result<ReaderConfig> {
        let mut config = ConfigFile::resolve(self.config.as_deref(), env)?.reader;
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
            config.redis.get_or_insert_with(Default::default).url =
                url_flag("--redis-url", url)?.into();
        }
        if self.record_rows {
            config.record_rows = true;
        }
        if let Some(v) = &self.replication_secret_file {
            config.replication_secret_file = Some(v.clone());
            config.replication_secret = None;
        }
        if let Some(v) = &self.log_database_url {
            config.log_database_url = Some(url_flag("--log-database-url", v)?.into());
        }
        if let Some(v) = &self.plugins {
            config.plugins.dir = Some(v.clone());
        }
        if let Some(v) = &self.admin_token_file {
            config.plugins.admin_token_file = Some(v.clone());
            config.plugins.admin_token = None;
        }
        if let Some(v) = &self.read_token_file {
            config.read_token_file = Some(v.clone());
            config.read_token = None;
        }
        config.load_secrets()?;
        config.validate()?;
        Ok(config)
    }
}

/// A URL given as `flag`, refused (without repeating it) when it holds a password: `ps`
/// would show it.
fn url_flag<'a>(flag: &str, url: &'a str) -> anyhow::Result<&'a str> {
    anyhow::ensure!(
        !streamhost_log::has_password(url),
        "{flag}: the URL holds a password, which `ps` shows to every user: give the URL in \
         the environment or the config file, or the password in a password file \
         (docs/configuration.md, \"Secrets\")"
    );
    Ok(url)
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
    /// Write a new plugin project (Rust, Python or JavaScript) in any folder.
    New(crate::tools::plugin_new::PluginNewArgs),
    /// Build a plugin folder into the layout a reader loads; print its size and sha256.
    Build(crate::tools::plugin_build::PluginBuildArgs),
    /// Replay the plugin's fixtures and compare with its expectations file.
    Test(crate::tools::plugin_test::PluginTestArgs),
    /// Rebuild on save and hot-reload into a local writer and reader fed with traffic.
    Dev(crate::tools::plugin_dev::PluginDevArgs),
}

/// Flags of `streamhost config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// What to do with a configuration.
    #[command(subcommand)]
    pub command: ConfigCommand,
}

/// The `streamhost config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a configuration file with the STREAMHOST_ environment over it, as a start
    /// would, and print every effective setting as TOML, secrets masked.
    Check(crate::tools::config_check::ConfigCheckArgs),
}

/// Flags of `streamhost synapse`.
#[derive(Debug, Args)]
pub struct SynapseArgs {
    /// What to do with a Synapse deployment.
    #[command(subcommand)]
    pub command: SynapseCommand,
}

/// The `streamhost synapse` subcommands.
#[derive(Debug, Subcommand)]
pub enum SynapseCommand {
    /// Write the reader configuration that follows the Synapse configured by
    /// homeserver.yaml (and a worker's YAML over it).
    Import(crate::tools::synapse_import::SynapseImportArgs),
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
        let config = args.resolve_with(&env(&[])).unwrap();
        assert_eq!(config.server_name, "file.example");
        assert_eq!(config.streams, vec!["b".to_string(), "c".to_string()]);
    }

    #[test]
    fn the_environment_beats_the_file_and_a_flag_beats_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[writer]\nserver_name = \"file\"\ninstance_name = \"file\"\ntail_rows = 1\n\
             [reader]\nname = \"file\"\ninbound_queue = 1\n",
        )
        .unwrap();
        let config = path.to_str().unwrap();
        let vars = [
            ("STREAMHOST_WRITER__SERVER_NAME", "env"),
            ("STREAMHOST_WRITER__INSTANCE_NAME", "env"),
            ("STREAMHOST_READER__NAME", "env"),
            ("STREAMHOST_READER__INBOUND_QUEUE", "2"),
        ];
        let writer = writer_args(&["--config", config, "--instance-name", "flag"])
            .resolve_with(&env(&vars))
            .unwrap();
        assert_eq!(writer.tail_rows, 1, "the file over the default");
        assert_eq!(writer.server_name, "env", "the environment over the file");
        assert_eq!(writer.instance_name, "flag", "a flag over the environment");
        let reader = reader_args(&["--config", config])
            .resolve_with(&env(&vars))
            .unwrap();
        assert_eq!((reader.name.as_str(), reader.inbound_queue), ("env", 2));
        let err = reader_args(&["--config", config])
            .resolve_with(&env(&[(
                "STREAMHOST_READER__HTTP__ADDRESS",
                "localhost:http",
            )]))
            .unwrap_err();
        let err = format!("{err:#}");
        assert!(
            err.contains("STREAMHOST_READER__HTTP__ADDRESS (setting reader.http.address)"),
            "{err}"
        );
        let err = writer_args(&[])
            .resolve_with(&env(&[(
                "STREAMHOST_WRITER__HTTP__MAX_CONNECTIONS",
                "many",
            )]))
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("STREAMHOST_WRITER__HTTP__MAX_CONNECTIONS"),
            "{err:#}"
        );
    }

    #[test]
    fn the_read_token_comes_from_the_environment_or_a_file_for_both() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("read");
        std::fs::write(&file, "r-from-file\n").unwrap();
        let vars = [("STREAMHOST_READ_TOKEN", "w-from-env")];
        let config = writer_args(&[]).resolve_with(&env(&vars)).unwrap();
        assert_eq!(config.read_token.as_deref(), Some("w-from-env"));
        let config = reader_args(&["--read-token-file", file.to_str().unwrap()])
            .resolve_with(&env(&vars))
            .unwrap();
        assert_eq!(config.read_token.as_deref(), Some("r-from-file"));
        assert!(Cli::try_parse_from(["streamhost", "reader", "--read-token", "r"]).is_err());
    }

    fn writer_args(args: &[&str]) -> WriterArgs {
        let cli = Cli::try_parse_from([&["streamhost", "writer"], args].concat()).unwrap();
        let Command::Writer(args) = cli.command else {
            panic!("writer")
        };
        args
    }

    fn reader_args(args: &[&str]) -> ReaderArgs {
        let cli = Cli::try_parse_from([&["streamhost", "reader"], args].concat()).unwrap();
        let Command::Reader(args) = cli.command else {
            panic!("reader")
        };
        args
    }

    fn env(vars: &[(&str, &str)]) -> Environment {
        Environment::from_pairs(vars.iter().copied())
    }

    #[test]
    fn secrets_are_never_flags() {
        for args in [
            ["streamhost", "writer", "--write-token", "s3cret"],
            ["streamhost", "writer", "--replication-secret", "s3cret"],
            ["streamhost", "reader", "--replication-secret", "s3cret"],
            ["streamhost", "reader", "--admin-token", "s3cret"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
        let help = Cli::command()
            .find_subcommand_mut("writer")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(help.contains("Secrets are never flags"), "{help}");
    }

    #[test]
    fn secrets_come_from_the_environment_or_files_and_a_flag_beats_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("repl");
        std::fs::write(&file, "from-file\n").unwrap();
        let vars = [
            ("STREAMHOST_WRITE_TOKEN", "from-env"),
            ("STREAMHOST_REPLICATION_SECRET", "repl-from-env"),
            ("STREAMHOST_DATABASE_URL", "postgres://u:pw-from-env@db/log"),
        ];
        let config = writer_args(&["--replication-secret-file", file.to_str().unwrap()])
            .resolve_with(&env(&vars))
            .unwrap();
        assert_eq!(config.write_token.as_deref(), Some("from-env"));
        assert_eq!(config.replication_secret.as_deref(), Some("from-file"));
        assert_eq!(
            config.database.url.as_deref(),
            Some("postgres://u:pw-from-env@db/log")
        );
        let vars = [
            ("STREAMHOST_ADMIN_TOKEN", "admin-from-env"),
            ("STREAMHOST_LOG_DATABASE_URL", "postgres://u:pw@db/log"),
        ];
        let config = reader_args(&["--replication-secret-file", file.to_str().unwrap()])
            .resolve_with(&env(&vars))
            .unwrap();
        assert_eq!(
            config.plugins.admin_token.as_deref(),
            Some("admin-from-env")
        );
        assert_eq!(config.replication_secret.as_deref(), Some("from-file"));
        let err = writer_args(&[])
            .resolve_with(&env(&[("STREAMHOST_WRITE_TOKEN", "")]))
            .unwrap_err();
        assert!(err.to_string().contains("STREAMHOST_WRITE_TOKEN"), "{err}");
    }

    #[test]
    fn a_url_flag_holding_a_password_is_refused_without_showing_it() {
        for (role, flag, url) in [
            ("writer", "--database-url", "postgres://u:pw-in-argv@db/log"),
            ("writer", "--redis-url", "redis://:pw-in-argv@redis"),
            (
                "reader",
                "--log-database-url",
                "postgres://u@db/log?password=pw-in-argv",
            ),
            (
                "reader",
                "--redis-url",
                "redis+unix:///r.sock?pass=pw-in-argv",
            ),
        ] {
            let err = if role == "writer" {
                writer_args(&[flag, url])
                    .resolve_with(&env(&[]))
                    .unwrap_err()
            } else {
                reader_args(&[flag, url])
                    .resolve_with(&env(&[]))
                    .unwrap_err()
            };
            let err = format!("{err:#}");
            assert!(err.contains(flag) && !err.contains("pw-in-argv"), "{err}");
        }
        let config = writer_args(&["--database-url", "postgres://u@db/log?sslmode=require"])
            .resolve_with(&env(&[]))
            .unwrap();
        assert_eq!(
            config.database.url.as_deref(),
            Some("postgres://u@db/log?sslmode=require")
        );
    }
}
