//! The host side of the plugin's imports, one module per WIT interface. Each is linked only
//! when granted ([`crate::version`] decides).

mod clock;
pub(crate) mod counters;
mod kv;
pub(crate) mod log;
pub(crate) mod push;
mod rows;
pub(crate) mod v1;

impl crate::bindings::types::Host for crate::state::PluginState {}
