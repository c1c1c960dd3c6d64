//! The reader's layout of a built plugin, `OUT/<name>/plugin.toml` and `OUT/<name>/<name>.wasm`,
//! written so that a reader watching `OUT` never sees half a file: each is written under a
//! temporary name in the same folder and renamed over the old one once complete.

use std::path::Path;

use crate::{BuiltPlugin, Language};

/// Copies `dir/plugin.toml` and the component at `wasm` into `out/<name>/` and returns the
/// result (with `language` Rust and no warnings: the builder fills those in).
pub(crate) fn install(
    dir: &Path,
    name: &str,
    wasm: &Path,
    out: &Path,
) -> anyhow::Result<BuiltPlugin> {
    let target = out.join(name);
    std::fs::create_dir_all(&target)
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", target.display()))?;
    let installed_wasm = target.join(format!("{name}.wasm"));
    replace(wasm, &installed_wasm)?;
    replace(&dir.join("plugin.toml"), &target.join("plugin.toml"))?;
    let (size, sha256) = crate::size_and_sha256(&installed_wasm)?;
    Ok(BuiltPlugin {
        name: name.to_string(),
        language: Language::Rust,
        dir: target,
        wasm: installed_wasm,
        size,
        sha256,
        warnings: Vec::new(),
    })
}

/// Copies `from` to `to` through a temporary file beside `to`.
fn replace(from: &Path, to: &Path) -> anyhow::Result<()> {
    let file_name = to
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = to.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    std::fs::copy(from, &temporary).map_err(|e| {
        anyhow::anyhow!("copying {} to {}: {e}", from.display(), temporary.display())
    })?;
    std::fs::rename(&temporary, to).map_err(|e| {
        let _ = std::fs::remove_file(&temporary);
        anyhow::anyhow!("moving {} into place: {e}", to.display())
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_replaces_old_files_and_leaves_no_temporary_ones() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("plugin.toml"), "name = \"p\"\n").unwrap();
        std::fs::write(src.join("p.wasm"), b"new component").unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir_all(out.join("p")).unwrap();
        std::fs::write(out.join("p/p.wasm"), b"old").unwrap();
        let built = install(&src, "p", &src.join("p.wasm"), &out).unwrap();
        assert_eq!(std::fs::read(&built.wasm).unwrap(), b"new component");
        assert_eq!(built.size, 13);
        assert_eq!(built.sha256.len(), 64);
        let mut names: Vec<String> = std::fs::read_dir(out.join("p"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["p.wasm", "plugin.toml"]);
    }
}
