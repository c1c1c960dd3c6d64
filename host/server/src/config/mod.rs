//! The one TOML configuration file (`--config`), its defaults and validation.
//!
//! Layering: built-in defaults, then the file, then `STREAMHOST_…` environment variables
//! (laid over the file's TOML tree in [`env`], [`ConfigFile::resolve`]), then command-line
//! flags (applied in `cli`). Unknown keys are errors that name the key (or the variable).
//! `[writer.retention]` and `[reader.plugins.retention]` are in `retention`;
//! `[reader.synapse]` is in [`synapse`], `[writer.redis]` and `[reader.redis]` in `redis`; the
//! memory bounds' checks and conversions are in `bounds`; `[reader.plugins.queries]` and
//! `[reader.plugins.rate_limit]` are in [`queries`], `[reader.plugins]` itself in `plugins`;
//! listeners' settings are in `listener`, and the secure-defaults check of their exposure
//! (run at start) in [`exposure`];
//! `[reader.writer_tls]` is in `client_tls`; secrets (never shown, and read from `*_file`
//! keys) are in [`secrets`]; `[reader.auth]` is in [`auth`], its token scopes in
//! [`scope`].

mod auth;
mod bounds;
mod client_tls;
mod destinations;
pub mod env;
pub mod exposure;
mod listener;
mod plugins;
mod queries;
mod redis;
mod retention;
mod scope;
pub mod secrets;
mod synapse;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use streamhost_proto::{InstanceName, StreamName};

pub use self::auth::{AuthConfig, MIN_TOKEN_BYTES, TokenConfig};
pub use self::client_tls::ClientTlsConfig;
pub use self::destinations::{DestinationConfig, for_plugins as destinations_for_plugins};
pub use self::env::Environment;
pub use self::listener::{ListenerConfig, ServerTlsConfig};
pub use self::plugins::PluginsConfig;
pub use self::queries::{QueriesConfig, RateLimitConfig};
pub use self::redis::RedisConfig;
pub use self::retention::{
    Limits as RetentionLimits, PluginRetention, StreamRetention, WriterRetention,
};
pub use self::scope::{Pattern, Scope};
pub use self::secrets::{Secret, SecretUrl};
pub use self::synapse::{InstanceLocation, StreamWriters, SynapseConfig, SynapseRedisConfig};

/// The whole file: a `[writer]` and a `[reader]` table, both optional.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConfigFile {
    /// Settings of `streamhost writer`.
    pub writer: WriterConfig,
    /// Settings of `streamhost reader`.
    pub reader: ReaderConfig,
}

impl ConfigFile {
    /// Reads and parses `path`; unknown keys and bad values are errors naming the key.
    pub fn load(path: &Path) -> anyhow::Result<ConfigFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        ConfigFile::parse(&text).with_context(|| format!("in config {}", path.display()))
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> anyhow::Result<ConfigFile> {
        Ok(toml::from_str(text)?)
    }

    /// The configuration a process starts from before its flags: the defaults, the file at
    /// `path` if any, then the `STREAMHOST_…` settings of `env` over them ([`env`]). Errors
    /// name the file's key or the variable.
    pub fn resolve(path: Option<&Path>, env: &Environment) -> anyhow::Result<ConfigFile> {
        let mut tree = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config {}", path.display()))?;
                // Parsed as the whole file first, so its errors point into the text.
                ConfigFile::parse(&text)
                    .with_context(|| format!("in config {}", path.display()))?;
                toml::from_str(&text)?
            }
            None => toml::Table::new(),
        };
        env::apply(&mut tree, env)?;
        Ok(tree.try_into()?)
    }

    /// The configuration as TOML, every key included (unset ones are left out), with every
    /// secret as `***` and every URL's password as `***` ([`secrets`]).
    pub fn to_masked_toml(&self) -> anyhow::Result<String> {
        Ok(toml::to_string_pretty(self)?)
    }
}

/// The writer's log database (`[writer.database]`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite:PATH`, or `postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?sslmode=…]` for
    /// PostgreSQL; none means the SQLite file `<data>/log.sqlite`.
    pub url: Option<SecretUrl>,
    /// A file holding the PostgreSQL password, put into `url` at start (instead of writing it
    /// in the URL).
    pub password_file: Option<PathBuf>,
}

/// How the writer runs.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WriterConfig {
    /// The HTTP API's listener (appends, catch-up, status, metrics).
    pub http: ListenerConfig,
    /// The TCP replication listener.
    pub replication: ListenerConfig,
    /// Folder of the SQLite log (`log.sqlite`), unless `[writer.database] url` names another.
    pub data: PathBuf,
    /// Where the log lives (`[writer.database]`).
    pub database: DatabaseConfig,
    /// The streams clients may append to.
    pub streams: Vec<String>,
    /// Sent in `SERVER`; readers may check it.
    pub server_name: String,
    /// The instance name on every row (`master`, as Synapse's main process).
    pub instance_name: String,
    /// Bearer token required for `POST /v1/streams/{stream}/rows`; none means open.
    pub write_token: Option<Secret>,
    /// A file holding `write_token`, read at start.
    pub write_token_file: Option<PathBuf>,
    /// Bearer token required by the catch-up endpoint (Synapse's `worker_replication_secret`).
    pub replication_secret: Option<Secret>,
    /// A file holding `replication_secret`, read at start.
    pub replication_secret_file: Option<PathBuf>,
    /// Bearer token required by `GET /v1/streams` and `GET /metrics` (the write token is
    /// accepted there too); none means open.
    pub read_token: Option<Secret>,
    /// A file holding `read_token`, read at start.
    pub read_token_file: Option<PathBuf>,
    /// Largest accepted request body, in bytes (default 16 MiB).
    pub max_body_bytes: usize,
    /// Most rows one catch-up answer carries before it says `limited`.
    pub catchup_row_limit: usize,
    /// Most rows the streamer reads per stream per pass.
    pub stream_batch_rows: usize,
    /// Rows kept in memory per stream so the live path rarely reads SQL.
    pub tail_rows: usize,
    /// Bytes of rows kept in memory per stream, in MiB (with `tail_rows`, whichever is hit
    /// first).
    pub tail_mib: usize,
    /// Most rows one append request may carry; more is answered 413.
    pub max_append_rows: usize,
    /// Commands a connection may have pending before `ERROR Failed to keep up` (Synapse: 10,000).
    pub max_pending_commands: usize,
    /// Send `PING` after this long without sending (Synapse: 5,000 ms).
    pub ping_interval_ms: u64,
    /// Close with `ERROR ping timeout` after this long without a command, once the peer has
    /// sent a `PING` (Synapse: 25,000 ms).
    pub ping_timeout_ms: u64,
    /// Also replicate over Redis pub/sub (`[writer.redis]`), on channel `<server_name>`,
    /// beside the TCP listener.
    pub redis: Option<RedisConfig>,
    /// Trimming the log per stream (`[writer.retention]`, in `retention`); off by default.
    pub retention: WriterRetention,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            http: ListenerConfig::on(SocketAddr::from(([127, 0, 0, 1], 8480))),
            replication: ListenerConfig::on(SocketAddr::from(([127, 0, 0, 1], 9092))),
            data: PathBuf::from("streamhost-data/writer"),
            database: DatabaseConfig::default(),
            streams: vec!["events".into()],
            server_name: "localhost".into(),
            instance_name: "master".into(),
            write_token: None,
            write_token_file: None,
            replication_secret: None,
            read_token: None,
            read_token_file: None,
            replication_secret_file: None,
            max_body_bytes: 16 << 20,
            catchup_row_limit: 1_000,
            stream_batch_rows: 1_000,
            tail_rows: 100_000,
            tail_mib: 64,
            max_append_rows: 10_000,
            max_pending_commands: 10_000,
            ping_interval_ms: 5_000,
            ping_timeout_ms: 25_000,
            redis: None,
            retention: WriterRetention::default(),
        }
    }
}

impl WriterConfig {
    /// Reads the secrets that `*_file` keys name into their keys (`write_token_file` into
    /// `write_token`, a `password_file` into its URL); a key set both ways is an error. Done
    /// once at start (the writer does it, and loading again is harmless); errors name the key.
    pub fn load_secrets(&mut self) -> anyhow::Result<()> {
        secrets::load(
            &mut self.write_token,
            &mut self.write_token_file,
            "writer.write_token",
            "writer.write_token_file",
        )?;
        secrets::load(
            &mut self.replication_secret,
            &mut self.replication_secret_file,
            "writer.replication_secret",
            "writer.replication_secret_file",
        )?;
        secrets::load(
            &mut self.read_token,
            &mut self.read_token_file,
            "writer.read_token",
            "writer.read_token_file",
        )?;
        secrets::load_password(
            self.database.url.as_mut(),
            &mut self.database.password_file,
            "writer.database.url",
            "writer.database.password_file",
        )?;
        if let Some(redis) = &mut self.redis {
            redis.load_password("writer.redis")?;
        }
        Ok(())
    }

    /// The declared streams as wire names; errors name the bad one.
    pub fn stream_names(&self) -> anyhow::Result<Vec<StreamName>> {
        anyhow::ensure!(
            !self.streams.is_empty(),
            "writer.streams: declare at least one stream"
        );
        self.streams
            .iter()
            .map(|s| StreamName::new(s.as_str()).context("writer.streams"))
            .collect()
    }

    /// The instance name as a wire name.
    pub fn instance(&self) -> anyhow::Result<InstanceName> {
        InstanceName::new(self.instance_name.as_str()).context("writer.instance_name")
    }

    /// The path of the SQLite log file when no `database.url` is set.
    pub fn log_path(&self) -> PathBuf {
        self.data.join("log.sqlite")
    }

    /// The ping interval.
    pub fn ping_interval(&self) -> Duration {
        Duration::from_millis(self.ping_interval_ms)
    }

    /// The ping timeout.
    pub fn ping_timeout(&self) -> Duration {
        Duration::from_millis(self.ping_timeout_ms)
    }

    /// Checks values that serde cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.http.validate("writer.http")?;
        self.replication.validate("writer.replication")?;
        self.retention.validate(&self.stream_names()?)?;
        if let Some(url) = &self.database.url {
            streamhost_log::Backend::of_url(url).context("writer.database.url")?;
        }
        self.instance()?;
        anyhow::ensure!(
            !self.server_name.contains(['\n', '\r']),
            "writer.server_name: no newlines"
        );
        anyhow::ensure!(
            self.catchup_row_limit > 0,
            "writer.catchup_row_limit must be > 0"
        );
        anyhow::ensure!(
            self.stream_batch_rows > 0,
            "writer.stream_batch_rows must be > 0"
        );
        self.validate_bounds()?;
        anyhow::ensure!(
            self.max_pending_commands > 0,
            "writer.max_pending_commands must be > 0"
        );
        anyhow::ensure!(
            self.ping_interval_ms > 0,
            "writer.ping_interval_ms must be > 0"
        );
        if let Some(redis) = &self.redis {
            redis.validate("writer.redis")?;
            anyhow::ensure!(
                !self.server_name.is_empty() && !self.server_name.contains(' '),
                "writer.server_name names the Redis channel: non-empty, no spaces"
            );
        }
        Ok(())
    }
}

/// How a reader runs.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReaderConfig {
    /// The writer's replication address (`HOST:PORT`).
    pub writer: String,
    /// The writer's HTTP base URL, for catch-up (`http://HOST:PORT` or `https://HOST:PORT`).
    pub writer_http: String,
    /// TLS towards the writer (`[reader.writer_tls]`): when set, the TCP replication
    /// connection is TLS, and an `https://` `writer_http` uses the same CA and client
    /// certificate.
    pub writer_tls: Option<ClientTlsConfig>,
    /// The reader's HTTP API listener (status, metrics, plugin queries and notifications).
    pub http: ListenerConfig,
    /// Folder of the reader's own SQLite file (`reader.sqlite`: positions, recorded rows).
    pub data: PathBuf,
    /// Sent in `NAME`.
    pub name: String,
    /// When set, a `SERVER` with another name is answered `ERROR Wrong remote`.
    pub server_name: Option<String>,
    /// Bearer token for the writer's catch-up endpoint.
    pub replication_secret: Option<Secret>,
    /// A file holding `replication_secret`, read at start.
    pub replication_secret_file: Option<PathBuf>,
    /// Bearer token required by `GET /v1/status` and `GET /metrics` (the admin token is
    /// accepted there too); none means open.
    pub read_token: Option<Secret>,
    /// A file holding `read_token`, read at start.
    pub read_token_file: Option<PathBuf>,
    /// Keep every delivered row in the reader's database (the recording sink).
    pub record_rows: bool,
    /// Decoded commands buffered between the socket and processing; when full the reader
    /// stops reading, and a writer that cannot send closes the connection.
    pub inbound_queue: usize,
    /// Bytes of decoded commands buffered, in MiB (with `inbound_queue`, whichever is hit
    /// first).
    pub inbound_queue_mib: usize,
    /// Longest wait between reconnection attempts, in milliseconds (Synapse: 5,000).
    pub reconnect_max_ms: u64,
    /// Send `PING` after this long without sending.
    pub ping_interval_ms: u64,
    /// Reconnect after this long without a command once the writer has sent a `PING`.
    pub ping_timeout_ms: u64,
    /// Catch up straight from the writer's log database at this URL (`sqlite:PATH` or
    /// `postgres://...`, read only) instead of the writer's HTTP endpoint.
    pub log_database_url: Option<SecretUrl>,
    /// A file holding the password of `log_database_url`, put into it at start.
    pub log_database_password_file: Option<PathBuf>,
    /// Wasm plugins (`[reader.plugins]`).
    pub plugins: PluginsConfig,
    /// Follow the writer over Redis pub/sub (`[reader.redis]`) instead of TCP: channel
    /// `<server_name>` (so `server_name` is required); `writer` is then unused.
    pub redis: Option<RedisConfig>,
    /// Follow a live Synapse deployment instead of a Streamhost writer (`[reader.synapse]`,
    /// `docs/synapse.md`); `name` is then this reader's instance name in the deployment, and
    /// `writer`, `writer_http`, `server_name`, `redis` and `log_database_url` are unused.
    pub synapse: Option<SynapseConfig>,
    /// API tokens and the authorizer for the plugin endpoints (`[reader.auth]`,
    /// `docs/security.md`).
    pub auth: AuthConfig,
    /// Where plugins may push and call (`[reader.destinations.<name>]`, `docs/pushers.md`).
    pub destinations: std::collections::BTreeMap<String, DestinationConfig>,
}

impl Default for ReaderConfig {
    fn default() -> Self {
        ReaderConfig {
            writer: "127.0.0.1:9092".into(),
            writer_http: "http://127.0.0.1:8480".into(),
            writer_tls: None,
            http: ListenerConfig::on(SocketAddr::from(([127, 0, 0, 1], 8481))),
            data: PathBuf::from("streamhost-data/reader"),
            name: "reader".into(),
            server_name: None,
            replication_secret: None,
            read_token: None,
            read_token_file: None,
            replication_secret_file: None,
            record_rows: false,
            inbound_queue: 100_000,
            inbound_queue_mib: 16,
            reconnect_max_ms: 5_000,
            ping_interval_ms: 5_000,
            ping_timeout_ms: 25_000,
            log_database_url: None,
            log_database_password_file: None,
            plugins: PluginsConfig::default(),
            redis: None,
            synapse: None,
            auth: AuthConfig::default(),
            destinations: Default::default(),
        }
    }
}

impl ReaderConfig {
    /// Reads the secrets that `*_file` keys name into their keys (`replication_secret_file`,
    /// `plugins.admin_token_file`, `log_database_password_file` into `log_database_url`,
    /// `redis.password_file`, `synapse.worker_replication_secret_path`); a key set both ways
    /// is an error. Done once at start (the reader does it, and loading again is harmless);
    /// errors name the key.
    pub fn load_secrets(&mut self) -> anyhow::Result<()> {
        secrets::load(
            &mut self.replication_secret,
            &mut self.replication_secret_file,
            "reader.replication_secret",
            "reader.replication_secret_file",
        )?;
        secrets::load(
            &mut self.read_token,
            &mut self.read_token_file,
            "reader.read_token",
            "reader.read_token_file",
        )?;
        secrets::load(
            &mut self.plugins.admin_token,
            &mut self.plugins.admin_token_file,
            "reader.plugins.admin_token",
            "reader.plugins.admin_token_file",
        )?;
        secrets::load_password(
            self.log_database_url.as_mut(),
            &mut self.log_database_password_file,
            "reader.log_database_url",
            "reader.log_database_password_file",
        )?;
        if let Some(redis) = &mut self.redis {
            redis.load_password("reader.redis")?;
        }
        for (name, destination) in &mut self.destinations {
            destination.load_secrets(name)?;
        }
        if let Some(synapse) = &mut self.synapse {
            secrets::load(
                &mut synapse.worker_replication_secret,
                &mut synapse.worker_replication_secret_path,
                "reader.synapse.worker_replication_secret",
                "reader.synapse.worker_replication_secret_path",
            )?;
        }
        Ok(())
    }

    /// The path of the reader's SQLite file.
    pub fn db_path(&self) -> PathBuf {
        self.data.join("reader.sqlite")
    }

    /// Checks values that serde cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.name.is_empty() && !self.name.contains(['\n', '\r']),
            "reader.name: non-empty, no newlines"
        );
        self.http.validate("reader.http")?;
        anyhow::ensure!(
            self.writer_http.starts_with("http://") || self.writer_http.starts_with("https://"),
            "reader.writer_http must be an http:// or https:// URL, got {:?}",
            self.writer_http
        );
        if let Some(tls) = &self.writer_tls {
            tls.validate("reader.writer_tls")?;
        }
        if let Some(url) = &self.log_database_url {
            streamhost_log::Backend::of_url(url).context("reader.log_database_url")?;
        }
        self.validate_bounds()?;
        self.plugins.queries.validate()?;
        self.plugins.rate_limit.validate()?;
        self.plugins.retention.validate()?;
        self.auth.validate()?;
        destinations::check_grants(&self.plugins.grants, &self.destinations)?;
        anyhow::ensure!(
            self.auth.authorizer.is_none() || self.plugins.dir.is_some(),
            "reader.auth.authorizer names a plugin, but reader.plugins.dir is not set"
        );
        if let Some(synapse) = &self.synapse {
            anyhow::ensure!(
                self.redis.is_none() && self.log_database_url.is_none(),
                "reader.synapse follows a Synapse: leave out reader.redis and \
                 reader.log_database_url (they follow a Streamhost writer)"
            );
            synapse.validate(&self.name)?;
        }
        if let Some(redis) = &self.redis {
            redis.validate("reader.redis")?;
            anyhow::ensure!(
                self.server_name
                    .as_deref()
                    .is_some_and(|s| !s.is_empty() && !s.contains([' ', '\n', '\r'])),
                "reader.server_name is required with reader.redis: it names the Redis channel"
            );
            anyhow::ensure!(
                !self.name.contains(' '),
                "reader.name is the instance name over Redis: no spaces"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_is_rejected_by_name() {
        let err = ConfigFile::parse("[writer]\nstreamz = [\"a\"]\n").unwrap_err();
        assert!(format!("{err:#}").contains("streamz"), "{err:#}");
        let err = ConfigFile::parse("[nope]\n").unwrap_err();
        assert!(format!("{err:#}").contains("nope"), "{err:#}");
    }

    #[test]
    fn empty_file_gives_defaults() {
        let config = ConfigFile::parse("").unwrap();
        assert_eq!(config.writer.streams, vec!["events".to_string()]);
        assert_eq!(config.reader.inbound_queue, 100_000);
        config.writer.validate().unwrap();
        config.reader.validate().unwrap();
    }

    #[test]
    fn plugin_grants_parse_and_typos_in_them_are_named() {
        let config = ConfigFile::parse(
            "[reader.plugins]\ndir = \"p\"\n[reader.plugins.grants.notifier]\nstreams = [\"messages\"]\ntopics = [\"room:*\"]\n",
        )
        .unwrap();
        let grant = &config.reader.plugins.grants["notifier"];
        assert_eq!(grant.topics, vec!["room:*".to_string()]);
        let err =
            ConfigFile::parse("[reader.plugins.grants.x]\ncaches = []\nkvv = true\n").unwrap_err();
        assert!(format!("{err:#}").contains("kvv"), "{err:#}");
    }

    #[test]
    fn redis_tables_parse_and_the_reader_needs_a_server_name() {
        let config = ConfigFile::parse(
            "[writer.redis]\nurl = \"redis://:pw@127.0.0.1:6380/2\"\n[reader.redis]\nping_interval_ms = 1000\n",
        )
        .unwrap();
        let writer = config.writer.redis.as_ref().unwrap();
        assert_eq!(writer.url.expose(), "redis://:pw@127.0.0.1:6380/2");
        assert_eq!(writer.reconnect_max_ms, 5_000);
        config.writer.validate().unwrap();
        let err = config.reader.validate().unwrap_err();
        assert!(format!("{err:#}").contains("server_name"), "{err:#}");
        let err = ConfigFile::parse("[reader.redis]\nurll = \"x\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("urll"), "{err:#}");
    }

    #[test]
    fn database_urls_are_parsed_and_foreign_schemes_refused() {
        let config = ConfigFile::parse(
            "[writer.database]\nurl = \"postgres://postgres@127.0.0.1/test\"\n[reader]\nlog_database_url = \"postgres://postgres@127.0.0.1/test\"\n",
        )
        .unwrap();
        config.writer.validate().unwrap();
        config.reader.validate().unwrap();
        let config =
            ConfigFile::parse("[writer.database]\nurl = \"mysql://u:secret@h/d\"\n").unwrap();
        let err = format!("{:#}", config.writer.validate().unwrap_err());
        assert!(err.contains("writer.database.url"), "{err}");
        assert!(err.contains("postgres://"), "{err}");
        assert!(!err.contains("secret"), "{err}");
        let err = ConfigFile::parse("[writer.database]\nurll = \"x\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("url"), "{err:#}");
    }

    /// A configuration with every secret set, some inline and some from files.
    fn config_with_secrets(dir: &Path) -> ConfigFile {
        let file = |name: &str, value: &str| {
            let path = dir.join(name);
            std::fs::write(&path, format!("{value}\n")).unwrap();
            format!("{:?}", path.display().to_string())
        };
        let text = format!(
            "[writer]\nwrite_token_file = {}\nreplication_secret = \"SECRET-writer-repl\"\n\
             [writer.database]\nurl = \"postgres://streamhost@db/log?sslmode=verify-full\"\n\
             password_file = {}\n\
             [writer.redis]\nurl = \"rediss://redis:6380\"\npassword_file = {}\n\
             [reader]\nreplication_secret_file = {}\n\
             log_database_url = \"postgres://ro:SECRET-ro-inline@db/log\"\n\
             [reader.redis]\nurl = \"redis://:SECRET-reader-redis@redis\"\n\
             [reader.plugins]\nadmin_token_file = {}\n",
            file("write", "SECRET-write"),
            file("db", "SECRET-db/pw"),
            file("redis", "SECRET-redis"),
            file("reader-repl", "SECRET-reader-repl"),
            file("admin", "SECRET-admin"),
        );
        ConfigFile::parse(&text).unwrap()
    }

    #[test]
    fn secrets_come_from_files_into_their_keys() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config_with_secrets(dir.path());
        config.writer.load_secrets().unwrap();
        config.reader.load_secrets().unwrap();
        let (writer, reader) = (&config.writer, &config.reader);
        assert_eq!(writer.write_token.as_deref(), Some("SECRET-write"));
        assert_eq!(
            writer.replication_secret.as_deref(),
            Some("SECRET-writer-repl")
        );
        assert_eq!(
            writer.database.url.as_deref(),
            Some("postgres://streamhost:SECRET-db%2Fpw@db/log?sslmode=verify-full")
        );
        let redis = writer.redis.as_ref().unwrap();
        assert_eq!(redis.url.expose(), "rediss://:SECRET-redis@redis:6380");
        assert_eq!(
            reader.replication_secret.as_deref(),
            Some("SECRET-reader-repl")
        );
        assert_eq!(reader.plugins.admin_token.as_deref(), Some("SECRET-admin"));
        assert!(writer.write_token_file.is_none() && reader.plugins.admin_token_file.is_none());
        config.writer.validate().unwrap();
    }

    #[test]
    fn a_configuration_debug_printed_shows_no_secret() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config_with_secrets(dir.path());
        let before = format!("{config:?} {config:#?}");
        config.writer.load_secrets().unwrap();
        config.reader.load_secrets().unwrap();
        let after = format!("{config:?} {config:#?}");
        for shown in [before, after] {
            assert!(!shown.contains("SECRET"), "{shown}");
        }
        let synapse = ConfigFile::parse(
            "[reader.synapse]\nserver_name = \"x\"\nworker_replication_secret = \"SECRET-w\"\n\
             [reader.synapse.redis]\npassword = \"SECRET-p\"\n",
        )
        .unwrap();
        let shown = format!("{synapse:?}");
        assert!(
            !shown.contains("SECRET") && shown.contains("***"),
            "{shown}"
        );
    }

    #[test]
    fn a_secret_set_twice_or_empty_is_refused_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "from-file\n").unwrap();
        let token = format!("{:?}", token.display().to_string());
        let cases = [
            (
                format!("[writer]\nwrite_token = \"x\"\nwrite_token_file = {token}\n"),
                "set writer.write_token or writer.write_token_file, not both",
            ),
            (
                "[writer]\nreplication_secret = \"\"\n".to_owned(),
                "writer.replication_secret is empty",
            ),
            (
                format!("[writer.database]\npassword_file = {token}\n"),
                "set writer.database.url too",
            ),
            (
                format!(
                    "[writer.database]\nurl = \"postgres://u:inline@db/log\"\npassword_file = {token}\n"
                ),
                "writer.database.password_file",
            ),
            (
                format!("[writer.redis]\nurl = \"redis://:inline@r\"\npassword_file = {token}\n"),
                "writer.redis.password_file",
            ),
        ];
        for (text, expected) in cases {
            let mut config = ConfigFile::parse(&text).unwrap();
            let err = format!("{:#}", config.writer.load_secrets().unwrap_err());
            assert!(err.contains(expected), "{text}: {err}");
            assert!(
                !err.contains("inline") && !err.contains("from-file"),
                "{err}"
            );
        }
        let cases = [
            (
                format!(
                    "[reader]\nreplication_secret = \"x\"\nreplication_secret_file = {token}\n"
                ),
                "reader.replication_secret_file",
            ),
            (
                format!("[reader.plugins]\nadmin_token = \"x\"\nadmin_token_file = {token}\n"),
                "reader.plugins.admin_token_file",
            ),
            (
                format!(
                    "[reader]\nlog_database_url = \"postgres://u:inline@db/log\"\n\
                     log_database_password_file = {token}\n"
                ),
                "reader.log_database_password_file",
            ),
            (
                format!(
                    "[reader.synapse]\nserver_name = \"x\"\nworker_replication_secret = \"x\"\n\
                     worker_replication_secret_path = {token}\n"
                ),
                "reader.synapse.worker_replication_secret_path",
            ),
        ];
        for (text, expected) in cases {
            let mut config = ConfigFile::parse(&text).unwrap();
            let err = format!("{:#}", config.reader.load_secrets().unwrap_err());
            assert!(err.contains(expected), "{text}: {err}");
            assert!(
                !err.contains("inline") && !err.contains("from-file"),
                "{err}"
            );
        }
    }

    #[test]
    fn bad_stream_name_is_reported() {
        let config = ConfigFile::parse("[writer]\nstreams = [\"has space\"]\n").unwrap();
        let err = config.writer.validate().unwrap_err();
        assert!(format!("{err:#}").contains("writer.streams"), "{err:#}");
    }
}
