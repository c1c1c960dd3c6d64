//! TLS to Redis (`rediss://`) as a [`RedisConfig`] sets it up, with rustls and the `ring`
//! provider. The server's certificate is always verified, against the system's roots or the
//! configured `ca_file`/`ca_path`, and must name the URL's host; a client certificate is
//! presented when `certificate_file`/`private_key_file` are set.
//!
//! Synapse's own Redis client does not verify the server (Twisted's `ClientContextFactory`
//! with no verify mode); Streamhost does, so a self-signed Redis needs `ca_file`. The files are
//! read on every call, so each (re)connect picks up a renewed certificate.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::RootCertStore;

use crate::config::RedisConfig;
use crate::net::tls::{certificates, connector_config, root_store, system_roots};

/// The connector configuration of `config` (a `rediss://` URL), its files read and checked.
/// Errors name the key and the file at fault.
pub(crate) fn connector(config: &RedisConfig) -> anyhow::Result<rustls::ClientConfig> {
    let roots = match (&config.ca_file, &config.ca_path) {
        (Some(file), _) => Arc::new(root_store(file).context("ca_file")?),
        (None, Some(folder)) => Arc::new(folder_store(folder).context("ca_path")?),
        (None, None) => system_roots(),
    };
    // `check_tls_keys` saw the certificate and its key set together or not at all.
    let identity = config
        .certificate_file
        .as_deref()
        .zip(config.private_key_file.as_deref());
    connector_config(roots, identity)
}

/// Every certificate in the files of `folder` (OpenSSL's `capath`: hashed links or plain
/// `.pem` files; files without a certificate, such as CRLs, are passed over).
fn folder_store(folder: &Path) -> anyhow::Result<RootCertStore> {
    let entries =
        std::fs::read_dir(folder).with_context(|| format!("reading {}", folder.display()))?;
    let mut roots = RootCertStore::empty();
    for entry in entries {
        let path = entry
            .with_context(|| format!("reading {}", folder.display()))?
            .path();
        if path.is_file()
            && let Ok(found) = certificates(&path)
        {
            roots.add_parsable_certificates(found);
        }
    }
    anyhow::ensure!(
        !roots.is_empty(),
        "{}: no file in it holds a PEM certificate",
        folder.display()
    );
    Ok(roots)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::redis::connection::Target;

    fn config(url: &str, adjust: impl FnOnce(&mut RedisConfig)) -> RedisConfig {
        let mut config = RedisConfig {
            url: url.into(),
            ..RedisConfig::default()
        };
        adjust(&mut config);
        config
    }

    fn refusal(config: &RedisConfig) -> String {
        match Target::of(config) {
            Ok(_) => panic!("{} was taken", config.url.expose()),
            Err(e) => format!("{e:#}"),
        }
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
    fn verification_cannot_be_turned_off_by_the_url() {
        let err = refusal(&config("rediss://h#insecure", |_| {}));
        assert!(err.contains("#insecure is not supported"), "{err}");
    }

    #[test]
    fn plain_urls_and_tls_without_files_build_clients() {
        Target::of(&config("redis://127.0.0.1:6379/2", |_| {})).unwrap();
        Target::of(&config("redis+unix:///run/redis.sock?db=1", |_| {})).unwrap();
        Target::of(&config("rediss://redis.example:6380", |_| {})).unwrap();
    }
}
