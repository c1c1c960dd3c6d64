//! The plugin endpoints of the reader's HTTP API (`docs/reader.md`, `docs/plugins.md`):
//!
//! - `GET /v1/query/{plugin}/{name}?args…[&min_token=STREAM:TOKEN]`: a cached read; a miss
//!   waits in the plugin's bounded query queue (`query_queue`).
//! - `GET /v1/notifications?topics=…&since=…&timeout_ms=…` (long-poll) and
//!   `GET /v1/notifications/stream?topics=…` (server-sent events): [`notifications`].
//! - `GET /v1/plugins`: each plugin's state, version, cursors and lag.
//! - Admin, with the admin bearer token, a router of its own nested at `/v1/admin`
//!   (`admin`): `GET /v1/admin/plugins`, `POST /v1/admin/plugins/{name}/reload`,
//!   `POST /v1/admin/plugins/{name}/resume`.
//!
//! The query and notification endpoints are rate-limited per client address (`rate_limit`),
//! then, with `[reader.auth]` enabled, require an API token whose scope covers the request
//! (`reader::auth`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::http::header::HeaderValue;
use axum::routing::{any, get};
use bytes::Bytes;
use serde::Serialize;
use streamhost_proto::Token;
use tokio::sync::oneshot;

use super::query_cache::cache_key;
use super::query_queue::QueuedQuery;
use super::rate_limit::{Limited, RateLimiter, limit};
use super::slot::{Enqueue, PluginRunState, PluginSlot, QueryError};
use super::{PluginHost, admin, notifications};
use crate::http::{self, ApiError, Bearer, Params, Response, json, with_type};
use crate::reader::auth::{self, Access};

/// Longest a query waits for the plugin's worker to answer.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// How much longer than its own waits a request may take before the request timeout answers.
const TIMEOUT_MARGIN: Duration = Duration::from_secs(30);

/// The plugin endpoints; without plugins, a 404 saying so on each of their paths. `read`
/// guards `GET /v1/plugins` as it does the reader's status.
pub(crate) fn router(host: Option<Arc<PluginHost>>, read: Bearer) -> Router {
    let Some(host) = host else {
        return no_plugins();
    };
    // A query waits for `min_token`, then for the worker's answer.
    let longest_query = Duration::from_millis(host.config.min_token_timeout_ms) + QUERY_TIMEOUT;
    let limiter = RateLimiter::new(&host.config.rate_limit).map(Arc::new);
    let queries = Router::new()
        .route("/v1/query/{plugin}/{name}", get(query))
        .with_state(Arc::clone(&host));
    let queries = auth::layer(queries, host.auth.clone());
    let notifications = auth::layer(
        notifications::router(Arc::clone(&host.ctx.hub), host.shutdown.clone()),
        host.auth.clone(),
    );
    Router::new()
        .route("/v1/plugins", get(list))
        .route_layer(read.layer())
        .with_state(Arc::clone(&host))
        .merge(rate_limited(queries, &limiter, &host, "query"))
        .layer(http::layers::timeout(longest_query + TIMEOUT_MARGIN))
        .merge(rate_limited(
            notifications,
            &limiter,
            &host,
            "notifications",
        ))
        .nest("/v1/admin", admin::router(host))
}

/// `router` behind the per-address rate limit, if there is one; `endpoint` labels its 429s in
/// the metrics.
fn rate_limited(
    router: Router,
    limiter: &Option<Arc<RateLimiter>>,
    host: &Arc<PluginHost>,
    endpoint: &'static str,
) -> Router {
    let Some(limiter) = limiter else {
        return router;
    };
    let limited = Limited {
        limiter: Arc::clone(limiter),
        host: Arc::clone(host),
        endpoint,
    };
    router.layer(axum::middleware::from_fn_with_state(limited, limit))
}

/// Every plugin path answering that this reader runs none.
fn no_plugins() -> Router {
    [
        "/v1/query/{*rest}",
        "/v1/notifications",
        "/v1/notifications/{*rest}",
        "/v1/plugins",
        "/v1/plugins/{*rest}",
        "/v1/admin/{*rest}",
    ]
    .into_iter()
    .fold(Router::new(), |router, path| {
        router.route(path, any(no_plugins_here))
    })
}

async fn no_plugins_here() -> ApiError {
    ApiError::not_found("this reader runs no plugins (start it with --plugins DIR)")
}

/// `GET /v1/plugins`.
async fn list(State(host): State<Arc<PluginHost>>) -> Response {
    json(StatusCode::OK, &summaries(&host))
}

/// `GET /v1/query/{plugin}/{name}`: from the cache, or from the plugin's `query`.
async fn query(
    State(host): State<Arc<PluginHost>>,
    Extension(access): Extension<Access>,
    Path((plugin, name)): Path<(String, String)>,
    params: Params,
) -> Result<Response, ApiError> {
    let (plugin, name) = (plugin.as_str(), name.as_str());
    let (min_token, args): (Vec<_>, Vec<_>) = params
        .into_pairs()
        .into_iter()
        .partition(|(k, _)| k == "min_token");
    // Before anything about the plugin is told: its existence is outside a scope too.
    access.check_query(plugin, name, &args).await?;
    let slot = host
        .slot(plugin)
        .ok_or_else(|| ApiError::not_found(format!("no plugin named {plugin}")))?;
    let version = slot
        .status()
        .version
        .clone()
        .ok_or_else(|| unavailable(format!("plugin {plugin} is not running")))?;
    let spec = version
        .description()
        .queries
        .iter()
        .find(|q| q.name == name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("plugin {plugin} has no query {name}")))?;
    let key =
        cache_key(&spec.key, &args).map_err(|e| ApiError::bad_request("M_MISSING_PARAM", e))?;
    if let Some((_, value)) = min_token.last() {
        let (stream, token) = value
            .rsplit_once(':')
            .and_then(|(s, t)| Some((s, t.parse::<i64>().ok()?)))
            .ok_or_else(|| {
                ApiError::bad_request("M_INVALID_PARAM", "min_token must be STREAM:TOKEN")
            })?;
        let timeout = Duration::from_millis(host.config.min_token_timeout_ms);
        if !slot.wait_for_cursor(stream, Token(token), timeout).await {
            return Err(ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                errcode: "M_NOT_YET",
                message: format!(
                    "plugin {plugin} has not reached {stream}:{token} within {} ms (at {})",
                    timeout.as_millis(),
                    slot.cursor_of(stream).0
                ),
            });
        }
    }
    if let Some(answer) = host.ctx.cache.get(plugin, &spec.cache, &key) {
        return Ok(answer_response(&answer, "hit"));
    }
    let answer = enqueue(&host, &slot, name, args)?;
    // Dropping `answer` (the client left, or the timeout below) tells the worker not to run
    // the query.
    let answer = tokio::time::timeout(QUERY_TIMEOUT, answer)
        .await
        .map_err(|_| unavailable(format!("plugin {plugin} did not answer in time")))?
        .map_err(|_| unavailable(format!("plugin {plugin} stopped")))?;
    match answer {
        Ok(answer) => Ok(answer_response(&answer, "miss")),
        Err(QueryError::BadRequest(message)) => {
            Err(ApiError::bad_request("M_INVALID_PARAM", message))
        }
        Err(QueryError::Unavailable(message)) => Err(unavailable(message)),
        Err(QueryError::Failed(failure)) => Err(ApiError {
            status: StatusCode::BAD_GATEWAY,
            errcode: "M_PLUGIN_FAILED",
            message: format!("plugin {plugin} failed to answer: {failure}"),
        }),
    }
}

/// Queues a cache miss for `slot`'s worker; where its answer will come.
fn enqueue(
    host: &PluginHost,
    slot: &PluginSlot,
    name: &str,
    args: Vec<(String, String)>,
) -> Result<oneshot::Receiver<Result<Arc<str>, QueryError>>, ApiError> {
    let plugin = slot.name();
    let (reply, answer) = oneshot::channel();
    let queued = QueuedQuery {
        name: name.to_string(),
        args,
        reply,
        deadline: Instant::now() + host.ctx.queue_timeout,
    };
    match slot.enqueue(queued) {
        Ok(()) => Ok(answer),
        Err(Enqueue::NotRunning) => Err(unavailable(format!("plugin {plugin} is not running"))),
        Err(Enqueue::Full(full)) => {
            host.ctx
                .metrics
                .queries_dropped
                .with(&[plugin, "queue-full"])
                .inc();
            Err(ApiError::unavailable(
                "M_QUEUE_FULL",
                format!(
                    "plugin {plugin} has {} queries waiting, its limit \
                     (reader.plugins.queries.queue_depth); retry later",
                    full.depth
                ),
            ))
        }
    }
}

fn answer_response(answer: &str, cache: &'static str) -> Response {
    let mut response = with_type(
        StatusCode::OK,
        Bytes::copy_from_slice(answer.as_bytes()),
        "application/json",
    );
    response
        .headers_mut()
        .insert("x-streamhost-cache", HeaderValue::from_static(cache));
    response
}

pub(super) fn unavailable(message: String) -> ApiError {
    ApiError::unavailable("M_UNAVAILABLE", message)
}

/// One plugin in `GET /v1/plugins`.
#[derive(Serialize)]
pub(super) struct Summary {
    name: String,
    #[serde(flatten)]
    state: PluginRunState,
    version: Option<String>,
    cursors: Vec<CursorView>,
    /// Tokens the plugin is behind the reader, summed over its streams.
    lag: i64,
    batches: u64,
    rows: u64,
    effects: u64,
}

#[derive(Serialize)]
struct CursorView {
    stream: String,
    instance: String,
    token: i64,
    reader: i64,
}

pub(super) fn summary(host: &PluginHost, slot: &PluginSlot) -> Summary {
    let (_, positions) = host.ctx.feed.snapshot();
    let status = slot.status();
    let mut cursors: Vec<CursorView> = positions
        .tokens
        .iter()
        .map(|(key, reader)| CursorView {
            stream: key.0.as_str().to_string(),
            instance: key.1.as_str().to_string(),
            token: status.cursors.get(key).map_or(0, |t| t.0),
            reader: reader.0,
        })
        .collect();
    cursors.sort_by(|a, b| (&a.stream, &a.instance).cmp(&(&b.stream, &b.instance)));
    let lag = if status.version.is_some() {
        cursors.iter().map(|c| (c.reader - c.token).max(0)).sum()
    } else {
        0
    };
    Summary {
        name: slot.name().to_string(),
        state: status.state.clone(),
        version: status.version.as_ref().map(|v| v.sha256().to_string()),
        cursors,
        lag,
        batches: status.batches,
        rows: status.rows,
        effects: status.effects,
    }
}

fn summaries(host: &PluginHost) -> Vec<Summary> {
    host.slots()
        .iter()
        .map(|slot| summary(host, slot))
        .collect()
}

/// What `GET /v1/plugins` answers, for `GET /v1/status` to include.
pub(crate) fn summaries_json(host: &PluginHost) -> serde_json::Value {
    serde_json::to_value(summaries(host)).unwrap_or_default()
}
