//! Deny by default: the operator's [`Grant`] for a plugin, and the [`Capabilities`] a plugin
//! gets, which is what its [`Manifest`] asks for when every request is granted.
//!
//! A request that is not granted refuses the plugin at load, naming what is missing; a grant
//! wider than the request gives nothing extra.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::LoadError;
use crate::limits::Limits;
use crate::manifest::Manifest;

/// What the operator allows one plugin (`[plugins.grants.<name>]` in the reader's config).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Grant {
    /// Streams it may receive; `*` allows every stream.
    pub streams: Vec<String>,
    /// Caches it may invalidate; `*` allows every cache.
    pub caches: Vec<String>,
    /// Topic patterns it may notify; a trailing `*` matches any suffix.
    pub topics: Vec<String>,
    /// Whether it may use the key-value store.
    pub kv: bool,
    /// Streams it may read through the `rows` import; `*` allows every stream.
    pub read_rows: Vec<String>,
    /// Host folder mounted read-only at the guest path the manifest names.
    pub directory: Option<PathBuf>,
    /// Destinations it may push to; `*` allows every declared destination.
    pub push: Vec<String>,
    /// Origins and destination names it may call through `wasi:http/outgoing-handler`.
    pub http: Vec<String>,
    /// The most it may ask for of each limit (defaults when absent).
    pub limits: Option<Limits>,
    /// The sha256 (hex) its `.wasm` must have, pinned by the operator.
    pub sha256: Option<String>,
    /// Configuration handed to `init` as JSON text.
    pub config: Option<toml::Table>,
}

impl Grant {
    /// A grant of everything the manifest asks for (for `plugin run` and the demo).
    pub fn everything_asked(manifest: &Manifest) -> Result<Grant, LoadError> {
        Ok(Grant {
            streams: manifest.streams.clone(),
            caches: manifest.caches.clone(),
            topics: manifest.topics.clone(),
            kv: manifest.kv,
            read_rows: manifest.read_rows.clone(),
            directory: None,
            push: manifest.push.clone(),
            http: manifest.http.clone(),
            limits: Some(requested_limits(manifest)?),
            sha256: None,
            config: None,
        })
    }
}

/// What one plugin may do once loaded.
#[derive(Clone, Debug, PartialEq)]
pub struct Capabilities {
    /// Streams whose batches it receives (`*` = all).
    pub streams: Vec<String>,
    /// Caches it may invalidate.
    pub caches: Vec<String>,
    /// Topic patterns it may notify.
    pub topics: Vec<String>,
    /// Whether the `kv` interface is linked.
    pub kv: bool,
    /// Streams readable through `rows`; the interface is linked only when not empty.
    pub read_rows: Vec<String>,
    /// Host folder and guest path of its read-only preopen.
    pub directory: Option<(PathBuf, String)>,
    /// Destinations it pushes to; the `push` interface is linked only when not empty.
    pub push: Vec<String>,
    /// Origins and destination names it may call; `wasi:http` is linked only when not empty.
    pub http: Vec<String>,
    /// The limits it runs under.
    pub limits: Limits,
    /// Its `init` configuration as JSON text.
    pub config_json: String,
}

impl Capabilities {
    /// What `manifest` gets under `grant`: everything it asks for, or an error naming each
    /// request the grant does not cover.
    pub fn resolve(manifest: &Manifest, grant: &Grant) -> Result<Capabilities, LoadError> {
        let mut missing = Vec::new();
        for stream in &manifest.streams {
            if !allows(&grant.streams, stream) {
                missing.push(format!("stream {stream}"));
            }
        }
        for cache in &manifest.caches {
            if !allows(&grant.caches, cache) {
                missing.push(format!("cache {cache}"));
            }
        }
        for topic in &manifest.topics {
            if !grant.topics.iter().any(|p| pattern_covers(p, topic)) {
                missing.push(format!("topic {topic}"));
            }
        }
        if manifest.kv && !grant.kv {
            missing.push("kv".into());
        }
        for stream in &manifest.read_rows {
            if !allows(&grant.read_rows, stream) {
                missing.push(format!("read_rows {stream}"));
            }
        }
        for destination in &manifest.push {
            if !allows(&grant.push, destination) {
                missing.push(format!("push {destination}"));
            }
        }
        for target in &manifest.http {
            if !allows(&grant.http, target) {
                missing.push(format!("http {target}"));
            }
        }
        let directory = match (&manifest.directory, &grant.directory) {
            (Some(guest), Some(host)) => Some((host.clone(), guest.clone())),
            (Some(guest), None) => {
                missing.push(format!("directory {guest}"));
                None
            }
            (None, _) => None,
        };
        let limits = requested_limits(manifest)?;
        missing.extend(limits.exceeding(&grant.limits.clone().unwrap_or_default()));
        if !missing.is_empty() {
            return Err(LoadError::NotGranted {
                plugin: manifest.name.clone(),
                missing,
            });
        }
        let config_json = match &grant.config {
            Some(table) => serde_json::to_string(table).map_err(|e| LoadError::Manifest {
                path: PathBuf::from("config"),
                message: e.to_string(),
            })?,
            None => "{}".into(),
        };
        Ok(Capabilities {
            streams: manifest.streams.clone(),
            caches: manifest.caches.clone(),
            topics: manifest.topics.clone(),
            kv: manifest.kv,
            read_rows: manifest.read_rows.clone(),
            directory,
            push: manifest.push.clone(),
            http: manifest.http.clone(),
            limits,
            config_json,
        })
    }

    /// Whether batches of `stream` go to the plugin.
    pub fn receives(&self, stream: &str) -> bool {
        allows(&self.streams, stream)
    }

    /// Whether the plugin may invalidate `cache`.
    pub fn may_invalidate(&self, cache: &str) -> bool {
        allows(&self.caches, cache)
    }

    /// Whether the plugin may notify `topic`.
    pub fn may_notify(&self, topic: &str) -> bool {
        self.topics.iter().any(|p| pattern_matches(p, topic))
    }

    /// Whether the plugin may push to `destination`.
    pub fn may_push(&self, destination: &str) -> bool {
        allows(&self.push, destination)
    }

    /// Whether the plugin may read `stream`'s rows.
    pub fn may_read(&self, stream: &str) -> bool {
        allows(&self.read_rows, stream)
    }
}

/// The limits a manifest asks for: the defaults overridden by its `[limits]` table.
fn requested_limits(manifest: &Manifest) -> Result<Limits, LoadError> {
    let mut table = toml::Table::try_from(Limits::default()).map_err(|e| LoadError::Manifest {
        path: PathBuf::from("plugin.toml"),
        message: e.to_string(),
    })?;
    for (key, value) in &manifest.limits {
        table.insert(key.clone(), value.clone());
    }
    table
        .try_into()
        .map_err(|e: toml::de::Error| LoadError::Manifest {
            path: PathBuf::from(format!("{}/plugin.toml [limits]", manifest.name)),
            message: e.to_string(),
        })
}

fn allows(granted: &[String], item: &str) -> bool {
    granted.iter().any(|g| g == "*" || g == item)
}

/// Whether `topic` matches `pattern` (`room:*` matches `room:` and anything after it).
pub fn pattern_matches(pattern: &str, topic: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => topic.starts_with(prefix),
        None => pattern == topic,
    }
}

/// Whether every topic `requested` matches is also matched by `granted`.
fn pattern_covers(granted: &str, requested: &str) -> bool {
    match (granted.strip_suffix('*'), requested.strip_suffix('*')) {
        (Some(g), Some(r)) => r.starts_with(g),
        (Some(g), None) => requested.starts_with(g),
        (None, Some(_)) => false,
        (None, None) => granted == requested,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            name: "p".into(),
            streams: vec!["messages".into()],
            caches: vec!["timeline".into()],
            topics: vec!["room:*".into()],
            kv: true,
            ..Manifest::default()
        }
    }

    #[test]
    fn a_full_grant_gives_exactly_what_was_asked() {
        let grant = Grant {
            streams: vec!["*".into()],
            caches: vec!["timeline".into(), "other".into()],
            topics: vec!["*".into()],
            kv: true,
            ..Grant::default()
        };
        let caps = Capabilities::resolve(&manifest(), &grant).unwrap();
        assert!(caps.receives("messages"));
        assert!(
            !caps.receives("typing"),
            "the grant's * gives no stream not asked for"
        );
        assert!(!caps.may_invalidate("other"));
        assert!(caps.may_notify("room:!a:x"));
        assert!(!caps.may_notify("user:@a:x"));
        assert_eq!(caps.config_json, "{}");
    }

    #[test]
    fn every_missing_grant_is_named() {
        let grant = Grant {
            streams: vec!["messages".into()],
            topics: vec!["room:!one*".into()],
            ..Grant::default()
        };
        let error = Capabilities::resolve(&manifest(), &grant)
            .unwrap_err()
            .to_string();
        assert!(error.contains("cache timeline"), "{error}");
        assert!(error.contains("topic room:*"), "{error}");
        assert!(error.contains("kv"), "{error}");
        assert!(!error.contains("stream messages"), "{error}");
    }

    #[test]
    fn limits_above_the_grant_are_refused_and_within_it_taken() {
        let mut asked = manifest();
        asked
            .limits
            .insert("memory_mib".into(), toml::Value::Integer(256));
        let mut grant = Grant::everything_asked(&manifest()).unwrap();
        let error = Capabilities::resolve(&asked, &grant)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("limits.memory_mib = 256 (granted 64)"),
            "{error}"
        );
        grant.limits = Some(Limits {
            memory_mib: 512,
            ..Limits::default()
        });
        let caps = Capabilities::resolve(&asked, &grant).unwrap();
        assert_eq!(caps.limits.memory_mib, 256);
    }

    #[test]
    fn unknown_limit_names_are_errors() {
        let mut asked = manifest();
        asked
            .limits
            .insert("memory_gb".into(), toml::Value::Integer(1));
        let error = Capabilities::resolve(&asked, &Grant::default())
            .unwrap_err()
            .to_string();
        assert!(error.contains("memory_gb"), "{error}");
    }

    #[test]
    fn topic_patterns_match_by_prefix() {
        assert!(pattern_matches("room:*", "room:!a"));
        assert!(!pattern_matches("room:*", "user:@a"));
        assert!(pattern_matches("evil", "evil"));
        assert!(pattern_covers("room:*", "room:!a*"));
        assert!(!pattern_covers("room:!a", "room:*"));
    }
}
