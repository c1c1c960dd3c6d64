//! A reader as its console shows it (`crate::console`): `{"role": "reader", "name", "at_ms",
//! "admin", "status": ReaderStatus (as `GET /v1/status`), "plugins": [summary as
//! `GET /v1/plugins` plus "reloads", "reload_failures", "failures" by reason,
//! "last_failure"], "notifications": [the last [`RECENT_NOTIFICATIONS`], payloads cut at
//! [`PAYLOAD_CHARS`]]}`; without plugins, `plugins` and `notifications` are `null`.

use std::sync::Arc;

use serde_json::{Value, json};

use super::plugins::{PluginHost, summaries_json};
use super::status::Shared;
use crate::clock::unix_ms;
use crate::console::Source;

/// Notifications the reader's console lists (the newest).
pub const RECENT_NOTIFICATIONS: usize = 20;

/// Characters of a notification's payload the console shows.
pub const PAYLOAD_CHARS: usize = 300;

/// A reader as its console shows it.
pub struct ReaderSource {
    pub(crate) shared: Arc<Shared>,
    pub(crate) plugins: Option<Arc<PluginHost>>,
    /// Whether the admin API (and so the buttons) is on.
    pub(crate) admin: bool,
}

impl Source for ReaderSource {
    fn snapshot(&self) -> Value {
        let status = self.shared.snapshot();
        let (plugins, notifications) = match &self.plugins {
            Some(host) => (plugins(host), notifications(host)),
            None => (Value::Null, Value::Null),
        };
        json!({
            "role": "reader",
            "name": status.name,
            "at_ms": unix_ms(),
            "admin": self.admin,
            "status": status,
            "plugins": plugins,
            "notifications": notifications,
        })
    }
}

/// `GET /v1/plugins`'s summaries, each with its reload and failure counts and its last
/// failure report.
fn plugins(host: &PluginHost) -> Value {
    let mut summaries = summaries_json(host);
    for summary in summaries.as_array_mut().into_iter().flatten() {
        let Some(slot) = summary["name"].as_str().and_then(|name| host.slot(name)) else {
            continue;
        };
        let status = slot.status();
        summary["reloads"] = json!(status.reloads);
        summary["reload_failures"] = json!(status.reload_failures);
        summary["failures"] = json!(status.failures);
        summary["last_failure"] = status
            .reports
            .back()
            .and_then(|report| serde_json::to_value(report).ok())
            .unwrap_or(Value::Null);
    }
    summaries
}

/// The newest notifications, oldest first, payloads cut at [`PAYLOAD_CHARS`].
fn notifications(host: &PluginHost) -> Value {
    let recent: Vec<Value> = host
        .hub()
        .recent(RECENT_NOTIFICATIONS)
        .into_iter()
        .map(|n| {
            let cut = n.payload.chars().count() > PAYLOAD_CHARS;
            let payload: String = n.payload.chars().take(PAYLOAD_CHARS).collect();
            json!({
                "seq": n.seq,
                "plugin": n.plugin,
                "topic": n.topic,
                "payload": payload,
                "cut": cut,
            })
        })
        .collect();
    Value::Array(recent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_without_plugins_shows_its_status_and_no_plugin_panels() {
        let shared = Arc::new(crate::reader::status::Shared::new(
            "reader-9".into(),
            "127.0.0.1:9092".into(),
        ));
        let source = ReaderSource {
            shared,
            plugins: None,
            admin: false,
        };
        let snapshot = source.snapshot();
        assert_eq!(snapshot["role"], "reader");
        assert_eq!(snapshot["name"], "reader-9");
        assert_eq!(snapshot["admin"], false);
        assert_eq!(snapshot["status"]["connection"]["state"], "connecting");
        assert!(snapshot["plugins"].is_null() && snapshot["notifications"].is_null());
        assert!(snapshot["at_ms"].as_u64().unwrap() > 0);
    }
}
