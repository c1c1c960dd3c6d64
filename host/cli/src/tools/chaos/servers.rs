//! The servers the tool starts for itself, so it may crash them: a `redis-server` on a free
//! port (nothing kept on disk), and for `--db postgres` a PostgreSQL cluster made with
//! `initdb` in the run's folder. Run as root, PostgreSQL (which refuses root) runs as the
//! `postgres` user through `setpriv`. A missing program is a clear error.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use super::processes::{free_port, signal};

/// How long a server may take to accept connections after a start.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The user PostgreSQL runs as when the tool runs as root.
const PG_USER: &str = "postgres";

/// A server process, started again on the same port and data after a crash.
pub(super) struct Server {
    name: &'static str,
    /// The port it listens on (127.0.0.1).
    pub(super) port: u16,
    command: Vec<std::ffi::OsString>,
    dir: PathBuf,
    child: Option<Child>,
}

impl Server {
    /// A `redis-server` on a free port, keeping nothing on disk, its log in `dir`.
    pub(super) async fn redis(dir: &Path) -> anyhow::Result<Server> {
        let program = find_program("redis-server", &[]).context(
            "the chaos tool starts its own Redis: install redis-server, or pass --redis-readers 0",
        )?;
        let port = free_port()?;
        let command = [
            program.into_os_string(),
            "--port".into(),
            port.to_string().into(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            "".into(),
            "--appendonly".into(),
            "no".into(),
        ]
        .into();
        let mut server = Server {
            name: "redis",
            port,
            command,
            dir: dir.to_path_buf(),
            child: None,
        };
        server.start().await?;
        Ok(server)
    }

    /// A new PostgreSQL cluster in `dir/postgres` on a free port, trust authentication on
    /// 127.0.0.1 for the user `postgres`.
    pub(super) async fn postgres(dir: &Path) -> anyhow::Result<Server> {
        let initdb = find_program("initdb", &postgres_bins())
            .context("the chaos tool starts its own PostgreSQL for --db postgres: install the PostgreSQL server package (initdb, postgres)")?;
        let postgres = find_program("postgres", &postgres_bins())
            .context("the chaos tool starts its own PostgreSQL for --db postgres: install the PostgreSQL server package")?;
        let home = dir.join("postgres");
        std::fs::create_dir_all(&home)?;
        let owner = Owner::of_this_process()?;
        owner.give(&home)?;
        let data = home.join("data");
        let log = std::fs::File::create(dir.join("logs/initdb.log"))?;
        let status = owner
            .command(&[initdb.as_os_str(), "-D".as_ref(), data.as_os_str()])
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ])
            .current_dir(&home)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()
            .await
            .context("running initdb")?;
        anyhow::ensure!(
            status.success(),
            "initdb failed ({status}); its output is in {}",
            dir.join("logs/initdb.log").display()
        );
        let port = free_port()?;
        let mut command: Vec<std::ffi::OsString> = owner.prefix();
        command.push(postgres.into_os_string());
        command.push("-D".into());
        command.push(data.into_os_string());
        for setting in [
            "listen_addresses=127.0.0.1".to_string(),
            format!("port={port}"),
            format!("unix_socket_directories={}", home.display()),
            "fsync=off".to_string(),
            "max_connections=200".to_string(),
        ] {
            command.push("-c".into());
            command.push(setting.into());
        }
        let mut server = Server {
            name: "postgres",
            port,
            command,
            dir: dir.to_path_buf(),
            child: None,
        };
        server.start().await?;
        Ok(server)
    }

    /// The log database URL of this PostgreSQL server.
    pub(super) fn postgres_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The Redis URL of this Redis server.
    pub(super) fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the process and waits until its port accepts connections.
    pub(super) async fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("logs/{}.log", self.name)))?;
        let child = Command::new(&self.command[0])
            .args(&self.command[1..])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.name))?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                anyhow::bail!(
                    "{} exited at start ({status}); see {}",
                    self.name,
                    self.dir.join(format!("logs/{}.log", self.name)).display()
                );
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{} did not accept connections within {READY_TIMEOUT:?}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Crashes the server: SIGKILL for Redis; for PostgreSQL SIGQUIT, its immediate shutdown
    /// (no checkpoint, crash recovery at the next start), so that its own children go too.
    pub(super) async fn crash(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        match (self.name, child.id()) {
            ("postgres", Some(pid)) => signal(pid, "QUIT")?,
            _ => child.start_kill()?,
        }
        tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .with_context(|| format!("{} did not stop within 30 s", self.name))??;
        Ok(())
    }

    /// Stops the server at the end of the run.
    pub(super) async fn stop(&mut self) {
        if let Err(e) = self.crash().await {
            tracing::warn!(error = %e, server = self.name, "stopping");
        }
    }
}

/// Debian's PostgreSQL program folders, newest first.
fn postgres_bins() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(|e| Some(e.ok()?.path().join("bin"))).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs.reverse();
    dirs
}

/// `name` on `PATH`, else in one of `extra`.
fn find_program(name: &str, extra: &[PathBuf]) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    path.iter()
        .chain(extra)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .with_context(|| format!("{name} is not on PATH"))
}

/// Who PostgreSQL runs as: this process's user, or `postgres` when this is root.
enum Owner {
    Me,
    User { uid: u32, gid: u32 },
}

impl Owner {
    fn of_this_process() -> anyhow::Result<Owner> {
        if std::fs::metadata("/proc/self")?.uid() != 0 {
            return Ok(Owner::Me);
        }
        let id = |flag: &str| -> anyhow::Result<u32> {
            let out = std::process::Command::new("id")
                .args([flag, PG_USER])
                .output()?;
            anyhow::ensure!(
                out.status.success(),
                "running as root, the chaos tool runs PostgreSQL as the user {PG_USER:?}, \
                 which does not exist here"
            );
            Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
        };
        Ok(Owner::User {
            uid: id("-u")?,
            gid: id("-g")?,
        })
    }

    /// Gives `dir` and everything in it to the server's user.
    fn give(&self, dir: &Path) -> anyhow::Result<()> {
        let Owner::User { uid, gid } = self else {
            return Ok(());
        };
        std::os::unix::fs::chown(dir, Some(*uid), Some(*gid))
            .with_context(|| format!("chown {}", dir.display()))?;
        // The server's user must be able to enter the run's folder (a temporary folder is
        // 0700).
        if let Some(parent) = dir.parent() {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(parent)?.mode();
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(mode | 0o001))?;
        }
        Ok(())
    }

    /// The words that run a program as the server's user (`setpriv ...`), or none.
    fn prefix(&self) -> Vec<std::ffi::OsString> {
        match self {
            Owner::Me => Vec::new(),
            Owner::User { .. } => [
                "setpriv",
                "--reuid",
                PG_USER,
                "--regid",
                PG_USER,
                "--init-groups",
            ]
            .map(Into::into)
            .into(),
        }
    }

    /// `words` as a command run as the server's user.
    fn command(&self, words: &[&std::ffi::OsStr]) -> Command {
        let mut all = self.prefix();
        all.extend(words.iter().map(|w| w.to_os_string()));
        let mut command = Command::new(&all[0]);
        command.args(&all[1..]);
        command
    }
}
