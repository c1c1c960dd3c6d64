//! Assembling `RDATA` `batch` runs into [`Batch`]es, per (stream, instance)
//! (docs/replication.md, "Batch runs").
//!
//! Synapse keys unfinished runs by stream name only, so interleaved runs of two writers on one
//! stream could be mixed up; keying by (stream, instance) is strictly more correct and reads
//! the same wire.

use streamhost_proto::{InstanceName, Rdata, RowJson, StreamName, Token};

use super::sink::Batch;

/// The unfinished run and last finished token of one (stream, instance).
#[derive(Debug)]
struct Run {
    stream: StreamName,
    instance: InstanceName,
    rows: Vec<RowJson>,
    last: Token,
}

/// Collects `batch` rows until the row with a numeric token finishes the run.
///
/// Runs live in a small vector searched by name: a reader follows a handful of (stream,
/// instance) pairs, where comparing two short names beats hashing them on every row.
#[derive(Debug, Default)]
pub struct BatchAssembler {
    runs: Vec<Run>,
}

impl BatchAssembler {
    /// Adds one row. Returns the finished batch when the row carries a numeric token: the
    /// waiting rows of its (stream, instance) plus this one. The batch's `prev` is the token of
    /// the previous batch this assembler finished for that pair (0 at first); a caller that
    /// tracks positions sets its own.
    pub fn push(&mut self, rdata: Rdata) -> Option<Batch> {
        let Rdata {
            stream,
            instance,
            token,
            row,
        } = rdata;
        let index = match self
            .runs
            .iter()
            .position(|run| run.stream == stream && run.instance == instance)
        {
            Some(index) => index,
            None => {
                self.runs.push(Run {
                    stream: stream.clone(),
                    instance: instance.clone(),
                    rows: Vec::new(),
                    last: Token(0),
                });
                self.runs.len() - 1
            }
        };
        let run = &mut self.runs[index];
        run.rows.push(row);
        let token = token?;
        let rows = std::mem::take(&mut run.rows);
        let prev = std::mem::replace(&mut run.last, token);
        Some(Batch {
            stream,
            instance,
            prev,
            token,
            rows,
        })
    }

    /// Drops the unfinished run of (stream, instance); returns how many rows it had.
    pub fn clear(&mut self, stream: &StreamName, instance: &InstanceName) -> usize {
        self.runs
            .iter_mut()
            .find(|run| run.stream == *stream && run.instance == *instance)
            .map_or(0, |run| std::mem::take(&mut run.rows).len())
    }

    /// Drops every unfinished run (the connection that carried them is gone).
    pub fn clear_all(&mut self) {
        for run in &mut self.runs {
            run.rows.clear();
        }
    }

    /// Rows waiting in unfinished runs.
    pub fn pending_rows(&self) -> usize {
        self.runs.iter().map(|run| run.rows.len()).sum()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rdata(i: &str, token: Option<i64>, r: &str) -> Rdata {
        Rdata {
            stream: StreamName::new("events").unwrap(),
            instance: InstanceName::new(i).unwrap(),
            token: token.map(Token),
            row: RowJson::parse(r.as_bytes()).unwrap(),
        }
    }

    #[test]
    fn runs_end_at_a_numeric_token_per_instance() {
        let mut assembler = BatchAssembler::default();
        assert!(assembler.push(rdata("a", None, "[1]")).is_none());
        assert!(assembler.push(rdata("b", None, "[2]")).is_none());
        let a = assembler.push(rdata("a", Some(5), "[3]")).unwrap();
        assert_eq!(
            (a.instance.as_str(), a.prev, a.token, a.rows.len()),
            ("a", Token(0), Token(5), 2)
        );
        assert_eq!(assembler.pending_rows(), 1);
        assert_eq!(
            assembler.clear(&a.stream, &InstanceName::new("b").unwrap()),
            1
        );
        let b = assembler.push(rdata("b", Some(7), "[4]")).unwrap();
        assert_eq!((b.prev, b.token, b.rows.len()), (Token(0), Token(7), 1));
        let a = assembler.push(rdata("a", Some(6), "[5]")).unwrap();
        assert_eq!((a.prev, a.token), (Token(5), Token(6)));
        assembler.push(rdata("a", None, "[6]"));
        assembler.clear_all();
        assert_eq!(assembler.pending_rows(), 0);
    }
}
