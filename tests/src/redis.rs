//! Redis for the tests: the shared server at `STREAMHOST_TEST_REDIS` (default
//! `redis://127.0.0.1:6379`), unique channel prefixes so tests run in parallel, and a TCP
//! proxy a test can cut and restore (the machine's Redis is shared: it is never restarted).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use streamhost::config::RedisConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The Redis URL for tests. Panics (never skips) when nothing answers `PING` there.
pub async fn redis_url() -> String {
    let url = std::env::var("STREAMHOST_TEST_REDIS")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let client = redis::Client::open(url.as_str())
        .unwrap_or_else(|e| panic!("STREAMHOST_TEST_REDIS={url} is not a Redis URL: {e}"));
    let answer = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    match tokio::time::timeout(std::time::Duration::from_secs(5), answer).await {
        Ok(Ok(pong)) if pong == "PONG" => url,
        other => panic!(
            "these tests need a real Redis at {url} (set STREAMHOST_TEST_REDIS); PING gave {other:?}"
        ),
    }
}

/// `HOST:PORT` of a `redis://[auth@]host:port[/db]` URL.
pub fn redis_addr(url: &str) -> SocketAddr {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let host_port = rest.split('/').next().unwrap_or(rest);
    let host_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:6379")
    };
    host_port
        .replace("localhost", "127.0.0.1")
        .parse()
        .unwrap_or_else(|e| panic!("Redis address {host_port}: {e}"))
}

/// A server name (and so channel) no other test or run uses.
pub fn unique_server_name(test: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "t-{test}-{}-{nanos:x}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A Redis configuration for tests: fast pings and reconnects.
pub fn redis_config(url: &str) -> RedisConfig {
    RedisConfig {
        url: url.to_owned(),
        ping_interval_ms: 2_000,
        reconnect_max_ms: 500,
    }
}

/// A TCP proxy on 127.0.0.1:0 to `upstream`. [`TcpProxy::cut`] closes every connection and
/// refuses new ones (Redis "down"); [`TcpProxy::restore`] accepts again.
pub struct TcpProxy {
    addr: SocketAddr,
    /// (up, generation): a new generation closes the connections of the old ones.
    state: Arc<watch::Sender<(bool, u64)>>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Starts proxying to `upstream`.
    pub async fn start(upstream: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(watch::channel((true, 0)).0);
        let accepting = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let (up, generation) = *accepting.borrow();
                if !up {
                    drop(client);
                    continue;
                }
                let mut changes = accepting.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let mut client = client;
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = changes.wait_for(|(_, g)| *g != generation) => {}
                    }
                });
            }
        });
        TcpProxy { addr, state, task }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `redis://` URL of the proxy.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Closes every proxied connection and refuses new ones.
    pub fn cut(&self) {
        self.state.send_modify(|(up, generation)| {
            *up = false;
            *generation += 1;
        });
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.state.send_modify(|(up, _)| *up = true);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

/// Publishes `body` on `channel` with a fresh connection.
pub async fn publish(url: &str, channel: &str, body: &[u8]) {
    let client = redis::Client::open(url).expect("Redis URL");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to Redis");
    redis::cmd("PUBLISH")
        .arg(channel)
        .arg(body)
        .query_async::<i64>(&mut conn)
        .await
        .expect("PUBLISH");
}
