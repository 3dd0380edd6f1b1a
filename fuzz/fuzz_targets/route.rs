//! Path routing, rewrite and dot-segment refusal (`Router::route`), on a
//! compiled configuration and on routers with edge-case prefixes (a root
//! prefix among them). Invariants: an accepted path is at or below its
//! matched prefix by whole segments; a rewritten path starts with the
//! prefix's target, never holds a dot-segment nor starts with `//`, and
//! keeps the query; a refusal is exactly a remainder holding a dot-segment;
//! and the match is the longest prefix a plain scan of the list finds.
#![no_main]

use agentroute::config::{Entry, Plan};
use agentroute::router::{has_dot_segment, Match, PathAction, Router, RouterBuilder};
use agentroute_fuzz::{two_lines, CONFIG};
use libfuzzer_sys::fuzz_target;

/// Prefixes of the edge-case routers: nested, rewritten to a path, kept,
/// percent-encoded and non-ASCII, as `route_path` lets them through.
const PREFIXES: [(&str, Option<&str>); 10] = [
    ("/a", Some("/")),
    ("/a/b", Some("/")),
    ("/a/b/c", None),
    ("/api", Some("/v2/api")),
    ("/keep", None),
    ("/prod/agent/echo", Some("/")),
    ("/x%2fy", Some("/")),
    ("/caf\u{e9}", Some("/")),
    ("/a-b", Some("/z")),
    ("/%2e%2ex", Some("/dots")),
];

/// The edge-case routers have explicit prefixes only: no entries to read
/// layout paths from.
const NO_ENTRIES: &[Entry] = &[];

/// The entry index given to the root prefix `/` in the second router.
const ROOT_ENTRY: usize = 100;
const HOSTS: [&str; 3] = ["chat.example.com", "*.example.com", "*.b.example.com"];
const HOST_ENTRY: usize = 200;

struct Routers {
    plan: Plan,
    edges: Router,
    rooted: Router,
}

thread_local! {
    // libFuzzer runs the target on one thread; a plan is not `Sync`.
    static ROUTERS: &'static Routers = Box::leak(Box::new(routers()));
}

fn routers() -> Routers {
    {
        let build = |root: bool| {
            let mut b = RouterBuilder::new(NO_ENTRIES, PREFIXES.len() + 1);
            for (i, (prefix, rewrite)) in PREFIXES.iter().enumerate() {
                b.prefix(prefix, *rewrite, i);
            }
            if root {
                b.prefix("/", Some("/root"), ROOT_ENTRY);
            }
            for (i, host) in HOSTS.iter().enumerate() {
                b.host(host, HOST_ENTRY + i);
            }
            b.build().expect("valid prefixes")
        };
        Routers {
            plan: Plan::from_json(CONFIG.as_bytes()).expect("the fuzz configuration compiles"),
            edges: build(false),
            rooted: build(true),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((authority, path)) = two_lines(data) else {
        return;
    };
    let r = ROUTERS.with(|r| *r);
    for authority in [authority, "gw.test"] {
        if let Some(m) = r.plan.route(authority, path) {
            check(path, &m);
        }
        for (router, root) in [(&r.edges, false), (&r.rooted, true)] {
            let found = router.route(authority, path, NO_ENTRIES);
            if let Some(m) = &found {
                check(path, m);
            }
            let expected = expected_entry(authority, path, root);
            assert_eq!(found.map(|m| m.entry), expected, "{authority:?} {path:?}");
        }
    }
});

fn check(path: &str, m: &Match<'_>) {
    let (path_only, query) = path.split_at(path.find('?').unwrap_or(path.len()));
    assert!(
        path_only.starts_with(m.prefix),
        "{path:?}: prefix {:?}",
        m.prefix
    );
    assert_eq!(
        &path_only[m.prefix.len()..],
        m.rest,
        "{path:?}: the remainder"
    );
    if !m.prefix.is_empty() {
        assert!(
            m.rest.is_empty() || m.rest.starts_with('/'),
            "{path:?}: {:?} is not below {:?} by whole segments",
            m.rest,
            m.prefix
        );
    }
    match &m.path {
        PathAction::RefuseDotSegments => {
            assert!(
                has_dot_segment(m.rest),
                "{path:?}: refused without a dot-segment"
            )
        }
        PathAction::Keep => {
            assert!(
                !has_dot_segment(m.rest),
                "{path:?}: kept with a dot-segment"
            );
            if !m.prefix.is_empty() {
                assert_eq!(m.root, m.prefix, "a kept path lands at its own prefix");
            }
        }
        PathAction::Rewrite(new) => {
            assert!(
                !has_dot_segment(m.rest),
                "{path:?}: rewritten with a dot-segment"
            );
            let new_path = new
                .strip_suffix(query)
                .unwrap_or_else(|| panic!("{path:?} -> {new:?}: query {query:?} lost"));
            assert!(!new_path.contains('?'), "{path:?} -> {new:?}");
            assert!(
                !has_dot_segment(new_path),
                "{path:?} -> {new:?}: dot-segment"
            );
            assert!(
                !new_path.starts_with("//"),
                "{path:?} -> {new:?}: starts with //"
            );
            assert!(
                new_path.starts_with('/'),
                "{path:?} -> {new:?}: not absolute"
            );
            // Below the target by whole segments: REST, or `/` if empty.
            let below = if m.root == "/" {
                new_path
            } else {
                new_path
                    .strip_prefix(m.root)
                    .unwrap_or_else(|| panic!("{path:?} -> {new:?}: not below {:?}", m.root))
            };
            assert!(
                below.is_empty() || below.starts_with('/'),
                "{path:?} -> {new:?}"
            );
            let tail = m.rest.trim_start_matches('/');
            assert_eq!(below.trim_start_matches('/'), tail, "{path:?} -> {new:?}");
        }
    }
}

/// A plain scan: hosts first (exact, then the longest wildcard suffix), then
/// the longest prefix the path is at or below by whole segments.
fn expected_entry(authority: &str, path: &str, root: bool) -> Option<usize> {
    if let Some(entry) = expected_host(authority) {
        return Some(entry);
    }
    let path_only = path.split('?').next().unwrap_or_default();
    if !path_only.starts_with('/') {
        return None;
    }
    let mut best = root.then_some((0, ROOT_ENTRY));
    for (i, (prefix, _)) in PREFIXES.iter().enumerate() {
        let at_or_below = path_only
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
        if at_or_below && best.is_none_or(|(len, _)| prefix.len() > len) {
            best = Some((prefix.len(), i));
        }
    }
    best.map(|(_, entry)| entry)
}

fn expected_host(authority: &str) -> Option<usize> {
    let host = if authority.starts_with('[') {
        match authority.find(']') {
            Some(end) => &authority[..=end],
            None => authority,
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => authority,
        }
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let mut best: Option<(usize, usize)> = None;
    for (i, pattern) in HOSTS.iter().enumerate() {
        match pattern.strip_prefix("*.") {
            None if host == *pattern => return Some(HOST_ENTRY + i),
            Some(suffix) => {
                // One or more leading labels (the filter lets the first
                // be empty: `.example.com`, which no client sends).
                let matches = host.ends_with(&format!(".{suffix}"));
                if matches && best.is_none_or(|(len, _)| suffix.len() > len) {
                    best = Some((suffix.len(), HOST_ENTRY + i));
                }
            }
            None => {}
        }
    }
    best.map(|(_, entry)| entry)
}
