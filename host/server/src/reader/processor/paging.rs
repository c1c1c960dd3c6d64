//! Catch-up, page by page: fetches `(cur, new]` of a key from the catch-up source (retrying
//! transient failures), checks each page against the endpoint's contract, delivers its rows
//! and commits whenever a group fills. Rows no source has are reported as a gap.

use streamhost_proto::{StreamName, Token};

use super::failure::pauses;
use super::{Processor, ProcessorError};
use crate::reader::catchup::{CatchupError, CatchupPage};
use crate::reader::ledger::Key;

/// Tries of one catch-up request when the failure is transient.
const CATCHUP_ATTEMPTS: u32 = 5;

/// What a catch-up request gave.
enum Fetched {
    /// A page of rows.
    Page(CatchupPage),
    /// No source has these rows: a gap to report (the reason says why).
    Unavailable(String),
}

impl Processor {
    /// Fetches and delivers `(cur, new]` of `key`, following `limited`. An error if it could
    /// not (the stream then stays disconnected on this connection).
    pub(super) async fn catch_up(
        &mut self,
        key: &Key,
        cur: Token,
        new: Token,
    ) -> Result<(), ProcessorError> {
        let mut from = cur;
        loop {
            let page = match self.fetch(&key.0, from, new).await? {
                Fetched::Page(page) => page,
                Fetched::Unavailable(reason) => {
                    self.report_gap(key, from, new, &reason);
                    return Ok(());
                }
            };
            self.counters(&key.0)
                .catchup_rows
                .add(page.updates.len() as u64);
            if let Err(reason) = check_page(&page, from, new) {
                self.fail(
                    format!("catch-up of {} from {from} to {new}: {reason}", key.0),
                    "catchup",
                )
                .await;
                return Err(ProcessorError::CatchupGaveUp);
            }
            let (limited, upto) = (page.limited, page.upto);
            self.deliver_page(key, page);
            if !limited {
                return Ok(());
            }
            self.ledger.advance(key, upto);
            from = upto;
            if from >= new {
                return Ok(());
            }
            if self.group_full() {
                self.commit().await?;
            }
        }
    }

    /// Delivers a checked page's rows above the applied position, one batch per token.
    fn deliver_page(&mut self, key: &Key, page: CatchupPage) {
        let mut updates = page.updates.into_iter().peekable();
        while let Some((token, row)) = updates.next() {
            let mut rows = vec![row];
            while let Some((_, row)) = updates.next_if(|(next, _)| *next == token) {
                rows.push(row);
            }
            if token > self.position(key) {
                self.deliver(key, token, rows);
            } else {
                self.counters(&key.0)
                    .dropped_old_token
                    .add(rows.len() as u64);
            }
        }
    }

    /// Reports that `(from, to]` of `key` was missed and cannot be fetched: a warning, the
    /// `reader_gaps_total` metric and the stream's entry in the status. The position then
    /// moves on to `to` (the caller's `POSITION`), so the gap is reported once.
    fn report_gap(&mut self, key: &Key, from: Token, to: Token, reason: &str) {
        tracing::warn!(
            stream = %key.0, instance = %key.1, from = from.0, to = to.0, %reason,
            "gap: rows in (from, to] were missed and cannot be fetched; following on from `to`"
        );
        self.shared
            .metrics
            .gaps
            .with(&[key.0.as_str(), key.1.as_str()])
            .inc();
        self.shared.update_stream(key, |f| {
            f.gaps += 1;
            f.last_gap = Some((from, to));
        });
    }

    /// One catch-up request with retries of transient failures, after pauses drawn from a
    /// window that doubles up to the reconnect cap.
    async fn fetch(
        &mut self,
        stream: &StreamName,
        from: Token,
        upto: Token,
    ) -> Result<Fetched, ProcessorError> {
        let mut pause = pauses(&self.limits);
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.counters(stream).catchup_requests.inc();
            let started = std::time::Instant::now();
            let result = tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return Err(ProcessorError::Shutdown),
                result = self.catchup.fetch(stream, from, upto) => result,
            };
            self.counters(stream)
                .catchup_duration
                .observe_since(started);
            let error = match result {
                Ok(page) => return Ok(Fetched::Page(page)),
                Err(CatchupError::Unavailable(reason)) => return Ok(Fetched::Unavailable(reason)),
                Err(error) => error,
            };
            if !error.is_transient() || attempt == CATCHUP_ATTEMPTS {
                let message = format!("catch-up of {stream} from {from} to {upto}: {error}");
                self.fail(message, "catchup").await;
                return Err(ProcessorError::CatchupGaveUp);
            }
            self.shared.metrics.errors.with(&["catchup"]).inc();
            tracing::debug!(%stream, %error, attempt, "catch-up failed; retrying");
            tokio::select! {
                () = self.shutdown.cancelled() => return Err(ProcessorError::Shutdown),
                () = tokio::time::sleep(pause.next_delay()) => {}
            }
        }
    }
}

/// Checks a catch-up answer against the endpoint's contract for a request of `(from, new]`.
pub(super) fn check_page(page: &CatchupPage, from: Token, new: Token) -> Result<(), String> {
    let limit = if page.limited { page.upto } else { new };
    if page.limited && (page.upto <= from || page.upto > new) {
        return Err(format!(
            "limited answer with upto_token {} outside ({from}, {new}]",
            page.upto
        ));
    }
    let mut last = from;
    for (token, _) in &page.updates {
        if *token <= from || *token > limit {
            return Err(format!("row at token {token} outside ({from}, {limit}]"));
        }
        if *token < last {
            return Err(format!("rows out of order: {token} after {last}"));
        }
        last = *token;
    }
    Ok(())
}
