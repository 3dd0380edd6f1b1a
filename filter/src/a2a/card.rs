//! Agent cards that point at the gateway.
//!
//! An agent publishes its card with its own, internal address. Passing
//! through the gateway, the HTTP interface URLs of the card are rewritten to
//! the address the client used: its scheme and host, the external prefix the
//! request matched, then the URL's path below the agent's own root (where
//! that prefix lands upstream). Nothing else in the card changes.

use serde_json::Value;

/// The card paths a request may ask for, below the agent's root: A2A 1.0,
/// A2A 0.3, and KAOS's `/.well-known/agent`.
pub const CARD_PATHS: [&str; 3] = [
    "/.well-known/agent-card.json",
    "/.well-known/agent.json",
    "/.well-known/agent",
];

/// Cards are small; a bigger answer passes through untouched.
pub const MAX_CARD_BYTES: usize = 256 * 1024;

/// Whether `rest` (the request path below the agent prefix, query
/// included) asks for an agent card, in any spelling a backend serves as
/// one: the comparison is on the path as servers see it, percent-decoded
/// (uvicorn decodes `agent%2Dcard.json` and even `%2F`) with runs of `/`
/// collapsed (the gateway collapses the leading ones; many servers merge
/// the rest).
pub fn is_card_path(rest: &str) -> bool {
    let path = rest.split_once('?').map_or(rest, |(p, _)| p);
    if CARD_PATHS.contains(&path) {
        return true;
    }
    if !path.contains('%') && !path.contains("//") {
        return false;
    }
    let normal = normalized(path);
    CARD_PATHS.iter().any(|p| p.as_bytes() == normal.as_slice())
}

/// `path` percent-decoded, with runs of `/` made one.
fn normalized(path: &str) -> Vec<u8> {
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = (b == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        let (byte, width) = match hex {
            Some(decoded) => (decoded, 3),
            None => (b, 1),
        };
        if !(byte == b'/' && decoded.last() == Some(&b'/')) {
            decoded.push(byte);
        }
        i += width;
    }
    decoded
}

/// Whether an `:authority` is a plain `host[:port]` (a DNS name, an IPv4
/// address or a bracketed IPv6 address, then digits): only such a value is
/// written into a card. Anything else (`gw.example.com@attacker.example`,
/// spaces, slashes) would let a client steer other clients elsewhere
/// through a cached card.
pub fn is_plain_authority(authority: &str) -> bool {
    let (host_ok, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let Some((addr, rest)) = v6.split_once(']') else {
                return false;
            };
            let addr_ok = !addr.is_empty()
                && addr
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
            (addr_ok, rest)
        }
        None => {
            let end = authority.find(':').unwrap_or(authority.len());
            let (host, rest) = authority.split_at(end);
            let host_ok = !host.is_empty()
                && host.len() <= 253
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
            (host_ok, rest)
        }
    };
    let port_ok = match port.strip_prefix(':') {
        None => port.is_empty(),
        Some(digits) => {
            !digits.is_empty() && digits.len() <= 5 && digits.bytes().all(|b| b.is_ascii_digit())
        }
    };
    host_ok && port_ok
}

/// Where the client reached the agent, for rewriting its card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardAddress {
    /// `http` or `https`.
    pub scheme: String,
    /// `:authority` as the client sent it (port included).
    pub authority: String,
    /// The external prefix the request matched: a layout path or explicit
    /// prefix, empty for a host match.
    pub prefix: String,
    /// Where that prefix lands upstream: `/` for layouts and hosts, the
    /// `rewrite` value of an explicit prefix.
    pub root: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum CardOutcome {
    /// The card with `urls` interface URLs rewritten.
    Rewritten { body: Vec<u8>, urls: usize },
    /// The answer goes on as it came.
    Unchanged(Unchanged),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unchanged {
    /// Not a JSON object.
    NotACard,
    /// The card is signed and `rewrite_signed_cards` is off: a rewrite
    /// would invalidate its signatures.
    Signed,
    /// No HTTP interface URL below the agent's root.
    NothingToRewrite,
}

impl Unchanged {
    pub fn reason(self) -> &'static str {
        match self {
            Unchanged::NotACard => "the answer is not a JSON object",
            Unchanged::Signed => {
                "the card is signed (set a2a.rewrite_signed_cards to rewrite it anyway)"
            }
            Unchanged::NothingToRewrite => "no HTTP interface URL below the agent's root",
        }
    }
}

/// Rewrites a card's HTTP interface URLs: A2A 1.0 `supportedInterfaces[].url`
/// (bindings `JSONRPC` and `HTTP+JSON`; `GRPC` ones are left alone), and
/// A2A 0.3 `url` and `additionalInterfaces[].url`.
///
/// Only the bytes of those URL strings change: everything else in the card
/// (numbers as written, `1e2` or a 30-digit integer, whitespace, key order,
/// duplicate keys) passes byte for byte, because the new card is the old
/// one with the URL tokens spliced out and in.
pub fn rewrite_card(body: &[u8], address: &CardAddress, rewrite_signed: bool) -> CardOutcome {
    let Ok(Value::Object(card)) = serde_json::from_slice::<Value>(body) else {
        return CardOutcome::Unchanged(Unchanged::NotACard);
    };
    let signed = card
        .get("signatures")
        .and_then(Value::as_array)
        .is_some_and(|s| !s.is_empty());
    if signed && !rewrite_signed {
        return CardOutcome::Unchanged(Unchanged::Signed);
    }
    let Some(tokens) = Tokens::of(body) else {
        return CardOutcome::Unchanged(Unchanged::NotACard);
    };
    let mut out = Vec::with_capacity(body.len() + 256);
    let mut copied = 0;
    let mut urls = 0;
    for (start, end) in tokens.interface_urls() {
        let (Some(token), Some(before)) = (body.get(start..end), body.get(copied..start)) else {
            continue;
        };
        let Some(new) = serde_json::from_slice::<String>(token)
            .ok()
            .and_then(|url| rewrite_url(&url, address))
        else {
            continue;
        };
        let Ok(encoded) = serde_json::to_vec(&new) else {
            continue;
        };
        out.extend_from_slice(before);
        out.extend_from_slice(&encoded);
        copied = end;
        urls += 1;
    }
    if urls == 0 {
        return CardOutcome::Unchanged(Unchanged::NothingToRewrite);
    }
    out.extend_from_slice(body.get(copied..).unwrap_or_default());
    CardOutcome::Rewritten { body: out, urls }
}

fn is_http_binding(binding: &str) -> bool {
    binding.eq_ignore_ascii_case("JSONRPC") || binding.eq_ignore_ascii_case("HTTP+JSON")
}

/// A member of a card at the top level or in an object of a top-level
/// array, with its value when it is a string, and the span of its value in
/// the card (quotes included).
#[derive(Debug)]
struct Member {
    /// For members of objects inside a top-level array: the array's key,
    /// where the array starts and where the object starts.
    within: Option<(String, usize, usize)>,
    key: String,
    value: Option<String>,
    span: (usize, usize),
}

/// The members of a card at the top level and in the objects of top-level
/// arrays, in document order.
struct Tokens(Vec<Member>);

impl Tokens {
    /// Walks a document serde_json has already read as valid JSON; `None`
    /// on anything it does not expect, and the card then passes unchanged.
    fn of(body: &[u8]) -> Option<Tokens> {
        let mut walker = Walker {
            body,
            at: 0,
            members: Vec::new(),
        };
        walker.skip_ws();
        walker.object(None)?;
        Some(Tokens(walker.members))
    }

    /// The member JSON readers see for `key` in an object: the last one.
    fn last(&self, within: &Option<(String, usize, usize)>, key: &str) -> Option<&Member> {
        self.0
            .iter()
            .rev()
            .find(|m| &m.within == within && m.key == key)
    }

    /// Whether `m` is what JSON readers see: the last of its key in its
    /// object, in the last top-level array of its list's key.
    fn is_seen(&self, m: &Member) -> bool {
        let last = self.last(&m.within, &m.key).map(|l| l.span);
        let list_seen = match &m.within {
            None => true,
            Some((list, array, _)) => self.last(&None, list).map(|l| l.span.0) == Some(*array),
        };
        last == Some(m.span) && list_seen
    }

    /// Spans of the interface URLs of HTTP bindings, in document order.
    fn interface_urls(&self) -> Vec<(usize, usize)> {
        // A binding that is absent, or not a string, reads as JSON-RPC.
        let http = |within: &Option<(String, usize, usize)>, key: &str| {
            self.last(within, key)
                .and_then(|m| m.value.as_deref())
                .map_or(true, is_http_binding)
        };
        self.0
            .iter()
            .filter(|m| m.key == "url" && m.value.is_some() && self.is_seen(m))
            .filter(|m| match &m.within {
                // 0.3: the top-level URL speaks the preferred transport.
                None => http(&None, "preferredTransport"),
                Some((list, _, _)) => match list.as_str() {
                    "supportedInterfaces" => http(&m.within, "protocolBinding"),
                    "additionalInterfaces" => http(&m.within, "transport"),
                    _ => false,
                },
            })
            .map(|m| m.span)
            .collect()
    }
}

/// A small reader over a valid JSON document that records string members
/// at the two depths cards keep their URLs at, and skips everything else.
struct Walker<'b> {
    body: &'b [u8],
    at: usize,
    members: Vec<Member>,
}

impl Walker<'_> {
    fn peek(&self) -> Option<u8> {
        self.body.get(self.at).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        self.skip_ws();
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// A string token at `at`: its span, quotes included.
    fn string(&mut self) -> Option<(usize, usize)> {
        let start = self.at;
        (self.peek()? == b'"').then_some(())?;
        self.at += 1;
        loop {
            match self.peek()? {
                b'\\' => self.at += 2,
                b'"' => {
                    self.at += 1;
                    return Some((start, self.at));
                }
                _ => self.at += 1,
            }
        }
    }

    fn decode(&self, span: (usize, usize)) -> Option<String> {
        serde_json::from_slice(self.body.get(span.0..span.1)?).ok()
    }

    /// An object at `at`; `within` says which top-level array holds it
    /// (its key and where it starts; `None` for the card itself).
    fn object(&mut self, within: Option<(&str, usize)>) -> Option<()> {
        let start = self.at;
        self.expect(b'{')?;
        self.skip_ws();
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(());
        }
        loop {
            self.skip_ws();
            let key_span = self.string()?;
            let key = self.decode(key_span)?;
            self.expect(b':')?;
            self.skip_ws();
            let value_start = self.at;
            let value = match (self.peek()?, within) {
                (b'"', _) => {
                    let span = self.string()?;
                    Some(self.decode(span)?)
                }
                (b'[', None) => {
                    self.array(&key)?;
                    None
                }
                _ => {
                    self.skip_value()?;
                    None
                }
            };
            let span = (
                value_start,
                if value.is_some() {
                    self.at
                } else {
                    value_start
                },
            );
            self.members.push(Member {
                within: within.map(|(list, array)| (list.to_string(), array, start)),
                key,
                value,
                span,
            });
            self.skip_ws();
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A top-level array: its objects are read for their members.
    fn array(&mut self, key: &str) -> Option<()> {
        let start = self.at;
        self.expect(b'[')?;
        loop {
            self.skip_ws();
            match self.peek()? {
                b']' => {
                    self.at += 1;
                    return Some(());
                }
                b',' => self.at += 1,
                b'{' => self.object(Some((key, start)))?,
                _ => self.skip_value()?,
            }
        }
    }

    /// Skips one value of any depth without recursion.
    fn skip_value(&mut self) -> Option<()> {
        let mut depth = 0usize;
        loop {
            self.skip_ws();
            match self.peek()? {
                b'"' => {
                    self.string()?;
                }
                b'{' | b'[' => {
                    depth += 1;
                    self.at += 1;
                    continue;
                }
                b'}' | b']' => {
                    depth = depth.checked_sub(1)?;
                    self.at += 1;
                }
                b',' | b':' if depth > 0 => {
                    self.at += 1;
                    continue;
                }
                _ => {
                    // A number, true, false or null.
                    while self.peek().is_some_and(|b| {
                        !matches!(b, b',' | b'}' | b']') && !b.is_ascii_whitespace()
                    }) {
                        self.at += 1;
                    }
                }
            }
            if depth == 0 {
                return Some(());
            }
        }
    }
}

/// The URL a client of the gateway uses for an interface URL of the agent,
/// or `None` when the URL is not an HTTP URL below the agent's root, or is
/// already on the address the client used (an agent that advertises its
/// public URL: rewriting it would add the prefix twice).
pub fn rewrite_url(url: &str, address: &CardAddress) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return None;
    }
    // Path, query and fragment start at the first of '/', '?' or '#'.
    let path_start = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(path_start);
    if same_authority(scheme, authority, &address.scheme, &address.authority) {
        return None;
    }
    let path_end = tail.find(['?', '#']).unwrap_or(tail.len());
    let (path, suffix) = tail.split_at(path_end);
    let path = if path.is_empty() { "/" } else { path };
    let below = below_root(path, &address.root)?;
    let prefix = address.prefix.trim_end_matches('/');
    let mut out = format!("{}://{}{prefix}", address.scheme, address.authority);
    if below.is_empty() && prefix.is_empty() {
        out.push('/');
    }
    out.push_str(below);
    out.push_str(suffix);
    Some(out)
}

/// Whether two authorities name the same host and port, case aside and
/// with each scheme's default port spelled or not.
fn same_authority(scheme_a: &str, a: &str, scheme_b: &str, b: &str) -> bool {
    let canonical = |scheme: &str, authority: &str| {
        let authority = authority.to_ascii_lowercase();
        let default = if scheme.eq_ignore_ascii_case("https") {
            ":443"
        } else {
            ":80"
        };
        match authority.strip_suffix(default) {
            Some(host) => host.to_string(),
            None => authority,
        }
    };
    canonical(scheme_a, a) == canonical(scheme_b, b)
}

/// `path` without the agent's `root`, by whole segments: `""` or a path
/// starting with '/'; `None` when `path` is not below `root`.
fn below_root<'p>(path: &'p str, root: &str) -> Option<&'p str> {
    let root = root.trim_end_matches('/');
    let rest = path.strip_prefix(root)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn address(prefix: &str, root: &str) -> CardAddress {
        CardAddress {
            scheme: "https".to_string(),
            authority: "gw.example.com".to_string(),
            prefix: prefix.to_string(),
            root: root.to_string(),
        }
    }

    #[test]
    fn urls_follow_the_prefix_and_stay_below_the_root() {
        let layout = address("/prod/agent/echo", "/");
        let cases = [
            (
                "http://svc:8080/",
                Some("https://gw.example.com/prod/agent/echo/"),
            ),
            (
                "http://svc:8080",
                Some("https://gw.example.com/prod/agent/echo/"),
            ),
            (
                "http://svc:8080/a2a/v1",
                Some("https://gw.example.com/prod/agent/echo/a2a/v1"),
            ),
            (
                "http://svc/rpc?x=1#f",
                Some("https://gw.example.com/prod/agent/echo/rpc?x=1#f"),
            ),
            ("grpc://svc:9090/", None),
            ("not a url", None),
        ];
        for (url, want) in cases {
            assert_eq!(rewrite_url(url, &layout).as_deref(), want, "{url}");
        }
        // An explicit prefix with a rewrite: the agent's root is the rewrite.
        let tick = address("/tick", "/tock");
        assert_eq!(
            rewrite_url("http://svc:8080/tock/rpc", &tick).as_deref(),
            Some("https://gw.example.com/tick/rpc"),
            "never /tick/tock/rpc"
        );
        assert_eq!(
            rewrite_url("http://svc:8080/tock", &tick).as_deref(),
            Some("https://gw.example.com/tick")
        );
        assert_eq!(rewrite_url("http://svc:8080/other/rpc", &tick), None);
        assert_eq!(rewrite_url("http://svc:8080/tockx/rpc", &tick), None);
        // A host match: no prefix.
        let host = address("", "/");
        assert_eq!(
            rewrite_url("http://svc:8080/", &host).as_deref(),
            Some("https://gw.example.com/")
        );
        assert_eq!(
            rewrite_url("http://svc:8080/rpc", &host).as_deref(),
            Some("https://gw.example.com/rpc")
        );
    }

    #[test]
    fn both_card_generations_are_rewritten_and_nothing_else() {
        let card = json!({
            "name": "echo",
            "url": "http://svc:8000/",
            "preferredTransport": "JSONRPC",
            "additionalInterfaces": [
                {"url": "http://svc:8000/", "transport": "JSONRPC"},
                {"url": "http://svc:9000/", "transport": "GRPC"}
            ],
            "supportedInterfaces": [
                {"url": "http://svc:8000/", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
                {"url": "http://svc:8000/rest", "protocolBinding": "HTTP+JSON"},
                {"url": "http://svc:9000", "protocolBinding": "GRPC"}
            ],
            "provider": {"url": "http://svc:8000/", "organization": "x"},
            "documentationUrl": "http://svc:8000/docs",
            "iconUrl": "http://svc:8000/icon.png"
        });
        let out = rewrite_card(
            card.to_string().as_bytes(),
            &address("/prod/echo", "/"),
            false,
        );
        let CardOutcome::Rewritten { body, urls } = out else {
            panic!("expected a rewrite, got {out:?}");
        };
        assert_eq!(urls, 4);
        let v: Value = serde_json::from_slice(&body).unwrap();
        let gw = "https://gw.example.com/prod/echo/";
        assert_eq!(v["url"], gw);
        assert_eq!(v["additionalInterfaces"][0]["url"], gw);
        assert_eq!(v["additionalInterfaces"][1]["url"], "http://svc:9000/");
        assert_eq!(v["supportedInterfaces"][0]["url"], gw);
        assert_eq!(
            v["supportedInterfaces"][1]["url"],
            "https://gw.example.com/prod/echo/rest"
        );
        assert_eq!(v["supportedInterfaces"][2]["url"], "http://svc:9000");
        assert_eq!(v["provider"]["url"], "http://svc:8000/");
        assert_eq!(v["documentationUrl"], "http://svc:8000/docs");
        assert_eq!(v["iconUrl"], "http://svc:8000/icon.png");
        // Key order is kept.
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys.first().map(|k| k.as_str()), Some("name"));
    }

    #[test]
    fn signed_bad_and_foreign_cards_pass_unchanged() {
        let signed = json!({"url": "http://svc/", "signatures": [{"signature": "x"}]}).to_string();
        let at = address("/p", "/");
        assert_eq!(
            rewrite_card(signed.as_bytes(), &at, false),
            CardOutcome::Unchanged(Unchanged::Signed)
        );
        assert!(matches!(
            rewrite_card(signed.as_bytes(), &at, true),
            CardOutcome::Rewritten { urls: 1, .. }
        ));
        for body in [&b"not json"[..], b"[1]", b""] {
            assert_eq!(
                rewrite_card(body, &at, false),
                CardOutcome::Unchanged(Unchanged::NotACard)
            );
        }
        let elsewhere = json!({"url": "http://svc/x", "preferredTransport": "GRPC"}).to_string();
        assert_eq!(
            rewrite_card(elsewhere.as_bytes(), &at, false),
            CardOutcome::Unchanged(Unchanged::NothingToRewrite)
        );
    }

    #[test]
    fn card_paths_in_every_spelling_a_server_serves() {
        for path in [
            "/.well-known/agent-card.json",
            "/.well-known/agent.json?x=1",
            "/.well-known/agent",
            "//.well-known/agent-card.json",
            "/.well-known//agent-card.json",
            "/.well-known/agent%2Dcard.json",
            "/%2Ewell-known/agent%2dcard.json",
            "/.well-known%2Fagent-card.json",
            "/%2F.well-known/agent.json",
        ] {
            assert!(is_card_path(path), "{path}");
        }
        for path in [
            "/.well-known/agent-card.jsonx",
            "/x/.well-known/agent.json",
            "/.well-known/agents",
            "/.WELL-KNOWN/agent.json",
            "/.well-known/agent%",
        ] {
            assert!(!is_card_path(path), "{path}");
        }
    }

    #[test]
    fn only_plain_authorities_are_written_into_cards() {
        for ok in [
            "gw.example.com",
            "gw.example.com:8443",
            "localhost:10000",
            "10.0.0.1",
            "[::1]:8080",
            "[2001:db8::1]",
            "under_score.example",
        ] {
            assert!(is_plain_authority(ok), "{ok}");
        }
        for bad in [
            "gw.example.com@attacker.example",
            "",
            ":80",
            "gw.example.com:",
            "gw.example.com:80:81",
            "gw.example.com/x",
            "gw example.com",
            "[::1",
            "[::1]x",
            "a.example.com:123456",
            "user:pass@host",
        ] {
            assert!(!is_plain_authority(bad), "{bad}");
        }
    }

    #[test]
    fn urls_already_on_the_gateway_stay_as_they_are() {
        let at = address("/prod/agent/echo", "/");
        for url in [
            "http://gw.example.com/prod/agent/echo/",
            "https://GW.example.com:443/prod/agent/echo/rpc",
        ] {
            assert_eq!(rewrite_url(url, &at), None, "{url}");
        }
        assert_eq!(
            rewrite_url("http://gw.example.com:8080/x", &at).as_deref(),
            Some("https://gw.example.com/prod/agent/echo/x"),
            "another port is another address"
        );
    }

    #[test]
    fn everything_but_the_urls_passes_byte_for_byte() {
        let card = br#"{ "name":"echo", "version" : 1e2,
  "big": 123456789012345678901234567890, "f": 1.50,
  "url" : "http://svc:8000/a2a", "esc": "caf\u00e9 \"q\"",
  "supportedInterfaces": [ {"url":"http://svc:8000/", "protocolBinding":"JSONRPC", "n": [1,{"url":"http://svc/deep"}]},
     {"protocolBinding":"GRPC","url":"http://svc:9000"} ],
  "skills": [{"url": "http://svc:8000/skill"}] }"#;
        let CardOutcome::Rewritten { body, urls } = rewrite_card(card, &address("/p", "/"), false)
        else {
            panic!("expected a rewrite");
        };
        assert_eq!(urls, 2);
        let expected = String::from_utf8_lossy(card)
            .replace(
                r#""url" : "http://svc:8000/a2a""#,
                r#""url" : "https://gw.example.com/p/a2a""#,
            )
            .replace(
                r#"{"url":"http://svc:8000/", "protocolBinding""#,
                r#"{"url":"https://gw.example.com/p/", "protocolBinding""#,
            );
        assert_eq!(String::from_utf8_lossy(&body), expected);
    }

    #[test]
    fn a_binding_after_the_url_and_duplicate_keys_are_read_as_json_readers_do() {
        let card = br#"{"supportedInterfaces":[{"url":"http://svc/a","protocolBinding":"GRPC"},
            {"url":"http://svc/b","protocolBinding":"GRPC","protocolBinding":"JSONRPC"}],
            "preferredTransport":"GRPC","url":"http://svc/c"}"#;
        let CardOutcome::Rewritten { body, urls } = rewrite_card(card, &address("/p", "/"), false)
        else {
            panic!("expected a rewrite");
        };
        assert_eq!(urls, 1);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["supportedInterfaces"][0]["url"], "http://svc/a");
        assert_eq!(
            v["supportedInterfaces"][1]["url"],
            "https://gw.example.com/p/b"
        );
        assert_eq!(v["url"], "http://svc/c");
    }
}
