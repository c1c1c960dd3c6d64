//! The `bindgen!`s over `wit/`: every generated type the runtime uses comes from here, so host
//! and guest SDK can never drift apart.
//!
//! `wit/` is `streamhost:plugin@0.4.0`; `wit/previous/<version>/` keeps each earlier version
//! verbatim (out of `wit/deps/`, so the guest toolchains reading `wit/` see one version only).
//! wasmtime matches versioned names by semver, and in 0.x a new minor is a new track (`@0.3`
//! and `@0.4` never match), so the host speaks every version: `v4` is the 0.4.0 world
//! `authorizing-reader` (every import and type, `handler` and the optional `authorizer`);
//! `v3`, `v2` and `v1` generate only their own exports, their types and imports mapped onto
//! 0.4.0's (identical in shape, which is all the component model checks), but for 0.3.0's
//! `fields`, which no 0.4.0 function uses. The imports are linked under every version's names
//! (`version::linker`).

mod v4 {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "authorizing-reader",
    });
}

mod v3 {
    wasmtime::component::bindgen!({
        path: "../../wit/previous/0.3.0",
        world: "authorizing-reader",
        with: {
            "streamhost:plugin/types@0.3.0": crate::bindings::v4::streamhost::plugin::types,
            "streamhost:plugin/log@0.3.0": crate::bindings::v4::streamhost::plugin::log,
            "streamhost:plugin/counters@0.3.0": crate::bindings::v4::streamhost::plugin::counters,
            "streamhost:plugin/clock@0.3.0": crate::bindings::v4::streamhost::plugin::clock,
            "streamhost:plugin/kv@0.3.0": crate::bindings::v4::streamhost::plugin::kv,
            "streamhost:plugin/rows@0.3.0": crate::bindings::v4::streamhost::plugin::rows,
            "streamhost:plugin/push@0.3.0": crate::bindings::v4::streamhost::plugin::push,
        },
    });
}

mod v2 {
    wasmtime::component::bindgen!({
        path: "../../wit/previous/0.2.0",
        world: "authorizing-reader",
        with: {
            "streamhost:plugin/types@0.2.0": crate::bindings::v4::streamhost::plugin::types,
            "streamhost:plugin/log@0.2.0": crate::bindings::v4::streamhost::plugin::log,
            "streamhost:plugin/counters@0.2.0": crate::bindings::v4::streamhost::plugin::counters,
            "streamhost:plugin/clock@0.2.0": crate::bindings::v4::streamhost::plugin::clock,
            "streamhost:plugin/kv@0.2.0": crate::bindings::v4::streamhost::plugin::kv,
            "streamhost:plugin/rows@0.2.0": crate::bindings::v4::streamhost::plugin::rows,
            "streamhost:plugin/push@0.2.0": crate::bindings::v4::streamhost::plugin::push,
        },
    });
}

mod v1 {
    wasmtime::component::bindgen!({
        path: "../../wit/previous/0.1.0",
        world: "reader",
        with: {
            "streamhost:plugin/types@0.1.0": crate::bindings::v4::streamhost::plugin::types,
            "streamhost:plugin/log@0.1.0": crate::bindings::v4::streamhost::plugin::log,
            "streamhost:plugin/counters@0.1.0": crate::bindings::v4::streamhost::plugin::counters,
            "streamhost:plugin/clock@0.1.0": crate::bindings::v4::streamhost::plugin::clock,
            "streamhost:plugin/kv@0.1.0": crate::bindings::v4::streamhost::plugin::kv,
            "streamhost:plugin/rows@0.1.0": crate::bindings::v4::streamhost::plugin::rows,
        },
    });
}

pub use v4::exports::streamhost::plugin::authorizer;
pub use v4::streamhost::plugin::{clock, kv, log, push, rows, types};

/// The row fields of a 0.3.0 `on-batch` (0.4.0 packs them into its `packed-batch`).
pub use v3::streamhost::plugin::fields;

/// The `handler` export of a 0.4.0 component.
pub use v4::exports::streamhost::plugin::handler as handler_v4;

/// The `handler` export of a 0.3.0 component (its types are 0.4.0's).
pub use v3::exports::streamhost::plugin::handler as handler_v3;

/// The `authorizer` export of a 0.3.0 component (its `access` is its own type).
pub use v3::exports::streamhost::plugin::authorizer as authorizer_v3;

/// The `handler` export of a 0.2.0 component (its types are 0.4.0's).
pub use v2::exports::streamhost::plugin::handler as handler_v2;

/// The `authorizer` export of a 0.2.0 component (its `access` is its own type).
pub use v2::exports::streamhost::plugin::authorizer as authorizer_v2;

/// The `handler` export of a 0.1.0 component (its types are 0.4.0's).
pub use v1::exports::streamhost::plugin::handler as handler_v1;

/// The package versions the host links, oldest first.
pub const VERSIONS: [&str; 4] = ["0.1.0", "0.2.0", "0.3.0", "0.4.0"];

/// The versions before the current one, whose imports are linked by hand
/// (`host/earlier.rs`).
pub const EARLIER_VERSIONS: &[&str] = VERSIONS.split_last().unwrap().1;
