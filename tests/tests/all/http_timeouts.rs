//! Both processes' HTTP servers close a connection whose request head does not arrive within
//! the listener's `handshake_timeout_ms`: one that sends nothing, one that stops mid-head, and
//! a kept-alive one left idle after its answer. (A body that stops is cut by the body-read
//! timeout: `http::tests` in the server crate, on a paused clock.)

use std::net::SocketAddr;
use std::time::Duration;

use streamhost_integration_tests::{TestReader, TestWriter};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The listeners' handshake timeout here.
const TIMEOUT: Duration = Duration::from_millis(1_000);

/// Slack on top of the timeout for a loaded machine.
const MARGIN: Duration = Duration::from_secs(5);

/// Reads from `socket` until the server closes it, after `started`; the time that took.
/// Answers on the way are returned too.
async fn read_until_closed(
    addr: SocketAddr,
    socket: &mut TcpStream,
    started: Instant,
) -> (Duration, Vec<u8>) {
    let deadline = started + TIMEOUT + MARGIN;
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, socket.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => return (started.elapsed(), received),
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
            Err(_) => panic!("{addr}: still open {:?} after the head", started.elapsed()),
        }
    }
}

/// Connects to `addr`, sends `head`, and waits until the server closes the connection; the
/// time that took.
async fn time_to_close(addr: SocketAddr, head: &[u8]) -> Duration {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    socket.write_all(head).await.unwrap();
    read_until_closed(addr, &mut socket, started).await.0
}

/// Sends a whole request on a kept-alive connection, then nothing: the time from its answer
/// to the close.
async fn idle_after_an_answer(addr: SocketAddr) -> Duration {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: streamhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    // The answer has a length, so the connection stays open after it: read up to its end.
    while !answered(&answer) {
        let n = tokio::time::timeout(MARGIN, socket.read(&mut buffer))
            .await
            .expect("an answer")
            .unwrap();
        assert!(n > 0, "{addr}: closed before answering");
        answer.extend_from_slice(&buffer[..n]);
    }
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{addr}: {answer:?}");
    let (took, more) = read_until_closed(addr, &mut socket, Instant::now()).await;
    assert!(more.is_empty(), "{addr}: sent more: {more:?}");
    took
}

/// Whether `answer` holds a whole answer with a `content-length` body.
fn answered(answer: &[u8]) -> bool {
    let text = String::from_utf8_lossy(answer);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")?
                .parse()
                .ok()
        })
        .expect("a content-length");
    body.len() >= length
}

/// Every connection is closed by the timeout, not at once (the server's clock starts at its
/// accept or its answer, which a loaded machine may run a little before this side sees it).
fn check_took(addr: SocketAddr, took: Duration) {
    assert!(
        took >= TIMEOUT / 2,
        "{addr}: closed after {took:?}, long before the {TIMEOUT:?} timeout"
    );
}

async fn servers() -> (TestWriter, TestReader) {
    let millis = TIMEOUT.as_millis() as u64;
    let writer =
        TestWriter::spawn_with(&["events"], |c| c.http.handshake_timeout_ms = millis).await;
    let reader = TestReader::spawn_with(&writer, "r", None, |c| {
        c.http.handshake_timeout_ms = millis;
    })
    .await;
    (writer, reader)
}

async fn check_closed(head: &'static [u8]) {
    let (writer, reader) = servers().await;
    let addrs = [writer.http_addr(), reader.reader().http_addr()];
    let closes = addrs.map(|addr| tokio::spawn(time_to_close(addr, head)));
    for (addr, close) in addrs.into_iter().zip(closes) {
        check_took(addr, close.await.unwrap());
    }
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed() {
    check_closed(b"").await;
}

#[tokio::test]
async fn a_connection_that_stops_mid_head_is_closed() {
    check_closed(b"GET /v1/status HTTP/1.1\r\nhost: streamhost\r\n").await;
}

#[tokio::test]
async fn a_kept_alive_connection_left_idle_is_closed() {
    let (writer, reader) = servers().await;
    let addrs = [writer.http_addr(), reader.reader().http_addr()];
    let closes = addrs.map(|addr| tokio::spawn(idle_after_an_answer(addr)));
    for (addr, close) in addrs.into_iter().zip(closes) {
        check_took(addr, close.await.unwrap());
    }
}
