//! The fast path of reading `model` from an OpenAI request body.
//!
//! Nearly all of a chat or embeddings body is the text inside strings (the
//! messages). serde_json skips a string 8 bytes at a time; under Wasm that
//! was about 2.8 instructions per body byte, two thirds of what a body cost
//! the filter (`make bench-instructions`). This scanner validates the same
//! JSON grammar but finds the end of a string 16 bytes at a time with Wasm
//! SIMD (a word at a time natively), and reads the four top-level fields the
//! filter needs on the way.
//!
//! It answers only what it is sure of: on anything outside the common shape
//! — an escape in a key or in `model`, a non-string `model`, a limit that is
//! not a plain integer, a field given twice, deep nesting, and every kind of
//! invalid JSON — it returns `None` and `openai::read_body` asks serde_json,
//! which then decides (and words the error). So whenever it answers, the
//! answer is serde_json's: the unit tests and the `model_body` fuzz target
//! compare the two on every input.

/// The top-level fields the gateway reads; `None` when absent or `null`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Fields<'a> {
    pub model: Option<&'a str>,
    pub max_tokens: Option<u64>,
    pub max_completion_tokens: Option<u64>,
    pub max_output_tokens: Option<u64>,
    /// `background` (the Responses API's): `Some` for `true` or `false`.
    pub background: Option<bool>,
}

const MODEL: &[u8] = b"model";
const BACKGROUND: &[u8] = b"background";
const LIMITS: [&[u8]; 3] = [
    b"max_tokens",
    b"max_completion_tokens",
    b"max_output_tokens",
];
/// Deeper bodies go to serde_json (OpenAI bodies nest a few levels).
const MAX_DEPTH: usize = 64;

/// The fields of a body that is one JSON object, or `None` to leave the body
/// to serde_json.
pub fn scan(body: &[u8]) -> Option<Fields<'_>> {
    let mut s = Scanner { bytes: body, at: 0 };
    let mut fields = Fields::default();
    // model, max_tokens, max_completion_tokens, max_output_tokens,
    // background.
    let mut seen = [false; 5];
    s.whitespace();
    s.expect(b'{')?;
    s.whitespace();
    if s.peek() == Some(b'}') {
        s.at += 1;
    } else {
        loop {
            s.whitespace();
            let key = s.plain_string()?;
            s.whitespace();
            s.expect(b':')?;
            s.whitespace();
            if key.as_bytes() == MODEL {
                if std::mem::replace(&mut seen[0], true) {
                    return None;
                }
                if !s.null() {
                    fields.model = Some(s.plain_string()?);
                }
            } else if key.as_bytes() == BACKGROUND {
                if std::mem::replace(&mut seen[4], true) {
                    return None;
                }
                if s.literal(b"true").is_some() {
                    fields.background = Some(true);
                } else if s.literal(b"false").is_some() {
                    fields.background = Some(false);
                } else if !s.null() {
                    // Anything else: serde_json decides.
                    return None;
                }
            } else if let Some(n) = LIMITS.iter().position(|l| *l == key.as_bytes()) {
                if std::mem::replace(seen.get_mut(n + 1)?, true) {
                    return None;
                }
                if !s.null() {
                    let count = Some(s.count()?);
                    match n {
                        0 => fields.max_tokens = count,
                        1 => fields.max_completion_tokens = count,
                        _ => fields.max_output_tokens = count,
                    }
                }
            } else {
                s.value(1)?;
            }
            s.whitespace();
            match s.next()? {
                b',' => {}
                b'}' => break,
                _ => return None,
            }
        }
    }
    s.whitespace();
    (s.at == body.len()).then_some(fields)
}

/// A validating JSON reader over a byte slice, shared with the MCP
/// message reader (`mcp::rpc`): every method answers `None` on anything it
/// is not sure of.
pub(crate) struct Scanner<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) at: usize,
}

impl<'a> Scanner<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Scanner { bytes, at: 0 }
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    pub(crate) fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.at += 1;
        Some(byte)
    }

    pub(crate) fn expect(&mut self, byte: u8) -> Option<()> {
        (self.next()? == byte).then_some(())
    }

    /// JSON's whitespace: space, tab, line feed, carriage return.
    pub(crate) fn whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    pub(crate) fn null(&mut self) -> bool {
        self.literal(b"null").is_some()
    }

    pub(crate) fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at.checked_add(word.len())?;
        (self.bytes.get(self.at..end)? == word).then(|| self.at = end)
    }

    /// A string with no escape, valid UTF-8 (a key or `model`).
    pub(crate) fn plain_string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let rest = self.bytes.get(self.at..)?;
        let len = find_special(rest)?;
        let (text, end) = rest.split_at(len);
        if end.first() != Some(&b'"') {
            return None;
        }
        self.at += len + 1;
        std::str::from_utf8(text).ok()
    }

    /// A non-negative integer that fits `u64`, without fraction or exponent.
    fn count(&mut self) -> Option<u64> {
        let start = self.at;
        let mut value: u64 = 0;
        while let Some(digit @ b'0'..=b'9') = self.peek() {
            value = value
                .checked_mul(10)?
                .checked_add(u64::from(digit - b'0'))?;
            self.at += 1;
        }
        let digits = self.at - start;
        let leading_zero = digits > 1 && self.bytes.get(start) == Some(&b'0');
        if digits == 0 || leading_zero || matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        Some(value)
    }

    /// Skips one JSON value, validating it as serde_json does when it
    /// ignores a value.
    pub(crate) fn value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => {
                self.at += 1;
                self.skip_string()
            }
            b'{' => self.container(depth, b'}', true),
            b'[' => self.container(depth, b']', false),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// An object (members `"key": value`) or an array, from its opening byte.
    fn container(&mut self, depth: usize, close: u8, members: bool) -> Option<()> {
        if depth >= MAX_DEPTH {
            return None;
        }
        self.at += 1;
        self.whitespace();
        if self.peek() == Some(close) {
            self.at += 1;
            return Some(());
        }
        loop {
            self.whitespace();
            if members {
                self.expect(b'"')?;
                self.skip_string()?;
                self.whitespace();
                self.expect(b':')?;
                self.whitespace();
            }
            self.value(depth + 1)?;
            self.whitespace();
            match self.next()? {
                b',' => {}
                byte if byte == close => return Some(()),
                _ => return None,
            }
        }
    }

    /// The rest of a string after its opening quote: escapes as JSON allows
    /// them, no control characters. Other bytes are not checked as UTF-8,
    /// as serde_json does not check the strings it skips.
    pub(crate) fn skip_string(&mut self) -> Option<()> {
        loop {
            self.at += find_special(self.bytes.get(self.at..)?)?;
            match self.next()? {
                b'"' => return Some(()),
                b'\\' => match self.next()? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                    b'u' => {
                        let end = self.at.checked_add(4)?;
                        if !self
                            .bytes
                            .get(self.at..end)?
                            .iter()
                            .all(u8::is_ascii_hexdigit)
                        {
                            return None;
                        }
                        self.at = end;
                    }
                    _ => return None,
                },
                _ => return None,
            }
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    pub(crate) fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.next()? {
            b'0' if matches!(self.peek(), Some(b'0'..=b'9')) => return None,
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.one_or_more_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            self.one_or_more_digits()?;
        }
        Some(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
    }

    fn one_or_more_digits(&mut self) -> Option<()> {
        let start = self.at;
        self.digits();
        (self.at > start).then_some(())
    }
}

/// Bytes that end the plain run of a string: `"`, `\` and control characters.
fn is_special(byte: u8) -> bool {
    byte == b'"' || byte == b'\\' || byte < 0x20
}

/// Where the first special byte is, with Wasm SIMD: 64 bytes per step
/// while none is special, then 16 to find it.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn find_special(bytes: &[u8]) -> Option<usize> {
    use core::arch::wasm32::{u8x16_bitmask, v128_any_true, v128_or};
    let mut at = 0;
    while at + 64 <= bytes.len() {
        // SAFETY: at + 64 <= bytes.len(): each block read is inside `bytes`.
        let any = unsafe {
            v128_or(
                v128_or(special_lanes(bytes, at), special_lanes(bytes, at + 16)),
                v128_or(special_lanes(bytes, at + 32), special_lanes(bytes, at + 48)),
            )
        };
        if v128_any_true(any) {
            break;
        }
        at += 64;
    }
    while at + 16 <= bytes.len() {
        // SAFETY: at + 16 <= bytes.len().
        let mask = u8x16_bitmask(unsafe { special_lanes(bytes, at) });
        if mask != 0 {
            return Some(at + mask.trailing_zeros() as usize);
        }
        at += 16;
    }
    let tail = bytes.get(at..)?;
    tail.iter().position(|&b| is_special(b)).map(|p| at + p)
}

/// The lanes of the 16 bytes at `at` that are special, all ones.
///
/// # Safety
/// `at + 16 <= bytes.len()` (v128_load has no alignment requirement).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
unsafe fn special_lanes(bytes: &[u8], at: usize) -> core::arch::wasm32::v128 {
    use core::arch::wasm32::{u8x16_eq, u8x16_le, u8x16_splat, v128, v128_load, v128_or};
    let block = v128_load(bytes.as_ptr().add(at).cast::<v128>());
    v128_or(
        v128_or(
            u8x16_eq(block, u8x16_splat(b'"')),
            u8x16_eq(block, u8x16_splat(b'\\')),
        ),
        u8x16_le(block, u8x16_splat(0x1f)),
    )
}

/// Where the first special byte is, a word (8 bytes) per step: a word with
/// a special byte is then searched byte by byte.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn find_special(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::MAX / 255;
    const HIGH_BITS: u64 = ONES << 7;
    let mut at = 0;
    for chunk in bytes.chunks_exact(8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        // Each term has a byte's high bit set only if some byte of the word
        // is below 0x20, a quote or a backslash (Mycroft's zero-byte test).
        let control = x.wrapping_sub(ONES * 0x20) & !x;
        let quote =
            (x ^ (ONES * u64::from(b'"'))).wrapping_sub(ONES) & !(x ^ (ONES * u64::from(b'"')));
        let backslash =
            (x ^ (ONES * u64::from(b'\\'))).wrapping_sub(ONES) & !(x ^ (ONES * u64::from(b'\\')));
        if (control | quote | backslash) & HIGH_BITS != 0 {
            break;
        }
        at += 8;
    }
    let tail = bytes.get(at..)?;
    tail.iter().position(|&b| is_special(b)).map(|p| at + p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(body: &str) -> Option<Fields<'_>> {
        scan(body.as_bytes())
    }

    #[test]
    fn reads_the_fields_of_a_chat_body() {
        let body = r#"{"model": "gpt-demo", "messages": [{"role": "user", "content": "hi \"there\" \u00e9\n"}],
                       "temperature": 0.7, "max_tokens": 100, "stream": true, "stop": null, "n": -1e-3}"#;
        assert_eq!(
            fields(body),
            Some(Fields {
                model: Some("gpt-demo"),
                max_tokens: Some(100),
                ..Fields::default()
            })
        );
    }

    #[test]
    fn finds_special_bytes_at_every_offset() {
        for len in 0..150 {
            for special in [b'"', b'\\', 0x1f, 0] {
                for at in 0..len {
                    let mut bytes = vec![b'x'; len];
                    bytes[at] = special;
                    assert_eq!(find_special(&bytes), Some(at), "len {len} at {at}");
                }
            }
            let plain: Vec<u8> = (0..len)
                .map(|i| 0x20 + (i % 200) as u8)
                .filter(|b| !is_special(*b))
                .collect();
            assert_eq!(find_special(&plain), None);
        }
        // Bytes above 0x7f are not control characters.
        assert_eq!(find_special(&[0xff; 20]), None);
    }

    #[test]
    fn leaves_what_it_is_not_sure_of_to_serde_json() {
        for body in [
            r#"{"mod\u0065l": "x"}"#,
            r#"{"model": "a\"b"}"#,
            r#"{"model": 5}"#,
            r#"{"model": "x", "model": "y"}"#,
            r#"{"max_tokens": 1, "max_tokens": 2}"#,
            r#"{"max_tokens": 1.5}"#,
            r#"{"max_tokens": -1}"#,
            r#"{"max_tokens": 01}"#,
            r#"{"max_tokens": 99999999999999999999}"#,
            r#"{"max_tokens": "100"}"#,
            r#"{"a": [1,]}"#,
            r#"{"a": 01}"#,
            r#"{"a": 1.}"#,
            r#"{"a": "\x"}"#,
            r#"{"a": "\u12g4"}"#,
            "{\"a\": \"tab\there\"}",
            r#"{"a": tru}"#,
            r#"{"a": 1} x"#,
            r#"{"a": 1"#,
            r#"["model"]"#,
            " \u{c}{}",
        ] {
            assert_eq!(fields(body), None, "{body}");
        }
        let deep = format!(
            "{{\"a\": {}{}}}",
            "[".repeat(MAX_DEPTH),
            "]".repeat(MAX_DEPTH)
        );
        assert_eq!(fields(&deep), None);
    }

    #[test]
    fn nulls_and_absent_fields_read_as_none() {
        assert_eq!(fields("{}"), Some(Fields::default()));
        assert_eq!(
            fields(r#" { "model" : null , "max_output_tokens": 7 } "#),
            Some(Fields {
                max_output_tokens: Some(7),
                ..Fields::default()
            })
        );
    }
}
