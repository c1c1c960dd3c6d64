//! Test certificates made with `rcgen`: a CA ([`TestCa`]) that signs server and client
//! certificates, the TLS settings of a listener and of a reader built from them, and a raw TLS
//! client (`tls_connect`) for tests that look at what a TLS listener sends or presents.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use streamhost_server::config::{ClientTlsConfig, ServerTlsConfig};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// A test CA: its certificate file, and the means to sign more.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// PEM of the CA's certificate.
    pub cert_file: PathBuf,
}

impl TestCa {
    /// A fresh CA named `name`, its certificate written to `dir/<name>.pem`.
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key"))
            .expect("self-signed CA");
        let cert_file = dir.join(format!("{name}.pem"));
        std::fs::write(&cert_file, issuer.pem()).expect("write the CA");
        TestCa { issuer, cert_file }
    }

    /// A certificate for `names` (DNS names or IP addresses) used for `purpose`, written to
    /// `dir/<file>.pem` and `dir/<file>.key`; returns both paths.
    pub fn sign(
        &self,
        dir: &Path,
        file: &str,
        names: &[&str],
        purpose: ExtendedKeyUsagePurpose,
    ) -> (PathBuf, PathBuf) {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).expect("certificate params");
        params.distinguished_name.push(DnType::CommonName, file);
        params.extended_key_usages = vec![purpose];
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let (cert_file, key_file) = (
            dir.join(format!("{file}.pem")),
            dir.join(format!("{file}.key")),
        );
        std::fs::write(&cert_file, cert.pem()).expect("write the certificate");
        std::fs::write(&key_file, key.serialize_pem()).expect("write the key");
        (cert_file, key_file)
    }
}

impl TestCa {
    /// A TLS acceptor presenting a certificate for `names` signed by this CA (for HTTPS
    /// stand-ins), its files written to `dir`.
    pub fn tls_acceptor(&self, dir: &Path, names: &[&str]) -> tokio_rustls::TlsAcceptor {
        use tokio_rustls::rustls;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let (cert, key) = self.sign(dir, "https", names, ExtendedKeyUsagePurpose::ServerAuth);
        let certs = CertificateDer::pem_file_iter(&cert)
            .expect("certificate file")
            .collect::<Result<Vec<_>, _>>()
            .expect("PEM certificate");
        let key = PrivateKeyDer::from_pem_file(&key).expect("PEM key");
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server TLS configuration");
        tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config))
    }
}

impl TestCa {
    /// A listener's TLS: a server certificate for `127.0.0.1` and `localhost` named `file`
    /// (its common name), written to `dir`; with `clients`, client certificates signed by that
    /// CA are required.
    pub fn server_tls(&self, dir: &Path, file: &str, clients: Option<&TestCa>) -> ServerTlsConfig {
        let (certificate_file, private_key_file) = self.sign(
            dir,
            file,
            &["127.0.0.1", "localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        ServerTlsConfig {
            certificate_file,
            private_key_file,
            client_ca_file: clients.map(|ca| ca.cert_file.clone()),
        }
    }

    /// A reader's `[reader.writer_tls]` trusting this CA, presenting `client` (a certificate
    /// and its key) when given.
    pub fn client_tls(&self, client: Option<(PathBuf, PathBuf)>) -> ClientTlsConfig {
        let (certificate_file, private_key_file) = client.unzip();
        ClientTlsConfig {
            ca_file: Some(self.cert_file.clone()),
            certificate_file,
            private_key_file,
            server_name: None,
        }
    }

    /// A client certificate whose common name and DNS name are `name`, written to `dir`.
    pub fn client_certificate(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        self.sign(dir, name, &[name], ExtendedKeyUsagePurpose::ClientAuth)
    }
}

/// The certificates of a PEM file.
pub fn pem_certificates(file: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(file)
        .expect("certificate file")
        .collect::<Result<_, _>>()
        .expect("PEM certificate")
}

/// A TLS connection to `addr` (verified as `127.0.0.1`) trusting `ca`, presenting `client`
/// when given; the handshake's error when it fails.
pub async fn tls_connect(
    addr: SocketAddr,
    ca: &TestCa,
    client: Option<&(PathBuf, PathBuf)>,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    for cert in pem_certificates(&ca.cert_file) {
        roots.add(cert).expect("CA certificate");
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                pem_certificates(cert),
                PrivateKeyDer::from_pem_file(key).expect("PEM key"),
            )
            .expect("client certificate"),
        None => builder.with_no_client_auth(),
    };
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("127.0.0.1").expect("an IP address");
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
}
