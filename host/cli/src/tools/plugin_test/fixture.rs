//! The fixtures of `plugin test`: `tests/*.jsonl` (one row per line, as JSON) and
//! `tests/*.rdata` (replication lines or a capture, what `plugin run --input` reads). Both
//! become replication lines that `plugin run`'s [`parse_input`] assembles into token batches.
//!
//! A JSON-lines fixture holds one object per line: `{"stream": "messages", "row": {...}}`,
//! with optional `"instance"` (default `master`) and `"token"`. A row without a token gets the
//! next one of its (stream, instance), counting from 1; consecutive rows with the same explicit
//! token form one token batch. Blank lines and lines starting with `#` are skipped. The row is
//! handed to the plugin as written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

use crate::tools::plugin_run::{ParsedInput, parse_input};

/// The instance of rows that do not name one.
pub const DEFAULT_INSTANCE: &str = "master";

/// How a fixture file is read, by its extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FixtureKind {
    /// `.jsonl`: one row per line, as JSON.
    JsonLines,
    /// `.rdata`: replication lines, raw or captured.
    Replication,
}

impl FixtureKind {
    /// The kind of `path`, or `None` when it is not a fixture.
    pub fn of(path: &Path) -> Option<FixtureKind> {
        match path.extension()?.to_str()? {
            "jsonl" => Some(FixtureKind::JsonLines),
            "rdata" => Some(FixtureKind::Replication),
            _ => None,
        }
    }
}

/// The fixture files of `dir` (a project's `tests/`), sorted by name.
pub fn fixtures_in(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_file() && FixtureKind::of(&path).is_some() {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

/// Reads the fixture at `path` into token batches.
pub fn read_fixture(path: &Path) -> anyhow::Result<ParsedInput> {
    let kind = FixtureKind::of(path)
        .with_context(|| format!("{}: not a .jsonl or .rdata fixture", path.display()))?;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let lines = match kind {
        FixtureKind::Replication => bytes,
        FixtureKind::JsonLines => {
            let text = std::str::from_utf8(&bytes)
                .with_context(|| format!("{}: not UTF-8", path.display()))?;
            json_lines_to_rdata(text)
                .with_context(|| format!("reading {}", path.display()))?
                .into_bytes()
        }
    };
    parse_input(&lines).with_context(|| format!("reading {}", path.display()))
}

/// One line of a JSON-lines fixture.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureRow {
    stream: String,
    #[serde(default)]
    instance: Option<String>,
    #[serde(default)]
    token: Option<i64>,
    row: Box<serde_json::value::RawValue>,
}

/// A run of rows sharing (stream, instance, token).
struct TokenRun {
    stream: String,
    instance: String,
    token: i64,
    rows: Vec<String>,
}

/// The `RDATA` lines of a JSON-lines fixture: all but the last row of a token as `batch`.
pub fn json_lines_to_rdata(text: &str) -> anyhow::Result<String> {
    let mut runs: Vec<TokenRun> = Vec::new();
    let mut last_token: BTreeMap<(String, String), i64> = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let number = index + 1;
        let parsed: FixtureRow = serde_json::from_str(line).with_context(|| {
            format!(
                "line {number}: expected {{\"stream\": \"...\", \"row\": ...}} \
                 (optional \"instance\", \"token\")"
            )
        })?;
        for (what, name) in [
            ("stream", &parsed.stream),
            ("instance", &parsed.instance_name()),
        ] {
            anyhow::ensure!(
                !name.is_empty() && !name.contains(char::is_whitespace),
                "line {number}: the {what} {name:?} must be one word"
            );
        }
        let instance = parsed.instance_name();
        let key = (parsed.stream.clone(), instance.clone());
        let previous = last_token.get(&key).copied().unwrap_or(0);
        let token = match parsed.token {
            Some(token) => {
                anyhow::ensure!(
                    token >= previous.max(1),
                    "line {number}: token {token} goes back (the last of {} {} was {previous}; tokens start at 1)",
                    key.0,
                    key.1
                );
                token
            }
            None => previous + 1,
        };
        last_token.insert(key, token);
        let row = parsed.row.get().to_owned();
        match runs.last_mut() {
            Some(run)
                if parsed.token.is_some()
                    && run.token == token
                    && run.stream == parsed.stream
                    && run.instance == instance =>
            {
                run.rows.push(row);
            }
            _ => {
                anyhow::ensure!(
                    !runs.iter().any(|run| run.token == token
                        && run.stream == parsed.stream
                        && run.instance == instance),
                    "line {number}: token {token} of {} {instance} is already used by earlier rows that are not just above",
                    parsed.stream
                );
                runs.push(TokenRun {
                    stream: parsed.stream,
                    instance,
                    token,
                    rows: vec![row],
                });
            }
        }
    }
    let mut out = String::new();
    for run in &runs {
        for (i, row) in run.rows.iter().enumerate() {
            let token = match i + 1 == run.rows.len() {
                true => run.token.to_string(),
                false => "batch".to_owned(),
            };
            out += &format!("RDATA {} {} {token} {row}\n", run.stream, run.instance);
        }
    }
    Ok(out)
}

impl FixtureRow {
    fn instance_name(&self) -> String {
        self.instance
            .clone()
            .unwrap_or_else(|| DEFAULT_INSTANCE.to_owned())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rows_get_tokens_in_order_per_stream_and_instance() {
        let text = r#"
# two rooms
{"stream": "messages", "row": {"room": "!a:x", "body": "hi"}}
{"stream": "typing", "row": ["!a:x"]}
{"stream": "messages", "row": {"room": "!b:x"}}
{"stream": "messages", "instance": "worker1", "row": {}}
"#;
        assert_eq!(
            json_lines_to_rdata(text).unwrap(),
            "RDATA messages master 1 {\"room\": \"!a:x\", \"body\": \"hi\"}\n\
             RDATA typing master 1 [\"!a:x\"]\n\
             RDATA messages master 2 {\"room\": \"!b:x\"}\n\
             RDATA messages worker1 1 {}\n"
        );
    }

    #[test]
    fn rows_with_one_explicit_token_travel_together() {
        let text = "{\"stream\":\"s\",\"token\":5,\"row\":1}\n\
                    {\"stream\":\"s\",\"token\":5,\"row\":2}\n\
                    {\"stream\":\"s\",\"row\":3}\n";
        assert_eq!(
            json_lines_to_rdata(text).unwrap(),
            "RDATA s master batch 1\nRDATA s master 5 2\nRDATA s master 6 3\n"
        );
        let parsed = parse_input(json_lines_to_rdata(text).unwrap().as_bytes()).unwrap();
        let sizes: Vec<_> = parsed
            .batches
            .iter()
            .map(|b| (b.token.0, b.rows.len()))
            .collect();
        assert_eq!(sizes, vec![(5, 2), (6, 1)]);
    }

    #[test]
    fn bad_lines_are_errors_naming_the_line() {
        let cases = [
            ("{\"stream\":\"s\"}", "line 1"),
            ("\n{\"stream\":\"s\",\"row\":1,\"extra\":2}", "line 2"),
            ("{\"stream\":\"two words\",\"row\":1}", "one word"),
            (
                "{\"stream\":\"s\",\"token\":4,\"row\":1}\n{\"stream\":\"s\",\"token\":3,\"row\":1}",
                "goes back",
            ),
            (
                "{\"stream\":\"s\",\"token\":4,\"row\":1}\n{\"stream\":\"t\",\"row\":1}\n{\"stream\":\"s\",\"token\":4,\"row\":1}",
                "already used",
            ),
            ("not json", "line 1"),
        ];
        for (text, needle) in cases {
            let error = format!("{:#}", json_lines_to_rdata(text).unwrap_err());
            assert!(error.contains(needle), "{text:?}: {error}");
        }
    }

    #[test]
    fn fixtures_are_found_by_extension() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.jsonl", "a.rdata", "a.expected.toml", "notes.md"] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let found = fixtures_in(dir.path()).unwrap();
        let names: Vec<_> = found
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(names, ["a.rdata", "b.jsonl"]);
    }
}
