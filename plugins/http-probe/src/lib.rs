//! `http-probe`: a test plugin for outbound HTTP (`streamhost_guest_sdk::http`).
//!
//! Each `messages` row `{"url": U, "method"?: M, "headers"?: [[N, V], …], "body"?: B}` is a
//! request to make; the plugin makes it during `on_batch` and notifies topic `probe` with
//! `{"url": U, "status": S, "headers": […], "body": "…"}` or, when the request failed,
//! `{"url": U, "error": "…", "kind": "denied"|"timeout"|"too-large"|…}`: a failed request
//! is an answer, not a failed batch. Rows that are not such objects are ignored. The query
//! `fetch?url=U` makes the same request from a query (which the host refuses) and answers
//! the same JSON.

use serde::Deserialize;
use serde_json::{Value, json};
use streamhost_guest_sdk::http::{self, HttpError};
use streamhost_guest_sdk::{
    Batch, Cursor, Description, Effect, Plugin, PluginError, arg, export_plugin,
};

/// One request named by a row.
#[derive(Deserialize)]
struct Probe {
    url: String,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    body: Option<String>,
}

/// The plugin: stateless.
struct HttpProbe;

/// Makes `probe`'s request; the JSON the plugin reports for it.
fn run(probe: &Probe) -> Value {
    let headers: Vec<(&str, &str)> = probe
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let method = probe.method.as_deref().unwrap_or("GET");
    let body = probe.body.as_deref().unwrap_or("").as_bytes();
    match http::request(method, &probe.url, &headers, body) {
        Ok(response) => json!({
            "url": probe.url,
            "status": response.status,
            "headers": response.headers,
            "body": response.text(),
        }),
        Err(e) => {
            let kind = match &e {
                HttpError::Denied => "denied",
                HttpError::Timeout => "timeout",
                HttpError::TooLarge => "too-large",
                HttpError::InvalidUrl(_) => "invalid-url",
                HttpError::InvalidHeader(_) => "invalid-header",
                _ => "other",
            };
            json!({"url": probe.url, "error": e.to_string(), "kind": kind})
        }
    }
}

impl Plugin for HttpProbe {
    fn describe() -> Description {
        Description::new("http-probe", env!("CARGO_PKG_VERSION")).stream("messages")
    }

    fn init(_config: &str, _resume_after: &[Cursor]) -> Result<Self, PluginError> {
        Ok(HttpProbe)
    }

    fn on_batch(&mut self, batch: Batch) -> Result<Vec<Effect>, PluginError> {
        let mut effects = Vec::new();
        for row in batch.rows() {
            let Ok(probe) = row.json::<Probe>() else {
                continue;
            };
            effects.push(Effect::notify("probe", run(&probe).to_string()));
        }
        Ok(effects)
    }

    fn query(&mut self, name: &str, args: &[(String, String)]) -> Result<String, PluginError> {
        match name {
            "fetch" => {
                let url = arg(args, "url").unwrap_or_default().to_string();
                let probe = Probe {
                    url,
                    method: None,
                    headers: Vec::new(),
                    body: None,
                };
                Ok(run(&probe).to_string())
            }
            _ => Err(PluginError::fatal(format!("unknown query `{name}`"))),
        }
    }
}

export_plugin!(HttpProbe);
