//! [`Batch`]: the rows `on_batch` handles, each a [`BatchRow`] borrowed from the batch, with
//! the fields the plugin asked for in [`Plugin::FIELDS`](crate::Plugin::FIELDS) already
//! extracted by the host ([`RowFields`]), so reading `room` or `content.body` needs no JSON
//! parsing in the plugin.
//!
//! The host hands a batch over packed (`streamhost:plugin@0.4.0`'s `packed-batch`): every
//! row's text and every field value's in one string, the rest in four lists, so crossing into
//! the plugin costs five copies per batch rather than an allocation per row and per value.
//! Rows and fields are read in place.

use crate::bindings::streamhost::plugin::types::PackedBatch;
use crate::{PluginError, Row, parse_row};
use serde::de::DeserializeOwned;

/// Consecutive rows of one stream written by one writer instance, in token order.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The stream's name.
    pub stream: String,
    /// The writer instance that produced the rows.
    pub instance: String,
    /// The plugin's cursor for (stream, instance) before this batch.
    pub prev_token: i64,
    /// The plugin's cursor after this batch: the last row's token.
    pub token: i64,
    /// The packed rows and field values as the host sent them.
    packed: PackedBatch,
    /// The names of the fields, as the plugin asked for them.
    names: &'static [&'static str],
}

/// One row of a [`Batch`], borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchRow<'a> {
    /// The row's token. Several rows may share a token; rows of one token always arrive in the
    /// same batch.
    pub token: i64,
    /// The row as JSON text, exactly as the writer stored it.
    pub data: &'a str,
}

/// The asked-for fields of one row.
#[derive(Debug, Clone, Copy)]
pub struct RowFields<'a> {
    names: &'static [&'static str],
    /// The batch, and where this row's values start, when the row has any.
    values: Option<(&'a PackedBatch, usize)>,
}

/// One extracted field of one row, borrowed from its batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldValue<'a> {
    /// The row has no such field, or a step of the path is not an object.
    Absent,
    /// JSON `null`.
    Null,
    /// `true` or `false`.
    Boolean(bool),
    /// A number written without fraction or exponent that fits in an `i64`.
    Integer(i64),
    /// Any other number.
    Number(f64),
    /// A string, its escapes decoded.
    Text(&'a str),
    /// An array or an object: its JSON text exactly as the row holds it.
    Json(&'a str),
}

impl Batch {
    /// A batch from the packed wire record, whose field values are the host's for `names`.
    /// Its layout is checked once here, so rows and fields are then read without a check each;
    /// a host that broke the interface gets a `fatal` error naming what was wrong.
    #[doc(hidden)]
    pub fn from_wire(
        mut packed: PackedBatch,
        names: &'static [&'static str],
    ) -> Result<Batch, PluginError> {
        check_layout(&packed, names.len())
            .map_err(|why| PluginError::fatal(format!("the host sent a malformed batch: {why}")))?;
        Ok(Batch {
            stream: std::mem::take(&mut packed.stream),
            instance: std::mem::take(&mut packed.instance),
            prev_token: packed.prev_token,
            token: packed.token,
            packed,
            names,
        })
    }

    /// A batch of `rows` (token and JSON text), with no fields extracted: for a plugin's own
    /// tests, which call [`Plugin::on_batch`](crate::Plugin::on_batch) without a host.
    pub fn new(stream: &str, instance: &str, prev_token: i64, rows: &[(i64, &str)]) -> Batch {
        let mut texts = String::new();
        let mut text_ends = Vec::with_capacity(rows.len());
        for (_, data) in rows {
            texts.push_str(data);
            text_ends.push(texts.len() as u32);
        }
        let token = rows.last().map_or(prev_token, |(token, _)| *token);
        let packed = PackedBatch {
            stream: String::new(),
            instance: String::new(),
            prev_token,
            token,
            tokens: rows.iter().map(|(token, _)| *token).collect(),
            texts,
            text_ends,
            field_kinds: Vec::new(),
            field_scalars: Vec::new(),
        };
        Batch {
            stream: stream.to_owned(),
            instance: instance.to_owned(),
            prev_token,
            token,
            packed,
            names: &[],
        }
    }

    /// How many rows the batch holds (at least one, as the host hands it).
    pub fn len(&self) -> usize {
        self.packed.tokens.len()
    }

    /// Whether the batch holds no rows (never, as the host hands it).
    pub fn is_empty(&self) -> bool {
        self.packed.tokens.is_empty()
    }

    /// Row `index`, if the batch has that many.
    pub fn row(&self, index: usize) -> Option<BatchRow<'_>> {
        Some(BatchRow {
            token: *self.packed.tokens.get(index)?,
            data: text(&self.packed, index),
        })
    }

    /// The rows, tokens ascending.
    pub fn rows(&self) -> impl DoubleEndedIterator<Item = BatchRow<'_>> + ExactSizeIterator {
        let packed = &self.packed;
        packed
            .tokens
            .iter()
            .enumerate()
            .map(|(index, &token)| BatchRow {
                token,
                data: text(packed, index),
            })
    }

    /// The asked-for fields of row `index` (every field absent past the last row).
    pub fn fields(&self, index: usize) -> RowFields<'_> {
        let n = self.names.len();
        let values = (n > 0 && (index + 1) * n <= self.packed.field_kinds.len())
            .then_some((&self.packed, index * n));
        RowFields {
            names: self.names,
            values,
        }
    }

    /// Every row with its asked-for fields.
    pub fn rows_with_fields(&self) -> impl Iterator<Item = (BatchRow<'_>, RowFields<'_>)> {
        self.rows()
            .enumerate()
            .map(|(index, row)| (row, self.fields(index)))
    }
}

/// Text `t` of `packed` (row `t`, or field value `t - rows`); `t` is below
/// `packed.text_ends.len()` and the layout passed [`check_layout`].
fn text(packed: &PackedBatch, t: usize) -> &str {
    let end = packed.text_ends[t] as usize;
    let start = match t {
        0 => 0,
        _ => packed.text_ends[t - 1] as usize,
    };
    &packed.texts[start..end]
}

/// Whether `packed` is laid out as `packed-batch` promises for `n` fields: a text per row and
/// per field value, each ending on a character boundary at or after the one before it and the
/// last at the end of `texts`, and a kind and a scalar per field value.
fn check_layout(packed: &PackedBatch, n: usize) -> Result<(), String> {
    let rows = packed.tokens.len();
    let values = rows * n;
    if packed.field_kinds.len() != values || packed.field_scalars.len() != values {
        return Err(format!(
            "{} field kinds and {} scalars for {rows} rows of {n} fields",
            packed.field_kinds.len(),
            packed.field_scalars.len()
        ));
    }
    if packed.text_ends.len() != rows + values {
        return Err(format!(
            "{} text ends for {rows} rows of {n} fields",
            packed.text_ends.len()
        ));
    }
    let mut start = 0;
    for (t, &end) in packed.text_ends.iter().enumerate() {
        let end = end as usize;
        if end < start || !packed.texts.is_char_boundary(end) {
            return Err(format!(
                "text {t} ends at byte {end}, not after {start} on a character of {} bytes",
                packed.texts.len()
            ));
        }
        start = end;
    }
    if start != packed.texts.len() {
        return Err(format!(
            "the texts end at byte {start} of {}",
            packed.texts.len()
        ));
    }
    Ok(())
}

impl<'a> BatchRow<'a> {
    /// The row parsed as JSON into `T` (a `serde_json::Value` or your own `Deserialize`
    /// type). A row that does not parse is an error of kind `skip`: return it to have the
    /// host record the row as a dead letter, or ignore it to pass over the row.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        parse_row(self.token, self.data)
    }

    /// The row as an owned [`Row`], to keep past the batch.
    pub fn to_row(&self) -> Row {
        Row {
            token: self.token,
            data: self.data.to_owned(),
        }
    }
}

/// The codes of `packed-batch`'s `field-kinds` (`wit/types.wit`).
mod kind {
    pub const NULL: u8 = 1;
    pub const FALSE: u8 = 2;
    pub const TRUE: u8 = 3;
    pub const INTEGER: u8 = 4;
    pub const NUMBER: u8 = 5;
    pub const TEXT: u8 = 6;
    pub const JSON: u8 = 7;
}

impl<'a> RowFields<'a> {
    /// The value of `name` (one of [`Plugin::FIELDS`](crate::Plugin::FIELDS));
    /// [`FieldValue::Absent`] when the row lacks it, is not a JSON object, or `name` was not
    /// asked for.
    pub fn get(&self, name: &str) -> FieldValue<'a> {
        let Some((packed, first)) = self.values else {
            return FieldValue::Absent;
        };
        let Some(at) = self.names.iter().position(|n| *n == name) else {
            return FieldValue::Absent;
        };
        value(packed, first + at)
    }

    /// The string `name`, when it is one.
    pub fn text(&self, name: &str) -> Option<&'a str> {
        match self.get(name) {
            FieldValue::Text(text) => Some(text),
            _ => None,
        }
    }

    /// The integer `name`, when it is a number written without fraction or exponent that fits
    /// an `i64`.
    pub fn integer(&self, name: &str) -> Option<i64> {
        match self.get(name) {
            FieldValue::Integer(integer) => Some(integer),
            _ => None,
        }
    }

    /// The number `name` (integer or not) as an `f64`, when it is a number.
    pub fn number(&self, name: &str) -> Option<f64> {
        match self.get(name) {
            FieldValue::Integer(integer) => Some(integer as f64),
            FieldValue::Number(number) => Some(number),
            _ => None,
        }
    }

    /// The boolean `name`, when it is one.
    pub fn boolean(&self, name: &str) -> Option<bool> {
        match self.get(name) {
            FieldValue::Boolean(boolean) => Some(boolean),
            _ => None,
        }
    }

    /// The JSON text of `name` when it is an array or an object, exactly as the row holds it.
    pub fn json(&self, name: &str) -> Option<&'a str> {
        match self.get(name) {
            FieldValue::Json(json) => Some(json),
            _ => None,
        }
    }
}

/// Field value `k` of `packed` (absent for a kind this SDK does not know); `k` is below
/// `packed.field_kinds.len()` and the layout passed [`check_layout`].
fn value(packed: &PackedBatch, k: usize) -> FieldValue<'_> {
    let text = || text(packed, packed.tokens.len() + k);
    let scalar = packed.field_scalars[k];
    match packed.field_kinds[k] {
        kind::NULL => FieldValue::Null,
        kind::FALSE => FieldValue::Boolean(false),
        kind::TRUE => FieldValue::Boolean(true),
        kind::INTEGER => FieldValue::Integer(scalar),
        kind::NUMBER => FieldValue::Number(f64::from_bits(scalar as u64)),
        kind::TEXT => FieldValue::Text(text()),
        kind::JSON => FieldValue::Json(text()),
        _ => FieldValue::Absent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the host sends for two rows and the fields `room` and `n`.
    fn packed() -> PackedBatch {
        PackedBatch {
            stream: "s".into(),
            instance: "master".into(),
            prev_token: 0,
            token: 2,
            tokens: vec![1, 2],
            texts: r#"{"room":"!a","n":3}[]!a"#.into(),
            text_ends: vec![19, 21, 23, 23, 23, 23],
            field_kinds: vec![kind::TEXT, kind::INTEGER, kind::NULL, kind::NUMBER],
            field_scalars: vec![0, 3, 0, 1.5f64.to_bits() as i64],
        }
    }

    #[test]
    fn rows_are_read_in_place_with_their_tokens() {
        let batch = Batch::from_wire(packed(), &["room", "n"]).unwrap();
        let rows: Vec<_> = batch.rows().map(|r| (r.token, r.data)).collect();
        assert_eq!(rows, [(1, r#"{"room":"!a","n":3}"#), (2, "[]")]);
        assert_eq!((batch.len(), batch.is_empty()), (2, false));
        assert_eq!(batch.row(2), None);
        assert_eq!(batch.rows().next_back().unwrap().token, 2);
    }

    #[test]
    fn fields_are_read_by_name_row_by_row() {
        let batch = Batch::from_wire(packed(), &["room", "n"]).unwrap();
        let seen: Vec<_> = batch
            .rows_with_fields()
            .map(|(row, f)| (row.token, f.text("room"), f.number("n"), f.integer("n")))
            .collect();
        assert_eq!(
            seen,
            vec![
                (1, Some("!a"), Some(3.0), Some(3)),
                (2, None, Some(1.5), None)
            ]
        );
        assert_eq!(batch.fields(0).get("other"), FieldValue::Absent);
        assert_eq!(batch.fields(5).get("room"), FieldValue::Absent);
        assert_eq!(batch.fields(1).get("room"), FieldValue::Null);
        assert_eq!(batch.fields(1).boolean("n"), None);
        assert_eq!(batch.fields(0).json("room"), None);
    }

    #[test]
    fn a_malformed_batch_is_a_fatal_error_naming_what_is_wrong() {
        /// A way to break a well-formed batch, and what the error must then say.
        type Breakage = (fn(&mut PackedBatch), &'static str);
        let cases: [Breakage; 6] = [
            (|p| p.text_ends[0] = 30, "text 0 ends at byte 30"),
            (
                |p| p.text_ends[1] = 10,
                "text 1 ends at byte 10, not after 19",
            ),
            (
                |p| {
                    p.text_ends.pop();
                },
                "5 text ends for 2 rows of 2 fields",
            ),
            (
                |p| p.field_kinds.push(kind::TEXT),
                "5 field kinds and 4 scalars",
            ),
            (|p| p.texts.push('x'), "the texts end at byte 23 of 24"),
            (
                |p| {
                    p.texts = "é".repeat(12);
                    p.text_ends[0] = 1;
                },
                "text 0 ends at byte 1",
            ),
        ];
        for (break_it, expected) in cases {
            let mut packed = packed();
            break_it(&mut packed);
            let error = Batch::from_wire(packed, &["room", "n"]).unwrap_err();
            assert_eq!(error.kind, crate::ErrorKind::Fatal);
            assert!(
                error
                    .message
                    .starts_with("the host sent a malformed batch: ")
                    && error.message.contains(expected),
                "{expected:?} not in {:?}",
                error.message
            );
        }
    }

    #[test]
    fn a_batch_made_by_hand_has_its_rows_and_no_fields() {
        let batch = Batch::new("s", "master", 4, &[(5, r#"{"a":1}"#), (5, "é"), (7, "")]);
        let rows: Vec<_> = batch.rows().map(|r| (r.token, r.data)).collect();
        assert_eq!(rows, [(5, r#"{"a":1}"#), (5, "é"), (7, "")]);
        assert_eq!((batch.prev_token, batch.token), (4, 7));
        assert_eq!(batch.fields(0).get("a"), FieldValue::Absent);
        assert_eq!(
            batch.row(0).unwrap().json::<serde_json::Value>().unwrap()["a"],
            1
        );
    }
}
