//! `[writer.retention]` (trimming the writer's log per stream) and
//! `[reader.plugins.retention]` (pruning dead letters and failure files). Everything is off
//! or generous by default; `docs/configuration.md` has each key.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use streamhost_proto::StreamName;

/// How much of each stream the writer's log keeps. Every limit is 0 (none) by default: a
/// trimmed row is gone for every reader that has not applied it, so trimming is chosen, not
/// assumed (design.md, decision 56).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WriterRetention {
    /// Trim rows older than this many seconds (0: no age limit). Ages are known to within
    /// `interval_ms`, and a row is never trimmed before it is this old.
    pub max_age_s: u64,
    /// Keep at most this many rows per stream (0: no limit).
    pub max_rows: u64,
    /// Keep at most this many MiB of row JSON per stream (0: no limit).
    pub max_mib: u64,
    /// Rows after the `from_token` of a catch-up request are kept this long after the
    /// request, whatever the limits say, so a reader paging through its backlog is not cut
    /// off half-way (the bound on keeping what readers still need).
    pub hold_ms: u64,
    /// How often the retention task runs.
    pub interval_ms: u64,
    /// Rows deleted per transaction, so appends never wait behind one long delete.
    pub step_rows: u64,
    /// Limits for single streams, replacing the ones above key by key
    /// (`[writer.retention.streams.<name>]`).
    pub streams: BTreeMap<String, StreamRetention>,
}

impl Default for WriterRetention {
    fn default() -> Self {
        WriterRetention {
            max_age_s: 0,
            max_rows: 0,
            max_mib: 0,
            hold_ms: 300_000,
            interval_ms: 60_000,
            step_rows: 10_000,
            streams: BTreeMap::new(),
        }
    }
}

/// One stream's limits; a key left out takes `[writer.retention]`'s.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamRetention {
    /// As `[writer.retention] max_age_s`, for this stream.
    pub max_age_s: Option<u64>,
    /// As `[writer.retention] max_rows`, for this stream.
    pub max_rows: Option<u64>,
    /// As `[writer.retention] max_mib`, for this stream.
    pub max_mib: Option<u64>,
}

/// The limits that apply to one stream; 0 is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Oldest a row may be, in seconds.
    pub max_age_s: u64,
    /// Most rows.
    pub max_rows: u64,
    /// Most bytes of row JSON.
    pub max_bytes: u64,
}

impl Limits {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.max_age_s > 0 || self.max_rows > 0 || self.max_bytes > 0
    }
}

impl WriterRetention {
    /// The limits of `stream`: its own keys, else the defaults.
    pub fn limits(&self, stream: &StreamName) -> Limits {
        let own = self
            .streams
            .get(stream.as_str())
            .cloned()
            .unwrap_or_default();
        Limits {
            max_age_s: own.max_age_s.unwrap_or(self.max_age_s),
            max_rows: own.max_rows.unwrap_or(self.max_rows),
            max_bytes: own.max_mib.unwrap_or(self.max_mib).saturating_mul(1 << 20),
        }
    }

    /// The hold after a catch-up request.
    pub fn hold(&self) -> Duration {
        Duration::from_millis(self.hold_ms)
    }

    /// Checks values serde cannot: a positive interval and step, and only declared streams.
    pub fn validate(&self, declared: &[StreamName]) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.interval_ms > 0,
            "writer.retention.interval_ms must be > 0"
        );
        anyhow::ensure!(self.step_rows > 0, "writer.retention.step_rows must be > 0");
        for name in self.streams.keys() {
            let stream = StreamName::new(name.as_str()).context("writer.retention.streams")?;
            anyhow::ensure!(
                declared.contains(&stream),
                "writer.retention.streams.{name}: not a declared stream (writer.streams)"
            );
        }
        Ok(())
    }
}

/// How long the reader keeps what its plugins leave behind: dead letters (in
/// `reader.sqlite`) and failing batches' files (`plugin-failures/`). Each is pruned by count
/// and by age, whichever removes more.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginRetention {
    /// Dead letters kept per plugin, newest first (0: no count limit).
    pub dead_letters: u64,
    /// Dead letters older than this many days are deleted (0: no age limit).
    pub dead_letter_days: u64,
    /// Files kept in `plugin-failures/`, newest first (0: no count limit).
    pub failure_files: u64,
    /// Files in `plugin-failures/` older than this many days are deleted (0: no age limit).
    pub failure_file_days: u64,
    /// How often pruning runs (also once at start).
    pub interval_ms: u64,
}

impl Default for PluginRetention {
    fn default() -> Self {
        PluginRetention {
            dead_letters: 10_000,
            dead_letter_days: 30,
            failure_files: 1_000,
            failure_file_days: 30,
            interval_ms: 3_600_000,
        }
    }
}

impl PluginRetention {
    /// Checks values serde cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.interval_ms > 0,
            "reader.plugins.retention.interval_ms must be > 0"
        );
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::ConfigFile;

    fn name(s: &str) -> StreamName {
        StreamName::new(s).unwrap()
    }

    #[test]
    fn retention_is_off_by_default_and_pruning_is_bounded() {
        let config = ConfigFile::parse("").unwrap();
        assert!(!config.writer.retention.limits(&name("events")).any());
        let plugins = &config.reader.plugins.retention;
        assert_eq!(
            (plugins.dead_letters, plugins.failure_files),
            (10_000, 1_000)
        );
    }

    #[test]
    fn a_stream_replaces_the_defaults_key_by_key() {
        let config = ConfigFile::parse(
            "[writer]\nstreams = [\"events\", \"typing\"]\n[writer.retention]\nmax_rows = 100\n\
             max_age_s = 60\n[writer.retention.streams.typing]\nmax_rows = 5\nmax_mib = 1\n",
        )
        .unwrap();
        let retention = &config.writer.retention;
        assert_eq!(
            retention.limits(&name("typing")),
            Limits {
                max_age_s: 60,
                max_rows: 5,
                max_bytes: 1 << 20
            }
        );
        assert_eq!(retention.limits(&name("events")).max_rows, 100);
        retention
            .validate(&[name("events"), name("typing")])
            .unwrap();
        let err = retention.validate(&[name("events")]).unwrap_err();
        assert!(
            format!("{err:#}").contains("not a declared stream"),
            "{err:#}"
        );
    }
}
