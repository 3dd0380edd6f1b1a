//! `mcp::rpc::read`: never a panic; the fast scanner never answers
//! differently from serde_json; and what is read is what serde_json reads
//! from the same body: a batch is an array, a call has a string `method`
//! (and `params.name` when it is a string), a member read twice is refused.
#![no_main]

use agentroute::mcp::rpc::{read, read_with_serde, readers_agree, Invalid, Message, Name};
use agentroute_fuzz::members;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = readers_agree(data) {
        panic!("{e}");
    }
    let message = read(data);
    assert_eq!(
        std::mem::discriminant(&message),
        std::mem::discriminant(&read_with_serde(data))
    );
    let value = match serde_json::from_slice::<Value>(data) {
        // The reader skips values it does not read without serde_json's
        // checks of their UTF-8, escapes, number range and depth.
        Err(_) => return,
        Ok(v) => v,
    };
    let object = match value {
        Value::Array(_) => {
            assert_eq!(message, Message::Batch);
            return;
        }
        Value::Object(object) => object,
        _ => {
            assert_eq!(message, Message::Invalid(Invalid::NotAnObject));
            return;
        }
    };
    let names = members(data).expect("an object serde_json read");
    let twice = ["id", "method", "params"]
        .iter()
        .any(|field| names.iter().filter(|(k, _)| k.text == *field).count() > 1);
    if twice {
        assert!(matches!(message, Message::Invalid(Invalid::Duplicate(_))), "{message:?}");
        return;
    }
    match (&message, object.get("method")) {
        (Message::Call { method, name, .. }, Some(Value::String(m))) => {
            assert_eq!(method, m);
            if let (Name::Text(n), Some(Value::Object(params))) = (name, object.get("params")) {
                assert_eq!(params.get("name"), Some(&Value::String(n.clone())));
            }
        }
        (Message::Invalid(Invalid::Duplicate("params.name")), _) => {}
        (Message::Invalid(Invalid::MethodNotAString), Some(_)) => {}
        (Message::Invalid(Invalid::BadId), _) => {
            assert!(!matches!(object.get("id"), Some(Value::String(_) | Value::Number(_) | Value::Null)));
        }
        (Message::Response | Message::Invalid(Invalid::NoMethod), None) => {}
        (other, method) => panic!("read {other:?} for method {method:?}"),
    }
});
