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
            {"name":"a","backend":"a","rate_limit":{"requests_per_second":1,"burst":2}},
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
    // 1/s: one token a second (slow enough that the next request comes
    // well within the second even on a loaded machine).
    tokio::time::sleep(Duration::from_millis(1100)).await;
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
    // Per-client buckets live in pages made when the configuration was
    // applied: exact from the first request, even when both workers race on
    // a client's first burst.
    for who in ["alice", "bob", "carol"] {
        assert_eq!(admitted(&burst(&gw, "/a", key(who), 6).await), 2, "{who}");
        assert_eq!(admitted(&burst(&gw, "/a", key(who), 4).await), 0, "{who}");
    }
    // Requests without the header share the entry's own bucket.
    assert_eq!(admitted(&burst(&gw, "/a", vec![], 5).await), 2);

    // A flood of random keys, burst 2 each: buckets live in 1,024 slots per
    // entry (64 pages of 16), so at most 2 × 1024 requests can ever be
    // admitted and the memory they take is bounded whatever the number of
    // keys.
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

/// What an admitted answer says the token budget holds after its hold.
fn remaining_tokens(r: &Response) -> i64 {
    r.header("x-ratelimit-remaining-tokens")
        .unwrap_or_else(|| panic!("no x-ratelimit-remaining-tokens: {}", r.text()))
        .parse()
        .expect("a number")
}

/// The budget's balance, read from the next admitted answer: what it holds
/// after that request's hold of `reserve`, within what the refill (1 token
/// a second here) may have added since `since`.
fn assert_balance(r: &Response, balance: i64, reserve: i64, since: std::time::Instant) {
    assert_eq!(r.status, 200, "{}", r.text());
    let refill = since.elapsed().as_secs() as i64 + 1;
    let got = remaining_tokens(r);
    let want = (balance - reserve).max(0);
    assert!(
        (want..=want + refill).contains(&got),
        "budget holds {got} after the hold, expected {want} (+ up to {refill} refilled)"
    );
}

#[tokio::test]
async fn token_budgets_are_debited_from_json_and_sse_usage() {
    // 60 tokens a minute (one a second refilled), 5 held per request.
    let gw = gateway(
        r#"{"agents":[{"name":"llm","kind":"modelapi","backend":"llm","models":["m"],
            "rate_limit":{"tokens_per_minute":60,"reserve_tokens":5}}]}"#,
    )
    .await;
    let json = [("content-type", "application/json")];
    let debited =
        r#"agentroute_tokens_debited_total{namespace="default",agent="llm",kind="modelapi"}"#;
    let started = std::time::Instant::now();
    // The demo model reports total_tokens = body_len / 4 + 5.
    let usage = |body: &str| (body.len() / 4 + 5) as i64;

    let body = r#"{"model":"m","input":"xx"}"#;
    let r = gw
        .request("POST", "/v1/chat/completions", &json, body)
        .await;
    assert_balance(&r, 60, 5, started);
    assert_eq!(r.header("x-ratelimit-limit-tokens"), Some("60"));
    let mut balance = 60 - usage(body);
    gw.wait_metric(debited, (60 - balance) as f64).await;

    // A stream with a usage chunk is debited that usage.
    let stream = r#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#;
    let r = gw
        .request("POST", "/v1/chat/completions?interval_ms=1", &json, stream)
        .await;
    assert_balance(&r, balance, 5, started);
    balance -= usage(stream);
    gw.wait_metric(debited, (60 - balance) as f64).await;

    // A Responses stream carries its usage in `response.completed`.
    let responses = r#"{"model":"m","stream":true,"input":"hi"}"#;
    let r = gw
        .request("POST", "/v1/responses?interval_ms=1", &json, responses)
        .await;
    assert_balance(&r, balance, 5, started);
    balance -= usage(responses);
    gw.wait_metric(debited, (60 - balance) as f64).await;

    // A stream without one is charged its prompt (a quarter of the body)
    // plus a token per event, and never less than its hold.
    let plain = r#"{"model":"m","stream":true}"#;
    let r = gw
        .request("POST", "/v1/chat/completions?interval_ms=1", &json, plain)
        .await;
    assert_balance(&r, balance, 5, started);
    balance -= (plain.len() / 4 + 5).max(5) as i64;
    gw.wait_metric(debited, (60 - balance) as f64).await;

    // The budget holds what the answers used: the next request shows it.
    let r = gw.request("POST", "/v1/embeddings", &json, body).await;
    assert_balance(&r, balance, 5, started);
}

/// A stream whose client did not ask for usage used its prompt all the
/// same: three streamed requests of ~3,000 prompt tokens each against a
/// budget of 1,000 a minute must not all pass.
#[tokio::test]
async fn streams_without_usage_pay_for_their_prompt() {
    let gw = gateway(
        r#"{"agents":[{"name":"llm","kind":"modelapi","backend":"llm","models":["m"],
            "rate_limit":{"tokens_per_minute":1000}}]}"#,
    )
    .await;
    let json = [("content-type", "application/json")];
    let debited =
        r#"agentroute_tokens_debited_total{namespace="default",agent="llm",kind="modelapi"}"#;
    let prompt = format!(
        r#"{{"model":"m","stream":true,"messages":[{{"role":"user","content":"{}"}}]}}"#,
        "w".repeat(12_000)
    );
    let first = gw
        .request(
            "POST",
            "/v1/chat/completions?interval_ms=1",
            &json,
            prompt.clone(),
        )
        .await;
    assert_eq!(first.status, 200);
    // Charged its prompt (body / 4) and 5 events.
    gw.wait_metric(debited, (prompt.len() / 4 + 5) as f64).await;
    for _ in 0..2 {
        let r = gw
            .request(
                "POST",
                "/v1/chat/completions?interval_ms=1",
                &json,
                prompt.clone(),
            )
            .await;
        assert_eq!(r.status, 429, "{}", r.text());
        assert_eq!(r.json()["error"]["type"], "tokens");
        // About 2,000 tokens of debt at 1,000 a minute: two minutes.
        let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!((100..=130).contains(&retry), "retry-after {retry}");
    }
}
