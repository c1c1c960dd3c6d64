//! [`ClientTlsConfig`]: how a reader speaks TLS to its writer (`[reader.writer_tls]`): the
//! CA to verify the writer against, the client certificate it presents (mTLS), and the name
//! it verifies.

use std::path::PathBuf;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The reader's TLS towards its writer. When the table is present the TCP replication
/// connection is TLS; an `https://` `writer_http` (catch-up) uses the same CA, client
/// certificate and name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTlsConfig {
    /// PEM CA certificates the writer's certificate must chain to; none trusts the system's
    /// roots.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain presented to the writer (its listener's `client_ca_file` must
    /// trust it), with `private_key_file`.
    pub certificate_file: Option<PathBuf>,
    /// PEM private key of `certificate_file`.
    pub private_key_file: Option<PathBuf>,
    /// The name the writer's certificate must carry (a DNS name or an IP address); none uses
    /// the host connected to (the host part of `reader.writer`, or of `writer_http`).
    pub server_name: Option<String>,
}

impl ClientTlsConfig {
    /// The keys' rules: `certificate_file` with `private_key_file`, each file set opens (so a
    /// wrong path fails at start); `what` names the table in errors.
    pub fn validate(&self, what: &str) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.certificate_file.is_some() == self.private_key_file.is_some(),
            "{what}: certificate_file and private_key_file go together"
        );
        for (key, file) in [
            ("ca_file", &self.ca_file),
            ("certificate_file", &self.certificate_file),
            ("private_key_file", &self.private_key_file),
        ] {
            if let Some(file) = file {
                std::fs::File::open(file)
                    .with_context(|| format!("{what}.{key}: reading {}", file.display()))?;
            }
        }
        anyhow::ensure!(
            self.server_name.as_deref() != Some(""),
            "{what}.server_name: empty"
        );
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_go_in_pairs_and_files_must_open() {
        let config = ClientTlsConfig {
            certificate_file: Some("c.pem".into()),
            ..ClientTlsConfig::default()
        };
        let err = format!("{:#}", config.validate("reader.writer_tls").unwrap_err());
        assert!(err.contains("go together"), "{err}");
        let config = ClientTlsConfig {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..ClientTlsConfig::default()
        };
        let err = format!("{:#}", config.validate("reader.writer_tls").unwrap_err());
        assert!(err.contains("reader.writer_tls.ca_file"), "{err}");
        ClientTlsConfig::default().validate("x").unwrap();
    }
}
