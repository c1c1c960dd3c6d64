//! A Redis server with TLS, started for one test, with certificates from a
//! [`TestCa`](crate::certs::TestCa): the machine's `redis-server` (the binary
//! the shared Redis runs) on two loopback ports of its own, one TLS and one plain (for the
//! test's own publishing), with certificates from a fresh test CA made by `rcgen`. The server
//! is killed when the value is dropped. `redis-server` cannot take a listening socket, so its
//! ports are found free by binding port 0 just before it starts.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use rcgen::ExtendedKeyUsagePurpose;
use streamhost_server::config::RedisConfig;

use crate::certs::TestCa;

/// A running TLS Redis, its CA and a client certificate the CA signed.
pub struct TlsRedis {
    child: Child,
    dir: tempfile::TempDir,
    /// The TLS port (certificate for `localhost` and `127.0.0.1`).
    pub tls_port: u16,
    /// A plain port of the same server: the same pub/sub channels.
    pub plain_port: u16,
    /// The CA that signed the server's and the client's certificates.
    pub ca: TestCa,
    /// A client certificate (and key) the server accepts.
    pub client_cert: PathBuf,
    /// The client certificate's key.
    pub client_key: PathBuf,
}

impl TlsRedis {
    /// Starts `redis-server` with TLS; with `client_certificates` it refuses clients without
    /// a certificate from the CA (`tls-auth-clients yes`, Redis's default). Panics, naming
    /// what is missing, when the server cannot be started or does not answer within 10 s.
    pub async fn start(client_certificates: bool) -> TlsRedis {
        let dir = tempfile::tempdir().expect("temporary folder");
        let ca = TestCa::new(dir.path(), "test-ca");
        let (server_cert, server_key) = ca.sign(
            dir.path(),
            "server",
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) = ca.sign(
            dir.path(),
            "client",
            &["streamhost-test-client"],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let (plain_port, tls_port) = two_free_ports();
        let log = std::fs::File::create(dir.path().join("redis.log")).expect("log file");
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &plain_port.to_string()])
            .args(["--tls-port", &tls_port.to_string()])
            .arg("--tls-cert-file")
            .arg(&server_cert)
            .arg("--tls-key-file")
            .arg(&server_key)
            .arg("--tls-ca-cert-file")
            .arg(&ca.cert_file)
            .args([
                "--tls-auth-clients",
                if client_certificates { "yes" } else { "no" },
            ])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "the TLS tests start their own redis-server (the machine's Redis binary): {e}"
                )
            });
        let redis = TlsRedis {
            child,
            dir,
            tls_port,
            plain_port,
            ca,
            client_cert,
            client_key,
        };
        redis.wait_ready().await;
        redis
    }

    /// `rediss://localhost:<tls_port>`.
    pub fn url(&self) -> String {
        format!("rediss://localhost:{}", self.tls_port)
    }

    /// `redis://127.0.0.1:<plain_port>`: the same server without TLS.
    pub fn plain_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.plain_port)
    }

    /// A test Redis configuration (fast pings and reconnects) over TLS, trusting the CA and
    /// presenting the client certificate.
    pub fn config(&self) -> RedisConfig {
        RedisConfig {
            ca_file: Some(self.ca.cert_file.clone()),
            certificate_file: Some(self.client_cert.clone()),
            private_key_file: Some(self.client_key.clone()),
            ..crate::redis::redis_config(&self.url())
        }
    }

    /// A folder for a test's own files (other CAs, say), removed with the server.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    async fn wait_ready(&self) {
        let log = self.dir.path().join("redis.log");
        crate::redis::wait_for_own_redis(&self.plain_url(), &log, "redis-server with TLS").await;
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two distinct loopback ports free now (both held until both are chosen).
fn two_free_ports() -> (u16, u16) {
    let first = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    let second = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    let ports = (
        first.local_addr().expect("address").port(),
        second.local_addr().expect("address").port(),
    );
    drop((first, second));
    ports
}
