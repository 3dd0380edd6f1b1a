//! `mcp::batch::BatchWatch` fed a body in pieces (sizes from the input's
//! first byte, empty ones included), each piece cut to what the watch asks
//! for, as the host reads it: the verdict is what the whole body says — the
//! first byte that is not JSON whitespace decides wherever it is, a body
//! padded past the bound is refused, and whitespace alone stays undecided.
#![no_main]

use agentroute::mcp::batch::{BatchWatch, Seen, MAX_LEADING_WHITESPACE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&step, body)) = data.split_first() else {
        return;
    };
    let blank = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let leading = body.iter().take_while(|b| blank(b)).count();
    let want = if leading > MAX_LEADING_WHITESPACE {
        Seen::TooMuchWhitespace
    } else {
        match body.get(leading) {
            None => Seen::Undecided,
            Some(b'[') => Seen::Batch,
            Some(_) => Seen::NotABatch,
        }
    };
    let mut watch = BatchWatch::default();
    let mut seen = Seen::Undecided;
    let mut at = 0;
    let mut n = 0usize;
    while at <= body.len() {
        // Piece sizes 0..=step+1, varying with the piece's number (the
        // first is never empty, so the walk always moves on).
        let size = ((usize::from(step) + 1) * (n + 1) * 7919) % (usize::from(step) + 2);
        let end = (at + size).min(body.len());
        let piece = &body[at..end];
        let read = &piece[..piece.len().min(watch.wants())];
        seen = watch.feed(read);
        if seen != Seen::Undecided || end == body.len() {
            break;
        }
        at = end;
        n += 1;
    }
    assert_eq!(seen, want, "leading whitespace {leading}");
});
