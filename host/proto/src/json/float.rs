//! Floats written as Python's `repr(float)`, which is what `json.dumps` emits for them.
//!
//! The digits are the shortest that round-trip (`ryu`, like Python's David Gay `dtoa` mode 0);
//! the layout is Python's: scientific when the decimal exponent is below -4 or at least 16
//! (`1e-05`, `1e+16`, at least two exponent digits), otherwise positional with at least one
//! fractional digit (`100000.0`, `0.0001`).

/// A float's Python `repr`, held inline (at most 24 bytes: `-1.2345678901234567e-308`).
pub(super) struct Repr {
    buf: [u8; 32],
    len: usize,
}

impl Repr {
    fn push(&mut self, byte: u8) {
        self.buf[self.len] = byte;
        self.len += 1;
    }

    fn extend(&mut self, bytes: &[u8]) {
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    /// The text.
    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Python's `repr(value)`; `value` must be finite.
pub(super) fn python_repr(value: f64) -> Repr {
    let mut ryu_buf = ryu::Buffer::new();
    let shortest = ryu_buf.format_finite(value).as_bytes();
    let mut out = Repr {
        buf: [0; 32],
        len: 0,
    };
    let (negative, shortest) = match shortest.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, shortest),
    };
    if negative {
        out.push(b'-');
    }
    let decimal = Decimal::of(shortest);
    let digits = decimal.digits();
    if digits.is_empty() {
        out.extend(b"0.0");
        return out;
    }
    let point = decimal.point;
    if !(-4 < point && point <= 16) {
        push_scientific(&mut out, digits, point);
    } else if point <= 0 {
        out.extend(b"0.");
        for _ in 0..-point {
            out.push(b'0');
        }
        out.extend(digits);
    } else {
        push_positional(&mut out, digits, point as usize); // 1..=16 here
    }
    out
}

/// A float's significant digits (no leading or trailing zeros) and the position `point` of
/// its decimal point, such that value = 0.DIGITS * 10^point.
struct Decimal {
    digits: [u8; 20],
    len: usize,
    point: i32,
}

impl Decimal {
    /// Reduces `shortest` (ryu's text without its sign), whatever layout ryu chose.
    #[inline]
    fn of(shortest: &[u8]) -> Decimal {
        let (mantissa, exponent) = match shortest.iter().position(|&b| b == b'e' || b == b'E') {
            Some(e) => (&shortest[..e], parse_exponent(&shortest[e + 1..])),
            None => (shortest, 0),
        };
        let mut digits = [0u8; 20];
        let mut n_digits = 0usize;
        let mut int_len = 0i32;
        let mut seen_point = false;
        for &b in mantissa {
            if b == b'.' {
                seen_point = true;
                continue;
            }
            if n_digits == 0 && b == b'0' {
                // A leading zero shifts the point left when it is after the decimal point.
                if seen_point {
                    int_len -= 1;
                }
                continue;
            }
            digits[n_digits] = b;
            n_digits += 1;
            if !seen_point {
                int_len += 1;
            }
        }
        while n_digits > 0 && digits[n_digits - 1] == b'0' {
            n_digits -= 1;
        }
        Decimal {
            digits,
            len: n_digits,
            point: int_len + exponent,
        }
    }

    /// The significant digits; empty for zero.
    #[inline]
    fn digits(&self) -> &[u8] {
        &self.digits[..self.len]
    }
}

/// Writes `digits` with the point at `point` in scientific form: `1e-05`, `1.5e+16`.
#[inline]
fn push_scientific(out: &mut Repr, digits: &[u8], point: i32) {
    out.push(digits[0]);
    if digits.len() > 1 {
        out.push(b'.');
        out.extend(&digits[1..]);
    }
    let exp = point - 1;
    out.push(b'e');
    out.push(if exp < 0 { b'-' } else { b'+' });
    let exp = exp.unsigned_abs();
    if exp < 10 {
        out.push(b'0');
    }
    let mut itoa_buf = itoa::Buffer::new();
    out.extend(itoa_buf.format(exp).as_bytes());
}

/// Writes `digits` with the point after the first `point` of them (padding with zeros), with
/// at least one fractional digit: `100000.0`, `12345678.9`.
#[inline]
fn push_positional(out: &mut Repr, digits: &[u8], point: usize) {
    if point >= digits.len() {
        out.extend(digits);
        for _ in digits.len()..point {
            out.push(b'0');
        }
        out.extend(b".0");
    } else {
        out.extend(&digits[..point]);
        out.push(b'.');
        out.extend(&digits[point..]);
    }
}

fn parse_exponent(text: &[u8]) -> i32 {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, text),
    };
    let magnitude = digits
        .iter()
        .fold(0i32, |acc, &d| acc * 10 + i32::from(d - b'0'));
    if negative { -magnitude } else { magnitude }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repr(value: f64) -> String {
        String::from_utf8(python_repr(value).as_bytes().to_vec()).expect("ASCII")
    }

    #[test]
    fn matches_python_repr() {
        let cases: &[(f64, &str)] = &[
            (1.5, "1.5"),
            (1e5, "100000.0"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1234567890123456.7, "1234567890123456.8"),
            (1e-5, "1e-05"),
            (1.25e-5, "1.25e-05"),
            (0.0001, "0.0001"),
            (0.00012345, "0.00012345"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (-2.5, "-2.5"),
            (1.0, "1.0"),
            (123.0, "123.0"),
            (0.1, "0.1"),
            (0.30000000000000004, "0.30000000000000004"),
            (1e100, "1e+100"),
            (1e-100, "1e-100"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            (f64::MIN_POSITIVE, "2.2250738585072014e-308"),
            (9007199254740993.0, "9007199254740992.0"),
            (12345678.9, "12345678.9"),
        ];
        for &(value, want) in cases {
            assert_eq!(repr(value), want, "{value:e}");
        }
    }
}
