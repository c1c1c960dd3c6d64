//! The processor's tests of streams that reset (a restarted Synapse writer) and of the
//! database streams that never do.

use super::*;

#[tokio::test]
async fn a_restarted_typing_writer_is_followed_back_to_its_new_run() {
    let mut h = harness(MemoryCatchup::new(&[], 100)).await.synapse();
    let bounds = crate::reader::plugins::FeedBounds {
        rows: 1_000,
        bytes: usize::MAX,
    };
    let feed = Arc::new(Feed::new(bounds, ReaderPositions::default()));
    h.processor = h.processor.with_feed(feed.clone());
    h.feed(vec![
        Inbound::Connected(1),
        Inbound::Position(1, position("typing", "master", 0, 0)),
        Inbound::Rdata(1, rdata("typing", "master", Some(1), "[1]")),
        Inbound::Rdata(1, rdata("typing", "master", Some(2), "[2]")),
        Inbound::Rdata(1, rdata("typing", "master", Some(3), "[3]")),
        // Synapse restarted: its first announcement, then its new run's rows.
        Inbound::Position(1, position("typing", "master", 0, 0)),
        Inbound::Rdata(1, rdata("typing", "master", Some(1), r#"["new1"]"#)),
        Inbound::Rdata(1, rdata("typing", "master", Some(2), r#"["new2"]"#)),
    ])
    .await;
    assert_eq!(
        h.delivered(),
        vec![
            b("typing", "master", 0, 1, &["[1]"]),
            b("typing", "master", 1, 2, &["[2]"]),
            b("typing", "master", 2, 3, &["[3]"]),
            b("typing", "master", 0, 1, &[r#"["new1"]"#]),
            b("typing", "master", 1, 2, &[r#"["new2"]"#]),
        ]
    );
    assert_eq!(
        *h.sink.resets.lock().unwrap(),
        vec![("typing".into(), "master".into(), 0, 3)],
        "the sink hears of the reset after the earlier run's rows, before the new run's"
    );
    assert!(h.catchup.requests.lock().unwrap().is_empty());
    assert_eq!(
        h.stored().await,
        vec![("typing".into(), "master".into(), 2)]
    );
    assert_eq!(h.runs().await, vec![("typing".into(), "master".into(), 1)]);
    let status = h.processor.shared.snapshot();
    let typing = status.stream("typing", "master").unwrap();
    assert_eq!(
        (typing.resets, typing.last_reset),
        (1, Some(ResetRange { from: 3, to: 0 }))
    );
    assert_eq!(
        (typing.position, typing.writer_position),
        (Token(2), Token(2))
    );
    assert_eq!((typing.gaps, typing.lag), (0, 0));
    let text = h.processor.shared.metrics.registry.render();
    assert!(
        text.contains(
            "streamhost_reader_stream_resets_total{stream=\"typing\",instance=\"master\"} 1"
        ),
        "{text}"
    );
    assert!(
        !text.contains("streamhost_reader_writer_behind_total{"),
        "{text}"
    );
    assert!(
        text.lines()
            .filter(|l| l.contains("reason=\"old_token\""))
            .all(|l| l.ends_with(" 0")),
        "no row dropped as old: {text}"
    );
    // The plugins' feed: the reset, then the new run's advance from its start.
    let FeedRead::Commits(commits) = feed.read(0, 1_000) else {
        panic!("expected commits")
    };
    let key = (stream("typing"), instance("master"));
    let reset = commits.iter().find(|c| !c.resets.is_empty()).unwrap();
    assert_eq!(
        reset.resets,
        vec![Reset {
            key: key.clone(),
            run: Run(1)
        }]
    );
    assert_eq!(
        reset.advances,
        vec![Advance {
            key,
            before: Token(0),
            after: Token(2),
            run: Run(1)
        }]
    );
    assert_eq!(reset.batches.len(), 2);
}

#[tokio::test]
async fn a_database_stream_below_the_reader_is_not_a_reset() {
    let mut h = harness(MemoryCatchup::new(&[], 100)).await.synapse();
    h.feed(vec![
        Inbound::Connected(1),
        Inbound::Position(1, position("events", "master", 10, 10)),
        Inbound::Position(1, position("events", "master", 4, 4)),
        Inbound::Rdata(1, rdata("events", "master", Some(5), "[5]")),
    ])
    .await;
    assert!(h.delivered().is_empty());
    assert!(h.sink.resets.lock().unwrap().is_empty());
    assert_eq!(
        h.stored().await,
        vec![("events".into(), "master".into(), 10)]
    );
    assert!(h.runs().await.is_empty());
    let status = h.processor.shared.snapshot();
    let events = status.stream("events", "master").unwrap();
    assert_eq!((events.resets, events.last_reset), (0, None));
    let text = h.processor.shared.metrics.registry.render();
    assert!(
        text.contains("streamhost_reader_writer_behind_total{stream=\"events\"} 1"),
        "{text}"
    );
    assert!(
        !text.contains("streamhost_reader_stream_resets_total{"),
        "{text}"
    );
}

#[tokio::test]
async fn a_reset_is_persisted_and_one_found_after_a_reader_restart_fetches_the_new_run() {
    let rows = [(1, "[\"n1\"]"), (2, "[\"n2\"]"), (3, "[\"n3\"]")];
    let mut h = harness(MemoryCatchup::new(&rows, 100)).await.synapse();
    h.feed(vec![
        Inbound::Connected(1),
        Inbound::Position(1, position("typing", "master", 7, 7)),
        Inbound::Rdata(1, rdata("typing", "master", Some(8), "[8]")),
    ])
    .await;
    // The reader stops; Synapse restarts and writes three typing rows meanwhile.
    let mut h = h.restart().await;
    h.feed(vec![
        Inbound::Connected(1),
        Inbound::Position(1, position("typing", "master", 3, 3)),
        Inbound::Rdata(1, rdata("typing", "master", Some(4), "[\"n4\"]")),
    ])
    .await;
    assert_eq!(
        *h.catchup.requests.lock().unwrap(),
        vec![(stream("typing"), Token(0), Token(3))],
        "the new run's rows up to the announcement are fetched from its start"
    );
    assert_eq!(
        h.delivered()[1..],
        [
            b("typing", "master", 0, 1, &["[\"n1\"]"]),
            b("typing", "master", 1, 2, &["[\"n2\"]"]),
            b("typing", "master", 2, 3, &["[\"n3\"]"]),
            b("typing", "master", 3, 4, &["[\"n4\"]"]),
        ]
    );
    let status = h.processor.shared.snapshot();
    let typing = status.stream("typing", "master").unwrap();
    assert_eq!(
        (typing.resets, typing.last_reset, typing.gaps),
        (1, Some(ResetRange { from: 8, to: 3 }), 0)
    );
    // Persisted: another restart keeps run 1 and position 4, and a POSITION of the same
    // run is no reset.
    let mut h = h.restart().await;
    h.feed(vec![
        Inbound::Connected(1),
        Inbound::Position(1, position("typing", "master", 4, 4)),
        Inbound::Rdata(1, rdata("typing", "master", Some(5), "[\"n5\"]")),
    ])
    .await;
    assert_eq!(
        h.stored().await,
        vec![("typing".into(), "master".into(), 5)]
    );
    assert_eq!(h.runs().await, vec![("typing".into(), "master".into(), 1)]);
    assert_eq!(h.processor.shared.snapshot().streams[0].resets, 0);
    assert_eq!(h.delivered().len(), 6);
}

#[tokio::test]
async fn a_reset_whose_new_rows_cannot_be_fetched_reports_them_as_a_gap() {
    let mut catchup = MemoryCatchup::new(&[], 100);
    catchup.unavailable = true;
    let mut h = harness(catchup).await.synapse();
    h.feed(vec![
        Inbound::Connected(1),
        Inbound::Position(1, position("typing", "master", 9, 9)),
        Inbound::Position(1, position("typing", "master", 2, 2)),
        Inbound::Rdata(1, rdata("typing", "master", Some(3), "[3]")),
    ])
    .await;
    assert_eq!(h.delivered(), vec![b("typing", "master", 2, 3, &["[3]"])]);
    let status = h.processor.shared.snapshot();
    let typing = status.stream("typing", "master").unwrap();
    assert_eq!(
        (typing.resets, typing.last_reset),
        (1, Some(ResetRange { from: 9, to: 2 }))
    );
    assert_eq!(
        (typing.gaps, typing.last_gap),
        (1, Some(GapRange { from: 0, to: 2 }))
    );
}
