//! `evil`: a plugin that misbehaves on purpose, to test the host's sandbox and error handling.
//!
//! The misbehaviour is chosen by the configuration passed to `init`, `{"mode": "…"}`; `{}` or
//! `"none"` behaves. `"count": N` changes how many effects, log lines, counters or keys a mode
//! produces, and `"bytes": N` how big each payload, line, snapshot or answer is (see the
//! table). Unless said otherwise each mode acts inside `on_batch`:
//!
//! | mode | what it does |
//! |---|---|
//! | `none` (or absent) | returns one `notify("evil", "<batch token>")` per batch |
//! | `loop` | loops forever |
//! | `memory` | allocates and touches 1 GiB |
//! | `leak` | allocates and touches 4 MiB (`bytes`) per batch and never frees it, then behaves like `none`: a guest that leaks, as componentize-py 0.25.1 does with every `kv.set` value |
//! | `recursion` | recurses without bound |
//! | `effects` | returns 20,000 `notify` effects on the topic `evil` |
//! | `log` | logs 1,000,000 lines |
//! | `grant` | returns `invalidate("not-granted", "x")`, a cache it was not granted |
//! | `init-trap` | panics in `init` |
//! | `panic` | panics |
//! | `read-file` | reads `/etc/passwd`: on success returns `notify("evil", <content>)`, on failure a fatal error `read failed: <io error>` |
//! | `skip` | answers every batch with a `skip` error (the host records a dead letter and moves on) |
//! | `flaky` | asks the host to retry (`retry`) on the first `on_batch` of each instance, then behaves like `none` |
//! | `counter-names` | adds 1 to 10,000 (`count`) distinct counters, each name 64 KiB (`bytes`) long |
//! | `kv-tombstones` | deletes 100,000 (`count`) distinct keys of 1,000 bytes (`bytes`) |
//! | `kv-values` | sets 1 (`count`) distinct 11-byte keys to values of 1 MiB (`bytes`) of `v`s; a refused `set` fails the batch with the SDK's error for it |
//! | `giant-log` | logs 1,000 (`count`) lines of 16 MiB (`bytes`) each (one line, made in `init`) |
//! | `notify-flood` | returns 400 (`count`) `notify("evil", …)` effects of 10,000-byte (`bytes`) payloads |
//! | `snapshot-bomb` | behaves like `none`; its `snapshot` returns 48 MiB (`bytes`) |
//! | `trap-marked` | counts each stream's rows in the key-value store (`count:<stream>`, read by the query `count`), and traps (a panic) on a batch holding a row whose `trap_until_ms` is still ahead of the host's clock: every retry traps until then (`streamhost chaos`'s plugin-trap fault) |
//!
//! In every mode the query `big` (cache `big`, no arguments) answers a JSON string of 32 MiB
//! (`bytes`, when the mode is not one of the above), and `describe` says `snapshots`:
//! `snapshot` returns nothing (but in `snapshot-bomb`) and `restore` starts afresh from the
//! configuration, like `init`.
//!
//! Whatever the mode, its query `loop` (cache `evil`) loops forever, for the query deadline,
//! and its query `count` (cache `evil`, key `{stream}`) answers the stream's count as a JSON
//! number (0 but in `trap-marked`).
//!
//! There is no mode that grows a Wasm table: stable Rust on `wasm32-wasip2` has no way to emit
//! `table.grow` (no intrinsic, and inline assembly for wasm is unstable).

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;
use streamhost_guest_sdk::{
    Batch, Cursor, Description, Effect, Plugin, PluginError, clock, counters, export_plugin, kv,
    log, required_arg,
};

/// The configuration `init` receives.
#[derive(Deserialize, Default)]
struct Config {
    #[serde(default)]
    mode: Option<String>,
    /// How many effects, log lines, counters or keys to produce, instead of the mode's default.
    #[serde(default)]
    count: Option<u64>,
    /// How big each payload, line, counter name, key, snapshot or query answer is, instead of
    /// the mode's default.
    #[serde(default)]
    bytes: Option<usize>,
}

/// The ways to misbehave.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    None,
    Loop,
    Memory,
    Leak,
    Recursion,
    Effects,
    Log,
    Grant,
    Panic,
    ReadFile,
    Flaky,
    Skip,
    CounterNames,
    KvTombstones,
    KvValues,
    GiantLog,
    NotifyFlood,
    SnapshotBomb,
    TrapMarked,
}

impl Mode {
    /// The mode's default `count`, for the modes that have one.
    fn default_count(self) -> u64 {
        match self {
            Mode::Effects => 20_000,
            Mode::Log => 1_000_000,
            Mode::CounterNames => 10_000,
            Mode::KvTombstones => 100_000,
            Mode::KvValues => 1,
            Mode::GiantLog => 1_000,
            Mode::NotifyFlood => 400,
            _ => 0,
        }
    }

    /// The mode's default `bytes`: of a counter name, a key, a log line, a payload, the
    /// snapshot; for the other modes, of the answer to the query `big`.
    fn default_bytes(self) -> usize {
        match self {
            Mode::CounterNames => 64 << 10,
            Mode::KvTombstones => 1_000,
            Mode::KvValues => 1 << 20,
            Mode::GiantLog => 16 << 20,
            Mode::NotifyFlood => 10_000,
            Mode::SnapshotBomb => 48 << 20,
            Mode::Leak => 4 << 20,
            _ => 32 << 20,
        }
    }
}

/// The plugin: its mode, sizes and, for `flaky`, whether this instance already failed once.
struct Evil {
    mode: Mode,
    count: u64,
    bytes: usize,
    failed_once: bool,
    /// The line `giant-log` logs over and over (made once, in `init`).
    giant_line: String,
}

/// Width of the number [`numbered`] writes at the start of a name.
const NUMBER_WIDTH: usize = 11;

/// Calls `use_name` with `count` distinct names of `len` bytes (`x`s after a number), all
/// made in one buffer.
fn numbered(count: u64, len: usize, mut use_name: impl FnMut(&str)) {
    let mut name = "x".repeat(len.max(NUMBER_WIDTH));
    for n in 0..count {
        // Same length in, same length out: the buffer is rewritten in place.
        name.replace_range(..NUMBER_WIDTH, &format!("{n:010}-"));
        use_name(&name);
    }
}

/// A JSON string of `len` `x`s, made with one allocation (the query `big`).
fn big_answer(len: usize) -> Result<String, PluginError> {
    let mut text = vec![b'x'; len + 2];
    text[0] = b'"';
    text[len + 1] = b'"';
    String::from_utf8(text).map_err(|e| PluginError::fatal(e.to_string()))
}

/// Where recursion would stop: never, but the compiler cannot know (it is read from memory).
static DEPTH_LIMIT: AtomicU64 = AtomicU64::new(u64::MAX);

/// Recurses until wasmtime's stack limit stops it. Work after the call keeps the compiler from
/// turning it into a loop; no local lives in memory, so Rust's shadow stack (in linear memory)
/// does not run out first and every frame lands on the engine's stack.
fn recurse(depth: u64) -> u64 {
    if depth >= DEPTH_LIMIT.load(Ordering::Relaxed) {
        return depth;
    }
    recurse(depth + 1).wrapping_mul(31) ^ depth
}

/// The key-value key of `stream`'s row count (`trap-marked`).
fn count_key(stream: &str) -> String {
    format!("count:{stream}")
}

/// The stored row count of `stream`, 0 when there is none.
fn count(stream: &str) -> Result<u64, PluginError> {
    let key = count_key(stream);
    match kv::get(&key) {
        None => Ok(0),
        Some(bytes) => std::str::from_utf8(&bytes)
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| PluginError::fatal(format!("kv value of `{key}` is not a count"))),
    }
}

/// A row marked to make the plugin trap: `{"trap_until_ms": T, ...}`.
#[derive(Deserialize)]
struct TrapMark {
    trap_until_ms: u64,
}

/// Traps (panics) when a row of `batch` is marked to trap until a time still ahead of the
/// host's clock. Only rows that mention the field are parsed.
fn trap_if_marked(batch: &Batch) -> Result<(), PluginError> {
    let now = clock::now_ms();
    for row in batch.rows() {
        if !row.data.contains("trap_until_ms") {
            continue;
        }
        let mark: TrapMark = row.json()?;
        if now < mark.trap_until_ms {
            panic!(
                "evil: row {} is marked to trap for {} ms more",
                row.token,
                mark.trap_until_ms - now
            );
        }
    }
    Ok(())
}

impl Plugin for Evil {
    fn describe() -> Description {
        Description::new("evil", env!("CARGO_PKG_VERSION"))
            .stream("*")
            .query("big", "big", "big")
            .query("loop", "evil", "loop")
            .query("count", "evil", "{stream}")
            .snapshots(true)
    }

    fn init(config: &str, _resume_after: &[Cursor]) -> Result<Self, PluginError> {
        let config: Config = serde_json::from_str(config)
            .map_err(|e| PluginError::fatal(format!("bad config: {e}")))?;
        let mode = match config.mode.as_deref().unwrap_or("none") {
            "none" => Mode::None,
            "loop" => Mode::Loop,
            "memory" => Mode::Memory,
            "leak" => Mode::Leak,
            "recursion" => Mode::Recursion,
            "effects" => Mode::Effects,
            "log" => Mode::Log,
            "grant" => Mode::Grant,
            "init-trap" => panic!("evil: init-trap mode panics in init"),
            "panic" => Mode::Panic,
            "read-file" => Mode::ReadFile,
            "flaky" => Mode::Flaky,
            "skip" => Mode::Skip,
            "counter-names" => Mode::CounterNames,
            "kv-tombstones" => Mode::KvTombstones,
            "kv-values" => Mode::KvValues,
            "giant-log" => Mode::GiantLog,
            "notify-flood" => Mode::NotifyFlood,
            "snapshot-bomb" => Mode::SnapshotBomb,
            "trap-marked" => Mode::TrapMarked,
            other => return Err(PluginError::fatal(format!("unknown mode `{other}`"))),
        };
        let bytes = config.bytes.unwrap_or(mode.default_bytes());
        Ok(Evil {
            mode,
            count: config.count.unwrap_or(mode.default_count()),
            bytes,
            failed_once: false,
            giant_line: if mode == Mode::GiantLog {
                "x".repeat(bytes)
            } else {
                String::new()
            },
        })
    }

    fn restore(config: &str, _state: &[u8], resume_after: &[Cursor]) -> Result<Self, PluginError> {
        Self::init(config, resume_after)
    }

    fn snapshot(&mut self) -> Result<Vec<u8>, PluginError> {
        Ok(match self.mode {
            Mode::SnapshotBomb => vec![0u8; self.bytes],
            _ => Vec::new(),
        })
    }

    fn query(&mut self, name: &str, args: &[(String, String)]) -> Result<String, PluginError> {
        match name {
            "big" => big_answer(self.bytes),
            "loop" => {
                let mut i = 0u64;
                loop {
                    i = black_box(i.wrapping_add(1));
                }
            }
            "count" => Ok(count(required_arg(args, "stream")?)?.to_string()),
            other => Err(PluginError::fatal(format!("no query {other}"))),
        }
    }

    fn on_batch(&mut self, batch: Batch) -> Result<Vec<Effect>, PluginError> {
        match self.mode {
            Mode::None => {}
            Mode::Loop => {
                let mut i = 0u64;
                loop {
                    i = black_box(i.wrapping_add(1));
                }
            }
            Mode::Memory => {
                let mut memory = vec![0u8; 1 << 30];
                for i in (0..memory.len()).step_by(4096) {
                    memory[i] = 1;
                }
                black_box(&memory);
            }
            Mode::Leak => {
                let leaked = vec![1u8; self.bytes].leak();
                black_box(leaked);
            }
            Mode::Recursion => {
                black_box(recurse(0));
            }
            Mode::Effects => {
                return Ok((0..self.count)
                    .map(|i| Effect::notify("evil", i.to_string()))
                    .collect());
            }
            Mode::Log => {
                for i in 0..self.count {
                    log::info(format!("evil line {i}"));
                }
            }
            Mode::Grant => return Ok(vec![Effect::invalidate("not-granted", "x")]),
            Mode::Panic => panic!("evil: panic mode panics in on_batch"),
            Mode::ReadFile => {
                return match std::fs::read_to_string("/etc/passwd") {
                    Ok(content) => Ok(vec![Effect::notify("evil", content)]),
                    Err(e) => Err(PluginError::fatal(format!("read failed: {e}"))),
                };
            }
            Mode::Skip => {
                return Err(PluginError::skip(format!(
                    "evil skips ({}, {}]",
                    batch.prev_token, batch.token
                )));
            }
            Mode::Flaky => {
                if !self.failed_once {
                    self.failed_once = true;
                    return Err(PluginError::retry("flaky: first call of this instance"));
                }
            }
            Mode::CounterNames => numbered(self.count, self.bytes, |name| counters::add(name, 1)),
            Mode::KvTombstones => numbered(self.count, self.bytes, kv::delete),
            Mode::KvValues => {
                let value = vec![b'v'; self.bytes];
                let mut refused = None;
                numbered(self.count, NUMBER_WIDTH, |key| {
                    if refused.is_none() {
                        refused = kv::set(key, &value).err();
                    }
                });
                if let Some(error) = refused {
                    return Err(error.into());
                }
            }
            Mode::GiantLog => {
                for _ in 0..self.count {
                    log::info(&self.giant_line);
                }
            }
            Mode::NotifyFlood => {
                let payload = "x".repeat(self.bytes);
                return Ok((0..self.count)
                    .map(|_| Effect::notify("evil", payload.clone()))
                    .collect());
            }
            Mode::SnapshotBomb => {}
            Mode::TrapMarked => {
                trap_if_marked(&batch)?;
                let total = count(&batch.stream)? + batch.len() as u64;
                kv::set(&count_key(&batch.stream), total.to_string().as_bytes())?;
                return Ok(vec![Effect::invalidate("evil", batch.stream)]);
            }
        }
        Ok(vec![Effect::notify("evil", batch.token.to_string())])
    }
}

export_plugin!(Evil);
