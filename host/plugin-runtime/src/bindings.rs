//! The one `bindgen!` over `wit/` (world `reader`): every generated type the runtime uses comes
//! from here, so host and guest SDK can never drift apart.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "reader",
});

pub use streamhost::plugin::{clock, kv, log, rows, types};
