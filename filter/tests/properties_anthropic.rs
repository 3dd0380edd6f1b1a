//! Property tests of the Anthropic answer translation
//! (`llm::anthropic`): a streamed answer and the same answer given whole
//! translate alike, however the stream is cut.
//!
//! An answer is generated as what Anthropic sends: content blocks (text,
//! tool calls with a JSON input, thinking), a stop reason and usage. As a
//! whole message it is what `POST /v1/messages` answers; as message events
//! (text in pieces, tool input as `input_json_delta` pieces cut anywhere,
//! pings and `event:` lines among them, any line end of the standard) it is
//! the stream. Then:
//!
//! - (a) any chunking of the stream gives the same OpenAI events as one
//!   chunk, and they end in exactly one `data: [DONE]`;
//! - (b) the streamed chunks, put together as an OpenAI client does, say
//!   what the whole `chat.completion` says: text, tool calls (arguments as
//!   JSON), finish reason and usage; so does the stream of an upstream that
//!   answered a stream request whole.
#![cfg(not(target_arch = "wasm32"))]
// A test file: its helpers fail the test loudly, like the tests themselves.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use agentroute::llm::anthropic::{translate_answer, ChatStream};
use agentroute::llm::Identity;
use proptest::prelude::*;
use serde_json::{json, Value};

fn identity() -> Identity {
    Identity {
        id: "chatcmpl-prop".to_string(),
        model: "claude-client".to_string(),
        created: 1,
    }
}

// ---------------------------------------------------------------------------
// What Anthropic sends
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Block {
    /// Text, in the pieces its deltas carry.
    Text(Vec<String>),
    /// A tool call: its input, and where the input's JSON text is cut into
    /// `input_json_delta`s (fractions of its length); `pretty` sends it
    /// with whitespace (the arguments differ as text, not as JSON).
    Tool {
        id: String,
        name: String,
        input: Value,
        cuts: Vec<f64>,
        pretty: bool,
    },
    Thinking(String),
}

#[derive(Debug, Clone)]
struct Message {
    blocks: Vec<Block>,
    stop_reason: &'static str,
    input_tokens: u64,
    cache_creation: Option<u64>,
    cache_read: Option<u64>,
    output_tokens: u64,
}

/// How the stream ends.
#[derive(Debug, Clone)]
enum Ending {
    Complete,
    /// The stream breaks off after `events` of its events.
    BreakOff(usize),
    /// An `error` event after `events` of its events.
    Error(usize, &'static str),
}

fn text_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z ]{0,8}",
        "[\\PC]{0,6}",
        Just("line\nbreak \"quoted\" \\ é 🙂".to_string()),
        Just("data: [DONE]\n\n".to_string()),
    ]
}

fn input() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<i32>().prop_map(Value::from),
        "[a-z\"\\\\ ]{0,6}".prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
    ];
    prop::collection::btree_map("[a-z]{1,5}", leaf, 0..4)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

fn block() -> impl Strategy<Value = Block> {
    prop_oneof![
        3 => prop::collection::vec(text_piece(), 0..4).prop_map(Block::Text),
        2 => (
            "toolu_[a-z0-9]{4}",
            "[a-z_]{1,8}",
            input(),
            prop::collection::vec(0.0..1.0f64, 0..4),
            any::<bool>()
        )
            .prop_map(|(id, name, input, cuts, pretty)| Block::Tool {
                id,
                name,
                input,
                cuts,
                pretty
            }),
        1 => "[a-z ]{0,10}".prop_map(Block::Thinking),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    (
        prop::collection::vec(block(), 0..5),
        prop::sample::select(vec![
            "end_turn",
            "stop_sequence",
            "max_tokens",
            "tool_use",
            "refusal",
            "pause_turn",
        ]),
        0..100_000u64,
        prop::option::of(0..1000u64),
        prop::option::of(0..1000u64),
        0..10_000u64,
    )
        .prop_map(
            |(blocks, stop_reason, input_tokens, cache_creation, cache_read, output_tokens)| {
                Message {
                    blocks,
                    stop_reason,
                    input_tokens,
                    cache_creation,
                    cache_read,
                    output_tokens,
                }
            },
        )
}

fn ending() -> impl Strategy<Value = Ending> {
    prop_oneof![
        4 => Just(Ending::Complete),
        1 => (0..30usize).prop_map(Ending::BreakOff),
        1 => (
            0..30usize,
            prop::sample::select(vec!["overloaded_error", "api_error", "rate_limit_error"])
        )
            .prop_map(|(at, kind)| Ending::Error(at, kind)),
    ]
}

impl Message {
    fn usage(&self) -> Value {
        let mut usage =
            json!({ "input_tokens": self.input_tokens, "output_tokens": self.output_tokens });
        if let Some(n) = self.cache_creation {
            usage["cache_creation_input_tokens"] = json!(n);
        }
        if let Some(n) = self.cache_read {
            usage["cache_read_input_tokens"] = json!(n);
        }
        usage
    }

    /// The whole message, as `POST /v1/messages` answers.
    fn whole(&self) -> Value {
        let content: Vec<Value> = self
            .blocks
            .iter()
            .map(|b| match b {
                Block::Text(pieces) => json!({ "type": "text", "text": pieces.concat() }),
                Block::Tool {
                    id, name, input, ..
                } => {
                    json!({ "type": "tool_use", "id": id, "name": name, "input": input })
                }
                Block::Thinking(t) => {
                    json!({ "type": "thinking", "thinking": t, "signature": "sig" })
                }
            })
            .collect();
        json!({
            "id": "msg_prop", "type": "message", "role": "assistant", "model": "claude-x",
            "content": content, "stop_reason": self.stop_reason, "stop_sequence": null,
            "usage": self.usage(),
        })
    }

    /// The message as the data of its stream's events.
    fn events(&self) -> Vec<Value> {
        let mut start_usage = self.usage();
        start_usage["output_tokens"] = json!(1);
        let mut events = vec![json!({ "type": "message_start", "message": {
            "id": "msg_prop", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [], "stop_reason": null, "stop_sequence": null, "usage": start_usage } })];
        for (index, block) in self.blocks.iter().enumerate() {
            let delta = |delta: Value| json!({ "type": "content_block_delta", "index": index, "delta": delta });
            match block {
                Block::Text(pieces) => {
                    events.push(json!({ "type": "content_block_start", "index": index,
                        "content_block": { "type": "text", "text": "" } }));
                    for piece in pieces {
                        events.push(delta(json!({ "type": "text_delta", "text": piece })));
                    }
                }
                Block::Tool {
                    id,
                    name,
                    input,
                    cuts,
                    pretty,
                } => {
                    events.push(json!({ "type": "content_block_start", "index": index,
                        "content_block": { "type": "tool_use", "id": id, "name": name, "input": {} } }));
                    let text = if *pretty {
                        serde_json::to_string_pretty(input).unwrap()
                    } else {
                        input.to_string()
                    };
                    for piece in cut_text(&text, cuts) {
                        events.push(delta(
                            json!({ "type": "input_json_delta", "partial_json": piece }),
                        ));
                    }
                }
                Block::Thinking(t) => {
                    events.push(json!({ "type": "content_block_start", "index": index,
                        "content_block": { "type": "thinking", "thinking": "" } }));
                    events.push(delta(json!({ "type": "thinking_delta", "thinking": t })));
                    events.push(delta(
                        json!({ "type": "signature_delta", "signature": "sig" }),
                    ));
                }
            }
            events.push(json!({ "type": "content_block_stop", "index": index }));
            if index % 2 == 0 {
                events.push(json!({ "type": "ping" }));
            }
        }
        events.push(json!({ "type": "message_delta",
            "delta": { "stop_reason": self.stop_reason, "stop_sequence": null },
            "usage": { "output_tokens": self.output_tokens } }));
        events.push(json!({ "type": "message_stop" }));
        events
    }
}

/// `text` cut at the char boundaries nearest the fractions `cuts` (the
/// first piece may be empty, as Anthropic's first `input_json_delta` is).
fn cut_text(text: &str, cuts: &[f64]) -> Vec<String> {
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|f| {
            let mut at = (f * text.len() as f64) as usize;
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            at
        })
        .collect();
    points.sort_unstable();
    let mut pieces = Vec::new();
    let mut from = 0;
    for at in points {
        pieces.push(text[from..at].to_string());
        from = at;
    }
    pieces.push(text[from..].to_string());
    pieces
}

/// Events framed as SSE: with an `event:` line or without, each line
/// ending as `line_end` says.
fn frame(events: &[Value], line_end: &str, named: bool) -> Vec<u8> {
    let mut out = String::new();
    for event in events {
        if named {
            out.push_str(&format!(
                "event: {}{line_end}",
                event["type"].as_str().unwrap()
            ));
        }
        out.push_str(&format!("data: {event}{line_end}{line_end}"));
    }
    out.into_bytes()
}

fn stream_of(message: &Message, ending: &Ending) -> Vec<Value> {
    let mut events = message.events();
    match ending {
        Ending::Complete => {}
        Ending::BreakOff(at) => events.truncate((*at).min(events.len() - 1)),
        Ending::Error(at, kind) => {
            events.truncate((*at).min(events.len() - 1));
            events.push(json!({ "type": "error", "error": { "type": kind, "message": "failed" } }));
        }
    }
    events
}

// ---------------------------------------------------------------------------
// What an OpenAI client reads
// ---------------------------------------------------------------------------

fn translate(chunks: &[&[u8]], include_usage: bool) -> Vec<u8> {
    let mut stream = ChatStream::new(identity(), include_usage);
    let mut out = Vec::new();
    for chunk in chunks {
        out.extend(stream.feed_within(chunk, usize::MAX));
    }
    out.extend(stream.finish());
    assert_eq!(stream.held(), 0, "an ended stream holds nothing");
    out
}

/// What a client assembles from a stream.
#[derive(Debug, PartialEq)]
struct Assembled {
    text: String,
    /// (id, name, arguments as JSON) by tool call index.
    tool_calls: Vec<(String, String, Value)>,
    finish_reason: Option<String>,
    usage: Option<Value>,
    error: Option<Value>,
}

fn assemble(out: &[u8]) -> Assembled {
    let text = std::str::from_utf8(out).unwrap();
    let events: Vec<&str> = text.strip_suffix("\n\n").unwrap().split("\n\n").collect();
    let (done, rest) = events.split_last().unwrap();
    assert_eq!(*done, "data: [DONE]");
    let mut assembled = Assembled {
        text: String::new(),
        tool_calls: Vec::new(),
        finish_reason: None,
        usage: None,
        error: None,
    };
    let mut arguments: Vec<String> = Vec::new();
    for (n, event) in rest.iter().enumerate() {
        let data = event.strip_prefix("data: ").unwrap();
        assert_ne!(data, "[DONE]", "one [DONE], at the end");
        let v: Value = serde_json::from_str(data).unwrap();
        if let Some(error) = v.get("error") {
            assert_eq!(n + 1, rest.len(), "an error is the last event");
            assembled.error = Some(error.clone());
            continue;
        }
        assert_eq!(v["object"], "chat.completion.chunk");
        assert_eq!(v["id"], "chatcmpl-prop");
        assert_eq!(v["model"], "claude-client");
        if let Some(usage) = v.get("usage") {
            assert_eq!(v["choices"], json!([]));
            assembled.usage = Some(usage.clone());
            continue;
        }
        let choice = &v["choices"][0];
        if n == 0 {
            assert_eq!(
                choice["delta"]["role"], "assistant",
                "the first chunk names the role"
            );
        }
        assert!(
            assembled.finish_reason.is_none(),
            "nothing after the finish but usage"
        );
        if let Some(t) = choice["delta"]["content"].as_str() {
            assembled.text.push_str(t);
        }
        for call in choice["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let index = call["index"].as_u64().unwrap() as usize;
            if let Some(id) = call["id"].as_str() {
                assert_eq!(
                    index,
                    assembled.tool_calls.len(),
                    "tool calls open in order"
                );
                assembled.tool_calls.push((
                    id.to_string(),
                    call["function"]["name"].as_str().unwrap().to_string(),
                    Value::Null,
                ));
                arguments.push(String::new());
            }
            arguments[index].push_str(call["function"]["arguments"].as_str().unwrap());
        }
        if let Some(reason) = choice["finish_reason"].as_str() {
            assembled.finish_reason = Some(reason.to_string());
        }
    }
    for (call, text) in assembled.tool_calls.iter_mut().zip(arguments) {
        call.2 = serde_json::from_str(&text).unwrap_or(Value::String(text));
    }
    assembled
}

/// What the whole `chat.completion` says, in the same terms.
fn read_completion(body: &[u8], include_usage: bool) -> Assembled {
    let v: Value = serde_json::from_slice(body).unwrap();
    let message = &v["choices"][0]["message"];
    Assembled {
        text: message["content"].as_str().unwrap_or("").to_string(),
        tool_calls: message["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c["id"].as_str().unwrap().to_string(),
                    c["function"]["name"].as_str().unwrap().to_string(),
                    serde_json::from_str(c["function"]["arguments"].as_str().unwrap()).unwrap(),
                )
            })
            .collect(),
        finish_reason: v["choices"][0]["finish_reason"]
            .as_str()
            .map(str::to_string),
        usage: include_usage.then(|| v["usage"].clone()),
        error: None,
    }
}

/// `bytes` cut at the fractions `cuts` of its length.
fn chunked<'a>(bytes: &'a [u8], cuts: &[f64]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|f| (f * bytes.len() as f64) as usize)
        .collect();
    points.sort_unstable();
    let mut chunks = Vec::new();
    let mut from = 0;
    for at in points {
        chunks.push(&bytes[from..at]);
        from = at;
    }
    chunks.push(&bytes[from..]);
    chunks
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// (a) Any chunking gives the same events as one chunk.
    #[test]
    fn any_chunking_gives_the_same_events(
        message in message(),
        ending in ending(),
        line_end in prop::sample::select(vec!["\n", "\r\n", "\r"]),
        named in any::<bool>(),
        include_usage in any::<bool>(),
        cuts in prop::collection::vec(0.0..1.0f64, 0..12),
    ) {
        let bytes = frame(&stream_of(&message, &ending), line_end, named);
        let whole = translate(&[&bytes], include_usage);
        let chunks = chunked(&bytes, &cuts);
        prop_assert_eq!(&translate(&chunks, include_usage), &whole);
        let single: Vec<&[u8]> = bytes.chunks(1).collect();
        prop_assert_eq!(&translate(&single, include_usage), &whole);
        let assembled = assemble(&whole);
        if !matches!(ending, Ending::Complete) {
            prop_assert!(assembled.error.is_some(), "an unfinished stream ends in an error");
        }
    }

    /// (b) A streamed answer says what the same answer given whole says,
    /// and so does a whole answer to a stream request.
    #[test]
    fn streamed_and_whole_answers_agree(
        message in message(),
        line_end in prop::sample::select(vec!["\n", "\r\n"]),
        include_usage in any::<bool>(),
        cuts in prop::collection::vec(0.0..1.0f64, 0..6),
    ) {
        let bytes = frame(&message.events(), line_end, true);
        let streamed = assemble(&translate(&chunked(&bytes, &cuts), include_usage));
        let body = message.whole().to_string();
        let answer = translate_answer(200, body.as_bytes(), &identity());
        prop_assert_eq!(answer.status, 200);
        let whole = read_completion(&answer.body, include_usage);
        prop_assert_eq!(&streamed, &whole);

        let mut stream = ChatStream::new(identity(), include_usage);
        let given_whole = assemble(&stream.whole(200, body.as_bytes()));
        prop_assert_eq!(&given_whole, &whole);
        prop_assert_eq!(stream.held(), 0);

        // The usage the lead settles budgets from, whatever the client asked.
        let mut stream = ChatStream::new(identity(), false);
        stream.feed_within(&bytes, usize::MAX);
        let input = message.input_tokens
            + message.cache_creation.unwrap_or(0)
            + message.cache_read.unwrap_or(0);
        let usage = stream.usage().unwrap();
        prop_assert_eq!(
            (usage.input, usage.output, usage.total),
            (Some(input), Some(message.output_tokens), input + message.output_tokens)
        );
    }
}
