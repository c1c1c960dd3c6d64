//! `streamhost admin` as an operator runs it: the real binary against a real reader process
//! running example plugins (`stream-stats`, and `evil` skipping every batch so it has dead
//! letters): each subcommand's table and `--json`, a quarantine and its resume, the errors an
//! operator meets (no token, a wrong one, an unknown plugin, a reader that is not there), and
//! an `https://` reader.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use streamhost_integration_tests::certs::TestCa;
use streamhost_integration_tests::plugins::PluginFolder;
use streamhost_integration_tests::process::Process;
use streamhost_integration_tests::{TestReader, TestWriter, wait_until};
use streamhost_server::client::ApiClient;

const BINARY: &str = env!("CARGO_BIN_EXE_streamhost-under-test");
const TOKEN: &str = "cli-admin-token";
const WAIT: Duration = Duration::from_secs(60);

/// A writer, and a reader process with the two plugins, its admin API at `url`.
struct Deployment {
    writer: TestWriter,
    _reader: Process,
    url: String,
    dir: tempfile::TempDir,
    _folder: PluginFolder,
}

impl Deployment {
    async fn start() -> Deployment {
        let writer = TestWriter::spawn(&["messages"]).await;
        let folder = PluginFolder::with(&["stream-stats", "evil"]);
        let dir = tempfile::tempdir().unwrap();
        let quote = |s: &str| toml::Value::String(s.to_owned()).to_string();
        let config = format!(
            "[reader]\n\
             writer = {writer}\n\
             writer_http = {writer_http}\n\
             http = \"127.0.0.1:0\"\n\
             data = {data}\n\
             name = \"admin-cli\"\n\
             \n\
             [reader.plugins]\n\
             dir = {plugins}\n\
             admin_token = {TOKEN:?}\n\
             retry_backoff_ms = 20\n\
             compile_cache = {cache}\n\
             \n\
             [reader.plugins.grants.stream-stats]\n\
             streams = [\"*\"]\n\
             caches = [\"count\"]\n\
             kv = true\n\
             \n\
             [reader.plugins.grants.evil]\n\
             streams = [\"messages\"]\n\
             caches = [\"big\", \"evil\"]\n\
             topics = [\"evil\"]\n\
             kv = true\n\
             config = {{ mode = \"skip\" }}\n",
            writer = quote(&writer.replication_addr().to_string()),
            writer_http = quote(&writer.url()),
            data = quote(dir.path().join("reader").to_str().unwrap()),
            plugins = quote(folder.path().to_str().unwrap()),
            cache = quote(concat!(env!("OUT_DIR"), "/compiled")),
        );
        let path = dir.path().join("reader.toml");
        std::fs::write(&path, config).unwrap();
        let log = dir.path().join("reader.log");
        let reader = Process::spawn_logging(
            BINARY,
            &["reader", "--config", path.to_str().unwrap()],
            &log,
        )
        .await;
        let url = format!("http://{}", reader.addr("http"));
        Deployment {
            writer,
            _reader: reader,
            url,
            dir,
            _folder: folder,
        }
    }

    /// A client of the reader's admin API, to check what the command line says.
    fn api(&self) -> ApiClient {
        ApiClient::new(&self.url).with_bearer(TOKEN)
    }

    /// `streamhost admin ARGS --url URL` with the token in the environment.
    async fn admin(&self, args: &[&str]) -> Run {
        let mut all = args.to_vec();
        all.extend(["--url", &self.url]);
        admin(&all, &[("STREAMHOST_ADMIN_TOKEN", TOKEN)]).await
    }

    /// Writes `text` to a file in the deployment's folder and returns its path.
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// What one run of the binary did.
#[derive(Debug)]
struct Run {
    ok: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Stdout, after checking the run succeeded and said nothing on stderr.
    fn out(&self) -> &str {
        assert!(self.ok && self.stderr.is_empty(), "{self:#?}");
        &self.stdout
    }

    /// Stdout as JSON, after checking the run succeeded.
    fn json(&self) -> Value {
        serde_json::from_str(self.out()).unwrap_or_else(|e| panic!("not JSON ({e}): {self:#?}"))
    }

    /// Stderr, after checking the run failed with status 1 and printed nothing on stdout.
    fn error(&self) -> &str {
        assert!(
            !self.ok && self.code == Some(1) && self.stdout.is_empty(),
            "{self:#?}"
        );
        &self.stderr
    }
}

/// `streamhost admin ARGS` with only `env` of the admin variables set.
async fn admin(args: &[&str], env: &[(&str, &str)]) -> Run {
    let output = tokio::time::timeout(
        WAIT,
        tokio::process::Command::new(BINARY)
            .arg("admin")
            .args(args)
            .env_remove("STREAMHOST_ADMIN_TOKEN")
            .env_remove("STREAMHOST_ADMIN_URL")
            .envs(env.iter().copied())
            .env("NO_COLOR", "1")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("streamhost admin answers within a minute")
    .expect("run streamhost admin");
    Run {
        ok: output.status.success(),
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The table line that starts with `first`.
fn line_of<'a>(table: &'a str, first: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(first))
        .unwrap_or_else(|| panic!("no line for {first} in:\n{table}"))
}

/// Appends one message and waits until `evil` skipped it and `stream-stats` counted it.
async fn one_message(deployment: &Deployment, n: usize) -> i64 {
    let token = deployment
        .writer
        .append(
            "messages",
            &[json!({"room": "!a:x", "sender": "@a:x", "body": format!("m{n}")})],
        )
        .await[0]
        .0;
    let api = deployment.api();
    wait_until(WAIT, "both plugins to pass the row", || async {
        let path = "/v1/admin/plugins/evil/dead-letters?limit=1";
        let skipped = api
            .get_json(path)
            .await
            .is_ok_and(|l| l[0]["to_token"] == token);
        let plugins = api.get_json("/v1/admin/plugins").await.unwrap_or_default();
        let counted = plugins.as_array().is_some_and(|list| {
            list.iter().any(|p| {
                p["name"] == "stream-stats" && p["lag"] == 0 && p["rows"].as_u64() > Some(0)
            })
        });
        skipped && counted
    })
    .await;
    token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_subcommand_prints_a_table_or_the_apis_json() {
    let deployment = Deployment::start().await;
    one_message(&deployment, 0).await;
    let last = one_message(&deployment, 1).await;

    let table = deployment.admin(&["plugins"]).await;
    let table = table.out();
    assert!(
        table.starts_with("NAME          STATE    VERSION       LAG  BATCHES"),
        "{table}"
    );
    let stats = line_of(table, "stream-stats");
    let evil = line_of(table, "evil");
    assert!(
        stats.contains(" running ") && evil.contains(" running "),
        "{table}"
    );
    let dead: Vec<&str> = evil.split_whitespace().collect();
    assert_eq!(dead[7], "2", "evil's dead letters: {table}");
    let listed = deployment.admin(&["plugins", "--json"]).await.json();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["evil", "stream-stats"]);
    let version = listed[1]["version"].as_str().unwrap().to_owned();
    assert!(stats.contains(&version[..12]), "the short version: {table}");

    let detail = deployment.admin(&["plugin", "stream-stats"]).await;
    let detail = detail.out();
    for expected in [
        "name          stream-stats\n",
        "state         running\n",
        &format!("version       {version}\n"),
        "failures      none\n",
        "cursors\n  STREAM    INSTANCE  CURSOR  READER\n",
    ] {
        assert!(detail.contains(expected), "{expected:?} in:\n{detail}");
    }
    assert!(
        line_of(detail, "messages").contains(&format!("master    {last}")),
        "{detail}"
    );
    let one = deployment
        .admin(&["plugin", "stream-stats", "--json"])
        .await
        .json();
    assert_eq!(
        (&one["name"], &one["version"]),
        (&json!("stream-stats"), &json!(version))
    );

    let letters = deployment.admin(&["dead-letters", "evil"]).await;
    let letters = letters.out();
    assert!(
        letters.starts_with("STREAM    INSTANCE  TOKENS"),
        "{letters}"
    );
    let newest = letters.lines().nth(1).unwrap();
    assert!(
        newest.starts_with(&format!("messages  master    ({}, {last}]", last - 1)),
        "{letters}"
    );
    assert!(
        newest.ends_with(&format!("evil skips ({}, {last}]", last - 1)),
        "{letters}"
    );
    assert_eq!(
        letters.lines().count(),
        3,
        "a header and two letters: {letters}"
    );
    let one = deployment
        .admin(&["dead-letters", "evil", "--limit", "1", "--json"])
        .await
        .json();
    assert_eq!(one.as_array().unwrap().len(), 1, "{one}");
    assert_eq!(one[0]["to_token"], last);
    let none = deployment.admin(&["dead-letters", "stream-stats"]).await;
    assert_eq!(none.out(), "no dead letters for stream-stats\n");

    let status = deployment.admin(&["status"]).await;
    let status = status.out();
    assert!(
        status.starts_with("reader admin-cli: connected to "),
        "{status}"
    );
    let messages = line_of(status, "messages");
    assert!(
        messages.starts_with(&format!("messages  master    {last}")),
        "{status}"
    );
    assert!(line_of(status, "evil").contains("running"), "{status}");
    let json = deployment.admin(&["status", "--json"]).await.json();
    assert_eq!(json["name"], "admin-cli");
    assert_eq!(json["connection"]["state"], "connected");

    let reloaded = deployment.admin(&["reload", "stream-stats"]).await;
    assert_eq!(
        reloaded.out(),
        format!("reloaded stream-stats: version {version}\n")
    );
    let reloaded = deployment
        .admin(&["reload", "stream-stats", "--json"])
        .await
        .json();
    assert_eq!(reloaded, json!({"sha256": version}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantine_from_the_command_line_holds_the_plugin_until_resume() {
    let deployment = Deployment::start().await;
    one_message(&deployment, 0).await;

    let done = deployment
        .admin(&[
            "quarantine",
            "stream-stats",
            "--reason",
            "reindexing the push target",
        ])
        .await;
    assert_eq!(
        done.out(),
        "quarantined stream-stats (by operator: reindexing the push target); \
         `streamhost admin resume stream-stats` lifts it\n"
    );
    let table = deployment.admin(&["plugins"]).await;
    let line = line_of(table.out(), "stream-stats");
    assert!(
        line.contains(" quarantined ") && line.ends_with("by operator: reindexing the push target"),
        "{line}"
    );
    let again = deployment.admin(&["quarantine", "stream-stats"]).await;
    let error = again.error();
    assert!(
        error.contains("plugin stream-stats is already quarantined: by operator: reindexing")
            && error.contains("(409)"),
        "{error}"
    );

    // Rows written meanwhile wait for it.
    let token = deployment
        .writer
        .append(
            "messages",
            &[json!({"room": "!a:x", "sender": "@a:x", "body": "while away"})],
        )
        .await[0]
        .0;
    let api = deployment.api();
    wait_until(WAIT, "the reader to apply the row", || async {
        let status = api.get_json("/v1/status").await.unwrap_or_default();
        status["streams"][0]["position"] == token
    })
    .await;
    let held = deployment
        .admin(&["plugin", "stream-stats", "--json"])
        .await
        .json();
    assert_eq!(
        (&held["state"], &held["lag"]),
        (&json!("quarantined"), &json!(1)),
        "{held}"
    );

    let resumed = deployment.admin(&["resume", "stream-stats"]).await;
    assert_eq!(
        resumed.out(),
        "resumed stream-stats: it runs again from its cursor\n"
    );
    wait_until(
        WAIT,
        "stream-stats to catch up after the resume",
        || async {
            let detail = deployment
                .admin(&["plugin", "stream-stats", "--json"])
                .await
                .json();
            detail["state"] == "running" && detail["lag"] == 0
        },
    )
    .await;
    let again = deployment.admin(&["resume", "stream-stats"]).await;
    let error = again.error();
    assert!(
        error.contains("plugin stream-stats is not quarantined (409)"),
        "{error}"
    );

    // The same round trip in JSON, with no reason.
    let json = deployment
        .admin(&["quarantine", "stream-stats", "--json"])
        .await
        .json();
    assert_eq!(json, json!({"quarantined": true, "reason": "by operator"}));
    let json = deployment
        .admin(&["resume", "stream-stats", "--json"])
        .await
        .json();
    assert_eq!(json, json!({"resumed": true}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_say_which_token_which_plugin_and_which_reader() {
    let deployment = Deployment::start().await;
    let url = deployment.url.as_str();

    let none = admin(&["plugins", "--url", url], &[]).await;
    let error = none.error();
    assert!(
        error.contains("no admin token: set STREAMHOST_ADMIN_TOKEN or pass --token-file"),
        "{error}"
    );

    let wrong = admin(
        &["plugins", "--url", url],
        &[("STREAMHOST_ADMIN_TOKEN", "bad-7f3a")],
    )
    .await;
    let error = wrong.error();
    assert!(
        error.contains(&format!(
            "the reader at {url} refused the token from STREAMHOST_ADMIN_TOKEN (401)"
        )),
        "{error}"
    );
    assert!(
        !error.contains("bad-7f3a"),
        "the token is never printed: {error}"
    );

    let file = deployment.file("wrong-token", "also-wrong\n");
    let file = file.to_str().unwrap();
    let wrong = admin(&["plugins", "--url", url, "--token-file", file], &[]).await;
    assert!(
        wrong
            .error()
            .contains(&format!("refused the token from the file {file} (401)")),
        "{wrong:#?}"
    );
    // The file beats the environment.
    let right = deployment.file("token", &format!("{TOKEN}\n"));
    let run = admin(
        &[
            "plugins",
            "--url",
            url,
            "--token-file",
            right.to_str().unwrap(),
        ],
        &[("STREAMHOST_ADMIN_TOKEN", "wrong")],
    )
    .await;
    assert!(run.out().starts_with("NAME"), "{run:#?}");
    // The URL from the environment.
    let run = admin(
        &["plugins"],
        &[
            ("STREAMHOST_ADMIN_TOKEN", TOKEN),
            ("STREAMHOST_ADMIN_URL", url),
        ],
    )
    .await;
    assert!(run.out().starts_with("NAME"), "{run:#?}");

    for args in [
        &["resume", "nope"][..],
        &["quarantine", "nope"],
        &["dead-letters", "nope"],
        &["reload", "nope"],
    ] {
        let run = deployment.admin(args).await;
        let error = run.error();
        assert!(
            error.contains(&format!("no plugin named nope (404 from {url})")),
            "{args:?}: {error}"
        );
    }
    let run = deployment.admin(&["plugin", "nope"]).await;
    assert!(
        run.error()
            .contains(&format!("the reader at {url} has no plugin named nope")),
        "{run:#?}"
    );

    // Nothing listens on a port just freed.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let gone = format!("http://{free}");
    let run = admin(
        &["plugins", "--url", &gone],
        &[("STREAMHOST_ADMIN_TOKEN", TOKEN)],
    )
    .await;
    assert!(
        run.error()
            .contains(&format!("cannot reach the reader at {gone}")),
        "{run:#?}"
    );

    let run = admin(
        &["plugins", "--url", "ftp://x"],
        &[("STREAMHOST_ADMIN_TOKEN", TOKEN)],
    )
    .await;
    assert!(
        run.error()
            .contains("must be http://HOST:PORT or https://HOST:PORT"),
        "{run:#?}"
    );
    // A token is never a flag's value, and a limit is bounded.
    for args in [
        &["plugins", "--token", TOKEN][..],
        &["dead-letters", "evil", "--limit", "0"],
    ] {
        let run = deployment.admin(args).await;
        assert_eq!((run.ok, run.code), (false, Some(2)), "{args:?}: {run:#?}");
    }
    assert_reader_still_answers(&deployment).await;
}

/// The reader served every request above and runs on.
async fn assert_reader_still_answers(deployment: &Deployment) {
    let status = deployment.api().get_json("/v1/status").await.unwrap();
    assert_eq!(status["name"], "admin-cli");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_reader_is_reached_with_its_ca_in_ssl_cert_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "ca");
    let writer = TestWriter::spawn(&["messages"]).await;
    let server = ca.server_tls(dir.path(), "reader", None);
    let reader =
        TestReader::spawn_with(&writer, "https-reader", None, |c| c.http.tls = Some(server)).await;
    let url = format!("https://{}", reader.reader().http_addr());
    let ca_file = ca.cert_file.to_str().unwrap();
    let run = admin(&["status", "--url", &url], &[("SSL_CERT_FILE", ca_file)]).await;
    assert!(
        run.out().starts_with("reader https-reader: connected to "),
        "{run:#?}"
    );
    // Without the CA the certificate is not trusted, and the error says where it failed.
    let run = admin(
        &["status", "--url", &url],
        &[("SSL_CERT_FILE", "/dev/null")],
    )
    .await;
    assert!(
        run.error()
            .contains(&format!("cannot reach the reader at {url}")),
        "{run:#?}"
    );
}
