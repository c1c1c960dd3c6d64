//! The host side of the plugin's imports, one module per WIT interface. Each is linked only
//! when granted ([`crate::version`] decides).

mod clock;
pub(crate) mod counters;
pub(crate) mod earlier;
pub(crate) mod kv;
pub(crate) mod log;
pub(crate) mod push;
mod rows;

impl crate::bindings::types::Host for crate::state::PluginState {}

impl crate::bindings::fields::Host for crate::state::PluginState {}
