//! Agent-card rewriting (`a2a::card::rewrite_card`, `rewrite_url`): every
//! rewritten URL starts with `scheme://authority` and the external prefix
//! and keeps the URL's path below the agent's root, query and fragment;
//! interfaces the gateway cannot serve are dropped (the 0.3 main interface
//! replaced by the first additional one left, or taken out); nothing else
//! changes; an unchanged card's reason is the right one (the host then
//! passes its bytes on as they came).
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

/// Whether an interface's binding (absent, or not a string: JSON-RPC) is
/// one the gateway serves.
fn http(binding: Option<&Value>) -> bool {
    let b = binding.and_then(Value::as_str).unwrap_or("JSONRPC");
    b.eq_ignore_ascii_case("JSONRPC") || b.eq_ignore_ascii_case("HTTP+JSON")
}

/// The URL a client gets for an interface URL and whether it was
/// rewritten; `None` when the gateway cannot serve it (the interface goes).
fn served(url: Option<&Value>, address: &CardAddress) -> Option<(String, bool)> {
    let url = url?.as_str()?;
    if let Some(new) = rewrite_url(url, address) {
        return Some((new, true));
    }
    on_the_gateway(url, address).then(|| (url.to_string(), false))
}

/// Whether an HTTP URL is on the address the client used (case aside,
/// default ports spelled or not).
fn on_the_gateway(url: &str, address: &CardAddress) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else {
        return false;
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return false;
    }
    let canonical = |scheme: &str, authority: &str| {
        let authority = authority.to_ascii_lowercase();
        let default = if scheme == "https" { ":443" } else { ":80" };
        authority
            .strip_suffix(default)
            .map_or(authority.clone(), str::to_string)
    };
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    canonical(&scheme, authority) == canonical(&address.scheme, &address.authority)
}

/// The card a client must get, with the URLs written and the interfaces
/// dropped: A2A 1.0 `supportedInterfaces[]` and 0.3 `additionalInterfaces[]`
/// keep only interfaces the gateway serves; the 0.3 main interface (`url`,
/// `preferredTransport`) is kept if served, else replaced by the first
/// additional interface left, else taken out.
fn expected_card(
    card: &serde_json::Map<String, Value>,
    address: &CardAddress,
) -> (serde_json::Map<String, Value>, usize, usize) {
    let mut out = card.clone();
    let (mut urls, mut dropped) = (0, 0);
    let mut first_additional: Option<(String, Option<String>)> = None;
    for (list, binding) in [
        ("supportedInterfaces", "protocolBinding"),
        ("additionalInterfaces", "transport"),
    ] {
        let Some(Value::Array(items)) = out.get_mut(list) else {
            continue;
        };
        let mut kept = Vec::new();
        for item in items.drain(..) {
            let Value::Object(mut item) = item else {
                dropped += 1;
                continue;
            };
            let Some((url, rewritten)) = http(item.get(binding))
                .then(|| served(item.get("url"), address))
                .flatten()
            else {
                dropped += 1;
                continue;
            };
            urls += usize::from(rewritten);
            if list == "additionalInterfaces" && first_additional.is_none() {
                let transport = item
                    .get(binding)
                    .and_then(Value::as_str)
                    .map(str::to_string);
                first_additional = Some((url.clone(), transport));
            }
            item.insert("url".to_string(), Value::String(url));
            kept.push(Value::Object(item));
        }
        *items = kept;
    }
    if out.contains_key("url") {
        let main = http(out.get("preferredTransport"))
            .then(|| served(out.get("url"), address))
            .flatten();
        match (main, first_additional) {
            (Some((url, rewritten)), _) => {
                urls += usize::from(rewritten);
                out.insert("url".to_string(), Value::String(url));
            }
            (None, Some((url, transport))) => {
                dropped += 1;
                urls += 1;
                out.insert("url".to_string(), Value::String(url));
                match transport {
                    Some(t) => {
                        out.insert("preferredTransport".to_string(), Value::String(t));
                    }
                    None if out.contains_key("preferredTransport") => {
                        out.insert("preferredTransport".to_string(), "JSONRPC".into());
                    }
                    None => {}
                }
            }
            (None, None) => {
                dropped += 1;
                out.remove("url");
                out.remove("preferredTransport");
            }
        }
    }
    (out, urls, dropped)
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
    let (expected, want_urls, want_dropped) = expected_card(card, address);
    let (body, urls, dropped) = match outcome {
        CardOutcome::Unchanged(reason) => {
            assert_eq!(*reason, Unchanged::NothingToRewrite, "{card:?}");
            assert_eq!((want_urls, want_dropped), (0, 0), "left unchanged");
            assert_eq!(&expected, card);
            return;
        }
        CardOutcome::Rewritten {
            body,
            urls,
            dropped,
        } => (body, *urls, *dropped),
    };
    assert_eq!((urls, dropped), (want_urls, want_dropped), "counted");
    let new: Value = serde_json::from_slice(body).expect("a rewritten card is JSON");
    assert_eq!(&new, &Value::Object(expected), "only interfaces change");
    // The keys the card kept keep their order.
    let new_keys: Vec<&String> = new
        .as_object()
        .map(|o| o.keys().filter(|k| card.contains_key(*k)).collect())
        .unwrap_or_default();
    let old_keys: Vec<&String> = card
        .keys()
        .filter(|k| new.get(k.as_str()).is_some())
        .collect();
    assert_eq!(new_keys, old_keys, "key order kept");
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
