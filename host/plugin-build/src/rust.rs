//! Builds a Rust plugin folder: `cargo build --release --target wasm32-wasip2` of its package
//! into its own target folder (`DIR/target`), then the reader's layout in `OUT/<name>/`.
//!
//! Reproducible: the project's `Cargo.lock` pins every dependency, and `--remap-path-prefix`
//! rewrites the project folder to `/plugin` and cargo's home to `/cargo`, so the same source
//! and toolchain give the same bytes wherever the folder is (the release profile of a
//! scaffolded project already strips debug information). The layout and the warnings for
//! imports `plugin.toml` does not ask for are `stage::install`'s, shared with the other
//! languages.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use crate::world::ManifestImports;
use crate::{BuildOptions, BuiltPlugin, Language, stage};

/// The target plugins are built for.
const TARGET: &str = "wasm32-wasip2";

/// Builds the Rust plugin in `dir` into `options.out`.
pub(crate) fn build(dir: &Path, options: &BuildOptions) -> anyhow::Result<BuiltPlugin> {
    let dir = std::path::absolute(dir).with_context(|| format!("{}", dir.display()))?;
    let manifest = ManifestImports::load(&dir.join("plugin.toml"))?;
    let package = package_name(&dir)?;
    add_target(&dir);
    let target_dir = dir.join("target");
    let mut cargo = Command::new(cargo_program());
    cargo
        .current_dir(&dir)
        .args(["build", "--release", "--target", TARGET, "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags(&dir))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR");
    let status = cargo.status().map_err(|e| {
        anyhow::anyhow!(
            "running cargo: {e}; building a Rust plugin needs Rust with the {TARGET} target \
             (install rustup from https://rustup.rs, then `rustup target add {TARGET}`)"
        )
    })?;
    anyhow::ensure!(
        status.success(),
        "{}: cargo build --release --target {TARGET} failed ({status}); its errors are above",
        dir.display()
    );
    let wasm = target_dir
        .join(TARGET)
        .join("release")
        .join(format!("{}.wasm", package.replace('-', "_")));
    anyhow::ensure!(
        wasm.is_file(),
        "{}: cargo wrote no {}; is the package a `cdylib` (`[lib] crate-type = [\"cdylib\"]`)?",
        dir.display(),
        wasm.display()
    );
    stage::install(&dir, &manifest, Language::Rust, &wasm, options, Vec::new())
}

/// The `[package] name` of `dir/Cargo.toml`, whose `-` become `_` in the `.wasm` cargo writes.
fn package_name(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("Cargo.toml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let cargo: toml::Table =
        toml::from_str(&text).with_context(|| format!("{}: not valid TOML", path.display()))?;
    cargo
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .with_context(|| format!("{}: has no [package] name", path.display()))
}

/// `cargo`, or `$CARGO` when set (as it is under cargo itself).
pub(crate) fn cargo_program() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// Installs the target with rustup as the repository's scripts do, when rustup is there. A
/// toolchain without rustup may have the target already; cargo says so when it does not.
fn add_target(dir: &Path) {
    let _ = Command::new("rustup")
        .current_dir(dir)
        .args(["target", "add", TARGET])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// The compiler flags, `\x1f`-separated as `CARGO_ENCODED_RUSTFLAGS` wants: the caller's own
/// `RUSTFLAGS` first, then the path remappings that make the build independent of where the
/// project and cargo's home are.
fn rustflags(dir: &Path) -> OsString {
    let mut flags: Vec<OsString> = std::env::var_os("RUSTFLAGS")
        .map(|f| {
            f.to_string_lossy()
                .split_whitespace()
                .map(OsString::from)
                .collect()
        })
        .unwrap_or_default();
    for (from, to) in [
        (cargo_home(), "/cargo"),
        (Some(dir.to_path_buf()), "/plugin"),
    ] {
        if let Some(from) = from {
            let mut flag = OsString::from("--remap-path-prefix=");
            flag.push(from);
            flag.push("=");
            flag.push(to);
            flags.push(flag);
        }
    }
    let mut encoded = OsString::new();
    for (i, flag) in flags.iter().enumerate() {
        if i > 0 {
            encoded.push("\x1f");
        }
        encoded.push(flag);
    }
    encoded
}

/// Cargo's home: `$CARGO_HOME`, else `~/.cargo`.
fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
}
