//! The Redis client of a [`RedisConfig`]: plain for `redis://` and UNIX sockets, TLS for
//! `rediss://` (rustls with the `ring` provider). The server's certificate is always verified,
//! against the system's roots or the configured `ca_file`/`ca_path`, and must name the URL's
//! host; a client certificate is presented when `certificate_file`/`private_key_file` are set.
//!
//! Synapse's own Redis client does not verify the server (Twisted's `ClientContextFactory`
//! with no verify mode); Streamhost does, so a self-signed Redis needs `ca_file`. The files are
//! read on every call, so each (re)connect picks up a renewed certificate.

use std::path::Path;

use anyhow::Context;
use redis::{Client, ClientTlsConfig, TlsCertificates};

use crate::config::RedisConfig;
use crate::net::tls::{read_certificates, read_private_key};

/// The client `config` describes, its TLS files read and checked (after the key rules of
/// [`RedisConfig::check_tls_keys`]). Errors name the key and the file at fault.
pub(crate) fn client(config: &RedisConfig) -> anyhow::Result<Client> {
    config.check_tls_keys()?;
    if !config.url.starts_with("rediss://") {
        return Client::open(config.url.expose()).context("url");
    }
    let root_cert = match (&config.ca_file, &config.ca_path) {
        (Some(file), _) => Some(read_certificates(file).context("ca_file")?),
        (None, Some(folder)) => Some(read_certificate_folder(folder).context("ca_path")?),
        (None, None) => None,
    };
    // `check_tls_keys` saw the certificate and its key set together or not at all.
    let client_tls = match (&config.certificate_file, &config.private_key_file) {
        (Some(cert), Some(key)) => Some(ClientTlsConfig {
            client_cert: read_certificates(cert).context("certificate_file")?,
            client_key: read_private_key(key).context("private_key_file")?,
        }),
        _ => None,
    };
    crate::net::tls::install_crypto_provider();
    Client::build_with_tls(
        config.url.expose(),
        TlsCertificates {
            client_tls,
            root_cert,
        },
    )
    .context("url")
}

/// Every certificate in the files of `folder` (OpenSSL's `capath`: hashed links or plain
/// `.pem` files; files without a certificate, such as CRLs, are passed over).
fn read_certificate_folder(folder: &Path) -> anyhow::Result<Vec<u8>> {
    let entries =
        std::fs::read_dir(folder).with_context(|| format!("reading {}", folder.display()))?;
    let mut pem = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("reading {}", folder.display()))?
            .path();
        if path.is_file()
            && let Ok(certificates) = read_certificates(&path)
        {
            pem.extend_from_slice(&certificates);
            pem.push(b'\n');
        }
    }
    anyhow::ensure!(
        !pem.is_empty(),
        "{}: no file in it holds a PEM certificate",
        folder.display()
    );
    Ok(pem)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn config(url: &str, adjust: impl FnOnce(&mut RedisConfig)) -> RedisConfig {
        let mut config = RedisConfig {
            url: url.into(),
            ..RedisConfig::default()
        };
        adjust(&mut config);
        config
    }

    fn refusal(config: &RedisConfig) -> String {
        format!("{:#}", client(config).unwrap_err())
    }

    #[test]
    fn tls_keys_need_a_rediss_url_and_go_in_pairs() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = refusal(&config("redis://h", |c| c.ca_file = Some(missing.clone())));
        assert!(
            err.contains("ca_file") && err.contains("rediss://"),
            "{err}"
        );
        let err = refusal(&config("rediss://h", |c| {
            c.certificate_file = Some(missing.clone());
        }));
        assert!(err.contains("go together"), "{err}");
        let err = refusal(&config("rediss://h", |c| {
            c.ca_file = Some(missing.clone());
            c.ca_path = Some(dir.path().into());
        }));
        assert!(err.contains("not both"), "{err}");
    }

    #[test]
    fn unreadable_or_wrong_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = refusal(&config("rediss://h", |c| c.ca_file = Some(missing.clone())));
        assert!(
            err.contains("ca_file") && err.contains("missing.pem"),
            "{err}"
        );
        let not_pem = dir.path().join("not.pem");
        std::fs::write(&not_pem, "hello\n").unwrap();
        let err = refusal(&config("rediss://h", |c| c.ca_file = Some(not_pem.clone())));
        assert!(err.contains("no PEM certificate"), "{err}");
        let err = refusal(&config("rediss://h", |c| {
            c.ca_path = Some(dir.path().into())
        }));
        assert!(err.contains("ca_path") && err.contains("no file"), "{err}");
    }

    #[test]
    fn plain_urls_and_tls_without_files_build_clients() {
        client(&config("redis://127.0.0.1:6379/2", |_| {})).unwrap();
        client(&config("redis+unix:///run/redis.sock?db=1", |_| {})).unwrap();
        client(&config("rediss://redis.example:6380", |_| {})).unwrap();
    }
}
