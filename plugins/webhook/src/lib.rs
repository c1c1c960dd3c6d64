//! `webhook`: pushes every row of its batches (or those matching a filter) to a destination.
//!
//! It receives every granted stream. For each row it pushes the JSON body
//! `{"stream": S, "instance": I, "token": T, "row": <the row's JSON, verbatim>}` under the
//! key `S/I/T/N`, where `N` is the row's index among the rows of token `T` (rows of one token
//! always arrive in one batch, so the key names the row wherever the batch boundaries fall).
//!
//! Its configuration (the grant's `config`, JSON):
//!
//! - `destination` (default `"webhook"`): the destination pushed to; it must be declared in
//!   `[reader.destinations.<name>]` and granted (`push = [...]`).
//! - `field` and `equals` (both or neither): push only rows that are JSON objects whose
//!   top-level `field` equals `equals` (any JSON value).
//!
//! Rows that are not JSON are skipped without a push. A refused push fails the batch (its
//! other pushes are dropped with it): a body over the destination's `max_body_bytes`, a key
//! over 1 KiB or more pushes than the effect limits allow skip the batch (a dead letter), a
//! destination not declared or not granted is fatal.

use serde::Deserialize;
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use streamhost_guest_sdk::{
    Batch, Cursor, Description, Effect, Plugin, PluginError, export_plugin, push,
};

/// The configuration `init` receives.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_destination")]
    destination: String,
    #[serde(default)]
    field: Option<String>,
    #[serde(default)]
    equals: Option<Value>,
}

fn default_destination() -> String {
    "webhook".to_owned()
}

/// The body of one push.
#[derive(Serialize)]
struct Body<'a> {
    stream: &'a str,
    instance: &'a str,
    token: i64,
    row: &'a RawValue,
}

/// The plugin: its destination and filter.
struct Webhook {
    destination: String,
    filter: Option<(String, Value)>,
}

impl Webhook {
    /// Whether the row `data` (valid JSON) passes the filter.
    fn matches(&self, data: &str) -> bool {
        let Some((field, equals)) = &self.filter else {
            return true;
        };
        match serde_json::from_str::<Value>(data) {
            Ok(Value::Object(row)) => row.get(field) == Some(equals),
            _ => false,
        }
    }
}

impl Plugin for Webhook {
    fn describe() -> Description {
        Description::new("webhook", env!("CARGO_PKG_VERSION")).stream("*")
    }

    fn init(config: &str, _resume_after: &[Cursor]) -> Result<Self, PluginError> {
        let config: Config = serde_json::from_str(config)
            .map_err(|e| PluginError::fatal(format!("bad webhook configuration: {e}")))?;
        let filter = match (config.field, config.equals) {
            (Some(field), Some(equals)) => Some((field, equals)),
            (None, None) => None,
            _ => {
                return Err(PluginError::fatal(
                    "bad webhook configuration: `field` and `equals` go together",
                ));
            }
        };
        Ok(Webhook {
            destination: config.destination,
            filter,
        })
    }

    fn on_batch(&mut self, batch: Batch) -> Result<Vec<Effect>, PluginError> {
        let mut previous_token = None;
        let mut index = 0u32;
        for row in batch.rows() {
            if previous_token == Some(row.token) {
                index += 1;
            } else {
                previous_token = Some(row.token);
                index = 0;
            }
            let Ok(raw) = serde_json::from_str::<&RawValue>(row.data) else {
                continue;
            };
            if !self.matches(row.data) {
                continue;
            }
            let key = format!("{}/{}/{}/{index}", batch.stream, batch.instance, row.token);
            let body = Body {
                stream: &batch.stream,
                instance: &batch.instance,
                token: row.token,
                row: raw,
            };
            push::push_json(&self.destination, &key, &body)?;
        }
        Ok(Vec::new())
    }
}

export_plugin!(Webhook);
