//! [`Batch`]: the rows `on_batch` handles, with the fields the plugin asked for in
//! [`Plugin::FIELDS`](crate::Plugin::FIELDS) already extracted by the host ([`RowFields`]), so
//! reading `room` or `content.body` needs no JSON parsing in the plugin.

use crate::bindings::streamhost::plugin::types::Batch as WireBatch;
use crate::{FieldValue, Row};

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
    /// The rows, at least one, tokens ascending.
    pub rows: Vec<Row>,
    /// The asked-for fields of every row; read them with [`Batch::fields`] or
    /// [`Batch::rows_with_fields`].
    pub fields: Fields,
}

/// The values of the fields a plugin asked for, row by row, as the host extracted them.
#[derive(Debug, Clone, Default)]
pub struct Fields {
    names: &'static [&'static str],
    values: Vec<FieldValue>,
}

/// The asked-for fields of one row.
#[derive(Debug, Clone, Copy)]
pub struct RowFields<'a> {
    names: &'static [&'static str],
    values: &'a [FieldValue],
}

impl Batch {
    /// A batch from the wire record and the values the host extracted for `names`.
    #[doc(hidden)]
    pub fn from_wire(
        batch: WireBatch,
        names: &'static [&'static str],
        values: Vec<FieldValue>,
    ) -> Batch {
        Batch {
            stream: batch.stream,
            instance: batch.instance,
            prev_token: batch.prev_token,
            token: batch.token,
            rows: batch.rows,
            fields: Fields { names, values },
        }
    }

    /// The asked-for fields of row `index` (every field absent past the last row).
    pub fn fields(&self, index: usize) -> RowFields<'_> {
        self.fields.row(index)
    }

    /// Every row with its asked-for fields.
    pub fn rows_with_fields(&self) -> impl Iterator<Item = (&Row, RowFields<'_>)> {
        self.rows
            .iter()
            .enumerate()
            .map(|(index, row)| (row, self.fields.row(index)))
    }
}

impl Fields {
    /// The fields of row `index`.
    fn row(&self, index: usize) -> RowFields<'_> {
        let n = self.names.len();
        let values = self
            .values
            .get(index * n..(index + 1) * n)
            .unwrap_or_default();
        RowFields {
            names: self.names,
            values,
        }
    }
}

/// The value every field has when the host extracted none.
const ABSENT: FieldValue = FieldValue::Absent;

impl<'a> RowFields<'a> {
    /// The value of `name` (one of [`Plugin::FIELDS`](crate::Plugin::FIELDS));
    /// [`FieldValue::Absent`] when the row lacks it, is not a JSON object, or `name` was not
    /// asked for.
    pub fn get(&self, name: &str) -> &'a FieldValue {
        self.names
            .iter()
            .position(|n| *n == name)
            .and_then(|at| self.values.get(at))
            .unwrap_or(&ABSENT)
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
            FieldValue::Integer(integer) => Some(*integer),
            _ => None,
        }
    }

    /// The number `name` (integer or not) as an `f64`, when it is a number.
    pub fn number(&self, name: &str) -> Option<f64> {
        match self.get(name) {
            FieldValue::Integer(integer) => Some(*integer as f64),
            FieldValue::Number(number) => Some(*number),
            _ => None,
        }
    }

    /// The boolean `name`, when it is one.
    pub fn boolean(&self, name: &str) -> Option<bool> {
        match self.get(name) {
            FieldValue::Boolean(boolean) => Some(*boolean),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_by_name_row_by_row() {
        let rows = (1..=2)
            .map(|token| Row {
                token,
                data: String::new(),
            })
            .collect();
        let batch = Batch::from_wire(
            WireBatch {
                stream: "s".into(),
                instance: "master".into(),
                prev_token: 0,
                token: 2,
                rows,
            },
            &["room", "n"],
            vec![
                FieldValue::Text("!a".into()),
                FieldValue::Integer(3),
                FieldValue::Null,
                FieldValue::Number(1.5),
            ],
        );
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
        assert!(matches!(batch.fields(0).get("other"), FieldValue::Absent));
        assert!(matches!(batch.fields(5).get("room"), FieldValue::Absent));
        assert_eq!(batch.fields(1).boolean("n"), None);
        assert_eq!(batch.fields(0).json("room"), None);
    }
}
