//! A gateway shared with other applications, through a real Envoy: other
//! hosts keep their URLs (`gateway_hosts`), the OpenAI surface can be kept
//! to `/v1` and to the configured models, and one authorization rule on the
//! identity headers covers every alias of an agent (Envoy's RBAC filter
//! after the plugin, as Istio places it after a WasmPlugin of phase AUTHZ).

use agentroute_tests::{spawn_agent, Gateway, GatewayConfig, Response, Shape};
use serde_json::{json, Value};

const JSON: [(&str, &str); 1] = [("content-type", "application/json")];

/// A gateway whose fallback route leads to `other`, another application
/// on the same gateway.
async fn shared_gateway(config: &str, shape: Shape, after: Vec<Value>) -> Gateway {
    let mut cfg = GatewayConfig::new(config).shape(shape).fallback("other");
    for name in ["other", "support", "llm", "secret", "open"] {
        cfg = cfg.cluster(name, spawn_agent(name).await);
    }
    cfg.allow_stop_iteration = true;
    cfg.filters_after = after;
    Gateway::start(cfg).await
}

/// The demo agent that answered, and (for an echo) the path and headers it
/// got.
fn served(r: &Response) -> (String, String, Value) {
    let v: Value = serde_json::from_str(&r.text()).unwrap_or_default();
    (
        r.header("x-served-by").unwrap_or_default().to_string(),
        v["path"].as_str().unwrap_or_default().to_string(),
        v["headers"].clone(),
    )
}

#[tokio::test]
async fn other_hosts_keep_their_urls() {
    let gw = shared_gateway(
        r#"{"gateway_hosts": ["agents.example.com", "*.agents.example.net"], "unmatched": "reject",
            "agents": [
              {"name": "support", "namespace": "prod", "backend": "support"},
              {"name": "llm", "namespace": "models", "kind": "modelapi", "backend": "llm", "models": ["gpt-demo"]},
              {"name": "open", "namespace": "prod", "backend": "open", "hosts": ["open.example.org"]}]}"#,
        Shape::Plain,
        Vec::new(),
    )
    .await;
    // www.example.com is another application's: its /support/faq, /models
    // and chat completions reach it untouched, and a client-sent dispatch
    // header is still removed.
    for (method, path, body) in [
        ("GET", "/support/faq?x=1", ""),
        ("GET", "/prod/agent/support", ""),
        ("GET", "/models", ""),
        ("GET", "/v1/models", ""),
        (
            "POST",
            "/v1/chat/completions?echo=1",
            r#"{"model":"gpt-demo","messages":[]}"#,
        ),
    ] {
        let r = gw
            .request(
                method,
                path,
                &[
                    ("host", "www.example.com"),
                    ("x-agent-backend", "llm"),
                    ("content-type", "application/json"),
                ],
                body,
            )
            .await;
        assert_eq!(r.status, 200, "{method} {path}: {}", r.text());
        let (agent, upstream, headers) = served(&r);
        assert_eq!(
            (agent.as_str(), upstream.as_str()),
            ("other", path),
            "{method} {path}"
        );
        assert!(headers.get("x-agent-backend").is_none(), "{path}");
        assert!(headers.get("x-agent-name").is_none(), "{path}");
    }
    // The gateway's hosts, exact and wildcard, any case and port.
    for host in [
        "agents.example.com",
        "AGENTS.example.com:8443",
        "a.b.agents.example.net",
    ] {
        let r = gw
            .request("GET", "/support/faq", &[("host", host)], "")
            .await;
        let (agent, upstream, _) = served(&r);
        assert_eq!((agent.as_str(), upstream.as_str()), ("support", "/faq"));
        let r = gw.request("GET", "/v1/models", &[("host", host)], "").await;
        assert_eq!(r.json()["object"], "list", "{host}");
        let r = gw.request("GET", "/nothing", &[("host", host)], "").await;
        assert_eq!(r.status, 404, "unmatched: reject on the gateway's hosts");
    }
    // Host routes are not confined.
    let r = gw
        .request("GET", "/anything", &[("host", "open.example.org")], "")
        .await;
    assert_eq!(served(&r).0, "open");
}

#[tokio::test]
async fn bare_openai_paths_and_agent_models_can_be_left_out() {
    let gw = shared_gateway(
        r#"{"openai": {"unversioned_paths": false, "agent_models": false},
            "agents": [
              {"name": "support", "namespace": "prod", "backend": "support"},
              {"name": "llm", "namespace": "models", "kind": "modelapi", "backend": "llm", "models": ["gpt-demo"]}]}"#,
        Shape::Plain,
        Vec::new(),
    )
    .await;
    // The bare paths are the other application's.
    let r = gw.get("/models").await;
    assert_eq!(served(&r).0, "other");
    let r = gw
        .request(
            "POST",
            "/chat/completions",
            &JSON,
            r#"{"model":"gpt-demo","messages":[]}"#,
        )
        .await;
    assert_eq!(served(&r).0, "other");
    // /v1 still dispatches, by the configured models only.
    let r = gw.get("/v1/models").await;
    let ids: Vec<Value> = r.json()["data"]
        .as_array()
        .map(|d| d.iter().map(|m| m["id"].clone()).collect())
        .unwrap_or_default();
    assert_eq!(ids, vec![json!("gpt-demo")]);
    let r = gw
        .request(
            "POST",
            "/v1/chat/completions",
            &JSON,
            r#"{"model":"gpt-demo","messages":[]}"#,
        )
        .await;
    assert_eq!(r.header("x-served-by"), Some("llm"), "{}", r.text());
    let r = gw
        .request(
            "POST",
            "/v1/chat/completions",
            &JSON,
            r#"{"model":"prod/support","messages":[]}"#,
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "model_not_found");
}

/// Envoy's RBAC filter as Istio generates it from an AuthorizationPolicy
/// `action: DENY` with `when: request.headers[x-agent-namespace] = prod,
/// request.headers[x-agent-name] = secret` (istio/authorizationpolicy-deny-agent.yaml).
fn deny_prod_secret() -> Value {
    let header = |name: &str, value: &str| json!({ "or_ids": { "ids": [ { "header": { "name": name, "string_match": { "exact": value } } } ] } });
    json!({
        "name": "envoy.filters.http.rbac",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
            "rules": {
                "action": "DENY",
                "policies": {
                    "ns[istio-ingress]-policy[deny-secret-agent]-rule[0]": {
                        "permissions": [ { "and_rules": { "rules": [ { "any": true } ] } } ],
                        "principals": [ { "and_ids": { "ids": [
                            header("x-agent-namespace", "prod"),
                            header("x-agent-name", "secret")
                        ] } } ]
                    }
                }
            }
        }
    })
}

/// A way to reach an agent: method, path, headers, body.
type Alias<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, String);

#[tokio::test]
async fn one_rule_on_the_identity_headers_denies_every_alias() {
    let config = r#"{"agents": [
        {"name": "secret", "namespace": "prod", "backend": "secret", "models": ["secret-model"],
         "hosts": ["secret.example.com"], "prefixes": [{"prefix": "/hidden"}]},
        {"name": "open", "namespace": "prod", "backend": "open"}]}"#;
    for shape in [Shape::Istio, Shape::Plain] {
        let gw = shared_gateway(config, shape, vec![deny_prod_secret()]).await;
        let chat = |model: &str| format!(r#"{{"model":"{model}","messages":[]}}"#);
        let aliases: Vec<Alias> = vec![
            ("GET", "/prod/agent/secret/x", vec![], String::new()),
            ("GET", "/prod/secret/x", vec![], String::new()),
            ("GET", "/secret/x", vec![], String::new()),
            ("GET", "/hidden/x", vec![], String::new()),
            (
                "GET",
                "/x",
                vec![("host", "secret.example.com")],
                String::new(),
            ),
            (
                "POST",
                "/v1/chat/completions",
                JSON.to_vec(),
                chat("prod/secret"),
            ),
            (
                "POST",
                "/v1/chat/completions",
                JSON.to_vec(),
                chat("secret-model"),
            ),
            // A client claiming another identity changes nothing.
            (
                "GET",
                "/prod/agent/secret/x",
                vec![("x-agent-name", "open")],
                String::new(),
            ),
        ];
        for (method, path, headers, body) in &aliases {
            let r = gw.request(method, path, headers, body.clone()).await;
            assert_eq!(
                (r.status, r.text().trim()),
                (403, "RBAC: access denied"),
                "{shape:?} {method} {path} {headers:?}"
            );
        }
        // Other agents pass, even when the client sends the denied identity:
        // the filter replaces client copies before RBAC reads them.
        let spoofed = [("x-agent-name", "secret"), ("x-agent-namespace", "prod")];
        let r = gw.request("GET", "/prod/agent/open/x", &spoofed, "").await;
        assert_eq!(served(&r).0, "open", "{shape:?}: {}", r.text());
        let r = gw.request("GET", "/unmatched/x", &spoofed, "").await;
        assert_eq!(served(&r).0, "other", "{shape:?}: {}", r.text());
    }
}
