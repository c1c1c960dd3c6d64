//! The hostile-plugin suite in Python and JavaScript (`evil-py`, `evil-js`): the modes those
//! languages can express, held to what the Rust suite (`hostile_plugins.rs`) holds the Rust
//! plugin to. The guests copy every string they hand the host, so the cases that must keep
//! applying use sizes the guest's own copying finishes within its CPU deadline, and a log
//! rate of one line a second so a few batches are over it.

use serde_json::{Value, json};

use crate::hostile_plugins::{Scene, evil};

/// Counters with 64 KiB names: stopped by the host budget.
async fn counter_names(plugin: &str) {
    let scene = Scene::start(plugin, evil("counter-names", json!({}))).await;
    scene.append().await;
    scene.quarantined_with("host-memory").await;
    scene.finish().await;
}

/// 500 deletes of absent 1,000-byte keys a batch (what JavaScript makes within its CPU
/// deadline on a loaded machine): nothing recorded, the plugin goes on.
async fn kv_tombstones(plugin: &str) {
    let flood = json!({ "count": 500 });
    let scene = Scene::start(plugin, evil("kv-tombstones", flood)).await;
    scene.keeps_applying(3).await;
    scene.finish().await;
}

/// `count` lines of `bytes` a batch at one line a second: cut, dropped, and the plugin goes
/// on.
async fn giant_log(plugin: &str, count: u64, bytes: u64) {
    let config = evil("giant-log", json!({ "count": count, "bytes": bytes }));
    let scene = Scene::start_with(plugin, config, |folder, grants| {
        // The manifests end with their `[limits]` table.
        folder.edit_manifest(plugin, |text| format!("{text}log_lines_per_second = 1\n"));
        let grant = grants.get_mut(plugin).unwrap();
        grant.limits.as_mut().unwrap().log_lines_per_second = 1;
    })
    .await;
    let offender = scene.keeps_applying(3).await;
    assert!(
        offender["log_lines_dropped"].as_u64().unwrap() > 0,
        "{offender}"
    );
    scene.finish().await;
}

/// Four notifications of `bytes` a batch, `batches` times: applied, memory bounded.
async fn notify_flood(plugin: &str, bytes: u64, batches: usize) {
    let config = evil("notify-flood", json!({ "count": 4, "bytes": bytes }));
    let scene = Scene::start(plugin, config).await;
    let offender: Value = scene.keeps_applying(batches).await;
    assert!(
        offender["effects"].as_u64().unwrap() >= 4 * batches as u64,
        "{offender}"
    );
    scene.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_counter_names_of_64_kib_are_stopped_by_the_host_budget() {
    counter_names("evil-py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_deletes_of_absent_keys_record_nothing() {
    kv_tombstones("evil-py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_giant_log_lines_are_cut_and_the_plugin_keeps_applying() {
    giant_log("evil-py", 20, 4 << 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_notification_flood_stays_within_the_ring_bounds() {
    // Just under the 4 MiB of effects a batch; 600 MB in all, more than the ceiling.
    notify_flood("evil-py", 1_040_000, 150).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_counter_names_of_64_kib_are_stopped_by_the_host_budget() {
    counter_names("evil-js").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_deletes_of_absent_keys_record_nothing() {
    kv_tombstones("evil-js").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_giant_log_lines_are_cut_and_the_plugin_keeps_applying() {
    // Far smaller than Python's: componentize-js hands a string to the host at a few MB a
    // second (one 4 MiB line takes over half its one-second deadline; on a loaded two-core
    // machine twenty 64 KiB lines can pass it), so the lines are 16 KiB, still sixteen times
    // the 1 KiB the host keeps of a line.
    giant_log("evil-js", 10, 16 << 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_notification_flood_stays_within_the_ring_bounds() {
    // Far smaller than Python's: handing 4 MB of strings to the host takes componentize-js
    // about a second, its whole CPU deadline, and 400 KB can on a loaded two-core machine.
    notify_flood("evil-js", 10_000, 50).await;
}
