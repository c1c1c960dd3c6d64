//! The real `streamhost` binary as a child process, for tests that kill it with SIGKILL, read
//! what it logged or measure its memory (`/proc/<pid>`).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running `streamhost` process and the addresses it printed.
pub struct Process {
    child: Child,
    /// `key=addr` pairs of the `... listening` line (`http`, `replication`).
    pub addresses: Vec<(String, SocketAddr)>,
}

impl Process {
    /// Starts the binary at `program` (tests pass `env!("CARGO_BIN_EXE_streamhost-under-test")`,
    /// which only test targets see) with `args`, and waits for its
    /// `streamhost <role> listening ...` line.
    pub async fn spawn(program: &str, args: &[&str]) -> Process {
        Process::spawn_with_stderr(program, args, &[], Stdio::inherit()).await
    }

    /// [`Process::spawn`] with these environment variables set as well.
    pub async fn spawn_with_env(program: &str, args: &[&str], env: &[(&str, &Path)]) -> Process {
        Process::spawn_with_stderr(program, args, env, Stdio::inherit()).await
    }

    /// [`Process::spawn`], with the process's log (stderr) going to the file `log`, so the
    /// test can check what it said.
    pub async fn spawn_logging(program: &str, args: &[&str], log: &Path) -> Process {
        let file = std::fs::File::create(log)
            .unwrap_or_else(|e| panic!("creating log file {}: {e}", log.display()));
        Process::spawn_with_stderr(program, args, &[], Stdio::from(file)).await
    }

    /// [`Process::spawn_logging`] with these environment variables set as well.
    pub async fn spawn_logging_with_env(
        program: &str,
        args: &[&str],
        env: &[(&str, &Path)],
        log: &Path,
    ) -> Process {
        let file = std::fs::File::create(log)
            .unwrap_or_else(|e| panic!("creating log file {}: {e}", log.display()));
        Process::spawn_with_stderr(program, args, env, Stdio::from(file)).await
    }

    async fn spawn_with_stderr(
        program: &str,
        args: &[&str],
        env: &[(&str, &Path)],
        stderr: Stdio,
    ) -> Process {
        let mut child = Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn streamhost");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let listening = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.expect("read stdout") {
                if line.starts_with("streamhost ") && line.contains(" listening ") {
                    return line;
                }
            }
            panic!("streamhost exited before listening");
        })
        .await
        .expect("streamhost starts listening within 30 s");
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let addresses = listening
            .split_whitespace()
            .filter_map(|field| {
                let (key, value) = field.split_once('=')?;
                Some((key.to_owned(), value.parse().ok()?))
            })
            .collect();
        Process { child, addresses }
    }

    /// The printed address named `key`.
    pub fn addr(&self, key: &str) -> SocketAddr {
        self.addresses
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no {key} address"))
    }

    /// The child's process id, or `None` once it has exited and been waited for.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGKILL: no shutdown code runs.
    pub async fn kill_9(mut self) {
        self.child.kill().await.expect("SIGKILL streamhost");
    }

    /// SIGTERM, then waits for a clean exit.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("running child has a pid");
        let status = std::process::Command::new("kill")
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("streamhost exits within 20 s of SIGTERM")
            .expect("wait for streamhost")
    }
}
