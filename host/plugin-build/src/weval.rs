//! weval, the partial evaluator componentize-js runs to compile a JavaScript plugin's code
//! ahead of time (`--aot`: its inline caches compiled into the component instead of
//! interpreted; BENCHMARKS.md, "JavaScript compiled ahead of time"). Pinned to the release
//! componentize-js 0.23.0 names, and installed on first use into `<toolchains>/weval`: the
//! prebuilt binary componentize-js's own downloader fetches from GitHub when that answers
//! within [`DOWNLOAD_TIMEOUT`], else built from crates.io with `cargo install --locked` (about
//! seven minutes on two cores, once).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::rust::cargo_program;
use crate::stage::{self, Toolchain};

/// The weval release componentize-js 0.23.0 was made with (its `@bytecodealliance/weval`).
const VERSION: &str = "0.5.0";

/// The installed binary, relative to the toolchain's folder.
const BINARY: &str = "bin/weval";

/// How long the prebuilt binary's download may take before cargo builds it instead.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// Node's script fetching the prebuilt binary with componentize-js's own downloader; prints
/// its path.
const DOWNLOAD: &str = "import getWeval from '@bytecodealliance/weval'; \
                        process.stdout.write(await getWeval());";

/// The pinned weval in `toolchains/weval`, installed first if missing; `javascript` is the
/// installed JavaScript toolchain's folder (whose `node_modules` hold the downloader).
pub(crate) fn ensure(toolchains: &Path, javascript: &Path) -> anyhow::Result<PathBuf> {
    ensure_with(toolchains, javascript, &cargo_program())
}

/// [`ensure`], building with the cargo program `cargo` when the download fails.
fn ensure_with(toolchains: &Path, javascript: &Path, cargo: &OsStr) -> anyhow::Result<PathBuf> {
    let dir = toolchains.join("weval");
    let pins = format!("weval {VERSION}\n");
    let toolchain = Toolchain {
        what: "weval (componentize-js's ahead-of-time compiler)",
        dir: &dir,
        stamp: "installed-version",
        pins: &pins,
        marker: BINARY,
    };
    toolchain.ensure(|dir| {
        let binary = dir.join(BINARY);
        if let Some(downloaded) = download(javascript) {
            std::fs::create_dir_all(dir.join("bin"))
                .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.join("bin").display()))?;
            std::fs::copy(&downloaded, &binary).map_err(|e| {
                anyhow::anyhow!(
                    "copying {} to {}: {e}",
                    downloaded.display(),
                    binary.display()
                )
            })?;
            return Ok(());
        }
        eprintln!("building weval {VERSION} with cargo (GitHub's prebuilt binary did not come)");
        stage::run(
            Command::new(cargo)
                .current_dir(dir)
                .args([
                    "install",
                    "weval",
                    "--version",
                    VERSION,
                    "--locked",
                    "--root",
                ])
                .arg(dir)
                .env_remove("CARGO_TARGET_DIR")
                .env_remove("CARGO_ENCODED_RUSTFLAGS")
                .env_remove("RUSTFLAGS"),
            &format!("cargo install weval {VERSION}"),
            "weval could not be downloaded, and building it needs Rust's cargo \
             (install rustup from https://rustup.rs)",
        )?;
        anyhow::ensure!(
            binary.is_file(),
            "cargo install wrote no {}",
            binary.display()
        );
        Ok(())
    })?;
    Ok(dir.join(BINARY))
}

/// The prebuilt binary's path once componentize-js's downloader fetched it, or `None` when
/// it failed or took longer than [`DOWNLOAD_TIMEOUT`].
fn download(javascript: &Path) -> Option<PathBuf> {
    let mut child = Command::new("node")
        .current_dir(javascript)
        .args(["--input-type=module", "--eval", DOWNLOAD])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => break,
            Ok(None) if started.elapsed() < DOWNLOAD_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(100));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    let mut path = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take()?, &mut path).ok()?;
    let path = PathBuf::from(path.trim());
    path.is_file().then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_download_or_cargo_the_error_says_what_is_needed_and_nothing_stays() {
        let scratch = tempfile::tempdir().unwrap();
        let toolchains = scratch.path().join("toolchains");
        // No node_modules here, so componentize-js's downloader cannot even be imported.
        let javascript = scratch.path().join("javascript");
        std::fs::create_dir_all(&javascript).unwrap();
        let err = ensure_with(
            &toolchains,
            &javascript,
            OsStr::new("streamhost-test-no-such-cargo"),
        )
        .expect_err("neither a download nor cargo");
        let message = format!("{err:#}");
        assert!(
            message.contains("weval could not be downloaded")
                && message.contains("needs Rust's cargo"),
            "{message}"
        );
        assert!(
            !toolchains.join("weval").exists(),
            "a failed install leaves nothing behind"
        );
    }
}
