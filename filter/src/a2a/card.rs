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
    /// The card with `urls` interface URLs written (rewritten, or put in
    /// place of a main interface the gateway cannot serve) and `dropped`
    /// interfaces taken out.
    Rewritten {
        body: Vec<u8>,
        urls: usize,
        dropped: usize,
    },
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
    /// No interface URL to rewrite and no interface to drop: every
    /// interface is already on the address the client used, or there is
    /// none.
    NothingToRewrite,
}

impl Unchanged {
    pub fn reason(self) -> &'static str {
        match self {
            Unchanged::NotACard => "the answer is not a JSON object",
            Unchanged::Signed => {
                "the card is signed (set a2a.rewrite_signed_cards to rewrite it anyway)"
            }
            Unchanged::NothingToRewrite => "no interface URL to rewrite or drop",
        }
    }
}

/// The interface lists of a card and the key naming each interface's
/// binding: A2A 1.0, then A2A 0.3.
const INTERFACE_LISTS: [(&str, &str); 2] = [
    ("supportedInterfaces", "protocolBinding"),
    ("additionalInterfaces", "transport"),
];

/// Makes a card point at the gateway: every interface the gateway serves
/// at the agent's path gets the address the client used, and no interface
/// it cannot serve reaches the client (its URL is the agent's internal
/// address: a gRPC `a1.internal:9000`, a path outside the agent's root).
///
/// - A2A 1.0 `supportedInterfaces[]` and A2A 0.3 `additionalInterfaces[]`:
///   an interface of an HTTP binding (`JSONRPC`, `HTTP+JSON`, or none
///   given) whose `url` lies below the agent's root is rewritten; one
///   already on the client's address is kept as it is; any other (gRPC or
///   another binding, a URL outside the root or not HTTP, no URL, not an
///   object) is dropped.
/// - A2A 0.3 top-level `url` with `preferredTransport`, the card's main
///   interface: rewritten or kept by the same rule; else replaced by the
///   first `additionalInterfaces` entry left (its URL and transport), and
///   with none left, `url` and `preferredTransport` are taken out: a client
///   then finds no interface rather than an internal address.
///
/// Only those bytes change: everything else in the card (numbers as
/// written, `1e2` or a 30-digit integer, whitespace, key order, duplicate
/// keys) passes byte for byte, because the new card is the old one with
/// tokens spliced out and in. Of duplicate keys, the one JSON readers take
/// (the last) decides.
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
    let plan = tokens.plan(address);
    if plan.urls == 0 && plan.dropped == 0 {
        return CardOutcome::Unchanged(Unchanged::NothingToRewrite);
    }
    match splice(body, plan.edits) {
        Some(body) => CardOutcome::Rewritten {
            body,
            urls: plan.urls,
            dropped: plan.dropped,
        },
        // Edits are disjoint by construction; should they ever overlap,
        // the card is not one this reader understands.
        None => CardOutcome::Unchanged(Unchanged::NotACard),
    }
}

fn is_http_binding(binding: &str) -> bool {
    binding.eq_ignore_ascii_case("JSONRPC") || binding.eq_ignore_ascii_case("HTTP+JSON")
}

/// Replace `body[start..end]` with the bytes.
type Edit = (usize, usize, Vec<u8>);

/// `body` with the edits made; `None` when two overlap.
fn splice(body: &[u8], mut edits: Vec<Edit>) -> Option<Vec<u8>> {
    edits.sort_by_key(|(start, end, _)| (*start, *end));
    let mut out = Vec::with_capacity(body.len() + 256);
    let mut copied = 0;
    for (start, end, with) in edits {
        out.extend_from_slice(body.get(copied..start)?);
        out.extend_from_slice(&with);
        copied = end;
    }
    out.extend_from_slice(body.get(copied..)?);
    Some(out)
}

/// The cuts that take the elements marked in `remove` out of a list of
/// comma-separated elements (`spans`, in order), each with one comma: the
/// one after it while a kept element follows, else the one before it.
fn cuts(spans: &[(usize, usize)], remove: &[bool]) -> Vec<Edit> {
    let last_kept = remove.iter().rposition(|r| !r);
    let mut out = Vec::new();
    for (i, (&span, _)) in spans
        .iter()
        .zip(remove)
        .enumerate()
        .filter(|(_, (_, &r))| r)
    {
        let cut = match last_kept {
            Some(kept) if i > kept => spans.get(i.wrapping_sub(1)).map(|prev| (prev.1, span.1)),
            _ => Some(spans.get(i + 1).map_or(span, |next| (span.0, next.0))),
        };
        if let Some((start, end)) = cut {
            out.push((start, end, Vec::new()));
        }
    }
    out
}

/// A URL the gateway serves at the agent's path.
enum Served {
    /// Below the agent's root on its internal address: the URL on the
    /// client's address.
    Rewritten(String),
    /// Already on the address the client used.
    AsIs,
}

/// What a card becomes.
#[derive(Default)]
struct Plan {
    edits: Vec<Edit>,
    urls: usize,
    dropped: usize,
}

/// A member of a card at the top level or in an object of a top-level
/// array, with its value when it is a string.
#[derive(Debug)]
struct Member {
    /// For members of objects inside a top-level array: the array's key,
    /// where the array starts and where the object starts.
    within: Option<(String, usize, usize)>,
    key: String,
    value: Option<String>,
    /// Its value (quotes included for a string).
    span: (usize, usize),
    /// From its key's opening quote to the end of its value.
    whole: (usize, usize),
}

/// An element of a top-level array.
#[derive(Debug)]
struct Element {
    /// The array's key and where the array starts.
    list: String,
    array: usize,
    span: (usize, usize),
    object: bool,
}

/// The members of a card at the top level and in the objects of top-level
/// arrays, and the elements of those arrays, in document order.
struct Tokens {
    members: Vec<Member>,
    elements: Vec<Element>,
}

impl Tokens {
    /// Walks a document serde_json has already read as valid JSON; `None`
    /// on anything it does not expect, and the card then passes unchanged.
    fn of(body: &[u8]) -> Option<Tokens> {
        let mut walker = Walker {
            body,
            at: 0,
            members: Vec::new(),
            elements: Vec::new(),
        };
        walker.skip_ws();
        walker.object(None)?;
        Some(Tokens {
            members: walker.members,
            elements: walker.elements,
        })
    }

    /// The member JSON readers see for `key` in an object: the last one.
    fn last(&self, within: &Option<(String, usize, usize)>, key: &str) -> Option<&Member> {
        self.members
            .iter()
            .rev()
            .find(|m| &m.within == within && m.key == key)
    }

    /// The URL member of the interface in `within` (the card itself for
    /// the 0.3 main interface) and how the gateway serves it; `None` when
    /// it cannot: a binding other than HTTP (absent, or not a string, reads
    /// as JSON-RPC), no URL string, or a URL the rewrite does not map.
    fn interface(
        &self,
        within: &Option<(String, usize, usize)>,
        binding: &str,
        address: &CardAddress,
    ) -> Option<(&Member, Served)> {
        let http = self
            .last(within, binding)
            .and_then(|m| m.value.as_deref())
            .map_or(true, is_http_binding);
        if !http {
            return None;
        }
        let url = self.last(within, "url")?;
        let served = serve(url.value.as_deref()?, address)?;
        Some((url, served))
    }

    fn plan(&self, address: &CardAddress) -> Plan {
        let mut plan = Plan::default();
        // The first 0.3 additional interface kept: its URL as the client
        // gets it and its transport, for a main interface that goes.
        let mut first_additional: Option<(String, Option<String>)> = None;
        for (list, binding) in INTERFACE_LISTS {
            let Some(array) = self.last(&None, list) else {
                continue;
            };
            let items: Vec<&Element> = self
                .elements
                .iter()
                .filter(|e| e.list == list && e.array == array.span.0)
                .collect();
            let mut remove = Vec::with_capacity(items.len());
            for item in &items {
                let within = Some((list.to_string(), item.array, item.span.0));
                let served = item
                    .object
                    .then(|| self.interface(&within, binding, address))
                    .flatten();
                let Some((url, served)) = served else {
                    remove.push(true);
                    plan.dropped += 1;
                    continue;
                };
                remove.push(false);
                let now = match served {
                    Served::Rewritten(new) => {
                        plan.edits.push(edit(url.span, &new));
                        plan.urls += 1;
                        new
                    }
                    Served::AsIs => url.value.clone().unwrap_or_default(),
                };
                if list == "additionalInterfaces" && first_additional.is_none() {
                    let transport = self.last(&within, binding).and_then(|m| m.value.clone());
                    first_additional = Some((now, transport));
                }
            }
            let spans: Vec<(usize, usize)> = items.iter().map(|e| e.span).collect();
            plan.edits.extend(cuts(&spans, &remove));
        }
        self.plan_main(address, first_additional, &mut plan);
        plan
    }

    /// The A2A 0.3 main interface: top-level `url` and `preferredTransport`.
    fn plan_main(
        &self,
        address: &CardAddress,
        replacement: Option<(String, Option<String>)>,
        plan: &mut Plan,
    ) {
        let Some(url) = self.last(&None, "url") else {
            return;
        };
        match self.interface(&None, "preferredTransport", address) {
            Some((url, Served::Rewritten(new))) => {
                plan.edits.push(edit(url.span, &new));
                plan.urls += 1;
                return;
            }
            Some((_, Served::AsIs)) => return,
            None => plan.dropped += 1,
        }
        let preferred = self.last(&None, "preferredTransport");
        match replacement {
            Some((new, transport)) => {
                let mut with = json_string(&new);
                match (preferred, transport) {
                    (Some(preferred), transport) => plan.edits.push(edit(
                        preferred.span,
                        transport.as_deref().unwrap_or("JSONRPC"),
                    )),
                    // The interface's transport must come along.
                    (None, Some(transport)) => {
                        with.extend_from_slice(b",\"preferredTransport\":");
                        with.extend_from_slice(&json_string(&transport));
                    }
                    (None, None) => {}
                }
                plan.edits.push((url.span.0, url.span.1, with));
                plan.urls += 1;
            }
            None => {
                let top: Vec<&Member> =
                    self.members.iter().filter(|m| m.within.is_none()).collect();
                let spans: Vec<(usize, usize)> = top.iter().map(|m| m.whole).collect();
                let remove: Vec<bool> = top
                    .iter()
                    .map(|m| m.key == "url" || m.key == "preferredTransport")
                    .collect();
                plan.edits.extend(cuts(&spans, &remove));
            }
        }
    }
}

/// `text` as a JSON string token.
fn json_string(text: &str) -> Vec<u8> {
    // Serialising a string cannot fail; an empty string is the fallback.
    serde_json::to_vec(text).unwrap_or_else(|_| b"\"\"".to_vec())
}

fn edit(span: (usize, usize), text: &str) -> Edit {
    (span.0, span.1, json_string(text))
}

/// A small reader over a valid JSON document that records the members at
/// the two depths cards keep their interfaces at, and the elements of
/// top-level arrays, and skips everything else.
struct Walker<'b> {
    body: &'b [u8],
    at: usize,
    members: Vec<Member>,
    elements: Vec<Element>,
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
            self.members.push(Member {
                within: within.map(|(list, array)| (list.to_string(), array, start)),
                key,
                value,
                span: (value_start, self.at),
                whole: (key_span.0, self.at),
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

    /// A top-level array: its elements are recorded, and its objects read
    /// for their members.
    fn array(&mut self, key: &str) -> Option<()> {
        let start = self.at;
        self.expect(b'[')?;
        loop {
            self.skip_ws();
            let element_start = self.at;
            let object = match self.peek()? {
                b']' => {
                    self.at += 1;
                    return Some(());
                }
                b',' => {
                    self.at += 1;
                    continue;
                }
                b'{' => {
                    self.object(Some((key, start)))?;
                    true
                }
                _ => {
                    self.skip_value()?;
                    false
                }
            };
            self.elements.push(Element {
                list: key.to_string(),
                array: start,
                span: (element_start, self.at),
                object,
            });
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
    match serve(url, address)? {
        Served::Rewritten(new) => Some(new),
        Served::AsIs => None,
    }
}

/// How the gateway serves an interface URL: `None` when it cannot (not
/// HTTP, or not below the agent's root on another address).
fn serve(url: &str, address: &CardAddress) -> Option<Served> {
    let (scheme, rest) = url.split_once("://")?;
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return None;
    }
    // Path, query and fragment start at the first of '/', '?' or '#'.
    let path_start = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(path_start);
    if same_authority(scheme, authority, &address.scheme, &address.authority) {
        return Some(Served::AsIs);
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
    Some(Served::Rewritten(out))
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
        let CardOutcome::Rewritten {
            body,
            urls,
            dropped,
        } = out
        else {
            panic!("expected a rewrite, got {out:?}");
        };
        assert_eq!((urls, dropped), (4, 2));
        let v: Value = serde_json::from_slice(&body).unwrap();
        let gw = "https://gw.example.com/prod/echo/";
        assert_eq!(v["url"], gw);
        assert_eq!(
            v["additionalInterfaces"],
            json!([{"url": gw, "transport": "JSONRPC"}]),
            "the gRPC interface is dropped"
        );
        assert_eq!(v["supportedInterfaces"][0]["url"], gw);
        assert_eq!(
            v["supportedInterfaces"][1]["url"],
            "https://gw.example.com/prod/echo/rest"
        );
        assert_eq!(v["supportedInterfaces"].as_array().map(Vec::len), Some(2));
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
        // Interfaces already on the client's address, or none at all.
        for card in [
            json!({"url": "https://gw.example.com/p/", "supportedInterfaces": [
                {"url": "https://gw.example.com:443/p/rpc", "protocolBinding": "JSONRPC"}]}),
            json!({"name": "x", "supportedInterfaces": []}),
        ] {
            assert_eq!(
                rewrite_card(card.to_string().as_bytes(), &at, false),
                CardOutcome::Unchanged(Unchanged::NothingToRewrite),
                "{card}"
            );
        }
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
        let CardOutcome::Rewritten { body, urls, .. } =
            rewrite_card(card, &address("/p", "/"), false)
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
            )
            .replace(
                r#",
     {"protocolBinding":"GRPC","url":"http://svc:9000"} ]"#,
                " ]",
            );
        assert_eq!(String::from_utf8_lossy(&body), expected);
    }

    #[test]
    fn a_binding_after_the_url_and_duplicate_keys_are_read_as_json_readers_do() {
        let card = br#"{"supportedInterfaces":[{"url":"http://svc/a","protocolBinding":"GRPC"},
            {"url":"http://svc/b","protocolBinding":"GRPC","protocolBinding":"JSONRPC"}],
            "preferredTransport":"GRPC","url":"http://svc/c"}"#;
        let CardOutcome::Rewritten {
            body,
            urls,
            dropped,
        } = rewrite_card(card, &address("/p", "/"), false)
        else {
            panic!("expected a rewrite");
        };
        assert_eq!((urls, dropped), (1, 2));
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            json!({"supportedInterfaces": [{"url": "https://gw.example.com/p/b",
                "protocolBinding": "JSONRPC"}]}),
            "the gRPC interfaces are dropped, and the gRPC main interface too"
        );
    }

    /// What a client gets in place of a card: its JSON, checked for the
    /// internal addresses of the agent.
    fn rewritten(card: &Value, at: &CardAddress) -> (Value, usize, usize) {
        let out = rewrite_card(card.to_string().as_bytes(), at, false);
        let CardOutcome::Rewritten {
            body,
            urls,
            dropped,
        } = out
        else {
            panic!("expected a rewrite of {card}, got {out:?}");
        };
        let text = String::from_utf8_lossy(&body);
        assert!(!text.contains("a1.internal"), "{text}");
        let v = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{e}: {text}"));
        (v, urls, dropped)
    }

    #[test]
    fn interfaces_the_gateway_cannot_serve_are_dropped_from_1_0_cards() {
        let at = address("/tick", "/tock");
        let gw = "https://gw.example.com/tick/rpc";
        let card = json!({
            "name": "a1",
            "supportedInterfaces": [
                {"url": "a1.internal:9000", "protocolBinding": "GRPC", "protocolVersion": "1.0"},
                {"url": "http://svc:8000/tock/rpc", "protocolBinding": "JSONRPC"},
                {"url": "http://svc:8000/tock/rpc", "protocolBinding": "grpc"},
                {"url": "http://svc:8000/other/rpc", "protocolBinding": "JSONRPC"},
                {"url": "ftp://svc:8000/tock/rpc", "protocolBinding": "HTTP+JSON"},
                {"url": "a1.internal:9000", "protocolBinding": "JSONRPC"},
                {"protocolBinding": "JSONRPC"},
                {"url": 7},
                "a1.internal:9000",
                ["http://svc:8000/tock/rpc"],
                {"url": "https://gw.example.com/tick/rest", "protocolBinding": "HTTP+JSON"},
                {"url": "http://svc:8000/tock/rpc", "protocolBinding": "SOAP"},
                {"url": "http://svc:8000/tock/rest", "protocolBinding": "HTTP+JSON",
                 "tenant": "t"}
            ],
            "provider": {"url": "http://svc:8000/", "organization": "x"}
        });
        let (v, urls, dropped) = rewritten(&card, &at);
        assert_eq!((urls, dropped), (2, 10));
        assert_eq!(
            v["supportedInterfaces"],
            json!([
                {"url": gw, "protocolBinding": "JSONRPC"},
                {"url": "https://gw.example.com/tick/rest", "protocolBinding": "HTTP+JSON"},
                {"url": "https://gw.example.com/tick/rest", "protocolBinding": "HTTP+JSON",
                 "tenant": "t"}
            ])
        );
        assert_eq!(v["name"], "a1");
        // Not an interface: left alone (a provider's URL is no endpoint).
        assert_eq!(
            v["provider"],
            json!({"url": "http://svc:8000/", "organization": "x"})
        );
        // Only gRPC: the client is told of no interface, not of a1.internal.
        let grpc = json!({"supportedInterfaces": [
            {"url": "a1.internal:9000", "protocolBinding": "GRPC"},
            {"url": "a1.internal:9001", "protocolBinding": "GRPC"}]});
        let out = rewrite_card(grpc.to_string().as_bytes(), &at, false);
        let CardOutcome::Rewritten { body, dropped, .. } = out else {
            panic!("{out:?}");
        };
        assert_eq!(dropped, 2);
        assert_eq!(
            serde_json::from_slice::<Value>(&body).unwrap(),
            json!({"supportedInterfaces": []})
        );
    }

    #[test]
    fn a_0_3_main_interface_the_gateway_cannot_serve_gives_way() {
        let at = address("/p", "/");
        let gw = "https://gw.example.com/p/";
        // As a2a-sdk publishes a card whose first interface is gRPC: the
        // main interface is gRPC, the JSON-RPC one is additional.
        let card = json!({
            "name": "a1",
            "url": "a1.internal:9000",
            "preferredTransport": "GRPC",
            "protocolVersion": "0.3.0",
            "additionalInterfaces": [
                {"url": "a1.internal:9000", "transport": "GRPC"},
                {"url": "http://svc:8000/rest", "transport": "HTTP+JSON"},
                {"url": "http://svc:8000/", "transport": "JSONRPC"}
            ],
            "skills": []
        });
        let (v, urls, dropped) = rewritten(&card, &at);
        assert_eq!((urls, dropped), (3, 2));
        assert_eq!(v["url"], "https://gw.example.com/p/rest");
        assert_eq!(
            v["preferredTransport"], "HTTP+JSON",
            "the transport comes along"
        );
        assert_eq!(
            v["additionalInterfaces"],
            json!([
                {"url": "https://gw.example.com/p/rest", "transport": "HTTP+JSON"},
                {"url": gw, "transport": "JSONRPC"}
            ])
        );
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "name",
                "url",
                "preferredTransport",
                "protocolVersion",
                "additionalInterfaces",
                "skills"
            ]
        );
        // No preferredTransport (JSON-RPC) but a URL outside the root: the
        // replacement's transport is added next to its URL.
        let card = json!({"url": "http://svc:8000/elsewhere", "name": "a1",
            "additionalInterfaces": [{"url": "http://svc:8000/rpc", "transport": "HTTP+JSON"}]});
        let (v, _, _) = rewritten(&card, &address("/p", "/rpc"));
        assert_eq!(
            v,
            json!({"url": "https://gw.example.com/p", "preferredTransport": "HTTP+JSON", "name": "a1",
                "additionalInterfaces": [{"url": "https://gw.example.com/p", "transport": "HTTP+JSON"}]})
        );
        // A replacement with no transport is JSON-RPC.
        let card = json!({"url": "grpc://a1.internal:9000", "preferredTransport": "GRPC",
            "additionalInterfaces": [{"url": "http://svc:8000/"}]});
        let (v, _, _) = rewritten(&card, &at);
        assert_eq!(v["url"], gw);
        assert_eq!(v["preferredTransport"], "JSONRPC");
        // Nothing the gateway serves: url and preferredTransport go, the
        // rest of the card stays, whatever their place.
        for card in [
            json!({"url": "a1.internal:9000", "preferredTransport": "GRPC", "name": "a1"}),
            json!({"name": "a1", "preferredTransport": "GRPC", "url": "a1.internal:9000"}),
            json!({"name": "a1", "url": "a1.internal:9000", "preferredTransport": "GRPC",
                "additionalInterfaces": [{"url": "a1.internal:9000", "transport": "GRPC"}]}),
            json!({"url": "http://svc:8000/x", "preferredTransport": "GRPC", "name": "a1"}),
            json!({"url": "ftp://svc:8000/x", "name": "a1"}),
        ] {
            let (v, urls, dropped) = rewritten(&card, &at);
            assert_eq!(urls, 0, "{card}");
            assert!(dropped >= 1, "{card}");
            assert_eq!(v["name"], "a1", "{card}");
            assert!(
                v.get("url").is_none() && v.get("preferredTransport").is_none(),
                "{v}"
            );
        }
        // A main interface the gateway serves stays the main one.
        let card = json!({"url": "http://svc:8000/", "preferredTransport": "JSONRPC",
            "additionalInterfaces": [{"url": "a1.internal:9000", "transport": "GRPC"}]});
        let (v, urls, dropped) = rewritten(&card, &at);
        assert_eq!((urls, dropped), (1, 1));
        assert_eq!(
            v,
            json!({"url": gw, "preferredTransport": "JSONRPC", "additionalInterfaces": []})
        );
    }

    #[test]
    fn dropping_elements_leaves_valid_json_for_every_choice() {
        for n in 0..6usize {
            for mask in 0..(1u32 << n) {
                let remove: Vec<bool> = (0..n).map(|i| mask & (1 << i) != 0).collect();
                // Irregular spacing around the commas on purpose.
                let mut text = String::from("[ ");
                let mut spans = Vec::new();
                for i in 0..n {
                    if i > 0 {
                        text.push_str(if i % 2 == 0 { " ,\n " } else { "," });
                    }
                    let start = text.len();
                    text.push_str(&format!("{{\"i\":{i}}}"));
                    spans.push((start, text.len()));
                }
                text.push_str(" ]");
                let out = splice(text.as_bytes(), cuts(&spans, &remove)).unwrap();
                let kept: Vec<Value> = (0..n)
                    .filter(|i| !remove[*i])
                    .map(|i| json!({ "i": i }))
                    .collect();
                assert_eq!(
                    serde_json::from_slice::<Value>(&out).ok(),
                    Some(Value::Array(kept)),
                    "{text} {remove:?}: {}",
                    String::from_utf8_lossy(&out)
                );
            }
        }
    }
}
