//! `log`: rate-limited lines, tagged with the plugin's name, into the host's log.

use crate::bindings::log::{Host, Level};
use crate::state::PluginState;

impl Host for PluginState {
    fn log(&mut self, level: Level, message: String) {
        let Some(line) = self.services.log().admit(&message) else {
            return;
        };
        let plugin = self.services.name();
        match level {
            Level::Debug => tracing::debug!(plugin, "{line}"),
            Level::Info => tracing::info!(plugin, "{line}"),
            Level::Warn => tracing::warn!(plugin, "{line}"),
            Level::Error => tracing::error!(plugin, "{line}"),
        }
    }
}
