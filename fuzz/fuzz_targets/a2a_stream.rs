//! A2A stream translation (`a2a::chat::ChunkStream`): any chunking of the
//! agent's stream gives the same OpenAI events, which are well-formed SSE:
//! `data: <JSON>` events ending in exactly one `data: [DONE]`, every chunk
//! of the one completion; what a stream holds stays within its bounds (and
//! within the room it is given), and an ended one holds nothing. A whole
//! (non-stream) answer translates to JSON.
#![no_main]

use agentroute::a2a::chat::{
    completion_from_a2a, ChunkStream, Completion, MAX_EVENT_BYTES, MAX_HELD_ANSWER_BYTES,
};
use agentroute_fuzz::{alike_however_cut, chunkings, translate_stream, Room};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn completion() -> Completion {
    Completion {
        id: "chatcmpl-fuzz".to_string(),
        model: "prod/echo".to_string(),
        created: 1_700_000_000,
    }
}

fuzz_target!(|data: &[u8]| {
    let whole = alike_however_cut(data, |chunks| {
        translate_stream(
            ChunkStream::new(completion()),
            chunks,
            Room::Unbounded {
                bound: MAX_EVENT_BYTES + MAX_HELD_ANSWER_BYTES + 4096,
            },
        )
    });
    check_events(&whole);

    for chunks in chunkings(data).iter().take(1) {
        check_events(&translate_stream(
            ChunkStream::new(completion()),
            chunks,
            Room::Within(data.len() % 512),
        ));
    }

    // The same bytes as a whole answer: a non-streamed completion, and the
    // stream of an agent that answered without streaming.
    for status in [200, 500] {
        let reply = completion_from_a2a(status, data, &completion());
        let body: Value = serde_json::from_str(&reply.body).expect("the reply is JSON");
        if reply.status == 200 {
            assert_eq!(body["object"], "chat.completion");
            assert!(body["choices"][0]["message"]["content"].is_string());
        } else {
            assert!(body["error"]["message"].is_string(), "{body}");
        }
        check_events(&ChunkStream::new(completion()).whole(status, data));
    }
});

fn check_events(out: &[u8]) {
    let text = std::str::from_utf8(out).expect("events are UTF-8");
    let events: Vec<&str> = text
        .strip_suffix("\n\n")
        .expect("the last event is terminated")
        .split("\n\n")
        .collect();
    let (done, rest) = events.split_last().expect("at least [DONE]");
    assert_eq!(*done, "data: [DONE]");
    let mut role_seen = false;
    for event in rest {
        let json = event
            .strip_prefix("data: ")
            .unwrap_or_else(|| panic!("not a data event: {event:?}"));
        assert!(!json.contains('\n'), "one line per event");
        let v: Value = serde_json::from_str(json).expect("each event is JSON");
        if v.get("error").is_some() {
            continue;
        }
        assert_eq!(v["object"], "chat.completion.chunk");
        assert_eq!(v["id"], "chatcmpl-fuzz");
        let delta = &v["choices"][0]["delta"];
        if delta.get("content").is_some() && !role_seen {
            assert_eq!(delta["role"], "assistant", "the first delta names the role");
            role_seen = true;
        }
    }
}
