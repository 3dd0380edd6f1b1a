//! Lines of a server-sent-events stream, read as the body passes in chunks
//! of any size, in bounded memory: a line longer than the bound is skipped
//! (and counted) rather than kept, whatever the upstream sends.

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
}
