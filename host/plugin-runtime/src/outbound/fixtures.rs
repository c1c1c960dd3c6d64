//! [`HttpFixtures`]: canned answers to a plugin's outbound requests, for
//! `streamhost plugin run --http-fixtures FILE`. The same send path as on the network runs
//! (allow-list, limits); only the answer comes from the file, and a request no fixture
//! matches is refused. Every request, answered or refused, is recorded for the output.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde::Deserialize;
use wasmtime_wasi_http::WasiBody;

/// One canned answer: a request (method and URL) and its response.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FixtureResponse {
    /// The request method (any case); absent matches every method.
    #[serde(default)]
    pub method: Option<String>,
    /// The request's whole URL, as the plugin sends it.
    pub url: String,
    /// The response status.
    #[serde(default = "ok")]
    pub status: u16,
    /// The response headers.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The response body, as text.
    #[serde(default)]
    pub body: String,
}

fn ok() -> u16 {
    200
}

/// The file: `[[fixture]]` tables (TOML) or `{"fixture": [...]}` (JSON), and the URLs of
/// destinations the plugin names in its `http` list (`[destination.<name>] url = "…"`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureFile {
    #[serde(default)]
    fixture: Vec<FixtureResponse>,
    #[serde(default)]
    destination: BTreeMap<String, FixtureDestination>,
}

/// A destination as a fixture file declares it: its URL only (no headers).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureDestination {
    url: String,
}

/// One request a plugin made and what became of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpExchange {
    /// The method.
    pub method: String,
    /// The URL.
    pub url: String,
    /// The fixture's status, or `None` when the request was refused.
    pub status: Option<u16>,
    /// Why it was refused (not granted, over a limit, no fixture).
    pub refused: Option<String>,
}

impl HttpExchange {
    pub(super) fn refused(method: &str, url: &str, reason: &str) -> HttpExchange {
        HttpExchange {
            method: method.to_string(),
            url: url.to_string(),
            status: None,
            refused: Some(reason.to_string()),
        }
    }
}

impl std::fmt::Display for HttpExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} -> ", self.method, self.url)?;
        match (&self.status, &self.refused) {
            (Some(status), _) => write!(f, "{status} (fixture)"),
            (None, Some(reason)) => write!(f, "refused: {reason}"),
            (None, None) => f.write_str("?"),
        }
    }
}

/// Canned answers and the record of requests.
#[derive(Debug, Default)]
pub struct HttpFixtures {
    fixtures: Vec<FixtureResponse>,
    destinations: BTreeMap<String, String>,
    seen: Mutex<Vec<HttpExchange>>,
}

impl HttpFixtures {
    /// Fixtures from a list.
    pub fn new(fixtures: Vec<FixtureResponse>) -> HttpFixtures {
        HttpFixtures {
            fixtures,
            destinations: BTreeMap::new(),
            seen: Mutex::default(),
        }
    }

    /// The destinations the file declares: name and URL.
    pub fn destinations(&self) -> &BTreeMap<String, String> {
        &self.destinations
    }

    /// Reads `path`: JSON when it ends in `.json`, TOML otherwise.
    pub fn load(path: &Path) -> Result<HttpFixtures, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        let file: FixtureFile = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
        } else {
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
        };
        let mut fixtures = HttpFixtures::new(file.fixture);
        fixtures.destinations = file
            .destination
            .into_iter()
            .map(|(name, d)| (name, d.url))
            .collect();
        Ok(fixtures)
    }

    /// Takes the requests recorded since the last call.
    pub fn take_seen(&self) -> Vec<HttpExchange> {
        std::mem::take(&mut *self.seen.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub(super) fn record(&self, exchange: HttpExchange) {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(exchange);
    }

    /// The answer to `method url` (recorded), or `None` when no fixture matches.
    pub(super) fn answer(&self, method: &str, url: &str) -> Option<http::Response<WasiBody>> {
        let fixture = self.fixtures.iter().find(|f| {
            f.url == url
                && f.method
                    .as_deref()
                    .is_none_or(|m| m.eq_ignore_ascii_case(method))
        });
        let Some(fixture) = fixture else {
            self.record(HttpExchange::refused(method, url, "no fixture matches"));
            return None;
        };
        self.record(HttpExchange {
            method: method.to_string(),
            url: url.to_string(),
            status: Some(fixture.status),
            refused: None,
        });
        let mut builder = http::Response::builder().status(fixture.status);
        for (name, value) in &fixture.headers {
            builder = builder.header(name, value);
        }
        let body = Full::new(Bytes::from(fixture.body.clone()))
            .map_err(|never| match never {})
            .boxed_unsync();
        builder.body(body).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_and_json_fixtures_answer_by_method_and_url() {
        let dir = tempfile::tempdir().unwrap();
        let toml_path = dir.path().join("f.toml");
        std::fs::write(
            &toml_path,
            "[destination.hook]\nurl = \"https://h.example/in\"\n\
             [[fixture]]\nmethod = \"GET\"\nurl = \"https://a.example/x\"\nbody = \"hi\"\n\
             headers = [[\"content-type\", \"text/plain\"]]\n",
        )
        .unwrap();
        let json_path = dir.path().join("f.json");
        std::fs::write(
            &json_path,
            r#"{"fixture": [{"url": "https://a.example/y", "status": 404}]}"#,
        )
        .unwrap();
        let t = HttpFixtures::load(&toml_path).unwrap();
        assert_eq!(t.destinations()["hook"], "https://h.example/in");
        assert_eq!(
            t.answer("get", "https://a.example/x").unwrap().status(),
            200
        );
        assert!(t.answer("POST", "https://a.example/x").is_none());
        let j = HttpFixtures::load(&json_path).unwrap();
        assert_eq!(
            j.answer("PUT", "https://a.example/y").unwrap().status(),
            404
        );
        let seen = t.take_seen();
        assert_eq!(seen.len(), 2);
        assert_eq!(
            seen[0].to_string(),
            "get https://a.example/x -> 200 (fixture)"
        );
        assert_eq!(
            seen[1].to_string(),
            "POST https://a.example/x -> refused: no fixture matches"
        );
        assert!(t.take_seen().is_empty());
    }
}
