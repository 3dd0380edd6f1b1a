//! `openai::read_body` / `model_from_body`: never a panic, and the model and
//! token limit are what serde_json itself reads from the same body: a
//! top-level string `model`, the first non-negative integer of
//! `max_completion_tokens`, `max_tokens`, `max_output_tokens`. A body naming
//! one of those twice is refused (a backend takes the last `model`). And the
//! fast scanner (`json_scan`) never answers differently from serde_json.
#![no_main]

use agentroute::openai::{model_from_body, read_body, read_body_with_serde, ModelError};
use agentroute_fuzz::members;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const READ: [&str; 4] = [
    "model",
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
];

fuzz_target!(|data: &[u8]| {
    let facts = read_body(data);
    assert_eq!(model_from_body(data), facts.model);
    assert_eq!(facts, read_body_with_serde(data));

    if data.iter().all(u8::is_ascii_whitespace) {
        assert_eq!(facts.model, Err(ModelError::Missing));
        return;
    }
    let object = match serde_json::from_slice::<Value>(data) {
        // Known differences (reported): serde_json checks the UTF-8 and
        // `\u` escapes of every string, the range of every number, and
        // nests at most 128 deep; the filter skips the values it does not
        // read without those checks (and without recursion). Such a body is
        // left to the backend's parser, which reads the same model if it
        // accepts it.
        Err(e) if skipped_value_check(&e.to_string()) => return,
        Err(_) => {
            assert!(
                matches!(facts.model, Err(ModelError::InvalidJson(_))),
                "serde_json refuses the body, the filter read {:?}",
                facts.model
            );
            return;
        }
        Ok(Value::Object(object)) => object,
        Ok(_) => {
            assert_eq!(facts.model, Err(ModelError::NotAnObject));
            return;
        }
    };
    let names = members(data).expect("an object serde_json read");
    let twice = READ
        .iter()
        .any(|field| names.iter().filter(|(k, _)| k.text == *field).count() > 1);
    if twice {
        assert!(
            matches!(facts.model, Err(ModelError::InvalidJson(_))),
            "a field read twice must be refused, got {:?}",
            facts.model
        );
        return;
    }
    let expected = match object.get("model") {
        None | Some(Value::Null) => Err(ModelError::Missing),
        Some(Value::String(s)) if s.is_empty() => Err(ModelError::Empty),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(ModelError::NotAString),
    };
    assert_eq!(facts.model, expected);
    let limit = ["max_completion_tokens", "max_tokens", "max_output_tokens"]
        .iter()
        .find_map(|f| object.get(*f).and_then(Value::as_u64));
    assert_eq!(facts.max_tokens, limit);
});

fn skipped_value_check(error: &str) -> bool {
    [
        "surrogate",
        "unicode code point",
        "hex escape",
        "recursion limit",
        "number out of range",
    ]
    .iter()
    .any(|what| error.contains(what))
}
