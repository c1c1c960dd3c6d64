//! Streamhost: a writer that keeps an append-only log of stream rows and streams it over
//! Synapse's replication protocol, and readers that follow it.
//!
//! File map:
//! - `cli`: the `streamhost` command line (writer, reader, tail, demo, bench, plugin).
//! - `config`: the TOML file and its defaults.
//! - `writer/`: the HTTP API, the appender (group commit), the in-memory tail, the streamer
//!   and the TCP replication server.
//! - `reader/`: the replication client, the `POSITION` rule and catch-up, the reader's own
//!   database, its HTTP API and its Wasm plugins (`reader/plugins/`).
//! - `redis_mode/`: Redis pub/sub replication (the writer's publisher, the reader's subscriber).
//! - `synapse/`: a reader following a live Synapse (`[reader.synapse]`): row objects, catch-up.
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
pub mod redis_mode;
pub mod synapse;
pub mod tail;
pub mod writer;
