//! Anthropic answer translation (`llm::anthropic`): any chunking of the
//! upstream's message event stream gives the same OpenAI events, which are
//! well-formed SSE: `data: <JSON>` events ending in exactly one
//! `data: [DONE]`, every chunk of the one completion, the first naming the
//! role; what a stream holds stays within its bounds (and within the room
//! it is given), and an ended one holds nothing. The same bytes as a whole
//! answer translate to JSON (a `chat.completion` or an OpenAI error), and
//! as a request body to a Messages request or a 400.
#![no_main]

use agentroute::llm::anthropic::{translate_answer, translate_request, ChatStream};
use agentroute::llm::{Identity, ProviderOptions, MAX_EVENT_BYTES};
use agentroute_fuzz::{alike_however_cut, chunkings, translate_stream, Room};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn identity() -> Identity {
    Identity {
        id: "chatcmpl-fuzz".to_string(),
        model: "claude-client".to_string(),
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
    // stream of an upstream that answered a stream request whole.
    for status in [200, 429, 529] {
        let answer = translate_answer(status, data, &identity());
        assert_eq!(answer.content_type, "application/json");
        let body: Value = serde_json::from_slice(&answer.body).expect("the answer is JSON");
        if answer.status == 200 {
            assert_eq!(body["object"], "chat.completion");
            assert!(body["choices"][0]["finish_reason"].is_string());
        } else {
            assert!(body["error"]["message"].is_string(), "{body}");
            assert_ne!(answer.status, 529, "an overload is a 503");
        }
        let mut stream = ChatStream::new(identity(), include_usage);
        check_events(&stream.whole(status, data));
        assert_eq!(stream.held(), 0);
    }

    // The same bytes as a request.
    match translate_request(data, &ProviderOptions::default()) {
        Ok(upstream) => {
            let body: Value = serde_json::from_slice(&upstream.body).expect("the request is JSON");
            assert_eq!(upstream.path, "/v1/messages");
            assert_eq!(body["max_tokens"].as_u64(), upstream.max_tokens);
            assert!(body["messages"].as_array().is_some_and(|m| !m.is_empty()));
        }
        Err(reply) => {
            assert_eq!(reply.status, 400);
            let body: Value = serde_json::from_str(&reply.body).expect("the refusal is JSON");
            assert_eq!(body["error"]["type"], "invalid_request_error");
        }
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
    for (n, event) in rest.iter().enumerate() {
        let json = event
            .strip_prefix("data: ")
            .unwrap_or_else(|| panic!("not a data event: {event:?}"));
        assert!(!json.contains('\n'), "one line per event");
        let v: Value = serde_json::from_str(json).expect("each event is JSON");
        if v.get("error").is_some() {
            assert_eq!(n + 1, rest.len(), "an error is the last event");
            continue;
        }
        assert_eq!(v["object"], "chat.completion.chunk");
        assert_eq!(v["id"], "chatcmpl-fuzz");
        if n == 0 {
            assert_eq!(
                v["choices"][0]["delta"]["role"], "assistant",
                "the first chunk names the role"
            );
        }
    }
}
