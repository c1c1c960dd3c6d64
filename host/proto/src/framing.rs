//! LF line framing with the protocol's line cap, over a growable buffer; no I/O.
//!
//! Matches Twisted's `LineOnlyReceiver` as Synapse uses it: lines end at a single `\n` (a `\r`
//! before it stays in the line), and a line or an unterminated remainder longer than the cap
//! is an error (Synapse answers `ERROR Line length exceeded` and closes).

use bytes::{Bytes, BytesMut};
use memchr::memchr;

/// Splits received bytes into lines of at most `max_line` bytes (not counting the `\n`).
///
/// The caller appends socket reads to [`LineFramer::buffer_mut`] and then takes lines with
/// [`LineFramer::next_line`] until it returns `Ok(None)`. After an error the framer's state is
/// unspecified: the connection is to be closed.
#[derive(Debug)]
pub struct LineFramer {
    buffer: BytesMut,
    max_line: usize,
    /// Bytes at the start of `buffer` already searched for `\n`, so that a long line arriving
    /// in many small reads is scanned once.
    searched: usize,
}

/// A received line, or the unterminated rest of the buffer, exceeds the line cap.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("Line length exceeded")]
pub struct LineTooLong;

impl LineFramer {
    /// A framer accepting lines of up to `max_line` bytes (usually [`crate::MAX_LINE_LENGTH`]).
    pub fn new(max_line: usize) -> Self {
        Self {
            buffer: BytesMut::new(),
            max_line,
            searched: 0,
        }
    }

    /// The receive buffer: append newly read bytes to it (do not remove any).
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buffer
    }

    /// The next complete line without its `\n`; `Ok(None)` when no complete line is buffered.
    pub fn next_line(&mut self) -> Result<Option<Bytes>, LineTooLong> {
        let searched = self.searched.min(self.buffer.len());
        match memchr(b'\n', &self.buffer[searched..]) {
            Some(offset) => {
                let end = searched + offset;
                self.searched = 0;
                if end > self.max_line {
                    return Err(LineTooLong);
                }
                let mut line = self.buffer.split_to(end + 1).freeze();
                line.truncate(end);
                Ok(Some(line))
            }
            None => {
                self.searched = self.buffer.len();
                if self.buffer.len() > self.max_line {
                    return Err(LineTooLong);
                }
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(framer: &mut LineFramer, bytes: &[u8]) {
        framer.buffer_mut().extend_from_slice(bytes);
    }

    #[test]
    fn partial_input_waits_for_the_newline() {
        let mut framer = LineFramer::new(100);
        feed(&mut framer, b"PING 12");
        assert_eq!(framer.next_line(), Ok(None));
        feed(&mut framer, b"34");
        assert_eq!(framer.next_line(), Ok(None));
        feed(&mut framer, b"\r\nNAME");
        assert_eq!(
            framer.next_line(),
            Ok(Some(Bytes::from_static(b"PING 1234\r")))
        );
        assert_eq!(framer.next_line(), Ok(None));
        feed(&mut framer, b" w\n");
        assert_eq!(framer.next_line(), Ok(Some(Bytes::from_static(b"NAME w"))));
    }

    #[test]
    fn several_lines_in_one_read_come_out_in_order() {
        let mut framer = LineFramer::new(100);
        feed(&mut framer, b"a\n\nbc\nd");
        assert_eq!(framer.next_line(), Ok(Some(Bytes::from_static(b"a"))));
        assert_eq!(framer.next_line(), Ok(Some(Bytes::new())));
        assert_eq!(framer.next_line(), Ok(Some(Bytes::from_static(b"bc"))));
        assert_eq!(framer.next_line(), Ok(None));
    }

    #[test]
    fn a_line_of_exactly_the_cap_passes() {
        let mut framer = LineFramer::new(8);
        feed(&mut framer, b"12345678");
        assert_eq!(framer.next_line(), Ok(None));
        feed(&mut framer, b"\n");
        assert_eq!(
            framer.next_line(),
            Ok(Some(Bytes::from_static(b"12345678")))
        );
    }

    #[test]
    fn a_terminated_line_over_the_cap_fails() {
        let mut framer = LineFramer::new(8);
        feed(&mut framer, b"ok\n123456789\n");
        assert_eq!(framer.next_line(), Ok(Some(Bytes::from_static(b"ok"))));
        assert_eq!(framer.next_line(), Err(LineTooLong));
    }

    #[test]
    fn an_unterminated_buffer_over_the_cap_fails() {
        let mut framer = LineFramer::new(8);
        feed(&mut framer, b"1234");
        assert_eq!(framer.next_line(), Ok(None));
        feed(&mut framer, b"56789");
        assert_eq!(framer.next_line(), Err(LineTooLong));
    }

    #[test]
    fn error_text_is_synapses() {
        assert_eq!(LineTooLong.to_string(), "Line length exceeded");
    }
}
