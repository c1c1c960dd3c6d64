//! The reader's Redis side: subscribes to `<server_name>`, publishes `REPLICATE ` once the
//! subscription is acknowledged, and feeds `RDATA`/`POSITION` to the same processor the TCP
//! connection feeds, so the `POSITION` rule and HTTP catch-up apply unchanged.
//!
//! Each Redis session is a new processor connection (`Inbound::Connected`): `RDATA` of a
//! stream is dropped until that stream's first `POSITION` of the session (the writer's
//! announcement answering our `REPLICATE`), whose catch-up fetches whatever was missed while
//! Redis was unreachable or our subscription was dropped.
//!
//! Backpressure: the `redis` crate reads the subscription eagerly into its own buffer, so
//! Redis's `client-output-buffer-limit pubsub` rarely applies. When the processor's queue
//! stays full for [`STALL_LIMIT`], the reader drops the subscription itself (as Redis would)
//! and catches up after reconnecting, which bounds what the crate can buffer.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use std::collections::HashMap;

use streamhost_proto::{ClientCommand, Command, CommandName, InstanceName};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Ended, Link, Reconnect, RedisMetrics, lost};
use crate::config::RedisConfig;
use crate::metrics::Counter;
use crate::reader::inbound::{ConnId, Inbound};
use crate::reader::status::{ConnectionState, Shared};

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
    /// ([`crate::synapse::rows`]); a row Synapse could not parse either is logged, counted as
    /// malformed and dropped.
    SynapseObjects,
}

/// Subscribes, feeds the processor and reconnects until `shutdown`.
pub(crate) async fn run(
    config: RedisReaderConfig,
    tx: mpsc::Sender<Inbound>,
    shared: Arc<Shared>,
    mut drop_rx: watch::Receiver<ConnId>,
    shutdown: CancellationToken,
) {
    let metrics = RedisMetrics::register(&shared.metrics.registry, "reader_");
    let commands_in = super::by_command(shared.metrics.commands_in.clone());
    let own = InstanceName::new(config.name.as_str()).ok();
    let mut reconnect = Reconnect::new(&config.redis);
    let mut conn_id: ConnId = 0;
    shared.set_server_name(&config.channel);
    loop {
        if reconnect.attempt(&metrics) {
            shared.count_reconnect();
        }
        shared.set_connection(ConnectionState::Connecting, None);
        let opened = tokio::select! {
            () = shutdown.cancelled() => break,
            opened = Link::open(&config.redis, std::slice::from_ref(&config.channel)) => opened,
        };
        let lost = match opened {
            Ok(link) => {
                conn_id += 1;
                if !queue(&tx, Inbound::Connected(conn_id), &shutdown).await {
                    break;
                }
                shared.set_connection(ConnectionState::Connected, None);
                metrics.connected.set(1);
                tracing::info!(channel = %config.channel, conn = conn_id, "subscribed on Redis");
                let session = Session {
                    config: &config,
                    own: own.as_ref(),
                    id: conn_id,
                    shared: &shared,
                    metrics: &metrics,
                    commands_in: &commands_in,
                    shutdown: &shutdown,
                };
                let ended = session.run(link, &tx, &mut drop_rx).await;
                metrics.connected.set(0);
                if !queue(&tx, Inbound::Disconnected(conn_id), &shutdown).await {
                    break;
                }
                match ended {
                    Ended::Lost(lost) => lost,
                    Ended::Stopped => break,
                }
            }
            Err(e) => super::not_connected(&e),
        };
        shared.metrics.errors.with(&[lost.reason]).inc();
        shared.set_connection(ConnectionState::BackingOff, Some(lost.error.clone()));
        let next = "will resubscribe and catch up";
        if !reconnect
            .wait_after(&lost, &metrics, &config.channel, next, &shutdown)
            .await
        {
            break;
        }
    }
    metrics.connected.set(0);
    shared.set_connection(ConnectionState::Stopped, None);
}

async fn queue(tx: &mpsc::Sender<Inbound>, message: Inbound, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => false,
        sent = tx.send(message) => sent.is_ok(),
    }
}

struct Session<'a> {
    config: &'a RedisReaderConfig,
    own: Option<&'a InstanceName>,
    id: ConnId,
    shared: &'a Shared,
    metrics: &'a RedisMetrics,
    /// `reader_commands_in_total`, by command.
    commands_in: &'a HashMap<CommandName, Counter>,
    shutdown: &'a CancellationToken,
}

impl Session<'_> {
    async fn run(
        self,
        mut link: Link,
        tx: &mpsc::Sender<Inbound>,
        drop_rx: &mut watch::Receiver<ConnId>,
    ) -> Ended {
        // Subscribed (acknowledged by `Link::open`): now ask every writer for its positions.
        let mut replicate = Vec::new();
        ClientCommand::Replicate
            .encode(&mut replicate)
            .expect("REPLICATE always encodes");
        replicate.pop();
        if let Err(e) = link
            .publish(&self.config.channel, [replicate.as_slice()])
            .await
        {
            return lost("io", format!("publishing REPLICATE: {}", super::chain(&e)));
        }
        self.metrics.published[&CommandName::Replicate].inc();
        self.shared.metrics.commands_out.with(&["REPLICATE"]).inc();

        let interval = link.ping_interval();
        let mut ping = tokio::time::interval_at(Instant::now() + interval, interval);
        let mut waiting: Option<Inbound> = None;
        let mut waiting_since = Instant::now();
        loop {
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return Ended::Stopped,
                asked = async { drop_rx.wait_for(|id| *id == self.id).await.is_ok() } => {
                    if !asked {
                        return Ended::Stopped;
                    }
                    return lost("processor", "the processor asked for a new connection");
                }
                permit = tx.reserve(), if waiting.is_some() => {
                    let Ok(permit) = permit else { return Ended::Stopped };
                    permit.send(waiting.take().expect("guarded by the branch condition"));
                }
                () = tokio::time::sleep_until(waiting_since + STALL_LIMIT), if waiting.is_some() => {
                    return lost("stalled", format!(
                        "the processor's queue stayed full for {} s; dropping the subscription",
                        STALL_LIMIT.as_secs()
                    ));
                }
                message = link.next_message(), if waiting.is_none() => match message {
                    Some(body) => {
                        waiting = self.on_message(&body);
                        waiting_since = Instant::now();
                        if let Some(message) = waiting.take() {
                            match tx.try_send(message) {
                                Ok(()) => {}
                                Err(mpsc::error::TrySendError::Full(message)) => waiting = Some(message),
                                Err(mpsc::error::TrySendError::Closed(_)) => return Ended::Stopped,
                            }
                        }
                    }
                    None => return lost("closed", "Redis closed the subscribed connection"),
                },
                _ = ping.tick() => {
                    if let Err(e) = link.ping().await {
                        return lost("ping_timeout", super::chain(&e));
                    }
                }
            }
        }
    }

    /// Decodes one message: `RDATA`/`POSITION` of another instance go to the processor; the
    /// rest is counted and ignored; what does not parse is logged, counted and dropped.
    fn on_message(&self, body: &Bytes) -> Option<Inbound> {
        let command = match super::decode(body) {
            Ok(Some(command)) => command,
            Ok(None) => return None,
            Err(e) => {
                self.metrics.malformed.inc();
                tracing::warn!(error = %e, line = %super::excerpt(body), "failed to parse replication line from Redis; dropped");
                return None;
            }
        };
        let name = command.name();
        self.metrics.received[&name].inc();
        self.commands_in[&name].inc();
        match command {
            Command::Rdata(r) if Some(&r.instance) == self.own => {
                self.metrics.echoes.inc();
                None
            }
            Command::Position(p) if Some(&p.instance) == self.own => {
                self.metrics.echoes.inc();
                None
            }
            Command::Rdata(mut r) => {
                if self.config.rows == RowFormat::SynapseObjects {
                    match crate::synapse::rows::to_object(&r.stream, &r.row) {
                        Ok(row) => r.row = row,
                        Err(e) => {
                            self.metrics.malformed.inc();
                            tracing::warn!(error = %e, line = %super::excerpt(body), "Failed to parse RDATA from Redis; dropped");
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
