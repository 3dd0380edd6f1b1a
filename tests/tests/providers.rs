//! Providers through a real Envoy: the official `openai` client against
//! stand-in Anthropic and Gemini servers, and the official `anthropic`
//! client against an OpenAI-compatible stand-in (tests/python/
//! provider_server.py, which checks every request it receives against the
//! provider SDK's own types and answers in the provider's exact wire
//! format). Each provider's credential is injected by Envoy's
//! `credential_injector` on the provider's cluster, from a file-based SDS
//! secret: the client's own key never reaches a provider. Then what must
//! keep working on translated traffic: a token budget settled from a
//! translated stream, failover from a failing Anthropic backend to a
//! Gemini one (each attempt translated for its own provider), a canary
//! split across providers, the model read from metadata, and the access
//! log naming the provider.

use std::time::Duration;

use agentroute::observe::Field;
use agentroute_tests::{run_python, with_text_access_log};
use serde_json::{json, Value};

mod providers_shared;
use providers_shared::{
    gateway, gateway_with, provider_entries, Provider, ANTHROPIC_KEY, CLIENT_KEY, GEMINI_KEY,
    OPENAI_KEY,
};

/// Runs tests/python/provider_clients.py: one JSON line of results.
async fn clients(sdk: &str, base_url: &str, model: &str, cases: &[&str]) -> Value {
    let mut args = vec![
        sdk.to_string(),
        "--base-url".into(),
        base_url.into(),
        "--model".into(),
        model.into(),
        "--key".into(),
        CLIENT_KEY.into(),
    ];
    args.extend(cases.iter().map(|c| c.to_string()));
    let out = run_python("provider_clients.py", args).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|e| {
        panic!(
            "provider_clients.py {sdk} {cases:?}: {e}\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// What every OpenAI-surface case must give, whichever provider answers.
fn assert_openai_cases(r: &Value, name: &str) {
    let chat = &r["chat"];
    assert_eq!(chat["text"], format!("{name}: hello"), "{r:#}");
    assert_eq!(chat["finish_reason"], "stop", "{r:#}");
    assert_eq!(chat["usage"]["prompt_tokens"], 11, "{r:#}");
    assert_eq!(chat["usage"]["completion_tokens"], 7, "{r:#}");
    let stream = &r["stream"];
    assert_eq!(stream["text"], format!("{name}: hello"), "{r:#}");
    assert_eq!(stream["finish_reason"], "stop", "{r:#}");
    assert_eq!(stream["usage"]["total_tokens"], 18, "{r:#}");
    assert!(r["stream-no-usage"]["usage"].is_null(), "{r:#}");
    assert_eq!(r["tools"]["tool_calls"][0]["name"], "get_weather", "{r:#}");
    assert_eq!(arguments(&r["tools"])["city"], "Paris", "{r:#}");
    assert_eq!(r["tools"]["finish_reason"], "tool_calls", "{r:#}");
    assert!(
        r["tools"]["final_text"]
            .as_str()
            .is_some_and(|t| t.starts_with(name)),
        "{r:#}"
    );
    assert_eq!(
        r["stream-tools"]["tool_calls"][0]["name"], "get_weather",
        "{r:#}"
    );
    assert_eq!(arguments(&r["stream-tools"])["city"], "Paris", "{r:#}");
    assert!(
        r["image"]["text"]
            .as_str()
            .is_some_and(|t| t.ends_with("[image]")),
        "{r:#}"
    );
}

/// The first tool call's arguments, parsed.
fn arguments(case: &Value) -> Value {
    let raw = &case["tool_calls"][0]["arguments"];
    match raw.as_str() {
        Some(text) => serde_json::from_str(text).unwrap_or(Value::Null),
        None => raw.clone(),
    }
}

const OPENAI_CASES: [&str; 6] = [
    "chat",
    "stream",
    "stream-no-usage",
    "tools",
    "stream-tools",
    "image",
];

#[tokio::test]
async fn the_openai_client_speaks_to_anthropic_and_gemini() {
    let anthropic = Provider::start("anthropic", "claude", ANTHROPIC_KEY, &[]).await;
    let gemini = Provider::start("gemini", "gemini", GEMINI_KEY, &[]).await;
    let gw = gateway(
        provider_entries(),
        &[("anthropic", anthropic.addr), ("gemini", gemini.addr)],
        false,
    )
    .await;
    let base = format!("http://{}/v1", gw.addr);
    let r = clients("openai", &base, "claude-sonnet-4-5", &OPENAI_CASES).await;
    assert_openai_cases(&r, "claude");
    let seen = anthropic.assert_clean("x-api-key", ANTHROPIC_KEY).await;
    assert!(
        seen.iter().all(|s| s["path"] == "/v1/messages"),
        "{seen:#?}"
    );
    // The entry's `max_tokens` where the client set none.
    assert!(
        seen.iter().any(|s| s["body"]["max_tokens"] == 512),
        "{seen:#?}"
    );
    assert!(seen.iter().all(|s| s["headers"]["authorization"].is_null()));

    let r = clients("openai", &base, "gemini-2.5-flash", &OPENAI_CASES).await;
    assert_openai_cases(&r, "gemini");
    let seen = gemini.assert_clean("x-goog-api-key", GEMINI_KEY).await;
    let paths: Vec<&str> = seen.iter().filter_map(|s| s["path"].as_str()).collect();
    assert!(
        paths.contains(&"/v1beta/models/gemini-2.5-flash:generateContent"),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"/v1beta/models/gemini-2.5-flash:streamGenerateContent"),
        "{paths:?}"
    );
    assert!(seen.iter().all(|s| s["headers"]["authorization"].is_null()));
}

#[tokio::test]
async fn the_anthropic_client_speaks_to_an_openai_backend() {
    let local = Provider::start("openai", "local", OPENAI_KEY, &[]).await;
    let anthropic = Provider::start("anthropic", "claude", ANTHROPIC_KEY, &[]).await;
    let gw = gateway(
        provider_entries(),
        &[("local", local.addr), ("anthropic", anthropic.addr)],
        false,
    )
    .await;
    let base = format!("http://{}", gw.addr);
    let cases = [
        "messages",
        "stream",
        "tools",
        "stream-tools",
        "count_tokens",
        "not-found",
    ];
    let r = clients("anthropic", &base, "local-llm", &cases).await;
    assert_eq!(r["messages"]["text"], "local: hello", "{r:#}");
    assert_eq!(r["messages"]["stop_reason"], "end_turn", "{r:#}");
    assert_eq!(r["messages"]["usage"]["input_tokens"], 11, "{r:#}");
    assert_eq!(r["messages"]["usage"]["output_tokens"], 7, "{r:#}");
    assert!(
        r["messages"]["id"]
            .as_str()
            .is_some_and(|i| i.starts_with("msg_")),
        "{r:#}"
    );
    assert_eq!(r["stream"]["text"], "local: hello", "{r:#}");
    assert_eq!(r["stream"]["stop_reason"], "end_turn", "{r:#}");
    assert_eq!(r["stream"]["usage"]["output_tokens"], 7, "{r:#}");
    assert_eq!(r["tools"]["tool_use"]["name"], "get_weather", "{r:#}");
    assert_eq!(r["tools"]["tool_use"]["input"]["city"], "Paris", "{r:#}");
    assert_eq!(r["tools"]["stop_reason"], "tool_use", "{r:#}");
    assert!(
        r["tools"]["final_text"]
            .as_str()
            .is_some_and(|t| t.starts_with("local")),
        "{r:#}"
    );
    assert_eq!(
        r["stream-tools"]["tool_use"]["input"]["city"], "Paris",
        "{r:#}"
    );
    // An OpenAI backend has no count_tokens: the gateway estimates.
    assert!(
        r["count_tokens"]["input_tokens"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "{r:#}"
    );
    // Errors in Anthropic's shape.
    assert_eq!(r["not-found"]["error"]["status"], 404, "{r:#}");
    assert_eq!(r["not-found"]["error"]["type"], "not_found_error", "{r:#}");
    let seen = local
        .assert_clean("authorization", &format!("Bearer {OPENAI_KEY}"))
        .await;
    assert!(
        seen.iter().all(|s| s["path"] == "/v1/chat/completions"),
        "{seen:#?}"
    );
    assert!(seen.iter().all(|s| s["headers"]["x-api-key"].is_null()));
    assert!(seen
        .iter()
        .all(|s| s["headers"]["anthropic-version"].is_null()));

    // To an Anthropic entry, the Anthropic surface passes as is (with the
    // provider's key in place of the client's).
    let r = clients(
        "anthropic",
        &base,
        "claude-sonnet-4-5",
        &["messages", "count_tokens"],
    )
    .await;
    assert_eq!(r["messages"]["text"], "claude: hello", "{r:#}");
    assert_eq!(r["count_tokens"]["input_tokens"], 42, "{r:#}");
    anthropic.assert_clean("x-api-key", ANTHROPIC_KEY).await;
}

/// The text of an OpenAI chat stream: its content deltas joined.
fn streamed_text(sse: &str) -> String {
    sse.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

/// The text of an answer, streamed or not.
fn answer_text(r: &agentroute_tests::Response) -> String {
    let text = r.text();
    if text.starts_with("data: ") {
        return streamed_text(&text);
    }
    r.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// A chat body with a known size: the budget's hold is its `max_tokens`
/// plus a quarter of its bytes.
fn chat_body(model: &str, stream: bool) -> String {
    json!({ "model": model, "max_tokens": 100, "stream": stream,
            "messages": [ { "role": "user", "content": "hello" } ] })
    .to_string()
}

#[tokio::test]
async fn a_budget_settles_from_a_translated_stream_and_the_log_names_the_provider() {
    let anthropic = Provider::start("anthropic", "claude", ANTHROPIC_KEY, &[]).await;
    let mut plugin = provider_entries();
    plugin["agents"][0]["rate_limit"] = json!({ "tokens_per_minute": 200 });
    plugin["observability"] = json!({ "access_log": true });
    let log_dir = tempfile::tempdir().expect("log dir");
    let log = log_dir.path().join("access.log");
    let line = format!(
        "{} {} {}\n",
        Field::Provider.access_log_command(),
        Field::TotalTokens.access_log_command(),
        Field::Model.access_log_command()
    );
    let log_path = log.clone();
    let gw = gateway_with(plugin, &[("anthropic", anthropic.addr)], false, move |c| {
        with_text_access_log(c, &log_path, line)
    })
    .await;
    let json = [("content-type", "application/json")];
    let mut remaining = Vec::new();
    for i in 0..2 {
        let r = gw
            .request(
                "POST",
                "/v1/chat/completions",
                &json,
                chat_body("claude-sonnet-4-5", true),
            )
            .await;
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        let text = r.text();
        assert_eq!(streamed_text(&text), "claude: hello", "{text}");
        assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
        let left: i64 = r
            .header("x-ratelimit-remaining-tokens")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no token headers: {:?}", r.headers));
        remaining.push(left);
    }
    // The first request held `hold` tokens of a full budget; its stream
    // reported 18, and the hold was settled to that: the second request
    // finds 200 - 18 (plus a few refilled) before its own hold. Unsettled,
    // it would find 200 - hold.
    let hold = 200 - remaining[0];
    let expected = 200 - 18 - hold;
    assert!(
        (expected..expected + 15).contains(&remaining[1]),
        "hold {hold}, remaining {remaining:?}, expected about {expected}"
    );
    // Each answered request's log line names the provider, the tokens the
    // translated stream reported, and the model.
    let mut lines = Vec::new();
    for _ in 0..150 {
        lines = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        if lines.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(lines.len(), 2, "{lines:?}");
    let answered: Vec<_> = lines
        .iter()
        .filter(|l| l.starts_with("anthropic 18 "))
        .collect();
    assert_eq!(answered.len(), 2, "{lines:?}");
}

#[tokio::test]
async fn failover_and_canary_cross_providers_each_translated_for_its_own() {
    let failing = Provider::start("anthropic", "claude", ANTHROPIC_KEY, &["--fail", "529"]).await;
    let gemini = Provider::start("gemini", "gemini", GEMINI_KEY, &[]).await;
    let anthropic_b = Provider::start("anthropic", "claude-b", ANTHROPIC_KEY, &[]).await;
    let plugin = json!({ "agents": [
        { "name": "claude", "namespace": "models", "kind": "modelapi", "backend": "anthropic",
          "models": ["claude-sonnet-4-5"], "provider": "anthropic",
          "failover": { "backends": [ { "backend": "gemini", "provider": "gemini",
                                        "provider_options": { "model": "gemini-2.5-flash" } } ],
                        "eject": "30s" } },
        { "name": "split", "namespace": "models", "kind": "modelapi", "backend": "anthropic-b",
          "models": ["split"], "provider": "anthropic",
          "canary": { "backend": "gemini", "weight": 0, "header": "x-canary",
                      "provider": "gemini", "provider_options": { "model": "gemini-2.5-flash" } } }
    ] });
    let gw = gateway(
        plugin,
        &[
            ("anthropic", failing.addr),
            ("gemini", gemini.addr),
            ("anthropic-b", anthropic_b.addr),
        ],
        false,
    )
    .await;
    let json = [("content-type", "application/json")];
    // The overloaded Anthropic backend: its 529 reaches the client as an
    // OpenAI 503 (no retry: Gemini cannot take an Anthropic body), and
    // ejects it.
    let r = gw
        .request(
            "POST",
            "/v1/chat/completions",
            &json,
            chat_body("claude-sonnet-4-5", false),
        )
        .await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"]["type"], "server_error", "{}", r.text());
    assert!(r.header("retry-after").is_some());
    // The next request goes to Gemini, translated for Gemini.
    for stream in [false, true] {
        let r = gw
            .request(
                "POST",
                "/v1/chat/completions",
                &json,
                chat_body("claude-sonnet-4-5", stream),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(answer_text(&r), "gemini: hello", "{}", r.text());
    }
    assert_eq!(failing.requests().await.len(), 1);
    gemini.assert_clean("x-goog-api-key", GEMINI_KEY).await;
    // A canary split across providers: each side translated for its own.
    let stable = gw
        .request(
            "POST",
            "/v1/chat/completions",
            &json,
            chat_body("split", false),
        )
        .await;
    assert_eq!(answer_text(&stable), "claude-b: hello", "{}", stable.text());
    let canary = gw
        .request(
            "POST",
            "/v1/chat/completions",
            &[("content-type", "application/json"), ("x-canary", "always")],
            chat_body("split", false),
        )
        .await;
    assert_eq!(answer_text(&canary), "gemini: hello", "{}", canary.text());
    anthropic_b.assert_clean("x-api-key", ANTHROPIC_KEY).await;
}

#[tokio::test]
async fn model_from_metadata_translates_once_the_body_is_whole() {
    let anthropic = Provider::start("anthropic", "claude", ANTHROPIC_KEY, &[]).await;
    let local = Provider::start("openai", "local", OPENAI_KEY, &[]).await;
    let mut plugin = provider_entries();
    plugin["openai"] = json!({ "model_from": "metadata" });
    let gw = gateway(
        plugin,
        &[("anthropic", anthropic.addr), ("local", local.addr)],
        true,
    )
    .await;
    let base = format!("http://{}/v1", gw.addr);
    let r = clients(
        "openai",
        &base,
        "claude-sonnet-4-5",
        &["chat", "stream", "tools"],
    )
    .await;
    assert_eq!(r["chat"]["text"], "claude: hello", "{r:#}");
    assert_eq!(r["stream"]["text"], "claude: hello", "{r:#}");
    assert_eq!(arguments(&r["tools"])["city"], "Paris", "{r:#}");
    anthropic.assert_clean("x-api-key", ANTHROPIC_KEY).await;
    let base = format!("http://{}", gw.addr);
    let r = clients("anthropic", &base, "local-llm", &["messages", "stream"]).await;
    assert_eq!(r["messages"]["text"], "local: hello", "{r:#}");
    assert_eq!(r["stream"]["text"], "local: hello", "{r:#}");
    local
        .assert_clean("authorization", &format!("Bearer {OPENAI_KEY}"))
        .await;
}
