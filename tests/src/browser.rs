//! Headless Chromium driven over W3C WebDriver (`chromedriver`), for the console's test.
//!
//! The client is the few commands the test needs (new session, navigate, find, click, text,
//! execute script, screenshot), sent with the product's own HTTP client ([`ApiClient`]); a
//! WebDriver crate would bring its own HTTP stack for six JSON calls. Chromium and
//! chromedriver come from the distribution (`scripts/install-browser`); without them the
//! test fails saying so. Chromium runs headless, without its sandbox (tests run as root), with
//! every background connection off (the machine may have no network) and a fresh profile.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use hyper::Method;
use serde_json::{Value, json};
use streamhost_server::client::ApiClient;
use tokio::process::{Child, Command};

/// Where Debian's `chromium` package puts the browser.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Where Debian's `chromium-driver` package puts the driver.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The key W3C WebDriver names an element reference with.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A headless Chromium session and the chromedriver serving it; both end on drop.
pub struct Browser {
    driver: Child,
    client: ApiClient,
    session: String,
    _profile: tempfile::TempDir,
}

/// An element of the page, by its WebDriver reference.
#[derive(Clone, Debug)]
pub struct Element(String);

impl Browser {
    /// Starts chromedriver on a free loopback port and opens a headless Chromium session with
    /// a `width`×`height` window. Panics, naming `scripts/install-browser`, when Chromium or
    /// chromedriver is missing.
    pub async fn start(width: u32, height: u32) -> Browser {
        for binary in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(binary).exists(),
                "{binary} is missing: run scripts/install-browser (apt-get install chromium \
                 chromium-driver) to run the console's browser test"
            );
        }
        // chromedriver takes a port number, not a listener: take a free one and hand it over.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let client = ApiClient::new(format!("http://127.0.0.1:{port}"));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok((status, body)) = client.send(Method::GET, "/status", Bytes::new()).await
                && status.is_success()
                && serde_json::from_slice::<Value>(&body)
                    .is_ok_and(|v| v["value"]["ready"] == json!(true))
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not become ready within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().expect("a profile folder");
        let args = [
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let mut browser = Browser {
            driver,
            client,
            session: String::new(),
            _profile: profile,
        };
        let created = browser
            .command(Method::POST, "/session", capabilities)
            .await;
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {created}"))
            .to_owned();
        browser
    }

    /// Sends a WebDriver command and returns its `value`; panics on an error answer.
    async fn command(&self, method: Method, path: &str, body: Value) -> Value {
        self.try_command(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"))
    }

    async fn try_command(&self, method: Method, path: &str, body: Value) -> Result<Value, String> {
        let body = match method {
            Method::POST => Bytes::from(body.to_string()),
            _ => Bytes::new(),
        };
        let (status, answer) = self
            .client
            .send(method, path, body)
            .await
            .map_err(|e| e.to_string())?;
        let answer: Value = serde_json::from_slice(&answer).map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{status}: {}", answer["value"]));
        }
        Ok(answer["value"].clone())
    }

    fn at(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    /// Opens `url` and waits for it to load.
    pub async fn navigate(&self, url: &str) {
        self.command(Method::POST, &self.at("/url"), json!({ "url": url }))
            .await;
    }

    /// The first element matching the CSS `selector`, if any.
    pub async fn find(&self, selector: &str) -> Option<Element> {
        let body = json!({"using": "css selector", "value": selector});
        let found = self
            .try_command(Method::POST, &self.at("/element"), body)
            .await
            .ok()?;
        found[ELEMENT_KEY].as_str().map(|id| Element(id.to_owned()))
    }

    /// Clicks `element`.
    pub async fn click(&self, element: &Element) {
        let path = self.at(&format!("/element/{}/click", element.0));
        self.command(Method::POST, &path, json!({})).await;
    }

    /// The rendered text of `element`.
    pub async fn text(&self, element: &Element) -> String {
        let path = self.at(&format!("/element/{}/text", element.0));
        let text = self.command(Method::GET, &path, Value::Null).await;
        text.as_str().unwrap_or_default().to_owned()
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) and returns what it returns.
    pub async fn execute(&self, script: &str, args: Value) -> Value {
        let body = json!({ "script": script, "args": args });
        self.command(Method::POST, &self.at("/execute/sync"), body)
            .await
    }

    /// The `textContent` of the first element matching `selector`, or `None` if there is
    /// none (read in one script, so a re-rendered element is never stale).
    pub async fn text_of(&self, selector: &str) -> Option<String> {
        let script = "const e = document.querySelector(arguments[0]); \
                      return e ? e.textContent : null;";
        let value = self.execute(script, json!([selector])).await;
        value.as_str().map(str::to_owned)
    }

    /// Saves a PNG of the window at `path` (creating its folder) and returns the path.
    pub async fn screenshot(&self, path: &Path) -> PathBuf {
        let encoded = self
            .command(Method::GET, &self.at("/screenshot"), Value::Null)
            .await;
        let png = decode_base64(encoded.as_str().expect("a base64 screenshot"));
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder).expect("create the screenshot folder");
        }
        std::fs::write(path, png).expect("write the screenshot");
        path.to_owned()
    }

    /// Ends the session and the driver.
    pub async fn close(mut self) {
        let _ = self
            .try_command(Method::DELETE, &self.at(""), Value::Null)
            .await;
        let _ = self.driver.kill().await;
    }
}

/// Standard base64 (with padding), as WebDriver sends screenshots.
fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c:?}"),
        }
    };
    let bytes: Vec<u8> = text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= value(*c) << (18 - 6 * i);
        }
        let produced = chunk.len() * 6 / 8;
        out.extend_from_slice(&n.to_be_bytes()[1..1 + produced]);
    }
    out
}

/// The folder the console's screenshots go to: `target/artifacts/console/` (under
/// `CARGO_TARGET_DIR` when set).
pub fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("artifacts").join("console")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(decode_base64("aGVsbG8="), b"hello");
        assert_eq!(decode_base64("aGVsbG8h"), b"hello!");
        assert_eq!(decode_base64("aA=="), b"h");
        assert_eq!(decode_base64(""), b"");
    }
}
