//! Redis for the tests: the shared server at `STREAMHOST_TEST_REDIS` (default
//! `redis://127.0.0.1:6379`), unique channel prefixes so tests run in parallel, and the
//! [`TcpProxy`] in front of it that a test cuts and restores (the machine's Redis is shared:
//! it is never restarted).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use streamhost_server::config::RedisConfig;

pub use crate::proxy::TcpProxy;

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

/// Waits until a `redis-server` a test started answers `PING` at `url`; panics after 10 s
/// with the server's log (`log`), naming the server as `what`.
pub async fn wait_for_own_redis(url: &str, log: &Path, what: &str) {
    let client = redis::Client::open(url).expect("Redis URL");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ping = async {
            let mut conn = client.get_multiplexed_async_connection().await?;
            redis::cmd("PING").query_async::<String>(&mut conn).await
        };
        if let Ok(Ok(pong)) = tokio::time::timeout(Duration::from_secs(1), ping).await
            && pong == "PONG"
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not answer within 10 s; its log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
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
        url: url.into(),
        ping_interval_ms: 2_000,
        reconnect_max_ms: 500,
        ..RedisConfig::default()
    }
}

impl TcpProxy {
    /// `redis://` URL of the proxy.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr())
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
