//! Token buckets through a real Envoy with two workers: one bucket per entry
//! (or per client) shared by every worker, 429s with accurate headers, and
//! LLM token budgets debited from responses.

use std::time::Duration;

use agentroute_tests::{spawn_agent, Gateway, GatewayConfig, Response};

async fn gateway(config: &str) -> Gateway {
    let mut cfg = GatewayConfig::new(config);
    cfg.allow_stop_iteration = true;
    for name in ["a", "llm"] {
        cfg = cfg.cluster(name, spawn_agent(name).await);
    }
    Gateway::start(cfg).await
}

/// Fires `n` requests at once, each on its own connection (so both Envoy
/// workers take a share), and returns the responses.
async fn burst(
    gw: &Gateway,
    path: &str,
    headers: Vec<(String, String)>,
    n: usize,
) -> Vec<Response> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (addr, path, headers) = (gw.addr, path.to_string(), headers.clone());
        tasks.push(tokio::spawn(async move {
            let h: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            agentroute_tests::send(addr, "GET", &path, &h, "").await
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("request task"));
    }
    out
}

fn admitted(rs: &[Response]) -> usize {
    rs.iter().filter(|r| r.status == 200).count()
}

#[tokio::test]
async fn a_burst_admits_exactly_burst_across_workers() {
    let gw = gateway(
        r#"{"agents":[{"name":"a","backend":"a","rate_limit":{"requests_per_second":0.001,"burst":25}}]}"#,
    )
    .await;
    let rs = burst(&gw, "/a/x", vec![], 100).await;
    assert_eq!(
        admitted(&rs),
        25,
        "statuses: {:?}",
        rs.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    let limited: Vec<&Response> = rs.iter().filter(|r| r.status == 429).collect();
    assert_eq!(limited.len(), 75);
    let r = limited[0];
    assert_eq!(r.header("x-ratelimit-limit"), Some("25"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    // 1 token at 0.001/s: 1000 s until the next one.
    assert_eq!(r.header("retry-after"), Some("1000"));
    assert_eq!(r.header("x-ratelimit-reset"), Some("25000"));
    let v = r.json();
    assert_eq!(
        (v["error"]["code"].as_str(), v["error"]["type"].as_str()),
        (Some("rate_limit_exceeded"), Some("requests"))
    );
    assert!(r.header("x-served-by").is_none());

    let admitted_total =
        r#"agentroute_ratelimit_admitted_total{namespace="default",agent="a",kind="agent"}"#;
    let limited_total =
        r#"agentroute_ratelimit_limited_total{namespace="default",agent="a",kind="agent"}"#;
    gw.wait_metric(admitted_total, 25.0).await;
    gw.wait_metric(limited_total, 75.0).await;
    // Informational: how often the two workers collided on the bucket.
    let retries =
        r#"agentroute_ratelimit_cas_retries_total{namespace="default",agent="a",kind="agent"}"#;
    eprintln!(
        "CAS retries for 100 concurrent requests: {}",
        gw.metric(retries).await.unwrap_or(0.0)
    );
}

#[tokio::test]
async fn buckets_refill_continuously_and_admitted_responses_carry_headers() {
    let gw = gateway(
        r#"{"agents":[
            {"name":"a","backend":"a","rate_limit":{"requests_per_second":4,"burst":2}},
            {"name":"slow","backend":"a","rate_limit":{"requests_per_second":0.5,"burst":1}}]}"#,
    )
    .await;
    let r = gw.get("/a/1").await;
    assert_eq!(
        (
            r.status,
            r.header("x-ratelimit-limit"),
            r.header("x-ratelimit-remaining")
        ),
        (200, Some("2"), Some("1"))
    );
    let r = gw.get("/a/2").await;
    assert_eq!(
        (r.status, r.header("x-ratelimit-remaining")),
        (200, Some("0"))
    );
    let r = gw.get("/a/3").await;
    assert_eq!((r.status, r.header("retry-after")), (429, Some("1")));
    // 4/s: one token every 250 ms.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(gw.get("/a/4").await.status, 200);
    assert_eq!(gw.get("/a/5").await.status, 429);

    // Fractional rates: 0.5/s is one request every 2 s.
    assert_eq!(gw.get("/slow/1").await.status, 200);
    let r = gw.get("/slow/2").await;
    assert_eq!((r.status, r.header("retry-after")), (429, Some("2")));
}

#[tokio::test]
async fn per_client_buckets_are_isolated_and_bounded() {
    let gw = gateway(
        r#"{"agents":[{"name":"a","backend":"a",
            "rate_limit":{"requests_per_second":0.001,"burst":2,"per":"header:x-api-key"}}]}"#,
    )
    .await;
    let key = |k: &str| vec![("x-api-key".to_string(), k.to_string())];
    // A per-client bucket is created by its first request: when both
    // workers race on that, one may overwrite the bucket the other started,
    // so the first burst admits up to `burst` more, once (README).
    let first_burst = 2..=4;
    let alice = admitted(&burst(&gw, "/a", key("alice"), 5).await);
    assert!(first_burst.contains(&alice), "alice: {alice}");
    let bob = admitted(&burst(&gw, "/a", key("bob"), 5).await);
    assert!(first_burst.contains(&bob), "bob has his own bucket: {bob}");
    // Once created, the buckets are exact: both are empty.
    assert_eq!(admitted(&burst(&gw, "/a", key("alice"), 5).await), 0);
    assert_eq!(admitted(&burst(&gw, "/a", key("bob"), 5).await), 0);

    // A flood of random keys, burst 2 each: buckets live in at most 1024
    // slots per entry, so at most 2 × 1024 requests can ever be admitted and
    // the memory they take is bounded whatever the number of keys.
    let mut total = 0;
    for round in 0..6 {
        let mut tasks = Vec::new();
        for i in 0..500 {
            let addr = gw.addr;
            let k = format!("random-{round}-{i}-{}", i * 7919 + round);
            tasks.push(tokio::spawn(async move {
                agentroute_tests::send(addr, "GET", "/a", &[("x-api-key", &k)], "")
                    .await
                    .status
            }));
        }
        for t in tasks {
            total += usize::from(t.await.unwrap() == 200);
        }
    }
    assert!(total <= 2 * 1024, "admitted {total} of 3000 distinct keys");
    assert!(
        total > 1000,
        "distinct keys mostly get their own bucket: {total}"
    );
}

#[tokio::test]
async fn token_budgets_are_debited_from_json_and_sse_usage() {
    let gw = gateway(
        r#"{"agents":[{"name":"llm","kind":"modelapi","backend":"llm","models":["m"],
            "rate_limit":{"tokens_per_minute":100}}]}"#,
    )
    .await;
    let json = [("content-type", "application/json")];
    let debited =
        r#"agentroute_tokens_debited_total{namespace="default",agent="llm",kind="modelapi"}"#;

    // The demo model reports total_tokens = body_len / 4 + 5.
    let body = format!(r#"{{"model":"m","input":"{}"}}"#, "x".repeat(100));
    let used = (body.len() / 4 + 5) as f64;
    let r = gw
        .request("POST", "/v1/chat/completions", &json, body.clone())
        .await;
    assert_eq!(r.status, 200);
    let mut expected = used;
    gw.wait_metric(debited, expected).await;

    // A stream with a usage chunk is debited that usage.
    let stream = r#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#;
    let r = gw
        .request("POST", "/v1/chat/completions?interval_ms=1", &json, stream)
        .await;
    assert_eq!(r.status, 200);
    expected += (stream.len() / 4 + 5) as f64;
    gw.wait_metric(debited, expected).await;

    // A stream without one: one token per streamed event (5 here).
    let plain = r#"{"model":"m","stream":true}"#;
    gw.request("POST", "/v1/chat/completions?interval_ms=1", &json, plain)
        .await;
    expected += 5.0;
    gw.wait_metric(debited, expected).await;

    // Spend the rest of the 100-token budget, then get refused.
    let big = format!(r#"{{"model":"m","input":"{}"}}"#, "y".repeat(400));
    gw.request("POST", "/v1/embeddings", &json, big).await;
    let r = gw.request("POST", "/v1/embeddings", &json, body).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["error"]["type"], "tokens");
    assert!(r
        .header("retry-after")
        .is_some_and(|s| s.parse::<u64>().unwrap() >= 1));
}
