//! What the filter does with one JSON-RPC message to an MCP entry that has
//! tool rules: forward it (counting and limiting a tool call, filtering a
//! tool list's answer) or answer it as an MCP server would.
//!
//! Answers follow the official SDK's servers: a tool not allowed is the
//! unknown-tool error (HTTP 200, JSON-RPC `-32602`, `Unknown tool: NAME`,
//! the request's id), as the MCP specification words it; `Mcp-Method` /
//! `Mcp-Name` headers that disagree with the body are the 2026-07-28
//! header-mismatch error (HTTP 400, `-32020`); a body that is no JSON is a
//! parse error (400, `-32700`); a batch or a message the filter cannot
//! judge is an invalid request (400, `-32600`).

use serde_json::{json, Value};

use super::rpc::{Invalid, Message, Name, TOOLS_CALL, TOOLS_LIST};
use super::rules::{ToolBucket, ToolRules};
use crate::reply::{LimitStatus, LocalReply};

/// JSON-RPC and MCP error codes.
pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const INVALID_PARAMS: i64 = -32602;
/// MCP 2026-07-28: headers disagree with the body.
pub const HEADER_MISMATCH: i64 = -32020;
/// Implementation-defined server error: a tool over its limit.
pub const RATE_LIMITED: i64 = -32000;

/// The largest body the filter reads for a tool rule: Envoy's default
/// buffer limit (`per_connection_buffer_limit_bytes`, 1 MiB), past which
/// Envoy answers 413 itself.
pub const MAX_BODY_BYTES: u64 = 1024 * 1024;

/// The `Mcp-Method` and `Mcp-Name` headers of a request, as sent.
#[derive(Debug, Default, Clone, Copy)]
pub struct McpHeaders<'a> {
    pub method: Option<&'a str>,
    pub name: Option<&'a str>,
}

/// A `tools/call` on its way to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub name: String,
    /// Stat label index ([`ToolRules::labels`]).
    pub label: usize,
    /// The limit it draws from, and its bucket there.
    pub limit: Option<(usize, ToolBucket)>,
}

/// Why a message was answered by the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A tool not allowed (counted per tool).
    ToolDenied {
        label: usize,
    },
    HeaderMismatch,
    Batch,
    Invalid,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Forward {
        call: Option<ToolCall>,
        /// A `tools/list`: its answer is filtered.
        list: bool,
    },
    Refuse {
        reply: LocalReply,
        why: Refusal,
    },
}

/// Judges one message.
pub fn judge(rules: &ToolRules, message: &Message, headers: McpHeaders<'_>) -> Verdict {
    let (method, name) = match message {
        Message::Call { method, name, .. } => (method.as_str(), name),
        Message::Response => return forward(None, false),
        Message::Batch => {
            return Verdict::Refuse {
                reply: batch_refused(),
                why: Refusal::Batch,
            }
        }
        Message::Invalid(Invalid::NotJson) => {
            return refuse(400, "null", PARSE_ERROR, "Parse error", Refusal::Invalid)
        }
        Message::Invalid(why) => {
            let message = match why {
                Invalid::Duplicate(member) => {
                    format!("Invalid Request: {member} is given twice")
                }
                _ => "Invalid Request: the body must be a single JSON-RPC request, notification or response object".to_string(),
            };
            return refuse(400, "null", INVALID_REQUEST, &message, Refusal::Invalid);
        }
    };
    let id = message.id();
    if headers.method.is_some_and(|h| h != method) {
        return refuse(
            400,
            id,
            HEADER_MISMATCH,
            "mcp-method header does not match the request body's method",
            Refusal::HeaderMismatch,
        );
    }
    if method != TOOLS_CALL {
        return forward(None, method == TOOLS_LIST);
    }
    let Name::Text(tool) = name else {
        return refuse(
            200,
            id,
            INVALID_PARAMS,
            "Invalid params: tools/call needs params.name, a string",
            Refusal::Invalid,
        );
    };
    let header_checked = headers.method.is_some() || headers.name.is_some();
    if header_checked && headers.name.and_then(decode_header_value).as_deref() != Some(tool) {
        return refuse(
            400,
            id,
            HEADER_MISMATCH,
            "mcp-name header does not match the request body's 'name' parameter",
            Refusal::HeaderMismatch,
        );
    }
    let label = rules.label(tool);
    if !rules.allows(tool) {
        return refuse(
            200,
            id,
            INVALID_PARAMS,
            &format!("Unknown tool: {tool}"),
            Refusal::ToolDenied { label },
        );
    }
    let limit = rules.limit_for(tool).map(|(i, _, bucket)| (i, bucket));
    forward(
        Some(ToolCall {
            name: tool.clone(),
            label,
            limit,
        }),
        false,
    )
}

fn forward(call: Option<ToolCall>, list: bool) -> Verdict {
    Verdict::Forward { call, list }
}

fn refuse(status: u32, id: &str, code: i64, message: &str, why: Refusal) -> Verdict {
    Verdict::Refuse {
        reply: rpc_error(status, id, code, message),
        why,
    }
}

/// A JSON-RPC error answer; `id` is the request's id as JSON text.
pub fn rpc_error(status: u32, id: &str, code: i64, message: &str) -> LocalReply {
    let id: Value = serde_json::from_str(id).unwrap_or(Value::Null);
    let body = json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } });
    LocalReply::json(status, body.to_string())
}

/// The answer to a call of a tool the client may not use: what the MCP
/// specification gives for an unknown tool (the call is never forwarded).
pub fn unknown_tool(id: &str, tool: &str) -> LocalReply {
    rpc_error(200, id, INVALID_PARAMS, &format!("Unknown tool: {tool}"))
}

/// The answer to a JSON-RPC batch on an entry with tool rules.
pub fn batch_refused() -> LocalReply {
    rpc_error(
        400,
        "null",
        INVALID_REQUEST,
        "Invalid Request: JSON-RPC batches are not accepted here (tool rules judge one message at a time)",
    )
}

/// The answer to a body judged from metadata that starts with more
/// whitespace than the batch watch reads.
pub fn padded_refused() -> LocalReply {
    rpc_error(
        400,
        "null",
        INVALID_REQUEST,
        &format!(
            "Invalid Request: more than {} bytes of whitespace before the message",
            super::batch::MAX_LEADING_WHITESPACE
        ),
    )
}

/// A tool over its limit: 429 with `retry-after` and `x-ratelimit-*`, and a
/// JSON-RPC error body for the client's JSON-RPC layer.
pub fn limited(id: &str, tool: &str, status: &LimitStatus) -> LocalReply {
    let mut reply = rpc_error(
        429,
        id,
        RATE_LIMITED,
        &format!("Rate limit exceeded for tool {tool}: retry later"),
    );
    reply
        .headers
        .push(("retry-after", status.retry_after_secs.max(1).to_string()));
    reply.headers.extend(status.headers());
    reply
}

/// What the request head already rules out before its body is read: a
/// compressed body (the filter cannot read it), one over the bound.
pub fn check_head(
    content_encoding: Option<&str>,
    content_length: Option<u64>,
) -> Result<(), LocalReply> {
    let encoded = content_encoding
        .map(str::trim)
        .is_some_and(|e| !e.is_empty() && !e.eq_ignore_ascii_case("identity"));
    if encoded {
        let mut reply = rpc_error(
            415,
            "null",
            INVALID_REQUEST,
            "Invalid Request: the gateway's tool rules cannot read a compressed body",
        );
        reply
            .headers
            .push(("accept-encoding", "identity".to_string()));
        return Err(reply);
    }
    if content_length.is_some_and(|l| l > MAX_BODY_BYTES) {
        return Err(too_large());
    }
    Ok(())
}

pub fn too_large() -> LocalReply {
    rpc_error(
        413,
        "null",
        INVALID_REQUEST,
        &format!("Invalid Request: a message to a server with tool rules is at most {MAX_BODY_BYTES} bytes"),
    )
}

/// `Mcp-Name` as the SDK decodes it: `=?base64?…?=` is base64 of UTF-8
/// (canonical only), anything else the value itself.
pub fn decode_header_value(value: &str) -> Option<String> {
    let Some(payload) = value
        .strip_prefix("=?base64?")
        .and_then(|v| v.strip_suffix("?="))
    else {
        return Some(value.to_string());
    };
    let bytes = base64_decode(payload)?;
    String::from_utf8(bytes).ok()
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding, canonical only (what re-encodes to the
/// same text), as the SDK accepts.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if bytes.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (n, quad) in bytes.chunks_exact(4).enumerate() {
        let last = n + 1 == bytes.len() / 4;
        let pad = quad.iter().rev().take_while(|&&b| b == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut word = 0u32;
        for &b in quad.get(..4 - pad)? {
            let v = BASE64.iter().position(|&c| c == b)? as u32;
            word = word << 6 | v;
        }
        word <<= 6 * pad as u32;
        let three = word.to_be_bytes();
        out.extend_from_slice(three.get(1..4 - pad)?);
    }
    // Canonical: the bits padding leaves out are zero.
    (base64_encode(&out) == text).then_some(out)
}

fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let mut word = 0u32;
        for (i, b) in chunk.iter().enumerate() {
            word |= u32::from(*b) << (16 - 8 * i);
        }
        for i in 0..4 {
            if i <= chunk.len() {
                let index = (word >> (18 - 6 * i)) & 63;
                out.push(char::from(*BASE64.get(index as usize).unwrap_or(&b'A')));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The message as `json_to_metadata` wrote it (`openai.model_from:
/// "metadata"`, the rules the shipped configurations carry): `read(key)`
/// is the value under the filter's metadata namespace. `mcp_id` is the id
/// as a protobuf value (a number arrives as the 8 bytes of a double),
/// `mcp_id_text` the same id as text, so that a string id and a number id
/// stay apart; `mcp_jsonrpc` says the body was an object with `jsonrpc`.
pub fn message_from_metadata(read: &dyn Fn(&str) -> Option<Vec<u8>>) -> Message {
    if read("mcp_error").is_some() {
        return Message::Invalid(Invalid::NotJson);
    }
    let Some(method) = read("mcp_method") else {
        return if read("mcp_answer").is_some() {
            Message::Response
        } else {
            // An array, another JSON value, an empty body, or no metadata at
            // all (content-type not JSON, json_to_metadata missing).
            Message::Invalid(Invalid::NotAnObject)
        };
    };
    let Some(method) = text(method) else {
        return Message::Invalid(Invalid::MethodNotAString);
    };
    let name = match read("mcp_tool").map(text) {
        None => Name::Absent,
        Some(Some(name)) => Name::Text(name),
        Some(None) => Name::NotAString,
    };
    let id = match (read("mcp_id"), read("mcp_id_text")) {
        (Some(raw), Some(t)) if raw == t => {
            Some(Value::String(text(t).unwrap_or_default()).to_string())
        }
        (Some(raw), _) if raw.len() == 8 => {
            let mut word = [0u8; 8];
            word.copy_from_slice(&raw);
            let n = f64::from_le_bytes(word);
            Some(if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 {
                format!("{}", n as i64)
            } else {
                serde_json::Number::from_f64(n).map_or("null".to_string(), |n| n.to_string())
            })
        }
        (Some(raw), None) => text(raw).map(|t| Value::String(t).to_string()),
        (_, Some(t)) => text(t).map(|t| Value::String(t).to_string()),
        (None, None) => None,
    };
    Message::Call { id, method, name }
}

/// A metadata value as text: printable UTF-8 only (a number or bool comes
/// as raw bytes).
fn text(bytes: Vec<u8>) -> Option<String> {
    String::from_utf8(bytes)
        .ok()
        .filter(|t| !t.chars().any(char::is_control))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::rpc;
    use crate::mcp::rules::ToolPattern;

    fn rules() -> ToolRules {
        let p = |l: &[&str]| {
            l.iter()
                .map(|p| ToolPattern::parse(p).unwrap())
                .collect::<Vec<_>>()
        };
        ToolRules::new(
            Some(p(&["search", "fetch_*"])),
            p(&["fetch_secrets"]),
            vec![],
        )
    }

    fn judged(body: &str, headers: McpHeaders<'_>) -> Verdict {
        judge(&rules(), &rpc::read(body.as_bytes()), headers)
    }

    fn refused(body: &str, headers: McpHeaders<'_>) -> (u32, Value) {
        match judged(body, headers) {
            Verdict::Refuse { reply, .. } => {
                (reply.status, serde_json::from_str(&reply.body).unwrap())
            }
            other => panic!("{body}: {other:?}"),
        }
    }

    const CALL: &str =
        r#"{"jsonrpc":"2.0","id":"r-9","method":"tools/call","params":{"name":"fetch_secrets"}}"#;

    #[test]
    fn a_tool_not_allowed_is_an_unknown_tool() {
        let (status, body) = refused(CALL, McpHeaders::default());
        assert_eq!(status, 200);
        assert_eq!(
            body,
            json!({"jsonrpc":"2.0","id":"r-9","error":{"code":-32602,"message":"Unknown tool: fetch_secrets"}})
        );
        let (_, body) = refused(
            r#"{"id":4,"method":"tools/call","params":{"name":"delete"}}"#,
            McpHeaders::default(),
        );
        assert_eq!(body["id"], json!(4));
        let Verdict::Forward {
            call: Some(call),
            list: false,
        } = judged(
            r#"{"id":4,"method":"tools/call","params":{"name":"fetch_url"}}"#,
            McpHeaders::default(),
        )
        else {
            panic!("allowed");
        };
        assert_eq!(call.name, "fetch_url");
    }

    #[test]
    fn headers_must_agree_with_the_body() {
        let h = |method, name| McpHeaders { method, name };
        let body = r#"{"id":1,"method":"tools/call","params":{"name":"search"}}"#;
        assert!(matches!(
            judged(body, h(Some("tools/call"), Some("search"))),
            Verdict::Forward { .. }
        ));
        assert!(matches!(
            judged(body, h(Some("tools/call"), Some("=?base64?c2VhcmNo?="))),
            Verdict::Forward { .. }
        ));
        for (method, name) in [
            (Some("tools/list"), Some("search")),
            (Some("tools/call"), Some("fetch_url")),
            (Some("tools/call"), None),
            (None, Some("other")),
            (Some("tools/call"), Some("=?base64?c2VhcmNo=?=")),
        ] {
            let (status, body) = refused(
                r#"{"id":1,"method":"tools/call","params":{"name":"search"}}"#,
                h(method, name),
            );
            assert_eq!(
                (status, body["error"]["code"].clone(), body["id"].clone()),
                (400, json!(-32020), json!(1)),
                "{method:?} {name:?}"
            );
        }
        // A mismatch is refused before the tool is judged: even an allowed
        // tool named by a lying header does not pass.
        let (status, _) = refused(CALL, h(Some("tools/call"), Some("search")));
        assert_eq!(status, 400);
    }

    #[test]
    fn other_messages_pass_and_batches_do_not() {
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"x","name":"fetch_secrets"}}"#,
            r#"{"jsonrpc":"2.0","id":4,"method":"prompts/get","params":{"name":"fetch_secrets"}}"#,
            r#"{"jsonrpc":"2.0","id":5,"result":{}}"#,
        ] {
            assert_eq!(
                judged(body, McpHeaders::default()),
                Verdict::Forward {
                    call: None,
                    list: false
                },
                "{body}"
            );
        }
        assert_eq!(
            judged(r#"{"id":1,"method":"tools/list"}"#, McpHeaders::default()),
            Verdict::Forward {
                call: None,
                list: true
            }
        );
        let (status, body) = refused(&format!("[{CALL}]"), McpHeaders::default());
        assert_eq!(
            (status, body["error"]["code"].clone()),
            (400, json!(-32600))
        );
        let (status, body) = refused("{", McpHeaders::default());
        assert_eq!(
            (status, body["error"]["code"].clone(), body["id"].clone()),
            (400, json!(-32700), Value::Null)
        );
        let (status, _) = refused(
            r#"{"id":1,"method":"tools/call","params":{"name":["search"]}}"#,
            McpHeaders::default(),
        );
        assert_eq!(status, 200);
    }

    #[test]
    fn base64_header_values_are_canonical_only() {
        assert_eq!(decode_header_value("plain").as_deref(), Some("plain"));
        assert_eq!(decode_header_value("=?base64?w6k=?=").as_deref(), Some("é"));
        assert_eq!(
            decode_header_value("=?base64?w6l=?="),
            None,
            "non-zero padding bits"
        );
        assert_eq!(decode_header_value("=?base64?w6k?="), None, "unpadded");
        assert_eq!(decode_header_value("=?base64?/w==?="), None, "not UTF-8");
        for s in ["", "a", "ab", "abc", "abcd", "tools/call", "ünïcode"] {
            assert_eq!(
                base64_decode(&base64_encode(s.as_bytes())).unwrap(),
                s.as_bytes()
            );
        }
    }

    #[test]
    fn metadata_reads_like_the_body() {
        let meta = |pairs: &'static [(&'static str, &'static [u8])]| {
            message_from_metadata(&move |k: &str| {
                pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_vec())
            })
        };
        let seven = 7f64.to_le_bytes();
        let seven: &'static [u8] = Box::leak(Box::new(seven));
        let pairs: &'static [(&str, &[u8])] = Box::leak(Box::new([
            ("mcp_method", &b"tools/call"[..]),
            ("mcp_tool", b"search"),
            ("mcp_id", seven),
            ("mcp_id_text", b"7"),
        ]));
        assert_eq!(
            meta(pairs),
            rpc::read(br#"{"id":7,"method":"tools/call","params":{"name":"search"}}"#)
        );
        assert_eq!(
            meta(&[
                ("mcp_method", b"ping"),
                ("mcp_id", b"abcdefgh"),
                ("mcp_id_text", b"abcdefgh")
            ]),
            rpc::read(br#"{"id":"abcdefgh","method":"ping"}"#)
        );
        assert_eq!(meta(&[("mcp_answer", b"1")]), Message::Response);
        assert_eq!(meta(&[]), Message::Invalid(Invalid::NotAnObject));
        assert_eq!(
            meta(&[("mcp_error", b"invalid_json")]),
            Message::Invalid(Invalid::NotJson)
        );
    }
}
