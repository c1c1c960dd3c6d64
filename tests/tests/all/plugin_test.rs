//! `streamhost plugin test`, as an author runs it: the real binary on a project holding the
//! built `room-timeline` plugin (`build/room-timeline/`, where `plugin build` writes it) and a
//! fixture; `--update` writes the expectations, a changed expectation fails with a diff naming
//! the batch, `--update` makes it pass again; a failing batch and a missing expectations file
//! fail too.

use std::path::Path;
use std::process::Command;

use streamhost_integration_tests::plugins::{EVIL_DIR, ROOM_TIMELINE_DIR};

use crate::plugin_run::test_cache;

const BINARY: &str = env!("CARGO_BIN_EXE_streamhost-under-test");

/// Runs `plugin test` with `args`: whether it exited 0, its stdout and its stderr.
fn plugin_test(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(BINARY)
        .args(["plugin", "test"])
        .args(args)
        .env("STREAMHOST_COMPILE_CACHE", test_cache())
        .output()
        .expect("run the binary");
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// A project folder holding `built`'s plugin.toml, its component in `build/<name>/` and
/// `tests/` with `fixtures` (name, text).
fn project(built: &str, name: &str, fixtures: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let build = dir.path().join("build").join(name);
    std::fs::create_dir_all(&build).unwrap();
    std::fs::create_dir_all(dir.path().join("tests")).unwrap();
    let built = Path::new(built);
    std::fs::copy(built.join("plugin.toml"), dir.path().join("plugin.toml")).unwrap();
    std::fs::copy(built.join("plugin.toml"), build.join("plugin.toml")).unwrap();
    let wasm = format!("{name}.wasm");
    std::fs::copy(built.join(&wasm), build.join(&wasm)).unwrap();
    for (file, text) in fixtures {
        std::fs::write(dir.path().join("tests").join(file), text).unwrap();
    }
    dir
}

const TWO_ROOMS: &str = r#"# two rooms, three messages
{"stream": "messages", "row": {"room": "!a:x", "body": "hi"}}
{"stream": "messages", "row": {"room": "!b:x", "body": "yo"}}
{"stream": "messages", "row": {"room": "!a:x", "body": "again"}}
"#;

#[test]
fn a_plugin_test_passes_fails_with_a_diff_and_is_updated() {
    let dir = project(
        ROOM_TIMELINE_DIR,
        "room-timeline",
        &[
            ("two-rooms.jsonl", TWO_ROOMS),
            (
                "two-rooms.expected.toml",
                "[[query]]\nname = \"timeline\"\nargs = { room = \"!a:x\" }\n",
            ),
        ],
    );
    let root = dir.path().to_str().unwrap();
    let expected = dir.path().join("tests/two-rooms.expected.toml");

    // No answer written yet: the query is a difference.
    let (ok, out, _) = plugin_test(&[root]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("query timeline room=!a:x: no answer expected yet"),
        "{out}"
    );

    let (ok, out, err) = plugin_test(&[root, "--update"]);
    assert!(ok, "{out}{err}");
    let text = std::fs::read_to_string(&expected).unwrap();
    assert!(
        text.contains("'messages master 2' = [\n  'invalidate timeline room:!b:x',\n]"),
        "{text}"
    );
    assert!(text.contains("'room:!a:x' = '"), "{text}");
    assert!(
        text.contains(r#"answer = '[{"room":"!a:x","body":"hi"},{"room":"!a:x","body":"again"}]'"#),
        "{text}"
    );

    let (ok, out, err) = plugin_test(&[root]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("ok tests/two-rooms.jsonl (3 batches, 3 effects, 2 keys, 1 queries)"),
        "{out}"
    );

    // One expected effect changed: the diff names the batch and both lines.
    std::fs::write(
        &expected,
        text.replace(
            "'invalidate timeline room:!b:x'",
            "'invalidate timeline room:!c:x'",
        ),
    )
    .unwrap();
    let (ok, out, err) = plugin_test(&[root]);
    assert!(!ok);
    assert!(out.contains("FAIL tests/two-rooms.jsonl"), "{out}");
    assert!(
        out.contains(
            "  batch \"messages master 2\": effects differ (expected 1, got 1)\n    \
             - invalidate timeline room:!c:x\n    \
             + invalidate timeline room:!b:x\n"
        ),
        "{out}"
    );
    assert!(err.contains("1 of 1 fixtures failed"), "{err}");

    let (ok, _, _) = plugin_test(&[root, "--update"]);
    assert!(ok);
    assert_eq!(std::fs::read_to_string(&expected).unwrap(), text);
    assert!(plugin_test(&[root]).0);
}

#[test]
fn a_failed_batch_and_a_missing_expectations_file_fail_the_test() {
    let rows = "RDATA messages master 1 {\"room\":\"!a:x\"}\n";
    let dir = project(
        EVIL_DIR,
        "evil",
        &[
            ("panics.rdata", rows),
            ("panics.expected.toml", "[config]\nmode = \"panic\"\n"),
            ("unwritten.rdata", rows),
        ],
    );
    let root = dir.path().to_str().unwrap();
    let (ok, out, err) = plugin_test(&[root]);
    assert!(!ok);
    assert!(out.contains("FAIL tests/panics.rdata"), "{out}");
    assert!(
        out.contains("  batch \"messages master 1\" FAILED trap: "),
        "{out}"
    );
    assert!(out.contains("FAIL tests/unwritten.rdata"), "{out}");
    assert!(out.contains("no expectations file"), "{out}");
    assert!(err.contains("2 of 2 fixtures failed"), "{err}");

    // --plugin names the component directly, and --fixture picks one fixture.
    let fixture = dir.path().join("tests/unwritten.rdata");
    let wasm = Path::new(EVIL_DIR).join("evil.wasm");
    let (ok, out, _) = plugin_test(&[
        root,
        "--plugin",
        wasm.to_str().unwrap(),
        "--fixture",
        fixture.to_str().unwrap(),
        "--update",
    ]);
    assert!(ok, "{out}");
    assert!(plugin_test(&[root, "--fixture", fixture.to_str().unwrap()]).0);
}
