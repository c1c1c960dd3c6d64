//! Catch-up, page by page: fetches `(cur, new]` of a key from the catch-up source (retrying
//! transient failures), checks each page against the endpoint's contract, delivers its rows
//! and commits whenever a group fills. Rows no source has are reported as a gap; rows the
//! writer trimmed (a 410) are a gap too, after which catch-up follows on from the earliest
//! token kept.

use streamhost_proto::{StreamName, Token};

use super::failure::pauses;
use super::{Processor, ProcessorError};
use crate::clock::unix_ms;
use crate::reader::catchup::{CatchupError, CatchupPage};
use crate::reader::ledger::Key;
use crate::reader::store::Gap;

/// Tries of one catch-up request when the failure is transient.
const CATCHUP_ATTEMPTS: u32 = 5;

/// What a catch-up request gave.
enum Fetched {
    /// A page of rows.
    Page(CatchupPage),
    /// No source has these rows: a gap to report (the reason says why).
    Unavailable(String),
    /// The writer trimmed every row up to this token: a gap, then go on from it.
    Trimmed(Token),
}

/// Why a range is a gap.
enum GapCause<'a> {
    /// No source has the rows.
    Unavailable(&'a str),
    /// The writer's retention deleted them.
    Trimmed,
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
                    self.report_gap(key, from, new, GapCause::Unavailable(&reason));
                    return Ok(());
                }
                Fetched::Trimmed(floor) if floor <= from => {
                    let message = format!(
                        "catch-up of {} from {from}: answered 410 with trimmed_upto {floor}, \
                         not above the request",
                        key.0
                    );
                    self.fail(message, "catchup").await;
                    return Err(ProcessorError::CatchupGaveUp);
                }
                Fetched::Trimmed(floor) => {
                    let to = floor.min(new);
                    self.report_gap(key, from, to, GapCause::Trimmed);
                    if to >= new {
                        return Ok(());
                    }
                    // Follow on from the earliest token kept.
                    self.ledger.advance(key, to);
                    from = to;
                    continue;
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
    /// `reader_gaps_total` metric (and `reader_trimmed_gaps_total` for a 410), the stream's
    /// entry in the status, and a `reader_gaps` row written with the next commit. The
    /// position then moves on to `to`, so the gap is reported once.
    fn report_gap(&mut self, key: &Key, from: Token, to: Token, cause: GapCause<'_>) {
        let labels = [key.0.as_str(), key.1.as_str()];
        let reason = match cause {
            GapCause::Unavailable(reason) => {
                tracing::warn!(
                    stream = %key.0, instance = %key.1, from = from.0, to = to.0, %reason,
                    "gap: rows in (from, to] were missed and cannot be fetched; following on from `to`"
                );
                "unavailable"
            }
            GapCause::Trimmed => {
                tracing::warn!(
                    stream = %key.0, instance = %key.1, from = from.0, to = to.0,
                    "gap: the writer trimmed rows in (from, to] before this reader fetched them \
                     (catch-up answered 410); following on from the earliest token kept"
                );
                self.shared.metrics.trimmed.with(&labels).inc();
                "trimmed"
            }
        };
        self.shared.metrics.gaps.with(&labels).inc();
        self.shared.update_stream(key, |f| {
            f.gaps += 1;
            f.last_gap = Some((from, to));
            if reason == "trimmed" {
                f.trimmed += 1;
                f.last_trimmed = Some((from, to));
            }
        });
        self.gaps.push(Gap {
            stream: key.0.clone(),
            instance: key.1.clone(),
            from,
            to,
            reason: reason.to_owned(),
            at_ms: unix_ms() as i64,
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
                Err(CatchupError::Trimmed { trimmed_upto, .. }) => {
                    return Ok(Fetched::Trimmed(trimmed_upto));
                }
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
