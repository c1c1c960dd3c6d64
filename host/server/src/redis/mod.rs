//! Redis plumbing both sides share: every instance holds two Redis
//! connections, one subscribed to channel `<server_name>` and one that publishes to it; each
//! command is one message, its bare line without `\n`. Protocol and behaviour:
//! `docs/replication.md` ("Redis mode").
//!
//! ```text
//!  writer: streamer ─▶ ring ─▶ publisher ──PUBLISH <server_name>──▶ Redis ──▶ subscriber ─▶ processor
//!             ▲ announce                                              │            (reader) │
//!             └──── REPLICATE (subscribed writer) ◀───────────────────┘       REPLICATE ────┘
//! ```
//!
//! The writer's side is `writer::fanout::redis` (publishes the streamer's ring, answers
//! `REPLICATE`); the reader's is `reader::upstream::redis` (feeds decoded `RDATA`/`POSITION`
//! to the processor, one processor "connection" per Redis subscription). This module imports
//! neither: it holds `link` ([`Link`]: the two connections, `PING` and reply timeouts), `connection`
//! (one connection as a configuration says: TCP, UNIX socket or TLS, `AUTH`, `SELECT`),
//! `resp` (RESP2 written and read, message bodies not copied), `tls` (the `rediss://`
//! connector), the channel names, the metrics, and the writer's reconnect rule: windows from
//! 100 ms doubling up to
//! `reconnect_max_ms` (Synapse: 5 s), each wait drawn at random within its window, forever.

pub(crate) mod connection;
mod link;
pub(crate) mod resp;
pub(crate) mod tls;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use streamhost_proto::{Command, CommandName};

use crate::backoff::{Backoff, FIRST_RECONNECT};
use crate::config::RedisConfig;
use crate::metrics::{Counter, CounterVec, Gauge, Registry};
use connection::Target;
pub(crate) use link::Link;

/// How a Redis session of the writer's publisher ended (the reader's sessions end with
/// `reader::upstream::Ended`, which its follow loop shares with TCP).
pub(crate) enum Ended {
    /// Shutdown (or the other side of the process is gone): no reconnect.
    Stopped,
    /// Lost: counted, logged and reconnected after the backoff.
    Lost(Lost),
}

/// Why a Redis session (or an attempt at one) was lost.
pub(crate) struct Lost {
    /// The session had been up: the backoff starts again from [`FIRST_RECONNECT`].
    pub(crate) established: bool,
    /// The `reason` label of `*redis_errors_total`.
    pub(crate) reason: &'static str,
    /// What happened, for the log.
    pub(crate) error: String,
}

/// A session that had been up ended for `reason`.
pub(crate) fn lost(reason: &'static str, error: impl std::fmt::Display) -> Ended {
    Ended::Lost(Lost {
        established: true,
        reason,
        error: error.to_string(),
    })
}

/// An attempt to open a session failed.
pub(crate) fn not_connected(error: &anyhow::Error) -> Lost {
    Lost {
        established: false,
        reason: "connect",
        error: connect_error(error),
    }
}

/// What a failed attempt to open a session reports.
pub(crate) fn connect_error(error: &anyhow::Error) -> String {
    format!("connecting to Redis: {}", chain(error))
}

/// Checks that `config`'s client can be built (its TLS files read and parsed), so a wrong
/// file fails at start, not at the first connect; `what` names the table in errors.
pub(crate) fn check_client(config: &RedisConfig, what: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    Target::of(config)
        .map(drop)
        .with_context(|| what.to_owned())
}

/// `error` and its causes, `: `-separated, leaving out a cause its parent already spells out
/// (the `redis` crate's errors print their source too).
pub(crate) fn chain(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&cause);
        }
    }
    text
}

/// The writer's reconnect rule: [`Backoff`] from [`FIRST_RECONNECT`] to `reconnect_max_ms`,
/// forever, from the first window again once a session had been up.
pub(crate) struct Reconnect {
    backoff: Backoff,
    attempts: u64,
}

impl Reconnect {
    /// The rule with `config`'s cap.
    pub(crate) fn new(config: &RedisConfig) -> Reconnect {
        Reconnect {
            backoff: Backoff::new(
                FIRST_RECONNECT,
                Duration::from_millis(config.reconnect_max_ms),
            ),
            attempts: 0,
        }
    }

    /// Notes an attempt to connect; every one after the first is counted in `reconnects`.
    pub(crate) fn attempt(&mut self, metrics: &RedisMetrics) {
        self.attempts += 1;
        if self.attempts > 1 {
            metrics.reconnects.inc();
        }
    }

    /// Counts `lost` in `errors_total`, logs it with what comes `next`, and waits out the
    /// backoff; false when `shutdown` came first.
    pub(crate) async fn wait_after(
        &mut self,
        lost: &Lost,
        metrics: &RedisMetrics,
        channel: &str,
        next: &'static str,
        shutdown: &CancellationToken,
    ) -> bool {
        if lost.established {
            self.backoff.reset();
        }
        let delay = self.backoff.next_delay();
        metrics.report_loss(lost.reason, &lost.error, channel, delay, next);
        tokio::select! {
            () = shutdown.cancelled() => false,
            () = tokio::time::sleep(delay) => true,
        }
    }
}

/// The channel every command but `USER_IP` goes to: the server name (docs/replication.md,
/// "Redis mode").
pub fn channel(server_name: &str) -> String {
    server_name.to_owned()
}

/// The channel `USER_IP` goes to (subscribed only by instances that want it; not by
/// Streamhost readers).
pub fn user_ip_channel(server_name: &str) -> String {
    format!("{server_name}/USER_IP")
}

/// How a reader's status shows a Redis it follows: `redis <url> channel <channel>`, the
/// URL without its password.
pub(crate) fn describe(config: &RedisConfig, channel: &str) -> String {
    format!(
        "redis {} channel {channel}",
        streamhost_log::redact_url(&config.url)
    )
}

/// Decodes a message body as Synapse does on Redis: blank is `Ok(None)` (ignored); anything
/// that does not parse is an error for the caller to log, count and drop (never `ERROR`).
pub(crate) fn decode(body: &Bytes) -> Result<Option<Command>, streamhost_proto::DecodeError> {
    if streamhost_proto::is_blank(body) {
        return Ok(None);
    }
    Command::decode(body).map(Some)
}

/// The command of a message that is an `RDATA` or `POSITION` of `instance` (one's own echo),
/// seen from its first three fields (`<command> <stream> <instance> …`) without decoding the
/// rest; `None` for anything else, which the caller decodes.
pub(crate) fn echo_of(body: &[u8], instance: &str) -> Option<CommandName> {
    let mut fields = body.splitn(4, |b| *b == b' ');
    let name = match fields.next()? {
        b"RDATA" => CommandName::Rdata,
        b"POSITION" => CommandName::Position,
        _ => return None,
    };
    let _stream = fields.next()?;
    (fields.next()? == instance.as_bytes() && fields.next().is_some()).then_some(name)
}

/// The first 200 bytes of `body`, for a log line.
pub(crate) fn excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
}

/// Metrics of one side (`streamhost_redis_*` on the writer, `streamhost_reader_redis_*` on a
/// reader).
#[derive(Clone, Debug)]
pub(crate) struct RedisMetrics {
    pub(crate) connected: Gauge,
    pub(crate) reconnects: Counter,
    pub(crate) errors: CounterVec,
    /// By command, looked up once (a label lookup allocates; this is per line).
    pub(crate) published: HashMap<CommandName, Counter>,
    pub(crate) received: HashMap<CommandName, Counter>,
    pub(crate) malformed: Counter,
    pub(crate) echoes: Counter,
    pub(crate) held_back: Counter,
}

impl RedisMetrics {
    /// Registers the family with names starting `prefix` (`""` or `"reader_"`).
    pub(crate) fn register(registry: &Registry, prefix: &str) -> RedisMetrics {
        let name = |n: &str| format!("{prefix}redis_{n}");
        RedisMetrics {
            connected: registry.gauge(&name("connected"), "1 while both Redis connections are up."),
            reconnects: registry.counter(&name("reconnects_total"), "Redis reconnection attempts."),
            errors: registry.counter_vec(
                &name("errors_total"),
                "Redis sessions or attempts that ended, by reason.",
                &["reason"],
            ),
            published: by_command(registry.counter_vec(
                &name("published_total"),
                "Commands published on the Redis channel, by command.",
                &["command"],
            )),
            received: by_command(registry.counter_vec(
                &name("received_total"),
                "Commands received on the Redis channel (echoes included), by command.",
                &["command"],
            )),
            malformed: registry.counter(
                &name("malformed_total"),
                "Messages on the Redis channel that did not parse (logged and dropped).",
            ),
            echoes: registry.counter(
                &name("echoes_ignored_total"),
                "RDATA/POSITION carrying this instance's own name, ignored.",
            ),
            held_back: registry.counter(
                &name("held_back_total"),
                "Lines not published after a reconnect, before their stream's announcement.",
            ),
        }
    }
}

impl RedisMetrics {
    /// Counts a session (or an attempt) that ended for `reason` in `errors_total`, and logs
    /// it with the wait before the next attempt and what comes `next`.
    pub(crate) fn report_loss(
        &self,
        reason: &'static str,
        error: &str,
        channel: &str,
        retry_in: Duration,
        next: &str,
    ) {
        self.errors.with(&[reason]).inc();
        tracing::warn!(%error, reason, %channel,
            retry_in_ms = retry_in.as_millis() as u64, "Redis replication lost; {next}");
    }
}

/// One counter per command name.
pub(crate) fn by_command(family: CounterVec) -> HashMap<CommandName, Counter> {
    CommandName::ALL
        .iter()
        .map(|n| (*n, family.with(&[n.as_str()])))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{chain, echo_of};
    use streamhost_proto::CommandName;

    #[test]
    fn echoes_are_told_by_their_instance_field() {
        let me = "master";
        assert_eq!(
            echo_of(br#"RDATA events master 12 ["a"]"#, me),
            Some(CommandName::Rdata)
        );
        assert_eq!(
            echo_of(b"POSITION events master 11 12", me),
            Some(CommandName::Position)
        );
        for other in [
            &br#"RDATA events worker1 12 ["a"]"#[..],
            b"RDATA events masterful 12 []",
            b"RDATA events master",
            b"REPLICATE",
            b"POSITIONS events master 1 2",
            b"",
        ] {
            assert_eq!(echo_of(other, me), None, "{other:?}");
        }
    }

    #[test]
    fn an_error_chain_is_shown_without_repeats() {
        let inner = anyhow::anyhow!("received fatal alert: CertificateRequired");
        let repeated = inner.context("received fatal alert: CertificateRequired");
        assert_eq!(
            chain(&repeated),
            "received fatal alert: CertificateRequired"
        );
        let distinct = anyhow::anyhow!("connection refused").context("SUBSCRIBE failed");
        assert_eq!(chain(&distinct), "SUBSCRIBE failed: connection refused");
    }
}
