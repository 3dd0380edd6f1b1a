//! One request head through the filter (`RequestHead::from_pairs`,
//! `decide`, `decide_model`, `apply_to`) and the header map encoding
//! (`wire`). The input is a header block, one `name: value` a line. No
//! client copy of a header the filter owns survives; every other header
//! keeps its bytes and order; a matched request names its entry's backend
//! exactly once; a local reply is an error with a JSON body.
#![no_main]

use agentroute::config::Plan;
use agentroute::request::{
    apply_to, decide, decide_model, Decision, Forward, HeaderOp, RequestHead,
};
use agentroute::wire;
use agentroute_fuzz::CONFIG;
use libfuzzer_sys::fuzz_target;

const IDENTITY: [&str; 3] = ["x-agent-name", "x-agent-namespace", "x-agent-kind"];
/// Headers a decision may set or remove besides the dispatch and identity
/// headers (an A2A translation replaces the body and its headers).
const OTHER_OWNED: [&str; 9] = [
    ":path",
    // Envoy's attempt count, which failover's retries read.
    "x-envoy-attempt-count",
    "x-forwarded-prefix",
    "x-envoy-upstream-rq-timeout-ms",
    "accept-encoding",
    "content-length",
    "content-type",
    "accept",
    "a2a-version",
];

thread_local! {
    // libFuzzer runs the target on one thread; a plan is not `Sync`.
    static PLANS: &'static [Plan; 2] = Box::leak(Box::new([
        Plan::from_json(CONFIG.as_bytes()).expect("the fuzz configuration compiles"),
        Plan::from_json(
            CONFIG
                .replacen(
                    '{',
                    r#"{"identity_headers": false, "unmatched": "reject", "dispatch_header": "x-route-to",
                        "cors": {"allow_origins": ["https://dash.example.com", "https://*.example.com"]},"#,
                    1,
                )
                .as_bytes(),
        )
        .expect("the variant compiles"),
    ]));
}

fuzz_target!(|data: &[u8]| {
    // The raw bytes as a serialised header map: refused or read, never a trap.
    if let Some(pairs) = wire::parse(data) {
        assert_eq!(wire::parse(&wire::serialize(&pairs)), Some(pairs));
    }

    let names: Vec<String>;
    let mut values = Vec::new();
    {
        let mut n = Vec::new();
        for line in data.split(|&b| b == b'\n') {
            // `:path: /x` splits after the pseudo-header's own colon.
            let from = usize::from(line.first() == Some(&b':'));
            let Some(colon) = line.iter().skip(from).position(|&b| b == b':') else {
                continue;
            };
            let (name, value) = line.split_at(from + colon);
            let Ok(name) = std::str::from_utf8(name) else {
                continue;
            };
            let value = &value[1..];
            // Envoy hands the filter lowercase names and trimmed values.
            n.push(name.trim().to_ascii_lowercase());
            values.push(value.strip_prefix(b" ").unwrap_or(value));
        }
        names = n;
    }
    let pairs: Vec<(&str, &[u8])> = names.iter().map(String::as_str).zip(values).collect();
    assert_eq!(wire::parse(&wire::serialize(&pairs)), Some(pairs.clone()));

    for plan in PLANS.with(|p| *p) {
        let head = RequestHead::from_pairs(&pairs, &plan.dispatch_header);
        match decide(plan, &head) {
            Decision::Forward(f) => check_forward(plan, &pairs, &f),
            Decision::Reply { reply, .. } => check_reply(reply.status, &reply.body),
            Decision::Preflight(reply) => check_preflight(&head, &reply),
            Decision::ReadModel => {
                let models = plan.models.listed(plan.entries.as_slice()).map(|(id, _)| id);
                for model in models.chain(["no-such-model", ""]) {
                    match decide_model(plan, &head, Ok(model)) {
                        Decision::Forward(f) => {
                            assert_eq!(f.entry, plan.model_entry(model));
                            check_forward(plan, &pairs, &f);
                        }
                        Decision::Reply { reply, .. } => check_reply(reply.status, &reply.body),
                        Decision::ReadModel => panic!("asked for the model twice"),
                        Decision::Preflight(_) => panic!("a preflight after its model"),
                    }
                }
            }
        }
    }
});

/// A preflight is answered 204 echoing its origin, or 403 with no
/// `access-control-*` header at all.
fn check_preflight(head: &RequestHead<'_>, reply: &agentroute::reply::LocalReply) {
    let acao = reply
        .headers
        .iter()
        .find(|(k, _)| *k == "access-control-allow-origin")
        .map(|(_, v)| v.as_str());
    match reply.status {
        204 => assert_eq!(acao, head.origin, "{:?}", reply.headers),
        403 => assert!(
            reply.headers.iter().all(|(k, _)| !k.starts_with("access-control-")),
            "{:?}",
            reply.headers
        ),
        other => panic!("preflight answered {other}"),
    }
}

fn check_reply(status: u32, body: &str) {
    assert!(
        (400..500).contains(&status) || status == 200,
        "status {status}"
    );
    let v: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
    if status != 200 {
        assert!(v["error"]["message"].is_string(), "{body}");
    }
}

/// `name` spelled with `_` for some `-`: CGI-style backends read it as
/// the header itself.
fn same_for_cgi(name: &str, owned: &str) -> bool {
    name.len() == owned.len()
        && name
            .bytes()
            .zip(owned.bytes())
            .all(|(n, o)| n == o || (o == b'-' && n == b'_'))
}

/// The backend of the side the request went to.
fn backend_of<'p>(e: &'p agentroute::config::Entry, f: &Forward<'_>) -> &'p str {
    match (&e.canary, &f.canary) {
        (Some(c), Some(choice)) if choice.side == agentroute::canary::Side::Canary => &c.backend,
        _ => &e.backend,
    }
}

fn check_forward(plan: &Plan, pairs: &[(&str, &[u8])], f: &Forward<'_>) {
    let owned = |name: &str| {
        OTHER_OWNED.contains(&name)
            || IDENTITY
                .iter()
                .chain(&["x-forwarded-prefix", "x-envoy-upstream-rq-timeout-ms"])
                .any(|h| same_for_cgi(name, h))
            || same_for_cgi(name, &plan.dispatch_header)
            // Failover's slot headers (any number): client copies never pass.
            || agentroute::failover::is_slot_header(name, &plan.dispatch_header)
    };
    for op in &f.ops {
        let (HeaderOp::Set(name, _) | HeaderOp::Remove(name)) = op;
        assert!(
            owned(name),
            "an op on {name:?}, which the filter does not own"
        );
    }
    let out = apply_to(pairs, &f.ops);

    // Every header no op names keeps its bytes and its order.
    let touched = |name: &str| {
        f.ops
            .iter()
            .any(|op| matches!(op, HeaderOp::Set(n, _) | HeaderOp::Remove(n) if *n == name))
    };
    let kept: Vec<&(&str, &[u8])> = pairs.iter().filter(|(n, _)| !touched(n)).collect();
    let untouched: Vec<&(&str, &[u8])> = out.iter().filter(|(n, _)| !touched(n)).collect();
    assert_eq!(untouched, kept, "headers the filter does not own");

    // What a client sent in the filter's own headers never passes.
    let entry = f.entry.and_then(|i| plan.entries.get(i));
    for (name, value) in &out {
        let dispatch = same_for_cgi(name, &plan.dispatch_header);
        let identity = IDENTITY.iter().any(|h| same_for_cgi(name, h));
        if !(dispatch || identity) {
            continue;
        }
        let e = entry.unwrap_or_else(|| panic!("client {name:?} passed on an unmatched request"));
        let expected = match *name {
            n if n == plan.dispatch_header => backend_of(e, f),
            "x-agent-name" if plan.identity_headers => e.name(),
            "x-agent-namespace" if plan.identity_headers => e.namespace(),
            "x-agent-kind" if plan.identity_headers => e.kind.as_str(),
            other => panic!("client {other:?} passed"),
        };
        assert_eq!(*value, expected.as_bytes(), "{name}");
    }
    if let Some(e) = entry {
        let dispatch: Vec<_> = out
            .iter()
            .filter(|(n, _)| *n == plan.dispatch_header)
            .collect();
        assert_eq!(dispatch.len(), 1, "one {}", plan.dispatch_header);
        assert_eq!(dispatch[0].1, backend_of(e, f).as_bytes());
        assert_eq!(f.canary.is_some(), e.canary.is_some(), "a split entry says its side");
        let paths = out.iter().filter(|(n, _)| *n == ":path").count();
        assert!(paths <= 1.max(pairs.iter().filter(|(n, _)| *n == ":path").count()));
    }
}
