//! Streamhost: a writer that keeps an append-only log of stream rows and streams it over
//! Synapse's replication protocol, and readers that follow it.
//!
//! File map:
//! - `cli`: the `streamhost` command line (writer, reader, tail, demo, bench, plugin).
//! - `config/`: the TOML file, its defaults and its validation (data only).
//! - `writer/`: the HTTP API, the appender (group commit), the in-memory tail, the streamer
//!   and its fan-outs (`writer/fanout/`: the TCP replication server, the Redis publisher).
//! - `reader/`: its upstream (`reader/upstream/`: `tcp`, `redis` or a live `synapse`, one
//!   follow loop), the `POSITION` rule and catch-up, the reader's own database, its HTTP API
//!   and its Wasm plugins (`reader/plugins/`).
//! - `redis/`: the Redis plumbing writer and reader share (connections, TLS, channel names,
//!   metrics); it imports neither.
//! - `tail`: `streamhost tail`, decoded replication traffic.
//! - `plugin_run`: `streamhost plugin run`, recorded traffic replayed through one plugin.
//! - `bench`, `bench_plugins`, `bench_plugin_host`, `bench_plugin_languages`, `bench_redis`:
//!   `streamhost bench` and its `plugins` (Rust vs native, the reader, Python and JavaScript vs
//!   Rust) and `redis` suites.
//! - `http`, `metrics`: what the writer's and reader's HTTP APIs share.
//! - `backoff`, `clock`: the one retry schedule (exponential, capped, jittered) and the one
//!   wall-clock reading.

pub mod backoff;
pub mod bench;
pub mod bench_plugin_host;
pub mod bench_plugin_languages;
pub mod bench_plugins;
pub mod bench_redis;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod demo;
pub mod http;
pub mod metrics;
pub mod plugin_run;
pub mod reader;
pub mod redis;
pub mod tail;
pub mod writer;
