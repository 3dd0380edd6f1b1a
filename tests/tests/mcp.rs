//! MCP servers behind the gateway, through real Envoy, with the official
//! MCP Python SDK on both sides (tests/python/mcp_server.py and
//! mcp_client.py) in both protocol generations: the session protocol
//! (initialize, `Mcp-Session-Id`) and the stateless 2026-07-28 one
//! (`Mcp-Method` / `Mcp-Name` headers).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use agentroute_tests::{
    json_to_metadata_mcp, mcp_client, run_python, Gateway, GatewayConfig, McpServer, Response,
};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const RULES: &str = r#""mcp": {
    "tools": {"allow": ["search", "fetch_*", "expensive_*", "whoami"], "deny": ["fetch_secrets"]},
    "tool_limits": [{"tools": ["expensive_*"], "requests_per_second": 0.001, "burst": 2}]}"#;

fn plugin_config(model_from: &str) -> String {
    format!(
        r#"{{"openai": {{"model_from": "{model_from}"}}, "agents": [
            {{"name": "tools", "namespace": "prod", "kind": "mcp", "backend": "mcp-ruled", {RULES}}},
            {{"name": "open", "namespace": "prod", "kind": "mcp", "backend": "mcp-open"}}]}}"#
    )
}

/// The gateway reading messages from the body (plain Envoy with
/// `allow_on_headers_stop_iteration`) or from json_to_metadata (what Istio
/// and Envoy Gateway can do).
async fn gateway(server: &McpServer, from_metadata: bool) -> Gateway {
    let mut config = GatewayConfig::new(plugin_config(if from_metadata {
        "metadata"
    } else {
        "body"
    }))
    .cluster("mcp-ruled", server.addr)
    .cluster("mcp-open", server.addr);
    if from_metadata {
        config
            .filters_before
            .push(json_to_metadata_mcp("agentroute"));
    } else {
        config.allow_stop_iteration = true;
    }
    Gateway::start(config).await
}

const LISTED: [&str; 5] = [
    "search",
    "fetch_url",
    "expensive_a",
    "expensive_b",
    "whoami",
];

async fn rules_hold(gw: &Gateway, server: &McpServer, mode: &str) {
    server.clear_calls().await;
    let url = format!("http://{}/prod/mcp/tools/mcp", gw.addr);
    let out = mcp_client(
        &url,
        mode,
        &[
            "list",
            r#"call:search:{"query":"q"}"#,
            "call:fetch_url:{\"url\":\"http://x\"}",
            "call:fetch_secrets",
            "call:delete_all",
        ],
    )
    .await;
    assert_eq!(out.get("error"), None, "{mode}: {out}");
    assert_eq!(out["tools"], json!(LISTED), "{mode}: filtered list");
    assert!(out["pages"].as_u64().unwrap() >= 1);
    let results = out["results"].as_array().unwrap();
    assert_eq!(
        results[0],
        json!({"tool": "search", "ok": true, "text": "results for q"}),
        "{mode}"
    );
    assert_eq!(results[1]["ok"], json!(true), "{mode}");
    for (result, tool) in results[2..].iter().zip(["fetch_secrets", "delete_all"]) {
        assert_eq!(
            (result["code"].clone(), result["message"].clone()),
            (json!(-32602), json!(format!("Unknown tool: {tool}"))),
            "{mode}: {result}"
        );
    }
    let called = server.tools_called().await;
    assert!(called.contains(&"search".to_string()), "{called:?}");
    assert!(
        !called
            .iter()
            .any(|t| t == "fetch_secrets" || t == "delete_all"),
        "{mode}: refused tools reached the server: {called:?}"
    );
    // Without rules, everything passes: the same server lists all seven.
    let open = format!("http://{}/prod/mcp/open/mcp", gw.addr);
    let out = mcp_client(&open, mode, &["list", "call:delete_all"]).await;
    assert_eq!(out["tools"].as_array().unwrap().len(), 7, "{mode}: {out}");
    assert_eq!(out["results"][0]["ok"], json!(true));
}

#[tokio::test(flavor = "multi_thread")]
async fn tool_rules_hold_for_both_generations_sse_and_json_paged() {
    for server_args in [&["--page-size", "3"][..], &["--json"][..]] {
        let server = McpServer::start(server_args).await;
        let gw = gateway(&server, false).await;
        for mode in ["legacy", "2026-07-28"] {
            rules_hold(&gw, &server, mode).await;
        }
        gw.wait_metric(
            r#"agentroute_mcp_tool_refused_total{namespace="prod",agent="tools",kind="mcp",tool="fetch_secrets"}"#,
            2.0,
        )
        .await;
        gw.wait_metric(
            r#"agentroute_mcp_tool_refused_total{namespace="prod",agent="tools",kind="mcp",tool="other"}"#,
            2.0,
        )
        .await;
        gw.wait_metric(
            r#"agentroute_mcp_tool_calls_total{namespace="prod",agent="tools",kind="mcp",tool="search"}"#,
            2.0,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tool_rules_hold_with_json_to_metadata() {
    let server = McpServer::start(&["--page-size", "2"]).await;
    let gw = gateway(&server, true).await;
    for mode in ["legacy", "2026-07-28"] {
        rules_hold(&gw, &server, mode).await;
    }
}

/// A stateless (2026-07-28) request, by hand.
fn stateless_call(id: Value, tool: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
        "name": tool, "arguments": {},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                  "io.modelcontextprotocol/clientCapabilities": {}}}})
    .to_string()
}

async fn post(gw: &Gateway, headers: &[(&str, &str)], body: String) -> Response {
    let mut all = vec![
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-protocol-version", "2026-07-28"),
    ];
    all.extend_from_slice(headers);
    gw.request("POST", "/prod/mcp/tools/mcp", &all, body).await
}

#[tokio::test(flavor = "multi_thread")]
async fn per_tool_limits_are_shared_by_two_workers() {
    for from_metadata in [false, true] {
        let server = McpServer::start(&["--json"]).await;
        let gw = gateway(&server, from_metadata).await;
        let mut statuses = Vec::new();
        for i in 0..6 {
            // A fresh connection each: the two workers both take some.
            let r = post(
                &gw,
                &[("mcp-method", "tools/call"), ("mcp-name", "expensive_a")],
                stateless_call(json!(i), "expensive_a"),
            )
            .await;
            if r.status == 429 {
                assert!(r
                    .header("retry-after")
                    .is_some_and(|v| v.parse::<u64>().unwrap() >= 1));
                assert_eq!(r.header("x-ratelimit-limit"), Some("2"));
                let body = r.json();
                assert_eq!(body["id"], json!(i));
                assert_eq!(body["error"]["code"], json!(-32000));
            }
            statuses.push(r.status);
        }
        assert_eq!(
            statuses,
            [200, 200, 429, 429, 429, 429],
            "metadata: {from_metadata}"
        );
        // Per tool, not per pattern: expensive_b has its own bucket.
        let r = post(
            &gw,
            &[("mcp-method", "tools/call"), ("mcp-name", "expensive_b")],
            stateless_call(json!("b"), "expensive_b"),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(
            server.tools_called().await,
            ["expensive_a", "expensive_a", "expensive_b"]
        );
        gw.wait_metric(
            r#"agentroute_mcp_tool_limited_total{namespace="prod",agent="tools",kind="mcp",tool="expensive_*"}"#,
            4.0,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn headers_that_disagree_with_the_body_and_batches_are_refused() {
    for from_metadata in [false, true] {
        let server = McpServer::start(&["--json"]).await;
        let gw = gateway(&server, from_metadata).await;
        // Mcp-Name says an allowed tool, the body calls another.
        for (method, name, tool) in [
            ("tools/call", "search", "fetch_url"),
            ("tools/list", "search", "search"),
            ("tools/call", "=?base64?ZmV0Y2hfdXJs?=", "search"),
        ] {
            let r = post(
                &gw,
                &[("mcp-method", method), ("mcp-name", name)],
                stateless_call(json!(9), tool),
            )
            .await;
            assert_eq!(r.status, 400, "{method} {name} {tool}: {}", r.text());
            assert_eq!(
                server.calls().await,
                Vec::<Value>::new(),
                "{method} {name} {tool}: {}",
                r.text()
            );
            let body = r.json();
            assert_eq!(
                (body["id"].clone(), body["error"]["code"].clone()),
                (json!(9), json!(-32020))
            );
        }
        // The base64 spelling the SDK uses for names is read.
        let r = post(
            &gw,
            &[
                ("mcp-method", "tools/call"),
                ("mcp-name", "=?base64?ZmV0Y2hfdXJs?="),
            ],
            stateless_call(json!(10), "fetch_url"),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        // Batches.
        let batch = format!("[{}]", stateless_call(json!(1), "search"));
        let r = post(&gw, &[], batch).await;
        assert_eq!(r.status, 400);
        assert_eq!(r.json()["error"]["code"], json!(-32600));
        // Not JSON at all.
        let r = post(&gw, &[], "{".to_string()).await;
        assert_eq!(
            (r.status, r.json()["error"]["code"].clone()),
            (400, json!(-32700))
        );
        // A notification passes to the server untouched.
        let r = post(
            &gw,
            &[],
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string(),
        )
        .await;
        assert_eq!(r.status, 202, "{}", r.text());
        let methods: Vec<Value> = server
            .calls()
            .await
            .iter()
            .map(|c| c["method"].clone())
            .collect();
        assert_eq!(
            methods,
            [json!("tools/call"), json!("notifications/initialized")],
            "metadata: {from_metadata}"
        );
    }
}

/// Envoy's stateful session filter with the envelope session state on
/// `mcp-session-id`: what envoy/mcp-sessions.yaml, the Istio EnvoyFilter
/// and the Envoy Gateway EnvoyPatchPolicy ship.
fn session_envelope() -> Value {
    json!({
        "name": "envoy.filters.http.stateful_session",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.stateful_session.v3.StatefulSession",
            "session_state": {
                "name": "envoy.http.stateful_session.envelope",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.http.stateful_session.envelope.v3.EnvelopeSessionState",
                    "header": { "name": "mcp-session-id" }
                }
            }
        }
    })
}

/// One Envoy cluster `mcp-ruled` over every replica, round robin.
async fn replicated(replicas: &[&McpServer], sticky: bool) -> Gateway {
    let endpoints: Vec<Value> = replicas
        .iter()
        .map(|r| {
            json!({ "endpoint": { "address": { "socket_address": {
            "address": r.addr.ip().to_string(), "port_value": r.addr.port() } } } })
        })
        .collect();
    let mut config = GatewayConfig::new(plugin_config("body"))
        .cluster("mcp-ruled", replicas[0].addr)
        .cluster("mcp-open", replicas[0].addr)
        .patch_bootstrap(move |b| {
            for cluster in b["static_resources"]["clusters"].as_array_mut().unwrap() {
                if cluster["name"] == "mcp-ruled" {
                    cluster["lb_policy"] = json!("ROUND_ROBIN");
                    // What Kubernetes does by readiness and EDS: a replica
                    // that went away leaves the cluster's healthy hosts.
                    cluster["health_checks"] = json!([{
                        "timeout": "2s", "interval": "0.3s", "no_traffic_interval": "0.3s",
                        "unhealthy_threshold": 1, "healthy_threshold": 1,
                        "http_health_check": { "path": "/calls" }
                    }]);
                    cluster["load_assignment"]["endpoints"][0]["lb_endpoints"] = json!(endpoints);
                }
            }
        });
    config.allow_stop_iteration = true;
    if sticky {
        config.filters_before.push(session_envelope());
    }
    let gw = Gateway::start(config).await;
    // Sessions start once the health checker has seen every replica: a
    // host not yet checked is no override target.
    for _ in 0..100 {
        let r = agentroute_tests::send(gw.admin, "GET", "/clusters", &[], "").await;
        let healthy = r
            .text()
            .lines()
            .filter(|l| l.starts_with("mcp-ruled::") && l.ends_with("::health_flags::healthy"))
            .count();
        if healthy == replicas.len() {
            return gw;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!(
        "replicas never healthy:\n{}",
        agentroute_tests::send(gw.admin, "GET", "/clusters", &[], "")
            .await
            .text()
    );
}

/// Which replica a whoami answer came from, and its session count.
fn whoami(result: &Value) -> (String, u64) {
    let v: Value =
        serde_json::from_str(result["text"].as_str().unwrap_or("{}")).unwrap_or_default();
    (
        v["replica"].as_str().unwrap_or("?").to_string(),
        v["count"].as_u64().unwrap_or(0),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_stay_on_their_replica_with_the_envelope() {
    let a = McpServer::start(&["--replica", "a"]).await;
    let b = McpServer::start(&["--replica", "b"]).await;
    let url = |gw: &Gateway| format!("http://{}/prod/mcp/tools/mcp", gw.addr);

    // Without it, round robin sends the session's second request to the
    // other replica: "Session not found".
    let gw = replicated(&[&a, &b], false).await;
    let out = mcp_client(&url(&gw), "legacy", &["repeat:50:whoami"]).await;
    let failed = out.get("error").is_some()
        || out["results"]
            .as_array()
            .is_some_and(|r| r.len() < 50 || r.iter().any(|x| x["ok"] != json!(true)));
    assert!(
        failed,
        "round robin without session affinity cannot keep a session: {out}"
    );
    drop(gw);

    // With the envelope: 50 calls, one replica, no "session not found".
    let gw = replicated(&[&a, &b], true).await;
    for _ in 0..2 {
        let out = mcp_client(&url(&gw), "legacy", &["list", "repeat:50:whoami"]).await;
        assert_eq!(out.get("error"), None, "{out}");
        let results = out["results"].as_array().unwrap();
        assert_eq!(results.len(), 50, "{out}");
        let (replica, _) = whoami(&results[0]);
        for (i, r) in results.iter().enumerate() {
            assert_eq!(whoami(r), (replica.clone(), i as u64 + 1), "call {i}: {r}");
        }
        assert_eq!(
            out["tools"],
            json!(LISTED),
            "lists are filtered on either replica"
        );
    }
    // The stateless generation needs no affinity and gets none.
    let out = mcp_client(&url(&gw), "2026-07-28", &["repeat:10:whoami"]).await;
    assert_eq!(out.get("error"), None, "{out}");
    let replicas: std::collections::HashSet<String> = out["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| whoami(r).0)
        .collect();
    assert_eq!(replicas.len(), 2, "stateless calls are balanced: {out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_whose_replica_goes_away_must_start_again() {
    let mut a = McpServer::start(&["--replica", "a"]).await;
    let mut b = McpServer::start(&["--replica", "b"]).await;
    let gw = replicated(&[&a, &b], true).await;
    let url = format!("http://{}/prod/mcp/tools/mcp", gw.addr);
    let client = {
        let url = url.clone();
        tokio::spawn(async move {
            mcp_client(
                &url,
                "legacy",
                &[
                    "repeat:3:whoami",
                    "pause:8",
                    "call:whoami:{\"session\":\"s\"}",
                ],
            )
            .await
        })
    };
    // Find the session's replica once its calls arrived, and stop it.
    let mut owner = None;
    for _ in 0..300 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let on_a = a.tools_called().await.len();
        let on_b = b.tools_called().await.len();
        if on_a + on_b >= 3 {
            owner = Some(if on_a >= 3 { 'a' } else { 'b' });
            break;
        }
    }
    let (gone, survivor) = match owner.expect("the session's first calls arrived") {
        'a' => (&mut a, &b),
        _ => (&mut b, &a),
    };
    // The third call has reached its replica, not yet necessarily its
    // answer the client: stop the replica inside the client's 8 s pause,
    // not at the end of that call (seen on a loaded CI machine).
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    gone.kill().await;
    let out = client.await.unwrap();
    let results = out["results"].as_array().cloned().unwrap_or_default();
    assert!(
        results.iter().take(3).all(|r| r["ok"] == json!(true)),
        "{out}"
    );
    // The session's next request goes to the surviving replica (the
    // envelope is not strict), which does not know the session.
    let last_ok = results.get(3).is_some_and(|r| r["ok"] == json!(true));
    assert!(!last_ok, "a lost session cannot go on: {out}");
    assert!(
        survivor.calls().await.iter().any(|c| c["method"] == json!("tools/call")),
        "the session's request reached the survivor, which refused it (404 Session not found): {out}"
    );
    // A new session works, on the survivor.
    let out = mcp_client(&url, "legacy", &["repeat:5:whoami"]).await;
    assert_eq!(out.get("error"), None, "{out}");
    assert!(
        out["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["ok"] == json!(true)),
        "{out}"
    );
}

// ------------------------------------------------- legacy HTTP+SSE transport

/// The SDK's legacy client (`mcp.client.sse.sse_client`) on `GET /sse` of
/// the entry `host` routes to, each request bounded by `timeout` seconds.
async fn sse_client(gw: &Gateway, host: &str, timeout: &str, actions: &[&str]) -> Value {
    let mut args: Vec<String> = [
        "--url",
        &format!("http://{}/sse", gw.addr),
        "--mode",
        "sse",
        "--host",
        host,
        "--timeout",
        timeout,
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    args.extend(actions.iter().map(|a| a.to_string()));
    let out = run_python("mcp_client.py", args).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|e| {
        panic!(
            "mcp_client.py sse {actions:?}: {e}\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The status and headers of a GET whose body may never end (an event
/// stream): read up to the end of the head, then the connection is dropped.
async fn stream_head(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut request = format!("GET {path} HTTP/1.1\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let read = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&head).to_ascii_lowercase()
    };
    let head = tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .unwrap_or_else(|_| panic!("no answer to GET {path}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head)
}

/// The legacy HTTP+SSE transport (the SDK's `sse_app()`: every answer on
/// the GET /sse stream, a refused call's answer on a POST its client never
/// reads) is refused on an entry with tool rules, at once and with a status
/// the SDK's legacy client raises, instead of listing every tool and
/// hanging on a refused call. Without rules it passes as before; a
/// Streamable HTTP session's GET stream on a ruled entry still opens.
#[tokio::test(flavor = "multi_thread")]
async fn the_legacy_sse_transport_is_refused_on_entries_with_tool_rules() {
    let (legacy, streamable) =
        tokio::join!(McpServer::start(&["--sse"]), McpServer::start(&["--json"]));
    for from_metadata in [false, true] {
        let plugin = format!(
            r#"{{"openai": {{"model_from": "{}"}}, "agents": [
                {{"name": "legacy", "namespace": "prod", "kind": "mcp", "backend": "mcp-legacy",
                  "hosts": ["ruled.legacy.test"], {RULES}}},
                {{"name": "legacy-open", "namespace": "prod", "kind": "mcp", "backend": "mcp-legacy",
                  "hosts": ["open.legacy.test"]}},
                {{"name": "tools", "namespace": "prod", "kind": "mcp", "backend": "mcp-ruled", {RULES}}}]}}"#,
            if from_metadata { "metadata" } else { "body" }
        );
        let mut config = GatewayConfig::new(plugin)
            .cluster("mcp-legacy", legacy.addr)
            .cluster("mcp-ruled", streamable.addr);
        if from_metadata {
            config
                .filters_before
                .push(json_to_metadata_mcp("agentroute"));
        } else {
            config.allow_stop_iteration = true;
        }
        let gw = Gateway::start(config).await;
        let label = if from_metadata { "metadata" } else { "body" };

        // The SDK's legacy client fails at once, on the status of GET /sse;
        // it never sees a tool, and nothing reaches the server's endpoint.
        legacy.clear_calls().await;
        let started = Instant::now();
        let out = sse_client(
            &gw,
            "ruled.legacy.test",
            "8",
            &["list", "call:fetch_secrets"],
        )
        .await;
        let took = started.elapsed();
        let error = out["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("502 Bad Gateway"),
            "{label}: the legacy client is told: {out}"
        );
        assert_eq!(out["tools"], json!([]), "{label}: {out}");
        assert!(
            took < Duration::from_secs(6),
            "{label}: took {took:?}: {out}"
        );
        assert_eq!(legacy.calls().await, Vec::<Value>::new(), "{label}");

        // The refusal, by hand: a header a client adds changes nothing
        // (the server's answer decides), nor does Last-Event-ID.
        for extra in [
            &[][..],
            &[("mcp-session-id", "forged")][..],
            &[
                ("last-event-id", "1"),
                ("mcp-protocol-version", "2025-06-18"),
            ][..],
        ] {
            let mut headers = vec![
                ("host", "ruled.legacy.test"),
                ("accept", "text/event-stream"),
            ];
            headers.extend_from_slice(extra);
            let r = tokio::time::timeout(
                Duration::from_secs(10),
                gw.request("GET", "/sse", &headers, ""),
            )
            .await
            .unwrap_or_else(|_| panic!("{label} {extra:?}: the event stream went through"));
            assert_eq!(r.status, 502, "{label} {extra:?}: {}", r.text());
            let body = r.json();
            assert_eq!(body["error"]["code"], json!(-32603), "{label}");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("legacy HTTP+SSE transport"),
                "{label}: {body}"
            );
            assert!(!r.text().contains("session_id"), "{label}: {}", r.text());
        }

        // Without tool rules the legacy transport works as before.
        let out = sse_client(&gw, "open.legacy.test", "8", &["list", "call:delete_all"]).await;
        assert_eq!(out.get("error"), None, "{label}: {out}");
        assert_eq!(out["tools"].as_array().map(Vec::len), Some(7), "{label}");
        assert_eq!(out["results"][0]["ok"], json!(true), "{label}: {out}");

        // A Streamable HTTP session's GET stream on a ruled entry opens.
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"}}});
        let accept = ("accept", "application/json, text/event-stream");
        let json_body = ("content-type", "application/json");
        let r = gw
            .request(
                "POST",
                "/prod/mcp/tools/mcp",
                &[accept, json_body],
                init.to_string(),
            )
            .await;
        assert_eq!(r.status, 200, "{label}: {}", r.text());
        let session = r.header("mcp-session-id").expect("a session").to_string();
        let session_headers = [
            accept,
            json_body,
            ("mcp-session-id", session.as_str()),
            ("mcp-protocol-version", "2025-06-18"),
        ];
        let r = gw
            .request(
                "POST",
                "/prod/mcp/tools/mcp",
                &session_headers,
                json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string(),
            )
            .await;
        assert_eq!(r.status, 202, "{label}: {}", r.text());
        let (status, head) = stream_head(
            gw.addr,
            "/prod/mcp/tools/mcp",
            &[
                ("host", "gateway.test"),
                ("accept", "text/event-stream"),
                ("mcp-session-id", session.as_str()),
                ("mcp-protocol-version", "2025-06-18"),
            ],
        )
        .await;
        assert_eq!(status, 200, "{label}: {head}");
        assert!(
            head.contains("content-type: text/event-stream"),
            "{label}: {head}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tool_limit_per_caller_gives_each_caller_its_own_bucket() {
    let server = McpServer::start(&["--json"]).await;
    let plugin = r#"{"agents": [{"name": "tools", "namespace": "prod", "kind": "mcp", "backend": "mcp-ruled",
        "mcp": {"tool_limits": [{"tools": ["expensive_*"], "requests_per_second": 0.001, "burst": 1,
                                 "per": "header:x-api-key"}]}}]}"#;
    let mut config = GatewayConfig::new(plugin).cluster("mcp-ruled", server.addr);
    config.allow_stop_iteration = true;
    let gw = Gateway::start(config).await;
    let call = |key: &'static str, i: u32| {
        let gw = &gw;
        async move {
            post(
                gw,
                &[
                    ("mcp-method", "tools/call"),
                    ("mcp-name", "expensive_a"),
                    ("x-api-key", key),
                ],
                stateless_call(json!(i), "expensive_a"),
            )
            .await
            .status
        }
    };
    assert_eq!([call("a", 1).await, call("a", 2).await], [200, 429]);
    assert_eq!([call("b", 3).await, call("b", 4).await], [200, 429]);
    assert_eq!(server.tools_called().await, ["expensive_a", "expensive_a"]);
}

/// An MCP server that runs its own OAuth, as a stand-in: 401 naming its
/// internal metadata URL, and the metadata itself naming its internal URL.
/// Records the request lines it gets.
async fn own_oauth_server(
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) -> std::net::SocketAddr {
    agentroute_tests::spawn_scripted(move |head, mut stream| {
        let seen = seen.clone();
        async move {
            use tokio::io::AsyncWriteExt;
            let line = head.lines().next().unwrap_or_default().to_string();
            seen.lock().unwrap().push(line.clone());
            let (status, extra, body) = if line.starts_with("GET /.well-known/oauth-protected-resource/mcp ") {
                (
                    "200 OK",
                    "content-type: application/json\r\n",
                    r#"{"resource":"http://tools.internal:8000/mcp","authorization_servers":["https://auth.example.com"]}"#,
                )
            } else {
                (
                    "401 Unauthorized",
                    "www-authenticate: Bearer resource_metadata=\"http://tools.internal:8000/.well-known/oauth-protected-resource/mcp\"\r\n",
                    "",
                )
            };
            let reply = format!(
                "HTTP/1.1 {status}\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(reply.as_bytes()).await;
        }
    })
    .await
}

#[tokio::test]
async fn a_server_doing_its_own_oauth_is_discovered_at_the_gateways_url() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let server = own_oauth_server(seen.clone()).await;
    let plugin =
        r#"{"agents": [{"name": "tools", "namespace": "prod", "kind": "mcp", "backend": "srv"}]}"#;
    let gw = Gateway::start(GatewayConfig::new(plugin).cluster("srv", server)).await;
    let host = ("host", "gw.example.com");
    let r = gw
        .request("POST", "/prod/mcp/tools/mcp", &[host], "{}")
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some(
            r#"Bearer resource_metadata="http://gw.example.com/.well-known/oauth-protected-resource/prod/mcp/tools/mcp""#
        )
    );
    let r = gw
        .request(
            "GET",
            "/.well-known/oauth-protected-resource/prod/mcp/tools/mcp",
            &[host, ("x-forwarded-proto", "https")],
            "",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let doc = r.json();
    assert_eq!(doc["resource"], "https://gw.example.com/prod/mcp/tools/mcp");
    assert_eq!(
        doc["authorization_servers"],
        json!(["https://auth.example.com"])
    );
    assert_eq!(
        seen.lock().unwrap().last().map(String::as_str),
        Some("GET /.well-known/oauth-protected-resource/mcp HTTP/1.1"),
        "the server is asked for its own resource's document"
    );
    // A hostile host is never written into a URL: the answer passes as the
    // server gave it.
    let r = gw
        .request("POST", "/prod/mcp/tools/mcp", &[("host", "evil\"x")], "{}")
        .await;
    assert!(
        r.header("www-authenticate")
            .is_none_or(|v| v.contains("tools.internal")),
        "{:?}",
        r.header("www-authenticate")
    );
}
