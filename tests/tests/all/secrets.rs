//! Secrets are never shown: a writer and a reader (the real binary, as processes) given every
//! secret through the environment and files keep them out of their command lines (what `ps`
//! shows), their logs (at `debug`), and their HTTP answers (`/v1/status`, `/v1/streams`,
//! `/metrics`), while still using them.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use streamhost_integration_tests::postgres::Schema;
use streamhost_integration_tests::process::Process;
use streamhost_integration_tests::{rows_body, wait_until};
use streamhost_server::client::ApiClient;

/// Every secret below contains this, so one search finds any of them.
const MARK: &str = "SECRET-b7e1";

/// The command line of process `pid`, as `ps` shows it.
fn command_line(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " "))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/cmdline: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_not_in_the_command_line_the_logs_or_the_http_answers() {
    let schema = Schema::create().await;
    let url = schema.url();
    // The test server trusts loopback connections, so the password is carried, not checked.
    let url = if streamhost_log::has_password(&url) {
        url
    } else {
        streamhost_log::with_password(&url, &format!("{MARK}-db")).unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let write_token = format!("{MARK}-write");
    let replication_file = dir.join("replication-secret");
    std::fs::write(&replication_file, format!("{MARK}-replication\n")).unwrap();
    let admin_token = format!("{MARK}-admin");
    let program = env!("CARGO_BIN_EXE_streamhost-under-test");
    let debug = Path::new("streamhost=debug,sqlx=debug,info");

    let writer_log = dir.join("writer.log");
    let writer_data = dir.join("writer");
    let writer = Process::spawn_logging_with_env(
        program,
        &[
            "writer",
            "--http",
            "127.0.0.1:0",
            "--replication",
            "127.0.0.1:0",
            "--data",
            writer_data.to_str().unwrap(),
            "--stream",
            "events",
            "--replication-secret-file",
            replication_file.to_str().unwrap(),
        ],
        &[
            ("STREAMHOST_WRITE_TOKEN", Path::new(&write_token)),
            ("STREAMHOST_DATABASE_URL", Path::new(&url)),
            ("RUST_LOG", debug),
        ],
        &writer_log,
    )
    .await;
    let writer_http = format!("http://{}", writer.addr("http"));
    let append = ApiClient::new(&writer_http).with_bearer(write_token.as_str());
    let rows: Vec<_> = (0..10).map(|i| json!({"n": i})).collect();
    let tokens = append
        .append("events", rows_body(&rows), false)
        .await
        .expect("the write token from the environment is the one required");

    // Joining late, the reader catches up from the log database with the password-bearing URL
    // from the environment.
    let reader_log = dir.join("reader.log");
    let reader_data = dir.join("reader");
    let reader = Process::spawn_logging_with_env(
        program,
        &[
            "reader",
            "--http",
            "127.0.0.1:0",
            "--data",
            reader_data.to_str().unwrap(),
            "--writer",
            &writer.addr("replication").to_string(),
            "--writer-http",
            &writer_http,
            "--replication-secret-file",
            replication_file.to_str().unwrap(),
        ],
        &[
            ("STREAMHOST_LOG_DATABASE_URL", Path::new(&url)),
            ("STREAMHOST_ADMIN_TOKEN", Path::new(&admin_token)),
            ("RUST_LOG", debug),
        ],
        &reader_log,
    )
    .await;
    let reader_api = ApiClient::new(format!("http://{}", reader.addr("http")));
    let last = *tokens.last().unwrap();
    wait_until(
        Duration::from_secs(30),
        "the reader to catch up",
        || async {
            let status = reader_api.get_json("/v1/status").await.unwrap();
            status["streams"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["stream"] == "events" && s["position"].as_i64() >= Some(last.0))
        },
    )
    .await;

    let writer_api = ApiClient::new(&writer_http);
    let mut answers = Vec::new();
    for (api, path) in [
        (&writer_api, "/v1/streams"),
        (&writer_api, "/metrics"),
        (&reader_api, "/v1/status"),
        (&reader_api, "/metrics"),
    ] {
        let (status, body) = api
            .send(hyper::Method::GET, path, Default::default())
            .await
            .unwrap();
        assert!(status.is_success(), "{path}: {status}");
        answers.push((path, String::from_utf8_lossy(&body).into_owned()));
    }
    for (pid, role) in [(writer.pid(), "writer"), (reader.pid(), "reader")] {
        answers.push((role, command_line(pid.expect("the process runs"))));
    }
    drop((writer, reader));
    for log in [&writer_log, &reader_log] {
        let text = std::fs::read_to_string(log).unwrap();
        assert!(text.contains("DEBUG"), "the log is at debug: {text}");
        answers.push(("log", text));
    }
    for (what, text) in answers {
        assert!(!text.contains(MARK), "{what} shows a secret:\n{text}");
    }
}
