//! Builds the plugins of `plugins/` from source for the tests, the way wasmtime's
//! `test-programs` does: one nested `cargo build --release --target wasm32-wasip2` of the
//! plugins workspace into `$OUT_DIR/plugins-target`, then the layout the reader loads,
//! `$OUT_DIR/plugins/<name>/{plugin.toml,<name>.wasm}`, for every plugin (`evil` included),
//! and `$OUT_DIR/plugins.rs` with their paths as constants (see `src/plugins.rs`).
//!
//! A plugin folder holding `component.wat` instead of a crate (`evil-table`, which needs an
//! instruction Rust cannot emit; `evil-alias`, whose strings share their bytes) is a
//! hand-written core module: it is assembled with `wat` and made a component of the `reader`
//! world of `streamhost:plugin@0.1.0` (`wit/previous/0.1.0`) with `wit-component`, so the tests
//! keep loading components built against earlier interface versions. Each is also made a
//! component of 0.2.0's `reader` (`wit/previous/0.2.0`, whose `handler` has the same functions)
//! in `$OUT_DIR/plugins-0.2.0/<name>/` (constants `<NAME>_V0_2_DIR`).
//!
//! The Python and JavaScript plugins (`plugins/python/*`, `plugins/javascript/*`) are built by
//! the code a user runs as `streamhost plugin build` (the `streamhost-plugin-build` crate),
//! which installs their pinned toolchains on first use (into `$OUT_DIR/guest-toolchains`, but
//! weval, JavaScript's ahead-of-time compiler, once per machine into the folder `streamhost
//! plugin build` uses); a toolchain that cannot be installed fails the build with its
//! message. Each language's `template` is built too (into `$OUT_DIR/templates/<language>`),
//! so the folder users copy always builds.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .expect("tests/ lies in the repository")
        .to_path_buf();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let plugins_src = root.join("plugins");

    let mut names = plugin_names(&plugins_src);
    rerun_if_changed(&root, &plugins_src, &names);
    check_target_installed();

    let target_dir = out_dir.join("plugins-target");
    build(&plugins_src, &target_dir);

    let layout = out_dir.join("plugins");
    let mut consts = String::new();
    let foreign = build_other_languages(&root, &out_dir, &layout);
    writeln!(
        consts,
        "/// The folder holding one sub-folder per plugin (every plugin, `evil` included)."
    )
    .expect("write to a String");
    writeln!(
        consts,
        "pub const PLUGINS_DIR: &str = {:?};",
        path_str(&layout)
    )
    .expect("write to a String");
    for name in &names {
        let dir = layout.join(name);
        // A fresh folder each time, so it holds exactly one `.wasm` and the current manifest.
        if dir.exists() {
            fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("remove {}: {e}", dir.display()));
        }
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        copy(
            &plugins_src.join(name).join("plugin.toml"),
            &dir.join("plugin.toml"),
        );
        let wasm = dir.join(format!("{name}.wasm"));
        let wat = plugins_src.join(name).join("component.wat");
        if wat.is_file() {
            // Built against 0.1.0 and 0.2.0: the components that keep older versions loading.
            build_wat_component(&wat, &root.join("wit/previous/0.1.0"), "0.1.0", &wasm);
            let v2 = out_dir.join("plugins-0.2.0").join(name);
            fs::create_dir_all(&v2).unwrap_or_else(|e| panic!("create {}: {e}", v2.display()));
            copy(
                &plugins_src.join(name).join("plugin.toml"),
                &v2.join("plugin.toml"),
            );
            let v2_wasm = v2.join(format!("{name}.wasm"));
            build_wat_component(&wat, &root.join("wit/previous/0.2.0"), "0.2.0", &v2_wasm);
            writeln!(
                consts,
                "/// `{name}` built against `streamhost:plugin@0.2.0`.\n\
                 pub const {}_V0_2_DIR: &str = {:?};",
                name.replace('-', "_").to_uppercase(),
                path_str(&v2)
            )
            .expect("write to a String");
        } else {
            copy(
                &target_dir
                    .join(TARGET)
                    .join("release")
                    .join(format!("{}.wasm", name.replace('-', "_"))),
                &wasm,
            );
        }

        writeln!(consts, "{}", plugin_consts(name, &dir)).expect("write to a String");
    }
    for (name, dir) in &foreign.plugins {
        writeln!(consts, "{}", plugin_consts(name, dir)).expect("write to a String");
        names.push(name.clone());
    }
    for (language, dir) in &foreign.templates {
        writeln!(
            consts,
            "/// The built `plugins/{language}/template`: its `plugin.toml` and one `.wasm`.\n\
             pub const {}_TEMPLATE_DIR: &str = {:?};",
            language.to_uppercase(),
            path_str(dir)
        )
        .expect("write to a String");
    }
    writeln!(
        consts,
        "/// The names of every plugin built, each a folder of [`PLUGINS_DIR`].\n\
         pub const ALL_PLUGINS: &[&str] = &{names:?};"
    )
    .expect("write to a String");
    let generated = out_dir.join("plugins.rs");
    fs::write(&generated, consts).unwrap_or_else(|e| panic!("write {}: {e}", generated.display()));
}

/// The `<NAME>_DIR` and `<NAME>_WASM` constants of the plugin `name` laid out in `dir`.
fn plugin_consts(name: &str, dir: &Path) -> String {
    let ident = name.replace('-', "_").to_uppercase();
    let wasm = dir.join(format!("{name}.wasm"));
    format!(
        "/// The folder of the `{name}` plugin: its `plugin.toml` and `{name}.wasm`.\n\
         pub const {ident}_DIR: &str = {:?};\n\
         /// The component of the `{name}` plugin.\n\
         pub const {ident}_WASM: &str = {:?};",
        path_str(dir),
        path_str(&wasm),
    )
}

/// The languages built through `streamhost_plugin_build` (the code behind
/// `streamhost plugin build`): their folders of `plugins/`.
const OTHER_LANGUAGES: [&str; 2] = ["python", "javascript"];

/// What [`build_other_languages`] laid out.
struct Foreign {
    /// (plugin name, folder) of every example plugin.
    plugins: Vec<(String, PathBuf)>,
    /// (language, folder) of every language's built template.
    templates: Vec<(String, PathBuf)>,
}

/// Builds every plugin of `plugins/<language>/`, one thread per language (the builds mostly
/// wait on their compilers).
fn build_other_languages(root: &Path, out_dir: &Path, layout: &Path) -> Foreign {
    let mut foreign = Foreign {
        plugins: Vec::new(),
        templates: Vec::new(),
    };
    // The guest toolchains live with this build, so `cargo clean` starts from nothing.
    let toolchains = out_dir.join("guest-toolchains");
    let built: Vec<Foreign> = std::thread::scope(|scope| {
        let jobs: Vec<_> = OTHER_LANGUAGES
            .iter()
            .map(|&language| {
                let toolchains = &toolchains;
                scope.spawn(move || build_language(root, language, toolchains, out_dir, layout))
            })
            .collect();
        jobs.into_iter()
            .map(|job| {
                job.join()
                    .unwrap_or_else(|_| panic!("a plugin build panicked"))
            })
            .collect()
    });
    for language in built {
        foreign.plugins.extend(language.plugins);
        foreign.templates.extend(language.templates);
    }
    foreign
}

/// Builds the plugin folders of `plugins/<language>/` (none when the folder is absent).
fn build_language(
    root: &Path,
    language: &str,
    toolchains: &Path,
    out_dir: &Path,
    layout: &Path,
) -> Foreign {
    let source = root.join("plugins").join(language);
    println!("cargo:rerun-if-changed={}", path_str(&source));
    let mut foreign = Foreign {
        plugins: Vec::new(),
        templates: Vec::new(),
    };
    if !source.is_dir() {
        return foreign;
    }
    for folder in plugin_names(&source) {
        let is_template = folder == "template";
        let options = streamhost_plugin_build::BuildOptions {
            out: if is_template {
                out_dir.join("templates").join(language)
            } else {
                layout.to_path_buf()
            },
            toolchains: toolchains.to_path_buf(),
            // As `streamhost plugin build` builds them: JavaScript compiled ahead of time, by
            // the weval that command uses (`~/.cache/streamhost/toolchains/weval`). Built
            // from source where its download fails (seven minutes on two cores), it is
            // installed once per machine, as cargo-deny and cargo-fuzz are, not per build.
            ahead_of_time: Some(streamhost_plugin_build::default_toolchains_dir()),
        };
        let built = streamhost_plugin_build::build(&source.join(&folder), &options)
            .unwrap_or_else(|e| panic!("building the {language} plugin {folder} failed: {e:#}"));
        for warning in &built.warnings {
            println!("cargo:warning={language}/{folder}: {warning}");
        }
        if is_template {
            foreign.templates.push((language.to_owned(), built.dir));
        } else {
            foreign.plugins.push((built.name, built.dir));
        }
    }
    foreign
}

/// The plugins: the folders of `plugins/` that hold a `plugin.toml`, sorted.
fn plugin_names(plugins_src: &Path) -> Vec<String> {
    let entries =
        fs::read_dir(plugins_src).unwrap_or_else(|e| panic!("read {}: {e}", plugins_src.display()));
    let mut names: Vec<String> = entries
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().join("plugin.toml").is_file())
        .filter_map(|entry| entry.file_name().to_str().map(str::to_owned))
        .collect();
    names.sort();
    assert!(
        !names.is_empty(),
        "no plugin (folder with a plugin.toml) in {}",
        plugins_src.display()
    );
    names
}

/// Sources only: never `plugins/target`, which the nested build does not even use.
fn rerun_if_changed(root: &Path, plugins_src: &Path, names: &[String]) {
    let mut paths = vec![
        plugins_src.join("Cargo.toml"),
        plugins_src.join("Cargo.lock"),
        root.join("guest-sdk").join("Cargo.toml"),
        root.join("guest-sdk").join("src"),
        root.join("guest-sdk").join("wit-http"),
        root.join("guest-sdk").join("python"),
        root.join("guest-sdk")
            .join("javascript")
            .join("streamhost.js"),
        root.join("guest-sdk")
            .join("javascript")
            .join("package-lock.json"),
        root.join("wit"),
    ];
    for name in names {
        paths.push(plugins_src.join(name));
    }
    for path in paths {
        println!("cargo:rerun-if-changed={}", path_str(&path));
    }
}

/// Fails early, and clearly, when the wasm32-wasip2 standard library is not installed.
fn check_target_installed() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let Ok(output) = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
    else {
        return; // The build below reports whatever is wrong with rustc.
    };
    let libdir = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() || libdir.is_empty() || !Path::new(&libdir).is_dir() {
        panic!("{}", missing_target_message());
    }
}

fn missing_target_message() -> String {
    format!(
        "the {TARGET} target is not installed, so the test plugins cannot be built; \
         run `rustup target add {TARGET}` (scripts/test does it)"
    )
}

/// One `cargo build` of the whole plugins workspace.
fn build(plugins_src: &Path, target_dir: &Path) {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--target")
        .arg(TARGET)
        .arg("--manifest-path")
        .arg(plugins_src.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", target_dir)
        // The outer build's flags and wrappers are for the host (and, under `cargo clippy`,
        // would turn this build into a check that emits no .wasm).
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_BUILD_TARGET");
    let output = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let hint = if stderr.contains("may not be installed")
            || stderr.contains("can't find crate for `core`")
            || stderr.contains("can't find crate for `std`")
        {
            format!("\n\n{}", missing_target_message())
        } else {
            String::new()
        };
        panic!(
            "building the plugins failed ({}): {cmd:?}\n{stderr}{hint}",
            output.status
        );
    }
}

/// Assembles `wat` (whose exports are named for 0.1.0) as a component of the `reader` world
/// of the WIT package `version` in `wit`.
fn build_wat_component(wat: &Path, wit: &Path, version: &str, out: &Path) {
    let text = fs::read_to_string(wat)
        .unwrap_or_else(|e| panic!("read {}: {e}", wat.display()))
        .replace("/handler@0.1.0#", &format!("/handler@{version}#"));
    let mut module =
        wat::parse_str(&text).unwrap_or_else(|e| panic!("assemble {}: {e}", wat.display()));
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve
        .push_dir(wit)
        .unwrap_or_else(|e| panic!("read {}: {e:#}", wit.display()));
    let world = resolve
        .select_world(&[package], Some("reader"))
        .unwrap_or_else(|e| panic!("world reader: {e:#}"));
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
        false,
    )
    .unwrap_or_else(|e| panic!("embed the world in {}: {e:#}", wat.display()));
    let component = wit_component::ComponentEncoder::default()
        .module(&module)
        .and_then(|encoder| encoder.validate(true).encode())
        .unwrap_or_else(|e| panic!("make a component of {}: {e:#}", wat.display()));
    fs::write(out, component).unwrap_or_else(|e| panic!("write {}: {e}", out.display()));
}

fn copy(from: &Path, to: &Path) {
    fs::copy(from, to)
        .unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), to.display()));
}

fn path_str(path: &Path) -> &str {
    path.to_str()
        .unwrap_or_else(|| panic!("{} is not UTF-8", path.display()))
}
