//! What the Python and JavaScript builders share: installing a pinned toolchain once (under a
//! lock file, again when its pins change), staging a plugin's files in a folder whose name
//! and timestamps depend only on the source, running a tool, and writing the reader's layout.
//!
//! The staging folder is `$TMPDIR/streamhost-build-<sha256 of the sources>`, and every staged
//! file and folder gets the same modification time ([`SOURCE_DATE_EPOCH`]), so neither the
//! plugin's own folder nor the time of the build reaches the component through paths or
//! timestamps.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use crate::world::ManifestImports;
use crate::{BuildOptions, BuiltPlugin, Language, imports};

/// The modification time given to every staged file (1980-01-01, the zip epoch), unless
/// `$SOURCE_DATE_EPOCH` says otherwise.
pub(crate) const SOURCE_DATE_EPOCH: u64 = 315_532_800;

/// Folders never staged from a plugin folder (`build` is where `plugin build` writes by default).
const SKIPPED: [&str; 5] = ["__pycache__", "node_modules", "target", ".git", "build"];

/// Holds an exclusive lock on `<path>.lock` until dropped.
pub(crate) struct Lock {
    _file: File,
}

/// Waits for the exclusive lock on `<path>.lock`, creating it (and its folder) if needed.
pub(crate) fn lock(path: &Path) -> anyhow::Result<Lock> {
    let file_path = path.with_extension("lock");
    if let Some(parent) = file_path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| anyhow::anyhow!("creating {}: {e}", parent.display()))?;
    }
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&file_path)
        .map_err(|e| anyhow::anyhow!("opening {}: {e}", file_path.display()))?;
    file.lock()
        .map_err(|e| anyhow::anyhow!("locking {}: {e}", file_path.display()))?;
    Ok(Lock { _file: file })
}

/// A toolchain installed into `dir` from pinned files.
pub(crate) struct Toolchain<'a> {
    /// What it is, for messages ("the Python plugin toolchain").
    pub what: &'a str,
    /// The folder it is installed in.
    pub dir: &'a Path,
    /// The file inside `dir` recording the pins it was installed from.
    pub stamp: &'a str,
    /// The pins' text: when it differs from `stamp`'s, the toolchain is reinstalled.
    pub pins: &'a str,
    /// A file that exists once the toolchain is whole (relative to `dir`).
    pub marker: &'a str,
}

impl Toolchain<'_> {
    /// Installs the toolchain with `install` unless the installed one has the same pins; one
    /// install at a time (a lock file beside `dir`). A failed install leaves nothing behind.
    pub(crate) fn ensure(
        &self,
        install: impl FnOnce(&Path) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let _lock = lock(self.dir)?;
        let stamp = self.dir.join(self.stamp);
        let installed = std::fs::read_to_string(&stamp).ok();
        if installed.as_deref() == Some(self.pins) && self.dir.join(self.marker).exists() {
            return Ok(());
        }
        eprintln!("installing {} into {}", self.what, self.dir.display());
        remove_dir(self.dir)?;
        std::fs::create_dir_all(self.dir)
            .map_err(|e| anyhow::anyhow!("creating {}: {e}", self.dir.display()))?;
        if let Err(e) = install(self.dir) {
            let _ = std::fs::remove_dir_all(self.dir);
            return Err(e.context(format!(
                "installing {} into {}",
                self.what,
                self.dir.display()
            )));
        }
        std::fs::write(&stamp, self.pins)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", stamp.display()))
    }
}

/// Removes `dir` if it exists.
pub(crate) fn remove_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(anyhow::anyhow!("removing {}: {e}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// The plugin's files (relative paths, `/`-separated, sorted), skipping [`SKIPPED`] folders.
pub(crate) fn plugin_files(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        let entries = std::fs::read_dir(&folder)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", folder.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| anyhow::anyhow!("reading {}: {e}", folder.display()))?;
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() {
                if !SKIPPED.iter().any(|s| name == *s) {
                    stack.push(path);
                }
            } else if let Ok(rel) = path.strip_prefix(dir) {
                found.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// A staging folder for one build, removed when dropped.
pub(crate) struct Staging {
    /// `$TMPDIR/streamhost-build-<hash>`.
    pub dir: PathBuf,
    _lock: Lock,
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Staging {
    /// A fresh, locked folder named after the sha256 of `language`, the plugin's files (names
    /// and contents) and `extra` (the helper layer, the toolchain's pins).
    pub(crate) fn new(
        language: Language,
        source: &Path,
        files: &[String],
        extra: &[&str],
    ) -> anyhow::Result<Staging> {
        let mut hash = Sha256::new();
        hash.update(language.to_string().as_bytes());
        for file in files {
            let bytes = std::fs::read(source.join(file))
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", source.join(file).display()))?;
            hash.update((file.len() as u64).to_le_bytes());
            hash.update(file.as_bytes());
            hash.update((bytes.len() as u64).to_le_bytes());
            hash.update(&bytes);
        }
        for text in extra {
            hash.update((text.len() as u64).to_le_bytes());
            hash.update(text.as_bytes());
        }
        let name = format!("streamhost-build-{}", &hex::encode(hash.finalize())[..16]);
        let dir = std::env::temp_dir().join(name);
        let lock = lock(&dir)?;
        remove_dir(&dir)?;
        std::fs::create_dir_all(&dir)
            .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
        Ok(Staging { dir, _lock: lock })
    }

    /// Writes the narrowed world into `wit/`, gives every staged file the fixed time, and
    /// creates the componentizer's scratch folder `tmp/` (its `TMPDIR`, so nothing it unpacks
    /// lands outside the staging folder), which it returns.
    pub(crate) fn seal(&self, manifest: &ManifestImports) -> anyhow::Result<PathBuf> {
        manifest.write_wit(&self.dir.join("wit"))?;
        fix_times(&self.dir)?;
        let scratch = self.dir.join("tmp");
        std::fs::create_dir_all(&scratch)
            .map_err(|e| anyhow::anyhow!("creating {}: {e}", scratch.display()))?;
        Ok(scratch)
    }
}

/// Copies `files` from `source` into `dest`.
pub(crate) fn copy_files(source: &Path, files: &[String], dest: &Path) -> anyhow::Result<()> {
    for file in files {
        let to = dest.join(file);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| anyhow::anyhow!("creating {}: {e}", parent.display()))?;
        }
        std::fs::copy(source.join(file), &to)
            .map_err(|e| anyhow::anyhow!("copying {} to {}: {e}", file, to.display()))?;
    }
    Ok(())
}

/// The time every staged file is given: `$SOURCE_DATE_EPOCH`, else [`SOURCE_DATE_EPOCH`].
fn epoch() -> SystemTime {
    let seconds = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(SOURCE_DATE_EPOCH);
    SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
}

/// Gives every file and folder under `dir` (and `dir`) the same access and modification time.
pub(crate) fn fix_times(dir: &Path) -> anyhow::Result<()> {
    let time = epoch();
    let times = std::fs::FileTimes::new()
        .set_accessed(time)
        .set_modified(time);
    let mut folders = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            let entries = std::fs::read_dir(&path)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
            for entry in entries.flatten() {
                stack.push(entry.path());
            }
            folders.push(path);
        } else {
            set_times(&path, times)?;
        }
    }
    // Folders last, deepest first, so setting one does not disturb another.
    for folder in folders.iter().rev() {
        set_times(folder, times)?;
    }
    Ok(())
}

fn set_times(path: &Path, times: std::fs::FileTimes) -> anyhow::Result<()> {
    File::open(path)
        .and_then(|f| f.set_times(times))
        .map_err(|e| anyhow::anyhow!("setting the times of {}: {e}", path.display()))
}

/// Runs `cmd`, failing with `what` and the tool's output when it does not succeed, or with
/// `missing` when the program is not found.
pub(crate) fn run(cmd: &mut Command, what: &str, missing: &str) -> anyhow::Result<Output> {
    let output = match cmd.output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!("{missing}"),
        Err(e) => anyhow::bail!("{what}: running {:?}: {e}", cmd.get_program()),
    };
    if !output.status.success() {
        anyhow::bail!(
            "{what} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output)
}

/// Fails with `message` unless `program --version` runs.
pub(crate) fn require(program: &str, message: &str) -> anyhow::Result<()> {
    match Command::new(program).arg("--version").output() {
        Ok(output) if output.status.success() => Ok(()),
        _ => anyhow::bail!("{program} is required: {message}"),
    }
}

/// Writes `options.out/<name>/{plugin.toml,<name>.wasm}` from the source folder's manifest
/// and the built component at `wasm`; the old component is replaced (renamed over) only
/// once the new one is whole. `warnings` gains the undeclared-import warnings.
pub(crate) fn install(
    source: &Path,
    manifest: &ManifestImports,
    language: Language,
    wasm: &Path,
    options: &BuildOptions,
    mut warnings: Vec<String>,
) -> anyhow::Result<BuiltPlugin> {
    let bytes =
        std::fs::read(wasm).map_err(|e| anyhow::anyhow!("reading {}: {e}", wasm.display()))?;
    warnings.extend(imports::undeclared_imports(&bytes, manifest)?);
    let name = &manifest.name;
    let dir = options.out.join(name);
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
    let target = dir.join(format!("{name}.wasm"));
    let partial = dir.join(format!("{name}.wasm.partial"));
    std::fs::write(&partial, &bytes)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", partial.display()))?;
    let toml = dir.join("plugin.toml");
    std::fs::copy(source.join("plugin.toml"), &toml)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", toml.display()))?;
    std::fs::rename(&partial, &target).map_err(|e| {
        anyhow::anyhow!(
            "renaming {} to {}: {e}",
            partial.display(),
            target.display()
        )
    })?;
    let (size, sha256) = crate::size_and_sha256(&target)?;
    Ok(BuiltPlugin {
        name: name.clone(),
        language,
        dir,
        wasm: target,
        size,
        sha256,
        warnings,
    })
}

/// Fails unless `dir` holds `plugin.toml` and `source`, and no file named like one of the
/// helper layer's `helpers` (which would hide it).
pub(crate) fn check_folder(dir: &Path, source: &str, helpers: &[&str]) -> anyhow::Result<()> {
    for file in ["plugin.toml", source] {
        if !dir.join(file).is_file() {
            anyhow::bail!(
                "{} has no {file} (`streamhost plugin new` writes a plugin folder)",
                dir.display()
            );
        }
    }
    for helper in helpers {
        if dir.join(helper).exists() {
            anyhow::bail!(
                "{} would hide the helper layer of the same name; rename it",
                dir.join(helper).display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn plugin_in(parent: &Path, body: &str) -> PathBuf {
        let dir = parent.join("some-folder").join("my-plugin");
        std::fs::create_dir_all(dir.join("__pycache__")).unwrap();
        std::fs::write(dir.join("plugin.toml"), "name = \"p\"\n").unwrap();
        std::fs::write(dir.join("plugin.py"), body).unwrap();
        std::fs::write(dir.join("__pycache__/plugin.pyc"), "stale").unwrap();
        dir
    }

    #[test]
    fn the_staging_folder_depends_on_the_sources_not_on_their_folder() {
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let first = plugin_in(one.path(), "x = 1\n");
        let second = plugin_in(two.path(), "x = 1\n");
        let files = plugin_files(&first).unwrap();
        assert_eq!(files, ["plugin.py", "plugin.toml"]);
        let staged = Staging::new(Language::Python, &first, &files, &["helper"]).unwrap();
        let path = staged.dir.clone();
        drop(staged);
        assert!(!path.exists(), "a staging folder is removed when dropped");
        let again = Staging::new(Language::Python, &second, &files, &["helper"]).unwrap();
        assert_eq!(again.dir, path);
        drop(again);
        let three = tempfile::tempdir().unwrap();
        let changed = plugin_in(three.path(), "x = 2\n");
        let other = Staging::new(Language::Python, &changed, &files, &["helper"]).unwrap();
        assert_ne!(other.dir, path);
    }

    #[test]
    fn staged_files_get_the_same_times() {
        let dir = tempfile::tempdir().unwrap();
        let source = plugin_in(dir.path(), "x = 1\n");
        let dest = dir.path().join("staged");
        let files = plugin_files(&source).unwrap();
        copy_files(&source, &files, &dest).unwrap();
        fix_times(&dest).unwrap();
        for path in [
            dest.clone(),
            dest.join("plugin.py"),
            dest.join("plugin.toml"),
        ] {
            let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
            assert_eq!(modified, epoch(), "{}", path.display());
        }
    }
}
