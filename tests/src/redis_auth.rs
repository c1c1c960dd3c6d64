//! A Redis server that wants a password, started for one test: the machine's `redis-server`
//! on a loopback port of its own and on a UNIX socket in a temporary folder, the default user's
//! password [`PasswordRedis::PASSWORD`] and an ACL user [`PasswordRedis::USER`] with a password
//! of its own. The server is killed when the value is dropped. Its port is found free by
//! binding port 0 just before it starts (`redis-server` cannot take a listening socket).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A running Redis that wants a password.
pub struct PasswordRedis {
    child: Child,
    dir: tempfile::TempDir,
    /// The loopback port.
    pub port: u16,
}

impl PasswordRedis {
    /// The default user's password (`requirepass`).
    pub const PASSWORD: &str = "default-secret";
    /// An ACL user allowed everything.
    pub const USER: &str = "streamhost";
    /// [`PasswordRedis::USER`]'s password.
    pub const USER_PASSWORD: &str = "user-secret";

    /// Starts `redis-server`. Panics, naming what is missing, when the server cannot be
    /// started or does not answer within 10 s.
    pub async fn start() -> PasswordRedis {
        let dir = tempfile::tempdir().expect("temporary folder");
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
            listener.local_addr().expect("address").port()
        };
        let log = std::fs::File::create(dir.path().join("redis.log")).expect("log file");
        let password = format!(">{}", Self::USER_PASSWORD);
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .arg("--unixsocket")
            .arg(dir.path().join("redis.sock"))
            .args(["--requirepass", Self::PASSWORD])
            .args(["--user", Self::USER, "on", &password, "~*", "&*", "+@all"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("the password tests start their own redis-server (the machine's Redis binary): {e}")
            });
        let redis = PasswordRedis { child, dir, port };
        redis.wait_ready().await;
        redis
    }

    /// The UNIX socket's path.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    /// `redis://:<password>@127.0.0.1:<port>/<db>`, logged in as the default user.
    pub fn url(&self, db: u32) -> String {
        format!("redis://:{}@127.0.0.1:{}/{db}", Self::PASSWORD, self.port)
    }

    async fn wait_ready(&self) {
        let log = self.dir.path().join("redis.log");
        crate::redis::wait_for_own_redis(&self.url(0), &log, "redis-server with a password").await;
    }
}

impl Drop for PasswordRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
