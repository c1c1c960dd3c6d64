//! `clock`: wall-clock milliseconds.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::bindings::clock::Host;
use crate::state::PluginState;

impl Host for PluginState {
    fn now_ms(&mut self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}
