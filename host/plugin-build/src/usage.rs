//! A Python or JavaScript plugin is componentized against a world that imports only what its
//! `plugin.toml` asks for, so a call to `kv`, `rows`, `push` or `http` of the helper layer
//! without the key builds, and fails at run time. This scan finds such uses in the source
//! (a plain text search for `kv.`, `rows.read`, `push.push`, and outbound HTTP's
//! `outgoing_handler` / `fetch(`), so `plugin build` warns first.

use std::path::Path;

use crate::world::ManifestImports;

/// What a language's source calls: (text that uses it, what to call it, import it needs, key
/// that asks for it).
pub(crate) type Uses = &'static [(&'static str, &'static str, &'static str, &'static str)];

/// Python: `streamhost.kv.get(...)`, `kv.get(...)` after `from streamhost import kv`, ...
pub(crate) const PYTHON: Uses = &[
    ("kv.", "kv", "kv", "`kv = true`"),
    ("rows.read", "rows", "rows", "`read_rows = [...]`"),
    ("push.push", "push", "push", "`push = [...]`"),
    (
        "outgoing_handler",
        "outbound HTTP",
        crate::world::HTTP_IMPORT,
        "`http = [...]`",
    ),
];

/// JavaScript: the same helpers by the same names, and `fetch` for outbound HTTP.
pub(crate) const JAVASCRIPT: Uses = &[
    ("kv.", "kv", "kv", "`kv = true`"),
    ("rows.read", "rows", "rows", "`read_rows = [...]`"),
    ("push.push", "push", "push", "`push = [...]`"),
    (
        "fetch(",
        "outbound HTTP",
        crate::world::HTTP_IMPORT,
        "`http = [...]`",
    ),
];

/// The file extensions scanned for each table.
fn scanned(file: &str) -> bool {
    file.ends_with(".py") || file.ends_with(".js") || file.ends_with(".mjs")
}

/// One warning per helper the plugin's source files seem to use while `manifest` does not ask
/// for it, naming the first file and line.
pub(crate) fn undeclared_helper_uses(
    dir: &Path,
    files: &[String],
    manifest: &ManifestImports,
    uses: Uses,
) -> anyhow::Result<Vec<String>> {
    let mut warnings = Vec::new();
    for (needle, label, import, key) in uses {
        if manifest.imports.iter().any(|i| i == import) {
            continue;
        }
        'files: for file in files.iter().filter(|f| scanned(f)) {
            let text = std::fs::read_to_string(dir.join(file))
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", dir.join(file).display()))?;
            for (index, line) in text.lines().enumerate() {
                if uses_helper(line, needle) {
                    warnings.push(format!(
                        "{file}:{}: uses {label} but plugin.toml does not ask for it (add {key}, \
                         and a grant for it): the call fails at run time",
                        index + 1,
                    ));
                    break 'files;
                }
            }
        }
    }
    Ok(warnings)
}

/// Whether `line` (outside a comment) holds `needle` as a name of its own: `kv.get` and
/// `streamhost.kv.get` count, `self.kvs.get` and `my_kv.get` do not.
fn uses_helper(line: &str, needle: &str) -> bool {
    let trimmed = line.trim_start();
    if trimmed.starts_with('#') || trimmed.starts_with("//") || trimmed.starts_with('*') {
        return false;
    }
    line.match_indices(needle).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        !matches!(before, Some(c) if c.is_alphanumeric() || c == '_')
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_helper_call_without_its_key_is_named_with_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("plugin.py"),
            "# kv.get is not used here\nx = my_kv.get(1)\nvalue = streamhost.kv.get(\"a\")\n",
        )
        .unwrap();
        let files = vec!["plugin.py".to_owned()];
        let plain = ManifestImports::parse("name = \"p\"\n").unwrap();
        let warnings = undeclared_helper_uses(dir.path(), &files, &plain, PYTHON).unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with("plugin.py:3: uses kv "),
            "{warnings:?}"
        );
        assert!(warnings[0].contains("`kv = true`"));
        let kv = ManifestImports::parse("name = \"p\"\nkv = true\n").unwrap();
        assert!(
            undeclared_helper_uses(dir.path(), &files, &kv, PYTHON)
                .unwrap()
                .is_empty()
        );
    }
}
