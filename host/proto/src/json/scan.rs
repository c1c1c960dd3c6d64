//! The fast path: one pass that answers "is this already valid, canonical JSON?" without
//! allocating in the common case.
//!
//! Anything unusual (whitespace, non-ASCII bytes, escapes Python would not write, `-0`, a float
//! not in `repr` form, nesting deeper than [`FAST_MAX_DEPTH`], over-long integers, invalid input)
//! answers `false`; the caller then runs the rewriting parser, which also reports errors.

use super::escape::plain_prefix_len;
use super::float::python_repr;

/// Nesting depth the fast path handles; deeper documents take the (also correct) slow path.
const FAST_MAX_DEPTH: usize = 64;

/// Object keys checked for duplicates without allocating; larger objects spill to a `Vec`.
const INLINE_KEYS: usize = 16;

/// Whether `text` is one JSON value that Python's `json.loads` accepts and that
/// `json.dumps(separators=(',', ':'), ensure_ascii=True)` would write back byte for byte.
pub(crate) fn is_canonical(text: &[u8]) -> bool {
    let mut scanner = Scanner { text, pos: 0 };
    scanner.value(0) && scanner.pos == text.len()
}

struct Scanner<'a> {
    text: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn value(&mut self, depth: usize) -> bool {
        match self.peek() {
            Some(b'"') => self.string(),
            Some(b'[') => depth < FAST_MAX_DEPTH && self.array(depth + 1),
            Some(b'{') => depth < FAST_MAX_DEPTH && self.object(depth + 1),
            Some(b'n') => self.literal(b"null"),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => false,
        }
    }

    fn literal<const N: usize>(&mut self, word: &[u8; N]) -> bool {
        // A fixed-size compare the compiler turns into one or two loads, not a memcmp call.
        let found = self
            .text
            .get(self.pos..self.pos + N)
            .is_some_and(|bytes| <[u8; N]>::try_from(bytes).is_ok_and(|bytes| bytes == *word));
        if found {
            self.pos += N;
        }
        found
    }

    fn array(&mut self, depth: usize) -> bool {
        self.pos += 1;
        if self.peek() == Some(b']') {
            self.pos += 1;
            return true;
        }
        loop {
            if !self.value(depth) {
                return false;
            }
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return true;
                }
                _ => return false,
            }
        }
    }

    // Kept out of `value` so that the key buffer does not enlarge every recursive frame.
    #[inline(never)]
    fn object(&mut self, depth: usize) -> bool {
        self.pos += 1;
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return true;
        }
        // Canonical strings are a bijection with Python strings, so equal keys are equal bytes.
        let mut inline: [&'a [u8]; INLINE_KEYS] = [&[]; INLINE_KEYS];
        let mut spill: Vec<&'a [u8]> = Vec::new();
        let mut count = 0usize;
        loop {
            let start = self.pos;
            if self.peek() != Some(b'"') || !self.string() {
                return false;
            }
            let key = &self.text[start..self.pos];
            if count < INLINE_KEYS {
                if inline[..count].contains(&key) {
                    return false;
                }
                inline[count] = key;
            } else {
                if count == INLINE_KEYS {
                    spill.extend_from_slice(&inline);
                }
                spill.push(key);
            }
            count += 1;
            if self.peek() != Some(b':') {
                return false;
            }
            self.pos += 1;
            if !self.value(depth) {
                return false;
            }
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                _ => return false,
            }
        }
        if spill.is_empty() {
            return true;
        }
        spill.sort_unstable();
        spill.windows(2).all(|pair| pair[0] != pair[1])
    }

    /// A string whose every character is as Python writes it; `pos` is at the opening quote.
    fn string(&mut self) -> bool {
        let text = self.text;
        let mut pos = self.pos + 1;
        loop {
            pos += plain_prefix_len(&text[pos..]);
            match text.get(pos) {
                Some(b'"') => {
                    self.pos = pos + 1;
                    return true;
                }
                Some(b'\\') => match text.get(pos + 1) {
                    Some(b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't') => pos += 2,
                    Some(b'u') => {
                        let Some(unit) = text.get(pos + 2..pos + 6).and_then(lowercase_hex) else {
                            return false;
                        };
                        // Python escapes exactly these as \uXXXX; anything else in \u form
                        // (`\u0041`, `\u000a`) it would have written differently.
                        let escaped_by_python =
                            unit >= 0x7f || (unit < 0x20 && !matches!(unit, 8 | 9 | 10 | 12 | 13));
                        if !escaped_by_python {
                            return false;
                        }
                        pos += 6;
                    }
                    _ => return false,
                },
                // Control characters (invalid), DEL and non-ASCII (Python escapes them), or the
                // end of input (unterminated).
                _ => return false,
            }
        }
    }

    fn number(&mut self) -> bool {
        let text = self.text;
        let start = self.pos;
        let mut pos = start;
        if text[pos] == b'-' {
            pos += 1;
        }
        match text.get(pos) {
            Some(b'0') => pos += 1,
            Some(b'1'..=b'9') => {
                while text.get(pos).is_some_and(u8::is_ascii_digit) {
                    pos += 1;
                }
            }
            _ => return false,
        }
        let int_end = pos;
        let mut is_float = false;
        if text.get(pos) == Some(&b'.') {
            pos += 1;
            if !text.get(pos).is_some_and(u8::is_ascii_digit) {
                return false;
            }
            while text.get(pos).is_some_and(u8::is_ascii_digit) {
                pos += 1;
            }
            is_float = true;
        }
        if matches!(text.get(pos), Some(b'e' | b'E')) {
            pos += 1;
            if matches!(text.get(pos), Some(b'+' | b'-')) {
                pos += 1;
            }
            if !text.get(pos).is_some_and(u8::is_ascii_digit) {
                return false;
            }
            while text.get(pos).is_some_and(u8::is_ascii_digit) {
                pos += 1;
            }
            is_float = true;
        }
        self.pos = pos;
        let literal = &text[start..pos];
        if !is_float {
            let digits = int_end - start - usize::from(text[start] == b'-');
            return literal != b"-0" && digits <= super::MAX_INT_DIGITS;
        }
        // Only ASCII here, so the conversion cannot fail.
        let Some(value) = std::str::from_utf8(literal)
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
        else {
            return false;
        };
        value.is_finite() && python_repr(value).as_bytes() == literal
    }
}

fn lowercase_hex(digits: &[u8]) -> Option<u16> {
    digits.iter().try_fold(0u16, |acc, &d| {
        let nibble = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => return None,
        };
        Some(acc << 4 | u16::from(nibble))
    })
}

#[cfg(test)]
mod tests {
    use super::is_canonical;

    #[test]
    fn canonical_inputs_are_recognised() {
        for text in [
            r#"["ev",["$e","!r:example.com","m.room.message",null,null,null,null,false,false]]"#,
            r#"{"ts":1700000000000,"b":[1,-2,0,{}],"c":"\u00e9\ud83d\ude00\u007f\u0001\n/"}"#,
            "1.5",
            "1e+16",
            "-0.0",
            "9999999999999999999999999",
            "\"\"",
            "[]",
        ] {
            assert!(is_canonical(text.as_bytes()), "{text}");
        }
    }

    #[test]
    fn non_canonical_inputs_take_the_slow_path() {
        for text in [
            "",
            " 1",
            "1 ",
            "[1, 2]",
            "-0",
            "1.50",
            "1e5",
            "1E+16",
            r#""\u00E9""#,
            r#""\u0041""#,
            r#""\u000a""#,
            r#""\/""#,
            "\"é\"",
            "\"\u{7f}\"",
            r#"{"a":1,"a":2}"#,
            "[1,]",
            "tru",
            "[1",
            "\"abc",
        ] {
            assert!(!is_canonical(text.as_bytes()), "{text:?}");
        }
    }

    #[test]
    fn duplicate_keys_in_large_objects_are_caught() {
        let mut text = String::from("{");
        for i in 0..40 {
            text.push_str(&format!("\"k{i}\":{i},"));
        }
        let unique = format!("{}\"k40\":0}}", text);
        let duplicate = format!("{}\"k7\":0}}", text);
        assert!(is_canonical(unique.as_bytes()));
        assert!(!is_canonical(duplicate.as_bytes()));
    }
}
