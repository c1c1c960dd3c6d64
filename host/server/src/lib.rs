//! Streamhost: a writer that keeps an append-only log of stream rows and streams it over
//! Synapse's replication protocol, and readers that follow it.
//!
//! File map:
//! - `config`: the TOML file and its defaults.
//! - `writer/`: the HTTP API, the appender (group commit), the in-memory tail, the streamer
//!   and the TCP replication server.
//! - `reader/`: the replication client, the `POSITION` rule and catch-up, the reader's own
//!   database, its HTTP API and its Wasm plugins (`reader/plugins/`).
//! - `redis_mode/`: Redis pub/sub replication (the writer's publisher, the reader's subscriber).
//! - `synapse/`: a reader following a live Synapse (`[reader.synapse]`): row objects, catch-up.
//! - `http`, `metrics`: what the writer's and reader's HTTP APIs share.
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
pub mod http;
pub mod metrics;
pub mod reader;
pub mod redis_mode;
pub mod synapse;
pub mod writer;
