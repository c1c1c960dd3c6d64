//! The plugin endpoints of the reader's HTTP API (`docs/reader.md`, `docs/plugins.md`):
//!
//! - `GET /v1/query/{plugin}/{name}?args…[&min_token=STREAM:TOKEN]`: a cached read.
//! - `GET /v1/notifications?topics=…&since=…&timeout_ms=…` (long-poll) and
//!   `GET /v1/notifications/stream?topics=…` (server-sent events).
//! - `GET /v1/plugins`: each plugin's state, version, cursors and lag.
//! - Admin, with the admin bearer token: `GET /v1/admin/plugins`,
//!   `POST /v1/admin/plugins/{name}/reload`, `POST /v1/admin/plugins/{name}/resume`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, StatusCode};
use serde::Serialize;
use streamhost_proto::Token;

use super::query_cache::cache_key;
use super::slot::{Control, FailureReport, PluginRunState, PluginSlot, QueryError};
use super::{PluginHost, notifications};
use crate::http::{ApiError, Response, check_bearer, json, query_params, with_type};

/// Longest a query waits for the plugin's worker to answer.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Answers a plugin endpoint, or `None` if `request` is not one.
pub(crate) async fn handle(host: &Arc<PluginHost>, request: Request<Incoming>) -> Option<Response> {
    let path = request.uri().path().to_string();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = request.method().clone();
    let answer = match (method.clone(), parts.as_slice()) {
        (Method::GET, ["v1", "query", plugin, name]) => query(host, plugin, name, &request).await,
        (Method::GET, ["v1", "notifications"]) => {
            Ok(notifications::long_poll(&host.ctx.hub, &request).await)
        }
        (Method::GET, ["v1", "notifications", "stream"]) => Ok(notifications::event_stream(
            &host.ctx.hub,
            &request,
            &host.shutdown,
        )),
        (Method::GET, ["v1", "plugins"]) => Ok(json(StatusCode::OK, &summaries(host))),
        (_, ["v1", "admin", ..]) => admin(host, &method, &parts[2..], &request).await,
        (_, ["v1", "query" | "plugins", ..] | ["v1", "notifications", ..]) => Err(ApiError {
            status: StatusCode::METHOD_NOT_ALLOWED,
            errcode: "M_UNRECOGNIZED",
            message: format!("{method} is not allowed here"),
        }),
        _ => return None,
    };
    Some(answer.unwrap_or_else(ApiError::into_response))
}

async fn query(
    host: &Arc<PluginHost>,
    plugin: &str,
    name: &str,
    request: &Request<Incoming>,
) -> Result<Response, ApiError> {
    let slot = host
        .slot(plugin)
        .ok_or_else(|| ApiError::not_found(format!("no plugin named {plugin}")))?;
    let (min_token, args): (Vec<_>, Vec<_>) = query_params(request)
        .into_iter()
        .partition(|(k, _)| k == "min_token");
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
    let (reply, answer) = tokio::sync::oneshot::channel();
    if !slot.send(Control::Query {
        name: name.to_string(),
        args,
        reply,
    }) {
        return Err(unavailable(format!("plugin {plugin} is not running")));
    }
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

fn unavailable(message: String) -> ApiError {
    ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        errcode: "M_UNAVAILABLE",
        message,
    }
}

/// One plugin in `GET /v1/plugins`.
#[derive(Serialize)]
struct Summary {
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

fn summary(host: &PluginHost, slot: &PluginSlot) -> Summary {
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

/// Percentiles of the recent reload cut-over pauses, in microseconds.
#[derive(Serialize)]
struct PauseFigures {
    count: usize,
    p50_us: u64,
    p99_us: u64,
    max_us: u64,
}

fn pause_figures(pauses: &std::collections::VecDeque<Duration>) -> PauseFigures {
    let mut us: Vec<u64> = pauses.iter().map(|p| p.as_micros() as u64).collect();
    us.sort_unstable();
    let at = |q: f64| {
        us.get(((us.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    PauseFigures {
        count: us.len(),
        p50_us: at(0.5),
        p99_us: at(0.99),
        max_us: us.last().copied().unwrap_or(0),
    }
}

/// One plugin in `GET /v1/admin/plugins`: the summary plus grants, limits and reports.
#[derive(Serialize)]
struct Detail {
    #[serde(flatten)]
    summary: Summary,
    folder: String,
    requested: Option<streamhost_plugin_runtime::Manifest>,
    granted: Option<serde_json::Value>,
    limits: Option<streamhost_plugin_runtime::Limits>,
    failures: std::collections::BTreeMap<&'static str, u64>,
    reloads: u64,
    reload_failures: u64,
    /// The pause each recent reload made at its batch boundary.
    cutover_pauses: PauseFigures,
    log_lines_dropped: u64,
    reports: Vec<FailureReport>,
    dead_letters: Vec<super::store::DeadLetter>,
}

async fn admin(
    host: &Arc<PluginHost>,
    method: &Method,
    parts: &[&str],
    request: &Request<Incoming>,
) -> Result<Response, ApiError> {
    let Some(token) = host.config.admin_token.as_deref() else {
        return Err(ApiError {
            status: StatusCode::FORBIDDEN,
            errcode: "M_FORBIDDEN",
            message: "the admin API is off: start the reader with --admin-token".into(),
        });
    };
    check_bearer(request, Some(token))?;
    match (method, parts) {
        (&Method::GET, ["plugins"]) => {
            let mut dead_letters = Vec::new();
            for slot in host.slots() {
                let letters = host
                    .ctx
                    .store
                    .dead_letters(slot.name(), 100)
                    .await
                    .map_err(ApiError::internal)?;
                dead_letters.push(letters);
            }
            let details: Vec<Detail> = host
                .slots()
                .iter()
                .zip(dead_letters)
                .map(|(slot, dead_letters)| {
                    let summary = summary(host, slot);
                    let status = slot.status();
                    let version = status.version.clone();
                    Detail {
                        summary,
                        folder: slot.dir().display().to_string(),
                        requested: version.as_ref().map(|v| v.manifest().clone()),
                        granted: host
                            .config
                            .grants
                            .get(slot.name())
                            .and_then(|g| serde_json::to_value(GrantView(g)).ok()),
                        limits: version.as_ref().map(|v| v.capabilities().limits.clone()),
                        failures: status.failures.clone(),
                        reloads: status.reloads,
                        reload_failures: status.reload_failures,
                        cutover_pauses: pause_figures(&status.cutover_pauses),
                        log_lines_dropped: slot.services().log().dropped(),
                        reports: status.reports.iter().cloned().collect(),
                        dead_letters,
                    }
                })
                .collect();
            Ok(json(StatusCode::OK, &details))
        }
        (&Method::POST, ["plugins", name, "reload"]) => match host.reload(name).await {
            Ok(sha256) => Ok(json(
                StatusCode::OK,
                &serde_json::json!({ "sha256": sha256 }),
            )),
            Err(message) if host.slot(name).is_none() => Err(ApiError::not_found(message)),
            Err(message) => Err(ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                errcode: "M_RELOAD_FAILED",
                message,
            }),
        },
        (&Method::POST, ["plugins", name, "resume"]) => match host.resume(name).await {
            Ok(true) => Ok(json(
                StatusCode::OK,
                &serde_json::json!({ "resumed": true }),
            )),
            Ok(false) => Err(ApiError {
                status: StatusCode::CONFLICT,
                errcode: "M_NOT_QUARANTINED",
                message: format!("plugin {name} is not quarantined"),
            }),
            Err(message) if host.slot(name).is_none() => Err(ApiError::not_found(message)),
            Err(message) => Err(unavailable(message)),
        },
        _ => Err(ApiError::not_found(format!(
            "no such admin endpoint: {method} /v1/admin/{}",
            parts.join("/")
        ))),
    }
}

/// A grant as the admin API shows it (without its configuration, which may hold secrets).
struct GrantView<'a>(&'a streamhost_plugin_runtime::Grant);

impl Serialize for GrantView<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let g = self.0;
        serde_json::json!({
            "streams": g.streams,
            "caches": g.caches,
            "topics": g.topics,
            "kv": g.kv,
            "read_rows": g.read_rows,
            "directory": g.directory,
            "limits": g.limits,
            "sha256": g.sha256,
        })
        .serialize(serializer)
    }
}
