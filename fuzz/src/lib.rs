//! What the line targets share: framing a fuzzed byte stream, checked against the framing
//! rule itself.

use bytes::Bytes;
use memchr::memchr;
use streamhost_proto::{LineFramer, LineTooLong};

/// Frames `data` as a connection would receive it and returns the complete lines.
///
/// `data[0]` picks the read size (1 to 256 bytes), `data[1]` the line cap (0 to 2,040 bytes),
/// the rest is the byte stream. Each answer of the framer is checked against the rule: a line
/// is the bytes up to the next `\n`, at most the cap long; `None` only when no `\n` is pending
/// and the pending bytes fit the cap; `LineTooLong` only when the next line (or the
/// unterminated rest) exceeds it.
pub fn frame(data: &[u8]) -> Vec<Bytes> {
    let Some((&[read_size, cap], stream)) = data.split_first_chunk::<2>() else {
        return Vec::new();
    };
    let read_size = usize::from(read_size) + 1;
    let max = usize::from(cap) * 8;
    let mut framer = LineFramer::new(max);
    let mut lines = Vec::new();
    let (mut fed, mut consumed) = (0, 0);
    for piece in stream.chunks(read_size) {
        framer.buffer_mut().extend_from_slice(piece);
        fed += piece.len();
        loop {
            match framer.next_line() {
                Ok(Some(line)) => {
                    let end = consumed + line.len();
                    assert!(line.len() <= max, "a line over the cap passed");
                    assert_eq!(&stream[consumed..end], &line[..], "line differs from input");
                    assert_eq!(stream.get(end), Some(&b'\n'), "line not ended by LF");
                    consumed = end + 1;
                    lines.push(line);
                }
                Ok(None) => {
                    let pending = &stream[consumed..fed];
                    assert!(memchr(b'\n', pending).is_none(), "a complete line was held");
                    assert!(pending.len() <= max, "an over-long rest was held");
                    break;
                }
                Err(LineTooLong) => {
                    let pending = &stream[consumed..fed];
                    let next = memchr(b'\n', pending).unwrap_or(pending.len());
                    assert!(next > max, "LineTooLong for a line within the cap");
                    return lines;
                }
            }
        }
    }
    lines
}
