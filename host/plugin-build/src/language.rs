//! Which language a plugin folder holds, from the files in it.

use std::fmt;
use std::path::Path;

/// A language plugins are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Language {
    /// A cargo package (`Cargo.toml`) using the Rust SDK, built for `wasm32-wasip2`.
    Rust,
    /// `plugin.py` with the helper layer `streamhost.py`, built with componentize-py.
    Python,
    /// `plugin.js` with the helper layer `streamhost.js`, built with componentize-js.
    JavaScript,
}

impl Language {
    /// Every language, in the order the docs list them.
    pub const ALL: [Language; 3] = [Language::Rust, Language::Python, Language::JavaScript];

    /// The name used on the command line (`--lang`) and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::Python => "python",
            Language::JavaScript => "javascript",
        }
    }

    /// Parses a `--lang` value (`js` and `py` are accepted too).
    pub fn parse(text: &str) -> Option<Language> {
        match text {
            "rust" | "rs" => Some(Language::Rust),
            "python" | "py" => Some(Language::Python),
            "javascript" | "js" => Some(Language::JavaScript),
            _ => None,
        }
    }

    /// The language of the plugin in `dir`: it must hold `plugin.toml` and exactly one of
    /// `Cargo.toml`, `plugin.py` or `plugin.js`.
    pub fn of_folder(dir: &Path) -> anyhow::Result<Language> {
        anyhow::ensure!(
            dir.join("plugin.toml").is_file(),
            "{}: no plugin.toml (start a plugin with `streamhost plugin new NAME --lang LANG`)",
            dir.display()
        );
        let found: Vec<Language> = [
            ("Cargo.toml", Language::Rust),
            ("plugin.py", Language::Python),
            ("plugin.js", Language::JavaScript),
        ]
        .into_iter()
        .filter(|(file, _)| dir.join(file).is_file())
        .map(|(_, language)| language)
        .collect();
        match found.as_slice() {
            [language] => Ok(*language),
            [] => anyhow::bail!(
                "{}: holds none of Cargo.toml (Rust), plugin.py (Python) or plugin.js \
                 (JavaScript), so its language is unknown",
                dir.display()
            ),
            _ => anyhow::bail!(
                "{}: holds more than one of Cargo.toml, plugin.py and plugin.js; keep one \
                 plugin per folder",
                dir.display()
            ),
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_names_its_language_by_its_files() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Language::of_folder(dir.path()).is_err(), "no plugin.toml");
        std::fs::write(dir.path().join("plugin.toml"), "name = \"p\"\n").unwrap();
        let unknown = Language::of_folder(dir.path()).unwrap_err().to_string();
        assert!(unknown.contains("language is unknown"), "{unknown}");
        std::fs::write(dir.path().join("plugin.py"), "").unwrap();
        assert_eq!(Language::of_folder(dir.path()).unwrap(), Language::Python);
        std::fs::write(dir.path().join("plugin.js"), "").unwrap();
        let two = Language::of_folder(dir.path()).unwrap_err().to_string();
        assert!(two.contains("more than one"), "{two}");
    }

    #[test]
    fn lang_values_parse_and_print_back() {
        for language in Language::ALL {
            assert_eq!(Language::parse(language.as_str()), Some(language));
        }
        assert_eq!(Language::parse("js"), Some(Language::JavaScript));
        assert_eq!(Language::parse("go"), None);
    }
}
