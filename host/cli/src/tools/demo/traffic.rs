//! The demo's traffic: rows shaped like Synapse's (and chat messages for the example
//! plugins) appended to the writer at a steady rate.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use streamhost_server::client::ApiClient;
use tokio_util::sync::CancellationToken;

use super::STREAMS;

/// Appends `batch` rows per request at `rate` rows per second, round-robin over the
/// streams, counting acknowledged rows in `written`, until `stop` fires.
pub(crate) async fn generate(
    client: ApiClient,
    rate: u64,
    batch: u64,
    written: Arc<AtomicU64>,
    stop: CancellationToken,
) {
    let period = Duration::from_secs_f64(batch as f64 / rate as f64);
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stop.cancelled() => return,
        }
        let stream = STREAMS[(n % STREAMS.len() as u64) as usize];
        let rows: Vec<serde_json::Value> = (0..batch)
            .map(|i| demo_row(stream, n * batch + i))
            .collect();
        let body = Bytes::from(serde_json::to_vec(&rows).expect("JSON"));
        // Receipts of one request share a token, to show `batch` runs.
        match client.append(stream, body, stream == "receipts").await {
            Ok(tokens) => {
                written.fetch_add(tokens.len() as u64, Ordering::Relaxed);
            }
            Err(e) if stop.is_cancelled() => {
                tracing::debug!(error = %e, "append during shutdown");
                return;
            }
            Err(e) => tracing::warn!(error = %e, "demo append failed"),
        }
        n += 1;
    }
}

/// A row shaped like Synapse's rows for `stream` (identifiers only, as Synapse sends), or a
/// chat message for `messages`.
fn demo_row(stream: &str, n: u64) -> serde_json::Value {
    let room = format!("!room{}:demo.streamhost", n % 7);
    let user = format!("@user{}:demo.streamhost", n % 13);
    match stream {
        "messages" => {
            let mentions: Vec<String> = if n.is_multiple_of(5) {
                vec![format!("@user{}:demo.streamhost", (n + 1) % 13)]
            } else {
                Vec::new()
            };
            serde_json::json!({"room": room, "sender": user, "body": format!("hello {n}"), "mentions": mentions})
        }
        "events" => serde_json::json!([
            "ev",
            [
                format!("$event{n}"),
                room,
                "m.room.message",
                null,
                null,
                null,
                null,
                false,
                false
            ]
        ]),
        "receipts" => {
            serde_json::json!([room, "m.read", user, format!("$event{n}"), null, {"ts": 1_700_000_000_000u64 + n}])
        }
        _ => serde_json::json!([room, [user]]),
    }
}
