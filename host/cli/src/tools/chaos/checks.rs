//! The checks at the end of a run, over the writer's log, the clients' history and what
//! every reader applied: nothing acknowledged lost, nothing applied twice, every reader at
//! the writer's positions, order kept per (stream, instance) and per client.

use std::collections::{BTreeMap, HashMap, HashSet};

use streamhost_proto::Token;

use super::history::{History, row_id, row_origin};

/// The writer's log at the end: per stream, `(token, row JSON)` in log order.
pub(super) type LogRows = BTreeMap<String, Vec<(Token, String)>>;

/// What one reader (or plugin) applied: per stream, `(instance, token, row JSON)` in
/// (token, instance, seq) order, and its positions per (stream, instance).
#[derive(Debug, Default)]
pub(super) struct Applied {
    /// Which reader or plugin.
    pub(super) name: String,
    /// Rows per stream.
    pub(super) rows: BTreeMap<String, Vec<(String, Token, String)>>,
    /// Position per (stream, instance).
    pub(super) positions: HashMap<(String, String), Token>,
}

/// One check's outcome.
#[derive(Debug)]
pub(super) struct Check {
    /// What was checked.
    pub(super) name: String,
    /// How many rows (or positions) it looked at.
    pub(super) checked: usize,
    /// What was wrong, one line each (empty: passed).
    pub(super) violations: Vec<String>,
}

impl Check {
    fn new(name: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            checked: 0,
            violations: Vec::new(),
        }
    }
}

/// Every check, in the order the report prints them. `instance` is the writer's.
pub(super) fn run(
    log: &LogRows,
    history: &History,
    applied: &[Applied],
    instance: &str,
) -> Vec<Check> {
    let mut checks = vec![
        acknowledged_kept(log, history),
        log_exactly_once(log, history),
        client_order(log),
    ];
    for a in applied {
        checks.push(applied_exactly_once(log, a, instance));
        checks.push(at_writer_positions(log, a, instance));
    }
    checks
}

/// A plugin's count of every stream (`None`: it did not answer) is the log's row count.
pub(super) fn plugin_counts(
    log: &LogRows,
    name: &str,
    counts: &BTreeMap<String, Option<u64>>,
) -> Check {
    let mut check = Check::new(format!("{name}: every row applied once (row counts)"));
    for (stream, rows) in log {
        check.checked += rows.len();
        let got = counts.get(stream).copied().flatten();
        if got != Some(rows.len() as u64) {
            check.violations.push(format!(
                "{stream}: the plugin counted {}, the log has {}",
                got.map_or("nothing".to_string(), |n| n.to_string()),
                rows.len()
            ));
        }
    }
    check
}

/// Every acknowledged row is in the log at the token it was acknowledged with.
fn acknowledged_kept(log: &LogRows, history: &History) -> Check {
    let mut check = Check::new("no acknowledged row lost (writer's log)");
    let mut at: HashMap<(&str, Token), Vec<String>> = HashMap::new();
    for (stream, rows) in log {
        for (token, row) in rows {
            at.entry((stream.as_str(), *token))
                .or_default()
                .extend(row_id(row));
        }
    }
    for (id, ack) in &history.acked {
        check.checked += 1;
        let kept = at
            .get(&(ack.stream.as_str(), ack.token))
            .is_some_and(|ids| ids.contains(id));
        if !kept {
            check.violations.push(format!(
                "{id} acknowledged at {}/{} is not in the log there",
                ack.stream, ack.token.0
            ));
        }
    }
    check
}

/// Every row of the log was acknowledged once and is there once; no append was found partly
/// committed.
fn log_exactly_once(log: &LogRows, history: &History) -> Check {
    let mut check = Check::new("every row in the log once, each acknowledged");
    let mut seen = HashSet::new();
    for rows in log.values() {
        for (token, row) in rows {
            check.checked += 1;
            let Some(id) = row_id(row) else {
                check
                    .violations
                    .push(format!("row at {} has no id: {row}", token.0));
                continue;
            };
            if !history.acked.contains_key(&id) {
                check
                    .violations
                    .push(format!("{id} at {} was never acknowledged", token.0));
            }
            if !seen.insert(id.clone()) {
                check.violations.push(format!("{id} is in the log twice"));
            }
        }
    }
    for id in &history.partial {
        check
            .violations
            .push(format!("{id}: its append was found partly committed"));
    }
    check
}

/// Each client's rows are in the log in the order it sent them, per stream.
fn client_order(log: &LogRows) -> Check {
    let mut check = Check::new("order kept per (stream, client)");
    for (stream, rows) in log {
        let mut last: HashMap<u64, u64> = HashMap::new();
        for (token, row) in rows {
            let Some((client, n)) = row_origin(row) else {
                continue;
            };
            check.checked += 1;
            if let Some(previous) = last.insert(client, n)
                && previous >= n
            {
                check.violations.push(format!(
                    "{stream}: client {client}'s row {n} at {} after its row {previous}",
                    token.0
                ));
            }
        }
    }
    check
}

/// What a reader applied is the log, row for row: none missing, none twice, in order.
fn applied_exactly_once(log: &LogRows, applied: &Applied, instance: &str) -> Check {
    let mut check = Check::new(format!(
        "{}: every row applied once, in order",
        applied.name
    ));
    for (stream, rows) in log {
        let got: Vec<(Token, &str)> = applied
            .rows
            .get(stream)
            .map(|r| {
                r.iter()
                    .filter(|(i, _, _)| i == instance)
                    .map(|(_, t, row)| (*t, row.as_str()))
                    .collect()
            })
            .unwrap_or_default();
        let want: Vec<(Token, &str)> = rows.iter().map(|(t, r)| (*t, r.as_str())).collect();
        check.checked += want.len();
        if got == want {
            continue;
        }
        let want_set: HashSet<_> = want.iter().collect();
        let mut got_set = HashSet::new();
        let twice = got.iter().filter(|r| !got_set.insert(*r)).count();
        let missing = want.iter().filter(|r| !got_set.contains(r)).count();
        let extra = got.iter().filter(|r| !want_set.contains(r)).count();
        check.violations.push(format!(
            "{stream}: {} rows applied, {} in the log: {missing} missing, {twice} applied \
             twice, {extra} not in the log{}",
            got.len(),
            want.len(),
            if missing + twice + extra == 0 {
                ", order differs"
            } else {
                ""
            }
        ));
    }
    check
}

/// The reader's position of every stream is the writer's.
fn at_writer_positions(log: &LogRows, applied: &Applied, instance: &str) -> Check {
    let mut check = Check::new(format!("{}: at the writer's positions", applied.name));
    for (stream, rows) in log {
        check.checked += 1;
        let want = rows.last().map_or(streamhost_log::ORIGIN, |(t, _)| *t);
        let got = applied
            .positions
            .get(&(stream.clone(), instance.to_owned()))
            .copied()
            .unwrap_or(streamhost_log::ORIGIN);
        if got != want {
            check
                .violations
                .push(format!("{stream}: at {}, the writer at {}", got.0, want.0));
        }
    }
    check
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::chaos::history::Ack;

    fn row(client: u64, n: u64) -> String {
        format!(r#"{{"client":{client},"id":"c{client}-{n}","n":{n}}}"#)
    }

    fn setup() -> (LogRows, History, Applied) {
        let rows = vec![
            (Token(2), row(0, 0)),
            (Token(3), row(1, 0)),
            (Token(4), row(0, 1)),
        ];
        let mut history = History::default();
        for (token, r) in &rows {
            history.acked.insert(
                row_id(r).unwrap(),
                Ack {
                    stream: "s".into(),
                    token: *token,
                },
            );
        }
        let applied = Applied {
            name: "reader-1".into(),
            rows: BTreeMap::from([(
                "s".to_string(),
                rows.iter()
                    .map(|(t, r)| ("master".to_string(), *t, r.clone()))
                    .collect(),
            )]),
            positions: HashMap::from([(("s".to_string(), "master".to_string()), Token(4))]),
        };
        (BTreeMap::from([("s".to_string(), rows)]), history, applied)
    }

    fn violations(checks: &[Check]) -> Vec<String> {
        checks.iter().flat_map(|c| c.violations.clone()).collect()
    }

    #[test]
    fn a_clean_history_passes() {
        let (log, history, applied) = setup();
        let checks = run(&log, &history, &[applied], "master");
        assert_eq!(violations(&checks), Vec::<String>::new());
        assert_eq!(checks.len(), 5);
    }

    #[test]
    fn a_lost_row_a_repeat_a_lag_and_a_reorder_are_each_caught() {
        let (mut log, history, mut applied) = setup();
        applied
            .rows
            .get_mut("s")
            .unwrap()
            .push(("master".into(), Token(4), row(0, 1)));
        applied
            .positions
            .insert(("s".into(), "master".into()), Token(3));
        let v = violations(&run(&log, &history, &[applied], "master"));
        assert!(v.iter().any(|v| v.contains("1 applied twice")), "{v:?}");
        assert!(
            v.iter().any(|v| v.contains("at 3, the writer at 4")),
            "{v:?}"
        );

        log.get_mut("s").unwrap().remove(1);
        log.get_mut("s").unwrap().push((Token(5), row(0, 0)));
        let v = violations(&run(&log, &history, &[], "master"));
        assert!(
            v.iter().any(|v| v.contains("c1-0 acknowledged at s/3")),
            "{v:?}"
        );
        assert!(
            v.iter().any(|v| v.contains("c0-0 is in the log twice")),
            "{v:?}"
        );
        assert!(
            v.iter().any(|v| v.contains("client 0's row 0 at 5")),
            "{v:?}"
        );
    }
}
