//! The writer's replication server seen from a raw TCP client: handshake, RDATA and batch
//! runs, pings, and every way a connection ends with ERROR.

use std::time::Duration;

use bytes::Bytes;
use hyper::Method;
use serde_json::json;
use streamhost_integration_tests::TestWriter;
use streamhost_integration_tests::raw::RawClient;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn handshake_then_positions_on_replicate_then_live_rows_with_batch_runs() {
    let writer = TestWriter::spawn_with(&["events", "receipts"], |c| {
        c.server_name = "example.org".into()
    })
    .await;
    writer.append("events", &[json!(["before"])]).await; // token 2
    let mut client = RawClient::connect(writer.replication_addr()).await;
    assert_eq!(client.next_line(WAIT).await.unwrap(), "SERVER example.org");
    assert!(client.next_line(WAIT).await.unwrap().starts_with("PING "));
    client.send("NAME test-client").await;
    client.send("PING 1").await;
    client.send("REPLICATE ").await;
    assert_eq!(
        client.next_line(WAIT).await.unwrap(),
        "POSITION events master 2 2"
    );
    assert_eq!(
        client.next_line(WAIT).await.unwrap(),
        "POSITION receipts master 1 1"
    );

    writer.append("events", &[json!(["é", 1])]).await;
    assert_eq!(
        client.next_line(WAIT).await.unwrap(),
        r#"RDATA events master 3 ["\u00e9",1]"#
    );
    writer
        .client()
        .append("receipts", Bytes::from_static(b"[[1],[2],[3]]"), true)
        .await
        .unwrap();
    assert_eq!(
        client.next_line(WAIT).await.unwrap(),
        "RDATA receipts master batch [1]"
    );
    assert_eq!(
        client.next_line(WAIT).await.unwrap(),
        "RDATA receipts master batch [2]"
    );
    assert_eq!(
        client.next_line(WAIT).await.unwrap(),
        "RDATA receipts master 2 [3]"
    );
}

#[tokio::test]
async fn garbage_gets_error_and_close_while_another_client_keeps_streaming() {
    let writer = TestWriter::spawn(&["events"]).await;
    let mut good = RawClient::connect(writer.replication_addr()).await;
    good.send("REPLICATE ").await;
    good.expect(WAIT, |l| l == "POSITION events master 1 1")
        .await;

    let cases: &[(&[u8], &str)] = &[
        (b"FOO bar\n", "ERROR failed to parse line:"),
        (
            b"RDATA events master 2 [1]\n",
            "ERROR invalid command: RDATA",
        ),
        (
            b"POSITION events master 1 2\n",
            "ERROR invalid command: POSITION",
        ),
        // Arguments are parsed before the direction is checked, as in Synapse.
        (b"POSITION events master 1\n", "ERROR failed to parse line:"),
        (
            b"USER_SYNC a @u:x DEV maybe 1\n",
            "ERROR failed to parse line:",
        ),
        (b"PING \xff\xfe\n", "ERROR failed to parse line:"),
    ];
    for (garbage, expected) in cases {
        let mut bad = RawClient::connect(writer.replication_addr()).await;
        bad.send_raw(garbage).await;
        let lines = bad.read_to_close(WAIT).await;
        let last = lines.last().expect("an ERROR before the close");
        assert!(last.starts_with(expected), "{garbage:?} got {last:?}");
    }
    let mut long = RawClient::connect(writer.replication_addr()).await;
    long.send_raw(&vec![b'A'; 20_000]).await;
    assert_eq!(
        long.read_to_close(WAIT).await.last().unwrap(),
        "ERROR Line length exceeded"
    );

    writer.append("events", &[json!("still")]).await;
    good.expect(WAIT, |l| l == r#"RDATA events master 2 "still""#)
        .await;

    let (_, body) = writer
        .client()
        .send(Method::GET, "/metrics", Bytes::new())
        .await
        .unwrap();
    let metrics = String::from_utf8(body.to_vec()).unwrap();
    for reason in [
        "unknown_command",
        "invalid_command",
        "malformed",
        "not_utf8",
        "line_too_long",
    ] {
        assert!(
            metrics.contains(&format!(
                "streamhost_replication_errors_total{{reason=\"{reason}\"}}"
            )),
            "{reason}: {metrics}"
        );
    }
}

#[tokio::test]
async fn worker_commands_are_accepted_and_counted() {
    let writer = TestWriter::spawn(&["events"]).await;
    let mut client = RawClient::connect(writer.replication_addr()).await;
    for line in [
        "USER_SYNC 7c8f @alice:example.com DEV start 1700000000123",
        "CLEAR_USER_SYNC 7c8f",
        "FEDERATION_ACK federation_sender1 1234",
        r#"USER_IP @alice:example.com ["syt","127.0.0.1","curl",null,1]"#,
        "REMOTE_SERVER_UP matrix.org",
        r#"LOCK_RELEASED ["master","pusher_lock","@alice:example.com"]"#,
        "REPLICATE ",
    ] {
        client.send(line).await;
    }
    client
        .expect(WAIT, |l| l.starts_with("POSITION events"))
        .await;
    let (_, body) = writer
        .client()
        .send(Method::GET, "/metrics", Bytes::new())
        .await
        .unwrap();
    let metrics = String::from_utf8(body.to_vec()).unwrap();
    for name in [
        "USER_SYNC",
        "CLEAR_USER_SYNC",
        "FEDERATION_ACK",
        "USER_IP",
        "REMOTE_SERVER_UP",
        "LOCK_RELEASED",
    ] {
        assert!(
            metrics.contains(&format!(
                "streamhost_replication_commands_in_total{{command=\"{name}\"}} 1"
            )),
            "{name}: {metrics}"
        );
    }
}

#[tokio::test]
async fn idle_connections_get_pings_and_silent_pinging_peers_time_out() {
    let writer = TestWriter::spawn_with(&["events"], |c| {
        c.ping_interval_ms = 100;
        c.ping_timeout_ms = 600;
    })
    .await;
    // A peer that never PINGs is never ping-timed-out (Synapse: a human with netcat), but is
    // pinged.
    let mut quiet = RawClient::connect(writer.replication_addr()).await;
    quiet.send("NAME quiet").await;
    for _ in 0..8 {
        assert!(quiet.next_line(WAIT).await.unwrap().starts_with(['S', 'P']));
    }
    // A peer that PINGed and then goes silent is closed with ERROR ping timeout.
    let mut silent = RawClient::connect(writer.replication_addr()).await;
    silent.send("PING 1").await;
    let lines = silent.read_to_close(WAIT).await;
    assert_eq!(lines.last().unwrap(), "ERROR ping timeout");
    assert!(
        lines.iter().filter(|l| l.starts_with("PING ")).count() >= 3,
        "{lines:?}"
    );
}

/// A peer must send `NAME` or `REPLICATE` within the listener's handshake timeout; what it
/// sends before (a `PING`, as Synapse's workers send after `NAME`) is fine but does not count.
#[tokio::test]
async fn a_peer_that_sends_no_name_or_replicate_in_time_is_closed_with_error() {
    let timeout = Duration::from_millis(500);
    let writer = TestWriter::spawn_with(&["events"], |c| {
        c.replication.handshake_timeout_ms = timeout.as_millis() as u64;
        c.ping_interval_ms = 100;
    })
    .await;
    let addr = writer.replication_addr();
    let expected = "ERROR handshake timeout: no NAME or REPLICATE within 500 ms";
    for before in [None, Some("PING 1"), Some("USER_SYNC w1 @u:x DEV start 1")] {
        let mut peer = RawClient::connect(addr).await;
        let started = tokio::time::Instant::now();
        if let Some(line) = before {
            peer.send(line).await;
        }
        let lines = peer.read_to_close(WAIT).await;
        let took = started.elapsed();
        assert_eq!(
            lines.last().map(String::as_str),
            Some(expected),
            "{before:?}: {lines:?}"
        );
        assert!(took >= timeout * 4 / 5, "{before:?}: closed after {took:?}");
    }
    // NAME or REPLICATE in time (after other commands, too): the connection stays, pinged.
    for introduction in [
        &["NAME w1"][..],
        &["PING 1", "REPLICATE "],
        &["PING 1", "NAME w2"],
    ] {
        let mut peer = RawClient::connect(addr).await;
        for line in introduction {
            peer.send(line).await;
        }
        let started = tokio::time::Instant::now();
        while started.elapsed() < timeout * 3 {
            let line = peer.next_line(WAIT).await;
            assert!(
                line.as_deref()
                    .is_some_and(|l| ["SERVER ", "PING ", "POSITION "]
                        .iter()
                        .any(|p| l.starts_with(p))),
                "{introduction:?}: {line:?}"
            );
            // PING back, as a client does, so the ping timeout is not what is tested.
            peer.send("PING 2").await;
        }
    }
    let (_, body) = writer
        .client()
        .send(Method::GET, "/metrics", Bytes::new())
        .await
        .unwrap();
    let metrics = String::from_utf8(body.to_vec()).unwrap();
    assert!(
        metrics.contains("streamhost_replication_errors_total{reason=\"handshake_timeout\"} 3"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_client_that_stops_reading_gets_failed_to_keep_up() {
    let writer = TestWriter::spawn_with(&["events"], |c| c.max_pending_commands = 200).await;
    let mut stalled = RawClient::connect(writer.replication_addr()).await;
    stalled.send("REPLICATE ").await;
    let mut fine = RawClient::connect(writer.replication_addr()).await;
    fine.send("REPLICATE ").await;
    fine.expect(WAIT, |l| l.starts_with("POSITION events"))
        .await;

    // Enough data to fill the kernel's socket buffers many times over.
    let row = json!(["x".repeat(1000)]);
    let rows: Vec<_> = (0..1000).map(|_| row.clone()).collect();
    let reader = tokio::spawn(async move {
        let mut seen = 0;
        while seen < 30_000 {
            let line = fine
                .next_line(WAIT)
                .await
                .expect("the reading client stays connected");
            if line.starts_with("RDATA") {
                seen += 1;
            }
        }
        seen
    });
    for _ in 0..30 {
        writer.append("events", &rows).await;
    }
    assert_eq!(reader.await.unwrap(), 30_000);

    let lines = stalled.read_to_close(Duration::from_secs(30)).await;
    assert_eq!(lines.last().unwrap(), "ERROR Failed to keep up");
    // Every line before it is whole.
    assert!(lines.iter().all(|l| l.starts_with("SERVER")
        || l.starts_with("PING")
        || l.starts_with("POSITION")
        || l.starts_with("RDATA events master ")
        || l.starts_with("ERROR")));
}
