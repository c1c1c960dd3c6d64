//! `GET /console/events`: the console's snapshot as server-sent events, an
//! `event: snapshot` with the JSON as its data at once and then every [`PERIOD`], so a change
//! (a plugin quarantined) reaches the page within one period.
//!
//! At most [`MAX_STREAMS`] streams are open at once (a 503 beyond: each costs a snapshot
//! twice a second); a stream ends when its client goes or shutdown begins, so an open page
//! never holds up a graceful shutdown.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::{Console, Source};
use crate::http::ApiError;

/// How often a snapshot goes out.
pub const PERIOD: Duration = Duration::from_millis(500);

/// Most console event streams open at once, on one process. A page is for operators, so a
/// handful is plenty; a constant until someone needs more.
pub const MAX_STREAMS: usize = 16;

/// Keep-alive comment interval; snapshots go out far more often, so it only matters to
/// proxies that count idle time differently.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One open stream: what it sends, when, and its slot among [`MAX_STREAMS`].
struct Feed {
    source: Arc<dyn Source>,
    ticks: Interval,
    shutdown: CancellationToken,
    _slot: OwnedSemaphorePermit,
}

/// Opens an event stream, or answers 503 when [`MAX_STREAMS`] are open.
pub(super) async fn answer(
    State(console): State<Console>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let slot = console.streams.clone().try_acquire_owned().map_err(|_| {
        ApiError::unavailable(
            "M_LIMIT_EXCEEDED",
            format!("{MAX_STREAMS} console streams are open already; close one and retry"),
        )
    })?;
    let mut ticks = tokio::time::interval(PERIOD);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let feed = Feed {
        source: console.source,
        ticks,
        shutdown: console.shutdown,
        _slot: slot,
    };
    let events = futures_util::stream::unfold(feed, |mut feed| async move {
        tokio::select! {
            _ = feed.ticks.tick() => {}
            () = feed.shutdown.cancelled() => return None,
        }
        let event = snapshot_event(&feed.source.snapshot());
        Some((Ok::<_, Infallible>(event), feed))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive")))
}

/// The event carrying one snapshot.
fn snapshot_event(snapshot: &serde_json::Value) -> Event {
    Event::default()
        .event("snapshot")
        .data(snapshot.to_string())
}
