//! What a client sees when the plugin cannot run: its module is missing,
//! `on_configure` refuses the configuration, or the VM traps; for plain
//! Envoy (the shipped configs, and `failure_policy`), Istio (`failStrategy`,
//! which Istio >= 1.25 writes as `failure_policy`) and Envoy Gateway
//! (`failOpen`, written as the deprecated `fail_open`). Each test is a row
//! of the README's fail-mode table, run with the setting each platform
//! really gives Envoy.
//!
//! The VM traps on demand in bench/floors' `trap` mode (built by `make
//! build-test-filters`): a request with `x-floors-trap` traps it, any other
//! gets `x-agent-backend: upstream`. What follows a trap is Envoy's doing,
//! the same whichever filter trapped. Trap tests run one worker, so "every
//! later request" means every request of that worker.
//!
//! A module a controller cannot fetch never reaches Envoy: Istio's agent
//! puts an RBAC filter in its place (deny-all, or allow-all for
//! `FAIL_OPEN`), and Envoy Gateway answers 500 on the policy's routes (or
//! leaves the filter off them for `failOpen: true`). Those rows run the
//! configuration each controller hands Envoy then.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use agentroute_tests::serde_json::{json, Value};
use agentroute_tests::{
    spawn_agent, try_send, workspace_root, Delivery, Failure, Gateway, GatewayConfig, Shape,
};
use bytes::Bytes;

const GOOD: &str = r#"{"agents":[{"name":"chat","namespace":"prod","backend":"chat"}]}"#;
const REFUSED: &str = r#"{"agents":[{"name":"chat","namespace":"prod","bakend":"chat"}]}"#;
/// What the refusal logs: the offending field by its path.
const REFUSAL: &str = "invalid configuration: agents[0].bakend: unknown field";
const AGENT_PATH: &str = "/prod/agent/chat/x";
const UNROUTED: &str = "no agent route\n";

/// The bench/floors module with the `trap` mode.
fn floors() -> PathBuf {
    let module = workspace_root().join("target/wasm32-wasip1/release/agentroute_bench_floors.wasm");
    assert!(
        module.exists(),
        "{} is missing: run `make build-test-filters` (make test does)",
        module.display()
    );
    module
}

/// Every response in Envoy's log as `access STATUS FLAGS DETAILS`.
fn with_access_log(bootstrap: &mut Value) {
    for listener in bootstrap["static_resources"]["listeners"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        listener["filter_chains"][0]["filters"][0]["typed_config"]["access_log"] = json!([ {
            "name": "envoy.access_loggers.stdout",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
                "log_format": { "text_format_source": { "inline_string":
                    "access %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS%\n" } }
            }
        } ]);
    }
}

/// The HTTP filter named like the plugin's (the Wasm one, or what a
/// controller put in its place).
fn plugin_filter(bootstrap: &mut Value) -> &mut Value {
    let filters = &mut bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]
        [0]["typed_config"]["http_filters"];
    let index = filters
        .as_array()
        .and_then(|f| {
            f.iter()
                .position(|f| f["name"].as_str().is_some_and(|n| n.contains("agentroute")))
        })
        .expect("the plugin's filter");
    &mut filters[index]
}

/// The demo agents: `chat` (and `upstream`, where bench/floors sends), and
/// `secret`, a backend no route of the filter leads to: a client reaching
/// it picked its own backend.
async fn clusters(cfg: GatewayConfig) -> GatewayConfig {
    cfg.cluster("chat", spawn_agent("chat").await)
        .cluster("upstream", spawn_agent("upstream").await)
        .cluster("secret", spawn_agent("secret").await)
}

/// What a client got: status and the agent that answered (`None`: Envoy
/// answered, or the connection failed with status 0).
async fn outcome(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> (u16, Option<String>) {
    match try_send(gw.addr, "GET", path, headers, Bytes::new()).await {
        Ok(r) => (r.status, r.header("x-served-by").map(str::to_string)),
        Err(_) => (0, None),
    }
}

async fn body(gw: &Gateway, path: &str) -> String {
    match try_send(gw.addr, "GET", path, &[], Bytes::new()).await {
        Ok(r) => r.text(),
        Err(e) => format!("connection error: {e}"),
    }
}

/// Waits (up to 10 s) for the log to hold `line`.
async fn wait_log(gw: &Gateway, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gw.log().contains(line) {
        assert!(Instant::now() < deadline, "no {line:?} in:\n{}", gw.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn served(agent: &str) -> (u16, Option<String>) {
    (200, Some(agent.to_string()))
}

const SPOOF: (&str, &str) = ("x-agent-backend", "secret");
const TRAP: (&str, &str) = ("x-floors-trap", "1");

/// What every request sees once the filter is skipped: unrouted (Envoy's
/// 404), and a client-sent dispatch header is no longer removed.
async fn assert_filter_skipped(gw: &Gateway, label: &str) {
    assert_eq!(
        outcome(gw, AGENT_PATH, &[]).await,
        (404, None),
        "{label}: unrouted\n{}",
        gw.log()
    );
    assert_eq!(body(gw, AGENT_PATH).await, UNROUTED, "{label}");
    assert_eq!(
        outcome(gw, AGENT_PATH, &[SPOOF]).await,
        served("secret"),
        "{label}: the client picks the backend"
    );
}

// ---------------------------------------------------------------- plain Envoy

#[tokio::test]
async fn plain_envoy_module_missing_stops_envoy_at_start() {
    for failure in [
        Failure::Unset,
        Failure::Policy("FAIL_OPEN"),
        Failure::Policy("FAIL_RELOAD"),
    ] {
        let cfg = clusters(GatewayConfig::new(GOOD))
            .await
            .wasm("/nonexistent/agentroute.wasm")
            .failure(failure);
        let log = match Gateway::try_start(cfg).await {
            Ok(_) => panic!("{failure:?}: Envoy started without its plugin"),
            Err(log) => log,
        };
        assert!(
            log.contains("exited with exit status: 1"),
            "{failure:?}: {log}"
        );
        assert!(
            log.contains("Invalid path: /nonexistent/agentroute.wasm"),
            "{failure:?}: {log}"
        );
    }
}

#[tokio::test]
async fn plain_envoy_refused_configuration_stops_envoy_at_start() {
    // Failing open (or reloading) covers a plugin that fails at run time,
    // not one that refuses its configuration.
    for failure in [
        Failure::Unset,
        Failure::Policy("FAIL_OPEN"),
        Failure::Policy("FAIL_RELOAD"),
    ] {
        let cfg = clusters(GatewayConfig::new(REFUSED)).await.failure(failure);
        let log = match Gateway::try_start(cfg).await {
            Ok(_) => panic!("{failure:?}: Envoy started with a refused configuration"),
            Err(log) => log,
        };
        assert!(
            log.contains("exited with exit status: 1"),
            "{failure:?}: {log}"
        );
        assert!(log.contains(REFUSAL), "{failure:?}: {log}");
        assert!(
            log.contains("Unable to create Wasm plugin agentroute"),
            "{failure:?}: {log}"
        );
    }
}

/// envoy/ecds.yaml: updates that cannot load are refused, and the last good
/// plugin keeps routing; a first configuration that cannot load leaves the
/// listener up answering 500 (`NFCF`: no filter configuration).
#[tokio::test]
async fn plain_envoy_ecds_keeps_the_last_good_plugin() {
    let cfg = clusters(GatewayConfig::new(GOOD))
        .await
        .shape(Shape::Ecds)
        .failure(Failure::Unset);
    let mut gw = Gateway::start(cfg).await;
    assert_eq!(outcome(&gw, AGENT_PATH, &[]).await, served("chat"));

    gw.config_mut().wasm = Some(PathBuf::from("/nonexistent/agentroute.wasm"));
    gw.update_plugin_config(GOOD);
    wait_log(&gw, "Invalid path: /nonexistent/agentroute.wasm").await;
    assert_eq!(outcome(&gw, AGENT_PATH, &[]).await, served("chat"));
    assert_eq!(outcome(&gw, AGENT_PATH, &[SPOOF]).await, served("chat"));

    gw.config_mut().wasm = None;
    gw.update_plugin_config(REFUSED);
    wait_log(&gw, REFUSAL).await;
    assert_eq!(outcome(&gw, AGENT_PATH, &[]).await, served("chat"));

    let fresh = clusters(GatewayConfig::new(REFUSED))
        .await
        .shape(Shape::Ecds)
        .failure(Failure::Unset)
        .patch_bootstrap(with_access_log);
    let gw = Gateway::start(fresh).await;
    assert_eq!(gw.log().matches(REFUSAL).count(), 1, "{}", gw.log());
    assert_eq!(outcome(&gw, AGENT_PATH, &[]).await, (500, None));
    assert_eq!(outcome(&gw, AGENT_PATH, &[SPOOF]).await, (500, None));
    wait_log(&gw, "access 500 NFCF").await;
}

/// The shipped configs set no failure field: fail closed. The trapping
/// request and every later one on that worker get 503, until Envoy restarts
/// (or an ECDS update brings a new plugin).
#[tokio::test]
async fn plain_envoy_trap_fails_closed() {
    let mut cfg = clusters(GatewayConfig::new("trap"))
        .await
        .wasm(floors())
        .failure(Failure::Unset)
        .patch_bootstrap(with_access_log);
    cfg.concurrency = 1;
    let mut gw = Gateway::start(cfg).await;
    gw.expect_wasm_failures();
    assert_eq!(outcome(&gw, AGENT_PATH, &[]).await, served("upstream"));
    assert_eq!(outcome(&gw, AGENT_PATH, &[TRAP]).await, (503, None));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for _ in 0..3 {
        assert_eq!(outcome(&gw, AGENT_PATH, &[]).await, (503, None));
        assert_eq!(outcome(&gw, AGENT_PATH, &[SPOOF]).await, (503, None));
    }
    wait_log(&gw, "Function: proxy_on_request_headers failed").await;
    wait_log(&gw, "access 503 - wasm_fail_stream").await;
}

/// `failure_policy: FAIL_OPEN`: the trapping request gets 503; every later
/// one skips the filter: unrouted, and a client-sent `x-agent-backend` picks
/// the backend.
#[tokio::test]
async fn plain_envoy_trap_fail_open_skips_the_filter() {
    let mut cfg = clusters(GatewayConfig::new("trap"))
        .await
        .wasm(floors())
        .failure(Failure::Policy("FAIL_OPEN"));
    cfg.concurrency = 1;
    let mut gw = Gateway::start(cfg).await;
    gw.expect_wasm_failures();
    assert_eq!(outcome(&gw, AGENT_PATH, &[SPOOF]).await, served("upstream"));
    assert_eq!(outcome(&gw, AGENT_PATH, &[TRAP]).await, (503, None));
    assert_filter_skipped(&gw, "FAIL_OPEN").await;
}

/// `failure_policy: FAIL_RELOAD`: 503 until Envoy has started a fresh VM
/// (after a backoff of about a second), then the filter runs again.
#[tokio::test]
async fn plain_envoy_trap_fail_reload_recovers() {
    let mut cfg = clusters(GatewayConfig::new("trap"))
        .await
        .wasm(floors())
        .failure(Failure::Policy("FAIL_RELOAD"));
    cfg.concurrency = 1;
    let mut gw = Gateway::start(cfg).await;
    gw.expect_wasm_failures();
    assert_eq!(outcome(&gw, AGENT_PATH, &[TRAP]).await, (503, None));
    let trapped = Instant::now();
    loop {
        let seen = outcome(&gw, AGENT_PATH, &[SPOOF]).await;
        if seen == served("upstream") {
            break;
        }
        assert_eq!(seen, (503, None), "while the VM reloads");
        assert!(
            trapped.elapsed() < Duration::from_secs(10),
            "no fresh VM after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(outcome(&gw, AGENT_PATH, &[]).await, served("upstream"));
}

// ---------------------------------------------------------------------- Istio

const FAIL_CLOSE: Failure = Failure::Policy("FAIL_CLOSED");
const FAIL_OPEN: Failure = Failure::Policy("FAIL_OPEN");

/// istio-agent's stand-in for a module it could not fetch (pkg/wasm:
/// `createHTTPDefaultFilter`): an RBAC filter of the plugin's name that
/// denies everything, or for `FAIL_OPEN` allows everything.
fn istio_stand_in(fail_open: bool) -> impl Fn(&mut Value) + Send + Sync {
    move |bootstrap: &mut Value| {
        let rbac = if fail_open {
            json!({ "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
                    "rules_stat_prefix": "wasm-default-allow" })
        } else {
            json!({ "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
                    "rules": {}, "rules_stat_prefix": "wasm-default-deny" })
        };
        plugin_filter(bootstrap)["typed_config"] = rbac;
    }
}

#[tokio::test]
async fn istio_module_missing() {
    let cfg = clusters(GatewayConfig::new(GOOD))
        .await
        .shape(Shape::Istio)
        .failure(FAIL_CLOSE)
        .patch_bootstrap(istio_stand_in(false));
    let gw = Gateway::start(cfg).await;
    assert_eq!(outcome(&gw, AGENT_PATH, &[]).await, (403, None));
    assert_eq!(body(&gw, AGENT_PATH).await, "RBAC: access denied");
    assert_eq!(outcome(&gw, AGENT_PATH, &[SPOOF]).await, (403, None));

    let cfg = clusters(GatewayConfig::new(GOOD))
        .await
        .shape(Shape::Istio)
        .failure(FAIL_OPEN)
        .patch_bootstrap(istio_stand_in(true));
    let gw = Gateway::start(cfg).await;
    assert_filter_skipped(&gw, "FAIL_OPEN").await;
}

/// Istio delivers the plugin by ECDS: a refused configuration is NACKed
/// whatever `failStrategy` says. A running gateway keeps the last good
/// plugin; a fresh one (the listener waits for the plugin, then gets none)
/// answers 500 `NFCF`.
#[tokio::test]
async fn istio_refused_configuration() {
    for failure in [FAIL_CLOSE, FAIL_OPEN] {
        let cfg = clusters(GatewayConfig::new(GOOD))
            .await
            .shape(Shape::Istio)
            .delivery(Delivery::Ecds)
            .failure(failure);
        let mut gw = Gateway::start(cfg).await;
        assert_eq!(outcome(&gw, AGENT_PATH, &[]).await, served("chat"));
        gw.update_plugin_config(REFUSED);
        wait_log(&gw, REFUSAL).await;
        wait_log(&gw, "update rejected").await;
        assert_eq!(
            outcome(&gw, AGENT_PATH, &[SPOOF]).await,
            served("chat"),
            "{failure:?}"
        );

        let fresh = clusters(GatewayConfig::new(REFUSED))
            .await
            .shape(Shape::Istio)
            .delivery(Delivery::Ecds)
            .failure(failure)
            .patch_bootstrap(with_access_log);
        let gw = Gateway::start(fresh).await;
        assert_eq!(
            outcome(&gw, AGENT_PATH, &[]).await,
            (500, None),
            "{failure:?}"
        );
        assert_eq!(outcome(&gw, AGENT_PATH, &[SPOOF]).await, (500, None));
        wait_log(&gw, "access 500 NFCF").await;
        assert!(gw.log().contains(REFUSAL), "{}", gw.log());
    }
}

/// `FAIL_CLOSE`: 503 until the plugin is reloaded, which a configuration
/// change (a new ECDS resource) does.
#[tokio::test]
async fn istio_trap() {
    let mut cfg = clusters(GatewayConfig::new("trap"))
        .await
        .shape(Shape::Istio)
        .delivery(Delivery::Ecds)
        .wasm(floors())
        .failure(FAIL_CLOSE);
    cfg.concurrency = 1;
    let mut gw = Gateway::start(cfg).await;
    gw.expect_wasm_failures();
    assert_eq!(outcome(&gw, AGENT_PATH, &[]).await, served("upstream"));
    assert_eq!(outcome(&gw, AGENT_PATH, &[TRAP]).await, (503, None));
    for _ in 0..3 {
        assert_eq!(outcome(&gw, AGENT_PATH, &[SPOOF]).await, (503, None));
    }
    // The same mode, another configuration string: a new plugin, a fresh VM.
    gw.update_plugin_config(" trap");
    let deadline = Instant::now() + Duration::from_secs(10);
    while outcome(&gw, AGENT_PATH, &[SPOOF]).await != served("upstream") {
        assert!(
            Instant::now() < deadline,
            "no fresh plugin after the update"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut cfg = clusters(GatewayConfig::new("trap"))
        .await
        .shape(Shape::Istio)
        .wasm(floors())
        .failure(FAIL_OPEN);
    cfg.concurrency = 1;
    let mut gw = Gateway::start(cfg).await;
    gw.expect_wasm_failures();
    assert_eq!(outcome(&gw, AGENT_PATH, &[TRAP]).await, (503, None));
    assert_filter_skipped(&gw, "FAIL_OPEN").await;
}

// --------------------------------------------------------------- Envoy Gateway

/// What Envoy Gateway hands Envoy when it cannot fetch the module
/// (internal/gatewayapi: `translateEnvoyExtensionPolicyForRoute`): with
/// `failOpen: false` every route of the policy answers 500; with `true` the
/// routes go without the filter, and no route enabling it, the filter is
/// not in the listener at all.
fn envoy_gateway_stand_in(fail_open: bool) -> impl Fn(&mut Value) + Send + Sync {
    move |bootstrap: &mut Value| {
        let hcm = &mut bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]
            [0]["typed_config"];
        for route in hcm["route_config"]["virtual_hosts"][0]["routes"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            let Some(route) = route.as_object_mut() else {
                continue;
            };
            route.remove("typed_per_filter_config");
            if !fail_open {
                route.remove("route");
                route.insert("direct_response".into(), json!({ "status": 500 }));
            }
        }
        if let Some(filters) = hcm["http_filters"].as_array_mut() {
            filters.retain(|f| !f["name"].as_str().is_some_and(|n| n.contains("agentroute")));
        }
    }
}

#[tokio::test]
async fn envoy_gateway_module_missing() {
    let cfg = clusters(GatewayConfig::new(GOOD))
        .await
        .shape(Shape::EnvoyGateway)
        .failure(Failure::FailOpen(false))
        .patch_bootstrap(envoy_gateway_stand_in(false));
    let gw = Gateway::start(cfg).await;
    assert_eq!(outcome(&gw, AGENT_PATH, &[]).await, (500, None));
    assert_eq!(outcome(&gw, "/anything", &[SPOOF]).await, (500, None));

    let cfg = clusters(GatewayConfig::new(GOOD))
        .await
        .shape(Shape::EnvoyGateway)
        .failure(Failure::FailOpen(true))
        .patch_bootstrap(envoy_gateway_stand_in(true));
    let gw = Gateway::start(cfg).await;
    assert_filter_skipped(&gw, "failOpen: true").await;
}

/// Envoy Gateway delivers the whole listener (LDS): a listener whose plugin
/// refuses its configuration is rejected whatever `failOpen` says. A running
/// proxy keeps the last good listener; a fresh one has none (connections
/// are refused).
#[tokio::test]
async fn envoy_gateway_refused_configuration() {
    for failure in [Failure::FailOpen(false), Failure::FailOpen(true)] {
        let cfg = clusters(GatewayConfig::new(GOOD))
            .await
            .shape(Shape::EnvoyGateway)
            .delivery(Delivery::Lds)
            .failure(failure);
        let mut gw = Gateway::start(cfg).await;
        assert_eq!(outcome(&gw, AGENT_PATH, &[]).await, served("chat"));
        gw.update_plugin_config(REFUSED);
        wait_log(&gw, REFUSAL).await;
        wait_log(&gw, "Error adding/updating listener(s) gateway").await;
        assert_eq!(
            outcome(&gw, AGENT_PATH, &[SPOOF]).await,
            served("chat"),
            "{failure:?}"
        );

        let fresh = clusters(GatewayConfig::new(REFUSED))
            .await
            .shape(Shape::EnvoyGateway)
            .delivery(Delivery::Lds)
            .failure(failure);
        let mut gw = match Gateway::try_start_without_listener(fresh).await {
            Ok(gw) => gw,
            Err(log) => panic!("{failure:?}: Envoy did not come up: {log}"),
        };
        wait_log(&gw, REFUSAL).await;
        assert_eq!(gw.listener().await, None, "{failure:?}");
        assert!(gw.running());
    }
}

#[tokio::test]
async fn envoy_gateway_trap() {
    let mut cfg = clusters(GatewayConfig::new("trap"))
        .await
        .shape(Shape::EnvoyGateway)
        .wasm(floors())
        .failure(Failure::FailOpen(false));
    cfg.concurrency = 1;
    let mut gw = Gateway::start(cfg).await;
    gw.expect_wasm_failures();
    assert_eq!(outcome(&gw, AGENT_PATH, &[]).await, served("upstream"));
    assert_eq!(outcome(&gw, AGENT_PATH, &[TRAP]).await, (503, None));
    for _ in 0..3 {
        assert_eq!(outcome(&gw, AGENT_PATH, &[SPOOF]).await, (503, None));
    }

    // The deprecated fail_open (what failOpen becomes) lets even the
    // trapping request through, without the filter.
    let mut cfg = clusters(GatewayConfig::new("trap"))
        .await
        .shape(Shape::EnvoyGateway)
        .wasm(floors())
        .failure(Failure::FailOpen(true));
    cfg.concurrency = 1;
    let mut gw = Gateway::start(cfg).await;
    gw.expect_wasm_failures();
    assert_eq!(outcome(&gw, AGENT_PATH, &[TRAP]).await, (404, None));
    assert_filter_skipped(&gw, "failOpen: true").await;
}
