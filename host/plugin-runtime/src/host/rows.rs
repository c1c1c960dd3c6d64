//! `rows`: read-only access to the log's rows of granted streams.

use crate::bindings::rows::Host;
use crate::bindings::types::Row;
use crate::state::PluginState;

/// Most rows one `read` returns.
const MAX_ROWS_PER_READ: u32 = 1_000;

impl Host for PluginState {
    fn read(&mut self, stream: String, from_token: i64, limit: u32) -> Result<Vec<Row>, String> {
        if !self.caps.may_read(&stream) {
            return Err(format!("reading stream {stream} is not granted"));
        }
        let Some(source) = self.services.rows() else {
            return Err("this reader has no row source".into());
        };
        let rows = source.read(&stream, from_token, limit.min(MAX_ROWS_PER_READ))?;
        Ok(rows
            .into_iter()
            .map(|(token, data)| Row { token, data })
            .collect())
    }
}
