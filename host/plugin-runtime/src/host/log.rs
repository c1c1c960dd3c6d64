//! `log`: rate-limited lines, tagged with the plugin's name, into the host's log. Linked by
//! hand rather than through `bindgen!`'s trait so the message is read in place from the
//! guest's memory: the rate is checked first, and only the first 1 KiB is ever copied.

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, WasmStr};

use crate::bindings::log::Level;
use crate::state::PluginState;

/// Links `streamhost:plugin/log@<version>#log`.
pub(crate) fn add_to_linker(
    linker: &mut Linker<PluginState>,
    version: &str,
) -> wasmtime::Result<()> {
    linker
        .instance(&format!("streamhost:plugin/log@{version}"))?
        .func_wrap(
            "log",
            |store: StoreContextMut<'_, PluginState>, (level, message): (Level, WasmStr)| {
                log(store, level, &message)
            },
        )
}

fn log(
    store: StoreContextMut<'_, PluginState>,
    level: Level,
    message: &WasmStr,
) -> wasmtime::Result<()> {
    let services = store.data().services.clone();
    if !services.log().admit() {
        return Ok(());
    }
    let text = message.to_str(&store)?;
    let line = services.log().keep(&text);
    let plugin = services.name();
    match level {
        Level::Debug => tracing::debug!(plugin, "{line}"),
        Level::Info => tracing::info!(plugin, "{line}"),
        Level::Warn => tracing::warn!(plugin, "{line}"),
        Level::Error => tracing::error!(plugin, "{line}"),
    }
    Ok(())
}
