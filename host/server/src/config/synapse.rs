//! `[reader.synapse]`: a reader following a live Synapse deployment. The keys mirror
//! Synapse's own configuration (`server_name`, the `redis` section, `instance_map`,
//! `stream_writers`, `worker_replication_secret`), so an operator can copy them across.
//! What each does: `docs/synapse.md`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::{RedisConfig, Secret};
use streamhost_log::percent_encode;

/// Following a Synapse (`[reader.synapse]`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SynapseConfig {
    /// Synapse's `server_name`; the Redis channel is named after it.
    pub server_name: String,
    /// Synapse's `redis` section (`[reader.synapse.redis]`).
    pub redis: SynapseRedisConfig,
    /// Synapse's `worker_replication_secret`, sent as `Authorization: Bearer` to the HTTP
    /// replication endpoint.
    pub worker_replication_secret: Option<Secret>,
    /// A file holding `worker_replication_secret` (Synapse's `*_path` spelling), read at
    /// start.
    pub worker_replication_secret_path: Option<PathBuf>,
    /// Synapse's `instance_map`: where each instance's HTTP replication listener is (`main`
    /// is the main process). Only needed for HTTP catch-up of the in-memory streams.
    pub instance_map: BTreeMap<String, InstanceLocation>,
    /// Synapse's `stream_writers`: which instance writes each stream (default `main`). Only
    /// the in-memory streams' writers matter (`typing`, `presence`).
    pub stream_writers: BTreeMap<String, StreamWriters>,
}

/// Synapse's `redis` section, with Synapse's key names and defaults, plus Streamhost's two
/// timing keys.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SynapseRedisConfig {
    /// Accepted for copy-paste from Synapse's config; must not be `false`.
    pub enabled: bool,
    /// Redis host (Synapse's default `localhost`).
    pub host: String,
    /// Redis port (default 6379).
    pub port: u16,
    /// A UNIX socket instead of `host`/`port`.
    pub path: Option<PathBuf>,
    /// Database number (`SELECT`); pub/sub channels ignore it, as in Synapse.
    pub dbid: Option<u32>,
    /// User name (`AUTH username password`, Redis 6 ACLs); needs a password, as in Synapse.
    pub username: Option<String>,
    /// Password (`AUTH`).
    pub password: Option<Secret>,
    /// A file holding the password (its first line), instead of `password`.
    pub password_path: Option<PathBuf>,
    /// TLS to Redis at `host`:`port`. Unlike Synapse, Streamhost verifies Redis's
    /// certificate (against the system's roots, or `ca_file`/`ca_path`).
    pub use_tls: bool,
    /// TLS: the PEM certificate presented to Redis (with `private_key_file`).
    pub certificate_file: Option<PathBuf>,
    /// TLS: its PEM private key.
    pub private_key_file: Option<PathBuf>,
    /// TLS: a PEM file of the CA certificates to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// TLS: a folder of PEM CA certificates to trust instead of the system's.
    pub ca_path: Option<PathBuf>,
    /// Streamhost: a Redis `PING` on each connection after this long (Synapse: 30,000 ms).
    pub ping_interval_ms: u64,
    /// Streamhost: longest wait between reconnection attempts (Synapse: 5,000 ms).
    pub reconnect_max_ms: u64,
}

impl Default for SynapseRedisConfig {
    fn default() -> Self {
        SynapseRedisConfig {
            enabled: true,
            host: "localhost".into(),
            port: 6379,
            path: None,
            dbid: None,
            username: None,
            password: None,
            password_path: None,
            use_tls: false,
            certificate_file: None,
            private_key_file: None,
            ca_file: None,
            ca_path: None,
            ping_interval_ms: 30_000,
            reconnect_max_ms: 5_000,
        }
    }
}

/// One `instance_map` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceLocation {
    /// Host of the instance's HTTP replication listener.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// HTTPS, verified against the system's roots as Synapse does.
    #[serde(default)]
    pub tls: bool,
}

/// A `stream_writers` value: one instance name or a list (Synapse accepts both).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum StreamWriters {
    /// One writer.
    One(String),
    /// Several writers.
    Many(Vec<String>),
}

impl StreamWriters {
    /// The first writer named.
    pub fn first(&self) -> Option<&str> {
        match self {
            StreamWriters::One(name) => Some(name),
            StreamWriters::Many(names) => names.first().map(String::as_str),
        }
    }
}

impl SynapseConfig {
    /// Checks what serde cannot; `instance_name` is the reader's `name`.
    pub fn validate(&self, instance_name: &str) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.server_name.is_empty() && !self.server_name.contains([' ', '\n', '\r']),
            "reader.synapse.server_name: Synapse's server_name (it names the Redis channel), \
             non-empty, no spaces"
        );
        anyhow::ensure!(
            !instance_name.is_empty() && !instance_name.contains([' ', '\n', '\r']),
            "reader.name is this reader's instance name in the Synapse deployment: non-empty, \
             no spaces"
        );
        anyhow::ensure!(
            !matches!(instance_name, "master" | "main")
                && !self.instance_map.contains_key(instance_name),
            "reader.name {instance_name:?} is the name of a Synapse instance: pick a name no \
             Synapse process uses (its own rows would be ignored as echoes)"
        );
        anyhow::ensure!(
            self.redis.enabled,
            "reader.synapse.redis.enabled = false: a Synapse reader needs Redis"
        );
        let redis = &self.redis;
        anyhow::ensure!(
            !(redis.use_tls && redis.path.is_some()),
            "reader.synapse.redis: use_tls is for host and port, not a UNIX socket (path)"
        );
        anyhow::ensure!(
            redis.use_tls
                || (redis.certificate_file.is_none()
                    && redis.private_key_file.is_none()
                    && redis.ca_file.is_none()
                    && redis.ca_path.is_none()),
            "reader.synapse.redis: certificate_file, private_key_file, ca_file and ca_path \
             are for TLS: set use_tls = true"
        );
        anyhow::ensure!(
            self.redis.ping_interval_ms > 0 && self.redis.reconnect_max_ms > 0,
            "reader.synapse.redis.ping_interval_ms and reconnect_max_ms must be > 0"
        );
        // Builds the connection once: reads password_path and checks the TLS files now.
        self.redis_config()?;
        Ok(())
    }

    /// The Redis connection as Streamhost's Redis mode takes it (reads `password_path`;
    /// checks the TLS files as [`RedisConfig::validate`] does).
    pub fn redis_config(&self) -> anyhow::Result<RedisConfig> {
        let redis = &self.redis;
        let password = match (&redis.password, &redis.password_path) {
            (Some(_), Some(_)) => {
                anyhow::bail!("reader.synapse.redis: set password or password_path, not both")
            }
            (Some(p), None) => Some(p.expose().to_owned()),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| {
                        format!(
                            "reading reader.synapse.redis.password_path {}",
                            path.display()
                        )
                    })?
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            ),
            (None, None) => None,
        };
        if redis.username.is_some() {
            anyhow::ensure!(
                password.is_some(),
                "reader.synapse.redis.username needs password or password_path (Redis ACLs \
                 take both)"
            );
        }
        let user = redis.username.as_deref().map(percent_encode);
        let url = match &redis.path {
            Some(path) => {
                let mut query = Vec::new();
                if let Some(db) = redis.dbid {
                    query.push(format!("db={db}"));
                }
                if let Some(user) = &user {
                    query.push(format!("user={user}"));
                }
                if let Some(p) = &password {
                    query.push(format!("pass={}", percent_encode(p)));
                }
                let query = if query.is_empty() {
                    String::new()
                } else {
                    format!("?{}", query.join("&"))
                };
                format!("redis+unix://{}{query}", path.display())
            }
            None => {
                let scheme = if redis.use_tls { "rediss" } else { "redis" };
                let auth = password
                    .map(|p| format!("{}:{}@", user.unwrap_or_default(), percent_encode(&p)))
                    .unwrap_or_default();
                let db = redis.dbid.map(|d| format!("/{d}")).unwrap_or_default();
                format!("{scheme}://{auth}{}:{}{db}", redis.host, redis.port)
            }
        };
        let config = RedisConfig {
            url: url.into(),
            password_file: None,
            ping_interval_ms: redis.ping_interval_ms,
            reconnect_max_ms: redis.reconnect_max_ms,
            ca_file: redis.ca_file.clone(),
            ca_path: redis.ca_path.clone(),
            certificate_file: redis.certificate_file.clone(),
            private_key_file: redis.private_key_file.clone(),
        };
        config.validate("reader.synapse.redis")?;
        Ok(config)
    }

    /// The instance writing `stream` (`stream_writers`, default the main process), as it
    /// appears in `instance_map` (`main`).
    pub fn writer_of(&self, stream: &str) -> &str {
        self.stream_writers
            .get(stream)
            .and_then(StreamWriters::first)
            .map(|w| if w == "master" { "main" } else { w })
            .unwrap_or("main")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::config::ConfigFile;

    #[test]
    fn synapse_style_keys_parse_into_a_redis_url() {
        let config = ConfigFile::parse(
            r#"
[reader]
name = "streamhost1"
[reader.synapse]
server_name = "example.org"
worker_replication_secret = "s3cret"
[reader.synapse.redis]
enabled = true
host = "redis.internal"
port = 6380
dbid = 2
password = "p@ss word"
[reader.synapse.instance_map.main]
host = "synapse.internal"
port = 9093
[reader.synapse.stream_writers]
typing = "master"
presence = ["presence1"]
"#,
        )
        .unwrap();
        config.reader.validate().unwrap();
        let synapse = config.reader.synapse.unwrap();
        assert_eq!(
            synapse.redis_config().unwrap().url.expose(),
            "redis://:p%40ss%20word@redis.internal:6380/2"
        );
        let mut tls = synapse.clone();
        tls.redis.use_tls = true;
        tls.redis.username = Some("stream host".into());
        assert_eq!(
            tls.redis_config().unwrap().url.expose(),
            "rediss://stream%20host:p%40ss%20word@redis.internal:6380/2"
        );
        assert_eq!(synapse.writer_of("typing"), "main");
        assert_eq!(synapse.writer_of("presence"), "presence1");
        assert_eq!(synapse.writer_of("receipts"), "main");
        assert_eq!(synapse.instance_map["main"].port, 9093);
    }

    #[test]
    fn a_password_file_and_a_unix_socket_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-file\nignored\n").unwrap();
        let config = ConfigFile::parse(&format!(
            "[reader.synapse]\nserver_name = \"x\"\n[reader.synapse.redis]\npath = \"/run/redis.sock\"\ndbid = 1\npassword_path = {:?}\n",
            file.display().to_string()
        ))
        .unwrap();
        let url = config.reader.synapse.unwrap().redis_config().unwrap().url;
        assert_eq!(
            url.expose(),
            "redis+unix:///run/redis.sock?db=1&pass=from-file"
        );
    }

    #[test]
    fn refusals_name_the_key() {
        let cases = [
            ("[reader.synapse]\n", "server_name"),
            (
                "[reader]\nname = \"master\"\n[reader.synapse]\nserver_name = \"x\"\n",
                "reader.name",
            ),
            (
                "[reader.synapse]\nserver_name = \"x\"\n[reader.synapse.redis]\nuse_tls = true\npath = \"/run/redis.sock\"\n",
                "use_tls",
            ),
            (
                "[reader.synapse]\nserver_name = \"x\"\n[reader.synapse.redis]\nca_file = \"/etc/ca.pem\"\n",
                "use_tls = true",
            ),
            (
                "[reader.synapse]\nserver_name = \"x\"\n[reader.synapse.redis]\nuse_tls = true\nca_file = \"/nonexistent/ca.pem\"\n",
                "/nonexistent/ca.pem",
            ),
            (
                "[reader.synapse]\nserver_name = \"x\"\n[reader.synapse.redis]\nusername = \"u\"\n",
                "username",
            ),
            (
                "[reader.synapse]\nserver_name = \"x\"\n[reader.redis]\n",
                "reader.redis",
            ),
        ];
        for (text, key) in cases {
            let config = ConfigFile::parse(text).unwrap();
            let err = format!("{:#}", config.reader.validate().unwrap_err());
            assert!(err.contains(key), "{text}: {err}");
        }
        let err = ConfigFile::parse("[reader.synapse.redis]\nhots = \"x\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("hots"), "{err:#}");
    }
}
