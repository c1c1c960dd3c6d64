//! Reading the elements of a canonical top-level JSON array, for the commands whose arguments
//! are a small array of scalars (`USER_IP`, `LOCK_RELEASED`).

/// One element of a top-level array.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Item {
    /// A string (without lone surrogates, which Rust strings cannot hold).
    Str(String),
    /// `null`.
    Null,
    /// An integer in `i64` range.
    Int(i64),
    /// Anything else: what kind of value it is, for error messages.
    Other(&'static str),
}

/// The elements of `json` (canonical JSON), or `None` if it is not an array.
pub(crate) fn array_items(json: &str) -> Option<Vec<Item>> {
    let inner = json.strip_prefix('[')?.strip_suffix(']')?;
    let bytes = inner.as_bytes();
    let mut items = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let end = value_end(bytes, pos);
        items.push(classify(&inner[pos..end]));
        pos = end + 1; // past the comma
    }
    Some(items)
}

/// Where the canonical value starting at `start` ends (exclusive).
fn value_end(bytes: &[u8], start: usize) -> usize {
    let mut depth = 0usize;
    let mut pos = start;
    while pos < bytes.len() {
        match bytes[pos] {
            b'"' => {
                pos += 1;
                while pos < bytes.len() && bytes[pos] != b'"' {
                    pos += if bytes[pos] == b'\\' { 2 } else { 1 };
                }
            }
            b'[' | b'{' => depth += 1,
            b']' | b'}' => depth = depth.saturating_sub(1),
            b',' if depth == 0 => return pos,
            _ => {}
        }
        pos += 1;
    }
    bytes.len()
}

fn classify(value: &str) -> Item {
    match value.as_bytes().first() {
        Some(b'"') => unescape(&value[1..value.len() - 1])
            .map_or(Item::Other("a string with a lone surrogate"), Item::Str),
        Some(b'n') => Item::Null,
        Some(b't' | b'f') => Item::Other("a boolean"),
        Some(b'[') => Item::Other("an array"),
        Some(b'{') => Item::Other("an object"),
        _ if value.contains(['.', 'e', 'E']) => Item::Other("a float"),
        _ => value
            .parse()
            .map_or(Item::Other("an integer out of range"), Item::Int),
    }
}

/// Decodes the body of a canonical string literal.
fn unescape(body: &str) -> Option<String> {
    let mut out = String::with_capacity(body.len());
    let mut rest = body;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let escape = &rest[i + 1..];
        let (c, used) = match escape.as_bytes().first()? {
            b'"' => ('"', 1),
            b'\\' => ('\\', 1),
            b'/' => ('/', 1),
            b'b' => ('\u{8}', 1),
            b'f' => ('\u{c}', 1),
            b'n' => ('\n', 1),
            b'r' => ('\r', 1),
            b't' => ('\t', 1),
            b'u' => {
                let unit = u16::from_str_radix(escape.get(1..5)?, 16).ok()?;
                match char::from_u32(u32::from(unit)) {
                    Some(c) => (c, 5),
                    None => {
                        // A high surrogate must be followed by an escaped low one.
                        if escape.get(5..7) != Some("\\u") {
                            return None;
                        }
                        let low = u16::from_str_radix(escape.get(7..11)?, 16).ok()?;
                        let c = char::decode_utf16([unit, low]).next()?.ok()?;
                        (c, 11)
                    }
                }
            }
            _ => return None,
        };
        out.push(c);
        rest = &escape[used..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_and_nested_values_are_told_apart() {
        let items =
            array_items(r#"["a\"\\\n\u00e9\ud83d\ude00",null,-5,1.5,true,[1,"]"],{"a":","}]"#)
                .expect("an array");
        assert_eq!(
            items,
            vec![
                Item::Str("a\"\\\né😀".to_owned()),
                Item::Null,
                Item::Int(-5),
                Item::Other("a float"),
                Item::Other("a boolean"),
                Item::Other("an array"),
                Item::Other("an object"),
            ]
        );
        assert_eq!(array_items("[]"), Some(vec![]));
        assert_eq!(array_items("{}"), None);
        assert_eq!(
            array_items(r#"["\ud800"]"#),
            Some(vec![Item::Other("a string with a lone surrogate")])
        );
    }
}
