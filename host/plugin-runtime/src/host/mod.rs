//! The host side of the plugin's imports, one module per WIT interface. Each is linked only
//! when granted ([`crate::version`] decides).

mod clock;
mod counters;
mod kv;
mod log;
mod rows;

impl crate::bindings::types::Host for crate::state::PluginState {}
