//! `usage::UsageMeter`, JSON and SSE: any chunking gives the total of one
//! chunk, memory stays within the meter's bounds, and a JSON answer that
//! serde_json reads gives the `usage.total_tokens` serde_json reads.
#![no_main]

use agentroute::usage::{UsageMeter, MAX_EVENT_LINE};
use agentroute_fuzz::{chunkings, members};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// The JSON meter keeps a `usage` value up to this many bytes.
const MAX_USAGE_VALUE: usize = 4096;

fuzz_target!(|data: &[u8]| {
    for (content_type, bound) in [
        ("application/json", MAX_USAGE_VALUE),
        ("text/event-stream; charset=utf-8", MAX_EVENT_LINE),
    ] {
        let whole = meter(content_type, &[data], bound);
        for chunks in chunkings(data) {
            assert_eq!(
                meter(content_type, &chunks, bound),
                whole,
                "{content_type} in {} chunks",
                chunks.len()
            );
        }
        if content_type == "application/json" {
            if let Some(expected) = serde_total(data) {
                assert_eq!(whole, expected, "the total serde_json reads");
            }
        }
    }
});

fn meter(content_type: &str, chunks: &[&[u8]], bound: usize) -> Option<u64> {
    let mut m = UsageMeter::new(Some(content_type)).expect("a metered content type");
    for chunk in chunks {
        m.feed(chunk);
        assert!(m.held() <= bound, "held {} > {bound}", m.held());
    }
    m.finish().total()
}

/// What serde_json makes of a JSON answer where the meter's reading is
/// defined: a whole answer within the meter's bound (so any `usage` value
/// is), a top-level object, `usage` spelled without escapes (the meter
/// matches member names as OpenAI writes them), and `total_tokens` named
/// once. `None`: no expectation.
fn serde_total(data: &[u8]) -> Option<Option<u64>> {
    if data.len() > MAX_USAGE_VALUE {
        return None;
    }
    let Ok(Value::Object(answer)) = serde_json::from_slice::<Value>(data) else {
        return None;
    };
    let top = members(data)?;
    if top.iter().any(|(k, _)| k.escaped && k.text == "usage") {
        return None;
    }
    let Some((_, raw)) = top.iter().rev().find(|(k, _)| k.text == "usage") else {
        return Some(None);
    };
    if raw.starts_with('[') {
        // serde reads a struct from an array too (`[42]`): no OpenAI server
        // sends that, and what it means is the upstream's word anyway.
        return None;
    }
    let named = members(raw.as_bytes()).map_or(0, |m| {
        m.iter().filter(|(k, _)| k.text == "total_tokens").count()
    });
    if named > 1 {
        return None;
    }
    Some(
        answer
            .get("usage")
            .and_then(|u| u.get("total_tokens"))
            .and_then(Value::as_u64),
    )
}
