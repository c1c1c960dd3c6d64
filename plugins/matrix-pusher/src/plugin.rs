//! The host glue: the guest SDK's `Plugin`, outbound HTTP and pushes (wasm32 only).

use streamhost_guest_sdk::{
    Batch, Cursor, Description, Effect, Plugin, PluginError, export_plugin, http, push,
};

use crate::notify::Config;
use crate::pusher::process;
use crate::synapse::{FetchError, Http};

/// GETs through the host's outbound HTTP (`wasi:http`); the host attaches the destination's
/// headers (Synapse's access token) to URLs under a granted destination's URL.
struct HostHttp;

impl Http for HostHttp {
    fn get(&mut self, url: &str) -> Result<(u16, Vec<u8>), String> {
        let response = http::get(url).map_err(|e| e.to_string())?;
        Ok((response.status, response.body))
    }
}

/// The plugin: its configuration only (no state across batches).
struct MatrixPusher {
    config: Config,
}

impl Plugin for MatrixPusher {
    fn describe() -> Description {
        Description::new("matrix-pusher", env!("CARGO_PKG_VERSION")).stream("events")
    }

    fn init(config: &str, _resume_after: &[Cursor]) -> Result<Self, PluginError> {
        let config: Config = serde_json::from_str(config)
            .map_err(|e| PluginError::fatal(format!("matrix-pusher configuration: {e}")))?;
        Ok(MatrixPusher { config })
    }

    fn on_batch(&mut self, batch: Batch) -> Result<Vec<Effect>, PluginError> {
        for row in batch.rows() {
            let pushes = process(&self.config, &mut HostHttp, row.data).map_err(|e| match e {
                FetchError::Fatal(m) => PluginError::fatal(m),
                FetchError::Retry(m) | FetchError::Missing(m) => PluginError::retry(m),
            })?;
            for (key, body) in pushes {
                // Not granted or outside a batch: fatal; too large, a bad key or too many:
                // the row is skipped (the SDK's `From<PushError>`).
                push::push(&self.config.gateway, &key, &body).map_err(PluginError::from)?;
            }
        }
        Ok(Vec::new())
    }
}

export_plugin!(MatrixPusher);
