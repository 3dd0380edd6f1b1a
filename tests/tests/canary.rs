//! Canary splits through a real Envoy: sticky cohorts that two Envoy
//! processes agree on, a weight raise that only moves users to the canary
//! (and a cut that only moves them back), the forcing header, requests
//! without the value drawn at random, every way of reaching the entry (with
//! the same headers on both sides), the stats per side, the Gateway API
//! shapes where the canary token needs its own route, and refused
//! configurations named by their path.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use agentroute_tests::{spawn_agent, A2aAgent, Gateway, GatewayConfig, Response, Shape};
use serde_json::{json, Value};

/// `chat`: stable backend `v1`, canary `v2`, split by `x-user`; forced by
/// `x-canary`. Clusters `v1` and `v2` are demo agents answering as their
/// name. `marker` is an extra entry: it routes once the configuration is in
/// effect on every worker.
fn config(weight: u32, marker: &str) -> String {
    json!({ "agents": [
        { "name": "chat", "namespace": "prod", "backend": "v1", "timeout": "20s",
          "hosts": ["chat.example.com"], "prefixes": [ { "prefix": "/support" } ],
          "models": ["chat-model"],
          "canary": { "backend": "v2", "weight": weight, "by": "header:x-user", "header": "x-canary" } },
        { "name": marker, "namespace": "prod", "backend": "v1" }
    ] })
    .to_string()
}

async fn clusters(cfg: GatewayConfig) -> GatewayConfig {
    cfg.cluster("v1", spawn_agent("v1").await)
        .cluster("v2", spawn_agent("v2").await)
}

async fn start(shape: Shape, plugin: String) -> Gateway {
    let mut cfg = clusters(GatewayConfig::new(plugin).shape(shape)).await;
    cfg.allow_stop_iteration = true;
    Gateway::start(cfg).await
}

/// Which backend served a request of `user` (`None`: no x-user header).
async fn side(gw: &Gateway, user: Option<&str>, extra: &[(&str, &str)]) -> String {
    let mut headers: Vec<(&str, &str)> = extra.to_vec();
    if let Some(u) = user {
        headers.push(("x-user", u));
    }
    let r = gw.request("GET", "/prod/agent/chat/x", &headers, "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.header("x-served-by").unwrap_or_default().to_string()
}

/// The users of `users` the canary serves.
async fn canary_users(gw: &Gateway, users: &[String]) -> BTreeSet<String> {
    let mut on_canary = BTreeSet::new();
    for u in users {
        if side(gw, Some(u), &[]).await == "v2" {
            on_canary.insert(u.clone());
        }
    }
    on_canary
}

/// Waits until `path` answers `want` three times in a row: the
/// configuration that has (or lacks) it is in effect on every worker.
async fn until(gw: &Gateway, path: &str, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut in_a_row = 0;
    while in_a_row < 3 {
        assert!(
            Instant::now() < deadline,
            "{path} never answered {want}\n{}",
            gw.log()
        );
        let got = gw.get(path).await.status;
        in_a_row = if got == want { in_a_row + 1 } else { 0 };
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn share(part: usize, of: usize) -> f64 {
    part as f64 / of as f64
}

#[tokio::test]
async fn cohorts_are_sticky_across_envoys_and_weights_move_users_one_way() {
    let users: Vec<String> = (0..600).map(|i| format!("user-{i}")).collect();
    let mut one = start(Shape::Ecds, config(20, "m1")).await;
    let mut two = start(Shape::Ecds, config(20, "m1")).await;

    // Two Envoy processes (each with two workers) put every user on the
    // same side: the cohort key is fixed, not per process or worker.
    let at_20 = canary_users(&one, &users).await;
    assert_eq!(
        canary_users(&two, &users).await,
        at_20,
        "the two Envoys disagree"
    );
    // The same user, the same side, every time.
    for u in users.iter().take(50) {
        let first = side(&one, Some(u), &[]).await;
        for _ in 0..3 {
            assert_eq!(side(&one, Some(u), &[]).await, first, "{u}");
        }
    }
    let s = share(at_20.len(), users.len());
    assert!((0.14..=0.26).contains(&s), "weight 20 gave {s:.3}");

    // A raise to 50 only moves users from stable to the canary.
    for gw in [&mut one, &mut two] {
        gw.update_plugin_config(&config(50, "m2"));
        until(gw, "/prod/agent/m2/x", 200).await;
    }
    let at_50 = canary_users(&one, &users).await;
    assert_eq!(canary_users(&two, &users).await, at_50);
    assert!(
        at_20.is_subset(&at_50),
        "a raise moved users back to stable: {:?}",
        at_20.difference(&at_50).collect::<Vec<_>>()
    );
    let s = share(at_50.len(), users.len());
    assert!((0.43..=0.57).contains(&s), "weight 50 gave {s:.3}");

    // A cut to 10 only moves users back to stable: those still on the
    // canary were there at 20 and 50.
    one.update_plugin_config(&config(10, "m3"));
    until(&one, "/prod/agent/m3/x", 200).await;
    let at_10 = canary_users(&one, &users).await;
    assert!(at_10.is_subset(&at_20), "a cut moved users to the canary");
    let s = share(at_10.len(), users.len());
    assert!((0.06..=0.14).contains(&s), "weight 10 gave {s:.3}");
    eprintln!(
        "canary users of 600: {} at 20, {} at 50, {} at 10",
        at_20.len(),
        at_50.len(),
        at_10.len()
    );
}

#[tokio::test]
async fn the_forcing_header_wins_and_requests_without_the_value_are_drawn() {
    let gw = start(Shape::Plain, config(50, "m")).await;
    for _ in 0..20 {
        assert_eq!(
            side(&gw, Some("user-1"), &[("x-canary", "always")]).await,
            "v2"
        );
        assert_eq!(
            side(&gw, Some("user-1"), &[("x-canary", "never")]).await,
            "v1"
        );
    }
    // Another value leaves it to the cohort.
    let own = side(&gw, Some("user-1"), &[]).await;
    assert_eq!(
        side(&gw, Some("user-1"), &[("x-canary", "maybe")]).await,
        own
    );
    // Without x-user each request is drawn on its own: both sides, about
    // half each.
    let mut canary = 0;
    for _ in 0..300 {
        canary += usize::from(side(&gw, None, &[]).await == "v2");
    }
    let s = share(canary, 300);
    assert!((0.38..=0.62).contains(&s), "weight 50, drawn: {s:.3}");

    // Stats per side: forced 20 + 20 above, and the rest.
    let stat = |side: &str| {
        format!(
            r#"agentroute_canary_requests_total{{namespace="prod",agent="chat",kind="agent",side="{side}"}}"#
        )
    };
    let requests = r#"agentroute_requests_total{namespace="prod",agent="chat",kind="agent"}"#;
    gw.wait_metric(requests, 342.0).await;
    let canary_stat = gw.metric(&stat("canary")).await.unwrap_or(0.0);
    let stable_stat = gw.metric(&stat("stable")).await.unwrap_or(0.0);
    assert_eq!(
        canary_stat + stable_stat,
        342.0,
        "{}",
        gw.prometheus().await
    );
    assert!(canary_stat >= (20 + canary) as f64, "{canary_stat}");
    assert!(stable_stat >= (20 + 300 - canary) as f64, "{stable_stat}");
}

/// What the demo agent saw, without the dispatch header (which tells the
/// sides apart).
fn seen(r: &Response) -> (String, Value) {
    let mut v = r.json();
    let served = v["agent"].as_str().unwrap_or_default().to_string();
    if let Some(h) = v["headers"].as_object_mut() {
        h.remove("x-agent-backend");
        h.remove("x-request-id");
        h.remove("content-length");
        h.remove("x-canary");
    }
    v.as_object_mut().map(|o| o.remove("agent"));
    (served, v)
}

#[tokio::test]
async fn every_way_of_reaching_the_entry_splits_with_the_same_headers() {
    let a2a = A2aAgent::start(&["--name", "helper"]).await;
    let plugin = json!({ "agents": [
        { "name": "chat", "namespace": "prod", "backend": "v1", "timeout": "20s",
          "hosts": ["chat.example.com"], "prefixes": [ { "prefix": "/support" } ],
          "models": ["chat-model"],
          "canary": { "backend": "v2", "weight": 30, "by": "cookie:uid", "header": "x-canary" } },
        { "name": "helper", "namespace": "prod", "backend": "a2a-v1", "protocol": "a2a",
          "canary": { "backend": "a2a-v2", "weight": 30, "by": "header:x-user", "header": "x-canary" } }
    ] });
    let mut cfg = clusters(GatewayConfig::new(plugin.to_string()))
        .await
        .cluster("a2a-v1", a2a.addr)
        .cluster("a2a-v2", a2a.addr);
    cfg.allow_stop_iteration = true;
    let gw = Gateway::start(cfg).await;

    let ways: [(&str, &str, &str, &str); 4] = [
        ("GET", "gateway.test", "/prod/agent/chat/x?echo", ""),
        ("GET", "gateway.test", "/support/x?echo", ""),
        ("GET", "chat.example.com", "/x?echo", ""),
        (
            "POST",
            "gateway.test",
            "/v1/chat/completions?echo",
            r#"{"model":"chat-model","messages":[]}"#,
        ),
    ];
    for (method, host, path, body) in ways {
        let mut sides = Vec::new();
        for force in ["never", "always"] {
            let headers = [
                ("host", host),
                ("x-canary", force),
                ("content-type", "application/json"),
            ];
            let r = gw.request(method, path, &headers, body.to_string()).await;
            assert_eq!(r.status, 200, "{method} {host}{path}: {}", r.text());
            sides.push(seen(&r));
        }
        assert_eq!(
            (sides[0].0.as_str(), sides[1].0.as_str()),
            ("v1", "v2"),
            "{host}{path}"
        );
        assert_eq!(
            sides[0].1, sides[1].1,
            "{host}{path}: both sides see the same request"
        );
        // Sticky by the cookie, whichever way the request comes.
        let cookie = [
            ("host", host),
            ("cookie", "a=1; uid=u-7"),
            ("content-type", "application/json"),
        ];
        let first = gw.request(method, path, &cookie, body.to_string()).await;
        let again = gw.request(method, path, &cookie, body.to_string()).await;
        assert_eq!(
            first.header("x-served-by"),
            again.header("x-served-by"),
            "{host}{path}"
        );
    }
    // A chat translated for an A2A agent: the agent reports the headers it
    // got, the dispatch header saying the side.
    for (force, backend) in [("never", "a2a-v1"), ("always", "a2a-v2")] {
        let body = json!({ "model": "prod/helper", "messages": [ { "role": "user", "content": "headers" } ] });
        let r = gw
            .request(
                "POST",
                "/v1/chat/completions",
                &[("content-type", "application/json"), ("x-canary", force)],
                body.to_string(),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let content = r.json()["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let headers: Value =
            serde_json::from_str(&content).unwrap_or_else(|e| panic!("{e}: {content}"));
        assert_eq!(headers["x-agent-backend"], backend, "{content}");
        assert_eq!(headers["x-agent-name"], "helper");
    }
}

/// Istio and Envoy Gateway route by HTTPRoute rules matching the dispatch
/// header exactly: the canary's token reaches its Service through its own
/// rule (the harness makes one rule per cluster, as the shipped manifests
/// have one per token).
#[tokio::test]
async fn gateway_api_shapes_route_the_canary_token_by_its_own_rule() {
    for shape in [Shape::Istio, Shape::EnvoyGateway] {
        let gw = start(shape, config(50, "m")).await;
        assert_eq!(
            side(&gw, Some("u"), &[("x-canary", "always")]).await,
            "v2",
            "{shape:?}"
        );
        assert_eq!(
            side(&gw, Some("u"), &[("x-canary", "never")]).await,
            "v1",
            "{shape:?}"
        );
        // A client cannot pick the canary by sending its token.
        let r = gw
            .request(
                "GET",
                "/prod/agent/chat/x",
                &[("x-agent-backend", "v2"), ("x-canary", "never")],
                "",
            )
            .await;
        assert_eq!(r.header("x-served-by"), Some("v1"), "{shape:?}");
    }
}

#[tokio::test]
async fn refused_configurations_name_the_field() {
    for (canary, want) in [
        (json!({ "backend": "v2", "weight": 120 }), "agents[0].canary.weight: must be between 0 and 100"),
        (json!({ "backend": "v1", "weight": 10 }), "agents[0].canary.backend: \"v1\" is the entry's own backend"),
        (json!({ "backend": "v2", "weight": 10, "by": "session" }), "agents[0].canary.by: \"session\" is not \"random\", \"client_ip\", \"header:<name>\" or \"cookie:<name>\""),
    ] {
        let plugin = json!({ "agents": [ { "name": "chat", "backend": "v1", "canary": canary } ] });
        let cfg = clusters(GatewayConfig::new(plugin.to_string())).await;
        let log = match Gateway::try_start(cfg).await {
            Ok(_) => panic!("Envoy started with {canary}"),
            Err(log) => log,
        };
        assert!(log.contains(&format!("invalid configuration: {want}")), "{want}\n{log}");
    }
}
