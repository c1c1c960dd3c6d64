//! The plugins every reader runs with `--plugins DIR` (built by `scripts/build-plugins
//! --with-evil DIR`), copied into a plugins folder of the reader's own and granted every
//! stream (`*`):
//! - `stream-stats` counts the rows of each stream in its key-value store. A reload fault
//!   replaces its component with a new version, the original with a custom section (`chaos`,
//!   holding the reload's number) appended, so its sha256 differs and the reader's folder
//!   watcher hot-reloads it.
//! - `evil`, in its mode `trap-marked`, counts the same way and traps on a batch holding a row
//!   marked by a trap fault (`{"trap_until_ms": T}`), on every retry, until its clock passes
//!   `T`. The readers retry a failed plugin often enough (`retries`, `retry_backoff_ms`) that
//!   it is never quarantined, so it must end with every row counted once.
//!
//! At the end each reader's counts, of both plugins, must be the log's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use streamhost_server::client::ApiClient;

/// The plugin that counts rows and is hot-reloaded: its folder name and manifest name.
pub(super) const PLUGIN: &str = "stream-stats";

/// The plugin made to trap: its folder name and manifest name.
pub(super) const TRAPPING: &str = "evil";

/// `evil`'s manifest in the reader's folder: every stream, and the caches its description
/// names (the one in `plugins/evil` asks for the stream `messages` only).
const TRAPPING_MANIFEST: &str =
    "name = \"evil\"\nstreams = [\"*\"]\ncaches = [\"big\", \"evil\"]\nkv = true\n";

/// The reader's configuration: the retries that keep a trapping plugin out of quarantine
/// (30 at least 50 ms apart outlast the longest trap, 1.5 s), and the two grants.
const READER_CONFIG: &str = "\
[reader.plugins]
retries = 30
retry_backoff_ms = 50

[reader.plugins.grants.stream-stats]
streams = [\"*\"]
caches = [\"count\"]
kv = true

[reader.plugins.grants.evil]
streams = [\"*\"]
caches = [\"big\", \"evil\"]
kv = true
config = { mode = \"trap-marked\" }
";

/// One reader's plugins folder and its configuration file (the grants).
pub(super) struct ReaderPlugins {
    /// The folder the reader loads (`--plugins`).
    pub(super) dir: PathBuf,
    /// The TOML file with the plugins' grants (`--config`).
    pub(super) config: PathBuf,
    /// The built component, as copied.
    original: Vec<u8>,
    /// Reloads so far.
    reloads: u64,
}

impl ReaderPlugins {
    /// Copies `source/stream-stats` and `source/evil` into `home/plugins/` (`evil` with a
    /// manifest of its own) and writes the grants to `home/reader.toml`.
    pub(super) fn install(source: &Path, home: &Path) -> anyhow::Result<ReaderPlugins> {
        let dir = home.join("plugins");
        let to = copy_plugin(source, PLUGIN, &dir)?;
        let trapping = copy_plugin(source, TRAPPING, &dir)?;
        std::fs::write(trapping.join("plugin.toml"), TRAPPING_MANIFEST)?;
        let config = home.join("reader.toml");
        std::fs::write(&config, READER_CONFIG)?;
        let original = std::fs::read(to.join(WASM))
            .with_context(|| format!("reading {}", to.join(WASM).display()))?;
        Ok(ReaderPlugins {
            dir,
            config,
            original,
            reloads: 0,
        })
    }

    /// Replaces the component with a new version (written elsewhere, then renamed over it):
    /// the reader hot-reloads the plugin.
    pub(super) fn reload(&mut self) -> anyhow::Result<()> {
        self.reloads += 1;
        let version = with_custom_section(&self.original, b"chaos", &self.reloads.to_le_bytes());
        let temporary = self.dir.join(".next.wasm");
        std::fs::write(&temporary, version)?;
        std::fs::rename(&temporary, self.dir.join(PLUGIN).join(WASM))?;
        Ok(())
    }
}

/// Copies the plugin folder `source/name` into `dir`; the copy's path.
fn copy_plugin(source: &Path, name: &str, dir: &Path) -> anyhow::Result<PathBuf> {
    let from = source.join(name);
    anyhow::ensure!(
        from.join("plugin.toml").is_file(),
        "--plugins {}: no {name}/plugin.toml there (run scripts/build-plugins --with-evil DIR)",
        source.display()
    );
    let to = dir.join(name);
    std::fs::create_dir_all(&to)?;
    for entry in std::fs::read_dir(&from)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name()))
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(to)
}

/// The batches a reader's plugins failed on, from the files the reader writes for each
/// (`<data>/plugin-failures/`, one per plugin and batch, its rows as RDATA lines).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Failures {
    /// Failure files in all.
    pub(super) batches: usize,
    /// Of them, `evil`'s holding a row a trap fault marked.
    pub(super) trapped: usize,
}

impl Failures {
    /// The failure files in the reader data folder `data`.
    pub(super) fn read(data: &Path) -> anyhow::Result<Failures> {
        let folder = data.join("plugin-failures");
        let mut failures = Failures::default();
        if !folder.is_dir() {
            return Ok(failures);
        }
        for entry in std::fs::read_dir(&folder)? {
            let entry = entry?;
            failures.batches += 1;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&format!("{TRAPPING}-")) {
                let rows = std::fs::read_to_string(entry.path())
                    .with_context(|| format!("reading {}", entry.path().display()))?;
                if rows.contains("\"trap_until_ms\"") {
                    failures.trapped += 1;
                }
            }
        }
        Ok(failures)
    }
}

/// The component's file name in its folder.
const WASM: &str = "stream-stats.wasm";

/// `component` with a custom section `name` holding `payload` appended (section id 0, its
/// size, the name with its length, the payload; sizes as LEB128), which changes its bytes and
/// not its behaviour.
fn with_custom_section(component: &[u8], name: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut contents = leb128(name.len());
    contents.extend_from_slice(name);
    contents.extend_from_slice(payload);
    let mut out = component.to_vec();
    out.push(0);
    out.extend(leb128(contents.len()));
    out.extend(contents);
    out
}

/// `n` as unsigned LEB128.
fn leb128(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// `plugin`'s count of every stream on the reader at `url`, waiting (until `deadline`)
/// until they are `want`; the last counts read.
pub(super) async fn counts(
    url: &str,
    plugin: &str,
    want: &BTreeMap<String, u64>,
    deadline: Instant,
) -> BTreeMap<String, Option<u64>> {
    let client = ApiClient::new(url.to_owned());
    loop {
        let mut got = BTreeMap::new();
        for stream in want.keys() {
            let path = format!("/v1/query/{plugin}/count?stream={stream}");
            let count = client.get_json(&path).await.ok().and_then(|v| v.as_u64());
            got.insert(stream.clone(), count);
        }
        let done = want.iter().all(|(s, n)| got.get(s) == Some(&Some(*n)));
        if done || Instant::now() >= deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_custom_section_is_appended_with_its_sizes() {
        let out = with_custom_section(b"\0asm", b"ab", &[7; 3]);
        assert_eq!(out, [b'\0', b'a', b's', b'm', 0, 6, 2, b'a', b'b', 7, 7, 7]);
        assert_eq!(leb128(300), [0xac, 0x02]);
    }

    #[test]
    fn failure_files_are_counted_and_trap_rows_found() {
        let data = tempfile::tempdir().unwrap();
        assert_eq!(Failures::read(data.path()).unwrap(), Failures::default());
        let folder = data.path().join("plugin-failures");
        std::fs::create_dir(&folder).unwrap();
        let trap_row = "RDATA alpha master 7 {\"id\":\"t-0\",\"trap_until_ms\":1}\n";
        let plain_row = "RDATA alpha master 8 {\"id\":\"c0-1\"}\n";
        std::fs::write(folder.join("evil-alpha-master-6-7.rdata"), trap_row).unwrap();
        std::fs::write(folder.join("evil-alpha-master-7-8.rdata"), plain_row).unwrap();
        std::fs::write(folder.join("stream-stats-alpha-master-6-7.rdata"), trap_row).unwrap();
        let failures = Failures::read(data.path()).unwrap();
        assert_eq!(
            failures,
            Failures {
                batches: 3,
                trapped: 1
            }
        );
    }
}
