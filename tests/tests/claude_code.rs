//! Claude Code (the `claude` CLI, `@anthropic-ai/claude-code` as
//! tests/js/package.json pins it) pointed at the gateway with
//! `ANTHROPIC_BASE_URL`, against a local OpenAI-compatible model (the
//! stand-in tests/python/provider_server.py, `--kind openai`): its
//! Messages requests, tool definitions and all, are translated to chat
//! completions that pass the openai SDK's types, and the stand-in's
//! streamed answers, a tool call first, then text, are translated back into
//! Anthropic stream events that Claude Code runs to the end. Issue #35.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use agentroute_tests::workspace_root;
use serde_json::{json, Value};

mod providers_shared;
use providers_shared::{gateway, Provider, CLIENT_KEY, OPENAI_KEY};

/// The `claude` binary as npm installs it (`make setup-test`: `npm ci
/// --prefix tests/js`; its postinstall puts the native binary for this
/// platform in place).
fn claude_bin() -> PathBuf {
    workspace_root().join("tests/js/node_modules/.bin/claude")
}

/// The one entry Claude Code talks to: an OpenAI-compatible backend.
fn local_entry() -> Value {
    json!({ "agents": [
        { "name": "local", "namespace": "models", "kind": "modelapi", "backend": "local",
          "models": ["local-llm"] }
    ] })
}

#[tokio::test]
async fn claude_code_runs_against_a_local_openai_compatible_model() {
    let claude = claude_bin();
    assert!(
        claude.exists(),
        "{} is missing: `make setup-test` installs it (npm ci --prefix tests/js)",
        claude.display()
    );
    let local = Provider::start("openai", "local", OPENAI_KEY, &[]).await;
    let gw = gateway(local_entry(), &[("local", local.addr)], false).await;

    // A home and a project of its own: no settings, no credentials, no
    // history but what this run writes.
    let home = tempfile::tempdir().expect("home");
    let project = tempfile::tempdir().expect("project");
    let started = Instant::now();
    let run = tokio::process::Command::new(&claude)
        .args([
            "-p",
            "say hello",
            "--model",
            "local-llm",
            "--output-format",
            "json",
            "--max-turns",
            "3",
        ])
        .current_dir(project.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("ANTHROPIC_BASE_URL", format!("http://{}", gw.addr))
        // The client's own key: Envoy replaces it with the backend's.
        .env("ANTHROPIC_API_KEY", CLIENT_KEY)
        // Its side calls (titles, summaries) to a model the gateway knows.
        .env("ANTHROPIC_SMALL_FAST_MODEL", "local-llm")
        .env("ANTHROPIC_DEFAULT_HAIKU_MODEL", "local-llm")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("claude -p did not finish within 60 s")
        .expect("run claude");
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let seen = Value::Array(local.requests().await);
    let context = || {
        format!(
            "claude -p: {:?} after {elapsed:?}\nstdout: {stdout}\nstderr: {stderr}\nthe backend got: {seen:#}\nenvoy: {}",
            out.status,
            gw.log()
        )
    };
    assert!(out.status.success(), "{}", context());
    let result: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", context()));
    assert_eq!(result["type"], "result", "{}", context());
    assert_eq!(result["is_error"], false, "{}", context());
    // Two turns: the stand-in's call of the first tool offered (`Agent`,
    // with `{"city":"Paris"}`, which Claude Code refuses as input and
    // answers as a tool error), then, the last turn being a tool result,
    // its text: the name and the last user text (Claude Code's context
    // reminder, then the prompt).
    assert_eq!(result["num_turns"], 2, "{}", context());
    let answer = result["result"].as_str().unwrap_or_default();
    assert!(
        answer.starts_with("local: ") && answer.ends_with("say hello"),
        "{}",
        context()
    );
    // The usage of both translated streams (7 output tokens each).
    assert_eq!(result["usage"]["output_tokens"], 14, "{}", context());

    // Every request the backend got passed the openai SDK's types, carried
    // the key Envoy injected and nothing of the client's.
    let requests = local
        .assert_clean("authorization", &format!("Bearer {OPENAI_KEY}"))
        .await;
    let mut first_tools: Vec<String> = Vec::new();
    for r in &requests {
        assert_eq!(r["path"], "/v1/chat/completions", "{r:#}");
        for header in ["x-api-key", "anthropic-version", "anthropic-beta"] {
            assert!(r["headers"][header].is_null(), "{header}: {r:#}");
        }
        assert_eq!(r["body"]["model"], "local-llm", "{r:#}");
        assert_eq!(r["body"]["stream"], true, "{r:#}");
        assert_eq!(r["body"]["stream_options"]["include_usage"], true, "{r:#}");
        // All of its tools (its default), Bash and Read among them.
        let tools: Vec<&str> = r["body"]["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["function"]["name"].as_str())
            .collect();
        assert!(
            tools.contains(&"Bash") && tools.contains(&"Read"),
            "{tools:?}"
        );
        first_tools = tools.iter().map(|t| t.to_string()).collect();
        // Its system message in the conversation (the Agent tool's agent
        // types) is folded into the leading one: one system message, first.
        let messages = r["body"]["messages"].as_array().expect("messages");
        let systems: Vec<usize> = messages
            .iter()
            .enumerate()
            .filter(|(_, m)| m["role"] == "system")
            .map(|(i, _)| i)
            .collect();
        assert_eq!(systems, [0], "{r:#}");
    }
    // The second turn: the assistant's tool call and its (error) result,
    // as OpenAI messages with the id the backend gave.
    let last = &requests.last().expect("a request")["body"]["messages"];
    let messages = last.as_array().expect("messages");
    let call = messages
        .iter()
        .find(|m| m["role"] == "assistant")
        .unwrap_or_else(|| panic!("no assistant turn: {last:#}"));
    assert_eq!(call["tool_calls"][0]["id"], "call_1", "{last:#}");
    assert_eq!(
        call["tool_calls"][0]["function"]["name"].as_str(),
        first_tools.first().map(String::as_str),
        "{last:#}"
    );
    let tool_result = messages.last().expect("a message");
    assert_eq!(tool_result["role"], "tool", "{last:#}");
    assert_eq!(tool_result["tool_call_id"], "call_1", "{last:#}");
    assert_eq!(messages[0]["role"], "system", "{last:#}");
}
