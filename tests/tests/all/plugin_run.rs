//! `streamhost plugin run`, as a user runs it: the real binary replaying a captured Synapse
//! session through a plugin, replaying the batch a failing plugin left behind (and exiting
//! non-zero), printing the pushes of a plugin that pushes, asking a query, and loading a
//! component compiled by an earlier run from the shared compile cache.

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use streamhost_integration_tests::plugins::{
    EVIL_DIR, ROOM_TIMELINE_DIR, STREAM_STATS_DIR, WEBHOOK_DIR,
};

const BINARY: &str = env!("CARGO_BIN_EXE_streamhost-under-test");

fn fixture() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/server/tests/fixtures/real-session-1.txt")
}

/// The compile cache the tests' runs of the binary share (in the build's temporary folder, not
/// the user's `~/.cache`).
pub(crate) fn test_cache() -> std::path::PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("compiled")
}

/// Runs `plugin run` with `args` and returns its JSON lines (`outbound_http` uses it too).
pub(crate) fn run(args: &[&str]) -> Vec<Value> {
    let (success, lines, stderr) = run_status(args);
    assert!(success, "{stderr}");
    lines
}

/// Runs `plugin run --json` with `args`: whether it exited 0, its JSON lines and its stderr.
fn run_status(args: &[&str]) -> (bool, Vec<Value>, String) {
    let output = Command::new(BINARY)
        .args(["plugin", "run"])
        .args(args)
        .arg("--json")
        .env("STREAMHOST_COMPILE_CACHE", test_cache())
        .output()
        .expect("run the binary");
    let lines = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    (
        output.status.success(),
        lines,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_real_synapse_session_replays_through_stream_stats() {
    let input = fixture();
    let text = std::fs::read_to_string(&input).unwrap();
    // Rows on the wire: the TCP session's RDATA plus those published on Redis.
    let expected_rows = text
        .lines()
        .filter(|l| l.starts_with("S RDATA ") || (l.starts_with("P ") && l.contains(" RDATA ")))
        .count();
    let lines = run(&[STREAM_STATS_DIR, "--input", input.to_str().unwrap()]);
    let batches: Vec<&Value> = lines.iter().filter(|l| l.get("rows").is_some()).collect();
    assert!(!batches.is_empty());
    let rows: u64 = batches.iter().map(|b| b["rows"].as_u64().unwrap()).sum();
    assert_eq!(rows as usize, expected_rows);
    for batch in &batches {
        assert!(batch["failure"].is_null(), "{batch}");
        assert_eq!(
            batch["effects"],
            serde_json::json!([{"invalidate": {"cache": "count", "key": batch["stream"]}}]),
            "{batch}"
        );
        assert!(
            batch["prev_token"].as_i64() < batch["token"].as_i64(),
            "{batch}"
        );
    }
}

#[test]
fn a_failing_batch_file_replays_with_its_failure() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("evil-messages-1-3.rdata");
    std::fs::write(
        &input,
        "RDATA messages master batch {\"room\":\"!a:x\"}\nRDATA messages master 2 {\"room\":\"!a:x\"}\nRDATA messages master 3 {\"room\":\"!b:x\"}\n",
    )
    .unwrap();
    let (success, lines, stderr) = run_status(&[
        EVIL_DIR,
        "--input",
        input.to_str().unwrap(),
        "--config",
        r#"{"mode": "panic"}"#,
    ]);
    assert!(!success, "a failed batch fails the command");
    assert!(stderr.contains("1 of 1 batches failed"), "{stderr}");
    let batches: Vec<&Value> = lines.iter().filter(|l| l.get("rows").is_some()).collect();
    assert_eq!(batches.len(), 1, "{lines:?}");
    assert_eq!(batches[0]["rows"], 3);
    assert_eq!(batches[0]["failure"]["reason"], "trap", "{}", batches[0]);
    // Behaving, the same input gives one notification.
    let lines = run(&[EVIL_DIR, "--input", input.to_str().unwrap()]);
    let batch = lines.iter().find(|l| l.get("rows").is_some()).unwrap();
    assert_eq!(
        batch["effects"],
        serde_json::json!([{"notify": {"topic": "evil", "payload": "3"}}])
    );
}

#[test]
fn a_leaking_instance_is_replaced_before_its_budget_fails_a_call() {
    // 40 one-row batches, each leaking 4 MiB: 160 MiB against the 64 MiB budget. The
    // instance is replaced once it has grown by three quarters of its room, as a reader
    // replaces it, so no call fails.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("messages.rdata");
    let rows: String = (1..=40)
        .map(|token| format!("RDATA messages master {token} {{\"room\":\"!a:x\"}}\n"))
        .collect();
    std::fs::write(&input, rows).unwrap();
    let (success, lines, stderr) = run_status(&[
        EVIL_DIR,
        "--input",
        input.to_str().unwrap(),
        "--batch-rows",
        "1",
        "--config",
        r#"{"mode": "leak"}"#,
    ]);
    assert!(success, "{stderr}");
    let batches: Vec<&Value> = lines.iter().filter(|l| l.get("rows").is_some()).collect();
    assert_eq!(batches.len(), 40, "{lines:?}");
    let budget = 64 << 20;
    for batch in &batches {
        assert!(batch["failure"].is_null(), "{batch}");
        assert!(batch["memory_peak"].as_u64().unwrap() < budget, "{batch}");
    }
    let summary = &lines.last().unwrap()["summary"];
    let instances = summary["instances"].as_u64().unwrap();
    assert!((3..=5).contains(&instances), "{summary}");
    // Each instance ran about 12 batches before it was replaced: its memory climbed, then
    // started again from its size at rest.
    let peaks: Vec<u64> = batches
        .iter()
        .map(|b| b["memory_peak"].as_u64().unwrap())
        .collect();
    let drops = peaks.windows(2).filter(|w| w[1] < w[0]).count();
    assert_eq!(drops as u64, instances - 1, "{peaks:?}");
}

#[test]
fn pushes_are_printed_beside_the_effects() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.rdata");
    std::fs::write(
        &input,
        "RDATA events master batch {\"n\":1}\nRDATA events master 4 {\"n\":2}\nRDATA events master 5 {\"n\":3}\n",
    )
    .unwrap();
    let lines = run(&[WEBHOOK_DIR, "--input", input.to_str().unwrap()]);
    let batch = lines.iter().find(|l| l.get("rows").is_some()).unwrap();
    assert!(batch["failure"].is_null(), "{batch}");
    assert_eq!(batch["pushes"][0]["destination"], "webhook", "{batch}");
    assert_eq!(batch["pushes"][0]["key"], "events/master/4/0", "{batch}");
    assert_eq!(batch["pushes"][2]["key"], "events/master/5/0", "{batch}");
    let body: Value = serde_json::from_str(batch["pushes"][1]["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"stream": "events", "instance": "master", "token": 4, "row": {"n": 2}})
    );
    let summary = lines.iter().find_map(|l| l.get("summary")).unwrap();
    assert_eq!(summary["pushes"], 3, "{summary}");

    let output = Command::new(BINARY)
        .args(["plugin", "run", WEBHOOK_DIR, "--input"])
        .arg(&input)
        .output()
        .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.contains("3 pushes [push webhook events/master/4/0 {"),
        "{text}"
    );

    // A destination's `max_body_bytes` smaller than the bodies: the plugin is refused.
    let (success, lines, _) = run_status(&[
        WEBHOOK_DIR,
        "--input",
        input.to_str().unwrap(),
        "--max-body-bytes",
        "10",
    ]);
    assert!(!success, "a skipped batch is a failed one");
    let batch = lines.iter().find(|l| l.get("rows").is_some()).unwrap();
    assert_eq!(batch["failure"]["reason"], "skip", "{batch}");
    assert_eq!(batch["pushes"], serde_json::json!([]), "{batch}");
}

#[test]
fn a_query_is_answered_after_the_replay() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("messages.rdata");
    std::fs::write(
        &input,
        "RDATA messages master 1 {\"room\":\"!a:x\",\"body\":\"hi\"}\nRDATA messages master 2 {\"room\":\"!b:x\"}\n",
    )
    .unwrap();
    let input = input.to_str().unwrap();
    let lines = run(&[
        ROOM_TIMELINE_DIR,
        "--input",
        input,
        "--query",
        "timeline",
        "--arg",
        "room=!a:x",
    ]);
    let query = lines.iter().find_map(|l| l.get("query")).unwrap();
    assert_eq!(query["name"], "timeline");
    let answer: Value = serde_json::from_str(query["answer"].as_str().unwrap()).unwrap();
    assert_eq!(
        answer,
        serde_json::json!([{"room": "!a:x", "body": "hi"}]),
        "{query}"
    );
    // A query the plugin does not have fails the command.
    let (success, lines, _) = run_status(&[ROOM_TIMELINE_DIR, "--input", input, "--query", "nope"]);
    assert!(!success);
    let query = lines.iter().find_map(|l| l.get("query")).unwrap();
    assert!(query["failure"]["reason"].is_string(), "{query}");
}

#[test]
fn a_second_run_loads_the_compiled_component_from_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().join("compiled");
    let input = fixture();
    let run_logged = || {
        let output = Command::new(BINARY)
            .args(["plugin", "run", STREAM_STATS_DIR, "--input"])
            .arg(&input)
            .arg("--cache")
            .arg(&cache_dir)
            .env("RUST_LOG", "streamhost=info")
            .output()
            .unwrap();
        assert!(output.status.success());
        String::from_utf8(output.stderr).unwrap()
    };
    let first = run_logged();
    assert!(first.contains("compiling plugin"), "{first}");
    assert!(first.contains("compiled plugin"), "{first}");
    assert!(first.contains("\"stream-stats\""), "{first}");
    let artifacts = std::fs::read_dir(&cache_dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "cwasm")
        })
        .count();
    assert_eq!(artifacts, 1);
    let second = run_logged();
    assert!(
        second.contains("compiled plugin loaded from cache"),
        "{second}"
    );
    assert!(!second.contains("compiling plugin"), "{second}");
}

#[test]
fn perf_map_names_the_plugins_functions_for_perf_and_is_written_only_when_asked() {
    // The map is perf's file for the run's process id: /tmp/perf-<pid>.map, whether the
    // component is compiled or loaded from the cache (the second run loads it).
    let map_of = |perf_map: bool| {
        let mut command = Command::new(BINARY);
        command
            .args(["plugin", "run", ROOM_TIMELINE_DIR, "--input"])
            .arg(fixture())
            .env("STREAMHOST_COMPILE_CACHE", test_cache())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        if perf_map {
            command.arg("--perf-map");
        }
        let child = command.spawn().unwrap();
        let path = std::path::PathBuf::from(format!("/tmp/perf-{}.map", child.id()));
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let map = std::fs::read_to_string(&path).ok();
        let _ = std::fs::remove_file(&path);
        map
    };
    for _ in 0..2 {
        let map = map_of(true).expect("--perf-map writes /tmp/perf-<pid>.map");
        // `<start> <size> <name>` lines, the plugin's own functions and its exports among them.
        let names: Vec<&str> = map
            .lines()
            .filter_map(|line| line.splitn(3, ' ').nth(2))
            .collect();
        assert!(names.iter().any(|n| n.contains("room_timeline")), "{map}");
        assert!(
            names
                .iter()
                .any(|n| n.ends_with("streamhost:plugin/handler@0.4.0#on-batch")),
            "{map}"
        );
    }
    assert_eq!(map_of(false), None, "no map without --perf-map");
}
