//! Gemini stream translation (`llm::gemini::ChatStream`): any chunking of
//! the upstream's SSE stream gives the same OpenAI events, which are
//! well-formed SSE: `data: <JSON>` events ending in exactly one
//! `data: [DONE]`, every chunk of the one completion; what a stream holds
//! stays within its bound (and within the room it is given), and an ended
//! one holds nothing. The same bytes as a whole answer translate to a
//! `chat.completion` or an OpenAI error, and answered whole to a stream
//! request to well-formed events.
#![no_main]

use agentroute::llm::gemini::{translate_answer, ChatStream};
use agentroute::llm::{Identity, MAX_EVENT_BYTES};
use agentroute_fuzz::{alike_however_cut, chunkings, translate_stream, Room};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn identity() -> Identity {
    Identity {
        id: "chatcmpl-fuzz".to_string(),
        model: "gemini-fuzz".to_string(),
        created: 1_700_000_000,
    }
}

fuzz_target!(|data: &[u8]| {
    let include_usage = data.len() % 2 == 0;
    let whole = alike_however_cut(data, |chunks| {
        translate_stream(
            ChatStream::new(identity(), include_usage),
            chunks,
            Room::Unbounded {
                bound: MAX_EVENT_BYTES + 4096,
            },
        )
    });
    check_events(&whole);

    for chunks in chunkings(data).iter().take(1) {
        check_events(&translate_stream(
            ChatStream::new(identity(), true),
            chunks,
            Room::Within(data.len() % 512),
        ));
    }

    // The same bytes as a whole answer: a non-streamed completion, and the
    // stream of an upstream that answered without streaming.
    for status in [200, 429, 503] {
        let answer = translate_answer(status, data, &identity());
        let body: Value = serde_json::from_slice(&answer.body).expect("the answer is JSON");
        if answer.status == 200 {
            assert_eq!(body["object"], "chat.completion");
            let message = &body["choices"][0]["message"];
            assert!(message["content"].is_string() || message["tool_calls"].is_array());
            assert!(body["choices"][0]["finish_reason"].is_string());
        } else {
            assert!(body["error"]["message"].is_string(), "{body}");
            assert!((400..600).contains(&answer.status));
        }
        check_events(&ChatStream::new(identity(), include_usage).whole(status, data));
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
        assert_ne!(json, "[DONE]", "one [DONE] only");
        let v: Value = serde_json::from_str(json).expect("each event is JSON");
        if v.get("error").is_some() {
            continue;
        }
        assert_eq!(v["object"], "chat.completion.chunk");
        assert_eq!(v["id"], "chatcmpl-fuzz");
        if let Some(choice) = v["choices"].get(0) {
            assert_eq!(
                choice["delta"].get("role").is_some(),
                !role_seen,
                "the first delta, and only it, names the role"
            );
            role_seen = true;
        }
    }
}
