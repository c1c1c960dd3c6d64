//! What the console shows, as one JSON object (`GET /console/snapshot`, and each event of
//! `GET /console/events`), built from the status the APIs already report:
//!
//! - writer: `{"role": "writer", "name", "server_name", "at_ms", "streams": [{"name",
//!   "position"}], "readers": [`PeerView`]}` — the readers are the open replication
//!   connections, named by their `NAME`;
//! - reader: `{"role": "reader", "name", "at_ms", "admin", "status": ReaderStatus (as
//!   `GET /v1/status`), "plugins": [summary as `GET /v1/plugins` plus "reloads",
//!   "reload_failures", "failures" by reason, "last_failure"], "notifications": [the last
//!   [`RECENT_NOTIFICATIONS`], payloads cut at [`PAYLOAD_CHARS`]]}`; without plugins,
//!   `plugins` and `notifications` are `null`.
//!
//! Rates are the page's work: it divides the change of a position (or of rows applied) by the
//! change of `at_ms` between two snapshots.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{Console, Source};
use crate::clock::unix_ms;
use crate::http::{Response, json as json_answer};
use crate::reader::plugins::{PluginHost, summaries_json};
use crate::reader::status::Shared;
use crate::writer::fanout::peers::Peers;
use crate::writer::streams::StreamSet;

/// Notifications the reader's console lists (the newest).
pub const RECENT_NOTIFICATIONS: usize = 20;

/// Characters of a notification's payload the console shows.
pub const PAYLOAD_CHARS: usize = 300;

/// `GET /console/snapshot`.
pub(super) async fn answer(State(console): State<Console>) -> Response {
    json_answer(StatusCode::OK, &console.source.snapshot())
}

/// The writer as its console shows it.
pub struct WriterSource {
    pub(crate) name: String,
    pub(crate) server_name: String,
    pub(crate) streams: Arc<StreamSet>,
    pub(crate) peers: Arc<Peers>,
}

impl Source for WriterSource {
    fn snapshot(&self) -> Value {
        let streams: Vec<Value> = self
            .streams
            .iter()
            .map(|(name, recent)| json!({"name": name.as_str(), "position": recent.position().0}))
            .collect();
        json!({
            "role": "writer",
            "name": self.name,
            "server_name": self.server_name,
            "at_ms": unix_ms(),
            "streams": streams,
            "readers": self.peers.list(),
        })
    }
}

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
