//! The hostile-plugin harness: a reader runs as a child process of the real binary (so its
//! resident memory can be measured from `/proc`, and a host bug that copies gigabytes cannot
//! take the test process with it), following a [`TestWriter`] of this process, with a plugin
//! folder, grants and per-plugin configuration. The harness reads the child's resident memory
//! (`VmRSS`, and the kernel's peak `VmHWM`), reads a plugin's state, cursor and last failure
//! through the reader's admin API, and measures a bystander plugin's lag while an offender runs.
//!
//! A watchdog samples the child's resident memory every few milliseconds and kills it with
//! SIGKILL past [`KILL_LIMIT`], so a test of a host that has no bound fails on a machine that
//! is still standing; the peak it saw is kept, and [`HostileReader::peak_resident`] reports it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::Value;
use streamhost_plugin_runtime::Grant;
use streamhost_server::client::ApiClient;

use crate::plugins::PluginFolder;
use crate::process::Process;
use crate::{ADMIN_TOKEN, TestWriter};

/// The resident-memory ceiling of a reader with default settings and two Rust plugins, as
/// `docs/configuration.md` derives it (400 MiB, rounded up): whatever its plugins do, its
/// `VmHWM` stays below this.
pub const RESIDENT_CEILING: u64 = 512 << 20;

/// What a Python or JavaScript plugin adds to [`RESIDENT_CEILING`] (`docs/configuration.md`):
/// its larger memory grant (128 MiB instead of 64) and its compiled interpreter.
pub const INTERPRETED_PLUGIN_EXTRA: u64 = 256 << 20;

/// Resident memory at which the watchdog kills the reader: twice the ceiling, far beyond
/// anything a bounded reader reaches, far below what the machine holds.
pub const KILL_LIMIT: u64 = 2 * RESIDENT_CEILING;

/// How often the watchdog samples the child's resident memory.
const WATCHDOG_PERIOD: Duration = Duration::from_millis(5);

/// How often [`LagWatch`] samples the writer's position and the bystander's cursor.
const LAG_PERIOD: Duration = Duration::from_millis(20);

/// A process's resident memory, from `/proc/<pid>/status`, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resident {
    /// `VmRSS`: resident now.
    pub now: u64,
    /// `VmHWM`: the most it has been resident (the kernel's high-water mark).
    pub peak: u64,
}

/// The resident memory of process `pid`, or `None` when it has exited (or `/proc` cannot be
/// read).
pub fn resident(pid: u32) -> Option<Resident> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |field: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(field))?;
        let value = line[field.len()..].trim().strip_suffix("kB")?.trim();
        value.parse::<u64>().ok().map(|k| k * 1024)
    };
    Some(Resident {
        now: kib("VmRSS:")?,
        peak: kib("VmHWM:")?,
    })
}

/// A TOML string of a path.
fn path_value(path: &Path) -> toml::Value {
    toml::Value::String(path.to_string_lossy().into_owned())
}

/// A list of strings as TOML.
fn strings(items: &[String]) -> toml::Value {
    toml::Value::Array(items.iter().cloned().map(toml::Value::String).collect())
}

/// `grant` as the reader's config file spells it (`[reader.plugins.grants.<name>]`).
pub fn grant_table(grant: &Grant) -> toml::Table {
    let mut table = toml::Table::new();
    table.insert("streams".into(), strings(&grant.streams));
    table.insert("caches".into(), strings(&grant.caches));
    table.insert("topics".into(), strings(&grant.topics));
    table.insert("kv".into(), toml::Value::Boolean(grant.kv));
    table.insert("read_rows".into(), strings(&grant.read_rows));
    if let Some(directory) = &grant.directory {
        table.insert("directory".into(), path_value(directory));
    }
    if let Some(limits) = &grant.limits {
        let limits = toml::Value::try_from(limits).expect("limits serialise as TOML");
        table.insert("limits".into(), limits);
    }
    if let Some(sha256) = &grant.sha256 {
        table.insert("sha256".into(), toml::Value::String(sha256.clone()));
    }
    if let Some(config) = &grant.config {
        table.insert("config".into(), toml::Value::Table(config.clone()));
    }
    table
}

/// Sets `grants[plugin]`'s `init` configuration to `config` (a JSON object).
pub fn configure(grants: &mut BTreeMap<String, Grant>, plugin: &str, config: Value) {
    let config = match toml::Value::try_from(&config) {
        Ok(toml::Value::Table(table)) => table,
        other => panic!("{plugin}'s configuration {config} is not a TOML table: {other:?}"),
    };
    grants
        .get_mut(plugin)
        .unwrap_or_else(|| panic!("no grant for {plugin}"))
        .config = Some(config);
}

/// The reader's config file: follows `writer` over TCP, runs the plugins of `folder` under
/// `grants`, with the harness's admin token and the tests' shared compile cache.
fn reader_config(
    writer: &TestWriter,
    data: &Path,
    folder: &Path,
    grants: &BTreeMap<String, Grant>,
) -> String {
    let mut plugins = toml::Table::new();
    plugins.insert("dir".into(), path_value(folder));
    plugins.insert("admin_token".into(), ADMIN_TOKEN.into());
    plugins.insert("watch".into(), false.into());
    plugins.insert("retry_backoff_ms".into(), toml::Value::Integer(20));
    // Compiling a component in a debug build takes a second or more; share the results.
    plugins.insert(
        "compile_cache".into(),
        path_value(Path::new(concat!(env!("OUT_DIR"), "/compiled"))),
    );
    let grants: toml::Table = grants
        .iter()
        .map(|(name, grant)| (name.clone(), toml::Value::Table(grant_table(grant))))
        .collect();
    plugins.insert("grants".into(), toml::Value::Table(grants));
    let mut reader = toml::Table::new();
    reader.insert(
        "writer".into(),
        writer.replication_addr().to_string().into(),
    );
    reader.insert("writer_http".into(), writer.url().into());
    reader.insert("http".into(), "127.0.0.1:0".into());
    reader.insert("data".into(), path_value(data));
    reader.insert("name".into(), "hostile".into());
    reader.insert("reconnect_max_ms".into(), toml::Value::Integer(500));
    reader.insert("plugins".into(), toml::Value::Table(plugins));
    let mut file = toml::Table::new();
    file.insert("reader".into(), toml::Value::Table(reader));
    toml::to_string(&file).expect("config serialises")
}

/// What the watchdog saw and did.
#[derive(Default)]
struct Watch {
    /// Highest `VmRSS`/`VmHWM` seen, in bytes.
    peak: AtomicU64,
    /// Set when it killed the child past [`KILL_LIMIT`].
    killed: AtomicBool,
    /// Set to end the watchdog.
    stop: AtomicBool,
}

/// Samples `pid`'s resident memory until told to stop or the process is gone; kills it past
/// [`KILL_LIMIT`].
async fn watchdog(pid: u32, watch: Arc<Watch>) {
    while !watch.stop.load(Ordering::Relaxed) {
        let Some(resident) = resident(pid) else {
            return;
        };
        watch
            .peak
            .fetch_max(resident.now.max(resident.peak), Ordering::Relaxed);
        if resident.now > KILL_LIMIT {
            watch.killed.store(true, Ordering::Relaxed);
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            return;
        }
        tokio::time::sleep(WATCHDOG_PERIOD).await;
    }
}

/// A reader process running hostile plugins, with its folder, config and log.
pub struct HostileReader {
    /// The child, killed when this is dropped.
    _process: Process,
    pid: u32,
    http: SocketAddr,
    log: PathBuf,
    watch: Arc<Watch>,
    _dir: tempfile::TempDir,
}

impl HostileReader {
    /// Starts `program` (tests pass `env!("CARGO_BIN_EXE_streamhost-under-test")`) as a reader
    /// of `writer` running the plugins of `folder` under `grants`, and waits until it listens
    /// and every plugin in `grants` has been loaded (whatever its state).
    pub async fn start(
        program: &str,
        writer: &TestWriter,
        folder: &PluginFolder,
        grants: &BTreeMap<String, Grant>,
    ) -> HostileReader {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("reader.toml");
        let text = reader_config(writer, &dir.path().join("data"), folder.path(), grants);
        std::fs::write(&config, text).expect("write reader.toml");
        let log = dir.path().join("reader.log");
        let args = ["reader", "--config", config.to_str().expect("UTF-8 path")];
        let process = Process::spawn_logging(program, &args, &log).await;
        let pid = process.pid().expect("a just-started reader has a pid");
        let watch = Arc::new(Watch::default());
        tokio::spawn(watchdog(pid, watch.clone()));
        let reader = HostileReader {
            http: process.addr("http"),
            _process: process,
            pid,
            log,
            watch,
            _dir: dir,
        };
        for name in grants.keys() {
            reader.wait_for_plugin(name).await;
        }
        reader
    }

    /// Waits until `GET /v1/admin/plugins` lists `name`.
    async fn wait_for_plugin(&self, name: &str) {
        crate::wait_until(
            Duration::from_secs(60),
            &format!("the reader to list plugin {name}"),
            || async { self.find_plugin(name).await.is_some() },
        )
        .await;
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// A client of the reader's HTTP API.
    pub fn client(&self) -> ApiClient {
        ApiClient::new(format!("http://{}", self.http))
    }

    /// A client of the reader's admin API.
    pub fn admin(&self) -> ApiClient {
        self.client().with_bearer(ADMIN_TOKEN)
    }

    /// Everything the reader logged so far (its stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The child's resident memory now, or `None` once it has exited.
    pub fn resident(&self) -> Option<Resident> {
        resident(self.pid)
    }

    /// The most the child has been resident: its `VmHWM`, or what the watchdog last saw if it
    /// is gone. Panics if the watchdog had to kill it (a reader past [`KILL_LIMIT`]).
    pub fn peak_resident(&self) -> u64 {
        assert!(
            !self.watch.killed.load(Ordering::Relaxed),
            "{}",
            self.post_mortem()
        );
        let seen = self.watch.peak.load(Ordering::Relaxed);
        self.resident().map_or(seen, |r| r.peak.max(seen))
    }

    /// Asserts the reader is still running and its peak resident memory is under
    /// [`RESIDENT_CEILING`].
    pub fn assert_under_ceiling(&self) {
        self.assert_under(RESIDENT_CEILING);
    }

    /// Asserts the reader is still running and its peak resident memory is under `ceiling`.
    pub fn assert_under(&self, ceiling: u64) {
        let peak = self.peak_resident();
        assert!(self.resident().is_some(), "{}", self.post_mortem());
        assert!(
            peak < ceiling,
            "the reader's VmHWM is {} MiB, over the {} MiB ceiling",
            peak >> 20,
            ceiling >> 20
        );
    }

    /// `GET path` on the reader: status and body as text (errors as a 599 with the error).
    pub async fn get(&self, path: &str) -> (StatusCode, String) {
        match self.client().send(Method::GET, path, Bytes::new()).await {
            Ok((status, body)) => (status, String::from_utf8_lossy(&body).into_owned()),
            Err(e) => (StatusCode::from_u16(599).expect("599"), format!("{e:#}")),
        }
    }

    /// `POST /v1/admin/plugins/{plugin}/reload`: status and body as text.
    pub async fn reload(&self, plugin: &str) -> (StatusCode, String) {
        let path = format!("/v1/admin/plugins/{plugin}/reload");
        let (status, body) = self
            .admin()
            .send(Method::POST, &path, Bytes::new())
            .await
            .expect("POST reload");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// The plugin `name` as `GET /v1/admin/plugins` shows it, if listed.
    async fn find_plugin(&self, name: &str) -> Option<Value> {
        let all = self.admin().get_json("/v1/admin/plugins").await.ok()?;
        all.as_array()?.iter().find(|p| p["name"] == name).cloned()
    }

    /// The plugin `name` as `GET /v1/admin/plugins` shows it.
    pub async fn plugin(&self, name: &str) -> Value {
        plugin_view(&self.admin(), name)
            .await
            .unwrap_or_else(|e| panic!("{e}; {}", self.post_mortem()))
    }

    /// What became of the reader (killed by the watchdog, exited, running) and the end of
    /// its log, for failure messages.
    pub fn post_mortem(&self) -> String {
        let fate = if self.watch.killed.load(Ordering::Relaxed) {
            format!(
                "the watchdog killed the reader past {} MiB resident",
                KILL_LIMIT >> 20
            )
        } else if self.resident().is_none() {
            "the reader exited".to_owned()
        } else {
            "the reader is running".to_owned()
        };
        format!("{fate}; its log ends:\n{}", tail(&self.log(), 4_000))
    }

    /// The plugin's state: `running`, `quarantined` or `failed`.
    pub async fn state(&self, name: &str) -> String {
        self.plugin(name).await["state"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The plugin's cursor on `(stream, master)`.
    pub async fn cursor(&self, name: &str, stream: &str) -> i64 {
        cursor_of(&self.plugin(name).await, stream)
    }

    /// The reason of the plugin's most recent failure report, if it has one.
    pub async fn last_failure_reason(&self, name: &str) -> Option<String> {
        let plugin = self.plugin(name).await;
        plugin["reports"]
            .as_array()?
            .last()?
            .pointer("/failure/reason")?
            .as_str()
            .map(str::to_owned)
    }

    /// Waits until the plugin is in `state` (`quarantined`, say), and returns its view.
    pub async fn wait_for_state(&self, name: &str, state: &str, timeout: Duration) -> Value {
        crate::wait_until(timeout, &format!("{name} to be {state}"), || async {
            self.state(name).await == state
        })
        .await;
        self.plugin(name).await
    }

    /// Waits until the plugin's cursor on `(stream, master)` reaches `token`.
    pub async fn wait_for_cursor(&self, name: &str, stream: &str, token: i64, timeout: Duration) {
        crate::wait_until(
            timeout,
            &format!("{name} to reach {stream} {token}"),
            || async { self.cursor(name, stream).await >= token },
        )
        .await;
    }

    /// Starts sampling `bystander`'s lag on `stream` behind `writer`; see [`LagWatch`].
    pub fn watch_lag(&self, writer: &TestWriter, bystander: &str, stream: &str) -> LagWatch {
        LagWatch::start(writer.client(), self.admin(), bystander, stream)
    }
}

impl Drop for HostileReader {
    fn drop(&mut self) {
        self.watch.stop.store(true, Ordering::Relaxed);
    }
}

/// The last `max` bytes of `text` (at a character boundary).
fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// The plugin `name` in the admin API behind `admin`.
async fn plugin_view(admin: &ApiClient, name: &str) -> Result<Value, String> {
    let all = admin
        .get_json("/v1/admin/plugins")
        .await
        .map_err(|e| format!("GET /v1/admin/plugins: {e:#}"))?;
    all.as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == name).cloned())
        .ok_or_else(|| format!("no plugin {name} in {all}"))
}

/// The token of the `(stream, master)` cursor in a plugin's admin view (0 when none).
pub fn cursor_of(plugin: &Value, stream: &str) -> i64 {
    plugin["cursors"]
        .as_array()
        .and_then(|cursors| {
            cursors
                .iter()
                .find(|c| c["stream"] == stream && c["instance"] == "master")
        })
        .and_then(|c| c["token"].as_i64())
        .unwrap_or(0)
}

/// The writer's position of `stream` (`GET /v1/streams`).
pub async fn writer_position(writer: &ApiClient, stream: &str) -> anyhow::Result<i64> {
    let answer = writer.get_json("/v1/streams").await?;
    answer["streams"]
        .as_array()
        .and_then(|streams| streams.iter().find(|s| s["name"] == stream))
        .and_then(|s| s["position"].as_i64())
        .ok_or_else(|| anyhow::anyhow!("no position of {stream} in {answer}"))
}

/// The worst lag a [`LagWatch`] saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lag {
    /// The writer's position minus the bystander's cursor, in tokens.
    pub tokens: i64,
    /// How long the oldest row the bystander had not applied had been written: the time since
    /// the first sample in which the writer was past the bystander's cursor.
    pub age: Duration,
    /// Samples taken.
    pub samples: usize,
}

/// A background task sampling, every [`LAG_PERIOD`], the writer's position and a bystander's
/// cursor, keeping the worst lag seen; [`LagWatch::finish`] ends it and returns that lag.
pub struct LagWatch {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Result<Lag, String>>,
}

impl LagWatch {
    fn start(writer: ApiClient, admin: ApiClient, bystander: &str, stream: &str) -> LagWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let (bystander, stream) = (bystander.to_owned(), stream.to_owned());
        let task = tokio::spawn(sample_lag(writer, admin, bystander, stream, stop.clone()));
        LagWatch { stop, task }
    }

    /// Stops sampling and returns the worst lag seen (panics if a sample could not be taken).
    pub async fn finish(self) -> Lag {
        self.stop.store(true, Ordering::Relaxed);
        self.task
            .await
            .expect("lag sampler ran")
            .unwrap_or_else(|e| panic!("sampling the bystander's lag: {e}"))
    }
}

/// The loop of [`LagWatch`]: `(time, writer position)` samples are kept until the bystander's
/// cursor has passed them, so the age of its oldest unapplied row is known at each sample.
async fn sample_lag(
    writer: ApiClient,
    admin: ApiClient,
    bystander: String,
    stream: String,
    stop: Arc<AtomicBool>,
) -> Result<Lag, String> {
    let mut worst = Lag::default();
    let mut pending: std::collections::VecDeque<(Instant, i64)> = Default::default();
    loop {
        let done = stop.load(Ordering::Relaxed);
        let position = writer_position(&writer, &stream)
            .await
            .map_err(|e| format!("{e:#}"))?;
        let now = Instant::now();
        if pending.back().is_none_or(|&(_, p)| p < position) {
            pending.push_back((now, position));
        }
        let cursor = cursor_of(&plugin_view(&admin, &bystander).await?, &stream);
        while pending.front().is_some_and(|&(_, p)| p <= cursor) {
            pending.pop_front();
        }
        let age = pending
            .front()
            .map_or(Duration::ZERO, |&(since, _)| now.duration_since(since));
        worst.tokens = worst.tokens.max(position - cursor);
        worst.age = worst.age.max(age);
        worst.samples += 1;
        if done {
            return Ok(worst);
        }
        tokio::time::sleep(LAG_PERIOD).await;
    }
}

/// Rows appended to one stream in the background, one every `period`, so a bystander has
/// work while an offender misbehaves; [`Traffic::finish`] stops it and returns the last token.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Result<i64, String>>,
}

impl Traffic {
    /// Starts appending `{"room": "!a:x", "sender": "@a:x", "body": "traffic <n>"}` rows to
    /// `stream` of `writer`.
    pub fn start(writer: &TestWriter, stream: &str, period: Duration) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let (client, stream, done) = (writer.client(), stream.to_owned(), stop.clone());
        let task = tokio::spawn(async move {
            let mut last = 0;
            let mut n = 0u64;
            while !done.load(Ordering::Relaxed) {
                let row = serde_json::json!({"room": "!a:x", "sender": "@a:x", "body": format!("traffic {n}")});
                // An error ends the traffic (a failing test drops the writer first).
                let tokens = client
                    .append(&stream, crate::rows_body(&[row]), false)
                    .await
                    .map_err(|e| format!("appending traffic: {e:#}"))?;
                last = tokens.last().map_or(last, |t| t.0);
                n += 1;
                tokio::time::sleep(period).await;
            }
            Ok(last)
        });
        Traffic { stop, task }
    }

    /// Stops appending; the token of the last row appended (panics if an append failed).
    pub async fn finish(self) -> i64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task
            .await
            .expect("traffic ran")
            .unwrap_or_else(|e| panic!("{e}"))
    }
}
