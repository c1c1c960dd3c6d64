//! Retention on a real SQLite file and a real PostgreSQL schema: trimming raises the floor and
//! deletes the rows under it (never the newest token), reads from below the floor are refused
//! with the earliest kept token, the cuts by rows, bytes and age, and a trim that survives
//! reopening. Every case runs on both backends, as in `log.rs`.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

#[macro_use]
mod support;

use streamhost_log::{AppendRequest, Backend, Log, LogError, ORIGIN, TrimOutcome};
use streamhost_proto::Token;
use support::{Fixture, rows, stream};

on_both_backends!(
    trimming_raises_the_floor_and_reads_below_it_are_refused,
    the_newest_token_is_never_trimmed,
    cuts_by_rows_bytes_and_age_name_the_right_token,
    a_trim_survives_reopening_and_positions_stay,
);

/// Appends `n` rows, one token each, to `events`; returns their tokens.
async fn append(log: &Log, n: usize) -> Vec<Token> {
    let values: Vec<String> = (0..n).map(|i| format!("[{i}]")).collect();
    let values: Vec<&str> = values.iter().map(String::as_str).collect();
    log.append(&[AppendRequest {
        stream: stream("events"),
        rows: rows(&values),
        shared_token: false,
    }])
    .await
    .unwrap()
    .remove(0)
}

async fn trimming_raises_the_floor_and_reads_below_it_are_refused(fixture: Fixture) {
    let log = fixture.open().await;
    let events = stream("events");
    assert_eq!(log.trimmed_upto(&events).await.unwrap(), ORIGIN);
    let tokens = append(&log, 10).await; // 2..=11
    assert_eq!(tokens.last(), Some(&Token(11)));
    // Nothing trimmed: a read from 0 (a reader that never saw the stream) is served.
    let all = log
        .read_range(&events, Token(0), Token(11), 100)
        .await
        .unwrap();
    assert_eq!(all.rows.len(), 10);
    // Steps of 3 rows: several transactions, one result.
    let outcome = log.trim(&events, Token(6), 3).await.unwrap();
    assert_eq!(
        outcome,
        TrimOutcome {
            upto: Token(6),
            rows: 5
        }
    );
    assert_eq!(log.trimmed_upto(&events).await.unwrap(), Token(6));
    assert_eq!(log.earliest_token(&events).await.unwrap(), Some(Token(7)));
    match log.read_range(&events, Token(3), Token(11), 100).await {
        Err(LogError::Trimmed {
            trimmed_upto,
            earliest,
            ..
        }) => assert_eq!((trimmed_upto, earliest), (Token(6), Some(Token(7)))),
        other => panic!("expected Trimmed, got {other:?}"),
    }
    let kept = log
        .read_range(&events, Token(6), Token(11), 100)
        .await
        .unwrap();
    let tokens: Vec<i64> = kept.rows.iter().map(|(t, _)| t.0).collect();
    assert_eq!(tokens, vec![7, 8, 9, 10, 11]);
    // Trimming lower than the floor changes nothing; the other stream is untouched.
    let again = log.trim(&events, Token(4), 3).await.unwrap();
    assert_eq!(
        again,
        TrimOutcome {
            upto: Token(6),
            rows: 0
        }
    );
    assert_eq!(log.trimmed_upto(&stream("typing")).await.unwrap(), ORIGIN);
    // A read-only handle (a reader catching up from the database) sees the same floor.
    if let Fixture::Sqlite(dir) = &fixture {
        let url = format!("sqlite:{}", dir.path().join("log.sqlite").display());
        let reader = Log::open_read_only(&url).await.unwrap();
        assert!(matches!(
            reader.read_range(&events, Token(1), Token(11), 10).await,
            Err(LogError::Trimmed { .. })
        ));
        assert!(matches!(
            reader.trim(&events, Token(9), 10).await,
            Err(LogError::ReadOnly)
        ));
    }
}

async fn the_newest_token_is_never_trimmed(fixture: Fixture) {
    let log = fixture.open().await;
    let events = stream("events");
    let empty = log.trim(&events, Token(100), 10).await.unwrap();
    assert_eq!(
        empty,
        TrimOutcome {
            upto: ORIGIN,
            rows: 0
        }
    );
    append(&log, 3).await; // 2, 3, 4
    let outcome = log.trim(&events, Token(100), 10).await.unwrap();
    assert_eq!(
        outcome,
        TrimOutcome {
            upto: Token(3),
            rows: 2
        }
    );
    assert_eq!(log.earliest_token(&events).await.unwrap(), Some(Token(4)));
    // The next append follows the position, not the floor.
    assert_eq!(append(&log, 1).await, vec![Token(5)]);
}

async fn cuts_by_rows_bytes_and_age_name_the_right_token(fixture: Fixture) {
    let log = fixture.open().await;
    let events = stream("events");
    append(&log, 10).await; // tokens 2..=11, rows "[0]".."[9]", 3 bytes each
    // Keep 4 rows: trim up to the fifth newest, token 7.
    assert_eq!(log.cut_for_rows(&events, 4).await.unwrap(), Some(Token(7)));
    assert_eq!(log.cut_for_rows(&events, 10).await.unwrap(), None);
    // Keep 9 bytes: three rows fit, the fourth newest (token 8) crosses.
    assert_eq!(log.cut_for_bytes(&events, 9).await.unwrap(), Some(Token(8)));
    assert_eq!(log.cut_for_bytes(&events, 30).await.unwrap(), None);
    // Marks date tokens: the newest marked at or before the cut-off.
    assert_eq!(log.cut_for_age(&events, 5_000).await.unwrap(), None);
    log.mark(&events, Token(4), 1_000).await.unwrap();
    log.mark(&events, Token(9), 2_000).await.unwrap();
    log.mark(&events, Token(9), 9_000).await.unwrap(); // keeps its first time
    assert_eq!(
        log.cut_for_age(&events, 1_500).await.unwrap(),
        Some(Token(4))
    );
    assert_eq!(
        log.cut_for_age(&events, 2_000).await.unwrap(),
        Some(Token(9))
    );
    // Trimming forgets the marks it passed.
    log.trim(&events, Token(4), 100).await.unwrap();
    assert_eq!(log.cut_for_age(&events, 1_500).await.unwrap(), None);
}

async fn a_trim_survives_reopening_and_positions_stay(fixture: Fixture) {
    let events = stream("events");
    {
        let log = fixture.open().await;
        append(&log, 5).await; // 2..=6
        log.trim(&events, Token(4), 10).await.unwrap();
        log.close().await;
    }
    let log = fixture.open().await;
    assert_eq!(log.trimmed_upto(&events).await.unwrap(), Token(4));
    let positions = log.positions().await.unwrap();
    assert!(
        positions.contains(&(events.clone(), Token(6))),
        "{positions:?}"
    );
    assert_eq!(append(&log, 1).await, vec![Token(7)]);
    assert!(matches!(
        log.read_range(&events, Token(2), Token(7), 10).await,
        Err(LogError::Trimmed { .. })
    ));
}
