//! Builds a Python plugin folder (`plugin.toml` + `plugin.py`, and any other modules beside
//! it) with componentize-py, pinned in the carried `requirements.txt` and installed on first
//! use into a venv at `<toolchains>/python`.
//!
//! The plugin's files are staged with the carried helper layer (`streamhost.py`) and the
//! narrowed world ([`crate::world`]) in a folder named after the sources, with fixed file
//! times; componentize-py runs with an empty environment of its own (no `VIRTUAL_ENV`, no
//! bytecode written) so the same source and toolchain give the same component.

use std::path::Path;
use std::process::Command;

use crate::assets;
use crate::stage::{self, Staging, Toolchain};
use crate::world::ManifestImports;
use crate::{BuildOptions, BuiltPlugin, Language, usage};

/// The carried helper layer's file name.
const HELPER: &str = "streamhost.py";

/// Builds the Python plugin in `dir` into `options.out`.
pub(crate) fn build(dir: &Path, options: &BuildOptions) -> anyhow::Result<BuiltPlugin> {
    stage::check_folder(dir, "plugin.py", &[HELPER])?;
    let manifest = ManifestImports::load(&dir.join("plugin.toml"))?;
    stage::require(
        "python3",
        "Python 3.11 or newer, with the venv module, builds Python plugins",
    )?;
    let venv = options.toolchains.join("python");
    let componentize = install_toolchain(&venv)?;

    let files = stage::plugin_files(dir)?;
    let staging = Staging::new(Language::Python, dir, &files, &[helper(), requirements()])?;
    let plugin = staging.dir.join("plugin");
    stage::copy_files(dir, &files, &plugin)?;
    std::fs::write(plugin.join(HELPER), helper())
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", plugin.join(HELPER).display()))?;
    let scratch = staging.seal(&manifest)?;

    let wasm = staging.dir.join("plugin.wasm");
    let mut cmd = Command::new(&componentize);
    cmd.current_dir(&staging.dir)
        .args(["-d", "wit", "-w", "plugin", "componentize", "plugin"])
        .args(["-p", "plugin", "-o", "plugin.wasm"])
        // The venv's site-packages is found through `site` (the same in every venv of the
        // pin); nothing from a venv the user has active.
        .env_remove("VIRTUAL_ENV")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONHASHSEED", "0")
        .env("TMPDIR", &scratch);
    stage::run(
        &mut cmd,
        &format!("componentize-py on {}", dir.display()),
        "componentize-py is missing from its venv; remove it to reinstall",
    )?;
    let warnings = usage::undeclared_helper_uses(dir, &files, &manifest, usage::PYTHON)?;
    stage::install(dir, &manifest, Language::Python, &wasm, options, warnings)
}

/// The carried helper layer.
fn helper() -> &'static str {
    carried(HELPER)
}

/// The carried `requirements.txt` (componentize-py's pin).
fn requirements() -> &'static str {
    carried("requirements.txt")
}

fn carried(name: &str) -> &'static str {
    assets::PYTHON
        .iter()
        .find(|(path, _)| *path == name)
        .map(|(_, text)| *text)
        .expect("assets::PYTHON carries streamhost.py and requirements.txt")
}

/// Installs componentize-py into the venv `venv` unless it holds the carried pin; returns
/// the path of its `componentize-py`.
fn install_toolchain(venv: &Path) -> anyhow::Result<std::path::PathBuf> {
    let toolchain = Toolchain {
        what: "the Python plugin toolchain (componentize-py)",
        dir: venv,
        stamp: "requirements.txt",
        pins: requirements(),
        marker: "bin/componentize-py",
    };
    toolchain.ensure(|venv| {
        stage::run(
            Command::new("python3").arg("-m").arg("venv").arg(venv),
            "python3 -m venv",
            "python3 is required (3.11 or newer, with the venv module)",
        )?;
        let pins = venv.join("pins.txt");
        std::fs::write(&pins, requirements())
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", pins.display()))?;
        stage::run(
            Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
                .arg(&pins),
            "pip install of componentize-py from PyPI",
            "the venv has no pip",
        )?;
        Ok(())
    })?;
    Ok(venv.join("bin/componentize-py"))
}
