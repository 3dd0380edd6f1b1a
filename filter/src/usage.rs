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
    /// The last usage an SSE event reported.
    reported: Option<Usage>,
}

#[derive(Debug)]
enum Kind {
    Json(UsageScanner),
    Sse {
        lines: LineSplitter,
        /// Data events seen (excluding `[DONE]` and usage events).
        events: u64,
    },
}

/// The tokens an answer reported: `total_tokens`, with its input and output
/// parts where given (`prompt_tokens`/`completion_tokens` of chat
/// completions, `input_tokens`/`output_tokens` of the Responses API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub total: u64,
    pub input: Option<u64>,
    pub output: Option<u64>,
}

/// What a finished answer says about the tokens it used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metered {
    /// The answer reported its usage.
    Reported(Usage),
    /// A stream that reported none (the client did not ask for
    /// `stream_options.include_usage`, or left before the usage event):
    /// `events` data events passed, about one token each.
    Streamed { events: u64 },
    /// Nothing to go by (a JSON answer without usage, or an unreadable one).
    Unknown,
}

impl Metered {
    /// The reported total, if any.
    pub fn total(self) -> Option<u64> {
        match self {
            Metered::Reported(u) => Some(u.total),
            _ => None,
        }
    }

    /// Tokens to charge a budget for this answer, given the tokens `held`
    /// at admission and the `prompt` estimate (a quarter of the body read,
    /// else 0): the reported total; for a stream without usage never less
    /// than the hold, nor than the prompt plus one token per event (a
    /// client that does not ask for usage, or leaves early, does not get
    /// its prompt for free); `None` keeps the hold as it is.
    pub fn charge(self, held: u64, prompt: u64) -> Option<u64> {
        match self {
            Metered::Reported(u) => Some(u.total),
            Metered::Streamed { events } => Some(held.max(prompt.saturating_add(events))),
            Metered::Unknown => None,
        }
    }
}

#[derive(Deserialize)]
struct RawUsage {
    #[serde(default)]
    total_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
}

impl RawUsage {
    fn usage(self) -> Option<Usage> {
        Some(Usage {
            total: self.total_tokens?,
            input: self.prompt_tokens.or(self.input_tokens),
            output: self.completion_tokens.or(self.output_tokens),
        })
    }
}

/// A streamed event: chat completions carry `usage` at the top (in the last
/// chunk when asked for); the Responses API carries it in
/// `response.usage` of its `response.completed` event.
#[derive(Deserialize)]
struct Event {
    #[serde(default)]
    usage: Option<RawUsage>,
    #[serde(default)]
    response: Option<ResponseObject>,
}

#[derive(Deserialize)]
struct ResponseObject {
    #[serde(default)]
    usage: Option<RawUsage>,
}

fn usage_of(value: &[u8]) -> Option<Usage> {
    serde_json::from_slice::<RawUsage>(value).ok()?.usage()
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
        Some(UsageMeter {
            kind,
            reported: None,
        })
    }

    /// Bytes this meter holds now (for the VM-wide bound on metering memory).
    pub fn held(&self) -> usize {
        match &self.kind {
            Kind::Json(s) => s.value.len(),
            Kind::Sse { lines, .. } => lines.pending_len(),
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        let reported = &mut self.reported;
        match &mut self.kind {
            Kind::Json(scanner) => scanner.feed(chunk),
            Kind::Sse { lines, events } => {
                lines.feed(chunk, |line| sse_line(line, reported, events))
            }
        }
    }

    /// What the answer said about its tokens, once it ended (or the client
    /// left).
    pub fn finish(mut self) -> Metered {
        let reported = match &mut self.kind {
            Kind::Json(scanner) => scanner.usage().and_then(usage_of),
            Kind::Sse { lines, events } => {
                let reported = &mut self.reported;
                lines.finish(|line| sse_line(line, reported, events));
                if self.reported.is_none() {
                    return Metered::Streamed { events: *events };
                }
                self.reported
            }
        };
        reported.map_or(Metered::Unknown, Metered::Reported)
    }
}

fn sse_line(line: &[u8], reported: &mut Option<Usage>, events: &mut u64) {
    let Some(data) = sse::data(line) else {
        return;
    };
    let data = data.trim_ascii();
    if data == b"[DONE]" || data.is_empty() {
        return;
    }
    let usage = serde_json::from_slice::<Event>(data).ok().and_then(|e| {
        e.usage
            .or_else(|| e.response.and_then(|r| r.usage))
            .and_then(RawUsage::usage)
    });
    match usage {
        Some(u) => *reported = Some(u),
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
        m.finish().total()
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
        assert_eq!(
            m.finish(),
            Metered::Reported(Usage {
                total: 8,
                input: Some(8),
                output: None
            })
        );
        // A usage value past the bound is dropped, not grown.
        let mut m = UsageMeter::new(Some("application/json")).unwrap();
        m.feed(br#"{"usage":{"x":""#);
        for _ in 0..100 {
            m.feed(&[b'a'; 1000]);
        }
        assert!(m.held() <= MAX_USAGE_VALUE);
        m.feed(br#"","total_tokens":1}}"#);
        assert_eq!(m.finish(), Metered::Unknown);
    }

    #[test]
    fn usage_from_sse() {
        let stream = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null}\n\n\
                      data: {\"choices\":[{\"delta\":{\"content\":\"b\"}}]}\n\n\
                      data: {\"choices\":[],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":7,\"total_tokens\":17}}\n\n\
                      data: [DONE]\n\n";
        let mut sse = UsageMeter::new(Some("text/event-stream")).unwrap();
        for piece in stream.as_bytes().chunks(5) {
            sse.feed(piece);
        }
        assert_eq!(
            sse.finish(),
            Metered::Reported(Usage {
                total: 17,
                input: Some(10),
                output: Some(7)
            })
        );

        // No usage event: the events are counted, for the caller to settle.
        let mut sse = UsageMeter::new(Some("text/event-stream")).unwrap();
        sse.feed(b"data: {\"choices\":[]}\n\ndata: {\"choices\":[]}\n\ndata: [DONE]\n\n");
        assert_eq!(sse.finish(), Metered::Streamed { events: 2 });

        assert!(UsageMeter::new(Some("text/html")).is_none());
        assert!(UsageMeter::new(None).is_none());
    }

    #[test]
    fn streams_without_usage_are_charged_at_least_their_hold_and_prompt() {
        let streamed = Metered::Streamed { events: 5 };
        assert_eq!(streamed.charge(1000, 0), Some(1000), "the hold");
        assert_eq!(streamed.charge(100, 25_000), Some(25_005), "the prompt");
        let reported = Metered::Reported(Usage {
            total: 7,
            input: None,
            output: None,
        });
        assert_eq!(reported.charge(1000, 25_000), Some(7), "usage is the truth");
        assert_eq!(Metered::Unknown.charge(1000, 25_000), None);
    }

    #[test]
    fn usage_from_a_responses_stream() {
        let stream = "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"r\",\"usage\":null}}\n\n\
                      event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"hi\"}\n\n\
                      event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"r\",\"usage\":{\"input_tokens\":30,\"output_tokens\":2,\"total_tokens\":32}}}\n\n";
        let mut sse = UsageMeter::new(Some("text/event-stream; charset=utf-8")).unwrap();
        for piece in stream.as_bytes().chunks(7) {
            sse.feed(piece);
        }
        assert_eq!(
            sse.finish(),
            Metered::Reported(Usage {
                total: 32,
                input: Some(30),
                output: Some(2)
            })
        );
    }
}
