//! `client_key`: the value a per-client limit keys on. Canonical header
//! values are a fixed point (canonical twice is canonical once), hold no
//! leading, trailing or doubled blank, and do not depend on the case of an
//! auth scheme or on the blanks around and inside the value; the credential
//! itself keeps its bytes. Any address string gives a key without a panic,
//! and two addresses in one network under the prefixes give one key.
#![no_main]

use agentroute::client_key::{canonical_value, ip_client, strip_port, IpPrefixes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let canonical = canonical_value(data);
    assert_eq!(canonical_value(&canonical), canonical, "a fixed point");
    assert!(!canonical.starts_with(b" ") && !canonical.ends_with(b" "));
    assert!(!canonical.windows(2).any(|w| w == b"  "));
    assert!(!canonical.contains(&b'\t'));
    // Respelled: blanks around and between, the scheme's case flipped.
    let mut respelled = b" \t".to_vec();
    let mut first_word = true;
    let words: Vec<&[u8]> = data
        .split(|b| matches!(b, b' ' | b'\t'))
        .filter(|w| !w.is_empty())
        .collect();
    for (i, word) in words.iter().enumerate() {
        if i > 0 {
            respelled.extend_from_slice(b"  \t");
        }
        if first_word && words.len() > 1 {
            respelled.extend(word.iter().map(u8::to_ascii_uppercase));
        } else {
            respelled.extend_from_slice(word);
        }
        first_word = false;
    }
    respelled.push(b'\t');
    assert_eq!(canonical_value(&respelled), canonical);
    // The last word (the credential) keeps its bytes.
    if let (Some(last), true) = (words.last(), words.len() > 1) {
        assert!(canonical.ends_with(last));
    }

    // Addresses.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let host = strip_port(text);
    let prefixes = IpPrefixes {
        ipv4: data.first().map_or(32, |b| b % 32 + 1),
        ipv6: data.last().map_or(64, |b| b % 128 + 1),
    };
    let key = ip_client(host, prefixes);
    if let Ok(std::net::IpAddr::V6(v6)) = host.parse::<std::net::IpAddr>() {
        if v6.to_ipv4_mapped().is_none() && prefixes.ipv6 < 128 {
            // The last address of the same network.
            let host_bits = u128::MAX >> prefixes.ipv6;
            let sibling = std::net::Ipv6Addr::from(u128::from(v6) | host_bits);
            // (Unless that is an IPv4-mapped address, which is its IPv4.)
            if sibling.to_ipv4_mapped().is_none() {
                assert_eq!(ip_client(&sibling.to_string(), prefixes), key);
            }
        }
    }
});
