//! The Rust SDK for Streamhost reader plugins.
//!
//! A reader plugin is a WebAssembly component of the `streamhost:plugin@0.4.0` world `reader`
//! (the WIT package in `wit/` at the root of the repository). The reader hands it batches of
//! replicated rows; the plugin returns effects (cache invalidations and notifications) and
//! answers cached reads. This crate wraps the bindings that `wit-bindgen` generates for that
//! world so that a plugin is one small file:
//!
//! * implement [`Plugin`] for a type (only [`Plugin::describe`], [`Plugin::init`] and
//!   [`Plugin::on_batch`] are required; queries, snapshots and restores have defaults),
//! * call [`export_plugin!`] once with that type,
//! * build the crate as a `cdylib` with `cargo build --release --target wasm32-wasip2`,
//! * put a `plugin.toml` next to the `.wasm` (see `guest-sdk/README.md`).
//!
//! The host's imports are wrapped in the modules [`log`], [`kv`], [`counters`], [`clock`],
//! [`rows`] and [`push`], and outbound HTTP (standard `wasi:http`) in [`http`]. A plugin
//! imports only the interfaces it actually calls (unused imports are
//! dropped when the component is made), and the host refuses a plugin that imports one it was
//! not granted in its `plugin.toml`.
//!
//! # Example
//!
//! A complete plugin: it counts the rows of the `messages` stream per room in the key-value
//! store, evicts the cached answer of a room whose count changed, and answers the query
//! `count?room=…`.
//!
//! ```no_run
//! use serde::Deserialize;
//! use streamhost_guest_sdk::{
//!     Batch, Cursor, Description, Effect, Plugin, PluginError, arg, export_plugin, kv,
//! };
//!
//! #[derive(Deserialize)]
//! struct Message {
//!     room: String,
//! }
//!
//! struct RoomCounts;
//!
//! impl Plugin for RoomCounts {
//!     fn describe() -> Description {
//!         Description::new("room-counts", env!("CARGO_PKG_VERSION"))
//!             .stream("messages")
//!             .query("count", "count", "room:{room}")
//!     }
//!
//!     fn init(_config: &str, _resume_after: &[Cursor]) -> Result<Self, PluginError> {
//!         Ok(RoomCounts)
//!     }
//!
//!     fn on_batch(&mut self, batch: Batch) -> Result<Vec<Effect>, PluginError> {
//!         let mut effects = Vec::new();
//!         for row in batch.rows() {
//!             // Rows that are not messages are not this plugin's business.
//!             let Ok(message) = row.json::<Message>() else { continue };
//!             let key = format!("room:{}", message.room);
//!             let count: u64 = kv::get_json(&key)?.unwrap_or(0);
//!             kv::set_json(&key, &(count + 1))?;
//!             let effect = Effect::invalidate("count", &key);
//!             if !effects.contains(&effect) {
//!                 effects.push(effect);
//!             }
//!         }
//!         Ok(effects)
//!     }
//!
//!     fn query(&mut self, name: &str, args: &[(String, String)]) -> Result<String, PluginError> {
//!         match name {
//!             "count" => {
//!                 let room = arg(args, "room").unwrap_or_default();
//!                 let count: u64 = kv::get_json(&format!("room:{room}"))?.unwrap_or(0);
//!                 Ok(count.to_string())
//!             }
//!             _ => Err(PluginError::fatal(format!("unknown query {name}"))),
//!         }
//!     }
//! }
//!
//! export_plugin!(RoomCounts);
//! # fn main() {}
//! ```
//!
//! The real plugins in `plugins/` (room-timeline, notifier, stream-stats, evil) are built the
//! same way.
//!
//! Off `wasm32` the crate still compiles (the imports become stubs that panic when called), so
//! the example above is compiled by `cargo test` on the host; only the `.wasm` can run.

#![warn(missing_docs)]

// Lets the generated bindings and the export macros name this crate the same way from here
// and from plugin crates.
extern crate self as streamhost_guest_sdk;

pub use serde;
pub use serde_json;
pub use wit_bindgen;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The bindings `wit-bindgen` generates for the `reader` world. Use the re-exports and
/// wrappers at the crate root instead.
#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "reader",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_reader",
        default_bindings_module: "streamhost_guest_sdk::bindings",
        runtime_path: "streamhost_guest_sdk::wit_bindgen::rt",
    });
}

/// The plugin's global allocator: Talc, which allocates and frees faster in Wasm than the
/// standard library's dlmalloc (room-timeline's Wasm ÷ native ratio 4–9 % lower at 1 and
/// 1,024 rows per batch, see BENCHMARKS.md). A plugin that wants another allocator turns the
/// SDK's default features off.
#[cfg(all(
    feature = "talc",
    target_family = "wasm",
    not(target_feature = "atomics")
))]
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

mod batch;
pub mod http;

pub use batch::{Batch, BatchRow, FieldValue, RowFields};
pub use bindings::streamhost::plugin::types::{
    Cursor, Description, Effect, ErrorKind, Invalidation, Notification, PluginError, QuerySpec, Row,
};

/// A reader plugin. Implement it for a type and export the type with [`export_plugin!`].
///
/// The host calls [`describe`](Plugin::describe) first, then [`init`](Plugin::init) (or
/// [`restore`](Plugin::restore) on a reload with a snapshot), then
/// [`on_batch`](Plugin::on_batch) and [`query`](Plugin::query) in any order on the value
/// `init` returned. An instance may be thrown away at any time (after a trap, a fatal error
/// or a reload); state that must survive belongs in the [`kv`] store, whose writes commit
/// together with the plugin's cursor.
pub trait Plugin: Sized + 'static {
    /// What the plugin is and wants. Must not depend on state: it is called before `init`.
    fn describe() -> Description;

    /// The row fields the host extracts for [`on_batch`](Plugin::on_batch): top-level names
    /// (`"room"`) or paths through nested objects, keys joined by dots (`"content.body"`).
    /// Read them with [`Batch::rows_with_fields`] instead of parsing each row. None by default.
    const FIELDS: &'static [&'static str] = &[];

    /// Prepares a fresh instance. `config` is the operator's configuration as JSON text (`{}`
    /// when none); `resume_after` holds the cursors that the next batches follow.
    fn init(config: &str, resume_after: &[Cursor]) -> Result<Self, PluginError>;

    /// Handles one batch (rows of one stream from one writer instance, in token order) and
    /// returns its effects. After an error nothing of the call is applied, not even its
    /// [`kv`] writes.
    fn on_batch(&mut self, batch: Batch) -> Result<Vec<Effect>, PluginError>;

    /// Answers the read `name` with the request's arguments; see [`arg`]. The default knows
    /// no query and returns a fatal error.
    fn query(&mut self, name: &str, args: &[(String, String)]) -> Result<String, PluginError> {
        let _ = args;
        Err(PluginError::fatal(format!("unknown query `{name}`")))
    }

    /// Saves in-memory state before this version is replaced (only called when
    /// [`describe`](Plugin::describe) set `snapshots`). The default saves nothing.
    fn snapshot(&mut self) -> Result<Vec<u8>, PluginError> {
        Ok(Vec::new())
    }

    /// Starts from what a previous version's [`snapshot`](Plugin::snapshot) saved instead of
    /// `init`'s fresh start. The default ignores `state` and calls [`init`](Plugin::init).
    fn restore(config: &str, state: &[u8], resume_after: &[Cursor]) -> Result<Self, PluginError> {
        let _ = state;
        Self::init(config, resume_after)
    }
}

/// Exports a type implementing [`Plugin`] as the component's `handler` interface.
///
/// Use it once per plugin crate, at the top level: `export_plugin!(MyPlugin);`. The instance
/// that `init` or `restore` returns is kept in a thread-local slot; `on_batch`, `query` and
/// `snapshot` called before a successful `init` return a fatal [`PluginError`] instead of
/// trapping.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        const _: () = {
            struct __StreamhostPluginExport;

            ::std::thread_local! {
                static __STREAMHOST_PLUGIN_INSTANCE: ::core::cell::RefCell<
                    ::core::option::Option<$plugin>,
                > = const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }

            impl $crate::__private::Guest for __StreamhostPluginExport {
                fn describe() -> $crate::Description {
                    <$plugin as $crate::Plugin>::describe()
                }

                fn init(
                    config: ::std::string::String,
                    resume_after: ::std::vec::Vec<$crate::Cursor>,
                ) -> ::core::result::Result<(), $crate::PluginError> {
                    $crate::__private::init(&__STREAMHOST_PLUGIN_INSTANCE, &config, &resume_after)
                }

                fn wanted_fields() -> ::std::vec::Vec<::std::string::String> {
                    <$plugin as $crate::Plugin>::FIELDS
                        .iter()
                        .map(|name| ::std::string::ToString::to_string(name))
                        .collect()
                }

                fn on_batch(
                    batch: $crate::__private::WireBatch,
                ) -> ::core::result::Result<::std::vec::Vec<$crate::Effect>, $crate::PluginError>
                {
                    let batch =
                        $crate::Batch::from_wire(batch, <$plugin as $crate::Plugin>::FIELDS)?;
                    $crate::__private::with_instance(
                        &__STREAMHOST_PLUGIN_INSTANCE,
                        "on-batch",
                        |p| <$plugin as $crate::Plugin>::on_batch(p, batch),
                    )
                }

                fn query(
                    name: ::std::string::String,
                    args: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::core::result::Result<::std::string::String, $crate::PluginError> {
                    $crate::__private::with_instance(&__STREAMHOST_PLUGIN_INSTANCE, "query", |p| {
                        <$plugin as $crate::Plugin>::query(p, &name, &args)
                    })
                }

                fn snapshot() -> ::core::result::Result<::std::vec::Vec<u8>, $crate::PluginError> {
                    $crate::__private::with_instance(
                        &__STREAMHOST_PLUGIN_INSTANCE,
                        "snapshot",
                        |p| <$plugin as $crate::Plugin>::snapshot(p),
                    )
                }

                fn restore(
                    config: ::std::string::String,
                    state: ::std::vec::Vec<u8>,
                    resume_after: ::std::vec::Vec<$crate::Cursor>,
                ) -> ::core::result::Result<(), $crate::PluginError> {
                    $crate::__private::restore(
                        &__STREAMHOST_PLUGIN_INSTANCE,
                        &config,
                        &state,
                        &resume_after,
                    )
                }
            }

            $crate::bindings::__export_reader!(
                __StreamhostPluginExport with_types_in $crate::bindings
            );
        };
    };
}

/// What [`export_plugin!`] expands to uses these; not part of the API.
#[doc(hidden)]
pub mod __private {
    use std::cell::RefCell;
    use std::thread::LocalKey;

    pub use crate::bindings::exports::streamhost::plugin::handler::Guest;
    pub use crate::bindings::streamhost::plugin::types::PackedBatch as WireBatch;
    use crate::{Cursor, Plugin, PluginError};

    /// The slot that holds a plugin's instance.
    pub type Slot<P> = LocalKey<RefCell<Option<P>>>;

    /// `init`: drops any earlier instance first, so a failed `init` leaves none.
    pub fn init<P: Plugin>(
        slot: &'static Slot<P>,
        config: &str,
        resume_after: &[Cursor],
    ) -> Result<(), PluginError> {
        replace(slot, || P::init(config, resume_after))
    }

    /// `restore`: like `init`, from a snapshot.
    pub fn restore<P: Plugin>(
        slot: &'static Slot<P>,
        config: &str,
        state: &[u8],
        resume_after: &[Cursor],
    ) -> Result<(), PluginError> {
        replace(slot, || P::restore(config, state, resume_after))
    }

    fn replace<P: Plugin>(
        slot: &'static Slot<P>,
        make: impl FnOnce() -> Result<P, PluginError>,
    ) -> Result<(), PluginError> {
        let old = slot.with(|cell| cell.try_borrow_mut().map(|mut p| p.take()));
        let Ok(old) = old else {
            return Err(PluginError::fatal(
                "init called while the plugin was running",
            ));
        };
        drop(old);
        let plugin = make()?;
        slot.with(|cell| match cell.try_borrow_mut() {
            Ok(mut p) => {
                *p = Some(plugin);
                Ok(())
            }
            Err(_) => Err(PluginError::fatal(
                "init called while the plugin was running",
            )),
        })
    }

    /// Runs `f` on the instance, or fails fatally when there is none.
    pub fn with_instance<P: Plugin, R>(
        slot: &'static Slot<P>,
        call: &str,
        f: impl FnOnce(&mut P) -> Result<R, PluginError>,
    ) -> Result<R, PluginError> {
        slot.with(|cell| match cell.try_borrow_mut() {
            Ok(mut p) => match p.as_mut() {
                Some(plugin) => f(plugin),
                None => Err(PluginError::fatal(format!(
                    "{call} called before a successful init or restore"
                ))),
            },
            Err(_) => Err(PluginError::fatal(format!(
                "{call} called while the plugin was running"
            ))),
        })
    }
}

impl PluginError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        PluginError {
            kind,
            message: message.into(),
        }
    }

    /// Something transient: the host calls again with the same input on the same instance.
    pub fn retry(message: impl Into<String>) -> Self {
        PluginError::new(ErrorKind::Retry, message)
    }

    /// This input can never be handled: the host records a dead letter and moves past it.
    pub fn skip(message: impl Into<String>) -> Self {
        PluginError::new(ErrorKind::Skip, message)
    }

    /// The plugin cannot go on: the host retries on a fresh instance, then quarantines it.
    pub fn fatal(message: impl Into<String>) -> Self {
        PluginError::new(ErrorKind::Fatal, message)
    }
}

impl Effect {
    /// Evicts `key` from the cache `cache` (named by a [`QuerySpec`] of the description).
    pub fn invalidate(cache: impl Into<String>, key: impl Into<String>) -> Self {
        Effect::Invalidate(Invalidation {
            cache: cache.into(),
            key: key.into(),
        })
    }

    /// Evicts every key of the cache `cache`.
    pub fn invalidate_all(cache: impl Into<String>) -> Self {
        Effect::InvalidateAll(cache.into())
    }

    /// Wakes the clients waiting on `topic` with `payload` (usually JSON text).
    pub fn notify(topic: impl Into<String>, payload: impl Into<String>) -> Self {
        Effect::Notify(Notification {
            topic: topic.into(),
            payload: payload.into(),
        })
    }
}

impl PartialEq for Effect {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Effect::Invalidate(a), Effect::Invalidate(b)) => a.cache == b.cache && a.key == b.key,
            (Effect::InvalidateAll(a), Effect::InvalidateAll(b)) => a == b,
            (Effect::Notify(a), Effect::Notify(b)) => a.topic == b.topic && a.payload == b.payload,
            _ => false,
        }
    }
}

impl Eq for Effect {}

impl Row {
    /// Parses the row's JSON text as `T`. A row that does not parse is an error of kind
    /// [`ErrorKind::Skip`] naming the row's token (use `let Ok(..) = row.json() else { .. }`
    /// to ignore such rows instead). As `row.json::<serde_json::Value>()` this is the reference
    /// the Python and JavaScript SDKs' `row.json()` follow exactly (no `NaN`, no lone
    /// surrogates, finite numbers, at most 127 levels of nesting, the last duplicate key wins),
    /// so plugins in every language accept the same rows.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        parse_row(self.token, &self.data)
    }
}

/// [`Row::json`] and [`BatchRow::json`]: `data` parsed as `T`, or a `skip` naming `token`.
fn parse_row<T: DeserializeOwned>(token: i64, data: &str) -> Result<T, PluginError> {
    serde_json::from_str(data).map_err(|e| PluginError::skip(format!("row {token}: {e}")))
}

impl Description {
    /// A description with this name (which must equal the `name` of `plugin.toml`) and
    /// version, no streams, no queries, no snapshots.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Description {
            name: name.into(),
            version: version.into(),
            streams: Vec::new(),
            queries: Vec::new(),
            snapshots: false,
        }
    }

    /// Adds a stream whose batches the plugin wants (`*`: every granted stream).
    pub fn stream(mut self, stream: impl Into<String>) -> Self {
        self.streams.push(stream.into());
        self
    }

    /// Adds a query `name` whose answers the host caches in `cache` under the key template
    /// `key` (for example `room:{room}`, where `{room}` is the request's argument `room`).
    pub fn query(
        mut self,
        name: impl Into<String>,
        cache: impl Into<String>,
        key: impl Into<String>,
    ) -> Self {
        self.queries.push(QuerySpec::new(name, cache, key));
        self
    }

    /// Says whether `snapshot` and `restore` carry the plugin's state across a reload.
    pub fn snapshots(mut self, snapshots: bool) -> Self {
        self.snapshots = snapshots;
        self
    }
}

impl QuerySpec {
    /// A query `name` cached in `cache` under the key template `key`.
    pub fn new(name: impl Into<String>, cache: impl Into<String>, key: impl Into<String>) -> Self {
        QuerySpec {
            name: name.into(),
            cache: cache.into(),
            key: key.into(),
        }
    }
}

/// The value of the query argument `name`, if the request has it (the first one if it has
/// several).
pub fn arg<'a>(args: &'a [(String, String)], name: &str) -> Option<&'a str> {
    args.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The value of the query argument `name`, or an error of kind [`ErrorKind::Skip`] saying it
/// is missing.
pub fn required_arg<'a>(args: &'a [(String, String)], name: &str) -> Result<&'a str, PluginError> {
    arg(args, name).ok_or_else(|| PluginError::skip(format!("missing query argument `{name}`")))
}

/// Log lines for the operator (the `log` import; rate-limited by the host, each line cut to
/// 1 KiB).
pub mod log {
    pub use crate::bindings::streamhost::plugin::log::Level;

    /// Writes one line at `level`.
    pub fn log(level: Level, message: impl AsRef<str>) {
        crate::bindings::streamhost::plugin::log::log(level, message.as_ref());
    }

    /// Writes one debugging line.
    pub fn debug(message: impl AsRef<str>) {
        log(Level::Debug, message);
    }

    /// Writes one line about normal operation.
    pub fn info(message: impl AsRef<str>) {
        log(Level::Info, message);
    }

    /// Writes one line about something unexpected that the plugin handled.
    pub fn warn(message: impl AsRef<str>) {
        log(Level::Warn, message);
    }

    /// Writes one line about a failure.
    pub fn error(message: impl AsRef<str>) {
        log(Level::Error, message);
    }
}

/// The plugin's key-value store (the `kv` import). Writes made during `on_batch` commit
/// together with the plugin's cursor; writes of a failed call are discarded.
pub mod kv {
    use super::{DeserializeOwned, PluginError, Serialize};
    use crate::bindings::streamhost::plugin::kv as raw;
    pub use raw::KvError;

    /// The value stored under `key`, if any.
    pub fn get(key: &str) -> Option<Vec<u8>> {
        raw::get(key)
    }

    /// Stores `value` under `key`, replacing any earlier value.
    pub fn set(key: &str, value: &[u8]) -> Result<(), KvError> {
        raw::set(key, value)
    }

    /// Removes `key`; removing a missing key does nothing.
    pub fn delete(key: &str) {
        raw::delete(key)
    }

    /// The value under `key` parsed as JSON, `None` when there is none. A value that does not
    /// parse as `T` is a fatal error (the store holds something this plugin did not write).
    pub fn get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>, PluginError> {
        match raw::get(key) {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                PluginError::fatal(format!("kv value of `{key}` is not the JSON expected: {e}"))
            }),
        }
    }

    /// Stores `value` as JSON text under `key`.
    pub fn set_json<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<(), PluginError> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| PluginError::fatal(format!("cannot serialize kv value `{key}`: {e}")))?;
        raw::set(key, &bytes).map_err(|e| kv_error(key, e))
    }

    fn kv_error(key: &str, e: KvError) -> PluginError {
        match e {
            KvError::QuotaExceeded => {
                PluginError::fatal(format!("kv quota exceeded writing `{key}`"))
            }
            KvError::BadKey => PluginError::skip(format!("bad kv key `{key}`")),
        }
    }

    impl From<KvError> for PluginError {
        /// A full store is fatal; a bad key (empty or over 1 KiB) skips the input.
        fn from(e: KvError) -> Self {
            match e {
                KvError::QuotaExceeded => PluginError::fatal("kv quota exceeded"),
                KvError::BadKey => PluginError::skip("bad kv key (empty or over 1 KiB)"),
            }
        }
    }
}

/// Pushes to destinations the operator declared (the `push` import, 0.2.0): needs
/// `push = ["<destination>", …]` in `plugin.toml` and the grant.
///
/// A push made during [`Plugin::on_batch`] is written to the reader's outbox together with the
/// plugin's cursor and delivered later by the host with `key` as its `Idempotency-Key`; the
/// pushes of a call that fails (an error, a trap, a retry) are discarded, so each push exists
/// once however often its batch is retried. Outside `on_batch` every push is refused with
/// [`PushError::NotInBatch`].
pub mod push {
    use super::{PluginError, Serialize};
    use crate::bindings::streamhost::plugin::push as raw;
    pub use raw::PushError;

    /// Queues `body` for `destination` under `key` (the receiver's de-duplication key: make it
    /// unique per intent, e.g. the event id and the user; 1 to 1,024 bytes).
    pub fn push(destination: &str, key: &str, body: &[u8]) -> Result<(), PushError> {
        raw::push(destination, key, body)
    }

    /// Queues `value` serialized as JSON for `destination` under `key`; a refusal becomes a
    /// [`PluginError`] (see its `From<PushError>`).
    pub fn push_json<T: Serialize + ?Sized>(
        destination: &str,
        key: &str,
        value: &T,
    ) -> Result<(), PluginError> {
        let body = serde_json::to_vec(value).map_err(|e| {
            PluginError::fatal(format!("cannot serialize the push body `{key}`: {e}"))
        })?;
        raw::push(destination, key, &body)
            .map_err(|e| PluginError::from(e).with_context(destination, key))
    }

    impl PluginError {
        fn with_context(mut self, destination: &str, key: &str) -> PluginError {
            self.message = format!("{} (push `{key}` to `{destination}`)", self.message);
            self
        }
    }

    impl From<PushError> for PluginError {
        /// A push the plugin cannot make at all (not granted, outside `on-batch`) is fatal;
        /// one this input cannot make (too large, bad key, too many) skips the input.
        fn from(e: PushError) -> Self {
            match e {
                PushError::NotGranted => {
                    PluginError::fatal("push to a destination not declared or not granted")
                }
                PushError::NotInBatch => PluginError::fatal("push outside on-batch"),
                PushError::TooLarge => {
                    PluginError::skip("push body over the destination's max_body_bytes")
                }
                PushError::BadKey => PluginError::skip("bad push key (empty or over 1 KiB)"),
                PushError::TooMany => {
                    PluginError::skip("the batch pushed as many as the effect limits allow")
                }
            }
        }
    }
}

/// Counters the host exports on `/metrics` (the `counters` import).
pub mod counters {
    /// Adds `delta` to the counter `name` (at most 100 distinct names per plugin).
    pub fn add(name: &str, delta: u64) {
        crate::bindings::streamhost::plugin::counters::add(name, delta);
    }
}

/// Time (the `clock` import).
pub mod clock {
    /// Milliseconds since the Unix epoch (wall clock).
    pub fn now_ms() -> u64 {
        crate::bindings::streamhost::plugin::clock::now_ms()
    }
}

/// Read-only access to the writer's log for granted streams (the `rows` import).
pub mod rows {
    use crate::Row;

    /// Up to `limit` rows of `stream` with a token above `from_token`, in token order (at
    /// most 1,000 per call; rows of one token are never split).
    pub fn read(stream: &str, from_token: i64, limit: u32) -> Result<Vec<Row>, String> {
        crate::bindings::streamhost::plugin::rows::read(stream, from_token, limit)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    struct Counter {
        batches: u32,
    }

    impl Plugin for Counter {
        fn describe() -> Description {
            Description::new("counter", "1").stream("s").snapshots(true)
        }

        fn init(config: &str, _resume_after: &[Cursor]) -> Result<Self, PluginError> {
            match config {
                "bad" => Err(PluginError::fatal("bad config")),
                _ => Ok(Counter { batches: 0 }),
            }
        }

        fn on_batch(&mut self, _batch: Batch) -> Result<Vec<Effect>, PluginError> {
            self.batches += 1;
            Ok(vec![Effect::notify("t", self.batches.to_string())])
        }
    }

    thread_local! {
        static SLOT: RefCell<Option<Counter>> = const { RefCell::new(None) };
    }

    fn batch() -> Batch {
        Batch::new("s", "master", 0, &[(1, r#"{"a":1}"#)])
    }

    fn on_batch() -> Result<Vec<Effect>, PluginError> {
        __private::with_instance(&SLOT, "on-batch", |p| p.on_batch(batch()))
    }

    #[test]
    fn calls_before_init_fail_fatally_and_init_replaces_the_instance() {
        let err = on_batch().unwrap_err();
        assert_eq!(err.kind, ErrorKind::Fatal);
        assert!(err.message.contains("before a successful init"), "{err:?}");

        __private::init(&SLOT, "{}", &[]).unwrap();
        assert_eq!(on_batch().unwrap(), vec![Effect::notify("t", "1")]);
        assert_eq!(on_batch().unwrap(), vec![Effect::notify("t", "2")]);

        // A failed init leaves no instance behind.
        assert_eq!(
            __private::init(&SLOT, "bad", &[]).unwrap_err().kind,
            ErrorKind::Fatal
        );
        assert_eq!(on_batch().unwrap_err().kind, ErrorKind::Fatal);

        // The default restore is a fresh init.
        __private::restore(&SLOT, "{}", b"ignored", &[]).unwrap();
        assert_eq!(on_batch().unwrap(), vec![Effect::notify("t", "1")]);
        let snapshot = __private::with_instance(&SLOT, "snapshot", |p| p.snapshot()).unwrap();
        assert!(snapshot.is_empty());
        let query = __private::with_instance(&SLOT, "query", |p| p.query("nope", &[]));
        assert_eq!(query.unwrap_err().kind, ErrorKind::Fatal);
    }

    #[test]
    fn helpers() {
        let d = Counter::describe();
        assert_eq!(
            (d.name.as_str(), d.streams.len(), d.snapshots),
            ("counter", 1, true)
        );
        let d = Description::new("x", "1").query("q", "c", "k:{a}");
        assert_eq!(d.queries[0].key, "k:{a}");

        let args = vec![("room".to_owned(), "!r".to_owned())];
        assert_eq!(arg(&args, "room"), Some("!r"));
        assert_eq!(arg(&args, "other"), None);
        assert_eq!(
            required_arg(&args, "other").unwrap_err().kind,
            ErrorKind::Skip
        );

        assert_eq!(PluginError::retry("r").kind, ErrorKind::Retry);
        assert_eq!(
            Effect::invalidate_all("c"),
            Effect::InvalidateAll("c".into())
        );
        assert_ne!(Effect::invalidate("c", "k"), Effect::invalidate("c", "j"));

        let row = batch().row(0).unwrap().to_row();
        let value: serde_json::Value = row.json().unwrap();
        assert_eq!(value["a"], 1);
        let err = row.json::<Vec<u8>>().unwrap_err();
        assert_eq!(err.kind, ErrorKind::Skip);
        assert!(err.message.starts_with("row 1:"), "{err:?}");
    }
}
