//! `streamhost bench plugins`: what running reader logic as a sandboxed Wasm plugin costs,
//! each figure next to a baseline measured in the same process (see BENCHMARKS.md).
//!
//! - per-row cost of the `room-timeline` plugin at 1, 16, 256 and 1,024 rows per batch, against
//!   the same logic compiled natively into this benchmark ([`native_on_batch`]), both keeping
//!   their timelines in a [`KvStore`] committed after every batch as the reader does, and both
//!   reading each row's `room` from the host's field extraction ([`FieldPaths`]), the plugin
//!   through `on-batch`'s `fields`, the native logic by calling it;
//! - the cost of holding plugins to their host memory budget (`host_memory_mib`): the same
//!   plugin with the accounting on and off, at 1 and 1,024 rows per batch;
//! - instantiation with the pooling allocator and the pre-linked `InstancePre`
//!   ([`PluginVersion::instantiate`]), alone and followed by `init`.
//!
//! The plugin comes from the folder `scripts/build-plugins` fills. The figures only mean
//! something in a release build (`cargo run --release -p streamhost -- bench plugins`).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use streamhost_plugin_runtime::{
    Batch, Effect, Extracted, FieldPaths, Grant, Invalidation, KvStore, KvValue, Manifest,
    PluginFiles, PluginServices, PluginVersion, Row, Runtime,
};

/// The plugin measured, a folder of the `--plugins` directory.
const PLUGIN: &str = "room-timeline";

/// Batch sizes measured, in rows.
pub(super) const BATCH_SIZES: [usize; 4] = [1, 16, 256, 1024];

/// Instantiations timed per run, after [`WARM_UPS`] untimed ones.
const INSTANTIATIONS: usize = 1_000;

/// Untimed instantiations before the timed ones.
const WARM_UPS: usize = 10;

/// Messages a room's timeline keeps (the plugin's `KEEP`).
const KEEP: usize = 50;

/// Rooms the generated rows are spread over.
const ROOMS: usize = 100;

/// A timeline both sides must end with the same bytes in.
pub(super) const CHECKED_KEY: &str = "room:!r7:bench";

/// Runs the suite on `rows` generated rows per run, `runs` runs per figure, and prints a
/// Markdown table. Synchronous: call it from a blocking thread.
pub(super) fn run(suite: &super::Suite) -> anyhow::Result<()> {
    let (rows, runs) = (suite.rows, suite.runs);
    let dir = suite.plugins.join(PLUGIN);
    anyhow::ensure!(
        dir.join("plugin.toml").is_file(),
        "{} is missing: build the plugins first with `scripts/build-plugins` (or point --plugins at their folder)",
        dir.display()
    );
    let files = PluginFiles::in_dir(&dir)?;
    let manifest = Manifest::load(&files.manifest)?;
    let grant = Grant::everything_asked(&manifest)?;
    let runtime = Runtime::new(suite.runtime_config()).context("starting the wasm engine")?;
    let started = Instant::now();
    let version = PluginVersion::load(&runtime, &files, &grant)?;
    let load_time = started.elapsed();

    println!(
        "streamhost bench plugins: {PLUGIN} ({} KiB), {rows} rows per run, median of {runs} runs\n",
        version.component_bytes().div_ceil(1024)
    );
    if cfg!(debug_assertions) {
        println!("(debug build: these figures mean nothing; use `cargo run --release`)\n");
    }
    println!("| measurement | wasm plugin | native baseline | ratio |");
    println!("|---|---|---|---|");

    let data = generated_rows(rows);
    let quota = version.capabilities().limits.kv_quota_bytes;
    for size in BATCH_SIZES {
        let batches = batches_of(&data, size);
        let mut wasm = Vec::with_capacity(runs);
        let mut native = Vec::with_capacity(runs);
        for _ in 0..runs {
            let w = wasm_run(&version, &batches, true)?;
            let n = native_run(&batches, quota)?;
            anyhow::ensure!(
                w.effects == n.effects && w.checked == n.checked && w.checked.is_some(),
                "the plugin and the native logic disagree ({} vs {} effects, or {CHECKED_KEY} differs)",
                w.effects,
                n.effects
            );
            wasm.push(w.elapsed);
            native.push(n.elapsed);
        }
        let wasm = per_row_ns(median(wasm), rows);
        let native = per_row_ns(median(native), rows);
        println!(
            "| {PLUGIN}, {size} row(s) per batch (ns/row) | {wasm:.0} | {native:.0} (same logic in native Rust, same KvStore) | {:.2} |",
            wasm / native
        );
    }

    for size in [1, 1024] {
        let (on, off) = accounting_cost(&version, &batches_of(&data, size), runs)?;
        println!(
            "| {PLUGIN}, host memory accounting, {size} row(s) per batch (ns/row) | {:.0} | {:.0} (accounting off) | {:.3} |",
            per_row_ns(on, rows),
            per_row_ns(off, rows),
            on.as_secs_f64() / off.as_secs_f64()
        );
    }

    let mut alone = Vec::with_capacity(runs);
    let mut with_init = Vec::with_capacity(runs);
    for _ in 0..runs {
        let (a, b) = instantiation(&version)?;
        alone.push(a);
        with_init.push(b);
    }
    println!(
        "| instantiate, pooling + InstancePre (µs, median of {INSTANTIATIONS}) | {:.1} | – | – |",
        micros(median(alone))
    );
    println!(
        "| instantiate + init (µs, median of {INSTANTIATIONS}) | {:.1} | – | – |",
        micros(median(with_init))
    );
    println!(
        "| load: compile + link + describe, no cache (ms, once) | {:.1} | – | – |",
        load_time.as_secs_f64() * 1e3
    );
    Ok(())
}

/// Generated `messages` rows over [`ROOMS`] rooms and 50 senders.
pub(super) fn generated_rows(rows: usize) -> Vec<String> {
    (0..rows)
        .map(|i| {
            serde_json::json!({
                "room": format!("!r{}:bench", i % ROOMS),
                "sender": format!("@u{}:bench", i % 50),
                "body": format!("hello world {i}"),
                "mentions": [format!("@u{}:bench", (i + 1) % 50)],
            })
            .to_string()
        })
        .collect()
}

/// The rows as batches of `size`, one token per row (built before any timing: lowering them
/// into the guest is part of the call, building them is not).
pub(super) fn batches_of(data: &[String], size: usize) -> Vec<Batch> {
    data.chunks(size)
        .enumerate()
        .map(|(n, chunk)| {
            let first = (n * size) as i64 + 1;
            let rows: Vec<Row> = chunk
                .iter()
                .enumerate()
                .map(|(i, data)| Row {
                    token: first + i as i64,
                    data: data.clone(),
                })
                .collect();
            Batch {
                stream: "messages".into(),
                instance: "master".into(),
                prev_token: first - 1,
                token: first + chunk.len() as i64 - 1,
                rows,
            }
        })
        .collect()
}

/// One timed pass over every batch.
struct Pass {
    elapsed: Duration,
    effects: usize,
    checked: Option<KvValue>,
}

/// Median pass times of the plugin with the host memory accounting on and off, the runs
/// interleaved (and which goes first alternating) so that a noisy machine weighs on both
/// alike.
fn accounting_cost(
    version: &PluginVersion,
    batches: &[Batch],
    runs: usize,
) -> anyhow::Result<(Duration, Duration)> {
    let mut on = Vec::with_capacity(runs);
    let mut off = Vec::with_capacity(runs);
    for run in 0..runs {
        for accounting in [run % 2 == 0, run % 2 == 1] {
            let elapsed = wasm_run(version, batches, accounting)?.elapsed;
            match accounting {
                true => on.push(elapsed),
                false => off.push(elapsed),
            }
        }
    }
    Ok((median(on), median(off)))
}

/// The plugin on a fresh instance and store, committing its writes after every batch, held
/// to its host memory budget when `accounting`.
fn wasm_run(version: &PluginVersion, batches: &[Batch], accounting: bool) -> anyhow::Result<Pass> {
    let services = services(version);
    let mut instance = version.instantiate(services.clone())?;
    instance.set_host_accounting(accounting);
    instance.init(&[])?;
    let mut effects = 0;
    let started = Instant::now();
    for batch in batches {
        let returned = instance.on_batch(batch)?;
        services.kv().commit();
        effects += returned.effects.len();
        black_box(returned);
    }
    let elapsed = started.elapsed();
    let checked = services.kv().get(CHECKED_KEY);
    Ok(Pass {
        elapsed,
        effects,
        checked,
    })
}

/// [`native_on_batch`] on a fresh store, committing after every batch.
fn native_run(batches: &[Batch], quota: u64) -> anyhow::Result<Pass> {
    let mut kv = KvStore::default();
    let fields = FieldPaths::parse(vec!["room".into()]).map_err(anyhow::Error::msg)?;
    let mut effects = 0;
    let started = Instant::now();
    for batch in batches {
        let returned = native_on_batch(&mut kv, quota, &fields, black_box(batch))
            .map_err(|e| anyhow::anyhow!("native room-timeline: {e}"))?;
        kv.commit();
        effects += returned.len();
        black_box(returned);
    }
    let elapsed = started.elapsed();
    Ok(Pass {
        elapsed,
        effects,
        checked: kv.get(CHECKED_KEY),
    })
}

/// `room-timeline`'s `on-batch` (plugins/room-timeline/src/lib.rs), line for line, with the
/// key-value store called directly instead of through the `kv` import and the row's `room`
/// extracted by the host's [`FieldPaths`] (`fields` holds just `room`) as for the plugin.
fn native_on_batch(
    kv: &mut KvStore,
    quota: u64,
    fields: &FieldPaths,
    batch: &Batch,
) -> Result<Vec<Effect>, String> {
    let (values, _) = fields
        .extract(&batch.rows, usize::MAX)
        .map_err(|bytes| format!("fields of {bytes} bytes"))?;
    let mut rooms: Vec<(&str, Vec<&[u8]>)> = Vec::new();
    for (row, room) in batch.rows.iter().zip(&values) {
        let Extracted::Text(room) = room else {
            continue;
        };
        let room: &str = room;
        match rooms.iter_mut().find(|(r, _)| *r == room) {
            Some((_, texts)) => texts.push(row.data.as_bytes()),
            None => rooms.push((room, vec![row.data.as_bytes()])),
        }
    }

    let mut effects = Vec::with_capacity(rooms.len());
    for (room, new_rows) in rooms {
        let key = format!("room:{room}");
        let stored = kv.get(&key).unwrap_or_default();
        let timeline = append_timeline(&stored, &new_rows)?;
        kv.set(key.clone(), timeline, quota)
            .map_err(|e| format!("{e:?}"))?;
        effects.push(Effect::Invalidate(Invalidation {
            cache: "timeline".into(),
            key,
        }));
    }
    Ok(effects)
}

/// `room-timeline`'s `decode`: where each `<len>:<text>` entry starts (its text unused here).
fn decode_timeline(stored: &[u8]) -> Result<Vec<(usize, &[u8])>, String> {
    let corrupt = || "a corrupt timeline".to_owned();
    let mut entries = Vec::with_capacity(KEEP + 1);
    let mut start = 0;
    while start < stored.len() {
        let rest = &stored[start..];
        let colon = rest.iter().position(|&b| b == b':').ok_or_else(corrupt)?;
        let len: usize = std::str::from_utf8(&rest[..colon])
            .ok()
            .and_then(|digits| digits.parse().ok())
            .ok_or_else(corrupt)?;
        let text = rest.get(colon + 1..colon + 1 + len).ok_or_else(corrupt)?;
        entries.push((start, text));
        start += colon + 1 + len;
    }
    Ok(entries)
}

/// `room-timeline`'s `append`.
fn append_timeline(stored: &[u8], new_rows: &[&[u8]]) -> Result<Vec<u8>, String> {
    let old = decode_timeline(stored)?;
    let new_rows = &new_rows[new_rows.len().saturating_sub(KEEP)..];
    let dropped = (old.len() + new_rows.len()).saturating_sub(KEEP);
    let kept = old
        .get(dropped)
        .map_or(&[][..], |(start, _)| &stored[*start..]);
    let mut timeline =
        Vec::with_capacity(kept.len() + new_rows.iter().map(|r| r.len() + 8).sum::<usize>());
    timeline.extend_from_slice(kept);
    for row in new_rows {
        timeline.extend_from_slice(row.len().to_string().as_bytes());
        timeline.push(b':');
        timeline.extend_from_slice(row);
    }
    Ok(timeline)
}

/// Median time of [`INSTANTIATIONS`] instantiations, and of instantiation followed by `init`.
fn instantiation(version: &PluginVersion) -> anyhow::Result<(Duration, Duration)> {
    let services = services(version);
    for _ in 0..WARM_UPS {
        version.instantiate(services.clone())?.init(&[])?;
    }
    let mut alone = Vec::with_capacity(INSTANTIATIONS);
    let mut with_init = Vec::with_capacity(INSTANTIATIONS);
    for _ in 0..INSTANTIATIONS {
        let started = Instant::now();
        let mut instance = version.instantiate(services.clone())?;
        let instantiated = started.elapsed();
        instance.init(&[])?;
        let initialised = started.elapsed();
        // Dropped outside the timed part: returning the pool slot is not instantiation.
        drop(instance);
        alone.push(instantiated);
        with_init.push(initialised);
    }
    Ok((median(alone), median(with_init)))
}

pub(super) fn services(version: &PluginVersion) -> Arc<PluginServices> {
    PluginServices::new(
        version.name(),
        KvStore::default(),
        version.capabilities().limits.log_lines_per_second,
        None,
    )
}

pub(super) fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

pub(super) fn per_row_ns(d: Duration, rows: usize) -> f64 {
    d.as_secs_f64() * 1e9 / rows as f64
}

pub(super) fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn native_room_timeline_keeps_the_last_rows_per_room_and_invalidates_each_room_once() {
        let data = generated_rows(2 * ROOMS * KEEP + 3);
        let mut kv = KvStore::default();
        let fields = FieldPaths::parse(vec!["room".into()]).unwrap();
        let mut first = None;
        for batch in batches_of(&data, 256) {
            let effects = native_on_batch(&mut kv, u64::MAX, &fields, &batch).unwrap();
            first.get_or_insert(effects);
            kv.commit();
        }
        let first = first.unwrap();
        assert_eq!(first.len(), ROOMS, "one invalidation per room touched");
        assert!(matches!(
            &first[0],
            Effect::Invalidate(Invalidation { cache, key }) if cache == "timeline" && key == "room:!r0:bench"
        ));
        let stored = kv.get("room:!r0:bench").unwrap();
        let timeline = decode_timeline(&stored).unwrap();
        assert_eq!(timeline.len(), KEEP);
        let last = data.len() - 1 - (data.len() - 1) % ROOMS;
        assert_eq!(
            timeline[KEEP - 1].1,
            data[last].as_bytes(),
            "the row's text, exactly as written"
        );
    }

    #[test]
    fn batches_carry_consecutive_tokens() {
        let data = generated_rows(5);
        let batches = batches_of(&data, 2);
        let spans: Vec<_> = batches
            .iter()
            .map(|b| (b.prev_token, b.token, b.rows.len()))
            .collect();
        assert_eq!(spans, vec![(0, 2, 2), (2, 4, 2), (4, 5, 1)]);
    }
}
