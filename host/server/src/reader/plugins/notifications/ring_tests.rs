//! The ring's bounds: count, bytes, each plugin's share, and which plugin pays.

use std::time::Duration;

use super::*;
use crate::metrics::Registry;
use crate::reader::plugins::notifications::NotificationHub;

const KIB: usize = 1024;

fn bounds(entries: usize, bytes: usize, plugin_bytes: usize) -> RingBounds {
    RingBounds {
        entries,
        bytes,
        plugin_bytes,
    }
}

/// Pushes one notification of `plugin` on `topic` with a payload of `size` bytes.
fn push(ring: &mut Ring, plugin: &str, topic: &str, size: usize) -> Vec<(u64, Bound)> {
    let mut evicted = Vec::new();
    ring.push(plugin, topic.into(), "x".repeat(size), None, &mut evicted);
    evicted
        .into_iter()
        .map(|(item, bound)| (item.seq, bound))
        .collect()
}

fn held(ring: &Ring, plugin: &str) -> Vec<u64> {
    ring.after(0)
        .filter(|n| n.plugin == plugin)
        .map(|n| n.seq)
        .collect()
}

#[test]
fn count_still_bounds_the_ring() {
    let mut ring = Ring::new(bounds(3, usize::MAX, usize::MAX));
    for _ in 0..5 {
        push(&mut ring, "p", "a", 1);
    }
    assert_eq!(held(&ring, "p"), vec![3, 4, 5]);
    assert_eq!(ring.dropped_through(), 2);
    assert_eq!(ring.gap_after(&["a".into()], 0), 2);
    assert_eq!(ring.gap_after(&["a".into()], 2), 0);
}

#[test]
fn a_plugin_past_its_share_loses_its_own_oldest() {
    let mut ring = Ring::new(bounds(1000, 100 * KIB, 10 * KIB));
    push(&mut ring, "bystander", "b", 3 * KIB);
    let mut evicted = Vec::new();
    for _ in 0..20 {
        evicted.extend(push(&mut ring, "flood", "f", 3 * KIB));
    }
    assert!(ring.plugin_bytes("flood") <= 10 * KIB);
    assert_eq!(held(&ring, "flood"), vec![19, 20, 21]);
    assert_eq!(held(&ring, "bystander"), vec![1]);
    assert!(evicted.iter().all(|(_, b)| *b == Bound::PluginBytes));
    assert_eq!(evicted.len(), 17);
    // The bystander's topic lost nothing; the flooder's did.
    assert_eq!(ring.gap_after(&["b".into()], 0), 0);
    assert_eq!(ring.gap_after(&["f".into()], 0), 18);
}

#[test]
fn past_the_global_bytes_the_heaviest_plugin_pays() {
    // Shares of 60 KiB each, 100 KiB in all: two plugins can overfill the ring.
    let mut ring = Ring::new(bounds(1000, 100 * KIB, 60 * KIB));
    for _ in 0..4 {
        push(&mut ring, "light", "l", 5 * KIB);
    }
    let mut evicted = Vec::new();
    for _ in 0..30 {
        evicted.extend(push(&mut ring, "heavy", "h", 5 * KIB));
    }
    let (_, bytes) = ring.usage();
    assert!(bytes <= 100 * KIB, "{bytes}");
    assert_eq!(held(&ring, "light"), vec![1, 2, 3, 4]);
    assert!(evicted.iter().all(|(seq, _)| *seq > 4), "{evicted:?}");
    assert!(ring.plugin_bytes("heavy") <= 60 * KIB);
}

#[test]
fn past_the_global_count_the_plugin_with_most_entries_pays() {
    let mut ring = Ring::new(bounds(10, usize::MAX, usize::MAX));
    push(&mut ring, "light", "l", 1);
    push(&mut ring, "light", "l", 1);
    for _ in 0..50 {
        push(&mut ring, "chatty", "c", 1);
    }
    let (entries, _) = ring.usage();
    assert_eq!(entries, 10);
    assert_eq!(held(&ring, "light"), vec![1, 2]);
    assert_eq!(held(&ring, "chatty").len(), 8);
}

#[test]
fn a_notification_larger_than_a_share_is_numbered_but_not_kept() {
    let mut ring = Ring::new(bounds(100, 100 * KIB, 10 * KIB));
    push(&mut ring, "p", "a", 1);
    let evicted = push(&mut ring, "p", "a", 20 * KIB);
    assert_eq!(evicted, vec![(2, Bound::PluginBytes)]);
    assert_eq!(held(&ring, "p"), vec![1], "older ones stay");
    assert_eq!(ring.latest(), 2);
    assert_eq!(ring.gap_after(&["a".into()], 1), 2);
}

#[test]
fn past_the_remembered_topics_older_positions_count_as_missed() {
    let mut ring = Ring::new(bounds(1, usize::MAX, usize::MAX));
    let topics = DROPPED_TOPICS + 10;
    for n in 0..=topics {
        ring.push("p", format!("t{n}"), String::new(), None, &mut Vec::new());
    }
    // 10 topics' drops folded into the floor (seq 10): anything before it is missed.
    assert_eq!(ring.gap_after(&["unrelated".into()], 5), 10);
    assert_eq!(ring.gap_after(&["unrelated".into()], 10), 0);
    assert_eq!(
        ring.gap_after(&[format!("t{}", topics - 1)], 10),
        topics as u64
    );
}

/// A plugin flooding maximum payloads: the hub stays within its bytes, counts the drops by
/// bound, and a bystander's long-poll client sees all of its notifications and no gap.
#[tokio::test]
async fn a_flood_of_large_notifications_stays_within_the_ring_and_spares_a_bystander() {
    let registry = Registry::new();
    let dropped = registry.counter_vec("dropped", "test", &["plugin", "bound"]);
    let hub = NotificationHub::new(bounds(10_000, 16 << 20, 4 << 20), Some(dropped.clone()));
    hub.publish("bystander", vec![("room".into(), "hello".into())]);
    let payload = "x".repeat((1 << 20) - 200);
    for _ in 0..64 {
        hub.publish("flood", vec![("spam".into(), payload.clone()); 4]);
    }
    hub.publish("bystander", vec![("room".into(), "again".into())]);
    {
        let ring = hub.lock();
        let (_, bytes) = ring.usage();
        assert!(bytes <= 16 << 20, "{bytes}");
        assert!(ring.plugin_bytes("flood") <= 4 << 20);
    }
    let page = hub
        .wait(&["room".into()], 0, Duration::from_secs(1), 100)
        .await;
    assert!(!page.missed);
    let payloads: Vec<_> = page.notifications.iter().map(|n| &n.payload).collect();
    assert_eq!(payloads, ["hello", "again"]);
    assert!(dropped.with(&["flood", "plugin_bytes"]).get() >= 250);
    assert_eq!(dropped.with(&["bystander", "plugin_bytes"]).get(), 0);
    let page = hub
        .wait(&["spam".into()], 0, Duration::from_secs(1), 1000)
        .await;
    assert!(page.missed, "the flooder's own readers see the gap");
}

/// One publish that drops notifications of two plugins counts each plugin's drops under its
/// own series, exactly.
#[test]
fn drops_of_one_publish_are_counted_per_plugin_and_bound() {
    let registry = Registry::new();
    let dropped = registry.counter_vec("dropped", "test", &["plugin", "bound"]);
    let hub = NotificationHub::new(bounds(2, 1 << 20, 1 << 20), Some(dropped.clone()));
    hub.publish(
        "a",
        vec![("t".into(), "1".into()), ("t".into(), "2".into())],
    );
    assert_eq!(dropped.with(&["a", "entries"]).get(), 0);
    // b's first push evicts a's oldest (a holds more); its next two evict b's own oldest.
    hub.publish("b", vec![("t".into(), "3".into()); 3]);
    assert_eq!(dropped.with(&["a", "entries"]).get(), 1);
    assert_eq!(dropped.with(&["b", "entries"]).get(), 2);
    assert_eq!(dropped.with(&["b", "bytes"]).get(), 0);
}

#[test]
fn a_page_copies_about_page_bytes_at_most() {
    let hub = NotificationHub::new(bounds(100, 64 << 20, 64 << 20), None);
    let payload = "x".repeat(3 << 20);
    hub.publish("p", vec![("a".into(), payload); 3]);
    let page = hub.read(&["a".into()], 0, 1000);
    assert_eq!(page.notifications.len(), 2, "3 MiB, then past 4 MiB: stop");
    assert_eq!(page.next, 2);
    let rest = hub.read(&["a".into()], page.next, 1000);
    assert_eq!(rest.notifications.len(), 1);
    assert_eq!(rest.next, 3);
}

#[test]
fn ring_and_feed_bounds_come_from_the_plugins_settings() {
    let config = crate::config::ConfigFile::parse(
        "[reader.plugins]\nnotifications = 9\nnotifications_mib = 4\n\
         notifications_plugin_mib = 1\nfeed_rows = 5\nfeed_mib = 6\n",
    )
    .unwrap()
    .reader
    .plugins;
    let ring = RingBounds::of(&config);
    assert_eq!(
        (ring.entries, ring.bytes, ring.plugin_bytes),
        (9, 4 << 20, 1 << 20)
    );
    let feed = crate::reader::plugins::FeedBounds::of(&config);
    assert_eq!((feed.rows, feed.bytes), (5, 6 << 20));
    let defaults = crate::config::ConfigFile::parse("").unwrap().reader.plugins;
    assert_eq!(RingBounds::of(&defaults).bytes, 32 << 20);
}

#[test]
fn topics_dropped_again_and_again_keep_the_drop_log_bounded() {
    let mut ring = Ring::new(bounds(1, usize::MAX, usize::MAX));
    for n in 0..50_000u64 {
        ring.push(
            "p",
            format!("t{}", n % 3),
            String::new(),
            None,
            &mut Vec::new(),
        );
    }
    // Three topics remembered, each at its newest drop; no floor, since none was forgotten.
    assert_eq!(ring.dropped.len(), 3);
    assert!(ring.dropped_order.len() <= 2 * 3 + DROPPED_TOPICS);
    assert_eq!(ring.floor, 0);
    assert_eq!(ring.gap_after(&["t0".into()], 0), 49_999);
    assert_eq!(ring.gap_after(&["t2".into()], 49_999), 0);
    assert_eq!(ring.gap_after(&["t9".into()], 0), 0);
}
