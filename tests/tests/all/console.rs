//! The live web console (`docs/console.md`) in headless Chromium, against a real writer and a
//! real reader running plugins, both as processes: the page shows the running figures, a
//! plugin's quarantine within a second of the click, and its buttons work; a wrong or missing
//! token shows an error and no data. Screenshots go to `target/artifacts/console/`.
//!
//! Needs Chromium and chromedriver (`scripts/install-browser`); fails, not skips, without them.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use streamhost_integration_tests::browser::{Browser, artifacts_dir};
use streamhost_integration_tests::plugins::PluginFolder;
use streamhost_integration_tests::process::Process;
use streamhost_integration_tests::wait_until;
use streamhost_server::client::ApiClient;

const PROGRAM: &str = env!("CARGO_BIN_EXE_streamhost-under-test");
const WRITER_READ: &str = "console-writer-read";
const READER_READ: &str = "console-reader-read";
const ADMIN: &str = "console-admin";
const READER_NAME: &str = "console-reader";

/// A reader following `writer`, with the notifier and stream-stats plugins, an admin token and
/// a read token.
fn reader_toml(dir: &Path, writer: &Process, plugins: &Path) -> std::path::PathBuf {
    let quote = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let text = format!(
        "[reader]\n\
         name = {name}\n\
         writer = {writer}\n\
         writer_http = {writer_http}\n\
         http = \"127.0.0.1:0\"\n\
         data = {data}\n\
         read_token = {READER_READ:?}\n\
         \n\
         [reader.plugins]\n\
         dir = {plugins}\n\
         admin_token = {ADMIN:?}\n\
         compile_cache = {cache}\n\
         \n\
         [reader.plugins.grants.notifier]\n\
         streams = [\"messages\"]\n\
         caches = [\"sent\"]\n\
         topics = [\"room:*\", \"user:*\"]\n\
         \n\
         [reader.plugins.grants.stream-stats]\n\
         streams = [\"*\"]\n\
         caches = [\"count\"]\n\
         kv = true\n",
        name = quote(READER_NAME),
        writer = quote(&writer.addr("replication").to_string()),
        writer_http = quote(&format!("http://{}", writer.addr("http"))),
        data = quote(dir.join("reader").to_str().unwrap()),
        plugins = quote(plugins.to_str().unwrap()),
        cache = quote(concat!(env!("OUT_DIR"), "/compiled")),
    );
    let path = dir.join("reader.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Appends a few messages every 50 ms until `stop`.
fn keep_appending(writer: ApiClient, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            let rows: Vec<Value> = (0..5)
                .map(|i| {
                    n += 1;
                    // Markup in a payload must reach the page as text.
                    json!({"room": "!console:x", "sender": "@a:x", "body": format!("<b>m{n}.{i}</b>"), "mentions": ["@b:x"]})
                })
                .collect();
            let body = Bytes::from(serde_json::to_vec(&rows).unwrap());
            writer.append("messages", body, false).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

/// A number as the page prints it (`12,345`).
fn number(text: &str) -> i64 {
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {text:?}"))
}

/// Waits until the element at `selector` reads `expected`; how long it took.
async fn wait_for_text(browser: &Browser, selector: &str, expected: &str) -> Duration {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(10);
    loop {
        let text = browser.text_of(selector).await;
        if text.as_deref() == Some(expected) {
            return started.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "{selector} never read {expected:?} (last {text:?})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Loads `url` afresh, without the token the tab kept from an earlier visit.
async fn open(browser: &Browser, url: &str) {
    // (A `data:` or `about:` page has no storage to clear.)
    let clear = "try { sessionStorage.clear(); } catch (e) {}";
    browser.execute(clear, json!([])).await;
    // Only a fragment changing would not load the page again.
    browser.navigate("about:blank").await;
    browser.navigate(url).await;
}

/// Loads `url` (a console with `#token=...` or none) and checks that the page says access was
/// refused and shows no data.
async fn refused(browser: &Browser, url: &str) {
    open(browser, url).await;
    wait_until(Duration::from_secs(10), "the access error", || async {
        browser
            .text_of("#error")
            .await
            .is_some_and(|t| t.contains("Access refused (401"))
    })
    .await;
    let shown = browser
        .execute(
            "return {data: document.getElementById('data').hidden, \
                     rows: document.querySelectorAll('tbody tr').length, \
                     plugins: document.querySelectorAll('.plugin').length, \
                     login: document.getElementById('login').hidden};",
            json!([]),
        )
        .await;
    assert_eq!(
        shown,
        json!({"data": true, "rows": 0, "plugins": 0, "login": false}),
        "{url}"
    );
}

/// The admin API's view of plugin `name`.
async fn plugin(admin: &ApiClient, name: &str) -> Value {
    let plugins = admin.get_json("/v1/admin/plugins").await.unwrap();
    plugins
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no plugin {name} in {plugins}"))
}

/// Issue 16's must-show: the console in headless Chromium, its figures, its buttons and a
/// quarantine shown within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_a_running_deployment_and_its_buttons_steer_the_plugins() {
    let dir = tempfile::tempdir().unwrap();
    let writer_data = dir.path().join("writer");
    let writer = Process::spawn_with_env(
        PROGRAM,
        &[
            "writer",
            "--http",
            "127.0.0.1:0",
            "--replication",
            "127.0.0.1:0",
            "--data",
            writer_data.to_str().unwrap(),
            "--stream",
            "messages",
        ],
        &[("STREAMHOST_READ_TOKEN", Path::new(WRITER_READ))],
    )
    .await;
    let writer_url = format!("http://{}", writer.addr("http"));
    let folder = PluginFolder::with(&["notifier", "stream-stats"]);
    let config = reader_toml(dir.path(), &writer, folder.path());
    let reader = Process::spawn(PROGRAM, &["reader", "--config", config.to_str().unwrap()]).await;
    let reader_url = format!("http://{}", reader.addr("http"));
    let admin = ApiClient::new(&reader_url).with_bearer(ADMIN);
    let stop = Arc::new(AtomicBool::new(false));
    let appender = keep_appending(ApiClient::new(&writer_url), stop.clone());
    let shots = artifacts_dir();
    let browser = Browser::start(1280, 1100).await;

    // No token, a wrong one, and the reader's read token: refused, nothing shown.
    refused(&browser, &format!("{reader_url}/console")).await;
    refused(&browser, &format!("{reader_url}/console#token=wrong")).await;
    browser
        .screenshot(&shots.join("reader-unauthorized.png"))
        .await;
    refused(
        &browser,
        &format!("{reader_url}/console#token={READER_READ}"),
    )
    .await;

    // The admin token: the figures run.
    open(&browser, &format!("{reader_url}/console#token={ADMIN}")).await;
    let position = "#streams tr[data-key='messages/master'] .position";
    wait_until(Duration::from_secs(30), "the stream's position", || async {
        browser
            .text_of(position)
            .await
            .is_some_and(|t| number(&t) > 0)
    })
    .await;
    let href = browser.execute("return location.href;", json!([])).await;
    assert!(
        !href.as_str().unwrap().contains("token"),
        "the token left the address bar: {href}"
    );
    // The page's position lies between the API's before and after it, and rises.
    let api_position = || async {
        let status = admin.get_json("/v1/status").await.unwrap();
        status["streams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["stream"] == "messages")
            .map(|s| s["position"].as_i64().unwrap())
            .unwrap()
    };
    // The lag in seconds is shown beside the lag in tokens: a small number while the reader
    // keeps up with a steady trickle of appends (never the time since it was last idle).
    let lag_seconds = browser
        .text_of("#streams tr[data-key='messages/master'] .lag-seconds")
        .await
        .expect("a lag in seconds");
    let lag_seconds: f64 = lag_seconds.parse().expect("a number of seconds");
    assert!((0.0..5.0).contains(&lag_seconds), "lag {lag_seconds} s");
    let before = api_position().await;
    // A snapshot taken after `before` reaches the page within two periods.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let shown = number(&browser.text_of(position).await.unwrap());
    let after = api_position().await;
    assert!(
        before <= shown && shown <= after,
        "page {shown}, API {before}..{after}"
    );
    wait_until(Duration::from_secs(10), "the position to rise", || async {
        browser
            .text_of(position)
            .await
            .is_some_and(|t| number(&t) > shown)
    })
    .await;
    let state = "[data-plugin='notifier'] .state";
    wait_for_text(&browser, state, "running").await;
    wait_until(Duration::from_secs(10), "a notification listed", || async {
        browser
            .text_of("#notifications tbody tr td:nth-child(3)")
            .await
            .is_some_and(|t| t.starts_with("room:!console:x") || t.starts_with("user:@b:x"))
    })
    .await;
    let payloads = browser
        .execute(
            "return {tags: document.querySelectorAll('#notifications b').length, \
                     text: document.querySelector('#notifications td.payload').textContent};",
            json!([]),
        )
        .await;
    assert_eq!(payloads["tags"], 0, "{payloads}");
    assert!(
        payloads["text"].as_str().unwrap().contains("<b>m"),
        "{payloads}"
    );
    let upstream = browser.text_of("#upstream").await.unwrap();
    assert!(upstream.contains("connected"), "{upstream}");
    browser.screenshot(&shots.join("reader.png")).await;

    // Quarantine: shown within a second of the click, and the API agrees.
    let quarantine = browser
        .find("[data-plugin='notifier'] button.quarantine")
        .await
        .expect("the quarantine button");
    let clicked = Instant::now();
    browser.click(&quarantine).await;
    wait_for_text(&browser, state, "quarantined").await;
    let took = clicked.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "quarantine shown after {took:?}"
    );
    let api = plugin(&admin, "notifier").await;
    assert_eq!(api["state"], "quarantined", "{api}");
    let reason = browser
        .text_of("[data-plugin='notifier'] .reason")
        .await
        .unwrap();
    assert!(reason.contains("by operator"), "{reason}");
    browser
        .screenshot(&shots.join("reader-quarantined.png"))
        .await;

    // Resume: running again.
    let resume = browser
        .find("[data-plugin='notifier'] button.resume")
        .await
        .expect("the resume button");
    browser.click(&resume).await;
    wait_for_text(&browser, state, "running").await;
    assert_eq!(plugin(&admin, "notifier").await["state"], "running");

    // A quarantine made elsewhere (the admin API) reaches the page by its event stream.
    let quarantined = Instant::now();
    let (code, body) = admin
        .send(
            Method::POST,
            "/v1/admin/plugins/notifier/quarantine",
            Bytes::from_static(br#"{"reason":"from the API"}"#),
        )
        .await
        .unwrap();
    assert_eq!(code, StatusCode::OK, "{body:?}");
    wait_for_text(&browser, state, "quarantined").await;
    let took = quarantined.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "quarantine shown after {took:?}"
    );
    browser.click(&resume).await;
    wait_for_text(&browser, state, "running").await;

    // Reload: the reload count goes up on the page and in the API.
    let reloads = "[data-plugin='notifier'] dd.reloads";
    let before = number(&browser.text_of(reloads).await.unwrap());
    let reload = browser
        .find("[data-plugin='notifier'] button.reload")
        .await
        .expect("the reload button");
    browser.click(&reload).await;
    wait_for_text(&browser, reloads, &(before + 1).to_string()).await;
    assert_eq!(
        plugin(&admin, "notifier").await["reloads"],
        json!(before + 1)
    );
    wait_until(Duration::from_secs(10), "the reload's notice", || async {
        browser
            .text_of("#notice")
            .await
            .is_some_and(|t| t == "reload notifier: done")
    })
    .await;

    // The writer's console, refused a wrong token, then given the right one in its form: its
    // stream and the reader, by NAME.
    refused(&browser, &format!("{writer_url}/console#token=wrong")).await;
    let submit = "document.getElementById('token').value = arguments[0]; \
                  document.getElementById('login').requestSubmit();";
    browser.execute(submit, json!([WRITER_READ])).await;
    wait_until(Duration::from_secs(10), "the reader by NAME", || async {
        browser
            .text_of("#readers .peer-name")
            .await
            .is_some_and(|t| t == READER_NAME)
    })
    .await;
    let writer_api = ApiClient::new(&writer_url).with_bearer(WRITER_READ);
    let api_position = || async {
        let streams = writer_api.get_json("/v1/streams").await.unwrap();
        streams["streams"][0]["position"].as_i64().unwrap()
    };
    let before = api_position().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let shown = number(
        &browser
            .text_of("#streams tr[data-key='messages'] .position")
            .await
            .unwrap(),
    );
    let after = api_position().await;
    assert!(
        before <= shown && shown <= after,
        "page {shown}, API {before}..{after}"
    );
    // A second of history for the rate and the chart.
    wait_until(Duration::from_secs(10), "a rate above zero", || async {
        browser
            .text_of("#streams tr[data-key='messages'] .rate")
            .await
            .is_some_and(|t| number(&t) > 0)
    })
    .await;
    browser.screenshot(&shots.join("writer.png")).await;

    browser.close().await;
    stop.store(true, Ordering::Relaxed);
    appender.await.unwrap();
    assert!(reader.terminate().await.success());
    assert!(writer.terminate().await.success());
}

/// The data endpoints without a browser: the reader's read token opens `/v1/status` but not
/// the console, the admin token opens both; the writer's console takes its read or write
/// token; an open console stream does not hold up a graceful shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_data_takes_the_admin_token_and_streams_end_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let writer_data = dir.path().join("writer");
    let writer = Process::spawn_with_env(
        PROGRAM,
        &[
            "writer",
            "--http",
            "127.0.0.1:0",
            "--replication",
            "127.0.0.1:0",
            "--data",
            writer_data.to_str().unwrap(),
            "--stream",
            "messages",
        ],
        &[
            ("STREAMHOST_READ_TOKEN", Path::new(WRITER_READ)),
            ("STREAMHOST_WRITE_TOKEN", Path::new("console-write")),
        ],
    )
    .await;
    let writer_url = format!("http://{}", writer.addr("http"));
    let folder = PluginFolder::with(&["stream-stats"]);
    let config = reader_toml(dir.path(), &writer, folder.path());
    let reader = Process::spawn(PROGRAM, &["reader", "--config", config.to_str().unwrap()]).await;
    let reader_url = format!("http://{}", reader.addr("http"));

    let status = |url: &str, token: Option<&str>, path: &str| {
        let client = match token {
            Some(token) => ApiClient::new(url).with_bearer(token),
            None => ApiClient::new(url),
        };
        let path = path.to_owned();
        async move {
            client
                .send(Method::GET, &path, Bytes::new())
                .await
                .unwrap()
                .0
        }
    };
    for path in ["/console/snapshot", "/console/events"] {
        assert_eq!(
            status(&reader_url, None, path).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(&reader_url, Some(READER_READ), path).await,
            StatusCode::UNAUTHORIZED,
            "the read token does not open the reader's console"
        );
        assert_eq!(
            status(&writer_url, None, path).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(&writer_url, Some(ADMIN), path).await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        status(&reader_url, Some(READER_READ), "/v1/status").await,
        StatusCode::OK
    );
    assert_eq!(
        status(&reader_url, Some(ADMIN), "/console/snapshot").await,
        StatusCode::OK
    );
    for token in [WRITER_READ, "console-write"] {
        assert_eq!(
            status(&writer_url, Some(token), "/console/snapshot").await,
            StatusCode::OK
        );
    }
    // The page itself is open and holds nothing.
    let (code, page) = ApiClient::new(&reader_url)
        .send(Method::GET, "/console", Bytes::new())
        .await
        .unwrap();
    assert_eq!(code, StatusCode::OK);
    assert!(!String::from_utf8_lossy(&page).contains(READER_NAME));
    let snapshot = ApiClient::new(&reader_url)
        .with_bearer(ADMIN)
        .get_json("/console/snapshot")
        .await
        .unwrap();
    assert_eq!(snapshot["role"], "reader");
    assert_eq!(snapshot["name"], READER_NAME);
    assert_eq!(snapshot["plugins"][0]["name"], "stream-stats");

    // An open event stream on each: both processes still stop at once on SIGTERM.
    let mut streams = Vec::new();
    for (url, token) in [(&reader_url, ADMIN), (&writer_url, WRITER_READ)] {
        let addr = url.trim_start_matches("http://").to_owned();
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let request = format!(
            "GET /console/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"
        );
        tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes())
            .await
            .unwrap();
        let mut seen = Vec::new();
        while !String::from_utf8_lossy(&seen).contains("event: snapshot") {
            let mut buf = [0u8; 4096];
            let n = tokio::time::timeout(
                Duration::from_secs(5),
                tokio::io::AsyncReadExt::read(&mut stream, &mut buf),
            )
            .await
            .expect("an event within 5 s")
            .unwrap();
            assert!(n > 0, "the stream closed early");
            seen.extend_from_slice(&buf[..n]);
        }
        assert!(String::from_utf8_lossy(&seen).contains("text/event-stream"));
        streams.push(stream);
    }
    for process in [reader, writer] {
        let started = Instant::now();
        assert!(process.terminate().await.success());
        // Well within the HTTP server's 5 s grace for requests in flight.
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );
    }
    drop(streams);
}
