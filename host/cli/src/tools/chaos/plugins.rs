//! The plugin every reader runs with `--plugins DIR`: a copy of `DIR/stream-stats` (built by
//! `scripts/build-plugins`) in a plugins folder of the reader's own, granted every stream
//! (`*`). It counts the rows of each stream in its key-value store; at the end each
//! reader's counts must be the log's. A reload fault replaces its component with a new
//! version, the original with a custom section (`chaos`, holding the reload's number)
//! appended, so its sha256 differs and the reader's folder watcher hot-reloads it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use streamhost_server::client::ApiClient;

/// The plugin's folder name and manifest name.
pub(super) const PLUGIN: &str = "stream-stats";

/// One reader's plugins folder and its configuration file (the grant).
pub(super) struct ReaderPlugins {
    /// The folder the reader loads (`--plugins`).
    pub(super) dir: PathBuf,
    /// The TOML file with `[reader.plugins.grants.stream-stats]` (`--config`).
    pub(super) config: PathBuf,
    /// The built component, as copied.
    original: Vec<u8>,
    /// Reloads so far.
    reloads: u64,
}

impl ReaderPlugins {
    /// Copies `source/stream-stats` into `home/plugins/` and writes the grant to
    /// `home/reader.toml`.
    pub(super) fn install(source: &Path, home: &Path) -> anyhow::Result<ReaderPlugins> {
        let from = source.join(PLUGIN);
        anyhow::ensure!(
            from.join("plugin.toml").is_file(),
            "--plugins {}: no {PLUGIN}/plugin.toml there (run scripts/build-plugins DIR)",
            source.display()
        );
        let dir = home.join("plugins");
        let to = dir.join(PLUGIN);
        std::fs::create_dir_all(&to)?;
        for entry in std::fs::read_dir(&from)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                std::fs::copy(entry.path(), to.join(entry.file_name()))
                    .with_context(|| format!("copying {}", entry.path().display()))?;
            }
        }
        let config = home.join("reader.toml");
        std::fs::write(
            &config,
            format!(
                "[reader.plugins.grants.{PLUGIN}]\nstreams = [\"*\"]\ncaches = [\"count\"]\nkv = true\n"
            ),
        )?;
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

/// The plugin's count of every stream on the reader at `url`, waiting (until `deadline`)
/// until they are `want`; the last counts read.
pub(super) async fn counts(
    url: &str,
    want: &BTreeMap<String, u64>,
    deadline: Instant,
) -> BTreeMap<String, Option<u64>> {
    let client = ApiClient::new(url.to_owned());
    loop {
        let mut got = BTreeMap::new();
        for stream in want.keys() {
            let path = format!("/v1/query/{PLUGIN}/count?stream={stream}");
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
}
