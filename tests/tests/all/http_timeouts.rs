//! Both processes' HTTP servers close a connection whose request head does not arrive within
//! the header-read timeout: one that sends nothing, and one that stops mid-head.

use std::net::SocketAddr;
use std::time::Duration;

use streamhost_integration_tests::{TestReader, TestWriter};
use streamhost_server::http::HEADER_READ_TIMEOUT;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Slack on top of the timeout for a loaded machine.
const MARGIN: Duration = Duration::from_secs(5);

/// Connects to `addr`, sends `head`, and waits until the server closes the connection; the
/// time that took.
async fn time_to_close(addr: SocketAddr, head: &[u8]) -> Duration {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    socket.write_all(head).await.unwrap();
    let deadline = started + HEADER_READ_TIMEOUT + MARGIN;
    let mut buffer = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, socket.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("{addr}: still open {:?} after the head", started.elapsed()),
        }
    }
}

/// Every connection is closed by the timeout, not at once (the server's clock starts at its
/// accept, which a loaded machine may run a little before this side's `connect` returns).
async fn check_closed(addrs: [SocketAddr; 2], head: &'static [u8]) {
    let closes = addrs.map(|addr| tokio::spawn(time_to_close(addr, head)));
    for (addr, close) in addrs.into_iter().zip(closes) {
        let took = close.await.unwrap();
        assert!(
            took >= HEADER_READ_TIMEOUT / 2,
            "{addr}: closed after {took:?}, long before the header-read timeout"
        );
    }
}

async fn servers() -> (TestWriter, TestReader) {
    let writer = TestWriter::spawn(&["events"]).await;
    let reader = TestReader::spawn(&writer, "r").await;
    (writer, reader)
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed() {
    let (writer, reader) = servers().await;
    check_closed([writer.http_addr(), reader.reader().http_addr()], b"").await;
}

#[tokio::test]
async fn a_connection_that_stops_mid_head_is_closed() {
    let (writer, reader) = servers().await;
    let head = b"GET /v1/status HTTP/1.1\r\nhost: streamhost\r\n";
    check_closed([writer.http_addr(), reader.reader().http_addr()], head).await;
}
