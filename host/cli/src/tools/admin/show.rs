//! How `streamhost admin` prints the reader's answers for a person: tables and short lines
//! read from the API's JSON (`docs/plugins.md`, `docs/reader.md` describe the fields). A field
//! the reader does not send shows as `-`.

use std::fmt::Write as _;

use serde_json::Value;

use super::table::Table;

/// Dead letters the plugin list carries per plugin (`GET /v1/admin/plugins`).
const LISTED_DEAD_LETTERS: usize = 100;

/// A JSON value as a cell: strings bare, numbers as they are, nothing as `-`.
fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The first 12 hex digits of a version's sha256, as `git` shortens a commit.
fn short(version: &Value) -> String {
    version
        .as_str()
        .map_or_else(|| "-".into(), |v| v.chars().take(12).collect())
}

/// The sum of a `{"reason": count}` map.
fn total(counts: &Value) -> u64 {
    counts
        .as_object()
        .map_or(0, |m| m.values().filter_map(Value::as_u64).sum())
}

/// How long ago `at_ms` was, in the largest whole unit: `42s`, `5m`, `3h`, `2d`.
fn age(at_ms: &Value, now_ms: u64) -> String {
    let Some(at) = at_ms.as_u64() else {
        return "-".into();
    };
    let secs = now_ms.saturating_sub(at) / 1_000;
    match secs {
        0..60 => format!("{secs}s"),
        60..3_600 => format!("{}m", secs / 60),
        3_600..86_400 => format!("{}h", secs / 3_600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// `GET /v1/admin/plugins` as a table.
pub(super) fn plugins(answer: &Value) -> String {
    let list = answer.as_array().map(Vec::as_slice).unwrap_or_default();
    if list.is_empty() {
        return "no plugins\n".into();
    }
    let mut table = Table::new(&[
        "NAME", "STATE", "VERSION", "LAG", "BATCHES", "ROWS", "FAILURES", "DEAD", "REASON",
    ]);
    for plugin in list {
        let dead = plugin["dead_letters"].as_array().map_or(0, Vec::len);
        table.row(vec![
            cell(&plugin["name"]),
            cell(&plugin["state"]),
            short(&plugin["version"]),
            cell(&plugin["lag"]),
            cell(&plugin["batches"]),
            cell(&plugin["rows"]),
            total(&plugin["failures"]).to_string(),
            match dead {
                LISTED_DEAD_LETTERS => format!("{dead}+"),
                dead => dead.to_string(),
            },
            plugin["reason"].as_str().unwrap_or_default().to_string(),
        ]);
    }
    table.render("")
}

/// One plugin of `GET /v1/admin/plugins` in detail.
pub(super) fn plugin(plugin: &Value) -> String {
    let mut out = String::new();
    let mut field = |name: &str, value: String| {
        let _ = writeln!(out, "{name:<14}{value}");
    };
    field("name", cell(&plugin["name"]));
    let state = match plugin["reason"].as_str() {
        Some(reason) => format!("{} ({reason})", cell(&plugin["state"])),
        None => cell(&plugin["state"]),
    };
    field("state", state);
    field("version", cell(&plugin["version"]));
    field("interface", cell(&plugin["interface"]));
    field("folder", cell(&plugin["folder"]));
    field(
        "authorizer",
        if plugin["authorizer"] == true {
            "yes"
        } else {
            "no"
        }
        .into(),
    );
    field("lag", cell(&plugin["lag"]));
    field(
        "applied",
        format!(
            "{} batches, {} rows, {} effects",
            cell(&plugin["batches"]),
            cell(&plugin["rows"]),
            cell(&plugin["effects"])
        ),
    );
    field(
        "reloads",
        format!(
            "{} ({} failed)",
            cell(&plugin["reloads"]),
            cell(&plugin["reload_failures"])
        ),
    );
    let failures = plugin["failures"]
        .as_object()
        .filter(|m| !m.is_empty())
        .map_or_else(
            || "none".into(),
            |m| {
                m.iter()
                    .map(|(reason, n)| format!("{reason} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        );
    field("failures", failures);
    let dead = plugin["dead_letters"].as_array().map_or(0, Vec::len);
    field(
        "dead letters",
        match dead {
            0 => "none".into(),
            LISTED_DEAD_LETTERS => format!("{dead} or more (`streamhost admin dead-letters`)"),
            n => format!("{n} (`streamhost admin dead-letters`)"),
        },
    );
    if let Some(cursors) = plugin["cursors"].as_array().filter(|c| !c.is_empty()) {
        let mut table = Table::new(&["STREAM", "INSTANCE", "CURSOR", "READER"]);
        for cursor in cursors {
            table.row(vec![
                cell(&cursor["stream"]),
                cell(&cursor["instance"]),
                cell(&cursor["token"]),
                cell(&cursor["reader"]),
            ]);
        }
        out.push_str("cursors\n");
        out.push_str(&table.render("  "));
    }
    if let Some(report) = plugin["reports"].as_array().and_then(|r| r.last()) {
        let tokens = match report["tokens"].as_array().map(Vec::as_slice) {
            Some([from, to]) => format!(
                " on {} {} ({from}, {to}]",
                cell(&report["stream"]),
                cell(&report["instance"])
            ),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "last failure  {}{tokens}, attempt {}: {}: {}",
            cell(&report["call"]),
            cell(&report["attempt"]),
            cell(&report["failure"]["reason"]),
            cell(&report["failure"]["message"])
        );
        if let Some(file) = report["batch_file"].as_str() {
            let _ = writeln!(out, "              batch kept in {file}");
        }
    }
    out
}

/// `GET /v1/admin/plugins/{name}/dead-letters` as a table, ages measured from `now_ms`.
pub(super) fn dead_letters(name: &str, answer: &Value, now_ms: u64) -> String {
    let list = answer.as_array().map(Vec::as_slice).unwrap_or_default();
    if list.is_empty() {
        return format!("no dead letters for {name}\n");
    }
    let mut table = Table::new(&["STREAM", "INSTANCE", "TOKENS", "AGE", "REASON"]);
    for letter in list {
        table.row(vec![
            cell(&letter["stream"]),
            cell(&letter["instance"]),
            format!(
                "({}, {}]",
                cell(&letter["from_token"]),
                cell(&letter["to_token"])
            ),
            age(&letter["at_ms"], now_ms),
            cell(&letter["reason"]),
        ]);
    }
    table.render("")
}

/// `GET /v1/status` as a few lines and a table of streams (and one of plugins, if any).
pub(super) fn status(answer: &Value) -> String {
    let mut out = String::new();
    let connection = &answer["connection"];
    let _ = writeln!(
        out,
        "reader {}: {} to {} (server {}), {} reconnects",
        cell(&answer["name"]),
        cell(&connection["state"]),
        cell(&answer["writer"]),
        cell(&connection["server_name"]),
        cell(&answer["reconnects"])
    );
    if let Some(error) = connection["last_error"].as_str() {
        let _ = writeln!(out, "last error: {error}");
    }
    let streams = answer["streams"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    out.push('\n');
    if streams.is_empty() {
        out.push_str("no streams yet\n");
    } else {
        let mut table = Table::new(&[
            "STREAM", "INSTANCE", "POSITION", "WRITER", "LAG", "ROWS", "GAPS",
        ]);
        for stream in streams {
            table.row(vec![
                cell(&stream["stream"]),
                cell(&stream["instance"]),
                cell(&stream["position"]),
                cell(&stream["writer_position"]),
                cell(&stream["lag"]),
                cell(&stream["rows_applied"]),
                cell(&stream["gaps"]),
            ]);
        }
        out.push_str(&table.render(""));
    }
    if let Some(plugins) = answer["plugins"].as_array().filter(|p| !p.is_empty()) {
        out.push('\n');
        let mut table = Table::new(&["PLUGIN", "STATE", "LAG", "REASON"]);
        for plugin in plugins {
            table.row(vec![
                cell(&plugin["name"]),
                cell(&plugin["state"]),
                cell(&plugin["lag"]),
                plugin["reason"].as_str().unwrap_or_default().to_string(),
            ]);
        }
        out.push_str(&table.render(""));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ages_use_the_largest_whole_unit() {
        let now = 10 * 86_400_000;
        for (ago_s, shown) in [
            (0, "0s"),
            (59, "59s"),
            (60, "1m"),
            (7_199, "1h"),
            (86_400, "1d"),
        ] {
            assert_eq!(age(&json!(now - ago_s * 1_000), now), shown);
        }
        assert_eq!(age(&Value::Null, now), "-");
    }

    #[test]
    fn the_plugin_list_shows_state_short_version_counts_and_reason() {
        let answer = json!([{
            "name": "evil", "state": "quarantined", "reason": "by operator: disk full",
            "version": "0123456789abcdef0123", "lag": 3, "batches": 2, "rows": 5,
            "failures": {"trap": 4, "retry": 1}, "dead_letters": [{}, {}],
        }]);
        let text = plugins(&answer);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("NAME  STATE        VERSION"), "{text}");
        assert!(
            lines[1].starts_with("evil  quarantined  0123456789ab  3    2        5     5         2     by operator: disk full"),
            "{text}"
        );
        assert_eq!(plugins(&json!([])), "no plugins\n");
    }
}
