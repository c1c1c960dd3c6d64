//! Outbound HTTP for plugins through the standard `wasi:http/outgoing-handler` import,
//! linked only for a plugin granted `http` targets.
//!
//! Every request a plugin makes goes through [`OutboundHooks::send_request`], which admits it
//! only during `on-batch`, within the call's request count, and when its URL matches a
//! granted target ([`HttpPolicy`]): an origin (`https://host[:port]`: same scheme, host and
//! port) or a destination (its URL is a prefix of the request's, at a path boundary). A
//! destination's headers are added there; the plugin may not set headers of those names
//! (they are forbidden to it) and never sees their values. A refused request fails with
//! `HTTP-request-denied`, which the guest sees as the result of its request.
//!
//! An admitted request is answered by the runtime's [`HttpBackend`]: the network (wasmtime's
//! hyper + rustls client) or fixtures (`streamhost plugin run --http-fixtures`). Either way
//! the whole exchange, response body included, must end before the earlier of the request
//! timeout and the call's deadline (`body`), and the body may not exceed the size limit.

mod body;
mod fixtures;
mod policy;

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime_wasi_http::{
    DEFAULT_FORBIDDEN_HEADERS, Error, ForbiddenHeaderFilter, RequestOptions, WasiBody,
    WasiHttpHooks,
};

pub use fixtures::{FixtureResponse, HttpExchange, HttpFixtures};
pub(crate) use policy::HttpPolicy;

use crate::limits::Limits;

/// What answers the requests a plugin is allowed to make.
#[derive(Clone, Debug, Default)]
pub enum HttpBackend {
    /// The network (the reader).
    #[default]
    Network,
    /// Canned answers, and a record of every request (`streamhost plugin run`).
    Fixtures(Arc<HttpFixtures>),
}

/// The future `send_request` returns.
type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                ),
                Error,
            >,
        > + Send,
>;

/// The `wasi:http` hooks of one plugin instance: the allow-list, the limits and the state of
/// the current call.
pub(crate) struct OutboundHooks {
    policy: Arc<HttpPolicy>,
    timeout: Duration,
    max_response_bytes: u64,
    max_requests: u32,
    /// Whether the current call may make requests (`on-batch` only).
    allowed: bool,
    /// Requests made (or refused) during the current call.
    requests: u32,
    /// The current call's deadline.
    deadline: Instant,
}

impl OutboundHooks {
    /// Hooks for an instance of a plugin with `policy` and `limits`.
    pub(crate) fn new(policy: Arc<HttpPolicy>, limits: &Limits) -> OutboundHooks {
        OutboundHooks {
            policy,
            timeout: Duration::from_millis(limits.http_timeout_ms),
            max_response_bytes: limits.max_http_response_bytes,
            max_requests: limits.max_http_requests,
            allowed: false,
            requests: 0,
            deadline: Instant::now(),
        }
    }

    /// Starts a call ending at `deadline`; `allowed` when it may make requests.
    pub(crate) fn begin_call(&mut self, deadline: Instant, allowed: bool) {
        self.allowed = allowed;
        self.requests = 0;
        self.deadline = deadline;
    }

    /// Allows requests for the rest of the current call (`on-batch`).
    pub(crate) fn allow(&mut self) {
        self.allowed = true;
    }

    /// Checks `request` against the call and the allow-list, and adds a destination's
    /// headers. `Err` is the reason for refusing it.
    fn admit(&mut self, request: &mut http::Request<WasiBody>) -> Result<(), String> {
        if !self.allowed {
            return Err("outbound HTTP is allowed only in on-batch".into());
        }
        self.requests += 1;
        if self.requests > self.max_requests {
            return Err(format!(
                "more than limits.max_http_requests = {} requests in one call",
                self.max_requests
            ));
        }
        let headers = self.policy.admit(request.uri())?;
        let map = request.headers_mut();
        // The plugin cannot set these (they are forbidden to it); removed anyway.
        for (name, _) in headers {
            map.remove(name);
        }
        for (name, value) in headers {
            map.append(name.clone(), value.clone());
        }
        Ok(())
    }
}

impl WasiHttpHooks for OutboundHooks {
    fn forbidden_header_filter(&mut self) -> ForbiddenHeaderFilter {
        let policy = self.policy.clone();
        Arc::new(move |name| DEFAULT_FORBIDDEN_HEADERS.contains(name) || policy.hides(name))
    }

    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> SendFuture {
        let method = request.method().to_string();
        let url = request.uri().to_string();
        if let Err(reason) = self.admit(&mut request) {
            tracing::debug!(%method, %url, %reason, "plugin HTTP request refused");
            if let HttpBackend::Fixtures(fixtures) = self.policy.backend() {
                fixtures.record(HttpExchange::refused(&method, &url, &reason));
            }
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        // Never past the call's deadline: the time spent waiting counts against it.
        let deadline = (Instant::now() + self.timeout).min(self.deadline);
        let max = self.max_response_bytes;
        match self.policy.backend().clone() {
            HttpBackend::Fixtures(fixtures) => {
                let answer = fixtures.answer(&method, &url);
                Box::new(async move {
                    let response = answer.ok_or(Error::HttpRequestDenied)?;
                    Ok((
                        body::guard(response, max, deadline),
                        Box::new(async { Ok(()) }) as Box<dyn Future<Output = _> + Send>,
                    ))
                })
            }
            HttpBackend::Network => Box::new(async move {
                let left = deadline.saturating_duration_since(Instant::now());
                let options = RequestOptions {
                    connect_timeout: Some(left),
                    first_byte_timeout: Some(left),
                    between_bytes_timeout: Some(left),
                };
                let sent = wasmtime_wasi_http::default_send_request(request, Some(options));
                let (response, io) = tokio::time::timeout_at(deadline.into(), sent)
                    .await
                    .map_err(|_| Error::HttpResponseTimeout)??;
                let response = response.map(http_body_util::BodyExt::boxed_unsync);
                // The connection is dropped at the deadline too, whatever the server does.
                let io = async move {
                    tokio::time::timeout_at(deadline.into(), io)
                        .await
                        .unwrap_or(Ok(()))
                };
                Ok((
                    body::guard(response, max, deadline),
                    Box::new(io) as Box<dyn Future<Output = _> + Send>,
                ))
            }),
        }
    }
}
