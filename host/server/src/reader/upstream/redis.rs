//! The `redis` upstream (and the `synapse` one's transport): subscribes to `<server_name>`,
//! publishes `REPLICATE ` once the subscription is acknowledged, and feeds `RDATA`/`POSITION`
//! to the same processor the TCP session feeds, so the `POSITION` rule and HTTP catch-up
//! apply unchanged; the follow loop in [`super`] reconnects.
//!
//! Each Redis session is a new processor connection (`Inbound::Connected`): `RDATA` of a
//! stream is dropped until that stream's first `POSITION` of the session (the writer's
//! announcement answering our `REPLICATE`), whose catch-up fetches whatever was missed while
//! Redis was unreachable or our subscription was dropped.
//!
//! Backpressure: the subscription is read only while the processor's queue has room, so a
//! backlog stays in Redis, bounded by its `client-output-buffer-limit pubsub`. When the
//! processor's queue stays full for [`STALL_LIMIT`], the reader drops the subscription
//! itself (as Redis would) and catches up after reconnecting.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use streamhost_proto::{ClientCommand, Command, CommandName, InstanceName};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Ended, Inlet, Lost, until_dropped};
use crate::config::{ReaderConfig, RedisConfig};
use crate::metrics::Counter;
use crate::reader::inbound::{ConnId, Inbound};
use crate::reader::status::Shared;
use crate::redis::{Link, RedisMetrics};

/// Longest the processor's queue may stay full before the subscription is dropped.
/// Could become configurable; at the default queue of 100,000 commands it is rarely reached.
pub(crate) const STALL_LIMIT: Duration = Duration::from_secs(10);

/// What the Redis side needs from the reader's configuration.
#[derive(Clone, Debug)]
pub(crate) struct RedisReaderConfig {
    pub(crate) redis: RedisConfig,
    /// The channel (`<server_name>`).
    pub(crate) channel: String,
    /// This reader's instance name: `RDATA`/`POSITION` carrying it are its own echoes.
    pub(crate) name: String,
    /// What `RDATA` rows become before the processor sees them.
    pub(crate) rows: RowFormat,
}

/// How `RDATA` rows are handed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RowFormat {
    /// As sent (a Streamhost writer's rows).
    AsSent,
    /// Synapse's row arrays as objects with Synapse's field names
    /// ([`super::synapse::rows`]); a row Synapse could not parse either is logged, counted as
    /// malformed and dropped.
    SynapseObjects,
}

/// The subscription `[reader.redis]` describes: channel `<server_name>`, rows as sent. The
/// Redis client is built once now (TLS files read), so a wrong file fails at start.
pub(crate) fn subscription(
    config: &ReaderConfig,
    redis: &RedisConfig,
) -> anyhow::Result<RedisReaderConfig> {
    crate::redis::check_client(redis, "reader.redis")?;
    Ok(RedisReaderConfig {
        redis: redis.clone(),
        channel: crate::redis::channel(config.server_name.as_deref().unwrap_or_default()),
        name: config.name.clone(),
        rows: RowFormat::AsSent,
    })
}

/// The Redis upstream: its settings and its `reader_redis_*` metrics.
pub(crate) struct Redis {
    config: RedisReaderConfig,
    /// This reader's instance name: `RDATA`/`POSITION` carrying it are its own echoes.
    own: Option<InstanceName>,
    metrics: RedisMetrics,
    /// `reader_commands_in_total`, by command.
    commands_in: HashMap<CommandName, Counter>,
}

impl Redis {
    /// Registers the metrics; the status names the channel as the server followed.
    pub(crate) fn new(config: RedisReaderConfig, shared: &Shared) -> Redis {
        let metrics = RedisMetrics::register(&shared.metrics.registry, "reader_");
        let commands_in = crate::redis::by_command(shared.metrics.commands_in.clone());
        let own = InstanceName::new(config.name.as_str()).ok();
        shared.set_server_name(&config.channel);
        Redis {
            config,
            own,
            metrics,
            commands_in,
        }
    }
}

impl super::Transport for Redis {
    type Link = Link;

    fn reconnect_max(&self) -> Duration {
        Duration::from_millis(self.config.redis.reconnect_max_ms)
    }

    async fn connect(&self) -> Result<Link, Lost> {
        Link::open(
            &self.config.redis,
            std::slice::from_ref(&self.config.channel),
        )
        .await
        .map_err(|e| Lost::new(false, "connect", crate::redis::connect_error(&e)))
    }

    async fn run(&self, link: Link, id: ConnId, inlet: &mut Inlet) -> Ended {
        let shared = inlet.shared.clone();
        let session = Subscription {
            redis: self,
            id,
            shared: &shared,
        };
        session.run(link, inlet).await
    }

    fn connected(&self, id: ConnId) {
        self.metrics.connected.set(1);
        tracing::info!(channel = %self.config.channel, conn = id, "subscribed on Redis");
    }

    fn disconnected(&self) {
        self.metrics.connected.set(0);
    }

    fn reconnecting(&self) {
        self.metrics.reconnects.inc();
    }

    fn report(&self, lost: &Lost, retry_in: Duration) {
        let next = "will resubscribe and catch up";
        self.metrics.report_loss(
            lost.reason,
            &lost.error,
            &self.config.channel,
            retry_in,
            next,
        );
    }
}

/// A session ended by a loss, after it had been up.
fn lost(reason: &'static str, error: impl std::fmt::Display) -> Ended {
    super::lost(true, reason, error.to_string())
}

/// One Redis subscription.
struct Subscription<'a> {
    redis: &'a Redis,
    id: ConnId,
    shared: &'a Shared,
}

impl Subscription<'_> {
    async fn run(self, mut link: Link, inlet: &mut Inlet) -> Ended {
        // Subscribed (acknowledged by `Link::open`): now ask every writer for its positions.
        let mut replicate = Vec::new();
        ClientCommand::Replicate
            .encode(&mut replicate)
            .expect("REPLICATE always encodes");
        replicate.pop();
        if let Err(e) = link
            .publish(&self.redis.config.channel, [replicate.as_slice()])
            .await
        {
            return lost(
                "io",
                format!("publishing REPLICATE: {}", crate::redis::chain(&e)),
            );
        }
        self.redis.metrics.published[&CommandName::Replicate].inc();
        self.shared.metrics.commands_out.with(&["REPLICATE"]).inc();

        let interval = link.ping_interval();
        let mut ping = tokio::time::interval_at(Instant::now() + interval, interval);
        let mut waiting: Option<Inbound> = None;
        let mut waiting_since = Instant::now();
        loop {
            tokio::select! {
                biased;
                ended = until_dropped(&inlet.shutdown, &mut inlet.drop_rx, self.id, true) => return ended,
                permit = inlet.tx.reserve_for(waiting.as_ref()), if waiting.is_some() => {
                    let Ok(permit) = permit else { return Ended::Stopped };
                    permit.send(waiting.take().expect("guarded by the branch condition"));
                }
                () = tokio::time::sleep_until(waiting_since + STALL_LIMIT), if waiting.is_some() => {
                    return lost("stalled", format!(
                        "the processor's queue stayed full for {} s; dropping the subscription",
                        STALL_LIMIT.as_secs()
                    ));
                }
                message = link.next_message(), if waiting.is_none() => {
                    // This message, then every other one the same read brought, until the
                    // processor's queue is full.
                    let mut next = message.map(Some);
                    loop {
                        let body = match next {
                            Ok(Some(body)) => body,
                            Ok(None) => break,
                            Err(e) => return lost(e.reason(), format!("the subscribed connection: {e}")),
                        };
                        if let Some(message) = self.on_message(&body) {
                            match inlet.tx.try_send(message) {
                                Ok(()) => {}
                                Err(mpsc::error::TrySendError::Full(message)) => {
                                    waiting = Some(message);
                                    waiting_since = Instant::now();
                                    break;
                                }
                                Err(mpsc::error::TrySendError::Closed(_)) => return Ended::Stopped,
                            }
                        }
                        next = link.buffered_message();
                    }
                }
                _ = ping.tick() => {
                    if let Err(e) = link.ping().await {
                        return lost("ping_timeout", crate::redis::chain(&e));
                    }
                }
            }
        }
    }

    /// Decodes one message: `RDATA`/`POSITION` of another instance go to the processor; the
    /// rest is counted and ignored; what does not parse is logged, counted and dropped.
    fn on_message(&self, body: &Bytes) -> Option<Inbound> {
        let command = match crate::redis::decode(body) {
            Ok(Some(command)) => command,
            Ok(None) => return None,
            Err(e) => {
                self.redis.metrics.malformed.inc();
                tracing::warn!(error = %e, line = %crate::redis::excerpt(body), "failed to parse replication line from Redis; dropped");
                return None;
            }
        };
        let name = command.name();
        self.redis.metrics.received[&name].inc();
        self.redis.commands_in[&name].inc();
        match command {
            Command::Rdata(r) if Some(&r.instance) == self.redis.own.as_ref() => {
                self.redis.metrics.echoes.inc();
                None
            }
            Command::Position(p) if Some(&p.instance) == self.redis.own.as_ref() => {
                self.redis.metrics.echoes.inc();
                None
            }
            Command::Rdata(mut r) => {
                if self.redis.config.rows == RowFormat::SynapseObjects {
                    match super::synapse::rows::to_object(&r.stream, &r.row) {
                        Ok(row) => r.row = row,
                        Err(e) => {
                            self.redis.metrics.malformed.inc();
                            tracing::warn!(error = %e, line = %crate::redis::excerpt(body), "Failed to parse RDATA from Redis; dropped");
                            return None;
                        }
                    }
                }
                Some(Inbound::Rdata(self.id, r))
            }
            Command::Position(p) => Some(Inbound::Position(self.id, p)),
            // REPLICATE (ours echoed, or another reader's), the workers' commands, pokes: a
            // reader is the source of no stream and keeps no presence or lock state.
            _ => None,
        }
    }
}
