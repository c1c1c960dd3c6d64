//! Secure defaults seen from outside: the read token guards the writer's and the reader's read
//! endpoints (the write or admin token passing too, the read token opening nothing else), and
//! the real binary refuses a listener open to other machines without authentication, naming
//! what to set, unless that listener says `allow_insecure = true`.

use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::json;
use streamhost_integration_tests::process::Process;
use streamhost_integration_tests::{TestReader, TestWriter, rows_body};
use streamhost_server::client::ApiClient;

const PROGRAM: &str = env!("CARGO_BIN_EXE_streamhost-under-test");

/// The status of `GET path` with `token` as the bearer (none without).
async fn get_status(base: &str, path: &str, token: Option<&str>) -> StatusCode {
    let mut client = ApiClient::new(base);
    if let Some(token) = token {
        client = client.with_bearer(token);
    }
    client
        .send(Method::GET, path, Bytes::new())
        .await
        .unwrap()
        .0
}

#[tokio::test]
async fn the_read_token_or_the_write_token_opens_the_writers_read_endpoints_and_nothing_else() {
    let writer = TestWriter::spawn_with(&["events"], |c| {
        c.read_token = Some("read".into());
        c.write_token = Some("write".into());
        c.replication_secret = Some("replication".into());
    })
    .await;
    let base = writer.url();
    for path in ["/v1/streams", "/metrics"] {
        for (token, expected) in [
            (None, StatusCode::UNAUTHORIZED),
            (Some("wrong"), StatusCode::UNAUTHORIZED),
            (Some("replication"), StatusCode::UNAUTHORIZED),
            (Some("read"), StatusCode::OK),
            (Some("write"), StatusCode::OK),
        ] {
            assert_eq!(
                get_status(&base, path, token).await,
                expected,
                "{path} {token:?}"
            );
        }
    }
    let rows = rows_body(&[json!({"a": 1})]);
    let with_read = ApiClient::new(base.as_str()).with_bearer("read");
    let refused = with_read.append("events", rows.clone(), false).await;
    assert!(refused.is_err(), "the read token appended: {refused:?}");
    let catchup =
        "/_synapse/replication/get_repl_stream_updates/events/abcdefghij?from_token=0&upto_token=1";
    assert_eq!(
        get_status(&base, catchup, Some("read")).await,
        StatusCode::UNAUTHORIZED
    );
    ApiClient::new(base.as_str())
        .with_bearer("write")
        .append("events", rows, false)
        .await
        .unwrap();
}

#[tokio::test]
async fn the_read_token_or_the_admin_token_opens_the_readers_status_and_metrics() {
    let writer = TestWriter::spawn(&["events"]).await;
    let reader = TestReader::spawn_with(&writer, "r", None, |c| {
        c.read_token = Some("read".into());
        c.plugins.admin_token = Some("admin".into());
    })
    .await;
    let base = format!("http://{}", reader.reader().http_addr());
    for path in ["/v1/status", "/metrics"] {
        for (token, expected) in [
            (None, StatusCode::UNAUTHORIZED),
            (Some("wrong"), StatusCode::UNAUTHORIZED),
            (Some("read"), StatusCode::OK),
            (Some("admin"), StatusCode::OK),
        ] {
            assert_eq!(
                get_status(&base, path, token).await,
                expected,
                "{path} {token:?}"
            );
        }
    }
    // Without a read token they stay open, as before.
    let open = TestReader::spawn(&writer, "open").await;
    let base = format!("http://{}", open.reader().http_addr());
    assert_eq!(get_status(&base, "/v1/status", None).await, StatusCode::OK);
}

/// Runs the binary with `args` and, of the tokens' environment variables, only `tokens`, and
/// returns its exit status and what it wrote on stderr; it must exit within 30 s.
async fn run_to_exit(args: &[&str], tokens: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(PROGRAM)
            .args(args)
            .env_remove("STREAMHOST_WRITE_TOKEN")
            .env_remove("STREAMHOST_REPLICATION_SECRET")
            .env_remove("STREAMHOST_READ_TOKEN")
            .env_remove("STREAMHOST_ADMIN_TOKEN")
            .envs(tokens.iter().copied())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("exits within 30 s")
    .expect("runs");
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_writer_or_reader_open_to_other_machines_without_tokens_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("writer");
    let (status, stderr) = run_to_exit(
        &[
            "writer",
            "--http",
            "0.0.0.0:0",
            "--replication",
            "127.0.0.1:0",
            "--data",
            data.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert!(!status.success(), "{status}: {stderr}");
    for needed in [
        "writer.http listens on 0.0.0.0:",
        "writer.write_token",
        "writer.replication_secret",
        "writer.read_token",
        "allow_insecure = true in [writer.http]",
    ] {
        assert!(stderr.contains(needed), "{needed:?} not in: {stderr}");
    }
    assert!(!data.exists(), "the log was opened before the refusal");

    let (status, stderr) = run_to_exit(
        &[
            "writer",
            "--http",
            "127.0.0.1:0",
            "--replication",
            "0.0.0.0:0",
            "--data",
            data.to_str().unwrap(),
        ],
        &[
            ("STREAMHOST_WRITE_TOKEN", "w"),
            ("STREAMHOST_REPLICATION_SECRET", "r"),
            ("STREAMHOST_READ_TOKEN", "t"),
        ],
    )
    .await;
    assert!(!status.success(), "{status}: {stderr}");
    assert!(
        stderr.contains("writer.replication listens on 0.0.0.0:")
            && stderr.contains("writer.replication.tls.client_ca_file"),
        "{stderr}"
    );

    let (status, stderr) = run_to_exit(
        &[
            "reader",
            "--http",
            "0.0.0.0:0",
            "--data",
            dir.path().join("reader").to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert!(!status.success(), "{status}: {stderr}");
    assert!(
        stderr.contains("reader.http listens on 0.0.0.0:") && stderr.contains("reader.read_token"),
        "{stderr}"
    );
}

#[tokio::test]
async fn allow_insecure_starts_the_open_listener_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("writer.toml");
    std::fs::write(
        &config,
        "[writer.http]\naddress = \"0.0.0.0:0\"\nallow_insecure = true\n",
    )
    .unwrap();
    let log = dir.path().join("writer.log");
    let writer = Process::spawn_logging(
        PROGRAM,
        &[
            "writer",
            "--config",
            config.to_str().unwrap(),
            "--replication",
            "127.0.0.1:0",
            "--data",
            dir.path().join("writer").to_str().unwrap(),
        ],
        &log,
    )
    .await;
    let port = writer.addr("http").port();
    let base = format!("http://127.0.0.1:{port}");
    assert_eq!(get_status(&base, "/v1/streams", None).await, StatusCode::OK);
    assert!(writer.terminate().await.success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("without authentication") && text.contains("allow_insecure"),
        "{text}"
    );
}
