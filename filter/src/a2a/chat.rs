//! OpenAI chat completions for A2A agents: the request becomes an A2A
//! JSON-RPC message, the agent's answer (a task, a message, or a stream of
//! events) becomes a `chat.completion` or `chat.completion.chunk` events.
//!
//! What is translated: the text of the user turns since the last assistant
//! turn, and the text the agent answers. What is not: files, data parts,
//! images, tool calls, and continuing a task across turns (each chat
//! completion is a new A2A message; `contextId` carries the conversation).

use serde_json::{json, Map, Value};

use crate::config::A2aVersion;
use crate::reply::LocalReply;
use crate::sse::{self, LineSplitter};

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

/// A task state, the same in both generations (`TASK_STATE_INPUT_REQUIRED`
/// and `input-required` alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Completed,
    Failed,
    Canceled,
    Rejected,
    InputRequired,
    AuthRequired,
    /// Submitted, working, unknown: not an end.
    Running,
}

impl State {
    fn parse(s: &str) -> State {
        let s = s.strip_prefix("TASK_STATE_").unwrap_or(s);
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "completed" => State::Completed,
            "failed" => State::Failed,
            "canceled" | "cancelled" => State::Canceled,
            "rejected" => State::Rejected,
            "input-required" => State::InputRequired,
            "auth-required" => State::AuthRequired,
            _ => State::Running,
        }
    }

    fn is_end(self) -> bool {
        self != State::Running
    }

    /// The OpenAI error for a task that ended without an answer, with the
    /// agent's own words.
    fn error(self, message: &str) -> Option<LocalReply> {
        let (status, kind, code, what) = match self {
            State::Completed | State::Running => return None,
            State::Failed => (
                502,
                "server_error",
                "agent_task_failed",
                "the agent failed the task",
            ),
            State::Canceled => (
                502,
                "server_error",
                "agent_task_canceled",
                "the agent canceled the task",
            ),
            State::Rejected => (
                422,
                "invalid_request_error",
                "agent_task_rejected",
                "the agent rejected the task",
            ),
            State::InputRequired => (
                422,
                "invalid_request_error",
                "agent_input_required",
                "the agent needs more input, which a chat completion cannot continue",
            ),
            State::AuthRequired => (
                401,
                "authentication_error",
                "agent_auth_required",
                "the agent requires authentication",
            ),
        };
        let message = if message.is_empty() {
            what.to_string()
        } else {
            format!("{what}: {message}")
        };
        Some(LocalReply::error(status, kind, Some(code), None, &message))
    }
}

/// One A2A result (a task, a message, or a stream event), whatever its
/// generation: 1.0 wraps it (`{"task": …}`, `{"statusUpdate": …}`), 0.3
/// tags it (`"kind": "task"`, `"kind": "status-update"`).
enum Event<'v> {
    Task(&'v Value),
    Message(&'v Value),
    Status(&'v Value),
    Artifact(&'v Value),
}

fn event(result: &Value) -> Option<Event<'_>> {
    let wrapped = |key: &str| result.get(key).filter(|v| v.is_object());
    if let Some(v) = wrapped("task") {
        return Some(Event::Task(v));
    }
    if let Some(v) = wrapped("message") {
        return Some(Event::Message(v));
    }
    if let Some(v) = wrapped("statusUpdate") {
        return Some(Event::Status(v));
    }
    if let Some(v) = wrapped("artifactUpdate") {
        return Some(Event::Artifact(v));
    }
    match result.get("kind").and_then(Value::as_str)? {
        "task" => Some(Event::Task(result)),
        "message" => Some(Event::Message(result)),
        "status-update" => Some(Event::Status(result)),
        "artifact-update" => Some(Event::Artifact(result)),
        _ => None,
    }
}

/// Text parts of a message or artifact, joined.
fn parts_text(holder: &Value) -> String {
    holder
        .get("parts")
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("")
        })
        .unwrap_or_default()
}

fn status_of(holder: &Value) -> (State, String) {
    let status = holder.get("status");
    let state = status
        .and_then(|s| s.get("state"))
        .and_then(Value::as_str)
        .map_or(State::Running, State::parse);
    let text = status
        .and_then(|s| s.get("message"))
        .map(parts_text)
        .unwrap_or_default();
    (state, text)
}

fn is_agent(message: &Value) -> bool {
    matches!(
        message.get("role").and_then(Value::as_str),
        Some("agent" | "ROLE_AGENT")
    )
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

/// The answer to a non-streamed chat completion, from the agent's whole
/// answer: a `chat.completion`, or an OpenAI-shaped error.
pub fn completion_from_a2a(http_status: u32, body: &[u8], c: &Completion) -> LocalReply {
    if http_status != 200 {
        return agent_error(&format!("the agent answered HTTP {http_status}"));
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return agent_error("the agent's answer is not JSON-RPC");
    };
    if let Some(error) = v.get("error") {
        return rpc_error(error);
    }
    let Some(result) = v.get("result") else {
        return agent_error("the agent's answer holds neither a result nor an error");
    };
    let text = match event(result) {
        Some(Event::Message(m)) => parts_text(m),
        Some(Event::Task(task)) => {
            let (state, status_text) = status_of(task);
            if let Some(error) = state.error(&status_text) {
                return error;
            }
            let artifacts: String = task
                .get("artifacts")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(parts_text).collect())
                .unwrap_or_default();
            if !artifacts.is_empty() {
                artifacts
            } else if !status_text.is_empty() {
                status_text
            } else {
                task.get("history")
                    .and_then(Value::as_array)
                    .and_then(|h| h.iter().rev().find(|m| is_agent(m)))
                    .map(parts_text)
                    .unwrap_or_default()
            }
        }
        _ => return agent_error("the agent's result is neither a task nor a message"),
    };
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

/// Longest SSE line kept from an agent's stream (one event); longer events
/// are skipped, so a stream's memory is bounded whatever the agent sends.
const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// Turns an agent's event stream into `chat.completion.chunk` events as it
/// arrives, chunk by chunk.
pub struct ChunkStream {
    completion: Completion,
    lines: LineSplitter,
    role_sent: bool,
    /// Whether artifact text reached the client (else a final status
    /// message is the answer).
    artifact_text: bool,
    done: bool,
}

impl ChunkStream {
    pub fn new(completion: Completion) -> Self {
        ChunkStream {
            completion,
            lines: LineSplitter::new(MAX_EVENT_BYTES),
            role_sent: false,
            artifact_text: false,
            done: false,
        }
    }

    /// The OpenAI events for one chunk of the agent's stream.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut lines = std::mem::replace(&mut self.lines, LineSplitter::new(0));
        lines.feed(chunk, |line| self.line(line, &mut out));
        self.lines = lines;
        out
    }

    /// The rest, once the agent's stream ended: always a final chunk and
    /// `data: [DONE]`, so the client sees an end even when the agent broke off.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut lines = std::mem::replace(&mut self.lines, LineSplitter::new(0));
        lines.finish(|line| self.line(line, &mut out));
        self.lines = lines;
        if !self.done {
            self.end(&mut out, None);
        }
        out
    }

    /// An agent answer that is not a stream (an error before it started).
    pub fn whole(&mut self, http_status: u32, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let reply = completion_from_a2a(http_status, body, &self.completion);
        if reply.status == 200 {
            let text = serde_json::from_str::<Value>(&reply.body)
                .ok()
                .and_then(|v| {
                    v.pointer("/choices/0/message/content")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .unwrap_or_default();
            self.delta(&mut out, &text);
            self.end(&mut out, None);
        } else {
            self.end(&mut out, Some(&reply));
        }
        out
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        let Some(data) = sse::data(line) else {
            return;
        };
        let Ok(v) = serde_json::from_slice::<Value>(data) else {
            return;
        };
        if let Some(error) = v.get("error") {
            self.end(out, Some(&rpc_error(error)));
            return;
        }
        let Some(result) = v.get("result") else {
            return;
        };
        match event(result) {
            Some(Event::Artifact(update)) => {
                if let Some(artifact) = update.get("artifact") {
                    let text = parts_text(artifact);
                    if !text.is_empty() {
                        self.artifact_text = true;
                        self.delta(out, &text);
                    }
                }
            }
            Some(Event::Message(m)) => {
                // A direct answer ends the exchange.
                let text = parts_text(m);
                self.delta(out, &text);
                self.end(out, None);
            }
            Some(Event::Status(holder) | Event::Task(holder)) => {
                let (state, text) = status_of(holder);
                if !state.is_end() {
                    return;
                }
                match state.error(&text) {
                    Some(error) => self.end(out, Some(&error)),
                    None => {
                        if !self.artifact_text && !text.is_empty() {
                            self.delta(out, &text);
                        }
                        self.end(out, None);
                    }
                }
            }
            None => {}
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

    fn delta(&mut self, out: &mut Vec<u8>, text: &str) {
        let delta = if self.role_sent {
            json!({ "content": text })
        } else {
            self.role_sent = true;
            json!({ "role": "assistant", "content": text })
        };
        emit(out, &self.chunk(delta, None));
    }

    fn end(&mut self, out: &mut Vec<u8>, error: Option<&LocalReply>) {
        self.done = true;
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
        // The agent breaks off: the client still sees an end.
        let e = stream_all(&[b"data: {\"result\":{\"artifactUpdate\":{\"artifact\":{\"parts\":[{\"text\":\"x\"}]}}}}\n\n"]);
        assert_eq!(e[1]["choices"][0]["finish_reason"], "stop");
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
}
