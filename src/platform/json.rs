//! A JSON reader that keeps where each value stands (line and column), so
//! that the platform's config can be checked field by field and every
//! problem placed, type errors included (`serde` stops at the first one and
//! values lose their place). It accepts exactly what `serde_json` accepts
//! (RFC 8259, nesting up to 128), which a property test checks.

use std::fmt;

/// A value and its place (1-based line and column, in characters).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub line: usize,
    pub col: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    /// The number as written.
    Number(String),
    String(String),
    Array(Vec<Node>),
    /// Members in document order; a repeated key is kept twice.
    Object(Vec<(Key, Node)>),
}

/// An object's key and its place.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub name: String,
    pub line: usize,
    pub col: usize,
}

impl Value {
    /// The JSON type's name, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "a list",
            Value::Object(_) => "an object",
        }
    }
}

impl Node {
    /// The last member named `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Object(members) => members
                .iter()
                .rev()
                .find(|(k, _)| k.name == key)
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The number as an unsigned integer, when it is one.
    pub fn as_u64(&self) -> Option<u64> {
        match &self.value {
            Value::Number(n) => n.parse().ok(),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
}

/// A syntax error and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.col, self.message)
    }
}

/// How deep arrays and objects may nest (as `serde_json`).
const MAX_DEPTH: usize = 128;

struct Reader<'a> {
    text: &'a [u8],
    pos: usize,
    line: usize,
    col: usize,
    depth: usize,
}

/// Parses a whole document.
pub fn parse(text: &[u8]) -> Result<Node, SyntaxError> {
    let mut r = Reader {
        text,
        pos: 0,
        line: 1,
        col: 1,
        depth: 0,
    };
    r.blank();
    let node = r.value()?;
    r.blank();
    if r.pos < r.text.len() {
        return Err(r.error("unexpected text after the value"));
    }
    Ok(node)
}

impl Reader<'_> {
    fn error(&self, message: &str) -> SyntaxError {
        SyntaxError {
            line: self.line,
            col: self.col,
            message: message.to_string(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    /// Moves past one byte; columns count characters (UTF-8 lead bytes).
    fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        if b == b'\n' {
            self.line += 1;
            self.col = 1;
        } else if b & 0xC0 != 0x80 {
            self.col += 1;
        }
        Some(b)
    }

    fn blank(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.bump();
        }
    }

    fn expect_word(&mut self, word: &[u8]) -> Result<(), SyntaxError> {
        for &w in word {
            if self.peek() != Some(w) {
                return Err(self.error("expected a value"));
            }
            self.bump();
        }
        Ok(())
    }

    fn value(&mut self) -> Result<Node, SyntaxError> {
        let (line, col) = (self.line, self.col);
        let value = match self.peek() {
            None => return Err(self.error("the document ends where a value is expected")),
            Some(b'n') => {
                self.expect_word(b"null")?;
                Value::Null
            }
            Some(b't') => {
                self.expect_word(b"true")?;
                Value::Bool(true)
            }
            Some(b'f') => {
                self.expect_word(b"false")?;
                Value::Bool(false)
            }
            Some(b'"') => Value::String(self.string()?),
            Some(b'-' | b'0'..=b'9') => Value::Number(self.number()?),
            Some(b'[') => self.array()?,
            Some(b'{') => self.object()?,
            Some(_) => return Err(self.error("expected a value")),
        };
        Ok(Node { value, line, col })
    }

    fn enter(&mut self) -> Result<(), SyntaxError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error("nested more than 128 levels deep"));
        }
        Ok(())
    }

    /// A list or an object: its opening byte (at the cursor), items read
    /// by `item` separated by commas, then `close`.
    fn items<T>(
        &mut self,
        close: u8,
        unexpected: &'static str,
        mut item: impl FnMut(&mut Self) -> Result<T, SyntaxError>,
    ) -> Result<Vec<T>, SyntaxError> {
        self.enter()?;
        self.bump();
        let mut items = Vec::new();
        self.blank();
        if self.peek() == Some(close) {
            self.bump();
            self.depth -= 1;
            return Ok(items);
        }
        loop {
            self.blank();
            items.push(item(self)?);
            self.blank();
            match self.bump() {
                Some(b',') => continue,
                Some(c) if c == close => break,
                _ => return Err(self.error(unexpected)),
            }
        }
        self.depth -= 1;
        Ok(items)
    }

    fn array(&mut self) -> Result<Value, SyntaxError> {
        let items = self.items(b']', "expected ',' or ']' in a list", |p| p.value())?;
        Ok(Value::Array(items))
    }

    fn object(&mut self) -> Result<Value, SyntaxError> {
        let members = self.items(b'}', "expected ',' or '}' in an object", |p| p.member())?;
        Ok(Value::Object(members))
    }

    /// `"key": value` in an object.
    fn member(&mut self) -> Result<(Key, Node), SyntaxError> {
        if self.peek() != Some(b'"') {
            return Err(self.error("expected a key (a string in double quotes)"));
        }
        let (line, col) = (self.line, self.col);
        let name = self.string()?;
        self.blank();
        if self.bump() != Some(b':') {
            return Err(self.error("expected ':' after a key"));
        }
        self.blank();
        let value = self.value()?;
        Ok((Key { name, line, col }, value))
    }

    fn number(&mut self) -> Result<String, SyntaxError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.bump();
        }
        match self.peek() {
            Some(b'0') => {
                self.bump();
            }
            Some(b'1'..=b'9') => {
                while matches!(self.peek(), Some(b'0'..=b'9')) {
                    self.bump();
                }
            }
            _ => return Err(self.error("a number needs a digit")),
        }
        if self.peek() == Some(b'.') {
            self.bump();
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error("a number needs a digit after '.'"));
            }
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.bump();
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.bump();
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.bump();
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error("a number needs a digit in its exponent"));
            }
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.bump();
            }
        }
        // Only ASCII was read.
        Ok(String::from_utf8_lossy(&self.text[start..self.pos]).into_owned())
    }

    fn hex4(&mut self) -> Result<u32, SyntaxError> {
        let mut v = 0u32;
        for _ in 0..4 {
            let d = match self.bump() {
                Some(b @ b'0'..=b'9') => b - b'0',
                Some(b @ b'a'..=b'f') => b - b'a' + 10,
                Some(b @ b'A'..=b'F') => b - b'A' + 10,
                _ => return Err(self.error("expected four hex digits after \\u")),
            };
            v = v * 16 + u32::from(d);
        }
        Ok(v)
    }

    fn string(&mut self) -> Result<String, SyntaxError> {
        self.bump(); // the opening quote
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(b) = self.peek() else {
                return Err(self.error("a string is not closed"));
            };
            match b {
                b'"' => {
                    self.bump();
                    break;
                }
                b'\\' => {
                    self.bump();
                    let c = match self.bump() {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            let hi = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&hi) {
                                if self.bump() != Some(b'\\') || self.bump() != Some(b'u') {
                                    return Err(self.error("a lone surrogate in a \\u escape"));
                                }
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(self.error("a lone surrogate in a \\u escape"));
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else if (0xDC00..0xE000).contains(&hi) {
                                return Err(self.error("a lone surrogate in a \\u escape"));
                            } else {
                                hi
                            };
                            char::from_u32(code)
                                .ok_or_else(|| self.error("an invalid \\u escape"))?
                        }
                        _ => return Err(self.error("an invalid escape in a string")),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                0..=0x1F => return Err(self.error("a control character in a string")),
                _ => {
                    self.bump();
                    out.push(b);
                }
            }
        }
        String::from_utf8(out).map_err(|_| self.error("a string that is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Our tree as a serde_json value, to compare the two readers.
    fn to_serde(n: &Node) -> serde_json::Value {
        match &n.value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Number(s) => serde_json::from_str(s).unwrap(),
            Value::String(s) => serde_json::Value::String(s.clone()),
            Value::Array(a) => serde_json::Value::Array(a.iter().map(to_serde).collect()),
            Value::Object(m) => {
                let mut map = serde_json::Map::new();
                for (k, v) in m {
                    map.insert(k.name.clone(), to_serde(v));
                }
                serde_json::Value::Object(map)
            }
        }
    }

    #[test]
    fn places_values() {
        let n = parse(b"{\n  \"a\": [1, \"\xc3\xa9\", true],\n  \"b\": null\n}").unwrap();
        let a = n.get("a").unwrap();
        assert_eq!((a.line, a.col), (2, 8));
        let Value::Array(items) = &a.value else {
            panic!()
        };
        assert_eq!((items[2].line, items[2].col), (2, 17));
        assert_eq!(n.get("b").unwrap().value, Value::Null);
        let e = parse(b"{\"a\": 1,\n}").unwrap_err();
        assert_eq!((e.line, e.col), (2, 1));
        assert!(parse(&b"[".repeat(129)).is_err());
        assert!(parse(&[b"[".repeat(128), b"]".repeat(128)].concat()).is_ok());
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|n| serde_json::json!(n)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| serde_json::json!(f)),
            any::<String>().prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
                proptest::collection::vec((any::<String>(), inner), 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(crate::testing::proptest_config(2000))]

        /// Documents serde_json writes read back to the same value.
        #[test]
        fn reads_what_serde_writes(v in json_value(), pretty in any::<bool>()) {
            let text = if pretty {
                serde_json::to_string_pretty(&v).unwrap()
            } else {
                serde_json::to_string(&v).unwrap()
            };
            let ours = parse(text.as_bytes()).unwrap();
            // serde_json's own reading (its float parsing is not always
            // the exact inverse of its writing).
            let theirs: serde_json::Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(to_serde(&ours), theirs);
        }

        /// On any bytes (mutated documents among them), both readers agree
        /// on whether it is JSON, and on its value when it is.
        #[test]
        fn agrees_with_serde_on_any_input(
            v in json_value(),
            cuts in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
            raw in proptest::collection::vec(any::<u8>(), 0..40),
            use_raw in any::<bool>(),
        ) {
            let mut text = if use_raw { raw } else { serde_json::to_vec(&v).unwrap() };
            for (i, b) in cuts {
                if !text.is_empty() {
                    let at = i.index(text.len());
                    text[at] = b;
                }
            }
            let theirs: Result<serde_json::Value, _> = serde_json::from_slice(&text);
            let ours = parse(&text);
            match (theirs, ours) {
                (Ok(t), Ok(o)) => prop_assert_eq!(to_serde(&o), t),
                (Err(_), Err(_)) => {}
                (t, o) => prop_assert!(false, "serde {:?}, ours {:?} on {:?}", t.is_ok(), o.is_ok(), String::from_utf8_lossy(&text)),
            }
        }
    }
}
