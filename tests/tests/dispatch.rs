//! Dispatch on Istio and Envoy Gateway through a `cluster_header` route
//! (istio/large/, envoy/gateway/large/), and the dispatch header removed by
//! Envoy before routing (the shipped envoy/*.yaml,
//! istio/envoyfilter-early-header-removal.yaml,
//! envoy/gateway/clienttrafficpolicy-early-header-removal.yaml).
//!
//! The shipped manifests are read, not copied: the plugin configuration, the
//! route the EnvoyFilter / EnvoyPatchPolicy inserts, the HTTPRoute rules (the
//! clusters each controller creates from them, under the names it gives
//! them) and the early header removal each controller writes from its
//! manifest go into the Envoy configuration the harness builds in that
//! controller's shape.

use std::path::PathBuf;

use agentroute_tests::serde_json::{json, Value};
use agentroute_tests::{
    early_header_removal, json_to_metadata, spawn_agent, try_send, workspace_root, Dispatch,
    Failure, Gateway, GatewayConfig, Shape, BACKENDS_HOST,
};
use bytes::Bytes;

/// Every YAML document of a shipped file, as JSON (.venv's PyYAML).
fn manifest(file: &str) -> Vec<Value> {
    let out = std::process::Command::new(workspace_root().join(".venv/bin/python"))
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))",
        ])
        .arg(workspace_root().join(file))
        .output()
        .expect("run .venv/bin/python (make setup installs pyyaml)");
    assert!(
        out.status.success(),
        "{file}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    agentroute_tests::serde_json::from_slice(&out.stdout).expect("JSON")
}

fn kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// An HTTPRoute rule leading to one Service port, as a controller sees it.
struct Rule {
    /// The cluster the controller creates for it.
    cluster: String,
    /// The value of x-agent-backend the rule matches.
    value: String,
    service: String,
}

/// The agents' rules of the HTTPRoutes in `docs`, with the cluster names
/// Istio (`outbound|PORT||SERVICE.NS.svc.cluster.local`) or Envoy Gateway
/// (`httproute/NS/ROUTE/rule/INDEX`) give them. Rules without a header match
/// (Envoy Gateway's catch-all) are left out.
fn rules(docs: &[Value], shape: Shape) -> Vec<Rule> {
    let mut out = Vec::new();
    for route in kind(docs, "HTTPRoute") {
        let ns = route["metadata"]["namespace"].as_str().expect("namespace");
        let name = route["metadata"]["name"].as_str().expect("name");
        for (i, rule) in route["spec"]["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .enumerate()
        {
            let Some(header) = rule["matches"][0]["headers"]
                .as_array()
                .and_then(|h| h.iter().find(|h| h["name"] == "x-agent-backend"))
            else {
                continue;
            };
            let backend = &rule["backendRefs"][0];
            let service = backend["name"].as_str().expect("backendRef name");
            let cluster = match shape {
                Shape::Istio => format!(
                    "outbound|{}||{service}.{}.svc.cluster.local",
                    backend["port"],
                    backend["namespace"].as_str().unwrap_or(ns)
                ),
                _ => format!("httproute/{ns}/{name}/rule/{i}"),
            };
            out.push(Rule {
                cluster,
                value: header["value"].as_str().expect("value").to_string(),
                service: service.to_string(),
            });
        }
    }
    out
}

/// The shipped large-deployment wiring of `shape`: plugin configuration,
/// the patched-in route, the rules, and the early header removal the
/// controller writes from its manifest.
struct Large {
    config: String,
    route: Value,
    rules: Vec<Rule>,
    early: Value,
}

fn large(shape: Shape) -> Large {
    match shape {
        Shape::Istio => {
            let plugin = manifest("istio/large/wasmplugin.yaml");
            let filter = manifest("istio/large/envoyfilter-dispatch-route.yaml");
            let patch = &filter[0]["spec"]["configPatches"][0];
            assert_eq!(
                (&patch["applyTo"], &patch["patch"]["operation"]),
                (&json!("HTTP_ROUTE"), &json!("INSERT_FIRST"))
            );
            let early = manifest("istio/envoyfilter-early-header-removal.yaml");
            let merged = &early[0]["spec"]["configPatches"][0]["patch"];
            assert_eq!(merged["operation"], "MERGE");
            Large {
                config: plugin[0]["spec"]["pluginConfig"].to_string(),
                route: patch["patch"]["value"].clone(),
                rules: rules(&manifest("istio/large/httproutes.yaml"), shape),
                early: merged["value"]["typed_config"]["early_header_mutation_extensions"].clone(),
            }
        }
        _ => {
            let policy = manifest("envoy/gateway/large/extensionpolicy.yaml");
            let patch = manifest("envoy/gateway/large/patchpolicy-dispatch-route.yaml");
            let op = &patch[0]["spec"]["jsonPatches"][0]["operation"];
            assert_eq!(
                (&op["op"], &op["jsonPath"], &op["path"]),
                (
                    &json!("add"),
                    &json!("$.virtual_hosts[*]"),
                    &json!("/routes/0")
                )
            );
            // Envoy Gateway writes `remove` as one HeaderMutation rule each
            // (internal/xds/translator: buildEarlyHeaderMutation).
            let ctp = manifest("envoy/gateway/clienttrafficpolicy-early-header-removal.yaml");
            let removed: Vec<Value> = ctp[0]["spec"]["headers"]["earlyRequestHeaders"]["remove"]
                .as_array()
                .expect("remove")
                .iter()
                .map(|h| json!({ "remove": h }))
                .collect();
            let mut early = early_header_removal("x-agent-backend");
            early[0]["typed_config"]["mutations"] = json!(removed);
            Large {
                config: policy[0]["spec"]["wasm"][0]["config"].to_string(),
                route: op["value"].clone(),
                rules: rules(&manifest("envoy/gateway/large/httproutes.yaml"), shape),
                early,
            }
        }
    }
}

/// What `agentroute generate --dispatch cluster-header` writes for the
/// KAOS multi-agent sample, read as the shipped wiring is.
fn generated(shape: Shape) -> Large {
    use agentroute_cli::generate::{self, Dispatch, Options, Target};
    let file = "cli/tests/fixtures/kaos/multi-agent-mcp.yaml";
    let text = std::fs::read_to_string(workspace_root().join(file)).expect("fixture");
    let target = if shape == Shape::Istio {
        Target::Istio
    } else {
        Target::EnvoyGateway
    };
    let options = Options {
        target,
        dispatch: Dispatch::ClusterHeader,
        image: Some("registry.example.com/agentroute:1".to_string()),
        ..Options::default()
    };
    let out = generate::generate(&[(file.to_string(), text)], &options).expect("generate");
    let docs = agentroute_cli::check::documents(&out.text).expect("YAML");
    let named = |name: &str| {
        docs.iter()
            .find(|d| d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in\n{}", out.text))
            .clone()
    };
    if shape == Shape::Istio {
        let early = named("agentroute-early-header-removal");
        Large {
            config: named("agentroute")["spec"]["pluginConfig"].to_string(),
            route: named("agentroute-dispatch-route")["spec"]["configPatches"][0]["patch"]["value"]
                .clone(),
            rules: rules(&docs, shape),
            early: early["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]
                ["early_header_mutation_extensions"]
                .clone(),
        }
    } else {
        Large {
            config: named("agentroute")["spec"]["wasm"][0]["config"].to_string(),
            route: named("agentroute-dispatch-route")["spec"]["jsonPatches"][0]["operation"]
                ["value"]
                .clone(),
            rules: rules(&docs, shape),
            early: early_header_removal("x-agent-backend"),
        }
    }
}

const SHAPES: [Shape; 2] = [Shape::Istio, Shape::EnvoyGateway];

/// What a client got: status and the agent that answered.
async fn outcome(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> (u16, Option<String>) {
    match try_send(gw.addr, "GET", path, headers, Bytes::new()).await {
        Ok(r) => (r.status, r.header("x-served-by").map(str::to_string)),
        Err(_) => (0, None),
    }
}

fn served(agent: &str) -> (u16, Option<String>) {
    (200, Some(agent.to_string()))
}

/// The manifests agree with themselves: each agent rule matches the cluster
/// name its controller gives it, on the agents' own host, and every backend
/// of the plugin configuration is one of those clusters.
#[test]
fn large_wiring_backends_are_the_controllers_cluster_names() {
    for shape in SHAPES {
        let large = large(shape);
        assert!(!large.rules.is_empty(), "{shape:?}");
        for rule in &large.rules {
            assert_eq!(rule.value, rule.cluster, "{shape:?}: {}", rule.service);
        }
        let config: Value = agentroute_tests::serde_json::from_str(&large.config).expect("config");
        for agent in config["agents"].as_array().expect("agents") {
            let backend = agent["backend"].as_str().expect("backend");
            assert!(
                large.rules.iter().any(|r| r.cluster == backend),
                "{shape:?}: {backend} is no rule's cluster"
            );
        }
    }
    for file in [
        "istio/large/httproutes.yaml",
        "envoy/gateway/large/httproutes.yaml",
    ] {
        for route in kind(&manifest(file), "HTTPRoute") {
            let has_header_rules = route["spec"]["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|r| r["matches"][0]["headers"][0]["name"] == "x-agent-backend");
            if has_header_rules {
                assert_eq!(
                    route["spec"]["hostnames"],
                    json!([BACKENDS_HOST]),
                    "{file}: {}",
                    route["metadata"]["name"]
                );
            }
        }
    }
}

async fn large_gateway(shape: Shape, dispatch: Dispatch) -> (Gateway, Large) {
    wired_gateway(large(shape), shape, dispatch).await
}

async fn wired_gateway(large: Large, shape: Shape, dispatch: Dispatch) -> (Gateway, Large) {
    let mut cfg = GatewayConfig::new(large.config.clone())
        .shape(shape)
        .dispatch(dispatch);
    for rule in &large.rules {
        cfg = cfg.cluster(&rule.cluster, spawn_agent(&rule.service).await);
    }
    cfg = cfg.cluster("secret", spawn_agent("secret").await);
    cfg.dispatch_route = Some(large.route.clone());
    cfg.early_header_mutation = Some(large.early.clone());
    cfg.filters_before.push(json_to_metadata("agentroute"));
    (Gateway::start(cfg).await, large)
}

/// Requests reach their agents through the patched-in `cluster_header`
/// route, with the agents' rules on their own host (what istio/large/ and
/// envoy/gateway/large/ ship) or in the same virtual host after it.
#[tokio::test]
async fn the_cluster_header_route_dispatches_to_the_controllers_clusters() {
    for shape in SHAPES {
        for dispatch in [Dispatch::ClusterHeaderOwnHost, Dispatch::ClusterHeaderFirst] {
            let (gw, _) = large_gateway(shape, dispatch).await;
            let label = format!("{shape:?} {dispatch:?}");
            gw.assert_routes(
                &label,
                &[
                    ("gw", "/prod/agent/coordinator/x", "coordinator", "/x"),
                    (
                        "coordinator.agents.example.com",
                        "/any",
                        "coordinator",
                        "/any",
                    ),
                    ("gw", "/customer-service/orders", "support", "/orders"),
                    ("gw", "/prod/mcp/tools/mcp", "tools", "/mcp"),
                ],
            )
            .await;
            let r = gw
                .post_json(
                    "/v1/chat/completions",
                    r#"{"model":"gpt-demo","messages":[]}"#,
                )
                .await;
            assert_eq!(
                (r.status, r.header("x-served-by")),
                (200, Some("llm")),
                "{label}: {}",
                r.text()
            );
            // Unclaimed requests are Envoy's (no agent route).
            assert_eq!(
                outcome(&gw, "/nothing/here", &[]).await,
                (404, None),
                "{label}"
            );
        }
    }
}

/// What `agentroute generate --dispatch cluster-header` writes routes the
/// same way: each backend is a cluster the controller makes.
#[tokio::test]
async fn generated_cluster_header_wiring_dispatches() {
    for shape in SHAPES {
        let (gw, _) = wired_gateway(generated(shape), shape, Dispatch::ClusterHeaderOwnHost).await;
        gw.assert_routes(
            &format!("{shape:?} generated"),
            &[
                (
                    "gw",
                    "/agentic-multi/agent/coordinator/x",
                    "agent-coordinator",
                    "/x",
                ),
                (
                    "gw",
                    "/agentic-multi/mcp/multi-echo-mcp/mcp",
                    "mcpserver-multi-echo-mcp",
                    "/mcp",
                ),
            ],
        )
        .await;
        let spoof = [("x-agent-backend", "secret")];
        assert_eq!(
            outcome(&gw, "/nothing", &spoof).await,
            (404, None),
            "{shape:?}"
        );
    }
}

/// With the agents' rules off the clients' virtual host, only the
/// `cluster_header` route can have sent a request to its agent there: take
/// it away and nothing reaches an agent.
#[tokio::test]
async fn on_their_own_host_the_rules_are_not_what_dispatches() {
    for shape in SHAPES {
        let large = large(shape);
        let mut cfg = GatewayConfig::new(large.config.clone())
            .shape(shape)
            .dispatch(Dispatch::ClusterHeaderOwnHost);
        for rule in &large.rules {
            cfg = cfg.cluster(&rule.cluster, spawn_agent(&rule.service).await);
        }
        // A route that never matches in place of the shipped one.
        cfg.dispatch_route = Some(json!({
            "match": { "prefix": "/", "headers": [ { "name": "x-never", "present_match": true } ] },
            "direct_response": { "status": 500 }
        }));
        let gw = Gateway::start(cfg).await;
        assert_eq!(
            outcome(&gw, "/prod/agent/coordinator/x", &[]).await,
            (404, None),
            "{shape:?}"
        );
    }
}

/// A client-sent dispatch header picks nothing: agentroute removes it, and
/// Envoy removes it before routing (also on the agents' own host).
#[tokio::test]
async fn clients_cannot_pick_a_cluster() {
    for shape in SHAPES {
        let (gw, large) = large_gateway(shape, Dispatch::ClusterHeaderOwnHost).await;
        let tools = &large
            .rules
            .iter()
            .find(|r| r.service == "tools")
            .expect("tools")
            .cluster;
        for (host, header) in [
            ("gw", tools.as_str()),
            ("gw", "secret"),
            (BACKENDS_HOST, tools.as_str()),
            (BACKENDS_HOST, "secret"),
        ] {
            let spoof = [("host", host), ("x-agent-backend", header)];
            assert_eq!(
                outcome(&gw, "/not/an/agent", &spoof).await,
                (404, None),
                "{shape:?} {host} {header}"
            );
            // An agent's path goes to that agent, whatever the client sent;
            // on the agents' own host Envoy Gateway has no route for the
            // request to arrive on (no catch-all there), so no filter and 404.
            let expected = if host == BACKENDS_HOST && shape == Shape::EnvoyGateway {
                (404, None)
            } else {
                served("coordinator")
            };
            assert_eq!(
                outcome(&gw, "/prod/agent/coordinator/x", &spoof).await,
                expected,
                "{shape:?} {host} {header}"
            );
        }
    }
}

/// On Envoy Gateway the patched route switches the Wasm filter on, as Envoy
/// Gateway does on its own routes: a request that arrives matching it
/// (a client-sent header, no early removal) still has agentroute remove the
/// header. Without that switch the filter would not run and the client
/// would pick the cluster.
#[tokio::test]
async fn envoy_gateway_dispatch_route_runs_the_filter() {
    let large = large(Shape::EnvoyGateway);
    let mut without_switch = large.route.clone();
    without_switch
        .as_object_mut()
        .expect("route")
        .remove("typed_per_filter_config");
    for (route, picked) in [(large.route.clone(), false), (without_switch, true)] {
        let mut cfg = GatewayConfig::new(large.config.clone())
            .shape(Shape::EnvoyGateway)
            .dispatch(Dispatch::ClusterHeaderOwnHost)
            .cluster("secret", spawn_agent("secret").await);
        for rule in &large.rules {
            cfg = cfg.cluster(&rule.cluster, spawn_agent(&rule.service).await);
        }
        cfg.dispatch_route = Some(route);
        let gw = Gateway::start(cfg).await;
        let got = outcome(&gw, "/not/an/agent", &[("x-agent-backend", "secret")]).await;
        if picked {
            assert_eq!(got, served("secret"), "without the filter switched on");
        } else {
            assert_eq!(got, (404, None), "with the shipped route");
        }
    }
}

// ------------------------------------------------------ failing open

/// The bench/floors module with the `trap` mode (`make build-test-filters`):
/// a request with `x-floors-trap` traps the VM; other requests get
/// `x-agent-backend: upstream`.
fn floors() -> PathBuf {
    let module = workspace_root().join("target/wasm32-wasip1/release/agentroute_bench_floors.wasm");
    assert!(
        module.exists(),
        "{} is missing: run `make build-test-filters` (make test does)",
        module.display()
    );
    module
}

const AGENT_PATH: &str = "/prod/agent/chat/x";
const TRAP: (&str, &str) = ("x-floors-trap", "1");

/// The early header removal of envoy/demo.yaml's connection manager.
fn demo_early_removal() -> Value {
    let demo = manifest("envoy/demo.yaml");
    demo[0]["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        ["early_header_mutation_extensions"]
        .clone()
}

/// Each shipped shape and wiring with its failing-open setting: plain Envoy
/// `failure_policy: FAIL_OPEN`, Istio `failStrategy: FAIL_OPEN`, Envoy
/// Gateway `failOpen: true`.
fn fail_open_cases() -> Vec<(Shape, Dispatch, Failure, Value)> {
    let istio = large(Shape::Istio).early;
    let eg = large(Shape::EnvoyGateway).early;
    let mut out = vec![(
        Shape::Plain,
        Dispatch::HeaderRules,
        Failure::Policy("FAIL_OPEN"),
        demo_early_removal(),
    )];
    for dispatch in [Dispatch::HeaderRules, Dispatch::ClusterHeaderOwnHost] {
        out.push((
            Shape::Istio,
            dispatch,
            Failure::Policy("FAIL_OPEN"),
            istio.clone(),
        ));
        out.push((
            Shape::EnvoyGateway,
            dispatch,
            Failure::FailOpen(true),
            eg.clone(),
        ));
    }
    out
}

/// Traps the VM (one worker), then sends client-chosen dispatch headers;
/// what each got.
async fn after_a_trap(
    shape: Shape,
    dispatch: Dispatch,
    failure: Failure,
    early: Option<Value>,
) -> Vec<(u16, Option<String>)> {
    let mut cfg = GatewayConfig::new("trap")
        .shape(shape)
        .dispatch(dispatch)
        .wasm(floors())
        .failure(failure)
        .cluster("chat", spawn_agent("chat").await)
        .cluster("upstream", spawn_agent("upstream").await)
        .cluster("secret", spawn_agent("secret").await);
    cfg.concurrency = 1;
    cfg.early_header_mutation = early;
    let mut gw = Gateway::start(cfg).await;
    gw.expect_wasm_failures();
    assert_eq!(
        outcome(&gw, AGENT_PATH, &[]).await,
        served("upstream"),
        "{shape:?} {dispatch:?}: the filter runs before the trap"
    );
    let trapped = outcome(&gw, AGENT_PATH, &[TRAP]).await;
    assert!(
        trapped.1.is_none(),
        "{shape:?} {dispatch:?}: the trapping request reached {trapped:?}"
    );
    let mut got = Vec::new();
    for host in ["gw", BACKENDS_HOST] {
        got.push(
            outcome(
                &gw,
                AGENT_PATH,
                &[("host", host), ("x-agent-backend", "secret")],
            )
            .await,
        );
    }
    got
}

/// Failing open, a crashed filter is skipped; the client's x-agent-backend
/// then reaches routing unless Envoy removed it first. With the shipped
/// early header removal it never picks a backend, in any shape or wiring;
/// without it, it does (what the removal is for).
#[tokio::test]
async fn failing_open_a_client_sent_dispatch_header_picks_nothing() {
    for (shape, dispatch, failure, early) in fail_open_cases() {
        let label = format!("{shape:?} {dispatch:?} {failure:?}");
        let got = after_a_trap(shape, dispatch, failure, Some(early)).await;
        for g in &got {
            assert_ne!(g.1.as_deref(), Some("secret"), "{label}: {got:?}");
            assert_eq!(g.0, 404, "{label}: {got:?}");
        }
        let got = after_a_trap(shape, dispatch, failure, None).await;
        assert_eq!(
            got[0],
            served("secret"),
            "{label}, without the removal: the client picks"
        );
    }
}

/// Every shipped Envoy bootstrap removes the dispatch header early, on every
/// listener.
#[test]
fn every_shipped_bootstrap_removes_the_dispatch_header_early() {
    let dir = workspace_root().join("envoy");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("envoy/")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.ends_with(".yaml").then(|| format!("envoy/{name}"))
        })
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    for file in files {
        let doc = &manifest(&file)[0];
        let listeners = doc["static_resources"]["listeners"]
            .as_array()
            .unwrap_or_else(|| panic!("{file}: no listeners"));
        for listener in listeners {
            for chain in listener["filter_chains"].as_array().expect("filter_chains") {
                let hcm = &chain["filters"][0]["typed_config"];
                let routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{file}: no routes"));
                let header = routes
                    .iter()
                    .find_map(|r| r["route"]["cluster_header"].as_str())
                    .unwrap_or_else(|| panic!("{file}: no cluster_header route"));
                // The dispatch header first; a failover route (a matcher
                // keyed on the attempt count, envoy/demo.yaml) also needs
                // its slot header and the attempt count removed.
                let mut want = early_header_removal(header);
                let failover = routes
                    .iter()
                    .any(|r| r["route"]["inline_cluster_specifier_plugin"].is_object());
                if failover {
                    if let Some(m) = want[0]["typed_config"]["mutations"].as_array_mut() {
                        m.push(json!({ "remove": format!("{header}-2") }));
                        m.push(json!({ "remove": "x-envoy-attempt-count" }));
                    }
                }
                assert_eq!(
                    hcm["early_header_mutation_extensions"], want,
                    "{file}: listener {}",
                    listener["name"]
                );
            }
        }
    }
}
