//! The earlier versions' names of `clock`, `kv` and `rows` (`streamhost:plugin/…@0.1.0` and
//! `@0.2.0`), linked onto the same host functions as 0.3.0's: the interfaces are identical, but
//! wasmtime never matches a 0.1 or 0.2 import with a 0.3 definition (`bindings`). `log`,
//! `counters` and `push` are linked by hand for every version already.

use wasmtime::StoreContextMut;
use wasmtime::component::Linker;

use crate::bindings::kv::KvError;
use crate::bindings::types::Row;
use crate::bindings::{clock, kv, rows};
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

/// `streamhost:plugin/kv@<version>`.
pub(crate) fn add_kv(linker: &mut Linker<PluginState>, version: &str) -> wasmtime::Result<()> {
    let mut kv = linker.instance(&format!("streamhost:plugin/kv@{version}"))?;
    kv.func_wrap(
        "get",
        |mut store: StoreContextMut<'_, PluginState>, (key,): (String,)| {
            Ok((kv::Host::get(store.data_mut(), key),))
        },
    )?;
    kv.func_wrap(
        "set",
        |mut store: StoreContextMut<'_, PluginState>, (key, value): (String, Vec<u8>)| {
            let result: Result<(), KvError> = kv::Host::set(store.data_mut(), key, value);
            Ok((result,))
        },
    )?;
    kv.func_wrap(
        "delete",
        |mut store: StoreContextMut<'_, PluginState>, (key,): (String,)| {
            kv::Host::delete(store.data_mut(), key);
            Ok(())
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
