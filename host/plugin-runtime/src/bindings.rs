//! The `bindgen!`s over `wit/`: every generated type the runtime uses comes from here, so host
//! and guest SDK can never drift apart.
//!
//! `wit/` is `streamhost:plugin@0.2.0`; `wit/previous/0.1.0/` keeps 0.1.0 verbatim (out of
//! `wit/deps/`, so the guest toolchains reading `wit/` see one version only). wasmtime matches versioned names by semver, and in 0.x a new minor is a new
//! track (`@0.1` and `@0.2` never match), so the host speaks both: `v2` is the 0.2.0 world
//! `authorizing-reader` (every import, `handler` and the optional `authorizer`), and `v1`
//! generates only 0.1.0's `handler` export, its types mapped onto 0.2.0's (identical in
//! shape, which is all the component model checks). The imports are linked under both
//! versions' names (`version::linker`).

mod v2 {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "authorizing-reader",
    });
}

mod v1 {
    wasmtime::component::bindgen!({
        path: "../../wit/previous/0.1.0",
        world: "reader",
        with: {
            "streamhost:plugin/types@0.1.0": crate::bindings::v2::streamhost::plugin::types,
            "streamhost:plugin/log@0.1.0": crate::bindings::v2::streamhost::plugin::log,
            "streamhost:plugin/counters@0.1.0": crate::bindings::v2::streamhost::plugin::counters,
            "streamhost:plugin/clock@0.1.0": crate::bindings::v2::streamhost::plugin::clock,
            "streamhost:plugin/kv@0.1.0": crate::bindings::v2::streamhost::plugin::kv,
            "streamhost:plugin/rows@0.1.0": crate::bindings::v2::streamhost::plugin::rows,
        },
    });
}

pub use v2::exports::streamhost::plugin::authorizer;
pub use v2::streamhost::plugin::{clock, kv, log, push, rows, types};

/// The `handler` export of a 0.2.0 component.
pub use v2::exports::streamhost::plugin::handler as handler_v2;

/// The `handler` export of a 0.1.0 component (its types are 0.2.0's).
pub use v1::exports::streamhost::plugin::handler as handler_v1;

/// The package versions the host links, oldest first.
pub const VERSIONS: [&str; 2] = ["0.1.0", "0.2.0"];
