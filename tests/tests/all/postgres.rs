//! The writer's log on PostgreSQL under faults: connections dropped by the server in the
//! middle of appends (what a PostgreSQL restart does to a client) cost the requests in flight
//! a 503 and nothing else: every acknowledged row stays, no row is written twice, appends
//! succeed again by themselves, readers get exactly the log, and logs and metrics say so.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyper::{Method, StatusCode};
use serde_json::json;
use sqlx::PgConnection;
use streamhost_integration_tests::{TestReader, TestWriter, metric, rows_body, stream};
use streamhost_log::{Log, ORIGIN};
use streamhost_proto::{RowJson, Token};

/// Rounds of "block the writer inside an append, then drop its connections".
const ROUNDS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_recover_without_loss_or_duplicates_when_postgres_drops_the_writers_connections() {
    let writer = TestWriter::spawn_postgres(&["events"], |_| {}).await;
    let schema = writer.schema().expect("a PostgreSQL writer");
    let reader = TestReader::spawn(&writer, "follower").await;

    // Three clients append unique rows until told to stop, keeping what was acknowledged
    // and counting 503s.
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..3 {
        let (client, stop) = (writer.client(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut acknowledged: Vec<(Token, RowJson)> = Vec::new();
            let mut unavailable = 0;
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let rows: Vec<_> = (0..1 + i % 5).map(|k| json!(["row", c, i, k])).collect();
                i += 1;
                let (status, body) = client
                    .send(Method::POST, "/v1/streams/events/rows", rows_body(&rows))
                    .await
                    .expect("the writer answers");
                let answer: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    assert_eq!(answer["errcode"], "M_UNAVAILABLE", "{answer}");
                    assert!(
                        answer["error"].as_str().unwrap().contains("log database"),
                        "{answer}"
                    );
                    unavailable += 1;
                    continue;
                }
                assert_eq!(status, StatusCode::OK, "{answer}");
                let tokens = answer["tokens"].as_array().unwrap();
                for (token, row) in tokens.iter().zip(&rows) {
                    acknowledged.push((
                        Token(token.as_i64().unwrap()),
                        RowJson::parse(row.to_string().as_bytes()).unwrap(),
                    ));
                }
            }
            (acknowledged, unavailable)
        }));
    }

    let mut test = schema.connect().await;
    for _ in 0..ROUNDS {
        // Hold the append lock of `events`, wait until the writer's appender is blocked on it
        // inside its transaction, then drop every connection of the writer.
        query(
            &mut test,
            "SELECT pg_advisory_lock(hashtextextended(current_schema() || '/events', 0))",
        )
        .await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 \
                 AND wait_event_type = 'Lock'",
            )
            .bind(schema.name())
            .fetch_one(&mut test)
            .await
            .unwrap();
            if waiting > 0 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the appender never waited on the lock"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let terminated: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = $1",
        )
        .bind(schema.name())
        .fetch_all(&mut test)
        .await
        .unwrap();
        assert!(!terminated.is_empty(), "the writer had connections");
        query(&mut test, "SELECT pg_advisory_unlock_all()").await;
        // Appends succeed again before the next round.
        let before = writer.append("events", &[json!("probe")]).await;
        assert!(!before.is_empty());
    }
    stop.store(true, Ordering::SeqCst);
    let mut acknowledged: Vec<(Token, RowJson)> = Vec::new();
    let mut unavailable = 0;
    for client in clients {
        let (rows, failed) = client.await.unwrap();
        acknowledged.extend(rows);
        unavailable += failed;
    }
    assert!(
        unavailable >= ROUNDS,
        "each round failed an append: {unavailable}"
    );

    // The log: every acknowledged row at its token, no row twice, no gap.
    let log = Log::open_read_only(&schema.url()).await.unwrap();
    let last = writer.append("events", &[json!("last")]).await[0];
    let all = log
        .read_range(&stream("events"), ORIGIN, last, 10_000_000)
        .await
        .unwrap();
    let in_log: BTreeSet<(Token, String)> = all
        .rows
        .iter()
        .map(|(t, r)| (*t, r.as_str().to_owned()))
        .collect();
    let texts: BTreeSet<&str> = all.rows.iter().map(|(_, r)| r.as_str()).collect();
    assert_eq!(
        texts.len(),
        all.rows.len() - (ROUNDS - 1),
        "no row twice (but the {ROUNDS} identical probes)"
    );
    for (token, row) in &acknowledged {
        assert!(
            in_log.contains(&(*token, row.as_str().to_owned())),
            "acknowledged row {row} at {token} is in the log"
        );
    }
    let tokens: BTreeSet<Token> = all.rows.iter().map(|(t, _)| *t).collect();
    assert_eq!(
        tokens.len() as i64,
        last.0 - ORIGIN.0,
        "tokens 2..={last} without a gap"
    );

    // The reader has exactly the log.
    reader
        .wait_for("events", last, Duration::from_secs(60))
        .await;
    let delivered: Vec<(Token, RowJson)> = reader
        .rows("events")
        .await
        .into_iter()
        .map(|(_, t, r)| (t, r))
        .collect();
    assert!(delivered == all.rows, "the reader has exactly the log");

    // Metrics say what happened.
    let (_, metrics) = writer
        .client()
        .send(Method::GET, "/metrics", bytes::Bytes::new())
        .await
        .unwrap();
    let metrics = String::from_utf8(metrics.to_vec()).unwrap();
    let failures = metric(&metrics, "streamhost_append_failures_total");
    assert!(failures >= Some(ROUNDS as f64), "{metrics}");
    assert_eq!(
        metric(&metrics, "streamhost_log_database_up"),
        Some(1.0),
        "{metrics}"
    );
}

async fn query(conn: &mut PgConnection, sql: &'static str) {
    sqlx::query(sql).execute(conn).await.unwrap();
}
