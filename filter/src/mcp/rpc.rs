//! The JSON-RPC message of an MCP request, read from its POST body the way
//! the MCP server will read it: `method`, the `id` (to answer with), and
//! for `tools/call` the tool, `params.name`.
//!
//! The fast path is the validating scanner of the OpenAI body
//! ([`crate::json_scan`]): one pass that builds nothing but the method, the
//! name and the id's text, whatever the size of the tool's arguments. It
//! answers only what it is sure of (plain strings, an integer or plain
//! string id, each member once); anything else (escapes, odd ids, invalid
//! JSON) goes to serde_json, which decides. The unit tests and the
//! `mcp_message` fuzz target compare the two on every input.
//!
//! A member the filter reads given twice (`method`, `id`, `params`,
//! `params.name`) is refused rather than read one way: Python's `json`
//! takes the last, other parsers the first, and a gateway that read the
//! other one could be steered past its rules.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::json_scan::Scanner;

/// What a POST body to an MCP server holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A request (`id` set) or a notification (`id` absent).
    Call {
        /// The id as JSON text (`7`, `"abc"`, `null`), to answer with.
        id: Option<String>,
        method: String,
        /// `params.name`, read for every method (`tools/call` needs it).
        name: Name,
    },
    /// A client's answer to a server request: `result` or `error`, no
    /// `method`.
    Response,
    /// A JSON array: a JSON-RPC batch.
    Batch,
    Invalid(Invalid),
}

/// `params.name` of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Name {
    Absent,
    Text(String),
    /// Present but not a string (or `params` is not an object and so has
    /// no name at all: that is `Absent`).
    NotAString,
}

/// Why a body is no JSON-RPC message the filter can judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// Not JSON at all (JSON-RPC's parse error).
    NotJson,
    /// JSON, but neither an object nor an array.
    NotAnObject,
    /// A member the filter reads is given twice.
    Duplicate(&'static str),
    MethodNotAString,
    /// An `id` that is no string, number or null.
    BadId,
    /// An object with no `method`, `result` or `error`.
    NoMethod,
}

impl Message {
    /// The tool a `tools/call` names.
    pub fn tool(&self) -> Option<&str> {
        match self {
            Message::Call {
                method,
                name: Name::Text(name),
                ..
            } if method == TOOLS_CALL => Some(name),
            _ => None,
        }
    }

    /// The id to answer with (`null` when there is none).
    pub fn id(&self) -> &str {
        match self {
            Message::Call { id: Some(id), .. } => id,
            _ => "null",
        }
    }
}

pub const TOOLS_CALL: &str = "tools/call";
pub const TOOLS_LIST: &str = "tools/list";

/// Reads the message of a POST body: the fast scanner where it is sure,
/// else serde_json (the same answer).
pub fn read(body: &[u8]) -> Message {
    scan(body).unwrap_or_else(|| read_with_serde(body))
}

/// Members given at most once: `id`, `method`, `params`.
#[derive(Default)]
struct Seen {
    id: bool,
    method: bool,
    params: bool,
    answer: bool,
}

fn scan(body: &[u8]) -> Option<Message> {
    let mut s = Scanner::new(body);
    s.whitespace();
    match s.peek()? {
        b'{' => {}
        b'[' => {
            s.value(0)?;
            return end(&mut s).then_some(Message::Batch);
        }
        _ => return None,
    }
    s.at += 1;
    let mut seen = Seen::default();
    let mut id = None;
    let mut method = None;
    let mut name = Name::Absent;
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
            match key {
                "id" => {
                    once(&mut seen.id)?;
                    id = Some(plain_id(&mut s)?);
                }
                "method" => {
                    once(&mut seen.method)?;
                    method = Some(s.plain_string()?.to_string());
                }
                "params" => {
                    once(&mut seen.params)?;
                    // Other `params` (arrays, strings: no MCP method takes
                    // them) go to serde_json, which reads them as a value.
                    if s.peek() != Some(b'{') {
                        return None;
                    }
                    name = scan_params(&mut s)?;
                }
                "result" | "error" => {
                    seen.answer = true;
                    s.value(1)?;
                }
                _ => s.value(1)?,
            }
            s.whitespace();
            match s.next()? {
                b',' => {}
                b'}' => break,
                _ => return None,
            }
        }
    }
    if !end(&mut s) {
        return None;
    }
    Some(match method {
        Some(method) => Message::Call { id, method, name },
        None if seen.answer => Message::Response,
        None => Message::Invalid(Invalid::NoMethod),
    })
}

/// The first sighting of a member; a second one goes to serde_json, which
/// names it.
fn once(seen: &mut bool) -> Option<()> {
    (!std::mem::replace(seen, true)).then_some(())
}

fn end(s: &mut Scanner<'_>) -> bool {
    s.whitespace();
    s.at == s.bytes.len()
}

/// An id the scanner is sure of: a string, an integer or `null`, as text.
fn plain_id(s: &mut Scanner<'_>) -> Option<String> {
    let start = s.at;
    match s.peek()? {
        b'"' => {
            s.at += 1;
            s.skip_string()?;
        }
        b'n' => s.literal(b"null")?,
        b'-' | b'0'..=b'9' => {
            s.number()?;
            let text = s.bytes.get(start..s.at)?;
            // An integer serde_json reads as one (no fraction, exponent or
            // digits past a 64-bit integer's).
            if text.len() > 19 || text.iter().any(|b| matches!(b, b'.' | b'e' | b'E')) {
                return None;
            }
        }
        _ => return None,
    }
    let text = s.bytes.get(start..s.at)?;
    std::str::from_utf8(text).ok().map(str::to_string)
}

/// `params` as an object: its `name` if it is a plain string.
fn scan_params(s: &mut Scanner<'_>) -> Option<Name> {
    s.at += 1;
    let mut name = Name::Absent;
    s.whitespace();
    if s.peek() == Some(b'}') {
        s.at += 1;
        return Some(name);
    }
    loop {
        s.whitespace();
        let key = s.plain_string()?;
        s.whitespace();
        s.expect(b':')?;
        s.whitespace();
        if key == "name" {
            if name != Name::Absent {
                return None;
            }
            name = Name::Text(s.plain_string()?.to_string());
        } else {
            s.value(2)?;
        }
        s.whitespace();
        match s.next()? {
            b',' => {}
            b'}' => return Some(name),
            _ => return None,
        }
    }
}

/// `read` by serde_json alone: the reference the scanner is compared with
/// (unit tests, the `mcp_message` fuzz target).
#[doc(hidden)]
pub fn read_with_serde(body: &[u8]) -> Message {
    let mut de = serde_json::Deserializer::from_slice(body);
    let message = match de.deserialize_any(TopVisitor) {
        Ok(m) => m,
        Err(_) => return Message::Invalid(Invalid::NotJson),
    };
    if de.end().is_err() {
        return Message::Invalid(Invalid::NotJson);
    }
    message
}

struct TopVisitor;

impl<'de> Visitor<'de> for TopVisitor {
    type Value = Message;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Message, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Message::Batch)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Message, A::Error> {
        let mut seen = Seen::default();
        let mut duplicate = None;
        let mut id = None;
        let mut method = None;
        let mut name = Name::Absent;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "id" => {
                    let value: Value = map.next_value()?;
                    if std::mem::replace(&mut seen.id, true) {
                        duplicate.get_or_insert("id");
                    }
                    id = Some(value);
                }
                "method" => {
                    let value: Value = map.next_value()?;
                    if std::mem::replace(&mut seen.method, true) {
                        duplicate.get_or_insert("method");
                    }
                    method = Some(value);
                }
                "params" => {
                    let params = map.next_value_seed(ParamsSeed)?;
                    if std::mem::replace(&mut seen.params, true) {
                        duplicate.get_or_insert("params");
                    }
                    match params {
                        Ok(n) => name = n,
                        Err(()) => {
                            duplicate.get_or_insert("params.name");
                        }
                    }
                }
                "result" | "error" => {
                    seen.answer = true;
                    map.next_value::<IgnoredAny>()?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if let Some(member) = duplicate {
            return Ok(Message::Invalid(Invalid::Duplicate(member)));
        }
        let id = match id {
            None => None,
            Some(v @ (Value::String(_) | Value::Number(_) | Value::Null)) => Some(v.to_string()),
            Some(_) => return Ok(Message::Invalid(Invalid::BadId)),
        };
        Ok(match method {
            Some(Value::String(method)) => Message::Call { id, method, name },
            Some(_) => Message::Invalid(Invalid::MethodNotAString),
            None if seen.answer => Message::Response,
            None => Message::Invalid(Invalid::NoMethod),
        })
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Message, E> {
        Ok(Message::Invalid(Invalid::NotAnObject))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Message, E> {
        Ok(Message::Invalid(Invalid::NotAnObject))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Message, E> {
        Ok(Message::Invalid(Invalid::NotAnObject))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Message, E> {
        Ok(Message::Invalid(Invalid::NotAnObject))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Message, E> {
        Ok(Message::Invalid(Invalid::NotAnObject))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Message, E> {
        Ok(Message::Invalid(Invalid::NotAnObject))
    }
}

/// `params`: an object's `name` (`Err` when given twice), or nothing.
struct ParamsSeed;

impl<'de> DeserializeSeed<'de> for ParamsSeed {
    type Value = Result<Name, ()>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ParamsSeed {
    type Value = Result<Name, ()>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut name = Name::Absent;
        let mut twice = false;
        while let Some(key) = map.next_key::<String>()? {
            if key == "name" {
                let value: Value = map.next_value()?;
                twice |= name != Name::Absent;
                name = match value {
                    Value::String(s) => Name::Text(s),
                    _ => Name::NotAString,
                };
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(if twice { Err(()) } else { Ok(name) })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Ok(Name::Absent))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Ok(Name::Absent))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Ok(Name::Absent))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Ok(Name::Absent))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Ok(Name::Absent))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Ok(Name::Absent))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Ok(Name::Absent))
    }
}

/// Whether the scanner and serde_json read `body` alike (ids compared as
/// JSON values: the scanner keeps the text as sent). For tests and fuzzing.
#[doc(hidden)]
pub fn readers_agree(body: &[u8]) -> Result<(), String> {
    let reference = read_with_serde(body);
    let Some(fast) = scan(body) else {
        return Ok(());
    };
    let same = match (&fast, &reference) {
        (
            Message::Call {
                id: a,
                method: m,
                name: n,
            },
            Message::Call {
                id: b,
                method: m2,
                name: n2,
            },
        ) => {
            let value =
                |id: &Option<String>| id.as_deref().map(|t| serde_json::from_str::<Value>(t).ok());
            value(a) == value(b) && m == m2 && n == n2
        }
        (a, b) => a == b,
    };
    if same {
        Ok(())
    } else {
        Err(format!("scanner {fast:?} != serde_json {reference:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: Option<&str>, method: &str, name: Name) -> Message {
        Message::Call {
            id: id.map(str::to_string),
            method: method.to_string(),
            name,
        }
    }

    fn text(name: &str) -> Name {
        Name::Text(name.to_string())
    }

    #[test]
    fn reads_a_tool_call_and_others() {
        for (body, want) in [
            (
                r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"search","arguments":{"q":"x","name":"not this"}}}"#,
                call(Some("7"), TOOLS_CALL, text("search")),
            ),
            (
                r#" {"params": {"_meta": {"name": 1}, "name": "fetch"}, "method": "tools/call", "id": "a-1"} "#,
                call(Some("\"a-1\""), TOOLS_CALL, text("fetch")),
            ),
            (
                r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
                call(None, "notifications/initialized", Name::Absent),
            ),
            (
                r#"{"jsonrpc":"2.0","id":null,"method":"ping","params":[1,2]}"#,
                call(Some("null"), "ping", Name::Absent),
            ),
            (r#"{"jsonrpc":"2.0","id":3,"result":{}}"#, Message::Response),
            (
                r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"}]"#,
                Message::Batch,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1}"#,
                Message::Invalid(Invalid::NoMethod),
            ),
            (
                r#"{"id":1,"method":5}"#,
                Message::Invalid(Invalid::MethodNotAString),
            ),
            (
                r#"{"id":{},"method":"x"}"#,
                Message::Invalid(Invalid::BadId),
            ),
            (r#""tools/call""#, Message::Invalid(Invalid::NotAnObject)),
            (
                r#"{"method":"tools/call""#,
                Message::Invalid(Invalid::NotJson),
            ),
            ("", Message::Invalid(Invalid::NotJson)),
        ] {
            assert_eq!(read(body.as_bytes()), want, "{body}");
            readers_agree(body.as_bytes()).unwrap();
        }
    }

    #[test]
    fn members_read_twice_are_refused() {
        for (body, member) in [
            (
                r#"{"id":1,"method":"tools/list","method":"tools/call"}"#,
                "method",
            ),
            (r#"{"id":1,"id":2,"method":"x"}"#, "id"),
            (
                r#"{"id":1,"method":"tools/call","params":{"name":"a"},"params":{"name":"b"}}"#,
                "params",
            ),
            (
                r#"{"id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#,
                "params.name",
            ),
        ] {
            assert_eq!(
                read(body.as_bytes()),
                Message::Invalid(Invalid::Duplicate(member)),
                "{body}"
            );
        }
    }

    #[test]
    fn escapes_are_read_as_the_server_reads_them() {
        let body =
            r#"{"id":"\u0031","method":"tools\/call","params":{"na\u006de":"fetch_\u0073ecrets"}}"#;
        assert_eq!(scan(body.as_bytes()), None, "left to serde_json");
        assert_eq!(
            read(body.as_bytes()),
            call(Some("\"1\""), TOOLS_CALL, text("fetch_secrets"))
        );
        let m = read(br#"{"id":1e2,"method":"tools/call","params":{"name":7}}"#);
        assert_eq!(m, call(Some("100.0"), TOOLS_CALL, Name::NotAString));
        assert_eq!(m.tool(), None);
    }

    #[test]
    fn large_arguments_cost_a_scan() {
        let big = "x".repeat(1 << 20);
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"arguments":{{"blob":"{big}"}},"name":"upload"}}}}"#
        );
        let m = scan(body.as_bytes()).unwrap();
        assert_eq!(m.tool(), Some("upload"));
        assert_eq!(m.id(), "1");
    }

    #[test]
    fn scanner_and_serde_agree_on_odd_inputs() {
        for body in [
            r#"{"id":-0,"method":"a"}"#,
            r#"{"id":01,"method":"a"}"#,
            r#"{"id":1,"method":"a","params":{"name":"x"},"x":[1,]}"#,
            r#"{"id":"\x","method":"a"}"#,
            r#"{"id":99999999999999999999999,"method":"a"}"#,
            "{\"method\":\"a\u{0}\"}",
            r#"{"method":"tools/call","params":{"name":null}}"#,
            r#"{"result":1,"result":2}"#,
            r#"[1,"#,
            r#"{} "#,
            " \u{c}{}",
        ] {
            readers_agree(body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e}"));
        }
    }
}
