//! Canary splits: which side of an entry's split one request goes to.
//!
//! A sticky split hashes the request's `by` value (a header, a cookie, the
//! client address) into one of [`COHORTS`] cohorts with SipHash under a key
//! fixed in this code: the same value lands in the same cohort on every
//! worker, every replica and after every restart. A cohort below the
//! weight's threshold (`weight × 100`) goes to the canary, so raising the
//! weight only ever moves cohorts from the stable side to the canary, and
//! lowering it only moves them back. A request without the value, and every
//! request of a `random` split, is decided on its own.

use std::borrow::Cow;
use std::hash::Hasher;

use siphasher::sip::SipHasher13;

/// Cohorts a sticky split hashes into: weights have a resolution of 0.01 %.
pub const COHORTS: u16 = 10_000;

/// The cohort hash's key. Fixed on purpose: a per-process key would put a
/// client on different sides on different replicas, or after a restart. A
/// client that computes its own cohort learns nothing it could not get by
/// asking for the canary with the forcing header, where there is one.
pub const COHORT_KEY: [u8; 16] = *b"agentroute/canry";

/// The cohort key of a split with `canary.key`: the secret's bytes hashed
/// down to SipHash's 16-byte key (any length of secret, no padding).
pub fn cohort_key(secret: &str) -> [u8; 16] {
    let half = |salt: u8| {
        let mut hasher = SipHasher13::new_with_key(&COHORT_KEY);
        hasher.write_u8(salt);
        hasher.write(secret.as_bytes());
        hasher.finish().to_le_bytes()
    };
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&half(1));
    key[8..].copy_from_slice(&half(2));
    key
}

/// An entry's canary, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canary {
    /// The canary's backend, written to the dispatch header instead of the
    /// entry's own.
    pub backend: String,
    /// Cohorts (of [`COHORTS`]) that go to the canary: `weight × 100`.
    pub threshold: u16,
    pub by: By,
    /// A request header forcing the side (`always`, `never`), lowercase.
    pub header: Option<String>,
    /// The cohort hash's key: [`COHORT_KEY`], or one from `canary.key`.
    pub key: [u8; 16],
}

/// What keeps a client on one side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum By {
    /// Nothing: every request is decided on its own.
    Random,
    /// The downstream address, as rate limits read it.
    ClientIp,
    /// Every copy of this (lowercase) request header, joined.
    Header(String),
    /// This cookie's value (names are case-sensitive).
    Cookie(String),
}

impl By {
    /// As written in the configuration (`header:x-user-id`).
    pub fn describe(&self) -> String {
        match self {
            By::Random => "random".to_string(),
            By::ClientIp => "client_ip".to_string(),
            By::Header(name) => format!("header:{name}"),
            By::Cookie(name) => format!("cookie:{name}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Stable,
    Canary,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Stable => "stable",
            Side::Canary => "canary",
        }
    }
}

/// How the side was chosen (what `agentroute check --explain` prints).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum How {
    /// The forcing header said `always` or `never`.
    Forced,
    /// A weight of 0 or 100: no choice to make.
    Weight,
    /// The `by` value's cohort.
    Cohort(u16),
    /// No `by` value (or `by: random`): decided for this request alone.
    Random,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub side: Side,
    pub how: How,
}

/// What the split may ask about the request beyond its headers: the host
/// answers these only when a split needs them.
pub trait Client {
    /// The downstream address without its port.
    fn ip(&self) -> Option<Vec<u8>>;
    /// A fresh random number.
    fn random(&self) -> u64;
}

impl std::fmt::Debug for dyn Client + '_ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Client")
    }
}

/// A client the host knows nothing about: no address; "random" is 0,
/// which `agentroute check --explain` shows as decided at random.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoClient;

impl Client for NoClient {
    fn ip(&self) -> Option<Vec<u8>> {
        None
    }

    fn random(&self) -> u64 {
        0
    }
}

/// The cohort of `value` in an entry's split. The entry's identity is part
/// of the hash: the unlucky first 10 % of one agent's rollout are not the
/// first 10 % of every other's.
pub fn cohort(key: &[u8; 16], entry_id: &str, value: &[u8]) -> u16 {
    let mut hasher = SipHasher13::new_with_key(key);
    hasher.write(entry_id.as_bytes());
    hasher.write_u8(0);
    hasher.write(value);
    // 2^64 mod 10,000 skews the cohorts by one part in 10^15: none.
    (hasher.finish() % u64::from(COHORTS)) as u16
}

/// The side for a cohort: the monotone rule.
pub fn side_of(cohort: u16, threshold: u16) -> Side {
    if cohort < threshold {
        Side::Canary
    } else {
        Side::Stable
    }
}

/// Chooses the side of one request of the entry `entry_id`.
pub fn choose(
    canary: &Canary,
    entry_id: &str,
    pairs: &[(&str, &[u8])],
    client: &dyn Client,
) -> Choice {
    if let Some(forced) = canary
        .header
        .as_deref()
        .and_then(|name| pairs.iter().find(|(k, _)| *k == name))
        .and_then(|(_, v)| forced_side(v))
    {
        return Choice {
            side: forced,
            how: How::Forced,
        };
    }
    match canary.threshold {
        0 => {
            return Choice {
                side: Side::Stable,
                how: How::Weight,
            }
        }
        t if t >= COHORTS => {
            return Choice {
                side: Side::Canary,
                how: How::Weight,
            }
        }
        _ => {}
    }
    let value = match &canary.by {
        By::Random => None,
        By::ClientIp => client.ip().map(Cow::Owned),
        By::Header(name) => header_value(pairs, name),
        By::Cookie(name) => cookie(pairs, name).map(Cow::Borrowed),
    };
    match value.filter(|v| !v.is_empty()) {
        Some(v) => {
            let c = cohort(&canary.key, entry_id, &v);
            Choice {
                side: side_of(c, canary.threshold),
                how: How::Cohort(c),
            }
        }
        None => {
            let draw = (client.random() % u64::from(COHORTS)) as u16;
            Choice {
                side: side_of(draw, canary.threshold),
                how: How::Random,
            }
        }
    }
}

/// `always` → canary, `never` → stable (any case, surrounding spaces
/// ignored); anything else forces nothing.
fn forced_side(value: &[u8]) -> Option<Side> {
    let value = value.trim_ascii();
    if value.eq_ignore_ascii_case(b"always") {
        Some(Side::Canary)
    } else if value.eq_ignore_ascii_case(b"never") {
        Some(Side::Stable)
    } else {
        None
    }
}

/// Every copy of a header, joined with `, ` (as rate limits read a client
/// header: a second copy cannot pick another cohort).
pub fn header_value<'a>(pairs: &[(&str, &'a [u8])], name: &str) -> Option<Cow<'a, [u8]>> {
    let mut found: Option<Cow<'a, [u8]>> = None;
    for (_, v) in pairs.iter().filter(|(k, _)| *k == name) {
        found = Some(match found {
            None => Cow::Borrowed(v),
            Some(joined) => {
                let mut joined = joined.into_owned();
                joined.extend_from_slice(b", ");
                joined.extend_from_slice(v);
                Cow::Owned(joined)
            }
        });
    }
    found
}

/// The first value of cookie `name` in the `cookie` headers (HTTP/2 may
/// send one header per cookie).
pub fn cookie<'a>(pairs: &[(&str, &'a [u8])], name: &str) -> Option<&'a [u8]> {
    pairs
        .iter()
        .filter(|(k, _)| *k == "cookie")
        .flat_map(|(_, v)| v.split(|&b| b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&b| b == b'=')?;
            let (k, v) = pair.split_at(eq);
            (k.trim_ascii() == name.as_bytes()).then(|| v.get(1..).unwrap_or_default().trim_ascii())
        })
}

/// SplitMix64: the host's source of per-request random draws, seeded once
/// per VM from the host's randomness. Uniform, and no host call per draw.
#[derive(Debug, Clone, Copy)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    struct Fixed {
        ip: Option<&'static str>,
        draws: Cell<u64>,
    }

    impl Client for Fixed {
        fn ip(&self) -> Option<Vec<u8>> {
            self.ip.map(|ip| ip.as_bytes().to_vec())
        }
        fn random(&self) -> u64 {
            let d = self.draws.get();
            self.draws.set(d + 1);
            d
        }
    }

    fn split(weight_bp: u16, by: By) -> Canary {
        Canary {
            backend: "v2".into(),
            threshold: weight_bp,
            by,
            header: Some("x-canary".into()),
            key: COHORT_KEY,
        }
    }

    #[test]
    fn a_deployment_key_changes_every_cohort_and_keeps_them_stable() {
        let secret = cohort_key("a deployment's own secret");
        assert_eq!(secret, cohort_key("a deployment's own secret"));
        assert_ne!(secret, cohort_key("a deployment's own secreT"));
        assert_ne!(secret, COHORT_KEY);
        // Cohorts under the secret are not the public key's: a value found
        // on the canary side offline says nothing about this deployment.
        let moved = (0..1000)
            .filter(|i| {
                let v = format!("user-{i}");
                cohort(&secret, "prod/a", v.as_bytes())
                    != cohort(&COHORT_KEY, "prod/a", v.as_bytes())
            })
            .count();
        assert!(moved > 990, "{moved}");
        let mut keyed = split(5000, By::Header("x-user-id".into()));
        keyed.key = secret;
        let pairs: [(&str, &[u8]); 1] = [("x-user-id", b"u-42")];
        let no = Fixed {
            ip: None,
            draws: Cell::new(0),
        };
        assert_eq!(
            choose(&keyed, "e", &pairs, &no).how,
            How::Cohort(cohort(&secret, "e", b"u-42"))
        );
    }

    fn pairs<'a>(p: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a [u8])> {
        p.iter().map(|(k, v)| (*k, v.as_bytes())).collect()
    }

    #[test]
    fn the_cohort_is_fixed_per_entry_and_value() {
        // Golden values: a change here moves every client to another side
        // on upgrade, which a rollout must never see.
        assert_eq!(
            cohort(&COHORT_KEY, "prod/coordinator", b"alice"),
            cohort(&COHORT_KEY, "prod/coordinator", b"alice")
        );
        let golden = [
            cohort(&COHORT_KEY, "prod/coordinator", b"alice"),
            cohort(&COHORT_KEY, "prod/coordinator", b"bob"),
            cohort(&COHORT_KEY, "prod/other", b"alice"),
        ];
        assert_eq!(golden, [GOLDEN_ALICE, GOLDEN_BOB, GOLDEN_OTHER]);
        assert_ne!(golden[0], golden[2], "entries split their clients apart");
    }

    const GOLDEN_ALICE: u16 = 8130;
    const GOLDEN_BOB: u16 = 5288;
    const GOLDEN_OTHER: u16 = 9507;

    #[test]
    fn forcing_header_wins_over_everything() {
        let c = split(5_000, By::Header("x-user".into()));
        let client = Fixed {
            ip: None,
            draws: Cell::new(0),
        };
        for (value, side) in [("always", Side::Canary), (" NEVER ", Side::Stable)] {
            let p = pairs(&[("x-canary", value), ("x-user", "alice")]);
            assert_eq!(
                choose(&c, "e", &p, &client),
                Choice {
                    side,
                    how: How::Forced
                }
            );
        }
        // Even at weight 0 and 100.
        let p = pairs(&[("x-canary", "always")]);
        assert_eq!(
            choose(&split(0, By::Random), "e", &p, &client).side,
            Side::Canary
        );
        let p = pairs(&[("x-canary", "never")]);
        assert_eq!(
            choose(&split(COHORTS, By::Random), "e", &p, &client).side,
            Side::Stable
        );
        // Anything else leaves it to the split.
        let p = pairs(&[("x-canary", "sometimes"), ("x-user", "alice")]);
        assert!(matches!(choose(&c, "e", &p, &client).how, How::Cohort(_)));
    }

    #[test]
    fn weights_zero_and_hundred_need_no_value() {
        let client = Fixed {
            ip: None,
            draws: Cell::new(0),
        };
        let none = pairs(&[]);
        assert_eq!(
            choose(&split(0, By::ClientIp), "e", &none, &client),
            Choice {
                side: Side::Stable,
                how: How::Weight
            }
        );
        assert_eq!(
            choose(&split(COHORTS, By::ClientIp), "e", &none, &client),
            Choice {
                side: Side::Canary,
                how: How::Weight
            }
        );
        assert_eq!(client.draws.get(), 0, "no random draw");
    }

    #[test]
    fn sticky_values_come_from_headers_cookies_and_the_address() {
        let client = Fixed {
            ip: Some("10.0.0.7"),
            draws: Cell::new(0),
        };
        let c = split(5_000, By::Header("x-user".into()));
        let p = pairs(&[("x-user", "alice")]);
        assert_eq!(
            choose(&c, "e", &p, &client).how,
            How::Cohort(cohort(&COHORT_KEY, "e", b"alice"))
        );
        let p = pairs(&[("x-user", "alice"), ("x-user", "bob")]);
        assert_eq!(
            choose(&c, "e", &p, &client).how,
            How::Cohort(cohort(&COHORT_KEY, "e", b"alice, bob"))
        );

        let c = split(5_000, By::Cookie("uid".into()));
        let p = pairs(&[("cookie", "a=1; uid=u-42 ;b=2")]);
        assert_eq!(
            choose(&c, "e", &p, &client).how,
            How::Cohort(cohort(&COHORT_KEY, "e", b"u-42"))
        );
        let p = pairs(&[("cookie", "a=1"), ("cookie", "uid=u-43")]);
        assert_eq!(
            choose(&c, "e", &p, &client).how,
            How::Cohort(cohort(&COHORT_KEY, "e", b"u-43"))
        );
        let p = pairs(&[("cookie", "UID=x; uidx=y")]);
        assert_eq!(
            choose(&c, "e", &p, &client).how,
            How::Random,
            "names are exact"
        );

        let c = split(5_000, By::ClientIp);
        assert_eq!(
            choose(&c, "e", &[], &client).how,
            How::Cohort(cohort(&COHORT_KEY, "e", b"10.0.0.7"))
        );
    }

    #[test]
    fn without_the_value_each_request_is_drawn() {
        let client = Fixed {
            ip: None,
            draws: Cell::new(0),
        };
        let c = split(1_000, By::Header("x-user".into()));
        let empty = pairs(&[("x-user", "")]);
        let mut canary = 0;
        for _ in 0..COHORTS {
            let choice = choose(&c, "e", &empty, &client);
            assert_eq!(choice.how, How::Random);
            canary += u32::from(choice.side == Side::Canary);
        }
        assert_eq!(canary, 1_000, "draws 0..10000 give exactly the weight");
        assert_eq!(
            choose(&split(1_000, By::ClientIp), "e", &[], &client).how,
            How::Random
        );
    }

    #[test]
    fn raising_the_weight_only_moves_clients_to_the_canary() {
        for i in 0..10_000u32 {
            let c = cohort(&COHORT_KEY, "prod/a", format!("user-{i}").as_bytes());
            let mut was_canary = false;
            for weight in [0, 1, 500, 1_000, 5_000, 9_999, COHORTS] {
                let now = side_of(c, weight) == Side::Canary;
                assert!(now || !was_canary, "user-{i} went back at {weight}");
                was_canary = now;
            }
        }
    }

    #[test]
    fn cohorts_are_uniform() {
        let mut deciles = [0u32; 10];
        for i in 0..100_000u32 {
            let c = cohort(&COHORT_KEY, "prod/a", format!("client-{i}").as_bytes());
            deciles[usize::from(c / 1_000)] += 1;
        }
        for (d, n) in deciles.iter().enumerate() {
            assert!((9_700..=10_300).contains(n), "decile {d}: {n} of 100000");
        }
    }

    #[test]
    fn the_rng_is_uniform_enough() {
        let mut rng = Rng(42);
        let canary = (0..100_000)
            .filter(|_| {
                side_of((rng.next_u64() % u64::from(COHORTS)) as u16, 1_000) == Side::Canary
            })
            .count();
        assert!((9_700..=10_300).contains(&canary), "{canary}");
    }
}
