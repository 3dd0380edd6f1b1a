//! Agent cards that point at the gateway.
//!
//! An agent publishes its card with its own, internal address. Passing
//! through the gateway, the HTTP interface URLs of the card are rewritten to
//! the address the client used: its scheme and host, the external prefix the
//! request matched, then the URL's path below the agent's own root (where
//! that prefix lands upstream). Nothing else in the card changes.

use serde_json::Value;

/// The card paths a request may ask for, below the agent's root.
pub const CARD_PATHS: [&str; 2] = ["/.well-known/agent-card.json", "/.well-known/agent.json"];

/// Cards are small; a bigger answer passes through untouched.
pub const MAX_CARD_BYTES: usize = 256 * 1024;

/// Whether `rest` (the request path below the agent prefix, query
/// included) asks for an agent card.
pub fn is_card_path(rest: &str) -> bool {
    let path = rest.split_once('?').map_or(rest, |(p, _)| p);
    CARD_PATHS.contains(&path)
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
pub fn rewrite_card(body: &[u8], address: &CardAddress, rewrite_signed: bool) -> CardOutcome {
    let Ok(Value::Object(mut card)) = serde_json::from_slice::<Value>(body) else {
        return CardOutcome::Unchanged(Unchanged::NotACard);
    };
    let signed = card
        .get("signatures")
        .and_then(Value::as_array)
        .is_some_and(|s| !s.is_empty());
    if signed && !rewrite_signed {
        return CardOutcome::Unchanged(Unchanged::Signed);
    }
    let mut urls = 0;
    // 0.3: the top-level URL speaks the card's preferred transport.
    let preferred = card
        .get("preferredTransport")
        .and_then(Value::as_str)
        .unwrap_or("JSONRPC")
        .to_string();
    if is_http_binding(&preferred) {
        if let Some(url) = card.get_mut("url") {
            urls += rewrite_in_place(url, address);
        }
    }
    for (list, binding_key) in [
        ("supportedInterfaces", "protocolBinding"),
        ("additionalInterfaces", "transport"),
    ] {
        let Some(Value::Array(interfaces)) = card.get_mut(list) else {
            continue;
        };
        for interface in interfaces.iter_mut().filter_map(Value::as_object_mut) {
            let binding = interface
                .get(binding_key)
                .and_then(Value::as_str)
                .unwrap_or("JSONRPC");
            if !is_http_binding(binding) {
                continue;
            }
            if let Some(url) = interface.get_mut("url") {
                urls += rewrite_in_place(url, address);
            }
        }
    }
    if urls == 0 {
        return CardOutcome::Unchanged(Unchanged::NothingToRewrite);
    }
    match serde_json::to_vec(&Value::Object(card)) {
        Ok(body) => CardOutcome::Rewritten { body, urls },
        Err(_) => CardOutcome::Unchanged(Unchanged::NotACard),
    }
}

fn is_http_binding(binding: &str) -> bool {
    binding.eq_ignore_ascii_case("JSONRPC") || binding.eq_ignore_ascii_case("HTTP+JSON")
}

fn rewrite_in_place(url: &mut Value, address: &CardAddress) -> usize {
    let Some(new) = url.as_str().and_then(|u| rewrite_url(u, address)) else {
        return 0;
    };
    *url = Value::String(new);
    1
}

/// The URL a client of the gateway uses for an interface URL of the agent,
/// or `None` when the URL is not an HTTP URL below the agent's root.
pub fn rewrite_url(url: &str, address: &CardAddress) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return None;
    }
    // Path, query and fragment start at the first of '/', '?' or '#'.
    let path_start = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let tail = rest.get(path_start..).unwrap_or("");
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
    fn card_paths() {
        assert!(is_card_path("/.well-known/agent-card.json"));
        assert!(is_card_path("/.well-known/agent.json?x=1"));
        assert!(!is_card_path("/.well-known/agent-card.jsonx"));
        assert!(!is_card_path("/x/.well-known/agent.json"));
    }
}
