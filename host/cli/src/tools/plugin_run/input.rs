//! The input of `plugin run`: replication lines (raw or captured) decoded, `RDATA` assembled
//! into token batches as the reader assembles them, and those grouped into plugin batches.

use anyhow::Context;
use bytes::Bytes;
use streamhost_plugin_runtime::{Batch, Row};
use streamhost_proto::{Command, is_blank};
use streamhost_server::reader::BatchAssembler;

/// The token batches of an input, in order, with what could not be used.
#[derive(Debug, Default)]
pub struct ParsedInput {
    /// One batch per numeric token, `batch` runs assembled.
    pub batches: Vec<streamhost_server::reader::Batch>,
    /// Rows of `batch` runs left unfinished at the end.
    pub unfinished_rows: usize,
}

/// Decodes the input's lines and assembles its `RDATA` rows into token batches.
///
/// A line that is neither blank, a `#` comment, a capture line (`S `, `C `, `P <channel> `)
/// nor a replication command is an error naming its number. `C` lines (client to server)
/// never carry rows and are skipped.
pub fn parse_input(input: &[u8]) -> anyhow::Result<ParsedInput> {
    let mut assembler = BatchAssembler::default();
    let mut parsed = ParsedInput::default();
    for (index, line) in input.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(command_line) = command_of(line) else {
            continue;
        };
        let command = Command::decode(&Bytes::copy_from_slice(command_line))
            .with_context(|| format!("line {}", index + 1))?;
        if let Command::Rdata(rdata) = command
            && let Some(batch) = assembler.push(rdata)
        {
            parsed.batches.push(batch);
        }
    }
    parsed.unfinished_rows = assembler.pending_rows();
    Ok(parsed)
}

/// The replication line a line of the input carries, if any.
fn command_of(line: &[u8]) -> Option<&[u8]> {
    if is_blank(line) || line.starts_with(b"#") || line.starts_with(b"C ") {
        return None;
    }
    if let Some(rest) = line.strip_prefix(b"S ") {
        return Some(rest);
    }
    if let Some(rest) = line.strip_prefix(b"P ") {
        // `P <channel> <line>`: the Redis channel, then the published line.
        let space = rest.iter().position(|b| *b == b' ')?;
        return Some(&rest[space + 1..]);
    }
    Some(line)
}

/// Groups consecutive token batches of one (stream, instance) that `wants` accepts into plugin
/// batches of at most `max_rows` rows, cutting only between tokens. Returns the batches and
/// the number of rows not wanted.
pub fn group_batches(
    token_batches: Vec<streamhost_server::reader::Batch>,
    wants: impl Fn(&str) -> bool,
    max_rows: usize,
) -> (Vec<Batch>, usize) {
    let mut batches: Vec<Batch> = Vec::new();
    let mut skipped = 0;
    for token_batch in token_batches {
        if !wants(token_batch.stream.as_str()) {
            skipped += token_batch.rows.len();
            continue;
        }
        let token = token_batch.token.0;
        let rows = token_batch.rows.iter().map(|row| Row {
            token,
            data: row.as_str().to_owned(),
        });
        match batches.last_mut() {
            Some(last)
                if last.stream == token_batch.stream.as_str()
                    && last.instance == token_batch.instance.as_str()
                    && last.rows.len() + token_batch.rows.len() <= max_rows =>
            {
                last.rows.extend(rows);
                last.token = token;
            }
            _ => {
                batches.push(Batch {
                    stream: token_batch.stream.as_str().to_owned(),
                    instance: token_batch.instance.as_str().to_owned(),
                    prev_token: token_batch.prev.0,
                    token,
                    rows: rows.collect(),
                });
            }
        }
    }
    (batches, skipped)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tokens(batches: &[Batch]) -> Vec<(&str, &str, i64, i64, usize)> {
        batches
            .iter()
            .map(|b| {
                (
                    b.stream.as_str(),
                    b.instance.as_str(),
                    b.prev_token,
                    b.token,
                    b.rows.len(),
                )
            })
            .collect()
    }

    #[test]
    fn raw_lines_assemble_batch_runs_and_ignore_other_commands() {
        let input = b"POSITION messages master 0 0\n\
            RDATA messages master batch {\"room\":\"!a:x\"}\n\
            RDATA messages master 3 {\"room\":\"!b:x\"}\n\
            PING 123\n\
            \n\
            RDATA typing master 7 [\"!a:x\"]\n\
            RDATA messages master 4 {\"room\":\"!a:x\"}\n\
            RDATA messages master batch {\"room\":\"!c:x\"}\n";
        let parsed = parse_input(input).unwrap();
        let summary: Vec<_> = parsed
            .batches
            .iter()
            .map(|b| (b.stream.as_str(), b.prev.0, b.token.0, b.rows.len()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("messages", 0, 3, 2),
                ("typing", 0, 7, 1),
                ("messages", 3, 4, 1)
            ]
        );
        assert_eq!(parsed.unfinished_rows, 1);
    }

    #[test]
    fn capture_lines_carry_rows_after_their_tag_and_channel() {
        let input = b"# a comment\n\
            C NAME capture\n\
            S SERVER localhost\n\
            S RDATA messages master 2 {\"room\":\"!a:x\"}\n\
            P localhost RDATA messages worker1 5 {\"room\":\"!b:x\"}\n\
            P localhost/USER_IP USER_IP @bob:x [\"t\",\"::1\",\"ua\",\"D\",1]\n";
        let parsed = parse_input(input).unwrap();
        let got: Vec<_> = parsed
            .batches
            .iter()
            .map(|b| (b.instance.as_str(), b.token.0, b.rows[0].as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("master", 2, r#"{"room":"!a:x"}"#),
                ("worker1", 5, r#"{"room":"!b:x"}"#)
            ]
        );
    }

    #[test]
    fn the_real_synapse_capture_yields_all_its_rows() {
        let capture = include_bytes!("../../../../server/tests/fixtures/real-session-1.txt");
        let parsed = parse_input(capture).unwrap();
        let rows: usize = parsed.batches.iter().map(|b| b.rows.len()).sum();
        assert_eq!(rows, 141, "every RDATA of the capture");
        assert_eq!(parsed.unfinished_rows, 0);
        let (batches, skipped) = group_batches(parsed.batches, |s| s == "events", 1024);
        assert!(!batches.is_empty());
        assert!(batches.iter().all(|b| b.stream == "events"));
        assert_eq!(
            skipped + batches.iter().map(|b| b.rows.len()).sum::<usize>(),
            141
        );
    }

    #[test]
    fn a_malformed_line_is_an_error_naming_it() {
        let error =
            parse_input(b"RDATA messages master 1 {}\nRDATA messages master x {}\n").unwrap_err();
        assert!(format!("{error:#}").contains("line 2"), "{error:#}");
    }

    #[test]
    fn grouping_joins_consecutive_tokens_and_cuts_only_between_them() {
        let mut input = String::new();
        // Tokens 1..=3 of one row each, then token 4 with three rows, then token 5.
        for token in 1..=3 {
            input += &format!("RDATA messages master {token} {{\"n\":{token}}}\n");
        }
        input += "RDATA messages master batch {\"n\":40}\n";
        input += "RDATA messages master batch {\"n\":41}\n";
        input += "RDATA messages master 4 {\"n\":42}\n";
        input += "RDATA messages master 5 {\"n\":5}\n";
        // Another instance interrupts the run; an unwanted stream does not.
        input += "RDATA typing master 9 []\n";
        input += "RDATA messages master 6 {\"n\":6}\n";
        input += "RDATA messages worker 2 {\"n\":7}\n";
        input += "RDATA messages master 7 {\"n\":8}\n";
        let parsed = parse_input(input.as_bytes()).unwrap();
        let wants = |s: &str| s == "messages";

        let (batches, skipped) = group_batches(parsed.batches, wants, 5);
        assert_eq!(skipped, 1);
        assert_eq!(
            tokens(&batches),
            vec![
                ("messages", "master", 0, 3, 3),
                // Token 4's three rows do not fit beside tokens 1..=3: a new batch.
                ("messages", "master", 3, 6, 5),
                ("messages", "worker", 0, 2, 1),
                ("messages", "master", 6, 7, 1),
            ]
        );
        let rows: Vec<i64> = batches[1].rows.iter().map(|r| r.token).collect();
        assert_eq!(rows, vec![4, 4, 4, 5, 6]);
    }

    #[test]
    fn a_token_larger_than_the_batch_limit_stays_whole() {
        let input = "RDATA messages master batch {}\nRDATA messages master batch {}\n\
                     RDATA messages master 1 {}\nRDATA messages master 2 {}\n";
        let parsed = parse_input(input.as_bytes()).unwrap();
        let (batches, _) = group_batches(parsed.batches, |_| true, 1);
        assert_eq!(
            tokens(&batches),
            vec![
                ("messages", "master", 0, 1, 3),
                ("messages", "master", 1, 2, 1)
            ]
        );
    }
}
