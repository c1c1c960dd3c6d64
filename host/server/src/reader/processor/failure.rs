//! Failures: [`ProcessorError`] says why a step stopped, and [`Processor::fail`] handles a
//! failure that leaves the connection's view incomplete (report, reconnect, pause).

use std::time::Duration;

use super::{Limits, Processor};
use crate::backoff::Backoff;

/// First pause window after a failure (catch-up retry, failed commit); doubles up to the
/// reconnect cap.
const FIRST_PAUSE: Duration = Duration::from_millis(100);

/// Why a step of the processor stopped. Failures other than [`ProcessorError::Shutdown`]
/// were reported where they happened ([`Processor::fail`]) and the connection is being
/// dropped; the stream stays disconnected until the next connection's `POSITION`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ProcessorError {
    /// The reader is stopping.
    #[error("the reader is shutting down")]
    Shutdown,
    /// A group commit failed and was rolled back.
    #[error("the commit failed")]
    CommitFailed,
    /// A catch-up failed for good (a permanent error, retries used up, or a page outside the
    /// endpoint's contract).
    #[error("catch-up gave up")]
    CatchupGaveUp,
}

/// The pauses after failures: windows of [`FIRST_PAUSE`] (at most the cap) doubling up to
/// the reconnect cap, each wait drawn from its window.
pub(super) fn pauses(limits: &Limits) -> Backoff {
    Backoff::new(FIRST_PAUSE.min(limits.max_pause), limits.max_pause)
}

impl Processor {
    /// Handles a failure that leaves this connection's view incomplete: records it, asks for
    /// a new connection (whose `POSITION`s fetch what is missing) and pauses, longer after each
    /// failure in a row.
    pub(super) async fn fail(&mut self, message: String, reason: &'static str) {
        tracing::warn!(error = %message, "reader processing failed; reconnecting");
        self.shared.metrics.errors.with(&[reason]).inc();
        self.shared.note_error(message);
        if let Some(id) = self.conn {
            self.drop_tx.send_replace(id);
        }
        self.forget_connection();
        let pause = self.pause.next_delay();
        tokio::select! {
            () = self.shutdown.cancelled() => {}
            () = tokio::time::sleep(pause) => {}
        }
    }
}
