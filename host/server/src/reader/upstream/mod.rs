//! Where a reader's rows come from: its one upstream, chosen once from the configuration.
//!
//! ```text
//!  tcp      a Streamhost (or Synapse) writer's replication listener   catch-up: writer HTTP or its log database
//!  redis    a Streamhost writer's Redis channel                       catch-up: writer HTTP or its log database
//!  synapse  a live Synapse's Redis bus                                catch-up: Synapse's HTTP, in-memory streams only
//! ```
//!
//! Every upstream runs under the one [`follow`] loop: connect, run a session feeding the
//! processor (`Inbound::Connected`, `RDATA`/`POSITION`, `Inbound::Disconnected`), count and
//! log the loss, back off ([`Backoff`]: 100 ms doubling up to `reconnect_max_ms`, each wait
//! drawn at random within its window, from the first window again once a session had been
//! up), reconnect. Each transport only says how to connect and how to run one session:
//! - [`tcp`]: the TCP session (handshake, pings, decoding, backpressure);
//! - [`redis`]: the Redis subscription (`REPLICATE`, echoes, stalls), also under Synapse;
//! - [`synapse`]: what a Synapse upstream changes: row objects, catch-up, processor rules.

pub(crate) mod redis;
pub(crate) mod synapse;
pub(crate) mod tcp;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::catchup::{CatchupSource, DbCatchup, HttpCatchup};
use super::inbound::{ConnId, Inbound, InboundTx};
use super::processor::Processor;
use super::status::{ConnectionState, Shared};
use crate::backoff::{Backoff, FIRST_RECONNECT};
use crate::config::ReaderConfig;
use crate::net::tls::ClientTls;

/// The upstream a reader follows, with its catch-up source and how its status names it.
pub(crate) struct Upstream {
    kind: Kind,
    description: String,
    catchup: Arc<dyn CatchupSource>,
}

/// The transports, with what each needs from the configuration.
enum Kind {
    Tcp(tcp::TcpConfig),
    Redis(redis::RedisReaderConfig),
    Synapse(redis::RedisReaderConfig),
}

impl Upstream {
    /// The upstream `config` names: `[reader.synapse]`, else `[reader.redis]`, else the TCP
    /// `writer`. Opens the catch-up source and builds the Redis client and the writer's TLS
    /// once (TLS files read and parsed), so a wrong setting fails at start.
    pub(crate) async fn choose(config: &ReaderConfig) -> anyhow::Result<Upstream> {
        let tls = config
            .writer_tls
            .as_ref()
            .map(|tls| ClientTls::new(tls, "reader.writer_tls"))
            .transpose()?
            .map(Arc::new);
        Ok(match (&config.synapse, &config.redis) {
            (Some(synapse), _) => Upstream {
                kind: Kind::Synapse(synapse::subscription(config, synapse)?),
                description: synapse::describe(synapse),
                catchup: Arc::new(synapse::catchup::SynapseCatchup::new(synapse, tls)),
            },
            (None, Some(redis)) => {
                let subscription = redis::subscription(config, redis)?;
                Upstream {
                    description: crate::redis::describe(redis, &subscription.channel),
                    kind: Kind::Redis(subscription),
                    catchup: writer_catchup(config, tls).await?,
                }
            }
            (None, None) => Upstream {
                description: match tls {
                    Some(_) => format!("{} (TLS)", config.writer),
                    None => config.writer.clone(),
                },
                kind: Kind::Tcp(tcp::TcpConfig::of(config, tls.clone())),
                catchup: writer_catchup(config, tls).await?,
            },
        })
    }

    /// How the reader's status shows what it follows.
    pub(crate) fn description(&self) -> &str {
        &self.description
    }

    /// Where the processor (and the plugins) fetch what they missed.
    pub(crate) fn catchup(&self) -> Arc<dyn CatchupSource> {
        self.catchup.clone()
    }

    /// The processor, with the rules this upstream needs (a Synapse's differ).
    pub(crate) fn configure(&self, processor: Processor) -> Processor {
        match self.kind {
            Kind::Synapse(_) => synapse::configure(processor),
            Kind::Tcp(_) | Kind::Redis(_) => processor,
        }
    }

    /// The inbound feed: follows the upstream, feeding the processor through `inlet`, until
    /// shutdown.
    pub(crate) async fn follow(self, inlet: Inlet) {
        match self.kind {
            Kind::Tcp(config) => follow(tcp::Tcp::new(config), inlet).await,
            Kind::Redis(config) | Kind::Synapse(config) => {
                let redis = redis::Redis::new(config, &inlet.shared);
                follow(redis, inlet).await;
            }
        }
    }
}

/// A Streamhost writer's catch-up: its log database when `log_database_url` is set, else
/// its HTTP endpoint (over `tls` when `writer_http` is `https://`).
async fn writer_catchup(
    config: &ReaderConfig,
    tls: Option<Arc<ClientTls>>,
) -> anyhow::Result<Arc<dyn CatchupSource>> {
    Ok(match &config.log_database_url {
        Some(url) => Arc::new(DbCatchup::open(url).await?),
        None => Arc::new(HttpCatchup::new(
            &config.writer_http,
            config.replication_secret.clone(),
            tls,
        )),
    })
}

/// The processor's inlet: where sessions send what they receive, and what ends them.
pub(crate) struct Inlet {
    /// The processor's bounded queue.
    pub(crate) tx: InboundTx,
    /// The connection the processor wants replaced (its id).
    pub(crate) drop_rx: watch::Receiver<ConnId>,
    /// The reader's status and metrics.
    pub(crate) shared: Arc<Shared>,
    /// Shutdown (or another reader task ending).
    pub(crate) shutdown: CancellationToken,
}

/// How a session ended.
pub(crate) enum Ended {
    /// Shutdown, or the processor is gone: no reconnect.
    Stopped,
    /// Lost: counted, logged and reconnected after the backoff.
    Lost(Lost),
}

/// Why a session (or an attempt at one) was lost.
pub(crate) struct Lost {
    /// The session had been up: the backoff starts again from its first window.
    pub(crate) established: bool,
    /// The `reason` label of the error counters.
    pub(crate) reason: &'static str,
    /// What happened, for the log and the reader's status.
    pub(crate) error: String,
}

impl Lost {
    /// A loss for `reason`; `established` if the session had been up.
    pub(crate) fn new(established: bool, reason: &'static str, error: impl Into<String>) -> Lost {
        Lost {
            established,
            reason,
            error: error.into(),
        }
    }
}

/// A session ended by a loss.
pub(crate) fn lost(established: bool, reason: &'static str, error: impl Into<String>) -> Ended {
    Ended::Lost(Lost::new(established, reason, error))
}

/// One transport: how to connect, how to run one session, and what it counts and logs
/// besides the reader's own status.
pub(crate) trait Transport: Send + Sync {
    /// What a successful connect yields (a TCP stream, a subscribed Redis link).
    type Link: Send;

    /// The longest wait between attempts.
    fn reconnect_max(&self) -> Duration;

    /// Opens a connection.
    fn connect(&self) -> impl Future<Output = Result<Self::Link, Lost>> + Send;

    /// Runs connection `id` on `link` until it ends, feeding `inlet`.
    fn run(
        &self,
        link: Self::Link,
        id: ConnId,
        inlet: &mut Inlet,
    ) -> impl Future<Output = Ended> + Send;

    /// Connection `id` is up (the processor has been told).
    fn connected(&self, id: ConnId);

    /// The connection is down (before the processor is told).
    fn disconnected(&self) {}

    /// Another attempt after the first.
    fn reconnecting(&self) {}

    /// A session (or an attempt) was lost; the next attempt follows in `retry_in`.
    fn report(&self, lost: &Lost, retry_in: Duration);
}

/// The one follow loop: connects, runs sessions and reconnects until shutdown.
async fn follow<T: Transport>(transport: T, mut inlet: Inlet) {
    let shared = inlet.shared.clone();
    let shutdown = inlet.shutdown.clone();
    let mut backoff = Backoff::new(FIRST_RECONNECT, transport.reconnect_max());
    let mut conn_id: ConnId = 0;
    let mut attempts: u64 = 0;
    while !shutdown.is_cancelled() {
        if attempts > 0 {
            shared.count_reconnect();
            transport.reconnecting();
        }
        attempts += 1;
        shared.set_connection(ConnectionState::Connecting, None);
        let connected = tokio::select! {
            () = shutdown.cancelled() => break,
            connected = transport.connect() => connected,
        };
        let lost = match connected {
            Ok(link) => {
                conn_id += 1;
                if !queue(&inlet, Inbound::Connected(conn_id)).await {
                    break;
                }
                shared.set_connection(ConnectionState::Connected, None);
                transport.connected(conn_id);
                let ended = transport.run(link, conn_id, &mut inlet).await;
                transport.disconnected();
                if !queue(&inlet, Inbound::Disconnected(conn_id)).await {
                    break;
                }
                match ended {
                    Ended::Lost(lost) => lost,
                    Ended::Stopped => break,
                }
            }
            Err(lost) => lost,
        };
        if lost.established {
            backoff.reset();
        }
        let retry_in = backoff.next_delay();
        shared.metrics.errors.with(&[lost.reason]).inc();
        transport.report(&lost, retry_in);
        shared.set_connection(ConnectionState::BackingOff, Some(lost.error));
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(retry_in) => {}
        }
    }
    shared.set_connection(ConnectionState::Stopped, None);
}

/// Queues `message` for the processor; false on shutdown or if the processor is gone.
async fn queue(inlet: &Inlet, message: Inbound) -> bool {
    tokio::select! {
        () = inlet.shutdown.cancelled() => false,
        sent = inlet.tx.send(message) => sent.is_ok(),
    }
}

/// Resolves when session `id` must end: on shutdown (`Stopped`), or when the processor asks
/// for a new connection (a loss; `established` as the session was).
async fn until_dropped(
    shutdown: &CancellationToken,
    drop_rx: &mut watch::Receiver<ConnId>,
    id: ConnId,
    established: bool,
) -> Ended {
    tokio::select! {
        biased;
        () = shutdown.cancelled() => Ended::Stopped,
        asked = drop_rx.wait_for(|asked| *asked == id) => match asked {
            Ok(_) => lost(established, "processor", "the processor asked for a new connection"),
            Err(_) => Ended::Stopped,
        },
    }
}
