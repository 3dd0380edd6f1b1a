//! The plugin configurations shipped in the Istio WasmPlugin and the Envoy
//! Gateway EnvoyExtensionPolicy load in the real plugin and route as their
//! comments say, in the Envoy shape each controller generates.

use agentroute_tests::{
    json_to_metadata, spawn_agent, workspace_root, Gateway, GatewayConfig, Shape,
};

/// The plugin config inside a manifest, as the JSON the controller sends.
fn plugin_config(file: &str, pointer: &str) -> String {
    let script = format!(
        "import json, sys, yaml\n\
         doc = next(d for d in yaml.safe_load_all(open(sys.argv[1])) if d)\n\
         node = doc\n\
         for key in {pointer:?}.strip('/').split('/'):\n    node = node[int(key)] if isinstance(node, list) else node[key]\n\
         print(json.dumps(node))"
    );
    let out = std::process::Command::new(workspace_root().join(".venv/bin/python"))
        .args(["-c", &script])
        .arg(workspace_root().join(file))
        .output()
        .expect("run .venv/bin/python (make setup installs pyyaml)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Routes as the shipped configurations' comments say, on `host` (the
/// Istio example serves paths on its `gateway_hosts` only).
/// A gateway in a controller's shape with a shipped configuration: a demo
/// agent behind every backend token the shipped HTTPRoutes name, and
/// `other` (another application) behind the fallback route.
async fn shipped_gateway(shape: Shape, config: String) -> Gateway {
    let mut cfg = GatewayConfig::new(config).shape(shape).fallback("other");
    for (backend, agent) in [
        ("prod-coordinator", "coordinator"),
        ("prod-support", "support"),
        // The canary of `support` (10 %): the same demo agent, its own token.
        ("prod-support-v2", "support"),
        ("prod-researcher", "researcher"),
        ("prod-writer", "writer"),
        ("prod-tools", "tools"),
        ("models-llm", "llm"),
        ("models-local", "local"),
        ("other", "other"),
    ] {
        cfg = cfg.cluster(backend, spawn_agent(agent).await);
    }
    cfg.filters_before.push(json_to_metadata("agentroute"));
    Gateway::start(cfg).await
}

async fn check(shape: Shape, config: String, host: &str) {
    let gw = shipped_gateway(shape, config).await;
    gw.assert_routes(
        &format!("{shape:?}"),
        &[
            (host, "/prod/agent/coordinator/x", "coordinator", "/x"),
            (
                "coordinator.agents.example.com",
                "/any",
                "coordinator",
                "/any",
            ),
            (host, "/customer-service/orders", "support", "/orders"),
            (host, "/prod/mcp/tools/mcp", "tools", "/mcp"),
        ],
    )
    .await;
    // The canary of `support` reaches its own route, with the token the
    // shipped HTTPRoutes match; a browser origin gets CORS.
    for (force, token) in [("always", "prod-support-v2"), ("never", "prod-support")] {
        let r = gw
            .request(
                "GET",
                "/customer-service/x?echo",
                &[
                    ("host", host),
                    ("x-canary", force),
                    ("origin", "https://dashboard.example.com"),
                ],
                "",
            )
            .await;
        assert_eq!(r.status, 200, "{shape:?} {force}: {}", r.text());
        assert_eq!(
            r.json()["headers"]["x-agent-backend"],
            token,
            "{shape:?} {force}"
        );
        assert_eq!(
            r.header("access-control-allow-origin"),
            Some("https://dashboard.example.com"),
            "{shape:?}"
        );
    }
    let chat = |model: &str| format!(r#"{{"model":"{model}","messages":[]}}"#);
    let r = gw
        .request(
            "POST",
            "/v1/chat/completions",
            &[("host", host), ("content-type", "application/json")],
            chat("gpt-demo"),
        )
        .await;
    assert_eq!(
        (r.status, r.header("x-served-by")),
        (200, Some("llm")),
        "{shape:?}: {}",
        r.text()
    );
}

#[tokio::test]
async fn istio_wasmplugin_config_routes() {
    check(
        Shape::Istio,
        plugin_config("istio/wasmplugin.yaml", "/spec/pluginConfig"),
        "agents.example.com",
    )
    .await;
}

/// The Istio quick start (README) as written: five agents and two model
/// backends on a gateway shared with another application.
#[tokio::test]
async fn istio_quick_start_serves_its_agents_and_models_and_leaves_other_hosts_alone() {
    let config = plugin_config("istio/wasmplugin.yaml", "/spec/pluginConfig");
    let gw = shipped_gateway(Shape::Istio, config).await;
    let host = "agents.example.com";
    for agent in ["coordinator", "support", "researcher", "writer"] {
        gw.assert_routes(
            agent,
            &[
                (host, &format!("/prod/agent/{agent}/a"), agent, "/a"),
                (host, &format!("/prod/{agent}/b"), agent, "/b"),
                (host, &format!("/{agent}/c"), agent, "/c"),
            ],
        )
        .await;
    }
    let json = [("host", host), ("content-type", "application/json")];
    for (model, served) in [
        ("gpt-demo", "llm"),
        ("gpt-demo-mini", "llm"),
        ("llama-3.1-8b", "local"),
        ("local/qwen2.5", "local"),
        ("prod/researcher", "researcher"),
    ] {
        let body = format!(r#"{{"model":"{model}","messages":[]}}"#);
        let r = gw
            .request("POST", "/v1/chat/completions", &json, body)
            .await;
        assert_eq!(
            r.header("x-served-by"),
            Some(served),
            "{model}: {}",
            r.text()
        );
    }
    let r = gw.request("GET", "/v1/models", &[("host", host)], "").await;
    // Exact ids only: four agents and three model ids (a pattern is no id).
    assert_eq!(
        r.json()["data"].as_array().map(Vec::len),
        Some(7),
        "{}",
        r.text()
    );
    // Another application's host keeps its URLs.
    for path in ["/support/faq", "/v1/models", "/models"] {
        let r = gw
            .request("GET", path, &[("host", "www.example.com")], "")
            .await;
        assert_eq!(r.header("x-served-by"), Some("other"), "{path}");
    }
}

#[tokio::test]
async fn envoy_gateway_extensionpolicy_config_routes() {
    check(
        Shape::EnvoyGateway,
        plugin_config("envoy/gateway/extensionpolicy.yaml", "/spec/wasm/0/config"),
        "gw",
    )
    .await;
}
