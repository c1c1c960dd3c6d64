//! The files of a new project for each language: the templates carried in the binary, with
//! `{{name}}`, `{{streams}}` and the README's parts filled in, plus the carried WIT and, for
//! Rust, the SDK ([`crate::assets`]). Python and JavaScript projects hold no helper layer:
//! `plugin build` adds the carried one and refuses a folder with a file of its name.

use crate::Language;
use crate::assets::{self, Asset};

use super::NewPlugin;

/// A file of the project: its path relative to the project folder, and its text.
pub(super) type File = (String, String);

const PLUGIN_TOML: &str = include_str!("common/plugin.toml.tmpl");
const README: &str = include_str!("common/README.md.tmpl");
const RUST_CARGO_TOML: &str = include_str!("rust/Cargo.toml.tmpl");
const RUST_CARGO_LOCK: &str = include_str!("rust/Cargo.lock.tmpl");
const RUST_LIB: &str = include_str!("rust/lib.rs.tmpl");
const PYTHON_PLUGIN: &str = include_str!("python/plugin.py.tmpl");
const JAVASCRIPT_PLUGIN: &str = include_str!("javascript/plugin.js.tmpl");

/// Where the Rust SDK goes in a Rust project. Its bindings read `../wit` (the project's `wit/`)
/// and its HTTP bindings `wit-http` inside it, so the carried sources need no rewriting.
pub(super) const RUST_SDK_DIR: &str = "streamhost-sdk";

/// Every file of the project `plugin` asks for.
pub(super) fn project(plugin: &NewPlugin) -> Vec<File> {
    let streams = streams_literal(&plugin.streams);
    let fill = |template: &str| {
        template
            .replace("{{name}}", &plugin.name)
            .replace("{{streams}}", &streams)
    };
    let mut files: Vec<File> = Vec::new();
    let mut manifest = fill(PLUGIN_TOML);
    match plugin.language {
        Language::Rust => {
            files.push(("Cargo.toml".into(), fill(RUST_CARGO_TOML)));
            files.push(("Cargo.lock".into(), cargo_lock(&plugin.name)));
            files.push(("src/lib.rs".into(), fill(RUST_LIB)));
            carry(&mut files, RUST_SDK_DIR, assets::RUST_SDK);
            carry(
                &mut files,
                &format!("{RUST_SDK_DIR}/wit-http"),
                assets::WIT_HTTP,
            );
        }
        Language::Python => {
            files.push(("plugin.py".into(), fill(PYTHON_PLUGIN)));
            manifest.push_str(&limits("Python"));
        }
        Language::JavaScript => {
            files.push(("plugin.js".into(), fill(JAVASCRIPT_PLUGIN)));
            manifest.push_str(&limits("JavaScript"));
        }
    }
    files.push(("plugin.toml".into(), manifest));
    carry(&mut files, "wit", assets::WIT);
    files.push(("README.md".into(), readme(plugin, &fill)));
    files.push((".gitignore".into(), "/build/\n/target/\n".into()));
    files.push(("tests/messages.jsonl".into(), fixture(plugin)));
    files.push((
        "tests/messages.expected.toml".into(),
        super::expectations::for_fixture(plugin),
    ));
    files
}

/// `streams` as a list literal that TOML, Rust (after `&`), Python and JavaScript all read:
/// `["a", "b"]`. The names were checked to need no escaping.
fn streams_literal(streams: &[String]) -> String {
    let quoted: Vec<String> = streams.iter().map(|s| format!("\"{s}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

/// The `[limits]` a componentized interpreter needs (more memory than the 64 MiB default).
fn limits(language: &str) -> String {
    format!(
        "\n[limits]\nmemory_mib = 128           # componentized {language} needs more than the 64 MiB default\n"
    )
}

/// Adds `assets` under `dir`.
fn carry(files: &mut Vec<File>, dir: &str, assets: &[Asset]) {
    for (path, text) in assets {
        files.push((format!("{dir}/{path}"), (*text).to_string()));
    }
}

/// The Rust project's `Cargo.lock`: the SDK's dependencies pinned at the versions the
/// repository's plugins are built and tested with, plus the plugin's own package, in the order
/// cargo writes them (by name), so cargo leaves the file as it is.
fn cargo_lock(name: &str) -> String {
    let own = format!(
        "name = \"{name}\"\nversion = \"0.1.0\"\ndependencies = [\n \"streamhost-guest-sdk\",\n]\n"
    );
    let mut parts = RUST_CARGO_LOCK.split("\n[[package]]\n");
    let head = parts.next().unwrap_or_default();
    let mut packages: Vec<String> = parts.map(str::to_string).collect();
    packages.push(own);
    packages.sort_by(|a, b| package_name(a).cmp(package_name(b)));
    let mut lock = head.to_string();
    for package in packages {
        lock.push_str("\n[[package]]\n");
        lock.push_str(&package);
    }
    lock
}

/// The `name` of a lock file's package entry.
fn package_name(entry: &str) -> &str {
    entry
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("name = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or_default()
}

/// The fixture: rows of the first stream asked for (`messages` when that is `*`), three of
/// them messages in two rooms and one that is not a message.
fn fixture(plugin: &NewPlugin) -> String {
    let stream = fixture_stream(plugin);
    let rows = [
        r#"{"room": "!a:demo.streamhost", "sender": "@user1:demo.streamhost", "body": "hello", "mentions": []}"#,
        r#"{"room": "!b:demo.streamhost", "sender": "@user2:demo.streamhost", "body": "hi", "mentions": ["@user1:demo.streamhost"]}"#,
        r#"{"room": "!a:demo.streamhost", "sender": "@user2:demo.streamhost", "body": "again", "mentions": []}"#,
        r#"{"not": "a message"}"#,
    ];
    let mut text =
        "# Rows replayed through the plugin by `streamhost plugin test`, one per line:\n\
         # {\"stream\": S, \"row\": ROW} (optional \"instance\", default master, and \"token\").\n\
         # The rows are shaped like the demo's `messages` rows.\n"
            .to_string();
    for row in rows {
        text.push_str(&format!("{{\"stream\": \"{stream}\", \"row\": {row}}}\n"));
    }
    text
}

/// The stream the fixture's rows are on.
pub(super) fn fixture_stream(plugin: &NewPlugin) -> &str {
    match plugin.streams.first().map(String::as_str) {
        None | Some("*") => "messages",
        Some(stream) => stream,
    }
}

/// The README: how to build, test and develop, and what each file is.
fn readme(plugin: &NewPlugin, fill: &dyn Fn(&str) -> String) -> String {
    let (title, files, toolchain) = match plugin.language {
        Language::Rust => (
            "Rust",
            "| `src/lib.rs` | The plugin. |\n\
             | `Cargo.toml`, `Cargo.lock` | Its cargo package; the lock file pins every dependency so builds are reproducible. |\n\
             | `streamhost-sdk/` | The Rust SDK (crate `streamhost-guest-sdk`), carried by the `streamhost` binary; its bindings read `wit/`. |\n",
            "Building needs Rust (1.95 or newer) with the `wasm32-wasip2` target; `plugin build` runs \
             `rustup target add wasm32-wasip2` and then `cargo build --release --target wasm32-wasip2` \
             (its target folder is `target/`). `cargo test` does not apply: the plugin runs only as \
             a WebAssembly component, so test it with `streamhost plugin test`.",
        ),
        Language::Python => (
            "Python",
            "| `plugin.py` | The plugin; it imports the helper layer `streamhost`, which `plugin build` adds from the copy the `streamhost` binary carries (so do not name a file `streamhost.py`). |\n",
            "Building needs `python3` (3.11 or newer, with `venv`); the first build installs the \
             pinned componentize-py into the guest toolchains folder \
             (`$STREAMHOST_GUEST_TOOLCHAINS`, else `~/.cache/streamhost/toolchains`).",
        ),
        Language::JavaScript => (
            "JavaScript",
            "| `plugin.js` | The plugin; it imports the helper layer `streamhost`, which `plugin build` adds from the copy the `streamhost` binary carries (so do not name a file `streamhost.js`). |\n",
            "Building needs Node.js and npm; the first build installs the pinned componentize-js \
             and jco into the guest toolchains folder (`$STREAMHOST_GUEST_TOOLCHAINS`, else \
             `~/.cache/streamhost/toolchains`).",
        ),
    };
    fill(README)
        .replace("{{language_title}}", title)
        .replace("{{files}}", files)
        .replace("{{toolchain}}", toolchain)
        .replace("{{interface}}", assets::interface_version())
}
