//! Configuration from the environment and `streamhost config check`, on the real binary: a
//! writer and a reader configured by `STREAMHOST_…` variables alone replicate; a misspelled
//! variable or a bad value stops the start naming the variable; `config check` prints the
//! effective settings with every planted secret masked and refuses an invalid file.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::json;
use streamhost_integration_tests::process::Process;
use streamhost_integration_tests::{rows_body, wait_until};
use streamhost_server::client::ApiClient;

const PROGRAM: &str = env!("CARGO_BIN_EXE_streamhost-under-test");

const WAIT: Duration = Duration::from_secs(30);

/// Runs the binary to completion with only `env` in its environment.
async fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let run = tokio::process::Command::new(PROGRAM)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(WAIT, run)
        .await
        .expect("streamhost exits within 30 s")
        .expect("run streamhost")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_and_a_reader_configured_only_by_environment_variables_replicate() {
    let dir = tempfile::tempdir().unwrap();
    let writer_data = dir.path().join("writer");
    let write_token = "env-write-token-0123456789";
    let writer = Process::spawn_with_env(
        PROGRAM,
        &["writer"],
        &[
            ("STREAMHOST_WRITER__HTTP__ADDRESS", Path::new("127.0.0.1:0")),
            // A listener given whole, in its address form.
            ("STREAMHOST_WRITER__REPLICATION", Path::new("127.0.0.1:0")),
            ("STREAMHOST_WRITER__DATA", writer_data.as_path()),
            (
                "STREAMHOST_WRITER__STREAMS",
                Path::new(r#"["events", "receipts"]"#),
            ),
            ("STREAMHOST_WRITER__SERVER_NAME", Path::new("env.example")),
            ("STREAMHOST_WRITER__MAX_APPEND_ROWS", Path::new("3")),
            ("STREAMHOST_WRITER__WRITE_TOKEN", Path::new(write_token)),
        ],
    )
    .await;
    let writer_http = format!("http://{}", writer.addr("http"));
    let open = ApiClient::new(&writer_http);
    let rows: Vec<_> = (0..3).map(|i| json!({"n": i})).collect();
    assert!(
        open.append("events", rows_body(&rows), false)
            .await
            .is_err(),
        "the write token from the environment is required"
    );
    let append = open.with_bearer(write_token);
    let tokens = append
        .append("events", rows_body(&rows), false)
        .await
        .unwrap();
    let four: Vec<_> = (0..4).map(|i| json!({"n": i})).collect();
    let err = append
        .append("receipts", rows_body(&four), false)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("413"),
        "max_append_rows = 3: {err}"
    );
    assert!(writer_data.join("log.sqlite").exists());

    let read_token = "env-read-token-0123456789";
    let reader = Process::spawn_with_env(
        PROGRAM,
        &["reader"],
        &[
            (
                "STREAMHOST_READER__WRITER",
                Path::new(&writer.addr("replication").to_string()),
            ),
            ("STREAMHOST_READER__WRITER_HTTP", Path::new(&writer_http)),
            ("STREAMHOST_READER__HTTP__ADDRESS", Path::new("127.0.0.1:0")),
            (
                "STREAMHOST_READER__DATA",
                dir.path().join("reader").as_path(),
            ),
            ("STREAMHOST_READER__NAME", Path::new("env-reader")),
            ("STREAMHOST_READER__SERVER_NAME", Path::new("env.example")),
            ("STREAMHOST_READER__RECORD_ROWS", Path::new("true")),
            ("STREAMHOST_READ_TOKEN", Path::new(read_token)),
        ],
    )
    .await;
    let status = ApiClient::new(format!("http://{}", reader.addr("http")));
    assert!(
        status.get_json("/v1/status").await.is_err(),
        "the read token from the alias is required"
    );
    let status = status.with_bearer(read_token);
    let last = tokens.last().unwrap().0;
    wait_until(WAIT, "the reader to reach the appended rows", || async {
        let Ok(answer) = status.get_json("/v1/status").await else {
            return false;
        };
        answer["streams"].as_array().is_some_and(|streams| {
            streams
                .iter()
                .any(|s| s["stream"] == "events" && s["position"] == last)
        })
    })
    .await;
    assert!(reader.terminate().await.success());
    assert!(writer.terminate().await.success());
}

#[tokio::test]
async fn a_misspelled_variable_or_a_bad_value_stops_the_start_naming_the_variable() {
    let cases = [
        (
            ("STREAMHOST_WRITER__HTTP__ADRESS", "127.0.0.1:0"),
            "did you mean STREAMHOST_WRITER__HTTP__ADDRESS?",
        ),
        (
            ("STREAMHOST_WRITER__HTTP__MAX_CONNECTIONS", "lots"),
            "STREAMHOST_WRITER__HTTP__MAX_CONNECTIONS (setting writer.http.max_connections): \
             invalid type: string \"lots\"",
        ),
        (
            ("STREAMHOST_WRITER__HTTP__ADDRESS", "127.0.0.1:http"),
            "STREAMHOST_WRITER__HTTP__ADDRESS (setting writer.http.address)",
        ),
        (
            ("STREAMHOST_WRTIER__DATA", "/tmp"),
            "STREAMHOST_WRTIER__DATA names no setting",
        ),
    ];
    for ((name, value), expected) in cases {
        let output = run(&["writer"], &[(name, value)]).await;
        let stderr = text(&output.stderr);
        assert!(!output.status.success(), "{name}={value}: {stderr}");
        assert!(stderr.contains(expected), "{name}={value}: {stderr}");
    }
}

/// Every planted secret contains this.
const PLANTED: &str = "PLANTED-5ec7e7";

#[tokio::test]
async fn config_check_prints_every_setting_with_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("replication");
    std::fs::write(&secret_file, format!("{PLANTED}-from-file\n")).unwrap();
    let config = dir.path().join("streamhost.toml");
    std::fs::write(
        &config,
        format!(
            r#"[writer]
write_token = "{PLANTED}-write"
replication_secret_file = {secret_file:?}
[writer.database]
url = "postgres://streamhost:{PLANTED}-db@db.internal/log"
[writer.redis]
url = "redis://:{PLANTED}-redis@127.0.0.1:6379/2"

[reader]
server_name = "example.org"
log_database_url = "postgres://ro@db.internal/log?password={PLANTED}-query"
[reader.redis]
url = "redis://:{PLANTED}-reader-redis@127.0.0.1:6379"
[[reader.auth.tokens]]
name = "app"
token = "{PLANTED}-api-token"
subject = "@app:example.org"
queries = ["stream-stats/*"]
[reader.destinations.hook]
url = "https://hooks.example.org/push"
headers = {{ Authorization = "Bearer {PLANTED}-header" }}
"#,
            secret_file = secret_file.display().to_string(),
        ),
    )
    .unwrap();
    let admin = format!("{PLANTED}-admin");
    let read = format!("{PLANTED}-read");
    let output = run(
        &["config", "check", config.to_str().unwrap()],
        &[
            ("STREAMHOST_ADMIN_TOKEN", admin.as_str()),
            ("STREAMHOST_READER__READ_TOKEN", read.as_str()),
            ("STREAMHOST_WRITER__TAIL_ROWS", "77"),
        ],
    )
    .await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stderr}");
    assert!(
        !stdout.contains("PLANTED") && !stderr.contains("PLANTED"),
        "{stdout}{stderr}"
    );
    for shown in [
        "write_token = \"***\"",
        "replication_secret = \"***\"",
        "url = \"postgres://streamhost:***@db.internal/log\"",
        "url = \"redis://:***@127.0.0.1:6379/2\"",
        "log_database_url = \"postgres://ro@db.internal/log?password=***\"",
        "admin_token = \"***\"",
        "read_token = \"***\"",
        "token = \"***\"",
        "Authorization = \"***\"",
        // The environment over the file, and the defaults.
        "tail_rows = 77",
        "max_connections = 1024",
        "catchup_row_limit = 1000",
        "[reader.plugins.queries]",
        "queue_depth = 64",
    ] {
        assert!(stdout.contains(shown), "{shown}: {stdout}");
    }
    let toml: toml::Table = toml::from_str(&stdout).unwrap();
    assert!(toml.contains_key("writer") && toml.contains_key("reader"));

    // A Synapse reader, one role.
    let synapse = dir.path().join("synapse.toml");
    std::fs::write(
        &synapse,
        format!(
            "[reader]\nname = \"streamhost1\"\n[reader.synapse]\nserver_name = \"example.org\"\n\
             worker_replication_secret = \"{PLANTED}-wrs\"\n[reader.synapse.redis]\nhost = \"r\"\n"
        ),
    )
    .unwrap();
    let password = format!("{PLANTED}-synapse-redis");
    let output = run(
        &[
            "config",
            "check",
            synapse.to_str().unwrap(),
            "--role",
            "reader",
        ],
        &[(
            "STREAMHOST_READER__SYNAPSE__REDIS__PASSWORD",
            password.as_str(),
        )],
    )
    .await;
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(!stdout.contains("PLANTED"), "{stdout}");
    assert!(!stdout.contains("[writer]"), "{stdout}");
    assert!(
        stdout.contains("worker_replication_secret = \"***\"")
            && stdout.contains("password = \"***\""),
        "{stdout}"
    );
}

/// A configuration file, the environment over it, and what the error must say.
type Case<'a> = (String, &'a [(&'a str, &'a str)], &'a str);

#[tokio::test]
async fn config_check_refuses_an_invalid_configuration_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let cases: [Case; 5] = [
        (
            write("zero.toml", "[writer]\ncatchup_row_limit = 0\n"),
            &[],
            "writer.catchup_row_limit must be > 0",
        ),
        (write("typo.toml", "[reader]\nnmae = \"x\"\n"), &[], "nmae"),
        (
            write("empty.toml", ""),
            &[("STREAMHOST_READER__INBOUND_QUEUE", "many")],
            "STREAMHOST_READER__INBOUND_QUEUE (setting reader.inbound_queue)",
        ),
        (
            write("exposed.toml", "[reader]\nhttp = \"0.0.0.0:8481\"\n"),
            &[],
            "reader.http",
        ),
        (
            write(
                "secret.toml",
                &format!("[writer]\nwrite_token = \"{PLANTED}\"\nwrite_token_file = \"/x\"\n"),
            ),
            &[],
            "set writer.write_token or writer.write_token_file, not both",
        ),
    ];
    for (file, env, expected) in cases {
        let output = run(&["config", "check", &file], env).await;
        let stderr = text(&output.stderr);
        assert!(!output.status.success(), "{file}: {stderr}");
        assert!(stderr.contains(expected), "{file}: {stderr}");
        assert!(!stderr.contains("PLANTED"), "{stderr}");
        assert!(
            output.stdout.is_empty(),
            "{file}: nothing printed on failure"
        );
    }
}

#[tokio::test]
async fn a_reader_with_perf_map_set_names_its_plugins_functions_in_perfs_map() {
    // stream-stats' grant is in the file (its name has a `-`, which a variable's new table
    // would not keep); `[reader.plugins] perf_map` and the rest come from the environment.
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    let copy = plugins.join("stream-stats");
    std::fs::create_dir_all(&copy).unwrap();
    let built = Path::new(streamhost_integration_tests::plugins::STREAM_STATS_DIR);
    for file in std::fs::read_dir(built).unwrap() {
        let file = file.unwrap();
        std::fs::copy(file.path(), copy.join(file.file_name())).unwrap();
    }
    let config = dir.path().join("reader.toml");
    std::fs::write(
        &config,
        "[reader.plugins.grants.stream-stats]\nstreams = [\"*\"]\ncaches = [\"count\"]\nkv = true\n",
    )
    .unwrap();
    let writer = Process::spawn_with_env(
        PROGRAM,
        &["writer"],
        &[
            ("STREAMHOST_WRITER__HTTP__ADDRESS", Path::new("127.0.0.1:0")),
            ("STREAMHOST_WRITER__REPLICATION", Path::new("127.0.0.1:0")),
            (
                "STREAMHOST_WRITER__DATA",
                dir.path().join("writer").as_path(),
            ),
            ("STREAMHOST_WRITER__STREAMS", Path::new(r#"["events"]"#)),
        ],
    )
    .await;
    // Runs a reader until its plugin runs; returns the map of its process, if any.
    let map_of = |perf_map: &'static str| {
        let env = [
            (
                "STREAMHOST_READER__WRITER",
                writer.addr("replication").to_string(),
            ),
            (
                "STREAMHOST_READER__WRITER_HTTP",
                format!("http://{}", writer.addr("http")),
            ),
            ("STREAMHOST_READER__HTTP__ADDRESS", "127.0.0.1:0".to_owned()),
            (
                "STREAMHOST_READER__DATA",
                dir.path()
                    .join(format!("reader-{perf_map}"))
                    .display()
                    .to_string(),
            ),
            (
                "STREAMHOST_READER__PLUGINS__DIR",
                plugins.display().to_string(),
            ),
            ("STREAMHOST_READER__PLUGINS__PERF_MAP", perf_map.to_owned()),
        ];
        let (config, log) = (
            config.clone(),
            dir.path().join(format!("reader-{perf_map}.log")),
        );
        async move {
            let env: Vec<(&str, &Path)> = env.iter().map(|(k, v)| (*k, Path::new(v))).collect();
            let args = ["reader", "--config", config.to_str().unwrap()];
            let reader = Process::spawn_logging_with_env(PROGRAM, &args, &env, &log).await;
            let path = format!("/tmp/perf-{}.map", reader.pid().unwrap());
            wait_until(WAIT, "stream-stats to run", || async {
                std::fs::read_to_string(&log).is_ok_and(|text| text.contains("plugin running"))
            })
            .await;
            assert!(reader.terminate().await.success());
            let map = std::fs::read_to_string(&path).ok();
            let _ = std::fs::remove_file(&path);
            map
        }
    };
    let map = map_of("true")
        .await
        .expect("perf_map writes /tmp/perf-<pid>.map");
    assert!(
        map.lines()
            .any(|line| line.ends_with("streamhost:plugin/handler@0.4.0#on-batch")),
        "{map}"
    );
    assert_eq!(map_of("false").await, None, "no map without perf_map");
    assert!(writer.terminate().await.success());
}
