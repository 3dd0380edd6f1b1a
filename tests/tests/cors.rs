//! CORS through a real Envoy, as a browser's requests look on the wire:
//! preflights answered by the filter (204, or 403 without any
//! `access-control-*`), never forwarded nor counted against a limit; every
//! answer to an allowed origin with CORS, whoever made it (the backend,
//! the filter's own 404/400/413/429 and OpenAI errors, `/v1/models`,
//! Envoy's 503/504); the backend's own CORS headers replaced on an entry
//! with CORS; nothing for a disallowed origin but `vary`; nothing at all
//! for a request without `Origin`; the MCP and A2A default header lists.
//! (tests/tests/browser.rs runs the same through a real browser.)

use std::time::Duration;

use agentroute_tests::{free_port, spawn_agent, spawn_scripted, Gateway, GatewayConfig, Response};
use serde_json::json;
use tokio::io::AsyncWriteExt;

const DASH: &str = "https://dash.example.com";
const EVIL: &str = "https://dash.example.com.evil.com";

fn plugin() -> String {
    json!({
        "unmatched": "reject",
        "openai": { "max_body_bytes": 100 },
        "cors": { "allow_origins": [DASH, "https://*.apps.example.com"] },
        "agents": [
            { "name": "chat", "namespace": "prod", "backend": "chat", "timeout": "500ms" },
            { "name": "limited", "namespace": "prod", "backend": "chat",
              "rate_limit": { "requests_per_second": 0.001, "burst": 1 } },
            { "name": "busy", "namespace": "prod", "backend": "chat", "concurrency": { "max_in_flight": 1 } },
            { "name": "own", "namespace": "prod", "backend": "scripted",
              "cors": { "allow_origins": [DASH], "allow_credentials": true } },
            { "name": "plain", "namespace": "prod", "backend": "scripted", "cors": null },
            { "name": "tools", "namespace": "prod", "kind": "mcp", "backend": "chat" },
            { "name": "llm", "namespace": "models", "kind": "modelapi", "backend": "chat", "models": ["m"] },
            { "name": "down", "namespace": "prod", "backend": "dead" }
        ]
    })
    .to_string()
}

/// A backend with CORS headers of its own (and a 500 at `/status/500`).
async fn scripted() -> std::net::SocketAddr {
    spawn_scripted(|head, mut stream| async move {
        let status = if head.starts_with("GET /status/500 ") {
            "500 Internal Server Error"
        } else {
            "200 OK"
        };
        let body = r#"{"from":"scripted"}"#;
        let answer = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n\
             access-control-allow-origin: *\r\naccess-control-allow-headers: x-evil\r\n\
             access-control-expose-headers: x-secret\r\nvary: accept-encoding\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(answer.as_bytes()).await;
    })
    .await
}

async fn gateway(plugin: String) -> Gateway {
    let mut cfg = GatewayConfig::new(plugin)
        .cluster("chat", spawn_agent("chat").await)
        .cluster("scripted", scripted().await)
        .cluster(
            "dead",
            format!("127.0.0.1:{}", free_port()).parse().expect("addr"),
        );
    cfg.allow_stop_iteration = true;
    Gateway::start(cfg).await
}

async fn preflight(
    gw: &Gateway,
    path: &str,
    origin: &str,
    method: &str,
    headers: &str,
) -> Response {
    let mut h = vec![
        ("origin", origin),
        ("access-control-request-method", method),
    ];
    if !headers.is_empty() {
        h.push(("access-control-request-headers", headers));
    }
    gw.request("OPTIONS", path, &h, "").await
}

fn cors_headers(r: &Response) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = r
        .headers
        .iter()
        .filter(|(k, _)| k.as_str().starts_with("access-control-"))
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
        .collect();
    found.sort();
    found
}

fn varies(r: &Response) -> Vec<String> {
    r.headers
        .get_all("vary")
        .iter()
        .flat_map(|v| {
            v.to_str()
                .unwrap_or_default()
                .split(',')
                .map(|s| s.trim().to_ascii_lowercase())
        })
        .collect()
}

/// An answer to an allowed origin: the policy's headers, `vary: origin`.
fn assert_allowed(label: &str, r: &Response, origin: &str) {
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some(origin),
        "{label}: {:?}",
        r.headers
    );
    assert_eq!(
        r.header("access-control-expose-headers"),
        Some("retry-after, x-ratelimit-limit, x-ratelimit-remaining, x-ratelimit-reset"),
        "{label}"
    );
    assert!(
        varies(r).contains(&"origin".to_string()),
        "{label}: {:?}",
        r.headers
    );
}

async fn upstream_requests(gw: &Gateway) -> f64 {
    gw.metric(r#"envoy_cluster_upstream_rq_total{envoy_cluster_name="chat"}"#)
        .await
        .unwrap_or(0.0)
}

#[tokio::test]
async fn preflights_are_answered_never_forwarded_nor_counted() {
    let gw = gateway(plugin()).await;
    let r = preflight(&gw, "/prod/agent/chat/x", DASH, "POST", "content-type").await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(
        cors_headers(&r),
        [
            (
                "access-control-allow-headers",
                "authorization, content-type, a2a-version"
            ),
            (
                "access-control-allow-methods",
                "GET, POST, PUT, PATCH, DELETE"
            ),
            ("access-control-allow-origin", DASH),
            ("access-control-max-age", "600"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
    );
    assert_eq!(varies(&r), ["origin"]);
    assert!(r.body.is_empty());

    // Refused: an origin, a method or a header the policy does not allow;
    // 403 without a single access-control-* header.
    for (origin, method, headers, why) in [
        (EVIL, "POST", "", "origin"),
        ("https://example.com", "POST", "", "origin"),
        (DASH, "PURGE", "", "method"),
        (DASH, "POST", "x-secret", "request header"),
    ] {
        let r = preflight(&gw, "/prod/agent/chat/x", origin, method, headers).await;
        assert_eq!(r.status, 403, "{origin} {method} {headers}");
        assert_eq!(cors_headers(&r), [], "{origin} {method} {headers}");
        let v = r.json();
        assert_eq!(v["error"]["code"], "cors_preflight_refused");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains(why),
            "{v}"
        );
    }

    // Never forwarded, never counted: the limited entries' preflights
    // leave their bucket and slot alone.
    let before = upstream_requests(&gw).await;
    for path in ["/prod/limited/x", "/prod/busy/x"] {
        for _ in 0..10 {
            assert_eq!(
                preflight(&gw, path, DASH, "GET", "authorization")
                    .await
                    .status,
                204
            );
        }
    }
    assert_eq!(
        upstream_requests(&gw).await,
        before,
        "a preflight reached the backend"
    );
    assert_eq!(
        gw.get("/prod/limited/x").await.status,
        200,
        "the bucket's one token"
    );
    assert_eq!(gw.get("/prod/limited/x").await.status, 429);
    assert_eq!(
        gw.get("/prod/busy/x").await.status,
        200,
        "the slot was free"
    );

    // The OpenAI surface: the top-level policy, a model API's headers (the
    // official SDKs' own among them).
    let r = preflight(
        &gw,
        "/v1/chat/completions",
        DASH,
        "POST",
        "authorization, content-type, x-stainless-os, openai-project",
    )
    .await;
    assert_eq!(r.status, 204);
    let allowed = r.header("access-control-allow-headers").unwrap_or_default();
    assert!(
        allowed.starts_with("authorization, content-type, x-stainless-")
            && allowed.contains("openai-organization"),
        "{allowed}"
    );
    // An entry with `cors: null`: the preflight is the backend's to answer.
    let r = preflight(&gw, "/prod/plain/x", DASH, "POST", "").await;
    assert_eq!(
        (r.status, r.header("access-control-allow-origin")),
        (200, Some("*"))
    );
}

#[tokio::test]
async fn every_answer_to_an_allowed_origin_carries_cors() {
    let gw = gateway(plugin()).await;
    let origin = [("origin", DASH)];
    let json_origin = [("origin", DASH), ("content-type", "application/json")];
    let r = gw.request("GET", "/prod/agent/chat/x", &origin, "").await;
    assert_eq!(r.status, 200);
    assert_allowed("backend 200", &r, DASH);

    // Slot of `busy` held by a slow request meanwhile.
    let addr = gw.addr;
    let slow = tokio::spawn(async move {
        agentroute_tests::send(addr, "GET", "/prod/busy/x?delay_ms=1500", &[], "").await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let over = "x".repeat(200);
    let cases: Vec<(&str, Response, u16)> = vec![
        (
            "filter 404",
            gw.request("GET", "/nothing", &origin, "").await,
            404,
        ),
        (
            "filter 400",
            gw.request("GET", "/prod/chat/%2e%2e/x", &origin, "").await,
            400,
        ),
        (
            "filter 413",
            gw.request("POST", "/v1/embeddings", &json_origin, over)
                .await,
            413,
        ),
        (
            "rate limit 429 (1)",
            gw.request("GET", "/prod/limited/x", &origin, "").await,
            200,
        ),
        (
            "rate limit 429",
            gw.request("GET", "/prod/limited/x", &origin, "").await,
            429,
        ),
        (
            "concurrency 429",
            gw.request("GET", "/prod/busy/x", &origin, "").await,
            429,
        ),
        (
            "unknown model 404",
            gw.request(
                "POST",
                "/v1/chat/completions",
                &json_origin,
                r#"{"model":"nope"}"#,
            )
            .await,
            404,
        ),
        (
            "invalid JSON 400",
            gw.request("POST", "/v1/chat/completions", &json_origin, "{")
                .await,
            400,
        ),
        (
            "/v1/models",
            gw.request("GET", "/v1/models", &origin, "").await,
            200,
        ),
        (
            "upstream unreachable 503",
            gw.request("GET", "/prod/down/x", &origin, "").await,
            503,
        ),
        (
            "upstream timeout 504",
            gw.request("GET", "/prod/chat/x?delay_ms=2000", &origin, "")
                .await,
            504,
        ),
        (
            "upstream 500",
            gw.request("GET", "/prod/own/status/500", &[("origin", DASH)], "")
                .await,
            500,
        ),
    ];
    for (label, r, status) in &cases {
        assert_eq!(r.status, *status, "{label}: {}", r.text());
        if *label == "upstream 500" {
            // The entry's own policy: credentials, the default expose list.
            assert_eq!(
                r.header("access-control-allow-origin"),
                Some(DASH),
                "{label}"
            );
            assert_eq!(
                r.header("access-control-allow-credentials"),
                Some("true"),
                "{label}"
            );
            continue;
        }
        assert_allowed(label, r, DASH);
    }
    let limited = &cases[4].1;
    assert_eq!(limited.header("retry-after"), Some("1000"));
    let busy = &cases[5].1;
    assert_eq!(
        (
            busy.header("retry-after"),
            busy.json()["error"]["code"].as_str()
        ),
        (Some("1"), Some("concurrency_limit_exceeded"))
    );
    assert_eq!(slow.await.expect("slow request").status, 200);

    // Wildcard subdomains: one or more labels, and nothing else.
    for (o, allowed) in [
        ("https://a.apps.example.com", true),
        ("https://a.b.apps.example.com", true),
        ("https://apps.example.com", false),
        ("https://a.apps.example.com.evil.com", false),
        ("http://a.apps.example.com", false),
    ] {
        let r = gw
            .request("GET", "/prod/agent/chat/x", &[("origin", o)], "")
            .await;
        assert_eq!(
            r.header("access-control-allow-origin").is_some(),
            allowed,
            "{o}"
        );
        assert!(
            varies(&r).contains(&"origin".to_string()),
            "{o}: vary either way"
        );
    }
}

#[tokio::test]
async fn the_backends_cors_is_replaced_and_requests_without_origin_are_untouched() {
    let gw = gateway(plugin()).await;
    let backend = [
        ("access-control-allow-headers", "x-evil"),
        ("access-control-allow-origin", "*"),
        ("access-control-expose-headers", "x-secret"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));

    // No Origin: the answer is the backend's, byte for byte.
    let r = gw.get("/prod/own/x").await;
    assert_eq!(cors_headers(&r), backend);
    assert_eq!(varies(&r), ["accept-encoding"]);

    // An allowed origin: the gateway's policy instead of the backend's.
    let r = gw
        .request("GET", "/prod/own/x", &[("origin", DASH)], "")
        .await;
    assert_eq!(
        cors_headers(&r),
        [
            ("access-control-allow-credentials", "true"),
            ("access-control-allow-origin", DASH),
            (
                "access-control-expose-headers",
                "retry-after, x-ratelimit-limit, x-ratelimit-remaining, x-ratelimit-reset"
            ),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
    );
    assert_eq!(varies(&r), ["accept-encoding", "origin"]);

    // A disallowed origin: none at all, the backend's removed too.
    let r = gw
        .request("GET", "/prod/own/x", &[("origin", EVIL)], "")
        .await;
    assert_eq!(cors_headers(&r), []);
    assert_eq!(varies(&r), ["accept-encoding", "origin"]);

    // An entry with `cors: null`: the backend's answer, Origin or not.
    let r = gw
        .request("GET", "/prod/plain/x", &[("origin", DASH)], "")
        .await;
    assert_eq!(cors_headers(&r), backend);
    assert_eq!(varies(&r), ["accept-encoding"]);
}

#[tokio::test]
async fn mcp_and_a2a_entries_allow_their_protocol_headers() {
    let gw = gateway(plugin()).await;
    let mcp =
        "mcp-protocol-version, mcp-session-id, mcp-method, mcp-name, last-event-id, authorization";
    let r = preflight(&gw, "/prod/mcp/tools/mcp", DASH, "POST", mcp).await;
    assert_eq!(r.status, 204, "{}", r.text());
    let r = gw
        .request("POST", "/prod/mcp/tools/mcp", &[("origin", DASH)], "{}")
        .await;
    assert!(
        r.header("access-control-expose-headers")
            .is_some_and(|e| e.ends_with(", mcp-session-id")),
        "{:?}",
        r.headers
    );
    let r = preflight(
        &gw,
        "/prod/agent/chat/",
        DASH,
        "POST",
        "a2a-version, content-type",
    )
    .await;
    assert_eq!(r.status, 204);
    // A model API speaks neither.
    for headers in ["a2a-version", "mcp-session-id"] {
        let r = preflight(
            &gw,
            "/models/modelapi/llm/v1/chat/completions",
            DASH,
            "POST",
            headers,
        )
        .await;
        assert_eq!(r.status, 403, "{headers}");
    }
}

#[tokio::test]
async fn any_origin_with_credentials_is_refused() {
    let plugin =
        json!({ "cors": { "allow_origins": ["*"], "allow_credentials": true } }).to_string();
    let log = match Gateway::try_start(GatewayConfig::new(plugin)).await {
        Ok(_) => panic!("Envoy started with * and credentials"),
        Err(log) => log,
    };
    assert!(
        log.contains("invalid configuration: cors.allow_origins[0]: \"*\" cannot go with allow_credentials: true"),
        "{log}"
    );
}
