//! [`EventStream`]: a server-sent event stream read over a raw socket (`Connection: close`, so
//! the end of the stream is the end of the connection), for the notification tests.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An open `GET` whose answer is read as it comes.
pub struct EventStream {
    socket: TcpStream,
    /// Everything read so far.
    text: String,
    /// Whether the server closed the connection.
    closed: bool,
}

impl EventStream {
    /// Sends `GET path` to `addr` with `bearer` (if any) and reads the status line and
    /// headers; the status and the stream.
    pub async fn open(addr: SocketAddr, path: &str, bearer: Option<&str>) -> (u16, EventStream) {
        let mut socket = TcpStream::connect(addr).await.expect("connect");
        let auth = bearer.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
        let request = format!("GET {path} HTTP/1.1\r\nhost: r\r\nconnection: close\r\n{auth}\r\n");
        socket.write_all(request.as_bytes()).await.expect("send");
        let mut stream = EventStream {
            socket,
            text: String::new(),
            closed: false,
        };
        while !stream.text.contains("\r\n\r\n") {
            assert!(
                stream.read().await,
                "closed before the headers: {}",
                stream.text
            );
        }
        let status = stream
            .text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {}", stream.text));
        (status, stream)
    }

    /// Reads once more; false once the server has closed.
    async fn read(&mut self) -> bool {
        let mut buffer = [0u8; 4096];
        let n = self.socket.read(&mut buffer).await.expect("read");
        self.text.push_str(&String::from_utf8_lossy(&buffer[..n]));
        self.closed = n == 0;
        n > 0
    }

    /// The `data:` of every `notify` event so far, parsed.
    pub fn events(&self) -> Vec<Value> {
        let mut events = Vec::new();
        let mut kind = "";
        for line in self.text.lines() {
            if let Some(event) = line.strip_prefix("event: ") {
                kind = event;
            } else if let Some(data) = line.strip_prefix("data: ")
                && kind == "notify"
            {
                events.push(serde_json::from_str(data).expect("event data is JSON"));
            }
        }
        events
    }

    /// Reads until at least `count` notify events arrived (failing after `timeout`); all of
    /// them.
    pub async fn wait_for(&mut self, count: usize, timeout: Duration) -> Vec<Value> {
        tokio::time::timeout(timeout, async {
            while self.events().len() < count {
                assert!(self.read().await, "stream closed: {}", self.text);
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{count} events in time; got {}", self.text));
        self.events()
    }

    /// Reads for `time` (or until the server closes), then answers every notify event so far.
    pub async fn read_for(&mut self, time: Duration) -> Vec<Value> {
        let _ =
            tokio::time::timeout(time, async { while !self.closed && self.read().await {} }).await;
        self.events()
    }

    /// Waits until the server ends the stream (failing after `timeout`).
    pub async fn wait_closed(&mut self, timeout: Duration) {
        tokio::time::timeout(timeout, async { while self.read().await {} })
            .await
            .unwrap_or_else(|_| panic!("the stream did not end: {}", self.text));
    }

    /// Everything read so far.
    pub fn text(&self) -> &str {
        &self.text
    }
}
