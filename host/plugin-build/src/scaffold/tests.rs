//! Tests of `plugin new`'s project writing (the builds are tested end to end in
//! tests/tests/all/plugin_workflow.rs).

#![allow(clippy::unwrap_used)]

use super::*;

fn new(name: &str, language: Language, streams: &[&str]) -> NewPlugin {
    NewPlugin {
        name: name.into(),
        language,
        streams: streams.iter().map(|s| s.to_string()).collect(),
    }
}

#[test]
fn bad_names_and_streams_are_refused_with_the_rule() {
    let parent = tempfile::tempdir().unwrap();
    for name in ["", "Counter", "my_plugin", "-x", "x-", "1x", "a b", "../x"] {
        let error = create(parent.path(), &new(name, Language::Rust, &[]))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("lowercase letters, digits and `-`"),
            "{name}: {error}"
        );
    }
    let error = create(parent.path(), &new("ok", Language::Rust, &["a\"b"]))
        .unwrap_err()
        .to_string();
    assert!(error.contains("stream name"), "{error}");
    assert_eq!(std::fs::read_dir(parent.path()).unwrap().count(), 0);
}

#[test]
fn a_non_empty_target_is_refused_and_an_empty_one_is_used() {
    let parent = tempfile::tempdir().unwrap();
    std::fs::create_dir(parent.path().join("taken")).unwrap();
    std::fs::write(parent.path().join("taken/notes.txt"), "mine").unwrap();
    let error = create(parent.path(), &new("taken", Language::Python, &[]))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("already exists and is not an empty folder"),
        "{error}"
    );
    assert_eq!(
        std::fs::read_to_string(parent.path().join("taken/notes.txt")).unwrap(),
        "mine"
    );
    std::fs::create_dir(parent.path().join("empty")).unwrap();
    let dir = create(parent.path(), &new("empty", Language::Python, &[])).unwrap();
    assert!(dir.join("plugin.py").is_file());
    let names: Vec<_> = std::fs::read_dir(parent.path()).unwrap().collect();
    assert_eq!(names.len(), 2, "no staging folder is left behind");
}

#[test]
fn each_language_gets_its_source_helpers_wit_and_a_consistent_manifest() {
    let parent = tempfile::tempdir().unwrap();
    for (language, files) in [
        (
            Language::Rust,
            &[
                "Cargo.toml",
                "Cargo.lock",
                "src/lib.rs",
                "streamhost-sdk/src/lib.rs",
                "streamhost-sdk/wit-http/world.wit",
            ][..],
        ),
        (Language::Python, &["plugin.py"][..]),
        (Language::JavaScript, &["plugin.js"][..]),
    ] {
        let name = format!("count-{language}");
        let dir = create(
            parent.path(),
            &new(&name, language, &["messages", "events"]),
        )
        .unwrap();
        assert_eq!(dir, parent.path().join(&name));
        assert_eq!(Language::of_folder(&dir).unwrap(), language);
        for file in files.iter().chain(&[
            "plugin.toml",
            "README.md",
            "wit/world.wit",
            "tests/messages.jsonl",
            "tests/messages.expected.toml",
        ]) {
            assert!(dir.join(file).is_file(), "{language}: {file}");
        }
        let manifest: toml::Table =
            toml::from_str(&std::fs::read_to_string(dir.join("plugin.toml")).unwrap()).unwrap();
        assert_eq!(manifest["name"].as_str(), Some(name.as_str()));
        assert_eq!(
            manifest["streams"],
            toml::Value::Array(vec!["messages".into(), "events".into()])
        );
        assert_eq!(manifest["kv"].as_bool(), Some(true));
        let expected: toml::Table = toml::from_str(
            &std::fs::read_to_string(dir.join("tests/messages.expected.toml")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            expected["kv"]["room:!a:demo.streamhost"].as_str(),
            Some("2")
        );
        for line in std::fs::read_to_string(dir.join("tests/messages.jsonl"))
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#'))
        {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(row["stream"], "messages", "{line}");
            assert!(row["row"].is_object(), "{line}");
        }
    }
}

#[test]
fn the_rust_lock_file_lists_the_plugin_in_cargos_order() {
    let parent = tempfile::tempdir().unwrap();
    let dir = create(parent.path(), &new("room-counts", Language::Rust, &[])).unwrap();
    let lock = std::fs::read_to_string(dir.join("Cargo.lock")).unwrap();
    let names: Vec<&str> = lock
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .map(|l| l.trim_end_matches('"'))
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert!(names.contains(&"room-counts"));
    assert!(names.contains(&"wit-bindgen"));
    let cargo = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    assert!(cargo.contains("name = \"room-counts\""));
    let source = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
    assert!(source.contains("const STREAMS: &[&str] = &[\"messages\"];"));
}
