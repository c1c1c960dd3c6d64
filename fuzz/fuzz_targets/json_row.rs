//! The JSON row scanner and canonicaliser (`RowJson::parse`) against serde_json as the oracle.
//!
//! - The scanner's fast path and the rewriting parser agree (the fast path returns its input
//!   only where the rewriter returns it unchanged).
//! - Output is ASCII and canonical: parsing it again returns it unchanged.
//! - Same verdict as serde_json, except where Python (which Streamhost follows) and serde_json
//!   differ by design: lone surrogate escapes, integers beyond f64's range, nesting beyond
//!   serde_json's 128 levels (Python accepts), and integers over 4,300 digits (Python refuses).
//! - Same value as serde_json when both accept (numbers compared as f64, so `-0` = `0`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use streamhost_proto::RowJson;
use streamhost_proto::fuzzing::{json_is_canonical, json_rewrite};

/// Equal as JSON values, numbers compared as f64.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Whether canonical output holds a `\uD800`-`\uDFFF` escape (lone or paired).
fn has_surrogate_escape(canonical: &[u8]) -> bool {
    canonical
        .windows(4)
        .any(|w| w[..3] == *b"\\ud" && matches!(w[3], b'8'..=b'9' | b'a'..=b'f'))
}

fuzz_target!(|data: &[u8]| {
    let ours = RowJson::parse(data);
    let rewritten = json_rewrite(data);
    if json_is_canonical(data) {
        assert_eq!(
            rewritten.as_deref(),
            Ok(data),
            "fast path kept non-canonical text"
        );
    }
    assert_eq!(
        ours.as_ref()
            .map(|row| row.as_bytes())
            .map_err(Clone::clone),
        rewritten.as_deref().map_err(Clone::clone),
        "parse and rewrite disagree"
    );
    let theirs = serde_json::from_slice::<Value>(data);
    match (&ours, &theirs) {
        (Ok(row), Ok(value)) => {
            assert!(row.as_bytes().is_ascii(), "non-ASCII output");
            assert_eq!(
                RowJson::parse(row.as_bytes()).as_ref(),
                Ok(row),
                "not idempotent"
            );
            let back: Value = serde_json::from_slice(row.as_bytes())
                .expect("serde_json refuses our canonical output of its own valid input");
            assert!(same(&back, value), "value changed: {value} -> {back}");
        }
        (Err(_), Err(_)) => {}
        (Ok(row), Err(e)) => {
            let message = e.to_string();
            let explained = (message.contains("surrogate") || message.contains("hex escape"))
                && has_surrogate_escape(row.as_bytes())
                || message.contains("recursion limit exceeded")
                || message.contains("number out of range")
                    && serde_json::from_slice::<Value>(row.as_bytes())
                        .is_err_and(|e| e.to_string().contains("number out of range"));
            assert!(
                explained,
                "we accept, serde_json refuses: {message}; ours: {row}"
            );
        }
        (Err(e), Ok(_)) => {
            assert!(
                e.reason == "integer has more than 4300 digits",
                "we refuse, serde_json accepts: {e}"
            );
        }
    }
});
