//! `streamhost synapse import` on a `homeserver.yaml` that Synapse generated (with a worker
//! deployment's settings added, `tests/fixtures/synapse/README.md`): the written
//! configuration, used as it is by the real reader process (Redis host, port and channel
//! moved to the test's by environment variables), follows the fake Synapse that replays a real
//! deployment's Redis traffic.

use std::path::{Path, PathBuf};
use std::time::Duration;

use streamhost_integration_tests::plugins::PluginFolder;
use streamhost_integration_tests::redis::{redis_addr, redis_url, unique_server_name};
use streamhost_integration_tests::synapse::{FakeSynapse, Script};
use streamhost_integration_tests::wait_until;

use super::synapse::start_reader_with_env;

const PROGRAM: &str = env!("CARGO_BIN_EXE_streamhost-under-test");

const WAIT: Duration = Duration::from_secs(30);

/// The fixture folder.
fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/synapse")
}

/// Runs `streamhost synapse import` with `args`; returns success, stdout and stderr.
async fn import(args: &[&str]) -> (bool, String, String) {
    let output = tokio::process::Command::new(PROGRAM)
        .args(["synapse", "import"])
        .args(args)
        .env_clear()
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(WAIT, output)
        .await
        .expect("import exits within 30 s")
        .expect("run streamhost");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_configured_by_synapse_import_follows_that_synapse() {
    let homeserver = fixtures().join("homeserver.yaml");
    let worker = fixtures().join("worker1.yaml");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("reader.toml");
    let (ok, stdout, stderr) = import(&[
        homeserver.to_str().unwrap(),
        worker.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ])
    .await;
    assert!(ok, "{stderr}");
    assert!(
        stdout.starts_with(&format!("wrote {}", out.display())),
        "{stdout}"
    );
    let imported = std::fs::read_to_string(&out).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&out).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "it holds secrets: owner only");
    for expected in [
        "name = \"streamhost1\"",
        "server_name = \"localhost\"  # homeserver.yaml: server_name",
        "worker_replication_secret = \"fixture-worker-replication-secret\"  # homeserver.yaml: worker_replication_secret",
        "[reader.synapse.redis]  # homeserver.yaml: redis",
        "host = \"127.0.0.1\"  # homeserver.yaml: redis.host",
        "port = 6379  # homeserver.yaml: redis.port",
        "[reader.synapse.instance_map.main]  # homeserver.yaml: instance_map.main",
        "[reader.synapse.instance_map.worker1]",
        "port = 9094",
    ] {
        assert!(imported.contains(expected), "{expected}:\n{imported}");
    }
    let (_, stdout, _) = import(&[homeserver.to_str().unwrap()]).await;
    assert!(
        stdout.contains("[reader.synapse]"),
        "to stdout without --out"
    );
    let (ok, _, stderr) = import(&[
        homeserver.to_str().unwrap(),
        worker.to_str().unwrap(),
        "--name",
        "worker1",
    ])
    .await;
    assert!(
        !ok && stderr.contains("Synapse already has an instance called worker1"),
        "{stderr}"
    );

    // What an operator adds: the reader's own folder and listener, and its plugins.
    let folder = PluginFolder::with(&["stream-stats"]);
    let config = format!(
        "{imported}\n[reader.plugins]\ndir = {:?}\n[reader.plugins.grants.stream-stats]\n\
         streams = [\"*\"]\ncaches = [\"count\"]\nkv = true\n",
        folder.path().display().to_string()
    );
    std::fs::write(&out, config).unwrap();

    // The test's Redis and a channel of its own, by environment over the imported file.
    let url = redis_url().await;
    let redis = redis_addr(&url);
    let server_name = unique_server_name("synapse-import");
    let mut synapse = FakeSynapse::connect(&url, &server_name).await;
    let data = dir.path().join("reader");
    let (host, port) = (redis.ip().to_string(), redis.port().to_string());
    let (reader, client) = start_reader_with_env(
        &mut synapse,
        out.to_str().unwrap(),
        &[
            ("STREAMHOST_READER__DATA", data.as_path()),
            ("STREAMHOST_READER__HTTP", Path::new("127.0.0.1:0")),
            (
                "STREAMHOST_READER__SYNAPSE__SERVER_NAME",
                Path::new(&server_name),
            ),
            ("STREAMHOST_READER__SYNAPSE__REDIS__HOST", Path::new(&host)),
            ("STREAMHOST_READER__SYNAPSE__REDIS__PORT", Path::new(&port)),
        ],
    )
    .await;

    let script = Script::from_capture();
    let expected = script.rows_per_stream();
    synapse.publish(&script.announcements).await;
    synapse.publish(&script.rows).await;
    synapse.publish(&script.tail).await;
    for (stream, rows) in &expected {
        wait_until(
            WAIT,
            &format!("stream-stats to count {rows} {stream} rows"),
            || async {
                client
                    .get_json(&format!("/v1/query/stream-stats/count?stream={stream}"))
                    .await
                    .ok()
                    .and_then(|v| v.as_u64())
                    == Some(*rows as u64)
            },
        )
        .await;
    }
    let status = client.get_json("/v1/status").await.unwrap();
    assert!(
        status["writer"]
            .as_str()
            .unwrap()
            .starts_with(&format!("synapse {server_name} via redis ")),
        "{status}"
    );
    let streams = status["streams"].as_array().unwrap();
    assert!(
        streams.iter().any(|s| s["instance"] == "master"),
        "the main process's streams: {status}"
    );
    assert_eq!(synapse.heard_from_others().await, Vec::<String>::new());
    assert!(reader.terminate().await.success());
}

#[tokio::test]
async fn importing_a_monolith_without_redis_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let generated = std::fs::read_to_string(fixtures().join("homeserver.yaml")).unwrap();
    let start = generated
        .find("\nredis:")
        .expect("the fixture's redis section");
    let end = generated.find("\ninstance_map:").unwrap();
    let monolith = dir.path().join("homeserver.yaml");
    std::fs::write(
        &monolith,
        format!("{}{}", &generated[..start], &generated[end..]),
    )
    .unwrap();
    let (ok, stdout, stderr) = import(&[monolith.to_str().unwrap()]).await;
    assert!(!ok, "{stdout}");
    assert!(stderr.contains("has no `redis: enabled: true`"), "{stderr}");
    assert!(stdout.is_empty());
}
