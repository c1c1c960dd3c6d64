//! Integer fields parsed the way Python's `int(text)` parses them, which is what Synapse uses
//! for every integer on a replication line.
//!
//! Python accepts surrounding whitespace (ASCII `\t\n\v\f\r ` and every non-ASCII character
//! for which `str.isspace()` holds), one optional `+`/`-`, decimal digits from any Unicode
//! script (category `Nd`, e.g. fullwidth `５`), and single `_` separators between digits;
//! leading zeros are fine. Streamhost additionally rejects values outside `i64`.

/// Why a field is not an integer Python would accept (or does not fit in `i64`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IntError {
    /// Python's `int()` would raise `ValueError`.
    Invalid,
    /// Python would accept it, but it is outside the `i64` range.
    OutOfRange,
}

/// The code point of the digit zero of every run of Unicode `Nd` digits (each run is ten
/// consecutive code points, zero to nine), as Python 3.11's `unicodedata` (Unicode 14.0) lists
/// them. Generated with
/// `[c for c in range(0x110000) if unicodedata.decimal(chr(c), -1) == 0]`.
const ND_ZEROS: [u32; 66] = [
    0x30, 0x660, 0x6F0, 0x7C0, 0x966, 0x9E6, 0xA66, 0xAE6, 0xB66, 0xBE6, 0xC66, 0xCE6, 0xD66,
    0xDE6, 0xE50, 0xED0, 0xF20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90,
    0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10,
    0x104A0, 0x10D30, 0x11066, 0x110F0, 0x11136, 0x111D0, 0x112F0, 0x11450, 0x114D0, 0x11650,
    0x116C0, 0x11730, 0x118E0, 0x11950, 0x11C50, 0x11D50, 0x11DA0, 0x16A60, 0x16AC0, 0x16B50,
    0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0, 0x1E950, 0x1FBF0,
];

/// Non-ASCII characters for which Python's `str.isspace()` holds (Unicode 14.0). Generated with
/// `[c for c in range(128, 0x110000) if chr(c).isspace()]`.
const NON_ASCII_SPACES: [u32; 19] = [
    0x85, 0xA0, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008,
    0x2009, 0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000,
];

/// Parses `text` as Python's `int(text)` would, into an `i64`.
pub(crate) fn parse_i64(text: &str) -> Result<i64, IntError> {
    let bytes = text.as_bytes();
    // Fast path: what every sender actually emits (`-?[0-9]{1,18}`), which cannot overflow.
    let digits = bytes.strip_prefix(b"-").unwrap_or(bytes);
    if !digits.is_empty() && digits.len() <= 18 && digits.iter().all(u8::is_ascii_digit) {
        let magnitude = digits
            .iter()
            .fold(0i64, |acc, &b| acc * 10 + i64::from(b - b'0'));
        return Ok(if digits.len() < bytes.len() {
            -magnitude
        } else {
            magnitude
        });
    }
    parse_general(text)
}

fn parse_general(text: &str) -> Result<i64, IntError> {
    let body = text.trim_matches(is_python_int_space);
    let (negative, body) = match body.as_bytes().first() {
        Some(b'-') => (true, &body[1..]),
        Some(b'+') => (false, &body[1..]),
        _ => (false, body),
    };
    if body.is_empty() {
        return Err(IntError::Invalid);
    }
    let mut magnitude: u64 = 0;
    let mut overflow = false;
    let mut after_digit = false;
    let mut last_was_underscore = false;
    for c in body.chars() {
        if c == '_' {
            if !after_digit || last_was_underscore {
                return Err(IntError::Invalid);
            }
            last_was_underscore = true;
            continue;
        }
        let digit = decimal_value(c).ok_or(IntError::Invalid)?;
        after_digit = true;
        last_was_underscore = false;
        match magnitude
            .checked_mul(10)
            .and_then(|m| m.checked_add(u64::from(digit)))
        {
            Some(m) => magnitude = m,
            // Keep scanning: a later bad character makes it Invalid, not OutOfRange.
            None => overflow = true,
        }
    }
    if last_was_underscore {
        return Err(IntError::Invalid);
    }
    if overflow {
        return Err(IntError::OutOfRange);
    }
    if negative {
        0i64.checked_sub_unsigned(magnitude)
            .ok_or(IntError::OutOfRange)
    } else {
        i64::try_from(magnitude).map_err(|_| IntError::OutOfRange)
    }
}

/// Whitespace that Python's `int()` strips: `PyLong_FromString` skips ASCII `\t\n\v\f\r ` and
/// `_PyUnicode_TransformDecimalAndSpaceToASCII` turns non-ASCII `isspace()` characters into
/// spaces first (ASCII `\x1c`-`\x1f`, though `isspace()`, are not stripped).
fn is_python_int_space(c: char) -> bool {
    match c {
        '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | ' ' => true,
        c if c.is_ascii() => false,
        c => NON_ASCII_SPACES.binary_search(&u32::from(c)).is_ok(),
    }
}

/// The value of a Unicode `Nd` digit.
fn decimal_value(c: char) -> Option<u8> {
    if c.is_ascii_digit() {
        return Some(c as u8 - b'0');
    }
    let cp = u32::from(c);
    let run = ND_ZEROS
        .partition_point(|&zero| zero <= cp)
        .checked_sub(1)?;
    let offset = cp - ND_ZEROS[run];
    u8::try_from(offset).ok().filter(|&d| d < 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_decimal_parses() {
        assert_eq!(parse_i64("0"), Ok(0));
        assert_eq!(parse_i64("53"), Ok(53));
        assert_eq!(parse_i64("-3"), Ok(-3));
        assert_eq!(parse_i64("9007199254740993"), Ok(9_007_199_254_740_993));
    }

    #[test]
    fn i64_bounds_pass_and_beyond_is_out_of_range() {
        assert_eq!(parse_i64("9223372036854775807"), Ok(i64::MAX));
        assert_eq!(parse_i64("-9223372036854775808"), Ok(i64::MIN));
        assert_eq!(parse_i64("9223372036854775808"), Err(IntError::OutOfRange));
        assert_eq!(parse_i64("-9223372036854775809"), Err(IntError::OutOfRange));
        assert_eq!(
            parse_i64("99999999999999999999999"),
            Err(IntError::OutOfRange)
        );
        assert_eq!(parse_i64("99999999999999999999x"), Err(IntError::Invalid));
    }

    #[test]
    fn python_leniencies_are_accepted() {
        assert_eq!(parse_i64("05"), Ok(5));
        assert_eq!(parse_i64("+5"), Ok(5));
        assert_eq!(parse_i64("1_000"), Ok(1000));
        assert_eq!(parse_i64("0_0"), Ok(0));
        assert_eq!(parse_i64(" \t+5\r\n"), Ok(5));
        assert_eq!(parse_i64("\u{3000}5\u{a0}"), Ok(5));
        assert_eq!(parse_i64("\u{85}-7"), Ok(-7));
        assert_eq!(parse_i64("５"), Ok(5));
        assert_eq!(parse_i64("５_５"), Ok(55));
        assert_eq!(parse_i64("\u{661}\u{662}"), Ok(12)); // Arabic-Indic
        assert_eq!(parse_i64("\u{1D7CE}\u{1FBF9}"), Ok(9)); // math bold 0, segmented 9
    }

    #[test]
    fn python_rejections_are_rejected() {
        for text in [
            "",
            " ",
            "-",
            "+",
            "abc",
            "batch",
            "BATCH",
            "- 5",
            "+-5",
            "1__0",
            "_1",
            "1_",
            "+_5",
            "\u{1c}5",
            "5\u{1f}",
            "1.0",
            "1e3",
            "0x10",
            "2 3",
            "5\u{7f}",
            "\u{200b}5",
            "Ⅻ",
            "²",
        ] {
            assert_eq!(parse_i64(text), Err(IntError::Invalid), "{text:?}");
        }
    }
}
