//! The processor's tests of failures (a failed commit, a failing catch-up), gaps no source
//! can fill, joining a live Synapse, and catch-up answers outside the request.

use super::*;

#[tokio::test]
async fn a_failed_commit_rolls_back_and_asks_for_a_new_connection() {
    let mut h = harness(MemoryCatchup::new(&[], 100)).await;
    h.feed(vec![
        Inbound::Connected(1),
        Inbound::Position(1, position("events", "master", 0, 2)),
    ])
    .await;
    h.sink.fail.store(true, std::sync::atomic::Ordering::SeqCst);
    h.processor
        .handle(Inbound::Rdata(1, rdata("events", "master", Some(3), "[3]")))
        .await;
    assert!(h.processor.commit().await.is_err());
    assert_eq!(*h.drop_rx.borrow(), 1, "asked to drop connection 1");
    assert_eq!(
        h.stored().await,
        vec![("events".into(), "master".into(), 2)]
    );
    assert_eq!(
        h.processor
            .position(&(stream("events"), instance("master"))),
        Token(2)
    );
    // The stream is disconnected until the next POSITION, which catches up from 2.
    h.sink
        .fail
        .store(false, std::sync::atomic::Ordering::SeqCst);
    h.feed(vec![Inbound::Rdata(
        1,
        rdata("events", "master", Some(4), "[4]"),
    )])
    .await;
    assert!(h.delivered().is_empty());
}

#[tokio::test]
async fn a_failing_catch_up_leaves_the_stream_disconnected() {
    let mut catchup = MemoryCatchup::new(&[], 100);
    catchup.broken = true;
    let mut h = harness(catchup).await;
    h.feed(vec![
        Inbound::Connected(1),
        Inbound::Position(1, position("events", "master", 1, 1)),
        Inbound::Rdata(1, rdata("events", "master", Some(2), "[2]")),
    ])
    .await;
    assert_eq!(
        h.catchup.requests.lock().unwrap().len(),
        1,
        "a 400 is not retried"
    );
    assert!(h.delivered().is_empty());
    assert!(h.stored().await.is_empty());
    assert_eq!(*h.drop_rx.borrow(), 1);
}

#[tokio::test]
async fn a_gap_no_source_can_fill_is_reported_once_and_the_stream_follows_on() {
    let mut catchup = MemoryCatchup::new(&[], 100);
    catchup.unavailable = true;
    let mut h = harness(catchup).await;
    h.feed(vec![
        Inbound::Connected(1),
        Inbound::Position(1, position("receipts", "master", 0, 0)),
        Inbound::Rdata(1, rdata("receipts", "master", Some(2), "[2]")),
        // The reader is at 2; the writer last published 5: (2, 6] cannot be fetched.
        Inbound::Position(1, position("receipts", "master", 5, 6)),
        Inbound::Rdata(1, rdata("receipts", "master", Some(7), "[7]")),
    ])
    .await;
    assert_eq!(
        h.delivered(),
        vec![
            b("receipts", "master", 0, 2, &["[2]"]),
            b("receipts", "master", 6, 7, &["[7]"]),
        ]
    );
    assert_eq!(*h.drop_rx.borrow(), 0, "a gap does not drop the connection");
    let status = h.processor.shared.snapshot();
    let stream = status.stream("receipts", "master").unwrap();
    assert_eq!(
        (stream.gaps, stream.last_gap),
        (1, Some(GapRange { from: 2, to: 6 }))
    );
    let text = h.processor.shared.metrics.registry.render();
    assert!(
        text.contains("streamhost_reader_gaps_total{stream=\"receipts\",instance=\"master\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn trimmed_rows_are_a_recorded_gap_and_catch_up_follows_on_from_the_floor() {
    let rows: Vec<(i64, String)> = (6..=9).map(|t| (t, format!("[{t}]"))).collect();
    let rows: Vec<(i64, &str)> = rows.iter().map(|(t, r)| (*t, r.as_str())).collect();
    let mut catchup = MemoryCatchup::new(&rows, 2);
    catchup.floor = Token(5);
    let mut h = harness(catchup).await;
    h.feed(vec![
        Inbound::Connected(1),
        Inbound::Position(1, position("events", "master", 0, 0)),
        Inbound::Rdata(1, rdata("events", "master", Some(2), "[2]")),
        // The reader is at 2; the writer kept only what is after 5.
        Inbound::Position(1, position("events", "master", 9, 9)),
    ])
    .await;
    let tokens: Vec<i64> = h.delivered().iter().map(|d| d.3).collect();
    assert_eq!(tokens, vec![2, 6, 7, 8, 9], "the kept rows follow the gap");
    let status = h.processor.shared.snapshot();
    let stream = status.stream("events", "master").unwrap();
    assert_eq!((stream.gaps, stream.trimmed), (1, 1));
    assert_eq!(stream.last_trimmed, Some(GapRange { from: 2, to: 5 }));
    let gaps = h.processor.store.gaps().await.unwrap();
    assert_eq!(gaps.len(), 1);
    assert_eq!(
        (gaps[0].from, gaps[0].to, gaps[0].reason.as_str()),
        (Token(2), Token(5), "trimmed")
    );
    let text = h.processor.shared.metrics.registry.render();
    assert!(
        text.contains(
            "streamhost_reader_trimmed_gaps_total{stream=\"events\",instance=\"master\"} 1"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn joining_a_live_synapse_starts_unknown_streams_at_their_announcement() {
    let mut catchup = MemoryCatchup::new(&[], 100);
    catchup.unavailable = true;
    let mut h = harness(catchup).await;
    h.processor = h.processor.with_first_position(FirstPosition::Join);
    h.feed(vec![
        Inbound::Connected(1),
        Inbound::Position(1, position("events", "master", 4533, 4533)),
        Inbound::Rdata(1, rdata("events", "master", Some(4534), "[1]")),
        Inbound::Position(1, position("typing", "master", 0, 0)),
        Inbound::Position(1, position("typing", "master", 4, 5)),
    ])
    .await;
    let status = h.processor.shared.snapshot();
    let typing = status.stream("typing", "master").unwrap();
    assert_eq!(
        (typing.gaps, typing.last_gap),
        (1, Some(GapRange { from: 0, to: 5 })),
        "joined at 0, so (0, 5] was missed"
    );
    assert_eq!(
        h.delivered(),
        vec![b("events", "master", 4533, 4534, &["[1]"])]
    );
    assert_eq!(
        *h.catchup.requests.lock().unwrap(),
        vec![(stream("typing"), Token(0), Token(5))],
        "joining fetches nothing; only the typing gap was asked for"
    );
    // Known from now on: a later jump is a gap.
    h.feed(vec![Inbound::Position(
        1,
        position("events", "master", 4540, 4540),
    )])
    .await;
    let status = h.processor.shared.snapshot();
    let stream = status.stream("events", "master").unwrap();
    assert_eq!(
        (stream.gaps, stream.last_gap),
        (
            1,
            Some(GapRange {
                from: 4534,
                to: 4540
            })
        )
    );
    assert_eq!(stream.position, Token(4540));
}

#[test]
fn catch_up_answers_outside_the_request_are_rejected() {
    let page = |updates: &[i64], upto: i64, limited: bool| CatchupPage {
        updates: updates.iter().map(|t| (Token(*t), row("[]"))).collect(),
        upto: Token(upto),
        limited,
    };
    assert!(check_page(&page(&[2, 3, 3], 5, false), Token(1), Token(5)).is_ok());
    assert!(check_page(&page(&[1], 5, false), Token(1), Token(5)).is_err());
    assert!(check_page(&page(&[6], 6, false), Token(1), Token(5)).is_err());
    assert!(check_page(&page(&[3, 2], 5, false), Token(1), Token(5)).is_err());
    assert!(check_page(&page(&[2, 4], 3, true), Token(1), Token(5)).is_err());
    assert!(
        check_page(&page(&[], 1, true), Token(1), Token(5)).is_err(),
        "no progress"
    );
}
