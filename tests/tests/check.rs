//! `agentroute check --explain` against a real Envoy: for the routing tests'
//! cases, what the explanation says (entry, upstream path, prefix header,
//! local reply) is what Envoy with the built plugin does. The configuration
//! explained is the one `check` finds in the very bootstrap Envoy runs.

use std::path::Path;

use agentroute_cli::check::{self, ExplainRequest, Explanation, Outcome};
use agentroute_tests::{spawn_agent, Gateway, GatewayConfig};

/// The configuration of tests/routing.rs.
const CONFIG: &str = r#"{
  "agents": [
    { "name": "coordinator", "namespace": "prod", "backend": "coordinator", "timeout": "300s",
      "hosts": ["coordinator.example.com", "*.coord.example.com"],
      "prefixes": [ { "prefix": "/customer-service", "rewrite": "/" },
                    { "prefix": "/api/v2", "rewrite": "/internal/api" },
                    { "prefix": "/raw", "rewrite": null } ] },
    { "name": "researcher", "namespace": "prod", "backend": "researcher", "timeout": "0s",
      "prefixes": [ { "prefix": "/customer-service/research" } ] },
    { "name": "tools", "namespace": "prod", "kind": "mcp", "backend": "tools" },
    { "name": "llm", "namespace": "models", "kind": "modelapi", "backend": "llm" },
    { "name": "twin", "namespace": "a", "backend": "researcher" },
    { "name": "twin", "namespace": "b", "backend": "tools" },
    { "name": "slow", "namespace": "prod", "backend": "slow", "timeout": "500ms" }
  ]
}"#;

/// `(host, path)` of the routing tests: layouts, explicit prefixes, hosts,
/// dot-segments, and requests no entry matches.
const CASES: &[(&str, &str)] = &[
    // layouts
    ("gw", "/prod/agent/coordinator/tasks/1?x=1&y=2"),
    ("gw", "/prod/agent/coordinator"),
    ("gw", "/prod/agent/coordinator/"),
    ("gw", "/prod/agent/coordinator?q=1"),
    ("gw", "/prod/agent/coordinator//x"),
    ("gw", "/prod/mcp/tools/mcp"),
    ("gw", "/models/modelapi/llm/v1/chat"),
    ("gw", "/prod/coordinator/a/b"),
    ("gw", "/prod/tools"),
    ("gw", "/coordinator/.well-known/agent-card.json"),
    ("gw", "/llm"),
    ("gw", "/a/twin/x"),
    ("gw", "/b/agent/twin/x"),
    // explicit prefixes, longest wins
    ("gw", "/customer-service/orders?id=7"),
    ("gw", "/customer-service"),
    ("gw", "/api/v2/users"),
    ("gw", "/raw/keep/me?x"),
    ("gw", "/customer-service/research/q"),
    ("gw", "/customer-service/researchers"),
    // hosts
    ("coordinator.example.com", "/prod/mcp/tools/x?y=1"),
    ("Coordinator.Example.COM:8443", "/anything"),
    ("eu.coord.example.com", "/a"),
    ("x.eu.coord.example.com", "/a/b"),
    ("coord.example.com", "/zzz"),
    // dot-segments
    ("gw", "/coordinator/../admin"),
    ("gw", "/prod/agent/coordinator/.."),
    ("gw", "/prod/coordinator/./x"),
    ("gw", "/prod/agent/coordinator/%2e%2e/admin"),
    ("gw", "/customer-service/a/..%2fb"),
    ("gw", "/raw/../admin"),
    ("gw", "/prod/agent/coordinator/x/..;param/y"),
    ("gw", "/coordinator/a..b"),
    ("gw", "/coordinator/x?next=/../y"),
    // unmatched
    ("gw", "/twin/x"),
    ("gw", "/prod/agent/coordinatorx"),
    ("gw", "/Prod/agent/coordinator"),
    ("gw", "/prod/agent"),
    ("gw", "/nobody"),
];

/// Starts Envoy on `config` and returns it with the plan `check` finds in
/// the bootstrap Envoy was given.
async fn gateway(config: &str) -> (Gateway, agentroute::config::Plan) {
    let mut cfg = GatewayConfig::new(config);
    for name in ["coordinator", "researcher", "tools", "llm", "slow"] {
        cfg = cfg.cluster(name, spawn_agent(name).await);
    }
    let bootstrap = cfg.bootstrap(Path::new("unused")).to_string();
    let scan = check::scan(&bootstrap).expect("the bootstrap reads");
    assert_eq!(scan.configs.len(), 1, "{scan:?}");
    let plan = scan.configs[0]
        .compile()
        .expect("the configuration compiles");
    (Gateway::start(cfg).await, plan)
}

fn explain(plan: &agentroute::config::Plan, host: &str, path: &str) -> Explanation {
    check::explain(
        plan,
        &ExplainRequest {
            method: "GET".into(),
            path: path.into(),
            host: host.into(),
            ..ExplainRequest::default()
        },
    )
}

/// Sends each case to Envoy and compares with the explanation.
async fn compare(gw: &Gateway, plan: &agentroute::config::Plan, cases: &[(&str, &str)]) {
    for &(host, path) in cases {
        let e = explain(plan, host, path);
        let r = gw.request("GET", path, &[("host", host)], "").await;
        let case = format!("{host}{path}\n{e}");
        match &e.outcome {
            Outcome::Forward { headers, .. } => match &e.entry {
                Some(entry) => {
                    assert_eq!(r.status, 200, "{case}: {}", r.text());
                    let v = r.json();
                    assert_eq!(
                        (v["agent"].as_str(), v["path"].as_str()),
                        (Some(entry.backend.as_str()), e.upstream_path()),
                        "{case}"
                    );
                    let set = |name: &str| {
                        headers.iter().find_map(|(n, v)| match v {
                            Some(v) if n == name => Some(v.as_str()),
                            _ => None,
                        })
                    };
                    for name in ["x-forwarded-prefix", "x-agent-name", "x-agent-namespace"] {
                        assert_eq!(v["headers"][name].as_str(), set(name), "{case}: {name}");
                    }
                }
                // Unmatched, passed on: the bootstrap's catch-all answers.
                None => assert_eq!(
                    (r.status, r.text().as_str()),
                    (404, "no agent route\n"),
                    "{case}"
                ),
            },
            Outcome::Reply { status, code, .. } => {
                assert_eq!(u32::from(r.status), *status, "{case}: {}", r.text());
                assert_eq!(
                    r.json()["error"]["code"].as_str(),
                    code.as_deref(),
                    "{case}"
                );
                assert!(r.header("x-served-by").is_none(), "{case}: forwarded");
            }
            Outcome::NeedsModel => panic!("{case}: no OpenAI case here"),
        }
    }
}

#[tokio::test]
async fn explain_says_what_envoy_does_for_the_routing_cases() {
    let (gw, plan) = gateway(CONFIG).await;
    compare(&gw, &plan, CASES).await;
    // The cases cover every outcome.
    let outcomes: Vec<Explanation> = CASES.iter().map(|(h, p)| explain(&plan, h, p)).collect();
    assert!(outcomes.iter().any(|e| e.entry.is_none()));
    assert!(outcomes
        .iter()
        .any(|e| matches!(e.outcome, Outcome::Reply { status: 400, .. })));
    assert!(outcomes
        .iter()
        .any(|e| e.matched_by.as_deref() == Some("host")));
}

#[tokio::test]
async fn explain_says_what_envoy_does_when_unmatched_requests_are_rejected() {
    let config = CONFIG.replacen('{', r#"{ "unmatched": "reject","#, 1);
    let (gw, plan) = gateway(&config).await;
    let cases = [
        ("gw", "/nobody/home"),
        ("gw", "/twin/x"),
        ("gw", "/prod/tools/x"),
    ];
    assert!(matches!(
        explain(&plan, "gw", "/nobody/home").outcome,
        Outcome::Reply { status: 404, .. }
    ));
    compare(&gw, &plan, &cases).await;
}
