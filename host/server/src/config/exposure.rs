//! Secure defaults (Redis's protected mode is the model): a listener on an address other
//! than loopback must authenticate its clients, or say in its configuration that it need not.
//!
//! A listener is *authenticated* when it requires client certificates (mutual TLS:
//! `tls.client_ca_file`), which covers every endpoint, or when every credential its endpoints
//! need is set (its list, from [`WriterConfig::http_credentials`] and the like; an empty list,
//! as on the replication listener, whose line protocol has no authentication of its own,
//! leaves mutual TLS as the only way). An unauthenticated listener on a loopback address
//! (`127.0.0.0/8`, `::1`) starts: only this machine reaches it. On any other address
//! (`0.0.0.0`, `::` and every interface address) it refuses to start, naming the settings to
//! add, unless its `allow_insecure = true`; then it starts with a warning in the log.
//!
//! The check runs when the writer or reader starts, on the addresses actually bound, after
//! the command line and environment have set the tokens (`docs/configuration.md`,
//! "Listeners").

use std::net::SocketAddr;

use super::{ListenerConfig, ReaderConfig, WriterConfig};

/// A credential a listener's endpoints need: its setting's name (`writer.read_token`) and
/// whether it is set.
pub type Credential = (&'static str, bool);

/// How exposed a listener is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exposure {
    /// Bound to a loopback address: only this machine reaches it.
    Loopback,
    /// Clients must authenticate (mutual TLS, or every credential set).
    Authenticated,
    /// Reachable from other machines without authentication: these credentials (possibly
    /// none, when mutual TLS is the only way) are missing.
    Open {
        /// The credentials not set.
        missing: Vec<&'static str>,
    },
}

/// How exposed `listener`, bound to `address`, is with these `credentials`.
pub fn assess(
    listener: &ListenerConfig,
    address: SocketAddr,
    credentials: &[Credential],
) -> Exposure {
    if address.ip().to_canonical().is_loopback() {
        return Exposure::Loopback;
    }
    let missing: Vec<&'static str> = credentials
        .iter()
        .filter(|(_, set)| !set)
        .map(|(name, _)| *name)
        .collect();
    if listener.requires_client_certificates() || (!credentials.is_empty() && missing.is_empty()) {
        Exposure::Authenticated
    } else {
        Exposure::Open { missing }
    }
}

/// Refuses `listener` (named `what`, `writer.http`) bound to `address` when it is open to other
/// machines without authentication, naming the settings to add; with `allow_insecure` it is
/// accepted and a warning logged.
pub fn check(
    what: &str,
    listener: &ListenerConfig,
    address: SocketAddr,
    credentials: &[Credential],
) -> anyhow::Result<()> {
    let Exposure::Open { missing } = assess(listener, address, credentials) else {
        return Ok(());
    };
    let mtls = format!("{what}.tls.client_ca_file, with its certificate_file and private_key_file");
    let remedy = if missing.is_empty() {
        format!("require client certificates: set {mtls}")
    } else {
        format!(
            "set {} (or require client certificates: {mtls})",
            missing.join(" and ")
        )
    };
    if listener.allow_insecure {
        tracing::warn!(
            listener = what,
            %address,
            missing = %missing.join(", "),
            "listening on a non-loopback address without authentication \
             (allow_insecure = true): anyone who reaches it is served"
        );
        return Ok(());
    }
    anyhow::bail!(
        "{what} listens on {address}, not a loopback address, without authentication: {remedy}; \
         or, to serve it unauthenticated anyway, set allow_insecure = true in [{what}] \
         (the table form: address = \"{address}\")"
    )
}

impl WriterConfig {
    /// What `writer.http`'s endpoints need: `write_token` (appends), `replication_secret`
    /// (catch-up) and `read_token` (`/v1/streams`, `/metrics`).
    pub fn http_credentials(&self) -> Vec<Credential> {
        vec![
            ("writer.write_token", self.write_token.is_some()),
            (
                "writer.replication_secret",
                self.replication_secret.is_some(),
            ),
            ("writer.read_token", self.read_token.is_some()),
        ]
    }

    /// The secure-defaults check of both listeners, bound to `http` and `replication`. The
    /// replication protocol has no credential of its own: only mutual TLS authenticates it.
    pub fn check_exposure(&self, http: SocketAddr, replication: SocketAddr) -> anyhow::Result<()> {
        check("writer.http", &self.http, http, &self.http_credentials())?;
        check("writer.replication", &self.replication, replication, &[])
    }
}

impl ReaderConfig {
    /// What `reader.http`'s endpoints need: `read_token` (`/v1/status`, `/metrics`) and, with
    /// plugins, `plugins.admin_token` (the admin API) and `[reader.auth]` (the query and
    /// notification endpoints).
    pub fn http_credentials(&self) -> Vec<Credential> {
        let mut credentials = vec![("reader.read_token", self.read_token.is_some())];
        if self.plugins.dir.is_some() {
            credentials.push((
                "reader.plugins.admin_token",
                self.plugins.admin_token.is_some(),
            ));
            credentials.push(("reader.auth", self.auth.is_enabled()));
        }
        credentials
    }

    /// The secure-defaults check of `reader.http`, bound to `http`.
    pub fn check_exposure(&self, http: SocketAddr) -> anyhow::Result<()> {
        check("reader.http", &self.http, http, &self.http_credentials())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::ServerTlsConfig;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    const EXPOSED: [&str; 4] = [
        "0.0.0.0:8480",
        "[::]:8480",
        "10.1.2.3:8480",
        "[fd00::1]:8480",
    ];
    const LOOPBACK: [&str; 3] = ["127.0.0.1:8480", "127.8.9.10:8480", "[::1]:8480"];

    fn mtls() -> Option<ServerTlsConfig> {
        Some(ServerTlsConfig {
            certificate_file: PathBuf::from("server.pem"),
            private_key_file: PathBuf::from("server.key"),
            client_ca_file: Some(PathBuf::from("ca.pem")),
        })
    }

    fn error(result: anyhow::Result<()>) -> String {
        format!("{:#}", result.unwrap_err())
    }

    fn writer() -> WriterConfig {
        WriterConfig::default()
    }

    fn reader_with_plugins() -> ReaderConfig {
        let mut config = ReaderConfig::default();
        config.plugins.dir = Some(PathBuf::from("plugins"));
        config
    }

    #[test]
    fn the_writers_http_listener_needs_its_three_tokens_off_loopback() {
        let local = addr("127.0.0.1:9092");
        for exposed in EXPOSED.map(addr) {
            let err = error(writer().check_exposure(exposed, local));
            for setting in [
                "writer.http listens on",
                "writer.write_token",
                "writer.replication_secret",
                "writer.read_token",
                "writer.http.tls.client_ca_file",
                "allow_insecure = true in [writer.http]",
            ] {
                assert!(err.contains(setting), "{exposed}: {setting} not in {err}");
            }
            let mut config = writer();
            config.write_token = Some("w".into());
            config.replication_secret = Some("r".into());
            let err = error(config.check_exposure(exposed, local));
            assert!(err.contains("set writer.read_token (or"), "{err}");
            assert!(!err.contains("writer.write_token"), "{err}");
            config.read_token = Some("t".into());
            config.check_exposure(exposed, local).unwrap();
        }
    }

    #[test]
    fn the_writers_replication_listener_needs_mutual_tls_off_loopback() {
        let mut config = writer();
        config.write_token = Some("w".into());
        config.replication_secret = Some("r".into());
        config.read_token = Some("t".into());
        for exposed in EXPOSED.map(addr) {
            let err = error(config.check_exposure(addr("127.0.0.1:8480"), exposed));
            assert!(err.contains("writer.replication listens on"), "{err}");
            assert!(
                err.contains(
                    "require client certificates: set writer.replication.tls.client_ca_file"
                ),
                "{err}"
            );
            assert!(
                err.contains("allow_insecure = true in [writer.replication]"),
                "{err}"
            );
        }
        // A server certificate alone encrypts but does not authenticate.
        let mut tls_only = config.clone();
        tls_only.replication.tls = mtls().map(|tls| ServerTlsConfig {
            client_ca_file: None,
            ..tls
        });
        assert!(
            tls_only
                .check_exposure(addr("127.0.0.1:8480"), addr("0.0.0.0:9092"))
                .is_err()
        );
    }

    #[test]
    fn the_readers_listener_needs_its_read_token_and_with_plugins_the_admin_token_and_auth() {
        for exposed in EXPOSED.map(addr) {
            let err = error(ReaderConfig::default().check_exposure(exposed));
            assert!(err.contains("set reader.read_token (or"), "{err}");
            assert!(!err.contains("admin_token"), "{err}");
            assert!(!err.contains("reader.auth"), "{err}");
            let mut config = reader_with_plugins();
            let err = error(config.check_exposure(exposed));
            assert!(
                err.contains(
                    "set reader.read_token and reader.plugins.admin_token and reader.auth"
                ),
                "{err}"
            );
            assert!(
                err.contains("allow_insecure = true in [reader.http]"),
                "{err}"
            );
            config.read_token = Some("t".into());
            config.plugins.admin_token = Some("a".into());
            let err = error(config.check_exposure(exposed));
            assert!(err.contains("set reader.auth (or"), "{err}");
            config.auth.enabled = Some(true);
            config.check_exposure(exposed).unwrap();
        }
    }

    #[test]
    fn allow_insecure_accepts_every_open_listener() {
        for exposed in EXPOSED.map(addr) {
            let mut config = writer();
            config.http.allow_insecure = true;
            config.replication.allow_insecure = true;
            config.check_exposure(exposed, exposed).unwrap();
            let mut config = reader_with_plugins();
            config.http.allow_insecure = true;
            config.check_exposure(exposed).unwrap();
        }
    }

    #[test]
    fn loopback_listeners_need_nothing() {
        for local in LOOPBACK.map(addr) {
            writer().check_exposure(local, local).unwrap();
            reader_with_plugins().check_exposure(local).unwrap();
        }
        // An IPv4 loopback address written as IPv6.
        writer()
            .check_exposure(addr("[::ffff:127.0.0.1]:1"), addr("[::ffff:127.0.0.1]:2"))
            .unwrap();
    }

    #[test]
    fn mutual_tls_authenticates_every_listener() {
        for exposed in EXPOSED.map(addr) {
            let mut config = writer();
            config.http.tls = mtls();
            config.replication.tls = mtls();
            config.check_exposure(exposed, exposed).unwrap();
            let mut config = reader_with_plugins();
            config.http.tls = mtls();
            config.check_exposure(exposed).unwrap();
        }
    }

    #[test]
    fn assess_says_what_is_missing() {
        let listener = ListenerConfig::on(addr("0.0.0.0:1"));
        assert_eq!(
            assess(&listener, addr("0.0.0.0:1"), &[("a", true), ("b", false)]),
            Exposure::Open { missing: vec!["b"] }
        );
        assert_eq!(
            assess(&listener, addr("0.0.0.0:1"), &[("a", true)]),
            Exposure::Authenticated
        );
        assert_eq!(
            assess(&listener, addr("127.0.0.1:1"), &[]),
            Exposure::Loopback
        );
        assert_eq!(
            assess(&listener, addr("0.0.0.0:1"), &[]),
            Exposure::Open { missing: vec![] }
        );
    }
}
