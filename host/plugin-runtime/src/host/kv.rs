//! `kv`: the plugin's key-value store; writes stay pending until the host commits the call.
//! Linked by hand rather than through `bindgen!`'s trait so that arguments are read in place
//! from the guest's memory: a key to look up or delete is never copied, and a value to set is
//! copied once, whole, into the store (`bindgen!`'s `Vec<u8>` lifts a `list<u8>` element by
//! element, a measurable share of a plugin that rewrites kilobytes a batch: BENCHMARKS.md, "The
//! engine itself"). A value got is the store's shared one, copied only into the guest's memory.
//! What `set` copies is held to the call's host memory budget as a lift would be.

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, WasmList, WasmStr};

use crate::bindings::kv::KvError;
use crate::kv::{KvRefusal, KvValue};
use crate::state::PluginState;

/// Links `streamhost:plugin/kv@<version>`: `get`, `set` and `delete`.
pub(crate) fn add_to_linker(
    linker: &mut Linker<PluginState>,
    version: &str,
) -> wasmtime::Result<()> {
    let mut kv = linker.instance(&format!("streamhost:plugin/kv@{version}"))?;
    kv.func_wrap(
        "get",
        |store: StoreContextMut<'_, PluginState>, (key,): (WasmStr,)| Ok((get(&store, &key)?,)),
    )?;
    kv.func_wrap(
        "set",
        |store: StoreContextMut<'_, PluginState>, (key, value): (WasmStr, WasmList<u8>)| {
            Ok((set(store, &key, &value)?,))
        },
    )?;
    kv.func_wrap(
        "delete",
        |store: StoreContextMut<'_, PluginState>, (key,): (WasmStr,)| {
            let services = store.data().services.clone();
            services.kv().delete(&key.to_str(&store)?);
            Ok(())
        },
    )
}

fn get(
    store: &StoreContextMut<'_, PluginState>,
    key: &WasmStr,
) -> wasmtime::Result<Option<KvValue>> {
    let services = store.data().services.clone();
    Ok(services.kv().get(&key.to_str(store)?))
}

fn set(
    mut store: StoreContextMut<'_, PluginState>,
    key: &WasmStr,
    value: &WasmList<u8>,
) -> wasmtime::Result<Result<(), KvError>> {
    let services = store.data().services.clone();
    let quota = store.data().caps.limits.kv_quota_bytes;
    let (key, value) = {
        let key = key.to_str(&store)?;
        let bytes = key.len().saturating_add(value.len());
        let left = store.hostcall_fuel();
        if bytes > left {
            drop(key);
            store.data_mut().host_memory_hit = true;
            return Err(wasmtime::Error::msg(format!(
                "kv.set of {bytes} bytes refused: {left} bytes are left of the plugin's host \
                 memory budget"
            )));
        }
        (key.into_owned(), KvValue::from(value.as_le_slice(&store)))
    };
    match services.kv().set(key, value, quota) {
        Ok(()) => Ok(Ok(())),
        Err(KvRefusal::Quota) => {
            store.data_mut().kv_quota_hit = true;
            Ok(Err(KvError::QuotaExceeded))
        }
        Err(KvRefusal::BadKey) => Ok(Err(KvError::BadKey)),
    }
}
