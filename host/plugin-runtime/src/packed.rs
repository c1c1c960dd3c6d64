//! The argument of a 0.4.0 plugin's `on-batch`: a batch and its row fields laid out in five
//! lists ([`PackedBatch`]). Lowering a `list<row>` costs the guest an allocation (a `realloc`
//! called from the host) and a copy per row, and 0.3.0's `list<field-value>` one per text
//! value; a packed batch costs one per list, however many rows it holds.

use crate::bindings::types::{Batch, PackedBatch};
use crate::row_fields::Extracted;

/// The codes of [`PackedBatch::field_kinds`]: the cases of `field-value` in order, a boolean
/// split into its two values.
pub mod kind {
    /// `absent`.
    pub const ABSENT: u8 = 0;
    /// `null`.
    pub const NULL: u8 = 1;
    /// `boolean(false)`.
    pub const FALSE: u8 = 2;
    /// `boolean(true)`.
    pub const TRUE: u8 = 3;
    /// `integer`, its value in `field-scalars`.
    pub const INTEGER: u8 = 4;
    /// `number`, its bits in `field-scalars`.
    pub const NUMBER: u8 = 5;
    /// `text`, its text in `texts`.
    pub const TEXT: u8 = 6;
    /// `json`, its text in `texts`.
    pub const JSON: u8 = 7;
}

/// `batch` with the field values `values` (as `FieldPaths::extract` lays them out, row by
/// row): the rows' texts one after another, then the values' texts, each copied once from
/// the row it was extracted from. Fails when the texts pass the 4 GiB a `u32` offset can
/// reach.
pub fn pack(batch: &Batch, values: &[Extracted]) -> Result<PackedBatch, String> {
    let bytes: usize = batch.rows.iter().map(|row| row.data.len()).sum::<usize>()
        + values.iter().map(|value| value.text().len()).sum::<usize>();
    let mut texts = String::with_capacity(bytes);
    let mut text_ends = Vec::with_capacity(batch.rows.len() + values.len());
    for row in &batch.rows {
        texts.push_str(&row.data);
        text_ends.push(offset(&texts)?);
    }
    let mut field_kinds = Vec::with_capacity(values.len());
    let mut field_scalars = Vec::with_capacity(values.len());
    for value in values {
        let (kind, scalar) = match value {
            Extracted::Absent => (kind::ABSENT, 0),
            Extracted::Null => (kind::NULL, 0),
            Extracted::Boolean(false) => (kind::FALSE, 0),
            Extracted::Boolean(true) => (kind::TRUE, 0),
            Extracted::Integer(integer) => (kind::INTEGER, *integer),
            Extracted::Number(number) => (kind::NUMBER, number.to_bits() as i64),
            Extracted::Text(_) => (kind::TEXT, 0),
            Extracted::Json(_) => (kind::JSON, 0),
        };
        texts.push_str(value.text());
        text_ends.push(offset(&texts)?);
        field_kinds.push(kind);
        field_scalars.push(scalar);
    }
    Ok(PackedBatch {
        stream: batch.stream.clone(),
        instance: batch.instance.clone(),
        prev_token: batch.prev_token,
        token: batch.token,
        tokens: batch.rows.iter().map(|row| row.token).collect(),
        texts,
        text_ends,
        field_kinds,
        field_scalars,
    })
}

/// Where `texts` ends, as a `u32` offset.
fn offset(texts: &str) -> Result<u32, String> {
    u32::try_from(texts.len()).map_err(|_| {
        format!(
            "a packed batch's texts reached {} bytes, past the 4 GiB its offsets can address",
            texts.len()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::fields::FieldValue;
    use crate::bindings::types::Row;

    /// Text `t` of `packed`, cut out the way the SDKs cut it.
    fn text(packed: &PackedBatch, t: usize) -> &str {
        let start = match t {
            0 => 0,
            _ => packed.text_ends[t - 1] as usize,
        };
        &packed.texts[start..packed.text_ends[t] as usize]
    }

    /// Field value `k` of `packed`, read back the way the SDKs read it.
    fn unpack(packed: &PackedBatch, k: usize) -> FieldValue {
        let text = text(packed, packed.tokens.len() + k).to_owned();
        let scalar = packed.field_scalars[k];
        match packed.field_kinds[k] {
            kind::ABSENT => FieldValue::Absent,
            kind::NULL => FieldValue::Null,
            kind::FALSE => FieldValue::Boolean(false),
            kind::TRUE => FieldValue::Boolean(true),
            kind::INTEGER => FieldValue::Integer(scalar),
            kind::NUMBER => FieldValue::Number(f64::from_bits(scalar as u64)),
            kind::TEXT => FieldValue::Text(text),
            kind::JSON => FieldValue::Json(text),
            other => panic!("kind {other}"),
        }
    }

    fn batch(rows: &[(i64, &str)]) -> Batch {
        Batch {
            stream: "s".into(),
            instance: "master".into(),
            prev_token: 3,
            token: rows.last().unwrap().0,
            rows: rows
                .iter()
                .map(|(token, data)| Row {
                    token: *token,
                    data: (*data).into(),
                })
                .collect(),
        }
    }

    #[test]
    fn rows_are_laid_end_to_end_with_their_tokens() {
        let packed = pack(&batch(&[(7, r#"{"a":"é"}"#), (7, "1"), (9, "")]), &[]).unwrap();
        assert_eq!(packed.tokens, [7, 7, 9]);
        assert_eq!(packed.texts, r#"{"a":"é"}1"#);
        assert_eq!(packed.text_ends, [10, 11, 11]);
        assert_eq!(
            (0..3).map(|t| text(&packed, t)).collect::<Vec<_>>(),
            [r#"{"a":"é"}"#, "1", ""]
        );
        assert_eq!(
            (packed.stream.as_str(), packed.instance.as_str()),
            ("s", "master")
        );
        assert_eq!((packed.prev_token, packed.token), (3, 9));
        assert!(packed.field_kinds.is_empty() && packed.field_scalars.is_empty());
    }

    #[test]
    fn every_kind_of_value_reads_back_as_it_was_after_the_rows() {
        let values = vec![
            Extracted::Text("!é:x".into()),
            Extracted::Absent,
            Extracted::Null,
            Extracted::Boolean(false),
            Extracted::Boolean(true),
            Extracted::Integer(-(1 << 60)),
            Extracted::Number(-1.5e300),
            Extracted::Json(r#"["@a:x"]"#),
            Extracted::Text(String::new().into()),
        ];
        let packed = pack(&batch(&[(1, "ab")]), &values).unwrap();
        let read: Vec<_> = (0..values.len()).map(|k| unpack(&packed, k)).collect();
        let sent: Vec<_> = values.iter().map(Extracted::to_field_value).collect();
        assert_eq!(format!("{read:?}"), format!("{sent:?}"));
        assert_eq!(packed.texts, r#"ab!é:x["@a:x"]"#);
        assert_eq!(packed.text_ends, [2, 7, 7, 7, 7, 7, 7, 7, 15, 15]);
    }
}
