//! The checks a Python or JavaScript build makes before it runs a componentizer: they fail
//! fast, with the file to fix, and install nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use streamhost_plugin_build::{BuildOptions, build};

fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn build_error(dir: &Path) -> String {
    let scratch = tempfile::tempdir().unwrap();
    let options = BuildOptions {
        out: scratch.path().join("out"),
        toolchains: scratch.path().join("toolchains"),
        ahead_of_time: Some(scratch.path().join("toolchains")),
    };
    let err = build(dir, &options).expect_err("the build should fail");
    assert!(
        !options.toolchains.join("javascript").exists()
            && !options.toolchains.join("weval").exists()
            && !options.toolchains.join("python").exists(),
        "a failed check installs nothing"
    );
    format!("{err:#}")
}

#[test]
fn a_javascript_syntax_error_names_its_file_and_line() {
    // The test suite needs node (README, scripts/test): missing, it fails here rather than
    // passing without checking anything.
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|out| out.status.success()),
        "this test needs node (18+) on PATH, as the test suite does"
    );
    let dir = folder(&[
        ("plugin.toml", "name = \"broken\"\n"),
        ("plugin.js", "export const a = 1;\n\nconst b = ;\n"),
    ]);
    let message = build_error(dir.path());
    let file = dir.path().join("plugin.js");
    assert!(
        message.contains(&format!("syntax error in {}", file.display())),
        "{message}"
    );
    assert!(
        message.contains(&format!("{}:3", file.display())),
        "{message}"
    );
    assert!(message.contains("SyntaxError"), "{message}");
}

#[test]
fn a_file_named_like_the_helper_layer_stops_the_build() {
    let python = folder(&[
        ("plugin.toml", "name = \"p\"\n"),
        ("plugin.py", "import streamhost\n"),
        ("streamhost.py", "# mine\n"),
    ]);
    assert!(build_error(python.path()).contains("would hide the helper layer"));
    let javascript = folder(&[
        ("plugin.toml", "name = \"j\"\n"),
        ("plugin.js", "export const a = 1;\n"),
        ("streamhost-imports.js", "// mine\n"),
    ]);
    assert!(build_error(javascript.path()).contains("would hide the helper layer"));
}
