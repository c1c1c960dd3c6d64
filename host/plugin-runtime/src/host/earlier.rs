//! The earlier versions' names of `clock` and `rows` (`streamhost:plugin/…@0.1.0` to
//! `@0.3.0`), linked onto the same host functions as 0.4.0's: the interfaces are identical, but
//! wasmtime never matches an earlier import with a 0.4 definition (`bindings`). `log`,
//! `counters`, `kv` and `push` are linked by hand for every version already.

use wasmtime::StoreContextMut;
use wasmtime::component::Linker;

use crate::bindings::types::Row;
use crate::bindings::{clock, rows};
use crate::state::PluginState;

/// `streamhost:plugin/clock@<version>`.
pub(crate) fn add_clock(linker: &mut Linker<PluginState>, version: &str) -> wasmtime::Result<()> {
    linker
        .instance(&format!("streamhost:plugin/clock@{version}"))?
        .func_wrap(
            "now-ms",
            |mut store: StoreContextMut<'_, PluginState>, (): ()| {
                Ok((clock::Host::now_ms(store.data_mut()),))
            },
        )
}

/// `streamhost:plugin/rows@<version>`.
pub(crate) fn add_rows(linker: &mut Linker<PluginState>, version: &str) -> wasmtime::Result<()> {
    linker
        .instance(&format!("streamhost:plugin/rows@{version}"))?
        .func_wrap(
            "read",
            |mut store: StoreContextMut<'_, PluginState>,
             (stream, from_token, limit): (String, i64, u32)| {
                let result: Result<Vec<Row>, String> =
                    rows::Host::read(store.data_mut(), stream, from_token, limit);
                Ok((result,))
            },
        )
}
