//! The expectations file of a fixture (`tests/<fixture>.expected.toml`): how to run it and
//! what the plugin must do. `--update` writes it with [`render`]; authors may write it by hand.
//!
//! ```toml
//! batch_rows = 1                       # most rows per plugin batch (default 1: one token each)
//!
//! [config]                             # handed to `init` (optional)
//! keep = 10
//!
//! [effects]                            # per batch, named "<stream> <instance> <last token>"
//! "messages master 1" = [
//!   "invalidate timeline !a:x",        # invalidate <cache> <key>
//!   'notify room:!a:x {"n":1}',        # notify <topic> <payload>
//!   "push hook k/1 body",              # push <destination> <key> <body>
//! ]
//!
//! [kv]                                 # the whole key-value store after the run
//! "count/!a:x" = "1"
//! "blob" = { hex = "ff00" }            # a value that is not UTF-8
//!
//! [[query]]                            # asked after the run, in order
//! name = "timeline"
//! args = { room = "!a:x" }
//! answer = '{"events":[]}'
//! ```
//!
//! Every part is strict: a batch not under `[effects]` must have no effects, and a key not
//! under `[kv]` must not be stored.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// A value of the key-value store: text when it is UTF-8, else hex.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum KvValue {
    /// A UTF-8 value.
    Text(String),
    /// Any other value, as lower-case hex.
    Hex {
        /// The bytes in hex.
        hex: String,
    },
}

impl KvValue {
    /// The value of `bytes`: text when it is UTF-8.
    pub fn of(bytes: &[u8]) -> KvValue {
        match std::str::from_utf8(bytes) {
            Ok(text) => KvValue::Text(text.to_owned()),
            Err(_) => KvValue::Hex {
                hex: bytes.iter().map(|b| format!("{b:02x}")).collect(),
            },
        }
    }
}

impl std::fmt::Display for KvValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KvValue::Text(text) => write!(f, "{}", quote(text)),
            KvValue::Hex { hex } => write!(f, "{{ hex = {} }}", quote(hex)),
        }
    }
}

/// A query to ask after the run and the answer it must give.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedQuery {
    /// The query's name, as `describe` lists it.
    pub name: String,
    /// Its arguments.
    #[serde(default)]
    pub args: BTreeMap<String, String>,
    /// The answer; `None` until `--update` fills it in (a mismatch until then).
    #[serde(default)]
    pub answer: Option<String>,
}

impl ExpectedQuery {
    /// `name k=v k=v`, for messages.
    pub fn label(&self) -> String {
        let mut label = self.name.clone();
        for (key, value) in &self.args {
            let _ = write!(label, " {key}={value}");
        }
        label
    }
}

/// One expectations file.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectations {
    /// Most rows per plugin batch (a token's rows are never split).
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// The configuration handed to `init`.
    #[serde(default)]
    pub config: Option<toml::Table>,
    /// Effects and pushes per batch label, in the one-line forms of [`crate::tools::plugin_run`].
    #[serde(default)]
    pub effects: BTreeMap<String, Vec<String>>,
    /// The whole key-value store after the run.
    #[serde(default)]
    pub kv: BTreeMap<String, KvValue>,
    /// Queries asked after the run.
    #[serde(default, rename = "query")]
    pub queries: Vec<ExpectedQuery>,
}

fn default_batch_rows() -> usize {
    1
}

impl Default for Expectations {
    /// What an empty file says: one batch per token, no effects, an empty store, no queries.
    fn default() -> Expectations {
        Expectations {
            batch_rows: default_batch_rows(),
            config: None,
            effects: BTreeMap::new(),
            kv: BTreeMap::new(),
            queries: Vec::new(),
        }
    }
}

/// The expectations file of the fixture at `fixture`: `name.jsonl` → `name.expected.toml`.
pub fn expectations_path(fixture: &Path) -> PathBuf {
    let stem = fixture
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    fixture.with_file_name(format!("{stem}.expected.toml"))
}

/// Parses an expectations file's text.
pub fn parse(text: &str) -> anyhow::Result<Expectations> {
    let expectations: Expectations = toml::from_str(text)?;
    anyhow::ensure!(expectations.batch_rows > 0, "batch_rows must be at least 1");
    Ok(expectations)
}

/// Reads the expectations file at `path`; `Ok(None)` when there is none.
pub fn load(path: &Path) -> anyhow::Result<Option<Expectations>> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text)
            .with_context(|| format!("reading {}", path.display()))
            .map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::Error::from(e).context(format!("reading {}", path.display()))),
    }
}

/// The file's text: settings, then effects in `order` (batch labels as they ran; labels
/// missing from `order` follow), then the store and the queries. One effect per line, so a
/// change shows up as a one-line diff.
pub fn render(expectations: &Expectations, fixture_name: &str, order: &[String]) -> String {
    let mut out = format!(
        "# What tests/{fixture_name} must do: `streamhost plugin test` compares, `--update` rewrites\n\
         # (comments are not kept). Formats: docs/plugins.md, \"Testing a plugin\".\n"
    );
    if expectations.batch_rows != default_batch_rows() {
        let _ = writeln!(out, "batch_rows = {}", expectations.batch_rows);
    }
    if let Some(config) = &expectations.config {
        let mut table = toml::Table::new();
        table.insert("config".into(), toml::Value::Table(config.clone()));
        let text = toml::to_string(&table).unwrap_or_default();
        let _ = write!(out, "\n{text}");
    }
    out.push_str("\n[effects]\n");
    let mut labels: Vec<&String> = order
        .iter()
        .filter(|l| expectations.effects.contains_key(*l))
        .collect();
    labels.extend(expectations.effects.keys().filter(|l| !order.contains(l)));
    labels.dedup();
    for label in labels {
        let _ = writeln!(out, "{} = [", quote(label));
        for effect in &expectations.effects[label] {
            let _ = writeln!(out, "  {},", quote(effect));
        }
        out.push_str("]\n");
    }
    out.push_str("\n[kv]\n");
    for (key, value) in &expectations.kv {
        let _ = writeln!(out, "{} = {value}", quote(key));
    }
    for query in &expectations.queries {
        let _ = writeln!(out, "\n[[query]]\nname = {}", quote(&query.name));
        if !query.args.is_empty() {
            let args: Vec<String> = query
                .args
                .iter()
                .map(|(k, v)| format!("{} = {}", quote(k), quote(v)))
                .collect();
            let _ = writeln!(out, "args = {{ {} }}", args.join(", "));
        }
        if let Some(answer) = &query.answer {
            let _ = writeln!(out, "answer = {}", quote(answer));
        }
    }
    out
}

/// `text` as a TOML string: a literal string (`'...'`, no escapes, so JSON stays readable)
/// when it can be one, else a basic string with escapes.
pub fn quote(text: &str) -> String {
    let literal_ok = !text.contains('\'') && !text.chars().any(|c| c.is_control() && c != '\t');
    if literal_ok {
        format!("'{text}'")
    } else {
        toml::Value::String(text.to_owned()).to_string()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample() -> Expectations {
        let mut config = toml::Table::new();
        config.insert("keep".into(), toml::Value::Integer(10));
        Expectations {
            batch_rows: 4,
            config: Some(config),
            effects: BTreeMap::from([
                (
                    "messages master 10".to_owned(),
                    vec!["invalidate timeline !b:x".to_owned()],
                ),
                (
                    "messages master 2".to_owned(),
                    vec![
                        "invalidate timeline !a:x".to_owned(),
                        r#"notify room:!a:x {"body":"it's"}"#.to_owned(),
                        "push hook k/1 line\nbreak".to_owned(),
                    ],
                ),
            ]),
            kv: BTreeMap::from([
                ("count".to_owned(), KvValue::Text("2".into())),
                ("raw".to_owned(), KvValue::of(&[0xff, 0x00])),
            ]),
            queries: vec![
                ExpectedQuery {
                    name: "timeline".into(),
                    args: BTreeMap::from([("room".into(), "!a:x".into())]),
                    answer: Some(r#"{"events":[]}"#.into()),
                },
                ExpectedQuery {
                    name: "stats".into(),
                    args: BTreeMap::new(),
                    answer: None,
                },
            ],
        }
    }

    #[test]
    fn rendering_then_parsing_gives_the_same_expectations() {
        let expectations = sample();
        let order = vec![
            "messages master 2".to_owned(),
            "messages master 10".to_owned(),
        ];
        let text = render(&expectations, "basic.jsonl", &order);
        assert_eq!(parse(&text).unwrap(), expectations, "{text}");
        // Batches in the order they ran, one effect per line, JSON unescaped where it can be.
        let two = text
            .find("\"messages master 2\"")
            .or(text.find("'messages master 2'"));
        let ten = text.find("'messages master 10'");
        assert!(two.unwrap() < ten.unwrap(), "{text}");
        assert!(text.contains("  'invalidate timeline !a:x',\n"), "{text}");
        assert!(text.contains(r#"'{"events":[]}'"#), "{text}");
        assert!(text.contains("'raw' = { hex = 'ff00' }"), "{text}");
    }

    #[test]
    fn a_hand_written_file_parses_with_defaults() {
        let parsed =
            parse("[effects]\n\"s master 1\" = [\"notify t {}\"]\n\n[[query]]\nname = \"q\"\n")
                .unwrap();
        assert_eq!(parsed.batch_rows, 1);
        assert_eq!(parsed.effects["s master 1"], ["notify t {}"]);
        assert!(parsed.kv.is_empty() && parsed.config.is_none());
        assert_eq!(parsed.queries[0].label(), "q");
        assert_eq!(parse("").unwrap(), Expectations::default());
    }

    #[test]
    fn mistakes_in_the_file_are_errors() {
        assert!(parse("effect = []").is_err(), "unknown key");
        assert!(parse("batch_rows = 0").is_err());
        assert!(
            parse("[[query]]\nargs = {}\n").is_err(),
            "a query needs a name"
        );
        assert!(parse("[kv]\nk = 1\n").is_err(), "values are strings or hex");
    }

    #[test]
    fn the_expectations_file_sits_beside_its_fixture() {
        assert_eq!(
            expectations_path(Path::new("tests/basic.jsonl")),
            Path::new("tests/basic.expected.toml")
        );
        assert_eq!(
            expectations_path(Path::new("tests/capture.rdata")),
            Path::new("tests/capture.expected.toml")
        );
    }
}
