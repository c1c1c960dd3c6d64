//! The writer's HTTP API: append rows, list streams, Synapse's catch-up endpoint, metrics.
//!
//! - `POST /v1/streams/{stream}/rows[?shared_token=true]`: a JSON array of rows, committed
//!   atomically; answers `{"stream": s, "tokens": [...]}` after the commit, 503 while the log
//!   database is away and 507 while its disk is full (both with `Retry-After`).
//! - `GET /v1/streams`: every stream and its position (behind `read_token`).
//! - `GET /_synapse/replication/get_repl_stream_updates/{stream}/{txn_id}?from_token=&upto_token=`:
//!   `{"updates": [[token, row], ...], "upto_token": n, "limited": bool}` (Synapse's shape);
//!   410 when rows after `from_token` were trimmed by retention (`retention::gone`).
//! - `GET /metrics`: Prometheus text (behind `read_token`).
//! - `GET /console` and `/console/...`: the live web console (`crate::console`), its data
//!   behind `read_token`.
//!
//! With `read_token` set, the read endpoints take it or the write token as their bearer.

use std::collections::HashMap;
use std::sync::Arc;

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::value::RawValue;
use streamhost_log::{AppendRequest, Log, LogError};
use streamhost_proto::{InstanceName, MAX_LINE_LENGTH, RowJson, StreamName, Token};

use super::appender::{AppendError, Appender};
use super::retention::{self, CatchupHolds};
use super::streams::StreamSet;
use crate::config::Secret;
use crate::http::{self, ApiError, Bearer, Limits, Params, Response};
use crate::metrics::{Buckets, Counter, Histogram, Registry};

/// Longest a request may take (a commit, a catch-up read); then 503.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest token as written in an `RDATA` line (`-9223372036854775808`).
const MAX_TOKEN_DIGITS: usize = 20;

/// Everything the API handlers need.
pub struct WriterApi {
    /// Where appends go.
    pub appender: Appender,
    /// Streams and their tails.
    pub streams: Arc<StreamSet>,
    /// The log, for catch-up reads the tail cannot serve.
    pub log: Log,
    /// The writer's instance name (for the line-length check and `/v1/streams`).
    pub instance: InstanceName,
    /// Sent in `SERVER`.
    pub server_name: String,
    /// Bearer token for appends.
    pub write_token: Option<Secret>,
    /// Bearer token for catch-up.
    pub replication_secret: Option<Secret>,
    /// Bearer token for `/v1/streams` and `/metrics` (the write token also opens them).
    pub read_token: Option<Secret>,
    /// Largest accepted body.
    pub max_body_bytes: usize,
    /// Most rows one append request may carry (more: 413).
    pub max_append_rows: usize,
    /// Most rows per catch-up answer.
    pub catchup_row_limit: usize,
    /// Every metric of the writer.
    pub registry: Arc<Registry>,
    /// The API's metrics, looked up once per stream.
    pub metrics: ApiMetrics,
    /// Where catch-up requests hold rows against retention.
    pub holds: Arc<CatchupHolds>,
}

/// The API's per-stream metrics, looked up once.
pub struct ApiMetrics {
    streams: HashMap<StreamName, StreamMetrics>,
}

/// One stream's handles.
struct StreamMetrics {
    catchup_requests: Counter,
    catchup_trimmed: Counter,
    catchup_duration: Histogram,
    append_duration: Histogram,
}

impl ApiMetrics {
    /// Registers the API's metrics in `registry`, with handles for each of `streams`.
    pub fn register(registry: &Registry, streams: &StreamSet) -> ApiMetrics {
        let catchup_requests = registry.counter_vec(
            "catchup_requests_total",
            "Catch-up requests served, by stream.",
            &["stream"],
        );
        let catchup_duration = registry.histogram_vec(
            "catchup_duration_seconds",
            "Time to serve a catch-up request (Synapse's or a reader's), from the handler \
             to the answer's body being ready, by stream.",
            &["stream"],
            Buckets::FAST,
        );
        let catchup_trimmed = registry.counter_vec(
            "catchup_trimmed_total",
            "Catch-up requests answered 410 because rows after their from_token were \
             trimmed by retention, by stream.",
            &["stream"],
        );
        let append_duration = registry.histogram_vec(
            "append_duration_seconds",
            "Time from an append request reaching its handler to its acknowledgement (the \
             rows durable in the log), by stream; failed appends are not observed.",
            &["stream"],
            Buckets::FAST,
        );
        let streams = streams
            .iter()
            .map(|(name, _)| {
                let label = [name.as_str()];
                (
                    name.clone(),
                    StreamMetrics {
                        catchup_requests: catchup_requests.with(&label),
                        catchup_trimmed: catchup_trimmed.with(&label),
                        catchup_duration: catchup_duration.with(&label),
                        append_duration: append_duration.with(&label),
                    },
                )
            })
            .collect();
        ApiMetrics { streams }
    }

    fn stream(&self, stream: &StreamName) -> &StreamMetrics {
        &self.streams[stream]
    }
}

/// What guards the read endpoints: `read_token`, which the write token also passes.
pub fn read_bearer(read_token: &Option<Secret>, write_token: &Option<Secret>) -> Bearer {
    Bearer::optional(read_token.as_deref()).or(write_token.as_deref())
}

/// The writer's router: appends behind `write_token`, catch-up behind `replication_secret`,
/// the stream list and metrics behind `read_token` (or `write_token`), answers within
/// [`REQUEST_TIMEOUT`], bodies up to `max_body_bytes`; the `console` routes beside them.
pub fn router(api: Arc<WriterApi>, console: Router) -> Router {
    let write = Bearer::optional(api.write_token.as_deref());
    let replication = Bearer::optional(api.replication_secret.as_deref());
    let read = read_bearer(&api.read_token, &api.write_token);
    let limits = Limits {
        body_bytes: api.max_body_bytes,
        body_read_timeout: http::layers::BODY_READ_TIMEOUT,
    };
    let routes = Router::new()
        .route(
            "/v1/streams/{stream}/rows",
            post(append).route_layer(write.layer()),
        )
        .route(
            "/v1/streams",
            get(list_streams).route_layer(read.clone().layer()),
        )
        .route(
            "/_synapse/replication/get_repl_stream_updates/{stream}/{txn_id}",
            get(catch_up).route_layer(replication.layer()),
        )
        .route("/metrics", get(metrics).route_layer(read.layer()))
        .layer(http::layers::timeout(REQUEST_TIMEOUT))
        .with_state(api)
        .merge(console);
    http::finish(routes, limits)
}

/// `POST /v1/streams/{stream}/rows`. The body is read last, after the stream and the
/// parameters are known good.
async fn append(
    State(api): State<Arc<WriterApi>>,
    Path(stream): Path<String>,
    params: Params,
    request: Request,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let Some((stream, _)) = api.streams.find(&stream) else {
        return Err(ApiError::not_found(format!("unknown stream {stream:?}")));
    };
    let stream = stream.clone();
    let shared_token = match params.get("shared_token") {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                "M_INVALID_PARAM",
                format!("shared_token must be true or false, got {other:?}"),
            ));
        }
    };
    let body = read_body(request, api.max_body_bytes).await?;
    let rows = parse_rows(&body, &stream, &api.instance, api.max_append_rows)?;
    let tokens = api
        .appender
        .append(AppendRequest {
            stream: stream.clone(),
            rows,
            shared_token,
        })
        .await
        .map_err(append_error)?;
    api.metrics
        .stream(&stream)
        .append_duration
        .observe_since(started);
    let tokens: Vec<i64> = tokens.iter().map(|t| t.0).collect();
    Ok(http::json(
        StatusCode::OK,
        &serde_json::json!({ "stream": stream.as_str(), "tokens": tokens }),
    ))
}

/// The whole body, at most the router's limit (`max_body_bytes`, named in the 413).
async fn read_body(request: Request, max_bytes: usize) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, &())
        .await
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError {
                    status: StatusCode::PAYLOAD_TOO_LARGE,
                    errcode: "M_TOO_LARGE",
                    message: format!("request body exceeds {max_bytes} bytes"),
                }
            } else {
                ApiError::bad_request(
                    "M_BAD_REQUEST",
                    format!("reading request body: {}", rejection.body_text()),
                )
            }
        })
}

/// What the client learns of a failed append: whether to retry.
fn append_error(e: AppendError) -> ApiError {
    match e {
        AppendError::ShuttingDown => ApiError::unavailable("M_UNAVAILABLE", e.to_string()),
        // The appender logged the cause; the client learns whether to retry.
        AppendError::Log(_) => ApiError::unavailable(
            "M_UNAVAILABLE",
            "the log database failed; nothing of this request was committed (retry)",
        ),
        AppendError::DiskFull(_) => ApiError {
            status: StatusCode::INSUFFICIENT_STORAGE,
            errcode: "M_INSUFFICIENT_STORAGE",
            message: "the writer's log database is out of disk space; nothing of this request \
                      was committed (retry once space is freed: no restart is needed)"
                .into(),
        },
        AppendError::Unknown(_) => ApiError::unavailable(
            "M_UNAVAILABLE",
            "the log database connection was lost while committing: this request may have \
             been committed (check before retrying)",
        ),
    }
}

/// `GET /v1/streams`.
async fn list_streams(State(api): State<Arc<WriterApi>>) -> Response {
    let streams: Vec<_> = api
        .streams
        .iter()
        .map(|(name, recent)| serde_json::json!({ "name": name.as_str(), "position": recent.position().0 }))
        .collect();
    http::json(
        StatusCode::OK,
        &serde_json::json!({
            "server_name": api.server_name,
            "instance": api.instance.as_str(),
            "streams": streams,
        }),
    )
}

/// `GET /metrics`.
async fn metrics(State(api): State<Arc<WriterApi>>, headers: HeaderMap) -> Response {
    http::metrics(&api.registry, &headers)
}

/// Synapse's catch-up endpoint.
async fn catch_up(
    State(api): State<Arc<WriterApi>>,
    Path((stream, _txn_id)): Path<(String, String)>,
    params: Params,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let Some((stream, recent)) = api.streams.find(&stream) else {
        return Err(ApiError::bad_request("M_UNKNOWN", "Unknown stream"));
    };
    let from = token_param(&params, "from_token")?;
    let upto = token_param(&params, "upto_token")?.min(recent.position());
    let metrics = api.metrics.stream(stream);
    metrics.catchup_requests.inc();
    if streamhost_log::trimmed_after(from, recent.floor()) {
        metrics.catchup_trimmed.inc();
        let earliest = api.log.earliest_token(stream).await.ok().flatten();
        return Ok(retention::gone(stream, from, recent.floor(), earliest));
    }
    let updates = match recent.read(from, upto, api.catchup_row_limit) {
        Some(updates) => updates,
        None => match api
            .log
            .read_range(stream, from, upto, api.catchup_row_limit)
            .await
        {
            Ok(updates) => updates,
            Err(LogError::Trimmed {
                trimmed_upto,
                earliest,
                ..
            }) => {
                metrics.catchup_trimmed.inc();
                return Ok(retention::gone(stream, from, trimmed_upto, earliest));
            }
            Err(e) => return Err(ApiError::internal(e)),
        },
    };
    // Rows after `from` stay a while: this reader may be paging through its backlog.
    api.holds.note(stream, from);
    // Rows are canonical JSON already: splice them in rather than re-serialising.
    let mut body = String::with_capacity(
        64 + updates
            .rows
            .iter()
            .map(|(_, r)| r.len() + 24)
            .sum::<usize>(),
    );
    body.push_str("{\"updates\":[");
    for (i, (token, row)) in updates.rows.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push('[');
        body.push_str(&token.0.to_string());
        body.push(',');
        body.push_str(row.as_str());
        body.push(']');
    }
    body.push_str(&format!(
        "],\"upto_token\":{},\"limited\":{}}}",
        updates.upto.0, updates.limited
    ));
    metrics.catchup_duration.observe_since(started);
    Ok(http::with_type(
        StatusCode::OK,
        body.into(),
        "application/json",
    ))
}

pub(crate) fn token_param(params: &Params, name: &str) -> Result<Token, ApiError> {
    let value = params
        .get(name)
        .ok_or_else(|| ApiError::bad_request("M_MISSING_PARAM", format!("missing {name}")))?;
    match value.parse::<i64>() {
        Ok(n) if n >= 0 => Ok(Token(n)),
        _ => Err(ApiError::bad_request(
            "M_INVALID_PARAM",
            format!("{name} must be a non-negative integer"),
        )),
    }
}

/// Parses a JSON array body of at most `max_rows` rows (more: 413 naming the limit) into
/// canonical rows, each small enough for one `RDATA` line.
pub(crate) fn parse_rows(
    body: &[u8],
    stream: &StreamName,
    instance: &InstanceName,
    max_rows: usize,
) -> Result<Vec<RowJson>, ApiError> {
    let raw: Vec<&RawValue> = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(
            "M_BAD_JSON",
            format!("body must be a JSON array of rows: {e}"),
        )
    })?;
    if raw.len() > max_rows {
        return Err(ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            errcode: "M_TOO_LARGE",
            message: format!(
                "{} rows in one request; at most {max_rows} (writer.max_append_rows)",
                raw.len()
            ),
        });
    }
    // "RDATA " + stream + " " + instance + " " + token + " " + row
    let overhead =
        6 + stream.as_str().len() + 1 + instance.as_str().len() + 1 + MAX_TOKEN_DIGITS + 1;
    raw.iter()
        .enumerate()
        .map(|(i, value)| {
            let row = RowJson::parse(value.get().as_bytes())
                .map_err(|e| ApiError::bad_request("M_BAD_JSON", format!("row {i}: {e}")))?;
            if overhead + row.len() > MAX_LINE_LENGTH {
                return Err(ApiError::bad_request(
                    "M_TOO_LARGE",
                    format!(
                        "row {i} encodes to {} bytes; an RDATA line may carry at most {} bytes of row on stream {stream}",
                        row.len(),
                        MAX_LINE_LENGTH - overhead
                    ),
                ));
            }
            Ok(row)
        })
        .collect()
}
