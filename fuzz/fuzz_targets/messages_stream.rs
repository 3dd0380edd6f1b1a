//! Anthropic-surface stream translation (`llm::messages::MessageStream`):
//! any chunking of an OpenAI-compatible backend's stream gives the same
//! Anthropic events, which are well-formed: `event: <type>` and one JSON
//! `data:` line naming the same type, `message_start` first, blocks opened
//! and closed in order with consecutive indices, and exactly one end
//! (`message_stop` or `error`) as the last event. What a stream holds stays
//! within its bounds (and within the room it is given), and an ended one
//! holds nothing. The same bytes as a whole answer translate to an
//! Anthropic message or error, never a panic.
#![no_main]

use agentroute::llm::messages::{translate_answer, MessageStream};
use agentroute::llm::{Identity, MAX_EVENT_BYTES};
use agentroute_fuzz::{alike_however_cut, chunkings, translate_stream, Room};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn identity() -> Identity {
    Identity {
        id: "msg_fuzz".to_string(),
        model: "claude-local".to_string(),
        created: 1_700_000_000,
    }
}

fuzz_target!(|data: &[u8]| {
    let whole = alike_however_cut(data, |chunks| {
        translate_stream(
            MessageStream::new(identity()),
            chunks,
            Room::Unbounded {
                bound: MAX_EVENT_BYTES + 4096,
            },
        )
    });
    check_events(&whole);

    for chunks in chunkings(data).iter().take(1) {
        check_events(&translate_stream(
            MessageStream::new(identity()),
            chunks,
            Room::Within(data.len() % 512),
        ));
    }

    // The same bytes as a whole answer: a non-streamed message, and the
    // stream of a backend that answered a stream request whole.
    for status in [200, 429, 500] {
        let answer = translate_answer(status, data, &identity());
        let body: Value = serde_json::from_slice(&answer.body).expect("the answer is JSON");
        if answer.status == 200 {
            assert_eq!(body["type"], "message");
            assert_eq!(body["id"], "msg_fuzz");
            assert!(body["content"].is_array());
            assert!(body["stop_reason"].is_string());
            assert!(body["usage"]["input_tokens"].is_u64());
            assert!(body["usage"]["output_tokens"].is_u64());
        } else {
            assert_eq!(body["type"], "error", "{body}");
            assert!(body["error"]["type"].is_string(), "{body}");
            assert!(body["error"]["message"].is_string(), "{body}");
        }
        check_events(&MessageStream::new(identity()).whole(status, data));
    }
});

fn check_events(out: &[u8]) {
    let text = std::str::from_utf8(out).expect("events are UTF-8");
    let events: Vec<&str> = text
        .strip_suffix("\n\n")
        .expect("the last event is terminated")
        .split("\n\n")
        .collect();
    let mut started = false;
    let mut blocks = 0u64;
    let mut open: Option<u64> = None;
    let last = events.len() - 1;
    for (n, event) in events.iter().enumerate() {
        let (name, data) = event
            .split_once('\n')
            .expect("an event line and a data line");
        let name = name.strip_prefix("event: ").expect("an event name");
        let data = data.strip_prefix("data: ").expect("a data line");
        assert!(!data.contains('\n'), "one data line per event");
        let v: Value = serde_json::from_str(data).expect("each event is JSON");
        assert_eq!(v["type"], name, "the data names the event's type");
        let is_end = name == "message_stop" || name == "error";
        assert_eq!(is_end, n == last, "exactly one end, the last event: {text}");
        match name {
            "error" => assert!(v["error"]["message"].is_string()),
            "message_start" => {
                assert!(!started, "one message_start");
                started = true;
                assert_eq!(v["message"]["id"], "msg_fuzz");
                assert_eq!(v["message"]["content"], serde_json::json!([]));
            }
            "content_block_start" => {
                assert!(started && open.is_none());
                assert_eq!(v["index"], blocks);
                open = Some(blocks);
                blocks += 1;
            }
            "content_block_delta" => {
                assert!(open.is_some() && v["index"].as_u64() == open);
            }
            "content_block_stop" => {
                assert!(open.is_some() && v["index"].as_u64() == open);
                open = None;
            }
            "message_delta" => {
                assert!(started && open.is_none());
                assert!(v["delta"]["stop_reason"].is_string());
                assert!(v["usage"]["output_tokens"].is_u64());
            }
            "message_stop" => assert!(started && open.is_none()),
            other => panic!("unknown event {other}"),
        }
    }
}
