//! Who is calling, through a real Envoy with its real `jwt_authn` filter
//! (a local JWKS; tokens signed here with HS256): access per agent, per
//! model on the OpenAI surface (and `/v1/models` per caller), per MCP tool
//! (lists filtered per caller and private, calls refused before the
//! server), 401 against 403, limits per `claim:team` shared by two
//! workers, the caller in the access log, and the OAuth protected-resource
//! metadata of an MCP entry whose authorization the gateway does. Then the
//! same with the clients users run (tests/python/): the official `openai`
//! client, the MCP SDK client in both protocol generations, and the MCP
//! SDK's OAuth client finding a stand-in authorization server through the
//! gateway's metadata, and through an MCP server's own metadata (a server
//! built with the SDK that runs its own OAuth) reached at the gateway.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use agentroute::observe::Field;
use agentroute_tests::{
    run_python, send, spawn_agent, venv_python, with_text_access_log, workspace_root, written_log,
    Gateway, GatewayConfig, McpServer, Response,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

const SECRET: &[u8] = b"a test key of this test run only, 32+ bytes";
const ISSUER: &str = "https://issuer.test";

/// A token `jwt_authn` verifies: HS256 over `claims` (issuer added).
fn token(mut claims: Value) -> String {
    claims["iss"] = json!(ISSUER);
    claims["exp"] = json!(4_000_000_000u64);
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT","kid":"k1"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{payload}");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET);
    let signature = URL_SAFE_NO_PAD.encode(ring::hmac::sign(&key, signing_input.as_bytes()));
    format!("{signing_input}.{signature}")
}

fn bearer(claims: Value) -> String {
    format!("Bearer {}", token(claims))
}

/// Envoy's `jwt_authn` as the platforms configure it: one provider with a
/// local JWKS, the verified payload in metadata under `jwt_payload`; a
/// request without a token passes on (`allow_missing`: the filter answers
/// 401 where its rules need an identity), one with a bad token is refused
/// by jwt_authn itself.
fn jwt_authn() -> Value {
    let jwks = json!({ "keys": [ { "kty": "oct", "alg": "HS256", "kid": "k1",
                                   "k": URL_SAFE_NO_PAD.encode(SECRET) } ] });
    json!({
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": { "test": {
                "issuer": ISSUER,
                "local_jwks": { "inline_string": jwks.to_string() },
                "payload_in_metadata": "jwt_payload"
            } },
            "rules": [ { "match": { "prefix": "/" }, "requires": { "requires_any": { "requirements": [
                { "provider_name": "test" }, { "allow_missing": {} } ] } } } ]
        }
    })
}

async fn gateway(plugin: Value, clusters: &[(&str, std::net::SocketAddr)]) -> Gateway {
    let mut config = GatewayConfig::new(plugin.to_string());
    for (name, addr) in clusters {
        config = config.cluster(name, *addr);
    }
    config.filters_before.push(jwt_authn());
    config.allow_stop_iteration = true;
    Gateway::start(config).await
}

fn auth(value: &str) -> [(&str, &str); 1] {
    [("authorization", value)]
}

#[tokio::test]
async fn access_per_agent_401_without_identity_403_without_a_rule() {
    let plugin = json!({ "agents": [
        { "name": "support", "namespace": "prod", "backend": "chat",
          "access": [ { "claims": { "team": "support" } } ] },
        { "name": "open", "backend": "chat" } ] });
    let gw = gateway(plugin, &[("chat", spawn_agent("chat").await)]).await;
    // No token: 401 with a Bearer challenge, a JSON-RPC error (an agent).
    let r = gw.get("/prod/support/x").await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert_eq!(r.json()["error"]["code"], -32001);
    // Another team: 403.
    let other = bearer(json!({ "sub": "bob", "team": "sales" }));
    let r = gw
        .request("GET", "/prod/support/x", &auth(&other), "")
        .await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], -32003);
    // The team: admitted, on every alias of the entry.
    let alice = bearer(json!({ "sub": "alice", "team": "support" }));
    for path in ["/prod/support/x", "/prod/agent/support/x", "/support/x"] {
        let r = gw.request("GET", path, &auth(&alice), "").await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
    // A forged token never reaches the filter: jwt_authn refuses it.
    let forged = format!("{}x", token(json!({ "sub": "eve", "team": "support" })));
    let r = gw
        .request(
            "GET",
            "/prod/support/x",
            &auth(&format!("Bearer {forged}")),
            "",
        )
        .await;
    assert_eq!(r.status, 401);
    // Claims are never read from headers a client sends.
    let r = gw
        .request(
            "GET",
            "/prod/support/x",
            &[("x-jwt-claim-team", "support"), ("team", "support")],
            "",
        )
        .await;
    assert_eq!(r.status, 401);
    // An entry without rules asks nothing.
    assert_eq!(gw.get("/open/x").await.status, 200);
}

/// The `field` of every element of the array at JSON pointer `list` of an
/// answer (model ids of `/v1/models`, tool names of `tools/list`).
fn listed(r: &Response, list: &str, field: &str) -> Vec<String> {
    r.json()
        .pointer(list)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("{}", r.text()))
        .iter()
        .map(|m| m[field].as_str().unwrap_or_default().to_string())
        .collect()
}

fn model_ids(r: &Response) -> Vec<String> {
    listed(r, "/data", "id")
}

#[tokio::test]
async fn models_per_caller_on_the_openai_surface() {
    let plugin = json!({ "agents": [
        { "name": "llm", "namespace": "models", "kind": "modelapi", "backend": "llm",
          "models": ["gpt-4o", "gpt-4o-mini"],
          "access": [ { "claims": { "groups": "ml-team" } },
                      { "claims": { "groups": "interns" }, "models": ["gpt-4o-mini"] } ] },
        { "name": "free", "namespace": "models", "kind": "modelapi", "backend": "llm", "models": ["free"] } ] });
    let gw = gateway(plugin, &[("llm", spawn_agent("llm").await)]).await;
    let ml = bearer(json!({ "sub": "a", "groups": ["ml-team", "staff"] }));
    let intern = bearer(json!({ "sub": "i", "groups": ["interns"] }));
    let r = gw.request("GET", "/v1/models", &auth(&ml), "").await;
    assert_eq!(model_ids(&r), ["gpt-4o", "gpt-4o-mini", "free"]);
    assert_eq!(r.header("cache-control"), Some("private"));
    let r = gw.request("GET", "/v1/models", &auth(&intern), "").await;
    assert_eq!(model_ids(&r), ["gpt-4o-mini", "free"]);
    assert_eq!(model_ids(&gw.get("/v1/models").await), ["free"]);
    let chat = |model: &str| json!({ "model": model, "messages": [] }).to_string();
    let post = |who: &str, model: &str| {
        let headers = vec![
            ("authorization".to_string(), who.to_string()),
            ("content-type".to_string(), "application/json".to_string()),
        ];
        (headers, chat(model))
    };
    for (who, model, want) in [
        (&intern, "gpt-4o", 403),
        (&intern, "gpt-4o-mini", 200),
        (&ml, "gpt-4o", 200),
        (&String::new(), "gpt-4o", 401),
        (&String::new(), "free", 200),
    ] {
        let (headers, body) = post(who, model);
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let r = gw
            .request("POST", "/v1/chat/completions", &headers, body)
            .await;
        assert_eq!(r.status, want, "{model}: {}", r.text());
        if want == 403 {
            assert_eq!(r.json()["error"]["code"], "model_not_allowed");
        }
        if want == 401 {
            assert_eq!(r.json()["error"]["type"], "authentication_error");
            assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        }
    }
}

fn rpc(id: u32, method: &str, params: Value) -> String {
    let mut params = params;
    params["_meta"] = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                             "io.modelcontextprotocol/clientCapabilities": {}});
    json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }).to_string()
}

async fn mcp(gw: &Gateway, who: &str, method: &str, tool: Option<&str>, body: String) -> Response {
    let mut headers = vec![
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", method),
    ];
    if let Some(tool) = tool {
        headers.push(("mcp-name", tool));
    }
    if !who.is_empty() {
        headers.push(("authorization", who));
    }
    gw.request("POST", "/prod/mcp/tools/mcp", &headers, body)
        .await
}

fn tool_names(r: &Response) -> Vec<String> {
    listed(r, "/result/tools", "name")
}

#[tokio::test]
async fn tools_per_caller_listed_privately_and_refused_before_the_server() {
    let server = McpServer::start(&["--json"]).await;
    let plugin = json!({ "agents": [
        { "name": "tools", "namespace": "prod", "kind": "mcp", "backend": "mcp",
          "mcp": { "tools": { "deny": ["delete_all"] } },
          "access": [ { "claims": { "scope": "tools:all" } },
                      { "claims": { "scope": "tools:read" }, "tools": ["search", "fetch_*"] } ] } ] });
    let gw = gateway(plugin, &[("mcp", server.addr)]).await;
    let reader = bearer(json!({ "sub": "r", "scope": "openid tools:read" }));
    let admin = bearer(json!({ "sub": "a", "scope": "tools:all" }));
    let r = mcp(
        &gw,
        &reader,
        "tools/list",
        None,
        rpc(1, "tools/list", json!({})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let mut listed = tool_names(&r);
    listed.sort();
    assert_eq!(listed, ["fetch_secrets", "fetch_url", "search"]);
    assert_eq!(r.header("cache-control"), Some("private"));
    let r = mcp(
        &gw,
        &admin,
        "tools/list",
        None,
        rpc(2, "tools/list", json!({})),
    )
    .await;
    let admin_tools = tool_names(&r);
    assert!(
        admin_tools.contains(&"expensive_a".to_string()),
        "{admin_tools:?}"
    );
    assert!(
        !admin_tools.contains(&"delete_all".to_string()),
        "mcp.tools still applies"
    );
    server.clear_calls().await;
    // A tool outside the caller's rule: refused like an unknown tool.
    let call = |id, tool: &str| rpc(id, "tools/call", json!({ "name": tool, "arguments": {} }));
    let r = mcp(
        &gw,
        &reader,
        "tools/call",
        Some("expensive_a"),
        call(3, "expensive_a"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["error"]["code"], -32602, "{}", r.text());
    let r = mcp(
        &gw,
        &reader,
        "tools/call",
        Some("search"),
        call(4, "search"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.json()["error"].is_null(), "{}", r.text());
    let r = mcp(
        &gw,
        &admin,
        "tools/call",
        Some("expensive_a"),
        call(5, "expensive_a"),
    )
    .await;
    assert!(r.json()["error"].is_null(), "{}", r.text());
    assert_eq!(server.tools_called().await, ["search", "expensive_a"]);
    // No identity, no matching rule.
    let r = mcp(&gw, "", "tools/list", None, rpc(6, "tools/list", json!({}))).await;
    assert_eq!(r.status, 401);
    let nobody = bearer(json!({ "sub": "n", "scope": "openid" }));
    let r = mcp(
        &gw,
        &nobody,
        "tools/list",
        None,
        rpc(7, "tools/list", json!({})),
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"]["code"], -32003);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_per_team_are_shared_by_two_workers() {
    let plugin = json!({ "agents": [ { "name": "bot", "backend": "chat",
        "rate_limit": { "requests_per_second": 0.001, "burst": 2, "per": "claim:team" } } ] });
    let gw = gateway(plugin, &[("chat", spawn_agent("chat").await)]).await;
    gw.wait_workers_configured(2, Duration::from_secs(10))
        .await
        .unwrap_or_else(|log| panic!("{log}"));
    // Two users of team a, fresh connections (both workers): one bucket.
    let mut statuses = Vec::new();
    for i in 0..4 {
        let who = bearer(json!({ "sub": format!("user-{i}"), "team": "a" }));
        statuses.push(gw.request("GET", "/bot/x", &auth(&who), "").await.status);
    }
    assert_eq!(statuses, [200, 200, 429, 429]);
    let b = bearer(json!({ "sub": "b1", "team": "b" }));
    assert_eq!(gw.request("GET", "/bot/x", &auth(&b), "").await.status, 200);
    // Without the claim: the one shared bucket of requests without it.
    let none = bearer(json!({ "sub": "c1" }));
    let shared: Vec<u16> = [
        gw.request("GET", "/bot/x", &auth(&none), "").await.status,
        gw.get("/bot/x").await.status,
        gw.get("/bot/x").await.status,
    ]
    .to_vec();
    assert_eq!(shared, [200, 200, 429]);
}

#[tokio::test]
async fn the_caller_is_in_the_access_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let plugin = json!({ "observability": { "access_log": true }, "identity": { "subject": "email" },
        "agents": [ { "name": "bot", "backend": "chat", "access": [ { "claims": { "team": "a" } } ] } ] });
    let mut config =
        GatewayConfig::new(plugin.to_string()).cluster("chat", spawn_agent("chat").await);
    config.filters_before.push(jwt_authn());
    let line = format!("%RESPONSE_CODE% {}\n", Field::Subject.access_log_command());
    let gw = Gateway::start(with_text_access_log(config, &log, line)).await;
    let who =
        bearer(json!({ "sub": "u-1", "email": "alice@example.com\nforged line", "team": "a" }));
    assert_eq!(
        gw.request("GET", "/bot/x", &auth(&who), "").await.status,
        200
    );
    let text = written_log(&log).await;
    assert_eq!(text.lines().count(), 1, "{text:?}");
    assert!(
        text.starts_with(r"200 alice@example.com\x0aforged line"),
        "{text:?}"
    );
}

#[tokio::test]
async fn an_mcp_entry_advertises_where_to_get_a_token() {
    let server = McpServer::start(&["--json"]).await;
    let plugin = json!({ "agents": [ { "name": "tools", "namespace": "prod", "kind": "mcp", "backend": "mcp",
        "mcp": { "oauth": { "authorization_servers": ["https://auth.example.com"],
                            "scopes_supported": ["tools:read"] } } } ] });
    let gw = gateway(plugin, &[("mcp", server.addr)]).await;
    let host = [("host", "gw.example.com")];
    // No token: 401 naming the metadata at the gateway.
    let r = gw.request("POST", "/prod/mcp/tools/mcp", &host, "{}").await;
    assert_eq!(r.status, 401, "{}", r.text());
    let metadata = "http://gw.example.com/.well-known/oauth-protected-resource/prod/mcp/tools";
    assert_eq!(
        r.header("www-authenticate"),
        Some(format!("Bearer resource_metadata=\"{metadata}\"").as_str())
    );
    // The document, as the MCP client asks for it (path insertion).
    for path in [
        "/.well-known/oauth-protected-resource/prod/mcp/tools",
        "/.well-known/oauth-protected-resource/prod/mcp/tools/mcp",
    ] {
        let r = gw
            .request(
                "GET",
                path,
                &[("host", "gw.example.com"), ("x-forwarded-proto", "https")],
                "",
            )
            .await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let doc = r.json();
        assert_eq!(
            doc["resource"], "https://gw.example.com/prod/mcp/tools",
            "{path}"
        );
        assert_eq!(
            doc["authorization_servers"],
            json!(["https://auth.example.com"])
        );
        assert_eq!(doc["scopes_supported"], json!(["tools:read"]));
    }
    // A hostile host is never written into a URL.
    let r = gw
        .request(
            "GET",
            "/.well-known/oauth-protected-resource/prod/mcp/tools",
            &[("host", "evil.example.com/\"x")],
            "",
        )
        .await;
    assert_ne!(r.status, 200);
    // With a token the request goes on.
    let who = bearer(json!({ "sub": "u" }));
    let r = gw
        .request(
            "POST",
            "/prod/mcp/tools/mcp",
            &[
                ("authorization", who.as_str()),
                ("content-type", "application/json"),
                ("accept", "application/json, text/event-stream"),
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/list"),
            ],
            rpc(1, "tools/list", json!({})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

// The same rules with the official SDK clients (tests/python/), through the
// same Envoy and jwt_authn: what users of the gateway actually run.

/// Runs tests/python/mcp_client.py (the official MCP SDK client) on `url`
/// in `mode` as `who`: `--authorization=VALUE` (an empty VALUE sends no
/// header) or `--oauth`; its JSON line, with `http`: every HTTP exchange
/// the SDK made.
async fn sdk_mcp(url: &str, mode: &str, who: &str, actions: &[&str]) -> Value {
    let args = ["--url", url, "--mode", mode, who]
        .iter()
        .chain(actions)
        .map(|a| a.to_string())
        .collect();
    let out = run_python("mcp_client.py", args).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|e| {
        panic!(
            "mcp_client.py {mode} {actions:?}: {e}\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The option that makes the SDK client send `value` as its Authorization.
fn sending(value: &str) -> String {
    format!("--authorization={value}")
}

/// The HTTP statuses the SDK client got, in order.
fn statuses(out: &Value) -> Vec<u64> {
    out["http"]
        .as_array()
        .unwrap_or_else(|| panic!("no http record: {out}"))
        .iter()
        .map(|x| x["status"].as_u64().unwrap_or_default())
        .collect()
}

fn sorted_tools(out: &Value) -> Vec<String> {
    let mut tools: Vec<String> = out["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{out}"))
        .iter()
        .map(|t| t.as_str().unwrap_or_default().to_string())
        .collect();
    tools.sort();
    tools
}

#[tokio::test]
async fn the_official_openai_client_sees_and_uses_only_its_models() {
    let plugin = json!({ "agents": [
        { "name": "llm", "namespace": "models", "kind": "modelapi", "backend": "llm",
          "models": ["gpt-4o", "gpt-4o-mini"],
          "access": [ { "claims": { "groups": "ml-team" } },
                      { "claims": { "groups": "interns" }, "models": ["gpt-4o-mini"] } ] } ] });
    let gw = gateway(plugin, &[("llm", spawn_agent("llm").await)]).await;
    // The SDK sends its api_key as `Authorization: Bearer <api_key>`.
    let intern = token(json!({ "sub": "i", "groups": ["interns"] }));
    let out = run_python(
        "openai_access_client.py",
        vec![format!("http://{}/v1", gw.addr), intern],
    )
    .await;
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "openai access client: ok"
    );
}

#[tokio::test]
async fn the_official_mcp_client_sees_and_calls_only_its_tools_in_both_generations() {
    let server = McpServer::start(&[]).await;
    let plugin = json!({ "agents": [
        { "name": "tools", "namespace": "prod", "kind": "mcp", "backend": "mcp",
          "mcp": { "tools": { "deny": ["delete_all"] } },
          "access": [ { "claims": { "scope": "tools:all" } },
                      { "claims": { "scope": "tools:read" }, "tools": ["search", "fetch_*"] } ] } ] });
    let gw = gateway(plugin, &[("mcp", server.addr)]).await;
    let url = format!("http://{}/prod/mcp/tools/mcp", gw.addr);
    let reader = bearer(json!({ "sub": "r", "scope": "openid tools:read" }));
    let admin = bearer(json!({ "sub": "a", "scope": "tools:all" }));
    let nobody = bearer(json!({ "sub": "n", "scope": "openid" }));
    for mode in ["legacy", "2026-07-28"] {
        server.clear_calls().await;
        let out = sdk_mcp(
            &url,
            mode,
            &sending(&reader),
            &[
                "list",
                r#"call:search:{"query":"q"}"#,
                "call:expensive_a",
                r#"call:fetch_url:{"url":"http://x"}"#,
            ],
        )
        .await;
        assert_eq!(out.get("error"), None, "{mode}: {out}");
        assert_eq!(
            sorted_tools(&out),
            ["fetch_secrets", "fetch_url", "search"],
            "{mode}: the reader's list"
        );
        let results = &out["results"];
        assert_eq!(
            results[0],
            json!({"tool": "search", "ok": true, "text": "results for q"}),
            "{mode}"
        );
        assert_eq!(
            (&results[1]["code"], &results[1]["message"]),
            (&json!(-32602), &json!("Unknown tool: expensive_a")),
            "{mode}: a tool outside the reader's rule: {out}"
        );
        assert_eq!(results[2]["ok"], json!(true), "{mode}: {out}");
        assert_eq!(
            server.tools_called().await,
            ["search", "fetch_url"],
            "{mode}: the refused call reached the server"
        );

        let out = sdk_mcp(&url, mode, &sending(&admin), &["list", "call:expensive_a"]).await;
        assert_eq!(out.get("error"), None, "{mode}: {out}");
        let tools = sorted_tools(&out);
        assert_eq!(
            tools,
            [
                "expensive_a",
                "expensive_b",
                "fetch_secrets",
                "fetch_url",
                "search",
                "whoami"
            ],
            "{mode}: the admin's list (mcp.tools still denies delete_all)"
        );
        assert_eq!(out["results"][0]["ok"], json!(true), "{mode}: {out}");
        assert_eq!(
            server.tools_called().await,
            ["search", "fetch_url", "expensive_a"],
            "{mode}"
        );

        // Without a token, or with one no rule admits: the first request
        // is refused, nothing reaches the server.
        server.clear_calls().await;
        for (who, status) in [("", 401), (nobody.as_str(), 403)] {
            let out = sdk_mcp(
                &url,
                mode,
                &sending(who),
                &["list", "call:search:{\"query\":\"q\"}"],
            )
            .await;
            assert!(out.get("error").is_some(), "{mode} {status}: {out}");
            assert_eq!(statuses(&out).first(), Some(&status), "{mode}: {out}");
            assert_eq!(out["tools"], json!([]), "{mode} {status}: {out}");
        }
        assert_eq!(
            server.calls().await,
            Vec::<Value>::new(),
            "{mode}: refused callers reached the server"
        );
    }
}

/// The stand-in OAuth authorization server (tests/python/oauth_server.py)
/// on an ephemeral loopback port, handing out `token` at its token
/// endpoint. Dropping it kills the process.
struct AuthServer {
    _child: tokio::process::Child,
    addr: SocketAddr,
}

impl AuthServer {
    async fn start(token: &str) -> AuthServer {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(venv_python())
            .arg(workspace_root().join("tests/python/oauth_server.py"))
            .args(["--port", "0", "--token", token])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn the stand-in authorization server: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .ok()
            .and_then(Result::ok)
            .flatten()
            .unwrap_or_default();
        let addr = line
            .strip_prefix("listening on ")
            .and_then(|a| a.trim().parse().ok())
            .unwrap_or_else(|| panic!("the authorization server said {line:?}"));
        AuthServer {
            _child: child,
            addr,
        }
    }

    fn issuer(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What it was asked so far: `{"method", "path", "query", "form", "json"}`.
    async fn requests(&self) -> Vec<Value> {
        let r = send(self.addr, "GET", "/requests", &[], "").await;
        serde_json::from_slice(&r.body).expect("requests")
    }

    async fn forget(&self) {
        send(self.addr, "DELETE", "/requests", &[], "").await;
    }
}

#[tokio::test]
async fn the_official_mcp_oauth_client_finds_the_authorization_server_through_the_gateway() {
    let server = McpServer::start(&["--json"]).await;
    // What the stand-in hands out: a token the gateway's jwt_authn accepts.
    let issued = token(json!({ "sub": "oauth-user", "scope": "tools:read" }));
    let auth_server = AuthServer::start(&issued).await;
    let plugin = json!({ "agents": [ { "name": "tools", "namespace": "prod", "kind": "mcp", "backend": "mcp",
        "mcp": { "oauth": { "authorization_servers": [auth_server.issuer()],
                            "scopes_supported": ["tools:read"] } } } ] });
    let gw = gateway(plugin, &[("mcp", server.addr)]).await;
    let url = format!("http://{}/prod/mcp/tools/mcp", gw.addr);
    // The resource the gateway names: the entry's URL as the client uses it.
    let resource = format!("http://{}/prod/mcp/tools", gw.addr);
    let metadata = format!(
        "http://{}/.well-known/oauth-protected-resource/prod/mcp/tools",
        gw.addr
    );
    for mode in ["legacy", "2026-07-28"] {
        auth_server.forget().await;
        server.clear_calls().await;
        let out = sdk_mcp(&url, mode, "--oauth", &["list"]).await;
        assert_discovered_through_the_gateway(&out, mode, &url, &metadata, &auth_server, &resource)
            .await;
        // With the token it got, the client is served.
        assert_eq!(
            sorted_tools(&out).len(),
            7,
            "{mode}: the tools after the flow: {out}"
        );
        let called: Vec<String> = server
            .calls()
            .await
            .iter()
            .filter_map(|c| c["method"].as_str().map(str::to_string))
            .collect();
        assert!(
            called.contains(&"tools/list".to_string()),
            "{mode}: {called:?}"
        );
    }
}

/// What an MCP server (tests/python/mcp_server.py) was asked over HTTP:
/// "METHOD PATH" of every request but its own /calls and /requests.
async fn server_requests(server: &McpServer) -> Vec<String> {
    let r = send(server.addr, "GET", "/requests", &[], "").await;
    serde_json::from_slice(&r.body).expect("requests")
}

async fn forget_server_requests(server: &McpServer) {
    send(server.addr, "DELETE", "/requests", &[], "").await;
}

/// What the SDK's OAuth client did, in both OAuth modes: its first request
/// got 401, its second fetched the protected-resource metadata at the
/// gateway (`metadata`); then — only once the document's `resource`
/// passed the SDK's check against the URL it connects to — it asked the
/// authorization server for its metadata, registered, authorized and got
/// a token, naming `resource` in both.
async fn assert_discovered_through_the_gateway(
    out: &Value,
    mode: &str,
    url: &str,
    metadata: &str,
    auth_server: &AuthServer,
    resource: &str,
) {
    assert_eq!(out.get("error"), None, "{mode}: {out}");
    let http = out["http"].as_array().unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        (&http[0]["url"], &http[0]["status"]),
        (&json!(url), &json!(401)),
        "{mode}: {out}"
    );
    assert_eq!(
        (&http[1]["method"], &http[1]["url"], &http[1]["status"]),
        (&json!("GET"), &json!(metadata), &json!(200)),
        "{mode}: {out}"
    );
    assert_eq!(
        asked(auth_server).await,
        [
            "GET /.well-known/oauth-authorization-server",
            "POST /register",
            "GET /authorize",
            "POST /token"
        ],
        "{mode}: {out}"
    );
    let seen = auth_server.requests().await;
    let authorize = &seen[2]["query"];
    assert_eq!(
        authorize["resource"],
        json!(resource),
        "{mode}: {authorize}"
    );
    assert_eq!(authorize["scope"], json!("tools:read"), "{mode}");
    assert_eq!(authorize["code_challenge_method"], json!("S256"), "{mode}");
    assert_eq!(
        seen[3]["form"]["resource"],
        json!(resource),
        "{mode}: {}",
        seen[3]
    );
}

/// "METHOD PATH" of each request the stand-in authorization server got.
async fn asked(auth_server: &AuthServer) -> Vec<String> {
    auth_server
        .requests()
        .await
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r["method"].as_str().unwrap(),
                r["path"].as_str().unwrap()
            )
        })
        .collect()
}

/// An MCP server that runs its own OAuth (the SDK's `AuthSettings` and
/// token verifier: its 401 and its protected-resource metadata name its own
/// internal URL) behind an MCP entry without `mcp.oauth`, and the SDK's
/// OAuth client connecting through the gateway: it is pointed at the
/// gateway's well-known URL, gets the server's document with `resource`
/// the URL it connects to, and only then goes to the authorization server.
/// Behind an entry the filter does not rewrite for (kind `agent`), the same
/// client follows the server's internal URL and refuses the document.
#[tokio::test]
async fn the_official_mcp_oauth_client_finds_a_servers_own_authorization_server_through_the_gateway(
) {
    // An opaque token only the server checks: the gateway verifies nothing.
    let issued = "the-servers-own-token-1";
    let auth_server = AuthServer::start(issued).await;
    let issuer = auth_server.issuer();
    let server =
        McpServer::start(&["--json", "--oauth-issuer", &issuer, "--oauth-token", issued]).await;
    let plugin = json!({ "agents": [
        { "name": "tools", "namespace": "prod", "kind": "mcp", "backend": "mcp" },
        { "name": "raw", "namespace": "prod", "kind": "agent", "backend": "mcp" } ] });
    let gw =
        Gateway::start(GatewayConfig::new(plugin.to_string()).cluster("mcp", server.addr)).await;
    let url = format!("http://{}/prod/mcp/tools/mcp", gw.addr);
    let metadata = format!(
        "http://{}/.well-known/oauth-protected-resource/prod/mcp/tools/mcp",
        gw.addr
    );
    let own_metadata = format!(
        "http://{}/.well-known/oauth-protected-resource/mcp",
        server.addr
    );
    for mode in ["legacy", "2026-07-28"] {
        auth_server.forget().await;
        server.clear_calls().await;
        forget_server_requests(&server).await;
        let out = sdk_mcp(
            &url,
            mode,
            "--oauth",
            &["list", r#"call:search:{"query":"q"}"#],
        )
        .await;
        assert_discovered_through_the_gateway(&out, mode, &url, &metadata, &auth_server, &url)
            .await;
        let http = out["http"].as_array().unwrap_or_else(|| panic!("{out}"));
        let server_origin = format!("http://{}", server.addr);
        assert!(
            http.iter().all(|x| !x["url"]
                .as_str()
                .unwrap_or_default()
                .starts_with(&server_origin)),
            "{mode}: the client never learnt the server's own address: {out}"
        );
        // The document request reached the server at its own well-known
        // path (the SDK serves it nowhere else), after the first 401.
        let requests = server_requests(&server).await;
        assert_eq!(
            requests.get(..2),
            Some(
                &[
                    "POST /mcp".to_string(),
                    "GET /.well-known/oauth-protected-resource/mcp".to_string()
                ][..]
            ),
            "{mode}: {requests:?}"
        );
        // With the server's token, through the gateway, the calls succeed.
        assert_eq!(sorted_tools(&out).len(), 7, "{mode}: {out}");
        assert_eq!(
            out["results"],
            json!([{ "tool": "search", "ok": true, "text": "results for q" }]),
            "{mode}: {out}"
        );
        assert_eq!(server.tools_called().await, ["search"], "{mode}");
    }
    // The same server behind an entry the filter does not rewrite for: the
    // 401 names the server's own URL, the SDK fetches the document there
    // and refuses its `resource`; the authorization server is never asked.
    auth_server.forget().await;
    server.clear_calls().await;
    forget_server_requests(&server).await;
    let raw = format!("http://{}/prod/agent/raw/mcp", gw.addr);
    let out = sdk_mcp(&raw, "legacy", "--oauth", &["list"]).await;
    let error = out["error"].as_str().unwrap_or_else(|| panic!("{out}"));
    assert!(error.contains("does not match"), "{out}");
    let http = out["http"].as_array().unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        (&http[1]["url"], &http[1]["status"]),
        (&json!(own_metadata), &json!(200)),
        "{out}"
    );
    assert_eq!(asked(&auth_server).await, Vec::<String>::new(), "{out}");
    assert_eq!(server.tools_called().await, Vec::<String>::new());
}
