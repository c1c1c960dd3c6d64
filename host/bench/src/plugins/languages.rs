//! `streamhost bench plugins`, the languages half: the same `room-timeline` logic as a Rust,
//! Python and JavaScript component, measured in one process against the Rust one — per-row
//! cost at 1 to 1,024 rows per batch, instantiation, the first call of a fresh instance,
//! component size, compilation with and without the cache, and the memory each adds.
//!
//! Every implementation must end with the same timeline as the Rust one (the conformance suite
//! checks that in depth; here it guards against measuring a plugin that does less).

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use streamhost_plugin_runtime::{
    Batch, Grant, KvValue, Manifest, PluginFiles, PluginInstance, PluginVersion, Runtime,
    RuntimeConfig,
};

use super::wasm::{
    BATCH_SIZES, CHECKED_KEY, batches_of, generated_rows, median, micros, per_row_ns, services,
};

/// The implementations compared, the Rust reference first: (language, plugin folder).
const IMPLEMENTATIONS: [(&str, &str); 3] = [
    ("Rust", "room-timeline"),
    ("Python", "room-timeline-py"),
    ("JavaScript", "room-timeline-js"),
];

/// Rows per timed pass: the interpreted languages take ~10-40 µs a row.
const MAX_ROWS: usize = 20_000;

/// Instantiations timed per run (Python's take ~0.6 ms each).
const INSTANTIATIONS: usize = 200;

/// One loaded implementation.
struct Loaded {
    language: &'static str,
    version: PluginVersion,
    compile: Duration,
    cached_load: Duration,
}

/// An instance kept alive for the memory figures, with its linear-memory peak after one
/// 1,024-row batch.
struct Live {
    memory_peak: usize,
    /// Held so its memory stays allocated while the others load and the RSS is read.
    _instance: PluginInstance,
}

/// Prints the languages table, or says how to build the plugins it needs.
pub(super) fn run(suite: &super::Suite) -> anyhow::Result<()> {
    let (plugins, runs) = (suite.plugins.as_path(), suite.runs);
    let missing: Vec<&str> = IMPLEMENTATIONS
        .iter()
        .map(|(_, name)| *name)
        .filter(|name| !plugins.join(name).join("plugin.toml").is_file())
        .collect();
    if !missing.is_empty() {
        println!(
            "\n(no languages table: {missing:?} not in {}; build them with `scripts/build-plugins --all-languages`)",
            plugins.display()
        );
        return Ok(());
    }
    let rows = suite.rows.min(MAX_ROWS);
    let cache = tempfile::tempdir().context("a folder for the compile cache")?;
    let uncached = Runtime::new(suite.runtime_config()).context("starting the wasm engine")?;
    let cached = Runtime::new(RuntimeConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..suite.runtime_config()
    })?;
    let rss_before = rss_bytes();
    let data = generated_rows(rows);
    let (loaded, live) = load_all(&uncached, &cached, plugins, &data)?;
    let loaded_rss = rss_bytes().saturating_sub(rss_before);

    println!("\n{rows} rows per pass, median of {runs} runs; ratios against the Rust component\n");
    println!("| measurement | Rust | Python | JavaScript | Python ÷ Rust | JavaScript ÷ Rust |");
    println!("|---|---|---|---|---|---|");
    per_row_rows(&loaded, &data, runs)?;
    startup_rows(&loaded, &data, runs)?;
    memory_rows(&live, loaded_rss);
    Ok(())
}

/// Every implementation loaded, each with one live instance that has handled a 1,024-row
/// batch (kept while the others load, for the memory figures) and that batch's memory peak.
fn load_all(
    uncached: &Runtime,
    cached: &Runtime,
    plugins: &Path,
    data: &[String],
) -> anyhow::Result<(Vec<Loaded>, Vec<Live>)> {
    let mut loaded = Vec::new();
    let mut live = Vec::new();
    for (language, name) in IMPLEMENTATIONS {
        let implementation = load(uncached, cached, &plugins.join(name), language)?;
        let mut instance = fresh(&implementation.version)?;
        instance.on_batch(&batches_of(data, 1024)[0])?;
        live.push(Live {
            memory_peak: instance.memory_peak(),
            _instance: instance,
        });
        loaded.push(implementation);
    }
    Ok((loaded, live))
}

/// The per-row cost at each batch size; every implementation must end with Rust's timeline.
/// Each run passes every implementation in turn, so a slow spell of the shared machine falls
/// on all of them rather than on one implementation's runs.
fn per_row_rows(loaded: &[Loaded], data: &[String], runs: usize) -> anyhow::Result<()> {
    for size in BATCH_SIZES {
        let batches = batches_of(data, size);
        let mut times = vec![Vec::with_capacity(runs); loaded.len()];
        let mut reference = None;
        for _ in 0..runs {
            for (implementation, times) in loaded.iter().zip(&mut times) {
                let (elapsed, checked) = pass(&implementation.version, &batches)?;
                match &reference {
                    None => reference = Some(checked),
                    Some(expected) => anyhow::ensure!(
                        *expected == checked,
                        "{} ends with another timeline than Rust",
                        implementation.language
                    ),
                }
                times.push(elapsed);
            }
        }
        let figures: Vec<_> = times
            .into_iter()
            .map(|times| per_row_ns(median(times), data.len()))
            .collect();
        row(
            &format!("room-timeline, {size} row(s) per batch (ns/row)"),
            &figures,
            0,
        );
    }
    Ok(())
}

/// Instantiation, the first call, component size, and loading with and without the cache.
fn startup_rows(loaded: &[Loaded], data: &[String], runs: usize) -> anyhow::Result<()> {
    let mut instantiate = Vec::new();
    let mut first_call = Vec::new();
    for implementation in loaded {
        let (alone, first) = instantiation(&implementation.version, data, runs)?;
        instantiate.push(micros(alone));
        first_call.push(micros(first));
    }
    row(
        &format!("instantiate + init (µs, median of {INSTANTIATIONS})"),
        &instantiate,
        1,
    );
    row("first 1-row batch of a fresh instance (µs)", &first_call, 1);
    let sizes: Vec<f64> = loaded
        .iter()
        .map(|l| l.version.component_bytes() as f64 / (1 << 20) as f64)
        .collect();
    row("component (MiB)", &sizes, 2);
    let compile: Vec<f64> = loaded
        .iter()
        .map(|l| l.compile.as_secs_f64() * 1e3)
        .collect();
    row(
        "compile + link + describe, no cache (ms, once)",
        &compile,
        0,
    );
    let cached: Vec<f64> = loaded
        .iter()
        .map(|l| l.cached_load.as_secs_f64() * 1e3)
        .collect();
    row("the same from the compile cache (ms, once)", &cached, 1);
    Ok(())
}

/// The linear memory of each live instance, and what loading all three added to the process.
fn memory_rows(live: &[Live], loaded_rss: usize) {
    let mib = |bytes: usize| bytes as f64 / (1 << 20) as f64;
    let linear: Vec<f64> = live.iter().map(|l| mib(l.memory_peak)).collect();
    row(
        "linear memory of a live instance after a 1,024-row batch (MiB)",
        &linear,
        1,
    );
    println!(
        "\nAll three loaded (compiled code, one live instance each): the process grew by {:.0} MiB (RSS, including what compiling left in the allocator).",
        mib(loaded_rss)
    );
}

/// One table row: the three figures and the two ratios.
fn row(label: &str, figures: &[f64], decimals: usize) {
    let (rust, python, javascript) = (figures[0], figures[1], figures[2]);
    println!(
        "| {label} | {rust:.decimals$} | {python:.decimals$} | {javascript:.decimals$} | {:.1} | {:.1} |",
        python / rust,
        javascript / rust
    );
}

/// Loads the plugin in `dir` with `uncached` (compiling it) and then with `cached` from a
/// cache already holding its compilation; the second version is the one measured.
fn load(
    uncached: &Runtime,
    cached: &Runtime,
    dir: &Path,
    language: &'static str,
) -> anyhow::Result<Loaded> {
    let relaxed = relaxed_copy(dir)?;
    let files = PluginFiles::in_dir(relaxed.path())?;
    let manifest = Manifest::load(&files.manifest)?;
    let grant = Grant::everything_asked(&manifest)?;
    let started = Instant::now();
    drop(PluginVersion::load(uncached, &files, &grant)?);
    let compile = started.elapsed();
    drop(PluginVersion::load(cached, &files, &grant)?); // fills the cache
    let started = Instant::now();
    let version = PluginVersion::load(cached, &files, &grant)?;
    let cached_load = started.elapsed();
    Ok(Loaded {
        language,
        version,
        compile,
        cached_load,
    })
}

/// Deadlines of a minute: this suite measures speed, and an interpreted plugin's 16-row batch
/// on a loaded machine must not be cut short by the default 100 ms.
const RELAXED_LIMITS: [(&str, i64); 3] = [
    ("batch_deadline_ms", 60_000),
    ("batch_deadline_max_ms", 60_000),
    ("init_deadline_ms", 60_000),
];

/// A copy of the plugin folder `dir` whose manifest asks for [`RELAXED_LIMITS`].
fn relaxed_copy(dir: &Path) -> anyhow::Result<tempfile::TempDir> {
    let copy = tempfile::tempdir()?;
    let files = PluginFiles::in_dir(dir)?;
    let wasm = files.wasm.file_name().context("a .wasm file name")?;
    std::fs::copy(&files.wasm, copy.path().join(wasm))?;
    let mut manifest: toml::Table = toml::from_str(&std::fs::read_to_string(&files.manifest)?)?;
    let limits = manifest
        .entry("limits")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .context("[limits] is a table")?;
    for (limit, value) in RELAXED_LIMITS {
        limits.insert(limit.into(), toml::Value::Integer(value));
    }
    std::fs::write(copy.path().join("plugin.toml"), manifest.to_string())?;
    Ok(copy)
}

fn fresh(version: &PluginVersion) -> anyhow::Result<PluginInstance> {
    let mut instance = version.instantiate(services(version))?;
    instance.init(&[])?;
    Ok(instance)
}

/// One timed pass over `batches` on a fresh instance, committing after every batch; returns
/// the time and the checked timeline as stored (the same bytes in every language).
fn pass(version: &PluginVersion, batches: &[Batch]) -> anyhow::Result<(Duration, KvValue)> {
    let services = services(version);
    let mut instance = version.instantiate(services.clone())?;
    instance.init(&[])?;
    let started = Instant::now();
    for batch in batches {
        black_box(instance.on_batch(batch)?);
        services.kv().commit();
    }
    let elapsed = started.elapsed();
    let checked = services
        .kv()
        .get(CHECKED_KEY)
        .context("no timeline written")?;
    Ok((elapsed, checked))
}

/// Medians over `runs` runs of: instantiate + init, and a fresh instance's first 1-row batch.
fn instantiation(
    version: &PluginVersion,
    data: &[String],
    runs: usize,
) -> anyhow::Result<(Duration, Duration)> {
    let one_row = &batches_of(&data[..1], 1)[0];
    let mut alone = Vec::new();
    let mut first = Vec::new();
    for _ in 0..runs {
        let mut times = Vec::with_capacity(INSTANTIATIONS);
        let mut calls = Vec::with_capacity(INSTANTIATIONS);
        for _ in 0..INSTANTIATIONS {
            let started = Instant::now();
            let mut instance = fresh(version)?;
            times.push(started.elapsed());
            let started = Instant::now();
            black_box(instance.on_batch(one_row)?);
            calls.push(started.elapsed());
        }
        alone.push(median(times));
        first.push(median(calls));
    }
    Ok((median(alone), median(first)))
}

/// The process's resident memory, from `/proc/self/statm` (0 where there is none).
fn rss_bytes() -> usize {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .unwrap_or(0);
    pages * 4096
}
