//! `make bench` part: what the filter's own code costs per request, natively,
//! step by step (header map parsing, the decision, building the header
//! changes), at 10 and 10,000 agents. The wasm side is this times the
//! wasm/native factor; the rest of a request's cost is host calls and Envoy,
//! which the floor filters measure. Prints one JSON object per line.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use agentroute::canary::{self, By, Canary, NoClient};
use agentroute::concurrency;
use agentroute::config::Plan;
use agentroute::openai::read_body;
use agentroute::ratelimit::{acquire, BucketSpec, SharedStore, StoreError};
use agentroute::request::{apply_to, decide, decide_model, Decision, RequestHead};
use agentroute::wire;

/// Median nanoseconds per call over `rounds` timed batches.
fn time(rounds: usize, iters: usize, mut f: impl FnMut()) -> f64 {
    let mut samples: Vec<f64> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples.get(samples.len() / 2).copied().unwrap_or(f64::NAN)
}

fn plan(n: usize) -> Result<Plan, String> {
    let agents: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"name":"agent-{i}","namespace":"ns-{}","backend":"upstream","models":["model-{i}"]}}"#,
                i % 100
            )
        })
        .collect();
    Plan::from_json(format!(r#"{{"agents":[{}]}}"#, agents.join(",")).as_bytes())
        .map_err(|e| e.to_string())
}

/// The headers wrk sends, as Envoy hands them to the filter.
fn request_map(path: &str) -> Vec<u8> {
    let pairs: Vec<(&str, &[u8])> = vec![
        (":authority", b"127.0.0.1:10000"),
        (":path", path.as_bytes()),
        (":method", b"GET"),
        (":scheme", b"http"),
        ("x-forwarded-proto", b"http"),
        ("x-request-id", b"8c4a7c43-51b2-4b0e-9f70-3b1e8f3c2d11"),
        ("x-envoy-expected-rq-timeout-ms", b"15000"),
    ];
    wire::serialize(&pairs)
}

#[derive(Default)]
struct Memory(RefCell<HashMap<String, (Vec<u8>, u32)>>);

impl SharedStore for Memory {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        Ok(match self.0.borrow().get(key) {
            Some((v, n)) => (Some(v.clone()), Some(*n)),
            None => (None, None),
        })
    }

    fn set(&self, key: &str, value: &[u8], _cas: Option<u32>) -> Result<(), StoreError> {
        let mut map = self.0.borrow_mut();
        let next = map.get(key).map_or(1, |(_, n)| n + 1);
        map.insert(key.to_string(), (value.to_vec(), next));
        Ok(())
    }
}

fn report(case: &str, ns: f64) {
    println!(r#"{{"case": "{case}", "ns": {ns:.1}}}"#);
}

fn main() -> Result<(), String> {
    let (rounds, iters) = (15, 20_000);
    for n in [10usize, 10_000] {
        let plan = plan(n)?;
        let path = format!("/ns-{}/agent/agent-{}/x", (n - 1) % 100, n - 1);
        let raw = request_map(&path);
        let pairs = wire::parse(&raw).ok_or("header map")?;
        report(
            &format!("parse header map ({n} agents)"),
            time(rounds, iters, || {
                black_box(wire::parse(black_box(&raw)));
            }),
        );
        report(
            &format!("read the request head ({n} agents)"),
            time(rounds, iters, || {
                black_box(RequestHead::from_pairs(
                    black_box(&pairs),
                    "x-agent-backend",
                ));
            }),
        );
        let head = RequestHead::from_pairs(&pairs, "x-agent-backend");
        report(
            &format!("decide, layout path, last agent ({n} agents)"),
            time(rounds, iters, || {
                black_box(decide(&plan, black_box(&head)));
            }),
        );
        report(
            &format!("whole request: parse + head + decide ({n} agents)"),
            time(rounds, iters, || {
                if let Some(pairs) = wire::parse(black_box(&raw)) {
                    let head = RequestHead::from_pairs(&pairs, "x-agent-backend");
                    black_box(decide(&plan, &head));
                }
            }),
        );
        let Decision::Forward(forward) = decide(&plan, &head) else {
            return Err(format!("{path} does not route"));
        };
        report(
            &format!("whole map rebuilt for one set_header_map_pairs ({n} agents)"),
            time(rounds, iters, || {
                black_box(wire::serialize(&apply_to(black_box(&pairs), &forward.ops)));
            }),
        );
    }
    let plan = plan(10)?;
    let unmatched = request_map("/nothing/here");
    let pairs = wire::parse(&unmatched).ok_or("header map")?;
    let head = RequestHead::from_pairs(&pairs, "x-agent-backend");
    report(
        "decide, unmatched (10 agents)",
        time(rounds, iters, || {
            black_box(decide(&plan, black_box(&head)));
        }),
    );
    let body =
        br#"{"model":"model-3","messages":[{"role":"user","content":"hello"}],"max_tokens":100}"#;
    report(
        "read model from a 90-byte body",
        time(rounds, iters, || {
            black_box(read_body(black_box(body)));
        }),
    );
    let post = request_map("/v1/chat/completions");
    let pairs = wire::parse(&post).ok_or("header map")?;
    let head = RequestHead::from_pairs(&pairs, "x-agent-backend");
    report(
        "decide_model (10 agents)",
        time(rounds, iters, || {
            black_box(decide_model(&plan, &head, Ok(black_box("model-3"))));
        }),
    );
    let store = Memory::default();
    let spec = BucketSpec {
        capacity: 1e9,
        rate_per_second: 1e9,
    };
    let mut now = 1_000_000_000u64;
    report(
        "token bucket acquire (in-memory store)",
        time(rounds, iters, || {
            now += 1000;
            black_box(acquire(&store, "agentroute/p/ns/a/requests", spec, 1.0, now).ok());
        }),
    );
    // The traffic policies' own steps.
    let split = Canary {
        backend: "v2".into(),
        threshold: 1_000,
        by: By::Header("x-user-id".into()),
        header: Some("x-canary".into()),
        key: agentroute::canary::COHORT_KEY,
    };
    let user: [(&str, &[u8]); 2] = [("x-user-id", b"user-1234"), ("accept", b"*/*")];
    report(
        "canary side of a request (by header)",
        time(rounds, iters, || {
            black_box(canary::choose(
                &split,
                "prod/agent",
                black_box(&user),
                &NoClient,
            ));
        }),
    );
    let cors = Plan::from_json(
        br#"{"cors":{"allow_origins":["https://dash.example.com","https://*.apps.example.com"]},
            "agents":[{"name":"a","backend":"b"}]}"#,
    )
    .map_err(|e| e.to_string())?;
    let policy = cors.entry_cors(0).ok_or("a policy")?;
    report(
        "CORS headers of an answer (wildcard origin)",
        time(rounds, iters, || {
            black_box(policy.answer(black_box("https://x.apps.example.com")));
        }),
    );
    report(
        "CORS preflight answer",
        time(rounds, iters, || {
            black_box(policy.preflight(
                black_box("https://dash.example.com"),
                "POST",
                Some("content-type"),
            ));
        }),
    );
    let tables = Memory::default();
    report(
        "in-flight admit + release (in-memory store)",
        time(rounds, iters, || {
            let key = "agentroute/p/ns/a/inflight";
            black_box(concurrency::admit(&tables, key, 1_000, 7, 0, 1_000).ok());
            black_box(concurrency::publish(&tables, key, 7, 0, 1_000).ok());
        }),
    );
    Ok(())
}
