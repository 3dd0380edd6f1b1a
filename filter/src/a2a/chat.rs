//! OpenAI chat completions for A2A agents: the request becomes an A2A
//! JSON-RPC message, the agent's answer (a task, a message, or a stream of
//! events) becomes a `chat.completion` or `chat.completion.chunk` events.
//!
//! What is translated: the text of the user turns since the last assistant
//! turn, and the text the agent answers. What is not: files, data parts,
//! images, tool calls, and continuing a task across turns (each chat
//! completion is a new A2A message; `contextId` carries the conversation).

use serde_json::{json, Map, Value};

use super::answer::{self, Answer, Event, Outcome};
use crate::config::A2aVersion;
use crate::llm::stream::{Events, Stream};
use crate::reply::LocalReply;
use crate::sse::SseEvent;

/// A chat completion request, as much of it as A2A can carry.
#[derive(Debug, PartialEq, Eq)]
pub struct Chat {
    pub model: String,
    pub stream: bool,
    /// Text of the user turns since the last assistant turn, in order.
    pub texts: Vec<String>,
}

/// Reads the chat request the client sent.
pub fn parse_chat(body: &[u8]) -> Result<Chat, LocalReply> {
    let invalid = |message: &str| {
        LocalReply::error(
            400,
            "invalid_request_error",
            None,
            Some("messages"),
            message,
        )
    };
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        LocalReply::error(
            400,
            "invalid_request_error",
            Some("invalid_json"),
            None,
            &format!("request body is not valid JSON: {e}"),
        )
    })?;
    let model = v
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let stream = v.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let messages = v
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("messages must be an array"))?;
    let last_assistant = messages
        .iter()
        .rposition(|m| m.get("role").and_then(Value::as_str) == Some("assistant"));
    let start = last_assistant.map_or(0, |i| i + 1);
    let texts: Vec<String> = messages
        .iter()
        .skip(start)
        .filter(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .filter_map(|m| content_text(m.get("content")?))
        .filter(|t| !t.is_empty())
        .collect();
    if texts.is_empty() {
        return Err(invalid(
            "no user text to send to the agent: the messages after the last assistant turn hold no user text",
        ));
    }
    Ok(Chat {
        model,
        stream,
        texts,
    })
}

/// The text of a message's `content`: a string, or the text parts of an
/// array of parts (other parts are not translated).
fn content_text(content: &Value) -> Option<String> {
    match content {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => {
            let texts: Vec<&str> = parts
                .iter()
                .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect();
            (!texts.is_empty()).then(|| texts.join("\n"))
        }
        _ => None,
    }
}

/// The JSON-RPC request for the agent. `id` is unique per request (message
/// and JSON-RPC ids derive from it).
pub fn a2a_request(
    version: A2aVersion,
    chat: &Chat,
    context_id: Option<&str>,
    id: &str,
) -> Vec<u8> {
    let (method, role, parts, configuration): (&str, &str, Vec<Value>, Value) = match version {
        A2aVersion::V1_0 => (
            if chat.stream {
                "SendStreamingMessage"
            } else {
                "SendMessage"
            },
            "ROLE_USER",
            chat.texts.iter().map(|t| json!({ "text": t })).collect(),
            json!({}),
        ),
        A2aVersion::V0_3 => (
            if chat.stream {
                "message/stream"
            } else {
                "message/send"
            },
            "user",
            chat.texts
                .iter()
                .map(|t| json!({ "kind": "text", "text": t }))
                .collect(),
            json!({ "blocking": true }),
        ),
    };
    let mut message = Map::new();
    if version == A2aVersion::V0_3 {
        message.insert("kind".into(), json!("message"));
    }
    message.insert("messageId".into(), json!(format!("agentroute-{id}")));
    if let Some(ctx) = context_id.filter(|c| !c.is_empty()) {
        message.insert("contextId".into(), json!(ctx));
    }
    message.insert("role".into(), json!(role));
    message.insert("parts".into(), Value::Array(parts));
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": method,
        "params": { "message": message, "configuration": configuration }
    })
    .to_string()
    .into_bytes()
}

/// Headers of the request to the agent: an a2a-sdk 1.x server takes a
/// request without `A2A-Version` as 0.3 and refuses `SendMessage`.
pub fn a2a_headers(version: A2aVersion, stream: bool) -> [(&'static str, &'static str); 3] {
    [
        (
            "a2a-version",
            match version {
                A2aVersion::V1_0 => "1.0",
                A2aVersion::V0_3 => "0.3",
            },
        ),
        ("content-type", "application/json"),
        (
            "accept",
            if stream {
                "text/event-stream"
            } else {
                "application/json"
            },
        ),
    ]
}

/// What a chat completion answer is made of.
#[derive(Debug, Clone)]
pub struct Completion {
    /// `chatcmpl-…`, also in every chunk.
    pub id: String,
    pub model: String,
    pub created: u64,
}

/// A JSON-RPC error from the agent, as OpenAI's error.
fn rpc_error(error: &Value) -> LocalReply {
    let code = error.get("code").and_then(Value::as_i64).unwrap_or(0);
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("no message");
    LocalReply::error(
        502,
        "server_error",
        Some("agent_error"),
        None,
        &format!("the agent answered JSON-RPC error {code}: {message}"),
    )
}

fn agent_error(message: &str) -> LocalReply {
    LocalReply::error(502, "server_error", Some("agent_error"), None, message)
}

/// A JSON-RPC answer's error; `"error": null` (next to a result) is none.
fn rpc_error_of(answer: &Value) -> Option<LocalReply> {
    answer.get("error").filter(|e| !e.is_null()).map(rpc_error)
}

/// The answer to a non-streamed chat completion, from the agent's whole
/// answer: a `chat.completion`, or an OpenAI-shaped error.
pub fn completion_from_a2a(http_status: u32, body: &[u8], c: &Completion) -> LocalReply {
    if http_status != 200 {
        return agent_error(&format!("the agent answered HTTP {http_status}"));
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return agent_error("the agent's answer is not JSON-RPC");
    };
    if let Some(error) = rpc_error_of(&v) {
        return error;
    }
    let Some(result) = v.get("result") else {
        return agent_error("the agent's answer holds neither a result nor an error");
    };
    let Some(event @ (Event::Task(_) | Event::Message(_))) = answer::event(result) else {
        return agent_error("the agent's result is neither a task nor a message");
    };
    // The same reading as a stream's, in one step: the answer is in memory
    // already, so nothing bounds what it holds.
    let mut whole = Answer::new(usize::MAX);
    let mut text = String::new();
    let outcome = match whole.apply(event, &mut text) {
        Outcome::Open => whole.close(),
        ended => ended,
    };
    if let Outcome::Fail(error) = outcome {
        return error;
    }
    let body = json!({
        "id": c.id,
        "object": "chat.completion",
        "created": c.created,
        "model": c.model,
        "choices": [ {
            "index": 0,
            "message": { "role": "assistant", "content": text },
            "finish_reason": "stop"
        } ]
    });
    LocalReply::json(200, body.to_string())
}

/// Longest event kept from an agent's stream (its data lines, as they
/// arrive); a longer one ends the answer with an error, so a stream's memory
/// is bounded whatever the agent sends.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// Most answer text and state a stream holds between events (text that
/// cannot go out yet: see [`answer`]).
pub const MAX_HELD_ANSWER_BYTES: usize = 1024 * 1024;

/// Turns an agent's event stream into `chat.completion.chunk` events as it
/// arrives, chunk by chunk (the shell every translated stream shares:
/// [`crate::llm::stream`]).
pub type ChunkStream = Stream<Translator>;

/// Everything of a [`ChunkStream`] but its event reader (which calls it
/// back).
pub struct Translator {
    completion: Completion,
    answer: Answer,
    role_sent: bool,
    done: bool,
}

impl ChunkStream {
    pub fn new(completion: Completion) -> Self {
        Stream::with(Translator {
            completion,
            answer: Answer::new(MAX_HELD_ANSWER_BYTES),
            role_sent: false,
            done: false,
        })
    }

    /// The OpenAI events for one chunk of the agent's stream.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        self.feed_within(chunk, usize::MAX)
    }

    /// An agent answer that is not a stream (an error before it started).
    pub fn whole(&mut self, http_status: u32, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let reply = completion_from_a2a(http_status, body, &self.inner.completion);
        if reply.status == 200 {
            let text = serde_json::from_str::<Value>(&reply.body)
                .ok()
                .and_then(|v| {
                    v.pointer("/choices/0/message/content")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .unwrap_or_default();
            self.inner.delta(&mut out, &text);
            self.inner.end(&mut out, None);
        } else {
            self.inner.end(&mut out, Some(&reply));
        }
        out
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
        let error = LocalReply::error(
            503,
            "server_error",
            Some("gateway_memory_exhausted"),
            None,
            "the gateway's memory for translated streams is spent: the answer was cut short",
        );
        self.end(out, Some(&error));
    }

    /// An incomplete answer ends in `agent_task_incomplete`.
    fn upstream_ended(&mut self, out: &mut Vec<u8>) {
        let outcome = self.answer.close();
        self.conclude(out, outcome);
    }

    /// The answer text that cannot go out yet.
    fn held(&self) -> usize {
        self.answer.held()
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
                let error = LocalReply::error(
                    502,
                    "server_error",
                    Some("agent_event_too_large"),
                    None,
                    &format!("an event of the agent's stream is over {MAX_EVENT_BYTES} bytes"),
                );
                return self.end(out, Some(&error));
            }
        };
        let Ok(v) = serde_json::from_slice::<Value>(data) else {
            return;
        };
        if let Some(error) = rpc_error_of(&v) {
            return self.end(out, Some(&error));
        }
        let Some(event) = v.get("result").and_then(answer::event) else {
            return;
        };
        let mut text = String::new();
        let outcome = self.answer.apply(event, &mut text);
        if !text.is_empty() {
            self.delta(out, &text);
        }
        self.conclude(out, outcome);
    }

    fn conclude(&mut self, out: &mut Vec<u8>, outcome: Outcome) {
        match outcome {
            Outcome::Open => {}
            Outcome::Stop => self.end(out, None),
            Outcome::Fail(error) => self.end(out, Some(&error)),
        }
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Value {
        json!({
            "id": self.completion.id,
            "object": "chat.completion.chunk",
            "created": self.completion.created,
            "model": self.completion.model,
            "choices": [ { "index": 0, "delta": delta, "finish_reason": finish_reason } ]
        })
    }

    /// A content delta, written straight out: its text (a whole answer,
    /// maybe) is escaped once, not copied into JSON values first. The same
    /// JSON as [`Translator::chunk`] would give.
    fn delta(&mut self, out: &mut Vec<u8>, text: &str) {
        out.extend_from_slice(b"data: {\"id\":");
        json_string(out, &self.completion.id);
        out.extend_from_slice(b",\"object\":\"chat.completion.chunk\",\"created\":");
        out.extend_from_slice(self.completion.created.to_string().as_bytes());
        out.extend_from_slice(b",\"model\":");
        json_string(out, &self.completion.model);
        out.extend_from_slice(b",\"choices\":[{\"index\":0,\"delta\":{");
        if !self.role_sent {
            self.role_sent = true;
            out.extend_from_slice(b"\"role\":\"assistant\",");
        }
        out.extend_from_slice(b"\"content\":");
        json_string(out, text);
        out.extend_from_slice(b"},\"finish_reason\":null}]}\n\n");
    }

    fn end(&mut self, out: &mut Vec<u8>, error: Option<&LocalReply>) {
        self.done = true;
        // Whatever the answer held is no longer needed.
        self.answer = Answer::new(0);
        match error {
            // OpenAI streams report a failure as an event holding `error`.
            Some(reply) => {
                if let Ok(v) = serde_json::from_str::<Value>(&reply.body) {
                    emit(out, &v);
                }
            }
            None => {
                if !self.role_sent {
                    self.delta(out, "");
                }
                emit(out, &self.chunk(json!({}), Some("stop")));
            }
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn completion() -> Completion {
        Completion {
            id: "chatcmpl-1".to_string(),
            model: "prod/echo".to_string(),
            created: 7,
        }
    }

    #[test]
    fn user_turns_since_the_last_assistant_turn() {
        let body = json!({
            "model": "prod/echo",
            "stream": true,
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "old"},
                {"role": "assistant", "content": "answer"},
                {"role": "user", "content": "first"},
                {"role": "user", "content": [
                    {"type": "text", "text": "second"},
                    {"type": "image_url", "image_url": {"url": "data:..."}}
                ]}
            ]
        });
        let chat = parse_chat(body.to_string().as_bytes()).unwrap();
        assert_eq!(
            chat,
            Chat {
                model: "prod/echo".into(),
                stream: true,
                texts: vec!["first".into(), "second".into()]
            }
        );
        let none = json!({"model": "m", "messages": [{"role": "assistant", "content": "x"}]});
        assert_eq!(
            parse_chat(none.to_string().as_bytes()).unwrap_err().status,
            400
        );
        assert_eq!(parse_chat(b"{").unwrap_err().status, 400);
        assert_eq!(parse_chat(br#"{"model":"m"}"#).unwrap_err().status, 400);
    }

    #[test]
    fn requests_in_both_generations() {
        let chat = Chat {
            model: "m".into(),
            stream: false,
            texts: vec!["hi".into()],
        };
        let v: Value =
            serde_json::from_slice(&a2a_request(A2aVersion::V1_0, &chat, Some("c-1"), "r1"))
                .unwrap();
        assert_eq!(v["method"], "SendMessage");
        assert_eq!(v["id"], "r1");
        assert_eq!(v["params"]["message"]["role"], "ROLE_USER");
        assert_eq!(v["params"]["message"]["parts"], json!([{"text": "hi"}]));
        assert_eq!(v["params"]["message"]["contextId"], "c-1");
        let streamed = Chat {
            stream: true,
            ..chat
        };
        let v: Value =
            serde_json::from_slice(&a2a_request(A2aVersion::V0_3, &streamed, None, "r2")).unwrap();
        assert_eq!(v["method"], "message/stream");
        assert_eq!(v["params"]["message"]["kind"], "message");
        assert_eq!(v["params"]["message"]["role"], "user");
        assert_eq!(
            v["params"]["message"]["parts"],
            json!([{"kind": "text", "text": "hi"}])
        );
        assert!(v["params"]["message"].get("contextId").is_none());
        assert_eq!(
            a2a_headers(A2aVersion::V1_0, true)[0],
            ("a2a-version", "1.0")
        );
    }

    fn content(reply: &LocalReply) -> String {
        let v: Value = serde_json::from_str(&reply.body).unwrap();
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn answers_of_both_generations() {
        let v1 = br#"{"result":{"task":{"id":"t","status":{"state":"TASK_STATE_COMPLETED"},"artifacts":[{"parts":[{"text":"echo: hi"}]}]}},"id":"1","jsonrpc":"2.0"}"#;
        let r = completion_from_a2a(200, v1, &completion());
        assert_eq!(r.status, 200);
        assert_eq!(content(&r), "echo: hi");
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["model"], "prod/echo");
        let v03 = br#"{"id":"1","jsonrpc":"2.0","result":{"kind":"task","status":{"state":"completed"},"artifacts":[{"parts":[{"kind":"text","text":"a"},{"kind":"text","text":"b"}]}]}}"#;
        assert_eq!(content(&completion_from_a2a(200, v03, &completion())), "ab");
        let message = br#"{"result":{"kind":"message","role":"agent","parts":[{"kind":"text","text":"direct"}]}}"#;
        assert_eq!(
            content(&completion_from_a2a(200, message, &completion())),
            "direct"
        );
        let status_only = br#"{"result":{"task":{"status":{"state":"TASK_STATE_COMPLETED","message":{"role":"ROLE_AGENT","parts":[{"text":"done"}]}}}}}"#;
        assert_eq!(
            content(&completion_from_a2a(200, status_only, &completion())),
            "done"
        );
        let history = br#"{"result":{"task":{"status":{"state":"TASK_STATE_COMPLETED"},"history":[{"role":"ROLE_USER","parts":[{"text":"q"}]},{"role":"ROLE_AGENT","parts":[{"text":"from history"}]}]}}}"#;
        assert_eq!(
            content(&completion_from_a2a(200, history, &completion())),
            "from history"
        );
    }

    #[test]
    fn failures_become_openai_errors() {
        let cases: [(&[u8], u32, &str); 7] = [
            (br#"{"result":{"task":{"status":{"state":"TASK_STATE_FAILED","message":{"parts":[{"text":"failed on purpose"}]}}}}}"#, 502, "agent_task_failed"),
            (br#"{"result":{"kind":"task","status":{"state":"rejected"}}}"#, 422, "agent_task_rejected"),
            (br#"{"result":{"kind":"task","status":{"state":"input-required"}}}"#, 422, "agent_input_required"),
            (br#"{"result":{"task":{"status":{"state":"TASK_STATE_AUTH_REQUIRED"}}}}"#, 401, "agent_auth_required"),
            (br#"{"jsonrpc":"2.0","id":"1","error":{"code":-32603,"message":"crashed"}}"#, 502, "agent_error"),
            (b"<html>", 502, "agent_error"),
            (br#"{"result":{"kind":"weird"}}"#, 502, "agent_error"),
        ];
        for (body, status, code) in cases {
            let r = completion_from_a2a(200, body, &completion());
            let v: Value = serde_json::from_str(&r.body).unwrap();
            assert_eq!(
                (r.status, v["error"]["code"].as_str()),
                (status, Some(code)),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let failed = completion_from_a2a(200, cases[0].0, &completion());
        assert!(failed.body.contains("failed on purpose"));
        assert_eq!(completion_from_a2a(500, b"", &completion()).status, 502);
    }

    /// The chunks a client receives, as (role, content, finish_reason, error code).
    fn events(out: &[u8]) -> Vec<Value> {
        String::from_utf8_lossy(out)
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .map(|d| {
                if d == "[DONE]" {
                    json!("[DONE]")
                } else {
                    serde_json::from_str(d).unwrap()
                }
            })
            .collect()
    }

    const STREAM_V1: &str = concat!(
        "data: {\"result\": {\"task\": {\"id\": \"t\", \"status\": {\"state\": \"TASK_STATE_SUBMITTED\"}}}, \"id\": \"1\", \"jsonrpc\": \"2.0\"}\r\n\r\n",
        "data: {\"result\": {\"statusUpdate\": {\"status\": {\"state\": \"TASK_STATE_WORKING\"}}}}\r\n\r\n",
        ": ping - now\r\n\r\n",
        "data: {\"result\": {\"artifactUpdate\": {\"artifact\": {\"parts\": [{\"text\": \"chunk 1 \"}]}}}}\r\n\r\n",
        "data: {\"result\": {\"artifactUpdate\": {\"artifact\": {\"parts\": [{\"text\": \"chunk 2\"}]}, \"append\": true}}}\r\n\r\n",
        "data: {\"result\": {\"statusUpdate\": {\"status\": {\"state\": \"TASK_STATE_COMPLETED\"}}}}\r\n\r\n",
    );

    fn stream_all(chunks: &[&[u8]]) -> Vec<Value> {
        let mut s = ChunkStream::new(completion());
        let mut out = Vec::new();
        for c in chunks {
            out.extend(s.feed(c));
        }
        out.extend(s.finish());
        events(&out)
    }

    #[test]
    fn streams_become_chunks_whatever_the_chunking() {
        let whole = stream_all(&[STREAM_V1.as_bytes()]);
        assert_eq!(whole.len(), 4, "{whole:?}");
        assert_eq!(whole[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(whole[0]["choices"][0]["delta"]["content"], "chunk 1 ");
        assert_eq!(whole[1]["choices"][0]["delta"]["content"], "chunk 2");
        assert_eq!(whole[2]["choices"][0]["finish_reason"], "stop");
        assert_eq!(whole[2]["object"], "chat.completion.chunk");
        assert_eq!(whole[3], "[DONE]");
        let bytes = STREAM_V1.as_bytes();
        for cut in (0..bytes.len()).step_by(7) {
            let (a, b) = bytes.split_at(cut);
            assert_eq!(stream_all(&[a, b]), whole, "cut at {cut}");
        }
    }

    #[test]
    fn stream_chunks_leave_as_they_arrive() {
        let mut s = ChunkStream::new(completion());
        let first = STREAM_V1.split_inclusive("\r\n\r\n").nth(3).unwrap();
        let out = s.feed(first.as_bytes());
        assert_eq!(events(&out).len(), 1, "one event in, one chunk out");
    }

    #[test]
    fn stream_failures_and_breaks() {
        let v03_failed = b"data: {\"result\":{\"kind\":\"status-update\",\"final\":true,\"status\":{\"state\":\"failed\",\"message\":{\"parts\":[{\"kind\":\"text\",\"text\":\"failed on purpose\"}]}}}}\n\n";
        let e = stream_all(&[v03_failed]);
        assert_eq!(e[0]["error"]["code"], "agent_task_failed");
        assert_eq!(e[1], "[DONE]");
        let rpc =
            b"event: error\r\ndata: {\"error\":{\"code\":-32603,\"message\":\"crashed\"}}\r\n\r\n";
        let e = stream_all(&[b"data: {\"result\":{\"artifactUpdate\":{\"artifact\":{\"parts\":[{\"text\":\"partial \"}]}}}}\n\n", rpc]);
        assert_eq!(e[0]["choices"][0]["delta"]["content"], "partial ");
        assert_eq!(e[1]["error"]["code"], "agent_error");
        // The agent breaks off: the client still sees an end, an error
        // (the answer is incomplete), not a `stop`.
        let e = stream_all(&[b"data: {\"result\":{\"artifactUpdate\":{\"artifact\":{\"parts\":[{\"text\":\"x\"}]}}}}\n\n"]);
        assert_eq!(e[0]["choices"][0]["delta"]["content"], "x");
        assert_eq!(e[1]["error"]["code"], "agent_task_incomplete");
        assert_eq!(e[2], "[DONE]");
        // A status message is the answer when no artifact came.
        let e = stream_all(&[b"data: {\"result\":{\"kind\":\"status-update\",\"status\":{\"state\":\"completed\",\"message\":{\"parts\":[{\"text\":\"said in status\"}]}}}}\n\n"]);
        assert_eq!(e[0]["choices"][0]["delta"]["content"], "said in status");
        // A direct message.
        let e = stream_all(&[b"data: {\"result\":{\"message\":{\"role\":\"ROLE_AGENT\",\"parts\":[{\"text\":\"hi\"}]}}}\n\n"]);
        assert_eq!(e[0]["choices"][0]["delta"]["content"], "hi");
        assert_eq!(e.last().unwrap(), "[DONE]");
        // An error before the stream started comes as plain JSON.
        let mut s = ChunkStream::new(completion());
        let e = events(&s.whole(200, br#"{"error":{"code":-32009,"message":"version"}}"#));
        assert_eq!(e[0]["error"]["code"], "agent_error");
    }

    #[test]
    fn a_null_error_is_no_error() {
        let whole = br#"{"jsonrpc":"2.0","id":"1","error":null,"result":{"kind":"task","status":{"state":"completed"},"artifacts":[{"parts":[{"kind":"text","text":"fine"}]}]}}"#;
        let r = completion_from_a2a(200, whole, &completion());
        assert_eq!((r.status, content(&r)), (200, "fine".to_string()));
        let e = stream_all(&[b"data: {\"error\": null, \"result\": {\"message\": {\"role\": \"ROLE_AGENT\", \"parts\": [{\"text\": \"fine\"}]}}}\n\n"]);
        assert_eq!(e[0]["choices"][0]["delta"]["content"], "fine");
        assert_eq!(e[1]["choices"][0]["finish_reason"], "stop");
    }

    #[test]
    fn unfinished_tasks_are_errors() {
        for state in [
            "TASK_STATE_SUBMITTED",
            "TASK_STATE_WORKING",
            "unknown",
            "working",
        ] {
            let body = json!({"result": {"task": {"status": {"state": state,
                "message": {"role": "ROLE_AGENT", "parts": [{"text": "still thinking"}]}},
                "artifacts": [{"parts": [{"text": "half"}]}]}}});
            let r = completion_from_a2a(200, body.to_string().as_bytes(), &completion());
            let v: Value = serde_json::from_str(&r.body).unwrap();
            assert_eq!(r.status, 502, "{state}");
            assert_eq!(v["error"]["code"], "agent_task_incomplete", "{state}");
            assert!(r.body.contains("still thinking"), "{}", r.body);
        }
        // In a stream a running state is progress; only the end decides.
        let working = b"data: {\"result\":{\"statusUpdate\":{\"status\":{\"state\":\"TASK_STATE_WORKING\"}}}}\n\n";
        let e = stream_all(&[working]);
        assert_eq!(e[0]["error"]["code"], "agent_task_incomplete");
        let done = b"data: {\"result\":{\"statusUpdate\":{\"status\":{\"state\":\"TASK_STATE_COMPLETED\",\"message\":{\"parts\":[{\"text\":\"ok\"}]}}}}}\n\n";
        let e = stream_all(&[working, done]);
        assert_eq!(e[0]["choices"][0]["delta"]["content"], "ok");
        assert_eq!(e[1]["choices"][0]["finish_reason"], "stop");
    }

    #[test]
    fn task_events_in_streams_carry_their_artifacts() {
        let task = b"data: {\"result\":{\"task\":{\"id\":\"t\",\"status\":{\"state\":\"TASK_STATE_COMPLETED\"},\"artifacts\":[{\"artifactId\":\"a\",\"parts\":[{\"text\":\"42\"}]}]}}}\n\n";
        let e = stream_all(&[task]);
        assert_eq!(e[0]["choices"][0]["delta"]["content"], "42");
        assert_eq!(e[1]["choices"][0]["finish_reason"], "stop");
        let whole = br#"{"result":{"task":{"id":"t","status":{"state":"TASK_STATE_COMPLETED"},"artifacts":[{"artifactId":"a","parts":[{"text":"42"}]}]}}}"#;
        assert_eq!(
            content(&completion_from_a2a(200, whole, &completion())),
            "42"
        );
    }

    #[test]
    fn replacing_updates_send_only_what_is_new() {
        let update = |text: &str, append: bool, last: bool| {
            format!(
                "data: {}\n\n",
                json!({"result": {"kind": "artifact-update",
                "artifact": {"artifactId": "a", "parts": [{"kind": "text", "text": text}]},
                "append": append, "lastChunk": last}})
            )
        };
        let stream = [
            update("The answer", false, false),
            update("The answer is", false, false),
            update(" 42", true, true),
            "data: {\"result\":{\"kind\":\"status-update\",\"final\":true,\"status\":{\"state\":\"completed\"}}}\n\n".to_string(),
        ]
        .concat();
        let e = stream_all(&[stream.as_bytes()]);
        let text: String = e
            .iter()
            .filter_map(|v| v["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "The answer is 42", "{e:?}");
        // A replacement that takes back what is out ends the stream.
        let stream = [update("yes", false, false), update("no", false, true)].concat();
        let e = stream_all(&[stream.as_bytes()]);
        assert_eq!(e[1]["error"]["code"], "agent_answer_rewritten");
        assert_eq!(e[2], "[DONE]");
    }

    #[test]
    fn events_spread_over_data_lines_and_line_ends() {
        let stream = "data: {\"result\":\r\ndata: {\"message\":{\"role\":\"agent\",\r\ndata: \"parts\":[{\"text\":\"multi\"}]}}}\r\r";
        let e = stream_all(&[stream.as_bytes()]);
        assert_eq!(e[0]["choices"][0]["delta"]["content"], "multi");
        assert_eq!(e[1]["choices"][0]["finish_reason"], "stop");
        for cut in 0..stream.len() {
            let (a, b) = stream.as_bytes().split_at(cut);
            assert_eq!(stream_all(&[a, b]), e, "cut at {cut}");
        }
    }

    #[test]
    fn held_bytes_and_room() {
        let mut s = ChunkStream::new(completion());
        assert_eq!(s.held(), 0);
        let partial = format!(
            "data: {{\"result\":{{\"message\":{{\"parts\":[{{\"text\":\"{}",
            "x".repeat(10_000)
        );
        assert!(s.feed(partial.as_bytes()).is_empty());
        assert!(s.held() >= partial.len(), "{}", s.held());
        let out = s.feed(b"\"}]}}}\n\n");
        assert_eq!(events(&out).len(), 3);
        assert_eq!(s.held(), 0);
        // Over its room the stream ends with an error and holds nothing.
        let mut s = ChunkStream::new(completion());
        let out = s.feed_within(partial.as_bytes(), 5_000);
        let e = events(&out);
        assert_eq!(e[0]["error"]["code"], "gateway_memory_exhausted");
        assert_eq!(e[1], "[DONE]");
        assert!(s.cut_short());
        assert_eq!(s.held(), 0);
        assert!(s.feed(b"\"}]}}}\n\n").is_empty());
        assert!(s.finish().is_empty());
        // An event over the bound ends the answer too.
        let mut s = ChunkStream::new(completion());
        let mut out = s.feed(b"data: {\"result\":{\"artifactUpdate\":{\"artifact\":{\"parts\":[{\"text\":\"before \"}]}}}}\n\ndata: ");
        out.extend(s.feed(&vec![b'y'; MAX_EVENT_BYTES]));
        assert!(s.held() <= MAX_EVENT_BYTES);
        out.extend(s.finish());
        let e = events(&out);
        assert_eq!(e[0]["choices"][0]["delta"]["content"], "before ");
        assert_eq!(e[1]["error"]["code"], "agent_event_too_large");
        assert!(!s.cut_short());
    }

    #[test]
    fn deltas_are_the_json_of_a_chunk() {
        let mut t = ChunkStream::new(Completion {
            id: "chatcmpl-\"q\"".into(),
            model: "prod/é".into(),
            created: 42,
        })
        .inner;
        for (text, role) in [("first \"line\"\n🙂", true), ("", false)] {
            let mut out = Vec::new();
            t.delta(&mut out, text);
            let want = if role {
                json!({ "role": "assistant", "content": text })
            } else {
                json!({ "content": text })
            };
            let mut expected = Vec::new();
            emit(&mut expected, &t.chunk(want, None));
            assert_eq!(
                String::from_utf8(out).unwrap(),
                String::from_utf8(expected).unwrap()
            );
        }
    }
}
