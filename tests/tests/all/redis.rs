//! Redis replication mode against the real Redis at `STREAMHOST_TEST_REDIS` (default
//! `redis://127.0.0.1:6379`); each test has its own channel (server name), so they run in
//! parallel on a shared Redis (a test that kills connections starts a Redis of its own). A
//! test fails, never skips, when Redis does not answer.

use std::time::Duration;

use streamhost_integration_tests::redis::{
    TcpProxy, publish, redis_addr, redis_config, redis_url, unique_server_name,
};
use streamhost_integration_tests::redis_auth::PasswordRedis;
use streamhost_integration_tests::redis_tls::TlsRedis;
use streamhost_integration_tests::{TestReader, TestWriter, metric, wait_until};

use crate::replication::{Written, assert_reader_has_exactly, write_rows};

/// A writer serving TCP and Redis (through `url`) on channel `server_name`.
async fn redis_writer(streams: &[&str], server_name: &str, url: &str) -> TestWriter {
    TestWriter::spawn_with(streams, |c| {
        c.server_name = server_name.to_owned();
        c.redis = Some(redis_config(url));
    })
    .await
}

/// A recording reader following `writer` over Redis (through `url`).
async fn redis_reader(writer: &TestWriter, name: &str, url: &str) -> TestReader {
    let server_name = writer.config.server_name.clone();
    let url = url.to_owned();
    TestReader::spawn_with(writer, name, None, move |c| {
        c.server_name = Some(server_name);
        c.redis = Some(redis_config(&url));
        // Nothing listens here: a reader in Redis mode must not use TCP.
        c.writer = "127.0.0.1:1".into();
    })
    .await
}

async fn metrics(reader: &TestReader) -> String {
    reader.get("/metrics").await.1
}

fn extend(written: &mut Written, more: Written) {
    for (stream, rows) in more {
        written.entry(stream).or_default().extend(rows);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_redis_readers_get_exactly_the_100k_written_rows() {
    let url = redis_url().await;
    let streams = ["events", "receipts", "typing", "caches"];
    let server_name = unique_server_name("100k");
    let writer = redis_writer(&streams, &server_name, &url).await;
    let early = redis_reader(&writer, "early", &url).await;
    // Wait for the subscription, or the first rows go by before the reader listens (they
    // would still arrive, by catch-up, but this test is about the live path).
    wait_until(Duration::from_secs(10), "early subscribed", || async {
        metric(&metrics(&early).await, "streamhost_reader_redis_connected") == Some(1.0)
    })
    .await;
    let mut written = write_rows(&writer, &streams, 12_500, 500).await;
    let late = redis_reader(&writer, "late", &url).await;
    extend(
        &mut written,
        write_rows(&writer, &streams, 12_500, 500).await,
    );
    assert_eq!(written.values().map(Vec::len).sum::<usize>(), 100_000);
    for reader in [&early, &late] {
        assert_reader_has_exactly(reader, &written, Duration::from_secs(120)).await;
        assert_eq!(reader.reader().status().reconnects, 0);
    }
    let m = metrics(&early).await;
    assert!(
        m.contains("streamhost_reader_redis_malformed_total 0"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_mid_stream_loses_and_repeats_no_row() {
    let url = redis_url().await;
    let streams = ["events", "receipts"];
    let server_name = unique_server_name("outage");
    // The writer and one reader go through the proxy; a second reader goes straight to Redis
    // and so sees only the writer's side of the outage.
    let proxy = TcpProxy::start(redis_addr(&url)).await;
    let writer = redis_writer(&streams, &server_name, &proxy.url()).await;
    let behind = redis_reader(&writer, "behind-proxy", &proxy.url()).await;
    let direct = redis_reader(&writer, "direct", &url).await;
    for reader in [&behind, &direct] {
        wait_until(Duration::from_secs(10), "subscribed", || async {
            metric(&metrics(reader).await, "streamhost_reader_redis_connected") == Some(1.0)
        })
        .await;
    }
    let mut written = write_rows(&writer, &streams, 2_000, 100).await;
    // Cut while rows are flowing.
    let (more, ()) = tokio::join!(write_rows(&writer, &streams, 3_000, 50), async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        proxy.cut();
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        proxy.restore();
    });
    extend(&mut written, more);
    extend(
        &mut written,
        write_rows(&writer, &streams, 1_000, 100).await,
    );
    for reader in [&behind, &direct] {
        assert_reader_has_exactly(reader, &written, Duration::from_secs(60)).await;
    }
    assert!(
        behind.reader().status().reconnects >= 1,
        "the reader behind the proxy reconnected"
    );
    let m = metrics(&behind).await;
    assert!(
        m.contains("streamhost_reader_redis_errors_total{reason=\"closed\"}"),
        "{m}"
    );
    let (_, w) = writer
        .client()
        .send(hyper::Method::GET, "/metrics", bytes::Bytes::new())
        .await
        .unwrap();
    let w = String::from_utf8_lossy(&w);
    assert!(w.contains("streamhost_redis_reconnects_total"), "{w}");
    assert!(!w.contains("streamhost_redis_reconnects_total 0"), "{w}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_redis_message_is_dropped_and_counted_and_the_reader_goes_on() {
    let url = redis_url().await;
    let server_name = unique_server_name("malformed");
    let writer = redis_writer(&["events"], &server_name, &url).await;
    let reader = redis_reader(&writer, "r", &url).await;
    wait_until(Duration::from_secs(10), "subscribed", || async {
        metric(&metrics(&reader).await, "streamhost_reader_redis_connected") == Some(1.0)
    })
    .await;
    let mut written = write_rows(&writer, &["events"], 100, 10).await;
    for bad in [
        &b"RDATA events master notanumber [1]"[..],
        b"NOSUCHCOMMAND x",
        b"POSITION events",
        b"\xff\xfe",
    ] {
        publish(&url, &server_name, bad).await;
    }
    extend(
        &mut written,
        write_rows(&writer, &["events"], 100, 10).await,
    );
    assert_reader_has_exactly(&reader, &written, Duration::from_secs(30)).await;
    wait_until(Duration::from_secs(10), "4 malformed counted", || async {
        metrics(&reader)
            .await
            .contains("streamhost_reader_redis_malformed_total 4")
    })
    .await;
    assert_eq!(reader.reader().status().reconnects, 0, "no reconnect");
}

/// Redis closes a subscriber whose output buffer passes `client-output-buffer-limit pubsub`;
/// `CLIENT KILL TYPE pubsub` closes the subscribed connections the same way, and only them
/// (the publishing connections stay). On a Redis of the test's own, so no other test's
/// subscribers are touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_redis_drops_is_taken_again_with_no_row_lost_or_repeated() {
    let redis = TlsRedis::start(false).await;
    let url = redis.plain_url();
    let streams = ["events", "receipts"];
    let server_name = unique_server_name("dropped");
    let writer = redis_writer(&streams, &server_name, &url).await;
    let reader = redis_reader(&writer, "dropped", &url).await;
    wait_until(Duration::from_secs(10), "subscribed", || async {
        metric(&metrics(&reader).await, "streamhost_reader_redis_connected") == Some(1.0)
    })
    .await;
    let mut written = write_rows(&writer, &streams, 1_000, 50).await;
    let (more, killed) = tokio::join!(write_rows(&writer, &streams, 2_000, 50), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        redis::cmd("CLIENT")
            .arg(&["KILL", "TYPE", "pubsub"])
            .query_async::<i64>(&mut conn)
            .await
            .unwrap()
    });
    assert!(
        killed >= 2,
        "the writer's and the reader's subscriptions: {killed}"
    );
    extend(&mut written, more);
    extend(&mut written, write_rows(&writer, &streams, 500, 50).await);
    assert_reader_has_exactly(&reader, &written, Duration::from_secs(60)).await;
    assert!(reader.reader().status().reconnects >= 1);
    let m = metrics(&reader).await;
    assert!(
        metric(
            &m,
            r#"streamhost_reader_redis_errors_total{reason="closed"}"#
        ) >= Some(1.0),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_wanting_passwords_is_followed_over_tcp_and_a_unix_socket_with_any_database() {
    let redis = PasswordRedis::start().await;
    let server_name = unique_server_name("passwords");
    // The writer logs in as the default user on database 3; pub/sub ignores the database.
    let writer = redis_writer(&["events"], &server_name, &redis.url(3)).await;
    let by_socket = redis_reader(
        &writer,
        "acl-user-on-the-socket",
        &format!(
            "redis+unix://{}?db=5&user={}&pass={}",
            redis.socket().display(),
            PasswordRedis::USER,
            PasswordRedis::USER_PASSWORD
        ),
    )
    .await;
    let by_tcp = redis_reader(&writer, "default-user-on-tcp", &redis.url(0)).await;
    let wrong = redis_reader(
        &writer,
        "wrong-password",
        &format!("redis://:not-the-password@127.0.0.1:{}", redis.port),
    )
    .await;
    let written = write_rows(&writer, &["events"], 500, 50).await;
    for reader in [&by_socket, &by_tcp] {
        assert_reader_has_exactly(reader, &written, Duration::from_secs(60)).await;
    }

    assert_refused_at_connect(&wrong, &["AUTH", "WRONGPASS"], Duration::from_secs(10)).await;
}

/// `reader`'s Redis connection is refused at every attempt: two or more attempts, each
/// counted as `reason="connect"`, the last error holding every one of `expected`, never
/// connected, and no row.
pub(crate) async fn assert_refused_at_connect(
    reader: &TestReader,
    expected: &[&str],
    wait: Duration,
) {
    wait_until(wait, "a refused attempt and a retry", || async {
        reader.reader().status().reconnects >= 2
    })
    .await;
    let status = reader.reader().status();
    let error = status.connection.last_error.clone().unwrap_or_default();
    assert!(
        expected.iter().all(|e| error.contains(e)),
        "{}: {error}",
        status.name
    );
    let m = metrics(reader).await;
    assert_eq!(metric(&m, "streamhost_reader_redis_connected"), Some(0.0));
    assert!(
        metric(
            &m,
            r#"streamhost_reader_redis_errors_total{reason="connect"}"#
        ) >= Some(2.0),
        "{m}"
    );
    assert!(
        reader.rows("events").await.is_empty(),
        "{}: a row came through",
        status.name
    );
}
