//! CORS: which browser origins may call an entry, the filter's answer to a
//! preflight, and the headers every other answer to an allowed origin gets.
//!
//! Origins are matched the way a browser serialises them (RFC 6454):
//! `scheme://host[:port]`, scheme and host compared case-insensitively, a
//! default port (80 for http, 443 for https) the same as none. A pattern
//! `https://*.example.com` matches one or more DNS labels in front of
//! `example.com` and nothing else: not `https://example.com`, not
//! `https://dash.example.com.evil.com`, not another scheme or port.

use crate::reply::LocalReply;

/// The host part of an origin pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// This host (lowercase).
    Exact(String),
    /// One or more labels in front of this suffix (lowercase, no leading dot).
    Subdomains(String),
}

/// An allowed origin as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPattern {
    /// Lowercase.
    pub scheme: String,
    pub host: HostPattern,
    /// `None`: the scheme's default port (or none for other schemes).
    pub port: Option<u16>,
}

impl OriginPattern {
    /// Reads a configured origin: exact, or with `*.` in front of the host.
    pub fn parse(text: &str) -> Result<OriginPattern, String> {
        let origin = Origin::parse_with(text, true)?;
        let host = match origin.host.strip_prefix("*.") {
            Some(suffix) => HostPattern::Subdomains(suffix.to_string()),
            None => HostPattern::Exact(origin.host),
        };
        Ok(OriginPattern {
            scheme: origin.scheme,
            host,
            port: origin.port,
        })
    }

    /// Whether a request's origin matches.
    pub fn matches(&self, origin: &Origin) -> bool {
        if origin.scheme != self.scheme || origin.port != self.port {
            return false;
        }
        match &self.host {
            HostPattern::Exact(host) => origin.host == *host,
            HostPattern::Subdomains(suffix) => origin
                .host
                .strip_suffix(suffix.as_str())
                .and_then(|front| front.strip_suffix('.'))
                .is_some_and(|labels| {
                    !labels.is_empty()
                        && !labels.starts_with('[')
                        && labels.split('.').all(is_label)
                }),
        }
    }
}

fn is_label(label: &str) -> bool {
    !label.is_empty()
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A serialised origin, normalised for comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub scheme: String,
    pub host: String,
    pub port: Option<u16>,
}

impl Origin {
    /// Reads a request's `Origin`; `None` for anything that is not one
    /// (`null`, a path, user info, a bad port).
    pub fn parse(text: &str) -> Option<Origin> {
        Origin::parse_with(text, false).ok()
    }

    fn parse_with(text: &str, pattern: bool) -> Result<Origin, String> {
        let bad = |why: &str| format!("{text:?} is not an origin ({why})");
        let (scheme, rest) = text.split_once("://").ok_or_else(|| {
            bad("expected scheme://host[:port], e.g. \"https://app.example.com\"")
        })?;
        let scheme_ok = scheme
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic())
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
        if !scheme_ok {
            return Err(bad("the scheme"));
        }
        let scheme = scheme.to_ascii_lowercase();
        let literal = rest.starts_with('[');
        let (host, port) = if literal {
            let end = rest
                .find(']')
                .ok_or_else(|| bad("an unclosed IPv6 literal"))?;
            let (literal, after) = rest.split_at(end + 1);
            let inner = literal.get(1..literal.len() - 1).unwrap_or_default();
            if inner.is_empty()
                || !inner
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
            {
                return Err(bad("the IPv6 literal"));
            }
            match after {
                "" => (literal, None),
                p => (
                    literal,
                    Some(
                        p.strip_prefix(':')
                            .ok_or_else(|| bad("what follows the host"))?,
                    ),
                ),
            }
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        let port = match port {
            None => None,
            Some(p) => {
                let n: u16 = p
                    .parse()
                    .ok()
                    .filter(|n| *n > 0 && p.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| bad("the port"))?;
                (default_port(&scheme) != Some(n)).then_some(n)
            }
        };
        let name = if pattern {
            host.strip_prefix("*.").unwrap_or(host)
        } else {
            host
        };
        // An IPv6 literal was checked above; anything else is DNS labels.
        let host_ok = literal || (!name.is_empty() && name.split('.').all(is_label));
        if !host_ok {
            return Err(bad(if host.contains(['/', '?', '#']) {
                "an origin has no path"
            } else if host.contains('@') {
                "an origin has no user info"
            } else {
                "the host"
            }));
        }
        Ok(Origin {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// A list from the configuration, or `"*"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowed {
    Any,
    /// Methods as written (case-sensitive, as browsers compare them);
    /// header names lowercase.
    List(Vec<String>),
}

/// One compiled `cors` policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub any_origin: bool,
    pub origins: Vec<OriginPattern>,
    pub methods: Allowed,
    pub headers: Allowed,
    pub expose: Vec<String>,
    pub credentials: bool,
    pub max_age_secs: u64,
}

/// The CORS headers an answer gets, or none (vary aside) for an origin the
/// policy does not allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Allowed(Vec<(&'static str, String)>),
    Disallowed,
}

impl Answer {
    /// The headers to add to an answer: for an allowed origin its CORS
    /// headers, and `vary: origin` either way (the answer depends on it).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            Answer::Allowed(headers) => headers.clone(),
            Answer::Disallowed => vec![("vary", "origin".to_string())],
        }
    }
}

/// A preflight: `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
pub fn is_preflight(method: &str, origin: Option<&str>, request_method: Option<&str>) -> bool {
    method == "OPTIONS" && origin.is_some() && request_method.is_some()
}

impl Policy {
    pub fn allows(&self, origin: &str) -> bool {
        if self.any_origin {
            return true;
        }
        Origin::parse(origin).is_some_and(|o| self.origins.iter().any(|p| p.matches(&o)))
    }

    /// What an answer (not a preflight's) to a request from `origin` gets.
    pub fn answer(&self, origin: &str) -> Answer {
        if !self.allows(origin) {
            return Answer::Disallowed;
        }
        let mut headers = vec![
            ("access-control-allow-origin", origin.to_string()),
            ("vary", "origin".to_string()),
        ];
        if !self.expose.is_empty() {
            headers.push(("access-control-expose-headers", self.expose.join(", ")));
        }
        if self.credentials {
            headers.push(("access-control-allow-credentials", "true".to_string()));
        }
        Answer::Allowed(headers)
    }

    /// The filter's answer to a preflight: 204 with the policy for an
    /// allowed origin asking for allowed method and headers; otherwise 403
    /// with no `access-control-*` header, saying what was refused.
    pub fn preflight(
        &self,
        origin: &str,
        method: &str,
        request_headers: Option<&str>,
    ) -> LocalReply {
        let refuse = |why: String| {
            let mut reply = LocalReply::error(
                403,
                "invalid_request_error",
                Some("cors_preflight_refused"),
                None,
                &format!("CORS preflight refused: {why}"),
            );
            reply.headers.push(("vary", "origin".to_string()));
            reply
        };
        if !self.allows(origin) {
            return refuse(format!("origin {origin:?} is not allowed"));
        }
        let method_ok = match &self.methods {
            Allowed::Any => !method.is_empty(),
            Allowed::List(list) => list.iter().any(|m| m == method),
        };
        if !method_ok {
            return refuse(format!("method {method:?} is not allowed"));
        }
        let asked: Vec<String> = request_headers
            .unwrap_or_default()
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        if let Allowed::List(list) = &self.headers {
            if let Some(h) = asked.iter().find(|h| !list.contains(h)) {
                return refuse(format!("request header {h:?} is not allowed"));
            }
        }
        let mut vary = vec!["origin"];
        let methods = match &self.methods {
            Allowed::Any => {
                vary.push("access-control-request-method");
                method.to_string()
            }
            Allowed::List(list) => list.join(", "),
        };
        let mut reply = LocalReply {
            status: 204,
            headers: vec![
                ("access-control-allow-origin", origin.to_string()),
                ("access-control-allow-methods", methods),
            ],
            body: String::new(),
        };
        let headers = match &self.headers {
            // Echoed, never a literal `*` (which means no wildcard with
            // credentials).
            Allowed::Any => {
                vary.push("access-control-request-headers");
                asked.join(", ")
            }
            Allowed::List(list) => list.join(", "),
        };
        if !headers.is_empty() {
            reply
                .headers
                .push(("access-control-allow-headers", headers));
        }
        reply
            .headers
            .push(("access-control-max-age", self.max_age_secs.to_string()));
        if self.credentials {
            reply
                .headers
                .push(("access-control-allow-credentials", "true".to_string()));
        }
        reply.headers.push(("vary", vary.join(", ")));
        reply
    }
}

/// Whether a response header is one the CORS policy owns (the backend's
/// copies are replaced on an entry with CORS).
pub fn is_cors_header(name: &str) -> bool {
    name.starts_with("access-control-")
}

/// Whether a `vary` value already covers `origin`.
pub fn varies_on_origin(vary: &[u8]) -> bool {
    vary.split(|&b| b == b',').any(|v| {
        let v = v.trim_ascii();
        v == b"*" || v.eq_ignore_ascii_case(b"origin")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(s: &str) -> OriginPattern {
        OriginPattern::parse(s).unwrap()
    }

    fn matches(p: &str, origin: &str) -> bool {
        Origin::parse(origin).is_some_and(|o| pattern(p).matches(&o))
    }

    #[test]
    fn exact_origins_compare_as_browsers_serialise_them() {
        assert!(matches(
            "https://app.example.com",
            "https://app.example.com"
        ));
        assert!(matches(
            "https://App.Example.com",
            "HTTPS://app.EXAMPLE.com"
        ));
        assert!(matches(
            "https://app.example.com:443",
            "https://app.example.com"
        ));
        assert!(matches(
            "https://app.example.com",
            "https://app.example.com:443"
        ));
        assert!(matches("http://localhost:8080", "http://localhost:8080"));
        assert!(matches("http://[::1]:3000", "http://[::1]:3000"));
        for other in [
            "http://app.example.com",
            "https://app.example.com:8443",
            "https://app.example.co",
            "https://xapp.example.com",
            "https://app.example.com.evil.com",
            "https://app.example.com/",
            "https://user@app.example.com",
            "null",
            "",
        ] {
            assert!(!matches("https://app.example.com", other), "{other}");
        }
    }

    #[test]
    fn wildcards_match_one_or_more_labels_and_nothing_else() {
        let p = "https://*.example.com";
        for ok in [
            "https://a.example.com",
            "https://dash.example.com",
            "https://a.b.example.com",
            "https://A-1.Example.COM",
            "https://x_y.example.com:443",
        ] {
            assert!(matches(p, ok), "{ok}");
        }
        for no in [
            "https://example.com",
            "https://.example.com",
            "https://a..example.com",
            "https://dash.example.com.evil.com",
            "https://evilexample.com",
            "https://a.example.com:8443",
            "http://a.example.com",
            "https://a.example.com.",
            "https://[::1].example.com",
            "https://a.example.com/x",
            "https://a b.example.com",
        ] {
            assert!(!matches(p, no), "{no}");
        }
        assert!(matches(
            "http://*.localhost:3000",
            "http://app.localhost:3000"
        ));
        assert!(!matches(
            "http://*.localhost:3000",
            "http://app.localhost:3001"
        ));
    }

    #[test]
    fn configured_origins_are_checked() {
        for bad in [
            "example.com",
            "https://",
            "https://a.example.com/",
            "https://a.example.com/path",
            "https://u@a.example.com",
            "https://a.example.com:0",
            "https://a.example.com:99999",
            "https://a.example.com:x",
            "https://*.*.example.com",
            "https://a.*.example.com",
            "https://*",
            "1http://a",
            "https://[zz]",
            "https://*.[vil.example",
            "https://[::1",
        ] {
            assert!(OriginPattern::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            OriginPattern::parse("https://a.example.com/").unwrap_err(),
            "\"https://a.example.com/\" is not an origin (an origin has no path)"
        );
        assert_eq!(
            pattern("HTTPS://*.Example.com:443"),
            OriginPattern {
                scheme: "https".into(),
                host: HostPattern::Subdomains("example.com".into()),
                port: None
            }
        );
    }

    fn policy() -> Policy {
        Policy {
            any_origin: false,
            origins: vec![
                pattern("https://dash.example.com"),
                pattern("https://*.apps.example.com"),
            ],
            methods: Allowed::List(vec!["GET".into(), "POST".into()]),
            headers: Allowed::List(vec!["authorization".into(), "content-type".into()]),
            expose: vec!["retry-after".into(), "x-ratelimit-limit".into()],
            credentials: true,
            max_age_secs: 600,
        }
    }

    fn header<'a>(reply: &'a LocalReply, name: &str) -> Option<&'a str> {
        reply
            .headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn an_allowed_preflight_gets_204_with_the_policy() {
        let r = policy().preflight(
            "https://dash.example.com",
            "POST",
            Some("Content-Type, authorization"),
        );
        assert_eq!(r.status, 204);
        assert_eq!(
            header(&r, "access-control-allow-origin"),
            Some("https://dash.example.com")
        );
        assert_eq!(
            header(&r, "access-control-allow-methods"),
            Some("GET, POST")
        );
        assert_eq!(
            header(&r, "access-control-allow-headers"),
            Some("authorization, content-type")
        );
        assert_eq!(header(&r, "access-control-max-age"), Some("600"));
        assert_eq!(header(&r, "access-control-allow-credentials"), Some("true"));
        assert_eq!(header(&r, "vary"), Some("origin"));
        assert!(r.body.is_empty());
    }

    #[test]
    fn a_refused_preflight_gets_403_without_cors_headers() {
        for (origin, method, headers, why) in [
            ("https://evil.example.com", "POST", None, "origin"),
            ("https://dash.example.com", "DELETE", None, "method"),
            ("https://dash.example.com", "post", None, "method"),
            (
                "https://dash.example.com",
                "POST",
                Some("x-secret"),
                "request header",
            ),
        ] {
            let r = policy().preflight(origin, method, headers);
            assert_eq!(r.status, 403, "{origin} {method}");
            assert!(
                r.headers.iter().all(|(k, _)| !is_cors_header(k)),
                "{:?}",
                r.headers
            );
            assert_eq!(header(&r, "vary"), Some("origin"));
            assert!(r.body.contains(why), "{}", r.body);
            assert!(r.body.contains("cors_preflight_refused"));
        }
    }

    #[test]
    fn wildcard_methods_and_headers_are_echoed() {
        let p = Policy {
            methods: Allowed::Any,
            headers: Allowed::Any,
            ..policy()
        };
        let r = p.preflight("https://x.apps.example.com", "PURGE", Some("X-One, x-two"));
        assert_eq!(r.status, 204);
        assert_eq!(header(&r, "access-control-allow-methods"), Some("PURGE"));
        assert_eq!(
            header(&r, "access-control-allow-headers"),
            Some("x-one, x-two")
        );
        assert_eq!(
            header(&r, "vary"),
            Some("origin, access-control-request-method, access-control-request-headers")
        );
        let r = p.preflight("https://x.apps.example.com", "GET", None);
        assert_eq!(header(&r, "access-control-allow-headers"), None);
    }

    #[test]
    fn answers_carry_cors_for_allowed_origins_only() {
        let p = policy();
        let Answer::Allowed(h) = p.answer("https://a.apps.example.com") else {
            panic!("allowed");
        };
        assert_eq!(
            h,
            vec![
                (
                    "access-control-allow-origin",
                    "https://a.apps.example.com".to_string()
                ),
                ("vary", "origin".to_string()),
                (
                    "access-control-expose-headers",
                    "retry-after, x-ratelimit-limit".to_string()
                ),
                ("access-control-allow-credentials", "true".to_string()),
            ]
        );
        assert_eq!(p.answer("https://apps.example.com"), Answer::Disallowed);
        assert_eq!(
            Answer::Disallowed.headers(),
            vec![("vary", "origin".to_string())]
        );
        let any = Policy {
            any_origin: true,
            credentials: false,
            expose: vec![],
            ..policy()
        };
        assert_eq!(
            any.answer("null"),
            Answer::Allowed(vec![
                ("access-control-allow-origin", "null".to_string()),
                ("vary", "origin".to_string())
            ])
        );
    }

    #[test]
    fn vary_values_that_cover_origin() {
        assert!(varies_on_origin(b"Accept-Encoding, Origin"));
        assert!(varies_on_origin(b"*"));
        assert!(!varies_on_origin(b"accept-encoding, origins"));
        assert!(is_preflight("OPTIONS", Some("https://a"), Some("GET")));
        assert!(!is_preflight("OPTIONS", Some("https://a"), None));
        assert!(!is_preflight("GET", Some("https://a"), Some("GET")));
    }
}
