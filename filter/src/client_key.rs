//! The one value a per-client limit keys on (`per: header:NAME`,
//! `per: client_ip`), so that a client cannot open fresh buckets by
//! spelling the same credential another way: every limit kind (rate limits,
//! token budgets, in-flight limits, global-limit descriptors) asks here.
//!
//! - A header is one value: a request carrying the header a limit keys on
//!   more than once is refused ([`repeated_key_header`]), so the value
//!   counted is the one the backend reads, whatever copy it would pick.
//! - Optional whitespace around the value goes, runs of inner whitespace are
//!   one space, and an auth scheme (`Bearer`, `Basic`, …: the first word
//!   of a value with more than one) is case-insensitive (RFC 9110 §11.1),
//!   so `bearer sk-K`, `BEARER  sk-K` and `Bearer sk-K` are one client.
//! - An IPv6 client is its network (`/64` by default): one host owns a
//!   whole /64 and could otherwise take a bucket per address. IPv4-mapped
//!   IPv6 addresses count as the IPv4 address.

use std::net::IpAddr;

use crate::config::{Entry, Per};
use crate::reply::LocalReply;

/// A header an entry's per-client limit keys on that the request carries
/// more than once. Such a request is refused before any limit: which copy
/// a backend reads differs between servers, so no one copy can be both the
/// key and the credential, and a join of them would be a fresh bucket per
/// junk copy.
pub fn repeated_key_header<'e>(entry: &'e Entry, pairs: &[(&str, &[u8])]) -> Option<&'e str> {
    let rate = entry.rate_limit.as_ref().map(|l| &l.per);
    let in_flight = entry.concurrency.as_ref().map(|c| &c.per);
    let tools = entry
        .mcp
        .iter()
        .flat_map(|m| m.limits.iter().map(|l| &l.per));
    [rate, in_flight]
        .into_iter()
        .flatten()
        .chain(tools)
        .find_map(|per| match per {
            Per::Header(name) if pairs.iter().filter(|(k, _)| k == name).nth(1).is_some() => {
                Some(name.as_str())
            }
            _ => None,
        })
}

/// The answer to a request that repeats a limit's key header.
pub fn repeated_reply(name: &str) -> LocalReply {
    LocalReply::error(
        400,
        "invalid_request_error",
        Some("repeated_client_header"),
        None,
        &format!("the {name} header is sent more than once: a per-client limit keys on one value"),
    )
}

/// How much of a client address names one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpPrefixes {
    pub ipv4: u8,
    pub ipv6: u8,
}

impl Default for IpPrefixes {
    fn default() -> Self {
        IpPrefixes { ipv4: 32, ipv6: 64 }
    }
}

/// The canonical form of a header value a limit keys on.
pub fn canonical_value(value: &[u8]) -> Vec<u8> {
    let is_space = |b: &u8| matches!(b, b' ' | b'\t');
    let mut words = value.split(is_space).filter(|w| !w.is_empty()).peekable();
    let mut out = Vec::with_capacity(value.len());
    let mut first = true;
    while let Some(word) = words.next() {
        if !first {
            out.push(b' ');
        }
        if first && words.peek().is_some() {
            out.extend(word.iter().map(u8::to_ascii_lowercase));
        } else {
            out.extend_from_slice(word);
        }
        first = false;
    }
    out
}

/// The client an address names: the address's network under the
/// configured prefix, as bytes (the value is only ever hashed, so it is
/// not formatted back into text). A value that is not an address is kept
/// as it is.
pub fn ip_client(addr: &str, prefixes: IpPrefixes) -> Vec<u8> {
    let Ok(ip) = addr.parse::<IpAddr>() else {
        return addr.as_bytes().to_vec();
    };
    let v4 = match ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(v6) => v6.to_ipv4_mapped(),
    };
    let mut key = Vec::with_capacity(19);
    match (v4, ip) {
        (Some(v4), _) => {
            key.push(b'4');
            key.push(prefixes.ipv4);
            key.extend_from_slice(&(u32::from(v4) & mask32(prefixes.ipv4)).to_be_bytes());
        }
        (None, IpAddr::V6(v6)) => {
            key.push(b'6');
            key.push(prefixes.ipv6);
            key.extend_from_slice(&(u128::from(v6) & mask128(prefixes.ipv6)).to_be_bytes());
        }
        (None, IpAddr::V4(_)) => {}
    }
    key
}

fn mask32(prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p if p >= 32 => u32::MAX,
        p => u32::MAX << (32 - u32::from(p)),
    }
}

fn mask128(prefix: u8) -> u128 {
    match prefix {
        0 => 0,
        p if p >= 128 => u128::MAX,
        p => u128::MAX << (128 - u32::from(p)),
    }
}

/// An address as Envoy's `source.address` gives it (`ip:port`, `[v6]:port`)
/// without its port.
pub fn strip_port(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(ip, _)| ip);
    }
    match addr.rsplit_once(':') {
        // One colon: `v4:port`. More: a bare IPv6 address.
        Some((ip, port))
            if !ip.contains(':')
                && !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit()) =>
        {
            ip
        }
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(v: &str) -> String {
        String::from_utf8(canonical_value(v.as_bytes())).unwrap()
    }

    #[test]
    fn spellings_of_one_credential_are_one_client() {
        for v in [
            "Bearer sk-K",
            "bearer sk-K",
            "BEARER sk-K",
            "Bearer  sk-K",
            " Bearer\tsk-K ",
            "BeArEr sk-K\t",
        ] {
            assert_eq!(c(v), "bearer sk-K", "{v:?}");
        }
        assert_eq!(c("sk-K"), "sk-K");
        assert_eq!(c("  sk-K  "), "sk-K");
    }

    #[test]
    fn credentials_themselves_keep_their_case() {
        assert_ne!(c("Bearer sk-K"), c("Bearer sk-k"));
        assert_ne!(c("sk-K"), c("sk-k"));
        assert_eq!(c("Basic QWxhZGRpbg=="), "basic QWxhZGRpbg==");
        assert_eq!(c(""), "");
        assert_eq!(c("   "), "");
    }

    fn key(addr: &str, p: IpPrefixes) -> Vec<u8> {
        ip_client(addr, p)
    }

    #[test]
    fn an_ipv6_host_is_its_64() {
        let p = IpPrefixes::default();
        let a = key("2001:db8:1:2:aaaa::1", p);
        assert_eq!(a, key("2001:db8:1:2:ffff:1:2:3", p));
        assert_eq!(a, key("2001:db8:1:2::", p));
        assert_ne!(a, key("2001:db8:1:3::1", p));
        // Configurable, both ways.
        let wide = IpPrefixes { ipv4: 24, ipv6: 48 };
        assert_eq!(
            key("2001:db8:1:3::1", wide),
            key("2001:db8:1:ffff::9", wide)
        );
        assert_ne!(key("2001:db8:1:3::1", wide), key("2001:db8:2::", wide));
        assert_eq!(key("203.0.113.9", wide), key("203.0.113.200", wide));
        assert_ne!(key("203.0.113.9", wide), key("203.0.114.9", wide));
        let exact = IpPrefixes {
            ipv4: 32,
            ipv6: 128,
        };
        assert_ne!(key("2001:db8::1", exact), key("2001:db8::2", exact));
        assert_ne!(key("203.0.113.9", p), key("203.0.113.8", p));
        // A prefix is part of the key: another setting, other buckets.
        assert_ne!(key("203.0.113.9", p), key("203.0.113.9", wide));
    }

    #[test]
    fn mapped_addresses_are_their_ipv4() {
        let p = IpPrefixes::default();
        assert_eq!(key("::ffff:203.0.113.9", p), key("203.0.113.9", p));
        assert_ne!(key("::203.0.113.9", p), key("203.0.113.9", p));
        assert_eq!(key("not an address", p), b"not an address");
        assert_eq!(key("203.0.113.9", p), [b'4', 32, 203, 0, 113, 9]);
    }

    #[test]
    fn a_repeated_key_header_is_found_for_every_limit_kind() {
        let plan = crate::config::Plan::from_json(
            br#"{"agents": [
                {"name": "a", "backend": "b", "rate_limit": {"requests_per_second": 1, "per": "header:x-api-key"}},
                {"name": "c", "backend": "b", "concurrency": {"max_in_flight": 1, "per": "header:x-user"}},
                {"name": "d", "backend": "b"}]}"#,
        )
        .unwrap();
        let twice: [(&str, &[u8]); 3] =
            [("x-api-key", b"k"), ("x-user", b"u"), ("x-api-key", b"j")];
        let once: [(&str, &[u8]); 2] = [("x-api-key", b"k"), ("x-user", b"u")];
        assert_eq!(
            repeated_key_header(&plan.entries[0], &twice),
            Some("x-api-key")
        );
        assert_eq!(repeated_key_header(&plan.entries[0], &once), None);
        let users: [(&str, &[u8]); 2] = [("x-user", b"u"), ("x-user", b"v")];
        assert_eq!(
            repeated_key_header(&plan.entries[1], &users),
            Some("x-user")
        );
        assert_eq!(repeated_key_header(&plan.entries[2], &twice), None);
        assert_eq!(repeated_reply("x-api-key").status, 400);
    }

    #[test]
    fn ports_are_stripped_from_every_form() {
        assert_eq!(strip_port("203.0.113.9:5123"), "203.0.113.9");
        assert_eq!(strip_port("[2001:db8::1]:443"), "2001:db8::1");
        assert_eq!(strip_port("2001:db8::1"), "2001:db8::1");
        assert_eq!(strip_port("203.0.113.9"), "203.0.113.9");
        assert_eq!(strip_port("[::1"), "::1");
    }
}
