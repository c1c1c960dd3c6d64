//! The writer's HTTP API: append rows, list streams, Synapse's catch-up endpoint, metrics.
//!
//! - `POST /v1/streams/{stream}/rows[?shared_token=true]`: a JSON array of rows, committed
//!   atomically; answers `{"stream": s, "tokens": [...]}` after the commit.
//! - `GET /v1/streams`: every stream and its position.
//! - `GET /_synapse/replication/get_repl_stream_updates/{stream}/{txn_id}?from_token=&upto_token=`:
//!   `{"updates": [[token, row], ...], "upto_token": n, "limited": bool}` (Synapse's shape).
//! - `GET /metrics`: Prometheus text.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde_json::value::RawValue;
use streamhost_log::{AppendRequest, Log};
use streamhost_proto::{InstanceName, MAX_LINE_LENGTH, RowJson, StreamName, Token};

use super::appender::{AppendError, Appender};
use super::streams::StreamSet;
use crate::http::{self, ApiError, Response};
use crate::metrics::{CounterVec, Registry};

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
    pub write_token: Option<String>,
    /// Bearer token for catch-up.
    pub replication_secret: Option<String>,
    /// Largest accepted body.
    pub max_body_bytes: usize,
    /// Most rows per catch-up answer.
    pub catchup_row_limit: usize,
    /// Every metric of the writer.
    pub registry: Arc<Registry>,
    /// Catch-up requests by stream.
    pub catchup_requests: CounterVec,
}

impl WriterApi {
    /// Builds the catch-up metric in `registry`.
    pub fn catchup_metric(registry: &Registry) -> CounterVec {
        registry.counter_vec(
            "catchup_requests_total",
            "Catch-up requests served, by stream.",
            &["stream"],
        )
    }

    /// Answers one request.
    pub async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response {
        let path: Vec<String> = request
            .uri()
            .path()
            .trim_matches('/')
            .split('/')
            .map(str::to_owned)
            .collect();
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        let answer = match (request.method(), path.as_slice()) {
            (&Method::POST, ["v1", "streams", stream, "rows"]) => {
                let stream = stream.to_string();
                self.append(request, &stream).await
            }
            (&Method::GET, ["v1", "streams"]) => Ok(self.list_streams()),
            (
                &Method::GET,
                [
                    "_synapse",
                    "replication",
                    "get_repl_stream_updates",
                    stream,
                    _txn_id,
                ],
            ) => self.catch_up(&request, stream).await,
            (&Method::GET, ["metrics"]) => Ok(http::metrics(&self.registry)),
            (_, ["v1", "streams", _, "rows"] | ["v1", "streams"] | ["metrics"]) => Err(ApiError {
                status: StatusCode::METHOD_NOT_ALLOWED,
                errcode: "M_UNRECOGNIZED",
                message: format!("{} is not allowed here", request.method()),
            }),
            _ => Err(ApiError::not_found(format!(
                "no such endpoint: {}",
                request.uri().path()
            ))),
        };
        answer.unwrap_or_else(ApiError::into_response)
    }

    async fn append(&self, request: Request<Incoming>, stream: &str) -> Result<Response, ApiError> {
        http::check_bearer(&request, self.write_token.as_deref())?;
        let Some((stream, _)) = self.streams.find(stream) else {
            return Err(ApiError::not_found(format!("unknown stream {stream:?}")));
        };
        let stream = stream.clone();
        let shared_token = match http::query_param(&request, "shared_token").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(ApiError::bad_request(
                    "M_INVALID_PARAM",
                    format!("shared_token must be true or false, got {other:?}"),
                ));
            }
        };
        let body = http::read_body(request, self.max_body_bytes).await?;
        let rows = parse_rows(&body, &stream, &self.instance)?;
        let tokens = self
            .appender
            .append(AppendRequest {
                stream: stream.clone(),
                rows,
                shared_token,
            })
            .await
            .map_err(|e| match e {
                AppendError::ShuttingDown => ApiError {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    errcode: "M_UNAVAILABLE",
                    message: e.to_string(),
                },
                // The appender logged the cause; the client learns whether to retry.
                AppendError::Log(_) => ApiError {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    errcode: "M_UNAVAILABLE",
                    message: "the log database failed; nothing of this request was committed \
                              (retry)"
                        .into(),
                },
                AppendError::Unknown(_) => ApiError {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    errcode: "M_UNAVAILABLE",
                    message: "the log database connection was lost while committing: this \
                              request may have been committed (check before retrying)"
                        .into(),
                },
            })?;
        let tokens: Vec<i64> = tokens.iter().map(|t| t.0).collect();
        Ok(http::json(
            StatusCode::OK,
            &serde_json::json!({ "stream": stream.as_str(), "tokens": tokens }),
        ))
    }

    fn list_streams(&self) -> Response {
        let streams: Vec<_> = self
            .streams
            .iter()
            .map(|(name, recent)| serde_json::json!({ "name": name.as_str(), "position": recent.position().0 }))
            .collect();
        http::json(
            StatusCode::OK,
            &serde_json::json!({
                "server_name": self.server_name,
                "instance": self.instance.as_str(),
                "streams": streams,
            }),
        )
    }

    async fn catch_up(
        &self,
        request: &Request<Incoming>,
        stream: &str,
    ) -> Result<Response, ApiError> {
        http::check_bearer(request, self.replication_secret.as_deref())?;
        let Some((stream, recent)) = self.streams.find(stream) else {
            return Err(ApiError::bad_request("M_UNKNOWN", "Unknown stream"));
        };
        let from = token_param(request, "from_token")?;
        let upto = token_param(request, "upto_token")?.min(recent.position());
        self.catchup_requests.with(&[stream.as_str()]).inc();
        let updates = match recent.read(from, upto, self.catchup_row_limit) {
            Some(updates) => updates,
            None => self
                .log
                .read_range(stream, from, upto, self.catchup_row_limit)
                .await
                .map_err(ApiError::internal)?,
        };
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
        Ok(http::with_type(
            StatusCode::OK,
            body.into(),
            "application/json",
        ))
    }
}

fn token_param(request: &Request<Incoming>, name: &str) -> Result<Token, ApiError> {
    let value = http::query_param(request, name)
        .ok_or_else(|| ApiError::bad_request("M_MISSING_PARAM", format!("missing {name}")))?;
    match value.parse::<i64>() {
        Ok(n) if n >= 0 => Ok(Token(n)),
        _ => Err(ApiError::bad_request(
            "M_INVALID_PARAM",
            format!("{name} must be a non-negative integer"),
        )),
    }
}

/// Parses a JSON array body into canonical rows, each small enough for one `RDATA` line.
fn parse_rows(
    body: &[u8],
    stream: &StreamName,
    instance: &InstanceName,
) -> Result<Vec<RowJson>, ApiError> {
    let raw: Vec<&RawValue> = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(
            "M_BAD_JSON",
            format!("body must be a JSON array of rows: {e}"),
        )
    })?;
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
