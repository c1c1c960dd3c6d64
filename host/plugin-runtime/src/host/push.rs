//! `push` (since 0.2.0): queues a body for a declared, granted destination during `on-batch`.
//! Linked by hand rather than through `bindgen!`'s trait so the arguments are read in place:
//! destination, key and the body's length are checked before anything is copied, and the
//! copy is charged to the plugin's host memory budget (a push the budget cannot hold fails
//! the call with reason `host-memory`). The pushes stay with the call
//! ([`crate::push::PushStage`]) until `on-batch` returns.

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, WasmList, WasmStr};

use crate::bindings::push::PushError;
use crate::push::{Push, PushRefusal, held_bytes};
use crate::state::PluginState;

/// Links `streamhost:plugin/push@<version>#push` (0.1.0 has no `push`).
pub(crate) fn add_to_linker(
    linker: &mut Linker<PluginState>,
    version: &str,
) -> wasmtime::Result<()> {
    linker
        .instance(&format!("streamhost:plugin/push@{version}"))?
        .func_wrap(
            "push",
            |store: StoreContextMut<'_, PluginState>,
             (destination, key, body): (WasmStr, WasmStr, WasmList<u8>)| {
                Ok((push(store, &destination, &key, &body)?,))
            },
        )
}

fn push(
    mut store: StoreContextMut<'_, PluginState>,
    destination: &WasmStr,
    key: &WasmStr,
    body: &WasmList<u8>,
) -> wasmtime::Result<Result<(), PushError>> {
    let state = store.data();
    let (caps, destinations) = (state.caps.clone(), state.destinations.clone());
    let budget = state.services.budget().clone();
    let destination_text = destination.to_str(&store)?;
    let key_text = key.to_str(&store)?;
    let admitted = store.data().pushes.admit(
        &caps,
        &destinations,
        &destination_text,
        &key_text,
        body.len(),
    );
    if let Err(refusal) = admitted {
        return Ok(Err(match refusal {
            PushRefusal::NotGranted => PushError::NotGranted,
            PushRefusal::TooLarge => PushError::TooLarge,
            PushRefusal::BadKey => PushError::BadKey,
            PushRefusal::TooMany => PushError::TooMany,
            PushRefusal::NotInBatch => PushError::NotInBatch,
        }));
    }
    let cost = held_bytes(&destination_text, &key_text, body.len());
    let limit = caps.limits.host_memory_bytes();
    if budget.available(limit) < cost {
        let message = format!(
            "push refused: it needs {cost} bytes of host memory and {} of the budget of \
             {limit} bytes are left (limits.host_memory_mib = {})",
            budget.available(limit),
            caps.limits.host_memory_mib
        );
        store.data_mut().host_memory_hit = true;
        return Err(wasmtime::Error::msg(message));
    }
    let charge = budget.charge(cost);
    let push = Push {
        destination: destination_text.into_owned(),
        key: key_text.into_owned(),
        body: body.as_le_slice(&store).to_vec(),
    };
    store.data_mut().pushes.keep(push, charge);
    Ok(Ok(()))
}
