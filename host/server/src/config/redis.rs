//! `[writer.redis]` and `[reader.redis]`: Redis replication mode, its URL, keep-alive,
//! reconnects and TLS.

use std::path::PathBuf;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::secrets::{self, SecretUrl};

/// Redis replication mode (Synapse's `redis` section): where Redis is, how the two
/// connections (one publishing, one subscribed) keep alive and reconnect, and their TLS
/// (`docs/configuration.md`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[[user]:password@]host[:port][/db]`, `rediss://…` for TLS, or
    /// `redis+unix:///path?db=N&user=U&pass=P`. The password is sent with `AUTH` and the
    /// database number with `SELECT` on connect (pub/sub channels ignore the database, as in
    /// Synapse).
    pub url: SecretUrl,
    /// A file holding the Redis password, put into `url` at start (instead of writing it in
    /// the URL).
    pub password_file: Option<PathBuf>,
    /// A Redis `PING` on each connection after this long (Synapse: 30,000 ms); a reply that
    /// takes longer than this ends the connection.
    pub ping_interval_ms: u64,
    /// Longest wait between reconnection attempts (Synapse: 5,000 ms).
    pub reconnect_max_ms: u64,
    /// TLS (`rediss://` only): PEM file of the CA certificates to trust instead of the
    /// system's. The server's certificate is always verified and must name the URL's host.
    pub ca_file: Option<PathBuf>,
    /// TLS: a folder of PEM CA certificates (every file in it) to trust instead of the
    /// system's.
    pub ca_path: Option<PathBuf>,
    /// TLS: the PEM certificate chain presented to Redis (`tls-auth-clients`), with
    /// `private_key_file`. TLS files are read again on every (re)connect, so a renewed
    /// certificate is picked up without a restart.
    pub certificate_file: Option<PathBuf>,
    /// TLS: the PEM private key of `certificate_file`.
    pub private_key_file: Option<PathBuf>,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:6379".into(),
            password_file: None,
            ping_interval_ms: 30_000,
            reconnect_max_ms: 5_000,
            ca_file: None,
            ca_path: None,
            certificate_file: None,
            private_key_file: None,
        }
    }
}

impl RedisConfig {
    /// Puts the password in `password_file` into the URL; `what` names the table in errors.
    pub fn load_password(&mut self, what: &str) -> anyhow::Result<()> {
        secrets::load_password(
            Some(&mut self.url),
            &mut self.password_file,
            &format!("{what}.url"),
            &format!("{what}.password_file"),
        )
    }

    /// Checks the URL's scheme, the intervals and the TLS keys (each TLS file or folder set
    /// must open, so a wrong path fails at start, not at the first connect; its contents are
    /// read where the connection is set up); `what` names the table in errors.
    pub fn validate(&self, what: &str) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.url.starts_with("redis://")
                || self.url.starts_with("rediss://")
                || self.url.starts_with("redis+unix://")
                || self.url.starts_with("unix://"),
            "{what}.url must be a redis://, rediss:// or unix:// URL"
        );
        anyhow::ensure!(
            self.ping_interval_ms > 0 && self.reconnect_max_ms > 0,
            "{what}.ping_interval_ms and {what}.reconnect_max_ms must be > 0"
        );
        self.check_tls_keys()
            .and_then(|()| self.check_tls_files())
            .with_context(|| what.to_owned())
    }

    /// The TLS keys' rules: only with a `rediss://` URL, `ca_file` or `ca_path` (not both),
    /// `certificate_file` with `private_key_file`.
    pub fn check_tls_keys(&self) -> anyhow::Result<()> {
        if !self.url.starts_with("rediss://")
            && let Some((key, _)) = self.tls_files().into_iter().find(|(_, f)| f.is_some())
        {
            anyhow::bail!("{key} is for TLS: the url must start with rediss://");
        }
        anyhow::ensure!(
            self.ca_file.is_none() || self.ca_path.is_none(),
            "set ca_file or ca_path, not both"
        );
        anyhow::ensure!(
            self.certificate_file.is_some() == self.private_key_file.is_some(),
            "certificate_file and private_key_file go together"
        );
        Ok(())
    }

    /// Each TLS file (and the `ca_path` folder) that is set opens.
    fn check_tls_files(&self) -> anyhow::Result<()> {
        for (key, path) in self.tls_files() {
            let Some(path) = path else { continue };
            let opened = if key == "ca_path" {
                std::fs::read_dir(path).map(drop)
            } else {
                std::fs::File::open(path).map(drop)
            };
            opened
                .with_context(|| format!("reading {}", path.display()))
                .context(key)?;
        }
        Ok(())
    }

    /// The TLS keys and their values.
    fn tls_files(&self) -> [(&'static str, &Option<PathBuf>); 4] {
        [
            ("ca_file", &self.ca_file),
            ("ca_path", &self.ca_path),
            ("certificate_file", &self.certificate_file),
            ("private_key_file", &self.private_key_file),
        ]
    }
}
