//! Regression tests for the holes the third review found, each tried as an
//! attacker would through a real Envoy: a batch hidden behind whitespace in
//! metadata mode, another filter's refusal ejecting a healthy backend, a
//! second copy of the key header opening a fresh bucket, refused calls
//! spending a shared tool limit, a model id forging an access-log line, a
//! JSON media-type parameter breaking metadata mode, and canary cohorts a
//! client could compute offline.

use agentroute_tests::{
    json_to_metadata_mcp, spawn_agent, with_text_access_log, written_log, Gateway, GatewayConfig,
    McpServer, Response,
};
use serde_json::{json, Value};

const MCP_RULES: &str = r#""mcp": {
    "tools": {"allow": ["search", "fetch_*", "expensive_*"], "deny": ["fetch_secrets"]},
    "tool_limits": [{"tools": ["expensive_*"], "requests_per_second": 0.001, "burst": 2}]}"#;

/// An MCP entry with tool rules (and `extra` fields), its messages read by
/// json_to_metadata (Istio's and Envoy Gateway's shape) or from the body.
async fn mcp_gateway(server: &McpServer, from_metadata: bool, extra: &str) -> Gateway {
    let model_from = if from_metadata { "metadata" } else { "body" };
    let plugin = format!(
        r#"{{"openai": {{"model_from": "{model_from}"}}, "agents": [
            {{"name": "tools", "namespace": "prod", "kind": "mcp", "backend": "mcp",
              {MCP_RULES} {extra}}}]}}"#
    );
    let mut config = GatewayConfig::new(plugin).cluster("mcp", server.addr);
    if from_metadata {
        config
            .filters_before
            .push(json_to_metadata_mcp("agentroute"));
    } else {
        config.allow_stop_iteration = true;
    }
    Gateway::start(config).await
}

/// The 2026-07-28 headers of a `tools/call` of `tool`.
fn call_headers(tool: &str) -> [(&str, &str); 2] {
    [("mcp-method", "tools/call"), ("mcp-name", tool)]
}

fn call(id: u32, tool: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
        "name": tool, "arguments": {},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                  "io.modelcontextprotocol/clientCapabilities": {}}}})
    .to_string()
}

async fn post_mcp(gw: &Gateway, headers: &[(&str, &str)], body: String) -> Response {
    let mut all = vec![
        ("accept", "application/json, text/event-stream"),
        ("mcp-protocol-version", "2026-07-28"),
    ];
    if !headers.iter().any(|(k, _)| *k == "content-type") {
        all.push(("content-type", "application/json"));
    }
    all.extend_from_slice(headers);
    gw.request("POST", "/prod/mcp/tools/mcp", &all, body).await
}

#[tokio::test]
async fn a_batch_behind_any_amount_of_whitespace_is_refused_in_metadata_mode() {
    let server = McpServer::start(&["--json"]).await;
    let gw = mcp_gateway(&server, true, "").await;
    let batch = format!("[{}]", call(1, "fetch_secrets"));
    for (pad, what) in [
        (" ".repeat(63), "63 spaces"),
        (" ".repeat(64), "64 spaces"),
        ("\n".repeat(200), "200 newlines"),
        ("\r\n\t ".repeat(200), "800 bytes of mixed whitespace"),
    ] {
        let r = post_mcp(&gw, &[], format!("{pad}{batch}")).await;
        assert_eq!(r.status, 400, "{what}: {}", r.text());
        assert_eq!(r.json()["error"]["code"], json!(-32600), "{what}");
    }
    // More whitespace than the watch reads is refused, never passed on.
    let r = post_mcp(&gw, &[], format!("{}{batch}", "\t".repeat(4096))).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("whitespace"), "{}", r.text());
    assert_eq!(
        server.calls().await,
        Vec::<Value>::new(),
        "nothing reached the server"
    );
    // A message after a little whitespace is still a message.
    let r = post_mcp(
        &gw,
        &call_headers("search"),
        format!("  \n{}", call(2, "search")),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(server.tools_called().await, ["search"]);
}

#[tokio::test]
async fn json_with_a_charset_parameter_is_read_in_metadata_mode() {
    let server = McpServer::start(&["--json"]).await;
    let gw = mcp_gateway(&server, true, "").await;
    for content_type in [
        "application/json; charset=utf-8",
        "application/json;charset=UTF-8",
        "Application/JSON",
    ] {
        let mut headers = vec![("content-type", content_type)];
        headers.extend(call_headers("search"));
        let r = post_mcp(&gw, &headers, call(1, "search")).await;
        assert_eq!(r.status, 200, "{content_type}: {}", r.text());
        // And the rules still hold on such a body.
        let mut headers = vec![("content-type", content_type)];
        headers.extend(call_headers("fetch_secrets"));
        let r = post_mcp(&gw, &headers, call(2, "fetch_secrets")).await;
        assert_eq!(r.status, 200, "{content_type}: {}", r.text());
        assert_eq!(r.json()["error"]["code"], json!(-32602), "{content_type}");
    }
    assert_eq!(server.tools_called().await, ["search", "search", "search"]);
}

#[tokio::test]
async fn calls_refused_by_the_agents_own_limit_spend_nothing_of_the_tool_limit() {
    let server = McpServer::start(&["--json"]).await;
    let extra =
        r#", "rate_limit": {"requests_per_second": 0.001, "burst": 1, "per": "header:x-api-key"}"#;
    let gw = mcp_gateway(&server, false, extra).await;
    let mut statuses = Vec::new();
    for i in 0..4 {
        let headers = [
            ("x-api-key", "client-a"),
            call_headers("expensive_a")[0],
            call_headers("expensive_a")[1],
        ];
        let r = post_mcp(&gw, &headers, call(i, "expensive_a")).await;
        statuses.push(r.status);
    }
    assert_eq!(
        statuses,
        [200, 429, 429, 429],
        "client A over its own limit"
    );
    // The tool's limit (burst 2) lost one token only: client B is served.
    let [m, n] = call_headers("expensive_a");
    let r = post_mcp(
        &gw,
        &[("x-api-key", "client-b"), m, n],
        call(9, "expensive_a"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(server.tools_called().await, ["expensive_a", "expensive_a"]);
    // And now the tool's limit is spent, for everyone.
    let r = post_mcp(
        &gw,
        &[("x-api-key", "client-c"), m, n],
        call(10, "expensive_a"),
    )
    .await;
    assert_eq!(r.status, 429);
    assert_eq!(
        r.json()["error"]["code"],
        json!(-32000),
        "the tool's refusal"
    );
}

async fn echo_gateway(plugin: Value) -> Gateway {
    let config = GatewayConfig::new(plugin.to_string()).cluster("chat", spawn_agent("chat").await);
    Gateway::start(config).await
}

#[tokio::test]
async fn a_second_copy_of_the_key_header_opens_no_fresh_bucket() {
    let gw = echo_gateway(json!({"agents": [
        {"name": "bot", "backend": "chat",
         "rate_limit": {"requests_per_second": 0.001, "burst": 2, "per": "header:x-api-key"}},
        {"name": "llm", "backend": "chat",
         "rate_limit": {"requests_per_second": 0.001, "burst": 2, "per": "header:authorization"}}]}))
    .await;
    // A second copy is refused before any limit: it opens no bucket, and
    // spends nothing of the one it names.
    for i in 0..5 {
        let junk = format!("junk{i}");
        let r = gw
            .request(
                "GET",
                "/bot/x",
                &[("x-api-key", "sk-K"), ("x-api-key", &junk)],
                "",
            )
            .await;
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(r.json()["error"]["code"], "repeated_client_header");
    }
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let r = gw
            .request("GET", "/bot/x", &[("x-api-key", "sk-K")], "")
            .await;
        statuses.push(r.status);
    }
    assert_eq!(statuses, [200, 200, 429], "the key's bucket was whole");
    // Spellings of one credential are one client.
    let mut statuses = Vec::new();
    for spelling in [
        "Bearer sk-K",
        "bearer sk-K",
        "BEARER sk-K",
        "Bearer  sk-K",
        "bearer\tsk-K",
    ] {
        let r = gw
            .request("GET", "/llm/x", &[("authorization", spelling)], "")
            .await;
        statuses.push(r.status);
    }
    assert_eq!(statuses, [200, 200, 429, 429, 429]);
    // Another credential is another client.
    let r = gw
        .request("GET", "/llm/x", &[("authorization", "Bearer sk-L")], "")
        .await;
    assert_eq!(r.status, 200);
}

/// Envoy's fault filter after agentroute, aborting requests that ask for
/// it with the status they name: a local answer made after the filter, as
/// a rate limiter or ext_authz placed there gives.
fn fault_after() -> Value {
    json!({
        "name": "envoy.filters.http.fault",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
            "abort": { "header_abort": {}, "percentage": { "numerator": 100 } }
        }
    })
}

async fn failover_gateway(failover: Value) -> Gateway {
    let plugin = json!({"agents": [{"name": "main", "backend": "a", "failover": failover}]});
    let mut config = GatewayConfig::new(plugin.to_string())
        .cluster("a", spawn_agent("a").await)
        .cluster("b", spawn_agent("b").await);
    config.filters_after.push(fault_after());
    Gateway::start(config).await
}

async fn served_by(gw: &Gateway, path: &str, n: usize) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..n {
        let r = gw.get(path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        seen.push(r.header("x-served-by").unwrap_or_default().to_string());
    }
    seen.sort();
    seen.dedup();
    seen
}

const EJECTIONS: &str = r#"agentroute_failover_ejections_total{namespace="default",agent="main",kind="agent",backend="a"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_filters_refusal_never_ejects_the_backend() {
    let gw = failover_gateway(json!({"backends": ["b"], "retry": false})).await;
    for status in ["503", "429", "500"] {
        let r = gw
            .request(
                "GET",
                "/main/x",
                &[("x-envoy-fault-abort-request", status)],
                "",
            )
            .await;
        assert_eq!(r.status.to_string(), status, "the fault filter answered");
    }
    assert_eq!(
        served_by(&gw, "/main/x", 4).await,
        ["a"],
        "a is not ejected"
    );
    assert_eq!(gw.metric(EJECTIONS).await.unwrap_or(0.0), 0.0);
    // The backend's own failure still ejects it.
    let r = gw.get("/main/x?fail=a").await;
    assert_eq!(r.status, 503);
    gw.wait_metric(EJECTIONS, 1.0).await;
    assert_eq!(served_by(&gw, "/main/x", 4).await, ["b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_failures_lets_no_single_failure_eject_a_backend() {
    let gw = failover_gateway(
        json!({"backends": ["b"], "retry": false, "min_failures": 3, "window": "1m"}),
    )
    .await;
    for _ in 0..2 {
        assert_eq!(gw.get("/main/x?fail=a").await.status, 503);
        assert_eq!(served_by(&gw, "/main/x", 2).await, ["a"], "not yet ejected");
    }
    assert_eq!(gw.get("/main/x?fail=a").await.status, 503);
    gw.wait_metric(EJECTIONS, 1.0).await;
    assert_eq!(
        served_by(&gw, "/main/x", 4).await,
        ["b"],
        "the third failure ejects"
    );
}

#[tokio::test]
async fn a_model_id_cannot_forge_an_access_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let plugin = json!({"observability": {"access_log": true}, "agents": [
        {"name": "llm", "kind": "modelapi", "backend": "chat", "models": ["openai/*"]}]});
    let mut config =
        GatewayConfig::new(plugin.to_string()).cluster("chat", spawn_agent("chat").await);
    config.allow_stop_iteration = true;
    let line = format!(
        "%RESPONSE_CODE% model={}\n",
        agentroute::observe::Field::Model.access_log_command()
    );
    let gw = Gateway::start(with_text_access_log(config, &log, line)).await;
    let forged = "openai/gpt-4o 200\n[2026-12-07] /admin/delete-all model=- 200\r\u{2028}x";
    let body = json!({"model": forged, "messages": []}).to_string();
    let r = gw
        .request(
            "POST",
            "/v1/chat/completions",
            &[("content-type", "application/json")],
            body,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let text = written_log(&log).await;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "one request, one line: {text:?}");
    assert!(
        lines[0].starts_with(r"200 model=openai/gpt-4o 200\x0a[2026-12-07]"),
        "{text:?}"
    );
    assert!(lines[0].contains(r"\x0d\u{2028}x"), "{text:?}");
}

#[tokio::test]
async fn a_deployment_key_decides_canary_cohorts() {
    const KEY: &str = "this deployment's own secret";
    let plugin = json!({"agents": [{"name": "bot", "backend": "chat",
        "canary": {"backend": "canary", "weight": 50, "by": "header:x-user-id", "key": KEY}}]});
    let config = GatewayConfig::new(plugin.to_string())
        .cluster("chat", spawn_agent("chat").await)
        .cluster("canary", spawn_agent("canary").await);
    let gw = Gateway::start(config).await;
    let secret = agentroute::canary::cohort_key(KEY);
    let public = agentroute::canary::COHORT_KEY;
    let mut differ = 0;
    for i in 0..24 {
        let user = format!("user-{i}");
        let cohort = agentroute::canary::cohort(&secret, "default/bot", user.as_bytes());
        let want = if cohort < 5_000 { "canary" } else { "chat" };
        let r = gw
            .request("GET", "/bot/x", &[("x-user-id", &user)], "")
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["agent"], want, "{user}");
        let offline = agentroute::canary::cohort(&public, "default/bot", user.as_bytes());
        differ += usize::from((offline < 5_000) != (cohort < 5_000));
    }
    assert!(differ > 0, "the public key would have told some sides");
}

#[tokio::test]
async fn background_responses_are_refused_where_tokens_are_budgeted() {
    for from_metadata in [false, true] {
        let plugin = json!({
            "openai": {"model_from": if from_metadata { "metadata" } else { "body" }},
            "agents": [
                {"name": "llm", "kind": "modelapi", "backend": "chat", "models": ["budgeted"],
                 "rate_limit": {"tokens_per_minute": 100000}},
                {"name": "free", "kind": "modelapi", "backend": "chat", "models": ["free"]}]});
        let mut config =
            GatewayConfig::new(plugin.to_string()).cluster("chat", spawn_agent("chat").await);
        if from_metadata {
            config
                .filters_before
                .push(agentroute_tests::json_to_metadata("agentroute"));
        } else {
            config.allow_stop_iteration = true;
        }
        let gw = Gateway::start(config).await;
        let respond = |model: &str, background: Value| {
            json!({"model": model, "input": "hi", "background": background}).to_string()
        };
        let json_type = [("content-type", "application/json")];
        let r = gw
            .request(
                "POST",
                "/v1/responses",
                &json_type,
                respond("budgeted", json!(true)),
            )
            .await;
        assert_eq!(r.status, 400, "metadata {from_metadata}: {}", r.text());
        assert_eq!(r.json()["error"]["code"], "background_not_metered");
        assert_eq!(r.json()["error"]["param"], "background");
        for (model, background) in [("budgeted", json!(false)), ("free", json!(true))] {
            let r = gw
                .request(
                    "POST",
                    "/v1/responses",
                    &json_type,
                    respond(model, background.clone()),
                )
                .await;
            assert_eq!(
                r.status,
                200,
                "{model} {background} metadata {from_metadata}: {}",
                r.text()
            );
        }
    }
}
