//! A hostile run: thousands of requests a fuzzer would send (dot-segments in
//! every spelling, encoded slashes, NULs, backslashes, odd hosts, owned
//! headers spoofed in both spellings, broken OpenAI bodies) through a real
//! Envoy with two workers. Whatever comes back, no dot-segment reaches a
//! backend, the filter answers no 5xx, no spoofed header is honoured, and
//! the plugin never traps (the harness checks the log).

use agentroute::router::has_dot_segment;
use agentroute_tests::{send_raw, spawn_agent, Gateway, GatewayConfig};
use futures_util::StreamExt;
use serde_json::Value;

const CONFIG: &str = r#"{
  "agents": [
    {"name": "chat", "namespace": "prod", "backend": "chat", "hosts": ["chat.example.com", "*.bots.example.com"]},
    {"name": "tools", "namespace": "prod", "kind": "mcp", "backend": "tools",
     "prefixes": [{"prefix": "/tools-api", "rewrite": "/api"}, {"prefix": "/raw", "rewrite": null}]},
    {"name": "llm", "namespace": "models", "kind": "modelapi", "backend": "llm", "models": ["m"],
     "rate_limit": {"requests_per_second": 1000000, "per": "header:x-api-key"}}
  ]
}"#;

/// A small deterministic generator: the run is the same every time.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

const PREFIXES: [&str; 8] = [
    "/prod/agent/chat",
    "/prod/chat",
    "/chat",
    "/tools-api",
    "/raw",
    "/prod/mcp/tools",
    "/models/llm",
    "/nothing",
];
const SEGMENTS: [&str; 18] = [
    "a",
    "..",
    ".",
    "%2e",
    "%2E%2e",
    ".%2e",
    "%2e.",
    "%2f",
    "%2F..",
    "%5c",
    "\\..",
    "%00",
    "..;x",
    ".;",
    "x%2f..%2fy",
    "",
    "...",
    "%252e%252e",
];
const HOSTS: [&str; 5] = [
    "gw.test",
    "chat.example.com",
    "CHAT.example.com:8080",
    "a.bots.example.com",
    "chat.example.com.",
];
const SPOOFS: [&str; 12] = [
    "x-agent-backend: tools",
    "x_agent_backend: tools",
    "x-agent-name: evil",
    "x_agent_name: evil",
    "x-agent-namespace: evil",
    "x-agent_kind: evil",
    "x-forwarded-prefix: /evil",
    "x_forwarded_prefix: /evil",
    "x-envoy-upstream-rq-timeout-ms: 1",
    "x_envoy_upstream_rq_timeout_ms: 1",
    "x-api-key: k1",
    "x-api-key: k2",
];
const BODIES: [&str; 8] = [
    r#"{"model":"m","messages":[]}"#,
    r#"{"model":"nope"}"#,
    r#"{"model":5}"#,
    r#"{"model":"m","model":"m"}"#,
    "{not json",
    "",
    "[1,2]",
    "\u{0}\u{1}",
];

fn status_of(raw: &str) -> u16 {
    raw.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn body_of(raw: &str) -> &str {
    raw.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

#[tokio::test]
async fn a_hostile_run_finds_no_way_through() {
    let mut cfg = GatewayConfig::new(CONFIG).fallback("chat");
    for name in ["chat", "tools", "llm"] {
        cfg = cfg.cluster(name, spawn_agent(name).await);
    }
    cfg.allow_stop_iteration = true;
    let gw = Gateway::start(cfg).await;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let requests: Vec<(String, String, String)> = (0..1200u32)
        .map(|i| {
            let openai = i.is_multiple_of(5);
            let path = if openai {
                rng.pick(&[
                    "/v1/chat/completions",
                    "/chat/completions",
                    "/v1/embeddings",
                ])
                .to_string()
            } else {
                let mut p = rng.pick(&PREFIXES).to_string();
                for _ in 0..(rng.next() % 4) {
                    p.push('/');
                    p.push_str(rng.pick(&SEGMENTS));
                }
                if rng.next().is_multiple_of(4) {
                    p.push_str("?q=/../x");
                }
                p
            };
            let host = rng.pick(&HOSTS).to_string();
            let mut head = format!(
                "{} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n",
                if openai { "POST" } else { "GET" }
            );
            for _ in 0..(rng.next() % 4) {
                head.push_str(rng.pick(&SPOOFS));
                head.push_str("\r\n");
            }
            let body = if openai { rng.pick(&BODIES) } else { "" };
            if openai {
                head.push_str("content-type: application/json\r\n");
            }
            head.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
            (path, host, head)
        })
        .collect();
    // Eight at a time: both workers stay busy, and the run stays short.
    let answers: Vec<String> = futures_util::stream::iter(requests.iter())
        .map(|(_, _, head)| send_raw(gw.addr, head.as_bytes()))
        .buffered(8)
        .collect()
        .await;
    let (mut forwarded, mut refused) = (0, 0);
    for ((path, host, _), raw) in requests.iter().zip(&answers) {
        let status = status_of(raw);
        assert!(status != 0, "no answer to {path} on {host}");
        assert!(status < 500, "{status} for {path} on {host}: {raw}");
        let Ok(echo) = serde_json::from_str::<Value>(body_of(raw)) else {
            refused += 1;
            continue;
        };
        let Some(agent) = echo["agent"].as_str() else {
            refused += 1;
            continue;
        };
        forwarded += 1;
        let upstream = echo["path"].as_str().unwrap_or_default();
        let upstream_path = upstream.split('?').next().unwrap_or_default();
        let matched = echo["headers"].get("x-agent-backend").is_some();
        if matched {
            assert!(
                !has_dot_segment(upstream_path),
                "{path} on {host} reached {agent} as {upstream}"
            );
            assert!(!upstream_path.starts_with("//"), "{upstream}");
            assert_eq!(echo["headers"]["x-agent-backend"], agent, "{path}");
        }
        let headers = echo["headers"].as_object().unwrap();
        for (name, value) in headers {
            let value = value.as_str().unwrap_or_default();
            let dashed = name.replace('_', "-");
            let identity = [
                "x-agent-backend",
                "x-agent-name",
                "x-agent-namespace",
                "x-agent-kind",
            ];
            let per_match = ["x-forwarded-prefix", "x-envoy-upstream-rq-timeout-ms"];
            if !identity.contains(&dashed.as_str()) && !per_match.contains(&dashed.as_str()) {
                continue;
            }
            assert_eq!(name, &dashed, "{name} reached {agent} for {path} on {host}");
            if identity.contains(&dashed.as_str()) || matched {
                assert!(
                    !value.contains("evil") && value != "1",
                    "spoofed {name}: {value} honoured for {path} on {host}"
                );
            }
        }
        if !matched {
            for name in ["x-agent-backend", "x-agent-name"] {
                assert!(
                    !headers.contains_key(name),
                    "{name} on an unmatched request"
                );
            }
        }
    }
    assert!(
        forwarded > 300 && refused > 300,
        "{forwarded} forwarded, {refused} refused"
    );
}
