//! The tool's own TCP proxy between a TCP reader and the writer's replication port: it can
//! cut the link (close every connection, refuse new ones), delay it (every chunk waits
//! before it is forwarded) or reset it (close every connection with an RST, accept again).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The link's state: whether it accepts, the delay per chunk, and a generation whose change
/// closes the connections of earlier generations.
#[derive(Clone, Copy, Debug, Default)]
struct LinkState {
    down: bool,
    delay: Duration,
    generation: u64,
}

/// A proxy on 127.0.0.1 to `upstream`.
pub(super) struct Proxy {
    addr: SocketAddr,
    state: Arc<watch::Sender<LinkState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Starts proxying from a free loopback port to `upstream`.
    pub(super) async fn start(upstream: SocketAddr) -> anyhow::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(watch::channel(LinkState::default()).0);
        let accepting = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let now = *accepting.borrow();
                if now.down {
                    drop(client);
                    continue;
                }
                tokio::spawn(relay(
                    client,
                    upstream,
                    accepting.subscribe(),
                    now.generation,
                ));
            }
        });
        Ok(Proxy { addr, state, task })
    }

    /// Where the reader connects.
    pub(super) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every connection and refuses new ones until [`Proxy::heal`].
    pub(super) fn cut(&self) {
        self.state.send_modify(|s| {
            s.down = true;
            s.generation += 1;
        });
    }

    /// Delays every chunk by `delay` until [`Proxy::heal`].
    pub(super) fn delay(&self, delay: Duration) {
        self.state.send_modify(|s| s.delay = delay);
    }

    /// Resets every connection (RST); new ones are accepted at once.
    pub(super) fn reset(&self) {
        self.state.send_modify(|s| s.generation += 1);
    }

    /// Accepts again, without delay.
    pub(super) fn heal(&self) {
        self.state.send_modify(|s| {
            s.down = false;
            s.delay = Duration::ZERO;
        });
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

/// Relays `client` to `upstream` until either side closes or the generation changes; then
/// both sockets are closed with an RST (linger 0), as a dropped link or a crashed peer would.
async fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    mut changes: watch::Receiver<LinkState>,
    generation: u64,
) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    for socket in [&client, &server] {
        let _ = socket.set_nodelay(true);
        // Closing is then an RST, whichever side ends the relay.
        let _ = socket.set_zero_linger();
    }
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = pump(client_read, server_write, changes.clone());
    let down = pump(server_read, client_write, changes.clone());
    tokio::select! {
        _ = up => {}
        _ = down => {}
        _ = changes.wait_for(|s| s.generation != generation) => {}
    }
}

/// Copies `from` to `to`, each chunk after the link's current delay.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    state: watch::Receiver<LinkState>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let delay = state.borrow().delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = socket.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(addr: SocketAddr) -> std::io::Result<Vec<u8>> {
        let mut socket = TcpStream::connect(addr).await?;
        socket.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(5), socket.read_exact(&mut buf))
            .await
            .map_err(|_| std::io::Error::other("timed out"))??;
        Ok(buf.to_vec())
    }

    #[tokio::test]
    async fn cut_refuses_heal_accepts_and_delay_slows() {
        let proxy = Proxy::start(echo_server().await).await.unwrap();
        assert_eq!(round_trip(proxy.addr()).await.unwrap(), b"ping");
        proxy.cut();
        assert!(round_trip(proxy.addr()).await.is_err(), "cut refuses");
        proxy.heal();
        proxy.delay(Duration::from_millis(150));
        let started = std::time::Instant::now();
        assert_eq!(round_trip(proxy.addr()).await.unwrap(), b"ping");
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "both ways delayed"
        );
        proxy.heal();
    }

    #[tokio::test]
    async fn reset_closes_open_connections() {
        let proxy = Proxy::start(echo_server().await).await.unwrap();
        let mut socket = TcpStream::connect(proxy.addr()).await.unwrap();
        socket.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        socket.read_exact(&mut buf).await.unwrap();
        proxy.reset();
        let read = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf))
            .await
            .expect("closed within 5 s");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        assert_eq!(round_trip(proxy.addr()).await.unwrap(), b"ping");
    }
}
