//! `evil`: a plugin that misbehaves on purpose, to test the host's sandbox and error handling.
//!
//! The misbehaviour is chosen by the configuration passed to `init`, `{"mode": "…"}`; `{}` or
//! `"none"` behaves. `{"mode": "effects", "count": N}` and `{"mode": "log", "count": N}` change
//! how many effects or log lines those modes produce. Unless said otherwise each mode acts inside `on_batch`:
//!
//! | mode | what it does |
//! |---|---|
//! | `none` (or absent) | returns one `notify("evil", "<batch token>")` per batch |
//! | `loop` | loops forever |
//! | `memory` | allocates and touches 1 GiB |
//! | `recursion` | recurses without bound |
//! | `effects` | returns 20,000 `notify` effects on the topic `evil` |
//! | `log` | logs 1,000,000 lines |
//! | `grant` | returns `invalidate("not-granted", "x")`, a cache it was not granted |
//! | `init-trap` | panics in `init` |
//! | `panic` | panics |
//! | `read-file` | reads `/etc/passwd`: on success returns `notify("evil", <content>)`, on failure a fatal error `read failed: <io error>` |
//! | `skip` | answers every batch with a `skip` error (the host records a dead letter and moves on) |
//! | `flaky` | asks the host to retry (`retry`) on the first `on_batch` of each instance, then behaves like `none` |
//!
//! Whatever the mode, its query `loop` (cache `evil`) loops forever, for the query deadline.
//!
//! There is no mode that grows a Wasm table: stable Rust on `wasm32-wasip2` has no way to emit
//! `table.grow` (no intrinsic, and inline assembly for wasm is unstable).

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;
use streamhost_guest_sdk::{
    Batch, Cursor, Description, Effect, Plugin, PluginError, export_plugin, log,
};

/// The configuration `init` receives.
#[derive(Deserialize, Default)]
struct Config {
    #[serde(default)]
    mode: Option<String>,
    /// How many effects (`effects`) or log lines (`log`) to produce, instead of the default.
    #[serde(default)]
    count: Option<u64>,
}

/// The ways to misbehave.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    None,
    Loop,
    Memory,
    Recursion,
    Effects,
    Log,
    Grant,
    Panic,
    ReadFile,
    Flaky,
    Skip,
}

/// The plugin: its mode and, for `flaky`, whether this instance already failed once.
struct Evil {
    mode: Mode,
    count: Option<u64>,
    failed_once: bool,
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

impl Plugin for Evil {
    fn describe() -> Description {
        Description::new("evil", env!("CARGO_PKG_VERSION"))
            .stream("messages")
            .query("loop", "evil", "loop")
    }

    fn init(config: &str, _resume_after: &[Cursor]) -> Result<Self, PluginError> {
        let config: Config = serde_json::from_str(config)
            .map_err(|e| PluginError::fatal(format!("bad config: {e}")))?;
        let mode = match config.mode.as_deref().unwrap_or("none") {
            "none" => Mode::None,
            "loop" => Mode::Loop,
            "memory" => Mode::Memory,
            "recursion" => Mode::Recursion,
            "effects" => Mode::Effects,
            "log" => Mode::Log,
            "grant" => Mode::Grant,
            "init-trap" => panic!("evil: init-trap mode panics in init"),
            "panic" => Mode::Panic,
            "read-file" => Mode::ReadFile,
            "flaky" => Mode::Flaky,
            "skip" => Mode::Skip,
            other => return Err(PluginError::fatal(format!("unknown mode `{other}`"))),
        };
        Ok(Evil {
            mode,
            count: config.count,
            failed_once: false,
        })
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
            Mode::Recursion => {
                black_box(recurse(0));
            }
            Mode::Effects => {
                return Ok((0..self.count.unwrap_or(20_000))
                    .map(|i| Effect::notify("evil", i.to_string()))
                    .collect());
            }
            Mode::Log => {
                for i in 0..self.count.unwrap_or(1_000_000) {
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
        }
        Ok(vec![Effect::notify("evil", batch.token.to_string())])
    }

    fn query(&mut self, _name: &str, _args: &[(String, String)]) -> Result<String, PluginError> {
        let mut i = 0u64;
        loop {
            i = black_box(i.wrapping_add(1));
        }
    }
}

export_plugin!(Evil);
