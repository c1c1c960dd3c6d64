//! `counters`: named counters the reader exports on `/metrics`. Linked by hand rather than
//! through `bindgen!`'s trait so an over-long name is refused before it is copied from the
//! guest, and fails the call (reason `host-memory`): `add` has no error to return.

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, WasmStr};

use crate::state::PluginState;

/// Links `streamhost:plugin/counters@<version>#add`.
pub(crate) fn add_to_linker(
    linker: &mut Linker<PluginState>,
    version: &str,
) -> wasmtime::Result<()> {
    linker
        .instance(&format!("streamhost:plugin/counters@{version}"))?
        .func_wrap(
            "add",
            |store: StoreContextMut<'_, PluginState>, (name, delta): (WasmStr, u64)| {
                add(store, &name, delta)
            },
        )
}

fn add(
    mut store: StoreContextMut<'_, PluginState>,
    name: &WasmStr,
    delta: u64,
) -> wasmtime::Result<()> {
    let services = store.data().services.clone();
    let budget = store.data().caps.limits.host_memory_bytes();
    let name = name.to_str(&store)?;
    let Err(refusal) = services.add_counter(&name, delta, budget) else {
        return Ok(());
    };
    drop(name);
    store.data_mut().host_memory_hit = true;
    Err(wasmtime::Error::msg(format!(
        "counters.add refused: {refusal}"
    )))
}
