//! What the writer's and reader's HTTP APIs share: serving an axum router with hyper, the
//! layers every router wears, the one API error type, bearer authentication, query
//! parameters and JSON answers.
//!
//! - `serve`: accepts connections within the listener's cap (`crate::net::accept`) and serves
//!   each with hyper's HTTP/1.1 connection builder, with a timer so a client that sends no (or
//!   half a) request head within the listener's `handshake_timeout_ms` is closed, a kept-alive
//!   connection idle that long included; graceful shutdown on a cancellation token. Each
//!   request carries its connection's [`PeerAddr`] as an extension. With the listener's TLS,
//!   each connection runs its handshake in its own task first; a client certificate not in
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
use tokio_util::sync::CancellationToken;
use tower::{Layer, ServiceExt};
use tower_http::normalize_path::NormalizePathLayer;

pub use self::auth::Bearer;
pub use self::error::ApiError;
pub use self::layers::{Limits, finish};
pub use self::params::Params;
pub use self::response::{Response, json, metrics, with_type};
use crate::net::accept::Acceptor;
use crate::net::tls::{Admission, ServerTls};

/// The client address of a request's connection (a request extension set by [`serve`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// Longest shutdown waits for requests in flight before closing their connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serves HTTP/1.1 (over `tls` when given) on `acceptor`'s connections with `router` until
/// `shutdown` fires, then lets in-flight requests finish (at most [`SHUTDOWN_GRACE`]). A
/// trailing slash is ignored (`/v1/streams/` is `/v1/streams`).
///
/// A connection must send each request head within the listener's handshake timeout, counted
/// from when the server starts reading one: on a new connection, from its accept (or the end
/// of its TLS handshake); on a kept-alive one, from the previous answer (so an idle kept-alive
/// connection is closed after it too). A client still silent or mid-head then is disconnected.
pub async fn serve(
    mut acceptor: Acceptor,
    tls: Option<Arc<ServerTls>>,
    router: axum::Router,
    shutdown: CancellationToken,
) {
    let service = NormalizePathLayer::trim_trailing_slash().layer(router);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(acceptor.handshake_timeout());
    while let Some((stream, peer, permit)) = acceptor.accept(&shutdown).await {
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
            // In the server's span (a reader's name), like everything it logs.
            tokio::spawn(tracing::Instrument::in_current_span(async move {
                // The connection's slot against `max_connections`, freed when it ends.
                let _permit = permit;
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, %peer, "HTTP connection ended with an error");
                }
            }));
            continue;
        };
        let (builder, watcher) = (builder.clone(), graceful.watcher());
        tokio::spawn(tracing::Instrument::in_current_span(async move {
            let _permit = permit;
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
        }));
    }
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use axum::routing::post;
    use bytes::Bytes;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::time::Instant;

    use super::*;
    use crate::config::ListenerConfig;
    use crate::metrics::Registry;
    use crate::net::accept::ConnectionMetrics;

    /// Reads until the server closes the connection (an end of stream or a reset).
    async fn until_closed(socket: &mut TcpStream) -> Vec<u8> {
        let mut received = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            match socket.read(&mut buffer).await {
                Ok(0) | Err(_) => return received,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    }

    /// A request whose body stops coming is answered with an error after the body-read
    /// timeout, and its connection closed.
    #[tokio::test]
    async fn a_body_that_stops_coming_is_cut_and_its_connection_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = Acceptor::new(
            listener,
            "test.http",
            &ListenerConfig::on(addr),
            &ConnectionMetrics::register(&Registry::new()),
        );
        let echo = axum::Router::new().route("/echo", post(|body: Bytes| async move { body }));
        let body_read_timeout = Duration::from_millis(300);
        let router = finish(
            echo,
            Limits {
                body_bytes: 1024,
                body_read_timeout,
            },
        );
        let shutdown = CancellationToken::new();
        tokio::spawn(serve(acceptor, None, router, shutdown.clone()));
        let mut socket = TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        socket
            .write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nabc")
            .await
            .unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(10), until_closed(&mut socket))
            .await
            .expect("closed within 10 s");
        let answer = String::from_utf8(answer).unwrap();
        let took = started.elapsed();
        assert!(took >= body_read_timeout, "closed after {took:?}");
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(answer.contains("M_BAD_REQUEST"), "{answer}");
        shutdown.cancel();
    }
}
