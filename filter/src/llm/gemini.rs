//! OpenAI chat completions to a Gemini backend (`generateContent`, and
//! `streamGenerateContent?alt=sse` for streams), and its answers back.
//!
//! The request: `system`/`developer` messages become `systemInstruction`,
//! user and assistant turns `contents` (consecutive turns of one role
//! merged, as Gemini wants them alternating), tool calls `functionCall`
//! parts, tool results `functionResponse` parts of a user turn, the sampling
//! knobs `generationConfig`, tools `functionDeclarations` (plain JSON
//! Schema, `parametersJsonSchema`) and `tool_choice` `toolConfig`.
//!
//! The answer: the first candidate's text parts (thoughts left out) are the
//! message, its function calls `tool_calls` with ids `call_<n>` counted
//! through the answer (Gemini's API gives none), the finish reason and
//! `usageMetadata` OpenAI's. A stream is read in bounded memory: one
//! upstream event at a time (each a whole `GenerateContentResponse`) and a
//! few counters.
//!
//! OpenAI fields with no Gemini counterpart the translation uses are
//! dropped (see [`DROPPED_FIELDS`]).

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::stream::{Events, Stream};
use super::{Answer, Identity, ProviderOptions, Upstream, MAX_EVENT_BYTES};
use crate::reply::LocalReply;
use crate::sse::SseEvent;
use crate::usage::Usage;

/// The path version when `provider_options.version` is unset.
pub const DEFAULT_VERSION: &str = "v1beta";

/// OpenAI request fields read by no one: Gemini has no counterpart the
/// answer translation could carry back (log probabilities, token biases),
/// or they concern OpenAI's own service (storage, tiers, caching keys).
/// `parallel_tool_calls`: Gemini decides alone whether calls come in
/// parallel. `reasoning_effort`: Gemini's thinking knobs differ by model
/// generation (`thinkingBudget` for 2.5, `thinkingLevel` for 3).
pub const DROPPED_FIELDS: &[&str] = &[
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "user",
    "store",
    "metadata",
    "parallel_tool_calls",
    "service_tier",
    "prediction",
    "modalities",
    "audio",
    "reasoning_effort",
    "web_search_options",
    "safety_identifier",
    "prompt_cache_key",
    "verbosity",
];

/// What a `functionCall` part of a replayed assistant turn carries when the
/// real signature is unknown (OpenAI's format has no place for it): Gemini
/// 3 refuses a function call of the current turn without one, and takes
/// this documented value as "not a Gemini-made call, do not validate".
const UNKNOWN_THOUGHT_SIGNATURE: &str = "skip_thought_signature_validator";

// ---------------------------------------------------------------------------
// Request
// ---------------------------------------------------------------------------

fn invalid(param: Option<&str>, message: &str) -> LocalReply {
    LocalReply::error(400, "invalid_request_error", None, param, message)
}

/// The model id as it goes into the upstream path: `opts.model` if set,
/// else the client's, a leading `models/` dropped. Only `[A-Za-z0-9._-]`,
/// and not dots alone, so that nothing in it can change the path (`/`,
/// `..`, `?`, `#`, `%`).
pub fn upstream_model(opts: &ProviderOptions, client_model: &str) -> Result<String, LocalReply> {
    let named = opts.model.as_deref().unwrap_or(client_model);
    let model = named.strip_prefix("models/").unwrap_or(named);
    if model.is_empty() {
        return Err(invalid(Some("model"), "model is required"));
    }
    if !is_path_safe(model) {
        return Err(invalid(
            Some("model"),
            &format!(
                "model {model:?} cannot name a Gemini model: only letters, digits, '.', '_' and '-' are allowed"
            ),
        ));
    }
    Ok(model.to_string())
}

fn is_path_safe(segment: &str) -> bool {
    !segment.is_empty()
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !segment.bytes().all(|b| b == b'.')
}

/// Percent-encodes every byte outside `[A-Za-z0-9_-]` (and dots too when
/// the segment is dots alone), so that a segment never escapes its place in
/// the path, whoever calls [`path`].
fn path_segment(segment: &str) -> String {
    if is_path_safe(segment) {
        return segment.to_string();
    }
    let mut out = String::with_capacity(segment.len() * 3);
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The upstream path: `/{version}/models/{model}:generateContent`, or
/// `:streamGenerateContent?alt=sse` for a stream (without `alt=sse` Gemini
/// streams one JSON array). `model` is the upstream model id (see
/// [`upstream_model`]); anything unsafe in it or in the version is
/// percent-encoded, never passed through.
pub fn path(opts: &ProviderOptions, model: &str, stream: bool) -> String {
    let version = opts.version.as_deref().unwrap_or(DEFAULT_VERSION);
    let model = model.strip_prefix("models/").unwrap_or(model);
    let method = if stream {
        "streamGenerateContent?alt=sse"
    } else {
        "generateContent"
    };
    format!(
        "/{}/models/{}:{method}",
        path_segment(version),
        path_segment(model)
    )
}

/// Translates a chat completions request for a Gemini backend.
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
        return Err(invalid(None, "the request body must be a JSON object"));
    };
    let client_model = match request.get("model") {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(invalid(Some("model"), "model must be a string")),
    };
    let model = upstream_model(opts, client_model)?;
    let stream = match present(request, "stream") {
        None => false,
        Some(v) => v
            .as_bool()
            .ok_or_else(|| invalid(Some("stream"), "stream must be a boolean"))?,
    };
    let include_usage = request
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    // Silently dropping them would answer without the tools asked for.
    for legacy in ["functions", "function_call"] {
        if present(request, legacy).is_some() {
            return Err(invalid(
                Some(legacy),
                &format!("{legacy} (deprecated) is not supported for a Gemini backend: use tools and tool_choice"),
            ));
        }
    }
    let messages = request
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid(Some("messages"), "messages must be an array"))?;

    let mut conversation = Conversation::default();
    for (i, message) in messages.iter().enumerate() {
        conversation.add(message, i)?;
    }
    if conversation.contents.is_empty() {
        return Err(invalid(
            Some("messages"),
            "messages hold no user or assistant content to send",
        ));
    }

    let mut upstream = Map::new();
    upstream.insert("contents".into(), conversation.contents_json());
    if !conversation.system.is_empty() {
        upstream.insert(
            "systemInstruction".into(),
            json!({ "parts": conversation.system }),
        );
    }
    if let Some(tools) = tools(request)? {
        upstream.insert("tools".into(), tools);
    }
    if let Some(config) = tool_config(request)? {
        upstream.insert("toolConfig".into(), config);
    }
    let (config, max_tokens) = generation_config(request)?;
    if !config.is_empty() {
        upstream.insert("generationConfig".into(), Value::Object(config));
    }
    Ok(Upstream {
        body: Value::Object(upstream).to_string().into_bytes(),
        path: path(opts, &model, stream),
        stream,
        include_usage,
        model: client_model.to_string(),
        max_tokens,
    })
}

/// A member that is there and not `null` (OpenAI clients send `null` for
/// unset).
fn present<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    object.get(key).filter(|v| !v.is_null())
}

/// The conversation as Gemini takes it.
#[derive(Default)]
struct Conversation {
    system: Vec<Value>,
    /// (role, parts), roles alternating.
    contents: Vec<(&'static str, Vec<Value>)>,
    /// The function each tool call id of the assistant turns so far named
    /// (a later turn's id wins: ids are unique per answer only).
    call_names: HashMap<String, String>,
}

impl Conversation {
    fn add(&mut self, message: &Value, i: usize) -> Result<(), LocalReply> {
        let param = format!("messages[{i}]");
        let role = message
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(Some(&param), "every message needs a string role"))?;
        let content = message.get("content").filter(|c| !c.is_null());
        match role {
            "system" | "developer" => {
                let parts = match content {
                    Some(c) => text_parts(c, &param)?,
                    None => Vec::new(),
                };
                self.system.extend(parts);
            }
            "user" => {
                let parts = match content {
                    Some(c) => user_parts(c, &param)?,
                    None => Vec::new(),
                };
                self.push("user", parts);
            }
            "assistant" => {
                let mut parts = match content {
                    Some(c) => text_parts(c, &param)?,
                    None => Vec::new(),
                };
                if let Some(calls) = message.get("tool_calls").filter(|c| !c.is_null()) {
                    let calls = calls
                        .as_array()
                        .ok_or_else(|| invalid(Some(&param), "tool_calls must be an array"))?;
                    for (n, call) in calls.iter().enumerate() {
                        let mut part = self.function_call(call, &param)?;
                        // Parallel calls carry one signature, on the first.
                        if n == 0 {
                            if let Some(p) = part.as_object_mut() {
                                p.insert(
                                    "thoughtSignature".into(),
                                    json!(UNKNOWN_THOUGHT_SIGNATURE),
                                );
                            }
                        }
                        parts.push(part);
                    }
                }
                self.push("model", parts);
            }
            "tool" => {
                let part = self.function_response(message, content, &param)?;
                self.push("user", vec![part]);
            }
            other => {
                return Err(invalid(
                    Some(&param),
                    &format!("message role {other:?} is not supported for a Gemini backend"),
                ))
            }
        }
        Ok(())
    }

    fn push(&mut self, role: &'static str, parts: Vec<Value>) {
        if parts.is_empty() {
            return;
        }
        match self.contents.last_mut() {
            Some((last, held)) if *last == role => held.extend(parts),
            _ => self.contents.push((role, parts)),
        }
    }

    fn function_call(&mut self, call: &Value, param: &str) -> Result<Value, LocalReply> {
        let bad = |message: &str| invalid(Some(param), message);
        if let Some(kind) = call.get("type").and_then(Value::as_str) {
            if kind != "function" {
                return Err(bad(&format!(
                    "tool call type {kind:?} is not supported for a Gemini backend"
                )));
            }
        }
        let function = call
            .get("function")
            .ok_or_else(|| bad("a tool call needs a function"))?;
        let name = function
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| bad("a tool call's function needs a name"))?;
        let args = match function.get("arguments") {
            None | Some(Value::Null) => json!({}),
            Some(Value::String(s)) if s.trim().is_empty() => json!({}),
            Some(Value::String(s)) => serde_json::from_str::<Value>(s)
                .ok()
                .filter(Value::is_object)
                .ok_or_else(|| bad("a tool call's arguments must be a JSON object"))?,
            Some(v @ Value::Object(_)) => v.clone(),
            Some(_) => return Err(bad("a tool call's arguments must be a JSON object")),
        };
        if let Some(id) = call.get("id").and_then(Value::as_str) {
            self.call_names.insert(id.to_string(), name.to_string());
        }
        Ok(json!({ "functionCall": { "name": name, "args": args } }))
    }

    fn function_response(
        &self,
        message: &Value,
        content: Option<&Value>,
        param: &str,
    ) -> Result<Value, LocalReply> {
        let id = message
            .get("tool_call_id")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(Some(param), "a tool message needs a tool_call_id"))?;
        let name = self.call_names.get(id).ok_or_else(|| {
            invalid(
                Some(param),
                &format!("tool_call_id {id:?} names no tool call of an earlier assistant message"),
            )
        })?;
        let text = match content {
            Some(c) => joined_text(c, param)?,
            None => String::new(),
        };
        // A result that is a JSON object is the response itself; anything
        // else is wrapped, as Gemini's response must be an object.
        let response = match serde_json::from_str::<Value>(&text) {
            Ok(object @ Value::Object(_)) => object,
            _ => json!({ "content": text }),
        };
        Ok(json!({ "functionResponse": { "name": name, "response": response } }))
    }

    fn contents_json(&self) -> Value {
        Value::Array(
            self.contents
                .iter()
                .map(|(role, parts)| json!({ "role": role, "parts": parts }))
                .collect(),
        )
    }
}

/// A content that may hold text only (system, assistant, tool): a string,
/// or an array of `text` (or `refusal`) parts.
fn text_parts(content: &Value, param: &str) -> Result<Vec<Value>, LocalReply> {
    let text = joined_text(content, param)?;
    Ok(if text.is_empty() {
        Vec::new()
    } else {
        vec![json!({ "text": text })]
    })
}

fn joined_text(content: &Value, param: &str) -> Result<String, LocalReply> {
    match content {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut text = String::new();
            for part in parts {
                let kind = part.get("type").and_then(Value::as_str).unwrap_or_default();
                let piece = match kind {
                    "text" => part.get("text"),
                    "refusal" => part.get("refusal"),
                    _ => None,
                }
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    invalid(
                        Some(param),
                        &format!(
                            "a content part of type {kind:?} is not supported here: text only"
                        ),
                    )
                })?;
                text.push_str(piece);
            }
            Ok(text)
        }
        _ => Err(invalid(
            Some(param),
            "content must be a string or an array of parts",
        )),
    }
}

/// A user turn's content: text, images, audio and files.
fn user_parts(content: &Value, param: &str) -> Result<Vec<Value>, LocalReply> {
    let parts = match content {
        Value::String(s) if s.is_empty() => return Ok(Vec::new()),
        Value::String(s) => return Ok(vec![json!({ "text": s })]),
        Value::Array(parts) => parts,
        _ => {
            return Err(invalid(
                Some(param),
                "content must be a string or an array of parts",
            ))
        }
    };
    let mut out = Vec::with_capacity(parts.len());
    for part in parts {
        let kind = part.get("type").and_then(Value::as_str).unwrap_or_default();
        let unsupported = || {
            invalid(
                Some(param),
                &format!("a content part of type {kind:?} cannot be sent to a Gemini backend"),
            )
        };
        match kind {
            "text" => {
                let text = part
                    .get("text")
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid(Some(param), "a text part needs its text"))?;
                if !text.is_empty() {
                    out.push(json!({ "text": text }));
                }
            }
            "image_url" => {
                let url = match part.get("image_url") {
                    Some(Value::String(url)) => Some(url.as_str()),
                    Some(v) => v.get("url").and_then(Value::as_str),
                    None => None,
                }
                .ok_or_else(|| invalid(Some(param), "an image_url part needs its url"))?;
                out.push(media_part(url, param)?);
            }
            "input_audio" => {
                let audio = part.get("input_audio").ok_or_else(unsupported)?;
                let data = audio.get("data").and_then(Value::as_str);
                let format = audio.get("format").and_then(Value::as_str);
                let (Some(data), Some(format)) = (data, format) else {
                    return Err(invalid(
                        Some(param),
                        "an input_audio part needs its data and format",
                    ));
                };
                let mime = match format {
                    "mp3" => "audio/mp3".to_string(),
                    other => format!("audio/{other}"),
                };
                out.push(json!({ "inlineData": { "mimeType": mime, "data": data } }));
            }
            "file" => {
                let data = part
                    .get("file")
                    .and_then(|f| f.get("file_data"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        invalid(
                            Some(param),
                            "a file part needs file_data (a data: URL); uploaded file ids cannot reach a Gemini backend",
                        )
                    })?;
                let (mime, data) = data_url(data).ok_or_else(|| {
                    invalid(
                        Some(param),
                        "a file part's file_data must be a data:<mime>;base64,<data> URL",
                    )
                })?;
                out.push(json!({ "inlineData": { "mimeType": mime, "data": data } }));
            }
            _ => return Err(unsupported()),
        }
    }
    Ok(out)
}

/// An image by URL: inline when a `data:` URL, else a file Gemini fetches.
fn media_part(url: &str, param: &str) -> Result<Value, LocalReply> {
    if url.starts_with("data:") {
        let (mime, data) = data_url(url).ok_or_else(|| {
            invalid(
                Some(param),
                "an image data URL must be data:<mime>;base64,<data>",
            )
        })?;
        return Ok(json!({ "inlineData": { "mimeType": mime, "data": data } }));
    }
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        return Ok(json!({ "fileData": { "mimeType": mime_of(url), "fileUri": url } }));
    }
    Err(invalid(
        Some(param),
        "an image URL must be http(s) or a base64 data: URL",
    ))
}

/// `data:<mime>;base64,<data>` → (mime, data).
fn data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (head, data) = rest.split_once(',')?;
    let mime = head.strip_suffix(";base64")?;
    // Parameters (`;charset=…`) are not part of Gemini's MIME type.
    let mime = mime.split(';').next().unwrap_or_default();
    (!mime.is_empty() && !data.is_empty()).then_some((mime, data))
}

/// The MIME type of an image URL, by its path's extension.
fn mime_of(url: &str) -> &'static str {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let extension = path
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        _ => "image/jpeg",
    }
}

fn number(request: &Map<String, Value>, key: &str) -> Result<Option<Value>, LocalReply> {
    match present(request, key) {
        None => Ok(None),
        Some(v @ Value::Number(_)) => Ok(Some(v.clone())),
        Some(_) => Err(invalid(Some(key), &format!("{key} must be a number"))),
    }
}

fn count(request: &Map<String, Value>, key: &str) -> Result<Option<u64>, LocalReply> {
    match present(request, key) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| invalid(Some(key), &format!("{key} must be a non-negative integer"))),
    }
}

/// `generationConfig`, and the output tokens asked for.
fn generation_config(
    request: &Map<String, Value>,
) -> Result<(Map<String, Value>, Option<u64>), LocalReply> {
    let mut config = Map::new();
    let max_tokens = match count(request, "max_completion_tokens")? {
        Some(n) => Some(n),
        None => count(request, "max_tokens")?,
    };
    if let Some(n) = max_tokens {
        config.insert("maxOutputTokens".into(), json!(n));
    }
    for (openai, gemini) in [
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("top_k", "topK"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ] {
        if let Some(v) = number(request, openai)? {
            config.insert(gemini.into(), v);
        }
    }
    if let Some(seed) = present(request, "seed") {
        if !(seed.is_i64() || seed.is_u64()) {
            return Err(invalid(Some("seed"), "seed must be an integer"));
        }
        config.insert("seed".into(), seed.clone());
    }
    match present(request, "stop") {
        None => {}
        Some(Value::String(s)) => {
            config.insert("stopSequences".into(), json!([s]));
        }
        Some(Value::Array(stops)) if stops.is_empty() => {}
        Some(Value::Array(stops)) if stops.iter().all(Value::is_string) => {
            config.insert("stopSequences".into(), Value::Array(stops.clone()));
        }
        Some(_) => {
            return Err(invalid(
                Some("stop"),
                "stop must be a string or an array of strings",
            ))
        }
    }
    if let Some(n) = count(request, "n")? {
        if n != 1 {
            return Err(invalid(
                Some("n"),
                "a Gemini backend is asked for one choice only: n must be 1",
            ));
        }
        config.insert("candidateCount".into(), json!(1));
    }
    if let Some(format) = present(request, "response_format") {
        let kind = format.get("type").and_then(Value::as_str);
        match kind {
            Some("text") => {}
            Some("json_object") => {
                config.insert("responseMimeType".into(), json!("application/json"));
            }
            Some("json_schema") => {
                config.insert("responseMimeType".into(), json!("application/json"));
                if let Some(schema) = format
                    .get("json_schema")
                    .and_then(|s| s.get("schema"))
                    .filter(|s| !s.is_null())
                {
                    config.insert("responseJsonSchema".into(), schema.clone());
                }
            }
            _ => {
                return Err(invalid(
                    Some("response_format"),
                    "response_format.type must be text, json_object or json_schema",
                ))
            }
        }
    }
    Ok((config, max_tokens))
}

/// `tools` → one tool of `functionDeclarations`.
fn tools(request: &Map<String, Value>) -> Result<Option<Value>, LocalReply> {
    let Some(tools) = present(request, "tools") else {
        return Ok(None);
    };
    let tools = tools
        .as_array()
        .ok_or_else(|| invalid(Some("tools"), "tools must be an array"))?;
    let mut declarations = Vec::with_capacity(tools.len());
    for tool in tools {
        let kind = tool.get("type").and_then(Value::as_str).unwrap_or_default();
        if kind != "function" {
            return Err(invalid(
                Some("tools"),
                &format!(
                    "tool type {kind:?} is not supported for a Gemini backend: functions only"
                ),
            ));
        }
        let function = tool
            .get("function")
            .ok_or_else(|| invalid(Some("tools"), "a function tool needs its function"))?;
        let name = function
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| invalid(Some("tools"), "a function tool needs a name"))?;
        let mut declaration = Map::new();
        declaration.insert("name".into(), json!(name));
        if let Some(description) = function.get("description").and_then(Value::as_str) {
            declaration.insert("description".into(), json!(description));
        }
        if let Some(parameters) = function.get("parameters").filter(|p| !p.is_null()) {
            declaration.insert("parametersJsonSchema".into(), parameters.clone());
        }
        declarations.push(Value::Object(declaration));
    }
    if declarations.is_empty() {
        return Ok(None);
    }
    Ok(Some(json!([{ "functionDeclarations": declarations }])))
}

/// `tool_choice` → `toolConfig.functionCallingConfig`.
fn tool_config(request: &Map<String, Value>) -> Result<Option<Value>, LocalReply> {
    let Some(choice) = present(request, "tool_choice") else {
        return Ok(None);
    };
    let bad = || {
        invalid(
            Some("tool_choice"),
            "tool_choice must be auto, none, required or a named function",
        )
    };
    let config = match choice {
        Value::String(mode) => {
            let mode = match mode.as_str() {
                "auto" => "AUTO",
                "none" => "NONE",
                "required" => "ANY",
                _ => return Err(bad()),
            };
            json!({ "mode": mode })
        }
        Value::Object(named) => {
            let name = named
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .ok_or_else(bad)?;
            json!({ "mode": "ANY", "allowedFunctionNames": [name] })
        }
        _ => return Err(bad()),
    };
    Ok(Some(json!({ "functionCallingConfig": config })))
}

// ---------------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------------

/// OpenAI's finish reason for Gemini's.
fn finish_reason(gemini: &str, calls: bool) -> &'static str {
    match gemini {
        "MAX_TOKENS" => "length",
        "SAFETY"
        | "RECITATION"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT"
        | "IMAGE_RECITATION" => "content_filter",
        _ if calls => "tool_calls",
        _ => "stop",
    }
}

/// Gemini's `usageMetadata`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct TokenCounts {
    prompt: u64,
    candidates: u64,
    thoughts: u64,
    total: Option<u64>,
    cached: Option<u64>,
}

impl TokenCounts {
    fn read(meta: &Value) -> Option<TokenCounts> {
        let field = |name: &str| meta.get(name).and_then(Value::as_u64);
        meta.is_object().then(|| TokenCounts {
            prompt: field("promptTokenCount").unwrap_or(0),
            candidates: field("candidatesTokenCount").unwrap_or(0),
            thoughts: field("thoughtsTokenCount").unwrap_or(0),
            total: field("totalTokenCount"),
            cached: field("cachedContentTokenCount"),
        })
    }

    /// Thoughts are output tokens the caller pays for.
    fn completion(self) -> u64 {
        self.candidates.saturating_add(self.thoughts)
    }

    fn total(self) -> u64 {
        self.total
            .unwrap_or_else(|| self.prompt.saturating_add(self.completion()))
    }

    fn usage(self) -> Usage {
        Usage {
            total: self.total(),
            input: Some(self.prompt),
            output: Some(self.completion()),
        }
    }

    fn json(self) -> Value {
        let mut usage = Map::new();
        usage.insert("prompt_tokens".into(), json!(self.prompt));
        usage.insert("completion_tokens".into(), json!(self.completion()));
        usage.insert("total_tokens".into(), json!(self.total()));
        if let Some(cached) = self.cached {
            usage.insert(
                "prompt_tokens_details".into(),
                json!({ "cached_tokens": cached }),
            );
        }
        if self.thoughts > 0 {
            usage.insert(
                "completion_tokens_details".into(),
                json!({ "reasoning_tokens": self.thoughts }),
            );
        }
        Value::Object(usage)
    }
}

/// What one `GenerateContentResponse` says.
#[derive(Debug, Default)]
struct Response<'a> {
    /// Text and function calls of the first candidate, in order; thoughts
    /// left out.
    pieces: Vec<Piece<'a>>,
    /// `finishReason` of the first candidate, or `promptFeedback`'s block.
    finish: Option<Finish<'a>>,
    counts: Option<TokenCounts>,
}

#[derive(Debug)]
enum Piece<'a> {
    Text(&'a str),
    Call { name: &'a str, args: &'a Value },
}

#[derive(Debug, Clone, Copy)]
enum Finish<'a> {
    Reason(&'a str),
    PromptBlocked,
}

/// Reads a response; `Err` with Gemini's error when it holds one, `Ok(None)`
/// when it is no response at all.
fn read_response(v: &Value) -> Result<Option<Response<'_>>, &Value> {
    if let Some(error) = v.get("error").filter(|e| !e.is_null()) {
        return Err(error);
    }
    let Some(object) = v.as_object() else {
        return Ok(None);
    };
    let mut response = Response {
        counts: object.get("usageMetadata").and_then(TokenCounts::read),
        ..Response::default()
    };
    let candidate = object
        .get("candidates")
        .and_then(Value::as_array)
        .and_then(|c| c.first());
    match candidate {
        Some(candidate) => {
            let parts = candidate
                .get("content")
                .and_then(|c| c.get("parts"))
                .and_then(Value::as_array);
            for part in parts.into_iter().flatten() {
                if part.get("thought").and_then(Value::as_bool) == Some(true) {
                    continue;
                }
                if let Some(text) = part.get("text").and_then(Value::as_str) {
                    if !text.is_empty() {
                        response.pieces.push(Piece::Text(text));
                    }
                } else if let Some(call) = part.get("functionCall") {
                    let name = call.get("name").and_then(Value::as_str).unwrap_or_default();
                    let args = call.get("args").unwrap_or(&Value::Null);
                    response.pieces.push(Piece::Call { name, args });
                }
            }
            response.finish = candidate
                .get("finishReason")
                .and_then(Value::as_str)
                .filter(|r| !r.is_empty() && *r != "FINISH_REASON_UNSPECIFIED")
                .map(Finish::Reason);
        }
        None => {
            let blocked = object
                .get("promptFeedback")
                .and_then(|f| f.get("blockReason"))
                .and_then(Value::as_str)
                .is_some_and(|r| !r.is_empty());
            if blocked {
                response.finish = Some(Finish::PromptBlocked);
            } else if response.counts.is_none() && !object.contains_key("candidates") {
                return Ok(None);
            }
        }
    }
    Ok(Some(response))
}

/// A function call's arguments as OpenAI's JSON text (`{}` when absent).
fn arguments(args: &Value) -> String {
    if args.is_null() {
        "{}".to_string()
    } else {
        args.to_string()
    }
}

fn call_id(n: usize) -> String {
    format!("call_{n}")
}

/// The seconds a Gemini error's `RetryInfo` asks to wait (`"30s"`,
/// `"1.5s"`), rounded up.
fn retry_delay(error: &Value) -> Option<u64> {
    let details = error.get("details").and_then(Value::as_array)?;
    details.iter().find_map(|d| {
        let delay = d.get("retryDelay").and_then(Value::as_str)?;
        let seconds: f64 = delay.strip_suffix('s')?.parse().ok()?;
        (seconds.is_finite() && seconds >= 0.0).then(|| seconds.ceil().max(1.0) as u64)
    })
}

/// Gemini's error (`{"code","message","status"}`) as OpenAI's, with its
/// HTTP status (the upstream's, or the error's own code when the upstream
/// said 2xx) and a `retry-after` hint.
fn provider_error(http_status: u32, error: Option<&Value>) -> (LocalReply, Option<String>) {
    let code = error
        .and_then(|e| e.get("code"))
        .and_then(Value::as_u64)
        .and_then(|c| u32::try_from(c).ok());
    let status = if (400..600).contains(&http_status) {
        http_status
    } else {
        code.filter(|c| (400..600).contains(c)).unwrap_or(502)
    };
    let kind = match status {
        400 | 409 | 413 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        500..=599 => "server_error",
        _ => "invalid_request_error",
    };
    let gemini_status = error
        .and_then(|e| e.get("status"))
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase);
    let message = match error.and_then(|e| e.get("message")).and_then(Value::as_str) {
        Some(m) => format!("the Gemini backend answered: {m}"),
        None => format!("the Gemini backend answered HTTP {http_status}"),
    };
    let reply = LocalReply::error(
        status,
        kind,
        Some(gemini_status.as_deref().unwrap_or("provider_error")),
        None,
        &message,
    );
    let retry_after = match status {
        429 | 503 => error
            .and_then(retry_delay)
            .map(|s| s.to_string())
            .or_else(|| (status == 503).then(|| "1".to_string())),
        _ => None,
    };
    (reply, retry_after)
}

/// A 2xx answer that is no Gemini response.
fn not_a_response() -> LocalReply {
    LocalReply::error(
        502,
        "server_error",
        Some("provider_error"),
        None,
        "the Gemini backend's answer is not a GenerateContentResponse",
    )
}

/// Gemini's error body: an object, or (some versions) an array holding one.
fn error_in(v: &Value) -> Option<&Value> {
    let object = match v {
        Value::Array(items) => items.first()?,
        other => other,
    };
    object.get("error").filter(|e| e.is_object())
}

fn answer_of(reply: LocalReply, retry_after: Option<String>) -> Answer {
    Answer {
        status: reply.status,
        content_type: "application/json",
        body: reply.body.into_bytes(),
        retry_after,
    }
}

/// The whole answer to a non-streamed request: a `chat.completion`, or an
/// OpenAI error.
pub fn translate_answer(status: u32, body: &[u8], id: &Identity) -> Answer {
    let parsed = serde_json::from_slice::<Value>(body).ok();
    if !(200..300).contains(&status) {
        let (reply, retry_after) = provider_error(status, parsed.as_ref().and_then(error_in));
        return answer_of(reply, retry_after);
    }
    let Some(parsed) = parsed else {
        return answer_of(not_a_response(), None);
    };
    // One response, or the array `streamGenerateContent` gives without
    // `alt=sse`: read alike.
    let responses: Vec<&Value> = match &parsed {
        Value::Array(items) => items.iter().collect(),
        one => vec![one],
    };
    let mut text = String::new();
    let mut calls = Vec::new();
    let mut finish = None;
    let mut counts = None;
    let mut any = false;
    for v in responses {
        match read_response(v) {
            Err(error) => {
                let (reply, retry_after) = provider_error(status, Some(error));
                return answer_of(reply, retry_after);
            }
            Ok(None) => return answer_of(not_a_response(), None),
            Ok(Some(response)) => {
                any = true;
                for piece in response.pieces {
                    match piece {
                        Piece::Text(t) => text.push_str(t),
                        Piece::Call { name, args } => calls.push(json!({
                            "id": call_id(calls.len()),
                            "type": "function",
                            "function": { "name": name, "arguments": arguments(args) },
                        })),
                    }
                }
                finish = response.finish.or(finish);
                counts = response.counts.or(counts);
            }
        }
    }
    if !any {
        return answer_of(not_a_response(), None);
    }
    let reason = match finish {
        Some(Finish::Reason(r)) => finish_reason(r, !calls.is_empty()),
        Some(Finish::PromptBlocked) => "content_filter",
        None => finish_reason("STOP", !calls.is_empty()),
    };
    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    // OpenAI's content is null beside tool calls when nothing was said.
    let content = if text.is_empty() && !calls.is_empty() {
        Value::Null
    } else {
        Value::String(text)
    };
    message.insert("content".into(), content);
    if !calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(calls));
    }
    let mut completion = Map::new();
    completion.insert("id".into(), json!(id.id));
    completion.insert("object".into(), json!("chat.completion"));
    completion.insert("created".into(), json!(id.created));
    completion.insert("model".into(), json!(id.model));
    completion.insert(
        "choices".into(),
        json!([ { "index": 0, "message": message, "finish_reason": reason } ]),
    );
    if let Some(counts) = counts {
        completion.insert("usage".into(), counts.json());
    }
    let completion = Value::Object(completion);
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

/// Turns Gemini's SSE stream (each `data:` a whole
/// `GenerateContentResponse`) into `chat.completion.chunk` events as it
/// arrives.
pub type ChatStream = Stream<StreamState>;

/// Everything of a [`ChatStream`] but its event reader (which calls it
/// back): a few counters, whatever the answer's length.
pub struct StreamState {
    id: Identity,
    include_usage: bool,
    role_sent: bool,
    /// Tool calls sent so far (the next one's index).
    calls: usize,
    /// The finish chunk went out: later events may still bring usage.
    finished: bool,
    counts: Option<TokenCounts>,
    done: bool,
}

impl ChatStream {
    pub fn new(id: Identity, include_usage: bool) -> Self {
        Stream::with(StreamState {
            id,
            include_usage,
            role_sent: false,
            calls: 0,
            finished: false,
            counts: None,
            done: false,
        })
    }

    /// The upstream answered a stream request whole: an error, one JSON
    /// `GenerateContentResponse`, or a JSON array of them (as
    /// `streamGenerateContent` without `alt=sse` gives). Chunks (or an
    /// error event) and `[DONE]`.
    pub fn whole(&mut self, status: u32, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if self.inner.done {
            return out;
        }
        self.let_go();
        let parsed = serde_json::from_slice::<Value>(body).ok();
        if !(200..300).contains(&status) {
            let (reply, _) = provider_error(status, parsed.as_ref().and_then(error_in));
            self.inner.fail(&mut out, &reply);
            return out;
        }
        let responses: Vec<&Value> = match &parsed {
            Some(Value::Array(items)) if !items.is_empty() => items.iter().collect(),
            Some(one @ Value::Object(_)) => vec![one],
            _ => Vec::new(),
        };
        // The same check as a whole answer's: every item a response.
        if responses.is_empty()
            || responses
                .iter()
                .any(|v| matches!(read_response(v), Ok(None)))
        {
            self.inner.fail(&mut out, &not_a_response());
            return out;
        }
        for v in responses {
            if self.inner.done {
                break;
            }
            self.inner.on_response(v, &mut out);
        }
        // A whole answer is complete: no finish reason means `stop`.
        self.inner.conclude(&mut out, true);
        out
    }

    /// The tokens `usageMetadata` reported, if any came, whether or not the
    /// client asked for a usage chunk.
    pub fn usage(&self) -> Option<Usage> {
        self.inner.counts.map(TokenCounts::usage)
    }
}

impl Events for StreamState {
    fn on_event(&mut self, event: SseEvent<'_>, out: &mut Vec<u8>) {
        StreamState::on_event(self, event, out);
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
        self.fail(out, &error);
    }

    fn upstream_ended(&mut self, out: &mut Vec<u8>) {
        self.conclude(out, false);
    }

    /// A few counters, whatever the answer's length.
    fn held(&self) -> usize {
        0
    }
}

impl StreamState {
    fn on_event(&mut self, event: SseEvent<'_>, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        match event {
            SseEvent::TooLong => {
                let error = LocalReply::error(
                    502,
                    "server_error",
                    Some("provider_event_too_large"),
                    None,
                    &format!(
                        "an event of the Gemini backend's stream is over {MAX_EVENT_BYTES} bytes"
                    ),
                );
                self.fail(out, &error);
            }
            SseEvent::Data(data) => {
                // Anything but JSON (a keep-alive, say) carries nothing.
                if let Ok(v) = serde_json::from_slice::<Value>(data) {
                    self.on_response(&v, out);
                }
            }
        }
    }

    fn on_response(&mut self, v: &Value, out: &mut Vec<u8>) {
        let response = match read_response(v) {
            Err(error) => {
                let (reply, _) = provider_error(0, Some(error));
                return self.fail(out, &reply);
            }
            Ok(None) => return,
            Ok(Some(response)) => response,
        };
        if response.counts.is_some() {
            self.counts = response.counts;
        }
        if self.finished {
            return;
        }
        let mut text = String::new();
        for piece in &response.pieces {
            match piece {
                Piece::Text(t) => text.push_str(t),
                Piece::Call { name, args } => {
                    // Text before a call goes first, as it came.
                    if !text.is_empty() {
                        self.content(out, &text);
                        text.clear();
                    }
                    self.tool_call(out, name, args);
                }
            }
        }
        if !text.is_empty() {
            self.content(out, &text);
        }
        match response.finish {
            Some(Finish::Reason(r)) => self.finish_chunk(out, finish_reason(r, self.calls > 0)),
            Some(Finish::PromptBlocked) => self.finish_chunk(out, "content_filter"),
            None => {}
        }
    }

    fn chunk(&mut self, mut delta: Value, finish_reason: Option<&str>) -> Value {
        if !self.role_sent {
            self.role_sent = true;
            if let Some(d) = delta.as_object_mut() {
                d.insert("role".into(), json!("assistant"));
            }
        }
        json!({
            "id": self.id.id,
            "object": "chat.completion.chunk",
            "created": self.id.created,
            "model": self.id.model,
            "choices": [ { "index": 0, "delta": delta, "finish_reason": finish_reason } ]
        })
    }

    fn content(&mut self, out: &mut Vec<u8>, text: &str) {
        let chunk = self.chunk(json!({ "content": text }), None);
        emit(out, &chunk);
    }

    fn tool_call(&mut self, out: &mut Vec<u8>, name: &str, args: &Value) {
        let index = self.calls;
        self.calls += 1;
        let delta = json!({ "tool_calls": [ {
            "index": index,
            "id": call_id(index),
            "type": "function",
            "function": { "name": name, "arguments": arguments(args) },
        } ] });
        let chunk = self.chunk(delta, None);
        emit(out, &chunk);
    }

    fn finish_chunk(&mut self, out: &mut Vec<u8>, reason: &str) {
        let delta = if self.role_sent {
            json!({})
        } else {
            json!({ "content": "" })
        };
        let chunk = self.chunk(delta, Some(reason));
        emit(out, &chunk);
        self.finished = true;
    }

    /// The end: the usage chunk (if asked and known) and `[DONE]`; or, if
    /// no finish reason came, `stop` for a whole answer and an error for a
    /// stream.
    fn conclude(&mut self, out: &mut Vec<u8>, whole: bool) {
        if self.done {
            return;
        }
        if !self.finished {
            if whole {
                let reason = finish_reason("STOP", self.calls > 0);
                self.finish_chunk(out, reason);
            } else {
                let error = LocalReply::error(
                    502,
                    "server_error",
                    Some("provider_stream_incomplete"),
                    None,
                    "the Gemini backend's stream ended before its finish reason",
                );
                return self.fail(out, &error);
            }
        }
        if self.include_usage {
            if let Some(counts) = self.counts {
                let chunk = json!({
                    "id": self.id.id,
                    "object": "chat.completion.chunk",
                    "created": self.id.created,
                    "model": self.id.model,
                    "choices": [],
                    "usage": counts.json(),
                });
                emit(out, &chunk);
            }
        }
        self.end(out);
    }

    /// An error event (OpenAI streams report a failure as an event holding
    /// `error`) and `[DONE]`.
    fn fail(&mut self, out: &mut Vec<u8>, error: &LocalReply) {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(error.body.as_bytes());
        out.extend_from_slice(b"\n\n");
        self.end(out);
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        self.done = true;
        out.extend_from_slice(b"data: [DONE]\n\n");
    }
}

fn emit(out: &mut Vec<u8>, event: &Value) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(event.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn opts() -> ProviderOptions {
        ProviderOptions::default()
    }

    fn request(body: Value) -> (Upstream, Value) {
        let up = translate_request(body.to_string().as_bytes(), &opts()).unwrap();
        let v = serde_json::from_slice(&up.body).unwrap();
        (up, v)
    }

    fn refused(body: Value) -> (u32, Value) {
        let r = translate_request(body.to_string().as_bytes(), &opts()).unwrap_err();
        (r.status, serde_json::from_str(&r.body).unwrap())
    }

    fn identity() -> Identity {
        Identity {
            id: "chatcmpl-1".into(),
            model: "gemini-pro".into(),
            created: 7,
        }
    }

    #[test]
    fn paths_and_models() {
        let (up, _) = request(
            json!({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]}),
        );
        assert_eq!(up.path, "/v1beta/models/gemini-2.5-flash:generateContent");
        assert!(!up.stream);
        assert_eq!(up.model, "gemini-2.5-flash");
        let (up, _) = request(json!({"model": "models/gemini-2.5-pro", "stream": true,
            "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "hi"}]}));
        assert_eq!(
            up.path,
            "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
        );
        assert!(up.stream && up.include_usage);
        assert_eq!(up.model, "models/gemini-2.5-pro", "the client's, echoed");
        // The entry's model and version win; the client's is still echoed.
        let o = ProviderOptions {
            model: Some("gemini-2.0-flash".into()),
            version: Some("v1".into()),
            ..ProviderOptions::default()
        };
        let up = translate_request(
            br#"{"model":"fast","messages":[{"role":"user","content":"x"}]}"#,
            &o,
        )
        .unwrap();
        assert_eq!(up.path, "/v1/models/gemini-2.0-flash:generateContent");
        assert_eq!(up.model, "fast");
        for bad in [
            "a/b", "..", ".", "a?b", "a#b", "a%2Fb", "a b", "", "models/", "gémini",
        ] {
            let (status, v) =
                refused(json!({"model": bad, "messages": [{"role": "user", "content": "x"}]}));
            assert_eq!(status, 400, "{bad}");
            assert_eq!(v["error"]["type"], "invalid_request_error");
            assert_eq!(v["error"]["param"], "model");
        }
        // path() never lets anything through, whoever calls it.
        assert_eq!(
            path(&opts(), "../x?y#z", false),
            "/v1beta/models/%2E%2E%2Fx%3Fy%23z:generateContent"
        );
        assert_eq!(
            path(&opts(), "..", true),
            "/v1beta/models/%2E%2E:streamGenerateContent?alt=sse"
        );
        let odd = ProviderOptions {
            version: Some("v1/../x".into()),
            ..ProviderOptions::default()
        };
        assert_eq!(
            path(&odd, "m", false),
            "/v1%2F%2E%2E%2Fx/models/m:generateContent"
        );
    }

    #[test]
    fn roles_become_contents_and_system_instruction() {
        let (_, v) = request(json!({"model": "m", "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "developer", "content": [{"type": "text", "text": "and kind"}]},
            {"role": "user", "content": "one"},
            {"role": "user", "content": [{"type": "text", "text": "two"}]},
            {"role": "assistant", "content": "answer"},
            {"role": "assistant", "content": null, "refusal": null},
            {"role": "user", "content": "three"}
        ]}));
        assert_eq!(
            v["systemInstruction"],
            json!({"parts": [{"text": "be brief"}, {"text": "and kind"}]})
        );
        assert_eq!(
            v["contents"],
            json!([
                {"role": "user", "parts": [{"text": "one"}, {"text": "two"}]},
                {"role": "model", "parts": [{"text": "answer"}]},
                {"role": "user", "parts": [{"text": "three"}]}
            ])
        );
        assert!(v.get("generationConfig").is_none());
        assert!(v.get("tools").is_none());
    }

    #[test]
    fn images_audio_and_files() {
        let (_, v) = request(
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.webp?size=2", "detail": "high"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/photo"}},
                {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
                {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}}
            ]}]}),
        );
        assert_eq!(
            v["contents"][0]["parts"],
            json!([
                {"text": "what is this?"},
                {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/cat.webp?size=2"}},
                {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/photo"}},
                {"inlineData": {"mimeType": "audio/wav", "data": "AAAA"}},
                {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}}
            ])
        );
        for part in [
            json!({"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}),
            json!({"type": "image_url", "image_url": {"url": "data:image/png,notbase64"}}),
            json!({"type": "file", "file": {"file_id": "file-1"}}),
            json!({"type": "video", "video": {}}),
            json!({"type": "image_url"}),
        ] {
            let (status, v) =
                refused(json!({"model": "m", "messages": [{"role": "user", "content": [part]}]}));
            assert_eq!(status, 400, "{part}");
            assert_eq!(v["error"]["param"], "messages[0]");
        }
        // Images in a system or assistant message are refused too.
        let (status, _) = refused(
            json!({"model": "m", "messages": [{"role": "system", "content": [
            {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}, {"role": "user", "content": "x"}]}),
        );
        assert_eq!(status, 400);
    }

    #[test]
    fn tool_calls_and_results() {
        let (_, v) = request(json!({"model": "m", "messages": [
            {"role": "user", "content": "weather in Paris and Rome?"},
            {"role": "assistant", "content": "Looking.", "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_b", "type": "function", "function": {"name": "forecast", "arguments": ""}}
            ]},
            {"role": "tool", "tool_call_id": "call_a", "content": "{\"temp\": 21}"},
            {"role": "tool", "tool_call_id": "call_b", "content": [{"type": "text", "text": "sunny"}]},
            {"role": "user", "content": "thanks"}
        ]}));
        assert_eq!(
            v["contents"],
            json!([
                {"role": "user", "parts": [{"text": "weather in Paris and Rome?"}]},
                {"role": "model", "parts": [
                    {"text": "Looking."},
                    {"functionCall": {"name": "weather", "args": {"city": "Paris"}},
                     "thoughtSignature": "skip_thought_signature_validator"},
                    {"functionCall": {"name": "forecast", "args": {}}}
                ]},
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "weather", "response": {"temp": 21}}},
                    {"functionResponse": {"name": "forecast", "response": {"content": "sunny"}}},
                    {"text": "thanks"}
                ]}
            ])
        );
        let unknown = json!({"model": "m", "messages": [
            {"role": "user", "content": "x"},
            {"role": "tool", "tool_call_id": "call_zzz", "content": "r"}
        ]});
        let (status, v) = refused(unknown);
        assert_eq!(status, 400);
        assert!(v["error"]["message"].as_str().unwrap().contains("call_zzz"));
        for arguments in ["[1]", "not json", "3"] {
            let (status, _) = refused(json!({"model": "m", "messages": [
                {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                    "function": {"name": "f", "arguments": arguments}}]}]}));
            assert_eq!(status, 400, "{arguments}");
        }
        // Ids repeat across answers (call_0 in each): the latest call wins.
        let (_, v) = request(json!({"model": "m", "messages": [
            {"role": "assistant", "tool_calls": [{"id": "call_0", "function": {"name": "first", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_0", "content": "1"},
            {"role": "assistant", "tool_calls": [{"id": "call_0", "function": {"name": "second", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_0", "content": "2"}
        ]}));
        assert_eq!(
            v["contents"][3]["parts"][0]["functionResponse"]["name"],
            "second"
        );
        assert_eq!(
            v["contents"][3]["parts"][0]["functionResponse"]["response"],
            json!({"content": "2"})
        );
    }

    #[test]
    fn generation_config_tools_and_choice() {
        let (up, v) = request(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "max_tokens": 100, "temperature": 0.5, "top_p": 0.9, "stop": "END", "n": 1, "seed": 42,
            "presence_penalty": 0.1, "frequency_penalty": -0.2,
            "response_format": {"type": "json_object"},
            "logprobs": true, "logit_bias": {"1": 2}, "user": "u", "store": false,
            "metadata": {"a": "b"}, "parallel_tool_calls": false, "service_tier": "auto",
            "tools": [{"type": "function", "function": {"name": "weather", "description": "Weather of a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
                {"type": "function", "function": {"name": "now"}}],
            "tool_choice": "required"}),
        );
        assert_eq!(up.max_tokens, Some(100));
        assert_eq!(
            v["generationConfig"],
            json!({"maxOutputTokens": 100, "temperature": 0.5, "topP": 0.9,
                "presencePenalty": 0.1, "frequencyPenalty": -0.2, "seed": 42,
                "stopSequences": ["END"], "candidateCount": 1,
                "responseMimeType": "application/json"})
        );
        assert_eq!(
            v["tools"],
            json!([{"functionDeclarations": [
                {"name": "weather", "description": "Weather of a city", "parametersJsonSchema":
                    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
                {"name": "now"}
            ]}])
        );
        assert_eq!(
            v["toolConfig"],
            json!({"functionCallingConfig": {"mode": "ANY"}})
        );
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["contents", "tools", "toolConfig", "generationConfig"]
        );
        for dropped in [
            "logprobs",
            "logit_bias",
            "user",
            "store",
            "metadata",
            "parallel_tool_calls",
            "service_tier",
        ] {
            assert!(v.get(dropped).is_none(), "{dropped}");
            assert!(
                !v["generationConfig"].to_string().contains(dropped),
                "{dropped}"
            );
            assert!(
                !v["generationConfig"].to_string().contains(dropped),
                "{dropped}"
            );
        }
        let (up, v) = request(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "max_completion_tokens": 64, "max_tokens": 9, "stop": ["a", "b"], "temperature": null,
            "response_format": {"type": "json_schema", "json_schema": {"name": "r", "strict": true,
                "schema": {"type": "object", "properties": {"n": {"type": "integer"}}}}},
            "tool_choice": {"type": "function", "function": {"name": "weather"}}}),
        );
        assert_eq!(up.max_tokens, Some(64));
        assert_eq!(
            v["generationConfig"],
            json!({"maxOutputTokens": 64, "stopSequences": ["a", "b"],
                "responseMimeType": "application/json",
                "responseJsonSchema": {"type": "object", "properties": {"n": {"type": "integer"}}}})
        );
        assert_eq!(
            v["toolConfig"],
            json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["weather"]}})
        );
        for (choice, mode) in [("auto", "AUTO"), ("none", "NONE")] {
            let (_, v) = request(
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": choice}),
            );
            assert_eq!(v["toolConfig"]["functionCallingConfig"]["mode"], mode);
        }
        for (key, value) in [
            ("n", json!(2)),
            ("max_tokens", json!(-1)),
            ("temperature", json!("hot")),
            ("stop", json!([1])),
            ("tool_choice", json!("sometimes")),
            ("tools", json!([{"type": "web_search"}])),
            ("response_format", json!({"type": "yaml"})),
            ("stream", json!("yes")),
            ("functions", json!([{"name": "f"}])),
            ("function_call", json!("auto")),
        ] {
            let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
            body[key] = value;
            let (status, v) = refused(body);
            assert_eq!(status, 400, "{key}");
            assert_eq!(v["error"]["param"], key);
        }
    }

    #[test]
    fn bad_requests() {
        let r = translate_request(b"{", &opts()).unwrap_err();
        assert_eq!(r.status, 400);
        assert!(r.body.contains("invalid_json"));
        for body in [
            json!({"model": "m"}),
            json!({"model": "m", "messages": "hi"}),
            json!({"model": "m", "messages": []}),
            json!({"model": "m", "messages": [{"role": "system", "content": "only"}]}),
            json!({"model": "m", "messages": [{"role": "function", "content": "x", "name": "f"}]}),
            json!({"model": "m", "messages": [{"content": "x"}]}),
            json!([1]),
        ] {
            assert_eq!(refused(body.clone()).0, 400, "{body}");
        }
    }

    fn answer(status: u32, body: Value) -> (Answer, Value) {
        let a = translate_answer(status, body.to_string().as_bytes(), &identity());
        let v = serde_json::from_slice(&a.body).unwrap();
        (a, v)
    }

    #[test]
    fn answers_with_text_calls_and_usage() {
        let (a, v) = answer(
            200,
            json!({
            "candidates": [{"content": {"role": "model", "parts": [
                {"text": "thinking...", "thought": true},
                {"text": "Hello"}, {"text": ", world"}]},
                "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5,
                "thoughtsTokenCount": 3, "totalTokenCount": 18, "cachedContentTokenCount": 4},
            "modelVersion": "gemini-2.5-flash"}),
        );
        assert_eq!(
            (a.status, a.content_type, a.retry_after),
            (200, "application/json", None)
        );
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["id"], "chatcmpl-1");
        assert_eq!(v["model"], "gemini-pro");
        assert_eq!(v["created"], 7);
        assert_eq!(
            v["choices"][0]["message"],
            json!({"role": "assistant", "content": "Hello, world"})
        );
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(
            v["usage"],
            json!({"prompt_tokens": 10, "completion_tokens": 8, "total_tokens": 18,
                "prompt_tokens_details": {"cached_tokens": 4},
                "completion_tokens_details": {"reasoning_tokens": 3}})
        );
        let (_, v) = answer(
            200,
            json!({
            "candidates": [{"content": {"role": "model", "parts": [
                {"functionCall": {"name": "weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2ln"},
                {"functionCall": {"name": "now"}}]},
                "finishReason": "STOP"}]}),
        );
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(v["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(
            v["choices"][0]["message"]["tool_calls"],
            json!([
                {"id": "call_0", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_1", "type": "function", "function": {"name": "now", "arguments": "{}"}}
            ])
        );
        assert!(v.get("usage").is_none());
    }

    #[test]
    fn finish_reasons() {
        for (gemini, openai) in [
            ("STOP", "stop"),
            ("MAX_TOKENS", "length"),
            ("SAFETY", "content_filter"),
            ("RECITATION", "content_filter"),
            ("BLOCKLIST", "content_filter"),
            ("PROHIBITED_CONTENT", "content_filter"),
            ("SPII", "content_filter"),
            ("IMAGE_SAFETY", "content_filter"),
            ("OTHER", "stop"),
            ("MALFORMED_FUNCTION_CALL", "stop"),
            ("LANGUAGE", "stop"),
        ] {
            let (_, v) = answer(
                200,
                json!({"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": gemini}]}),
            );
            assert_eq!(v["choices"][0]["finish_reason"], openai, "{gemini}");
        }
        let (a, v) = answer(
            200,
            json!({"promptFeedback": {"blockReason": "SAFETY"},
            "usageMetadata": {"promptTokenCount": 3, "totalTokenCount": 3}}),
        );
        assert_eq!(a.status, 200);
        assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(v["choices"][0]["message"]["content"], "");
        assert_eq!(v["usage"]["total_tokens"], 3);
        // A candidate blocked before any content.
        let (_, v) = answer(200, json!({"candidates": [{"finishReason": "SAFETY"}]}));
        assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(v["choices"][0]["message"]["content"], "");
    }

    #[test]
    fn errors_keep_their_status() {
        let gemini_error = |code: u32, status: &str| json!({"error": {"code": code, "message": "no good", "status": status}});
        for (code, status, kind, retry) in [
            (400, "INVALID_ARGUMENT", "invalid_request_error", None),
            (401, "UNAUTHENTICATED", "authentication_error", None),
            (403, "PERMISSION_DENIED", "permission_error", None),
            (404, "NOT_FOUND", "not_found_error", None),
            (429, "RESOURCE_EXHAUSTED", "rate_limit_error", None),
            (500, "INTERNAL", "server_error", None),
            (503, "UNAVAILABLE", "server_error", Some("1".to_string())),
        ] {
            let (a, v) = answer(code, gemini_error(code, status));
            assert_eq!(a.status, code);
            assert_eq!(v["error"]["type"], kind, "{code}");
            assert_eq!(v["error"]["code"], status.to_ascii_lowercase());
            assert!(v["error"]["message"].as_str().unwrap().contains("no good"));
            assert_eq!(a.retry_after, retry, "{code}");
        }
        // RetryInfo's delay, rounded up.
        let (a, _) = answer(
            429,
            json!({"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12.5s"}]}}),
        );
        assert_eq!(a.retry_after.as_deref(), Some("13"));
        // An array holding the error, and a body that is not JSON.
        let (a, v) = answer(400, json!([gemini_error(400, "INVALID_ARGUMENT")]));
        assert_eq!(
            (a.status, v["error"]["code"].as_str()),
            (400, Some("invalid_argument"))
        );
        let a = translate_answer(502, b"<html>bad gateway</html>", &identity());
        let v: Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(
            (a.status, v["error"]["type"].as_str()),
            (502, Some("server_error"))
        );
        // 2xx bodies that are no response.
        for body in [&b"not json"[..], b"{}", b"[]", b"42", br#"{"foo": 1}"#] {
            let a = translate_answer(200, body, &identity());
            let v: Value = serde_json::from_slice(&a.body).unwrap();
            assert_eq!(a.status, 502, "{}", String::from_utf8_lossy(body));
            assert_eq!(v["error"]["code"], "provider_error");
        }
        // An error in a 200.
        let (a, _) = answer(200, gemini_error(429, "RESOURCE_EXHAUSTED"));
        assert_eq!(a.status, 429);
    }

    /// The events of a client stream: JSON values, and "[DONE]".
    fn events(out: &[u8]) -> Vec<Value> {
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(text.ends_with("\n\n") || text.is_empty());
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

    fn sse(responses: &[Value]) -> String {
        responses
            .iter()
            .map(|r| format!("data: {r}\r\n\r\n"))
            .collect()
    }

    fn stream_all(include_usage: bool, chunks: &[&[u8]]) -> (Vec<Value>, Option<Usage>) {
        let mut s = ChatStream::new(identity(), include_usage);
        let mut out = Vec::new();
        for c in chunks {
            out.extend(s.feed_within(c, usize::MAX));
        }
        out.extend(s.finish());
        assert_eq!(s.held(), 0);
        (events(&out), s.usage())
    }

    fn text_event(text: &str) -> Value {
        json!({"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}],
            "usageMetadata": {"promptTokenCount": 4, "totalTokenCount": 4}})
    }

    #[test]
    fn streams_text_calls_finish_and_usage() {
        let stream = sse(&[
            text_event("Hel"),
            json!({"candidates": [{"content": {"role": "model", "parts": [
                {"text": "hmm", "thought": true}, {"text": "lo"},
                {"functionCall": {"name": "weather", "args": {"city": "Rome"}}}]}}]}),
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": ""}]}, "finishReason": "STOP"}],
                "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 6, "thoughtsTokenCount": 2, "totalTokenCount": 12}}),
        ]);
        let (e, usage) = stream_all(true, &[stream.as_bytes()]);
        assert_eq!(e.len(), 6, "{e:?}");
        assert_eq!(e[0]["object"], "chat.completion.chunk");
        assert_eq!(e[0]["id"], "chatcmpl-1");
        assert_eq!(
            e[0]["choices"][0]["delta"],
            json!({"role": "assistant", "content": "Hel"})
        );
        assert_eq!(e[1]["choices"][0]["delta"], json!({"content": "lo"}));
        assert_eq!(
            e[2]["choices"][0]["delta"],
            json!({"tool_calls": [{"index": 0, "id": "call_0", "type": "function",
                "function": {"name": "weather", "arguments": "{\"city\":\"Rome\"}"}}]})
        );
        assert_eq!(e[3]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(e[3]["choices"][0]["delta"], json!({}));
        assert_eq!(e[4]["choices"], json!([]));
        assert_eq!(
            e[4]["usage"],
            json!({"prompt_tokens": 4, "completion_tokens": 8, "total_tokens": 12,
                "completion_tokens_details": {"reasoning_tokens": 2}})
        );
        assert_eq!(e[5], "[DONE]");
        assert_eq!(
            usage,
            Some(Usage {
                total: 12,
                input: Some(4),
                output: Some(8)
            })
        );
        // Any chunking gives the same.
        let bytes = stream.as_bytes();
        for cut in 0..bytes.len() {
            let (a, b) = bytes.split_at(cut);
            assert_eq!(stream_all(true, &[a, b]).0, e, "cut at {cut}");
        }
        // Without include_usage: no usage chunk, the usage still known.
        let (e, usage) = stream_all(false, &[stream.as_bytes()]);
        assert_eq!(e.len(), 5);
        assert_eq!(e[4], "[DONE]");
        assert_eq!(usage.map(|u| u.total), Some(12));
    }

    #[test]
    fn stream_finishes_and_failures() {
        // A finish with nothing said first still names the role.
        let (e, _) = stream_all(
            false,
            &[sse(&[json!({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}})]).as_bytes()],
        );
        assert_eq!(
            e[0]["choices"][0]["delta"],
            json!({"role": "assistant", "content": ""})
        );
        assert_eq!(e[0]["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(e[1], "[DONE]");
        // The stream breaks off.
        let (e, _) = stream_all(true, &[sse(&[text_event("partial")]).as_bytes()]);
        assert_eq!(e[0]["choices"][0]["delta"]["content"], "partial");
        assert_eq!(e[1]["error"]["code"], "provider_stream_incomplete");
        assert_eq!(e[2], "[DONE]");
        assert_eq!(e.len(), 3);
        // An error event mid-stream.
        let (e, _) = stream_all(
            false,
            &[sse(&[
                text_event("a"),
                json!({"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}),
            ])
            .as_bytes()],
        );
        assert_eq!(e[1]["error"]["type"], "server_error");
        assert_eq!(e[1]["error"]["code"], "unavailable");
        assert_eq!(e[2], "[DONE]");
        assert_eq!(e.len(), 3);
        // Keep-alives, comments and other events carry nothing.
        let text = format!(
            ": ping\n\ndata: not json\n\nevent: x\n\n{}",
            sse(&[
                json!({"candidates": [{"content": {"parts": [{"text": "ok"}]}, "finishReason": "MAX_TOKENS"}]})
            ])
        );
        let (e, _) = stream_all(true, &[text.as_bytes()]);
        assert_eq!(e[0]["choices"][0]["delta"]["content"], "ok");
        assert_eq!(e[1]["choices"][0]["finish_reason"], "length");
        assert_eq!(e[2], "[DONE]", "no usage known: no usage chunk");
        // An empty stream.
        let (e, _) = stream_all(false, &[]);
        assert_eq!(e[0]["error"]["code"], "provider_stream_incomplete");
        assert_eq!(e[1], "[DONE]");
        // Usage after the finish is still read; content is not.
        let text = sse(&[
            json!({"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": "STOP"}]}),
            json!({"candidates": [{"content": {"parts": [{"text": "late"}]}}],
                "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 1, "totalTokenCount": 2}}),
        ]);
        let (e, usage) = stream_all(true, &[text.as_bytes()]);
        assert_eq!(e.len(), 4, "{e:?}");
        assert_eq!(e[2]["usage"]["total_tokens"], 2);
        assert_eq!(usage.map(|u| u.total), Some(2));
    }

    #[test]
    fn whole_answers_to_stream_requests() {
        let mut s = ChatStream::new(identity(), true);
        let e = events(&s.whole(
            429,
            br#"{"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED"}}"#,
        ));
        assert_eq!(e[0]["error"]["type"], "rate_limit_error");
        assert_eq!(e[1], "[DONE]");
        assert!(s.finish().is_empty(), "ended");
        // One response, and the array :streamGenerateContent gives.
        let one = json!({"candidates": [{"content": {"parts": [{"text": "all"}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 2, "totalTokenCount": 3}});
        let mut s = ChatStream::new(identity(), true);
        let e = events(&s.whole(200, one.to_string().as_bytes()));
        assert_eq!(
            e[0]["choices"][0]["delta"],
            json!({"role": "assistant", "content": "all"})
        );
        assert_eq!(e[1]["choices"][0]["finish_reason"], "stop");
        assert_eq!(e[2]["usage"]["total_tokens"], 3);
        assert_eq!(e[3], "[DONE]");
        assert_eq!(s.usage().map(|u| u.total), Some(3));
        let array = json!([text_event("a"), text_event("b"),
            {"candidates": [{"content": {"parts": [{"text": "c"}]}, "finishReason": "STOP"}]}]);
        let e =
            events(&ChatStream::new(identity(), false).whole(200, array.to_string().as_bytes()));
        let text: String = e
            .iter()
            .filter_map(|v| v["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "abc");
        assert_eq!(e.last().unwrap(), "[DONE]");
        // Not a response.
        for body in [&b"<html>"[..], b"{}", b"[]", b"[1]"] {
            let e = events(&ChatStream::new(identity(), false).whole(200, body));
            assert_eq!(e[0]["error"]["code"], "provider_error");
            assert_eq!(e[1], "[DONE]");
        }
    }

    #[test]
    fn held_bytes_and_room() {
        let mut s = ChatStream::new(identity(), false);
        let partial = format!(
            "data: {{\"candidates\":[{{\"content\":{{\"parts\":[{{\"text\":\"{}",
            "x".repeat(10_000)
        );
        assert!(s.feed_within(partial.as_bytes(), usize::MAX).is_empty());
        assert!(s.held() >= partial.len());
        let out = s.feed_within(b"\"}]},\"finishReason\":\"STOP\"}]}\n\n", usize::MAX);
        assert_eq!(events(&out).len(), 2);
        assert_eq!(s.held(), 0);
        assert_eq!(events(&s.finish()).len(), 1);
        // Over its room: an error, [DONE], nothing held, nothing more.
        let mut s = ChatStream::new(identity(), false);
        let e = events(&s.feed_within(partial.as_bytes(), 5_000));
        assert_eq!(e[0]["error"]["code"], "gateway_memory_exhausted");
        assert_eq!(e[1], "[DONE]");
        assert!(s.cut_short());
        assert_eq!(s.held(), 0);
        assert!(s.feed_within(b"\"}]}}]}\n\n", usize::MAX).is_empty());
        assert!(s.finish().is_empty());
        assert!(s.whole(200, b"{}").is_empty());
        // An event over the bound ends the answer.
        let mut s = ChatStream::new(identity(), false);
        let mut out = s.feed_within(sse(&[text_event("before")]).as_bytes(), usize::MAX);
        out.extend(s.feed_within(b"data: ", usize::MAX));
        out.extend(s.feed_within(&vec![b'y'; MAX_EVENT_BYTES], usize::MAX));
        assert!(s.held() <= MAX_EVENT_BYTES);
        out.extend(s.finish());
        let e = events(&out);
        assert_eq!(e[0]["choices"][0]["delta"]["content"], "before");
        assert_eq!(e[1]["error"]["code"], "provider_event_too_large");
        assert_eq!(e[2], "[DONE]");
        assert!(!s.cut_short());
    }

    #[test]
    fn a_streamed_answer_matches_the_whole_one() {
        let parts = [
            json!({"text": "The weather: "}),
            json!({"functionCall": {"name": "weather", "args": {"city": "Oslo"}}}),
            json!({"text": "done"}),
        ];
        let meta = json!({"promptTokenCount": 5, "candidatesTokenCount": 7, "totalTokenCount": 12});
        let whole = json!({"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP"}], "usageMetadata": meta});
        let (_, w) = answer(200, whole);
        let stream = sse(&[
            json!({"candidates": [{"content": {"role": "model", "parts": [parts[0].clone()]}}]}),
            json!({"candidates": [{"content": {"role": "model", "parts": [parts[1].clone(), parts[2].clone()]}, "finishReason": "STOP"}], "usageMetadata": meta}),
        ]);
        let (e, _) = stream_all(true, &[stream.as_bytes()]);
        let text: String = e
            .iter()
            .filter_map(|v| v["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(w["choices"][0]["message"]["content"], text);
        let calls: Vec<Value> = e
            .iter()
            .filter_map(|v| v["choices"][0]["delta"]["tool_calls"].as_array())
            .flatten()
            .map(|c| json!({"id": c["id"], "type": c["type"], "function": c["function"]}))
            .collect();
        assert_eq!(w["choices"][0]["message"]["tool_calls"], json!(calls));
        let finish = e
            .iter()
            .find_map(|v| v["choices"][0]["finish_reason"].as_str())
            .unwrap();
        assert_eq!(w["choices"][0]["finish_reason"], finish);
        let usage = e.iter().find(|v| v.get("usage").is_some()).unwrap();
        assert_eq!(w["usage"], usage["usage"]);
    }
}
