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

/// The body of a raw HTTP/1.1 answer, chunked transfer coding undone.
fn decoded_body(raw: &str) -> String {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return body.to_string();
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
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

/// An upstream that serves its card the way lenient servers do: the path
/// percent-decoded (uvicorn decodes `agent%2Dcard.json`, even `%2F`), runs
/// of `/` merged, and `Range` honoured with a 206. Its card names its
/// internal address, which must never reach a client in a rewritten card.
async fn spawn_lenient_card_server() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let target = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let path = target.split('?').next().unwrap_or("/");
                let mut decoded = String::new();
                let bytes = path.as_bytes();
                let mut i = 0;
                while i < bytes.len() {
                    let hex = (bytes[i] == b'%')
                        .then(|| path.get(i + 1..i + 3))
                        .flatten()
                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                    match hex {
                        Some(b) => {
                            decoded.push(b as char);
                            i += 3;
                        }
                        None => {
                            decoded.push(bytes[i] as char);
                            i += 1;
                        }
                    }
                }
                while decoded.contains("//") {
                    decoded = decoded.replace("//", "/");
                }
                let card = [
                    "/.well-known/agent-card.json",
                    "/.well-known/agent.json",
                    "/.well-known/agent",
                ]
                .contains(&decoded.as_str());
                let body = if card {
                    r#"{"name":"chat","url":"http://chat.internal:8000/","preferredTransport":"JSONRPC","supportedInterfaces":[{"url":"http://chat.internal:8000/","protocolBinding":"JSONRPC"}]}"#.to_string()
                } else {
                    r#"{"agent":"chat"}"#.to_string()
                };
                let ranged = head.to_ascii_lowercase().contains("\r\nrange: bytes=0-");
                let (status, body) = if ranged {
                    (
                        "206 Partial Content",
                        body[..body.len().min(60)].to_string(),
                    )
                } else {
                    ("200 OK", body)
                };
                let answer = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncache-control: public, max-age=600\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    addr
}

/// Card requests in every spelling and under every kind of Host a client
/// can send: a rewritten card never keeps the agent's internal address,
/// never carries a host the client made up, always varies on the host, and
/// a `Range` request never gets a slice of a card.
#[tokio::test]
async fn hostile_card_requests_neither_leak_nor_poison() {
    let cfg = GatewayConfig::new(
        r#"{"agents":[{"name":"chat","namespace":"prod","backend":"chat","hosts":["chat.example.com"]}]}"#,
    )
    .cluster("chat", spawn_lenient_card_server().await);
    let gw = Gateway::start(cfg).await;
    let prefixes = ["/prod/agent/chat", "/prod/chat", "/chat", ""];
    let spellings = [
        "/.well-known/agent-card.json",
        "//.well-known/agent-card.json",
        "/.well-known//agent.json",
        "/.well-known/agent%2Dcard.json",
        "/.well-known/agent%2dcard.json",
        "/%2Ewell-known/agent.json",
        "/.well-known%2Fagent-card.json",
        "///.well-known/agent",
        "/.well-known/agent-card.json?x=1",
    ];
    let hosts = [
        "gw.test",
        "GW.test:10000",
        "chat.example.com",
        "gw.test@attacker.example",
        "gw.test:80@attacker.example",
        "[::1]:10000",
        "attacker.example#gw.test",
    ];
    let mut rewritten = 0;
    for prefix in prefixes {
        for spelling in spellings {
            for host in hosts {
                for range in ["", "Range: bytes=0-20\r\nIf-Range: \"x\"\r\n"] {
                    let path = format!("{prefix}{spelling}");
                    let raw = send_raw(
                        gw.addr,
                        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{range}Connection: close\r\n\r\n"),
                    )
                    .await;
                    let status = status_of(&raw);
                    let body = decoded_body(&raw);
                    let what = format!("{path} on {host} {range:?}");
                    assert_ne!(status, 0, "{what}: no answer");
                    if !body.starts_with(r#"{"name":"chat""#) {
                        // Not a card: Envoy refused the host, no agent took
                        // it, or the agent answered something else.
                        continue;
                    }
                    assert_ne!(status, 206, "{what}: a slice of a card: {raw}");
                    assert!(
                        !body.contains("attacker"),
                        "{what}: a client's host in a card: {body}"
                    );
                    let plain = !host.contains(['@', '#']);
                    if plain {
                        assert!(
                            !body.contains("chat.internal"),
                            "{what}: the internal address leaked: {body}"
                        );
                        let lower = raw.to_ascii_lowercase();
                        assert!(
                            lower.contains("\r\nvary: host, x-forwarded-proto"),
                            "{what}: {raw}"
                        );
                        rewritten += 1;
                    }
                }
            }
        }
    }
    assert!(rewritten >= 100, "only {rewritten} cards rewritten");
}
