//! Host matching (`Router::route` on `:authority`): the entry is the one a
//! plain scan of the host list finds (exact first, then the most specific
//! wildcard), whatever the case, a port, or a trailing dot; the path is
//! kept, or refused for a dot-segment.
#![no_main]

use agentroute::config::Plan;
use agentroute::router::PathAction;
use agentroute_fuzz::CONFIG;
use libfuzzer_sys::fuzz_target;

/// The hosts of [`CONFIG`] and their entries.
const HOSTS: [(&str, usize); 4] = [
    ("coordinator.example.com", 0),
    ("*.research.example.com", 1),
    ("*.example.com", 1),
    ("llm.internal", 2),
];

thread_local! {
    // libFuzzer runs the target on one thread; a plan is not `Sync`.
    static PLAN: &'static Plan = Box::leak(Box::new(
        Plan::from_json(CONFIG.as_bytes()).expect("the fuzz configuration compiles"),
    ));
}

fuzz_target!(|data: &[u8]| {
    let Ok(authority) = std::str::from_utf8(data) else {
        return;
    };
    let plan = PLAN.with(|p| *p);
    let entry = |authority: &str| {
        let m = plan.route(authority, "/prod/x")?;
        // No layout or prefix matches `/prod/x`: any match is a host's.
        assert_eq!(m.path, PathAction::Keep, "{authority:?}");
        assert_eq!((m.prefix, m.rest, m.root), ("", "/prod/x", "/"));
        Some(m.entry)
    };
    let found = entry(authority);
    let host = host_of(authority);
    assert_eq!(found, expected(&host), "{authority:?} (host {host:?})");
    if !host.is_empty() && !host.contains([':', '[', ']']) {
        for variant in [
            host.to_ascii_uppercase(),
            format!("{host}:8080"),
            format!("{host}."),
            format!("{host}.:443"),
        ] {
            assert_eq!(entry(&variant), found, "{authority:?} as {variant:?}");
        }
    }
    if let Some(m) = plan.route(authority, "/x/../admin") {
        assert_eq!(m.path, PathAction::RefuseDotSegments);
    }
});

/// The host of an authority: an IPv6 literal up to its `]`, else without a
/// numeric port; case and a trailing dot do not count.
fn host_of(authority: &str) -> String {
    let host = match authority.find(']') {
        Some(end) if authority.starts_with('[') => &authority[..=end],
        _ if authority.starts_with('[') => authority,
        _ => match authority.rsplit_once(':') {
            Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
            _ => authority,
        },
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

fn expected(host: &str) -> Option<usize> {
    if let Some(&(_, entry)) = HOSTS.iter().find(|(pattern, _)| *pattern == host) {
        return Some(entry);
    }
    HOSTS
        .iter()
        .filter_map(|(pattern, entry)| Some((pattern.strip_prefix("*.")?, *entry)))
        .filter(|(suffix, _)| host.ends_with(&format!(".{suffix}")))
        .max_by_key(|(suffix, _)| suffix.len())
        .map(|(_, entry)| entry)
}
