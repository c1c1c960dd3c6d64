//! The writer and the readers as child processes of this executable (`streamhost writer
//! ...`, `streamhost reader ...`), so that a fault can SIGKILL one and start it again with
//! the same flags, ports and data. Each child's log goes to its own file.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long a child may take to print its `listening` line.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// One `streamhost` role: how to start it, and the running child if it is up.
pub(super) struct Node {
    /// `writer`, `reader-1`, ...: names the log file and the report's lines.
    pub(super) name: String,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Node {
    /// A node named `name` run as `streamhost ARGS`, logging (appending) to `logs/NAME.log`.
    pub(super) fn new(name: &str, args: Vec<String>, logs: &Path) -> Node {
        Node {
            name: name.to_owned(),
            args,
            log: logs.join(format!("{name}.log")),
            child: None,
        }
    }

    /// Starts the process and waits for its `streamhost ... listening` line.
    pub(super) async fn start(&mut self) -> anyhow::Result<()> {
        let program = std::env::current_exe().context("finding this executable")?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let mut child = Command::new(program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.name))?;
        let stdout = child.stdout.take().context("piped stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let listening = tokio::time::timeout(START_TIMEOUT, async {
            while let Some(line) = lines.next_line().await? {
                if line.starts_with("streamhost ") && line.contains(" listening ") {
                    return Ok(());
                }
            }
            anyhow::bail!("it exited before listening")
        })
        .await;
        let failure = match listening {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(_) => Some(anyhow::anyhow!(
                "it did not listen within {START_TIMEOUT:?}"
            )),
        };
        if let Some(e) = failure {
            let _ = child.kill().await;
            return Err(e.context(format!(
                "starting {} (its log: {})",
                self.name,
                self.log.display()
            )));
        }
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL: no shutdown code runs. Waits for the process to be gone.
    pub(super) async fn kill_9(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child
                .kill()
                .await
                .with_context(|| format!("SIGKILL {}", self.name))?;
        }
        Ok(())
    }

    /// SIGTERM, then waits (up to 30 s) for a clean exit; an unclean one is an error.
    pub(super) async fn terminate(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if let Some(pid) = child.id() {
            signal(pid, "TERM")?;
        }
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .with_context(|| format!("{} did not exit within 30 s of SIGTERM", self.name))??;
        anyhow::ensure!(
            status.success(),
            "{} exited with {status} on SIGTERM (its log: {})",
            self.name,
            self.log.display()
        );
        Ok(())
    }

    /// Whether the process exited on its own (a crash the tool did not cause).
    pub(super) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// Its log file.
    pub(super) fn log(&self) -> &Path {
        &self.log
    }
}

/// Sends signal `name` (`TERM`, `QUIT`, `KILL`) to `pid` with `kill(1)`.
pub(super) fn signal(pid: u32, name: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .context("running kill")?;
    anyhow::ensure!(status.success(), "kill -{name} {pid} failed");
    Ok(())
}

/// A loopback port free now; children bind it again at every restart (the listeners set
/// `SO_REUSEADDR`).
pub(super) fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding port 0")?;
    Ok(listener.local_addr()?.port())
}
