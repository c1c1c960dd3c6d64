//! JSON exactly as Synapse reads and writes it inside replication lines.
//!
//! Synapse decodes with Python's `json` (NaN and Infinity rejected) and encodes with
//! `separators=(',', ':')`, `ensure_ascii=True`, `allow_nan=False`: compact, every non-ASCII
//! character escaped as `\uXXXX` (surrogate pairs above the BMP), object keys in input order.
//!
//! Parsing is a fast validating scan (`json/scan.rs`) that returns canonical input unchanged,
//! with a rewriting parser (`json/rewrite.rs`) behind it for everything else. Floats are written
//! as Python's `repr` (`json/float.rs`), strings as Python escapes them (`json/escape.rs`).

mod escape;
mod float;
mod items;
pub(crate) mod rewrite;
pub(crate) mod scan;

use std::fmt;

use bytes::Bytes;

pub(crate) use escape::push_str;
pub(crate) use items::{Item, array_items};

/// Deepest nesting of arrays and objects accepted.
///
/// Python's decoder recurses and fails with `RecursionError` at about 995 levels when called
/// from a shallow stack, fewer from inside Synapse; 900 is a little under that, so Streamhost
/// never sends a row that Synapse cannot read. Fixed: real rows nest two or three levels.
pub const MAX_DEPTH: usize = 900;

/// Most digits an integer may have: Python 3.11+'s default `sys.get_int_max_str_digits()`,
/// beyond which `json.loads` raises `ValueError`.
const MAX_INT_DIGITS: usize = 4300;

/// A JSON value in Synapse's canonical encoding: compact and pure ASCII.
///
/// Cheap to clone (it shares its bytes).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RowJson(Bytes);

/// Text that is not one JSON value as Synapse's decoder accepts it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON at byte {offset}: {reason}")]
pub struct JsonError {
    /// Byte offset of the problem in the input.
    pub offset: usize,
    /// What was wrong.
    pub reason: &'static str,
}

impl RowJson {
    /// Parses one JSON value as Python's `json.loads` would and re-serialises it as Synapse's
    /// `json_encoder` would. Copies `text` once when it is already canonical.
    pub fn parse(text: &[u8]) -> Result<RowJson, JsonError> {
        if scan::is_canonical(text) {
            return Ok(RowJson(Bytes::copy_from_slice(text)));
        }
        rewrite::rewrite(text).map(|canonical| RowJson(Bytes::from(canonical)))
    }

    /// Like [`RowJson::parse`], but shares `text`'s buffer (no copy) when it is canonical.
    pub fn parse_bytes(text: Bytes) -> Result<RowJson, JsonError> {
        if scan::is_canonical(&text) {
            return Ok(RowJson(text));
        }
        rewrite::rewrite(&text).map(|canonical| RowJson(Bytes::from(canonical)))
    }

    /// The canonical text.
    pub fn as_str(&self) -> &str {
        // Canonical JSON is pure ASCII: every constructor went through the scanner or the
        // rewriter, both of which only produce or accept ASCII.
        std::str::from_utf8(&self.0).expect("canonical JSON is ASCII")
    }

    /// The canonical text as bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Length of the canonical text in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always `false`: the shortest JSON value is one byte long. Present for API symmetry.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The canonical text, sharing the buffer.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl fmt::Display for RowJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(text: &str) -> Result<String, JsonError> {
        RowJson::parse(text.as_bytes()).map(|json| json.as_str().to_owned())
    }

    #[test]
    fn canonical_input_is_shared_not_copied() {
        let line = Bytes::from_static(b"[\"a\",1]");
        let json = RowJson::parse_bytes(line.clone()).expect("valid");
        assert_eq!(json.as_bytes().as_ptr(), line.as_ptr());
    }

    #[test]
    fn non_canonical_input_is_rewritten_like_python() {
        let cases = [
            (" [ 1 , 2 ]\r\n", "[1,2]"),
            ("\"caf\u{e9} \u{1F600}\"", r#""caf\u00e9 \ud83d\ude00""#),
            (r#""\u0041\/\u00E9\u000a\u007F""#, r#""A/\u00e9\n\u007f""#),
            ("\"\u{7f}\"", r#""\u007f""#),
            (r#""\ud800x\udc00""#, r#""\ud800x\udc00""#),
            (r#""\uD83D\uDE00""#, r#""\ud83d\ude00""#),
            ("-0", "0"),
            ("-0.0", "-0.0"),
            ("1.50", "1.5"),
            ("1e5", "100000.0"),
            ("1E16", "1e+16"),
            ("1e-5", "1e-05"),
            ("0.0001", "0.0001"),
            ("10E-1", "1.0"),
            (
                "123456789012345678901234567890",
                "123456789012345678901234567890",
            ),
            (r#"{"a":1,"b":2,"a":3}"#, r#"{"a":3,"b":2}"#),
            (r#"{"\u0061":1,"a":2}"#, r#"{"a":2}"#),
            (r#"{"a" : {"x":1,"x":[]}}"#, r#"{"a":{"x":[]}}"#),
        ];
        for (input, want) in cases {
            assert_eq!(canonical(input).as_deref(), Ok(want), "{input:?}");
        }
    }

    #[test]
    fn python_rejections_are_errors() {
        for input in [
            "",
            " ",
            "NaN",
            "[Infinity]",
            "[-Infinity]",
            "[1] [2]",
            "1.5e",
            "1.",
            ".5",
            "+1",
            "01",
            "[1,]",
            "{\"a\":1,}",
            "{'a':1}",
            "\"a\u{1}\"",
            "\"abc",
            r#""\x""#,
            r#""\u12""#,
            r#""\u12g4""#,
            "tru",
            "1e400",
            "-1e400",
            "\u{feff}1",
            "[1\u{a0}]",
        ] {
            assert!(canonical(input).is_err(), "{input:?}");
        }
        assert!(RowJson::parse(b"\"\xff\"").is_err());
    }

    #[test]
    fn errors_carry_python_like_reasons_and_offsets() {
        let err = RowJson::parse(b"[1] [2]").expect_err("extra data");
        assert_eq!((err.offset, err.reason), (4, "Extra data"));
        let err = RowJson::parse(b"{bad json").expect_err("bad key");
        assert_eq!(err.offset, 1);
        assert_eq!(
            err.reason,
            "Expecting property name enclosed in double quotes"
        );
    }

    #[test]
    fn integer_digit_limit_matches_python() {
        let ok = "1".repeat(MAX_INT_DIGITS);
        let too_long = "1".repeat(MAX_INT_DIGITS + 1);
        assert_eq!(canonical(&ok), Ok(ok.clone()));
        assert_eq!(canonical(&format!("-{ok}")), Ok(format!("-{ok}")));
        assert!(canonical(&too_long).is_err());
    }

    #[test]
    fn nesting_is_capped_at_max_depth() {
        let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert!(canonical(&nested(MAX_DEPTH)).is_ok());
        assert!(canonical(&nested(MAX_DEPTH + 1)).is_err());
        assert!(canonical(&format!(" {}", nested(MAX_DEPTH))).is_ok());
    }
}
