//! Connection bookkeeping: which connection's commands are applied, and which of its streams
//! are connected (their first `POSITION` on it was processed).

use super::Processor;
use crate::reader::inbound::ConnId;

impl Processor {
    /// Connection `id` is the current one from now on; nothing of it is connected yet.
    pub(super) fn connected_to(&mut self, id: ConnId) {
        self.conn = Some(id);
        self.forget_connection();
    }

    /// Connection `id` closed; everything it queued has been applied.
    pub(super) fn disconnected_from(&mut self, id: ConnId) {
        if self.conn == Some(id) {
            self.conn = None;
        }
        self.forget_connection();
    }

    /// Forgets the connected streams and every unfinished `batch` run.
    pub(super) fn forget_connection(&mut self) {
        self.connected.clear();
        self.assembler.clear_all();
    }
}
