//! A raw replication client for tests: sends any bytes and reads lines as they come, so tests
//! can misbehave (garbage, silence, not reading) in ways the real reader never would.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// A raw TCP replication connection.
pub struct RawClient {
    lines: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl RawClient {
    /// Connects to a replication server.
    pub async fn connect(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect(addr)
            .await
            .expect("connect to replication server");
        let (read, writer) = stream.into_split();
        RawClient {
            lines: BufReader::new(read),
            writer,
        }
    }

    /// Sends `bytes` as they are (add the `\n` yourself).
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.writer
            .write_all(bytes)
            .await
            .expect("send to replication server");
    }

    /// Sends one line and its `\n`.
    pub async fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\n").as_bytes()).await;
    }

    /// The next line without its `\n`, `None` at end of stream; panics after `timeout`.
    pub async fn next_line(&mut self, timeout: Duration) -> Option<String> {
        let mut line = Vec::new();
        let read = tokio::time::timeout(timeout, self.lines.read_until(b'\n', &mut line))
            .await
            .expect("a line within the timeout");
        match read {
            Ok(0) | Err(_) => None,
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                Some(String::from_utf8(line).expect("server lines are UTF-8"))
            }
        }
    }

    /// Reads lines until one satisfies `wanted` (returned) or the stream ends (panic).
    pub async fn expect(&mut self, timeout: Duration, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_line(left).await {
                Some(line) if wanted(&line) => return line,
                Some(_) => {}
                None => panic!("connection closed before the expected line"),
            }
        }
    }

    /// Reads every line until the server closes the connection.
    pub async fn read_to_close(&mut self, timeout: Duration) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_line(left).await {
                Some(line) => lines.push(line),
                None => return lines,
            }
        }
    }
}
