//! Agent-card rewriting (`a2a::card::rewrite_card`, `rewrite_url`): every
//! rewritten URL starts with `scheme://authority` and the external prefix
//! and keeps the URL's path below the agent's root, query and fragment;
//! nothing but the interface URLs changes; an unchanged card's reason is
//! the right one (the host then passes its bytes on as they came).
#![no_main]

use agentroute::a2a::card::{rewrite_card, rewrite_url, CardAddress, CardOutcome, Unchanged};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// Where a card is fetched from: a layout path (root `/`), an explicit
/// prefix with its rewrite target as root, a host match (no prefix).
fn addresses() -> [CardAddress; 3] {
    let at = |scheme: &str, authority: &str, prefix: &str, root: &str| CardAddress {
        scheme: scheme.to_string(),
        authority: authority.to_string(),
        prefix: prefix.to_string(),
        root: root.to_string(),
    };
    [
        at("https", "gw.example.com", "/prod/agent/echo", "/"),
        at("http", "localhost:10000", "/tick", "/tock"),
        at("https", "echo.example.com:8443", "", "/"),
    ]
}

fuzz_target!(|data: &[u8]| {
    let parsed = serde_json::from_slice::<Value>(data).ok();
    for address in addresses() {
        for rewrite_signed in [false, true] {
            let outcome = rewrite_card(data, &address, rewrite_signed);
            check(parsed.as_ref(), &outcome, &address, rewrite_signed);
        }
    }
    // The URL rewrite on its own, on any text.
    if let Ok(url) = std::str::from_utf8(data) {
        for address in addresses() {
            if let Some(new) = rewrite_url(url, &address) {
                check_url(url, &new, &address);
            }
        }
    }
});

/// The interface URLs the filter rewrites: A2A 1.0 `supportedInterfaces[].url`
/// and 0.3 `url` and `additionalInterfaces[].url`, of HTTP bindings.
fn interface_urls(card: &serde_json::Map<String, Value>) -> Vec<(String, Option<&str>)> {
    let http = |b: Option<&Value>| {
        let b = b.and_then(Value::as_str).unwrap_or("JSONRPC");
        b.eq_ignore_ascii_case("JSONRPC") || b.eq_ignore_ascii_case("HTTP+JSON")
    };
    let mut urls = Vec::new();
    if http(card.get("preferredTransport")) && card.contains_key("url") {
        urls.push(("/url".to_string(), card.get("url").and_then(Value::as_str)));
    }
    for (list, binding) in [
        ("supportedInterfaces", "protocolBinding"),
        ("additionalInterfaces", "transport"),
    ] {
        let Some(Value::Array(items)) = card.get(list) else {
            continue;
        };
        for (i, item) in items.iter().enumerate() {
            let Some(item) = item.as_object() else {
                continue;
            };
            if http(item.get(binding)) && item.contains_key("url") {
                urls.push((
                    format!("/{list}/{i}/url"),
                    item.get("url").and_then(Value::as_str),
                ));
            }
        }
    }
    urls
}

fn check(
    parsed: Option<&Value>,
    outcome: &CardOutcome,
    address: &CardAddress,
    rewrite_signed: bool,
) {
    let Some(Value::Object(card)) = parsed else {
        assert_eq!(outcome, &CardOutcome::Unchanged(Unchanged::NotACard));
        return;
    };
    let signed = card
        .get("signatures")
        .and_then(Value::as_array)
        .is_some_and(|s| !s.is_empty());
    if signed && !rewrite_signed {
        assert_eq!(outcome, &CardOutcome::Unchanged(Unchanged::Signed));
        return;
    }
    let urls = interface_urls(card);
    let expected: Vec<(&str, String)> = urls
        .iter()
        .filter_map(|(at, url)| Some((at.as_str(), rewrite_url((*url)?, address)?)))
        .collect();
    let (body, count) = match outcome {
        CardOutcome::Unchanged(reason) => {
            assert_eq!(*reason, Unchanged::NothingToRewrite, "{card:?}");
            assert!(expected.is_empty(), "{expected:?} left unrewritten");
            return;
        }
        CardOutcome::Rewritten { body, urls } => (body, *urls),
    };
    assert_eq!(count, expected.len(), "rewritten URLs counted");
    let mut new: Value = serde_json::from_slice(body).expect("a rewritten card is JSON");
    for (at, url) in &expected {
        let slot = new.pointer_mut(at).expect("the URL is still there");
        assert_eq!(slot.as_str(), Some(url.as_str()), "{at}");
        // Put the old URL back: then nothing else may differ.
        *slot = Value::clone(
            Value::Object(card.clone())
                .pointer(at)
                .expect("in the card"),
        );
    }
    assert_eq!(
        &new,
        &Value::Object(card.clone()),
        "only interface URLs change"
    );
    let keys = |v: &Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>());
    assert_eq!(
        keys(&new),
        keys(&Value::Object(card.clone())),
        "key order kept"
    );
}

fn check_url(url: &str, new: &str, address: &CardAddress) {
    let base = format!(
        "{}://{}{}",
        address.scheme,
        address.authority,
        address.prefix.trim_end_matches('/')
    );
    let rest = new
        .strip_prefix(&base)
        .unwrap_or_else(|| panic!("{url:?} -> {new:?} does not start with {base:?}"));
    assert!(
        rest.is_empty() || rest.starts_with(['/', '?', '#']),
        "{url:?} -> {new:?}: {rest:?} is not below {base:?}"
    );
    // The URL's own path, below the agent's root, then its query and
    // fragment, unchanged.
    let after_scheme = url.split_once("://").map_or("", |(_, r)| r);
    let tail = &after_scheme[after_scheme
        .find(['/', '?', '#'])
        .unwrap_or(after_scheme.len())..];
    let (path, suffix) = tail.split_at(tail.find(['?', '#']).unwrap_or(tail.len()));
    assert!(
        rest.ends_with(suffix),
        "{url:?} -> {new:?}: query or fragment lost"
    );
    let root = address.root.trim_end_matches('/');
    let below = path.strip_prefix(root).unwrap_or_else(|| {
        panic!("{url:?} -> {new:?}: rewritten though not below the root {root:?}")
    });
    let new_path = &rest[..rest.len() - suffix.len()];
    assert_eq!(
        new_path.trim_start_matches('/'),
        below.trim_start_matches('/'),
        "{url:?} -> {new:?}"
    );
}
