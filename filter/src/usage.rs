//! The LLM tokens an answer used, read as it streams past in fixed memory,
//! whatever its size: `usage.total_tokens` of a JSON answer, or of the usage
//! event of a server-sent-events stream.
//!
//! A JSON answer is never kept: a small state machine follows its structure
//! byte by byte and keeps only the value of the top-level `usage` member. A
//! stream keeps at most one event line.

use serde::Deserialize;

use crate::sse::{self, LineSplitter};

/// Longest `usage` value kept from a JSON answer.
const MAX_USAGE_VALUE: usize = 4096;
/// Longest SSE event line kept; usage events are a few hundred bytes.
pub const MAX_EVENT_LINE: usize = 64 * 1024;

#[derive(Debug)]
pub struct UsageMeter {
    kind: Kind,
    total: Option<u64>,
}

#[derive(Debug)]
enum Kind {
    Json(UsageScanner),
    Sse {
        lines: LineSplitter,
        /// Data events seen (excluding `[DONE]` and the usage event).
        events: u64,
    },
}

#[derive(Deserialize)]
struct WithUsage {
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    total_tokens: Option<u64>,
}

fn total_of_usage(value: &[u8]) -> Option<u64> {
    serde_json::from_slice::<Usage>(value).ok()?.total_tokens
}

impl UsageMeter {
    /// A meter for a response of this content type, if it can carry usage.
    pub fn new(content_type: Option<&str>) -> Option<Self> {
        let media = content_type?.split(';').next()?.trim().to_ascii_lowercase();
        let kind = match media.as_str() {
            "text/event-stream" => Kind::Sse {
                lines: LineSplitter::new(MAX_EVENT_LINE),
                events: 0,
            },
            "application/json" => Kind::Json(UsageScanner::default()),
            _ => return None,
        };
        Some(UsageMeter { kind, total: None })
    }

    /// Bytes this meter holds now (for the VM-wide bound on metering memory).
    pub fn held(&self) -> usize {
        match &self.kind {
            Kind::Json(s) => s.value.len(),
            Kind::Sse { lines, .. } => lines.pending_len(),
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        let total = &mut self.total;
        match &mut self.kind {
            Kind::Json(scanner) => scanner.feed(chunk),
            Kind::Sse { lines, events } => lines.feed(chunk, |line| sse_line(line, total, events)),
        }
    }

    /// Tokens to debit once the response ended; `None` when the answer
    /// reported none. A stream without a usage event (the client did not ask
    /// for `stream_options.include_usage`) is estimated at one token per
    /// streamed event, as OpenAI-style servers stream about one token per
    /// event.
    pub fn finish(mut self) -> Option<u64> {
        match &mut self.kind {
            Kind::Json(scanner) => scanner.usage().and_then(total_of_usage),
            Kind::Sse { lines, events } => {
                let total = &mut self.total;
                lines.finish(|line| sse_line(line, total, events));
                Some(self.total.unwrap_or(*events))
            }
        }
    }
}

fn sse_line(line: &[u8], total: &mut Option<u64>, events: &mut u64) {
    let Some(data) = sse::data(line) else {
        return;
    };
    let data = data.trim_ascii();
    if data == b"[DONE]" || data.is_empty() {
        return;
    }
    match serde_json::from_slice::<WithUsage>(data)
        .ok()
        .and_then(|w| w.usage)
        .and_then(|u| u.total_tokens)
    {
        Some(t) => *total = Some(t),
        None => *events += 1,
    }
}

/// Follows a JSON document's structure and keeps the raw value of its
/// top-level `usage` member. It does not validate the document: a broken
/// answer at worst yields no usage.
#[derive(Debug, Default)]
pub struct UsageScanner {
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// Inside the top-level object, reading a member name (not a value).
    in_key: bool,
    /// Bytes of the current top-level member name while it still matches
    /// `usage`.
    key_match: usize,
    key_ok: bool,
    /// The current top-level member is `usage`: its value is being kept.
    capturing: bool,
    value: Vec<u8>,
    /// The last complete `usage` value.
    done: Option<Vec<u8>>,
    overflow: bool,
}

const USAGE_KEY: &[u8] = b"usage";

impl UsageScanner {
    pub fn feed(&mut self, chunk: &[u8]) {
        for &b in chunk {
            self.byte(b);
        }
    }

    fn byte(&mut self, b: u8) {
        if self.capturing {
            if self.value.len() < MAX_USAGE_VALUE {
                self.value.push(b);
            } else {
                self.overflow = true;
            }
        }
        if self.in_string {
            self.string_byte(b);
            return;
        }
        match b {
            b'"' => {
                self.in_string = true;
                self.key_match = 0;
            }
            b'{' | b'[' => {
                self.depth += 1;
                if self.depth == 1 {
                    self.in_key = b == b'{';
                }
            }
            b'}' | b']' => {
                if self.depth == 1 {
                    self.end_member();
                }
                self.depth = self.depth.saturating_sub(1);
            }
            b':' if self.depth == 1 && self.in_key => {
                self.in_key = false;
                if self.key_ok {
                    self.capturing = true;
                    self.value.clear();
                    self.overflow = false;
                }
            }
            b',' if self.depth == 1 => {
                self.end_member();
                self.in_key = true;
            }
            _ => {}
        }
    }

    fn string_byte(&mut self, b: u8) {
        const MISMATCH: usize = usize::MAX;
        let naming = self.in_key && self.depth == 1;
        if self.escaped {
            self.escaped = false;
        } else if b == b'\\' {
            self.escaped = true;
        } else if b == b'"' {
            self.in_string = false;
            if naming {
                self.key_ok = self.key_match == USAGE_KEY.len();
            }
            return;
        } else if naming {
            self.key_match = match USAGE_KEY.get(self.key_match) {
                Some(&want) if want == b => self.key_match + 1,
                _ => MISMATCH,
            };
            return;
        }
        // An escape in a member name: not `usage` as OpenAI writes it.
        if naming {
            self.key_match = MISMATCH;
        }
    }

    /// A top-level member ended (at `,` or the closing `}`).
    fn end_member(&mut self) {
        if self.capturing {
            self.capturing = false;
            // The terminator itself was kept as the last byte.
            self.value.pop();
            if !self.overflow {
                self.done = Some(std::mem::take(&mut self.value));
            }
        }
        self.key_ok = false;
    }

    /// The raw value of the last top-level `usage` member.
    pub fn usage(&self) -> Option<&[u8]> {
        self.done.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_total(body: &[u8], piece: usize) -> Option<u64> {
        let mut m = UsageMeter::new(Some("application/json; charset=utf-8")).unwrap();
        for p in body.chunks(piece.max(1)) {
            m.feed(p);
        }
        m.finish()
    }

    #[test]
    fn usage_from_json_whatever_the_chunking() {
        let body = br#"{"id":"x","choices":[{"message":{"content":"a \"usage\": {\"total_tokens\": 999}"}}],"usage":{"prompt_tokens":3,"total_tokens":42}}"#;
        for piece in [1, 2, 3, 7, 64, body.len()] {
            assert_eq!(json_total(body, piece), Some(42), "pieces of {piece}");
        }
        // Usage first, nested objects after it, whitespace around.
        let first = b" { \"usage\" : { \"total_tokens\" : 5 } , \"data\" : [ { \"usage\": {\"total_tokens\": 9} } ] } ";
        assert_eq!(json_total(first, 4), Some(5));
        // Only a nested usage: not the answer's.
        assert_eq!(
            json_total(br#"{"data":{"usage":{"total_tokens":9}}}"#, 3),
            None
        );
        assert_eq!(json_total(br#"{"usagex":{"total_tokens":9}}"#, 3), None);
        assert_eq!(json_total(b"{not json", 3), None);
        assert_eq!(json_total(br#"{"usage":null}"#, 3), None);
    }

    #[test]
    fn json_memory_stays_bounded_for_huge_answers() {
        let mut m = UsageMeter::new(Some("application/json")).unwrap();
        m.feed(br#"{"data":[{"embedding":["#);
        for _ in 0..10_000 {
            m.feed(b"0.0123456789,0.0123456789,0.0123456789,0.0123456789,");
            assert_eq!(m.held(), 0, "nothing of the body is kept");
        }
        m.feed(br#"0]}],"usage":{"prompt_tokens":8,"total_tokens":8}}"#);
        assert_eq!(m.finish(), Some(8));
        // A usage value past the bound is dropped, not grown.
        let mut m = UsageMeter::new(Some("application/json")).unwrap();
        m.feed(br#"{"usage":{"x":""#);
        for _ in 0..100 {
            m.feed(&[b'a'; 1000]);
        }
        assert!(m.held() <= MAX_USAGE_VALUE);
        m.feed(br#"","total_tokens":1}}"#);
        assert_eq!(m.finish(), None);
    }

    #[test]
    fn usage_from_sse() {
        let stream = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n\
                      data: {\"choices\":[{\"delta\":{\"content\":\"b\"}}]}\n\n\
                      data: {\"choices\":[],\"usage\":{\"total_tokens\":17}}\n\n\
                      data: [DONE]\n\n";
        let mut sse = UsageMeter::new(Some("text/event-stream")).unwrap();
        for piece in stream.as_bytes().chunks(5) {
            sse.feed(piece);
        }
        assert_eq!(sse.finish(), Some(17));

        // No usage event: one token per streamed event.
        let mut sse = UsageMeter::new(Some("text/event-stream")).unwrap();
        sse.feed(b"data: {\"choices\":[]}\n\ndata: {\"choices\":[]}\n\ndata: [DONE]\n\n");
        assert_eq!(sse.finish(), Some(2));

        assert!(UsageMeter::new(Some("text/html")).is_none());
        assert!(UsageMeter::new(None).is_none());
    }
}
