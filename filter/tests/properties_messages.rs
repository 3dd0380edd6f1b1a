//! Property tests of the Anthropic surface's answer translation
//! (`llm::messages`): an OpenAI-compatible backend's answer, streamed or
//! whole, reaches the client as the same Anthropic message.
//!
//! An answer is generated as a backend gives it: text, tool calls with JSON
//! arguments, a finish reason (maybe a matched stop string, as vLLM names
//! it), usage or none. It is written as a whole `chat.completion` and as a
//! `chat.completion.chunk` stream (text and arguments cut into pieces
//! anywhere, framed as SSE in the ways backends frame it, the usage chunk
//! after the finish as `include_usage` sends it, `[DONE]` or not). Then:
//!
//! - (a) any chunking of the stream gives the same events as one chunk;
//! - (b) the events, read the way the `anthropic` SDK's accumulator reads
//!   them (and checked for the order it relies on), give the message the
//!   whole answer translates to: its content (text, tool calls with their
//!   inputs), stop reason and sequence, and usage; and a whole answer given
//!   to a stream request (`MessageStream::whole`) gives it too.
#![cfg(not(target_arch = "wasm32"))]
// A test file: its helpers fail the test loudly, like the tests themselves.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use agentroute::llm::messages::{translate_answer, MessageStream};
use agentroute::llm::Identity;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

fn identity() -> Identity {
    Identity {
        id: "msg_prop".to_string(),
        model: "claude-local".to_string(),
        created: 1,
    }
}

#[derive(Debug, Clone)]
struct Call {
    /// The backend names the call (`None`: it gives no id).
    id: Option<String>,
    name: String,
    arguments: Map<String, Value>,
    /// Where its arguments' JSON text is cut into pieces.
    cuts: Vec<prop::sample::Index>,
}

#[derive(Debug, Clone)]
struct Case {
    text: String,
    text_cuts: Vec<prop::sample::Index>,
    calls: Vec<Call>,
    finish: &'static str,
    /// vLLM's `stop_reason`: the stop string met.
    matched: Option<String>,
    usage: Option<(u64, u64)>,
    /// The stream ends with `[DONE]`.
    done_marker: bool,
    /// CRLF line ends, and no space after `data:`.
    crlf: bool,
    tight: bool,
    /// A keep-alive comment before every event.
    comments: bool,
    /// Where the whole body is cut into chunks.
    cuts: Vec<prop::sample::Index>,
}

fn json_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        "[a-zA-Z0-9 \"\\\\é🙂\n]{0,12}".prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
        prop::collection::vec(any::<u8>().prop_map(Value::from), 0..3).prop_map(Value::from),
    ]
}

fn call() -> impl Strategy<Value = Call> {
    (
        prop::option::weighted(0.8, "call_[a-z0-9]{1,8}"),
        "[a-z_]{1,10}",
        prop::collection::btree_map("[a-z]{1,6}", json_value(), 0..4),
        prop::collection::vec(any::<prop::sample::Index>(), 0..4),
    )
        .prop_map(|(id, name, arguments, cuts)| Call {
            id,
            name,
            arguments: arguments.into_iter().collect(),
            cuts,
        })
}

fn case() -> impl Strategy<Value = Case> {
    (
        (
            "[a-zA-Z0-9 .,\"\\\\\n\té🙂{}]{0,40}",
            prop::collection::vec(any::<prop::sample::Index>(), 0..5),
            prop::collection::vec(call(), 0..3),
            prop::sample::select(vec![
                "stop",
                "length",
                "tool_calls",
                "content_filter",
                "function_call",
            ]),
            prop::option::weighted(0.2, "[A-Z]{1,4}"),
        ),
        (
            prop::option::of((0u64..100_000, 0u64..100_000)),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            prop::collection::vec(any::<prop::sample::Index>(), 0..12),
        ),
    )
        .prop_map(
            |(
                (text, text_cuts, calls, finish, matched),
                (usage, done_marker, crlf, tight, comments, cuts),
            )| Case {
                text,
                text_cuts,
                calls,
                finish,
                matched,
                usage,
                done_marker,
                crlf,
                tight,
                comments,
                cuts,
            },
        )
}

/// `s` cut at the char boundaries nearest the indices.
fn pieces<'a>(s: &'a str, cuts: &[prop::sample::Index]) -> Vec<&'a str> {
    let boundaries: Vec<usize> = s.char_indices().map(|(i, _)| i).skip(1).collect();
    let mut at: Vec<usize> = if boundaries.is_empty() {
        Vec::new()
    } else {
        cuts.iter().map(|c| *c.get(&boundaries)).collect()
    };
    at.sort_unstable();
    at.dedup();
    let mut out = Vec::new();
    let mut start = 0;
    for cut in at {
        out.push(&s[start..cut]);
        start = cut;
    }
    out.push(&s[start..]);
    out
}

fn usage_json(usage: (u64, u64)) -> Value {
    json!({ "prompt_tokens": usage.0, "completion_tokens": usage.1, "total_tokens": usage.0 + usage.1 })
}

fn choice_extras(case: &Case, choice: &mut Value) {
    if let Some(matched) = &case.matched {
        choice["stop_reason"] = json!(matched);
    }
}

/// The backend's whole `chat.completion`.
fn completion(case: &Case) -> Value {
    let mut message = json!({ "role": "assistant", "content": case.text });
    if !case.calls.is_empty() {
        let calls: Vec<Value> = case
            .calls
            .iter()
            .map(|c| {
                let mut call = json!({ "type": "function", "function": {
                    "name": c.name, "arguments": Value::Object(c.arguments.clone()).to_string() } });
                if let Some(id) = &c.id {
                    call["id"] = json!(id);
                }
                call
            })
            .collect();
        message["tool_calls"] = json!(calls);
    }
    let mut choice = json!({ "index": 0, "message": message, "finish_reason": case.finish });
    choice_extras(case, &mut choice);
    let mut v = json!({ "id": "chatcmpl-1", "object": "chat.completion", "created": 1,
        "model": "backend-model", "choices": [choice] });
    if let Some(usage) = case.usage {
        v["usage"] = usage_json(usage);
    }
    v
}

fn chunk(delta: Value, finish: Option<&str>) -> Value {
    json!({ "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "backend-model",
        "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }] })
}

/// The backend's stream, as SSE bytes.
fn stream_body(case: &Case) -> Vec<u8> {
    let mut events = vec![chunk(json!({ "role": "assistant", "content": "" }), None)];
    if !case.text.is_empty() {
        for piece in pieces(&case.text, &case.text_cuts) {
            events.push(chunk(json!({ "content": piece }), None));
        }
    }
    for (index, call) in case.calls.iter().enumerate() {
        let arguments = Value::Object(call.arguments.clone()).to_string();
        for (n, piece) in pieces(&arguments, &call.cuts).into_iter().enumerate() {
            let mut delta = json!({ "index": index, "function": { "arguments": piece } });
            if n == 0 {
                delta["type"] = json!("function");
                delta["function"]["name"] = json!(call.name);
                if let Some(id) = &call.id {
                    delta["id"] = json!(id);
                }
            }
            events.push(chunk(json!({ "tool_calls": [delta] }), None));
        }
    }
    let mut finish = chunk(json!({}), Some(case.finish));
    choice_extras(case, &mut finish["choices"][0]);
    events.push(finish);
    if let Some(usage) = case.usage {
        events.push(
            json!({ "id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [],
            "usage": usage_json(usage) }),
        );
    }
    let end = if case.crlf { "\r\n" } else { "\n" };
    let field = if case.tight { "data:" } else { "data: " };
    let mut out = String::new();
    let mut write = |data: &str| {
        if case.comments {
            out.push_str(&format!(": keep-alive{end}"));
        }
        out.push_str(&format!("{field}{data}{end}{end}"));
    };
    for event in &events {
        write(&event.to_string());
    }
    if case.done_marker {
        write("[DONE]");
    }
    out.into_bytes()
}

fn chunks<'a>(bytes: &'a [u8], cuts: &[prop::sample::Index]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
    at.sort_unstable();
    let mut out = Vec::new();
    let mut start = 0;
    for cut in at {
        out.push(&bytes[start..cut]);
        start = cut;
    }
    out.push(&bytes[start..]);
    out
}

fn translate_stream(pieces: &[&[u8]]) -> Vec<u8> {
    let mut stream = MessageStream::new(identity());
    let mut out = Vec::new();
    for piece in pieces {
        out.extend(stream.feed_within(piece, usize::MAX));
    }
    out.extend(stream.finish());
    assert_eq!(stream.held(), 0, "an ended stream holds nothing");
    out
}

/// Reads Anthropic events as the SDK's accumulator does, checking the
/// order it relies on: the message it builds.
fn accumulate(out: &[u8]) -> Result<Value, String> {
    let text = std::str::from_utf8(out).map_err(|e| e.to_string())?;
    let body = text
        .strip_suffix("\n\n")
        .ok_or("the last event is not terminated")?;
    let mut message: Option<Value> = None;
    let mut json_bufs: Vec<String> = Vec::new();
    let mut open: Option<usize> = None;
    let mut stopped = false;
    for event in body.split("\n\n") {
        let (name, data) = event.split_once('\n').ok_or("an event without data")?;
        let name = name.strip_prefix("event: ").ok_or("no event name")?;
        let data = data.strip_prefix("data: ").ok_or("no data line")?;
        let v: Value = serde_json::from_str(data).map_err(|e| e.to_string())?;
        if v["type"] != name {
            return Err(format!("event {name} carries type {}", v["type"]));
        }
        if stopped {
            return Err(format!("{name} after message_stop"));
        }
        if name == "error" {
            return Err(format!("error event: {v}"));
        }
        let Some(m) = message.as_mut() else {
            if name != "message_start" {
                return Err(format!("{name} before message_start"));
            }
            let m = v["message"].clone();
            for field in [
                "id",
                "type",
                "role",
                "content",
                "model",
                "stop_reason",
                "stop_sequence",
            ] {
                if m.get(field).is_none() {
                    return Err(format!("message_start without {field}"));
                }
            }
            if !m["usage"]["input_tokens"].is_u64() || !m["usage"]["output_tokens"].is_u64() {
                return Err("message_start usage".into());
            }
            message = Some(m);
            continue;
        };
        match name {
            "content_block_start" => {
                if open.is_some() {
                    return Err("a block starts while another is open".into());
                }
                let content = m["content"].as_array_mut().ok_or("content")?;
                if v["index"] != content.len() {
                    return Err("block indices are not consecutive".into());
                }
                open = Some(content.len());
                content.push(v["content_block"].clone());
                json_bufs.push(String::new());
            }
            "content_block_delta" => {
                let index = v["index"].as_u64().ok_or("delta index")? as usize;
                if open != Some(index) {
                    return Err("a delta for a block that is not open".into());
                }
                let block = &mut m["content"][index];
                match (v["delta"]["type"].as_str(), block["type"].as_str()) {
                    (Some("text_delta"), Some("text")) => {
                        let text = format!(
                            "{}{}",
                            block["text"].as_str().unwrap_or_default(),
                            v["delta"]["text"].as_str().ok_or("text")?
                        );
                        block["text"] = json!(text);
                    }
                    (Some("input_json_delta"), Some("tool_use")) => {
                        json_bufs[index]
                            .push_str(v["delta"]["partial_json"].as_str().ok_or("json")?);
                    }
                    other => return Err(format!("delta {other:?}")),
                }
            }
            "content_block_stop" => {
                if open != v["index"].as_u64().map(|i| i as usize) {
                    return Err("stop of a block that is not open".into());
                }
                open = None;
            }
            "message_delta" => {
                if open.is_some() {
                    return Err("message_delta with a block open".into());
                }
                m["stop_reason"] = v["delta"]["stop_reason"].clone();
                m["stop_sequence"] = v["delta"]["stop_sequence"].clone();
                m["usage"]["output_tokens"] = v["usage"]["output_tokens"].clone();
                if let Some(input) = v["usage"].get("input_tokens") {
                    m["usage"]["input_tokens"] = input.clone();
                }
            }
            "message_stop" => stopped = true,
            other => return Err(format!("unknown event {other}")),
        }
    }
    let mut m = message.ok_or("no message_start")?;
    if !stopped {
        return Err("no message_stop".into());
    }
    for (index, buf) in json_bufs.iter().enumerate() {
        if !buf.is_empty() {
            m["content"][index]["input"] = serde_json::from_str(buf).map_err(|e| e.to_string())?;
        }
    }
    Ok(m)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn any_chunking_gives_the_same_events(case in case()) {
        let body = stream_body(&case);
        let whole = translate_stream(&[&body]);
        let chunked = translate_stream(&chunks(&body, &case.cuts));
        prop_assert_eq!(
            String::from_utf8_lossy(&chunked),
            String::from_utf8_lossy(&whole)
        );
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        prop_assert_eq!(translate_stream(&bytes), whole);
    }

    #[test]
    fn streamed_and_whole_answers_give_the_same_message(case in case()) {
        let answer = translate_answer(200, completion(&case).to_string().as_bytes(), &identity());
        prop_assert_eq!(answer.status, 200);
        let want: Value = serde_json::from_slice(&answer.body).unwrap();
        let streamed = accumulate(&translate_stream(&chunks(&stream_body(&case), &case.cuts)));
        prop_assert_eq!(streamed.as_ref(), Ok(&want), "{}", String::from_utf8_lossy(&stream_body(&case)));
        let replayed = MessageStream::new(identity())
            .whole(200, completion(&case).to_string().as_bytes());
        let replayed = accumulate(&replayed);
        prop_assert_eq!(replayed.as_ref(), Ok(&want));

        // And the message is what the backend said.
        let content = want["content"].as_array().unwrap();
        let texts: Vec<&Value> = content.iter().filter(|b| b["type"] == "text").collect();
        prop_assert_eq!(texts.len(), usize::from(!case.text.is_empty()));
        if let Some(text) = texts.first() {
            prop_assert_eq!(text["text"].as_str(), Some(case.text.as_str()));
        }
        let tools: Vec<&Value> = content.iter().filter(|b| b["type"] == "tool_use").collect();
        prop_assert_eq!(tools.len(), case.calls.len());
        for (block, call) in tools.iter().zip(&case.calls) {
            prop_assert_eq!(block["name"].as_str(), Some(call.name.as_str()));
            prop_assert_eq!(&block["input"], &Value::Object(call.arguments.clone()));
            if let Some(id) = &call.id {
                prop_assert_eq!(block["id"].as_str(), Some(id.as_str()));
            }
        }
        let reason = want["stop_reason"].as_str().unwrap();
        let expected = match case.finish {
            "length" => "max_tokens",
            "content_filter" => "refusal",
            _ if !case.calls.is_empty() => "tool_use",
            "tool_calls" | "function_call" => "tool_use",
            _ if case.matched.is_some() => "stop_sequence",
            _ => "end_turn",
        };
        prop_assert_eq!(reason, expected);
        let (input, output) = case.usage.unwrap_or((0, 0));
        prop_assert_eq!(&want["usage"], &json!({ "input_tokens": input, "output_tokens": output }));
        let mut stream = MessageStream::new(identity());
        stream.feed_within(&stream_body(&case), usize::MAX);
        stream.finish();
        prop_assert_eq!(
            stream.usage().map(|u| (u.input, u.output)),
            case.usage.map(|(i, o)| (Some(i), Some(o)))
        );
    }
}
