//! Streamhost: a writer that keeps an append-only log of stream rows and streams it over
//! Synapse's replication protocol, and readers that follow it.
//!
//! File map:
//! - `config/`: the TOML file, its defaults and its validation (data only).
//! - `writer/`: the HTTP API, the appender (group commit), the in-memory tail, the streamer
//!   and its fan-outs (`writer/fanout/`: the TCP replication server, the Redis publisher).
//! - `reader/`: its upstream (`reader/upstream/`: `tcp`, `redis` or a live `synapse`, one
//!   follow loop), the `POSITION` rule and catch-up, the reader's own database, its HTTP API
//!   and its Wasm plugins (`reader/plugins/`).
//! - `redis/`: the Redis plumbing writer and reader share (connections, TLS, channel names,
//!   metrics); it imports neither.
//! - `console/`: the live web page each process serves (`/console`), its snapshot and events.
//! - `http`, `metrics`: what the writer's and reader's HTTP APIs share.
//! - `net/`: what every listener shares below the protocols: the accepting loop with its
//!   connection cap, and TLS on every listener and towards the writer.
//! - `fuzzing`: narrow entry points to private parsers, for the fuzz targets in `fuzz/` only.
//! - `backoff`, `clock`: the one retry schedule (exponential, capped, jittered) and the one
//!   wall-clock reading.
//!
//! This crate is the product only: the `streamhost` command line and its tools (`tail`,
//! `demo`, `plugin run`) are `host/cli` (package `streamhost`), the benchmarks `host/bench`
//! (package `streamhost-bench`).

pub mod backoff;
pub mod client;
pub mod clock;
pub mod config;
pub mod console;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod metrics;
pub mod net;
pub mod reader;
pub mod redis;
pub mod writer;
