//! `[reader.destinations.<name>]`: the places the operator lets plugins reach. A destination
//! is the target of `push` effects (sent later by the reader's delivery worker, with retries)
//! and, when granted under `http`, an origin a plugin may call through `wasi:http` with the
//! destination's headers attached by the host. Header values are [`Secret`]s: a plugin never
//! sees them, and neither do logs or status pages.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::secrets::{self, Secret};

/// One destination.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DestinationConfig {
    /// Where pushes are POSTed (`http://` or `https://`); for outbound HTTP, requests whose URL
    /// starts with it get `headers`. Shown by `config check` with its password and query values
    /// masked (a webhook URL often carries its key there).
    #[serde(serialize_with = "serialize_url_masked")]
    pub url: String,
    /// Headers sent with every push and attached to granted outbound requests under `url`
    /// (for example `Authorization`); never shown to plugins, logs or status.
    pub headers: BTreeMap<String, Secret>,
    /// Headers whose values are read from files at start (one header may be set here or in
    /// `headers`, not both).
    pub header_files: BTreeMap<String, PathBuf>,
    /// `Content-Type` of pushes.
    pub content_type: String,
    /// A PEM file of CA certificates to trust for `https://` (else the system's roots).
    pub ca_file: Option<PathBuf>,
    /// Per-attempt timeout, connection to the end of the response, in milliseconds.
    pub timeout_ms: u64,
    /// Most pushes started per second (0: no limit).
    pub rate_per_second: u32,
    /// Most pushes in flight at once.
    pub concurrency: usize,
    /// Attempts before a push is moved to the dead pushes.
    pub max_attempts: u32,
    /// Age, from its commit, after which a push that still fails is moved to the dead pushes.
    pub max_age_s: u64,
    /// First retry delay; doubled per attempt, with jitter.
    pub backoff_initial_ms: u64,
    /// Longest retry delay (a `Retry-After` may ask for longer and is honoured).
    pub backoff_max_ms: u64,
    /// Largest body a plugin may push; a larger push is refused to the plugin.
    pub max_body_bytes: usize,
}

impl Default for DestinationConfig {
    fn default() -> Self {
        DestinationConfig {
            url: String::new(),
            headers: BTreeMap::new(),
            header_files: BTreeMap::new(),
            content_type: "application/json".into(),
            ca_file: None,
            timeout_ms: 10_000,
            rate_per_second: 0,
            concurrency: 4,
            max_attempts: 12,
            max_age_s: 86_400,
            backoff_initial_ms: 1_000,
            backoff_max_ms: 300_000,
            max_body_bytes: 65_536,
        }
    }
}

impl DestinationConfig {
    /// Reads `header_files` into `headers` and checks the URL and bounds; `name` is the
    /// destination's name, for errors.
    pub fn load_secrets(&mut self, name: &str) -> anyhow::Result<()> {
        for (header, path) in std::mem::take(&mut self.header_files) {
            anyhow::ensure!(
                !self.headers.contains_key(&header),
                "reader.destinations.{name}: header {header} is set in headers and header_files"
            );
            let value = secrets::read(&path, &format!("reader.destinations.{name}.header_files"))?;
            self.headers.insert(header, value);
        }
        let url: hyper::Uri = self
            .url
            .parse()
            .with_context(|| format!("reader.destinations.{name}.url is not a URL"))?;
        anyhow::ensure!(
            matches!(url.scheme_str(), Some("http" | "https")) && url.host().is_some(),
            "reader.destinations.{name}.url must be an http:// or https:// URL with a host"
        );
        anyhow::ensure!(
            self.concurrency > 0 && self.max_attempts > 0 && self.timeout_ms > 0,
            "reader.destinations.{name}: concurrency, max_attempts and timeout_ms must be above 0"
        );
        Ok(())
    }
}

/// Refuses a grant that pushes to a destination not declared (`*` grants whatever is).
pub fn check_grants(
    grants: &BTreeMap<String, streamhost_plugin_runtime::Grant>,
    destinations: &BTreeMap<String, DestinationConfig>,
) -> anyhow::Result<()> {
    for (plugin, grant) in grants {
        if let Some(missing) = grant
            .push
            .iter()
            .find(|d| *d != "*" && !destinations.contains_key(*d))
        {
            anyhow::bail!(
                "reader.plugins.grants.{plugin}.push names destination {missing:?}, which is \
                 not declared: add [reader.destinations.{missing}]"
            );
        }
    }
    Ok(())
}

/// The destinations as the plugin runtime meets them (URL, headers, body bound).
pub fn for_plugins(
    destinations: &BTreeMap<String, DestinationConfig>,
) -> streamhost_plugin_runtime::Destinations {
    let map = destinations
        .iter()
        .map(|(name, d)| {
            let destination = streamhost_plugin_runtime::Destination {
                url: d.url.clone(),
                headers: d
                    .headers
                    .iter()
                    .map(|(header, value)| (header.clone(), value.expose().to_owned()))
                    .collect(),
                max_body_bytes: d.max_body_bytes,
            };
            (name.clone(), destination)
        })
        .collect();
    std::sync::Arc::new(map)
}

/// `url` with the password of its authority and the value of every query parameter as `***`.
fn serialize_url_masked<S: serde::Serializer>(url: &str, serializer: S) -> Result<S::Ok, S::Error> {
    let redacted = streamhost_log::redact_url(url);
    let masked = match redacted.split_once('?') {
        Some((base, query)) => {
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) => format!("{key}={}", secrets::MASK),
                    None => pair.to_owned(),
                })
                .collect();
            format!("{base}?{}", pairs.join("&"))
        }
        None => redacted,
    };
    serializer.serialize_str(&masked)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn destination(url: &str) -> DestinationConfig {
        DestinationConfig {
            url: url.into(),
            ..DestinationConfig::default()
        }
    }

    fn error(mut config: DestinationConfig) -> String {
        format!("{:#}", config.load_secrets("hook").unwrap_err())
    }

    #[test]
    fn a_serialized_destination_masks_the_urls_password_and_query_values() {
        let mut config = destination("https://hook:s3cret@push.example.org/notify?key=k3y&v=2");
        config
            .headers
            .insert("Authorization".into(), "Bearer t0ken".into());
        let text = toml::to_string(&config).unwrap();
        for secret in ["s3cret", "k3y", "t0ken"] {
            assert!(!text.contains(secret), "{secret} shown in {text}");
        }
        assert!(
            text.contains("https://hook:***@push.example.org/notify?key=***&v=***"),
            "{text}"
        );
    }

    #[test]
    fn a_destination_needs_an_http_url_with_a_host_and_positive_bounds() {
        destination("https://push.example.org/notify")
            .load_secrets("hook")
            .unwrap();
        assert!(error(destination("")).contains("reader.destinations.hook.url"));
        assert!(error(destination("ftp://x.example/")).contains("http:// or https://"));
        assert!(error(destination("/notify")).contains("http:// or https://"));
        let zero = DestinationConfig {
            concurrency: 0,
            ..destination("http://127.0.0.1:9/")
        };
        assert!(error(zero).contains("concurrency, max_attempts and timeout_ms"));
    }

    #[test]
    fn a_header_set_both_inline_and_from_a_file_is_refused_and_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "Bearer s3cret\n").unwrap();
        let mut config = DestinationConfig {
            header_files: [("Authorization".to_string(), file.clone())].into(),
            ..destination("http://127.0.0.1:9/")
        };
        config.load_secrets("hook").unwrap();
        assert_eq!(config.headers["Authorization"].expose(), "Bearer s3cret");
        let both = DestinationConfig {
            headers: [("Authorization".to_string(), Secret::from("x"))].into(),
            header_files: [("Authorization".to_string(), file)].into(),
            ..destination("http://127.0.0.1:9/")
        };
        assert!(error(both).contains("set in headers and header_files"));
    }

    #[test]
    fn a_grant_naming_an_undeclared_destination_is_refused() {
        let grant = streamhost_plugin_runtime::Grant {
            push: vec!["hook".into()],
            ..Default::default()
        };
        let grants = [("webhook".to_string(), grant)].into();
        let declared = [("hook".to_string(), destination("http://127.0.0.1:9/"))].into();
        check_grants(&grants, &declared).unwrap();
        let message = check_grants(&grants, &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("add [reader.destinations.hook]"),
            "{message}"
        );
    }
}
