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

async fn check(shape: Shape, config: String) {
    let mut cfg = GatewayConfig::new(config).shape(shape);
    for (backend, agent) in [
        ("prod-coordinator", "coordinator"),
        ("prod-support", "support"),
        ("prod-tools", "tools"),
        ("models-llm", "llm"),
    ] {
        cfg = cfg.cluster(backend, spawn_agent(agent).await);
    }
    cfg.filters_before.push(json_to_metadata("agentroute"));
    let gw = Gateway::start(cfg).await;
    gw.assert_routes(
        &format!("{shape:?}"),
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
        "{shape:?}: {}",
        r.text()
    );
}

#[tokio::test]
async fn istio_wasmplugin_config_routes() {
    check(
        Shape::Istio,
        plugin_config("istio/wasmplugin.yaml", "/spec/pluginConfig"),
    )
    .await;
}

#[tokio::test]
async fn envoy_gateway_extensionpolicy_config_routes() {
    check(
        Shape::EnvoyGateway,
        plugin_config("envoy/gateway/extensionpolicy.yaml", "/spec/wasm/0/config"),
    )
    .await;
}
