//! [`PushReceiver`]: a push destination for the push tests. A real hyper server on
//! `127.0.0.1:0` that records every request (its `Idempotency-Key`, body and headers, and when
//! it came), answers as the test sets it (200, any status, or 429 with `Retry-After`), and
//! de-duplicates by key as a well-behaved receiver does: the first 2xx-answered delivery of a
//! key counts, later ones are duplicates. It can be stopped (connections refused, open ones
//! cut) and started again on the same port.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// How the receiver answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// 200 at once.
    Ok,
    /// This status (500, 400, …).
    Status(u16),
    /// 429 with `Retry-After: <seconds>`.
    TooMany {
        /// The `Retry-After` value, in seconds.
        retry_after_s: u64,
    },
}

/// One request as received.
#[derive(Clone, Debug)]
pub struct Received {
    /// Its `Idempotency-Key` (empty if none).
    pub key: String,
    /// Its body.
    pub body: Vec<u8>,
    /// Its headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// When it arrived.
    pub at: Instant,
    /// The status it was answered.
    pub status: u16,
}

#[derive(Default)]
struct State {
    answer: Option<Answer>,
    requests: Vec<Received>,
    /// Keys whose first 2xx delivery was counted, in that order.
    accepted: Vec<String>,
    seen: HashSet<String>,
    duplicates: usize,
}

/// The receiver; see the module docs.
pub struct PushReceiver {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl PushReceiver {
    /// Starts a receiver answering 200.
    pub async fn start() -> PushReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let mut receiver = PushReceiver {
            addr,
            state: Arc::new(Mutex::new(State::default())),
            server: None,
        };
        receiver.serve(listener);
        receiver
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL pushes go to (`http://ADDR/push`).
    pub fn url(&self) -> String {
        format!("http://{}/push", self.addr)
    }

    /// Answers every request from now on with `answer`.
    pub fn answer(&self, answer: Answer) {
        self.lock().answer = Some(answer);
    }

    /// Stops listening and cuts the open connections: the destination is down.
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }

    /// Listens again on the same port (retrying while the port is still held).
    pub async fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("binding {} again: {e}", self.addr),
            }
        };
        self.serve(listener);
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Received> {
        self.lock().requests.clone()
    }

    /// The keys whose first 2xx-answered delivery was counted, in arrival order (each once).
    pub fn accepted(&self) -> Vec<String> {
        self.lock().accepted.clone()
    }

    /// Deliveries (2xx-answered) of keys already accepted.
    pub fn duplicates(&self) -> usize {
        self.lock().duplicates
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn serve(&mut self, listener: TcpListener) {
        let state = self.state.clone();
        self.server = Some(tokio::spawn(async move {
            // Dropping the set (the task aborted) aborts every connection with it.
            let mut connections = JoinSet::new();
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let state = state.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handle(&state, request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        }));
    }
}

impl Drop for PushReceiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Records `request` and answers it as set.
async fn handle(state: &Mutex<State>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let key = request
        .headers()
        .get("idempotency-key")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes().to_vec(),
        Err(_) => return plain(StatusCode::BAD_REQUEST, "body cut"),
    };
    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
    let answer = state.answer.unwrap_or(Answer::Ok);
    let (status, retry_after) = match answer {
        Answer::Ok => (200, None),
        Answer::Status(status) => (status, None),
        Answer::TooMany { retry_after_s } => (429, Some(retry_after_s)),
    };
    if (200..300).contains(&status) {
        if state.seen.insert(key.clone()) {
            state.accepted.push(key.clone());
        } else {
            state.duplicates += 1;
        }
    }
    state.requests.push(Received {
        key,
        body,
        headers,
        at: Instant::now(),
        status,
    });
    let status = StatusCode::from_u16(status).expect("a valid status");
    let mut response = plain(status, "answered by the push receiver");
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert("retry-after", hyper::header::HeaderValue::from(seconds));
    }
    response
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response
}
