//! What the demo prints each second: rows written and applied per second, each reader's lag
//! and connection, and with plugins a cached read and the notifications received.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use streamhost_server::client::ApiClient;
use streamhost_server::reader::{ConnectionState, ReaderStatus};
use tokio_util::sync::CancellationToken;

use super::SHOWN_ROOM;
use super::cluster::Cluster;

/// Prints a status line each second until `shutdown` fires or `deadline` passes.
pub(super) async fn report_each_second(
    cluster: &Cluster,
    written: &AtomicU64,
    deadline: Option<Duration>,
    shutdown: &CancellationToken,
) {
    let watcher = cluster
        .has_plugins()
        .then(|| PluginView::new(cluster.readers[0].http_addr()));
    let started = Instant::now();
    let deadline = deadline.map(|after| started + after);
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let mut last_written = 0;
    let mut last_applied = vec![0u64; cluster.readers.len()];
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.cancelled() => break,
        }
        let now_written = written.load(Ordering::Relaxed);
        let mut line = format!(
            "[{:>4}s] written {:>6} rows/s ({} total)",
            started.elapsed().as_secs(),
            now_written - last_written,
            now_written
        );
        last_written = now_written;
        for (reader, last) in cluster.readers.iter().zip(last_applied.iter_mut()) {
            let status = reader.status();
            let applied = rows_applied(&status);
            line.push_str(&format!(
                " | {}: {:>6} rows/s, lag {}, {}",
                status.name,
                applied - *last,
                lag(&status),
                connection_word(&status)
            ));
            *last = applied;
        }
        println!("{line}");
        if let Some(view) = &watcher {
            println!("{}", view.line().await);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
    }
}

/// What the demo shows of the plugins each second: a cached read and new notifications.
struct PluginView {
    client: ApiClient,
    since: AtomicU64,
}

impl PluginView {
    fn new(reader: SocketAddr) -> PluginView {
        PluginView {
            client: ApiClient::new(format!("http://{reader}")),
            since: AtomicU64::new(0),
        }
    }

    async fn line(&self) -> String {
        let path = format!("/v1/query/room-timeline/timeline?room={SHOWN_ROOM}");
        let timeline = match self.client.get_json(&path).await {
            Ok(serde_json::Value::Array(rows)) => format!(
                "{} messages, last {:?}",
                rows.len(),
                rows.last().and_then(|r| r["body"].as_str()).unwrap_or("-")
            ),
            Ok(other) => other.to_string(),
            Err(e) => format!("({e})"),
        };
        let count = self
            .client
            .get_json("/v1/query/stream-stats/count?stream=messages")
            .await
            .map_or_else(|e| format!("({e})"), |v| v.to_string());
        let since = self.since.load(Ordering::Relaxed);
        let path = format!("/v1/notifications?topics=room:{SHOWN_ROOM}&since={since}&timeout_ms=0");
        let notified = match self.client.get_json(&path).await {
            Ok(page) => {
                self.since
                    .store(page["next"].as_u64().unwrap_or(since), Ordering::Relaxed);
                let list = page["notifications"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                format!("{} new", list.len())
            }
            Err(e) => format!("({e})"),
        };
        format!(
            "        reader-1 plugins: timeline {SHOWN_ROOM}: {timeline} | messages counted {count} | notifications room:{SHOWN_ROOM}: {notified}"
        )
    }
}

/// Rows applied by the reader, all streams together.
pub(super) fn rows_applied(status: &ReaderStatus) -> u64 {
    status.streams.iter().map(|s| s.rows_applied).sum()
}

/// The reader's lag, all streams together.
pub(super) fn lag(status: &ReaderStatus) -> i64 {
    status.streams.iter().map(|s| s.lag).sum()
}

fn connection_word(status: &ReaderStatus) -> &'static str {
    match status.connection.state {
        ConnectionState::Connected => "connected",
        ConnectionState::Connecting => "connecting",
        ConnectionState::BackingOff => "reconnecting",
        ConnectionState::Stopped => "stopped",
    }
}
