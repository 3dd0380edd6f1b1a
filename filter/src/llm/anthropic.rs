//! OpenAI chat completions for backends that speak Anthropic's Messages API
//! (`POST /v1/messages`): the request becomes a Messages request, the answer
//! (a message, an error, or a stream of message events) becomes a
//! `chat.completion`, an OpenAI error, or `chat.completion.chunk` events.
//!
//! What is translated:
//! - `system`/`developer` turns → the top-level `system` text; `user`,
//!   `assistant` and `tool` turns → alternating `user`/`assistant` messages
//!   (consecutive turns of one role merged; a `tool` turn is a `user` turn
//!   of `tool_result` blocks); text and image parts; assistant `tool_calls`
//!   → `tool_use` blocks;
//! - `max_tokens`/`max_completion_tokens` (Anthropic requires one:
//!   `provider_options.max_tokens`, else [`DEFAULT_MAX_TOKENS`]),
//!   `temperature` (clamped to Anthropic's 0–1), `top_p`, `stop`, `stream`,
//!   `user` → `metadata.user_id`, `tools`, `tool_choice`,
//!   `parallel_tool_calls: false` → `disable_parallel_tool_use`.
//!
//! Refused with a 400 (Anthropic cannot do what was asked):
//! - `n` > 1 (Anthropic gives one answer);
//! - `response_format` `json_object`/`json_schema` (no faithful mapping in
//!   the Messages API this version speaks; `{"type":"text"}` is dropped);
//! - content parts other than `text`, `image_url` (and `refusal` in
//!   assistant turns): `input_audio`, `file`;
//! - tools of a type other than `function`; tool call `arguments` that are
//!   not a JSON object.
//!
//! Dropped (no Anthropic equivalent; the answer is still a faithful one):
//! `logprobs`, `top_logprobs`, `presence_penalty`, `frequency_penalty`,
//! `seed`, `logit_bias`, `store`, `metadata`, `service_tier`,
//! `reasoning_effort`, `modalities`, `audio`, `prediction`, `web_search_options`,
//! `function_call`/`functions` (the legacy spelling of tools), a tool's
//! `strict`, a message's `name`, an image's `detail`, and any other
//! top-level field. The answer's `thinking` blocks are dropped too.

use serde_json::{json, Map, Value};

use super::stream::{Events, Stream};
use super::{Answer, Identity, ProviderOptions, Upstream, MAX_EVENT_BYTES};
use crate::reply::LocalReply;
use crate::sse::SseEvent;
use crate::usage::Usage;

/// The `anthropic-version` header when `provider_options.version` is unset.
pub const DEFAULT_VERSION: &str = "2023-06-01";

/// `max_tokens` when neither the request nor `provider_options.max_tokens`
/// sets one (Anthropic requires it).
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// The upstream path of every request.
pub const PATH: &str = "/v1/messages";

/// Most content blocks of one message a stream tracks at once (Anthropic
/// opens them one at a time; the bound keeps a hostile stream's state
/// small).
const MAX_OPEN_BLOCKS: usize = 64;

/// The `anthropic-version` header value.
pub fn version(opts: &ProviderOptions) -> &str {
    opts.version
        .as_deref()
        .filter(|v| !v.is_empty())
        .unwrap_or(DEFAULT_VERSION)
}

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

fn invalid(param: &str, message: &str) -> LocalReply {
    LocalReply::error(400, "invalid_request_error", None, Some(param), message)
}

/// The Messages request for a chat completion request.
pub fn translate_request(body: &[u8], opts: &ProviderOptions) -> Result<Upstream, LocalReply> {
    let request: Value = serde_json::from_slice(body).map_err(|e| {
        LocalReply::error(
            400,
            "invalid_request_error",
            Some("invalid_json"),
            None,
            &format!("request body is not valid JSON: {e}"),
        )
    })?;
    let Some(request) = request.as_object() else {
        return Err(invalid("", "the request body must be a JSON object"));
    };
    let client_model = match request.get("model") {
        None | Some(Value::Null) => "",
        Some(Value::String(m)) => m.as_str(),
        Some(_) => return Err(invalid("model", "model must be a string")),
    };
    let model = opts
        .model
        .as_deref()
        .filter(|m| !m.is_empty())
        .unwrap_or(client_model);
    if model.is_empty() {
        return Err(invalid("model", "model is required"));
    }
    refuse_what_cannot_be_mapped(request)?;

    let (system, messages) = conversation(request.get("messages"))?;
    let max_tokens = max_tokens(request, opts)?;
    let stream = optional_bool(request, "stream")?.unwrap_or(false);
    let include_usage = stream
        && request
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);

    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    out.insert("max_tokens".into(), json!(max_tokens));
    if !system.is_empty() {
        out.insert("system".into(), json!(system));
    }
    out.insert("messages".into(), Value::Array(messages));
    if let Some(temperature) = optional_number(request, "temperature")? {
        // OpenAI's range is 0–2, Anthropic's 0–1: the most random OpenAI
        // asks for is the most random Anthropic gives.
        out.insert("temperature".into(), json!(temperature.min(1.0)));
    }
    if let Some(top_p) = optional_number(request, "top_p")? {
        out.insert("top_p".into(), json!(top_p));
    }
    let stops = stop_sequences(request.get("stop"))?;
    if !stops.is_empty() {
        out.insert("stop_sequences".into(), json!(stops));
    }
    if stream {
        out.insert("stream".into(), json!(true));
    }
    match request.get("user") {
        None | Some(Value::Null) => {}
        Some(Value::String(user)) => {
            out.insert("metadata".into(), json!({ "user_id": user }));
        }
        Some(_) => return Err(invalid("user", "user must be a string")),
    }
    let tools = tools(request.get("tools"))?;
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
        let parallel = optional_bool(request, "parallel_tool_calls")?.unwrap_or(true);
        if let Some(choice) = tool_choice(request.get("tool_choice"), parallel)? {
            out.insert("tool_choice".into(), choice);
        }
    }
    Ok(Upstream {
        body: Value::Object(out).to_string().into_bytes(),
        path: PATH.to_string(),
        stream,
        include_usage,
        model: client_model.to_string(),
        max_tokens: Some(max_tokens),
    })
}

/// A 400 for what the client asked that Anthropic cannot do.
fn refuse_what_cannot_be_mapped(request: &Map<String, Value>) -> Result<(), LocalReply> {
    match request.get("n") {
        None | Some(Value::Null) => {}
        Some(n) if n.as_u64() == Some(1) => {}
        Some(_) => {
            return Err(invalid(
                "n",
                "n must be 1: the anthropic provider gives one choice per request",
            ))
        }
    }
    match request
        .get("response_format")
        .filter(|f| !f.is_null())
        .map(|f| f.get("type").and_then(Value::as_str))
    {
        None | Some(Some("text")) => Ok(()),
        Some(kind) => Err(invalid(
            "response_format",
            &format!(
                "response_format {} is not supported by the anthropic provider (only \"text\")",
                kind.unwrap_or("without a type")
            ),
        )),
    }
}

fn optional_bool(request: &Map<String, Value>, name: &str) -> Result<Option<bool>, LocalReply> {
    match request.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(invalid(name, &format!("{name} must be a boolean"))),
    }
}

fn optional_number(request: &Map<String, Value>, name: &str) -> Result<Option<f64>, LocalReply> {
    match request.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| invalid(name, &format!("{name} must be a number"))),
    }
}

/// `max_completion_tokens` (OpenAI's newer name, which wins), else
/// `max_tokens`, else the entry's, else [`DEFAULT_MAX_TOKENS`].
fn max_tokens(request: &Map<String, Value>, opts: &ProviderOptions) -> Result<u64, LocalReply> {
    for name in ["max_completion_tokens", "max_tokens"] {
        match request.get(name) {
            None | Some(Value::Null) => {}
            Some(v) => match v.as_u64().filter(|&n| n > 0) {
                Some(n) => return Ok(n),
                None => return Err(invalid(name, &format!("{name} must be a positive integer"))),
            },
        }
    }
    Ok(opts.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS))
}

fn stop_sequences(stop: Option<&Value>) -> Result<Vec<String>, LocalReply> {
    let wrong = || invalid("stop", "stop must be a string or an array of strings");
    match stop {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|s| s.as_str().map(str::to_string).ok_or_else(wrong))
            .collect(),
        Some(_) => Err(wrong()),
    }
}

/// The `system` text and the Anthropic messages of the client's turns.
fn conversation(messages: Option<&Value>) -> Result<(String, Vec<Value>), LocalReply> {
    let Some(messages) = messages.and_then(Value::as_array) else {
        return Err(invalid("messages", "messages must be an array"));
    };
    if messages.is_empty() {
        return Err(invalid("messages", "messages must not be empty"));
    }
    let mut system: Vec<String> = Vec::new();
    // (role, blocks) of the turns so far, consecutive roles merged.
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        let role = message.get("role").and_then(Value::as_str).unwrap_or("");
        let content = message.get("content").filter(|c| !c.is_null());
        let (role, blocks) = match role {
            "system" | "developer" => {
                let text = plain_text(content, &format!("{at}.content"))?;
                if !text.is_empty() {
                    system.push(text);
                }
                continue;
            }
            "user" => ("user", content_blocks(content, &at, false)?),
            "assistant" => {
                let mut blocks = content_blocks(content, &at, true)?;
                blocks.extend(tool_uses(message.get("tool_calls"), &at)?);
                ("assistant", blocks)
            }
            "tool" => {
                let Some(id) = message.get("tool_call_id").and_then(Value::as_str) else {
                    return Err(invalid(
                        &format!("{at}.tool_call_id"),
                        "a tool message needs its tool_call_id",
                    ));
                };
                let text = plain_text(content, &format!("{at}.content"))?;
                let mut result = json!({ "type": "tool_result", "tool_use_id": id });
                if !text.is_empty() {
                    set(&mut result, "content", json!(text));
                }
                ("user", vec![result])
            }
            other => {
                return Err(invalid(
                    &format!("{at}.role"),
                    &format!("unsupported message role {other:?}"),
                ))
            }
        };
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last, merged)) if *last == role => merged.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    if turns.is_empty() {
        return Err(invalid(
            "messages",
            "messages must hold a user or assistant turn with content",
        ));
    }
    let messages = turns
        .into_iter()
        .map(|(role, mut blocks)| {
            // Anthropic wants a user turn's tool results before its other
            // blocks (a sort that keeps each group's order).
            if role == "user" {
                blocks
                    .sort_by_key(|b| b.get("type").and_then(Value::as_str) != Some("tool_result"));
            }
            json!({ "role": role, "content": blocks })
        })
        .collect();
    Ok((system.join("\n"), messages))
}

/// The text of a content that may only be text: a string, or text parts
/// (joined by newlines).
fn plain_text(content: Option<&Value>, at: &str) -> Result<String, LocalReply> {
    match content {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut texts = Vec::new();
            for (j, part) in parts.iter().enumerate() {
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        texts.push(part.get("text").and_then(Value::as_str).unwrap_or(""))
                    }
                    other => {
                        return Err(invalid(
                            &format!("{at}[{j}].type"),
                            &format!(
                                "only text parts are allowed here, not {:?}",
                                other.unwrap_or("")
                            ),
                        ))
                    }
                }
            }
            Ok(texts.join("\n"))
        }
        Some(_) => Err(invalid(at, "content must be a string or an array of parts")),
    }
}

/// The content blocks of a user or assistant turn.
fn content_blocks(
    content: Option<&Value>,
    at: &str,
    assistant: bool,
) -> Result<Vec<Value>, LocalReply> {
    let text_block = |text: &str| json!({ "type": "text", "text": text });
    match content {
        None => Ok(Vec::new()),
        // Anthropic refuses empty text blocks.
        Some(Value::String(s)) if s.is_empty() => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![text_block(s)]),
        Some(Value::Array(parts)) => {
            let mut blocks = Vec::new();
            for (j, part) in parts.iter().enumerate() {
                let here = format!("{at}.content[{j}]");
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        let text = part.get("text").and_then(Value::as_str).unwrap_or("");
                        if !text.is_empty() {
                            blocks.push(text_block(text));
                        }
                    }
                    Some("refusal") if assistant => {
                        let text = part.get("refusal").and_then(Value::as_str).unwrap_or("");
                        if !text.is_empty() {
                            blocks.push(text_block(text));
                        }
                    }
                    Some("image_url") if !assistant => blocks.push(image(part, &here)?),
                    other => {
                        return Err(invalid(
                            &format!("{here}.type"),
                            &format!(
                            "content part type {:?} is not supported by the anthropic provider{}",
                            other.unwrap_or(""),
                            if assistant {
                                " in assistant messages (text and refusal only)"
                            } else {
                                " (text and image_url only)"
                            }
                        ),
                        ))
                    }
                }
            }
            Ok(blocks)
        }
        Some(_) => Err(invalid(
            &format!("{at}.content"),
            "content must be a string or an array of parts",
        )),
    }
}

/// An `image_url` part as an image block: a base64 `data:` URL inline, an
/// http(s) URL by reference.
fn image(part: &Value, at: &str) -> Result<Value, LocalReply> {
    let url = match part.get("image_url") {
        Some(Value::String(url)) => url.as_str(),
        Some(v) => v.get("url").and_then(Value::as_str).unwrap_or(""),
        None => "",
    };
    let param = format!("{at}.image_url.url");
    if let Some(data_url) = url.strip_prefix("data:") {
        let Some((media_type, data)) = data_url
            .split_once(',')
            .and_then(|(meta, data)| Some((meta.strip_suffix(";base64")?, data)))
        else {
            return Err(invalid(
                &param,
                "an image data URL must be data:<media type>;base64,<data>",
            ));
        };
        return Ok(json!({
            "type": "image",
            "source": { "type": "base64", "media_type": media_type, "data": data }
        }));
    }
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    if matches!(scheme.as_deref(), Some("http" | "https")) {
        return Ok(json!({ "type": "image", "source": { "type": "url", "url": url } }));
    }
    Err(invalid(
        &param,
        "an image URL must be an http(s) URL or a base64 data URL",
    ))
}

/// An assistant turn's `tool_calls` as `tool_use` blocks.
fn tool_uses(calls: Option<&Value>, at: &str) -> Result<Vec<Value>, LocalReply> {
    let calls = match calls {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(calls)) => calls,
        Some(_) => {
            return Err(invalid(
                &format!("{at}.tool_calls"),
                "tool_calls must be an array",
            ))
        }
    };
    calls
        .iter()
        .enumerate()
        .map(|(j, call)| {
            let here = format!("{at}.tool_calls[{j}]");
            let id = call.get("id").and_then(Value::as_str).unwrap_or("");
            let function = call.get("function");
            let name = function
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .unwrap_or("");
            if id.is_empty() || name.is_empty() {
                return Err(invalid(
                    &here,
                    "a tool call needs an id and a function name",
                ));
            }
            let arguments = function
                .and_then(|f| f.get("arguments"))
                .and_then(Value::as_str)
                .unwrap_or("");
            // A call without arguments is a call with none.
            let input = if arguments.trim().is_empty() {
                json!({})
            } else {
                match serde_json::from_str::<Value>(arguments) {
                    Ok(input @ Value::Object(_)) => input,
                    _ => {
                        return Err(invalid(
                            &format!("{here}.function.arguments"),
                            "tool call arguments must be a JSON object",
                        ))
                    }
                }
            };
            Ok(json!({ "type": "tool_use", "id": id, "name": name, "input": input }))
        })
        .collect()
}

fn tools(tools: Option<&Value>) -> Result<Vec<Value>, LocalReply> {
    let tools = match tools {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(tools)) => tools,
        Some(_) => return Err(invalid("tools", "tools must be an array")),
    };
    tools
        .iter()
        .enumerate()
        .map(|(i, tool)| {
            let at = format!("tools[{i}]");
            if tool.get("type").and_then(Value::as_str) != Some("function") {
                return Err(invalid(
                    &format!("{at}.type"),
                    "only function tools are supported by the anthropic provider",
                ));
            }
            let function = tool.get("function");
            let Some(name) = function
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            else {
                return Err(invalid(
                    &format!("{at}.function.name"),
                    "a function tool needs a name",
                ));
            };
            let mut out = Map::new();
            out.insert("name".into(), json!(name));
            if let Some(description) = function
                .and_then(|f| f.get("description"))
                .and_then(Value::as_str)
            {
                out.insert("description".into(), json!(description));
            }
            let schema = function
                .and_then(|f| f.get("parameters"))
                .filter(|p| !p.is_null())
                .cloned()
                .unwrap_or_else(|| json!({ "type": "object", "properties": {} }));
            out.insert("input_schema".into(), schema);
            Ok(Value::Object(out))
        })
        .collect()
}

/// OpenAI's `tool_choice` (and `parallel_tool_calls`) as Anthropic's.
fn tool_choice(choice: Option<&Value>, parallel: bool) -> Result<Option<Value>, LocalReply> {
    let wrong = || {
        invalid(
            "tool_choice",
            "tool_choice must be \"auto\", \"required\", \"none\" or a function",
        )
    };
    let mut choice = match choice {
        None | Some(Value::Null) => {
            if parallel {
                return Ok(None);
            }
            json!({ "type": "auto" })
        }
        // `none` takes no other field.
        Some(Value::String(s)) if s == "none" => return Ok(Some(json!({ "type": "none" }))),
        Some(Value::String(s)) if s == "auto" => json!({ "type": "auto" }),
        Some(Value::String(s)) if s == "required" => json!({ "type": "any" }),
        Some(Value::Object(o)) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .ok_or_else(wrong)?;
            json!({ "type": "tool", "name": name })
        }
        Some(_) => return Err(wrong()),
    };
    if !parallel {
        set(&mut choice, "disable_parallel_tool_use", json!(true));
    }
    Ok(Some(choice))
}

// ---------------------------------------------------------------------------
// Whole answers
// ---------------------------------------------------------------------------

/// OpenAI's `finish_reason` for Anthropic's `stop_reason`.
fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        // end_turn, stop_sequence, pause_turn, none given, any new one.
        _ => "stop",
    }
}

/// OpenAI's error `type` for Anthropic's, or for the status when the
/// upstream named none.
fn openai_error_type(anthropic_type: Option<&str>, status: u32) -> &'static str {
    match anthropic_type {
        Some("invalid_request_error" | "request_too_large") => "invalid_request_error",
        Some("authentication_error") => "authentication_error",
        Some("permission_error" | "billing_error") => "permission_error",
        Some("not_found_error") => "not_found_error",
        Some("rate_limit_error") => "rate_limit_error",
        Some("api_error" | "overloaded_error" | "timeout_error") => "server_error",
        _ => match status {
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            400..=499 => "invalid_request_error",
            _ => "server_error",
        },
    }
}

/// The status an Anthropic error type stands for, when the HTTP status
/// does not say (an error event in a stream, an error in a 2xx body).
fn status_of_error_type(anthropic_type: Option<&str>) -> u32 {
    match anthropic_type {
        Some("invalid_request_error") => 400,
        Some("authentication_error") => 401,
        Some("billing_error") => 402,
        Some("permission_error") => 403,
        Some("not_found_error") => 404,
        Some("request_too_large") => 413,
        Some("rate_limit_error") => 429,
        Some("api_error") => 500,
        Some("timeout_error") => 504,
        Some("overloaded_error") => 529,
        _ => 502,
    }
}

/// An upstream error (status and body) as the client's: OpenAI's shape,
/// the upstream's message, its error type as `code`. An overloaded 529
/// becomes a 503 with a retry hint.
fn upstream_error(status: u32, body: &[u8]) -> Answer {
    let parsed = serde_json::from_slice::<Value>(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let kind = error.and_then(|e| e.get("type")).and_then(Value::as_str);
    let message = error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| format!("the anthropic provider answered HTTP {status}"));
    let status = if (200..300).contains(&status) {
        status_of_error_type(kind)
    } else {
        status
    };
    let reply = LocalReply::error(
        if status == 529 { 503 } else { status },
        openai_error_type(kind, status),
        Some(kind.unwrap_or("provider_error")),
        None,
        &message,
    );
    Answer {
        status: reply.status,
        content_type: "application/json",
        body: reply.body.into_bytes(),
        retry_after: (status == 529).then(|| "1".to_string()),
    }
}

fn provider_error(message: &str) -> Answer {
    let reply = LocalReply::error(502, "server_error", Some("provider_error"), None, message);
    Answer {
        status: 502,
        content_type: "application/json",
        body: reply.body.into_bytes(),
        retry_after: None,
    }
}

/// What an Anthropic message says, as OpenAI reads it.
struct Reading {
    text: String,
    /// (id, name, arguments) of each tool call.
    tool_calls: Vec<(String, String, String)>,
    stop_reason: Option<String>,
    usage: Option<Usage>,
}

/// The usage of an Anthropic `usage` object: input counts the cached
/// tokens too (OpenAI's `prompt_tokens` does).
fn usage_of(usage: &Value) -> Option<Usage> {
    let count = |name: &str| usage.get(name).and_then(Value::as_u64);
    let input = count("input_tokens");
    let output = count("output_tokens");
    if input.is_none() && output.is_none() {
        return None;
    }
    let input = input
        .unwrap_or(0)
        .saturating_add(count("cache_creation_input_tokens").unwrap_or(0))
        .saturating_add(count("cache_read_input_tokens").unwrap_or(0));
    let output = output.unwrap_or(0);
    Some(Usage {
        total: input.saturating_add(output),
        input: Some(input),
        output: Some(output),
    })
}

/// A message, if `body` is one.
fn read_message(message: &Value) -> Option<Reading> {
    let blocks = message.get("content")?.as_array()?;
    let mut reading = Reading {
        text: String::new(),
        tool_calls: Vec::new(),
        stop_reason: message
            .get("stop_reason")
            .and_then(Value::as_str)
            .map(str::to_string),
        usage: message.get("usage").and_then(usage_of),
    };
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => reading
                .text
                .push_str(block.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("tool_use") => {
                let field = |name: &str| {
                    block
                        .get(name)
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                };
                let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
                reading
                    .tool_calls
                    .push((field("id"), field("name"), input.to_string()));
            }
            // thinking, redacted_thinking, server tool blocks: not OpenAI's.
            _ => {}
        }
    }
    Some(reading)
}

fn usage_json(usage: &Usage) -> Value {
    json!({
        "prompt_tokens": usage.input.unwrap_or(0),
        "completion_tokens": usage.output.unwrap_or(0),
        "total_tokens": usage.total,
    })
}

/// A whole upstream answer (a message, or an error) as the client's: a
/// `chat.completion` or an OpenAI error, always JSON.
pub fn translate_answer(status: u32, body: &[u8], id: &Identity) -> Answer {
    if !(200..300).contains(&status) {
        return upstream_error(status, body);
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return provider_error("the anthropic provider's answer is not JSON");
    };
    if v.get("type").and_then(Value::as_str) == Some("error") {
        return upstream_error(status, body);
    }
    let Some(reading) = read_message(&v) else {
        return provider_error("the anthropic provider's answer is not a message");
    };
    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    let content = if reading.text.is_empty() && !reading.tool_calls.is_empty() {
        Value::Null
    } else {
        json!(reading.text)
    };
    message.insert("content".into(), content);
    message.insert("refusal".into(), Value::Null);
    if !reading.tool_calls.is_empty() {
        let calls: Vec<Value> = reading
            .tool_calls
            .iter()
            .map(|(id, name, arguments)| {
                json!({ "id": id, "type": "function",
                        "function": { "name": name, "arguments": arguments } })
            })
            .collect();
        message.insert("tool_calls".into(), Value::Array(calls));
    }
    let mut completion = json!({
        "id": id.id,
        "object": "chat.completion",
        "created": id.created,
        "model": id.model,
        "choices": [ {
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(reading.stop_reason.as_deref()),
        } ],
    });
    if let Some(usage) = &reading.usage {
        set(&mut completion, "usage", usage_json(usage));
    }
    Answer {
        status: 200,
        content_type: "application/json",
        body: completion.to_string().into_bytes(),
        retry_after: None,
    }
}

// ---------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------

/// Turns Anthropic's message event stream into `chat.completion.chunk`
/// events as it arrives, chunk by chunk: each event's text goes out at
/// once; what is held is the unfinished event and which content blocks are
/// open.
pub type ChatStream = Stream<Translator>;

/// An open `tool_use` block: its tool call's index, and whether any
/// argument text went out (a call with none gets `{}`). Other blocks keep
/// no state: their deltas are read by type.
#[derive(Debug, Clone, Copy)]
struct ToolBlock {
    call: u32,
    arguments_sent: bool,
}

/// Everything of a [`ChatStream`] but its event reader (which calls it
/// back).
pub struct Translator {
    id: Identity,
    include_usage: bool,
    role_sent: bool,
    finish_sent: bool,
    /// Open tool blocks by their index in the message.
    blocks: Vec<(u64, ToolBlock)>,
    tool_calls: u32,
    /// Usage as reported so far (each report is cumulative).
    input_tokens: Option<u64>,
    cache_creation: Option<u64>,
    cache_read: Option<u64>,
    output_tokens: Option<u64>,
    done: bool,
}

impl ChatStream {
    pub fn new(id: Identity, include_usage: bool) -> Self {
        Stream::with(Translator {
            id,
            include_usage,
            role_sent: false,
            finish_sent: false,
            blocks: Vec::new(),
            tool_calls: 0,
            input_tokens: None,
            cache_creation: None,
            cache_read: None,
            output_tokens: None,
            done: false,
        })
    }

    /// An upstream that answered a stream request whole: an error becomes
    /// an error event, a message the same chunks its stream would give;
    /// both end in `data: [DONE]`.
    pub fn whole(&mut self, status: u32, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if self.inner.done {
            return out;
        }
        let message = serde_json::from_slice::<Value>(body).ok().filter(|v| {
            (200..300).contains(&status) && v.get("type").and_then(Value::as_str) != Some("error")
        });
        match message.as_ref().filter(|m| read_message(m).is_some()) {
            Some(message) => {
                for event in message_as_events(message) {
                    self.inner.on_value(&event, &mut out);
                }
                if !self.inner.done {
                    self.inner
                        .on_value(&json!({ "type": "message_stop" }), &mut out);
                }
            }
            None => {
                let answer = translate_answer(status, body, &self.inner.id);
                let body = String::from_utf8_lossy(&answer.body).into_owned();
                self.inner.fail(&mut out, &body);
            }
        }
        self.let_go();
        out
    }

    /// The tokens the upstream reported (input with cached tokens, output),
    /// whether or not the client asked for a usage chunk.
    pub fn usage(&self) -> Option<Usage> {
        self.inner.usage()
    }
}

/// A whole message as the events a stream of it would be.
fn message_as_events(message: &Value) -> Vec<Value> {
    let mut start = message.clone();
    set(&mut start, "content", json!([]));
    set(&mut start, "stop_reason", Value::Null);
    let mut events = vec![json!({ "type": "message_start", "message": start })];
    let blocks = message
        .get("content")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (index, block) in blocks.iter().enumerate() {
        let (opening, delta) = match block.get("type").and_then(Value::as_str) {
            Some("text") => (
                json!({ "type": "text", "text": "" }),
                json!({ "type": "text_delta",
                        "text": block.get("text").and_then(Value::as_str).unwrap_or("") }),
            ),
            Some("tool_use") => {
                let mut opening = block.clone();
                set(&mut opening, "input", json!({}));
                let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
                (
                    opening,
                    json!({ "type": "input_json_delta", "partial_json": input.to_string() }),
                )
            }
            _ => continue,
        };
        events.push(
            json!({ "type": "content_block_start", "index": index, "content_block": opening }),
        );
        events.push(json!({ "type": "content_block_delta", "index": index, "delta": delta }));
        events.push(json!({ "type": "content_block_stop", "index": index }));
    }
    let mut usage = message.get("usage").cloned().unwrap_or_else(|| json!({}));
    if usage.is_object() {
        // What message_start reported stands; the delta adds the output.
        usage = json!({ "output_tokens": usage.get("output_tokens").cloned().unwrap_or(json!(0)) });
    }
    events.push(json!({
        "type": "message_delta",
        "delta": { "stop_reason": message.get("stop_reason").cloned().unwrap_or(Value::Null),
                   "stop_sequence": message.get("stop_sequence").cloned().unwrap_or(Value::Null) },
        "usage": usage,
    }));
    events
}

impl Events for Translator {
    fn on_event(&mut self, event: SseEvent<'_>, out: &mut Vec<u8>) {
        Translator::on_event(self, event, out);
    }

    fn done(&self) -> bool {
        self.done
    }

    fn out_of_room(&mut self, out: &mut Vec<u8>) {
        let error = LocalReply::error(
            503,
            "server_error",
            Some("gateway_memory_exhausted"),
            None,
            "the gateway's memory for translated streams is spent: the answer was cut short",
        );
        self.fail(out, &error.body);
    }

    fn upstream_ended(&mut self, out: &mut Vec<u8>) {
        let error = LocalReply::error(
            502,
            "server_error",
            Some("provider_stream_incomplete"),
            None,
            "the anthropic provider's stream ended before its message_stop",
        );
        self.fail(out, &error.body);
    }

    /// The open blocks.
    fn held(&self) -> usize {
        self.blocks.capacity() * std::mem::size_of::<(u64, ToolBlock)>()
    }
}

impl Translator {
    fn on_event(&mut self, event: SseEvent<'_>, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        match event {
            SseEvent::Data(data) => {
                // Most of a stream is text deltas: read those without
                // building a JSON value (a third of the cost); anything
                // else, or anything the narrow reading refuses, the
                // general way.
                if let Ok(TextDeltaEvent {
                    kind,
                    delta: Some(delta),
                }) = serde_json::from_slice::<TextDeltaEvent<'_>>(data)
                {
                    if kind == "content_block_delta" && delta.kind == "text_delta" {
                        if let Some(text) = delta.text {
                            self.text(out, &text);
                            return;
                        }
                    }
                }
                // Keep-alives and anything unreadable are not answers.
                if let Ok(v) = serde_json::from_slice::<Value>(data) {
                    self.on_value(&v, out);
                }
            }
            SseEvent::TooLong => {
                let error = LocalReply::error(
                    502,
                    "server_error",
                    Some("provider_event_too_large"),
                    None,
                    &format!("an event of the anthropic provider's stream is over {MAX_EVENT_BYTES} bytes"),
                );
                self.fail(out, &error.body);
            }
        }
    }

    fn on_value(&mut self, v: &Value, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
        match v.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                if let Some(usage) = v.pointer("/message/usage") {
                    self.record_usage(usage);
                }
                self.ensure_role(out);
            }
            Some("content_block_start") => {
                let block = v.get("content_block").unwrap_or(&Value::Null);
                self.open_block(index, block, out);
            }
            Some("content_block_delta") => {
                let delta = v.get("delta").unwrap_or(&Value::Null);
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        let text = delta.get("text").and_then(Value::as_str).unwrap_or("");
                        self.text(out, text);
                    }
                    Some("input_json_delta") => {
                        let partial = delta
                            .get("partial_json")
                            .and_then(Value::as_str)
                            .unwrap_or("");
                        self.arguments(out, index, partial);
                    }
                    // thinking_delta, signature_delta, citations_delta, any
                    // new one: not OpenAI's.
                    _ => {}
                }
            }
            Some("content_block_stop") => self.close_block(index, out),
            Some("message_delta") => {
                if let Some(usage) = v.get("usage") {
                    self.record_usage(usage);
                }
                let stop_reason = v.pointer("/delta/stop_reason").and_then(Value::as_str);
                if stop_reason.is_some() {
                    self.finish_chunk(out, stop_reason);
                }
            }
            Some("message_stop") => self.end(out),
            Some("error") => {
                let body = serde_json::to_vec(v).unwrap_or_default();
                let answer = upstream_error(200, &body);
                self.fail(out, &String::from_utf8_lossy(&answer.body));
            }
            // ping, and event types to come.
            _ => {}
        }
    }

    fn record_usage(&mut self, usage: &Value) {
        let count = |name: &str| usage.get(name).and_then(Value::as_u64);
        // Each report is cumulative: a later one replaces what it names.
        if let Some(n) = count("input_tokens") {
            self.input_tokens = Some(n);
        }
        if let Some(n) = count("cache_creation_input_tokens") {
            self.cache_creation = Some(n);
        }
        if let Some(n) = count("cache_read_input_tokens") {
            self.cache_read = Some(n);
        }
        if let Some(n) = count("output_tokens") {
            self.output_tokens = Some(n);
        }
    }

    fn usage(&self) -> Option<Usage> {
        if self.input_tokens.is_none() && self.output_tokens.is_none() {
            return None;
        }
        let input = self
            .input_tokens
            .unwrap_or(0)
            .saturating_add(self.cache_creation.unwrap_or(0))
            .saturating_add(self.cache_read.unwrap_or(0));
        let output = self.output_tokens.unwrap_or(0);
        Some(Usage {
            total: input.saturating_add(output),
            input: Some(input),
            output: Some(output),
        })
    }

    fn open_block(&mut self, index: u64, block: &Value, out: &mut Vec<u8>) {
        self.blocks.retain(|(i, _)| *i != index);
        match block.get("type").and_then(Value::as_str) {
            Some("tool_use") => {
                if self.blocks.len() >= MAX_OPEN_BLOCKS {
                    let error = LocalReply::error(
                        502,
                        "server_error",
                        Some("provider_stream_invalid"),
                        None,
                        &format!("the anthropic provider's stream opened more than {MAX_OPEN_BLOCKS} content blocks at once"),
                    );
                    return self.fail(out, &error.body);
                }
                let call = self.tool_calls;
                self.tool_calls = self.tool_calls.saturating_add(1);
                let field = |name: &str| block.get(name).and_then(Value::as_str).unwrap_or("");
                let opening = json!({ "tool_calls": [ {
                    "index": call, "id": field("id"), "type": "function",
                    "function": { "name": field("name"), "arguments": "" } } ] });
                self.chunk(out, &opening, None);
                self.blocks.push((
                    index,
                    ToolBlock {
                        call,
                        arguments_sent: false,
                    },
                ));
                // A start with its input already there (not the usual `{}`)
                // sends it as the arguments.
                if let Some(input) = block
                    .get("input")
                    .filter(|i| i.as_object().is_some_and(|o| !o.is_empty()))
                {
                    self.arguments(out, index, &input.to_string());
                }
            }
            Some("text") => {
                let text = block.get("text").and_then(Value::as_str).unwrap_or("");
                self.text(out, text);
            }
            // Thinking and other blocks send nothing; their deltas are read
            // by type, so no state is kept.
            _ => {}
        }
    }

    fn close_block(&mut self, index: u64, out: &mut Vec<u8>) {
        let Some(position) = self.blocks.iter().position(|(i, _)| *i == index) else {
            return;
        };
        let (_, block) = self.blocks.swap_remove(position);
        if !block.arguments_sent {
            // A tool without parameters: OpenAI's clients parse the
            // arguments, and `""` is no JSON.
            self.arguments_chunk(out, block.call, "{}");
        }
        if self.blocks.is_empty() {
            self.blocks = Vec::new();
        }
    }

    fn arguments(&mut self, out: &mut Vec<u8>, index: u64, partial: &str) {
        if partial.is_empty() {
            return;
        }
        let Some((_, block)) = self.blocks.iter_mut().find(|(i, _)| *i == index) else {
            return;
        };
        block.arguments_sent = true;
        let call = block.call;
        self.arguments_chunk(out, call, partial);
    }

    fn arguments_chunk(&mut self, out: &mut Vec<u8>, call: u32, arguments: &str) {
        let delta =
            json!({ "tool_calls": [ { "index": call, "function": { "arguments": arguments } } ] });
        self.chunk(out, &delta, None);
    }

    fn text(&mut self, out: &mut Vec<u8>, text: &str) {
        if text.is_empty() {
            return;
        }
        self.ensure_role(out);
        // Written straight out: the text is escaped once, not copied into
        // a JSON value first.
        self.frame_start(out);
        out.extend_from_slice(b"{\"content\":");
        json_string(out, text);
        out.extend_from_slice(b"},\"finish_reason\":null}]}\n\n");
    }

    /// The first chunk: the role, with empty content (as OpenAI sends it).
    fn ensure_role(&mut self, out: &mut Vec<u8>) {
        if self.role_sent {
            return;
        }
        self.role_sent = true;
        self.chunk(out, &json!({ "role": "assistant", "content": "" }), None);
    }

    fn finish_chunk(&mut self, out: &mut Vec<u8>, stop_reason: Option<&str>) {
        if self.finish_sent {
            return;
        }
        self.finish_sent = true;
        self.chunk(out, &json!({}), Some(finish_reason(stop_reason)));
    }

    /// The message is over: its finish (if message_delta gave none), the
    /// usage chunk if asked, and `[DONE]`.
    fn end(&mut self, out: &mut Vec<u8>) {
        self.finish_chunk(out, None);
        if self.include_usage {
            if let Some(usage) = self.usage() {
                let chunk = json!({
                    "id": self.id.id,
                    "object": "chat.completion.chunk",
                    "created": self.id.created,
                    "model": self.id.model,
                    "choices": [],
                    "usage": usage_json(&usage),
                });
                emit(out, &chunk);
            }
        }
        self.close(out);
    }

    /// The stream fails: an error event (OpenAI's error body) and `[DONE]`.
    fn fail(&mut self, out: &mut Vec<u8>, error_body: &str) {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(error_body.as_bytes());
        out.extend_from_slice(b"\n\n");
        self.close(out);
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        self.done = true;
        self.blocks = Vec::new();
        out.extend_from_slice(b"data: [DONE]\n\n");
    }

    /// `data: {"id",…,"choices":[{"index":0,"delta":` — the delta and the
    /// rest follow.
    fn frame_start(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"data: {\"id\":");
        json_string(out, &self.id.id);
        out.extend_from_slice(b",\"object\":\"chat.completion.chunk\",\"created\":");
        out.extend_from_slice(self.id.created.to_string().as_bytes());
        out.extend_from_slice(b",\"model\":");
        json_string(out, &self.id.model);
        out.extend_from_slice(b",\"choices\":[{\"index\":0,\"delta\":");
    }

    fn chunk(&mut self, out: &mut Vec<u8>, delta: &Value, finish_reason: Option<&str>) {
        if delta.get("role").is_none() {
            self.ensure_role(out);
        }
        self.frame_start(out);
        out.extend_from_slice(delta.to_string().as_bytes());
        out.extend_from_slice(b",\"finish_reason\":");
        match finish_reason {
            Some(reason) => json_string(out, reason),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b"}]}\n\n");
    }
}

/// The fields of a `content_block_delta` event a text delta needs (others
/// ignored), borrowed from the event where they need no unescaping.
#[derive(serde::Deserialize)]
struct TextDeltaEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    delta: Option<TextDelta<'a>>,
}

#[derive(serde::Deserialize)]
struct TextDelta<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    text: Option<std::borrow::Cow<'a, str>>,
}

fn json_string(out: &mut Vec<u8>, s: &str) {
    // Writing a string to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn emit(out: &mut Vec<u8>, event: &Value) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(event.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}

/// Sets a member of a JSON object (a no-op on anything else, which the
/// callers never pass: indexing would panic there).
fn set(object: &mut Value, key: &str, value: Value) {
    if let Some(members) = object.as_object_mut() {
        members.insert(key.to_string(), value);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn id() -> Identity {
        Identity {
            id: "chatcmpl-1".to_string(),
            model: "claude-client".to_string(),
            created: 7,
        }
    }

    fn translate(request: Value) -> Value {
        let up =
            translate_request(request.to_string().as_bytes(), &ProviderOptions::default()).unwrap();
        serde_json::from_slice(&up.body).unwrap()
    }

    fn refused(request: Value) -> (u32, Value) {
        let reply = translate_request(request.to_string().as_bytes(), &ProviderOptions::default())
            .unwrap_err();
        (reply.status, serde_json::from_str(&reply.body).unwrap())
    }

    #[test]
    fn version_and_defaults() {
        assert_eq!(version(&ProviderOptions::default()), "2023-06-01");
        let opts = ProviderOptions {
            version: Some("2024-01-01".into()),
            ..Default::default()
        };
        assert_eq!(version(&opts), "2024-01-01");
    }

    #[test]
    fn a_plain_request() {
        let body = json!({
            "model": "claude-client",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "developer", "content": [{"type": "text", "text": "and kind"}]},
                {"role": "user", "content": "hi"}
            ],
            "stream": true,
            "stream_options": {"include_usage": true},
            "temperature": 1.7,
            "top_p": 0.5,
            "stop": "END",
            "user": "u-1",
            "seed": 3,
            "presence_penalty": 0.1,
            "logprobs": true,
            "n": 1,
            "response_format": {"type": "text"},
            "whatever": 1
        });
        let opts = ProviderOptions {
            model: Some("claude-sonnet-4-5".into()),
            ..Default::default()
        };
        let up = translate_request(body.to_string().as_bytes(), &opts).unwrap();
        assert_eq!(up.path, "/v1/messages");
        assert!(up.stream && up.include_usage);
        assert_eq!(up.model, "claude-client");
        assert_eq!(up.max_tokens, Some(DEFAULT_MAX_TOKENS));
        let v: Value = serde_json::from_slice(&up.body).unwrap();
        assert_eq!(
            v,
            json!({
                "model": "claude-sonnet-4-5",
                "max_tokens": 4096,
                "system": "be brief\nand kind",
                "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
                "temperature": 1.0,
                "top_p": 0.5,
                "stop_sequences": ["END"],
                "stream": true,
                "metadata": {"user_id": "u-1"}
            })
        );
    }

    #[test]
    fn max_tokens_in_order_of_precedence() {
        let base = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
        let with = |extra: Value| {
            let mut b = base.clone();
            for (k, v) in extra.as_object().unwrap() {
                b[k] = v.clone();
            }
            b
        };
        let opts = ProviderOptions {
            max_tokens: Some(99),
            ..Default::default()
        };
        let sent = |b: Value, o: &ProviderOptions| {
            translate_request(b.to_string().as_bytes(), o)
                .unwrap()
                .max_tokens
        };
        assert_eq!(sent(base.clone(), &opts), Some(99));
        assert_eq!(sent(with(json!({"max_tokens": 10})), &opts), Some(10));
        assert_eq!(
            sent(
                with(json!({"max_tokens": 10, "max_completion_tokens": 20})),
                &opts
            ),
            Some(20)
        );
        let v = translate(with(json!({"max_completion_tokens": 20})));
        assert_eq!(v["max_tokens"], 20);
        assert_eq!(refused(with(json!({"max_tokens": -1}))).0, 400);
        assert_eq!(refused(with(json!({"max_tokens": "5"}))).0, 400);
        // Without a stream, no usage chunk is asked.
        let up = translate_request(
            with(json!({"stream_options": {"include_usage": true}}))
                .to_string()
                .as_bytes(),
            &opts,
        )
        .unwrap();
        assert!(!up.stream && !up.include_usage);
        assert_eq!(
            translate(with(json!({"stop": ["a", "b"]})))["stop_sequences"],
            json!(["a", "b"])
        );
    }

    #[test]
    fn turns_merge_and_tools_become_blocks() {
        let body = json!({
            "model": "m",
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "user", "content": [
                    {"type": "text", "text": "in Paris"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
                    {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg", "detail": "low"}}
                ]},
                {"role": "assistant", "content": "checking", "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "time", "arguments": ""}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "noon"}]},
                {"role": "user", "content": "thanks"},
                {"role": "assistant", "content": null, "tool_calls": null}
            ]
        });
        let v = translate(body);
        assert_eq!(
            v["messages"],
            json!([
                {"role": "user", "content": [
                    {"type": "text", "text": "weather?"},
                    {"type": "text", "text": "in Paris"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
                    {"type": "image", "source": {"type": "url", "url": "https://x.test/a.jpg"}}
                ]},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "checking"},
                    {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "call_2", "name": "time", "input": {}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
                    {"type": "tool_result", "tool_use_id": "call_2", "content": "noon"},
                    {"type": "text", "text": "thanks"}
                ]}
            ])
        );
        assert!(v.get("system").is_none());
    }

    #[test]
    fn tool_results_lead_their_user_turn() {
        let v = translate(json!({"model": "m", "messages": [
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "user", "content": "also"},
            {"role": "tool", "tool_call_id": "c", "content": "r"}
        ]}));
        assert_eq!(v["messages"][1]["content"][0]["type"], "tool_result");
        assert_eq!(v["messages"][1]["content"][1]["text"], "also");
    }

    #[test]
    fn tools_and_choices() {
        let tools = json!([
            {"type": "function", "function": {"name": "weather", "description": "d",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": true}},
            {"type": "function", "function": {"name": "time"}}
        ]);
        let base = |choice: Value, parallel: Value| {
            let mut b = json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": tools});
            if !choice.is_null() {
                b["tool_choice"] = choice;
            }
            if !parallel.is_null() {
                b["parallel_tool_calls"] = parallel;
            }
            b
        };
        let v = translate(base(Value::Null, Value::Null));
        assert_eq!(
            v["tools"],
            json!([
                {"name": "weather", "description": "d",
                 "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
                {"name": "time", "input_schema": {"type": "object", "properties": {}}}
            ])
        );
        assert!(v.get("tool_choice").is_none());
        let cases = [
            (json!("auto"), Value::Null, json!({"type": "auto"})),
            (json!("required"), Value::Null, json!({"type": "any"})),
            (json!("none"), json!(false), json!({"type": "none"})),
            (
                json!({"type": "function", "function": {"name": "time"}}),
                json!(false),
                json!({"type": "tool", "name": "time", "disable_parallel_tool_use": true}),
            ),
            (
                Value::Null,
                json!(false),
                json!({"type": "auto", "disable_parallel_tool_use": true}),
            ),
            (json!("auto"), json!(true), json!({"type": "auto"})),
        ];
        for (choice, parallel, want) in cases {
            assert_eq!(
                translate(base(choice.clone(), parallel))["tool_choice"],
                want,
                "{choice}"
            );
        }
        assert_eq!(refused(base(json!("sometimes"), Value::Null)).0, 400);
        let (status, e) = refused(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "web_search"}]}),
        );
        assert_eq!(
            (status, e["error"]["param"].as_str()),
            (400, Some("tools[0].type"))
        );
    }

    #[test]
    fn what_cannot_be_mapped_is_refused() {
        let msgs = json!([{"role": "user", "content": "x"}]);
        let cases = [
            (json!({"model": "m", "messages": msgs, "n": 2}), "n"),
            (
                json!({"model": "m", "messages": msgs, "response_format": {"type": "json_object"}}),
                "response_format",
            ),
            (
                json!({"model": "m", "messages": msgs, "response_format": {"type": "json_schema", "json_schema": {}}}),
                "response_format",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}),
                "messages[0].content[0].type",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "file", "file": {}}]}]}),
                "messages[0].content[0].type",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}]}),
                "messages[0].content[0].image_url.url",
            ),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,raw"}}]}]}),
                "messages[0].content[0].image_url.url",
            ),
            (
                json!({"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "[1]"}}]}]}),
                "messages[0].tool_calls[0].function.arguments",
            ),
            (
                json!({"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{bad"}}]}]}),
                "messages[0].tool_calls[0].function.arguments",
            ),
            (
                json!({"model": "m", "messages": [{"role": "tool", "content": "r"}]}),
                "messages[0].tool_call_id",
            ),
            (
                json!({"model": "m", "messages": [{"role": "function", "content": "r"}]}),
                "messages[0].role",
            ),
            (json!({"model": "m", "messages": []}), "messages"),
            (json!({"model": "m"}), "messages"),
            (
                json!({"model": "m", "messages": [{"role": "system", "content": "only"}]}),
                "messages",
            ),
            (json!({"messages": msgs}), "model"),
            (
                json!({"model": "m", "messages": msgs, "temperature": "hot"}),
                "temperature",
            ),
            (json!({"model": "m", "messages": msgs, "stop": 3}), "stop"),
        ];
        for (body, param) in cases {
            let (status, e) = refused(body.clone());
            assert_eq!(status, 400, "{body}");
            assert_eq!(e["error"]["type"], "invalid_request_error", "{body}");
            assert_eq!(e["error"]["param"], param, "{body}");
        }
        let reply = translate_request(b"{", &ProviderOptions::default()).unwrap_err();
        assert_eq!(reply.status, 400);
        assert!(reply.body.contains("invalid_json"));
        assert_eq!(
            translate_request(b"[]", &ProviderOptions::default())
                .unwrap_err()
                .status,
            400
        );
        // The entry's model stands in for a client that named none.
        let opts = ProviderOptions {
            model: Some("claude".into()),
            ..Default::default()
        };
        let up =
            translate_request(json!({"messages": msgs}).to_string().as_bytes(), &opts).unwrap();
        assert_eq!(up.model, "");
    }

    fn answer(status: u32, body: Value) -> (Answer, Value) {
        let a = translate_answer(status, body.to_string().as_bytes(), &id());
        let v = serde_json::from_slice(&a.body).unwrap();
        (a, v)
    }

    #[test]
    fn a_message_becomes_a_completion() {
        let message = json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "s"},
                {"type": "text", "text": "Let me "},
                {"type": "text", "text": "check."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 10, "cache_creation_input_tokens": 5, "cache_read_input_tokens": 3, "output_tokens": 7}
        });
        let (a, v) = answer(200, message);
        assert_eq!(
            (a.status, a.content_type, a.retry_after),
            (200, "application/json", None)
        );
        assert_eq!(
            v,
            json!({
                "id": "chatcmpl-1", "object": "chat.completion", "created": 7, "model": "claude-client",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Let me check.", "refusal": null,
                    "tool_calls": [{"id": "toolu_1", "type": "function",
                        "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                    "logprobs": null, "finish_reason": "tool_calls"}],
                "usage": {"prompt_tokens": 18, "completion_tokens": 7, "total_tokens": 25}
            })
        );
        let only_tool = json!({"type": "message", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}], "stop_reason": "tool_use"});
        let (_, v) = answer(200, only_tool);
        assert_eq!(v["choices"][0]["message"]["content"], Value::Null);
        assert!(v.get("usage").is_none());
        for (reason, want) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("pause_turn", "stop"),
            ("max_tokens", "length"),
            ("refusal", "content_filter"),
        ] {
            let (_, v) = answer(
                200,
                json!({"type": "message", "content": [], "stop_reason": reason}),
            );
            assert_eq!(v["choices"][0]["finish_reason"], want, "{reason}");
            assert_eq!(v["choices"][0]["message"]["content"], "");
        }
    }

    #[test]
    fn errors_become_openai_errors() {
        let error =
            |kind: &str| json!({"type": "error", "error": {"type": kind, "message": "said"}});
        let cases = [
            (400, "invalid_request_error", 400, "invalid_request_error"),
            (401, "authentication_error", 401, "authentication_error"),
            (403, "permission_error", 403, "permission_error"),
            (404, "not_found_error", 404, "not_found_error"),
            (413, "request_too_large", 413, "invalid_request_error"),
            (429, "rate_limit_error", 429, "rate_limit_error"),
            (500, "api_error", 500, "server_error"),
            (529, "overloaded_error", 503, "server_error"),
        ];
        for (status, kind, want_status, want_type) in cases {
            let (a, v) = answer(status, error(kind));
            assert_eq!(a.status, want_status, "{kind}");
            assert_eq!(v["error"]["type"], want_type, "{kind}");
            assert_eq!(v["error"]["code"], kind);
            assert_eq!(v["error"]["message"], "said");
            assert_eq!(v["error"]["param"], Value::Null);
            assert_eq!(a.retry_after.is_some(), status == 529);
        }
        let a = translate_answer(502, b"<html>bad gateway</html>", &id());
        let v: Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(
            (a.status, v["error"]["type"].as_str()),
            (502, Some("server_error"))
        );
        assert_eq!(v["error"]["code"], "provider_error");
        for body in [&b"not json"[..], br#"{"type":"message"}"#, b"[]"] {
            let a = translate_answer(200, body, &id());
            assert_eq!(a.status, 502);
            assert!(String::from_utf8_lossy(&a.body).contains("provider_error"));
        }
        let (a, _) = answer(200, error("overloaded_error"));
        assert_eq!((a.status, a.retry_after), (503, Some("1".to_string())));
    }

    /// The events a client receives: JSON values and "[DONE]".
    fn events(out: &[u8]) -> Vec<Value> {
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(text.is_empty() || text.ends_with("\n\n"), "{text}");
        text.split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                let d = e.strip_prefix("data: ").unwrap();
                if d == "[DONE]" {
                    json!("[DONE]")
                } else {
                    serde_json::from_str(d).unwrap()
                }
            })
            .collect()
    }

    const STREAM: &str = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"cache_read_input_tokens\":5,\"output_tokens\":1}}}\n\n",
        "event: ping\ndata: {\"type\": \"ping\"}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"hmm\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"sig\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\" there\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"weather\",\"input\":{}}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\": \"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\\\"Paris\\\"}\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":2}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":3,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_2\",\"name\":\"time\",\"input\":{}}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":3}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );

    fn stream_all(chunks: &[&[u8]], include_usage: bool) -> (Vec<Value>, Option<Usage>) {
        let mut s = ChatStream::new(id(), include_usage);
        let mut out = Vec::new();
        for c in chunks {
            out.extend(s.feed_within(c, usize::MAX));
        }
        out.extend(s.finish());
        assert_eq!(s.held(), 0);
        (events(&out), s.usage())
    }

    fn delta(e: &Value) -> &Value {
        &e["choices"][0]["delta"]
    }

    #[test]
    fn a_stream_becomes_chunks() {
        let (e, usage) = stream_all(&[STREAM.as_bytes()], true);
        assert_eq!(e.len(), 11, "{e:#?}");
        assert_eq!(delta(&e[0]), &json!({"role": "assistant", "content": ""}));
        assert_eq!(e[0]["object"], "chat.completion.chunk");
        assert_eq!(
            (
                e[0]["id"].as_str(),
                e[0]["model"].as_str(),
                e[0]["created"].as_u64()
            ),
            (Some("chatcmpl-1"), Some("claude-client"), Some(7))
        );
        assert_eq!(delta(&e[1]), &json!({"content": "Hello"}));
        assert_eq!(delta(&e[2]), &json!({"content": " there"}));
        assert_eq!(
            delta(&e[3]),
            &json!({"tool_calls": [{"index": 0, "id": "toolu_1", "type": "function",
            "function": {"name": "weather", "arguments": ""}}]})
        );
        assert_eq!(
            delta(&e[4]),
            &json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\": "}}]})
        );
        assert_eq!(
            delta(&e[5]),
            &json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]})
        );
        assert_eq!(delta(&e[6])["tool_calls"][0]["index"], 1);
        assert_eq!(delta(&e[6])["tool_calls"][0]["id"], "toolu_2");
        assert_eq!(
            delta(&e[7]),
            &json!({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]})
        );
        assert_eq!(delta(&e[8]), &json!({}));
        assert_eq!(e[8]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(e[9]["choices"], json!([]));
        assert_eq!(
            e[9]["usage"],
            json!({"prompt_tokens": 30, "completion_tokens": 15, "total_tokens": 45})
        );
        assert_eq!(e[10], "[DONE]");
        assert_eq!(
            usage,
            Some(Usage {
                total: 45,
                input: Some(30),
                output: Some(15)
            })
        );
        // Without include_usage: no usage chunk, but the usage is known.
        let (e2, usage2) = stream_all(&[STREAM.as_bytes()], false);
        assert_eq!(e2.len(), 10);
        assert_eq!(e2[9], "[DONE]");
        assert_eq!(usage2, usage);
        // Any chunking gives the same events.
        let bytes = STREAM.as_bytes();
        for cut in (0..bytes.len()).step_by(5) {
            let (a, b) = bytes.split_at(cut);
            assert_eq!(stream_all(&[a, b], true).0, e, "cut at {cut}");
        }
        let single: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(stream_all(&single, true).0, e);
    }

    #[test]
    fn text_leaves_as_it_arrives() {
        let mut s = ChatStream::new(id(), false);
        let mut events_in = STREAM.split_inclusive("\n\n");
        let start = s.feed_within(events_in.next().unwrap().as_bytes(), usize::MAX);
        assert_eq!(events(&start).len(), 1, "the role chunk at message_start");
        let text = STREAM.split_inclusive("\n\n").nth(7).unwrap();
        let out = s.feed_within(text.as_bytes(), usize::MAX);
        assert_eq!(delta(&events(&out)[0])["content"], "Hello");
    }

    #[test]
    fn stream_failures() {
        let start = "data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n";
        let text = "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"part\"}}\n\n";
        let overloaded = "event: error\ndata: {\"type\": \"error\", \"error\": {\"type\": \"overloaded_error\", \"message\": \"Overloaded\"}}\n\n";
        let (e, _) = stream_all(
            &[start.as_bytes(), text.as_bytes(), overloaded.as_bytes()],
            true,
        );
        assert_eq!(delta(&e[1])["content"], "part");
        assert_eq!(
            e[2]["error"],
            json!({"message": "Overloaded", "type": "server_error", "param": null, "code": "overloaded_error"})
        );
        assert_eq!(e[3], "[DONE]");
        assert_eq!(e.len(), 4);
        // Broken off: an error, then the end.
        let (e, usage) = stream_all(&[start.as_bytes(), text.as_bytes()], true);
        assert_eq!(e[2]["error"]["code"], "provider_stream_incomplete");
        assert_eq!(e[3], "[DONE]");
        assert_eq!(
            usage,
            Some(Usage {
                total: 4,
                input: Some(3),
                output: Some(1)
            })
        );
        // Nothing at all.
        let (e, usage) = stream_all(&[], false);
        assert_eq!(e[0]["error"]["code"], "provider_stream_incomplete");
        assert_eq!((e.len(), usage), (2, None));
        // After the end, nothing more.
        let mut s = ChatStream::new(id(), false);
        let out = s.feed_within(b"data: {\"type\":\"message_stop\"}\n\n", usize::MAX);
        let e = events(&out);
        assert_eq!(delta(&e[0])["role"], "assistant");
        assert_eq!(e[1]["choices"][0]["finish_reason"], "stop");
        assert_eq!(e[2], "[DONE]");
        assert!(s.feed_within(text.as_bytes(), usize::MAX).is_empty());
        assert!(s.finish().is_empty());
    }

    #[test]
    fn room_and_event_bounds() {
        let mut s = ChatStream::new(id(), false);
        let partial = format!(
            "data: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"{}",
            "x".repeat(10_000)
        );
        let out = s.feed_within(partial.as_bytes(), 5_000);
        let e = events(&out);
        assert_eq!(e[0]["error"]["code"], "gateway_memory_exhausted");
        assert_eq!(e[1], "[DONE]");
        assert!(s.cut_short());
        assert_eq!(s.held(), 0);
        assert!(s.feed_within(b"\"}}\n\n", usize::MAX).is_empty());
        assert!(s.finish().is_empty());
        // Within room, the text goes out whole once its event is complete.
        let mut s = ChatStream::new(id(), false);
        assert!(s.feed_within(partial.as_bytes(), usize::MAX).is_empty());
        assert!(s.held() >= partial.len());
        let e = events(&s.feed_within(b"\"}}\n\n", usize::MAX));
        assert_eq!(delta(&e[1])["content"].as_str().unwrap().len(), 10_000);
        assert!(!s.cut_short());
        // An event over the bound ends the answer.
        let mut s = ChatStream::new(id(), false);
        let mut out = s.feed_within(b"data: ", usize::MAX);
        out.extend(s.feed_within(&vec![b'y'; MAX_EVENT_BYTES + 1], usize::MAX));
        assert!(s.held() <= MAX_EVENT_BYTES);
        out.extend(s.finish());
        let e = events(&out);
        assert_eq!(e[0]["error"]["code"], "provider_event_too_large");
        assert_eq!(e.len(), 2);
        // Too many open tool blocks end it too.
        let mut s = ChatStream::new(id(), false);
        let mut flood = String::new();
        for i in 0..=MAX_OPEN_BLOCKS {
            flood.push_str(&format!("data: {{\"type\":\"content_block_start\",\"index\":{i},\"content_block\":{{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"f\",\"input\":{{}}}}}}\n\n"));
        }
        let e = events(&s.feed_within(flood.as_bytes(), usize::MAX));
        assert_eq!(e[e.len() - 2]["error"]["code"], "provider_stream_invalid");
        assert_eq!(s.held(), 0);
    }

    #[test]
    fn a_whole_answer_to_a_stream_request() {
        let message = json!({
            "id": "msg_1", "type": "message", "role": "assistant",
            "content": [{"type": "text", "text": "Hi"}, {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 4, "output_tokens": 2}
        });
        let mut s = ChatStream::new(id(), true);
        let e = events(&s.whole(200, message.to_string().as_bytes()));
        assert_eq!(delta(&e[0])["role"], "assistant");
        assert_eq!(delta(&e[1])["content"], "Hi");
        assert_eq!(delta(&e[2])["tool_calls"][0]["id"], "t1");
        assert_eq!(
            delta(&e[3])["tool_calls"][0]["function"]["arguments"],
            "{\"a\":1}"
        );
        assert_eq!(e[4]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(e[5]["usage"]["total_tokens"], 6);
        assert_eq!(e[6], "[DONE]");
        assert_eq!(
            s.usage(),
            Some(Usage {
                total: 6,
                input: Some(4),
                output: Some(2)
            })
        );
        let mut s = ChatStream::new(id(), true);
        let e = events(&s.whole(
            429,
            br#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#,
        ));
        assert_eq!(e[0]["error"]["type"], "rate_limit_error");
        assert_eq!(e[1], "[DONE]");
        assert_eq!(e.len(), 2);
        let mut s = ChatStream::new(id(), false);
        let e = events(&s.whole(200, b"nonsense"));
        assert_eq!(e[0]["error"]["code"], "provider_error");
        assert_eq!(s.held(), 0);
    }
}
