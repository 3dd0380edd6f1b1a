//! Chat completion → A2A request (`a2a::chat::parse_chat`, `a2a_request`):
//! never a panic; a refusal is an OpenAI-shaped 400; an accepted chat
//! becomes a JSON-RPC request, in both A2A generations, whose message
//! carries exactly the user texts read, in order.
#![no_main]

use agentroute::a2a::chat::{a2a_request, parse_chat};
use agentroute::config::A2aVersion;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let chat = match parse_chat(data) {
        Ok(chat) => chat,
        Err(reply) => {
            assert_eq!(reply.status, 400);
            let body: Value = serde_json::from_str(&reply.body).expect("the refusal is JSON");
            assert_eq!(body["error"]["type"], "invalid_request_error");
            return;
        }
    };
    assert!(!chat.texts.is_empty() && chat.texts.iter().all(|t| !t.is_empty()));
    for version in [A2aVersion::V1_0, A2aVersion::V0_3] {
        for context in [None, Some("ctx-1"), Some("")] {
            let request = a2a_request(version, &chat, context, "req-1");
            let v: Value = serde_json::from_slice(&request).expect("the request is JSON");
            assert_eq!(v["jsonrpc"], "2.0");
            assert_eq!(v["id"], "req-1");
            let message = &v["params"]["message"];
            let texts: Vec<&str> = message["parts"]
                .as_array()
                .expect("parts")
                .iter()
                .map(|p| p["text"].as_str().expect("a text part"))
                .collect();
            assert_eq!(texts, chat.texts);
            assert_eq!(
                message.get("contextId").and_then(Value::as_str),
                context.filter(|c| !c.is_empty())
            );
        }
    }
});
