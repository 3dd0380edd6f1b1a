//! The Anthropic surface to OpenAI-compatible backends: a client of
//! Anthropic's Messages API (`POST /v1/messages`: the `anthropic` SDKs,
//! Claude Code with `ANTHROPIC_BASE_URL` at the gateway) is served by a
//! backend that speaks OpenAI chat completions (vLLM, Ollama, LiteLLM).
//!
//! - [`translate_request`]: a Messages request → `POST /v1/chat/completions`;
//! - [`translate_answer`]: a `chat.completion` (or an OpenAI error) → an
//!   Anthropic `Message` (or an Anthropic error);
//! - [`MessageStream`]: `chat.completion.chunk` events → Anthropic's stream
//!   events (`message_start`, `content_block_*`, `message_delta`,
//!   `message_stop`, `error`), exactly as the SDK's accumulator reads them;
//! - [`count_tokens`]: `/v1/messages/count_tokens`, answered by the gateway
//!   itself (OpenAI backends have no such endpoint): an estimate;
//! - [`error_reply`]: every error the client sees on this surface, in
//!   Anthropic's shape `{"type":"error","error":{"type","message"}}`.
//!
//! Not translated, dropped from requests: `top_k`, `thinking`,
//! `service_tier`, `container`, `mcp_servers`, `cache_control` markers (on
//! blocks, tools and system text), any other top-level field Anthropic adds;
//! `thinking` and `redacted_thinking` blocks of earlier turns. Refused with
//! a 400: `document` blocks, server tools (a tool whose `type` is not
//! `custom`), image sources other than base64 and URLs (file ids), and
//! block types this module does not know. From answers: reasoning text
//! (`reasoning_content`: an Anthropic thinking block needs a signature the
//! backend cannot give), legacy `function_call` messages, choices beyond
//! the first, and cached-token details (`input_tokens` is the backend's
//! whole `prompt_tokens`).

use serde_json::{json, Map, Value};

use super::stream::{Events, Stream};
use super::{Answer, Identity, ProviderOptions, Upstream, MAX_EVENT_BYTES};
use crate::reply::LocalReply;
use crate::sse::SseEvent;
use crate::usage::Usage;

/// Where translated requests go on the backend.
pub const CHAT_COMPLETIONS_PATH: &str = "/v1/chat/completions";

/// What [`count_tokens`] counts for an image: its size in tokens is not
/// known without decoding it, and Anthropic charges about this much for the
/// largest image it takes whole (1.15 megapixels / 750).
pub const IMAGE_TOKEN_ESTIMATE: u64 = 1600;

/// About this many bytes of text make a token, in [`count_tokens`].
pub const BYTES_PER_TOKEN: u64 = 4;

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// An Anthropic-shaped error: `{"type":"error","error":{"type","message"}}`.
pub fn error_reply(status: u32, error_type: &str, message: &str) -> LocalReply {
    LocalReply::json(status, error_body(error_type, message).to_string())
}

fn error_body(error_type: &str, message: &str) -> Value {
    json!({ "type": "error", "error": { "type": error_type, "message": message } })
}

fn invalid(message: &str) -> LocalReply {
    error_reply(400, "invalid_request_error", message)
}

/// Anthropic's error type for an HTTP status (the status itself is kept:
/// the SDK retries 408, 409, 429 and 5xx by the status, whatever the type).
pub fn error_type_for(status: u32) -> &'static str {
    match status {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

/// The message of an OpenAI-compatible error body, in the spellings the
/// backends use: `{"error":{"message"}}` (OpenAI, LiteLLM, newer vLLM),
/// `{"error":"…"}` (Ollama), `{"object":"error","message"}` (older vLLM),
/// `{"detail":"…"}` (FastAPI servers).
fn backend_error_message(v: &Value) -> Option<String> {
    let error = v.get("error").filter(|e| !e.is_null());
    let message = match error {
        Some(Value::String(s)) => Some(s.as_str()),
        Some(e) => e.get("message").and_then(Value::as_str),
        None => v
            .get("message")
            .and_then(Value::as_str)
            .or_else(|| v.get("detail").and_then(Value::as_str)),
    };
    message.filter(|m| !m.is_empty()).map(str::to_string)
}

/// A backend's error answer (any status but 2xx) as Anthropic's error.
fn backend_error(status: u32, body: &[u8]) -> LocalReply {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| backend_error_message(&v))
        .unwrap_or_else(|| format!("the backend answered HTTP {status}"));
    if (400..=599).contains(&status) {
        error_reply(status, error_type_for(status), &message)
    } else {
        // A redirect or an informational status is no answer a client of
        // the Messages API can act on.
        error_reply(
            502,
            "api_error",
            &format!("the backend answered HTTP {status}: {message}"),
        )
    }
}

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/// A request body as a JSON object, or the 400 for it.
fn parse_object(body: &[u8]) -> Result<Map<String, Value>, LocalReply> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(invalid("the request body must be a JSON object")),
        Err(e) => Err(invalid(&format!("the request body is not valid JSON: {e}"))),
    }
}

/// A member, `null` counting as absent (as the SDKs send omitted fields).
fn member<'a>(map: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    map.get(name).filter(|v| !v.is_null())
}

fn block_type(block: &Value) -> &str {
    block.get("type").and_then(Value::as_str).unwrap_or("")
}

/// Translates a Messages request into an OpenAI chat completions request
/// for `POST /v1/chat/completions`. A streamed request always asks for the
/// usage chunk (`stream_options.include_usage`): Anthropic clients always
/// get usage.
pub fn translate_request(body: &[u8], opts: &ProviderOptions) -> Result<Upstream, LocalReply> {
    let request = parse_object(body)?;
    let client_model = match member(&request, "model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        _ => return Err(invalid("model: a model name is required")),
    };
    let max_tokens = match member(&request, "max_tokens") {
        None => {
            return Err(invalid(
                "max_tokens: required (the Messages API has no default for it)",
            ))
        }
        Some(v) => v
            .as_u64()
            .filter(|n| *n > 0)
            .ok_or_else(|| invalid("max_tokens: must be a positive integer"))?,
    };
    let messages = member(&request, "messages")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("messages: an array of messages is required"))?;

    let mut chat_messages = Vec::with_capacity(messages.len() + 1);
    let mut system = match member(&request, "system") {
        Some(system) => system_text(system)?,
        None => String::new(),
    };
    for (position, message) in messages.iter().enumerate() {
        if message.get("role").and_then(Value::as_str) == Some("system") {
            // A system message in the conversation (Claude Code sends one,
            // the `mid-conversation-system` beta): folded into the one
            // system message at the start, which every backend's chat
            // template takes (many refuse one anywhere else).
            let at = format!("messages[{position}].content");
            let text = system_text(message.get("content").unwrap_or(&Value::Null))
                .map_err(|_| invalid(&format!("{at}: must be a string or text blocks")))?;
            if !text.is_empty() {
                if !system.is_empty() {
                    system.push_str("\n\n");
                }
                system.push_str(&text);
            }
            continue;
        }
        translate_message(message, position, &mut chat_messages)?;
    }
    if !system.is_empty() {
        chat_messages.insert(0, json!({ "role": "system", "content": system }));
    }

    let mut out = Map::new();
    let upstream_model = opts.model.clone().unwrap_or_else(|| client_model.clone());
    out.insert("model".into(), Value::String(upstream_model));
    out.insert("messages".into(), Value::Array(chat_messages));
    out.insert("max_tokens".into(), json!(max_tokens));
    for name in ["temperature", "top_p"] {
        if let Some(value) = member(&request, name) {
            if !value.is_number() {
                return Err(invalid(&format!("{name}: must be a number")));
            }
            out.insert(name.into(), value.clone());
        }
    }
    if let Some(stops) = member(&request, "stop_sequences") {
        let stops = stops
            .as_array()
            .filter(|s| s.iter().all(Value::is_string))
            .ok_or_else(|| invalid("stop_sequences: must be an array of strings"))?;
        if !stops.is_empty() {
            out.insert("stop".into(), Value::Array(stops.clone()));
        }
    }
    let stream = match member(&request, "stream") {
        None => false,
        Some(v) => v
            .as_bool()
            .ok_or_else(|| invalid("stream: must be true or false"))?,
    };
    if stream {
        out.insert("stream".into(), Value::Bool(true));
        out.insert("stream_options".into(), json!({ "include_usage": true }));
    }
    if let Some(user) = member(&request, "metadata")
        .and_then(|m| m.get("user_id"))
        .and_then(Value::as_str)
    {
        out.insert("user".into(), Value::String(user.to_string()));
    }
    let tools = match member(&request, "tools") {
        None => Vec::new(),
        Some(tools) => translate_tools(tools)?,
    };
    let has_tools = !tools.is_empty();
    if has_tools {
        out.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = member(&request, "tool_choice") {
        let (choice, parallel) = translate_tool_choice(choice)?;
        // Backends refuse a tool choice without tools (vLLM does).
        if has_tools {
            out.insert("tool_choice".into(), choice);
            if !parallel {
                out.insert("parallel_tool_calls".into(), Value::Bool(false));
            }
        }
    }

    Ok(Upstream {
        body: Value::Object(out).to_string().into_bytes(),
        path: CHAT_COMPLETIONS_PATH.to_string(),
        stream,
        include_usage: stream,
        model: client_model,
        max_tokens: Some(max_tokens),
    })
}

/// `system`: a string, or text blocks (joined by a blank line, as separate
/// paragraphs of one system message: backends' chat templates take one).
fn system_text(system: &Value) -> Result<String, LocalReply> {
    match system {
        Value::String(s) => Ok(s.clone()),
        Value::Array(blocks) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for (i, block) in blocks.iter().enumerate() {
                match (block_type(block), block.get("text").and_then(Value::as_str)) {
                    ("text", Some(text)) => texts.push(text),
                    _ => {
                        return Err(invalid(&format!(
                            "system[{i}]: only text blocks are allowed in system"
                        )))
                    }
                }
            }
            Ok(texts.join("\n\n"))
        }
        _ => Err(invalid(
            "system: must be a string or an array of text blocks",
        )),
    }
}

/// One Messages turn as chat messages, appended to `out`: a user turn's
/// tool results become `tool` messages first (OpenAI wants them right after
/// the assistant's tool calls), then the rest of its content.
fn translate_message(
    message: &Value,
    position: usize,
    out: &mut Vec<Value>,
) -> Result<(), LocalReply> {
    let at = format!("messages[{position}]");
    let role = message.get("role").and_then(Value::as_str).unwrap_or("");
    if role != "user" && role != "assistant" {
        return Err(invalid(&format!(
            "{at}.role: must be \"user\" or \"assistant\""
        )));
    }
    let blocks = match message.get("content") {
        Some(Value::String(text)) => {
            out.push(json!({ "role": role, "content": text }));
            return Ok(());
        }
        Some(Value::Array(blocks)) => blocks,
        _ => {
            return Err(invalid(&format!(
                "{at}.content: must be a string or an array of content blocks"
            )))
        }
    };
    if role == "user" {
        user_turn(blocks, &at, out)
    } else {
        assistant_turn(blocks, &at, out)
    }
}

fn user_turn(blocks: &[Value], at: &str, out: &mut Vec<Value>) -> Result<(), LocalReply> {
    let mut parts: Vec<Value> = Vec::new();
    let mut tool_results = 0usize;
    for (i, block) in blocks.iter().enumerate() {
        let here = format!("{at}.content[{i}]");
        match block_type(block) {
            "text" => parts.push(text_part(block, &here)?),
            "image" => parts.push(image_part(block, &here)?),
            "tool_result" => {
                let id = block
                    .get("tool_use_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid(&format!("{here}.tool_use_id: required")))?;
                let (text, images) = tool_result_content(block.get("content"), &here)?;
                // `is_error` has no OpenAI field: the text says what failed.
                out.push(json!({ "role": "tool", "tool_call_id": id, "content": text }));
                tool_results += 1;
                // Images a tool returned go in the user turn that follows:
                // tool messages carry text only.
                parts.extend(images);
            }
            "thinking" | "redacted_thinking" => {}
            other => return Err(unsupported_block(other, &here)),
        }
    }
    if parts.is_empty() && tool_results > 0 {
        return Ok(());
    }
    let only_text = parts.iter().all(|p| block_type(p) == "text");
    let content = match parts.as_slice() {
        [] => Value::String(String::new()),
        [single] if only_text => single.get("text").cloned().unwrap_or_default(),
        _ => Value::Array(parts),
    };
    out.push(json!({ "role": "user", "content": content }));
    Ok(())
}

fn assistant_turn(blocks: &[Value], at: &str, out: &mut Vec<Value>) -> Result<(), LocalReply> {
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for (i, block) in blocks.iter().enumerate() {
        let here = format!("{at}.content[{i}]");
        match block_type(block) {
            "text" => text.push_str(
                block
                    .get("text")
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid(&format!("{here}.text: a text block needs its text")))?,
            ),
            "tool_use" => {
                let id = block.get("id").and_then(Value::as_str);
                let name = block.get("name").and_then(Value::as_str);
                let (Some(id), Some(name)) = (id, name) else {
                    return Err(invalid(&format!(
                        "{here}: a tool_use block needs its id and name"
                    )));
                };
                let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
                tool_calls.push(json!({
                    "id": id,
                    "type": "function",
                    "function": { "name": name, "arguments": input.to_string() }
                }));
            }
            "thinking" | "redacted_thinking" => {}
            other => return Err(unsupported_block(other, &here)),
        }
    }
    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    let content = if text.is_empty() && !tool_calls.is_empty() {
        Value::Null
    } else {
        Value::String(text)
    };
    message.insert("content".into(), content);
    if !tool_calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(tool_calls));
    }
    out.push(Value::Object(message));
    Ok(())
}

fn unsupported_block(kind: &str, here: &str) -> LocalReply {
    match kind {
        "document" => invalid(&format!(
            "{here}: document blocks cannot be translated for this model's backend (OpenAI chat completions has no documents); send the text instead"
        )),
        "" => invalid(&format!("{here}.type: required")),
        other => invalid(&format!(
            "{here}: {other} blocks cannot be translated for this model's backend (OpenAI chat completions)"
        )),
    }
}

fn text_part(block: &Value, here: &str) -> Result<Value, LocalReply> {
    let text = block
        .get("text")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(&format!("{here}.text: a text block needs its text")))?;
    Ok(json!({ "type": "text", "text": text }))
}

/// An image block as an `image_url` part: base64 data as a data URL, or
/// the URL it names.
fn image_part(block: &Value, here: &str) -> Result<Value, LocalReply> {
    let source = block.get("source");
    let kind = source
        .and_then(|s| s.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let field = |name: &str| {
        source
            .and_then(|s| s.get(name))
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(&format!("{here}.source.{name}: required")))
    };
    let url = match kind {
        "base64" => format!("data:{};base64,{}", field("media_type")?, field("data")?),
        "url" => field("url")?.to_string(),
        other => {
            return Err(invalid(&format!(
                "{here}.source: image sources of type {other:?} cannot be translated (base64 and url can)"
            )))
        }
    };
    Ok(json!({ "type": "image_url", "image_url": { "url": url } }))
}

/// A tool result's text (a string, or its text blocks joined by newlines)
/// and its images.
fn tool_result_content(
    content: Option<&Value>,
    here: &str,
) -> Result<(String, Vec<Value>), LocalReply> {
    match content {
        None | Some(Value::Null) => Ok((String::new(), Vec::new())),
        Some(Value::String(s)) => Ok((s.clone(), Vec::new())),
        Some(Value::Array(blocks)) => {
            let mut texts = Vec::new();
            let mut images = Vec::new();
            for (i, block) in blocks.iter().enumerate() {
                let inner = format!("{here}.content[{i}]");
                match block_type(block) {
                    "text" => texts.push(
                        block
                            .get("text")
                            .and_then(Value::as_str)
                            .unwrap_or_default(),
                    ),
                    "image" => images.push(image_part(block, &inner)?),
                    other => return Err(unsupported_block(other, &inner)),
                }
            }
            Ok((texts.join("\n"), images))
        }
        Some(_) => Err(invalid(&format!(
            "{here}.content: must be a string or an array of blocks"
        ))),
    }
}

/// Client tools as OpenAI function tools; server tools are refused.
fn translate_tools(tools: &Value) -> Result<Vec<Value>, LocalReply> {
    let tools = tools
        .as_array()
        .ok_or_else(|| invalid("tools: must be an array"))?;
    let mut out = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        if let Some(kind) = tool
            .get("type")
            .and_then(Value::as_str)
            .filter(|k| *k != "custom")
        {
            return Err(invalid(&format!(
                "tools[{i}]: only client tools (name, description, input_schema) are translated for this model's backend; {kind:?} is an Anthropic server tool"
            )));
        }
        let name = tool
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(&format!("tools[{i}].name: required")))?;
        let mut function = Map::new();
        function.insert("name".into(), json!(name));
        if let Some(description) = tool.get("description").and_then(Value::as_str) {
            function.insert("description".into(), json!(description));
        }
        let parameters = tool
            .get("input_schema")
            .filter(|s| s.is_object())
            .cloned()
            .unwrap_or_else(|| json!({ "type": "object", "properties": {} }));
        function.insert("parameters".into(), parameters);
        out.push(json!({ "type": "function", "function": function }));
    }
    Ok(out)
}

/// `tool_choice` as OpenAI's, and whether parallel tool calls stay allowed.
fn translate_tool_choice(choice: &Value) -> Result<(Value, bool), LocalReply> {
    let parallel = choice
        .get("disable_parallel_tool_use")
        .and_then(Value::as_bool)
        != Some(true);
    let openai = match choice.get("type").and_then(Value::as_str) {
        Some("auto") => json!("auto"),
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => {
            let name = choice
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("tool_choice.name: required with type \"tool\""))?;
            json!({ "type": "function", "function": { "name": name } })
        }
        _ => {
            return Err(invalid(
                "tool_choice.type: must be \"auto\", \"any\", \"tool\" or \"none\"",
            ))
        }
    };
    Ok((openai, parallel))
}

// ---------------------------------------------------------------------------
// count_tokens
// ---------------------------------------------------------------------------

/// Answers `/v1/messages/count_tokens` for a backend that has no such
/// endpoint: `{"input_tokens": N}`, an ESTIMATE, not the backend's
/// tokenizer: one token per [`BYTES_PER_TOKEN`] bytes of the text of
/// `system`, the messages (text, tool inputs and results, thinking) and
/// the tools (their JSON), plus [`IMAGE_TOKEN_ESTIMATE`] per image.
pub fn count_tokens(body: &[u8]) -> Result<Vec<u8>, LocalReply> {
    let request = parse_object(body)?;
    let messages = member(&request, "messages")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("messages: an array of messages is required"))?;
    let mut tally = Tally::default();
    if let Some(system) = member(&request, "system") {
        tally.content(system);
    }
    for message in messages {
        if let Some(content) = message.get("content") {
            tally.content(content);
        }
    }
    if let Some(tools) = member(&request, "tools").and_then(Value::as_array) {
        for tool in tools {
            tally.bytes += json_len(tool);
        }
    }
    let tokens = tally.bytes.div_ceil(BYTES_PER_TOKEN) + tally.images * IMAGE_TOKEN_ESTIMATE;
    Ok(json!({ "input_tokens": tokens }).to_string().into_bytes())
}

#[derive(Default)]
struct Tally {
    bytes: u64,
    images: u64,
}

impl Tally {
    /// A content value: a string, or blocks.
    fn content(&mut self, content: &Value) {
        match content {
            Value::String(s) => self.bytes += s.len() as u64,
            Value::Array(blocks) => blocks.iter().for_each(|b| self.block(b)),
            _ => {}
        }
    }

    fn block(&mut self, block: &Value) {
        let text = |name: &str| block.get(name).and_then(Value::as_str).map_or(0, str::len) as u64;
        match block_type(block) {
            "text" => self.bytes += text("text"),
            "thinking" => self.bytes += text("thinking"),
            "image" => self.images += 1,
            "tool_use" => self.bytes += text("name") + block.get("input").map_or(0, json_len),
            "tool_result" => {
                if let Some(content) = block.get("content") {
                    self.content(content);
                }
            }
            _ => self.bytes += json_len(block),
        }
    }
}

fn json_len(v: &Value) -> u64 {
    v.to_string().len() as u64
}

// ---------------------------------------------------------------------------
// Whole answers
// ---------------------------------------------------------------------------

/// A content block of the answer.
#[derive(Debug, Clone, PartialEq)]
enum Block {
    Text(String),
    Tool {
        id: String,
        name: String,
        input: Value,
    },
}

/// The answer, read from a `chat.completion`.
#[derive(Debug, Clone, PartialEq)]
struct Reply {
    content: Vec<Block>,
    stop: Stop,
    usage: Option<Usage>,
}

/// Why the answer stopped, as Anthropic says it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stop {
    reason: &'static str,
    sequence: Option<String>,
}

/// `finish_reason` as Anthropic's `stop_reason`. A `stop` next to tool
/// calls is `tool_use` (some backends, Ollama's among them, say `stop`
/// there; agent loops wait for `tool_use`). vLLM names the stop string it
/// met (`stop_reason` of the choice): that is a `stop_sequence`.
fn stop_of(finish: Option<&str>, matched: Option<&str>, has_tools: bool) -> Stop {
    let reason = match finish {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ if has_tools => "tool_use",
        Some("stop") if matched.is_some() => "stop_sequence",
        _ => "end_turn",
    };
    Stop {
        reason,
        sequence: matched
            .filter(|_| reason == "stop_sequence")
            .map(str::to_string),
    }
}

/// The usage an OpenAI answer (or chunk) reports.
fn usage_of(v: &Value) -> Option<Usage> {
    let usage = v.get("usage").filter(|u| u.is_object())?;
    let count = |name: &str| usage.get(name).and_then(Value::as_u64);
    let input = count("prompt_tokens");
    let output = count("completion_tokens");
    if input.is_none() && output.is_none() {
        return None;
    }
    let total = count("total_tokens")
        .unwrap_or_else(|| input.unwrap_or(0).saturating_add(output.unwrap_or(0)));
    Some(Usage {
        total,
        input,
        output,
    })
}

/// The first choice of an answer or chunk (the one with index 0; the
/// request never asks for more).
/// A chunk that only adds content (one choice, no tool calls, refusal,
/// finish, usage or error): its content. `None` for anything else.
fn content_delta(data: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
    use serde::de::IgnoredAny;
    use std::borrow::Cow;

    #[derive(serde::Deserialize)]
    struct Chunk<'a> {
        #[serde(borrow)]
        choices: Vec<Choice<'a>>,
        usage: Option<IgnoredAny>,
        error: Option<IgnoredAny>,
        #[serde(borrow)]
        object: Option<Cow<'a, str>>,
    }
    #[derive(serde::Deserialize)]
    struct Choice<'a> {
        #[serde(borrow)]
        delta: Option<Delta<'a>>,
        finish_reason: Option<IgnoredAny>,
    }
    #[derive(serde::Deserialize)]
    struct Delta<'a> {
        #[serde(borrow)]
        content: Option<Cow<'a, str>>,
        refusal: Option<IgnoredAny>,
        tool_calls: Option<IgnoredAny>,
    }

    let chunk: Chunk<'_> = serde_json::from_slice(data).ok()?;
    if chunk.usage.is_some() || chunk.error.is_some() || chunk.object.as_deref() == Some("error") {
        return None;
    }
    let [choice] = <[Choice<'_>; 1]>::try_from(chunk.choices).ok()?;
    if choice.finish_reason.is_some() {
        return None;
    }
    let delta = choice.delta?;
    if delta.refusal.is_some() || delta.tool_calls.is_some() {
        return None;
    }
    delta.content
}

fn first_choice(v: &Value) -> Option<&Value> {
    let choices = v.get("choices")?.as_array()?;
    choices
        .iter()
        .find(|c| c.get("index").and_then(Value::as_u64) == Some(0))
        .or_else(|| choices.first())
}

/// An id for a tool call the backend gave none.
fn tool_id(identity: &Identity, block: usize) -> String {
    let base = identity
        .id
        .strip_prefix("msg_")
        .unwrap_or(identity.id.as_str());
    format!("toolu_{base}_{block}")
}

/// A tool call's arguments as Anthropic's `input`, an object: unparseable
/// arguments or ones that are not an object become `{}` (the SDK types
/// `input` as a dict; there is nowhere to put a raw string).
fn tool_input(arguments: Option<&Value>) -> Value {
    match arguments {
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(object @ Value::Object(_)) => object,
            _ => json!({}),
        },
        Some(object @ Value::Object(_)) => object.clone(),
        _ => json!({}),
    }
}

/// The text of a message's `content` (a string, or text parts) and its
/// `refusal`.
fn message_text(message: &Value) -> String {
    let mut text = match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    };
    if let Some(refusal) = message.get("refusal").and_then(Value::as_str) {
        text.push_str(refusal);
    }
    text
}

/// Reads a backend's whole answer: the reply, or the Anthropic error the
/// client gets instead.
fn read_completion(status: u32, body: &[u8], identity: &Identity) -> Result<Reply, LocalReply> {
    if !(200..=299).contains(&status) {
        return Err(backend_error(status, body));
    }
    let not_a_completion = || {
        error_reply(
            502,
            "api_error",
            "the backend's answer is not an OpenAI chat completion",
        )
    };
    let v: Value = serde_json::from_slice(body).map_err(|_| not_a_completion())?;
    if let Some(message) = error_in(&v) {
        return Err(error_reply(502, "api_error", &message));
    }
    let choice = first_choice(&v).ok_or_else(not_a_completion)?;
    let message = choice
        .get("message")
        .filter(|m| m.is_object())
        .ok_or_else(not_a_completion)?;
    let mut content = Vec::new();
    let text = message_text(message);
    if !text.is_empty() {
        content.push(Block::Text(text));
    }
    if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
        for call in calls {
            let function = call.get("function");
            let name = function
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            let id = call
                .get("id")
                .and_then(Value::as_str)
                .filter(|id| !id.is_empty())
                .map_or_else(|| tool_id(identity, content.len()), str::to_string);
            content.push(Block::Tool {
                id,
                name: name.to_string(),
                input: tool_input(function.and_then(|f| f.get("arguments"))),
            });
        }
    }
    let has_tools = content.iter().any(|b| matches!(b, Block::Tool { .. }));
    let stop = stop_of(
        choice.get("finish_reason").and_then(Value::as_str),
        choice.get("stop_reason").and_then(Value::as_str),
        has_tools,
    );
    Ok(Reply {
        content,
        stop,
        usage: usage_of(&v),
    })
}

/// An error a 2xx body or a stream event carries: `{"error": …}` (not
/// null) or vLLM's older `{"object": "error", "message"}`.
fn error_in(v: &Value) -> Option<String> {
    let is_error = v.get("error").is_some_and(|e| !e.is_null())
        || v.get("object").and_then(Value::as_str) == Some("error");
    is_error.then(|| {
        backend_error_message(v).unwrap_or_else(|| "the backend reported an error".to_string())
    })
}

fn block_json(block: &Block) -> Value {
    match block {
        Block::Text(text) => json!({ "type": "text", "text": text }),
        Block::Tool { id, name, input } => {
            json!({ "type": "tool_use", "id": id, "name": name, "input": input })
        }
    }
}

fn message_json(reply: &Reply, identity: &Identity) -> Value {
    let usage = reply.usage.unwrap_or(Usage {
        total: 0,
        input: None,
        output: None,
    });
    json!({
        "id": identity.id,
        "type": "message",
        "role": "assistant",
        "model": identity.model,
        "content": reply.content.iter().map(block_json).collect::<Vec<_>>(),
        "stop_reason": reply.stop.reason,
        "stop_sequence": reply.stop.sequence,
        "usage": {
            "input_tokens": usage.input.unwrap_or(0),
            "output_tokens": usage.output.unwrap_or(0)
        }
    })
}

/// A backend's whole answer (a `chat.completion`, or an OpenAI-compatible
/// error) as the client's: an Anthropic `Message`, or an Anthropic error
/// with the backend's status (a 2xx body that is no completion: 502).
pub fn translate_answer(status: u32, body: &[u8], id: &Identity) -> Answer {
    let (status, body) = match read_completion(status, body, id) {
        Ok(reply) => (200, message_json(&reply, id).to_string()),
        Err(error) => (error.status, error.body),
    };
    Answer {
        status,
        content_type: "application/json",
        body: body.into_bytes(),
        retry_after: None,
    }
}

// ---------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------

/// Turns a backend's `chat.completion.chunk` stream into Anthropic's
/// stream events as it arrives, chunk by chunk, in bounded memory: the
/// current upstream event and a small state (the open block).
///
/// Every stream ends in `message_stop` or in an `error` event (the backend's
/// error, a stream that ended before its `finish_reason`, an event over
/// [`MAX_EVENT_BYTES`], or the gateway out of room).
pub type MessageStream = Stream<Translator>;

/// Everything of a [`MessageStream`] but its event reader (which calls it
/// back).
pub struct Translator {
    identity: Identity,
    /// `message_start` is out.
    started: bool,
    /// The index the next content block gets.
    next_block: usize,
    open: Open,
    /// A tool call was started (a `stop` then means `tool_use`).
    saw_tool: bool,
    /// The `finish_reason` came: the answer waits for its usage, `[DONE]`
    /// or the end to close.
    stop: Option<Stop>,
    /// The latest usage the backend reported.
    usage: Option<Usage>,
    done: bool,
}

/// The content block open now.
enum Open {
    None,
    Text {
        block: usize,
    },
    Tool {
        block: usize,
        /// The backend's index of the call (`tool_calls[].index`).
        call_index: Option<u64>,
        /// The backend's id of the call, or the one given it.
        id: String,
        /// The tool's name (a piece naming another tool starts a new call).
        name: String,
    },
}

impl MessageStream {
    pub fn new(id: Identity) -> Self {
        Stream::with(Translator {
            identity: id,
            started: false,
            next_block: 0,
            open: Open::None,
            saw_tool: false,
            stop: None,
            usage: None,
            done: false,
        })
    }

    /// A backend that answered a stream request whole: its error as an
    /// `error` event, or its completion as the full event sequence.
    pub fn whole(&mut self, status: u32, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if self.inner.done {
            return out;
        }
        match read_completion(status, body, &self.inner.identity) {
            Ok(reply) => self.inner.replay(&mut out, reply),
            Err(error) => {
                let v: Value = serde_json::from_str(&error.body).unwrap_or_default();
                let kind = v
                    .pointer("/error/type")
                    .and_then(Value::as_str)
                    .unwrap_or("api_error");
                let message = v
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("the backend failed");
                self.inner.fail(&mut out, kind, message);
            }
        }
        self.let_go();
        out
    }

    /// The usage the backend reported (the last report), if any.
    pub fn usage(&self) -> Option<Usage> {
        self.inner.usage
    }
}

impl Events for Translator {
    fn on_event(&mut self, event: SseEvent<'_>, out: &mut Vec<u8>) {
        Translator::on_event(self, event, out);
    }

    fn done(&self) -> bool {
        self.done
    }

    fn out_of_room(&mut self, out: &mut Vec<u8>) {
        self.fail(
            out,
            "overloaded_error",
            "gateway_memory_exhausted: the gateway's memory for translated streams is spent: the answer was cut short",
        );
    }

    fn upstream_ended(&mut self, out: &mut Vec<u8>) {
        self.end_of_stream(out);
    }

    /// The open tool call's id and name.
    fn held(&self) -> usize {
        match &self.open {
            Open::Tool { id, name, .. } => id.capacity() + name.capacity(),
            _ => 0,
        }
    }

    fn let_go(&mut self) {
        self.open = Open::None;
    }
}

impl Translator {
    fn on_event(&mut self, event: SseEvent<'_>, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        let data = match event {
            SseEvent::Data(data) => data,
            SseEvent::TooLong => {
                return self.fail(
                    out,
                    "api_error",
                    &format!("an event of the backend's stream is over {MAX_EVENT_BYTES} bytes"),
                )
            }
        };
        if data.trim_ascii() == b"[DONE]" {
            return self.end_of_stream(out);
        }
        // Most of a stream is content deltas: read those without building
        // a JSON value; anything more (tool calls, a finish, usage, an
        // error), or anything the narrow reading refuses, the general way.
        if let Some(content) = content_delta(data) {
            if !self.started {
                self.start(out);
            }
            if self.stop.is_none() && !content.is_empty() {
                self.text(out, &content);
            }
            return;
        }
        let Ok(chunk) = serde_json::from_slice::<Value>(data) else {
            return;
        };
        if !chunk.is_object() {
            return;
        }
        if let Some(message) = error_in(&chunk) {
            return self.fail(out, "api_error", &message);
        }
        let usage = usage_of(&chunk);
        if usage.is_some() {
            self.usage = usage;
        }
        if !self.started {
            self.start(out);
        }
        if self.stop.is_none() {
            if let Some(choice) = first_choice(&chunk) {
                if let Err(message) = self.choice(out, choice) {
                    return self.fail(out, "api_error", &message);
                }
            }
        }
        // With `include_usage` the usage comes in a chunk of its own after
        // the `finish_reason`; a chunk that carries both ends it too.
        if self.stop.is_some() && usage.is_some() {
            self.conclude(out);
        }
    }

    /// One chunk's choice: its deltas, then its `finish_reason`.
    fn choice(&mut self, out: &mut Vec<u8>, choice: &Value) -> Result<(), String> {
        if let Some(delta) = choice.get("delta") {
            for field in ["content", "refusal"] {
                if let Some(text) = delta
                    .get(field)
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                {
                    self.text(out, text);
                }
            }
            if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
                for call in calls {
                    self.tool_call(out, call)?;
                }
            }
        }
        if let Some(finish) = choice.get("finish_reason").and_then(Value::as_str) {
            self.close_block(out);
            self.stop = Some(stop_of(
                Some(finish),
                choice.get("stop_reason").and_then(Value::as_str),
                self.saw_tool,
            ));
        }
        Ok(())
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        self.started = true;
        let input = self.usage.and_then(|u| u.input).unwrap_or(0);
        emit(
            out,
            "message_start",
            &json!({
                "type": "message_start",
                "message": {
                    "id": self.identity.id,
                    "type": "message",
                    "role": "assistant",
                    "model": self.identity.model,
                    "content": [],
                    "stop_reason": null,
                    "stop_sequence": null,
                    "usage": { "input_tokens": input, "output_tokens": 0 }
                }
            }),
        );
    }

    fn open_block(&mut self, out: &mut Vec<u8>, content_block: Value) -> usize {
        self.close_block(out);
        let block = self.next_block;
        self.next_block += 1;
        emit(
            out,
            "content_block_start",
            &json!({ "type": "content_block_start", "index": block, "content_block": content_block }),
        );
        block
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        let block = match std::mem::replace(&mut self.open, Open::None) {
            Open::None => return,
            Open::Text { block } | Open::Tool { block, .. } => block,
        };
        emit(
            out,
            "content_block_stop",
            &json!({ "type": "content_block_stop", "index": block }),
        );
    }

    fn text(&mut self, out: &mut Vec<u8>, text: &str) {
        let block = match self.open {
            Open::Text { block } => block,
            _ => {
                let block = self.open_block(out, json!({ "type": "text", "text": "" }));
                self.open = Open::Text { block };
                block
            }
        };
        // Written straight out (the bulk of a stream): the same JSON as
        // `emit` with `{"type","index","delta":{"type","text"}}` would give.
        out.extend_from_slice(
            b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":",
        );
        out.extend_from_slice(block.to_string().as_bytes());
        out.extend_from_slice(b",\"delta\":{\"type\":\"text_delta\",\"text\":");
        // Writing a string to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, text);
        out.extend_from_slice(b"}}\n\n");
    }

    /// A piece of a tool call: it continues the open call (no id, or the
    /// same, and the same index), or starts a new one (which needs a name).
    fn tool_call(&mut self, out: &mut Vec<u8>, call: &Value) -> Result<(), String> {
        let index = call.get("index").and_then(Value::as_u64);
        let id = call
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty());
        let function = call.get("function");
        let name = function
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty());
        let continues = match &self.open {
            Open::Tool {
                call_index,
                id: open_id,
                name: open_name,
                ..
            } => {
                !matches!(id, Some(id) if id != open_id)
                    && !matches!(name, Some(name) if name != open_name)
                    && (index.is_none() || index == *call_index)
            }
            _ => false,
        };
        let block = match (&self.open, continues) {
            (Open::Tool { block, .. }, true) => *block,
            _ => {
                let Some(name) = name else {
                    return Err(
                        "the backend streamed tool call arguments for no open tool call (a call without a name, or calls interleaved)"
                            .to_string(),
                    );
                };
                self.close_block(out);
                let id =
                    id.map_or_else(|| tool_id(&self.identity, self.next_block), str::to_string);
                let block = self.open_block(
                    out,
                    json!({ "type": "tool_use", "id": id, "name": name, "input": {} }),
                );
                self.saw_tool = true;
                self.open = Open::Tool {
                    block,
                    call_index: index,
                    id,
                    name: name.to_string(),
                };
                block
            }
        };
        let arguments = match function.and_then(|f| f.get("arguments")) {
            Some(Value::String(s)) => s.clone(),
            // Some backends send the arguments as an object, whole.
            Some(object @ Value::Object(_)) => object.to_string(),
            _ => String::new(),
        };
        if !arguments.is_empty() {
            emit(
                out,
                "content_block_delta",
                &json!({
                    "type": "content_block_delta",
                    "index": block,
                    "delta": { "type": "input_json_delta", "partial_json": arguments }
                }),
            );
        }
        Ok(())
    }

    /// `[DONE]` or the end of the body: the answer closes if its
    /// `finish_reason` came, else it ended early.
    fn end_of_stream(&mut self, out: &mut Vec<u8>) {
        if self.stop.is_some() {
            self.conclude(out);
        } else {
            self.fail(
                out,
                "api_error",
                "the backend's stream ended early (no finish_reason): the answer is incomplete",
            );
        }
    }

    fn conclude(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.start(out);
        }
        self.close_block(out);
        let stop = self.stop.take().unwrap_or(Stop {
            reason: "end_turn",
            sequence: None,
        });
        let mut usage = Map::new();
        let reported = self.usage;
        usage.insert(
            "output_tokens".into(),
            json!(reported.and_then(|u| u.output).unwrap_or(0)),
        );
        if let Some(input) = reported.and_then(|u| u.input) {
            usage.insert("input_tokens".into(), json!(input));
        }
        emit(
            out,
            "message_delta",
            &json!({
                "type": "message_delta",
                "delta": { "stop_reason": stop.reason, "stop_sequence": stop.sequence },
                "usage": usage
            }),
        );
        emit(out, "message_stop", &json!({ "type": "message_stop" }));
        self.done = true;
    }

    fn fail(&mut self, out: &mut Vec<u8>, kind: &str, message: &str) {
        emit(out, "error", &error_body(kind, message));
        self.done = true;
    }

    /// A whole answer as the events a streamed one would give.
    fn replay(&mut self, out: &mut Vec<u8>, reply: Reply) {
        self.usage = reply.usage;
        self.start(out);
        for block in reply.content {
            match block {
                Block::Text(text) => self.text(out, &text),
                Block::Tool { id, name, input } => {
                    let block = self.open_block(
                        out,
                        json!({ "type": "tool_use", "id": id, "name": name, "input": {} }),
                    );
                    emit(
                        out,
                        "content_block_delta",
                        &json!({
                            "type": "content_block_delta",
                            "index": block,
                            "delta": { "type": "input_json_delta", "partial_json": input.to_string() }
                        }),
                    );
                    self.open = Open::Tool {
                        block,
                        call_index: None,
                        id: String::new(),
                        name: String::new(),
                    };
                }
            }
        }
        self.stop = Some(reply.stop);
        self.conclude(out);
    }
}

/// One Anthropic event: `event: <type>`, its JSON on one `data:` line.
fn emit(out: &mut Vec<u8>, kind: &str, data: &Value) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    // Writing JSON to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, data);
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn identity() -> Identity {
        Identity {
            id: "msg_test1".to_string(),
            model: "claude-local".to_string(),
            created: 7,
        }
    }

    fn translate(request: Value) -> Value {
        let upstream =
            translate_request(request.to_string().as_bytes(), &ProviderOptions::default()).unwrap();
        serde_json::from_slice(&upstream.body).unwrap()
    }

    fn refused(request: Value) -> (u32, Value) {
        let reply = translate_request(request.to_string().as_bytes(), &ProviderOptions::default())
            .unwrap_err();
        (reply.status, serde_json::from_str(&reply.body).unwrap())
    }

    #[test]
    fn a_plain_request() {
        let body = json!({
            "model": "claude-local", "max_tokens": 256, "stream": true,
            "system": "be brief", "temperature": 0.5, "top_p": 0.9, "top_k": 40,
            "stop_sequences": ["END"], "metadata": {"user_id": "u-1"},
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "service_tier": "auto",
            "messages": [{"role": "user", "content": "hi"}]
        });
        let opts = ProviderOptions {
            model: Some("qwen2.5".into()),
            ..ProviderOptions::default()
        };
        let upstream = translate_request(body.to_string().as_bytes(), &opts).unwrap();
        assert_eq!(upstream.path, "/v1/chat/completions");
        assert_eq!(upstream.model, "claude-local");
        assert_eq!(upstream.max_tokens, Some(256));
        assert!(upstream.stream && upstream.include_usage);
        let v: Value = serde_json::from_slice(&upstream.body).unwrap();
        assert_eq!(
            v,
            json!({
                "model": "qwen2.5",
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "hi"}
                ],
                "max_tokens": 256, "temperature": 0.5, "top_p": 0.9, "stop": ["END"],
                "stream": true, "stream_options": {"include_usage": true},
                "user": "u-1"
            })
        );
        let v = translate(json!({"model": "m", "max_tokens": 1, "messages": []}));
        assert_eq!(v["model"], "m");
        assert!(v.get("stream").is_none());
    }

    #[test]
    fn system_blocks_and_content_blocks() {
        let v = translate(json!({
            "model": "m", "max_tokens": 10,
            "system": [{"type": "text", "text": "one", "cache_control": {"type": "ephemeral"}},
                       {"type": "text", "text": "two"}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "a"}]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "s"},
                    {"type": "text", "text": "b"}]},
                {"role": "user", "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                    {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}]},
                {"role": "user", "content": [{"type": "text", "text": "c"}, {"type": "text", "text": "d"}]}
            ]
        }));
        assert_eq!(
            v["messages"],
            json!([
                {"role": "system", "content": "one\n\ntwo"},
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": "b"},
                {"role": "user", "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]},
                {"role": "user", "content": [{"type": "text", "text": "c"}, {"type": "text", "text": "d"}]}
            ])
        );
    }

    #[test]
    fn tool_use_and_tool_results() {
        let v = translate(json!({
            "model": "m", "max_tokens": 10,
            "tools": [
                {"name": "get_weather", "description": "weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}, "cache_control": {"type": "ephemeral"}},
                {"type": "custom", "name": "noop", "input_schema": {"type": "object"}}
            ],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "checking"},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "toolu_2", "name": "noop", "input": {}}]},
                {"role": "user", "content": [
                    {"type": "text", "text": "here:"},
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "sunny"}, {"type": "text", "text": "20C"}]},
                    {"type": "tool_result", "tool_use_id": "toolu_2", "content": "failed", "is_error": true}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_3", "content": [
                        {"type": "text", "text": "shot"},
                        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "BB"}}]}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_4"}]}
            ]
        }));
        assert_eq!(
            v["messages"],
            json!([
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": "checking", "tool_calls": [
                    {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "toolu_2", "type": "function", "function": {"name": "noop", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny\n20C"},
                {"role": "tool", "tool_call_id": "toolu_2", "content": "failed"},
                {"role": "user", "content": "here:"},
                {"role": "tool", "tool_call_id": "toolu_3", "content": "shot"},
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,BB"}}]},
                {"role": "tool", "tool_call_id": "toolu_4", "content": ""}
            ])
        );
        assert_eq!(
            v["tools"],
            json!([
                {"type": "function", "function": {"name": "get_weather", "description": "weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
                {"type": "function", "function": {"name": "noop", "parameters": {"type": "object"}}}
            ])
        );
        assert_eq!(v["tool_choice"], "required");
        assert_eq!(v["parallel_tool_calls"], false);
        // A tool-only assistant turn has null content.
        let v = translate(json!({"model": "m", "max_tokens": 1, "messages": [
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "n", "input": {}}]}]}));
        assert_eq!(v["messages"][0]["content"], Value::Null);
    }

    #[test]
    fn tool_choices() {
        let tools = json!([{"name": "f", "input_schema": {"type": "object"}}]);
        for (choice, want) in [
            (json!({"type": "auto"}), json!("auto")),
            (json!({"type": "any"}), json!("required")),
            (json!({"type": "none"}), json!("none")),
            (
                json!({"type": "tool", "name": "f"}),
                json!({"type": "function", "function": {"name": "f"}}),
            ),
        ] {
            let v = translate(json!({"model": "m", "max_tokens": 1, "messages": [],
                "tools": tools, "tool_choice": choice}));
            assert_eq!(v["tool_choice"], want);
            assert!(v.get("parallel_tool_calls").is_none());
        }
        // Without tools, no tool choice goes upstream.
        let v = translate(json!({"model": "m", "max_tokens": 1, "messages": [],
            "tool_choice": {"type": "auto"}}));
        assert!(v.get("tool_choice").is_none() && v.get("tools").is_none());
        let (status, _) = refused(json!({"model": "m", "max_tokens": 1, "messages": [],
            "tools": tools, "tool_choice": {"type": "sometimes"}}));
        assert_eq!(status, 400);
    }

    #[test]
    fn system_messages_in_the_conversation_join_the_leading_one() {
        let body = json!({"model": "m", "max_tokens": 5, "system": "be brief", "messages": [
            {"role": "user", "content": "hi"},
            {"role": "system", "content": [{"type": "text", "text": "agents: a, b"}]},
            {"role": "assistant", "content": "hello"}]});
        let up =
            translate_request(body.to_string().as_bytes(), &ProviderOptions::default()).unwrap();
        let v: Value = serde_json::from_slice(&up.body).unwrap();
        assert_eq!(
            v["messages"],
            json!([
                {"role": "system", "content": "be brief\n\nagents: a, b"},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"}
            ])
        );
    }

    #[test]
    fn refusals_are_anthropic_errors() {
        let cases = [
            json!({"model": "m", "messages": []}),
            json!({"model": "m", "max_tokens": 0, "messages": []}),
            json!({"model": "m", "max_tokens": 1}),
            json!({"max_tokens": 1, "messages": []}),
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "system", "content": 1}]}),
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "tool", "content": "x"}]}),
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}]}]}),
            json!({"model": "m", "max_tokens": 1, "messages": [],
                "tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [
                {"type": "image", "source": {"type": "file", "file_id": "f"}}]}]}),
            json!({"model": "m", "max_tokens": 1, "stream": "yes", "messages": []}),
        ];
        for case in cases {
            let (status, v) = refused(case.clone());
            assert_eq!(status, 400, "{case}");
            assert_eq!(v["type"], "error");
            assert_eq!(v["error"]["type"], "invalid_request_error", "{case}");
            assert!(v["error"]["message"].is_string());
        }
        let (_, v) = refused(
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}]}]}),
        );
        assert!(v["error"]["message"].as_str().unwrap().contains("document"));
        let (_, v) = refused(json!({"model": "m", "max_tokens": 1, "messages": [],
            "tools": [{"type": "web_search_20250305", "name": "web_search"}]}));
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("client tools"));
        let reply = translate_request(b"{not json", &ProviderOptions::default()).unwrap_err();
        assert_eq!(reply.status, 400);
        assert!(reply.body.contains("invalid_request_error"));
    }

    #[test]
    fn error_replies() {
        let reply = error_reply(429, "rate_limit_error", "slow down");
        assert_eq!(reply.status, 429);
        assert_eq!(
            serde_json::from_str::<Value>(&reply.body).unwrap(),
            json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}})
        );
        assert!(reply
            .headers
            .contains(&("content-type", "application/json".to_string())));
    }

    #[test]
    fn counting_tokens() {
        let count = |v: Value| -> u64 {
            let out: Value =
                serde_json::from_slice(&count_tokens(v.to_string().as_bytes()).unwrap()).unwrap();
            out["input_tokens"].as_u64().unwrap()
        };
        assert_eq!(
            count(json!({"model": "m", "messages": [{"role": "user", "content": "12345678"}]})),
            2
        );
        assert_eq!(
            count(json!({"model": "m", "system": "abcd", "messages": [
                {"role": "user", "content": [{"type": "text", "text": "abcd"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "ab"}]}]})),
            // 4 + 4 + (1 + 2) + 2 = 13 bytes → 4 tokens, and an image.
            4 + IMAGE_TOKEN_ESTIMATE
        );
        let tool = json!({"name": "f", "input_schema": {"type": "object"}});
        let with_tool = count(json!({"messages": [], "tools": [tool]}));
        assert_eq!(with_tool, (tool.to_string().len() as u64).div_ceil(4));
        assert_eq!(count_tokens(b"[]").unwrap_err().status, 400);
        assert_eq!(count_tokens(b"{\"model\":\"m\"}").unwrap_err().status, 400);
    }

    fn answer(status: u32, body: Value) -> (u32, Value) {
        let a = translate_answer(status, body.to_string().as_bytes(), &identity());
        assert_eq!(a.content_type, "application/json");
        (a.status, serde_json::from_slice(&a.body).unwrap())
    }

    #[test]
    fn whole_answers() {
        let (status, v) = answer(
            200,
            json!({
                "id": "chatcmpl-1", "object": "chat.completion", "model": "qwen",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
            }),
        );
        assert_eq!(status, 200);
        assert_eq!(
            v,
            json!({
                "id": "msg_test1", "type": "message", "role": "assistant", "model": "claude-local",
                "content": [{"type": "text", "text": "Hello"}],
                "stop_reason": "end_turn", "stop_sequence": null,
                "usage": {"input_tokens": 12, "output_tokens": 3}
            })
        );
        let (_, v) = answer(
            200,
            json!({
                "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
                    {"type": "function", "function": {"name": "broken", "arguments": "{\"city\": "}}]},
                    "finish_reason": "tool_calls"}]
            }),
        );
        assert_eq!(
            v["content"],
            json!([
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_test1_1", "name": "broken", "input": {}}
            ])
        );
        assert_eq!(v["stop_reason"], "tool_use");
        assert_eq!(v["usage"], json!({"input_tokens": 0, "output_tokens": 0}));
        for (finish, want) in [
            ("length", "max_tokens"),
            ("content_filter", "refusal"),
            ("function_call", "tool_use"),
            ("weird", "end_turn"),
        ] {
            let (_, v) = answer(
                200,
                json!({"choices": [{"index": 0, "message": {"content": "x"}, "finish_reason": finish}]}),
            );
            assert_eq!(v["stop_reason"], want, "{finish}");
        }
        // vLLM names the stop string it met.
        let (_, v) = answer(
            200,
            json!({"choices": [{"index": 0, "message": {"content": "x"}, "finish_reason": "stop", "stop_reason": "END"}]}),
        );
        assert_eq!(
            (&v["stop_reason"], &v["stop_sequence"]),
            (&json!("stop_sequence"), &json!("END"))
        );
        // Ollama's `stop` beside tool calls is a tool use.
        let (_, v) = answer(
            200,
            json!({"choices": [{"index": 0, "message": {"content": "", "tool_calls": [
            {"id": "c", "function": {"name": "f", "arguments": {"a": 1}}}]}, "finish_reason": "stop"}]}),
        );
        assert_eq!(v["stop_reason"], "tool_use");
        assert_eq!(
            v["content"],
            json!([{"type": "tool_use", "id": "c", "name": "f", "input": {"a": 1}}])
        );
    }

    #[test]
    fn whole_errors() {
        for (status, body, want_status, want_type, want_message) in [
            (
                400,
                json!({"error": {"message": "bad thing", "type": "invalid_request_error"}}),
                400,
                "invalid_request_error",
                "bad thing",
            ),
            (
                401,
                json!({"error": "no key"}),
                401,
                "authentication_error",
                "no key",
            ),
            (
                403,
                json!({}),
                403,
                "permission_error",
                "the backend answered HTTP 403",
            ),
            (
                404,
                json!({"object": "error", "message": "model not found"}),
                404,
                "not_found_error",
                "model not found",
            ),
            (
                413,
                json!({"detail": "too big"}),
                413,
                "request_too_large",
                "too big",
            ),
            (
                429,
                json!({"error": {"message": "slow"}}),
                429,
                "rate_limit_error",
                "slow",
            ),
            (
                503,
                json!({"error": {"message": "down"}}),
                503,
                "api_error",
                "down",
            ),
            (
                500,
                json!("x"),
                500,
                "api_error",
                "the backend answered HTTP 500",
            ),
            (
                200,
                json!({"error": {"message": "oops"}}),
                502,
                "api_error",
                "oops",
            ),
            (
                200,
                json!({"object": "list"}),
                502,
                "api_error",
                "the backend's answer is not an OpenAI chat completion",
            ),
        ] {
            let (got_status, v) = answer(status, body.clone());
            assert_eq!(got_status, want_status, "{body}");
            assert_eq!(v["type"], "error");
            assert_eq!(v["error"]["type"], want_type, "{body}");
            assert_eq!(v["error"]["message"], want_message, "{body}");
        }
        let a = translate_answer(200, b"<html>", &identity());
        assert_eq!(a.status, 502);
    }

    /// The events a client receives, as (event name, data).
    fn events(out: &[u8]) -> Vec<(String, Value)> {
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(text.is_empty() || text.ends_with("\n\n"), "{text:?}");
        text.split_terminator("\n\n")
            .map(|e| {
                let (name, data) = e.split_once('\n').unwrap();
                let name = name.strip_prefix("event: ").unwrap().to_string();
                let data: Value =
                    serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
                assert_eq!(data["type"], name.as_str(), "the event names its type");
                (name, data)
            })
            .collect()
    }

    fn chunk(delta: Value, finish: Option<&str>) -> String {
        format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "q",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    }

    fn usage_chunk(prompt: u64, completion: u64) -> String {
        format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [],
                "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}})
        )
    }

    fn stream(chunks: &[&[u8]]) -> (Vec<(String, Value)>, Option<Usage>) {
        let mut s = MessageStream::new(identity());
        let mut out = Vec::new();
        for c in chunks {
            out.extend(s.feed_within(c, usize::MAX));
        }
        out.extend(s.finish());
        assert_eq!(s.held(), 0);
        (events(&out), s.usage())
    }

    fn names(events: &[(String, Value)]) -> Vec<&str> {
        events.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn a_streamed_text_answer() {
        let body = [
            chunk(json!({"role": "assistant", "content": ""}), None),
            chunk(json!({"content": "Hel"}), None),
            chunk(json!({"content": "lo"}), None),
            chunk(json!({}), Some("stop")),
            usage_chunk(9, 2),
            "data: [DONE]\n\n".to_string(),
        ]
        .concat();
        let (e, usage) = stream(&[body.as_bytes()]);
        assert_eq!(
            names(&e),
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(
            e[0].1["message"],
            json!({"id": "msg_test1", "type": "message", "role": "assistant", "model": "claude-local",
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0}})
        );
        assert_eq!(
            e[1].1,
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
        );
        assert_eq!(
            e[2].1,
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}})
        );
        assert_eq!(e[4].1, json!({"type": "content_block_stop", "index": 0}));
        assert_eq!(
            e[5].1,
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                "usage": {"output_tokens": 2, "input_tokens": 9}})
        );
        assert_eq!(
            usage,
            Some(Usage {
                total: 11,
                input: Some(9),
                output: Some(2)
            })
        );
        // Whatever the chunking.
        let bytes = body.as_bytes();
        for cut in 0..bytes.len() {
            let (a, b) = bytes.split_at(cut);
            assert_eq!(stream(&[a, b]).0, e, "cut at {cut}");
        }
    }

    #[test]
    fn a_streamed_tool_use() {
        let body = [
            chunk(json!({"role": "assistant", "content": "Let me check."}), None),
            chunk(json!({"tool_calls": [{"index": 0, "id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}), None),
            chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}), None),
            chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}), None),
            chunk(json!({"tool_calls": [{"index": 1, "id": "call_b", "type": "function", "function": {"name": "noop", "arguments": "{}"}}]}), None),
            chunk(json!({}), Some("tool_calls")),
            usage_chunk(20, 15),
            "data: [DONE]\n\n".to_string(),
        ]
        .concat();
        let (e, _) = stream(&[body.as_bytes()]);
        assert_eq!(
            names(&e),
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(
            e[4].1,
            json!({"type": "content_block_start", "index": 1,
            "content_block": {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {}}})
        );
        assert_eq!(
            e[5].1,
            json!({"type": "content_block_delta", "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": "{\"city\":"}})
        );
        assert_eq!(e[8].1["content_block"]["id"], "call_b");
        assert_eq!(e[8].1["index"], 2);
        assert_eq!(e[11].1["delta"]["stop_reason"], "tool_use");
    }

    #[test]
    fn stream_ends_and_failures() {
        // A finish without a usage chunk closes at [DONE], or at the end.
        let body = [
            chunk(json!({"content": "x"}), None),
            chunk(json!({}), Some("length")),
        ]
        .concat();
        let (e, usage) = stream(&[body.as_bytes(), b"data: [DONE]\n\n"]);
        assert_eq!(
            e[4].1,
            json!({"type": "message_delta", "delta": {"stop_reason": "max_tokens", "stop_sequence": null}, "usage": {"output_tokens": 0}})
        );
        assert_eq!(usage, None);
        assert_eq!(stream(&[body.as_bytes()]).0, e);
        // Ended early: an error, not a stop.
        let (e, _) = stream(&[chunk(json!({"content": "x"}), None).as_bytes()]);
        assert_eq!(
            names(&e),
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "error"
            ]
        );
        assert_eq!(e[3].1["error"]["type"], "api_error");
        assert!(e[3].1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ended early"));
        let (e, _) = stream(&[b"data: [DONE]\n\n"]);
        assert_eq!(names(&e), ["error"]);
        let (e, _) = stream(&[]);
        assert_eq!(names(&e), ["error"]);
        // The backend's error event.
        let (e, _) = stream(&[
            chunk(json!({"content": "x"}), None).as_bytes(),
            b"data: {\"error\": {\"message\": \"engine died\", \"type\": \"internal\"}}\n\n",
            chunk(json!({"content": "more"}), None).as_bytes(),
        ]);
        assert_eq!(names(&e).last(), Some(&"error"));
        assert_eq!(
            e.last().unwrap().1,
            json!({"type": "error", "error": {"type": "api_error", "message": "engine died"}})
        );
        // Usage on the finish chunk (vLLM's continuous usage) ends it there.
        let finish = format!(
            "data: {}\n\n",
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop", "stop_reason": "END"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 4}})
        );
        let (e, usage) = stream(&[
            chunk(json!({"content": "x"}), None).as_bytes(),
            finish.as_bytes(),
            b"data: {\"garbage\n\n",
        ]);
        assert_eq!(
            e[4].1["delta"],
            json!({"stop_reason": "stop_sequence", "stop_sequence": "END"})
        );
        assert_eq!(
            e[4].1["usage"],
            json!({"output_tokens": 4, "input_tokens": 3})
        );
        assert_eq!(usage.unwrap().total, 7);
        // Arguments for no open call.
        let (e, _) = stream(&[chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}),
            None,
        )
        .as_bytes()]);
        assert_eq!(names(&e), ["message_start", "error"]);
    }

    #[test]
    fn tool_calls_that_reuse_an_index_or_repeat_their_id() {
        // Some providers behind LiteLLM number every call 0; others repeat
        // the id in every piece.
        let body = [
            chunk(json!({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f", "arguments": "{\"x\""}}]}), None),
            chunk(json!({"tool_calls": [{"index": 0, "id": "a", "function": {"arguments": ":1}"}}]}), None),
            chunk(json!({"tool_calls": [{"index": 0, "id": "b", "function": {"name": "g", "arguments": "{}"}}]}), None),
            chunk(json!({"tool_calls": [{"function": {"name": "h", "arguments": {"y": 2}}}]}), None),
            chunk(json!({}), Some("stop")),
        ]
        .concat();
        let (e, _) = stream(&[body.as_bytes()]);
        let starts: Vec<&Value> = e
            .iter()
            .filter(|(n, _)| n == "content_block_start")
            .map(|(_, d)| &d["content_block"])
            .collect();
        assert_eq!(starts.len(), 3);
        assert_eq!(
            (
                starts[0]["id"].as_str(),
                starts[1]["id"].as_str(),
                starts[2]["id"].as_str()
            ),
            (Some("a"), Some("b"), Some("toolu_test1_2"))
        );
        let deltas: Vec<&Value> = e
            .iter()
            .filter(|(n, _)| n == "content_block_delta")
            .map(|(_, d)| d)
            .collect();
        assert_eq!(deltas[1]["delta"]["partial_json"], ":1}");
        assert_eq!(deltas[3]["delta"]["partial_json"], "{\"y\":2}");
        assert_eq!(e[e.len() - 2].1["delta"]["stop_reason"], "tool_use");
    }

    #[test]
    fn whole_answers_to_stream_requests() {
        let mut s = MessageStream::new(identity());
        let body = json!({"choices": [{"index": 0, "message": {"content": "hi", "tool_calls": [
            {"id": "c1", "function": {"name": "f", "arguments": "{\"a\":1}"}}]}, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 6}});
        let e = events(&s.whole(200, body.to_string().as_bytes()));
        assert_eq!(
            names(&e),
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(e[0].1["message"]["usage"]["input_tokens"], 5);
        assert_eq!(e[5].1["delta"]["partial_json"], "{\"a\":1}");
        assert_eq!(
            e[7].1["usage"],
            json!({"output_tokens": 6, "input_tokens": 5})
        );
        assert_eq!(s.usage().unwrap().total, 11);
        assert!(s.feed_within(b"data: x\n\n", usize::MAX).is_empty());
        assert!(s.finish().is_empty());
        let mut s = MessageStream::new(identity());
        let e = events(&s.whole(429, br#"{"error":{"message":"slow"}}"#));
        assert_eq!(
            e,
            [(
                "error".to_string(),
                json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}})
            )]
        );
    }

    #[test]
    fn held_bytes_and_room() {
        let mut s = MessageStream::new(identity());
        let partial = format!(
            "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{}",
            "x".repeat(10_000)
        );
        assert!(s.feed_within(partial.as_bytes(), usize::MAX).is_empty());
        assert!(s.held() >= partial.len());
        let out = s.feed_within(b"\"}}]}\n\n", usize::MAX);
        assert_eq!(
            names(&events(&out)),
            [
                "message_start",
                "content_block_start",
                "content_block_delta"
            ]
        );
        assert_eq!(s.held(), 0);
        // Over its room: an error event, and nothing held after.
        let mut s = MessageStream::new(identity());
        let e = events(&s.feed_within(partial.as_bytes(), 5_000));
        assert_eq!(names(&e), ["error"]);
        assert!(e[0].1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("gateway_memory_exhausted"));
        assert!(s.cut_short());
        assert_eq!(s.held(), 0);
        assert!(s.feed_within(b"\"}}]}\n\n", usize::MAX).is_empty());
        assert!(s.finish().is_empty());
        // An event over the bound.
        let mut s = MessageStream::new(identity());
        let mut out = s.feed_within(b"data: ", usize::MAX);
        out.extend(s.feed_within(&vec![b'y'; MAX_EVENT_BYTES], usize::MAX));
        assert!(s.held() <= MAX_EVENT_BYTES);
        out.extend(s.finish());
        let e = events(&out);
        assert_eq!(names(&e), ["error"]);
        assert!(!s.cut_short());
    }
}
