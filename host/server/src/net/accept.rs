//! [`Acceptor`]: accepts a listener's connections within its bounds.
//!
//! - **A connection cap.** At most `max_connections` connections are open at once: each
//!   accepted connection carries a [`ConnectionPermit`] that its task holds until the
//!   connection ends. A connection over the cap is accepted and closed at once (the peer reads
//!   an end of stream), counted in `streamhost_connections_refused_total{listener}` and logged
//!   at most once a second per listener, with the number refused since the previous line.
//! - **No spin on accept errors.** When `accept` fails for a reason that is not one
//!   connection's (out of file descriptors: `EMFILE`, `ENFILE`; out of memory: `ENOBUFS`,
//!   `ENOMEM`), the pending connection stays queued and the listener stays readable, so
//!   retrying at once would spin a core. The acceptor waits instead, 10 ms at first, the window
//!   doubling up to 1 s (the crate's [`Backoff`]), and starts again from 10 ms after the next
//!   success; the errors are counted and logged at most once a second.
//!
//! Listeners are bound by [`bind`], with an accept queue deeper than the usual 128.
//!
//! Used by `http::serve` (the writer's and the reader's HTTP) and the writer's TCP
//! replication server; both keep their per-connection timeouts (the listener's
//! `handshake_timeout_ms`) themselves.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::ListenerConfig;
use crate::metrics::{Counter, CounterVec, Gauge, GaugeVec, Registry};

/// The first wait after an accept error.
pub const FIRST_ACCEPT_RETRY: Duration = Duration::from_millis(10);

/// The longest wait after accept errors.
pub const MAX_ACCEPT_RETRY: Duration = Duration::from_secs(1);

/// Shortest time between two log lines about refusals, or about accept errors, of one
/// listener.
pub const LOG_EVERY: Duration = Duration::from_secs(1);

/// Connections the kernel completes and queues for a listener before it accepts them. The
/// standard library's (and tokio's) 128 overflows under a burst of connections, and a
/// connection the queue has no room for waits for its client's second SYN, a second later;
/// the kernel caps it at `net.core.somaxconn` (4,096 on current Linux).
pub const BACKLOG: u32 = 1_024;

/// Binds a listener on `address` with a [`BACKLOG`]-deep accept queue (and `SO_REUSEADDR`,
/// as `TcpListener::bind` sets).
pub fn bind(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(BACKLOG)
}

/// The accepting side's metrics, registered once per process and labelled by listener.
#[derive(Clone, Debug)]
pub struct ConnectionMetrics {
    refused: CounterVec,
    open: GaugeVec,
    accept_errors: CounterVec,
}

impl ConnectionMetrics {
    /// Registers the metrics in `registry`.
    pub fn register(registry: &Registry) -> ConnectionMetrics {
        ConnectionMetrics {
            refused: registry.counter_vec(
                "connections_refused_total",
                "Connections closed at once because their listener had max_connections open, \
                 by listener.",
                &["listener"],
            ),
            open: registry.gauge_vec(
                "connections_open",
                "Connections open, by listener.",
                &["listener"],
            ),
            accept_errors: registry.counter_vec(
                "accept_errors_total",
                "Failed accepts (out of file descriptors or memory), each followed by a wait, \
                 by listener.",
                &["listener"],
            ),
        }
    }
}

/// Holds one of its listener's `max_connections` slots; dropping it (when the connection's
/// task ends) frees the slot.
#[derive(Debug)]
pub struct ConnectionPermit {
    _slot: OwnedSemaphorePermit,
    open: Gauge,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.open.add(-1);
    }
}

/// A listener's accepting loop (see the module documentation).
#[derive(Debug)]
pub struct Acceptor {
    listener: TcpListener,
    name: &'static str,
    max_connections: usize,
    handshake_timeout: Duration,
    slots: Arc<Semaphore>,
    refused: Counter,
    open: Gauge,
    refusals: Throttle,
    errors: AcceptErrors,
}

impl Acceptor {
    /// Accepts on `listener` within `config`'s bounds; `name` is the listener's key in the
    /// configuration (`writer.http`), its label in metrics and logs.
    pub fn new(
        listener: TcpListener,
        name: &'static str,
        config: &ListenerConfig,
        metrics: &ConnectionMetrics,
    ) -> Acceptor {
        Acceptor {
            listener,
            name,
            max_connections: config.max_connections,
            handshake_timeout: config.handshake_timeout(),
            slots: Arc::new(Semaphore::new(config.max_connections)),
            refused: metrics.refused.with(&[name]),
            open: metrics.open.with(&[name]),
            refusals: Throttle::new(LOG_EVERY),
            errors: AcceptErrors::new(metrics.accept_errors.with(&[name])),
        }
    }

    /// The listener's handshake timeout (`handshake_timeout_ms`).
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// The next connection within the cap, with its peer's address and its slot; `None` once
    /// `shutdown` fires.
    pub async fn accept(
        &mut self,
        shutdown: &CancellationToken,
    ) -> Option<(TcpStream, SocketAddr, ConnectionPermit)> {
        loop {
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                () = shutdown.cancelled() => return None,
            };
            match accepted {
                Ok((stream, peer)) => {
                    self.errors.succeeded();
                    match self.slots.clone().try_acquire_owned() {
                        Ok(slot) => {
                            self.open.add(1);
                            let permit = ConnectionPermit {
                                _slot: slot,
                                open: self.open.clone(),
                            };
                            return Some((stream, peer, permit));
                        }
                        Err(_) => self.refuse(stream, peer),
                    }
                }
                Err(e) if is_about_one_connection(&e) => {
                    tracing::debug!(listener = self.name, error = %e, "a connection failed before it was accepted");
                }
                Err(e) => {
                    let wait = self.errors.failed(&e, self.name);
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = shutdown.cancelled() => return None,
                    }
                }
            }
        }
    }

    /// Closes a connection over the cap at once.
    fn refuse(&mut self, stream: TcpStream, peer: SocketAddr) {
        drop(stream);
        self.refused.inc();
        if let Some(refused) = self.refusals.hit(Instant::now()) {
            tracing::warn!(
                listener = self.name,
                max_connections = self.max_connections,
                refused,
                last_peer = %peer,
                "connections refused: the listener has max_connections open \
                 (count since the previous line)"
            );
        }
    }
}

/// Whether an accept error is about the one connection being accepted (it went away first),
/// so accepting the next one at once is right.
fn is_about_one_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

/// The wait after accept errors and their throttled log lines.
#[derive(Debug)]
struct AcceptErrors {
    backoff: Backoff,
    log: Throttle,
    count: Counter,
}

impl AcceptErrors {
    fn new(count: Counter) -> AcceptErrors {
        AcceptErrors {
            backoff: Backoff::new(FIRST_ACCEPT_RETRY, MAX_ACCEPT_RETRY)
                .with_floor(FIRST_ACCEPT_RETRY),
            log: Throttle::new(LOG_EVERY),
            count,
        }
    }

    /// Counts and (throttled) logs a failed accept; how long to wait before the next.
    fn failed(&mut self, error: &io::Error, listener: &str) -> Duration {
        self.count.inc();
        let wait = self.backoff.next_delay();
        if let Some(failures) = self.log.hit(Instant::now()) {
            tracing::warn!(
                listener,
                error = %error,
                failures,
                wait_ms = wait.as_millis() as u64,
                "accepting connections failed; waiting before the next accept \
                 (failures since the previous line)"
            );
        }
        wait
    }

    /// A connection was accepted: the next failure waits the first window again.
    fn succeeded(&mut self) {
        self.backoff.reset();
    }
}

/// Lets one event of a kind through per period, counting the ones held back.
#[derive(Debug)]
struct Throttle {
    every: Duration,
    last: Option<Instant>,
    held: u64,
}

impl Throttle {
    fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            last: None,
            held: 0,
        }
    }

    /// One event at `now`: `Some(n)` when it should be reported, `n` counting it and those
    /// held back since the previous report; `None` when it is held back.
    fn hit(&mut self, now: Instant) -> Option<u64> {
        self.held += 1;
        if self.last.is_some_and(|last| now < last + self.every) {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_throttle_reports_once_a_period_with_what_it_held_back() {
        let start = Instant::now();
        let mut throttle = Throttle::new(Duration::from_secs(1));
        assert_eq!(throttle.hit(start), Some(1), "the first event is reported");
        for ms in [1, 10, 500, 999] {
            assert_eq!(throttle.hit(start + Duration::from_millis(ms)), None);
        }
        assert_eq!(
            throttle.hit(start + Duration::from_millis(1_000)),
            Some(5),
            "four held back and this one"
        );
        assert_eq!(throttle.hit(start + Duration::from_millis(1_001)), None);
        assert_eq!(throttle.hit(start + Duration::from_secs(5)), Some(2));
    }

    #[test]
    fn accept_errors_wait_longer_each_time_up_to_a_second_and_start_over_after_a_success() {
        let mut errors = AcceptErrors::new(Counter::default());
        let emfile = io::Error::from_raw_os_error(24);
        let mut windows = Vec::new();
        for _ in 0..10 {
            let window = errors.backoff.ceiling();
            windows.push(window.as_millis());
            let wait = errors.failed(&emfile, "test");
            assert!(
                FIRST_ACCEPT_RETRY <= wait && wait <= window,
                "{wait:?} outside [{FIRST_ACCEPT_RETRY:?}, {window:?}]"
            );
        }
        assert_eq!(windows, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        assert_eq!(errors.count.get(), 10);
        errors.succeeded();
        assert_eq!(errors.failed(&emfile, "test"), FIRST_ACCEPT_RETRY);
    }

    #[test]
    fn only_a_vanished_connection_is_retried_at_once() {
        assert!(is_about_one_connection(&io::Error::from(
            io::ErrorKind::ConnectionAborted
        )));
        for errno in [24, 23, 105, 12] {
            // EMFILE, ENFILE, ENOBUFS, ENOMEM
            assert!(!is_about_one_connection(&io::Error::from_raw_os_error(
                errno
            )));
        }
    }

    async fn acceptor(max_connections: usize) -> (Acceptor, SocketAddr, Registry) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let registry = Registry::new();
        let metrics = ConnectionMetrics::register(&registry);
        let mut config = ListenerConfig::on(addr);
        config.max_connections = max_connections;
        (
            Acceptor::new(listener, "test.http", &config, &metrics),
            addr,
            registry,
        )
    }

    /// Reads from `socket` until the end of stream (or a reset); fails after 5 s.
    async fn closed(mut socket: TcpStream) {
        use tokio::io::AsyncReadExt;
        let mut buffer = [0u8; 64];
        loop {
            match tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buffer)).await {
                Ok(Ok(0) | Err(_)) => return,
                Ok(Ok(_)) => {}
                Err(_) => panic!("the connection is still open after 5 s"),
            }
        }
    }

    #[tokio::test]
    async fn connections_over_the_cap_are_closed_and_counted_until_a_slot_frees() {
        let (mut acceptor, addr, registry) = acceptor(2).await;
        let shutdown = CancellationToken::new();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let accepting = tokio::spawn(async move {
            while let Some(accepted) = acceptor.accept(&shutdown).await {
                tx.send(accepted).unwrap();
            }
        });
        let mut clients = Vec::new();
        for _ in 0..2 {
            clients.push(TcpStream::connect(addr).await.unwrap());
        }
        let first = rx.recv().await.unwrap();
        let _second = rx.recv().await.unwrap();
        for _ in 0..3 {
            closed(TcpStream::connect(addr).await.unwrap()).await;
        }
        let text = registry.render();
        assert!(
            text.contains("streamhost_connections_refused_total{listener=\"test.http\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("streamhost_connections_open{listener=\"test.http\"} 2"),
            "{text}"
        );
        drop(first);
        let _third = TcpStream::connect(addr).await.unwrap();
        let (_, _, _permit) = rx.recv().await.unwrap();
        assert!(rx.try_recv().is_err());
        accepting.abort();
    }
}
