//! RESP2, the part of Redis's protocol Streamhost speaks: commands written as arrays of bulk
//! strings, and replies taken whole off the front of a read buffer. A reply's bulk strings are
//! slices of the buffer's bytes, not copies: a pub/sub message's body reaches the decoder
//! without being copied again.
//!
//! Streamhost never sends `HELLO`, so Redis answers in RESP2 only: `+status`, `-error`,
//! `:integer`, `$bulk` (`$-1` is nil) and `*array` (`*-1` is nil). Anything else, a length
//! out of range or arrays nested deeper than [`MAX_DEPTH`] is a [`ProtocolError`]: the
//! connection cannot be trusted any further and is dropped.

use bytes::{Buf as _, Bytes, BytesMut};

/// Deepest nesting of arrays taken (Redis's pub/sub and command replies nest one deep).
pub(crate) const MAX_DEPTH: usize = 8;

/// Longest bulk string taken: Redis's own `proto-max-bulk-len` default (512 MiB).
pub(crate) const MAX_BULK: usize = 512 * 1024 * 1024;

/// One RESP2 reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// `+OK`, `+PONG`.
    Status(Bytes),
    /// `-ERR …`: the command failed; the connection goes on.
    Error(Bytes),
    /// `:1`.
    Integer(i64),
    /// `$5\r\nhello`; `None` for nil.
    Bulk(Option<Bytes>),
    /// `*2\r\n…`; `None` for nil.
    Array(Option<Vec<Reply>>),
}

/// Bytes that are not RESP2 as Redis writes it.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[error("Redis sent what is not RESP2: {0}")]
pub(crate) struct ProtocolError(&'static str);

/// Appends the command `args` (`PUBLISH`, channel, body) to `out` as a RESP array of bulk
/// strings.
pub(crate) fn encode_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    header(out, b'*', args.len());
    for arg in args {
        header(out, b'$', arg.len());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// `<kind><len>\r\n`.
fn header(out: &mut Vec<u8>, kind: u8, len: usize) {
    out.push(kind);
    out.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// What [`take_push`] took off a subscribed connection's buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Push {
    /// A pub/sub `message`: its body.
    Message(Bytes),
    /// Any other reply (a `subscribe` acknowledgement, a `pong`, an error).
    Reply(Reply),
}

/// How every pub/sub message starts: a three-element array whose first element is `message`.
const MESSAGE: &[u8] = b"*3\r\n$7\r\nmessage\r\n";

/// [`take_reply`] for a subscribed connection: a `message` is recognised by its first
/// bytes and only its body is split off the buffer (one reference, no array built), since
/// nearly every reply there is one.
pub(crate) fn take_push(buffer: &mut BytesMut) -> Result<Option<Push>, ProtocolError> {
    if !buffer.starts_with(MESSAGE) {
        return Ok(take_reply(buffer)?.map(Push::Reply));
    }
    // The channel (`$<len>\r\n<channel>\r\n`), then the body.
    let Some((body_start, body_len)) = message_body(buffer)? else {
        return Ok(None);
    };
    buffer.advance(body_start);
    let body = buffer.split_to(body_len).freeze();
    buffer.advance(2);
    Ok(Some(Push::Message(body)))
}

/// Where a whole `message`'s body starts and how long it is; `None` while it has not all
/// arrived. A channel or body that is not a bulk string is refused.
fn message_body(bytes: &[u8]) -> Result<Option<(usize, usize)>, ProtocolError> {
    let mut at = MESSAGE.len();
    for part in 0..2 {
        let Some((kind, line, next)) = line(bytes, at)? else {
            return Ok(None);
        };
        let len = match (kind, length(line, MAX_BULK)?) {
            (b'$', Some(len)) => len,
            _ => {
                return Err(ProtocolError(
                    "a pub/sub message that is not three bulk strings",
                ));
            }
        };
        let end = next + len + 2;
        if bytes.len() < end {
            return Ok(None);
        }
        if &bytes[end - 2..end] != b"\r\n" {
            return Err(ProtocolError("a bulk string not ended by CRLF"));
        }
        if part == 1 {
            return Ok(Some((next, len)));
        }
        at = end;
    }
    unreachable!("the loop returns at its second part")
}

/// Takes the first whole reply off the front of `buffer`; `Ok(None)` (and `buffer` as it
/// was) while its bytes have not all arrived.
pub(crate) fn take_reply(buffer: &mut BytesMut) -> Result<Option<Reply>, ProtocolError> {
    let Some(end) = measure(buffer, 0, 0)? else {
        return Ok(None);
    };
    let frame = buffer.split_to(end).freeze();
    let mut at = 0;
    Ok(Some(build(&frame, &mut at)))
}

/// Where the reply starting at `at` ends; `None` when it is not all there.
fn measure(bytes: &[u8], at: usize, depth: usize) -> Result<Option<usize>, ProtocolError> {
    let Some((kind, line, next)) = line(bytes, at)? else {
        return Ok(None);
    };
    match kind {
        b'+' | b'-' => Ok(Some(next)),
        b':' => integer(line).map(|_| Some(next)),
        b'$' => match length(line, MAX_BULK)? {
            None => Ok(Some(next)),
            Some(len) => {
                let end = next + len + 2;
                if bytes.len() < end {
                    return Ok(None);
                }
                if &bytes[end - 2..end] != b"\r\n" {
                    return Err(ProtocolError("a bulk string not ended by CRLF"));
                }
                Ok(Some(end))
            }
        },
        b'*' => {
            if depth == MAX_DEPTH {
                return Err(ProtocolError("arrays nested too deep"));
            }
            let mut end = next;
            for _ in 0..length(line, usize::MAX)?.unwrap_or(0) {
                match measure(bytes, end, depth + 1)? {
                    Some(element_end) => end = element_end,
                    None => return Ok(None),
                }
            }
            Ok(Some(end))
        }
        _ => Err(ProtocolError("an unknown reply type")),
    }
}

/// The reply at `at` of a frame [`measure`] found whole, moving `at` past it.
fn build(frame: &Bytes, at: &mut usize) -> Reply {
    let (kind, start, end) = line_bounds(frame, *at);
    *at = end + 2;
    let line = &frame[start..end];
    match kind {
        b'+' => Reply::Status(frame.slice(start..end)),
        b'-' => Reply::Error(frame.slice(start..end)),
        b':' => Reply::Integer(integer(line).unwrap_or_default()),
        b'$' => Reply::Bulk(length(line, MAX_BULK).ok().flatten().map(|len| {
            let body = frame.slice(*at..*at + len);
            *at += len + 2;
            body
        })),
        _ => Reply::Array(
            length(line, usize::MAX)
                .ok()
                .flatten()
                .map(|len| (0..len).map(|_| build(frame, at)).collect()),
        ),
    }
}

/// A line of a reply: its type byte, the rest of it (CRLF excluded) and where the next line
/// starts.
type Line<'a> = (u8, &'a [u8], usize);

/// The line at `at`; `None` when its CRLF has not arrived.
fn line(bytes: &[u8], at: usize) -> Result<Option<Line<'_>>, ProtocolError> {
    let Some(newline) = memchr::memchr(b'\n', &bytes[at..]) else {
        return Ok(None);
    };
    let end = at + newline;
    if newline < 2 || bytes[end - 1] != b'\r' {
        return Err(ProtocolError("a line not ended by CRLF"));
    }
    Ok(Some((bytes[at], &bytes[at + 1..end - 1], end + 1)))
}

/// [`line`] for a frame known whole: the type byte and the line's bounds (CRLF excluded).
fn line_bounds(frame: &[u8], at: usize) -> (u8, usize, usize) {
    let newline = memchr::memchr(b'\n', &frame[at..]).unwrap_or(frame.len() - at);
    (frame[at], at + 1, at + newline - 1)
}

/// A decimal integer, sign allowed.
fn integer(text: &[u8]) -> Result<i64, ProtocolError> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', digits)) => (true, digits),
        _ => (false, text),
    };
    let refused = ProtocolError("an integer that does not parse");
    if digits.is_empty() {
        return Err(refused);
    }
    let mut value: i64 = 0;
    for digit in digits {
        if !digit.is_ascii_digit() {
            return Err(refused);
        }
        let digit = i64::from(digit - b'0');
        value = value
            .checked_mul(10)
            .and_then(|v| {
                if negative {
                    v.checked_sub(digit)
                } else {
                    v.checked_add(digit)
                }
            })
            .ok_or(refused.clone())?;
    }
    Ok(value)
}

/// A length: `-1` is nil (`None`), anything else must be `0..=max`.
fn length(text: &[u8], max: usize) -> Result<Option<usize>, ProtocolError> {
    match integer(text)? {
        -1 => Ok(None),
        n => usize::try_from(n)
            .ok()
            .filter(|n| *n <= max)
            .map(Some)
            .ok_or(ProtocolError("a length out of range")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Reply {
        Reply::Bulk(Some(Bytes::copy_from_slice(text.as_bytes())))
    }

    fn take(bytes: &[u8]) -> (Result<Option<Reply>, ProtocolError>, usize) {
        let mut buffer = BytesMut::from(bytes);
        let reply = take_reply(&mut buffer);
        (reply, buffer.len())
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode_command(&mut out, &[b"PUBLISH", b"chan", b"RDATA a b 1 []"]);
        assert_eq!(
            out,
            b"*3\r\n$7\r\nPUBLISH\r\n$4\r\nchan\r\n$14\r\nRDATA a b 1 []\r\n"
        );
    }

    #[test]
    fn each_reply_type_is_taken_and_the_rest_is_left() {
        let message = b"*3\r\n$7\r\nmessage\r\n$4\r\nchan\r\n$5\r\nhe\r\no\r\n:1\r\n";
        let (reply, left) = take(message);
        assert_eq!(
            reply.unwrap().unwrap(),
            Reply::Array(Some(vec![bulk("message"), bulk("chan"), bulk("he\r\no")]))
        );
        assert_eq!(left, 4);
        assert_eq!(
            take(b"+PONG\r\n").0.unwrap().unwrap(),
            Reply::Status("PONG".into())
        );
        assert_eq!(
            take(b"-ERR wrong\r\n").0.unwrap().unwrap(),
            Reply::Error("ERR wrong".into())
        );
        assert_eq!(take(b":-42\r\n").0.unwrap().unwrap(), Reply::Integer(-42));
        assert_eq!(take(b"$-1\r\n").0.unwrap().unwrap(), Reply::Bulk(None));
        assert_eq!(take(b"$0\r\n\r\n").0.unwrap().unwrap(), bulk(""));
        assert_eq!(take(b"*-1\r\n").0.unwrap().unwrap(), Reply::Array(None));
        assert_eq!(
            take(b"*2\r\n*1\r\n:1\r\n+OK\r\n").0.unwrap().unwrap(),
            Reply::Array(Some(vec![
                Reply::Array(Some(vec![Reply::Integer(1)])),
                Reply::Status("OK".into())
            ]))
        );
    }

    #[test]
    fn a_reply_cut_anywhere_waits_for_the_rest_and_consumes_nothing() {
        let whole = b"*3\r\n$7\r\nmessage\r\n$4\r\nchan\r\n$5\r\nhello\r\n";
        for cut in 0..whole.len() {
            let (reply, left) = take(&whole[..cut]);
            assert_eq!(reply.unwrap(), None, "cut at {cut}");
            assert_eq!(left, cut);
        }
        assert!(take(whole).0.unwrap().is_some());
    }

    #[test]
    fn bytes_that_are_not_resp2_are_refused() {
        for (bytes, why) in [
            (&b"%1\r\n"[..], "an unknown reply type"),
            (b"+OK\n", "a line not ended by CRLF"),
            (b":x\r\n", "an integer that does not parse"),
            (b"$-2\r\n", "a length out of range"),
            (b"$3\r\nabcd\r\n", "a bulk string not ended by CRLF"),
            (b"*-5\r\n", "a length out of range"),
            (b"$536870913\r\n", "a length out of range"),
        ] {
            assert_eq!(take(bytes).0, Err(ProtocolError(why)), "{bytes:?}");
        }
        let deep = "*1\r\n".repeat(MAX_DEPTH + 1) + ":1\r\n";
        assert_eq!(
            take(deep.as_bytes()).0,
            Err(ProtocolError("arrays nested too deep"))
        );
        let deepest = "*1\r\n".repeat(MAX_DEPTH) + ":1\r\n";
        assert!(take(deepest.as_bytes()).0.unwrap().is_some());
    }

    #[test]
    fn messages_are_taken_whole_and_other_pushes_as_replies() {
        let stream = b"*3\r\n$9\r\nsubscribe\r\n$4\r\nchan\r\n:1\r\n\
            *3\r\n$7\r\nmessage\r\n$4\r\nchan\r\n$8\r\nRDATA\r\n1\r\n\
            *3\r\n$7\r\nmessage\r\n$4\r\nchan\r\n$0\r\n\r\n\
            *2\r\n$4\r\npong\r\n$0\r\n\r\n";
        // Whole, and cut anywhere: what is taken is the same, in the same order.
        for cut in 0..=stream.len() {
            let mut buffer = BytesMut::from(&stream[..cut]);
            let mut taken = Vec::new();
            while let Some(push) = take_push(&mut buffer).unwrap() {
                taken.push(push);
            }
            buffer.extend_from_slice(&stream[cut..]);
            while let Some(push) = take_push(&mut buffer).unwrap() {
                taken.push(push);
            }
            assert!(buffer.is_empty(), "cut at {cut}");
            assert_eq!(
                taken,
                vec![
                    Push::Reply(Reply::Array(Some(vec![
                        bulk("subscribe"),
                        bulk("chan"),
                        Reply::Integer(1)
                    ]))),
                    Push::Message("RDATA\r\n1".into()),
                    Push::Message(Bytes::new()),
                    Push::Reply(Reply::Array(Some(vec![bulk("pong"), bulk("")]))),
                ],
                "cut at {cut}"
            );
        }
        for bad in [
            &b"*3\r\n$7\r\nmessage\r\n:1\r\n$1\r\nx\r\n"[..],
            b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$-1\r\n",
            b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nxy\r\n",
        ] {
            assert!(take_push(&mut BytesMut::from(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn integers_are_decimal_and_overflow_is_refused() {
        assert_eq!(integer(b"9223372036854775807"), Ok(i64::MAX));
        assert_eq!(integer(b"-9223372036854775808"), Ok(i64::MIN));
        for bad in [&b"9223372036854775808"[..], b"", b"-", b"+1", b"1 ", b"0x1"] {
            assert!(integer(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_huge_array_length_is_not_allocated_up_front() {
        let (reply, left) = take(b"*1000000000\r\n:1\r\n");
        assert_eq!(reply.unwrap(), None);
        assert_eq!(left, 17);
    }
}
