//! The compile cache loads only what it signed: a reader finding a tampered or a truncated
//! artifact in its cache folder compiles the plugin again (the artifact is replaced) and the
//! plugin works; a reader given a cache folder others can write refuses to start, saying how
//! to fix it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use streamhost_integration_tests::plugins::{PluginFolder, grants_for};
use streamhost_integration_tests::{ADMIN_TOKEN, TestReader, TestWriter, wait_until};
use streamhost_server::config::{ListenerConfig, ReaderConfig};
use streamhost_server::reader::Reader;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(60);
const PLUGIN: &str = "stream-stats";

/// A reader of `writer` running stream-stats, with its compile cache in `cache`.
async fn reader(
    writer: &TestWriter,
    name: &str,
    folder: &PluginFolder,
    cache: &Path,
) -> TestReader {
    let (plugins, cache) = (folder.path().to_path_buf(), cache.to_path_buf());
    TestReader::spawn_with(writer, name, None, move |config| {
        plugins_config(config, plugins, cache);
    })
    .await
}

/// Points `config` at the plugins folder `plugins` (stream-stats granted) and cache `cache`.
fn plugins_config(config: &mut ReaderConfig, plugins: PathBuf, cache: PathBuf) {
    config.plugins.dir = Some(plugins);
    config.plugins.grants = grants_for(&[PLUGIN]);
    config.plugins.admin_token = Some(ADMIN_TOKEN.into());
    config.plugins.compile_cache = Some(cache);
}

/// Waits until the reader's stream-stats counts `rows` rows of `messages`.
async fn wait_for_count(reader: &TestReader, rows: usize) {
    wait_until(
        WAIT,
        &format!("{} to count {rows}", reader.config.name),
        || async {
            reader
                .get("/v1/query/stream-stats/count?stream=messages")
                .await
                .1
                == rows.to_string()
        },
    )
    .await;
}

/// The one compiled artifact in `cache`.
fn artifact(cache: &Path) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_or_truncated_artifact_is_compiled_again_never_loaded() {
    let writer = TestWriter::spawn(&["messages"]).await;
    let folder = PluginFolder::with(&[PLUGIN]);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("compiled");
    writer.append("messages", &[json!({"n": 1})]).await;
    let mut first = reader(&writer, "first", &folder, &cache).await;
    wait_for_count(&first, 1).await;
    first.stop().await;
    let path = artifact(&cache);
    let good = std::fs::read(&path).unwrap();
    let mut tampered = good.clone();
    // One bit in the middle of the code: wasmtime's own checks would not notice it.
    tampered[good.len() / 2] ^= 0x10;
    let truncated = good[..good.len() / 2].to_vec();
    for (n, (what, bad)) in [("tampered", tampered), ("truncated", truncated)]
        .into_iter()
        .enumerate()
    {
        std::fs::write(&path, &bad).unwrap();
        writer.append("messages", &[json!({"n": n + 2})]).await;
        let mut again = reader(&writer, what, &folder, &cache).await;
        wait_for_count(&again, n + 2).await;
        let now = std::fs::read(artifact(&cache)).unwrap();
        assert_ne!(
            now, bad,
            "the {what} artifact was not replaced: it was not recompiled"
        );
        assert!(now.len() > good.len() / 2, "{what}: a whole artifact again");
        again.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_refuses_a_cache_folder_others_can_write() {
    let writer = TestWriter::spawn(&["messages"]).await;
    let folder = PluginFolder::with(&[PLUGIN]);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("compiled");
    std::fs::create_dir(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut config = ReaderConfig {
        writer: writer.replication_addr().to_string(),
        writer_http: writer.url(),
        http: ListenerConfig::on(([127, 0, 0, 1], 0).into()),
        data: dir.path().join("data"),
        name: "refused".into(),
        ..ReaderConfig::default()
    };
    plugins_config(&mut config, folder.path().to_path_buf(), cache.clone());
    let error = match Reader::bind(config, None, CancellationToken::new()).await {
        Ok(_) => panic!("a reader started with a world-writable compile cache"),
        Err(error) => format!("{error:#}"),
    };
    assert!(
        error.contains(&format!("chmod 700 {}", cache.display())),
        "{error}"
    );
    assert!(
        error.contains("writable by its group or by others"),
        "{error}"
    );
    let left: Vec<_> = std::fs::read_dir(&cache).unwrap().collect();
    assert!(
        left.is_empty(),
        "nothing written to the refused folder: {left:?}"
    );
}
