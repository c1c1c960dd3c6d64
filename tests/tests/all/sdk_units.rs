//! The Python and JavaScript SDKs' own unit tests (`tests/sdk/test_streamhost.py`,
//! `tests/sdk/test_streamhost.mjs`), run natively by `python3` and `node`: how each
//! reads a packed batch as rows and as columns. Both interpreters are already required to
//! build the plugins; a missing one fails the test. The SDKs run in Wasm in the conformance
//! suite.

use std::path::Path;
use std::process::Command;

/// Runs `program file` from the repository's root and fails with its output unless it passes.
fn passes(program: &str, file: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = Command::new(program)
        .arg(root.join(file))
        .current_dir(&root)
        .output()
        .unwrap_or_else(|e| panic!("{program} could not run (it is needed to build plugins): {e}"));
    assert!(
        output.status.success(),
        "{program} {file} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_python_sdk_reads_packed_batches_as_rows_and_columns() {
    passes("python3", "tests/sdk/test_streamhost.py");
}

#[test]
fn the_javascript_sdk_reads_packed_batches_as_rows_and_columns() {
    passes("node", "tests/sdk/test_streamhost.mjs");
}
