//! Server-sent-events streams read as the body passes in chunks of any
//! size, in bounded memory, whatever the upstream sends: lines
//! ([`LineSplitter`], for usage metering: a line longer than the bound is
//! skipped and counted) and whole events ([`EventReader`], for A2A streams:
//! multi-line data, every line end of the standard).

#[derive(Debug)]
pub struct LineSplitter {
    /// The unfinished last line of the chunks so far.
    pending: Vec<u8>,
    max_line: usize,
    /// The current line outgrew `max_line`: its bytes are dropped up to the
    /// next newline.
    skipping: bool,
    /// Lines dropped for their length.
    pub skipped: u64,
}

impl LineSplitter {
    pub fn new(max_line: usize) -> Self {
        LineSplitter {
            pending: Vec::new(),
            max_line,
            skipping: false,
            skipped: 0,
        }
    }

    /// Calls `on_line` with every line `chunk` completes, without its `\n`
    /// or `\r\n`.
    pub fn feed(&mut self, chunk: &[u8], mut on_line: impl FnMut(&[u8])) {
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            let (line, tail) = rest.split_at(end);
            rest = tail.get(1..).unwrap_or_default();
            if self.skipping {
                self.skipping = false;
                continue;
            }
            // The bound holds for a line that arrives whole too, so that a
            // line is skipped or kept whatever the chunking.
            if self.pending.len() + line.len() > self.max_line {
                self.pending.clear();
                self.skipped += 1;
            } else if self.pending.is_empty() {
                on_line(trim_cr(line));
            } else {
                self.pending.extend_from_slice(line);
                on_line(trim_cr(&self.pending));
                self.pending.clear();
            }
        }
        if self.skipping {
            return;
        }
        if self.pending.len() + rest.len() > self.max_line {
            self.pending = Vec::new();
            self.skipping = true;
            self.skipped += 1;
        } else {
            self.pending.extend_from_slice(rest);
        }
    }

    /// Bytes of the unfinished line held now.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// The last line, when the stream ends without a newline.
    pub fn finish(&mut self, mut on_line: impl FnMut(&[u8])) {
        if !self.skipping && !self.pending.is_empty() {
            on_line(trim_cr(&self.pending));
        }
        self.pending = Vec::new();
        self.skipping = false;
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The payload of a `data:` line (one optional space after the colon is
/// part of the field syntax); `None` for comments, other fields and blanks.
pub fn data(line: &[u8]) -> Option<&[u8]> {
    let value = line.strip_prefix(b"data:")?;
    Some(value.strip_prefix(b" ").unwrap_or(value))
}

/// What an [`EventReader`] finds.
#[derive(Debug, PartialEq, Eq)]
pub enum SseEvent<'a> {
    /// An event's data: its `data:` lines' values joined by `\n`.
    Data(&'a [u8]),
    /// An event over the bound: dropped, up to the blank line that ends it.
    TooLong,
}

/// The events of a server-sent-events stream, read as the body passes in
/// chunks of any size, the way the HTML standard reads an event stream
/// (<https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation>):
/// a line ends at CR, LF or CRLF; the values of an event's `data:` lines are
/// joined with `\n`; a blank line ends the event. Other fields (`event:`,
/// `id:`, `retry:`) and comments are skipped. Unlike the standard, an event
/// the stream ends without its blank line is still read: the agent said it.
///
/// Memory is bounded: an event whose data and unfinished line come to more
/// than the bound is reported ([`SseEvent::TooLong`]) and dropped, whatever
/// the chunking, and buffers are let go between events.
#[derive(Debug)]
pub struct EventReader {
    /// The current event's data so far (each `data:` value followed by
    /// `\n`), then the bytes of its unfinished line.
    buf: Vec<u8>,
    /// Where the data ends in `buf`.
    data_len: usize,
    max_event: usize,
    /// The last line ended with CR: an LF that follows belongs to it.
    after_cr: bool,
    /// The current event outgrew the bound: its lines are dropped up to the
    /// blank line that ends it.
    dropping: bool,
    /// While dropping: the current line has bytes (its end is no blank line).
    line_started: bool,
}

/// Buffers up to this size are kept from one event to the next.
const KEPT_CAPACITY: usize = 4096;

impl EventReader {
    pub fn new(max_event: usize) -> Self {
        EventReader {
            buf: Vec::new(),
            data_len: 0,
            max_event,
            after_cr: false,
            dropping: false,
            line_started: false,
        }
    }

    /// Calls `on_event` with every event `chunk` completes, in order.
    pub fn feed(&mut self, chunk: &[u8], mut on_event: impl FnMut(SseEvent<'_>)) {
        let mut rest = chunk;
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if let Some(tail) = rest.strip_prefix(b"\n") {
                rest = tail;
            }
        }
        while let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            let (line, tail) = rest.split_at(end);
            let cr = tail.first() == Some(&b'\r');
            rest = tail.get(1..).unwrap_or_default();
            if cr {
                match rest.strip_prefix(b"\n") {
                    Some(after) => rest = after,
                    None if rest.is_empty() => self.after_cr = true,
                    None => {}
                }
            }
            self.line(line, &mut on_event);
        }
        self.unfinished(rest, &mut on_event);
        if self.buf.is_empty() {
            self.buf = Vec::new();
        }
    }

    /// The stream ended: its last event, if the blank line after it never
    /// came.
    pub fn finish(&mut self, mut on_event: impl FnMut(SseEvent<'_>)) {
        if !self.dropping {
            if self.buf.len() > self.data_len {
                self.line(b"", &mut on_event);
            }
            self.dispatch(&mut on_event);
        }
        *self = EventReader::new(self.max_event);
    }

    /// Bytes held now (the buffer's capacity, what the allocator gave).
    pub fn held(&self) -> usize {
        self.buf.capacity()
    }

    /// A line ends; `piece` is its part in this chunk.
    fn line(&mut self, piece: &[u8], on_event: &mut impl FnMut(SseEvent<'_>)) {
        if self.dropping {
            let blank = piece.is_empty() && !self.line_started;
            self.line_started = false;
            if blank {
                self.dropping = false;
            }
            return;
        }
        let held_part = self.buf.len() - self.data_len;
        let line_len = held_part + piece.len();
        if line_len == 0 {
            return self.dispatch(on_event);
        }
        // The bound counts the whole line, as it would be held had it
        // come in pieces: an event is dropped or kept whatever the
        // chunking.
        if self.data_len + line_len > self.max_event {
            return self.drop_event(on_event);
        }
        if held_part == 0 {
            if let Some(value) = data_value(piece) {
                let value = piece.get(value).unwrap_or_default();
                grow_within(&mut self.buf, value.len() + 1, self.max_event);
                self.buf.extend_from_slice(value);
                self.buf.push(b'\n');
            }
        } else {
            grow_within(&mut self.buf, piece.len(), self.max_event);
            self.buf.extend_from_slice(piece);
            let start = self.data_len;
            match data_value(self.buf.get(start..).unwrap_or_default()) {
                Some(value) => {
                    let len = value.len();
                    self.buf
                        .copy_within(start + value.start..start + value.end, start);
                    self.buf.truncate(start + len);
                    self.buf.push(b'\n');
                }
                None => self.buf.truncate(start),
            }
        }
        self.data_len = self.buf.len();
    }

    /// The bytes after the last line end of a chunk.
    fn unfinished(&mut self, rest: &[u8], on_event: &mut impl FnMut(SseEvent<'_>)) {
        if rest.is_empty() {
            return;
        }
        if self.dropping {
            self.line_started = true;
            return;
        }
        if self.buf.len() + rest.len() > self.max_event {
            self.drop_event(on_event);
            self.line_started = true;
            return;
        }
        grow_within(&mut self.buf, rest.len(), self.max_event);
        self.buf.extend_from_slice(rest);
    }

    fn dispatch(&mut self, on_event: &mut impl FnMut(SseEvent<'_>)) {
        if self.data_len > 0 {
            // The last `\n` ends the last data line; it is not data.
            let data = self.buf.get(..self.data_len - 1).unwrap_or_default();
            on_event(SseEvent::Data(data));
        }
        if self.buf.capacity() > KEPT_CAPACITY {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
        self.data_len = 0;
    }

    fn drop_event(&mut self, on_event: &mut impl FnMut(SseEvent<'_>)) {
        self.buf = Vec::new();
        self.data_len = 0;
        self.dropping = true;
        self.line_started = false;
        on_event(SseEvent::TooLong);
    }
}

/// Where the value of a `data` field is in `line`: after `data:` and one
/// optional space, or empty for a bare `data`; `None` for other fields and
/// comments.
fn data_value(line: &[u8]) -> Option<std::ops::Range<usize>> {
    match line.strip_prefix(b"data")? {
        [] => Some(line.len()..line.len()),
        [b':', b' ', ..] => Some(6..line.len()),
        [b':', ..] => Some(5..line.len()),
        _ => None,
    }
}

/// Makes room for `additional` bytes, growing by doubling but never past
/// `max` (what the caller checked it may hold), so that the capacity held
/// stays within the bound too.
fn grow_within(buf: &mut Vec<u8>, additional: usize, max: usize) {
    let needed = buf.len() + additional;
    if needed <= buf.capacity() {
        return;
    }
    let target = needed
        .max(buf.capacity().saturating_mul(2).min(max))
        .max(64.min(max));
    buf.reserve_exact(target - buf.len());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(chunks: &[&[u8]], max: usize) -> (Vec<String>, u64) {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, |l| out.push(String::from_utf8_lossy(l).into_owned()));
        }
        s.finish(|l| out.push(String::from_utf8_lossy(l).into_owned()));
        (out, s.skipped)
    }

    #[test]
    fn lines_across_any_chunking() {
        let text = b"data: a\r\n\r\ndata: bb\n: ping\ndata: c";
        let whole = lines(&[text], 100).0;
        assert_eq!(whole, ["data: a", "", "data: bb", ": ping", "data: c"]);
        for cut in 0..text.len() {
            let (a, b) = text.split_at(cut);
            assert_eq!(lines(&[a, b], 100).0, whole, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(lines(&bytes, 100).0, whole);
    }

    #[test]
    fn long_lines_are_skipped_in_bounded_memory() {
        let (out, skipped) = lines(&[b"short\n", &[b'x'; 50], &[b'y'; 50], b"\nnext\n"], 64);
        assert_eq!(out, ["short", "next"]);
        assert_eq!(skipped, 1);
        let (out, skipped) = lines(&[&[b'x'; 70], b"\nok"], 64);
        assert_eq!((out, skipped), (vec!["ok".to_string()], 1));
    }

    /// Found by fuzzing (fuzz/fuzz_targets/sse_lines.rs): a line over the
    /// bound was kept when it arrived in one chunk and skipped when split.
    #[test]
    fn a_long_line_is_skipped_in_one_chunk_too() {
        let text = b"data:{\"usage\": {\"total_tokens\": 17}}\ndata: [DONE]";
        let whole = lines(&[text], 20);
        assert_eq!(
            whole,
            (vec!["data: [DONE]".to_string()], 1),
            "skipped, not kept"
        );
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(lines(&bytes, 20), whole);
    }

    #[test]
    fn data_fields() {
        assert_eq!(data(b"data: {}"), Some(&b"{}"[..]));
        assert_eq!(data(b"data:{}"), Some(&b"{}"[..]));
        assert_eq!(data(b": comment"), None);
        assert_eq!(data(b"event: error"), None);
    }

    /// Events as (data, or None for one too long), read in `chunks`.
    fn events(chunks: &[&[u8]], max: usize) -> Vec<Option<String>> {
        let mut reader = EventReader::new(max);
        let mut out = Vec::new();
        let mut record = |e: SseEvent<'_>| {
            out.push(match e {
                SseEvent::Data(d) => Some(String::from_utf8_lossy(d).into_owned()),
                SseEvent::TooLong => None,
            })
        };
        for c in chunks {
            reader.feed(c, &mut record);
            assert!(reader.held() <= max, "held {} > {max}", reader.held());
        }
        reader.finish(&mut record);
        assert_eq!(reader.held(), 0);
        out
    }

    const EVENTS: &[u8] = b": keep-alive\r\n\
        data: {\"a\":\r\ndata: 1}\r\n\r\n\
        event: message\rid: 7\rdata:two\r\rdata\ndata: lines\n\n\
        retry: 10\n\n\
        data: \n\n\
        dataX: not data\ndata: last";

    #[test]
    fn events_across_any_chunking() {
        let whole = events(&[EVENTS], 1024);
        let want = ["{\"a\":\n1}", "two", "\nlines", "", "last"];
        assert_eq!(
            whole,
            want.iter().map(|s| Some(s.to_string())).collect::<Vec<_>>()
        );
        for cut in 0..EVENTS.len() {
            let (a, b) = EVENTS.split_at(cut);
            assert_eq!(events(&[a, b], 1024), whole, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = EVENTS.chunks(1).collect();
        assert_eq!(events(&bytes, 1024), whole);
    }

    #[test]
    fn every_line_end_of_the_standard() {
        for end in ["\n", "\r", "\r\n"] {
            let text = format!("data: a{end}data: b{end}{end}data: c{end}{end}");
            let whole = events(&[text.as_bytes()], 64);
            assert_eq!(whole, [Some("a\nb".into()), Some("c".into())], "{end:?}");
            let bytes: Vec<&[u8]> = text.as_bytes().chunks(1).collect();
            assert_eq!(events(&bytes, 64), whole, "{end:?}");
        }
        // A CR at a chunk's end and the LF starting the next are one end.
        assert_eq!(
            events(&[b"data: a\r", b"\ndata: b\r", b"", b"\n\r\n"], 64),
            [Some("a\nb".into())]
        );
    }

    #[test]
    fn long_events_are_dropped_whatever_the_chunking() {
        let long = format!(
            "data: {}\ndata: {}\n\ndata: next\n\n",
            "x".repeat(30),
            "y".repeat(30)
        );
        // The data (31 + 31 bytes) and the last line held (36) exceed 64.
        let whole = events(&[long.as_bytes()], 64);
        assert_eq!(whole, [None, Some("next".into())]);
        for cut in 0..long.len() {
            let (a, b) = long.as_bytes().split_at(cut);
            assert_eq!(events(&[a, b], 64), whole, "cut at {cut}");
        }
        // A line over the bound on its own, in one chunk or in many.
        let line = format!(": {}\ndata: after\n\ndata: ok\n\n", "z".repeat(100));
        let whole = events(&[line.as_bytes()], 64);
        assert_eq!(
            whole,
            [None, Some("ok".into())],
            "the rest of its event goes too"
        );
        let bytes: Vec<&[u8]> = line.as_bytes().chunks(7).collect();
        assert_eq!(events(&bytes, 64), whole);
    }

    #[test]
    fn held_bytes_follow_the_unfinished_event() {
        let mut reader = EventReader::new(1 << 20);
        let mut seen = Vec::new();
        reader.feed(b"data: {\"x\": \"", |e| seen.push(format!("{e:?}")));
        let small = reader.held();
        assert!((13..=64).contains(&small), "{small}");
        reader.feed(&[b'a'; 100_000], |e| seen.push(format!("{e:?}")));
        assert!(
            (100_013..=200_026).contains(&reader.held()),
            "{}",
            reader.held()
        );
        reader.feed(b"\"}\n\n", |e| seen.push(format!("{e:?}")));
        assert_eq!(seen.len(), 1);
        assert_eq!(
            reader.held(),
            0,
            "a large buffer is let go once its event is out"
        );
        reader.feed(b"data: 1\n\n", |_| ());
        assert_eq!(reader.held(), 0, "nothing held between events");
        // The capacity never passes the bound.
        let mut reader = EventReader::new(1000);
        for _ in 0..9 {
            reader.feed(&[b'd'; 100], |_| ());
        }
        assert!(reader.held() <= 1000, "{}", reader.held());
    }
}
