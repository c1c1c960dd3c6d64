//! Names from the network never become paths: streams named `../../x` and `/../y/..\é%`
//! flow through a reader whose plugin fails on every batch, and the failing batches are kept
//! as files inside `<data>/plugin-failures/`, with nothing created anywhere else.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use streamhost_integration_tests::plugins::{PluginFolder, grants_for};
use streamhost_integration_tests::{TestWriter, spawn_plugin_reader, wait_until};

const WAIT: Duration = Duration::from_secs(60);
const PLUGIN: &str = "stream-stats";
const HOSTILE: [(&str, &str); 2] = [
    ("../../x", "..%2F..%2Fx"),
    ("/../y/..\\é%", "%2F..%2Fy%2F..%5C%C3%A9%25"),
];

/// Every file and folder under `root`, as paths relative to it.
fn tree(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path.clone());
            }
            found.push(path.strip_prefix(root).unwrap().to_path_buf());
        }
    }
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_named_like_a_path_cannot_write_outside_the_readers_folders() {
    // One writer and reader per stream: the plugin is quarantined after its first batch.
    for (stream, in_url) in HOSTILE {
        let writer = TestWriter::spawn(&[stream]).await;
        let folder = PluginFolder::with(&[PLUGIN]);
        // stream-stats returns one effect per batch; allowed none, every batch fails.
        folder.edit_manifest(PLUGIN, |text| {
            format!("{text}\n[limits]\nmax_effects = 0\n")
        });
        let reader = spawn_plugin_reader(&writer, "paths", &folder, grants_for(&[PLUGIN])).await;
        let data = reader.data_dir();
        let outside = data.parent().unwrap().to_path_buf();
        let before = tree(&outside);
        writer
            .client()
            .append(in_url, json!([{"n": 1}]).to_string().into(), false)
            .await
            .unwrap();
        let file = std::sync::Mutex::new(None);
        wait_until(WAIT, &format!("a kept batch of {stream:?}"), || async {
            let plugin = reader.plugin(PLUGIN).await;
            let kept = plugin["reports"]
                .as_array()
                .into_iter()
                .flatten()
                .find_map(|r| {
                    (r["stream"] == stream).then(|| r["batch_file"].as_str().map(PathBuf::from))?
                });
            *file.lock().unwrap() = kept.clone();
            kept.is_some()
        })
        .await;
        let file = file.into_inner().unwrap().unwrap();
        let failures = data.join("plugin-failures");
        assert_eq!(
            file.parent(),
            Some(failures.as_path()),
            "{stream:?}: {file:?}"
        );
        assert!(file.to_string_lossy().contains(in_url), "{file:?}");
        let lines = std::fs::read_to_string(&file).unwrap();
        assert!(
            lines.starts_with(&format!("RDATA {stream} master ")),
            "{lines}"
        );
        for escaped in ["x", "y", "../x", "../y"] {
            let path = failures.join("..").join(escaped);
            assert!(!path.exists(), "{path:?} was created");
        }
        let inside = data.strip_prefix(&outside).unwrap();
        let new: Vec<PathBuf> = tree(&outside)
            .into_iter()
            .filter(|p| !before.contains(p) && !p.starts_with(inside))
            .collect();
        assert!(new.is_empty(), "created beside the data folder: {new:?}");
        let kept = tree(&failures);
        assert_eq!(kept.len(), 1, "one plain file in plugin-failures: {kept:?}");
    }
}
