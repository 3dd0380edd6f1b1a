//! `sse::LineSplitter`: the lines of a stream, whatever its chunking, are
//! those of a plain split on `\n` (a trailing `\r` dropped), lines longer
//! than the bound skipped and counted, and no more than the bound held.
#![no_main]

use agentroute::sse::{self, LineSplitter};
use agentroute_fuzz::{chunkings, fnv1a};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A bound from the input (often below its line lengths), and the
    // filter's own usage-event bound.
    let small = (fnv1a(data) % 64) as usize;
    for max_line in [small, 64 * 1024] {
        let expected = naive(data, max_line);
        assert_eq!(split(&[data], max_line), expected, "one chunk");
        for chunks in chunkings(data) {
            assert_eq!(
                split(&chunks, max_line),
                expected,
                "{} chunks",
                chunks.len()
            );
        }
    }
    for line in data.split(|&b| b == b'\n') {
        if let Some(payload) = sse::data(line) {
            assert!(line.ends_with(payload));
        }
    }
});

fn split(chunks: &[&[u8]], max_line: usize) -> (Vec<Vec<u8>>, u64) {
    let mut splitter = LineSplitter::new(max_line);
    let mut lines = Vec::new();
    for chunk in chunks {
        splitter.feed(chunk, |l| lines.push(l.to_vec()));
        assert!(
            splitter.pending_len() <= max_line,
            "held more than the bound"
        );
    }
    splitter.finish(|l| lines.push(l.to_vec()));
    assert_eq!(splitter.pending_len(), 0);
    (lines, splitter.skipped)
}

/// The reference: the whole stream split on `\n`. The length bound counts
/// the bytes before the `\n` (a `\r` included).
fn naive(data: &[u8], max_line: usize) -> (Vec<Vec<u8>>, u64) {
    let mut lines = Vec::new();
    let mut skipped = 0;
    let mut pieces: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    let tail = pieces.pop().unwrap_or_default();
    for line in pieces {
        if line.len() > max_line {
            skipped += 1;
        } else {
            lines.push(line.strip_suffix(b"\r").unwrap_or(line).to_vec());
        }
    }
    if tail.len() > max_line {
        skipped += 1;
    } else if !tail.is_empty() {
        lines.push(tail.strip_suffix(b"\r").unwrap_or(tail).to_vec());
    }
    (lines, skipped)
}
