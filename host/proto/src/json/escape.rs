//! Strings written as Python's `json.dumps(..., ensure_ascii=True)` writes them.
//!
//! Printable ASCII (space to `~`) is written as is, except `"` and `\`; `\b \t \n \f \r` use
//! their short escapes; every other character becomes `\uXXXX` with lowercase hex, characters
//! above the BMP as a UTF-16 surrogate pair. DEL (0x7f) is escaped too.

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Whether Python writes `byte` unescaped inside a JSON string.
pub(super) const fn is_plain(byte: u8) -> bool {
    byte >= b' ' && byte <= b'~' && byte != b'"' && byte != b'\\'
}

/// `PLAIN[b]` is [`is_plain`]`(b)`, for the scanners' inner loops.
pub(super) static PLAIN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = is_plain(b as u8);
        b += 1;
    }
    table
};

/// How many leading bytes of `bytes` are [plain](is_plain): eight at a time while possible.
#[inline]
pub(super) fn plain_prefix_len(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // The high bit of each byte of `word` below `n` (n <= 0x80). A borrow can only set bits
    // above a byte that really is below `n`, so the lowest set bit is always exact.
    const fn below(word: u64, n: u8) -> u64 {
        word.wrapping_sub(ONES * n as u64) & !word & HIGHS
    }
    const fn equal(word: u64, byte: u8) -> u64 {
        below(word ^ (ONES * byte as u64), 1)
    }
    let mut pos = 0;
    while let Some(chunk) = bytes.get(pos..pos + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let stops = (word & HIGHS)
            | below(word, 0x20)
            | equal(word, b'"')
            | equal(word, b'\\')
            | equal(word, 0x7f);
        if stops != 0 {
            // Little-endian: the lowest flagged bit belongs to the first byte that stops.
            return pos + (stops.trailing_zeros() / 8) as usize;
        }
        pos += 8;
    }
    while pos < bytes.len() && PLAIN[usize::from(bytes[pos])] {
        pos += 1;
    }
    pos
}

/// Appends one UTF-16 code unit (or a BMP character), escaped the way Python writes it.
pub(super) fn push_unit(out: &mut Vec<u8>, unit: u16) {
    match unit {
        0x22 => out.extend_from_slice(b"\\\""),
        0x5c => out.extend_from_slice(b"\\\\"),
        0x08 => out.extend_from_slice(b"\\b"),
        0x09 => out.extend_from_slice(b"\\t"),
        0x0a => out.extend_from_slice(b"\\n"),
        0x0c => out.extend_from_slice(b"\\f"),
        0x0d => out.extend_from_slice(b"\\r"),
        0x20..=0x7e => out.push(unit as u8),
        _ => out.extend_from_slice(&[
            b'\\',
            b'u',
            HEX[usize::from(unit >> 12)],
            HEX[usize::from((unit >> 8) & 0xf)],
            HEX[usize::from((unit >> 4) & 0xf)],
            HEX[usize::from(unit & 0xf)],
        ]),
    }
}

/// Appends one character, escaped (a surrogate pair above the BMP).
pub(super) fn push_char(out: &mut Vec<u8>, c: char) {
    let mut units = [0u16; 2];
    for &unit in c.encode_utf16(&mut units).iter() {
        push_unit(out, unit);
    }
}

/// Appends `text` as a JSON string literal, quotes included, in Synapse's canonical form.
pub(crate) fn push_str(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut start = 0;
    while start < bytes.len() {
        let plain = plain_prefix_len(&bytes[start..]);
        out.extend_from_slice(&bytes[start..start + plain]);
        start += plain;
        if let Some(c) = text[start..].chars().next() {
            push_char(out, c);
            start += c.len_utf8();
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_prefix_stops_at_the_first_byte_needing_attention() {
        for stop in [b'"', b'\\', 0x00, 0x1f, 0x7f, 0x80, 0xff] {
            for at in 0..20 {
                let mut text = vec![b'a'; 24];
                text[at] = stop;
                assert_eq!(plain_prefix_len(&text), at, "{stop:#x} at {at}");
            }
        }
        assert_eq!(plain_prefix_len(b" ~!#[]{}/0123456789"), 19);
        assert_eq!(plain_prefix_len(b""), 0);
    }

    #[test]
    fn strings_escape_like_python_ensure_ascii() {
        let mut out = Vec::new();
        push_str(&mut out, "a\"b\\c/\u{7f}\u{1}\u{8}\t\n\u{c}\r é😀~");
        assert_eq!(
            std::str::from_utf8(&out).expect("ASCII"),
            r#""a\"b\\c/\u007f\u0001\b\t\n\f\r \u00e9\ud83d\ude00~""#
        );
    }
}

#[cfg(test)]
mod prefix_tests {
    use super::*;

    #[test]
    fn plain_prefix_len_stops_at_the_first_non_plain_byte_anywhere_in_a_word() {
        let stops = [b'"', b'\\', 0x00, 0x1f, 0x7f, 0x80, 0xc3, 0xff];
        for len in 0..20 {
            for at in 0..len {
                for &stop in &stops {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = stop;
                    // Bytes after the stop that would also stop, to catch borrow carries.
                    for later in bytes.iter_mut().skip(at + 1).step_by(3) {
                        *later = 0x01;
                    }
                    let naive = bytes.iter().take_while(|b| is_plain(**b)).count();
                    assert_eq!(plain_prefix_len(&bytes), naive, "{bytes:?}");
                }
            }
            assert_eq!(plain_prefix_len(&vec![b' '; len]), len);
        }
    }
}
