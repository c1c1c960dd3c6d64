//! Outbound HTTP for plugins (`wasi:http/outgoing-handler`), with the `http-probe` plugin
//! against a real local server on port 0: granted origins and destinations answer (with the
//! destination's headers added, unseen by the plugin), anything else is denied to the plugin
//! as an error it handles, and the timeout, the call's deadline, the response cap and the
//! request count hold. Loading refuses an ungranted target and a component importing
//! `wasi:http` without a grant; `plugin run --http-fixtures` answers from its file.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use streamhost_integration_tests::plugins::HTTP_PROBE_DIR;
use streamhost_plugin_runtime::{
    Batch, Destination, Effect, FailureReason, Grant, KvStore, LimitHit, LoadError, Manifest,
    Notification, PluginFiles, PluginServices, PluginVersion, Row, Runtime, RuntimeConfig,
};

use crate::plugin_run::run as plugin_run;

/// Time a noisy shared machine may add to a deadline.
const SLACK: Duration = Duration::from_millis(750);

/// The request heads the server received: (path, headers with lower-case names).
type Seen = Arc<Mutex<Vec<(String, Vec<(String, String)>)>>>;

/// A small HTTP/1.1 server on 127.0.0.1:0, one thread per connection:
/// `/slow` answers after 3 s, `/drip` sends its body a byte every 100 ms for 10 s,
/// `/big` is 100,000 bytes, anything else is `ok <path>`.
struct Server {
    port: u16,
    seen: Seen,
}

impl Server {
    fn spawn() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Seen::default();
        let record = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let record = record.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &record);
                });
            }
        });
        Server { port, seen }
    }

    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn serve(stream: TcpStream, seen: &Seen) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    std::io::Read::read_exact(&mut reader, &mut body)?;
    seen.lock().unwrap().push((path.clone(), headers));
    let mut out = stream;
    match path.as_str() {
        "/slow" => {
            std::thread::sleep(Duration::from_secs(3));
            write!(
                out,
                "HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\nslow"
            )
        }
        "/drip" => {
            write!(
                out,
                "HTTP/1.1 200 OK\r\ncontent-length: 100\r\nconnection: close\r\n\r\n"
            )?;
            for _ in 0..100 {
                out.write_all(b"x")?;
                out.flush()?;
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(())
        }
        "/big" => {
            write!(
                out,
                "HTTP/1.1 200 OK\r\ncontent-length: 100000\r\nconnection: close\r\n\r\n"
            )?;
            out.write_all(&[b'x'; 100_000])
        }
        _ => {
            let body = match body.is_empty() {
                true => format!("ok {path}"),
                false => format!("ok {path} {}", String::from_utf8_lossy(&body)),
            };
            write!(
                out,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nx-answer: yes\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
        }
    }
}

/// The `http-probe` plugin in a temporary folder whose `plugin.toml` asks for `http` and
/// `limits` (TOML lines; a batch deadline of 5 s unless they set one).
fn probe_folder(http: &[String], limits: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(HTTP_PROBE_DIR);
    std::fs::copy(
        src.join("http-probe.wasm"),
        dir.path().join("http-probe.wasm"),
    )
    .unwrap();
    let deadline = match limits.contains("batch_deadline_ms") {
        true => "",
        false => "batch_deadline_ms = 5000\nbatch_deadline_max_ms = 5000\n",
    };
    let manifest = format!(
        "name = \"http-probe\"\nstreams = [\"messages\"]\ntopics = [\"probe\"]\nhttp = {}\n\
         [limits]\n{deadline}{limits}\n",
        serde_json::to_string(http).unwrap()
    );
    std::fs::write(dir.path().join("plugin.toml"), manifest).unwrap();
    dir
}

fn runtime(destinations: BTreeMap<String, Destination>) -> Runtime {
    Runtime::new(RuntimeConfig {
        destinations: Arc::new(destinations),
        ..RuntimeConfig::default()
    })
    .unwrap()
}

/// Loads the plugin in `dir` under `grant` (everything its manifest asks for when `None`).
fn load(runtime: &Runtime, dir: &Path, grant: Option<Grant>) -> Result<PluginVersion, LoadError> {
    let files = PluginFiles::in_dir(dir).unwrap();
    let manifest = Manifest::load(&files.manifest).unwrap();
    let grant = grant.unwrap_or_else(|| Grant::everything_asked(&manifest).unwrap());
    PluginVersion::load(runtime, &files, &grant)
}

fn batch(probes: &[Value]) -> Batch {
    Batch {
        stream: "messages".into(),
        instance: "master".into(),
        prev_token: 0,
        token: probes.len() as i64,
        rows: probes
            .iter()
            .enumerate()
            .map(|(i, p)| Row {
                token: i as i64 + 1,
                data: p.to_string(),
            })
            .collect(),
    }
}

/// Runs one batch of `probes` and returns what the plugin reported for each.
fn probe(version: &PluginVersion, probes: &[Value]) -> Vec<Value> {
    let services = PluginServices::new("http-probe", KvStore::default(), 100, None);
    let mut instance = version.instantiate(services).unwrap();
    instance.init(&[]).unwrap();
    let effects = instance.on_batch(&batch(probes)).unwrap().effects;
    effects
        .iter()
        .map(|effect| match effect {
            Effect::Notify(Notification { payload, .. }) => serde_json::from_str(payload).unwrap(),
            other => panic!("unexpected effect {other:?}"),
        })
        .collect()
}

#[test]
fn a_granted_origin_answers_and_anything_else_is_denied_to_the_plugin() {
    let server = Server::spawn();
    let dir = probe_folder(&[server.origin()], "");
    let version = load(&runtime(BTreeMap::new()), dir.path(), None).unwrap();
    let origin = server.origin();
    let results = probe(
        &version,
        &[
            json!({"url": format!("{origin}/a?b=1")}),
            json!({"url": format!("http://localhost:{}/a", server.port)}),
            json!({"url": format!("https://127.0.0.1:{}/a", server.port)}),
            json!({"url": format!("{origin}/c"), "method": "POST", "body": "hello"}),
        ],
    );
    assert_eq!(results[0]["status"], 200, "{results:?}");
    assert_eq!(results[0]["body"], "ok /a?b=1");
    assert!(
        results[0]["headers"]
            .as_array()
            .unwrap()
            .contains(&json!(["x-answer", "yes"]))
    );
    // Another host name or scheme for the same address is another origin: denied, and the
    // plugin handled the error (the batch succeeded).
    assert_eq!(results[1]["kind"], "denied", "{results:?}");
    assert_eq!(results[2]["kind"], "denied", "{results:?}");
    assert_eq!(results[3]["body"], "ok /c hello", "{results:?}");
    let paths: Vec<String> = server
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.0.clone())
        .collect();
    assert_eq!(paths, ["/a?b=1", "/c"]);
}

#[test]
fn destination_headers_are_added_and_the_plugin_cannot_set_or_see_them() {
    let server = Server::spawn();
    let destinations = BTreeMap::from([(
        "hook".to_string(),
        Destination {
            url: format!("{}/hook", server.origin()),
            headers: vec![("X-Secret".into(), "s3cret".into())],
            max_body_bytes: 1 << 20,
        },
    )]);
    let dir = probe_folder(&["hook".to_string()], "");
    let version = load(&runtime(destinations), dir.path(), None).unwrap();
    let origin = server.origin();
    let results = probe(
        &version,
        &[
            json!({"url": format!("{origin}/hook/a")}),
            json!({"url": format!("{origin}/hook/b"), "headers": [["x-secret", "forged"]]}),
            json!({"url": format!("{origin}/other")}),
            json!({"url": format!("{origin}/hooks")}),
        ],
    );
    assert_eq!(results[0]["status"], 200, "{results:?}");
    assert_eq!(results[1]["kind"], "invalid-header", "{results:?}");
    assert_eq!(results[2]["kind"], "denied", "{results:?}");
    assert_eq!(results[3]["kind"], "denied", "{results:?}");
    let seen = server.seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].0, "/hook/a");
    assert!(
        seen[0].1.contains(&("x-secret".into(), "s3cret".into())),
        "{seen:?}"
    );
    assert!(!results[0].to_string().contains("s3cret"));
}

#[test]
fn a_slow_server_times_out_within_the_request_timeout() {
    let server = Server::spawn();
    let dir = probe_folder(&[server.origin()], "http_timeout_ms = 300");
    let version = load(&runtime(BTreeMap::new()), dir.path(), None).unwrap();
    let started = Instant::now();
    let results = probe(
        &version,
        &[json!({"url": format!("{}/slow", server.origin())})],
    );
    assert_eq!(results[0]["kind"], "timeout", "{results:?}");
    assert!(started.elapsed() < Duration::from_millis(300) + SLACK);
}

#[test]
fn a_slow_server_cannot_hold_a_batch_past_its_deadline() {
    let server = Server::spawn();
    // A request timeout far beyond the batch's deadline of 500 ms.
    let limits = "batch_deadline_ms = 500\nbatch_deadline_max_ms = 500\nhttp_timeout_ms = 60000";
    let dir = probe_folder(&[server.origin()], limits);
    let version = load(&runtime(BTreeMap::new()), dir.path(), None).unwrap();
    for path in ["/slow", "/drip"] {
        let services = PluginServices::new("http-probe", KvStore::default(), 100, None);
        let mut instance = version.instantiate(services).unwrap();
        instance.init(&[]).unwrap();
        let started = Instant::now();
        let url = format!("{}{path}", server.origin());
        let result = instance.on_batch(&batch(&[json!({"url": url})]));
        let elapsed = started.elapsed();
        assert!(
            elapsed < Duration::from_millis(500) + SLACK,
            "{path}: {elapsed:?}"
        );
        // Either the request failed at the deadline and the plugin went on (then the CPU
        // deadline stopped it on its way back), or the call was stopped.
        if let Err(failure) = result {
            assert_eq!(
                failure.reason,
                FailureReason::Limit(LimitHit::CpuDeadline),
                "{failure:?}"
            );
        }
    }
}

#[test]
fn a_response_over_the_cap_fails_the_request() {
    let server = Server::spawn();
    let dir = probe_folder(&[server.origin()], "max_http_response_bytes = 1000");
    let version = load(&runtime(BTreeMap::new()), dir.path(), None).unwrap();
    let origin = server.origin();
    let results = probe(
        &version,
        &[
            json!({"url": format!("{origin}/big")}),
            json!({"url": format!("{origin}/small")}),
        ],
    );
    assert_eq!(results[0]["kind"], "too-large", "{results:?}");
    assert_eq!(results[1]["status"], 200, "{results:?}");
}

#[test]
fn requests_over_the_count_are_denied_and_queries_make_none() {
    let server = Server::spawn();
    let dir = probe_folder(&[server.origin()], "max_http_requests = 2");
    let version = load(&runtime(BTreeMap::new()), dir.path(), None).unwrap();
    let url = format!("{}/n", server.origin());
    let results = probe(
        &version,
        &[
            json!({"url": url}),
            json!({"url": url}),
            json!({"url": url}),
        ],
    );
    assert_eq!(results[0]["status"], 200, "{results:?}");
    assert_eq!(results[1]["status"], 200, "{results:?}");
    assert_eq!(results[2]["kind"], "denied", "{results:?}");
    // The count is per call: the next batch may make requests again.
    assert_eq!(probe(&version, &[json!({"url": url})])[0]["status"], 200);
    // Queries may not make requests at all.
    let services = PluginServices::new("http-probe", KvStore::default(), 100, None);
    let mut instance = version.instantiate(services).unwrap();
    instance.init(&[]).unwrap();
    let answer = instance.query("fetch", &[("url".into(), url)]).unwrap();
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["kind"], "denied", "{answer}");
    assert_eq!(server.seen.lock().unwrap().len(), 3);
}

#[test]
fn an_ungranted_http_target_refuses_the_load() {
    let dir = probe_folder(&["https://api.example.org".to_string()], "");
    let manifest = Manifest::load(&dir.path().join("plugin.toml")).unwrap();
    let mut grant = Grant::everything_asked(&manifest).unwrap();
    grant.http = vec!["https://other.example.org".into()];
    let error = load(&runtime(BTreeMap::new()), dir.path(), Some(grant)).unwrap_err();
    assert!(matches!(error, LoadError::NotGranted { .. }), "{error}");
    assert!(
        error.to_string().contains("http https://api.example.org"),
        "{error}"
    );
    // A destination name the operator never declared refuses it too.
    let dir = probe_folder(&["nowhere".to_string()], "");
    let error = load(&runtime(BTreeMap::new()), dir.path(), None).unwrap_err();
    assert!(error.to_string().contains("nowhere"), "{error}");
}

#[test]
fn a_component_importing_wasi_http_without_a_grant_is_refused() {
    let dir = probe_folder(&[], "");
    let error = load(&runtime(BTreeMap::new()), dir.path(), None).unwrap_err();
    assert!(matches!(error, LoadError::Link { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("wasi:http/") && message.contains("`http = [...]`"),
        "{message}"
    );
}

#[test]
fn plugin_run_answers_from_fixtures_and_refuses_the_rest() {
    let dir = probe_folder(&["https://api.example.org".to_string()], "");
    let input = dir.path().join("input.rdata");
    std::fs::write(
        &input,
        "RDATA messages master batch {\"url\":\"https://api.example.org/user/1\"}\n\
         RDATA messages master batch {\"url\":\"https://api.example.org/user/2\"}\n\
         RDATA messages master 1 {\"url\":\"https://evil.example.org/\"}\n",
    )
    .unwrap();
    let fixtures = dir.path().join("fixtures.toml");
    std::fs::write(
        &fixtures,
        "[[fixture]]\nmethod = \"GET\"\nurl = \"https://api.example.org/user/1\"\n\
         body = \"alice\"\nheaders = [[\"content-type\", \"text/plain\"]]\n",
    )
    .unwrap();
    let lines = plugin_run(&[
        dir.path().to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--http-fixtures",
        fixtures.to_str().unwrap(),
    ]);
    let http: Vec<&Value> = lines.iter().filter_map(|l| l.get("http")).collect();
    assert_eq!(http.len(), 3, "{lines:?}");
    assert_eq!(http[0]["status"], 200);
    assert_eq!(http[1]["refused"], "no fixture matches");
    assert!(
        http[2]["refused"]
            .as_str()
            .unwrap()
            .contains("not a granted"),
        "{http:?}"
    );
    let batch = lines.iter().find(|l| l.get("rows").is_some()).unwrap();
    let payloads: Vec<Value> = batch["effects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| serde_json::from_str(e["notify"]["payload"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(payloads[0]["body"], "alice", "{payloads:?}");
    assert_eq!(payloads[1]["kind"], "denied");
    assert_eq!(payloads[2]["kind"], "denied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_keeps_going_when_a_plugin_is_denied_a_request() {
    use streamhost_integration_tests::plugins::{PluginFolder, grants_for};
    use streamhost_integration_tests::{TestWriter, spawn_plugin_reader, wait_until};

    let server = Server::spawn();
    let origin = server.origin();
    let writer = TestWriter::spawn(&["messages"]).await;
    let folder = PluginFolder::with(&["http-probe"]);
    folder.edit_manifest("http-probe", |text| {
        text.replace("\"http://127.0.0.1\"", &format!("{origin:?}"))
            + "[limits]\nbatch_deadline_ms = 2000\n"
    });
    let mut grants = grants_for(&["http-probe"]);
    let grant = grants.get_mut("http-probe").unwrap();
    grant.http = vec!["*".into()];
    grant.limits.as_mut().unwrap().batch_deadline_ms = 2000;
    let reader = spawn_plugin_reader(&writer, "r", &folder, grants).await;
    writer
        .append(
            "messages",
            &[
                json!({"url": format!("{origin}/first")}),
                json!({"url": format!("http://localhost:{}/denied", server.port)}),
            ],
        )
        .await;
    writer
        .append("messages", &[json!({"url": format!("{origin}/second")})])
        .await;
    let seen = server.seen.clone();
    wait_until(Duration::from_secs(60), "the second request", || {
        let seen = seen.clone();
        async move {
            seen.lock()
                .unwrap()
                .iter()
                .any(|(path, _)| path == "/second")
        }
    })
    .await;
    let plugin = reader.plugin("http-probe").await;
    assert_ne!(plugin["state"], "quarantined", "{plugin}");
    assert!(
        plugin["reports"].as_array().is_none_or(|r| r.is_empty()),
        "{plugin}"
    );
    let paths: Vec<String> = server
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.0.clone())
        .collect();
    assert_eq!(paths, ["/first", "/second"]);
}
