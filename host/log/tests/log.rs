//! The log on a real SQLite file and on a real PostgreSQL schema: token allocation, atomic
//! group appends, bounded reads that never cut a token, durability across reopening, and
//! concurrent appenders on PostgreSQL.
//!
//! Every case runs on both backends (`<case>::sqlite`, `<case>::postgres`). PostgreSQL is at
//! `STREAMHOST_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/test`); each test
//! gets a schema of its own, so tests run in parallel. A missing server fails the test.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::collections::BTreeSet;

#[macro_use]
mod support;

use streamhost_log::{AppendRequest, Backend, Log, ORIGIN};
use streamhost_proto::{RowJson, Token};
use support::{Fixture, rows, stream};

on_both_backends!(
    tokens_start_after_the_origin_and_shared_tokens_cover_a_request,
    an_unknown_stream_fails_the_whole_group,
    read_range_is_bounded_and_never_cuts_a_token,
    committed_rows_survive_reopening,
    a_group_larger_than_one_insert_commits_whole,
    rows_keep_their_exact_bytes,
    a_read_only_handle_reads_and_refuses_appends,
);

async fn tokens_start_after_the_origin_and_shared_tokens_cover_a_request(fixture: Fixture) {
    let log = fixture.open().await;
    assert_eq!(
        log.positions().await.unwrap(),
        vec![(stream("events"), ORIGIN), (stream("typing"), ORIGIN)]
    );
    let tokens = log
        .append(&[
            AppendRequest {
                stream: stream("events"),
                rows: rows(&["1", "2"]),
                shared_token: false,
            },
            AppendRequest {
                stream: stream("events"),
                rows: rows(&["3", "4", "5"]),
                shared_token: true,
            },
            AppendRequest {
                stream: stream("typing"),
                rows: rows(&["6"]),
                shared_token: false,
            },
        ])
        .await
        .unwrap();
    assert_eq!(
        tokens,
        vec![vec![Token(2), Token(3)], vec![Token(4); 3], vec![Token(2)]]
    );
    assert_eq!(
        log.positions().await.unwrap(),
        vec![(stream("events"), Token(4)), (stream("typing"), Token(2))]
    );
}

async fn an_unknown_stream_fails_the_whole_group(fixture: Fixture) {
    let log = fixture.open().await;
    let result = log
        .append(&[
            AppendRequest {
                stream: stream("events"),
                rows: rows(&["1"]),
                shared_token: false,
            },
            AppendRequest {
                stream: stream("nope"),
                rows: rows(&["2"]),
                shared_token: false,
            },
        ])
        .await;
    assert!(result.is_err());
    assert_eq!(
        log.positions().await.unwrap()[0],
        (stream("events"), ORIGIN),
        "nothing committed"
    );
}

async fn read_range_is_bounded_and_never_cuts_a_token(fixture: Fixture) {
    let log = fixture.open().await;
    log.append(&[
        AppendRequest {
            stream: stream("events"),
            rows: rows(&["\"a\"", "\"b\""]),
            shared_token: false,
        },
        AppendRequest {
            stream: stream("events"),
            rows: rows(&["\"c\"", "\"d\"", "\"e\""]),
            shared_token: true,
        },
        AppendRequest {
            stream: stream("events"),
            rows: rows(&["\"f\""]),
            shared_token: false,
        },
    ])
    .await
    .unwrap();
    let tokens = |u: &streamhost_log::Updates| u.rows.iter().map(|(t, _)| t.0).collect::<Vec<_>>();
    let first = log
        .read_range(&stream("events"), ORIGIN, Token(100), 3)
        .await
        .unwrap();
    assert_eq!(
        (tokens(&first), first.upto, first.limited),
        (vec![2, 3], Token(3), true)
    );
    let second = log
        .read_range(&stream("events"), first.upto, Token(100), 2)
        .await
        .unwrap();
    assert_eq!(
        (tokens(&second), second.upto, second.limited),
        (vec![4, 4, 4], Token(4), true)
    );
    let third = log
        .read_range(&stream("events"), second.upto, Token(100), 2)
        .await
        .unwrap();
    assert_eq!(
        (tokens(&third), third.upto, third.limited),
        (vec![5], Token(100), false)
    );
    let bounded = log
        .read_range(&stream("events"), ORIGIN, Token(3), 10)
        .await
        .unwrap();
    assert_eq!((tokens(&bounded), bounded.limited), (vec![2, 3], false));
    assert_eq!(second.rows[1].1.as_str(), "\"d\"");
}

async fn committed_rows_survive_reopening(fixture: Fixture) {
    {
        let log = fixture.open().await;
        log.append(&[AppendRequest {
            stream: stream("typing"),
            rows: rows(&["[1]"]),
            shared_token: false,
        }])
        .await
        .unwrap();
        log.close().await;
    }
    let log = fixture.open().await;
    assert_eq!(
        log.positions().await.unwrap()[1],
        (stream("typing"), Token(2))
    );
    let read = log
        .read_range(&stream("typing"), ORIGIN, Token(2), 10)
        .await
        .unwrap();
    assert_eq!(read.rows, vec![(Token(2), RowJson::parse(b"[1]").unwrap())]);
}

async fn a_group_larger_than_one_insert_commits_whole(fixture: Fixture) {
    let log = fixture.open().await;
    let many: Vec<String> = (0..2_500).map(|i| i.to_string()).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let tokens = log
        .append(&[AppendRequest {
            stream: stream("events"),
            rows: rows(&many),
            shared_token: false,
        }])
        .await
        .unwrap();
    assert_eq!(tokens[0].last(), Some(&Token(2_501)));
    log.close().await;
    let log = fixture.open().await;
    assert_eq!(
        log.positions().await.unwrap()[0],
        (stream("events"), Token(2_501))
    );
    let read = log
        .read_range(&stream("events"), ORIGIN, Token(2_501), 10_000)
        .await
        .unwrap();
    assert_eq!(read.rows.len(), 2_500);
    assert_eq!(read.rows[2_499].1.as_str(), "2499");
}

async fn rows_keep_their_exact_bytes(fixture: Fixture) {
    let log = fixture.open().await;
    let texts = [
        r#"["\u00e9\ud83d\ude00",1.5e+300,-0.0,{"a":null}]"#,
        r#""tab\tquote\"backslash\\nul\u0000""#,
        "12345678901234567890123",
    ];
    log.append(&[AppendRequest {
        stream: stream("events"),
        rows: rows(&texts),
        shared_token: true,
    }])
    .await
    .unwrap();
    let read = log
        .read_range(&stream("events"), ORIGIN, Token(2), 10)
        .await
        .unwrap();
    let got: Vec<&str> = read.rows.iter().map(|(_, r)| r.as_str()).collect();
    let want: Vec<String> = rows(&texts).iter().map(|r| r.as_str().to_owned()).collect();
    assert_eq!(got, want);
}

async fn a_read_only_handle_reads_and_refuses_appends(fixture: Fixture) {
    let log = fixture.open().await;
    log.append(&[AppendRequest {
        stream: stream("events"),
        rows: rows(&["1", "2"]),
        shared_token: false,
    }])
    .await
    .unwrap();
    let url = match &fixture {
        Fixture::Sqlite(dir) => format!("sqlite://{}", dir.path().join("log.sqlite").display()),
        Fixture::Postgres(schema) => schema.url(),
    };
    let reader = Log::open_read_only(&url).await.unwrap();
    let read = reader
        .read_range(&stream("events"), ORIGIN, Token(3), 10)
        .await
        .unwrap();
    assert_eq!(read.rows.len(), 2);
    assert!(
        reader
            .append(&[AppendRequest {
                stream: stream("events"),
                rows: rows(&["3"]),
                shared_token: false,
            }])
            .await
            .is_err()
    );
}

#[test]
fn a_url_of_another_database_is_refused_without_repeating_it() {
    let err = Backend::of_url("mysql://root:secret@db/x")
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"mysql\""), "{err}");
    assert!(!err.contains("secret"), "{err}");
    assert_eq!(Backend::of_url("sqlite:x.db").unwrap(), Backend::Sqlite);
    assert_eq!(
        Backend::of_url("postgresql://u@h/d").unwrap(),
        Backend::Postgres
    );
    for (url, shown) in [
        (
            "postgres://u:pw@h:5432/d?x=1",
            "postgres://u:***@h:5432/d?x=1",
        ),
        (
            "postgres://u@h/d?password=pw&x=1",
            "postgres://u@h/d?password=***&x=1",
        ),
        ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
        (
            "rediss://:s3cret@redis:6380/2",
            "rediss://:***@redis:6380/2",
        ),
        ("redis://user:p@ss@redis/1", "redis://user:***@redis/1"),
        (
            "redis+unix:///run/r.sock?db=1&pass=s3cret",
            "redis+unix:///run/r.sock?db=1&pass=***",
        ),
        ("sqlite:x.db", "sqlite:x.db"),
    ] {
        assert_eq!(streamhost_log::redact_url(url), shown);
    }
}

/// Two handles (as two writer processes would have) append to one stream from several tasks
/// each: every answer's tokens are fresh and contiguous, and the log holds every row once,
/// with no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appenders_on_postgres_never_share_or_skip_a_token() {
    let fixture = Fixture::new(Backend::Postgres).await;
    let handles = [fixture.open().await, fixture.open().await];
    let mut tasks = Vec::new();
    for (h, log) in handles.iter().enumerate() {
        for t in 0..4 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                let mut answers = Vec::new();
                for i in 0..25 {
                    let request = |r: usize, n: usize, shared| AppendRequest {
                        stream: stream("events"),
                        rows: rows(
                            &(0..n)
                                .map(|k| format!("\"{h}-{t}-{i}-{r}-{k}\""))
                                .collect::<Vec<_>>()
                                .iter()
                                .map(String::as_str)
                                .collect::<Vec<_>>(),
                        ),
                        shared_token: shared,
                    };
                    let tokens = log
                        .append(&[request(0, 1 + i % 3, i % 5 == 4), request(1, 2, false)])
                        .await
                        .unwrap();
                    answers.push(tokens);
                }
                answers
            }));
        }
    }
    let mut seen = BTreeSet::new();
    let mut rows_written = 0;
    for task in tasks {
        let mut last = Token(0);
        for answer in task.await.unwrap() {
            for tokens in answer {
                rows_written += tokens.len();
                let first = tokens[0];
                assert!(first > last, "tokens go forward for one appender");
                let mut distinct = tokens.clone();
                distinct.dedup();
                for token in distinct {
                    assert!(seen.insert(token), "token {token} given twice");
                }
                last = *tokens.last().unwrap();
            }
        }
    }
    let max = *seen.last().unwrap();
    assert_eq!(
        seen.len() as i64,
        max.0 - ORIGIN.0,
        "tokens 2..={max} with no gap"
    );
    let read = handles[0]
        .read_range(&stream("events"), ORIGIN, max, 1_000_000)
        .await
        .unwrap();
    assert_eq!(read.rows.len(), rows_written);
    let distinct: BTreeSet<&str> = read.rows.iter().map(|(_, r)| r.as_str()).collect();
    assert_eq!(distinct.len(), rows_written, "no row twice");
    // Both handles learnt the other's tokens.
    for log in &handles {
        log.append(&[AppendRequest {
            stream: stream("events"),
            rows: rows(&["\"last\""]),
            shared_token: false,
        }])
        .await
        .unwrap();
    }
    assert_eq!(
        handles[1].positions().await.unwrap()[0],
        (stream("events"), Token(max.0 + 2))
    );
}
