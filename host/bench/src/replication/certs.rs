//! Throwaway certificates for the TLS delivery figure: a CA, the writer's certificate for
//! `127.0.0.1`, and a reader's client certificate, made with `rcgen` (ECDSA P-256) into a
//! temporary folder.

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use streamhost_server::config::{ClientTlsConfig, ServerTlsConfig};

/// The files, alive as long as the value.
pub(super) struct BenchCerts {
    _dir: tempfile::TempDir,
    /// The writer's replication listener: its certificate, key, and the CA its readers'
    /// certificates chain to (mTLS).
    pub(super) server: ServerTlsConfig,
    /// The reader's side: the CA, its client certificate and key.
    pub(super) client: ClientTlsConfig,
}

impl BenchCerts {
    /// Makes the CA and both certificates.
    pub(super) fn make() -> anyhow::Result<BenchCerts> {
        let dir = tempfile::tempdir()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "bench-ca");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem())?;
        let sign = |name: &str, purpose| -> anyhow::Result<(PathBuf, PathBuf)> {
            let mut params = CertificateParams::new(vec![name.to_owned()])?;
            params.distinguished_name.push(DnType::CommonName, name);
            params.extended_key_usages = vec![purpose];
            let key = KeyPair::generate()?;
            let cert = params.signed_by(&key, &ca)?;
            let (cert_file, key_file) = (
                dir.path().join(format!("{name}.pem")),
                dir.path().join(format!("{name}.key")),
            );
            std::fs::write(&cert_file, cert.pem())?;
            std::fs::write(&key_file, key.serialize_pem())?;
            Ok((cert_file, key_file))
        };
        let (server_cert, server_key) = sign("127.0.0.1", ExtendedKeyUsagePurpose::ServerAuth)?;
        let (client_cert, client_key) = sign("bench-reader", ExtendedKeyUsagePurpose::ClientAuth)?;
        Ok(BenchCerts {
            server: ServerTlsConfig {
                certificate_file: server_cert,
                private_key_file: server_key,
                client_ca_file: Some(ca_file.clone()),
            },
            client: ClientTlsConfig {
                ca_file: Some(ca_file),
                certificate_file: Some(client_cert),
                private_key_file: Some(client_key),
                server_name: None,
            },
            _dir: dir,
        })
    }
}
