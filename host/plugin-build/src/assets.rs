//! What the `streamhost` binary carries so plugins build outside the repository: the WIT of
//! `streamhost:plugin` (and the `wasi:http` WIT outbound HTTP uses), the Rust SDK's sources,
//! and the Python and JavaScript helper layers with their toolchain pins. Each is a list of
//! (path relative to its folder in the repository, contents); a test checks the lists name
//! every file of those folders.

/// A file carried in the binary: its path relative to its asset folder, and its text.
pub type Asset = (&'static str, &'static str);

/// `wit/*.wit`: the current interface version (`previous/` is not carried).
pub const WIT: &[Asset] = &[
    (
        "authorizer.wit",
        include_str!("../../../wit/authorizer.wit"),
    ),
    ("handler.wit", include_str!("../../../wit/handler.wit")),
    ("host.wit", include_str!("../../../wit/host.wit")),
    ("types.wit", include_str!("../../../wit/types.wit")),
    ("world.wit", include_str!("../../../wit/world.wit")),
];

/// `guest-sdk/wit-http/`: the `wasi:http` world and its dependencies, at the version the host
/// links.
pub const WIT_HTTP: &[Asset] = &[
    (
        "world.wit",
        include_str!("../../../guest-sdk/wit-http/world.wit"),
    ),
    (
        "deps/cli.wit",
        include_str!("../../../guest-sdk/wit-http/deps/cli.wit"),
    ),
    (
        "deps/clocks.wit",
        include_str!("../../../guest-sdk/wit-http/deps/clocks.wit"),
    ),
    (
        "deps/filesystem.wit",
        include_str!("../../../guest-sdk/wit-http/deps/filesystem.wit"),
    ),
    (
        "deps/http.wit",
        include_str!("../../../guest-sdk/wit-http/deps/http.wit"),
    ),
    (
        "deps/io.wit",
        include_str!("../../../guest-sdk/wit-http/deps/io.wit"),
    ),
    (
        "deps/random.wit",
        include_str!("../../../guest-sdk/wit-http/deps/random.wit"),
    ),
    (
        "deps/sockets.wit",
        include_str!("../../../guest-sdk/wit-http/deps/sockets.wit"),
    ),
];

/// `guest-sdk/`: the Rust SDK crate's sources (its `Cargo.toml`, `src/`, README).
pub const RUST_SDK: &[Asset] = &[
    ("Cargo.toml", include_str!("../../../guest-sdk/Cargo.toml")),
    ("README.md", include_str!("../../../guest-sdk/README.md")),
    ("src/lib.rs", include_str!("../../../guest-sdk/src/lib.rs")),
    (
        "src/batch.rs",
        include_str!("../../../guest-sdk/src/batch.rs"),
    ),
    (
        "src/http.rs",
        include_str!("../../../guest-sdk/src/http.rs"),
    ),
];

/// `guest-sdk/python/`: the helper layer and componentize-py's pin.
pub const PYTHON: &[Asset] = &[
    (
        "streamhost.py",
        include_str!("../../../guest-sdk/python/streamhost.py"),
    ),
    (
        "requirements.txt",
        include_str!("../../../guest-sdk/python/requirements.txt"),
    ),
];

/// `guest-sdk/javascript/`: the helper layer and the npm lock of componentize-js and jco.
pub const JAVASCRIPT: &[Asset] = &[
    (
        "streamhost.js",
        include_str!("../../../guest-sdk/javascript/streamhost.js"),
    ),
    (
        "package.json",
        include_str!("../../../guest-sdk/javascript/package.json"),
    ),
    (
        "package-lock.json",
        include_str!("../../../guest-sdk/javascript/package-lock.json"),
    ),
    (
        "README.md",
        include_str!("../../../guest-sdk/javascript/README.md"),
    ),
];

/// The interface version the carried WIT declares (`package streamhost:plugin@X;`).
pub fn interface_version() -> &'static str {
    WIT.iter()
        .find_map(|(_, text)| {
            text.lines()
                .find_map(|line| line.strip_prefix("package streamhost:plugin@"))
        })
        .and_then(|rest| rest.strip_suffix(';'))
        .unwrap_or("unknown")
}

/// Writes `assets` under `dir`, creating folders as needed.
pub fn write_all(dir: &std::path::Path, assets: &[Asset]) -> anyhow::Result<()> {
    for (path, text) in assets {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| anyhow::anyhow!("creating {}: {e}", parent.display()))?;
        }
        std::fs::write(&target, text)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", target.display()))?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    /// Every file under `dir` (relative, `/`-separated), skipping `skip` sub-folders.
    fn files(dir: &Path, skip: &[&str]) -> Vec<String> {
        let mut found = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(folder) = stack.pop() {
            for entry in std::fs::read_dir(&folder).unwrap() {
                let path = entry.unwrap().path();
                let rel = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                if path.is_dir() {
                    if !skip.contains(&rel.as_str()) {
                        stack.push(path);
                    }
                } else {
                    found.push(rel);
                }
            }
        }
        found.sort();
        found
    }

    fn names(assets: &[Asset]) -> Vec<String> {
        let mut names: Vec<String> = assets.iter().map(|(p, _)| p.to_string()).collect();
        names.sort();
        names
    }

    #[test]
    fn the_carried_files_are_every_file_of_their_folders() {
        let root = repo();
        assert_eq!(names(WIT), files(&root.join("wit"), &["previous"]));
        assert_eq!(
            names(WIT_HTTP),
            files(&root.join("guest-sdk/wit-http"), &[])
        );
        assert_eq!(
            names(PYTHON),
            files(&root.join("guest-sdk/python"), &["__pycache__"])
        );
        assert_eq!(
            names(JAVASCRIPT),
            files(&root.join("guest-sdk/javascript"), &["node_modules"])
        );
        let sdk: Vec<String> = files(
            &root.join("guest-sdk"),
            &["wit-http", "python", "javascript", "target"],
        );
        assert_eq!(names(RUST_SDK), sdk);
    }

    #[test]
    fn the_interface_version_is_the_wit_packages() {
        let world = std::fs::read_to_string(repo().join("wit/world.wit")).unwrap();
        assert!(world.contains(&format!(
            "package streamhost:plugin@{};",
            interface_version()
        )));
    }
}
