//! `streamhost plugin run`, as a user runs it: the real binary replaying a captured Synapse
//! session through a plugin, replaying the batch a failing plugin left behind, and printing
//! the pushes of a plugin that pushes.

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use streamhost_integration_tests::plugins::{EVIL_DIR, STREAM_STATS_DIR, WEBHOOK_DIR};

const BINARY: &str = env!("CARGO_BIN_EXE_streamhost-under-test");

fn fixture() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/server/tests/fixtures/real-session-1.txt")
}

/// Runs `plugin run` with `args` and returns its JSON lines (`outbound_http` uses it too).
pub(crate) fn run(args: &[&str]) -> Vec<Value> {
    let output = Command::new(BINARY)
        .args(["plugin", "run"])
        .args(args)
        .arg("--json")
        .output()
        .expect("run the binary");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
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
    let lines = run(&[
        EVIL_DIR,
        "--input",
        input.to_str().unwrap(),
        "--config",
        r#"{"mode": "panic"}"#,
    ]);
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
    let lines = run(&[
        WEBHOOK_DIR,
        "--input",
        input.to_str().unwrap(),
        "--max-body-bytes",
        "10",
    ]);
    let batch = lines.iter().find(|l| l.get("rows").is_some()).unwrap();
    assert_eq!(batch["failure"]["reason"], "skip", "{batch}");
    assert_eq!(batch["pushes"], serde_json::json!([]), "{batch}");
}
