//! `matrix-pusher`: Matrix push notifications for the users of a followed Synapse.
//!
//! For each new event of Synapse's `events` stream (rows carry ids, not content,
//! `docs/synapse.md`) it fetches the event and its room through a granted Synapse API
//! ([`synapse`]), evaluates the default push rules that matter most for each configured local
//! user ([`rules`]: a mention by user id or display name, a message in a room of two, an invite
//! of the user) and pushes one Push Gateway API `notify` request per pusher of each user it
//! notifies ([`notify`]), with the key `<event_id>/<user>/<pushkey>`, to the push destination
//! named in its configuration. Everything but the host calls is pure and unit-tested natively
//! (`cargo test --target x86_64-unknown-linux-gnu -p matrix-pusher` in `plugins/`); the host
//! glue (`plugin.rs`) is built for wasm32 only.

pub mod notify;
pub mod pusher;
pub mod rules;
pub mod synapse;

#[cfg(target_arch = "wasm32")]
mod plugin;
