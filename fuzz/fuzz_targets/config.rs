//! Configuration parse + compile (`Plan::from_json`): never a panic, the
//! same answer every time, a refusal that says something; and a plan that
//! compiles routes what it promises: each entry's kind and namespaced layout
//! paths reach that entry, every model id dispatches to its entry, and
//! `GET /v1/models` lists them all.
#![no_main]

use agentroute::config::{Layout, Plan};
use agentroute::openai::models_body;
use agentroute::request::{decide, decide_model, Decision, RequestHead};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let plan = match Plan::from_json(data) {
        Ok(plan) => plan,
        Err(e) => {
            assert!(!e.message.is_empty(), "a refusal without a reason");
            let again = Plan::from_json(data).expect_err("refused once, refused again");
            assert_eq!(again, e, "the same refusal");
            return;
        }
    };
    let again = Plan::from_json(data).expect("compiled once, compiles again");
    assert_eq!(again.entries, plan.entries);
    let listed = |p: &Plan| -> Vec<(String, usize)> {
        p.models.listed(p.entries.as_slice()).map(|(id, e)| (id.to_string(), e)).collect()
    };
    assert_eq!(listed(&again), listed(&plan));

    let raw = Plan::read_contract(data).expect("a plan's contract reads");
    // With `gateway_hosts`, paths answer on those hosts only: the probes
    // below use no host.
    let layouts = match raw.gateway_hosts {
        Some(_) => Vec::new(),
        None => raw.layouts.unwrap_or_else(|| Layout::ALL.to_vec()),
    };
    for (i, e) in plan.entries.iter().enumerate() {
        let mut paths = Vec::new();
        if layouts.contains(&Layout::Kind) {
            paths.push(format!("/{}/{}/{}", e.namespace(), e.kind.as_str(), e.name()));
        }
        if layouts.contains(&Layout::Namespaced) {
            paths.push(format!("/{}/{}", e.namespace(), e.name()));
        }
        for path in paths {
            // No host is empty: this authority matches none.
            let m = plan.route("", &path);
            assert_eq!(m.map(|m| m.entry), Some(i), "{path} routes to {}", e.id);
            let card = format!("{path}/.well-known/agent-card.json");
            let dots = format!("{path}/x/%2e%2e/admin");
            for (method, path) in [("GET", card.as_str()), ("POST", dots.as_str())] {
                let pairs = [(":method", method.as_bytes()), (":path", path.as_bytes())];
                let head = RequestHead::from_pairs(&pairs, &plan.dispatch_header);
                match (decide(&plan, &head), path == dots) {
                    (Decision::Forward(f), false) => assert_eq!(f.entry, Some(i)),
                    (Decision::Reply { entry, reply }, true) => {
                        assert_eq!((entry, reply.status), (Some(i), 400))
                    }
                    (other, _) => panic!("{method} {path}: {other:?}"),
                }
            }
        }
    }

    assert!(
        plan.models.len() >= listed(&plan).len(),
        "listed model ids are unique"
    );
    let pairs = [
        (":method", &b"POST"[..]),
        (":path", b"/v1/chat/completions"),
        ("content-type", b"application/json"),
    ];
    let head = RequestHead::from_pairs(&pairs, &plan.dispatch_header);
    for (id, entry) in listed(&plan) {
        let id = id.as_str();
        assert_eq!(plan.model_entry(id), Some(entry));
        match decide_model(&plan, &head, Ok(id)) {
            Decision::Forward(f) => assert_eq!(f.entry, Some(entry), "model {id}"),
            other => panic!("model {id}: {other:?}"),
        }
    }
    let list: Value = serde_json::from_str(models_body(&plan)).expect("/v1/models is JSON");
    let data = list["data"].as_array().expect("a list");
    assert_eq!(data.len(), listed(&plan).len());
});
