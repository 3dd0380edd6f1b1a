//! The Envoy configuration Istio (WasmPlugin) and Envoy Gateway
//! (EnvoyExtensionPolicy) generate, reproduced in a real Envoy: routing,
//! spoofing, timeouts and OpenAI dispatch (metadata source, as those
//! controllers cannot set allow_on_headers_stop_iteration) must all hold.

use agentroute_tests::{json_to_metadata, spawn_agent, Gateway, GatewayConfig, Shape};

const SHAPES: [Shape; 2] = [Shape::Istio, Shape::EnvoyGateway];

const CONFIG: &str = r#"{
  "openai": { "model_from": "metadata" },
  "agents": [
    { "name": "coordinator", "namespace": "prod", "backend": "prod-coordinator",
      "hosts": ["coordinator.example.com"], "prefixes": [ { "prefix": "/support" } ] },
    { "name": "tools", "namespace": "prod", "kind": "mcp", "backend": "prod-tools", "timeout": "400ms" },
    { "name": "llm", "namespace": "models", "kind": "modelapi", "backend": "models-llm", "models": ["gpt-demo"] }
  ]
}"#;

async fn gateway(shape: Shape) -> Gateway {
    let mut cfg = GatewayConfig::new(CONFIG).shape(shape);
    for (backend, agent) in [
        ("prod-coordinator", "coordinator"),
        ("prod-tools", "tools"),
        ("models-llm", "llm"),
    ] {
        cfg = cfg.cluster(backend, spawn_agent(agent).await);
    }
    cfg.filters_before.push(json_to_metadata("agentroute"));
    Gateway::start(cfg).await
}

#[tokio::test]
async fn routes_by_path_host_and_prefix() {
    for shape in SHAPES {
        let gw = gateway(shape).await;
        gw.assert_routes(
            &format!("{shape:?}"),
            &[
                (
                    "gw",
                    "/prod/agent/coordinator/a?b=1",
                    "coordinator",
                    "/a?b=1",
                ),
                ("gw", "/prod/tools/x", "tools", "/x"),
                ("gw", "/llm", "llm", "/"),
                ("gw", "/support/ticket", "coordinator", "/ticket"),
                (
                    "coordinator.example.com",
                    "/prod/tools/x",
                    "coordinator",
                    "/prod/tools/x",
                ),
            ],
        )
        .await;
    }
}

#[tokio::test]
async fn clients_cannot_pick_a_backend() {
    for shape in SHAPES {
        let gw = gateway(shape).await;
        let spoof = [("x-agent-backend", "prod-tools")];
        let r = gw.request("GET", "/not/an/agent", &spoof, "").await;
        assert_eq!(
            (r.status, r.text().as_str()),
            (404, "no agent route\n"),
            "{shape:?}"
        );
        let r = gw.request("GET", "/prod/coordinator/x", &spoof, "").await;
        assert_eq!(r.header("x-served-by"), Some("coordinator"), "{shape:?}");
    }
}

#[tokio::test]
async fn dot_segments_and_timeouts() {
    for shape in SHAPES {
        let gw = gateway(shape).await;
        let r = gw.get("/prod/coordinator/%2e%2e/admin").await;
        assert_eq!(r.status, 400, "{shape:?}");
        let r = gw.get("/prod/mcp/tools/x?delay_ms=1500").await;
        assert_eq!(r.status, 504, "{shape:?}: {}", r.text());
    }
}

#[tokio::test]
async fn openai_dispatch_through_json_to_metadata() {
    for shape in SHAPES {
        let gw = gateway(shape).await;
        let r = gw.get("/v1/models").await;
        assert_eq!(r.status, 200, "{shape:?}");
        assert_eq!(
            r.json()["data"].as_array().map(Vec::len),
            Some(2),
            "{shape:?}: gpt-demo and prod/coordinator"
        );
        let r = gw
            .post_json(
                "/v1/chat/completions",
                r#"{"model":"gpt-demo","messages":[]}"#,
            )
            .await;
        assert_eq!(
            (r.status, r.header("x-served-by")),
            (200, Some("llm")),
            "{shape:?}: {}",
            r.text()
        );
        let r = gw
            .post_json(
                "/v1/chat/completions",
                r#"{"model":"prod/coordinator","messages":[]}"#,
            )
            .await;
        assert_eq!(r.header("x-served-by"), Some("coordinator"), "{shape:?}");
        let r = gw.post_json("/v1/embeddings", r#"{"model":"nope"}"#).await;
        assert_eq!(
            (r.status, r.json()["error"]["code"].as_str()),
            (404, Some("model_not_found")),
            "{shape:?}"
        );
    }
}
