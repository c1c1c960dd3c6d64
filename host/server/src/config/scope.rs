//! [`Scope`]: what one API token's holder may use — `plugin/query` patterns and topic patterns,
//! `*` matching any run of characters, `{subject}` in a topic pattern replaced by the token's
//! subject (taken literally: a `*` in a subject is no wildcard).

use std::fmt;

/// One piece of a [`Pattern`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Star,
}

/// A pattern: literal text and `*`s (each matching any run of characters, empty included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    pieces: Vec<Piece>,
    /// The pattern as written, `{subject}` replaced, for messages.
    text: String,
}

impl Pattern {
    /// Parses `text`, replacing `{subject}` with `subject` (literally) when given.
    fn parse(text: &str, subject: Option<&str>) -> Pattern {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut shown = String::new();
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            if let (Some(subject), Some(after)) = (subject, rest.strip_prefix("{subject}")) {
                literal.push_str(subject);
                shown.push_str(subject);
                rest = after;
                continue;
            }
            if c == '*' {
                if !literal.is_empty() {
                    pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                }
                if pieces.last() != Some(&Piece::Star) {
                    pieces.push(Piece::Star);
                }
            } else {
                literal.push(c);
            }
            shown.push(c);
            rest = &rest[c.len_utf8()..];
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Pattern {
            pieces,
            text: shown,
        }
    }

    /// Whether `text` matches the whole pattern.
    pub fn matches(&self, text: &str) -> bool {
        matches_from(&self.pieces, text)
    }
}

/// Whether `text` matches `pieces`: literals in order, a star skipping as much as needed (the
/// leftmost placement of each literal after a star is enough, as a later one only leaves less).
fn matches_from(pieces: &[Piece], text: &str) -> bool {
    match pieces.split_first() {
        None => text.is_empty(),
        Some((Piece::Literal(l), rest)) => text
            .strip_prefix(l.as_str())
            .is_some_and(|after| matches_from(rest, after)),
        Some((Piece::Star, rest)) => match rest.split_first() {
            None => true,
            Some((Piece::Literal(l), [])) => text.ends_with(l.as_str()),
            Some((Piece::Literal(l), after_literal)) => text
                .match_indices(l.as_str())
                .next()
                .is_some_and(|(at, _)| matches_from(after_literal, &text[at + l.len()..])),
            // Two stars in a row are merged when parsing.
            Some((Piece::Star, _)) => matches_from(rest, text),
        },
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A `plugin/query` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
struct QueryPattern {
    plugin: Pattern,
    query: Pattern,
}

/// What a token's holder may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    subject: String,
    queries: Vec<QueryPattern>,
    topics: Vec<Pattern>,
}

impl Scope {
    /// The scope of `subject` with these `plugin/query` and topic patterns; an error names a
    /// malformed one. `*` alone as a query pattern means every query of every plugin.
    pub fn new(subject: &str, queries: &[String], topics: &[String]) -> anyhow::Result<Scope> {
        anyhow::ensure!(
            !subject.is_empty() && !subject.chars().any(char::is_control),
            "subject must be non-empty, without control characters"
        );
        let queries = queries
            .iter()
            .map(|q| {
                let (plugin, query) = match q.as_str() {
                    "*" => ("*", "*"),
                    q => q.split_once('/').filter(|(p, n)| {
                        !p.is_empty() && !n.is_empty() && !n.contains('/')
                    }).ok_or_else(|| {
                        anyhow::anyhow!(
                            "queries: {q:?} is not a plugin/query pattern (e.g. room-timeline/* or *)"
                        )
                    })?,
                };
                Ok(QueryPattern {
                    plugin: Pattern::parse(plugin, None),
                    query: Pattern::parse(query, None),
                })
            })
            .collect::<anyhow::Result<_>>()?;
        let topics = topics
            .iter()
            .map(|t| {
                anyhow::ensure!(
                    !t.is_empty() && !t.contains(','),
                    "topics: {t:?} must be non-empty, without commas"
                );
                Ok(Pattern::parse(t, Some(subject)))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Scope {
            subject: subject.to_owned(),
            queries,
            topics,
        })
    }

    /// Who the holder is.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Whether the holder may read query `name` of `plugin`.
    pub fn allows_query(&self, plugin: &str, name: &str) -> bool {
        self.queries
            .iter()
            .any(|p| p.plugin.matches(plugin) && p.query.matches(name))
    }

    /// Whether the holder may receive notifications on `topic`.
    pub fn allows_topic(&self, topic: &str) -> bool {
        self.topics.iter().any(|p| p.matches(topic))
    }

    /// The query patterns, as configured.
    pub fn query_patterns(&self) -> Vec<String> {
        self.queries
            .iter()
            .map(|q| format!("{}/{}", q.plugin, q.query))
            .collect()
    }

    /// The topic patterns, `{subject}` replaced.
    pub fn topic_patterns(&self) -> Vec<String> {
        self.topics.iter().map(ToString::to_string).collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pattern(p: &str) -> Pattern {
        Pattern::parse(p, None)
    }

    #[test]
    fn stars_match_any_run_of_characters() {
        for (p, yes, no) in [
            (
                "room:*",
                &["room:", "room:!a:x"][..],
                &["room", "user:room:"][..],
            ),
            ("*", &["", "anything"], &[]),
            (
                "a*b*c",
                &["abc", "aXbYc", "abbc", "abcbc"],
                &["ab", "acb", "abcd"],
            ),
            ("*:x", &[":x", "!r:x"], &["!r:y", "!r:xx"]),
            ("exact", &["exact"], &["exac", "exactly"]),
            ("a**b", &["ab", "aXXb"], &["a"]),
            ("*ab*ab", &["abab", "xabyab", "ababab"], &["ab", "abba"]),
        ] {
            for text in yes {
                assert!(pattern(p).matches(text), "{p} should match {text}");
            }
            for text in no {
                assert!(!pattern(p).matches(text), "{p} should not match {text}");
            }
        }
    }

    #[test]
    fn the_subject_is_substituted_literally() {
        let scope = Scope::new("@a*:x", &[], &["user:{subject}".into()]).unwrap();
        assert!(scope.allows_topic("user:@a*:x"));
        // The star in the subject is no wildcard.
        assert!(!scope.allows_topic("user:@alice:x"));
        assert_eq!(scope.topic_patterns(), vec!["user:@a*:x".to_string()]);
    }

    #[test]
    fn query_patterns_name_plugin_and_query() {
        let scope = Scope::new(
            "@u:x",
            &["room-timeline/*".into(), "stats/count".into()],
            &["room:*".into()],
        )
        .unwrap();
        assert!(scope.allows_query("room-timeline", "timeline"));
        assert!(scope.allows_query("stats", "count"));
        assert!(!scope.allows_query("stats", "other"));
        assert!(!scope.allows_query("membership", "rooms"));
        let all = Scope::new("@u:x", &["*".into()], &[]).unwrap();
        assert!(all.allows_query("any", "thing"));
        assert!(!all.allows_topic("room:!r:x"), "no topic pattern, no topic");
        for bad in ["noslash", "/q", "p/", "a/b/c"] {
            let err = Scope::new("@u:x", &[bad.into()], &[]).unwrap_err();
            assert!(err.to_string().contains("plugin/query"), "{bad}: {err}");
        }
        assert!(Scope::new("", &[], &[]).is_err());
        assert!(Scope::new("@u:x", &[], &["a,b".into()]).is_err());
    }
}
