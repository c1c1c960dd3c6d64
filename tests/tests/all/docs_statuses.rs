//! Every error code a reader's plugin endpoints can answer (queries, notifications, the
//! plugins list and the plugin admin API) is listed in `docs/plugins.md`: the codes are read
//! from the handlers' source, so a new one without a line in the docs fails here.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// The sources whose `"M_…"` codes reach a client of the plugin endpoints: the handlers
/// (`reader/plugins/`), the token and authorizer checks in front of them, and the shared HTTP
/// layers every endpoint goes through.
const SOURCES: &[&str] = &[
    "host/server/src/reader/plugins",
    "host/server/src/reader/auth/mod.rs",
    "host/server/src/http/error.rs",
    "host/server/src/http/auth.rs",
    "host/server/src/http/layers.rs",
];

#[test]
fn every_error_code_of_the_plugin_endpoints_is_in_plugins_md() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let docs = fs::read_to_string(root.join("docs/plugins.md")).unwrap();
    let mut codes = BTreeSet::new();
    for source in SOURCES {
        for file in rust_files(&root.join(source)) {
            codes.extend(error_codes(&fs::read_to_string(&file).unwrap()));
        }
    }
    assert!(
        codes.contains("M_QUEUE_FULL") && codes.contains("M_UNAUTHORIZED"),
        "the scan found the handlers' codes: {codes:?}"
    );
    let missing: Vec<&String> = codes
        .iter()
        .filter(|code| !docs.contains(&format!("`{code}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/plugins.md does not list these error codes of the plugin endpoints: {missing:?}"
    );
}

/// The `.rs` files at `path` (a file, or every file under a folder), tests left out.
fn rust_files(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let mut files = Vec::new();
    for entry in fs::read_dir(path).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs")
            && path.file_name().is_some_and(|n| n != "tests.rs")
        {
            files.push(path);
        }
    }
    files
}

/// The `"M_…"` string literals of `source` before its `#[cfg(test)]` module.
fn error_codes(source: &str) -> Vec<String> {
    let code = source.split("#[cfg(test)]").next().unwrap_or_default();
    code.split('"')
        .skip(1)
        .step_by(2)
        .filter(|literal| {
            literal.len() > 2
                && literal.starts_with("M_")
                && literal[2..]
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b == b'_')
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn codes_are_read_from_literals_outside_tests() {
    let source = "let a = \"M_ONE\"; let b = \"not M_TWO\";\n#[cfg(test)]\nmod t { \"M_THREE\" }";
    assert_eq!(error_codes(source), ["M_ONE"]);
}
