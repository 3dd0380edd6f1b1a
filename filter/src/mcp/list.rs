//! `tools/list` answers with the tools a client may not call removed, JSON
//! or server-sent events, page by page (each page of a paginated list is
//! filtered on its own; `nextCursor` is kept).
//!
//! The fast path finds `result.tools` with the validating scanner and cuts
//! the refused tools out of the bytes as they are: everything else stays
//! byte for byte. Where it is not sure (escapes in the keys it reads, a key
//! it reads given twice, invalid JSON) serde_json reads the answer as the
//! client's JSON library will (the last of duplicate keys) and writes it
//! again. The `mcp_list` fuzz target compares the two.

use serde_json::Value;

use crate::json_scan::Scanner;

/// What became of one JSON-RPC answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Filtered {
    /// Nothing to remove: not a tool list, or every tool may be called.
    Unchanged,
    Rewritten(Vec<u8>),
}

/// Removes the tools `allows` refuses from a `tools/list` answer (one
/// JSON-RPC message). Anything that is not one passes unchanged.
pub fn filter_answer(body: &[u8], allows: &dyn Fn(&str) -> bool) -> Filtered {
    match scan(body, allows) {
        Some(filtered) => filtered,
        None => filter_with_serde(body, allows),
    }
}

/// Where a tool list's elements are, and which of them go.
fn scan(body: &[u8], allows: &dyn Fn(&str) -> bool) -> Option<Filtered> {
    let mut s = Scanner::new(body);
    s.whitespace();
    if s.peek() != Some(b'{') {
        // Not an object: serde_json says the same (nothing to filter), or
        // that it is no JSON (passed as it is).
        return None;
    }
    let mut list = None;
    let mut seen_result = false;
    object(&mut s, 0, |s, key| {
        if key == "result" {
            if std::mem::replace(&mut seen_result, true) {
                return None;
            }
            if s.peek() == Some(b'{') {
                let mut seen_tools = false;
                return object(s, 1, |s, key| {
                    if key == "tools" {
                        if std::mem::replace(&mut seen_tools, true) {
                            return None;
                        }
                        if s.peek() == Some(b'[') {
                            list = Some(tools(s, allows)?);
                            return Some(());
                        }
                    }
                    s.value(2)
                });
            }
        }
        s.value(1)
    })?;
    s.whitespace();
    if s.at != body.len() {
        return None;
    }
    let Some(list) = list else {
        return Some(Filtered::Unchanged);
    };
    if list.kept.len() == list.count {
        return Some(Filtered::Unchanged);
    }
    let mut out = Vec::with_capacity(body.len());
    out.extend_from_slice(body.get(..list.open)?);
    for (i, span) in list.kept.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(body.get(span.clone())?);
    }
    out.extend_from_slice(body.get(list.close..)?);
    Some(Filtered::Rewritten(out))
}

/// The members of an object at `s` (its `{` next), each handed to
/// `member` with the scanner at its value.
fn object<'a>(
    s: &mut Scanner<'a>,
    _depth: usize,
    mut member: impl FnMut(&mut Scanner<'a>, &'a str) -> Option<()>,
) -> Option<()> {
    s.expect(b'{')?;
    s.whitespace();
    if s.peek() == Some(b'}') {
        s.at += 1;
        return Some(());
    }
    loop {
        s.whitespace();
        let key = s.plain_string()?;
        s.whitespace();
        s.expect(b':')?;
        s.whitespace();
        member(s, key)?;
        s.whitespace();
        match s.next()? {
            b',' => {}
            b'}' => return Some(()),
            _ => return None,
        }
    }
}

struct ToolList {
    /// After the `[`.
    open: usize,
    /// At the `]`.
    close: usize,
    count: usize,
    kept: Vec<std::ops::Range<usize>>,
}

fn tools(s: &mut Scanner<'_>, allows: &dyn Fn(&str) -> bool) -> Option<ToolList> {
    s.expect(b'[')?;
    let mut list = ToolList {
        open: s.at,
        close: 0,
        count: 0,
        kept: Vec::new(),
    };
    s.whitespace();
    if s.peek() == Some(b']') {
        list.close = s.at;
        s.at += 1;
        return Some(list);
    }
    loop {
        s.whitespace();
        let start = s.at;
        let name = if s.peek() == Some(b'{') {
            let mut name = None;
            let mut seen = false;
            object(s, 3, |s, key| {
                if key == "name" {
                    if std::mem::replace(&mut seen, true) {
                        return None;
                    }
                    if s.peek() == Some(b'"') {
                        name = Some(s.plain_string()?);
                        return Some(());
                    }
                }
                s.value(4)
            })?;
            name
        } else {
            s.value(3)?;
            None
        };
        list.count += 1;
        // A tool without a name cannot be called by one: it goes too.
        if name.is_some_and(allows) {
            list.kept.push(start..s.at);
        }
        s.whitespace();
        match s.next()? {
            b',' => {}
            b']' => {
                list.close = s.at - 1;
                return Some(list);
            }
            _ => return None,
        }
    }
}

/// `filter_answer` by serde_json alone: the reference of the fast path, and
/// the path for what it is not sure of.
#[doc(hidden)]
pub fn filter_with_serde(body: &[u8], allows: &dyn Fn(&str) -> bool) -> Filtered {
    let Ok(mut answer) = serde_json::from_slice::<Value>(body) else {
        return Filtered::Unchanged;
    };
    let Some(tools) = answer
        .get_mut("result")
        .and_then(|r| r.get_mut("tools"))
        .and_then(Value::as_array_mut)
    else {
        return Filtered::Unchanged;
    };
    let before = tools.len();
    tools.retain(|tool| tool.get("name").and_then(Value::as_str).is_some_and(allows));
    if tools.len() == before {
        return Filtered::Unchanged;
    }
    match serde_json::to_vec(&answer) {
        Ok(out) => Filtered::Rewritten(out),
        Err(_) => Filtered::Unchanged,
    }
}

/// Whether the fast path and serde_json filter `body` alike (as JSON
/// values). For tests and fuzzing.
#[doc(hidden)]
pub fn filters_agree(body: &[u8], allows: &dyn Fn(&str) -> bool) -> Result<(), String> {
    let Some(fast) = scan(body, allows) else {
        return Ok(());
    };
    // A body serde_json refuses (the UTF-8, escapes, number range or depth
    // of values the scanner skips unchecked) is one clients refuse too.
    if serde_json::from_slice::<Value>(body).is_err() {
        return Ok(());
    }
    let reference = filter_with_serde(body, allows);
    let value = |f: &Filtered| match f {
        Filtered::Unchanged => serde_json::from_slice::<Value>(body).ok(),
        Filtered::Rewritten(b) => serde_json::from_slice::<Value>(b).ok(),
    };
    if value(&fast) == value(&reference) && value(&fast).is_some() {
        Ok(())
    } else {
        Err(format!(
            "fast {:?} != serde_json {:?}",
            value(&fast),
            value(&reference)
        ))
    }
}

/// A `tools/list` answer streamed as server-sent events: every event whose
/// data is a tool list is filtered, other events pass byte for byte. An
/// event is held until its blank line; one over the bound ends the filter
/// ([`TooLong`]).
#[derive(Debug)]
pub struct SseFilter {
    pending: Vec<u8>,
    /// How far `pending` was searched for an event's end.
    searched: usize,
    /// Where the current line began.
    line_start: usize,
    max_event: usize,
}

/// Room kept between chunks without shrinking.
const KEPT_CAPACITY: usize = 4096;

/// An event outgrew the bound: the answer cannot be filtered.
#[derive(Debug, PartialEq, Eq)]
pub struct TooLong;

impl SseFilter {
    pub fn new(max_event: usize) -> Self {
        SseFilter {
            pending: Vec::new(),
            searched: 0,
            line_start: 0,
            max_event,
        }
    }

    /// Bytes held now.
    pub fn held(&self) -> usize {
        self.pending.capacity()
    }

    /// The stream's next bytes: what may go on to the client.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        allows: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<u8>, TooLong> {
        self.pending.extend_from_slice(chunk);
        let mut out = Vec::new();
        let mut event_start = 0;
        let mut i = self.searched;
        while let Some(&b) = self.pending.get(i) {
            if b != b'\n' && b != b'\r' {
                i += 1;
                continue;
            }
            // A CR at the end may be the first half of a CRLF.
            let end = match (b, self.pending.get(i + 1)) {
                (b'\r', None) => break,
                (b'\r', Some(b'\n')) => i + 2,
                _ => i + 1,
            };
            let blank = i == self.line_start;
            self.line_start = end;
            i = end;
            if blank {
                // The bound holds for an event that arrives whole too, so
                // that it is kept or refused whatever the chunking.
                if end - event_start > self.max_event {
                    self.pending = Vec::new();
                    return Err(TooLong);
                }
                let event = self.pending.get(event_start..end).unwrap_or_default();
                emit(event, allows, &mut out);
                event_start = end;
            }
        }
        self.pending.drain(..event_start);
        self.searched = i - event_start;
        self.line_start -= event_start;
        if self.pending.len() > self.max_event {
            self.pending = Vec::new();
            return Err(TooLong);
        }
        if self.pending.is_empty() {
            self.pending = Vec::new();
        } else if self.pending.capacity() > KEPT_CAPACITY
            && self.pending.len() < self.pending.capacity() / 4
        {
            // A large chunk's room is not kept for a small remainder.
            self.pending.shrink_to_fit();
        }
        Ok(out)
    }

    /// The stream ended: an event without its blank line goes as it is
    /// filtered.
    pub fn finish(&mut self, allows: &dyn Fn(&str) -> bool) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.pending.is_empty() {
            emit(&self.pending, allows, &mut out);
        }
        *self = SseFilter::new(self.max_event);
        out
    }
}

/// One event, filtered if its data is a tool list.
fn emit(event: &[u8], allows: &dyn Fn(&str) -> bool, out: &mut Vec<u8>) {
    let lines = split_lines(event);
    let mut data = Vec::new();
    let mut data_lines = 0;
    for line in &lines {
        if let Some(value) = data_value(line) {
            if data_lines > 0 {
                data.push(b'\n');
            }
            data.extend_from_slice(value);
            data_lines += 1;
        }
    }
    // Tool lists hold `"tools"`: other events are not parsed at all.
    let filtered = if data_lines > 0 && contains(&data, b"\"tools\"") {
        filter_answer(&data, allows)
    } else {
        Filtered::Unchanged
    };
    let Filtered::Rewritten(new) = filtered else {
        out.extend_from_slice(event);
        return;
    };
    let eol: &[u8] = if contains(event, b"\r\n") {
        b"\r\n"
    } else {
        b"\n"
    };
    let mut wrote_data = false;
    for line in &lines {
        if data_value(line).is_none() {
            out.extend_from_slice(line);
            out.extend_from_slice(eol);
        } else if !wrote_data {
            wrote_data = true;
            for piece in new.split(|&b| b == b'\n') {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(piece.strip_suffix(b"\r").unwrap_or(piece));
                out.extend_from_slice(eol);
            }
        }
    }
    out.extend_from_slice(eol);
}

/// The lines of an event, without their ends and without the blank line
/// that ends it.
fn split_lines(event: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut rest = event;
    while let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
        let (line, tail) = rest.split_at(end);
        let skip = if tail.starts_with(b"\r\n") { 2 } else { 1 };
        rest = tail.get(skip..).unwrap_or_default();
        if line.is_empty() && rest.is_empty() {
            break;
        }
        lines.push(line);
    }
    if !rest.is_empty() {
        lines.push(rest);
    }
    lines
}

fn data_value(line: &[u8]) -> Option<&[u8]> {
    let value = match line.strip_prefix(b"data")? {
        [] => return Some(&[]),
        [b':', value @ ..] => value,
        _ => return None,
    };
    Some(value.strip_prefix(b" ").unwrap_or(value))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(name: &str) -> bool {
        name == "search" || name.starts_with("fetch_") && name != "fetch_secrets"
    }

    fn filtered(body: &str) -> Option<String> {
        filters_agree(body.as_bytes(), &allows).unwrap();
        match filter_answer(body.as_bytes(), &allows) {
            Filtered::Unchanged => None,
            Filtered::Rewritten(b) => Some(String::from_utf8(b).unwrap()),
        }
    }

    const LIST: &str = r#"{"jsonrpc":"2.0","id":2,"result":{"tools":[
        {"name":"search","inputSchema":{"type":"object","properties":{"name":{"type":"string"}}}},
        {"name":"fetch_secrets","inputSchema":{}},
        {"description":"no name"},
        {"name":"fetch_url","inputSchema":{}}, 5
    ],"nextCursor":"c2"}}"#;

    #[test]
    fn refused_tools_are_cut_out_and_the_rest_kept_byte_for_byte() {
        let out = filtered(LIST).unwrap();
        assert_eq!(
            out,
            r#"{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"search","inputSchema":{"type":"object","properties":{"name":{"type":"string"}}}},{"name":"fetch_url","inputSchema":{}}],"nextCursor":"c2"}}"#
        );
        assert_eq!(
            filtered(r#"{"result":{"tools":[{"name":"nope"}]}}"#).unwrap(),
            r#"{"result":{"tools":[]}}"#
        );
    }

    #[test]
    fn what_needs_no_change_passes() {
        for body in [
            r#"{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"search"}]}}"#,
            r#"{"jsonrpc":"2.0","id":2,"result":{"tools":[]}}"#,
            r#"{"jsonrpc":"2.0","id":2,"result":{"prompts":[{"name":"x"}]}}"#,
            r#"{"jsonrpc":"2.0","id":2,"error":{"code":1,"message":"x"}}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#,
            "not json",
            "[1,2]",
        ] {
            assert_eq!(filtered(body), None, "{body}");
        }
    }

    #[test]
    fn what_the_scanner_is_unsure_of_is_read_as_clients_read_it() {
        // Duplicate names: JSON libraries take the last.
        let out =
            filtered(r#"{"result":{"tools":[{"name":"search","name":"fetch_secrets"}]}}"#).unwrap();
        assert_eq!(out, r#"{"result":{"tools":[]}}"#);
        let out =
            filtered(r#"{"result":{"tools":[{"name":"fetch_\u0073ecrets"},{"name":"search"}]}}"#)
                .unwrap();
        assert_eq!(out, r#"{"result":{"tools":[{"name":"search"}]}}"#);
        let out = filtered(r#"{"result":{"tools":[]},"result":{"tools":[{"name":"x"}]}}"#).unwrap();
        assert_eq!(out, r#"{"result":{"tools":[]}}"#);
    }

    fn sse(stream: &[u8], chunk: usize) -> Vec<u8> {
        let mut f = SseFilter::new(1 << 20);
        let mut out = Vec::new();
        for piece in stream.chunks(chunk) {
            out.extend(f.feed(piece, &allows).unwrap());
        }
        out.extend(f.finish(&allows));
        out
    }

    #[test]
    fn sse_answers_are_filtered_event_by_event_whatever_the_chunks() {
        let list = LIST.replace('\n', "");
        let stream = format!(
            "event: message\r\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{}}}}\r\n\r\n\
             id: 7\r\nevent: message\r\ndata: {list}\r\n\r\n: comment\r\n\r\n"
        );
        let want = format!(
            "event: message\r\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{}}}}\r\n\r\n\
             id: 7\r\nevent: message\r\ndata: {}\r\n\r\n: comment\r\n\r\n",
            filtered(&list).unwrap()
        );
        for chunk in [1, 2, 3, 7, 64, 10_000] {
            assert_eq!(
                String::from_utf8(sse(stream.as_bytes(), chunk)).unwrap(),
                want,
                "chunk {chunk}"
            );
        }
        // LF line ends, multi-line data, and an event the stream ends
        // without its blank line.
        let stream = "data: {\"result\":{\"tools\":[\ndata: {\"name\":\"nope\"},{\"name\":\"search\"}]}}\n\n\
                      data: {\"result\":{\"tools\":[{\"name\":\"x\"}]}}";
        let out = String::from_utf8(sse(stream.as_bytes(), 5)).unwrap();
        assert_eq!(
            out,
            "data: {\"result\":{\"tools\":[{\"name\":\"search\"}]}}\n\n\
             data: {\"result\":{\"tools\":[]}}\n\n"
        );
    }

    #[test]
    fn an_event_over_the_bound_ends_the_filter_whatever_the_chunking() {
        let mut f = SseFilter::new(100);
        assert_eq!(f.feed(&[b'x'; 60], &allows), Ok(Vec::new()));
        assert_eq!(f.feed(&[b'x'; 60], &allows), Err(TooLong));
        assert_eq!(f.held(), 0);
        let long = format!("data: {}\n\n", "x".repeat(100));
        assert_eq!(
            SseFilter::new(100).feed(long.as_bytes(), &allows),
            Err(TooLong)
        );
        let mut f = SseFilter::new(100);
        let (a, b) = long.split_at(100);
        assert_eq!(f.feed(a.as_bytes(), &allows), Ok(Vec::new()));
        assert_eq!(f.feed(b.as_bytes(), &allows), Err(TooLong));
    }
}
