//! A TCP proxy a test can cut and restore: how the tests take a shared service (Redis,
//! PostgreSQL) "down" without restarting the machine's server, which other tests use.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A TCP proxy on 127.0.0.1:0 to `upstream`. [`TcpProxy::cut`] closes every connection and
/// refuses new ones (the service is "down"); [`TcpProxy::restore`] accepts again.
pub struct TcpProxy {
    addr: SocketAddr,
    /// (up, generation): a new generation closes the connections of the old ones.
    state: Arc<watch::Sender<(bool, u64)>>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Starts proxying to `upstream`.
    pub async fn start(upstream: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(watch::channel((true, 0)).0);
        let accepting = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let (up, generation) = *accepting.borrow();
                if !up {
                    drop(client);
                    continue;
                }
                let mut changes = accepting.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let mut client = client;
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = changes.wait_for(|(_, g)| *g != generation) => {}
                    }
                });
            }
        });
        TcpProxy { addr, state, task }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every proxied connection and refuses new ones.
    pub fn cut(&self) {
        self.state.send_modify(|(up, generation)| {
            *up = false;
            *generation += 1;
        });
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.state.send_modify(|(up, _)| *up = true);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}
