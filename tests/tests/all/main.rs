//! The integration suite: one test binary, one module per area.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

/// Runs (in a module that imports `LogBackend`) `scenario(backend)` as two tests, `scenario::sqlite` and `scenario::postgres`.
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$scenario(super::LogBackend::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$scenario(super::LogBackend::Postgres).await;
            }
        }
    )*};
}

mod accept_errors;
mod admin_cli;
mod chaos;
mod compile_cache;
mod completions;
mod config_env;
mod conformance;
mod conformance_pushers;
mod console;
mod deployment;
mod docs_links;
mod docs_statuses;
mod faults;
mod full_disk;
mod hostile_languages;
mod hostile_plugins;
mod hostile_queries;
mod http_timeouts;
mod idle_connections;
mod kv_import;
mod metrics;
mod outbound_http;
mod plugin_artifacts;
mod plugin_dev;
mod plugin_files;
mod plugin_languages;
mod plugin_limits;
mod plugin_reload;
mod plugin_run;
mod plugin_test;
mod plugin_workflow;
mod plugins;
mod postgres;
mod postgres_tls;
mod process;
mod push_import;
mod pushes;
mod reader_auth;
mod reader_authorizer;
mod redis;
mod redis_tls;
mod replication;
mod retention;
mod sdk_units;
mod secrets;
mod secure_defaults;
mod security_matrix;
mod synapse;
mod synapse_import;
mod tail;
mod tls;
mod writer_http;
mod writer_tcp;
