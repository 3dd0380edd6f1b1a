//! Routing, rewrite, identity headers and timeouts through a real Envoy.

use agentroute_tests::{send_raw, spawn_agent, Gateway, GatewayConfig, Response};

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

async fn gateway(config: &str) -> Gateway {
    let mut cfg = GatewayConfig::new(config);
    for name in ["coordinator", "researcher", "tools", "llm", "slow"] {
        cfg = cfg.cluster(name, spawn_agent(name).await);
    }
    Gateway::start(cfg).await
}

/// The agent's echo of what reached it: (agent, path, headers).
fn echo(r: &Response) -> (String, String, serde_json::Value) {
    assert_eq!(r.status, 200, "body: {}", r.text());
    let v = r.json();
    (
        v["agent"].as_str().unwrap_or_default().to_string(),
        v["path"].as_str().unwrap_or_default().to_string(),
        v["headers"].clone(),
    )
}

#[tokio::test]
async fn layouts_route_and_strip_the_agent_prefix() {
    let gw = gateway(CONFIG).await;
    let cases = [
        // kind layout
        (
            "/prod/agent/coordinator/tasks/1?x=1&y=2",
            "coordinator",
            "/tasks/1?x=1&y=2",
        ),
        ("/prod/agent/coordinator", "coordinator", "/"),
        ("/prod/agent/coordinator/", "coordinator", "/"),
        ("/prod/agent/coordinator?q=1", "coordinator", "/?q=1"),
        ("/prod/agent/coordinator//x", "coordinator", "/x"),
        ("/prod/mcp/tools/mcp", "tools", "/mcp"),
        ("/models/modelapi/llm/v1/chat", "llm", "/v1/chat"),
        // namespaced layout
        ("/prod/coordinator/a/b", "coordinator", "/a/b"),
        ("/prod/tools", "tools", "/"),
        // shorthand, unique names only
        (
            "/coordinator/.well-known/agent-card.json",
            "coordinator",
            "/.well-known/agent-card.json",
        ),
        ("/llm", "llm", "/"),
        // the shared name keeps its namespaced paths
        ("/a/twin/x", "researcher", "/x"),
        ("/b/agent/twin/x", "tools", "/x"),
    ];
    for (path, agent, upstream) in cases {
        let (got_agent, got_path, _) = echo(&gw.get(path).await);
        assert_eq!(
            (got_agent.as_str(), got_path.as_str()),
            (agent, upstream),
            "{path}"
        );
    }
}

#[tokio::test]
async fn non_matches_fall_through_to_the_gateway() {
    let gw = gateway(CONFIG).await;
    for path in [
        "/twin/x",                     // shorthand dropped: two entries share the name
        "/prod/agent/coordinatorx",    // whole segments only
        "/prod/agent/coordinator-two", // whole segments only
        "/Prod/agent/coordinator",     // case-sensitive
        "/prod/agent",
        "/nobody",
    ] {
        let r = gw.get(path).await;
        assert_eq!(
            (r.status, r.text().as_str()),
            (404, "no agent route\n"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn explicit_prefixes_rewrite_as_configured_and_longest_wins() {
    let gw = gateway(CONFIG).await;
    let cases = [
        (
            "/customer-service/orders?id=7",
            "coordinator",
            "/orders?id=7",
            Some("/customer-service"),
        ),
        (
            "/customer-service",
            "coordinator",
            "/",
            Some("/customer-service"),
        ),
        (
            "/api/v2/users",
            "coordinator",
            "/internal/api/users",
            Some("/api/v2"),
        ),
        ("/raw/keep/me?x", "coordinator", "/raw/keep/me?x", None),
        // longest prefix among prefixes and layouts
        (
            "/customer-service/research/q",
            "researcher",
            "/q",
            Some("/customer-service/research"),
        ),
        (
            "/customer-service/researchers",
            "coordinator",
            "/researchers",
            Some("/customer-service"),
        ),
    ];
    for (path, agent, upstream, prefix) in cases {
        let (got_agent, got_path, headers) = echo(&gw.get(path).await);
        assert_eq!(
            (got_agent.as_str(), got_path.as_str()),
            (agent, upstream),
            "{path}"
        );
        assert_eq!(headers["x-forwarded-prefix"].as_str(), prefix, "{path}");
    }
}

#[tokio::test]
async fn hosts_route_before_paths_and_keep_the_path() {
    let gw = gateway(CONFIG).await;
    let cases = [
        ("coordinator.example.com", "/prod/mcp/tools/x?y=1"),
        ("Coordinator.Example.COM:8443", "/anything"),
        ("eu.coord.example.com", "/a"),
        ("x.eu.coord.example.com", "/a/b"),
    ];
    for (host, path) in cases {
        let r = gw.request("GET", path, &[("host", host)], "").await;
        let (agent, got_path, headers) = echo(&r);
        assert_eq!(
            (agent.as_str(), got_path.as_str()),
            ("coordinator", path),
            "{host}{path}"
        );
        assert!(
            headers.get("x-forwarded-prefix").is_none(),
            "no rewrite, no prefix header"
        );
    }
    // `*.coord.example.com` needs at least one label in front.
    let r = gw
        .request("GET", "/zzz", &[("host", "coord.example.com")], "")
        .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn dispatch_and_identity_headers_are_always_the_filters() {
    let gw = gateway(CONFIG).await;
    let spoof = [
        ("x-agent-backend", "tools"),
        ("x-agent-name", "evil"),
        ("x-agent-namespace", "evil"),
        ("x-agent-kind", "evil"),
        ("x-forwarded-prefix", "/evil"),
    ];
    let r = gw
        .request("GET", "/prod/agent/coordinator/x", &spoof, "")
        .await;
    let (agent, _, h) = echo(&r);
    assert_eq!(agent, "coordinator", "a client must never pick the backend");
    assert_eq!(h["x-agent-backend"], "coordinator");
    assert_eq!(h["x-agent-name"], "coordinator");
    assert_eq!(h["x-agent-namespace"], "prod");
    assert_eq!(h["x-agent-kind"], "agent");
    assert_eq!(h["x-forwarded-prefix"], "/prod/agent/coordinator");

    // Twice-sent headers: every copy goes.
    let twice = [("x-agent-backend", "tools"), ("x-agent-backend", "llm")];
    let (agent, _, h) = echo(&gw.request("GET", "/prod/tools", &twice, "").await);
    assert_eq!(
        (agent.as_str(), h["x-agent-backend"].as_str()),
        ("tools", Some("tools"))
    );

    // Unmatched: the client's dispatch header must not reach cluster_header.
    for headers in [&spoof[..1], &twice[..]] {
        let r = gw.request("GET", "/unknown/path", headers, "").await;
        assert_eq!((r.status, r.text().as_str()), (404, "no agent route\n"));
    }
}

#[tokio::test]
async fn header_bytes_that_are_not_utf8_neither_trap_nor_get_rewritten() {
    let gw = gateway(CONFIG).await;
    let raw = |path: &str, extra: &[u8]| {
        let mut req =
            format!("GET {path} HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n").into_bytes();
        req.extend_from_slice(extra);
        req.extend_from_slice(b"\r\n");
        req
    };
    // Matched: routed, and the odd value still reaches the agent.
    let out = send_raw(gw.addr, raw("/prod/coordinator/x", b"x-latin: caf\xe9\r\n")).await;
    assert!(
        out.starts_with("HTTP/1.1 200") && out.contains("x-served-by: coordinator"),
        "{out}"
    );
    assert!(
        out.contains(r#""x-latin":"caf\u00e9""#) || out.contains("caf\u{fffd}"),
        "{out}"
    );
    // A spoofed dispatch header with such bytes is still removed.
    let out = send_raw(gw.addr, raw("/nowhere", b"x-agent-backend: tools\xff\r\n")).await;
    assert!(
        out.starts_with("HTTP/1.1 404") && out.contains("no agent route"),
        "{out}"
    );
    let out = send_raw(
        gw.addr,
        raw("/prod/tools/x", b"x-agent-backend: coordinator\xff\r\n"),
    )
    .await;
    assert!(out.contains("x-served-by: tools"), "{out}");
    // The same worker still serves: the VM did not trap.
    assert_eq!(gw.get("/prod/coordinator/x").await.status, 200);
}

#[tokio::test]
async fn unmatched_pass_strips_owned_headers_before_other_routes() {
    let mut cfg = GatewayConfig::new(CONFIG).fallback("researcher");
    for name in ["coordinator", "researcher", "tools", "llm", "slow"] {
        cfg = cfg.cluster(name, spawn_agent(name).await);
    }
    let gw = Gateway::start(cfg).await;
    let r = gw
        .request(
            "GET",
            "/other/app?z=1",
            &[("x-agent-backend", "tools"), ("x-agent-name", "x")],
            "",
        )
        .await;
    let (agent, path, h) = echo(&r);
    assert_eq!(
        (agent.as_str(), path.as_str()),
        ("researcher", "/other/app?z=1")
    );
    assert!(
        h.get("x-agent-backend").is_none() && h.get("x-agent-name").is_none(),
        "{h}"
    );
}

#[tokio::test]
async fn unmatched_reject_answers_json_404() {
    let gw = gateway(&CONFIG.replacen('{', r#"{ "unmatched": "reject","#, 1)).await;
    let r = gw.get("/nobody/home").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json()["error"]["code"], "agent_not_found");
    assert_eq!(echo(&gw.get("/prod/tools/x").await).0, "tools");
}

#[tokio::test]
async fn dot_segments_never_reach_a_backend() {
    let gw = gateway(CONFIG).await;
    for path in [
        "/coordinator/../admin",
        "/prod/agent/coordinator/..",
        "/prod/coordinator/./x",
        "/prod/agent/coordinator/%2e%2e/admin",
        "/prod/agent/coordinator/%2E%2e/admin",
        "/prod/agent/coordinator/.%2e/admin",
        "/customer-service/a/..%2fb",
        "/raw/../admin",
        "/prod/agent/coordinator/x/..;param/y",
    ] {
        let r = gw.get(path).await;
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        assert_eq!(r.json()["error"]["code"], "invalid_path", "{path}");
        assert!(
            r.header("x-served-by").is_none(),
            "{path} reached a backend"
        );
    }
    let raw = send_raw(
        gw.addr,
        "GET /prod/agent/coordinator/x\\..\\admin HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(!raw.contains("x-served-by"), "{raw}");
    // Dots inside names and in the query are not dot-segments.
    for path in [
        "/coordinator/.well-known/agent.json",
        "/coordinator/a..b",
        "/coordinator/x?next=/../y",
    ] {
        assert_eq!(gw.get(path).await.status, 200, "{path}");
    }
}

#[tokio::test]
async fn per_agent_and_per_kind_timeouts() {
    let gw = gateway(&CONFIG.replacen(
        '{',
        r#"{ "defaults": { "timeouts": { "mcp": "700ms" } },"#,
        1,
    ))
    .await;
    // Per-agent timeout: 500ms against a 1.5s upstream → Envoy's 504.
    let r = gw.get("/prod/agent/slow/x?delay_ms=1500").await;
    assert_eq!(r.status, 504, "{}", r.text());
    // Per-kind default (mcp = 700ms).
    let r = gw.get("/prod/mcp/tools/x?delay_ms=1500").await;
    assert_eq!(r.status, 504, "{}", r.text());
    // The timeout Envoy applies, as the upstream sees it.
    let expected = |r: &Response| {
        echo(r).2["x-envoy-expected-rq-timeout-ms"]
            .as_str()
            .map(str::to_string)
    };
    assert_eq!(
        expected(&gw.get("/prod/coordinator/x").await).as_deref(),
        Some("300000")
    );
    assert_eq!(
        expected(&gw.get("/models/llm").await).as_deref(),
        Some("120000")
    );
    // `0s`: no timeout from the filter, and a client's own header is dropped.
    let r = gw
        .request(
            "GET",
            "/prod/researcher/x?delay_ms=1000",
            &[("x-envoy-upstream-rq-timeout-ms", "100")],
            "",
        )
        .await;
    assert_eq!(expected(&r), None);
}

#[tokio::test]
async fn request_counters_are_envoy_stats() {
    let gw = gateway(CONFIG).await;
    for _ in 0..3 {
        gw.get("/prod/agent/coordinator/x").await;
    }
    gw.get("/coordinator/../x").await;
    let requests =
        r#"agentroute_requests_total{namespace="prod",agent="coordinator",kind="agent"}"#;
    let refused = r#"agentroute_refused_total{namespace="prod",agent="coordinator",kind="agent"}"#;
    gw.wait_metric(requests, 3.0).await;
    gw.wait_metric(refused, 1.0).await;
}

#[tokio::test]
async fn an_invalid_configuration_stops_envoy_naming_the_field() {
    let bad = r#"{"agents":[{"name":"a","backend":"a"},{"name":"b","bakend":"b"}]}"#;
    let err = Gateway::try_start(GatewayConfig::new(bad))
        .await
        .err()
        .expect("Envoy must refuse");
    assert!(
        err.contains("invalid configuration: agents[1].bakend: unknown field"),
        "{err}"
    );

    let clash = r#"{"agents":[{"name":"a","backend":"a","hosts":["h.example.com"]},{"name":"b","backend":"b","hosts":["H.example.com"]}]}"#;
    let err = Gateway::try_start(GatewayConfig::new(clash))
        .await
        .err()
        .expect("Envoy must refuse");
    assert!(
        err.contains(r#"agents[1].hosts[0]: host "h.example.com" is already claimed by agents[0] (default/a)"#),
        "{err}"
    );
}

#[tokio::test]
async fn an_empty_configuration_passes_everything() {
    let gw = Gateway::start(
        GatewayConfig::new("")
            .fallback("echo")
            .cluster("echo", spawn_agent("echo").await),
    )
    .await;
    let r = gw
        .request("GET", "/prod/agent/x/y", &[("x-agent-backend", "echo")], "")
        .await;
    let (agent, path, h) = echo(&r);
    assert_eq!((agent.as_str(), path.as_str()), ("echo", "/prod/agent/x/y"));
    assert!(h.get("x-agent-backend").is_none());
}
