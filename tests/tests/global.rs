//! Global limits: two real Envoy processes (two gateway replicas, two
//! workers each) share one rate limit service, `rls-server` (Limitador's
//! engine) over one real `redis-server`. A limit of N admits N in total, a
//! token budget spent through one replica refuses the next request on the
//! other, and a service that is down or slow is handled as `failure_mode`
//! says. They fail when `redis-server` is missing (`make setup` installs it).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use agentroute_tests::{spawn_agent, Gateway, GatewayConfig, RateLimitService, Response};

/// Limitador's limits file, as a Limitador deployment would read it. The
/// filter sends `agent`, `kind` (and `client`) on descriptor 0; a token
/// budget adds `budget: tokens` as the last descriptor, both at admission
/// (checked, `hits_addend` 0) and in the usage report (alone).
const LIMITS: &str = r#"
- namespace: agentroute
  name: shared-requests
  max_value: 6
  seconds: 60
  conditions:
    - "descriptors[0].agent == 'default/shared'"
    - "!('budget' in descriptors[0])"
  variables: []
- namespace: agentroute
  name: requests-per-client
  max_value: 2
  seconds: 60
  conditions:
    - "descriptors[0].agent == 'default/keyed'"
    - "!('budget' in descriptors[0])"
  variables:
    - "descriptors[0].client"
- namespace: agentroute
  name: tokens-per-client
  max_value: 60
  seconds: 60
  conditions:
    - "descriptors[size(descriptors) - 1].budget == 'tokens'"
    - "descriptors[size(descriptors) - 1].agent == 'default/llm'"
  variables:
    - "descriptors[size(descriptors) - 1].client"
"#;

const CLUSTER: &str = "ratelimit";

fn plugin_config(service: &str, agents: &str) -> String {
    format!(r#"{{"rate_limit_service":{service},"agents":[{agents}]}}"#)
}

const AGENTS: &str = r#"
    {"name":"shared","backend":"a","rate_limit":{"scope":"global"}},
    {"name":"keyed","backend":"a","rate_limit":{"scope":"global","per":"header:x-api-key"}},
    {"name":"llm","kind":"modelapi","backend":"llm","models":["m"],
     "rate_limit":{"scope":"global","per":"header:x-api-key","tokens":true}}"#;

/// One gateway replica in front of the demo agents, asking `rls` (a gRPC
/// cluster) about global entries.
async fn replica(config: &str, rls: SocketAddr) -> Gateway {
    let mut cfg = GatewayConfig::new(config).grpc_cluster(CLUSTER, rls);
    // Model dispatch reads the body: the limit call is made from its callback.
    cfg.allow_stop_iteration = true;
    for name in ["a", "llm"] {
        cfg = cfg.cluster(name, spawn_agent(name).await);
    }
    Gateway::start(cfg).await
}

/// Two replicas sharing `service`.
async fn two_replicas(args: &[&str]) -> (RateLimitService, Gateway, Gateway) {
    let service = RateLimitService::start(LIMITS, args).await;
    // deny: a failed call shows as a 503, never as a request admitted
    // uncounted; 2 s: the debug-built service on a busy test machine.
    let config = plugin_config(
        &format!(r#"{{"cluster":"{CLUSTER}","timeout":"2s","failure_mode":"deny"}}"#),
        AGENTS,
    );
    let one = replica(&config, service.addr).await;
    let two = replica(&config, service.addr).await;
    (service, one, two)
}

fn statuses(rs: &[Response]) -> Vec<u16> {
    rs.iter().map(|r| r.status).collect()
}

#[tokio::test]
async fn a_global_limit_of_n_admits_n_across_two_replicas() {
    let (_service, one, two) = two_replicas(&[]).await;
    // Alternate replicas: with local buckets each would admit its own 6.
    let mut rs = Vec::new();
    for i in 0..12 {
        let gw = if i % 2 == 0 { &one } else { &two };
        rs.push(gw.get("/shared/x").await);
    }
    assert_eq!(
        statuses(&rs),
        [200, 200, 200, 200, 200, 200, 429, 429, 429, 429, 429, 429],
        "{}",
        rs[6].text()
    );
    // Admitted answers carry the service's standing of the limit.
    assert_eq!(rs[0].header("x-ratelimit-limit"), Some("6"));
    assert_eq!(rs[0].header("x-ratelimit-remaining"), Some("5"));
    assert_eq!(rs[5].header("x-ratelimit-remaining"), Some("0"));

    // The 429: OpenAI-shaped, with retry-after and x-ratelimit-* from the
    // service's DescriptorStatus (a 60 s window).
    let r = &rs[7];
    assert_eq!(r.header("x-ratelimit-limit"), Some("6"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    let reset: u64 = r.header("x-ratelimit-reset").unwrap().parse().unwrap();
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&reset), "reset {reset}");
    assert_eq!(retry, reset);
    let v = r.json();
    assert_eq!(
        (v["error"]["code"].as_str(), v["error"]["type"].as_str()),
        (Some("rate_limit_exceeded"), Some("requests"))
    );
    assert!(r.header("x-served-by").is_none(), "never reached the agent");

    // Each replica counts what it decided.
    let admitted =
        r#"agentroute_ratelimit_admitted_total{namespace="default",agent="shared",kind="agent"}"#;
    let limited =
        r#"agentroute_ratelimit_limited_total{namespace="default",agent="shared",kind="agent"}"#;
    for gw in [&one, &two] {
        gw.wait_metric(admitted, 3.0).await;
        gw.wait_metric(limited, 3.0).await;
    }
}

#[tokio::test]
async fn per_client_global_limits_follow_the_client_across_replicas() {
    let (_service, one, two) = two_replicas(&[]).await;
    let key = |k: &'static str| [("x-api-key", k)];
    let r = one.request("GET", "/keyed/1", &key("k1"), "").await;
    assert_eq!(
        (r.status, r.header("x-ratelimit-remaining")),
        (200, Some("1"))
    );
    assert_eq!(
        two.request("GET", "/keyed/2", &key("k1"), "").await.status,
        200
    );
    let r = one.request("GET", "/keyed/3", &key("k1"), "").await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(
        two.request("GET", "/keyed/4", &key("k1"), "").await.status,
        429
    );
    // Another client has its own 2, on either replica.
    assert_eq!(
        two.request("GET", "/keyed/5", &key("k2"), "").await.status,
        200
    );
    assert_eq!(
        one.request("GET", "/keyed/6", &key("k2"), "").await.status,
        200
    );
    assert_eq!(
        one.request("GET", "/keyed/7", &key("k2"), "").await.status,
        429
    );
}

/// Sends `body` to the chat endpoint (the model is read from the body) until
/// `want` comes back or 5 s pass: usage reports are fire-and-forget.
async fn chat_until(gw: &Gateway, key: &str, body: &str, want: u16) -> Response {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = gw
            .request(
                "POST",
                "/v1/chat/completions?interval_ms=1",
                &[("content-type", "application/json"), ("x-api-key", key)],
                body.to_string(),
            )
            .await;
        if r.status == want || Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn token_usage_reported_by_one_replica_refuses_the_next_request_on_the_other() {
    // Usage is counted even past the budget, as envoyproxy/ratelimit does.
    let (service, one, two) = two_replicas(&["--count-over-limit"]).await;
    // The demo model reports total_tokens = body_len / 4 + 5: about 80 here,
    // over the 60-token budget in one answer.
    let big = format!(r#"{{"model":"m","input":"{}"}}"#, "x".repeat(280));
    let r = chat_until(&one, "k1", &big, 200).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let debited =
        r#"agentroute_tokens_debited_total{namespace="default",agent="llm",kind="modelapi"}"#;
    one.wait_metric(debited, (big.len() / 4 + 5) as f64).await;
    // The budget check on the other replica sees the first one's usage.
    let r = chat_until(&two, "k1", r#"{"model":"m"}"#, 429).await;
    assert_eq!(r.status, 429, "{}\n{}", r.text(), service.log());
    assert_eq!(r.json()["error"]["type"], "tokens");
    assert_eq!(r.header("x-ratelimit-limit"), Some("60"));
    assert!(r
        .header("retry-after")
        .is_some_and(|s| (1..=60).contains(&s.parse::<u64>().unwrap())));
    // Another client's budget is untouched.
    let small = r#"{"model":"m","input":"hi"}"#;
    assert_eq!(chat_until(&two, "k2", small, 200).await.status, 200);

    // A streamed answer's usage chunk is reported too (SSE).
    let stream = format!(
        r#"{{"model":"m","stream":true,"stream_options":{{"include_usage":true}},"input":"{}"}}"#,
        "y".repeat(280)
    );
    let r = chat_until(&two, "k3", &stream, 200).await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("data: [DONE]"), "{}", r.text());
    let r = chat_until(&one, "k3", small, 429).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["error"]["type"], "tokens");
}

/// One replica whose rate limit service is `addr` (down, or slow).
async fn replica_without_service(failure_mode: &str, addr: SocketAddr) -> Gateway {
    let config = plugin_config(
        &format!(r#"{{"cluster":"{CLUSTER}","timeout":"200ms","failure_mode":"{failure_mode}"}}"#),
        r#"{"name":"shared","backend":"a","rate_limit":{"scope":"global"}}"#,
    );
    replica(&config, addr).await
}

const FAILURES: &str = r#"agentroute_ratelimit_service_failures_total{namespace="default",agent="shared",kind="agent"}"#;

#[tokio::test]
async fn service_down_with_failure_mode_allow_admits_and_counts() {
    let mut service = RateLimitService::start(LIMITS, &[]).await;
    let gw = replica_without_service("allow", service.addr).await;
    let r = gw.get("/shared/up").await;
    assert_eq!((r.status, r.header("x-ratelimit-limit")), (200, Some("6")));
    service.stop().await;
    for i in 0..3 {
        let r = gw.get(&format!("/shared/down/{i}")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["agent"], "a");
        assert!(r.header("x-ratelimit-limit").is_none());
    }
    gw.wait_metric(FAILURES, 3.0).await;
}

#[tokio::test]
async fn service_down_or_slow_with_failure_mode_deny_answers_503() {
    // Down: nothing listens on the cluster's port.
    let closed = SocketAddr::from(([127, 0, 0, 1], agentroute_tests::free_port()));
    let gw = replica_without_service("deny", closed).await;
    let r = gw.get("/shared/x").await;
    assert_eq!(r.status, 503, "{}", r.text());
    let v = r.json();
    assert_eq!(v["error"]["code"], "rate_limit_service_unavailable");
    assert!(r.header("x-served-by").is_none());

    // Slow: a listener that accepts and never answers; the 200 ms timeout
    // decides, not the client.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = silent.accept().await {
            held.push(conn);
        }
    });
    let slow = replica_without_service("deny", silent_addr).await;
    let started = Instant::now();
    let r = slow.get("/shared/y").await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    gw.wait_metric(FAILURES, 1.0).await;
    slow.wait_metric(FAILURES, 1.0).await;
}

#[tokio::test]
async fn bodies_wait_for_the_verdict_and_an_undefined_cluster_is_a_failure() {
    let service = RateLimitService::start(LIMITS, &[]).await;
    let config = plugin_config(
        &format!(r#"{{"cluster":"{CLUSTER}","timeout":"2s","failure_mode":"deny"}}"#),
        AGENTS,
    );
    // A request body passes whole after the verdict, whether or not Envoy
    // delivers bodies to the paused filter.
    let body = "b".repeat(100_000);
    for allow in [false, true] {
        let mut cfg = GatewayConfig::new(config.as_str()).grpc_cluster(CLUSTER, service.addr);
        cfg.allow_stop_iteration = allow;
        cfg = cfg.cluster("a", spawn_agent("a").await);
        let gw = Gateway::start(cfg).await;
        let r = gw
            .request(
                "POST",
                "/keyed/upload",
                &[("x-api-key", if allow { "p1" } else { "p2" })],
                body.clone(),
            )
            .await;
        assert_eq!(
            r.status,
            200,
            "allow_on_headers_stop_iteration {allow}: {}",
            r.text()
        );
        assert_eq!(r.json()["body"].as_str().map(str::len), Some(body.len()));
        assert_eq!(r.header("x-ratelimit-remaining"), Some("1"));
    }

    // A cluster Envoy does not know: the call fails (no crash), failure_mode decides.
    let config = plugin_config(
        r#"{"cluster":"not-defined-anywhere","failure_mode":"deny"}"#,
        r#"{"name":"shared","backend":"a","rate_limit":{"scope":"global"}}"#,
    );
    let gw = replica(&config, service.addr).await;
    let r = gw.get("/shared/x").await;
    assert_eq!(r.status, 503, "{}", r.text());
    gw.wait_metric(FAILURES, 1.0).await;

    // A client that gives up while its request waits for a slow service
    // leaves nothing behind: the late answer is dropped.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = silent.accept().await {
            held.push(conn);
        }
    });
    let slow = replica_without_service("allow", silent_addr).await;
    let abandoned = tokio::time::timeout(Duration::from_millis(50), slow.get("/shared/gone")).await;
    assert!(abandoned.is_err(), "answered before the 200 ms timeout");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(slow.get("/shared/after").await.status, 200);
}

/// A value from a shipped YAML file, as JSON text: `expr` is Python over
/// `doc` (the file's first document).
fn shipped(file: &str, expr: &str) -> String {
    let script = format!(
        "import json, sys, yaml\n\
         doc = next(d for d in yaml.safe_load_all(open(sys.argv[1])) if d)\n\
         value = {expr}\n\
         print(value if isinstance(value, str) else json.dumps(value))"
    );
    let root = agentroute_tests::workspace_root();
    let out = std::process::Command::new(root.join(".venv/bin/python"))
        .args(["-c", &script])
        .arg(root.join(file))
        .output()
        .expect("run .venv/bin/python (make setup installs pyyaml)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The shipped pieces fit together: the Limitador limits file
/// (envoy/ratelimit/limitador-limits.yaml) holds prod/tools to 3 a minute
/// across a replica configured like istio/global-limits/wasmplugin.yaml
/// (Istio's filter shape, its `outbound|8081||...` cluster name) and one
/// configured like envoy/global-limits.yaml (what `make run-global` runs).
#[tokio::test]
async fn shipped_configs_and_limits_hold_one_limit() {
    let limits = std::fs::read_to_string(
        agentroute_tests::workspace_root().join("envoy/ratelimit/limitador-limits.yaml"),
    )
    .expect("limits file");
    let service = RateLimitService::start(&limits, &["--count-over-limit"]).await;
    let istio_config = shipped(
        "istio/global-limits/wasmplugin.yaml",
        "doc['spec']['pluginConfig']",
    );
    // The manifest's 50 ms is for a production service; the debug-built
    // stand-in on a busy test machine needs more.
    let istio_config = istio_config.replace(r#""timeout": "50ms""#, r#""timeout": "1s""#);
    assert!(
        istio_config.contains(r#""timeout": "1s""#),
        "{istio_config}"
    );
    let istio_cluster = "outbound|8081||ratelimit.infra.svc.cluster.local";
    let mut cfg = GatewayConfig::new(istio_config)
        .shape(agentroute_tests::Shape::Istio)
        .grpc_cluster(istio_cluster, service.addr)
        .cluster("prod-tools", spawn_agent("tools").await);
    cfg.filters_before
        .push(agentroute_tests::json_to_metadata("agentroute"));
    let istio = Gateway::start(cfg).await;

    let plain_config = shipped(
        "envoy/global-limits.yaml",
        "doc['static_resources']['listeners'][0]['filter_chains'][0]['filters'][0]\
         ['typed_config']['http_filters'][0]['typed_config']['config']['configuration']['value']",
    )
    .replace(r#""timeout": "100ms""#, r#""timeout": "1s""#);
    let mut cfg = GatewayConfig::new(plain_config)
        .grpc_cluster("ratelimit", service.addr)
        .cluster("tools", spawn_agent("tools").await)
        .cluster("researcher", spawn_agent("researcher").await);
    cfg.allow_stop_iteration = true;
    let plain = Gateway::start(cfg).await;

    let mut got = Vec::new();
    for i in 0..5 {
        let gw = if i % 2 == 0 { &istio } else { &plain };
        got.push(gw.get("/prod/mcp/tools/x").await.status);
    }
    assert_eq!(got, [200, 200, 200, 429, 429]);
    // prod/researcher (envoy/global-limits.yaml): 2 a minute per API key.
    let key = [("x-api-key", "demo")];
    let got: Vec<u16> = [
        plain
            .request("GET", "/prod/researcher/a", &key, "")
            .await
            .status,
        plain
            .request("GET", "/prod/researcher/b", &key, "")
            .await
            .status,
        plain
            .request("GET", "/prod/researcher/c", &key, "")
            .await
            .status,
    ]
    .to_vec();
    assert_eq!(got, [200, 200, 429]);
}
