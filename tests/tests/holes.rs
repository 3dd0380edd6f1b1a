//! Regression tests for the holes a review and a hostile run found: each one
//! was a way to take a worker down, spend past a limit, pose as someone else
//! or reach a backend with a path the contract refuses, through a real Envoy.

use std::time::Duration;

use agentroute_tests::{json_to_metadata, send_raw, spawn_agent, Gateway, GatewayConfig, Response};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn gateway(config: &str, tweak: impl FnOnce(GatewayConfig) -> GatewayConfig) -> Gateway {
    let mut cfg = GatewayConfig::new(config);
    for name in ["chat", "llm", "tools"] {
        cfg = cfg.cluster(name, spawn_agent(name).await);
    }
    Gateway::start(tweak(cfg)).await
}

fn status_of(raw: &str) -> u16 {
    raw.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn host_routes_refuse_dot_segments_like_paths_do() {
    let gw = gateway(
        r#"{"agents":[{"name":"chat","backend":"chat","hosts":["chat.example.com"]}]}"#,
        |c| c,
    )
    .await;
    for path in [
        "/x/%2e%2e/../admin",
        "/..",
        "/a/./b",
        "/%2E%2e/admin",
        "/x/..%2fadmin",
    ] {
        let raw = send_raw(
            gw.addr,
            format!("GET {path} HTTP/1.1\r\nHost: chat.example.com\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert_eq!(status_of(&raw), 400, "{path}: {raw}");
        assert!(raw.contains("invalid_path"), "{path}: {raw}");
    }
    let ok = gw
        .request("GET", "/x/y?z=/../", &[("host", "chat.example.com")], "")
        .await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json()["path"], "/x/y?z=/../", "a query is not a path");
}

#[tokio::test]
async fn underscore_spellings_of_owned_headers_never_reach_the_backend() {
    let gw = gateway(r#"{"agents":[{"name":"bot","backend":"chat"}]}"#, |c| c).await;
    let spoofed = [
        ("x_agent_name", "evil"),
        ("x-agent_namespace", "evil"),
        ("x_agent_kind", "evil"),
        ("x_agent_backend", "tools"),
        ("x_forwarded_prefix", "/evil"),
        ("x_envoy_upstream_rq_timeout_ms", "1"),
    ];
    let r = gw.request("GET", "/bot/x", &spoofed, "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["agent"], "chat");
    let headers = v["headers"].as_object().unwrap();
    for (name, _) in spoofed {
        assert!(!headers.contains_key(name), "{name} reached the backend");
    }
    assert_eq!(headers["x-agent-name"], "bot");
}

#[tokio::test]
async fn model_dispatch_drops_the_clients_forwarded_prefix() {
    let gw = gateway(
        r#"{"agents":[{"name":"llm","kind":"modelapi","backend":"llm","models":["m"]}]}"#,
        |mut c| {
            c.allow_stop_iteration = true;
            c
        },
    )
    .await;
    let r = gw
        .request(
            "POST",
            "/v1/chat/completions?echo",
            &[
                ("content-type", "application/json"),
                ("x-forwarded-prefix", "/evil"),
            ],
            r#"{"model":"m","messages":[]}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["agent"], "llm");
    assert!(v["headers"].get("x-forwarded-prefix").is_none(), "{v}");
}

#[tokio::test]
async fn forged_forwarded_for_gets_no_bucket_of_its_own() {
    let gw = gateway(
        r#"{"agents":[{"name":"bot","backend":"chat",
             "rate_limit":{"requests_per_second":0.001,"burst":2,"per":"client_ip"}}]}"#,
        |mut c| {
            c.use_remote_address = true;
            c
        },
    )
    .await;
    let mut admitted = 0;
    for i in 0..6 {
        let forged = format!("203.0.113.{i}");
        let r = gw
            .request("GET", "/bot/x", &[("x-forwarded-for", &forged)], "")
            .await;
        admitted += usize::from(r.status == 200);
    }
    assert_eq!(admitted, 2, "one client, one bucket, whatever it claims");
}

#[test]
fn every_shipped_bootstrap_believes_only_the_tcp_peer() {
    let root = agentroute_tests::workspace_root();
    for file in [
        "envoy/demo.yaml",
        "envoy/ecds.yaml",
        "envoy/openai-metadata.yaml",
    ] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        assert!(
            text.contains("use_remote_address: true"),
            "{file} must set use_remote_address: true (client_ip limits)"
        );
    }
}

#[tokio::test]
async fn a_repeated_limit_header_is_refused_and_takes_nothing() {
    let gw = gateway(
        r#"{"agents":[{"name":"bot","backend":"chat",
             "rate_limit":{"requests_per_second":0.001,"burst":1,"per":"header:x-api-key"}}]}"#,
        |c| c,
    )
    .await;
    // A client adds the victim's key before its own: refused (which copy a
    // backend reads differs between servers), drawing from no bucket.
    let raw = send_raw(
        gw.addr,
        "GET /bot/x HTTP/1.1\r\nHost: gw\r\nx-api-key: victim\r\nx-api-key: mine\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&raw), 400, "{raw}");
    assert!(raw.contains("repeated_client_header"), "{raw}");
    let victim = gw
        .request("GET", "/bot/x", &[("x-api-key", "victim")], "")
        .await;
    assert_eq!(victim.status, 200, "the victim's bucket was untouched");
    let again = gw
        .request("GET", "/bot/x", &[("x-api-key", "victim")], "")
        .await;
    assert_eq!(again.status, 429);
}

#[tokio::test]
async fn chunked_bodies_over_the_limit_are_refused_with_the_model_from_metadata() {
    let gw = gateway(
        r#"{"openai":{"model_from":"metadata","max_body_bytes":1000},
            "agents":[{"name":"llm","kind":"modelapi","backend":"llm","models":["m"]}]}"#,
        |mut c| {
            c.filters_before.push(json_to_metadata("agentroute"));
            c
        },
    )
    .await;
    let body = format!(r#"{{"model":"m","input":"{}"}}"#, "x".repeat(5000));
    let chunked = format!(
        "POST /v1/embeddings HTTP/1.1\r\nHost: gw\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    let raw = send_raw(gw.addr, chunked).await;
    assert_eq!(status_of(&raw), 413, "{raw}");
    assert!(raw.contains("request_too_large"), "{raw}");
    // Under the limit it goes through.
    let small = r#"{"model":"m","input":"hi"}"#;
    let ok = format!(
        "POST /v1/embeddings HTTP/1.1\r\nHost: gw\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{small}\r\n0\r\n\r\n",
        small.len()
    );
    assert_eq!(status_of(&send_raw(gw.addr, ok).await), 200);
}

#[tokio::test]
async fn slow_uploads_are_not_blamed_on_the_configuration() {
    let gw = gateway(
        r#"{"agents":[{"name":"llm","kind":"modelapi","backend":"llm","models":["m"]}]}"#,
        |mut c| {
            c.allow_stop_iteration = true;
            c.concurrency = 1;
            c
        },
    )
    .await;
    let body = r#"{"model":"m","messages":[]}"#;
    assert_eq!(gw.post_json("/v1/chat/completions", body).await.status, 200);
    // Headers now, the body 7 s later: longer than the misconfiguration
    // watchdog waits, once bodies are known to arrive.
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(7)).await;
    stream.write_all(body.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    let raw = String::from_utf8_lossy(&out);
    assert_eq!(status_of(&raw), 200, "{raw}");
}

#[tokio::test]
async fn budgeted_requests_ask_for_uncompressed_answers_and_count_compressed_ones() {
    let gw = gateway(
        r#"{"agents":[{"name":"llm","kind":"modelapi","backend":"llm",
             "rate_limit":{"tokens_per_minute":1000000}}]}"#,
        |c| c,
    )
    .await;
    let r = gw
        .request("GET", "/llm/x", &[("accept-encoding", "gzip, br")], "")
        .await;
    assert_eq!(r.status, 200);
    assert!(
        r.json()["headers"].get("accept-encoding").is_none(),
        "the backend answers uncompressed"
    );
    let r = gw
        .request(
            "POST",
            "/llm/v1/embeddings?content_encoding=gzip",
            &[("content-type", "application/json")],
            r#"{"model":"m","input":"x"}"#,
        )
        .await;
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    gw.wait_metric(
        "agentroute_tokens_unmetered_total{namespace=\"default\",agent=\"llm\",kind=\"modelapi\"}",
        1.0,
    )
    .await;
}

#[tokio::test]
async fn large_answers_are_metered_in_fixed_memory() {
    let gw = gateway(
        r#"{"agents":[{"name":"llm","kind":"modelapi","backend":"llm",
             "rate_limit":{"tokens_per_minute":100000000}}]}"#,
        |mut c| {
            c.concurrency = 1;
            c
        },
    )
    .await;
    // 60 answers of ~1.6 MB each at once: kept whole, they would take a
    // worker's VM past 100 MB.
    let body = r#"{"model":"m","input":"twelve bytes"}"#;
    let requests = (0..60).map(|_| {
        gw.request(
            "POST",
            "/llm/v1/embeddings?dims=200000",
            &[("content-type", "application/json")],
            body,
        )
    });
    let answers: Vec<Response> = futures_util::future::join_all(requests).await;
    for r in &answers {
        assert_eq!(r.status, 200);
        assert!(r.body.len() > 1_000_000);
    }
    let tokens_each = (body.len() / 4) as f64;
    gw.wait_metric(
        "agentroute_tokens_debited_total{namespace=\"default\",agent=\"llm\",kind=\"modelapi\"}",
        60.0 * tokens_each,
    )
    .await;
}

/// WebSocket over HTTP/2 (RFC 8441 extended CONNECT), to an HTTP/1.1
/// upstream (Envoy turns it into an `Upgrade`, answered 101) and to an
/// HTTP/2 one (answered 200): both are open connections.
#[tokio::test]
async fn http2_websockets_count_as_open_connections() {
    let h2_agent = spawn_agent("chat-h2").await;
    let gw = gateway(
        r#"{"agents":[{"name":"bot","backend":"chat"},{"name":"bot2","backend":"chat-h2"}]}"#,
        |mut c| {
            c.http2_connect = true;
            c.grpc_cluster("chat-h2", h2_agent)
        },
    )
    .await;
    for agent in ["bot", "bot2"] {
        let stream = TcpStream::connect(gw.addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let mut req = hyper::Request::builder()
            .method("CONNECT")
            .uri(format!("http://{}/{agent}/ws", gw.addr))
            .header("sec-websocket-version", "13")
            // Envoy hands an HTTP/1.1 upstream an upgrade, which needs a key.
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        req.extensions_mut()
            .insert(hyper::ext::Protocol::from_static("websocket"));
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200, "{agent}: extended CONNECT accepted");
        let gauge = format!(
            "agentroute_connections_active{{namespace=\"default\",agent=\"{agent}\",kind=\"agent\"}}"
        );
        gw.wait_metric(&gauge, 1.0).await;
        drop(resp);
        drop(sender);
        gw.wait_metric(&gauge, 0.0).await;
    }
}

/// Model from metadata, the stop-iteration flag set, an A2A entry with a
/// global limit: the chat body reaches the filter while the request waits
/// for the rate limit service's verdict (json_to_metadata has buffered it
/// whole). It must go on translated, not as the OpenAI body Envoy buffered.
#[tokio::test]
async fn a_chat_for_an_a2a_agent_is_translated_while_awaiting_the_limit_service() {
    use agentroute_tests::{A2aAgent, RateLimitService};
    let limits = r#"
- namespace: agentroute
  name: echo-requests
  max_value: 100
  seconds: 60
  conditions: ["descriptors[0].agent == 'prod/echo'"]
  variables: []
"#;
    let (service, agent) = tokio::join!(RateLimitService::start(limits, &[]), A2aAgent::start(&[]));
    let config = r#"{"openai":{"model_from":"metadata"},
        "rate_limit_service":{"cluster":"ratelimit","timeout":"2s","failure_mode":"deny"},
        "agents":[{"name":"echo","namespace":"prod","backend":"echo","protocol":"a2a",
                   "rate_limit":{"scope":"global"}}]}"#;
    let mut cfg = GatewayConfig::new(config)
        .cluster("echo", agent.addr)
        .grpc_cluster("ratelimit", service.addr);
    cfg.allow_stop_iteration = true;
    cfg.filters_before.push(json_to_metadata("agentroute"));
    let gw = Gateway::start(cfg).await;
    for stream in [false, true] {
        let body = format!(
            r#"{{"model":"prod/echo","stream":{stream},"messages":[{{"role":"user","content":"hello there"}}]}}"#
        );
        let r = gw
            .request(
                "POST",
                "/v1/chat/completions",
                &[("content-type", "application/json")],
                body,
            )
            .await;
        assert_eq!(
            r.status,
            200,
            "stream {stream}: {}\n{}",
            r.text(),
            agent.log()
        );
        let text = r.text();
        assert!(
            text.contains("hello there"),
            "stream {stream}: the agent answered the translated message: {text}"
        );
        assert!(!text.contains("agent_error"), "stream {stream}: {text}");
    }
}
