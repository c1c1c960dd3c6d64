//! The live web console (`docs/console.md`): a page served by the writer and by each reader,
//! from the binary itself, with no build step and no outside assets.
//!
//! - [`page`]: `GET /console` (the HTML, no data in it), `GET /console/console.js` and
//!   `GET /console/console.css`, embedded with `include_str!`; open to anyone.
//! - [`snapshot`]: `GET /console/snapshot`, what the page shows as one JSON object, from the
//!   process's [`Source`]: the writer's (`writer/console.rs`: streams and positions, the
//!   connected readers by `NAME`) or a reader's (`reader/console.rs`: its upstream,
//!   streams, lag and gaps, plugins with their last failure, recent notifications). The
//!   console knows neither: they depend on it, not it on them.
//! - [`events`]: `GET /console/events`, the snapshot as server-sent events every
//!   [`events::PERIOD`], at most [`events::MAX_STREAMS`] at once, ending at shutdown.
//!
//! The data endpoints take a bearer token (the caller's [`Bearer`]): the writer's read token
//! (or its write token), a reader's admin token (its read token only when it has no admin
//! token; the buttons call the admin API, which needs the admin token anyway). The page takes
//! the token from the URL fragment (`#token=...`, never sent to the server) or a form, keeps
//! it in `sessionStorage` and sends it as `Authorization: Bearer`. `EventSource` cannot set
//! that header, so the page reads the event stream with `fetch()` and parses it itself.

pub mod events;
pub mod page;
pub mod snapshot;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::http::Bearer;

/// What a console shows: one snapshot of its process as JSON, cheap enough to take twice a
/// second per open page.
pub trait Source: Send + Sync + 'static {
    /// The process as the page shows it now.
    fn snapshot(&self) -> serde_json::Value;
}

/// What the console's handlers share.
#[derive(Clone)]
pub(crate) struct Console {
    source: Arc<dyn Source>,
    /// Ends every event stream.
    shutdown: CancellationToken,
    /// One permit per open event stream.
    streams: Arc<Semaphore>,
}

/// The console's routes for a process shown by `source`: the page and its assets open, the
/// data endpoints behind `auth`; event streams end when `shutdown` fires.
pub fn router(source: Arc<dyn Source>, auth: Bearer, shutdown: CancellationToken) -> Router {
    let console = Console {
        source,
        shutdown,
        streams: Arc::new(Semaphore::new(events::MAX_STREAMS)),
    };
    let data = Router::new()
        .route("/console/snapshot", get(snapshot::answer))
        .route("/console/events", get(events::answer))
        .route_layer(auth.layer())
        .with_state(console);
    page::router().merge(data)
}

#[cfg(test)]
mod tests;
