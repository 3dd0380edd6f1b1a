//! Property tests of the Gemini answer translation (`llm::gemini`).
//!
//! An answer is generated as Gemini gives one: a run of
//! `GenerateContentResponse`s, each with some parts of the first candidate
//! (text, thoughts, function calls), usage on some, a finish reason on the
//! last (or none: the stream breaks off), or an error event. Framed as SSE
//! in every way the standard allows and cut into chunks anywhere, it is the
//! `streamGenerateContent?alt=sse` stream; the same parts in one response
//! are the `generateContent` answer. Then:
//!
//! - any chunking of the stream gives the same client events as one chunk,
//!   and they are well-formed: `data: <JSON>` events ending in exactly one
//!   `data: [DONE]`, the role on the first delta;
//! - the streamed deltas and the whole answer carry the same content: text,
//!   tool calls (ids, names, arguments), finish reason and usage;
//! - a stream given little room holds no more than it, and still ends in
//!   `[DONE]`.
#![cfg(not(target_arch = "wasm32"))]
// A test file: its helpers fail the test loudly, like the tests themselves.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use agentroute::llm::gemini::{translate_answer, ChatStream};
use agentroute::llm::Identity;
use proptest::prelude::*;
use serde_json::{json, Value};

fn identity() -> Identity {
    Identity {
        id: "chatcmpl-prop".to_string(),
        model: "gemini-prop".to_string(),
        created: 1,
    }
}

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Thought(String),
    Call { name: String, args: Value },
}

impl Part {
    fn json(&self) -> Value {
        match self {
            Part::Text(t) => json!({ "text": t }),
            Part::Thought(t) => json!({ "text": t, "thought": true }),
            Part::Call { name, args } => {
                json!({ "functionCall": { "name": name, "args": args }, "thoughtSignature": "c2ln" })
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Event {
    parts: Vec<Part>,
    /// Cumulative usage, as Gemini reports it on its chunks.
    usage: bool,
}

#[derive(Debug, Clone)]
enum Ending {
    Finish(&'static str),
    /// The prompt was blocked: one response with no candidates.
    Blocked,
    BreakOff,
    Error {
        code: u32,
        status: &'static str,
    },
}

#[derive(Debug, Clone)]
struct Framing {
    /// 0: LF, 1: CR, 2: CRLF.
    line_end: usize,
    comment: bool,
    tight: bool,
}

#[derive(Debug, Clone)]
struct Case {
    events: Vec<Event>,
    ending: Ending,
    /// Usage on the final response.
    final_usage: bool,
    include_usage: bool,
    framings: Vec<Framing>,
    cuts: Vec<prop::sample::Index>,
}

fn usage(step: usize) -> Value {
    json!({ "promptTokenCount": 11, "candidatesTokenCount": step * 3,
        "thoughtsTokenCount": step, "totalTokenCount": 11 + step * 4 })
}

/// The stream's responses, and the whole answer (`None` when the stream
/// ends in no answer: a break or an error).
fn responses(case: &Case) -> (Vec<Value>, Option<Value>) {
    let mut stream: Vec<Value> = case
        .events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let parts: Vec<Value> = e.parts.iter().map(Part::json).collect();
            let mut r = json!({ "candidates": [ { "content": { "role": "model", "parts": parts }, "index": 0 } ],
                "modelVersion": "gemini-prop" });
            if e.usage {
                r["usageMetadata"] = usage(i);
            }
            r
        })
        .collect();
    let all_parts: Vec<Value> = case
        .events
        .iter()
        .flat_map(|e| e.parts.iter().map(Part::json))
        .collect();
    let last_usage = |extra: bool| -> Option<Value> {
        if extra {
            return Some(usage(99));
        }
        case.events
            .iter()
            .enumerate()
            .rev()
            .find(|(_, e)| e.usage)
            .map(|(i, _)| usage(i))
    };
    match &case.ending {
        Ending::Finish(reason) => {
            let mut last = json!({ "candidates": [ { "content": { "role": "model", "parts": [] },
                "finishReason": reason, "index": 0 } ] });
            let mut whole = json!({ "candidates": [ { "content": { "role": "model", "parts": all_parts },
                "finishReason": reason, "index": 0 } ] });
            if case.final_usage {
                last["usageMetadata"] = usage(99);
            }
            if let Some(u) = last_usage(case.final_usage) {
                whole["usageMetadata"] = u;
            }
            stream.push(last);
            (stream, Some(whole))
        }
        Ending::Blocked => {
            // A blocked prompt comes before any content.
            let mut r = json!({ "promptFeedback": { "blockReason": "SAFETY" } });
            if case.final_usage {
                r["usageMetadata"] = usage(99);
            }
            (vec![r.clone()], Some(r))
        }
        Ending::BreakOff => (stream, None),
        Ending::Error { code, status } => {
            stream.push(
                json!({ "error": { "code": code, "message": "it broke", "status": status } }),
            );
            (stream, None)
        }
    }
}

fn sse(events: &[Value], framings: &[Framing]) -> Vec<u8> {
    let mut out = String::new();
    for (i, event) in events.iter().enumerate() {
        let f = &framings[i % framings.len()];
        let end = ["\n", "\r", "\r\n"][f.line_end];
        if f.comment {
            out.push_str(&format!(": keep-alive{end}"));
        }
        let prefix = if f.tight { "data:" } else { "data: " };
        out.push_str(&format!("{prefix}{event}{end}{end}"));
    }
    out.into_bytes()
}

fn feed(bytes: &[u8], cuts: &[usize], include_usage: bool, room: usize) -> (Vec<u8>, ChatStream) {
    let mut stream = ChatStream::new(identity(), include_usage);
    let mut out = Vec::new();
    let mut from = 0;
    for cut in cuts.iter().copied().chain([bytes.len()]) {
        out.extend(stream.feed_within(&bytes[from..cut], room));
        assert!(
            stream.held() <= room,
            "held {} > room {room}",
            stream.held()
        );
        from = cut;
    }
    out.extend(stream.finish());
    assert_eq!(stream.held(), 0, "an ended stream holds nothing");
    (out, stream)
}

/// The client's events: well-formed, one `[DONE]` at the end.
fn events(out: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(out).unwrap();
    let events: Vec<&str> = text.strip_suffix("\n\n").unwrap().split("\n\n").collect();
    let (done, rest) = events.split_last().unwrap();
    assert_eq!(*done, "data: [DONE]", "{text}");
    let mut role_seen = false;
    rest.iter()
        .map(|e| {
            let json = e.strip_prefix("data: ").unwrap();
            assert!(!json.contains('\n'));
            assert_ne!(json, "[DONE]", "one [DONE] only");
            let v: Value = serde_json::from_str(json).unwrap();
            if v.get("error").is_none() {
                assert_eq!(v["object"], "chat.completion.chunk");
                assert_eq!(v["id"], "chatcmpl-prop");
                if let Some(choice) = v["choices"].get(0) {
                    assert_eq!(
                        choice["delta"].get("role").is_some(),
                        !role_seen,
                        "the role on the first delta only: {text}"
                    );
                    role_seen = true;
                }
            }
            v
        })
        .collect()
}

/// What a translated answer says.
#[derive(Debug, PartialEq)]
struct Said {
    text: String,
    calls: Vec<Value>,
    finish: Option<String>,
    usage: Option<Value>,
}

fn said_by_stream(events: &[Value]) -> Said {
    let mut said = Said {
        text: String::new(),
        calls: Vec::new(),
        finish: None,
        usage: None,
    };
    for v in events {
        assert!(v.get("error").is_none(), "{v}");
        if let Some(u) = v.get("usage") {
            said.usage = Some(u.clone());
        }
        let Some(choice) = v["choices"].get(0) else {
            continue;
        };
        assert!(
            said.finish.is_none(),
            "nothing after the finish: {events:?}"
        );
        if let Some(t) = choice["delta"]["content"].as_str() {
            said.text.push_str(t);
        }
        for call in choice["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            assert_eq!(call["index"], said.calls.len());
            said.calls.push(
                json!({ "id": call["id"], "type": call["type"], "function": call["function"] }),
            );
        }
        said.finish = choice["finish_reason"].as_str().map(str::to_string);
    }
    said
}

fn said_whole(body: &Value, include_usage: bool) -> Said {
    let answer = translate_answer(200, body.to_string().as_bytes(), &identity());
    assert_eq!(answer.status, 200);
    let v: Value = serde_json::from_slice(&answer.body).unwrap();
    let message = &v["choices"][0]["message"];
    Said {
        text: message["content"].as_str().unwrap_or_default().to_string(),
        calls: message["tool_calls"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
        finish: v["choices"][0]["finish_reason"]
            .as_str()
            .map(str::to_string),
        usage: v.get("usage").filter(|_| include_usage).cloned(),
    }
}

fn text() -> impl Strategy<Value = String> {
    "[a-z é🙂\"\\\\\n]{0,12}"
}

fn part() -> impl Strategy<Value = Part> {
    prop_oneof![
        4 => text().prop_map(Part::Text),
        1 => text().prop_map(Part::Thought),
        1 => (
            prop::sample::select(vec!["weather", "search", "now"]),
            prop::collection::btree_map("[a-c]{1,2}", prop_oneof![any::<i32>().prop_map(|n| json!(n)), text().prop_map(|s| json!(s))], 0..3),
        )
            .prop_map(|(name, args)| Part::Call {
                name: name.to_string(),
                args: Value::Object(args.into_iter().collect()),
            }),
    ]
}

fn ending() -> impl Strategy<Value = Ending> {
    prop_oneof![
        6 => prop::sample::select(vec!["STOP", "MAX_TOKENS", "SAFETY", "OTHER", "RECITATION"]).prop_map(Ending::Finish),
        1 => Just(Ending::Blocked),
        1 => Just(Ending::BreakOff),
        1 => prop::sample::select(vec![(429, "RESOURCE_EXHAUSTED"), (503, "UNAVAILABLE"), (500, "INTERNAL")])
            .prop_map(|(code, status)| Ending::Error { code, status }),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(
            (prop::collection::vec(part(), 0..4), any::<bool>())
                .prop_map(|(parts, usage)| Event { parts, usage }),
            0..6,
        ),
        ending(),
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(
            (0..3usize, any::<bool>(), any::<bool>()).prop_map(|(line_end, comment, tight)| {
                Framing {
                    line_end,
                    comment,
                    tight,
                }
            }),
            1..4,
        ),
        prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    )
        .prop_map(
            |(events, ending, final_usage, include_usage, framings, cuts)| Case {
                events,
                ending,
                final_usage,
                include_usage,
                framings,
                cuts,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn streamed_and_whole_answers_translate_alike(case in case()) {
        let (stream, whole) = responses(&case);
        let bytes = sse(&stream, &case.framings);
        let (one, _) = feed(&bytes, &[], case.include_usage, usize::MAX);
        let mut cuts: Vec<usize> = case.cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let (out, translated) = feed(&bytes, &cuts, case.include_usage, usize::MAX);
        prop_assert_eq!(&out, &one, "any chunking gives the same events");
        let bytewise: Vec<usize> = (1..bytes.len()).collect();
        if bytes.len() < 2048 {
            prop_assert_eq!(&feed(&bytes, &bytewise, case.include_usage, usize::MAX).0, &one);
        }
        let client = events(&out);
        match (&case.ending, whole) {
            (Ending::BreakOff, _) => {
                prop_assert_eq!(&client.last().unwrap()["error"]["code"], "provider_stream_incomplete");
            }
            (Ending::Error { code, status }, _) => {
                let error = &client.last().unwrap()["error"];
                prop_assert_eq!(&error["code"], &json!(status.to_ascii_lowercase()));
                let kind = if *code == 429 { "rate_limit_error" } else { "server_error" };
                prop_assert_eq!(&error["type"], kind);
            }
            (_, Some(whole)) => {
                let streamed = said_by_stream(&client);
                prop_assert_eq!(&streamed, &said_whole(&whole, case.include_usage));
                // The usage the host settles budgets from, asked for or not.
                let reported = whole.get("usageMetadata").map(|u| u["totalTokenCount"].as_u64().unwrap());
                prop_assert_eq!(translated.usage().map(|u| u.total), reported);
                // The same responses answered whole to a stream request.
                let array = Value::Array(stream.clone());
                let mut again = ChatStream::new(identity(), case.include_usage);
                let whole_stream = events(&again.whole(200, array.to_string().as_bytes()));
                prop_assert_eq!(&said_by_stream(&whole_stream), &streamed);
            }
            (_, None) => unreachable!("an answer that ends has its whole"),
        }
        // Little room: the stream may end early, never holding more.
        let room = bytes.len() / 3;
        let (small, _) = feed(&bytes, &cuts, case.include_usage, room);
        events(&small);
    }
}
