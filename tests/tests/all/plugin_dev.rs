//! `streamhost plugin dev` and the demo's flags, as a user runs them: the real binary
//! reloading a saved plugin into its local writer and reader (the new version applies
//! batches; a broken one leaves the old version running), the demo without generated
//! traffic, the demo's stdout (banner and status lines, no log lines) and log file, and with
//! `--verbose` its log lines on stderr naming the reader they come from.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::Value;
use streamhost_integration_tests::plugins::PluginFolder;

const BINARY: &str = env!("CARGO_BIN_EXE_streamhost-under-test");

/// A running `plugin dev --json`, its stdout lines as JSON values.
struct DevProcess {
    child: Child,
    lines: Receiver<Value>,
}

impl DevProcess {
    fn start(dir: &std::path::Path) -> DevProcess {
        let mut child = Command::new(BINARY)
            .args(["plugin", "dev", "--json", "--rate", "40"])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn plugin dev");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                if tx.send(value).is_err() {
                    return;
                }
            }
        });
        DevProcess { child, lines }
    }

    /// The first line matching `wanted` within `timeout`, with the lines seen before it.
    fn until(&self, timeout: Duration, wanted: impl Fn(&Value) -> bool) -> (Value, Vec<Value>) {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if wanted(&line) => return (line, seen),
                Ok(line) => seen.push(line),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    panic!("no wanted line within {timeout:?}; saw {seen:#?}")
                }
            }
        }
    }
}

impl Drop for DevProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `bytes` with a Wasm custom section appended: a valid component with a new sha256.
fn with_custom_section(mut bytes: Vec<u8>, payload: u8) -> Vec<u8> {
    bytes.extend([0, 3, 1, b'x', payload]);
    bytes
}

#[test]
fn plugin_dev_reloads_a_saved_plugin_and_keeps_the_old_version_when_the_new_one_is_broken() {
    let folder = PluginFolder::with(&["notifier"]);
    let dir = folder.plugin_dir("notifier");
    let wasm = dir.join("notifier.wasm");
    let dev = DevProcess::start(&dir);

    let (built, _) = dev.until(Duration::from_secs(30), |l| l["event"] == "build");
    assert_eq!(built["ok"], true, "{built}");
    let first = built["sha256"].as_str().unwrap().to_string();
    let (batch, _) = dev.until(Duration::from_secs(30), |l| {
        l["event"] == "batch" && l["stream"] == "messages"
    });
    assert_eq!(batch["version"], first.as_str());
    assert!(
        batch["effects"].as_array().is_some_and(|e| !e.is_empty()),
        "the notifier notifies on messages: {batch}"
    );

    // Save a new version: it is rebuilt, reloaded, and applies the next batches.
    let original = std::fs::read(&wasm).unwrap();
    std::fs::write(&wasm, with_custom_section(original.clone(), 1)).unwrap();
    let (reload, _) = dev.until(Duration::from_secs(30), |l| l["event"] == "reload");
    assert_eq!(reload["ok"], true, "{reload}");
    let second = reload["sha256"].as_str().unwrap().to_string();
    assert_ne!(second, first);
    let (batch, _) = dev.until(Duration::from_secs(30), |l| {
        l["event"] == "batch" && l["version"] == second.as_str()
    });
    assert_eq!(batch["plugin"], "notifier");

    // A broken component: the reload fails, the running version goes on applying batches.
    std::fs::write(&wasm, b"not a component").unwrap();
    let (reload, _) = dev.until(Duration::from_secs(30), |l| l["event"] == "reload");
    assert_eq!(reload["ok"], false, "{reload}");
    assert!(reload["error"].as_str().is_some_and(|e| !e.is_empty()));
    let (batch, _) = dev.until(Duration::from_secs(30), |l| l["event"] == "batch");
    assert_eq!(batch["version"], second.as_str());
}

/// Runs the demo with `args` for a second; returns (stdout, stderr without colours).
fn demo(args: &[&str]) -> (String, String) {
    let output = Command::new(BINARY)
        .arg("demo")
        .args(args)
        .args(["--duration", "1"])
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .output()
        .expect("run the demo");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = strip_colours(&String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    (stdout, stderr)
}

fn strip_colours(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn the_demo_at_rate_0_writes_no_rows() {
    let (stdout, _) = demo(&["--rate", "0"]);
    assert!(
        stdout.contains("stopped cleanly (0 rows written)"),
        "{stdout}"
    );
}

#[test]
fn with_verbose_the_demo_logs_on_stderr_naming_the_reader_each_line_comes_from() {
    let folder = PluginFolder::with(&["stream-stats"]);
    let (_, stderr) = demo(&[
        "--rate",
        "0",
        "--verbose",
        "--plugins",
        folder.path().to_str().unwrap(),
    ]);
    for reader in ["reader-1", "reader-2"] {
        let span = format!("reader{{name={reader}}}");
        for message in ["reader started", "plugin running"] {
            assert!(
                stderr
                    .lines()
                    .any(|l| l.contains(&span) && l.contains(message)),
                "no {message:?} line naming {reader}:\n{stderr}"
            );
        }
    }
}

/// Whether `line` is a log line (the text format's level after the timestamp).
fn is_log_line(line: &str) -> bool {
    [" INFO ", " WARN ", " ERROR ", " DEBUG "]
        .iter()
        .any(|level| line.contains(level))
}

#[test]
fn the_demo_prints_banner_and_status_on_stdout_and_logs_to_its_file() {
    let folder = PluginFolder::with(&["stream-stats"]);
    let mut child = Command::new(BINARY)
        .args(["demo", "--rate", "100", "--duration", "60", "--plugins"])
        .arg(folder.path())
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the demo");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // The banner, then status lines; stop at the second status line.
    let mut printed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while printed
        .iter()
        .filter(|l: &&String| l.starts_with("["))
        .count()
        < 2
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => printed.push(line),
            Err(e) => panic!("no status lines ({e:?}) after:\n{}", printed.join("\n")),
        }
    }
    let text = printed.join("\n");
    let log = printed
        .iter()
        .find_map(|l| l.strip_prefix("  logs    "))
        .unwrap_or_else(|| panic!("no logs line:\n{text}"));
    let log = std::path::PathBuf::from(log);
    assert!(log.ends_with("demo.log"), "{text}");
    let at = |prefix: &str| {
        printed
            .iter()
            .position(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line:\n{text}"))
    };
    // Each process's console right after its own line: the writer's needs no token, the
    // readers' carry the admin token in the fragment.
    let writer = at("  writer  http://");
    let address = printed[writer]["  writer  http://".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(
        printed[writer + 1],
        format!("  console http://{address}/console"),
        "{text}"
    );
    let reader = at("  reader  http://");
    let address = printed[reader]["  reader  http://".len()..].trim_end_matches("/v1/status");
    assert!(
        printed[reader + 1].starts_with(&format!("  console http://{address}/console#token=demo-")),
        "{text}"
    );
    assert!(
        printed.iter().all(|l| !is_log_line(l)),
        "log lines on stdout:\n{text}"
    );

    // The log file has the log lines, while the demo runs.
    let started = Instant::now();
    let logged = loop {
        let logged = std::fs::read_to_string(&log).unwrap_or_default();
        if logged
            .lines()
            .any(|l| l.contains("reader{name=reader-2}") && l.contains("plugin running"))
        {
            break logged;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no log lines in {}:\n{logged}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        logged
            .lines()
            .any(|l| is_log_line(l) && l.contains("reader started")),
        "{logged}"
    );
    assert!(!logged.contains('\u{1b}'), "no colours in the file");

    // SIGTERM: a clean stop; nothing was ever logged to stderr.
    let status = Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().expect("the demo exits");
    assert!(output.status.success(), "{output:?}");
    let rest: Vec<String> = lines.iter().collect();
    assert!(
        rest.iter().all(|l| !is_log_line(l)),
        "log lines on stdout:\n{}",
        rest.join("\n")
    );
    assert!(
        rest.iter()
            .any(|l| l.starts_with("streamhost demo: stopped cleanly")),
        "{rest:?}"
    );
    assert!(
        output.stderr.is_empty(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!log.exists(), "a clean stop removes the demo's folder");
}
