//! What a fixture's run did ([`Outcome`]) against its expectations: one readable line (or a
//! few) per batch, key or query that differs, effects diffed line by line (`-` expected only,
//! `+` the plugin's only).

use std::collections::{BTreeMap, BTreeSet};

use super::expectations::{Expectations, KvValue, quote};

/// What one replay of a fixture did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    /// Every batch's label, in the order it ran.
    pub order: Vec<String>,
    /// Effects and pushes of the batches that had any, by label.
    pub effects: BTreeMap<String, Vec<String>>,
    /// The key-value store after the run.
    pub kv: BTreeMap<String, KvValue>,
    /// The answer to each expected query, in order (`Err` with the failure).
    pub answers: Vec<Result<String, String>>,
    /// The batches that failed, one line each (label, reason, message).
    pub failures: Vec<String>,
}

/// The differences between `expected` and `actual`, as indented lines; empty when they agree.
pub fn differences(expected: &Expectations, actual: &Outcome) -> Vec<String> {
    let mut lines = Vec::new();
    let mut labels: Vec<&String> = actual.order.iter().collect();
    labels.extend(
        expected
            .effects
            .keys()
            .filter(|l| !actual.order.contains(l)),
    );
    let mut seen = BTreeSet::new();
    for label in labels {
        if !seen.insert(label) {
            continue;
        }
        let none = Vec::new();
        let want = expected.effects.get(label).unwrap_or(&none);
        let got = actual.effects.get(label).unwrap_or(&none);
        if want == got {
            continue;
        }
        let ran = actual.order.contains(label);
        let heading = match (want.is_empty(), got.is_empty(), ran) {
            (_, _, false) => "expected effects, but no such batch ran".to_owned(),
            (true, false, _) => format!("expected no effects, got {}", got.len()),
            (false, true, _) => format!("expected {} effects, got none", want.len()),
            _ => format!(
                "effects differ (expected {}, got {})",
                want.len(),
                got.len()
            ),
        };
        lines.push(format!("  batch {label:?}: {heading}"));
        lines.extend(line_diff(want, got).into_iter().map(|l| format!("    {l}")));
    }
    let keys: BTreeSet<&String> = expected.kv.keys().chain(actual.kv.keys()).collect();
    for key in keys {
        match (expected.kv.get(key), actual.kv.get(key)) {
            (Some(want), Some(got)) if want != got => {
                lines.push(format!("  kv {}: expected {want}, got {got}", quote(key)));
            }
            (Some(want), None) => {
                lines.push(format!("  kv {}: expected {want}, not stored", quote(key)));
            }
            (None, Some(got)) => {
                lines.push(format!("  kv {}: not expected, got {got}", quote(key)));
            }
            _ => {}
        }
    }
    for (query, answer) in expected.queries.iter().zip(&actual.answers) {
        let label = query.label();
        match (&query.answer, answer) {
            (_, Err(failure)) => lines.push(format!("  query {label}: failed: {failure}")),
            (None, Ok(got)) => lines.push(format!(
                "  query {label}: no answer expected yet (--update writes it), got {}",
                quote(got)
            )),
            (Some(want), Ok(got)) if want != got => lines.push(format!(
                "  query {label}: expected {}, got {}",
                quote(want),
                quote(got)
            )),
            _ => {}
        }
    }
    lines
}

/// `want` against `got`, line by line along their longest common subsequence: `  ` both,
/// `- ` only expected, `+ ` only the plugin's (a changed line shows as `-` then `+`).
pub fn line_diff(want: &[String], got: &[String]) -> Vec<String> {
    let (n, m) = (want.len(), got.len());
    // lcs[i][j]: the longest common subsequence of want[i..] and got[j..].
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = match want[i] == got[j] {
                true => lcs[i + 1][j + 1] + 1,
                false => lcs[i + 1][j].max(lcs[i][j + 1]),
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < n || j < m {
        if i < n && j < m && want[i] == got[j] {
            out.push(format!("  {}", want[i]));
            (i, j) = (i + 1, j + 1);
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push(format!("- {}", want[i]));
            i += 1;
        } else {
            out.push(format!("+ {}", got[j]));
            j += 1;
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::expectations::ExpectedQuery;
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_line_diff_marks_what_changed() {
        let want = strings(&["invalidate t a", "notify r 1", "notify r 2"]);
        let got = strings(&["invalidate t a", "notify r 9", "notify r 2", "push h k b"]);
        assert_eq!(
            line_diff(&want, &got),
            strings(&[
                "  invalidate t a",
                "- notify r 1",
                "+ notify r 9",
                "  notify r 2",
                "+ push h k b",
            ])
        );
        assert!(line_diff(&want, &want).iter().all(|l| l.starts_with("  ")));
    }

    #[test]
    fn differences_name_the_batch_key_and_query() {
        let expected = Expectations {
            effects: BTreeMap::from([
                ("s master 1".to_owned(), strings(&["notify t 1"])),
                ("s master 7".to_owned(), strings(&["notify t 7"])),
            ]),
            kv: BTreeMap::from([
                ("a".to_owned(), KvValue::Text("1".into())),
                ("b".to_owned(), KvValue::Text("2".into())),
            ]),
            queries: vec![
                ExpectedQuery {
                    name: "q".into(),
                    args: BTreeMap::from([("room".into(), "!a".into())]),
                    answer: Some("yes".into()),
                },
                ExpectedQuery {
                    name: "r".into(),
                    args: BTreeMap::new(),
                    answer: Some("same".into()),
                },
            ],
            ..Expectations::default()
        };
        let actual = Outcome {
            order: strings(&["s master 1", "s master 2"]),
            effects: BTreeMap::from([
                ("s master 1".to_owned(), strings(&["notify t 2"])),
                ("s master 2".to_owned(), strings(&["invalidate c k"])),
            ]),
            kv: BTreeMap::from([
                ("a".to_owned(), KvValue::Text("1".into())),
                ("c".to_owned(), KvValue::of(&[0xff])),
            ]),
            answers: vec![Ok("no".into()), Ok("same".into())],
            failures: Vec::new(),
        };
        assert_eq!(
            differences(&expected, &actual),
            strings(&[
                "  batch \"s master 1\": effects differ (expected 1, got 1)",
                "    - notify t 1",
                "    + notify t 2",
                "  batch \"s master 2\": expected no effects, got 1",
                "    + invalidate c k",
                "  batch \"s master 7\": expected effects, but no such batch ran",
                "    - notify t 7",
                "  kv 'b': expected '2', not stored",
                "  kv 'c': not expected, got { hex = 'ff' }",
                "  query q room=!a: expected 'yes', got 'no'",
            ])
        );
        let agreeing = Outcome {
            order: strings(&["s master 1"]),
            effects: expected.effects.clone(),
            kv: expected.kv.clone(),
            answers: vec![Ok("yes".into()), Ok("same".into())],
            failures: Vec::new(),
        };
        let mut expected = expected;
        expected.effects.remove("s master 7");
        let mut agreeing = agreeing;
        agreeing.effects.remove("s master 7");
        assert_eq!(differences(&expected, &agreeing), Vec::<String>::new());
    }

    #[test]
    fn a_failed_or_unanswered_query_is_a_difference() {
        let expected = Expectations {
            queries: vec![ExpectedQuery {
                name: "q".into(),
                args: BTreeMap::new(),
                answer: None,
            }],
            ..Expectations::default()
        };
        let mut actual = Outcome {
            answers: vec![Ok("x".into())],
            ..Outcome::default()
        };
        assert_eq!(
            differences(&expected, &actual),
            ["  query q: no answer expected yet (--update writes it), got 'x'"]
        );
        actual.answers = vec![Err("trap: boom".into())];
        assert_eq!(
            differences(&expected, &actual),
            ["  query q: failed: trap: boom"]
        );
    }
}
