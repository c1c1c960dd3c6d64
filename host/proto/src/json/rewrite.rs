//! The slow path: a full parser with Python's acceptance rules that writes the canonical form.
//!
//! Objects are built as trees so that a duplicate key can keep Python's semantics (the last
//! value, at the first key's position); everything else is written as it is read.

use super::escape::{plain_prefix_len, push_char, push_unit};
use super::float::python_repr;
use super::{JsonError, MAX_DEPTH, MAX_INT_DIGITS};

/// Parses `text` as Python's `json.loads` does and returns Synapse's serialisation of it.
pub(crate) fn rewrite(text: &[u8]) -> Result<Vec<u8>, JsonError> {
    let text = match std::str::from_utf8(text) {
        Ok(text) => text,
        Err(e) => return Err(error(e.valid_up_to(), "invalid UTF-8")),
    };
    let mut parser = Parser {
        src: text,
        text: text.as_bytes(),
        pos: 0,
    };
    parser.skip_whitespace();
    let node = parser.value(0)?;
    parser.skip_whitespace();
    if parser.pos != text.len() {
        return Err(error(parser.pos, "Extra data"));
    }
    let mut out = Vec::with_capacity(text.len());
    node.write(&mut out);
    Ok(out)
}

fn error(offset: usize, reason: &'static str) -> JsonError {
    JsonError { offset, reason }
}

enum Node {
    /// A scalar, already in canonical form.
    Scalar(Vec<u8>),
    Array(Vec<Node>),
    /// Keys in canonical form, quotes included.
    Object(Vec<(Vec<u8>, Node)>),
}

impl Node {
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Node::Scalar(text) => out.extend_from_slice(text),
            Node::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    item.write(out);
                }
                out.push(b']');
            }
            Node::Object(members) => {
                out.push(b'{');
                for (i, (key, value)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(key);
                    out.push(b':');
                    value.write(out);
                }
                out.push(b'}');
            }
        }
    }
}

/// Valid UTF-8 (checked by [`rewrite`]), walked by byte.
struct Parser<'a> {
    src: &'a str,
    text: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<Node, JsonError> {
        let text = self.text;
        let rest = &text[self.pos..];
        let literal = |word: &'static str| rest.starts_with(word.as_bytes());
        match self.peek() {
            Some(b'"') => self.string().map(Node::Scalar),
            Some(b'[' | b'{') if depth >= MAX_DEPTH => Err(error(self.pos, "nesting too deep")),
            Some(b'[') => self.array(depth + 1),
            Some(b'{') => self.object(depth + 1),
            Some(b'n') if literal("null") => self.scalar(4),
            Some(b't') if literal("true") => self.scalar(4),
            Some(b'f') if literal("false") => self.scalar(5),
            Some(b'N') if literal("NaN") => Err(error(self.pos, "NaN is not allowed")),
            Some(b'I') if literal("Infinity") => Err(error(self.pos, "Infinity is not allowed")),
            Some(b'-') if rest.starts_with(b"-Infinity") => {
                Err(error(self.pos, "-Infinity is not allowed"))
            }
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(error(self.pos, "Expecting value")),
        }
    }

    fn scalar(&mut self, len: usize) -> Result<Node, JsonError> {
        let text = self.text[self.pos..self.pos + len].to_vec();
        self.pos += len;
        Ok(Node::Scalar(text))
    }

    fn array(&mut self, depth: usize) -> Result<Node, JsonError> {
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Node::Array(items));
        }
        loop {
            items.push(self.value(depth)?);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_whitespace();
                }
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Node::Array(items));
                }
                _ => return Err(error(self.pos, "Expecting ',' delimiter")),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Node, JsonError> {
        self.pos += 1;
        let mut members: Vec<(Vec<u8>, Node)> = Vec::new();
        let mut index: Option<std::collections::HashMap<Vec<u8>, usize>> = None;
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Node::Object(members));
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(error(
                    self.pos,
                    "Expecting property name enclosed in double quotes",
                ));
            }
            let key = self.string()?;
            self.skip_whitespace();
            if self.peek() != Some(b':') {
                return Err(error(self.pos, "Expecting ':' delimiter"));
            }
            self.pos += 1;
            self.skip_whitespace();
            let value = self.value(depth)?;
            // Python's dict: a repeated key keeps its first position and takes the last value.
            if members.len() == 16 && index.is_none() {
                index = Some(
                    members
                        .iter()
                        .enumerate()
                        .map(|(i, (k, _))| (k.clone(), i))
                        .collect(),
                );
            }
            let existing = match &index {
                Some(index) => index.get(&key).copied(),
                None => members.iter().position(|(k, _)| *k == key),
            };
            match existing {
                Some(i) => members[i].1 = value,
                None => {
                    if let Some(index) = &mut index {
                        index.insert(key.clone(), members.len());
                    }
                    members.push((key, value));
                }
            }
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_whitespace();
                }
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Node::Object(members));
                }
                _ => return Err(error(self.pos, "Expecting ',' delimiter")),
            }
        }
    }

    /// A string literal, returned in canonical form with its quotes.
    fn string(&mut self) -> Result<Vec<u8>, JsonError> {
        let start = self.pos;
        let text = self.text;
        let mut out = Vec::with_capacity(16);
        out.push(b'"');
        let mut pos = start + 1;
        loop {
            let plain_start = pos;
            pos += plain_prefix_len(&text[pos..]);
            out.extend_from_slice(&text[plain_start..pos]);
            match text.get(pos) {
                None => return Err(error(start, "Unterminated string")),
                Some(b'"') => {
                    out.push(b'"');
                    self.pos = pos + 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    let unit = match text.get(pos + 1) {
                        Some(b'"') => 0x22,
                        Some(b'\\') => 0x5c,
                        Some(b'/') => 0x2f,
                        Some(b'b') => 0x08,
                        Some(b'f') => 0x0c,
                        Some(b'n') => 0x0a,
                        Some(b'r') => 0x0d,
                        Some(b't') => 0x09,
                        Some(b'u') => {
                            let hex = text.get(pos + 2..pos + 6).and_then(|digits| {
                                let digits = std::str::from_utf8(digits).ok()?;
                                if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
                                    return None;
                                }
                                u16::from_str_radix(digits, 16).ok()
                            });
                            let Some(unit) = hex else {
                                return Err(error(pos, "Invalid \\uXXXX escape"));
                            };
                            pos += 4;
                            unit
                        }
                        None => return Err(error(start, "Unterminated string")),
                        Some(_) => return Err(error(pos, "Invalid \\escape")),
                    };
                    // Surrogates need no pairing: Python writes a joined pair back as the same
                    // two escapes, and a lone one as itself.
                    push_unit(&mut out, unit);
                    pos += 2;
                }
                Some(&b) if b < 0x20 => return Err(error(pos, "Invalid control character")),
                Some(_) => {
                    // DEL or the first byte of a non-ASCII character (the input is UTF-8).
                    // `pos` is on a character boundary: only ASCII bytes and whole characters
                    // are ever stepped over.
                    if let Some(c) = self.src[pos..].chars().next() {
                        push_char(&mut out, c);
                        pos += c.len_utf8();
                    }
                }
            }
        }
    }

    fn number(&mut self) -> Result<Node, JsonError> {
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
            _ => return Err(error(start, "Expecting value")),
        }
        let int_end = pos;
        let mut is_float = false;
        // Python only takes the fraction / exponent when digits follow; otherwise the `.` or
        // `e` is left over and fails as the next token.
        if text.get(pos) == Some(&b'.') && text.get(pos + 1).is_some_and(u8::is_ascii_digit) {
            pos += 1;
            while text.get(pos).is_some_and(u8::is_ascii_digit) {
                pos += 1;
            }
            is_float = true;
        }
        if matches!(text.get(pos), Some(b'e' | b'E')) {
            let mut exp = pos + 1;
            if matches!(text.get(exp), Some(b'+' | b'-')) {
                exp += 1;
            }
            if text.get(exp).is_some_and(u8::is_ascii_digit) {
                while text.get(exp).is_some_and(u8::is_ascii_digit) {
                    exp += 1;
                }
                pos = exp;
                is_float = true;
            }
        }
        self.pos = pos;
        let literal = &text[start..pos];
        if !is_float {
            let negative = text[start] == b'-';
            if int_end - start - usize::from(negative) > MAX_INT_DIGITS {
                return Err(error(start, "integer has more than 4300 digits"));
            }
            if literal == b"-0" {
                return Ok(Node::Scalar(b"0".to_vec()));
            }
            return Ok(Node::Scalar(literal.to_vec()));
        }
        let value: f64 = std::str::from_utf8(literal)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| error(start, "Expecting value"))?;
        if !value.is_finite() {
            return Err(error(start, "float out of range"));
        }
        Ok(Node::Scalar(python_repr(value).as_bytes().to_vec()))
    }
}
