//! The hostile-plugin suite (Rust `evil` and the hand-written `evil-alias`): plugins that try
//! to make the host, not their sandbox, spend memory. The reader is a process of its own
//! (`streamhost_integration_tests::hostile`), so each case can check, from `/proc`, that its
//! resident memory stayed under the documented ceiling, while the `stream-stats` bystander
//! (which follows every stream) keeps up with a steady trickle of rows on a stream of their
//! own, `traffic`, with under a second of lag. The offenders follow `messages` only, so each
//! gets exactly the batches its case feeds it. Each is either stopped with a named reason
//! or, where the host's bounds make it harmless, keeps applying.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use streamhost_integration_tests::hostile::{
    HostileReader, INTERPRETED_PLUGIN_EXTRA, LagWatch, RESIDENT_CEILING, Traffic, configure,
    cursor_of,
};
use streamhost_integration_tests::plugins::{PluginFolder, grants_for};
use streamhost_integration_tests::{TestWriter, wait_until};
use streamhost_plugin_runtime::Grant;

/// The reader binary.
const PROGRAM: &str = env!("CARGO_BIN_EXE_streamhost-under-test");
/// The plugin that must not suffer.
pub(crate) const BYSTANDER: &str = "stream-stats";
/// The longest the bystander may lag behind the writer.
pub(crate) const MAX_LAG: Duration = Duration::from_secs(1);
/// How long a case waits for a state it expects.
pub(crate) const WAIT: Duration = Duration::from_secs(30);
/// One row every this often while the offender runs.
const TRAFFIC_PERIOD: Duration = Duration::from_millis(20);
/// The bystander's stream, which no offender follows.
const TRAFFIC: &str = "traffic";

/// A writer, a reader process running `offender` (configured with `config`) beside the
/// bystander, rows flowing and the bystander's lag watched.
pub(crate) struct Scene {
    pub(crate) writer: TestWriter,
    pub(crate) reader: HostileReader,
    pub(crate) offender: String,
    traffic: Traffic,
    lag: LagWatch,
    _folder: PluginFolder,
}

impl Scene {
    pub(crate) async fn start(offender: &str, config: Value) -> Scene {
        Scene::start_with(offender, config, |_, _| {}).await
    }

    /// [`Scene::start`], with `adjust` changing the plugin folder and the grants first.
    pub(crate) async fn start_with(
        offender: &str,
        config: Value,
        adjust: impl FnOnce(&PluginFolder, &mut BTreeMap<String, Grant>),
    ) -> Scene {
        let writer = TestWriter::spawn(&["messages", TRAFFIC]).await;
        let folder = PluginFolder::with(&[offender, BYSTANDER]);
        let mut grants = grants_for(&[offender, BYSTANDER]);
        configure(&mut grants, offender, config);
        adjust(&folder, &mut grants);
        let reader = HostileReader::start(PROGRAM, &writer, &folder, &grants).await;
        let lag = reader.watch_lag(&writer, BYSTANDER, TRAFFIC);
        let traffic = Traffic::start(&writer, TRAFFIC, TRAFFIC_PERIOD);
        Scene {
            writer,
            reader,
            offender: offender.to_owned(),
            traffic,
            lag,
            _folder: folder,
        }
    }

    /// Appends one row and returns its token.
    pub(crate) async fn append(&self) -> i64 {
        let row = json!({"room": "!a:x", "sender": "@a:x", "body": "hostile"});
        self.writer.append("messages", &[row]).await[0].0
    }

    /// Appends `batches` rows one at a time, each after the offender applied the one before,
    /// so each is a batch of its own; fails as soon as the offender stops running.
    pub(crate) async fn feed_offender(&self, batches: usize) {
        for _ in 0..batches {
            let token = self.append().await;
            let what = format!("{} to apply messages {token}", self.offender);
            wait_until(WAIT, &what, || async {
                let offender = self.reader.plugin(&self.offender).await;
                assert_eq!(offender["state"], "running", "{offender}");
                cursor_of(&offender, "messages") >= token
            })
            .await;
        }
    }

    /// Stops the traffic, waits for the bystander to apply all of it, and checks its lag
    /// stayed under [`MAX_LAG`] and the reader's peak resident memory under the ceiling.
    pub(crate) async fn finish(self) {
        let last = self.traffic.finish().await;
        self.reader
            .wait_for_cursor(BYSTANDER, TRAFFIC, last, WAIT)
            .await;
        let lag = self.lag.finish().await;
        // Samples are taken every 20 ms from the start; a short case still has a few.
        assert!(lag.samples >= 3, "too few lag samples: {lag:?}");
        assert!(
            lag.age < MAX_LAG,
            "the bystander lagged {:?} ({} tokens) behind the writer",
            lag.age,
            lag.tokens
        );
        let interpreted = self.offender.ends_with("-py") || self.offender.ends_with("-js");
        let extra = if interpreted {
            INTERPRETED_PLUGIN_EXTRA
        } else {
            0
        };
        self.reader.assert_under(RESIDENT_CEILING + extra);
    }

    /// Waits for the offender's quarantine and checks every report names `reason`.
    pub(crate) async fn quarantined_with(&self, reason: &str) -> Value {
        let offender = self
            .reader
            .wait_for_state(&self.offender, "quarantined", WAIT)
            .await;
        let reports = offender["reports"].as_array().unwrap();
        assert!(!reports.is_empty(), "{offender}");
        for report in reports {
            assert_eq!(report["failure"]["reason"], reason, "{report}");
        }
        assert!(
            offender["reason"].as_str().unwrap().contains(reason),
            "{}",
            offender["reason"]
        );
        offender
    }

    /// Feeds the offender `batches` batches and checks it is still running with no failure.
    pub(crate) async fn keeps_applying(&self, batches: usize) -> Value {
        self.feed_offender(batches).await;
        let offender = self.reader.plugin(&self.offender).await;
        assert_eq!(offender["state"], "running", "{offender}");
        assert_eq!(
            offender["reports"].as_array().map_or(0, Vec::len),
            0,
            "{offender}"
        );
        offender
    }
}

/// `evil` in `mode` with `extra` configuration.
pub(crate) fn evil(mode: &str, extra: Value) -> Value {
    let mut config = json!({ "mode": mode });
    if let (Some(config), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
        config.extend(extra.clone());
    }
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_64_kib_counter_names_are_stopped_by_the_host_budget() {
    let scene = Scene::start("evil", evil("counter-names", json!({}))).await;
    scene.append().await;
    scene.quarantined_with("host-memory").await;
    scene.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_deletes_of_absent_keys_records_nothing_and_the_plugin_keeps_applying() {
    // 2,000 deletes of 1,000-byte keys a batch (as many as the debug-built host answers
    // within the CPU deadline): 2 MB of tombstones a batch if each were recorded; a delete
    // of a key the store does not hold records nothing.
    let flood = json!({ "count": 2_000 });
    let scene = Scene::start("evil", evil("kv-tombstones", flood)).await;
    scene.keeps_applying(5).await;
    scene.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_mib_log_lines_are_cut_and_rate_limited_and_the_plugin_keeps_applying() {
    // Half the 16 MiB host budget a line: read in place, never copied past 1 KiB. (A line
    // longer than what is left of the budget fails the call: `host-memory`.)
    // Twenty lines a batch at one line a second (a burst of ten), so most are over the rate.
    let lines = json!({ "count": 20, "bytes": 8 << 20 });
    let scene = Scene::start_with("evil", evil("giant-log", lines), |folder, grants| {
        folder.edit_manifest("evil", |text| {
            format!("{text}\n[limits]\nlog_lines_per_second = 1\n")
        });
        let grant = grants.get_mut("evil").unwrap();
        grant
            .limits
            .get_or_insert_with(Default::default)
            .log_lines_per_second = 1;
    })
    .await;
    // The first batch may spend the burst allowance (ten seconds of the rate); later ones
    // are over the rate.
    let offender = scene.keeps_applying(4).await;
    assert!(
        offender["log_lines_dropped"].as_u64().unwrap() > 0,
        "{offender}"
    );
    let log = scene.reader.log();
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 64 << 10, "a log line of {longest} bytes");
    scene.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_of_maximum_size_batch_after_batch_stay_within_the_ring_bounds() {
    // Four notifications of about 1 MB a batch, just under the 4 MiB of effects: 150 batches
    // put 600 MB through a ring that, bounded by count alone, would keep all of it.
    let flood = json!({ "count": 4, "bytes": 1_040_000 });
    let scene = Scene::start("evil", evil("notify-flood", flood)).await;
    scene.keeps_applying(150).await;
    let page = scene
        .reader
        .client()
        .get_json("/v1/notifications?topics=evil&since=0&timeout_ms=1")
        .await
        .unwrap();
    assert!(
        !page["notifications"].as_array().unwrap().is_empty(),
        "the newest notifications are kept"
    );
    scene.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_48_mib_snapshot_is_refused_on_reload_and_the_reader_keeps_working() {
    let scene = Scene::start("evil", evil("snapshot-bomb", json!({}))).await;
    scene.feed_offender(2).await;
    let (status, body) = scene.reader.reload("evil").await;
    assert!(status.is_success(), "{status} {body}");
    let offender = scene.reader.plugin("evil").await;
    let refused = offender["reports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["call"] == "snapshot")
        .unwrap_or_else(|| panic!("no report of the snapshot: {offender}"));
    assert_eq!(refused["failure"]["reason"], "host-memory", "{refused}");
    // The new version started afresh and applies on.
    scene.feed_offender(2).await;
    assert_eq!(scene.reader.state("evil").await, "running");
    scene.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_32_mib_query_answer_is_refused_and_not_cached() {
    let scene = Scene::start("evil", evil("none", json!({}))).await;
    scene.feed_offender(1).await;
    for attempt in ["first", "second"] {
        let (status, body) = scene.reader.get("/v1/query/evil/big").await;
        assert_eq!(
            status,
            hyper::StatusCode::BAD_GATEWAY,
            "{attempt} call: {}",
            &body[..body.len().min(200)]
        );
        assert!(body.contains("host-memory"), "{attempt} call: {body}");
    }
    scene.feed_offender(1).await;
    scene.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_effects_naming_one_8_mib_string_are_refused_before_copying() {
    let scene = Scene::start("evil-alias", json!({})).await;
    // Built against streamhost:plugin@0.1.0, which the host still links.
    assert_eq!(
        scene.reader.plugin("evil-alias").await["interface"],
        "0.1.0"
    );
    scene.append().await;
    // The hostcall fuel stops the lift at the budget, after the second string.
    let offender = scene.quarantined_with("host-memory").await;
    let message = offender["reports"][0]["failure"]["message"]
        .as_str()
        .unwrap();
    assert!(message.contains("bytes"), "{message}");
    scene.finish().await;
}
