//! `stream-stats`: counts the rows of every granted stream.
//!
//! It asks for `*` (all the streams its `plugin.toml` grants), keeps the count of stream `S`
//! in the key-value store under `count:S` as decimal text, evicts `S` from the cache `count`
//! after each batch of `S`, and answers `GET /v1/query/stream-stats/count?stream=S` with the
//! count as a JSON number (`0` for a stream it has not seen).

use streamhost_guest_sdk::{
    Batch, Cursor, Description, Effect, Plugin, PluginError, export_plugin, kv, required_arg,
};

/// The plugin; all its state is in the key-value store.
struct StreamStats;

fn key(stream: &str) -> String {
    format!("count:{stream}")
}

/// The stored count of `stream`, 0 when there is none.
fn count(stream: &str) -> Result<u64, PluginError> {
    let key = key(stream);
    match kv::get(&key) {
        None => Ok(0),
        Some(bytes) => std::str::from_utf8(&bytes)
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| PluginError::fatal(format!("kv value of `{key}` is not a count"))),
    }
}

impl Plugin for StreamStats {
    fn describe() -> Description {
        Description::new("stream-stats", env!("CARGO_PKG_VERSION"))
            .stream("*")
            .query("count", "count", "{stream}")
    }

    fn init(_config: &str, _resume_after: &[Cursor]) -> Result<Self, PluginError> {
        Ok(StreamStats)
    }

    fn on_batch(&mut self, batch: Batch) -> Result<Vec<Effect>, PluginError> {
        let total = count(&batch.stream)? + batch.len() as u64;
        kv::set(&key(&batch.stream), total.to_string().as_bytes())?;
        Ok(vec![Effect::invalidate("count", batch.stream)])
    }

    fn query(&mut self, name: &str, args: &[(String, String)]) -> Result<String, PluginError> {
        match name {
            "count" => Ok(count(required_arg(args, "stream")?)?.to_string()),
            _ => Err(PluginError::fatal(format!("unknown query `{name}`"))),
        }
    }
}

export_plugin!(StreamStats);
