//! One connection to Redis, opened as a [`RedisConfig`] says: over TCP, a UNIX socket or TLS
//! (`tls`), then `AUTH` (with the user when the URL names one) and `SELECT` (when the
//! database is not 0). Commands are queued as RESP and written together; replies are taken
//! whole off one read buffer (`resp`), so a read of many pub/sub messages costs one system
//! call and copies no message body.
//!
//! URLs are parsed by the `redis` crate's own parser (`redis://`, `rediss://`,
//! `redis+unix://`, `unix://`), so they mean what they meant when that crate connected.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use bytes::BytesMut;
use redis::{ConnectionAddr, IntoConnectionInfo as _};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpStream, UnixStream};

use super::resp::{self, ProtocolError, Push, Reply};
use crate::config::RedisConfig;

/// Where a connection goes and how it logs in: what a configuration's URL and TLS keys say.
pub(crate) struct Target {
    address: Address,
    username: Option<String>,
    password: Option<String>,
    db: i64,
}

/// How to reach Redis.
enum Address {
    Tcp(String, u16),
    Tls {
        host: String,
        port: u16,
        name: ServerName<'static>,
        connector: Arc<rustls::ClientConfig>,
    },
    Unix(PathBuf),
}

impl Target {
    /// The target `config` describes, its URL parsed and its TLS files read and checked (after
    /// the key rules of [`RedisConfig::check_tls_keys`]); errors name the key at fault.
    pub(crate) fn of(config: &RedisConfig) -> anyhow::Result<Target> {
        config.check_tls_keys()?;
        let info = config.url.expose().into_connection_info().context("url")?;
        let address = match info.addr() {
            ConnectionAddr::Tcp(host, port) => Address::Tcp(host.clone(), *port),
            ConnectionAddr::TcpTls {
                host,
                port,
                insecure,
                ..
            } => {
                anyhow::ensure!(
                    !insecure,
                    "url: #insecure is not supported: the server's certificate is always verified"
                );
                Address::Tls {
                    host: host.clone(),
                    port: *port,
                    name: crate::net::tls::parse_server_name(host).context("url")?,
                    connector: Arc::new(super::tls::connector(config)?),
                }
            }
            ConnectionAddr::Unix(path) => Address::Unix(path.clone()),
            other => anyhow::bail!("url: {other:?} is not a Redis address Streamhost connects to"),
        };
        let settings = info.redis_settings();
        Ok(Target {
            address,
            username: settings.username().map(str::to_owned),
            password: settings.password().map(str::to_owned),
            db: settings.db(),
        })
    }
}

/// What a connection is carried over.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Why a connection cannot go on.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Broken {
    /// Redis closed it.
    #[error("Redis closed the connection")]
    Closed,
    /// Reading or writing failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// Redis sent bytes that are not RESP2.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

impl Broken {
    /// The `reason` label of `*redis_errors_total` for a session ended by this.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Broken::Closed => "closed",
            Broken::Io(_) => "io",
            Broken::Protocol(_) => "protocol",
        }
    }
}

/// Size a read buffer starts at and is topped up to before a read.
const READ_SIZE: usize = 64 * 1024;

/// One open, logged-in connection.
pub(crate) struct Connection {
    stream: Box<dyn Stream>,
    /// Bytes read and not yet taken as replies.
    read: BytesMut,
    /// Commands queued and not yet written.
    write: Vec<u8>,
}

impl Connection {
    /// Connects to `target`, then sends `AUTH` and `SELECT` as it says and checks their
    /// replies.
    pub(crate) async fn open(target: &Target) -> anyhow::Result<Connection> {
        let stream: Box<dyn Stream> = match &target.address {
            Address::Tcp(host, port) => Box::new(tcp(host, *port).await?),
            Address::Tls {
                host,
                port,
                name,
                connector,
            } => {
                let tcp = tcp(host, *port).await?;
                let tls = tokio_rustls::TlsConnector::from(connector.clone())
                    .connect(name.clone(), tcp)
                    .await
                    .context("TLS handshake")?;
                Box::new(tls)
            }
            Address::Unix(path) => Box::new(
                UnixStream::connect(path)
                    .await
                    .with_context(|| format!("connecting to {}", path.display()))?,
            ),
        };
        let mut connection = Connection {
            stream,
            read: BytesMut::with_capacity(READ_SIZE),
            write: Vec::new(),
        };
        if let Some(password) = &target.password {
            let mut auth: Vec<&[u8]> = vec![b"AUTH"];
            auth.extend(target.username.as_deref().map(str::as_bytes));
            auth.push(password.as_bytes());
            connection.command(&auth).await.context("AUTH")?;
        }
        if target.db != 0 {
            let db = target.db.to_string();
            connection
                .command(&[b"SELECT", db.as_bytes()])
                .await
                .context("SELECT")?;
        }
        Ok(connection)
    }

    /// Queues the command `args`; [`Connection::flush`] writes it.
    pub(crate) fn queue(&mut self, args: &[&[u8]]) {
        resp::encode_command(&mut self.write, args);
    }

    /// Writes every queued command.
    pub(crate) async fn flush(&mut self) -> Result<(), Broken> {
        self.stream.write_all(&self.write).await?;
        self.stream.flush().await?;
        self.write.clear();
        Ok(())
    }

    /// The next reply. Cancel-safe: bytes read before a cancel stay in the buffer.
    pub(crate) async fn reply(&mut self) -> Result<Reply, Broken> {
        self.next(resp::take_reply).await
    }

    /// The next reply of a subscribed connection (a message's body, or another reply).
    /// Cancel-safe.
    pub(crate) async fn push(&mut self) -> Result<Push, Broken> {
        self.next(resp::take_push).await
    }

    /// The next push if it has already been read whole; never reads.
    pub(crate) fn buffered_push(&mut self) -> Result<Option<Push>, Broken> {
        Ok(resp::take_push(&mut self.read)?)
    }

    /// What `take` takes off the buffer, reading until it can.
    async fn next<T>(
        &mut self,
        take: fn(&mut BytesMut) -> Result<Option<T>, ProtocolError>,
    ) -> Result<T, Broken> {
        loop {
            if let Some(taken) = take(&mut self.read)? {
                return Ok(taken);
            }
            if self.read.capacity() - self.read.len() < READ_SIZE / 4 {
                self.read.reserve(READ_SIZE);
            }
            if self.stream.read_buf(&mut self.read).await? == 0 {
                return Err(Broken::Closed);
            }
        }
    }

    /// Sends one command and waits for its reply; an error reply is an error.
    pub(crate) async fn command(&mut self, args: &[&[u8]]) -> anyhow::Result<Reply> {
        self.queue(args);
        self.flush().await?;
        match self.reply().await? {
            Reply::Error(text) => anyhow::bail!("{}", String::from_utf8_lossy(&text)),
            reply => Ok(reply),
        }
    }
}

/// A TCP connection to `host:port`, Nagle off (commands are written whole).
async fn tcp(host: &str, port: u16) -> anyhow::Result<TcpStream> {
    let stream = TcpStream::connect((host, port))
        .await
        .with_context(|| format!("connecting to {host}:{port}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}
