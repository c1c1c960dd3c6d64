//! The wasmtime host of Streamhost's reader plugins: WebAssembly components built against
//! `wit/` (package `streamhost:plugin@0.4.0`, worlds `reader` and `authorizing-reader`; components
//! built against 0.1.0 to 0.3.0, kept in `wit/previous/`, load too). Lifecycle, limits, grants and reload
//! semantics are described for plugin authors in `docs/plugins.md`.
//!
//! This crate knows nothing of replication, HTTP or databases; the reader drives it. It owns:
//!
//! - [`Runtime`] (`runtime`): the one `Engine` (pooling allocator, epoch interruption,
//!   stack limit), its epoch ticker and its compile cache (`cache`).
//! - [`PluginVersion`] (`version`): a plugin loaded from its folder ([`PluginFiles`]): its
//!   [`Manifest`] checked against the operator's [`Grant`] ([`Capabilities`], `grants`), the
//!   component compiled, linked with only the granted imports, pre-instantiated, described.
//! - [`PluginInstance`] (`instance`): one instance in its own store; every call under its
//!   CPU deadline, effects validated (`effects`), failures classified ([`Failure`]).
//! - [`PluginServices`] (`services`, `kv`, `host/`): what the imports act on — the key-value
//!   store whose writes stay pending until the reader commits them with the cursor, the
//!   rate-limited log, counters, and a [`RowSource`].
//! - [`Push`] and [`Destination`] (`push`, `host/push.rs`): the `push` import, each push
//!   checked against the grant, the operator's destinations and the effect limits, kept with
//!   the `on-batch` call and returned in [`BatchEffects::pushes`] only when it succeeds.
//! - [`FieldPaths`] (`row_fields`): the row fields a plugin wants (from 0.3.0), extracted
//!   natively from every row's JSON, typed and borrowing the row's text ([`Extracted`]); for a
//!   0.4.0 plugin copied once into a packed batch with the rows (`packed`), for 0.3.0 handed
//!   over as `field-value`s.
//! - [`Limits`] and the [`BudgetLimiter`] (`limits`); the host memory a plugin causes,
//!   [`HostBudget`] and its [`Charge`]s (`budget`).
//! - outbound HTTP (`outbound`): `wasi:http/outgoing-handler`, linked for plugins granted
//!   `http` targets, each request checked against them and the limits, answered by the
//!   network or by [`HttpFixtures`] ([`HttpBackend`]).
//! - `bindings`: the `bindgen!`s, one per interface version.

mod bindings;
mod budget;
mod cache;
mod effects;
mod error;
mod grants;
mod host;
mod instance;
mod kv;
mod limits;
mod manifest;
mod outbound;
mod packed;
mod push;
mod row_fields;
mod runtime;
mod services;
mod state;
mod version;

pub use bindings::authorizer::{Access, QueryAccess};
pub use bindings::types::{
    Batch, Cursor, Description, Effect, ErrorKind, Invalidation, Notification, PluginError,
    QuerySpec, Row,
};
pub use budget::{Charge, HostBudget};
pub use error::{Failure, FailureReason, LoadError};
pub use grants::{Capabilities, Grant, pattern_matches};
pub use instance::{BatchEffects, PluginInstance};
pub use kv::{KvChange, KvStore, KvValue};
pub use limits::{BudgetLimiter, EPOCH_TICK, LimitHit, Limits};
pub use manifest::{Manifest, PluginFiles};
pub use outbound::{FixtureResponse, HttpBackend, HttpExchange, HttpFixtures};
pub use push::{Destination, Destinations, Push};
pub use row_fields::{Extracted, FieldPaths, MAX_FIELDS};
pub use runtime::{Runtime, RuntimeConfig, sha256_hex};
pub use services::{LogBook, PluginServices, RowSource};
pub use version::PluginVersion;
