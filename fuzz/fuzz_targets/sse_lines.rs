//! `sse::LineSplitter`: the lines of a stream, whatever its chunking, are
//! those of a plain split on `\n` (a trailing `\r` dropped), lines longer
//! than the bound skipped and counted, and no more than the bound held.
//!
//! `sse::EventReader`: the events of a stream, whatever its chunking, are
//! those of the whole text read line by line (CR, LF and CRLF ends, data
//! lines joined by `\n`), events over the bound reported and dropped, and
//! no more than the bound held.
#![no_main]

use agentroute::sse::{self, EventReader, LineSplitter, SseEvent};
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
    for max_event in [small, 64 * 1024] {
        let expected = naive_events(data, max_event);
        assert_eq!(events(&[data], max_event), expected, "one chunk");
        for chunks in chunkings(data) {
            assert_eq!(
                events(&chunks, max_event),
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

/// Events read chunk by chunk: `None` for one over the bound.
fn events(chunks: &[&[u8]], max_event: usize) -> Vec<Option<Vec<u8>>> {
    let mut reader = EventReader::new(max_event);
    let mut out = Vec::new();
    let mut record = |event: SseEvent<'_>| {
        out.push(match event {
            SseEvent::Data(data) => Some(data.to_vec()),
            SseEvent::TooLong => None,
        })
    };
    for chunk in chunks {
        reader.feed(chunk, &mut record);
        assert!(reader.held() <= max_event, "held more than the bound");
    }
    reader.finish(&mut record);
    assert_eq!(reader.held(), 0);
    out
}

/// The reference: the whole text cut into lines at CR, LF or CRLF, then
/// read as the standard says; an event is over the bound when its data so
/// far and the line being read come to more than the bound.
fn naive_events(data: &[u8], max_event: usize) -> Vec<Option<Vec<u8>>> {
    let mut lines: Vec<&[u8]> = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'\n' => {
                lines.push(&data[start..i]);
                start = i + 1;
            }
            b'\r' => {
                lines.push(&data[start..i]);
                if data.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    let tail = &data[start..];
    let ended_in_line = !tail.is_empty();
    if ended_in_line {
        lines.push(tail);
    }
    let mut out = Vec::new();
    let mut buffer: Vec<u8> = Vec::new();
    let mut dropping = false;
    for line in lines {
        if line.is_empty() {
            if !dropping && !buffer.is_empty() {
                buffer.pop();
                out.push(Some(std::mem::take(&mut buffer)));
            }
            buffer.clear();
            dropping = false;
            continue;
        }
        if dropping {
            continue;
        }
        if buffer.len() + line.len() > max_event {
            out.push(None);
            buffer.clear();
            dropping = true;
            continue;
        }
        let value = if line == b"data" {
            Some(&b""[..])
        } else {
            line.strip_prefix(b"data:")
                .map(|v| v.strip_prefix(b" ").unwrap_or(v))
        };
        if let Some(value) = value {
            buffer.extend_from_slice(value);
            buffer.push(b'\n');
        }
    }
    // The stream ended without the blank line after its last event.
    if !dropping && !buffer.is_empty() {
        buffer.pop();
        out.push(Some(buffer));
    }
    out
}
