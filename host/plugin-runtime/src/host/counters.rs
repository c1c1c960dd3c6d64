//! `counters`: named counters the reader exports on `/metrics`.

use crate::bindings::counters::Host;
use crate::state::PluginState;

impl Host for PluginState {
    fn add(&mut self, name: String, delta: u64) {
        self.services.add_counter(name, delta);
    }
}
