//! TLS on Streamhost's own connections, with rustls and the `ring` provider:
//! - [`ServerTls`]: a listener's side (`[….tls]` of `writer.http`, `writer.replication`,
//!   `reader.http`): its certificate and key, client certificates required when
//!   `client_ca_file` is set (mTLS), and the `allowed_clients` check after the handshake;
//! - [`ClientTls`]: the reader's side towards its writer (`[reader.writer_tls]`): the CA to
//!   verify the writer against (else the system's roots), a client certificate, the name to
//!   verify;
//! - the PEM reading and connector configuration they and TLS to Redis (`redis::tls`) share.
//!
//! Reload: each keeps the rustls configuration built from its files and builds it again when
//! one of them changes, noticed by the files' modification time and size, looked at most once
//! per [`RELOAD_CHECK`] and only when a connection is made. A connection keeps the
//! configuration it started with, so a renewal drops no connection; files that do not make a
//! configuration (bad PEM, a key that is not the certificate's, half a renewal) are logged
//! once per change and the previous configuration stays in use. Looking at the files on
//! connect rather than watching them (`notify`) needs no task or watch to manage, sees a file
//! replaced by a rename or a symlink swapped (as Kubernetes renews a mounted secret), and
//! costs one `stat` per file per second at most, on the connection path only.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::{TlsAcceptor, TlsConnector};

pub use tokio_rustls::client::TlsStream as ClientTlsStream;
pub use tokio_rustls::server::TlsStream as ServerTlsStream;

use crate::config::{ClientTlsConfig, ListenerConfig, ServerTlsConfig};

/// Makes `ring` the process's rustls provider (the listeners, the reader's client, HTTPS in
/// `client`, TLS to Redis in `redis::tls`). The only one compiled in; a second call only
/// reports it is installed.
pub(crate) fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Shortest time between two looks at a configuration's files. A renewed certificate is
/// served from the first connection a second or less after it is written.
pub const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// ALPN of the HTTP listeners: HTTP/1.1 only (hyper serves no HTTP/2 here).
pub const ALPN_HTTP1: &[&[u8]] = &[b"http/1.1"];

/// ALPN of the replication listener: none (a line protocol, as Synapse's).
pub const ALPN_NONE: &[&[u8]] = &[];

/// A listener's TLS: its acceptor's configuration (reloaded), the client names it allows and
/// how long a handshake may take.
pub struct ServerTls {
    config: Reloading<rustls::ServerConfig>,
    /// `allowed_clients`, lowercased; empty allows any client (with a certificate when the
    /// listener requires one).
    allowed_clients: Vec<String>,
    handshake_timeout: Duration,
}

/// Whether a client that finished its handshake may be served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Served.
    Allowed,
    /// Its certificate names none of the listener's `allowed_clients`: answered with the
    /// protocol's refusal (`ERROR`, 403) and closed.
    Refused,
}

impl ServerTls {
    /// The TLS of `listener` (`None` when it has no `tls` table), its files read now so a
    /// wrong one fails at start; `what` names the listener in errors and logs
    /// (`writer.replication`), `alpn` its protocols.
    pub fn of(
        listener: &ListenerConfig,
        what: &str,
        alpn: &'static [&'static [u8]],
    ) -> anyhow::Result<Option<Arc<ServerTls>>> {
        let Some(tls) = &listener.tls else {
            return Ok(None);
        };
        let what = format!("{what}.tls");
        let mut files = vec![tls.certificate_file.clone(), tls.private_key_file.clone()];
        files.extend(tls.client_ca_file.clone());
        let settings = tls.clone();
        let config = Reloading::new(what.clone(), files, move || server_config(&settings, alpn))
            .with_context(|| what.clone())?;
        Ok(Some(Arc::new(ServerTls {
            config,
            allowed_clients: listener
                .allowed_clients
                .iter()
                .map(|name| name.to_ascii_lowercase())
                .collect(),
            handshake_timeout: listener.handshake_timeout(),
        })))
    }

    /// Runs the handshake on `stream` (within the listener's handshake timeout) with the
    /// configuration of now, then checks the client against `allowed_clients`. `None` when
    /// the handshake failed (logged here); a refusal is logged here with the client's names.
    pub async fn accept<IO>(
        &self,
        stream: IO,
        peer: SocketAddr,
    ) -> Option<(ServerTlsStream<IO>, Admission)>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let (_, config) = self.config.current();
        let handshake = TlsAcceptor::from(config).accept(stream);
        let stream = match tokio::time::timeout(self.handshake_timeout, handshake).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::info!(%peer, listener = %self.config.what, error = %e, "TLS handshake failed");
                return None;
            }
            Err(_) => {
                tracing::info!(%peer, listener = %self.config.what, "TLS handshake timed out");
                return None;
            }
        };
        let admission = self.admit(&stream, peer);
        Some((stream, admission))
    }

    /// The `allowed_clients` check of a finished handshake.
    fn admit<IO>(&self, stream: &ServerTlsStream<IO>, peer: SocketAddr) -> Admission {
        if self.allowed_clients.is_empty() {
            return Admission::Allowed;
        }
        let names = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|leaf| certificate_names(leaf))
            .unwrap_or_default();
        if names
            .iter()
            .any(|name| self.allowed_clients.contains(&name.to_ascii_lowercase()))
        {
            return Admission::Allowed;
        }
        tracing::warn!(
            %peer,
            listener = %self.config.what,
            client_names = ?names,
            "client certificate not in allowed_clients; refused"
        );
        Admission::Refused
    }
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("what", &self.config.what)
            .field("allowed_clients", &self.allowed_clients)
            .finish_non_exhaustive()
    }
}

/// The names a certificate carries for `allowed_clients`: its DNS subject alternative names
/// and its subject's common names. A certificate that does not parse carries none.
fn certificate_names(der: &[u8]) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, certificate)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    if let Ok(Some(san)) = certificate.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                names.push((*dns).to_owned());
            }
        }
    }
    for common_name in certificate.subject().iter_common_name() {
        if let Ok(text) = common_name.as_str() {
            names.push(text.to_owned());
        }
    }
    names
}

/// The acceptor configuration of `tls`.
fn server_config(tls: &ServerTlsConfig, alpn: &[&[u8]]) -> anyhow::Result<rustls::ServerConfig> {
    install_crypto_provider();
    let chain = certificates(&tls.certificate_file).context("certificate_file")?;
    let key = private_key(&tls.private_key_file).context("private_key_file")?;
    let builder = rustls::ServerConfig::builder();
    let builder = match &tls.client_ca_file {
        Some(file) => {
            let roots = root_store(file).context("client_ca_file")?;
            let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .context("client_ca_file")?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).with_context(|| {
        format!(
            "{} and {} do not make a certificate and its key",
            tls.certificate_file.display(),
            tls.private_key_file.display()
        )
    })?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// The reader's TLS towards its writer: the connector's configuration (reloaded) and the
/// name to verify when one is configured.
pub struct ClientTls {
    config: Reloading<rustls::ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

impl ClientTls {
    /// The client TLS `config` describes, its files read now so a wrong one fails at start;
    /// `what` names its table in errors and logs (`reader.writer_tls`).
    pub fn new(config: &ClientTlsConfig, what: &str) -> anyhow::Result<ClientTls> {
        config.validate(what)?;
        let server_name = config
            .server_name
            .as_deref()
            .map(parse_server_name)
            .transpose()
            .with_context(|| format!("{what}.server_name"))?;
        let files = [
            &config.ca_file,
            &config.certificate_file,
            &config.private_key_file,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
        let settings = config.clone();
        let config = Reloading::new(what.to_owned(), files, move || client_config(&settings))
            .with_context(|| what.to_owned())?;
        Ok(ClientTls {
            config,
            server_name,
        })
    }

    /// The configuration of now and its generation, which changes at each reload.
    pub fn current(&self) -> (u64, Arc<rustls::ClientConfig>) {
        self.config.current()
    }

    /// The configured name to verify servers against, instead of the host connected to.
    pub fn server_name(&self) -> Option<&ServerName<'static>> {
        self.server_name.as_ref()
    }

    /// Runs a client handshake on `stream` with the server at `host` (a DNS name or an IP
    /// address), verifying the configured `server_name` instead when there is one.
    pub async fn connect<IO>(&self, host: &str, stream: IO) -> io::Result<ClientTlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let name = match &self.server_name {
            Some(name) => name.clone(),
            None => parse_server_name(host)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{e:#}")))?,
        };
        let (_, config) = self.config.current();
        TlsConnector::from(config).connect(name, stream).await
    }
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("what", &self.config.what)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// A DNS name or an IP address (IPv6 with or without brackets) as a name to verify.
pub(crate) fn parse_server_name(name: &str) -> anyhow::Result<ServerName<'static>> {
    let bare = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    ServerName::try_from(bare.to_owned())
        .with_context(|| format!("{name:?} is not a DNS name or an IP address"))
}

/// The connector configuration of `tls`.
fn client_config(tls: &ClientTlsConfig) -> anyhow::Result<rustls::ClientConfig> {
    let roots = match &tls.ca_file {
        Some(file) => Arc::new(root_store(file).context("ca_file")?),
        None => system_roots(),
    };
    let identity = tls
        .certificate_file
        .as_deref()
        .zip(tls.private_key_file.as_deref());
    connector_config(roots, identity)
}

/// A connector configuration trusting `roots`, presenting the certificate chain and private
/// key of the PEM files `identity` when set (errors name the key of the file at fault).
pub(crate) fn connector_config(
    roots: Arc<RootCertStore>,
    identity: Option<(&Path, &Path)>,
) -> anyhow::Result<rustls::ClientConfig> {
    install_crypto_provider();
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    Ok(match identity {
        Some((cert, key)) => {
            let chain = certificates(cert).context("certificate_file")?;
            let key = private_key(key).context("private_key_file")?;
            builder.with_client_auth_cert(chain, key).with_context(|| {
                format!(
                    "{} and its private key do not make a certificate and its key",
                    cert.display()
                )
            })?
        }
        None => builder.with_no_client_auth(),
    })
}

/// The system's root certificates, read once (`SSL_CERT_FILE` and `SSL_CERT_DIR` replace
/// them); unreadable ones are logged and passed over.
pub(crate) fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut roots = RootCertStore::empty();
            let native = rustls_native_certs::load_native_certs();
            for error in &native.errors {
                tracing::warn!(%error, "reading the system's root certificates");
            }
            roots.add_parsable_certificates(native.certs);
            Arc::new(roots)
        })
        .clone()
}

/// The CA certificates of a PEM file as a root store.
pub(crate) fn root_store(path: &Path) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for certificate in certificates(path)? {
        roots
            .add(certificate)
            .with_context(|| format!("{}: not a usable CA certificate", path.display()))?;
    }
    Ok(roots)
}

/// A PEM file that holds at least one certificate, as read.
fn read_certificates(path: &Path) -> anyhow::Result<Vec<u8>> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let count = CertificateDer::pem_slice_iter(&pem)
        .try_fold(0usize, |n, cert| cert.map(|_| n + 1))
        .with_context(|| format!("{}: not PEM", path.display()))?;
    anyhow::ensure!(
        count > 0,
        "{}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
        path.display()
    );
    Ok(pem)
}

/// A PEM file holding a private key (PKCS#8, PKCS#1 or SEC1), as read.
fn read_private_key(path: &Path) -> anyhow::Result<Vec<u8>> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&pem)
        .with_context(|| format!("{}: no PEM private key in it", path.display()))?;
    Ok(pem)
}

/// The certificates of a PEM file, in order (at least one).
pub(crate) fn certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = read_certificates(path)?;
    CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .with_context(|| format!("{}: not PEM", path.display()))
}

/// The private key of a PEM file.
fn private_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let pem = read_private_key(path)?;
    PrivateKeyDer::from_pem_slice(&pem)
        .with_context(|| format!("{}: no PEM private key in it", path.display()))
}

/// A value built from files and built again when one of them changes (the module doc's
/// reload).
struct Reloading<T> {
    /// The table the files come from, for logs (`writer.replication.tls`).
    what: String,
    files: Vec<PathBuf>,
    build: Box<dyn Fn() -> anyhow::Result<T> + Send + Sync>,
    state: Mutex<Loaded<T>>,
}

/// The value in use and what the files looked like when it was decided.
struct Loaded<T> {
    value: Arc<T>,
    generation: u64,
    stamps: Vec<Option<Stamp>>,
    checked: Instant,
}

/// What a file looked like: its modification time and size (`None` when it cannot be read).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

fn stamps(files: &[PathBuf]) -> Vec<Option<Stamp>> {
    files
        .iter()
        .map(|file| {
            std::fs::metadata(file).ok().map(|meta| Stamp {
                modified: meta.modified().ok(),
                len: meta.len(),
            })
        })
        .collect()
}

impl<T> Reloading<T> {
    /// Builds the first value; an error here is the caller's (a wrong file at start).
    fn new(
        what: String,
        files: Vec<PathBuf>,
        build: impl Fn() -> anyhow::Result<T> + Send + Sync + 'static,
    ) -> anyhow::Result<Reloading<T>> {
        let stamps = stamps(&files);
        let value = build()?;
        Ok(Reloading {
            what,
            files,
            build: Box::new(build),
            state: Mutex::new(Loaded {
                value: Arc::new(value),
                generation: 0,
                stamps,
                checked: Instant::now(),
            }),
        })
    }

    /// The value of now (built again first if the files changed since they were last looked
    /// at, and that was [`RELOAD_CHECK`] ago or more) and its generation.
    fn current(&self) -> (u64, Arc<T>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.checked.elapsed() >= RELOAD_CHECK {
            state.checked = Instant::now();
            let now = stamps(&self.files);
            if now != state.stamps {
                // Recorded whatever the outcome: files that do not build are reported once,
                // and tried again at their next change.
                state.stamps = now;
                match (self.build)() {
                    Ok(value) => {
                        state.value = Arc::new(value);
                        state.generation += 1;
                        tracing::info!(what = %self.what, "TLS files changed; reloaded");
                    }
                    Err(e) => tracing::warn!(
                        what = %self.what,
                        error = %format!("{e:#}"),
                        "TLS files changed but do not load; keeping the previous certificates"
                    ),
                }
            }
        }
        (state.generation, state.value.clone())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn server_names_take_dns_names_and_addresses() {
        assert!(matches!(
            parse_server_name("writer.internal").unwrap(),
            ServerName::DnsName(_)
        ));
        assert!(matches!(
            parse_server_name("[::1]").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            parse_server_name("10.0.0.5").unwrap(),
            ServerName::IpAddress(_)
        ));
        let err = format!("{:#}", parse_server_name("not a name").unwrap_err());
        assert!(err.contains("not a DNS name"), "{err}");
    }

    #[test]
    fn reloading_keeps_the_old_value_until_the_files_build() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("value");
        std::fs::write(&file, "1").unwrap();
        let path = file.clone();
        let reloading = Reloading::new("test".into(), vec![file.clone()], move || {
            let text = std::fs::read_to_string(&path)?;
            Ok(text.trim().parse::<u32>()?)
        })
        .unwrap();
        assert_eq!(*reloading.current().1, 1);
        std::fs::write(&file, "two").unwrap();
        reloading.state.lock().unwrap().checked -= RELOAD_CHECK;
        assert_eq!(
            reloading.current(),
            (0, Arc::new(1)),
            "bad files keep the value"
        );
        std::fs::write(&file, "33").unwrap();
        // Looked at again only after RELOAD_CHECK.
        assert_eq!(*reloading.current().1, 1);
        reloading.state.lock().unwrap().checked -= RELOAD_CHECK;
        assert_eq!(reloading.current(), (1, Arc::new(33)));
    }

    #[test]
    fn wrong_files_are_named_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let mut listener = ListenerConfig::on(SocketAddr::from(([127, 0, 0, 1], 0)));
        listener.tls = Some(ServerTlsConfig {
            certificate_file: missing.clone(),
            private_key_file: missing,
            client_ca_file: None,
        });
        let err = format!(
            "{:#}",
            ServerTls::of(&listener, "writer.http", ALPN_HTTP1).unwrap_err()
        );
        assert!(
            err.contains("writer.http.tls") && err.contains("certificate_file"),
            "{err}"
        );
    }
}
