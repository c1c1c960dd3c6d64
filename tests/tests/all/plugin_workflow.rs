//! An author's first steps, as issue 15 asks: from an empty folder outside the repository,
//! with nothing but the `streamhost` binary and the language's toolchain, `plugin new` writes
//! a project, `plugin build` builds it into the reader's layout, printing its size and
//! sha256, and `plugin test` passes its fixture (and fails, naming the effect, once an
//! expectation is changed), in Rust, Python and JavaScript. Building the same Rust project in
//! two different folders gives the same bytes (the Python and JavaScript examples'
//! reproducibility is host/plugin-build/tests/reproducible.rs's).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BINARY: &str = env!("CARGO_BIN_EXE_streamhost-under-test");

/// Where tests/build.rs installed the pinned Python and JavaScript toolchains.
const TOOLCHAINS: &str = concat!(env!("OUT_DIR"), "/guest-toolchains");

/// The repository, which the temporary folders must be outside of.
fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// An empty folder under the system's temporary folder, checked to be outside the repository.
fn empty_folder() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("streamhost-workflow-")
        .tempdir_in(std::env::temp_dir())
        .unwrap();
    let path = dir.path().canonicalize().unwrap();
    assert!(
        !path.starts_with(repository()),
        "{} is inside the repository",
        path.display()
    );
    dir
}

/// Runs `streamhost ARGS` in `dir` with an environment free of the test's cargo settings
/// (as an author's shell would be; `CARGO_HOME` stays, it is where cargo is).
fn streamhost(dir: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(BINARY);
    command
        .current_dir(dir)
        .args(args)
        // The guest toolchains tests/build.rs installed, so nothing is installed twice.
        .env("STREAMHOST_GUEST_TOOLCHAINS", TOOLCHAINS);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        let cargos = name.starts_with("CARGO_") && name != "CARGO_HOME";
        if cargos || name == "RUSTFLAGS" || name == "OUT_DIR" {
            command.env_remove(name);
        }
    }
    command.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts `output` succeeded and returns its standard output.
fn succeeded(output: &Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// `plugin new NAME --lang LANG` in a new empty folder; returns the folder and the project.
fn new_project(name: &str, language: &str) -> (tempfile::TempDir, PathBuf) {
    let parent = empty_folder();
    let output = streamhost(parent.path(), &["plugin", "new", name, "--lang", language]);
    let printed = succeeded(&output, "plugin new");
    let project = parent.path().join(name);
    assert!(
        printed.contains(&format!("{name} ({language} plugin):")),
        "{printed}"
    );
    assert!(printed.contains("plugin.toml"), "{printed}");
    assert!(printed.contains("streamhost plugin build"), "{printed}");
    (parent, project)
}

/// `plugin build` in `project`: checks the printed line against the written component and
/// returns (size, sha256).
fn build(project: &Path, name: &str) -> (u64, String) {
    let output = streamhost(project, &["plugin", "build"]);
    let printed = succeeded(&output, "plugin build");
    let line = printed
        .lines()
        .find(|l| l.contains(".wasm"))
        .unwrap_or_else(|| panic!("no component line in {printed}"));
    let fields: Vec<&str> = line.split_whitespace().collect();
    let wasm = format!("build/{name}/{name}.wasm");
    assert_eq!(fields[0], wasm, "{line}");
    assert_eq!(fields[2], "bytes", "{line}");
    assert_eq!(fields[3], "sha256", "{line}");
    let bytes = std::fs::read(project.join(&wasm)).unwrap();
    assert_eq!(fields[1], bytes.len().to_string(), "{line}");
    assert_eq!(fields[4].len(), 64, "{line}");
    assert!(bytes.starts_with(b"\0asm"), "a WebAssembly file");
    let manifest = std::fs::read_to_string(project.join(format!("build/{name}/plugin.toml")));
    assert_eq!(
        manifest.unwrap(),
        std::fs::read_to_string(project.join("plugin.toml")).unwrap()
    );
    (bytes.len() as u64, fields[4].to_string())
}

/// `plugin test` in `project` passes on the fixture `plugin new` wrote; then, with one
/// expected notification changed, it fails and its diff names the batch and both effects.
fn test_passes_then_fails(project: &Path) {
    let output = streamhost(project, &["plugin", "test"]);
    let printed = succeeded(&output, "plugin test");
    assert!(printed.contains("ok tests/messages.jsonl"), "{printed}");
    assert!(printed.contains("1 fixtures passed"), "{printed}");

    let expectations = project.join("tests/messages.expected.toml");
    let original = std::fs::read_to_string(&expectations).unwrap();
    let wrong = "notify room:!a:demo.streamhost 3";
    let edited = original.replacen("notify room:!a:demo.streamhost 2", wrong, 1);
    assert_ne!(edited, original);
    std::fs::write(&expectations, edited).unwrap();
    let output = streamhost(project, &["plugin", "test"]);
    assert!(!output.status.success(), "a wrong expectation must fail");
    let printed = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(printed.contains("FAIL tests/messages.jsonl"), "{printed}");
    assert!(printed.contains("messages master 3"), "{printed}");
    assert!(printed.contains(wrong), "{printed}");
    assert!(
        printed.contains("notify room:!a:demo.streamhost 2"),
        "{printed}"
    );
}

#[test]
fn a_rust_plugin_is_started_and_built_outside_the_repository_reproducibly() {
    let (_first_parent, first) = new_project("room-counts", "rust");
    let (_second_parent, second) = new_project("room-counts", "rust");
    // Both at once: each is a full build (the remapped folder is part of the compiler flags,
    // so nothing could be shared), and together they keep both cores busy.
    let (one, two) = std::thread::scope(|scope| {
        let one = scope.spawn(|| build(&first, "room-counts"));
        let two = scope.spawn(|| build(&second, "room-counts"));
        (one.join().unwrap(), two.join().unwrap())
    });
    assert!(one.0 > 1000, "{one:?}");
    assert_eq!(
        one, two,
        "the same source built in two folders gives the same component"
    );
    test_passes_then_fails(&first);
}

#[test]
fn python_and_javascript_plugins_are_started_and_built_outside_the_repository() {
    for language in ["python", "javascript"] {
        let name = format!("room-counts-{language}");
        let (_parent, project) = new_project(&name, language);
        let (size, _) = build(&project, &name);
        assert!(size > 1000, "{language}: {size}");
        test_passes_then_fails(&project);
    }
}

#[test]
fn plugin_new_refuses_a_bad_name_and_a_folder_in_use() {
    let parent = empty_folder();
    let output = streamhost(
        parent.path(),
        &["plugin", "new", "Room_Counts", "--lang", "rust"],
    );
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("lowercase letters, digits and `-`"),
        "{}",
        text(&output.stderr)
    );
    let output = streamhost(parent.path(), &["plugin", "new", "x", "--lang", "go"]);
    assert!(!output.status.success());
    assert!(text(&output.stderr).contains("use rust, python or javascript"));
    std::fs::create_dir(parent.path().join("mine")).unwrap();
    std::fs::write(parent.path().join("mine/keep.txt"), "keep").unwrap();
    let output = streamhost(
        parent.path(),
        &["plugin", "new", "mine", "--lang", "python"],
    );
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("already exists and is not an empty folder"),
        "{}",
        text(&output.stderr)
    );
    assert!(!parent.path().join("mine/plugin.py").exists());
}
