//! [`Link`]: the two Redis connections of one session, one publishing and one subscribed
//! (a subscribed connection cannot publish), with the reply timeout and the keep-alive
//! `PING` on both. A subscribed connection's replies are its channels' messages; the other
//! replies there (`subscribe` acknowledgements, `PING` answers, errors) are told apart here.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;

use super::connection::{Broken, Connection, Target};
use super::resp::{Push, Reply};
use crate::config::RedisConfig;

/// The two connections of one Redis session: a subscribed connection cannot publish.
pub(crate) struct Link {
    /// Publishes and pings; each command's reply is read before the next is sent.
    publisher: Connection,
    /// Subscribed to the channels; its replies are their messages (and its pings' answers).
    subscriber: Connection,
    /// Message bodies read while waiting for the subscribed connection's `PING` answer.
    early: VecDeque<Bytes>,
    /// `PUBLISH`es queued on the publishing connection and not yet sent.
    queued: usize,
    /// Reply timeout and keep-alive interval.
    timeout: Duration,
}

/// What a reply of the subscribed connection is.
enum Event {
    /// A `message` on a subscribed channel: its body.
    Message(Bytes),
    /// The answer to a `PING`.
    Pong,
    /// A `subscribe` acknowledgement.
    Subscribed,
    /// An error reply.
    Refused(String),
    /// Anything else Redis may push (ignored).
    Other,
}

impl Event {
    fn of(push: Push) -> Event {
        let parts = match push {
            Push::Message(body) => return Event::Message(body),
            Push::Reply(Reply::Array(Some(parts))) => parts,
            Push::Reply(Reply::Error(text)) => {
                return Event::Refused(String::from_utf8_lossy(&text).into());
            }
            Push::Reply(_) => return Event::Other,
        };
        match parts.first() {
            Some(Reply::Bulk(Some(kind))) if kind == "pong" => Event::Pong,
            Some(Reply::Bulk(Some(kind))) if kind == "subscribe" => Event::Subscribed,
            _ => Event::Other,
        }
    }
}

impl Link {
    /// Opens both connections (TLS, `AUTH` and `SELECT` as configured) and subscribes to
    /// `channels`, returning once Redis has acknowledged the subscription: a `REPLICATE`
    /// published earlier could have its `POSITION` answers missed (Synapse PR #7427).
    pub(crate) async fn open(config: &RedisConfig, channels: &[String]) -> anyhow::Result<Link> {
        let timeout = Duration::from_millis(config.ping_interval_ms);
        let target = Target::of(config)?;
        let subscriber = tokio::time::timeout(timeout, subscribe(&target, channels))
            .await
            .map_err(|_| anyhow::anyhow!("opening the subscribed connection timed out"))??;
        let publisher = tokio::time::timeout(timeout, Connection::open(&target))
            .await
            .map_err(|_| anyhow::anyhow!("opening the publishing connection timed out"))??;
        Ok(Link {
            publisher,
            subscriber,
            early: VecDeque::new(),
            queued: 0,
            timeout,
        })
    }

    /// The next message's body. Cancel-safe.
    pub(crate) async fn next_message(&mut self) -> Result<Bytes, Broken> {
        if let Some(body) = self.early.pop_front() {
            return Ok(body);
        }
        loop {
            if let Event::Message(body) = Event::of(self.subscriber.push().await?) {
                return Ok(body);
            }
        }
    }

    /// The next message's body if it has already been read; never reads. A caller drains
    /// these after [`Link::next_message`], handling a whole read at once.
    pub(crate) fn buffered_message(&mut self) -> Result<Option<Bytes>, Broken> {
        if let Some(body) = self.early.pop_front() {
            return Ok(Some(body));
        }
        while let Some(push) = self.subscriber.buffered_push()? {
            if let Event::Message(body) = Event::of(push) {
                return Ok(Some(body));
            }
        }
        Ok(None)
    }

    /// Publishes `lines` (bare, no `\n`) to `channel` in one pipeline: one round trip,
    /// bounded by the reply timeout.
    pub(crate) async fn publish<'a>(
        &mut self,
        channel: &str,
        lines: impl IntoIterator<Item = &'a [u8]>,
    ) -> anyhow::Result<()> {
        for line in lines {
            self.queue_publish(channel, line);
        }
        self.publish_queued().await
    }

    /// Queues `line` (bare, no `\n`) for `channel`; [`Link::publish_queued`] sends it.
    pub(crate) fn queue_publish(&mut self, channel: &str, line: &[u8]) {
        self.publisher
            .queue(&[b"PUBLISH", channel.as_bytes(), line]);
        self.queued += 1;
    }

    /// How many lines are queued and not yet published.
    pub(crate) fn queued(&self) -> usize {
        self.queued
    }

    /// Publishes every queued line in one pipeline: one round trip, bounded by the reply
    /// timeout. On an error the session is over (what was queued may or may not have gone).
    pub(crate) async fn publish_queued(&mut self) -> anyhow::Result<()> {
        let sent = std::mem::take(&mut self.queued);
        let publisher = &mut self.publisher;
        let replies = async move {
            publisher.flush().await?;
            for _ in 0..sent {
                if let Reply::Error(text) = publisher.reply().await? {
                    anyhow::bail!("{}", String::from_utf8_lossy(&text));
                }
            }
            Ok(())
        };
        tokio::time::timeout(self.timeout, replies)
            .await
            .map_err(|_| anyhow::anyhow!("PUBLISH timed out"))?
    }

    /// A Redis `PING` on both connections, each bounded by the reply timeout. Messages that
    /// arrive before the subscribed connection's answer are kept for [`Link::next_message`].
    pub(crate) async fn ping(&mut self) -> anyhow::Result<()> {
        tokio::time::timeout(self.timeout, self.publisher.command(&[b"PING"]))
            .await
            .map_err(|_| anyhow::anyhow!("PING on the publishing connection timed out"))??;
        let subscriber = &mut self.subscriber;
        let early = &mut self.early;
        let pong = async move {
            subscriber.queue(&[b"PING"]);
            subscriber.flush().await?;
            loop {
                match Event::of(subscriber.push().await?) {
                    Event::Pong => return Ok(()),
                    Event::Message(body) => early.push_back(body),
                    Event::Refused(error) => anyhow::bail!("PING refused: {error}"),
                    Event::Subscribed | Event::Other => {}
                }
            }
        };
        tokio::time::timeout(self.timeout, pong)
            .await
            .map_err(|_| anyhow::anyhow!("PING on the subscribed connection timed out"))?
    }

    /// The keep-alive interval.
    pub(crate) fn ping_interval(&self) -> Duration {
        self.timeout
    }
}

/// A connection to `target` subscribed to `channels`, each acknowledged.
async fn subscribe(target: &Target, channels: &[String]) -> anyhow::Result<Connection> {
    let mut connection = Connection::open(target).await?;
    let mut command: Vec<&[u8]> = vec![b"SUBSCRIBE"];
    command.extend(channels.iter().map(String::as_bytes));
    connection.queue(&command);
    connection.flush().await?;
    let mut acknowledged = 0;
    while acknowledged < channels.len() {
        match Event::of(connection.push().await?) {
            Event::Subscribed => acknowledged += 1,
            Event::Refused(error) => anyhow::bail!("SUBSCRIBE refused: {error}"),
            Event::Message(_) | Event::Pong | Event::Other => {}
        }
    }
    Ok(connection)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// Reads from `stream` until what was read holds `needle`.
    async fn read_until(stream: &mut TcpStream, needle: &[u8]) {
        let mut seen = Vec::new();
        while !seen.windows(needle.len()).any(|w| w == needle) {
            let mut chunk = [0; 1024];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the link closed before sending {needle:?}");
            seen.extend_from_slice(&chunk[..n]);
        }
    }

    fn message(body: &str) -> String {
        format!(
            "*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n${}\r\n{body}\r\n",
            body.len()
        )
    }

    /// A scripted Redis (a real socket): Redis itself never sends what this test needs, a
    /// message between a `PING` and its answer on demand, or bytes that are not RESP.
    #[tokio::test]
    async fn messages_around_a_ping_keep_their_order_and_bad_bytes_end_the_link() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = RedisConfig {
            url: format!("redis://{}", listener.local_addr().unwrap()).into(),
            ping_interval_ms: 5_000,
            ..RedisConfig::default()
        };
        let server = tokio::spawn(async move {
            let (mut subscribed, _) = listener.accept().await.unwrap();
            read_until(&mut subscribed, b"SUBSCRIBE").await;
            subscribed
                .write_all(b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n")
                .await
                .unwrap();
            let (mut publishing, _) = listener.accept().await.unwrap();
            read_until(&mut publishing, b"PING").await;
            publishing.write_all(b"+PONG\r\n").await.unwrap();
            read_until(&mut subscribed, b"PING").await;
            let before_and_after = message("one")
                + &message("two")
                + "*2\r\n$4\r\npong\r\n$0\r\n\r\n"
                + &message("three");
            subscribed
                .write_all(before_and_after.as_bytes())
                .await
                .unwrap();
            subscribed.write_all(b"%not RESP2\r\n").await.unwrap();
            (subscribed, publishing)
        });
        let mut link = Link::open(&config, &["c".to_owned()]).await.unwrap();
        link.ping().await.unwrap();
        for expected in ["one", "two", "three"] {
            assert_eq!(link.next_message().await.unwrap(), expected);
        }
        let broken = link.next_message().await.unwrap_err();
        assert_eq!(broken.reason(), "protocol", "{broken}");
        drop(server.await.unwrap());
    }
}
