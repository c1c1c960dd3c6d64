//! The `redis` fan-out (`[writer.redis]`): publishes every line of the streamer's ring to
//! `<server_name>`, and answers `REPLICATE` (and its own every (re)connect) with a `POSITION`
//! announcement.
//!
//! No row is lost across a Redis fault: a line that was not published is never followed by
//! a later line of its stream without a `POSITION` in between. After each (re)connect the
//! publisher takes a fresh subscription to the ring and asks the streamer to announce; until
//! the announcement (`POSITION s me last last`) of a stream comes through the ring, that
//! stream's lines are dropped. A reader that missed rows sees `prev` above its position and
//! fetches them over HTTP; rows after the announcement follow it in order. A ring
//! subscription that lags (it cannot: the streamer waits for the slowest reader of the ring)
//! is handled the same way, by reconnecting.

use std::sync::Arc;

use bytes::Bytes;
use rustc_hash::FxHashSet as HashSet;
use streamhost_proto::{Command, CommandName, InstanceName, StreamName};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Ring;
use crate::config::{RedisConfig, WriterConfig};
use crate::metrics::Registry;
use crate::redis::{Ended, Link, Reconnect, RedisMetrics, lost};
use crate::writer::Frame;
use crate::writer::streamer::StreamerSignals;

/// Lines published in one pipeline at most (one round trip to Redis).
const PUBLISH_BATCH: usize = 1_000;

/// Checks that `[writer.redis]`'s client can be built (its TLS files read and parsed), so a
/// wrong file fails at start.
pub(crate) fn check(config: &WriterConfig) -> anyhow::Result<()> {
    match &config.redis {
        Some(redis) => crate::redis::check_client(redis, "writer.redis"),
        None => Ok(()),
    }
}

/// The writer's Redis publisher and subscriber.
pub(crate) struct RedisWriter {
    config: RedisConfig,
    /// The channel (`<server_name>`).
    channel: String,
    /// This writer's instance name: its own echoes are ignored by it.
    instance: InstanceName,
    /// The writer's streams: each is held back after a (re)connect until announced.
    streams: Vec<StreamName>,
    frames: broadcast::Sender<Frame>,
    signals: Arc<StreamerSignals>,
    metrics: RedisMetrics,
}

impl RedisWriter {
    /// The publisher `[writer.redis]` asks for, if any, its `streamhost_redis_*` metrics
    /// registered.
    pub(crate) fn of(
        config: &WriterConfig,
        instance: &InstanceName,
        streams: &[StreamName],
        ring: &Ring,
        registry: &Registry,
    ) -> Option<RedisWriter> {
        let redis = config.redis.as_ref()?;
        Some(RedisWriter {
            config: redis.clone(),
            channel: crate::redis::channel(&config.server_name),
            instance: instance.clone(),
            streams: streams.to_vec(),
            frames: ring.frames.clone(),
            signals: ring.signals.clone(),
            metrics: RedisMetrics::register(registry, ""),
        })
    }

    /// Connects, publishes and reconnects (100 ms doubling to `reconnect_max_ms`, each wait
    /// drawn at random within its window) until `shutdown`.
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let mut reconnect = Reconnect::new(&self.config);
        loop {
            reconnect.attempt(&self.metrics);
            let opened = tokio::select! {
                () = shutdown.cancelled() => break,
                opened = Link::open(&self.config, std::slice::from_ref(&self.channel)) => opened,
            };
            let lost = match opened {
                Ok(link) => {
                    self.metrics.connected.set(1);
                    let ended = self.session(link, &shutdown).await;
                    self.metrics.connected.set(0);
                    match ended {
                        Ended::Lost(lost) => lost,
                        Ended::Stopped => break,
                    }
                }
                Err(e) => crate::redis::not_connected(&e),
            };
            let next = "will reconnect and announce positions";
            if !reconnect
                .wait_after(&lost, &self.metrics, &self.channel, next, &shutdown)
                .await
            {
                break;
            }
        }
        self.metrics.connected.set(0);
    }

    async fn session(&self, mut link: Link, shutdown: &CancellationToken) -> Ended {
        // Subscribe to the ring before asking for the announcement, so it comes through.
        let mut ring = self.frames.subscribe();
        let mut held: HashSet<StreamName> = self.streams.iter().cloned().collect();
        tracing::info!(channel = %self.channel, "connected to Redis; announcing positions");
        self.signals.request_announce();
        let interval = link.ping_interval();
        let mut ping = tokio::time::interval_at(Instant::now() + interval, interval);
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return Ended::Stopped,
                message = link.next_message() => {
                    let mut next = message.map(Some);
                    loop {
                        match next {
                            Ok(Some(body)) => self.on_message(&body),
                            Ok(None) => break,
                            Err(e) => return lost(e.reason(), format!("the subscribed connection: {e}")),
                        }
                        next = link.buffered_message();
                    }
                }
                frame = ring.recv() => {
                    match frame {
                        Ok(frame) => self.take(frame, &mut held, &mut link),
                        Err(RecvError::Lagged(n)) => return lost("lagged", format!("the publisher fell {n} lines behind")),
                        Err(RecvError::Closed) => return Ended::Stopped,
                    }
                    while link.queued() < PUBLISH_BATCH {
                        match ring.try_recv() {
                            Ok(frame) => self.take(frame, &mut held, &mut link),
                            Err(TryRecvError::Lagged(n)) => return lost("lagged", format!("the publisher fell {n} lines behind")),
                            Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                        }
                    }
                    if link.queued() > 0
                        && let Err(e) = link.publish_queued().await
                    {
                        return lost("publish", format!("publishing: {}", crate::redis::chain(&e)));
                    }
                }
                _ = ping.tick() => {
                    if let Err(e) = link.ping().await {
                        return lost("ping", crate::redis::chain(&e));
                    }
                }
            }
        }
    }

    /// Queues `frame`'s bare line on `link`, unless its stream is still held back.
    fn take(&self, frame: Frame, held: &mut HashSet<StreamName>, link: &mut Link) {
        let line = &frame.line[..frame.line.len().saturating_sub(1)];
        if !held.is_empty() && matches!(frame.name, CommandName::Rdata | CommandName::Position) {
            match Command::decode(&frame.line.slice(..line.len())) {
                Ok(Command::Position(p)) if held.contains(&p.stream) => {
                    if p.prev == p.new && p.instance == self.instance {
                        held.remove(&p.stream);
                    } else {
                        self.metrics.held_back.inc();
                        return;
                    }
                }
                Ok(Command::Rdata(r)) if held.contains(&r.stream) => {
                    self.metrics.held_back.inc();
                    return;
                }
                _ => {}
            }
        }
        self.metrics.published[&frame.name].inc();
        link.queue_publish(&self.channel, line);
    }

    fn on_message(&self, body: &Bytes) {
        // Every line this writer publishes comes back: tell those by their instance field.
        if let Some(name) = crate::redis::echo_of(body, self.instance.as_str()) {
            self.metrics.received[&name].inc();
            self.metrics.echoes.inc();
            return;
        }
        let command = match crate::redis::decode(body) {
            Ok(Some(command)) => command,
            Ok(None) => return,
            Err(e) => {
                self.metrics.malformed.inc();
                tracing::warn!(error = %e, line = %crate::redis::excerpt(body), "failed to parse replication line from Redis; dropped");
                return;
            }
        };
        self.metrics.received[&command.name()].inc();
        match command {
            Command::Replicate => self.signals.request_announce(),
            Command::Rdata(r) if r.instance == self.instance => self.metrics.echoes.inc(),
            Command::Position(p) if p.instance == self.instance => self.metrics.echoes.inc(),
            // Other instances' rows and the workers' commands: this writer follows nobody and
            // keeps no presence or lock state (as over TCP, they are only counted).
            _ => {}
        }
    }
}
