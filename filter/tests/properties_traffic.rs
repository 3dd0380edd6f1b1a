//! Property tests of the traffic policies, through the filter's public API:
//!
//! - a canary split is monotone in its weight (raising it only moves
//!   clients to the canary), sticky (a value's side depends on nothing but
//!   the entry and the value), and uniform: over 100,000 client values the
//!   canary gets the weight within ±3 %;
//! - origin matching: a wildcard matches one or more labels in front of its
//!   suffix and nothing else; exact origins match themselves whatever the
//!   case or an explicit default port, and nothing else;
//! - in-flight limits: whatever the interleaving of admissions, releases,
//!   refreshes, VMs that stop and clocks that move, the requests held by
//!   live VMs never exceed the limit, and a stopped VM's holds stop
//!   counting once stale.
#![cfg(not(target_arch = "wasm32"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::cell::RefCell;
use std::collections::HashMap;

use agentroute::canary::{self, By, Canary, NoClient, Side, COHORTS};
use agentroute::concurrency::{self, STALE_AFTER_MS};
use agentroute::cors::{Origin, OriginPattern};
use agentroute::ratelimit::{SharedStore, StoreError};
use proptest::prelude::*;

// ---------------------------------------------------------------------------
// Canary splits
// ---------------------------------------------------------------------------

fn split(threshold: u16) -> Canary {
    Canary {
        backend: "v2".into(),
        threshold,
        by: By::Header("x-user".into()),
        header: None,
        key: canary::COHORT_KEY,
    }
}

fn side(entry: &str, value: &[u8], threshold: u16) -> Side {
    let pairs = [("x-user", value)];
    canary::choose(&split(threshold), entry, &pairs, &NoClient).side
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn raising_the_weight_never_moves_a_client_back(
        entry in "[a-z]{1,8}/[a-z]{1,8}",
        value in proptest::collection::vec(any::<u8>(), 1..40),
        low in 0u16..=COHORTS,
        high in 0u16..=COHORTS,
    ) {
        let (low, high) = (low.min(high), low.max(high));
        if side(&entry, &value, low) == Side::Canary {
            prop_assert_eq!(side(&entry, &value, high), Side::Canary);
        }
        // Sticky: the same value, the same side, every time.
        prop_assert_eq!(side(&entry, &value, low), side(&entry, &value, low));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    #[test]
    fn the_canary_gets_its_weight_within_three_percent(seed in any::<u64>()) {
        let cohorts: Vec<u16> = (0..100_000u32)
            .map(|i| canary::cohort(&canary::COHORT_KEY, "prod/agent", format!("{seed:x}-{i}").as_bytes()))
            .collect();
        for weight in [20u16, 30, 40, 50, 60, 70, 80, 90] {
            let threshold = weight * 100;
            let canary = cohorts.iter().filter(|c| canary::side_of(**c, threshold) == Side::Canary).count();
            let expected = 1_000.0 * f64::from(weight);
            let off = (canary as f64 - expected).abs() / expected;
            prop_assert!(off <= 0.03, "weight {}: {} of 100000 ({:.2} % off)", weight, canary, off * 100.0);
        }
    }
}

// ---------------------------------------------------------------------------
// Origin matching
// ---------------------------------------------------------------------------

fn label() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?"
}

fn labels(max: usize) -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(label(), 1..=max)
}

fn matches(pattern: &str, origin: &str) -> bool {
    let p = OriginPattern::parse(pattern).expect("a valid pattern");
    Origin::parse(origin).is_some_and(|o| p.matches(&o))
}

/// Mixed case, as a client might send it.
fn shout(s: &str, mask: u64) -> String {
    s.chars()
        .enumerate()
        .map(|(i, c)| {
            if mask >> (i % 64) & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn wildcards_match_one_or_more_labels_and_nothing_else(
        suffix in labels(3),
        front in labels(3),
        other in label(),
        port in proptest::option::of(1u16..=65535),
        mask in any::<u64>(),
    ) {
        let suffix = suffix.join(".");
        let port = port.filter(|p| *p != 443).map(|p| format!(":{p}")).unwrap_or_default();
        let pattern = format!("https://*.{suffix}{port}");
        let origin = |host: &str| format!("https://{host}{port}");
        let sub = format!("{}.{suffix}", front.join("."));
        prop_assert!(matches(&pattern, &origin(&sub)));
        prop_assert!(matches(&pattern, &shout(&origin(&sub), mask)));
        prop_assert!(!matches(&pattern, &origin(&suffix)), "the bare suffix");
        let longer = format!("{sub}.{other}");
        // Unless it ends in the suffix again (`a.3.3` is below `3`).
        if !longer.ends_with(&format!(".{suffix}")) {
            prop_assert!(!matches(&pattern, &origin(&longer)), "a longer host");
        }
        prop_assert!(!matches(&pattern, &origin(&format!("{other}{suffix}"))), "no dot before the suffix");
        prop_assert!(!matches(&pattern, &format!("http://{sub}{port}")), "another scheme");
        let wrong_port = if port.is_empty() { ":8443" } else { "" };
        prop_assert!(!matches(&pattern, &format!("https://{sub}{wrong_port}")), "another port");
        prop_assert!(!matches(&pattern, &format!("{}/", origin(&sub))), "a path");
        prop_assert!(!matches(&pattern, &format!("https://x@{sub}{port}")), "user info");
    }

    #[test]
    fn exact_origins_match_themselves_only(
        host in labels(4),
        other in labels(4),
        mask in any::<u64>(),
    ) {
        let host = host.join(".");
        let other = other.join(".");
        let pattern = format!("https://{host}");
        let same = [pattern.clone(), shout(&pattern, mask), format!("{pattern}:443")];
        for origin in &same {
            prop_assert!(matches(&pattern, origin), "{} should match", origin);
        }
        let mut different = vec![
            format!("{pattern}:8443"),
            format!("http://{host}"),
            format!("https://{host}.evil.com"),
            format!("https://a.{host}"),
            format!("{pattern}/"),
        ];
        if other != host {
            different.push(format!("https://{other}"));
        }
        for origin in &different {
            prop_assert!(!matches(&pattern, origin), "{} should not match", origin);
        }
    }
}

// ---------------------------------------------------------------------------
// In-flight limits
// ---------------------------------------------------------------------------

/// Envoy's shared data: values with versions.
#[derive(Default)]
struct Memory {
    data: RefCell<HashMap<String, (Vec<u8>, u32)>>,
}

impl SharedStore for Memory {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        Ok(match self.data.borrow().get(key) {
            Some((value, version)) => (Some(value.clone()), Some(*version)),
            None => (None, None),
        })
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        let mut data = self.data.borrow_mut();
        let current = data.get(key).map(|(_, version)| *version);
        if cas.is_some() && cas != current {
            return Err(StoreError::CasMismatch);
        }
        data.insert(key.to_string(), (value.to_vec(), current.unwrap_or(0) + 1));
        Ok(())
    }
}

#[derive(Debug, Clone)]
enum Step {
    Admit(usize),
    Release(usize),
    /// The VM's tick: its row rewritten when due.
    Tick(usize),
    /// The VM traps: it never writes again, and its holds are never
    /// released.
    Stop(usize),
    /// Milliseconds pass.
    Wait(u64),
}

fn step(vms: usize) -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..vms).prop_map(Step::Admit),
        3 => (0..vms).prop_map(Step::Release),
        2 => (0..vms).prop_map(Step::Tick),
        1 => (0..vms).prop_map(Step::Stop),
        2 => (0u64..4_000).prop_map(Step::Wait),
    ]
}

/// A VM of the simulation: what it holds, when it last wrote its row,
/// whether it still runs.
#[derive(Debug, Clone, Copy)]
struct Vm {
    held: u32,
    written: u64,
    alive: bool,
}

/// What the limit counts now: live VMs' holds (their ticks keep them
/// fresh) and stopped VMs' holds until their last write is stale.
fn counted(vms: &[Vm], now: u64) -> u32 {
    vms.iter()
        .filter(|v| v.alive || v.written + STALE_AFTER_MS > now)
        .map(|v| v.held)
        .sum()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn live_holds_never_exceed_the_limit(
        max in 1u32..6,
        steps in proptest::collection::vec(step(4), 1..150),
    ) {
        let store = Memory::default();
        let mut now = 1_000_000u64;
        let mut vms = [Vm { held: 0, written: 0, alive: true }; 4];
        for s in steps {
            match s {
                Step::Admit(i) if vms[i].alive => {
                    let before = counted(&vms, now);
                    let vm = &mut vms[i];
                    let a = concurrency::admit(&store, "k", max, i as u64, vm.held, now).unwrap();
                    // Admitted exactly when what counts leaves room.
                    prop_assert_eq!(a.admitted, before < max, "counted {} of {}", before, max);
                    if a.admitted {
                        vm.held += 1;
                        vm.written = now;
                    }
                }
                Step::Release(i) if vms[i].alive && vms[i].held > 0 => {
                    let vm = &mut vms[i];
                    vm.held -= 1;
                    concurrency::publish(&store, "k", i as u64, vm.held, now).unwrap();
                    vm.written = now;
                }
                Step::Tick(i) if vms[i].alive => {
                    let vm = &mut vms[i];
                    if vm.held > 0 && now - vm.written >= concurrency::REFRESH_AFTER_MS {
                        concurrency::publish(&store, "k", i as u64, vm.held, now).unwrap();
                        vm.written = now;
                    }
                }
                Step::Stop(i) => vms[i].alive = false,
                Step::Wait(ms) => {
                    // Time passes a second at a time; live VMs tick each
                    // second, as Envoy's timer has them do.
                    let until = now + ms;
                    while now < until {
                        now = (now + 1_000).min(until);
                        for (i, vm) in vms.iter_mut().enumerate() {
                            if vm.alive && vm.held > 0 && now - vm.written >= concurrency::REFRESH_AFTER_MS {
                                concurrency::publish(&store, "k", i as u64, vm.held, now).unwrap();
                                vm.written = now;
                            }
                        }
                    }
                }
                _ => {}
            }
            let live: u32 = vms.iter().filter(|v| v.alive).map(|v| v.held).sum();
            prop_assert!(live <= max, "{} live holds over the limit {}", live, max);
            prop_assert_eq!(
                concurrency::in_flight(&store, "k", now).unwrap(),
                u64::from(counted(&vms, now))
            );
        }
        // Long after: stopped VMs count for nothing, live ones still do.
        now += STALE_AFTER_MS;
        for (i, vm) in vms.iter().enumerate() {
            if vm.alive && vm.held > 0 {
                concurrency::publish(&store, "k", i as u64, vm.held, now).unwrap();
            }
        }
        let live: u64 = vms.iter().filter(|v| v.alive).map(|v| u64::from(v.held)).sum();
        prop_assert_eq!(concurrency::in_flight(&store, "k", now).unwrap(), live);
    }
}
