//! The processor's unit tests: a processor on a temporary database, fed [`Inbound`] messages
//! by hand, with a sink and a catch-up source in memory.

#![allow(clippy::unwrap_used)]

use std::sync::Mutex;

use streamhost_proto::{InstanceName, Position, Rdata, RowJson};

use super::paging::check_page;
use super::*;
use crate::reader::catchup::{CatchupError, CatchupPage};
use crate::reader::plugins::{Advance, FeedRead, Reset};
use crate::reader::sink::BoxFuture;
use crate::reader::status::{GapRange, ResetRange};
use crate::reader::store::Run;

fn stream(s: &str) -> StreamName {
    StreamName::new(s).unwrap()
}

fn instance(s: &str) -> InstanceName {
    InstanceName::new(s).unwrap()
}

fn row(s: &str) -> RowJson {
    RowJson::parse(s.as_bytes()).unwrap()
}

fn rdata(s: &str, i: &str, token: Option<i64>, r: &str) -> Rdata {
    Rdata {
        stream: stream(s),
        instance: instance(i),
        token: token.map(Token),
        row: row(r),
    }
}

fn position(s: &str, i: &str, prev: i64, new: i64) -> Position {
    Position {
        stream: stream(s),
        instance: instance(i),
        prev: Token(prev),
        new: Token(new),
    }
}

/// Keeps every batch it is given, and every reset as (stream, instance, to, batches
/// received before it).
#[derive(Default)]
struct CollectingSink {
    batches: Mutex<Vec<Batch>>,
    /// Calls of `apply`: one per commit with batches.
    applies: std::sync::atomic::AtomicUsize,
    resets: Mutex<Vec<(String, String, i64, usize)>>,
    fail: std::sync::atomic::AtomicBool,
}

impl BatchSink for CollectingSink {
    fn apply<'a>(
        &'a self,
        batches: &'a [Batch],
        _tx: &'a mut sqlx::SqliteConnection,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
                anyhow::bail!("sink refuses");
            }
            self.applies
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.batches.lock().unwrap().extend_from_slice(batches);
            Ok(())
        })
    }

    fn reset<'a>(
        &'a self,
        stream: &'a StreamName,
        instance: &'a InstanceName,
        to: Token,
        _tx: &'a mut sqlx::SqliteConnection,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let before = self.batches.lock().unwrap().len();
            self.resets.lock().unwrap().push((
                stream.to_string(),
                instance.to_string(),
                to.0,
                before,
            ));
            Ok(())
        })
    }
}

/// Serves one stream's rows from memory, `page` rows at most per answer (never cutting a
/// token), and records every request.
struct MemoryCatchup {
    rows: Vec<(Token, RowJson)>,
    page: usize,
    requests: Mutex<Vec<(StreamName, Token, Token)>>,
    broken: bool,
    /// Answers `Unavailable` (a Synapse stream with no catch-up source).
    unavailable: bool,
    /// Rows up to this token were trimmed: a request from below it is answered `Trimmed`.
    floor: Token,
}

impl MemoryCatchup {
    fn new(rows: &[(i64, &str)], page: usize) -> MemoryCatchup {
        MemoryCatchup {
            rows: rows.iter().map(|(t, r)| (Token(*t), row(r))).collect(),
            page,
            requests: Mutex::new(Vec::new()),
            broken: false,
            unavailable: false,
            floor: Token(1),
        }
    }
}

impl CatchupSource for MemoryCatchup {
    fn fetch<'a>(
        &'a self,
        stream: &'a StreamName,
        from: Token,
        upto: Token,
    ) -> BoxFuture<'a, Result<CatchupPage, CatchupError>> {
        Box::pin(async move {
            self.requests
                .lock()
                .unwrap()
                .push((stream.clone(), from, upto));
            if self.unavailable {
                return Err(CatchupError::Unavailable(
                    "only in Synapse's database".into(),
                ));
            }
            if streamhost_log::trimmed_after(from, self.floor) {
                return Err(CatchupError::Trimmed {
                    trimmed_upto: self.floor,
                    earliest: Some(Token(self.floor.0 + 1)),
                });
            }
            if self.broken {
                return Err(CatchupError::Status {
                    status: hyper::StatusCode::BAD_REQUEST,
                    body: "Unknown stream".into(),
                });
            }
            let mut updates: Vec<(Token, RowJson)> = Vec::new();
            let mut limited = false;
            for (token, r) in &self.rows {
                if *token <= from || *token > upto {
                    continue;
                }
                if updates.len() >= self.page && updates.last().is_some_and(|(t, _)| t != token) {
                    limited = true;
                    break;
                }
                updates.push((*token, r.clone()));
            }
            let upto = if limited {
                updates.last().expect("limited after rows").0
            } else {
                upto
            };
            Ok(CatchupPage {
                updates,
                upto,
                limited,
            })
        })
    }
}

struct Harness {
    processor: Processor,
    sink: Arc<CollectingSink>,
    catchup: Arc<MemoryCatchup>,
    drop_rx: watch::Receiver<ConnId>,
    store: ReaderStore,
    _dir: tempfile::TempDir,
}

async fn harness(catchup: MemoryCatchup) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = ReaderStore::open(&dir.path().join("reader.sqlite"))
        .await
        .unwrap();
    let sink = Arc::new(CollectingSink::default());
    let catchup = Arc::new(catchup);
    let shared = Arc::new(Shared::new("test".into(), "nowhere".into()));
    let (drop_tx, drop_rx) = watch::channel(0);
    let processor = Processor::new(
        store.clone(),
        sink.clone(),
        catchup.clone(),
        shared,
        drop_tx,
        CancellationToken::new(),
        Limits::new(Duration::from_millis(1), 100_000, usize::MAX),
    )
    .await
    .unwrap();
    Harness {
        processor,
        sink,
        catchup,
        drop_rx,
        store,
        _dir: dir,
    }
}

impl Harness {
    /// Follows a Synapse: joins new streams at their announcement, `typing` resets.
    fn synapse(mut self) -> Harness {
        self.processor = self
            .processor
            .with_first_position(FirstPosition::Join)
            .with_resettable_streams([stream("typing")]);
        self
    }

    /// A new processor on the same database, sink and catch-up source (a reader restart),
    /// following a Synapse.
    async fn restart(mut self) -> Harness {
        let (drop_tx, drop_rx) = watch::channel(0);
        self.processor = Processor::new(
            self.store.clone(),
            self.sink.clone(),
            self.catchup.clone(),
            Arc::new(Shared::new("test".into(), "nowhere".into())),
            drop_tx,
            CancellationToken::new(),
            Limits::new(Duration::from_millis(1), 100_000, usize::MAX),
        )
        .await
        .unwrap();
        self.drop_rx = drop_rx;
        self.synapse()
    }

    async fn runs(&self) -> Vec<(String, String, i64)> {
        self.store
            .runs()
            .await
            .unwrap()
            .into_iter()
            .map(|(s, i, r)| (s.to_string(), i.to_string(), r.0))
            .collect()
    }

    async fn feed(&mut self, messages: Vec<Inbound>) {
        for m in messages {
            self.processor.handle(m).await;
        }
        assert!(self.processor.commit().await.is_ok());
    }

    /// (stream, instance, prev, token, rows) of every batch delivered so far.
    fn delivered(&self) -> Vec<Delivered> {
        self.sink
            .batches
            .lock()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b.stream.to_string(),
                    b.instance.to_string(),
                    b.prev.0,
                    b.token.0,
                    b.rows.iter().map(|r| r.as_str().to_owned()).collect(),
                )
            })
            .collect()
    }

    async fn stored(&self) -> Vec<(String, String, i64)> {
        self.store
            .positions()
            .await
            .unwrap()
            .into_iter()
            .map(|(s, i, t)| (s.to_string(), i.to_string(), t.0))
            .collect()
    }
}

/// A delivered batch: (stream, instance, prev, token, rows).
type Delivered = (String, String, i64, i64, Vec<String>);

fn b(s: &str, i: &str, prev: i64, token: i64, rows: &[&str]) -> Delivered {
    (
        s.into(),
        i.into(),
        prev,
        token,
        rows.iter().map(|r| r.to_string()).collect(),
    )
}

#[tokio::test]
async fn position_within_prev_and_new_only_advances() {
    let mut h = harness(MemoryCatchup::new(&[(3, "[3]")], 100)).await;
    h.feed(vec![
        Inbound::Connected(1),
        Inbound::Position(1, position("events", "master", 0, 5)),
    ])
    .await;
    assert!(
        h.catchup.requests.lock().unwrap().is_empty(),
        "no fetch when prev <= cur <= new"
    );
    assert!(h.delivered().is_empty());
    assert_eq!(
        h.stored().await,
        vec![("events".into(), "master".into(), 5)]
    );
    // RDATA above the position is delivered from the position.
    h.feed(vec![Inbound::Rdata(
        1,
        rdata("events", "master", Some(6), "[6]"),
    )])
    .await;
    assert_eq!(h.delivered(), vec![b("events", "master", 5, 6, &["[6]"])]);
    assert_eq!(
        h.stored().await,
        vec![("events".into(), "master".into(), 6)]
    );
}

#[tokio::test]
async fn gap_is_fetched_following_limited_and_delivered_by_token() {
    let rows = [
        (2, "[2]"),
        (3, "[3,0]"),
        (3, "[3,1]"),
        (4, "[4]"),
        (6, "[6]"),
        (7, "[7]"),
    ];
    let mut h = harness(MemoryCatchup::new(&rows, 2)).await;
    h.feed(vec![
        Inbound::Connected(1),
        Inbound::Position(1, position("events", "master", 6, 8)),
        Inbound::Rdata(1, rdata("events", "master", Some(9), "[9]")),
    ])
    .await;
    assert_eq!(
        *h.catchup.requests.lock().unwrap(),
        vec![
            (stream("events"), Token(0), Token(8)),
            (stream("events"), Token(3), Token(8)),
            (stream("events"), Token(6), Token(8)),
        ]
    );
    assert_eq!(
        h.delivered(),
        vec![
            b("events", "master", 0, 2, &["[2]"]),
            b("events", "master", 2, 3, &["[3,0]", "[3,1]"]),
            b("events", "master", 3, 4, &["[4]"]),
            b("events", "master", 4, 6, &["[6]"]),
            b("events", "master", 6, 7, &["[7]"]),
            b("events", "master", 8, 9, &["[9]"]),
        ]
    );
    assert_eq!(
        h.stored().await,
        vec![("events".into(), "master".into(), 9)]
    );
}

#[tokio::test]
async fn writer_behind_the_reader_never_moves_it_back_or_redelivers() {
    let mut h = harness(MemoryCatchup::new(&[], 100)).await;
    h.feed(vec![
        Inbound::Connected(1),
        Inbound::Position(1, position("events", "master", 10, 10)),
    ])
    .await;
    let fetched = h.catchup.requests.lock().unwrap().len();
    assert_eq!(
        h.stored().await,
        vec![("events".into(), "master".into(), 10)]
    );
    h.feed(vec![
        Inbound::Disconnected(1),
        Inbound::Connected(2),
        Inbound::Position(2, position("events", "master", 4, 4)),
        Inbound::Rdata(2, rdata("events", "master", Some(5), "[5]")),
        Inbound::Rdata(2, rdata("events", "master", Some(11), "[11]")),
    ])
    .await;
    assert_eq!(
        h.catchup.requests.lock().unwrap().len(),
        fetched,
        "no fetch when cur > new"
    );
    assert_eq!(
        h.delivered(),
        vec![b("events", "master", 10, 11, &["[11]"])]
    );
    assert_eq!(
        h.stored().await,
        vec![("events".into(), "master".into(), 11)]
    );
    let text = h.processor.shared.metrics.registry.render();
    assert!(
        text.contains("streamhost_reader_writer_behind_total{stream=\"events\"} 1"),
        "{text}"
    );
    assert!(
        text.contains(
            "streamhost_reader_rdata_dropped_total{stream=\"events\",reason=\"old_token\"} 1"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn rdata_before_the_streams_position_is_dropped_on_each_connection() {
    let mut h = harness(MemoryCatchup::new(&[], 100)).await;
    h.feed(vec![
        Inbound::Connected(1),
        Inbound::Rdata(1, rdata("events", "master", Some(2), "[2]")),
        Inbound::Position(1, position("typing", "master", 0, 0)),
        Inbound::Rdata(1, rdata("events", "master", Some(3), "[3]")),
        Inbound::Position(1, position("events", "master", 3, 3)),
        Inbound::Rdata(1, rdata("events", "master", Some(4), "[4]")),
        Inbound::Disconnected(1),
        Inbound::Connected(2),
        Inbound::Rdata(2, rdata("events", "master", Some(5), "[5]")),
        Inbound::Position(2, position("events", "master", 5, 5)),
        Inbound::Rdata(2, rdata("events", "master", Some(6), "[6]")),
    ])
    .await;
    assert_eq!(
        h.delivered(),
        vec![
            b("events", "master", 3, 4, &["[4]"]),
            b("events", "master", 5, 6, &["[6]"])
        ]
    );
    let text = h.processor.shared.metrics.registry.render();
    assert!(
        text.contains(
            "streamhost_reader_rdata_dropped_total{stream=\"events\",reason=\"not_connected\"} 3"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn batch_runs_are_kept_per_instance_even_when_interleaved() {
    let mut h = harness(MemoryCatchup::new(&[], 100)).await;
    h.feed(vec![
        Inbound::Connected(1),
        Inbound::Position(1, position("events", "a", 0, 0)),
        Inbound::Position(1, position("events", "b", 0, 0)),
        Inbound::Rdata(1, rdata("events", "a", None, "[\"a1\"]")),
        Inbound::Rdata(1, rdata("events", "b", None, "[\"b1\"]")),
        Inbound::Rdata(1, rdata("events", "a", None, "[\"a2\"]")),
        Inbound::Rdata(1, rdata("events", "b", Some(7), "[\"b2\"]")),
        Inbound::Rdata(1, rdata("events", "a", Some(3), "[\"a3\"]")),
        Inbound::Rdata(1, rdata("events", "a", Some(4), "[\"a4\"]")),
    ])
    .await;
    assert_eq!(
        h.delivered(),
        vec![
            b("events", "b", 0, 7, &["[\"b1\"]", "[\"b2\"]"]),
            b("events", "a", 0, 3, &["[\"a1\"]", "[\"a2\"]", "[\"a3\"]"]),
            b("events", "a", 3, 4, &["[\"a4\"]"]),
        ]
    );
    assert_eq!(
        h.stored().await,
        vec![
            ("events".into(), "a".into(), 4),
            ("events".into(), "b".into(), 7)
        ]
    );
}

#[tokio::test]
async fn a_run_ending_at_an_old_token_is_dropped_whole() {
    let mut h = harness(MemoryCatchup::new(&[], 100)).await;
    h.feed(vec![
        Inbound::Connected(1),
        Inbound::Position(1, position("events", "master", 5, 5)),
        Inbound::Rdata(1, rdata("events", "master", None, "[1]")),
        Inbound::Rdata(1, rdata("events", "master", None, "[2]")),
        Inbound::Rdata(1, rdata("events", "master", Some(5), "[3]")),
        Inbound::Rdata(1, rdata("events", "master", Some(4), "[4]")),
        Inbound::Rdata(1, rdata("events", "master", None, "[6]")),
        Inbound::Rdata(1, rdata("events", "master", Some(6), "[7]")),
    ])
    .await;
    assert_eq!(
        h.delivered(),
        vec![b("events", "master", 5, 6, &["[6]", "[7]"])]
    );
    let text = h.processor.shared.metrics.registry.render();
    assert!(
        text.contains(
            "streamhost_reader_rdata_dropped_total{stream=\"events\",reason=\"old_token\"} 4"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn position_clears_the_unfinished_run_and_catch_up_rereads_it() {
    let mut h = harness(MemoryCatchup::new(&[(3, "[\"x\"]"), (3, "[\"y\"]")], 100)).await;
    h.feed(vec![
        Inbound::Connected(1),
        Inbound::Position(1, position("events", "master", 1, 1)),
        Inbound::Rdata(1, rdata("events", "master", None, "[\"x\"]")),
        Inbound::Rdata(1, rdata("events", "other", None, "[\"o\"]")),
        // A gap: the reader is at 1, the writer says it last published 3.
        Inbound::Position(1, position("events", "master", 3, 3)),
        Inbound::Rdata(1, rdata("events", "master", Some(4), "[\"z\"]")),
        Inbound::Rdata(1, rdata("events", "other", Some(2), "[\"p\"]")),
    ])
    .await;
    assert_eq!(
        h.delivered(),
        vec![
            b("events", "master", 1, 3, &["[\"x\"]", "[\"y\"]"]),
            b("events", "master", 3, 4, &["[\"z\"]"]),
            // Only the named instance's run is cleared.
            b("events", "other", 0, 2, &["[\"o\"]", "[\"p\"]"]),
        ]
    );
}

#[tokio::test]
async fn a_disconnect_forgets_pending_runs_but_queued_rows_still_apply() {
    let mut h = harness(MemoryCatchup::new(&[], 100)).await;
    h.feed(vec![
        Inbound::Connected(1),
        Inbound::Position(1, position("events", "master", 0, 0)),
        Inbound::Rdata(1, rdata("events", "master", Some(2), "[2]")),
        Inbound::Rdata(1, rdata("events", "master", None, "[3]")),
        Inbound::Disconnected(1),
        Inbound::Connected(2),
        Inbound::Position(2, position("events", "master", 2, 2)),
        Inbound::Rdata(2, rdata("events", "master", Some(3), "[4]")),
    ])
    .await;
    assert_eq!(
        h.delivered(),
        vec![
            b("events", "master", 0, 2, &["[2]"]),
            b("events", "master", 2, 3, &["[4]"])
        ]
    );
}

mod failures_and_gaps;
mod resets;

#[tokio::test]
async fn rows_queued_while_the_processor_yields_join_its_commit() {
    let h = harness(MemoryCatchup::new(&[], 100)).await;
    let (tx, rx) = crate::reader::inbound::queue(100, 1 << 20);
    for message in [
        Inbound::Connected(1),
        Inbound::Position(1, position("events", "master", 0, 0)),
        Inbound::Rdata(1, rdata("events", "master", Some(1), "[1]")),
    ] {
        tx.send(message).await.unwrap();
    }
    // A transport that has read one more line: on this one-thread runtime it queues it only
    // once the processor has emptied the queue and yields.
    let transport = tx.clone();
    tokio::spawn(async move {
        transport
            .send(Inbound::Rdata(1, rdata("events", "master", Some(2), "[2]")))
            .await
            .unwrap();
    });
    drop(tx);
    let sink = h.sink.clone();
    // Returns once every sender is gone and what was queued is committed.
    h.processor.run(rx).await;
    assert_eq!(
        sink.batches.lock().unwrap().len(),
        2,
        "both rows were applied"
    );
    assert_eq!(
        sink.applies.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "in one commit"
    );
    assert_eq!(
        h.store.positions().await.unwrap(),
        vec![(stream("events"), instance("master"), Token(2))]
    );
}

#[tokio::test]
async fn a_commit_stamp_is_observed_once_its_token_is_committed() {
    let mut h = harness(MemoryCatchup::new(&[], 100)).await;
    let stamp_us = crate::clock::unix_us() - 250_000;
    h.feed(vec![
        Inbound::Connected(1),
        Inbound::Position(1, position("events", "master", 0, 0)),
        Inbound::Stamp(1, stamp_us),
        Inbound::Rdata(1, rdata("events", "master", None, "[1]")),
        Inbound::Rdata(1, rdata("events", "master", Some(1), "[2]")),
        // A stamp of another connection is not this one's.
        Inbound::Stamp(2, stamp_us),
        Inbound::Rdata(1, rdata("events", "master", Some(2), "[3]")),
    ])
    .await;
    let text = h.processor.shared.metrics.registry.render();
    let count =
        "streamhost_reader_write_to_apply_seconds_count{stream=\"events\",instance=\"master\"} 1";
    assert!(text.contains(count), "{text}");
    // 250 ms ago: in the (0.1, 0.25] or (0.25, 0.5] bucket, never below 0.1 s.
    assert!(
        text.contains(
            "streamhost_reader_write_to_apply_seconds_bucket{stream=\"events\",instance=\"master\",le=\"0.1\"} 0"
        ),
        "{text}"
    );
}
