//! `mcp::list`: a `tools/list` answer is filtered alike by the byte-cutting
//! fast path and serde_json (as JSON values); what stays is exactly the
//! tools the rule allows; and an SSE stream is filtered alike whatever its
//! chunking, holding no more than its bound.
#![no_main]

use agentroute::mcp::list::{filter_answer, filters_agree, Filtered, SseFilter};
use agentroute_fuzz::{chunkings, fnv1a};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// A rule from the input: names with an even first byte are allowed.
fn allows(name: &str) -> bool {
    name.bytes().next().is_some_and(|b| b % 2 == 0)
}

fuzz_target!(|data: &[u8]| {
    if let Err(e) = filters_agree(data, &allows) {
        panic!("{e}");
    }
    // Answers serde_json refuses (clients do too) are passed on as they
    // are or cut; only readable ones are checked.
    let readable = serde_json::from_slice::<Value>(data).is_ok();
    if let (true, Filtered::Rewritten(out)) = (readable, filter_answer(data, &allows)) {
        let v: Value = serde_json::from_slice(&out).expect("a rewritten answer is JSON");
        for tool in v["result"]["tools"].as_array().expect("a tool list") {
            let name = tool["name"].as_str().expect("a named tool");
            assert!(allows(name), "{name:?} kept");
        }
    }
    let bound = 64 + (fnv1a(data) % 512) as usize;
    let whole = stream(&[data], bound);
    for chunks in chunkings(data) {
        assert_eq!(stream(&chunks, bound), whole, "{} chunks", chunks.len());
    }
});

/// The filtered stream, or where it stopped for an event over the bound.
fn stream(chunks: &[&[u8]], bound: usize) -> Result<Vec<u8>, usize> {
    let mut filter = SseFilter::new(bound);
    let mut out = Vec::new();
    let mut fed = 0;
    let mut largest = 0;
    for chunk in chunks {
        fed += chunk.len();
        largest = largest.max(chunk.len());
        match filter.feed(chunk, &allows) {
            Ok(o) => out.extend(o),
            // Where it gives up depends on the chunking; that it does not.
            Err(_) => return Err(0),
        }
        // What is held is one unfinished event within the bound, in room
        // a chunk made (a vector's growth at most doubles it).
        assert!(
            filter.held() <= 4 * (bound + largest) + 4096,
            "held {} after {fed}",
            filter.held()
        );
    }
    out.extend(filter.finish(&allows));
    Ok(out)
}
