//! The admin endpoints, a router nested at `/v1/admin` behind the admin bearer token (403
//! when the reader has none): `GET /v1/admin/plugins`, `POST /v1/admin/plugins/{name}/reload`,
//! `POST /v1/admin/plugins/{name}/quarantine`, `POST /v1/admin/plugins/{name}/resume`,
//! `GET /v1/admin/plugins/{name}/dead-letters`, the API token endpoints
//! (`reader::auth::admin`: `/v1/admin/tokens`) and, with destinations, the push endpoints
//! (`reader::push::admin`: `/v1/admin/pushes`). Any other path under `/v1/admin`, or another
//! method, is a 404.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{Method, StatusCode};
use axum::routing::{get, post};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::PluginHost;
use super::api::{Summary, summary, unavailable};
use super::slot::{FailureReport, PluginRunState};
use crate::http::{self, ApiError, Bearer, Params, Response, json};

/// Longest an admin request may take (a reload compiles the plugin); then 503.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

/// Dead letters `GET .../dead-letters` answers without a `limit`, newest first.
const DEAD_LETTERS_DEFAULT: i64 = 100;
/// Most dead letters one answer holds. Each is a small row (a reason of at most a few KiB), so
/// an answer stays well under a few MiB; older ones stay in the reader's database
/// (`plugin_dead_letters`).
const DEAD_LETTERS_MAX: i64 = 1_000;
/// Longest reason an operator may give a quarantine, in bytes: it is shown in the plugin's
/// state, the log and the console, not a place for documents.
const MAX_REASON_BYTES: usize = 1_000;

/// The admin router, for nesting at `/v1/admin`.
pub(super) fn router(host: Arc<PluginHost>) -> Router {
    let auth = Bearer::required(
        host.config.admin_token.as_deref(),
        "the admin API is off: set reader.plugins.admin_token (or STREAMHOST_ADMIN_TOKEN)",
    );
    let mut router = Router::new()
        .route("/plugins", get(details))
        .route("/plugins/{name}/reload", post(reload))
        .route("/plugins/{name}/resume", post(resume))
        .route("/plugins/{name}/quarantine", post(quarantine))
        .route("/plugins/{name}/dead-letters", get(dead_letters))
        .with_state(Arc::clone(&host))
        .merge(crate::reader::auth::admin::router(host.auth.clone()));
    if let Some(pushes) = host.pushes() {
        router = router.merge(crate::reader::push::admin::router(pushes.clone()));
    }
    router
        .fallback(no_such_admin_endpoint)
        .method_not_allowed_fallback(no_such_admin_endpoint)
        .layer(http::layers::timeout(REQUEST_TIMEOUT))
        .layer(auth.layer())
}

async fn no_such_admin_endpoint(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::not_found(format!("no such admin endpoint: {method} {}", uri.path()))
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
    /// The `streamhost:plugin` version the component was built against.
    interface: Option<&'static str>,
    /// The row fields it asked the host to extract (`wanted-fields`, 0.3.0).
    fields: Vec<String>,
    /// Whether it exports `authorizer`.
    authorizer: bool,
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

/// `GET /v1/admin/plugins`.
async fn details(State(host): State<Arc<PluginHost>>) -> Result<Response, ApiError> {
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
            let summary = summary(&host, slot);
            let status = slot.status();
            let version = status.version.clone();
            Detail {
                summary,
                folder: slot.dir().display().to_string(),
                interface: version.as_ref().map(|v| v.interface_version()),
                fields: version
                    .as_ref()
                    .map(|v| v.wanted_fields().to_vec())
                    .unwrap_or_default(),
                authorizer: version.as_ref().is_some_and(|v| v.is_authorizer()),
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

/// `POST /v1/admin/plugins/{name}/reload`.
async fn reload(
    State(host): State<Arc<PluginHost>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    match host.reload(&name).await {
        Ok(sha256) => Ok(json(
            StatusCode::OK,
            &serde_json::json!({ "sha256": sha256 }),
        )),
        Err(message) if host.slot(&name).is_none() => Err(ApiError::not_found(message)),
        Err(message) => Err(ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            errcode: "M_RELOAD_FAILED",
            message,
        }),
    }
}

/// `POST /v1/admin/plugins/{name}/resume`.
async fn resume(
    State(host): State<Arc<PluginHost>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    match host.resume(&name).await {
        Ok(true) => Ok(json(
            StatusCode::OK,
            &serde_json::json!({ "resumed": true }),
        )),
        Ok(false) => Err(ApiError {
            status: StatusCode::CONFLICT,
            errcode: "M_NOT_QUARANTINED",
            message: format!("plugin {name} is not quarantined"),
        }),
        Err(message) if host.slot(&name).is_none() => Err(ApiError::not_found(message)),
        Err(message) => Err(unavailable(message)),
    }
}

/// The optional body of `POST /v1/admin/plugins/{name}/quarantine`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct QuarantineRequest {
    /// Why, in the operator's words.
    reason: Option<String>,
}

/// The state's reason for an operator's quarantine: `by operator` and the reason given, if
/// any. An empty body, `{}` and a blank reason are all "no reason".
fn operator_reason(body: &[u8]) -> Result<String, ApiError> {
    let bad = |e: &dyn std::fmt::Display| {
        ApiError::bad_request(
            "M_BAD_JSON",
            format!("the body must be empty or {{\"reason\": \"...\"}}: {e}"),
        )
    };
    let request: QuarantineRequest = if body.iter().all(u8::is_ascii_whitespace) {
        QuarantineRequest::default()
    } else {
        // Through a `Value`: serde would also read a struct from an array.
        match serde_json::from_slice(body).map_err(|e| bad(&e))? {
            object @ serde_json::Value::Object(_) => {
                serde_json::from_value(object).map_err(|e| bad(&e))?
            }
            _ => return Err(bad(&"not a JSON object")),
        }
    };
    let given = request.reason.as_deref().map(str::trim).unwrap_or_default();
    if given.len() > MAX_REASON_BYTES {
        return Err(ApiError::bad_request(
            "M_INVALID_PARAM",
            format!("the reason is longer than {MAX_REASON_BYTES} bytes"),
        ));
    }
    // One line: the reason goes into log lines and tables as it is.
    if given.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "M_INVALID_PARAM",
            "the reason must be one line without control characters",
        ));
    }
    Ok(match given {
        "" => "by operator".to_string(),
        given => format!("by operator: {given}"),
    })
}

/// `POST /v1/admin/plugins/{name}/quarantine`.
async fn quarantine(
    State(host): State<Arc<PluginHost>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Some(slot) = host.slot(&name) else {
        return Err(ApiError::not_found(format!("no plugin named {name}")));
    };
    let reason = operator_reason(&body)?;
    match host.quarantine(&name, reason.clone()).await {
        Ok(true) => Ok(json(
            StatusCode::OK,
            &serde_json::json!({ "quarantined": true, "reason": reason }),
        )),
        Ok(false) => {
            let message = match slot.run_state() {
                PluginRunState::Quarantined(why) => {
                    format!("plugin {name} is already quarantined: {why}")
                }
                _ => format!("plugin {name} is already quarantined"),
            };
            Err(ApiError {
                status: StatusCode::CONFLICT,
                errcode: "M_ALREADY_QUARANTINED",
                message,
            })
        }
        Err(message) if host.slot(&name).is_none() => Err(ApiError::not_found(message)),
        Err(message) => Err(unavailable(message)),
    }
}

/// `GET /v1/admin/plugins/{name}/dead-letters?limit=N`: newest first.
async fn dead_letters(
    State(host): State<Arc<PluginHost>>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    if host.slot(&name).is_none() {
        return Err(ApiError::not_found(format!("no plugin named {name}")));
    }
    let limit = match params.get("limit") {
        None => DEAD_LETTERS_DEFAULT,
        Some(value) => value
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=DEAD_LETTERS_MAX).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "M_INVALID_PARAM",
                    format!("limit must be a whole number from 1 to {DEAD_LETTERS_MAX}"),
                )
            })?,
    };
    let letters = host
        .ctx
        .store
        .dead_letters(&name, limit)
        .await
        .map_err(ApiError::internal)?;
    Ok(json(StatusCode::OK, &letters))
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
            "push": g.push,
            "http": g.http,
            "directory": g.directory,
            "limits": g.limits,
            "sha256": g.sha256,
        })
        .serialize(serializer)
    }
}
