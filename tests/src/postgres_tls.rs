//! A PostgreSQL server with TLS, started for one test: the machine's `initdb` and `postgres`
//! (found on `PATH`, else in `/usr/lib/postgresql/<version>/bin`) with a fresh cluster in a
//! temporary folder, on a free loopback port, presenting a certificate for `localhost` from a
//! fresh test CA ([`TestCa`]). Its `pg_hba.conf` lets in TLS connections only: the superuser
//! `postgres` without a password (the harness's own connections), the role
//! [`TlsPostgres::USER`] with its password (SCRAM), and any connection without TLS is
//! rejected. The server is stopped when the value is dropped; a missing binary or a server that
//! does not start fails the test.
//!
//! PostgreSQL refuses to run as root. When the tests run as root, the cluster's files are
//! given to the `postgres` user (the one the machine's own PostgreSQL runs as) and both
//! programs run as that user through `setpriv`, which `exec`s them: the child this harness
//! stops is the server itself, not a wrapper.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rcgen::ExtendedKeyUsagePurpose;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::certs::TestCa;

/// The OS user PostgreSQL runs as when the tests run as root.
const SERVER_USER: &str = "postgres";

/// A running PostgreSQL that takes TLS connections only, and its CA.
pub struct TlsPostgres {
    child: Child,
    dir: tempfile::TempDir,
    /// The loopback port it listens on (IPv4 only).
    pub port: u16,
    /// The CA that signed the server's certificate (for `localhost` only, not `127.0.0.1`).
    pub ca: TestCa,
    /// The password of [`TlsPostgres::USER`].
    pub password: String,
}

impl TlsPostgres {
    /// A role that logs in with a password (SCRAM), owner of the database [`TlsPostgres::DB`].
    pub const USER: &str = "streamhost";
    /// The database [`TlsPostgres::USER`] owns, empty at start.
    pub const DB: &str = "streamhost";

    /// Creates a cluster and starts it with TLS on; panics, naming what is missing, when a
    /// program is not there or the server does not take a TLS connection within 30 s.
    pub async fn start() -> TlsPostgres {
        let dir = tempfile::tempdir().expect("temporary folder");
        let path = dir.path();
        let ca = TestCa::new(path, "test-ca");
        let (cert, key) = ca.sign(
            path,
            "server",
            &["localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
            .expect("key file mode 0600");
        std::fs::write(
            path.join("pg_hba.conf"),
            format!(
                "hostssl all postgres 127.0.0.1/32 trust\n\
                 hostssl all {user} 127.0.0.1/32 scram-sha-256\n\
                 hostnossl all all 0.0.0.0/0 reject\n",
                user = Self::USER
            ),
        )
        .expect("write pg_hba.conf");
        let owner = ServerOwner::of_this_process();
        owner.give(path);
        let log_path = path.join("postgres.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let initdb = owner
            .command(&pg_program("initdb"), path)
            .arg("-D")
            .arg(path.join("data"))
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
            ])
            .arg("--no-sync")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log.try_clone().expect("log file"))
            .status()
            .unwrap_or_else(|e| panic!("running initdb (PostgreSQL's, for the TLS tests): {e}"));
        assert!(
            initdb.success(),
            "initdb failed ({initdb}); its output:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        let port = free_port();
        let child = owner
            .command(&pg_program("postgres"), path)
            .arg("-D")
            .arg(path.join("data"))
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", &format!("port={port}")])
            .args(["-c", &format!("unix_socket_directories={}", path.display())])
            .args([
                "-c",
                &format!("hba_file={}", path.join("pg_hba.conf").display()),
            ])
            .args(["-c", "ssl=on"])
            .args(["-c", &format!("ssl_cert_file={}", cert.display())])
            .args(["-c", &format!("ssl_key_file={}", key.display())])
            .args(["-c", "fsync=off"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting postgres (PostgreSQL's, for the TLS tests): {e}"));
        let mut server = TlsPostgres {
            child,
            dir,
            port,
            ca,
            password: format!("pw-{:016x}", std::process::id() as u64 ^ nanos()),
        };
        let mut admin = server.wait_ready().await;
        for statement in [
            format!(
                "CREATE ROLE {} LOGIN PASSWORD '{}'",
                Self::USER,
                server.password
            ),
            format!("CREATE DATABASE {} OWNER {}", Self::DB, Self::USER),
        ] {
            sqlx::raw_sql(AssertSqlSafe(statement))
                .execute(&mut admin)
                .await
                .expect("create the test role and database");
        }
        admin.close().await.expect("close the setup connection");
        server
    }

    /// `postgres://streamhost@HOST:PORT/streamhost?QUERY` (no password: the tests give it
    /// from a file); `host` is `localhost` (the name in the certificate) or `127.0.0.1`.
    pub fn url(&self, host: &str, query: &str) -> String {
        format!(
            "postgres://{}@{host}:{}/{}?{query}",
            Self::USER,
            self.port,
            Self::DB
        )
    }

    /// `sslmode=verify-full&sslrootcert=<the test CA>`.
    pub fn verify_full(&self) -> String {
        format!(
            "sslmode=verify-full&sslrootcert={}",
            self.ca.cert_file.display()
        )
    }

    /// A file holding [`TlsPostgres::password`] and a newline, as an operator writes it.
    pub fn password_file(&self) -> PathBuf {
        let path = self.dir.path().join("password");
        std::fs::write(&path, format!("{}\n", self.password)).expect("write the password file");
        path
    }

    /// A folder for a test's own files (another CA, say), removed with the server.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The superuser's connection, without a password, over TLS.
    pub async fn admin(&self) -> PgConnection {
        let url = format!(
            "postgres://postgres@localhost:{}/postgres?{}",
            self.port,
            self.verify_full()
        );
        PgConnection::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("the TLS PostgreSQL's superuser connection: {e}"))
    }

    /// Polls until the superuser's TLS connection succeeds (30 s), failing with the server's
    /// log if the server exits or does not answer.
    async fn wait_ready(&mut self) -> PgConnection {
        let url = format!(
            "postgres://postgres@localhost:{}/postgres?{}",
            self.port,
            self.verify_full()
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let attempt =
                tokio::time::timeout(Duration::from_secs(2), PgConnection::connect(&url)).await;
            let error = match attempt {
                Ok(Ok(conn)) => return conn,
                Ok(Err(e)) => e.to_string(),
                Err(_) => "no answer within 2 s".to_owned(),
            };
            let exited = self.child.try_wait().expect("check the postgres process");
            assert!(
                exited.is_none() && tokio::time::Instant::now() < deadline,
                "PostgreSQL with TLS did not take a connection within 30 s (exited: \
                 {exited:?}, last error: {error}); its log:\n{}",
                std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        // SIGQUIT: immediate shutdown, the server's own processes included (a SIGKILL would
        // leave them running until they notice).
        let _ = Command::new("kill")
            .args(["-QUIT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// Who the server runs as: this process's user, or (when this is root) [`SERVER_USER`].
enum ServerOwner {
    Me,
    User { uid: u32, gid: u32 },
}

impl ServerOwner {
    fn of_this_process() -> ServerOwner {
        let me = std::fs::metadata("/proc/self")
            .expect("/proc/self: these tests run on Linux")
            .uid();
        if me != 0 {
            return ServerOwner::Me;
        }
        let id = |flag: &str| -> u32 {
            let out = Command::new("id")
                .args([flag, SERVER_USER])
                .output()
                .unwrap_or_else(|e| panic!("running id {flag} {SERVER_USER}: {e}"));
            assert!(
                out.status.success(),
                "the tests run as root and PostgreSQL refuses root: they run it as the user \
                 {SERVER_USER:?}, which does not exist here ({})",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .expect("id prints a number")
        };
        ServerOwner::User {
            uid: id("-u"),
            gid: id("-g"),
        }
    }

    /// Gives `dir` and everything in it to the server's user.
    fn give(&self, dir: &Path) {
        let ServerOwner::User { uid, gid } = self else {
            return;
        };
        let mut paths = vec![dir.to_path_buf()];
        while let Some(path) = paths.pop() {
            std::os::unix::fs::chown(&path, Some(*uid), Some(*gid))
                .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
            if path.is_dir() {
                for entry in std::fs::read_dir(&path).expect("read the folder") {
                    paths.push(entry.expect("folder entry").path());
                }
            }
        }
    }

    /// `program`, run as the server's user, in `dir` (which that user can enter).
    fn command(&self, program: &Path, dir: &Path) -> Command {
        let mut command = match self {
            ServerOwner::Me => Command::new(program),
            ServerOwner::User { .. } => {
                let mut command = Command::new("setpriv");
                command
                    .args([
                        "--reuid",
                        SERVER_USER,
                        "--regid",
                        SERVER_USER,
                        "--init-groups",
                    ])
                    .arg(program);
                command
            }
        };
        command.current_dir(dir);
        command
    }
}

/// `name` on `PATH`, else in the newest `/usr/lib/postgresql/<version>/bin` (Debian's
/// layout); panics when neither has it.
fn pg_program(name: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| {
            dirs.filter_map(|d| Some(d.ok()?.path().join("bin")))
                .collect()
        })
        .unwrap_or_default();
    debian.sort();
    on_path
        .into_iter()
        .chain(debian.into_iter().rev())
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "the PostgreSQL TLS tests start their own server: {name} is neither on PATH nor \
                 in /usr/lib/postgresql/*/bin (install PostgreSQL's server package)"
            )
        })
}

/// A loopback port free now (PostgreSQL cannot take a listening socket).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("address").port()
}

/// Nanoseconds of the current second, to vary the password between runs.
fn nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .subsec_nanos()
        .into()
}
