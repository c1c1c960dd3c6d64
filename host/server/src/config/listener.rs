//! [`ListenerConfig`]: one listening socket's settings (the writer's `http` and `replication`,
//! the reader's `http`): its address, TLS, who may connect, and its connection bounds.
//!
//! A listener is written either as its address (`http = "127.0.0.1:8480"`) or as a table
//! (`[writer.http]` with `address = "…"` and the other keys), so configuration files from
//! before listeners had settings keep working.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

/// One listener's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListenerConfig {
    /// Where it listens (port 0 picks a free port).
    pub address: SocketAddr,
    /// TLS on this listener; none serves plain TCP.
    pub tls: Option<ServerTlsConfig>,
    /// With `tls.client_ca_file`: the certificate names (a DNS subject alternative name or the
    /// subject's common name) a client certificate must carry one of; empty accepts any
    /// certificate the CA signed.
    pub allowed_clients: Vec<String>,
    /// Listen on a non-loopback address without authentication on this listener (refused
    /// otherwise, naming the setting to add).
    pub allow_insecure: bool,
    /// Most connections open at once; a connection over it is closed at once, logged and
    /// counted.
    pub max_connections: usize,
    /// Longest a new connection may take to finish its TLS handshake and, on replication, to
    /// send `NAME` or `REPLICATE`; on HTTP, to send its first request head.
    pub handshake_timeout_ms: u64,
}

/// A listener's TLS (`[….tls]`): its certificate and key, and the CA its clients'
/// certificates must chain to when client certificates are required (mTLS). The files are
/// read again when they change, so a renewed certificate is served without a restart.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// PEM certificate chain, the listener's own certificate first.
    pub certificate_file: PathBuf,
    /// PEM private key of `certificate_file`.
    pub private_key_file: PathBuf,
    /// PEM CA certificates; when set, every client must present a certificate signed by one
    /// of them.
    pub client_ca_file: Option<PathBuf>,
}

/// Default `max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1_024;

/// Default `handshake_timeout_ms`.
pub const DEFAULT_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;

impl ListenerConfig {
    /// A listener on `address` with every other setting at its default.
    pub fn on(address: SocketAddr) -> ListenerConfig {
        ListenerConfig {
            address,
            tls: None,
            allowed_clients: Vec::new(),
            allow_insecure: false,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            handshake_timeout_ms: DEFAULT_HANDSHAKE_TIMEOUT_MS,
        }
    }

    /// The handshake timeout.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }

    /// Whether clients must present a certificate.
    pub fn requires_client_certificates(&self) -> bool {
        self.tls
            .as_ref()
            .is_some_and(|t| t.client_ca_file.is_some())
    }

    /// Checks values serde cannot; `what` names the listener's key in errors
    /// (`writer.replication`).
    pub fn validate(&self, what: &str) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.max_connections > 0,
            "{what}.max_connections must be > 0"
        );
        anyhow::ensure!(
            self.handshake_timeout_ms > 0,
            "{what}.handshake_timeout_ms must be > 0"
        );
        anyhow::ensure!(
            self.allowed_clients.is_empty() || self.requires_client_certificates(),
            "{what}.allowed_clients names client certificates: set {what}.tls.client_ca_file"
        );
        Ok(())
    }
}

/// The table form's keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenerTable {
    address: SocketAddr,
    tls: Option<ServerTlsConfig>,
    #[serde(default)]
    allowed_clients: Vec<String>,
    #[serde(default)]
    allow_insecure: bool,
    #[serde(default = "default_max_connections")]
    max_connections: usize,
    #[serde(default = "default_handshake_timeout_ms")]
    handshake_timeout_ms: u64,
}

fn default_max_connections() -> usize {
    DEFAULT_MAX_CONNECTIONS
}

fn default_handshake_timeout_ms() -> u64 {
    DEFAULT_HANDSHAKE_TIMEOUT_MS
}

impl<'de> Deserialize<'de> for ListenerConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ListenerConfig, D::Error> {
        deserializer.deserialize_any(ListenerVisitor)
    }
}

/// Takes an address string or a table, keeping the table's own errors (an unknown key is
/// named) rather than an untagged enum's "did not match any variant".
struct ListenerVisitor;

impl<'de> Visitor<'de> for ListenerVisitor {
    type Value = ListenerConfig;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an address (\"HOST:PORT\") or a table with `address`")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<ListenerConfig, E> {
        text.parse().map(ListenerConfig::on).map_err(E::custom)
    }

    fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<ListenerConfig, M::Error> {
        let table = ListenerTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(ListenerConfig {
            address: table.address,
            tls: table.tls,
            allowed_clients: table.allowed_clients,
            allow_insecure: table.allow_insecure,
            max_connections: table.max_connections,
            handshake_timeout_ms: table.handshake_timeout_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Holder {
        http: ListenerConfig,
    }

    fn parse(text: &str) -> Result<ListenerConfig, toml::de::Error> {
        toml::from_str::<Holder>(text).map(|h| h.http)
    }

    #[test]
    fn an_address_alone_is_a_listener_with_defaults() {
        let listener = parse("http = \"127.0.0.1:8480\"").unwrap();
        assert_eq!(
            listener,
            ListenerConfig::on(SocketAddr::from(([127, 0, 0, 1], 8480)))
        );
    }

    #[test]
    fn the_table_form_takes_tls_and_bounds() {
        let listener = parse(
            "[http]\naddress = \"0.0.0.0:9092\"\nmax_connections = 10\nallowed_clients = [\"r1\"]\n\
             [http.tls]\ncertificate_file = \"c.pem\"\nprivate_key_file = \"k.pem\"\nclient_ca_file = \"ca.pem\"\n",
        )
        .unwrap();
        assert_eq!(listener.max_connections, 10);
        assert!(listener.requires_client_certificates());
        listener.validate("writer.replication").unwrap();
    }

    #[test]
    fn typos_and_bad_addresses_are_named() {
        let err = parse("[http]\naddress = \"127.0.0.1:1\"\nmax_conections = 1\n").unwrap_err();
        assert!(err.to_string().contains("max_conections"), "{err}");
        let err = parse("http = \"nowhere\"").unwrap_err();
        assert!(err.to_string().contains("invalid socket address"), "{err}");
    }

    #[test]
    fn allowed_clients_need_client_certificates() {
        let listener =
            parse("[http]\naddress = \"127.0.0.1:1\"\nallowed_clients = [\"r1\"]\n").unwrap();
        let err = listener.validate("writer.replication").unwrap_err();
        assert!(err.to_string().contains("client_ca_file"), "{err}");
    }
}
