//! The log on a real SQLite file: token allocation, atomic group appends, bounded reads that
//! never cut a token, and durability across reopening.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use streamhost_log::{AppendRequest, Log, ORIGIN};
use streamhost_proto::{InstanceName, RowJson, StreamName, Token};

fn stream(name: &str) -> StreamName {
    StreamName::new(name).unwrap()
}

fn rows(values: &[&str]) -> Vec<RowJson> {
    values
        .iter()
        .map(|v| RowJson::parse(v.as_bytes()).unwrap())
        .collect()
}

async fn open(dir: &tempfile::TempDir) -> Log {
    let log = Log::open(
        &dir.path().join("log.sqlite"),
        InstanceName::new("master").unwrap(),
    )
    .await
    .unwrap();
    log.declare_streams(&[stream("events"), stream("typing")])
        .await
        .unwrap();
    log
}

#[tokio::test]
async fn tokens_start_after_the_origin_and_shared_tokens_cover_a_request() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir).await;
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

#[tokio::test]
async fn an_unknown_stream_fails_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir).await;
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

#[tokio::test]
async fn read_range_is_bounded_and_never_cuts_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir).await;
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

#[tokio::test]
async fn committed_rows_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(&dir).await;
        log.append(&[AppendRequest {
            stream: stream("typing"),
            rows: rows(&["[1]"]),
            shared_token: false,
        }])
        .await
        .unwrap();
        log.close().await;
    }
    let log = open(&dir).await;
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

#[tokio::test]
async fn a_group_larger_than_one_insert_commits_whole() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir).await;
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
    let log = open(&dir).await;
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
