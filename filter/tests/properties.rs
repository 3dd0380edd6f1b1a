//! Property tests of the filter's invariants, through its public API:
//!
//! - a token bucket never admits more than `burst + rate × elapsed` (plus
//!   what was given back), whatever the interleaving of acquires, holds,
//!   debits, racing workers and clock readings;
//! - routing does not depend on the order of the agents in the
//!   configuration: a conflict is an error in any order, and a request
//!   reaches the same agent the same way (hosts, then the longest prefix);
//! - a token budget is overspent by at most what the README says: one hold,
//!   plus what the requests in flight with the last admission were charged
//!   beyond their holds (a stream without usage is charged at least its
//!   hold);
//! - `request::apply_to` keeps every header it does not own byte for byte.
#![cfg(not(target_arch = "wasm32"))]
// A test file: its helpers fail the test loudly, like the tests themselves.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};

use agentroute::config::Plan;
use agentroute::ratelimit::{
    acquire, debit, hold, BucketSpec, SharedStore, StoreError, CLOCK_TOLERANCE_NANOS,
};
use agentroute::request::{apply_to, decide, Decision, HeaderOp, RequestHead};
use agentroute::usage::{Metered, Usage};
use proptest::prelude::*;

// ---------------------------------------------------------------------------
// Token buckets
// ---------------------------------------------------------------------------

const SEC: u64 = 1_000_000_000;
const TOLERANCE: u64 = CLOCK_TOLERANCE_NANOS;

/// Envoy's shared data as the filter sees it: values with versions, a write
/// refused when the version it read is stale.
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

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A request: takes `cost` tokens if the bucket holds them.
    Acquire(f64),
    /// A token budget's admission: needs one token, holds `amount`.
    Hold(f64),
    /// A settlement: takes `cost` whatever the balance; negative gives back.
    Debit(f64),
}

#[derive(Debug, Clone, Copy)]
struct Op {
    kind: Kind,
    /// Real time passing before this operation.
    advance: u64,
    /// The clock stepped back (NTP) by this much before this operation.
    step_back: Option<u64>,
    /// How far this worker's clock is behind the others' (workers read
    /// their clocks at slightly different moments).
    lag: u64,
    /// Another worker's operation that lands between this one's read and its
    /// write, with that worker's lag.
    racer: Option<(Kind, u64)>,
}

/// One worker's view of the store: every read records the clock reading the
/// bucket is about to be refilled with, and a racing worker may write in
/// between a read and the write that follows it.
struct Worker<'a> {
    store: &'a Memory,
    spec: BucketSpec,
    now: u64,
    readings: &'a RefCell<Vec<u64>>,
    racer: Cell<Option<(Kind, u64)>>,
    tally: &'a Tally,
}

#[derive(Default)]
struct Tally {
    admitted: Cell<u64>,
    given_back: Cell<f64>,
    /// Racers that wrote a bucket's very first value while another worker
    /// was creating it too: shared data has no create-if-absent, and the
    /// bucket documents one extra admission per racing worker, once.
    first_write_races: Cell<u64>,
    /// The clock reading a bucket was created with (the earliest, when
    /// workers raced to create it): refills count from there.
    created_at: Cell<Option<u64>>,
}

impl SharedStore for Worker<'_> {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        self.readings.borrow_mut().push(self.now);
        self.store.get(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        if let Some((kind, now)) = self.racer.take() {
            let other = Worker {
                now,
                racer: Cell::new(None),
                ..*self
            };
            other.run(kind);
            if cas.is_none() {
                let races = &self.tally.first_write_races;
                races.set(races.get() + 1);
            }
        }
        if cas.is_none() {
            let created = &self.tally.created_at;
            created.set(Some(created.get().map_or(self.now, |c| c.min(self.now))));
        }
        self.store.set(key, value, cas)
    }
}

impl Worker<'_> {
    fn run(&self, kind: Kind) {
        let (spec, now) = (self.spec, self.now);
        let admitted = match kind {
            Kind::Acquire(cost) => acquire(self, "bucket", spec, cost, now).map(|o| o.allowed),
            Kind::Hold(amount) => hold(self, "bucket", spec, amount, now).map(|o| o.allowed),
            // A settlement admits nothing; a negative one gives tokens back.
            Kind::Debit(cost) => {
                let back = &self.tally.given_back;
                back.set(back.get() + (-cost).max(0.0));
                debit(self, "bucket", spec, cost, now).map(|_| false)
            }
        };
        if admitted.expect("one racer is far below the retry bound") {
            self.tally.admitted.set(self.tally.admitted.get() + 1);
        }
    }
}

/// Requests alone (a request bucket): the bound is reached when they come
/// faster than the bucket refills.
fn request() -> impl Strategy<Value = Kind> + Clone {
    prop_oneof![
        12 => Just(Kind::Acquire(1.0)),
        1 => (2u32..=3).prop_map(|c| Kind::Acquire(f64::from(c))),
    ]
}

/// Everything a bucket sees (a token budget's holds and settlements among
/// requests), refunds included.
fn any_kind() -> impl Strategy<Value = Kind> + Clone {
    prop_oneof![
        6 => request(),
        2 => (1u32..=200).prop_map(|a| Kind::Hold(f64::from(a))),
        1 => (0u32..=300).prop_map(|c| Kind::Debit(f64::from(c))),
        1 => (1u32..=100).prop_map(|c| Kind::Debit(-f64::from(c))),
    ]
}

/// Real time between operations: mostly a few milliseconds (requests
/// faster than the refill), now and then a pause.
fn advance() -> impl Strategy<Value = u64> {
    prop_oneof![
        10 => 0..20_000_000u64,
        1 => 0..2 * SEC,
        1 => 10 * SEC..100 * SEC,
    ]
}

/// A worker's clock behind the latest reading: mostly not, often within
/// the tolerance, its edge included.
fn lag() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => Just(0),
        3 => 0..=TOLERANCE,
        1 => Just(TOLERANCE),
    ]
}

/// The clock stepped back beyond the tolerance, its edge included.
fn step_back() -> impl Strategy<Value = Option<u64>> {
    proptest::option::weighted(
        0.03,
        prop_oneof![Just(TOLERANCE + 1), TOLERANCE + 1..200 * SEC],
    )
}

/// The clock steps back in some runs only: in the others the tighter,
/// tolerance-aware bound is checked.
fn without_steps_back(mut ops: Vec<Op>, ntp: bool) -> Vec<Op> {
    if !ntp {
        ops.iter_mut().for_each(|op| op.step_back = None);
    }
    ops
}

fn op(kind: impl Strategy<Value = Kind> + Clone) -> impl Strategy<Value = Op> {
    (
        kind.clone(),
        advance(),
        step_back(),
        lag(),
        proptest::option::weighted(0.3, (kind, lag())),
    )
        .prop_map(|(kind, advance, step_back, lag, racer)| Op {
            kind,
            advance,
            step_back,
            lag,
            racer,
        })
}

/// The bound, stated for clock readings in the order the bucket reads
/// them (`r_1 … r_n`, racing workers' included):
///
/// `admitted ≤ burst + rate × Σ max(0, r_i − r_{i−1}) + given back`
///
/// (plus one per worker racing on a bucket's very first write, as the
/// bucket documents). Elapsed time is the clock's forward movement: a
/// clock stepped back and moving forward again counts the time that
/// passes after the step, which is real. Within the tolerance
/// (`CLOCK_TOLERANCE_NANOS`) a reading behind the latest adds nothing
/// at all, so as long as no reading falls further behind than that, the
/// tighter bound holds: `burst + rate × (latest reading − the reading
/// the bucket was created at)`.
/// Every admission takes at least one token (requests cost ≥ 1, holds
/// hold ≥ 1); a hold may take the balance below zero, down to −burst.
fn check_bucket_bound(burst: u32, rate: f64, ops: &[Op]) -> Result<(), TestCaseError> {
    let spec = BucketSpec {
        capacity: f64::from(burst),
        rate_per_second: rate,
    };
    let store = Memory::default();
    let readings = RefCell::new(Vec::new());
    let tally = Tally::default();
    // The clock: real time plus an offset that NTP may step back.
    let mut clock = 10_000 * SEC;
    for op in ops {
        clock = clock.saturating_add(op.advance);
        clock = clock.saturating_sub(op.step_back.unwrap_or(0));
        let worker = Worker {
            store: &store,
            spec,
            now: clock.saturating_sub(op.lag),
            readings: &readings,
            racer: Cell::new(
                op.racer
                    .map(|(kind, lag)| (kind, clock.saturating_sub(lag))),
            ),
            tally: &tally,
        };
        worker.run(op.kind);
    }

    let readings = readings.into_inner();
    let nanos_to_secs = |n: u64| n as f64 / 1e9;
    let forward: u64 = readings.windows(2).map(|w| w[1].saturating_sub(w[0])).sum();
    let slack = tally.given_back.get() + tally.first_write_races.get() as f64 + 1e-6;
    let admitted = tally.admitted.get() as f64;
    let bound = f64::from(burst) + rate * nanos_to_secs(forward) + slack;
    prop_assert!(
        admitted <= bound,
        "admitted {admitted} > {bound} over {readings:?}"
    );

    let mut latest = readings[0];
    let mut stepped_back = false;
    for &r in &readings {
        stepped_back |= latest.saturating_sub(r) > CLOCK_TOLERANCE_NANOS;
        latest = latest.max(r);
    }
    if let (false, Some(created)) = (stepped_back, tally.created_at.get()) {
        let elapsed = nanos_to_secs(latest.saturating_sub(created));
        let tight = f64::from(burst) + rate * elapsed + slack;
        prop_assert!(
            admitted <= tight,
            "admitted {admitted} > {tight} within the tolerance"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_request_bucket_admits_at_most_burst_plus_rate_times_elapsed(
        burst in 1u32..=50,
        rate in prop_oneof![0.01f64..1.0, 1.0f64..100.0],
        ops in proptest::collection::vec(op(request()), 1..300),
        ntp in proptest::bool::weighted(0.3),
    ) {
        check_bucket_bound(burst, rate, &without_steps_back(ops, ntp))?;
    }

    /// The same bound with holds, settlements and refunds in the mix.
    #[test]
    fn any_bucket_admits_at_most_burst_plus_rate_times_elapsed(
        burst in 1u32..=50,
        rate in prop_oneof![0.01f64..1.0, 1.0f64..100.0],
        ops in proptest::collection::vec(op(any_kind()), 1..300),
        ntp in proptest::bool::weighted(0.3),
    ) {
        check_bucket_bound(burst, rate, &without_steps_back(ops, ntp))?;
    }

    /// Without refunds or racing workers, and with a clock that only moves
    /// forward, the classic bound is exact enough to be reached: a burst of
    /// requests at once admits exactly `burst`.
    #[test]
    fn a_full_bucket_admits_exactly_its_burst_at_once(burst in 1u32..=50, rate in 0.01f64..100.0) {
        let spec = BucketSpec { capacity: f64::from(burst), rate_per_second: rate };
        let store = Memory::default();
        let readings = RefCell::new(Vec::new());
        let tally = Tally::default();
        for _ in 0..2 * burst {
            let worker = Worker {
                store: &store,
                spec,
                now: 5 * SEC,
                readings: &readings,
                racer: Cell::new(None),
                tally: &tally,
            };
            worker.run(Kind::Acquire(1.0));
        }
        prop_assert_eq!(tally.admitted.get(), u64::from(burst));
    }
}

// ---------------------------------------------------------------------------
// Token budgets: the overspend bound of the README
// ---------------------------------------------------------------------------

/// One request against a token budget: admitted (a hold of its estimate,
/// or the reserve), then, `lasts` steps later, settled with what its answer
/// is charged (`Metered::charge`).
#[derive(Debug, Clone)]
struct BudgetRequest {
    /// `max_tokens` + prompt estimate when the body was read.
    estimate: Option<u64>,
    prompt: u64,
    answer: Metered,
    lasts: usize,
    /// Time before it arrives, in ms.
    gap_ms: u64,
}

fn metered(capacity: u64) -> impl Strategy<Value = Metered> {
    prop_oneof![
        (0..=3 * capacity).prop_map(|total| Metered::Reported(Usage {
            total,
            input: None,
            output: None
        })),
        (0..=capacity).prop_map(|events| Metered::Streamed { events }),
        Just(Metered::Unknown),
    ]
}

fn budget_request(capacity: u64) -> impl Strategy<Value = BudgetRequest> {
    (
        proptest::option::of(1..=capacity),
        0..=capacity,
        metered(capacity),
        0usize..3,
        0u64..2_000,
    )
        .prop_map(|(estimate, prompt, answer, lasts, gap_ms)| BudgetRequest {
            estimate,
            prompt,
            answer,
            lasts,
            gap_ms,
        })
}

/// What an answer really used: its reported total; a stream without usage
/// used its prompt and about a token per event; an unreadable answer is
/// taken to use its hold (the README counts those apart, as unmetered).
fn real_usage(answer: Metered, held: u64, prompt: u64) -> u64 {
    match answer {
        Metered::Reported(u) => u.total,
        Metered::Streamed { events } => prompt + events,
        Metered::Unknown => held,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever requests come, in flight together or not, with usage or
    /// without, the tokens their answers use stay within `budget + rate ×
    /// elapsed` plus the last admission's hold plus what the requests in
    /// flight with it used beyond their holds.
    #[test]
    fn a_token_budget_is_overspent_by_at_most_the_documented_bound(
        capacity in 10u64..=5_000,
        reserve_fraction in 0.01f64..=1.0,
        requests in proptest::collection::vec(budget_request(5_000), 1..60),
    ) {
        let spec = BucketSpec { capacity: capacity as f64, rate_per_second: capacity as f64 / 60.0 };
        let reserve = ((capacity as f64 * reserve_fraction) as u64).max(1);
        let store = Memory::default();
        let start = 1_000 * SEC;
        let mut now = start;
        // (hold, charge, real usage, settles at step)
        let mut open: Vec<(u64, Option<u64>, u64, usize)> = Vec::new();
        let mut used = 0u64;
        let mut bound = None;
        for (step, r) in requests.iter().enumerate() {
            now += r.gap_ms * 1_000_000;
            open.retain(|&(held, charge, _, ends)| {
                if ends > step {
                    return true;
                }
                if let Some(charge) = charge {
                    debit(&store, "t", spec, charge as f64 - held as f64, now).unwrap();
                }
                false
            });
            let held = r.estimate.unwrap_or(reserve).min(capacity);
            let charge = r.answer.charge(held, r.prompt);
            let real = real_usage(r.answer, held, r.prompt);
            if hold(&store, "t", spec, held as f64, now).unwrap().allowed {
                used += real;
                open.push((held, charge, real, step + r.lasts));
                let overrun: u64 = open.iter().map(|&(h, _, real, _)| real.saturating_sub(h)).sum();
                let refill = spec.rate_per_second * (now - start) as f64 / 1e9;
                bound = Some(capacity as f64 + refill + held as f64 + overrun as f64);
            }
        }
        if let Some(bound) = bound {
            prop_assert!(used as f64 <= bound + 1e-6, "used {used} > bound {bound}");
        }
    }
}

// ---------------------------------------------------------------------------
// Routing does not depend on the order of the agents
// ---------------------------------------------------------------------------

const NAMES: [&str; 6] = ["a", "b", "echo", "models", "v1", "chat"];
const NAMESPACES: [&str; 3] = ["prod", "dev", "agent"];
const KINDS: [&str; 3] = ["agent", "modelapi", "mcp"];
const HOSTS: [&str; 5] = [
    "a.example.com",
    "*.example.com",
    "b.a.example.com",
    "*.a.example.com",
    "llm.internal",
];
const PREFIXES: [&str; 7] = [
    "/x",
    "/x/y",
    "/prod",
    "/prod/a",
    "/dev/agent/b",
    "/api",
    "/a",
];
const REWRITES: [&str; 3] = ["", r#", "rewrite": null"#, r#", "rewrite": "/v2""#];
const MODELS: [&str; 3] = ["m1", "m2", "prod/a"];

fn agent() -> impl Strategy<Value = String> {
    (
        0..NAMES.len(),
        0..NAMESPACES.len(),
        0..KINDS.len(),
        proptest::sample::subsequence(HOSTS.to_vec(), 0..=2),
        proptest::collection::vec((0..PREFIXES.len(), 0..REWRITES.len()), 0..=2),
        proptest::sample::subsequence(MODELS.to_vec(), 0..=1),
    )
        .prop_map(|(name, ns, kind, hosts, prefixes, models)| {
            let prefixes: Vec<String> = prefixes
                .iter()
                .map(|&(p, r)| format!(r#"{{"prefix": "{}"{}}}"#, PREFIXES[p], REWRITES[r]))
                .collect();
            format!(
                r#"{{"name": "{}", "namespace": "{}", "kind": "{}", "backend": "{}-{}", "hosts": {:?}, "prefixes": [{}], "models": {:?}}}"#,
                NAMES[name],
                NAMESPACES[ns],
                KINDS[kind],
                NAMESPACES[ns],
                NAMES[name],
                hosts,
                prefixes.join(", "),
                models
            )
        })
}

fn config(agents: &[String], layouts: &[&str]) -> String {
    format!(
        r#"{{"layouts": {layouts:?}, "agents": [{}]}}"#,
        agents.join(", ")
    )
}

/// Every request worth asking: each prefix and layout path of the pools,
/// with a remainder, a dot-segment or a query, under each authority.
fn probes() -> Vec<(&'static str, String)> {
    let mut paths: BTreeSet<String> = PREFIXES.iter().map(|p| p.to_string()).collect();
    for ns in NAMESPACES {
        for name in NAMES {
            paths.insert(format!("/{name}"));
            paths.insert(format!("/{ns}/{name}"));
            for kind in KINDS {
                paths.insert(format!("/{ns}/{kind}/{name}"));
            }
        }
    }
    paths.insert("/v1/models".to_string());
    let authorities = [
        "gw",
        "a.example.com",
        "b.a.example.com",
        "c.a.example.com:8080",
        "LLM.internal.",
    ];
    let mut probes = Vec::new();
    for path in &paths {
        for suffix in [
            "",
            "/z/w",
            "/../z",
            "?q=/..",
            "/.well-known/agent-card.json",
        ] {
            for authority in authorities {
                probes.push((authority, format!("{path}{suffix}")));
            }
        }
    }
    probes
}

/// What a request gets from a plan, with the entry named by its identity
/// (its index is the configuration's order).
fn outcome(plan: &Plan, authority: &str, path: &str) -> String {
    let route = plan.route(authority, path).map(|m| {
        let id = &plan.entries[m.entry].id;
        format!(
            "{id} {:?} prefix={:?} rest={:?} root={:?}",
            m.path, m.prefix, m.rest, m.root
        )
    });
    let pairs = [
        (":method", &b"GET"[..]),
        (":path", path.as_bytes()),
        (":authority", authority.as_bytes()),
        ("x-agent-backend", b"client-pick"),
    ];
    let head = RequestHead::from_pairs(&pairs, &plan.dispatch_header);
    let decision = match decide(plan, &head) {
        Decision::Forward(f) => format!(
            "forward {:?} {:?} {:?}",
            f.entry.map(|i| &plan.entries[i].id),
            f.ops,
            f.card
        ),
        Decision::Reply { entry, reply } => format!(
            "reply {:?} {} {}",
            entry.map(|i| &plan.entries[i].id),
            reply.status,
            unordered_models(&reply.body)
        ),
        Decision::ReadModel => "read model".to_string(),
        Decision::Preflight(reply) => format!("preflight {}", reply.status),
    };
    format!("{route:?} => {decision}")
}

/// `GET /v1/models` lists the models in configuration order (the contract
/// says so): compared as a set.
fn unordered_models(body: &str) -> String {
    let Ok(mut list) = serde_json::from_str::<serde_json::Value>(body) else {
        return body.to_string();
    };
    if let Some(data) = list.get_mut("data").and_then(|d| d.as_array_mut()) {
        data.sort_by_key(|m| m["id"].to_string());
    }
    list.to_string()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn routing_does_not_depend_on_the_order_of_agents(
        (agents, shuffled) in proptest::collection::vec(agent(), 1..6)
            .prop_flat_map(|a| (Just(a.clone()), Just(a).prop_shuffle())),
        layouts in proptest::sample::subsequence(vec!["kind", "namespaced", "shorthand"], 0..=3),
    ) {
        let first = Plan::from_json(config(&agents, &layouts).as_bytes());
        let second = Plan::from_json(config(&shuffled, &layouts).as_bytes());
        let (first, second) = match (first, second) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(_), Err(_)) => return Ok(()),
            (a, b) => panic!(
                "one order compiles, the other does not:\n{:?}\n{:?}",
                a.err(),
                b.err()
            ),
        };
        for (authority, path) in probes() {
            prop_assert_eq!(
                outcome(&first, authority, &path),
                outcome(&second, authority, &path),
                "{} {}", authority, path
            );
        }
        // Models: the same owner whatever the order; only the listing's
        // order is the configuration's (the contract says so).
        let owners = |p: &Plan| -> BTreeSet<(String, String)> {
            p.models.listed(p.entries.as_slice()).map(|(m, e)| (m.to_string(), p.entries[e].id.clone())).collect()
        };
        prop_assert_eq!(owners(&first), owners(&second));
    }
}

// ---------------------------------------------------------------------------
// apply_to keeps every header it does not own byte for byte
// ---------------------------------------------------------------------------

/// Header names: the filter's own and what a client sends besides, with
/// look-alikes (case, underscores, prefixes) that are not the same header.
const HEADER_NAMES: [&str; 16] = [
    ":path",
    ":authority",
    ":method",
    "x-agent-backend",
    "x_agent_backend",
    "x-agent-name",
    "x-agent-namespace",
    "x-agent-kind",
    "x-forwarded-prefix",
    "x-envoy-upstream-rq-timeout-ms",
    "accept-encoding",
    "x-agent-backend-extra",
    "authorization",
    "cookie",
    "x-request-id",
    "content-type",
];

fn header_value() -> impl Strategy<Value = Vec<u8>> {
    // Any bytes Envoy lets through: not UTF-8, spaces, commas, empty.
    proptest::collection::vec(
        any::<u8>().prop_filter("no CR LF NUL", |b| !b"\r\n\0".contains(b)),
        0..24,
    )
}

fn header_pairs() -> impl Strategy<Value = Vec<(&'static str, Vec<u8>)>> {
    proptest::collection::vec(
        (
            proptest::sample::select(HEADER_NAMES.to_vec()),
            header_value(),
        ),
        0..16,
    )
}

/// The pairs whose names no op touches, in order.
fn untouched<'a>(pairs: &[(&'a str, &'a [u8])], ops: &[HeaderOp<'_>]) -> Vec<(&'a str, &'a [u8])> {
    pairs
        .iter()
        .copied()
        .filter(|(name, _)| {
            !ops.iter()
                .any(|op| matches!(op, HeaderOp::Set(n, _) | HeaderOp::Remove(n) if n == name))
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any ops: headers no op names keep their bytes and order; every `Set`
    /// is there once; a removed name is gone unless also set.
    #[test]
    fn apply_to_keeps_headers_no_op_names(
        pairs in header_pairs(),
        ops in proptest::collection::vec(
            (proptest::sample::select(HEADER_NAMES.to_vec()), proptest::option::of("[ -~]{0,12}")),
            0..6,
        ),
    ) {
        let pairs: Vec<(&str, &[u8])> = pairs.iter().map(|(n, v)| (*n, v.as_slice())).collect();
        let ops: Vec<HeaderOp<'_>> = ops
            .iter()
            .map(|(name, value)| match value {
                Some(v) => HeaderOp::Set(name, v.as_str().into()),
                None => HeaderOp::Remove(name),
            })
            .collect();
        let out = apply_to(&pairs, &ops);
        prop_assert_eq!(untouched(&out, &ops), untouched(&pairs, &ops));
        // The rest is exactly the `Set` values: client copies are gone.
        let mut set: Vec<(&str, &[u8])> = ops
            .iter()
            .filter_map(|op| match op {
                HeaderOp::Set(n, v) => Some((*n, v.as_bytes())),
                HeaderOp::Remove(_) => None,
            })
            .collect();
        let kept = untouched(&out, &ops);
        let mut rest: Vec<(&str, &[u8])> = out.iter().copied().filter(|p| !kept.contains(p)).collect();
        set.sort();
        rest.sort();
        prop_assert_eq!(rest, set);
    }

    /// The ops the filter really makes, for any client headers: the headers
    /// it does not own reach the backend exactly as the client sent them.
    #[test]
    fn requests_keep_every_header_the_filter_does_not_own(
        pairs in header_pairs(),
        path in proptest::sample::select(vec![
            "/prod/agent/coordinator/x?y=1", "/customer-service/a", "/raw/b", "/prod/tools",
            "/nowhere", "/prod/echo/.well-known/agent-card.json", "/prod/coordinator/../x",
        ]),
    ) {
        let plan = plan();
        let mut pairs: Vec<(&str, &[u8])> = pairs.iter().map(|(n, v)| (*n, v.as_slice())).collect();
        pairs.retain(|(n, _)| *n != ":path");
        pairs.push((":path", path.as_bytes()));
        let head = RequestHead::from_pairs(&pairs, &plan.dispatch_header);
        let Decision::Forward(f) = decide(plan, &head) else {
            return Ok(());
        };
        let owned = |name: &str| {
            [
                ":path",
                "x-agent-backend",
                "x_agent_backend",
                "x-agent-name",
                "x-agent-namespace",
                "x-agent-kind",
                "x-forwarded-prefix",
                "x-envoy-upstream-rq-timeout-ms",
                "accept-encoding",
            ]
            .contains(&name)
        };
        let out = apply_to(&pairs, &f.ops);
        let not_owned = |list: &[(&str, &[u8])]| -> Vec<(String, Vec<u8>)> {
            list.iter().filter(|(n, _)| !owned(n)).map(|(n, v)| (n.to_string(), v.to_vec())).collect()
        };
        prop_assert_eq!(not_owned(&out), not_owned(&pairs));
        // A client copy of the dispatch header never passes.
        if let Some(e) = f.entry {
            let backends: Vec<&[u8]> = out.iter().filter(|(n, _)| *n == "x-agent-backend").map(|(_, v)| *v).collect();
            prop_assert_eq!(backends, vec![plan.entries[e].backend.as_bytes()]);
        }
    }
}

fn plan() -> &'static Plan {
    thread_local! {
        static PLAN: &'static Plan = Box::leak(Box::new(Plan::from_json(br#"{
            "agents": [
                { "name": "coordinator", "namespace": "prod", "backend": "coordinator",
                  "prefixes": [ { "prefix": "/customer-service" }, { "prefix": "/raw", "rewrite": null } ] },
                { "name": "tools", "namespace": "prod", "kind": "mcp", "backend": "tools" },
                { "name": "echo", "namespace": "prod", "backend": "echo", "protocol": "a2a",
                  "rate_limit": { "tokens_per_minute": 1000 } }
            ]
        }"#).expect("the test plan compiles")));
    }
    PLAN.with(|p| *p)
}

// ---------------------------------------------------------------------------
// Reading `model`: the fast scanner answers as serde_json does

/// JSON-ish bodies: mostly valid OpenAI shapes, with every token the scanner
/// treats specially (escapes, numbers, literals, duplicates, nesting) and
/// stray bytes mixed in.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(&b"\"model\""[..]),
        Just(&b"\"max_tokens\""[..]),
        Just(&b"\"max_completion_tokens\""[..]),
        Just(&b"\"max_output_tokens\""[..]),
        Just(&b"\"messages\""[..]),
        Just(&b"\"gpt-demo\""[..]),
        Just(&b"\"\""[..]),
        Just(&b"\"a\\\"b\\\\c\\u00e9\\n\""[..]),
        Just(&b"\"\\u12g4\""[..]),
        Just(&b"\"\xc3\xa9\xff\""[..]),
        Just(&b"\"tab\there\""[..]),
        Just(&b"100"[..]),
        Just(&b"0"[..]),
        Just(&b"01"[..]),
        Just(&b"-1"[..]),
        Just(&b"1.5e-3"[..]),
        Just(&b"1."[..]),
        Just(&b"18446744073709551616"[..]),
        Just(&b"true"[..]),
        Just(&b"null"[..]),
        Just(&b"nul"[..]),
        Just(&b"{"[..]),
        Just(&b"}"[..]),
        Just(&b"["[..]),
        Just(&b"]"[..]),
        Just(&b":"[..]),
        Just(&b","[..]),
        Just(&b" "[..]),
        Just(&b"\n"[..]),
        Just(&b"\x0c"[..]),
    ];
    let shaped = (
        prop::sample::select(vec!["\"gpt-demo\"", "null", "5", "\"\"", "\"a\\u0062\""]),
        prop::sample::select(vec![
            "",
            ",\"max_tokens\":100",
            ",\"max_tokens\":1.5",
            ",\"max_tokens\":7,\"max_tokens\":8",
        ]),
        "[a-z \\\\\"]{0,40}",
        any::<bool>(),
    )
        .prop_map(|(model, limit, content, model_last)| {
            let messages =
                format!("\"messages\":[{{\"role\":\"user\",\"content\":\"{content}\"}}]");
            let model = format!("\"model\":{model}");
            let body = if model_last {
                format!("{{{messages}{limit},{model}}}")
            } else {
                format!("{{{model},{messages}{limit}}}")
            };
            body.into_bytes()
        });
    prop_oneof![
        shaped,
        prop::collection::vec(token, 0..24).prop_map(|tokens| tokens.concat()),
        prop::collection::vec(any::<u8>(), 0..64),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn the_fast_model_reader_answers_as_serde_json(body in body()) {
        prop_assert_eq!(
            agentroute::openai::read_body(&body),
            agentroute::openai::read_body_with_serde(&body)
        );
    }
}
