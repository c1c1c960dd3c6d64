//! The reader's HTTP API: `GET /v1/status` and `GET /metrics` (see `docs/reader.md`; behind
//! `read_token` when it is set, which the admin token also passes), the plugin endpoints
//! (`plugins::api`: a 404 saying so when the reader runs no plugins) and the live web console
//! (`GET /console`, `crate::console`).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use super::plugins::{self, PluginHost};
use super::status::Shared;
use crate::http::{self, Bearer, Limits, Response, json};

/// Largest request body: the few endpoints that read one (an API token's issue, an operator's
/// quarantine reason) take small JSON objects.
const MAX_BODY_BYTES: usize = 64 << 10;

/// Longest `/v1/status` or `/metrics` may take; then 503.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
struct ReaderApi {
    shared: Arc<Shared>,
    plugins: Option<Arc<PluginHost>>,
}

/// The reader's router; `read` guards its own endpoints and `GET /v1/plugins`; the
/// `console` routes beside them.
pub(crate) fn router(
    shared: Arc<Shared>,
    plugins: Option<Arc<PluginHost>>,
    read: Bearer,
    console: Router,
) -> Router {
    let own = Router::new()
        .route("/v1/status", get(status))
        .route("/metrics", get(metrics))
        .route_layer(read.clone().layer())
        .layer(http::layers::timeout(REQUEST_TIMEOUT))
        .with_state(ReaderApi {
            shared,
            plugins: plugins.clone(),
        });
    let limits = Limits {
        body_bytes: MAX_BODY_BYTES,
        body_read_timeout: http::layers::BODY_READ_TIMEOUT,
    };
    let routes = own.merge(plugins::api_router(plugins, read)).merge(console);
    http::finish(routes, limits)
}

/// `GET /v1/status`: with plugins, each one's state and lag joins the reader's own status,
/// and with destinations the outbox of each (`pushes`).
async fn status(State(api): State<ReaderApi>) -> Response {
    match api.plugins {
        Some(host) => {
            let mut status = serde_json::to_value(api.shared.snapshot()).unwrap_or_default();
            status["plugins"] = plugins::summaries_json(&host);
            if let Some(pushes) = host.pushes()
                && let Ok(depths) = pushes.depths().await
            {
                status["pushes"] = serde_json::json!(depths);
            }
            json(StatusCode::OK, &status)
        }
        None => json(StatusCode::OK, &api.shared.snapshot()),
    }
}

/// `GET /metrics`.
async fn metrics(State(api): State<ReaderApi>, headers: axum::http::HeaderMap) -> Response {
    api.shared.refresh_lag_seconds();
    http::metrics(&api.shared.metrics.registry, &headers)
}
