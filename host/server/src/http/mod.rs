//! What the writer's and reader's HTTP APIs share: serving an axum router with hyper, the
//! layers every router wears, the one API error type, bearer authentication, query
//! parameters and JSON answers.
//!
//! - `serve`: accepts connections and serves each with hyper's HTTP/1.1 connection builder,
//!   with a timer so a client that sends no (or half a) request head is closed after
//!   [`HEADER_READ_TIMEOUT`]; graceful shutdown on a cancellation token. Each request carries
//!   its connection's [`PeerAddr`] as an extension. With the listener's TLS, each connection
//!   runs its handshake in its own task first; a client certificate not in
//!   `allowed_clients` is answered 403 on every request of its connection.
//! - [`layers`]: the fallbacks (404, 405) and the tower layers (tracing, JSON errors,
//!   concurrency limit, body limit, body and request timeouts) in their order.
//! - [`error`]: [`ApiError`], the `{"errcode", "error"}` answer of every 4xx and 5xx.
//! - [`auth`]: `Authorization: Bearer` as a layer.
//! - [`params`]: query parameters in order, as an extractor.
//! - [`response`]: JSON, typed and Prometheus answers.

pub mod auth;
pub mod error;
pub mod layers;
pub mod params;
pub mod response;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::response::IntoResponse;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::{Layer, ServiceExt};
use tower_http::normalize_path::NormalizePathLayer;

pub use self::auth::Bearer;
pub use self::error::ApiError;
pub use self::layers::{Limits, finish};
pub use self::params::Params;
pub use self::response::{Response, json, metrics, with_type};
use crate::net::tls::{Admission, ServerTls};

/// Longest a connection may take to send a request head, counted from when the server starts
/// reading one (on a new connection, or after the previous answer on a kept-alive one); a
/// client still silent or mid-head then is disconnected.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The client address of a request's connection (a request extension set by [`serve`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// Longest shutdown waits for requests in flight before closing their connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serves HTTP/1.1 (over `tls` when given) on `listener` with `router` until `shutdown`
/// fires, then lets in-flight requests finish (at most [`SHUTDOWN_GRACE`]). A trailing slash
/// is ignored (`/v1/streams/` is `/v1/streams`).
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<ServerTls>>,
    router: axum::Router,
    shutdown: CancellationToken,
) {
    let service = NormalizePathLayer::trim_trailing_slash().layer(router);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting an HTTP connection");
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let with_peer = service.clone().map_request(
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(PeerAddr(peer));
                request
            },
        );
        let Some(tls) = tls.clone() else {
            let connection =
                builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(with_peer));
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, %peer, "HTTP connection ended with an error");
                }
            });
            continue;
        };
        let (builder, watcher) = (builder.clone(), graceful.watcher());
        tokio::spawn(async move {
            let Some((stream, admission)) = tls.accept(stream, peer).await else {
                return;
            };
            let served = match admission {
                Admission::Allowed => {
                    let connection = builder.serve_connection(
                        TokioIo::new(stream),
                        TowerToHyperService::new(with_peer),
                    );
                    watcher.watch(connection).await
                }
                Admission::Refused => {
                    let mut builder = builder;
                    builder.keep_alive(false);
                    let refuse = hyper::service::service_fn(|_| async {
                        Ok::<_, std::convert::Infallible>(
                            ApiError::from_status(
                                axum::http::StatusCode::FORBIDDEN,
                                "client certificate not allowed",
                            )
                            .into_response(),
                        )
                    });
                    builder.serve_connection(TokioIo::new(stream), refuse).await
                }
            };
            if let Err(e) = served {
                tracing::debug!(error = %e, %peer, "HTTP connection ended with an error");
            }
        });
    }
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
}
