//! A scripted fake Synapse for the Synapse-mode tests: it replays the Redis traffic of
//! `real-session-1.txt` (a real Synapse 1.163.2 deployment, see
//! `host/server/tests/fixtures/README.md`) on a test's own channel of the real Redis.
//!
//! The capture's Redis section (`P <channel> <line>`) omits the `RDATA` and `LOCK_RELEASED`
//! messages that were byte-identical to lines of its TCP section (`S <line>`): those are the
//! main process's, published on Redis too. So the script is: the `P` lines up to the first
//! `USER_IP`/`USER_SYNC` (the `REPLICATE` and `POSITION` announcements), then the `S`
//! section's `RDATA` and `LOCK_RELEASED` lines in order, then the remaining `P` lines
//! (`USER_IP` on `<server_name>/USER_IP`, `USER_SYNC`).

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::sync::mpsc;

/// The capture, as tests read it.
pub const CAPTURE: &str = include_str!("../../host/server/tests/fixtures/real-session-1.txt");

/// One message of the script: whether it goes to the `USER_IP` channel, and its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// `true` for `<server_name>/USER_IP`, `false` for `<server_name>`.
    pub user_ip_channel: bool,
    /// The command line, without `\n`.
    pub line: String,
}

/// The capture's Redis traffic in three parts (see the module docs).
#[derive(Clone, Debug)]
pub struct Script {
    /// `REPLICATE` and the `POSITION` announcements.
    pub announcements: Vec<Message>,
    /// The main process's `RDATA` and `LOCK_RELEASED` lines.
    pub rows: Vec<Message>,
    /// `USER_IP` and `USER_SYNC`.
    pub tail: Vec<Message>,
}

impl Script {
    /// Parses [`CAPTURE`].
    pub fn from_capture() -> Script {
        let mut script = Script {
            announcements: Vec::new(),
            rows: Vec::new(),
            tail: Vec::new(),
        };
        for line in CAPTURE.lines() {
            if let Some(rest) = line.strip_prefix("P ") {
                let (channel, body) = rest.split_once(' ').expect("P <channel> <line>");
                let message = Message {
                    user_ip_channel: channel.ends_with("/USER_IP"),
                    line: body.to_owned(),
                };
                let in_tail = !script.tail.is_empty()
                    || body.starts_with("USER_IP ")
                    || body.starts_with("USER_SYNC ");
                if in_tail {
                    script.tail.push(message);
                } else {
                    script.announcements.push(message);
                }
            } else if let Some(body) = line.strip_prefix("S ")
                && (body.starts_with("RDATA ") || body.starts_with("LOCK_RELEASED "))
            {
                script.rows.push(Message {
                    user_ip_channel: false,
                    line: body.to_owned(),
                });
            }
        }
        script
    }

    /// `RDATA` rows per stream in [`Script::rows`].
    pub fn rows_per_stream(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for message in &self.rows {
            if let Some(rest) = message.line.strip_prefix("RDATA ") {
                let stream = rest.split(' ').next().expect("RDATA <stream> ...");
                *counts.entry(stream.to_owned()).or_default() += 1;
            }
        }
        counts
    }
}

/// The fake Synapse: one publishing connection and one subscription to `<server_name>`
/// (which hears its own messages too, as on a real Redis).
pub struct FakeSynapse {
    server_name: String,
    publisher: redis::aio::MultiplexedConnection,
    heard: mpsc::UnboundedReceiver<String>,
    /// Every body it published on `<server_name>`, in order.
    pub published: Vec<String>,
}

impl FakeSynapse {
    /// Connects to Redis at `url` and subscribes to `server_name`.
    pub async fn connect(url: &str, server_name: &str) -> FakeSynapse {
        let client = redis::Client::open(url).expect("Redis URL");
        let mut pubsub = client
            .get_async_pubsub()
            .await
            .expect("subscribe connection");
        pubsub.subscribe(server_name).await.expect("SUBSCRIBE");
        let (tx, heard) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut messages = pubsub.into_on_message();
            while let Some(message) = messages.next().await {
                let body = String::from_utf8_lossy(message.get_payload_bytes()).into_owned();
                if tx.send(body).is_err() {
                    return;
                }
            }
        });
        let publisher = client
            .get_multiplexed_async_connection()
            .await
            .expect("publish connection");
        FakeSynapse {
            server_name: server_name.to_owned(),
            publisher,
            heard,
            published: Vec::new(),
        }
    }

    /// Publishes `messages` in order, each on its channel.
    pub async fn publish(&mut self, messages: &[Message]) {
        for message in messages {
            let channel = if message.user_ip_channel {
                format!("{}/USER_IP", self.server_name)
            } else {
                self.published.push(message.line.clone());
                self.server_name.clone()
            };
            redis::cmd("PUBLISH")
                .arg(&channel)
                .arg(&message.line)
                .query_async::<i64>(&mut self.publisher)
                .await
                .expect("PUBLISH");
        }
    }

    /// Publishes one line on `<server_name>`.
    pub async fn publish_line(&mut self, line: &str) {
        self.publish(&[Message {
            user_ip_channel: false,
            line: line.to_owned(),
        }])
        .await;
    }

    /// The next message heard on `<server_name>`, waiting at most `timeout`.
    pub async fn next_heard(&mut self, timeout: Duration) -> Option<String> {
        tokio::time::timeout(timeout, self.heard.recv())
            .await
            .ok()
            .flatten()
    }

    /// Everything heard so far that the fake did not publish itself (what others published).
    pub async fn heard_from_others(&mut self) -> Vec<String> {
        let mut mine = self.published.clone();
        let mut others = Vec::new();
        while let Some(body) = self.next_heard(Duration::from_millis(500)).await {
            match mine.iter().position(|m| *m == body) {
                Some(i) => {
                    mine.remove(i);
                }
                None => others.push(body),
            }
        }
        others
    }
}
