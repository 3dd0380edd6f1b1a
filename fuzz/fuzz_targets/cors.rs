//! Origin matching (`cors::OriginPattern`, `cors::Origin`) and the CORS
//! decision (`Policy::preflight`, `Policy::answer`). The input is lines: a
//! configured origin, a request `Origin`, a preflight's requested method
//! and headers. A pattern matches what a browser would consider the same
//! origin whatever the case or a default port, a wildcard never matches its
//! bare suffix nor anything merely starting with it, no path, user info or
//! odd byte ever matches; a preflight is 204 echoing the origin exactly
//! when origin, method and headers are allowed, else 403 without any
//! `access-control-*` header; an answer carries CORS exactly for an
//! allowed origin.
#![no_main]

use agentroute::cors::{Allowed, Answer, HostPattern, Origin, OriginPattern, Policy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let (pattern, origin) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
    let (method, headers) = (lines.next().unwrap_or("GET"), lines.next());

    let request = Origin::parse(origin);
    if let Some(o) = &request {
        // What parses is a plain serialised origin.
        assert!(!o.host.is_empty());
        assert!(!o.host.contains(['/', '@', '?', '#', ' ', '*']), "{o:?}");
        assert_eq!(o.host, o.host.to_ascii_lowercase());
    }
    let Ok(p) = OriginPattern::parse(pattern) else {
        return;
    };
    let matched = request.as_ref().is_some_and(|o| p.matches(o));
    if matched {
        // Case and an explicit default port do not matter.
        let upper = Origin::parse(&origin.to_ascii_uppercase());
        assert!(upper.is_some_and(|o| p.matches(&o)), "{origin:?} upper-cased");
        if let Some(o) = &request {
            let port = match (o.scheme.as_str(), o.port) {
                (_, Some(port)) => format!(":{port}"),
                ("http", None) => ":80".to_string(),
                ("https", None) => ":443".to_string(),
                _ => String::new(),
            };
            let explicit = format!("{}://{}{port}", o.scheme, o.host);
            assert!(Origin::parse(&explicit).is_some_and(|o| p.matches(&o)), "{explicit:?}");
        }
    }
    match &p.host {
        HostPattern::Exact(host) => {
            // The configured origin itself matches.
            let own = format!(
                "{}://{host}{}",
                p.scheme,
                p.port.map(|n| format!(":{n}")).unwrap_or_default()
            );
            assert!(Origin::parse(&own).is_some_and(|o| p.matches(&o)), "{own:?}");
            if matched {
                assert_eq!(request.as_ref().map(|o| o.host.as_str()), Some(host.as_str()));
            }
        }
        HostPattern::Subdomains(suffix) => {
            let port = p.port.map(|n| format!(":{n}")).unwrap_or_default();
            let bare = format!("{}://{suffix}{port}", p.scheme);
            assert!(!Origin::parse(&bare).is_some_and(|o| p.matches(&o)), "{bare:?}");
            // Longer than the suffix, unless it ends in it again
            // (`a.example.evil.example` is below `example`).
            let longer_host = format!("a.{suffix}.evil.example");
            if !longer_host.ends_with(&format!(".{suffix}")) {
                let longer = format!("{}://{longer_host}{port}", p.scheme);
                assert!(!Origin::parse(&longer).is_some_and(|o| p.matches(&o)), "{longer:?}");
            }
            let one = format!("{}://a.{suffix}{port}", p.scheme);
            assert!(Origin::parse(&one).is_some_and(|o| p.matches(&o)), "{one:?}");
            if let (true, Some(o)) = (matched, &request) {
                let front = o.host.strip_suffix(suffix.as_str()).and_then(|f| f.strip_suffix('.'));
                assert!(
                    front.is_some_and(|f| !f.is_empty() && f.split('.').all(|l| !l.is_empty())),
                    "{origin:?} matched {pattern:?}"
                );
            }
        }
    }

    let policy = Policy {
        any_origin: false,
        origins: vec![p],
        methods: Allowed::List(vec!["GET".into(), "POST".into()]),
        headers: Allowed::List(vec!["authorization".into(), "content-type".into()]),
        expose: vec!["retry-after".into()],
        credentials: true,
        max_age_secs: 600,
    };
    assert_eq!(policy.allows(origin), matched);
    let reply = policy.preflight(origin, method, headers);
    let headers_ok = headers.unwrap_or_default().split(',').all(|h| {
        let h = h.trim().to_ascii_lowercase();
        h.is_empty() || h == "authorization" || h == "content-type"
    });
    let allowed = matched && (method == "GET" || method == "POST") && headers_ok;
    let acao = reply
        .headers
        .iter()
        .find(|(k, _)| *k == "access-control-allow-origin")
        .map(|(_, v)| v.as_str());
    if allowed {
        assert_eq!((reply.status, acao), (204, Some(origin)));
    } else {
        assert_eq!(reply.status, 403);
        assert!(
            reply.headers.iter().all(|(k, _)| !k.starts_with("access-control-")),
            "{:?}",
            reply.headers
        );
    }
    match policy.answer(origin) {
        Answer::Allowed(h) => {
            assert!(matched);
            assert!(h.contains(&("access-control-allow-origin", origin.to_string())));
            assert!(h.contains(&("vary", "origin".to_string())));
        }
        Answer::Disallowed => assert!(!matched),
    }
});
