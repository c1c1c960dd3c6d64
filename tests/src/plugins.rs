//! The plugins of `plugins/`, built from source by `tests/build.rs` (release, `wasm32-wasip2`)
//! and laid out the way the reader loads them: `PLUGINS_DIR/<name>/plugin.toml` and
//! `PLUGINS_DIR/<name>/<name>.wasm`, one folder per plugin, `evil` included.
//!
//! Each plugin has `<NAME>_DIR` (its folder) and `<NAME>_WASM` (its component), the name in
//! upper case with `_` for `-`: `ROOM_TIMELINE_DIR`, `NOTIFIER_WASM`, `STREAM_STATS_DIR`,
//! `EVIL_WASM`, …; [`ALL_PLUGINS`] names them all.

include!(concat!(env!("OUT_DIR"), "/plugins.rs"));
