//! `--measure-reload N`: the dev loop's benchmark. Each run saves a change to the plugin's
//! main file that changes the component's bytes, as an edit does (so the reader compiles it
//! anew): a comment line with a new number in Python and JavaScript (their source is inside
//! the component), a kept `static` with a new value in Rust, a new custom section in a
//! prebuilt component. It times from the save to the first batch the reloaded version applied.
//! The source is restored at the end.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use streamhost_plugin_build::Language;

/// The file a run changes, and how it is changed back.
pub(super) struct Edit {
    file: PathBuf,
    original: Vec<u8>,
    language: Option<Language>,
}

impl Edit {
    /// The main source file of the plugin in `dir` (`src/lib.rs`, `plugin.py`, `plugin.js`,
    /// or a prebuilt `<name>.wasm`).
    pub(super) fn of(dir: &Path) -> anyhow::Result<Edit> {
        let language = Language::of_folder(dir).ok();
        let file = match language {
            Some(Language::Rust) => dir.join("src").join("lib.rs"),
            Some(Language::Python) => dir.join("plugin.py"),
            Some(Language::JavaScript) => dir.join("plugin.js"),
            None => super::source::prebuilt_wasm(dir)?,
        };
        let original =
            std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
        Ok(Edit {
            file,
            original,
            language,
        })
    }

    /// Saves change number `n`; returns when it was saved.
    pub(super) fn save(&self, n: u32) -> anyhow::Result<Instant> {
        let mut bytes = self.original.clone();
        match self.language {
            Some(Language::Python) => bytes.extend(format!("\n# plugin dev edit {n}\n").as_bytes()),
            Some(Language::JavaScript) => {
                bytes.extend(format!("\n// plugin dev edit {n}\n").as_bytes())
            }
            // A comment would leave a Rust component's bytes as they were; a kept static
            // changes them.
            Some(Language::Rust) => bytes.extend(
                format!("\n#[used]\nstatic PLUGIN_DEV_EDIT: [u8; 4] = {n}u32.to_le_bytes();\n")
                    .as_bytes(),
            ),
            None => bytes.extend(custom_section("plugin-dev-edit", &n.to_le_bytes())),
        }
        let mut file = std::fs::File::create(&self.file)
            .with_context(|| format!("writing {}", self.file.display()))?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        Ok(Instant::now())
    }

    /// Puts the file back as it was.
    pub(super) fn restore(&self) -> anyhow::Result<()> {
        std::fs::write(&self.file, &self.original)
            .with_context(|| format!("restoring {}", self.file.display()))
    }
}

/// A Wasm custom section (id 0): valid at the top level of a component, ignored when it runs.
fn custom_section(name: &str, payload: &[u8]) -> Vec<u8> {
    let mut content = leb128(name.len() as u64);
    content.extend(name.as_bytes());
    content.extend(payload);
    let mut section = vec![0u8];
    section.extend(leb128(content.len() as u64));
    section.extend(content);
    section
}

fn leb128(mut value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// The median of `times` (the mean of the middle two for an even count).
pub(super) fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    match sorted.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_takes_the_middle_or_the_mean_of_the_middle_two() {
        let ms = |v: &[u64]| {
            v.iter()
                .map(|m| Duration::from_millis(*m))
                .collect::<Vec<_>>()
        };
        assert_eq!(median(&ms(&[30, 10, 20])), Duration::from_millis(20));
        assert_eq!(median(&ms(&[40, 10, 20, 30])), Duration::from_millis(25));
    }

    #[test]
    fn a_custom_section_is_named_and_sized_in_leb128() {
        assert_eq!(custom_section("a", &[7]), vec![0, 3, 1, b'a', 7]);
        assert_eq!(leb128(300), vec![0xac, 0x02]);
    }
}
