//! [`FieldPaths`]: the row fields a plugin asked for (`wanted-fields`, from 0.3.0), and their
//! extraction from each row's JSON for `on-batch`'s `fields`, so a plugin that reads a few
//! fields does no JSON parsing in Wasm.
//!
//! A row is read once, natively, by `serde_json`: keys are compared in place, values of fields
//! nobody asked for are skipped (checked for syntax only), and the asked-for values are
//! [`Extracted`] borrowing the row's text (only a string with escapes is decoded into a copy),
//! to be copied once into the plugin's batch. A row that is not JSON (every field `absent`) is judged by the rules of the SDKs'
//! `row.json()` for the values extracted (no lone surrogate escapes, numbers finite as a
//! double, an extracted array or object at most 127 levels deep) and by JSON syntax alone for
//! the values skipped.

use std::borrow::Cow;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::bindings::fields::FieldValue;
use crate::bindings::types::Row;

/// Most paths one plugin may ask for.
pub const MAX_FIELDS: usize = 64;

/// Longest path, in bytes.
const MAX_PATH_BYTES: usize = 256;

/// One extracted field value of a row, its text borrowed from the row where the row holds it
/// as is: the cases of `field-value`.
#[derive(Debug, Clone, PartialEq)]
pub enum Extracted<'row> {
    /// The row has no such field, a step of the path is not an object, or the row is not a
    /// JSON object.
    Absent,
    /// JSON `null`.
    Null,
    /// `true` or `false`.
    Boolean(bool),
    /// A number written without fraction or exponent that fits in an `i64`.
    Integer(i64),
    /// Any other number.
    Number(f64),
    /// A string, its escapes decoded (a copy only when it had escapes).
    Text(Cow<'row, str>),
    /// An array or an object: its JSON text exactly as the row holds it.
    Json(&'row str),
}

impl Extracted<'_> {
    /// The text the value carries: a string's or an array's or object's, else none.
    pub fn text(&self) -> &str {
        match self {
            Extracted::Text(text) => text,
            Extracted::Json(text) => text,
            _ => "",
        }
    }

    /// The value as 0.3.0's `fields` interface hands it over, owning its text.
    pub fn to_field_value(&self) -> FieldValue {
        match self {
            Extracted::Absent => FieldValue::Absent,
            Extracted::Null => FieldValue::Null,
            Extracted::Boolean(boolean) => FieldValue::Boolean(*boolean),
            Extracted::Integer(integer) => FieldValue::Integer(*integer),
            Extracted::Number(number) => FieldValue::Number(*number),
            Extracted::Text(text) => FieldValue::Text(text.as_ref().to_owned()),
            Extracted::Json(text) => FieldValue::Json((*text).to_owned()),
        }
    }
}

/// The paths a plugin asked for, as a tree of keys; each asked-for path owns one slot of a
/// row's values, in the order the plugin named them.
#[derive(Debug, Clone, Default)]
pub struct FieldPaths {
    paths: Vec<String>,
    root: Node,
}

/// The keys wanted at one level of a row's objects.
#[derive(Debug, Clone, Default)]
struct Node {
    keys: Vec<Entry>,
}

/// One wanted key: the slot of the path ending here, and the keys wanted inside its value.
#[derive(Debug, Clone)]
struct Entry {
    key: String,
    slot: Option<usize>,
    inner: Option<Node>,
}

impl FieldPaths {
    /// Checks and indexes `paths`: each a top-level key or keys joined by dots, not empty, no
    /// empty key, at most 256 bytes, no path twice, at most [`MAX_FIELDS`] of them.
    pub fn parse(paths: Vec<String>) -> Result<FieldPaths, String> {
        if paths.len() > MAX_FIELDS {
            return Err(format!(
                "wanted-fields names {} fields; at most {MAX_FIELDS} are allowed",
                paths.len()
            ));
        }
        let mut root = Node::default();
        for (slot, path) in paths.iter().enumerate() {
            if path.len() > MAX_PATH_BYTES {
                return Err(format!(
                    "wanted field {path:?} is longer than {MAX_PATH_BYTES} bytes"
                ));
            }
            if path.split('.').any(str::is_empty) {
                return Err(format!(
                    "wanted field {path:?} is not keys joined by dots (an empty key)"
                ));
            }
            if paths[..slot].contains(path) {
                return Err(format!("wanted field {path:?} is named twice"));
            }
            let mut node = &mut root;
            let mut keys = path.split('.').peekable();
            while let Some(key) = keys.next() {
                let at = match node.keys.iter().position(|e| e.key == key) {
                    Some(at) => at,
                    None => {
                        node.keys.push(Entry {
                            key: key.to_owned(),
                            slot: None,
                            inner: None,
                        });
                        node.keys.len() - 1
                    }
                };
                let entry = &mut node.keys[at];
                if keys.peek().is_none() {
                    entry.slot = Some(slot);
                    break;
                }
                node = entry.inner.get_or_insert_with(Node::default);
            }
        }
        Ok(FieldPaths { paths, root })
    }

    /// The paths, in the order the plugin named them.
    pub fn paths(&self) -> &[String] {
        &self.paths
    }

    /// How many paths there are.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// Whether the plugin asked for none.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// The values of every row of `rows`, row by row: row `i`'s field `j` at `i * len() + j`,
    /// and the bytes of their texts. Stops with the bytes reached once those exceed `max_bytes`
    /// (nested paths may copy one row's bytes several times: this bounds what a plugin makes
    /// the host hold).
    pub fn extract<'row>(
        &self,
        rows: &'row [Row],
        max_bytes: usize,
    ) -> Result<(Vec<Extracted<'row>>, usize), usize> {
        let n = self.len();
        let mut values = Vec::with_capacity(rows.len() * n);
        if n == 0 {
            return Ok((values, 0));
        }
        let mut bytes = 0;
        for row in rows {
            let start = values.len();
            values.resize_with(start + n, || Extracted::Absent);
            self.extract_row(&row.data, &mut values[start..]);
            bytes += held_bytes(&values[start..]);
            if bytes > max_bytes {
                return Err(bytes);
            }
        }
        Ok((values, bytes))
    }

    /// One row's values into `out` (all [`Extracted::Absent`] on entry).
    fn extract_row<'row>(&self, text: &'row str, out: &mut [Extracted<'row>]) {
        let mut json = serde_json::Deserializer::from_str(text);
        let read = NodeSeed {
            node: &self.root,
            out: &mut *out,
        }
        .deserialize(&mut json)
        .and_then(|()| json.end());
        if read.is_err() {
            out.fill_with(|| Extracted::Absent);
        }
    }
}

/// The bytes of the texts `values` carry (what the plugin's batch holds of them).
fn held_bytes(values: &[Extracted]) -> usize {
    values.iter().map(|value| value.text().len()).sum()
}

/// Reads a value where `node`'s keys are wanted: an object's wanted keys into their slots;
/// any other value is consumed and leaves them absent.
struct NodeSeed<'a, 'de> {
    node: &'a Node,
    out: &'a mut [Extracted<'de>],
}

impl<'de> DeserializeSeed<'de> for NodeSeed<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NodeSeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(found) = map.next_key_seed(KeySeed(self.node))? {
            let Some(entry) = found.map(|at| &self.node.keys[at]) else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            // A later duplicate key wins whole: forget what an earlier one set below it.
            if let Some(inner) = &entry.inner {
                inner.clear(self.out);
            }
            match (entry.slot, &entry.inner) {
                (Some(slot), None) => {
                    let raw: &'de RawValue = map.next_value()?;
                    self.out[slot] = leaf(raw.get()).map_err(serde::de::Error::custom)?;
                }
                (None, Some(inner)) => map.next_value_seed(NodeSeed {
                    node: inner,
                    out: &mut *self.out,
                })?,
                (Some(slot), Some(inner)) => {
                    let raw: &'de RawValue = map.next_value()?;
                    self.out[slot] = leaf(raw.get()).map_err(serde::de::Error::custom)?;
                    let mut json = serde_json::Deserializer::from_str(raw.get());
                    NodeSeed {
                        node: inner,
                        out: &mut *self.out,
                    }
                    .deserialize(&mut json)
                    .map_err(serde::de::Error::custom)?;
                }
                (None, None) => unreachable!("every entry ends a path or leads to one"),
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

impl Node {
    /// Sets every slot at or below this node back to absent.
    fn clear(&self, out: &mut [Extracted]) {
        for entry in &self.keys {
            if let Some(slot) = entry.slot {
                out[slot] = Extracted::Absent;
            }
            if let Some(inner) = &entry.inner {
                inner.clear(out);
            }
        }
    }
}

/// Finds an object key among a node's wanted keys without copying it.
struct KeySeed<'a>(&'a Node);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<usize>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<Option<usize>, E> {
        Ok(self.0.keys.iter().position(|e| e.key == key))
    }
}

/// The value of a JSON text already checked for syntax: numbers must be finite as a double
/// and strings free of lone surrogates, as `row.json()` requires.
fn leaf(raw: &str) -> Result<Extracted<'_>, String> {
    Ok(match raw.as_bytes()[0] {
        b'{' | b'[' => {
            // Checked whole by `row.json()`'s rules, so an SDK's parse of it cannot fail.
            serde_json::from_str::<Checked>(raw).map_err(|e| e.to_string())?;
            Extracted::Json(raw)
        }
        b'"' if !raw.contains('\\') => Extracted::Text(Cow::Borrowed(&raw[1..raw.len() - 1])),
        b'"' => Extracted::Text(Cow::Owned(
            serde_json::from_str(raw).map_err(|e| e.to_string())?,
        )),
        b't' => Extracted::Boolean(true),
        b'f' => Extracted::Boolean(false),
        b'n' => Extracted::Null,
        _ => number(raw)?,
    })
}

/// Any JSON value that `row.json()` accepts, kept as nothing: serde_json decodes every string
/// (refusing lone surrogates) and limits nesting to 127 levels, and numbers must be finite as
/// a double, as when the value is parsed into a `serde_json::Value`, without building one.
struct Checked;

impl<'de> serde::Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Checked, D::Error> {
        deserializer.deserialize_any(Checked)
    }
}

impl<'de> Visitor<'de> for Checked {
    type Value = Checked;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_f64<E: serde::de::Error>(self, number: f64) -> Result<Checked, E> {
        match number.is_finite() {
            true => Ok(Checked),
            false => Err(E::custom("number out of range")),
        }
    }

    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Checked, A::Error> {
        while items.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut entries: A) -> Result<Checked, A::Error> {
        while entries.next_key::<Checked>()?.is_some() {
            entries.next_value::<Checked>()?;
        }
        Ok(Checked)
    }
}

/// A JSON number: an integer when written without fraction or exponent and within s64.
fn number(raw: &str) -> Result<Extracted<'_>, String> {
    if !raw.contains(['.', 'e', 'E'])
        && let Ok(integer) = raw.parse::<i64>()
    {
        return Ok(Extracted::Integer(integer));
    }
    match raw.parse::<f64>() {
        Ok(number) if number.is_finite() => Ok(Extracted::Number(number)),
        _ => Err(format!("number {raw} is out of range")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(names: &[&str]) -> FieldPaths {
        FieldPaths::parse(names.iter().map(|s| s.to_string()).collect()).unwrap()
    }

    fn extract(names: &[&str], text: &str) -> Vec<FieldValue> {
        let row = Row {
            token: 1,
            data: text.to_owned(),
        };
        let (values, _) = paths(names)
            .extract(std::slice::from_ref(&row), usize::MAX)
            .unwrap();
        values.iter().map(Extracted::to_field_value).collect()
    }

    fn show(values: &[FieldValue]) -> String {
        values
            .iter()
            .map(|v| match v {
                FieldValue::Absent => "absent".to_owned(),
                FieldValue::Null => "null".to_owned(),
                FieldValue::Boolean(b) => format!("bool {b}"),
                FieldValue::Integer(i) => format!("int {i}"),
                FieldValue::Number(n) => format!("num {n:?}"),
                FieldValue::Text(t) => format!("text {t:?}"),
                FieldValue::Json(j) => format!("json {j}"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    #[test]
    fn top_level_fields_come_typed_in_the_order_asked() {
        let row = r#"{"n": 3, "room": "!r:x", "f": 1.5, "big": 9223372036854775808, "t": true,
                      "z": null, "a": [1, {"b": 2}], "o": {"k": "v"}, "e": 1e2}"#;
        let names = ["room", "n", "f", "big", "t", "z", "a", "o", "e", "missing"];
        assert_eq!(
            show(&extract(&names, row)),
            "text \"!r:x\", int 3, num 1.5, num 9.223372036854776e18, bool true, null, \
             json [1, {\"b\": 2}], json {\"k\": \"v\"}, num 100.0, absent"
        );
    }

    #[test]
    fn nested_paths_reach_into_objects_and_a_parent_may_be_asked_for_too() {
        let row = r#"{"content": {"body": "hi", "m": {"x": -1}}, "room": "!r"}"#;
        assert_eq!(
            show(&extract(
                &["content.m.x", "content.body", "content", "room.x"],
                row
            )),
            "int -1, text \"hi\", json {\"body\": \"hi\", \"m\": {\"x\": -1}}, absent"
        );
    }

    #[test]
    fn the_last_duplicate_key_wins_whole() {
        let row = r#"{"c": {"a": 1, "b": 2}, "r": 1, "c": {"a": 3}, "r": "two"}"#;
        assert_eq!(
            show(&extract(&["c.a", "c.b", "r"], row)),
            "int 3, absent, text \"two\""
        );
    }

    #[test]
    fn texts_are_borrowed_from_the_row_unless_they_had_escapes() {
        let row = Row {
            token: 1,
            data: r#"{"a": "plain", "b": "t\u00e9", "c": [1, "x"]}"#.to_owned(),
        };
        let (values, _) = paths(&["a", "b", "c"])
            .extract(std::slice::from_ref(&row), usize::MAX)
            .unwrap();
        let within_row = |text: &str| row.data.as_bytes().as_ptr_range().contains(&text.as_ptr());
        match &values[..] {
            [
                Extracted::Text(Cow::Borrowed(a)),
                Extracted::Text(Cow::Owned(b)),
                Extracted::Json(c),
            ] => {
                assert_eq!((*a, b.as_str(), *c), ("plain", "té", r#"[1, "x"]"#));
                assert!(within_row(a) && within_row(c) && !within_row(b));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn escapes_are_decoded_and_keys_compared_decoded() {
        let row = r#"{"r\u006fom": "a\"b\u00e9\n"}"#;
        assert_eq!(show(&extract(&["room"], row)), "text \"a\\\"bé\\n\"");
    }

    #[test]
    fn rows_that_are_not_json_objects_by_row_json_rules_have_every_field_absent() {
        for bad in [
            r#"{"room": "x""#,
            r#"{"room": "x"} trailing"#,
            r#"{"room": "\ud800"}"#,
            r#"{"room": "x", "n": 1e400}"#,
            r#"{"room": "x", "n": ["\udc00"]}"#,
            r#"{"room": "x", "n": {"\ud800": 1}}"#,
            r#"{"room": "x", "n": [1, {"m": -1e400}]}"#,
            r#"["room", "x"]"#,
            r#""room""#,
            "",
        ] {
            let wanted = match bad.contains("\"n\"") {
                true => vec!["room", "n"],
                false => vec!["room"],
            };
            let values = extract(&wanted, bad);
            assert!(
                values.iter().all(|v| matches!(v, FieldValue::Absent)),
                "{bad}: {}",
                show(&values)
            );
        }
        // Values nobody asked for are checked for syntax only (here: nesting past 127 levels).
        let deep = format!(
            "{{\"room\": \"x\", \"d\": {}{}}}",
            "[".repeat(200),
            "]".repeat(200)
        );
        assert_eq!(show(&extract(&["room"], &deep)), "text \"x\"");
        // An extracted value is checked whole, nesting included.
        let deep = deep.replace("\"d\"", "\"n\"");
        assert_eq!(show(&extract(&["room", "n"], &deep)), "absent, absent");
        let shallow = format!("{{\"n\": {}{}}}", "[".repeat(100), "]".repeat(100));
        assert!(show(&extract(&["n"], &shallow)).starts_with("json [[[["));
    }

    #[test]
    fn rows_are_laid_out_row_by_row() {
        let rows: Vec<Row> = (0..3)
            .map(|i| Row {
                token: i,
                data: format!(r#"{{"a": {i}, "b": "{i}"}}"#),
            })
            .collect();
        let (values, _) = paths(&["b", "a"]).extract(&rows, usize::MAX).unwrap();
        let values: Vec<_> = values.iter().map(Extracted::to_field_value).collect();
        assert_eq!(
            show(&values),
            "text \"0\", int 0, text \"1\", int 1, text \"2\", int 2"
        );
        let (none, bytes) = paths(&[]).extract(&rows, 0).unwrap();
        assert!(none.is_empty() && bytes == 0);
    }

    #[test]
    fn extraction_stops_past_its_byte_bound() {
        let rows: Vec<Row> = (0..10)
            .map(|i| Row {
                token: i,
                data: format!(r#"{{"a": {{"b": "{}"}}}}"#, "x".repeat(100)),
            })
            .collect();
        // Each row yields `a` (its object text, 109 bytes) and `a.b` (100 bytes).
        let wanted = paths(&["a", "a.b"]);
        let (values, bytes) = wanted.extract(&rows, 2_090).unwrap();
        assert_eq!((held_bytes(&values), bytes), (2_090, 2_090));
        assert_eq!(wanted.extract(&rows, 2_089).unwrap_err(), 2_090);
        assert_eq!(
            wanted.extract(&rows, 300).unwrap_err(),
            418,
            "stops at the 2nd row"
        );
    }

    #[test]
    fn bad_paths_are_refused_with_the_reason() {
        let parse = |names: &[&str]| {
            FieldPaths::parse(names.iter().map(|s| s.to_string()).collect()).unwrap_err()
        };
        assert!(parse(&["a..b"]).contains("empty key"));
        assert!(parse(&[""]).contains("empty key"));
        assert!(parse(&["a", "a"]).contains("named twice"));
        assert!(parse(&[&"x".repeat(300)]).contains("longer than"));
        let many: Vec<String> = (0..65).map(|i| format!("f{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(parse(&many).contains("at most 64"));
    }
}
