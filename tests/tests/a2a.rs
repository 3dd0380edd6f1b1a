//! A2A agents through a real Envoy: agent cards rewritten to point at the
//! gateway, the official a2a-sdk client following them, and OpenAI chat
//! completions translated to A2A and back (the official openai client too),
//! for both model sources and both A2A generations.
//!
//! The agent is tests/python/a2a_agent.py on the official a2a-sdk; a few
//! odd upstream answers come from a canned server here.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use agentroute_tests::{
    json_to_metadata, run_python, A2aAgent, Gateway, GatewayConfig, Response, Shape,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// The filter reads the model from the body (allow_on_headers_stop_iteration).
    Body,
    /// json_to_metadata reads it first; the flag is off (Istio, Envoy Gateway).
    Metadata,
}

const SOURCES: [Source; 2] = [Source::Body, Source::Metadata];

fn gateway_config(source: Source, agents: Value) -> GatewayConfig {
    let from = match source {
        Source::Body => "body",
        Source::Metadata => "metadata",
    };
    let plugin = json!({ "openai": { "model_from": from }, "agents": agents });
    let mut cfg = GatewayConfig::new(plugin.to_string());
    match source {
        Source::Body => cfg.allow_stop_iteration = true,
        Source::Metadata => cfg.filters_before.push(json_to_metadata("agentroute")),
    }
    cfg
}

const JSON: (&str, &str) = ("content-type", "application/json");

fn chat(model: &str, text: &str, stream: bool) -> String {
    json!({ "model": model, "stream": stream, "messages": [ { "role": "user", "content": text } ] })
        .to_string()
}

async fn post_chat(gw: &Gateway, headers: &[(&str, &str)], body: String) -> Response {
    let mut all = vec![JSON];
    all.extend_from_slice(headers);
    tokio::time::timeout(
        Duration::from_secs(15),
        gw.request("POST", "/v1/chat/completions", &all, body),
    )
    .await
    .unwrap_or_else(|_| panic!("chat completion hung:\n{}", gw.log()))
}

fn error_code(r: &Response) -> String {
    r.json()["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The `data:` payloads of an SSE body, `[DONE]` as a string.
fn sse_events(body: &str) -> Vec<Value> {
    body.split("\n\n")
        .filter_map(|e| e.trim().strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap_or_else(|_| json!(d)))
        .collect()
}

/// Content deltas of chat.completion.chunk events.
fn deltas(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

/// Checks the framing of a rewritten or untouched answer: a `content-length`
/// (if any) matches the body.
fn assert_length_right(label: &str, r: &Response) {
    if r.status == 304 {
        assert!(r.body.is_empty(), "{label}: a 304 has no body");
        return;
    }
    if let Some(length) = r.header("content-length") {
        assert_eq!(
            length.parse::<usize>().ok(),
            Some(r.body.len()),
            "{label}: content-length"
        );
    } else {
        assert_eq!(
            r.header("transfer-encoding"),
            Some("chunked"),
            "{label}: neither length nor chunked"
        );
    }
}

// ---------------------------------------------------------------- cards

/// The card's interface URLs: 1.0 `supportedInterfaces[].url`, 0.3 `url`.
fn card_urls(card: &Value) -> (Vec<String>, Option<String>) {
    let interfaces = card["supportedInterfaces"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["url"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    (interfaces, card["url"].as_str().map(str::to_string))
}

/// A card fetched through the gateway, checked for what every rewritten
/// card must be: 200 JSON, right length, no validator of the old body.
async fn rewritten_card(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> Value {
    let r = gw.request("GET", path, headers, "").await;
    let label = format!("{path} {headers:?}");
    assert_eq!(r.status, 200, "{label}: {}", r.text());
    assert_length_right(&label, &r);
    assert!(r.header("etag").is_none(), "{label}: etag kept");
    let card = r.json();
    assert_eq!(
        card["provider"]["url"], "https://example.invalid/agentroute",
        "{label}: other URLs untouched"
    );
    card
}

/// An upstream answering canned responses to card requests, by the query
/// parameter `case`; it says in `x-saw-accept-encoding` whether the request
/// carried one.
async fn spawn_canned() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(canned_answer(stream));
        }
    });
    addr
}

const BIG: usize = 300 * 1024;

async fn canned_answer(mut stream: TcpStream) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let case = head
        .split_whitespace()
        .nth(1)
        .and_then(|target| target.split_once("case="))
        .map_or("card", |(_, c)| c.split('&').next().unwrap_or("card"))
        .to_string();
    let saw = if head.contains("\naccept-encoding:") {
        "yes"
    } else {
        "no"
    };
    let card =
        json!({ "name": "canned", "url": "http://svc:8000/", "preferredTransport": "JSONRPC" });
    let (status, mut headers, body): (&str, Vec<String>, Vec<u8>) = match case.as_str() {
        "html" => (
            "200 OK",
            vec!["content-type: text/html".into()],
            b"<html>not a card</html>".to_vec(),
        ),
        "error" => (
            "503 Service Unavailable",
            vec!["content-type: application/json".into()],
            card.to_string().into_bytes(),
        ),
        "invalid" => (
            "200 OK",
            vec!["content-type: application/json".into()],
            br#"{"url": "http://svc:8000/""#.to_vec(),
        ),
        "gzip" => (
            "200 OK",
            vec![
                "content-type: application/json".into(),
                "content-encoding: gzip".into(),
            ],
            vec![
                0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xab, 0xae, 5, 0, 0x43, 0xbf, 0xa6, 0xa3, 2, 0,
                0, 0,
            ],
        ),
        "notmodified" => ("304 Not Modified", vec![], vec![]),
        "big" | "bigchunked" => {
            let mut big = card.clone();
            big["description"] = json!("x".repeat(BIG));
            (
                "200 OK",
                vec!["content-type: application/json".into()],
                big.to_string().into_bytes(),
            )
        }
        _ => (
            "200 OK",
            vec!["content-type: application/json; charset=utf-8".into()],
            card.to_string().into_bytes(),
        ),
    };
    headers.push(format!("x-saw-accept-encoding: {saw}"));
    headers.push("etag: W/\"canned\"".into());
    headers.push("connection: close".into());
    let chunked = case == "bigchunked";
    if chunked {
        headers.push("transfer-encoding: chunked".into());
    } else if status != "304 Not Modified" {
        headers.push(format!("content-length: {}", body.len()));
    }
    let mut out = format!("HTTP/1.1 {status}\r\n{}\r\n\r\n", headers.join("\r\n")).into_bytes();
    if chunked {
        for piece in body.chunks(16 * 1024) {
            out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            out.extend_from_slice(piece);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
    } else {
        out.extend_from_slice(&body);
    }
    let _ = stream.write_all(&out).await;
    let _ = stream.shutdown().await;
}

/// Agents for the card tests: `echo` (both generations, its internal URL
/// unreachable from here), `tick` (mounted below `/tock`, exposed as
/// `/tick`), `legacy` (a pure 0.3 card), `signed` (a signed card, once
/// as-is and once with rewrite_signed_cards) and the canned upstream.
struct CardAgents {
    echo: A2aAgent,
    tick: A2aAgent,
    legacy: A2aAgent,
    signed: A2aAgent,
    canned: SocketAddr,
}

impl CardAgents {
    async fn start() -> CardAgents {
        let (echo, tick, legacy, signed, canned) = tokio::join!(
            A2aAgent::start(&["--base-url", "http://echo.prod.svc.cluster.local:8000/"]),
            A2aAgent::start(&["--name", "tick", "--root", "/tock", "--rpc-path", "/rpc"]),
            A2aAgent::start(&["--name", "legacy", "--version", "0.3"]),
            A2aAgent::start(&["--name", "signed", "--signed"]),
            spawn_canned(),
        );
        CardAgents {
            echo,
            tick,
            legacy,
            signed,
            canned,
        }
    }

    fn gateway_config(&self, source: Source) -> GatewayConfig {
        let agents = json!([
            { "name": "echo", "namespace": "prod", "backend": "echo", "protocol": "a2a" },
            { "name": "hosted", "namespace": "prod", "backend": "echo",
              "hosts": ["echo.agents.example.com"] },
            { "name": "tick", "namespace": "prod", "backend": "tick", "protocol": "a2a",
              "prefixes": [ { "prefix": "/tick", "rewrite": "/tock" } ],
              "a2a": { "path": "/tock/rpc" } },
            { "name": "legacy", "namespace": "prod", "backend": "legacy" },
            { "name": "signed", "namespace": "prod", "backend": "signed" },
            { "name": "resigned", "namespace": "prod", "backend": "signed",
              "a2a": { "rewrite_signed_cards": true } },
            { "name": "canned", "namespace": "prod", "backend": "canned" }
        ]);
        gateway_config(source, agents)
            .cluster("echo", self.echo.addr)
            .cluster("tick", self.tick.addr)
            .cluster("legacy", self.legacy.addr)
            .cluster("signed", self.signed.addr)
            .cluster("canned", self.canned)
    }
}

#[tokio::test]
async fn cards_point_at_the_gateway_on_every_layout() {
    let agents = CardAgents::start().await;
    let gw = Gateway::start(agents.gateway_config(Source::Body)).await;
    const CARD: &str = "/.well-known/agent-card.json";
    // (host, path, external prefix the URLs get)
    let cases = [
        ("gateway.test", "/prod/agent/echo", "/prod/agent/echo/"),
        ("gateway.test", "/prod/echo", "/prod/echo/"),
        ("gateway.test", "/echo", "/echo/"),
        ("echo.agents.example.com", "", "/"),
        (
            "gw.example.com:8443",
            "/prod/agent/echo",
            "/prod/agent/echo/",
        ),
    ];
    for (host, prefix, external) in cases {
        for card_path in [
            CARD,
            "/.well-known/agent.json",
            "/.well-known/agent-card.json?x=1&y=/z",
        ] {
            for proto in [None, Some("https"), Some("https, http")] {
                let mut headers = vec![("host", host)];
                if let Some(p) = proto {
                    headers.push(("x-forwarded-proto", p));
                }
                let path = format!("{prefix}{card_path}");
                let card = rewritten_card(&gw, &path, &headers).await;
                let scheme = if proto.is_some() { "https" } else { "http" };
                let want = format!("{scheme}://{host}{external}");
                let (interfaces, url) = card_urls(&card);
                assert_eq!(interfaces, vec![want.clone(), want.clone()], "{host}{path}");
                assert_eq!(url.as_deref(), Some(want.as_str()), "{host}{path}: 0.3 url");
            }
        }
    }
    // An explicit prefix with a rewrite: the agent's root is the rewrite, so
    // http://127.0.0.1:P/tock/rpc becomes /tick/rpc (never /tick/tock/rpc).
    let card = rewritten_card(&gw, &format!("/tick{CARD}?q=/tock"), &[]).await;
    let want = "http://gateway.test/tick/rpc";
    assert_eq!(
        card_urls(&card),
        (vec![want.into(), want.into()], Some(want.into()))
    );
    // A pure 0.3 card: its top-level url.
    let card = rewritten_card(&gw, &format!("/prod/legacy{CARD}"), &[]).await;
    assert_eq!(card["url"], "http://gateway.test/prod/legacy/");
    assert!(card.get("supportedInterfaces").is_none());
    let r = gw.get("/prod/legacy/.well-known/agent.json").await;
    assert_eq!(r.json()["url"], "http://gateway.test/prod/legacy/");

    // A signed card passes byte for byte; rewrite_signed_cards rewrites it.
    let direct = agentroute_tests::send(agents.signed.addr, "GET", CARD, &[], "").await;
    let r = gw.get(&format!("/prod/signed{CARD}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, direct.body, "a signed card passes unchanged");
    assert_length_right("signed", &r);
    let card = rewritten_card(&gw, &format!("/prod/resigned{CARD}"), &[]).await;
    assert_eq!(card["url"], "http://gateway.test/prod/resigned/");
    assert!(
        card["signatures"].is_array(),
        "signatures kept as they were"
    );

    // Requests other than a GET of a card path are not touched.
    let r = gw
        .request("HEAD", &format!("/prod/echo{CARD}"), &[], "")
        .await;
    assert_eq!(r.status, 200);
    let r = gw.get("/prod/canned/.well-known/agent-card.jsonx").await;
    assert_eq!(r.json()["url"], "http://svc:8000/");

    // The canned upstream: the card request reached it without
    // accept-encoding; odd answers pass untouched, with their length and etag.
    let r = gw
        .request(
            "GET",
            &format!("/prod/canned{CARD}"),
            &[("accept-encoding", "gzip, br")],
            "",
        )
        .await;
    assert_eq!(r.header("x-saw-accept-encoding"), Some("no"));
    assert_eq!(r.json()["url"], "http://gateway.test/prod/canned/");
    assert!(r.header("etag").is_none());
    assert_length_right("canned", &r);
    // (case, status, headers untouched too): an answer found unfit only in
    // its body went out with its headers changed already (the body may
    // change, so no length and no validator).
    for (case, status, headers_kept) in [
        ("html", 200, true),
        ("error", 503, true),
        ("gzip", 200, true),
        ("notmodified", 304, true),
        ("big", 200, true),
        ("invalid", 200, false),
        ("bigchunked", 200, false),
    ] {
        let path = format!("/prod/canned{CARD}?case={case}");
        let direct = agentroute_tests::send(agents.canned, "GET", &path[12..], &[], "").await;
        let r = gw
            .request("GET", &path, &[("if-none-match", "W/\"canned\"")], "")
            .await;
        assert_eq!(r.status, status, "{case}");
        assert_eq!(r.body, direct.body, "{case}: passes untouched");
        assert_length_right(case, &r);
        if headers_kept {
            assert_eq!(
                r.header("content-length"),
                direct.header("content-length"),
                "{case}"
            );
            assert_eq!(r.header("etag"), Some("W/\"canned\""), "{case}");
        } else {
            assert!(r.header("etag").is_none(), "{case}");
        }
    }
    assert!(
        !gw.log()
            .contains("] wasm log agentroute agentroute: cannot"),
        "{}",
        gw.log()
    );
}

/// Interfaces the gateway cannot serve at the agent's path never reach the
/// client: an agent whose card advertises a gRPC interface first (its
/// internal `a1.internal:9000`; in the 0.3 fields the main interface) gets
/// a card with only the JSON-RPC interfaces, on the gateway, in both
/// generations; the a2a-sdk client still follows it.
#[tokio::test]
async fn cards_drop_interfaces_the_gateway_cannot_serve() {
    const GRPC: &str = "a1.internal:9000";
    let (both, legacy) = tokio::join!(
        A2aAgent::start(&["--name", "a1", "--grpc-url", GRPC]),
        A2aAgent::start(&["--name", "a1v03", "--version", "0.3", "--grpc-url", GRPC]),
    );
    let agents = json!([
        { "name": "a1", "namespace": "prod", "backend": "a1", "protocol": "a2a" },
        { "name": "a1v03", "namespace": "prod", "backend": "a1v03" }
    ]);
    let gw = Gateway::start(
        gateway_config(Source::Body, agents)
            .cluster("a1", both.addr)
            .cluster("a1v03", legacy.addr),
    )
    .await;
    // (agent, card path, 1.0 interfaces wanted, 0.3 additional interfaces wanted)
    let cases = [
        ("a1", "/.well-known/agent-card.json", 2, 1),
        ("a1", "/.well-known/agent.json", 2, 1),
        ("a1v03", "/.well-known/agent-card.json", 0, 1),
    ];
    for (agent, card_path, supported, additional) in cases {
        let path = format!("/prod/{agent}{card_path}");
        let direct = agentroute_tests::send(
            if agent == "a1" {
                both.addr
            } else {
                legacy.addr
            },
            "GET",
            card_path,
            &[],
            "",
        )
        .await;
        assert!(direct.text().contains(GRPC), "the agent advertises gRPC");
        let r = gw.get(&path).await;
        assert_eq!(r.status, 200, "{path}");
        assert_length_right(&path, &r);
        assert!(!r.text().contains("a1.internal"), "{path}: {}", r.text());
        let card = r.json();
        let gateway = format!("http://gateway.test/prod/{agent}/");
        let interfaces = card["supportedInterfaces"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(interfaces.len(), supported, "{path}: {card}");
        for i in &interfaces {
            assert_eq!(i["url"], gateway.as_str(), "{path}");
            assert_eq!(i["protocolBinding"], "JSONRPC", "{path}");
        }
        // The 0.3 main interface was the gRPC one: the JSON-RPC one takes
        // its place.
        assert_eq!(card["url"], gateway.as_str(), "{path}: {card}");
        assert_eq!(card["preferredTransport"], "JSONRPC", "{path}");
        let extra = card["additionalInterfaces"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(extra.len(), additional, "{path}: {card}");
        for i in &extra {
            assert_eq!(i["url"], gateway.as_str(), "{path}");
        }
    }
    let base = format!("http://{}", gw.addr);
    for (agent, version) in [("a1", "1.0"), ("a1", "0.3"), ("a1v03", "0.3")] {
        let out = run_python(
            "a2a_client.py",
            vec![
                "--gateway".to_string(),
                format!("{base}/prod/{agent}"),
                "--version".into(),
                version.into(),
                "--text".into(),
                "hello".into(),
            ],
        )
        .await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{agent} {version}:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_str(stdout.trim()).expect("client JSON line");
        assert_eq!(
            v["card_url"],
            format!("{base}/prod/{agent}/"),
            "{agent} {version}"
        );
        assert_eq!(v["state"], "TASK_STATE_COMPLETED", "{agent} {version}");
    }
}

/// The official a2a-sdk client, knowing only a gateway URL, reads the card
/// there and sends through the URLs the card gives: both generations,
/// streamed and not, on a layout, an explicit prefix and a pure 0.3 card.
#[tokio::test]
async fn the_a2a_sdk_client_follows_the_rewritten_card() {
    let agents = CardAgents::start().await;
    let gw = Gateway::start(agents.gateway_config(Source::Metadata)).await;
    let base = format!("http://{}", gw.addr);
    // (prefix, version, stream, text, answer, card url)
    let cases = [
        (
            "/prod/agent/echo",
            "1.0",
            false,
            "hello",
            "echo: hello",
            "/prod/agent/echo/",
        ),
        (
            "/prod/agent/echo",
            "1.0",
            true,
            "stream",
            "chunk 1 chunk 2 chunk 3",
            "/prod/agent/echo/",
        ),
        (
            "/prod/echo",
            "0.3",
            false,
            "hello",
            "echo: hello",
            "/prod/echo/",
        ),
        (
            "/echo",
            "0.3",
            true,
            "stream",
            "chunk 1 chunk 2 chunk 3",
            "/echo/",
        ),
        (
            "/tick",
            "1.0",
            true,
            "stream",
            "chunk 1 chunk 2 chunk 3",
            "/tick/rpc",
        ),
        ("/tick", "0.3", false, "hello", "echo: hello", "/tick/rpc"),
        (
            "/prod/legacy",
            "0.3",
            false,
            "hello",
            "echo: hello",
            "/prod/legacy/",
        ),
        (
            "/prod/legacy",
            "0.3",
            true,
            "stream",
            "chunk 1 chunk 2 chunk 3",
            "/prod/legacy/",
        ),
    ];
    let runs = cases.iter().map(|&(prefix, version, stream, text, _, _)| {
        let mut args = vec![
            "--gateway".to_string(),
            format!("{base}{prefix}"),
            "--version".into(),
            version.into(),
            "--text".into(),
            text.into(),
            "--context-id".into(),
            "ctx-7".into(),
        ];
        if stream {
            args.push("--stream".into());
        }
        run_python("a2a_client.py", args)
    });
    let outputs = futures_util::future::join_all(runs).await;
    for (out, (prefix, version, stream, _, answer, card_url)) in outputs.iter().zip(cases) {
        let label = format!("{prefix} {version} stream={stream}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{label}:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_str(stdout.trim()).expect("client JSON line");
        assert_eq!(v["card_url"], format!("{base}{card_url}"), "{label}");
        assert_eq!(v["state"], "TASK_STATE_COMPLETED", "{label}");
        assert_eq!(v["text"], format!("{answer} [context ctx-7]"), "{label}");
        assert_eq!(v["context_id"], "ctx-7", "{label}");
        if stream {
            assert_eq!(v["events"], 6, "{label}");
        }
    }
}

// ---------------------------------------------------------------- chat

/// One agent, exposed as four models: two per A2A generation.
fn chat_agents() -> Value {
    json!([
        { "name": "echo", "namespace": "prod", "backend": "echo", "protocol": "a2a",
          "models": ["echo-v1"] },
        { "name": "echo03", "namespace": "prod", "backend": "echo", "protocol": "a2a",
          "models": ["echo-legacy"], "a2a": { "version": "0.3" } },
        { "name": "strict", "namespace": "prod", "backend": "strict", "protocol": "a2a",
          "a2a": { "version": "0.3" } },
        { "name": "tick", "namespace": "prod", "backend": "tick", "protocol": "a2a",
          "prefixes": [ { "prefix": "/tick", "rewrite": "/tock" } ],
          "a2a": { "path": "/tock/rpc" } },
        { "name": "down", "namespace": "prod", "backend": "down", "protocol": "a2a" },
        { "name": "plain", "namespace": "prod", "backend": "echo" }
    ])
}

struct ChatAgents {
    echo: A2aAgent,
    /// Only A2A 1.0: the 0.3 methods are a JSON-RPC error there.
    strict: A2aAgent,
    tick: A2aAgent,
    down: SocketAddr,
}

impl ChatAgents {
    async fn start() -> ChatAgents {
        let (echo, strict, tick) = tokio::join!(
            A2aAgent::start(&[]),
            A2aAgent::start(&["--name", "strict", "--version", "1.0"]),
            A2aAgent::start(&["--name", "tick", "--root", "/tock", "--rpc-path", "/rpc"]),
        );
        // A port nothing listens on: the agent is down.
        let down = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr")
        };
        ChatAgents {
            echo,
            strict,
            tick,
            down,
        }
    }

    async fn gateway(&self, source: Source) -> Gateway {
        let cfg = gateway_config(source, chat_agents())
            .cluster("echo", self.echo.addr)
            .cluster("strict", self.strict.addr)
            .cluster("tick", self.tick.addr)
            .cluster("down", self.down);
        Gateway::start(cfg).await
    }
}

#[tokio::test]
async fn the_openai_client_chats_with_an_a2a_agent() {
    let agents = ChatAgents::start().await;
    for source in SOURCES {
        let gw = agents.gateway(source).await;
        let label = match source {
            Source::Body => "body",
            Source::Metadata => "metadata",
        };
        let out = run_python(
            "openai_a2a_client.py",
            vec![
                format!("http://{}/v1", gw.addr),
                "--source".into(),
                label.into(),
            ],
        )
        .await;
        assert!(
            out.status.success(),
            "{label}:\n{}\n{}\nEnvoy:\n{}\nagent:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            gw.log(),
            agents.echo.log()
        );
    }
}

#[tokio::test]
async fn chats_are_translated_for_both_generations_and_model_sources() {
    let agents = ChatAgents::start().await;
    for source in SOURCES {
        let gw = agents.gateway(source).await;
        // What the agent received: the A2A request, not the OpenAI one.
        for (model, version, name) in [
            ("prod/echo", "1.0", "echo"),
            ("echo-legacy", "0.3", "echo03"),
        ] {
            let r = post_chat(
                &gw,
                &[("x-conversation-id", "c-1"), ("accept-encoding", "gzip")],
                chat(model, "headers please", false),
            )
            .await;
            assert_eq!(r.status, 200, "{source:?} {model}: {}", r.text());
            assert_length_right(model, &r);
            let v = r.json();
            assert_eq!(v["object"], "chat.completion");
            assert_eq!(v["model"], model);
            let seen: Value = serde_json::from_str(
                v["choices"][0]["message"]["content"]
                    .as_str()
                    .expect("content"),
            )
            .expect("the agent's header report");
            assert_eq!(seen["a2a-version"], version, "{source:?} {model}: {seen}");
            assert_eq!(seen["content-type"], "application/json");
            assert!(seen.get("accept-encoding").is_none(), "{seen}");
            assert_eq!(seen["x-agent-name"], name, "{seen}");
        }
        // a2a.path: the tick agent's endpoint is /tock/rpc.
        let r = post_chat(&gw, &[], chat("prod/tick", "hello", false)).await;
        assert_eq!(r.status, 200, "{source:?}: {}", r.text());
        assert_eq!(r.json()["choices"][0]["message"]["content"], "echo: hello");
        // Several user turns since the last assistant turn become parts.
        let body = json!({ "model": "prod/echo", "messages": [
            { "role": "user", "content": "old" },
            { "role": "assistant", "content": "answered" },
            { "role": "system", "content": "be brief" },
            { "role": "user", "content": "one" },
            { "role": "user", "content": [ { "type": "text", "text": "two" } ] }
        ] });
        let r = post_chat(&gw, &[], body.to_string()).await;
        assert_eq!(
            r.json()["choices"][0]["message"]["content"],
            "echo: one\ntwo",
            "{source:?}"
        );
        // Nothing to send: 400 before the agent is asked.
        let body = json!({ "model": "prod/echo", "messages": [ { "role": "assistant", "content": "x" } ] });
        let r = post_chat(&gw, &[], body.to_string()).await;
        assert_eq!(r.status, 400, "{source:?}: {}", r.text());
        // Only chat completions are translated.
        let r = gw
            .request(
                "POST",
                "/v1/embeddings",
                &[JSON],
                r#"{"model":"prod/echo","input":"x"}"#,
            )
            .await;
        assert_eq!(
            (r.status, error_code(&r).as_str()),
            (400, "unsupported_endpoint")
        );
        // GET /v1/models lists the a2a entries.
        let models = gw.get("/v1/models").await.json();
        let ids: Vec<&str> = models["data"]
            .as_array()
            .expect("data")
            .iter()
            .filter_map(|m| m["id"].as_str())
            .collect();
        for id in [
            "prod/echo",
            "echo-v1",
            "prod/echo03",
            "echo-legacy",
            "prod/tick",
        ] {
            assert!(ids.contains(&id), "{id} in {ids:?}");
        }
    }
}

/// Upstream errors become OpenAI errors: with the body model source the
/// status fits; with metadata it is the agent's (see the README).
#[tokio::test]
async fn agent_failures_become_openai_errors() {
    let agents = ChatAgents::start().await;
    for source in SOURCES {
        let gw = agents.gateway(source).await;
        // (model, text, status in body mode, status in metadata mode, code)
        let cases = [
            ("prod/echo", "fail now", 502, 200, "agent_task_failed"),
            ("prod/echo03", "fail now", 502, 200, "agent_task_failed"),
            (
                "prod/echo",
                "input please",
                422,
                200,
                "agent_input_required",
            ),
            ("prod/echo", "crash now", 502, 200, "agent_error"),
            // A 0.3 method at an agent that speaks only 1.0: JSON-RPC -32601.
            ("prod/strict", "hello", 502, 200, "agent_error"),
            // Nothing listens: Envoy's own 503.
            ("prod/down", "hello", 502, 503, "agent_error"),
        ];
        for (model, text, body_status, metadata_status, code) in cases {
            let label = format!("{source:?} {model} {text:?}");
            let r = post_chat(&gw, &[], chat(model, text, false)).await;
            let want = match source {
                Source::Body => body_status,
                Source::Metadata => metadata_status,
            };
            assert_eq!(r.status, want, "{label}: {}", r.text());
            assert_eq!(
                r.header("content-type"),
                Some("application/json"),
                "{label}"
            );
            assert_length_right(&label, &r);
            assert_eq!(error_code(&r), code, "{label}: {}", r.text());
            if model == "prod/strict" {
                assert!(r.text().contains("-32601"), "{label}: {}", r.text());
            }
            // Streamed: an error before the stream began comes as OpenAI
            // sends it, a JSON error with its status, when the status can
            // still change (body mode); else, and for an error within the
            // stream, as an error event, then [DONE].
            let r = post_chat(&gw, &[], chat(model, text, true)).await;
            let before_stream = matches!(model, "prod/strict" | "prod/down");
            if before_stream && source == Source::Body {
                assert_eq!(r.status, 502, "{label} streamed: {}", r.text());
                assert_eq!(r.header("content-type"), Some("application/json"));
                assert_length_right(&label, &r);
                assert_eq!(error_code(&r), code, "{label} streamed");
                continue;
            }
            assert_eq!(
                r.header("content-type"),
                Some("text/event-stream"),
                "{label}"
            );
            let events = sse_events(&r.text());
            assert_eq!(
                events.last(),
                Some(&json!("[DONE]")),
                "{label}: {}",
                r.text()
            );
            let error = &events[events.len() - 2]["error"];
            assert_eq!(error["code"], code, "{label}: {}", r.text());
        }
    }
}

/// A streamed answer leaves chunk by chunk as the agent sends it, never
/// buffered whole.
#[tokio::test]
async fn streamed_answers_are_not_buffered() {
    let agent = A2aAgent::start(&["--stream-delay", "0.3"]).await;
    for source in SOURCES {
        let agents =
            json!([{ "name": "echo", "namespace": "prod", "backend": "echo", "protocol": "a2a" }]);
        let cfg = gateway_config(source, agents).cluster("echo", agent.addr);
        let gw = Gateway::start(cfg).await;
        let frames = stream_frames(gw.addr, &chat("prod/echo", "stream please", true)).await;
        let text: String = frames
            .iter()
            .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
            .collect();
        let events = sse_events(&text);
        assert_eq!(
            deltas(&events),
            ["chunk 1 ", "chunk 2 ", "chunk 3"],
            "{source:?}"
        );
        let at = |needle: &str| {
            frames
                .iter()
                .find(|(_, b)| String::from_utf8_lossy(b).contains(needle))
                .map(|(t, _)| *t)
                .unwrap_or_else(|| panic!("{needle} not seen"))
        };
        let (first, last) = (at("chunk 1"), at("[DONE]"));
        assert!(
            last.saturating_sub(first) >= Duration::from_millis(450),
            "{source:?}: chunk 1 at {first:?}, [DONE] at {last:?}"
        );
    }
}

/// POSTs a chat completion and returns the response body's frames with the
/// time each arrived.
async fn stream_frames(addr: SocketAddr, body: &str) -> Vec<(Duration, Bytes)> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method("POST")
        .uri("/v1/chat/completions")
        .header("host", "gateway.test")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
        .expect("request");
    let started = Instant::now();
    let resp = sender.send_request(req).await.expect("send");
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut frames = Vec::new();
    while let Some(frame) = tokio::time::timeout(Duration::from_secs(15), body.frame())
        .await
        .expect("stream stalled")
    {
        if let Ok(data) = frame.expect("frame").into_data() {
            frames.push((started.elapsed(), data));
        }
    }
    frames
}

/// The shapes Istio and Envoy Gateway generate (model from metadata, the
/// flag off) translate too.
#[tokio::test]
async fn translation_works_in_istio_and_envoy_gateway_shapes() {
    let agent = A2aAgent::start(&[]).await;
    for shape in [Shape::Istio, Shape::EnvoyGateway] {
        let agents =
            json!([{ "name": "echo", "namespace": "prod", "backend": "echo", "protocol": "a2a" }]);
        let cfg = gateway_config(Source::Metadata, agents)
            .cluster("echo", agent.addr)
            .shape(shape);
        let gw = Gateway::start(cfg).await;
        let r = post_chat(&gw, &[], chat("prod/echo", "hello", false)).await;
        assert_eq!(r.status, 200, "{shape:?}: {}", r.text());
        assert_eq!(r.json()["choices"][0]["message"]["content"], "echo: hello");
        let r = post_chat(&gw, &[], chat("prod/echo", "stream", true)).await;
        assert_eq!(
            deltas(&sse_events(&r.text())),
            ["chunk 1 ", "chunk 2 ", "chunk 3"]
        );
        let card = rewritten_card(&gw, "/prod/echo/.well-known/agent-card.json", &[]).await;
        assert_eq!(card["url"], "http://gateway.test/prod/echo/", "{shape:?}");
    }
}

/// How a chat completion came back: its status, the content (a whole
/// answer's, or a stream's deltas), and the error code if it failed.
#[derive(Debug)]
struct Answered {
    status: u16,
    deltas: Vec<String>,
    /// `stop`, or the error's code.
    end: String,
}

async fn answered(gw: &Gateway, model: &str, text: &str, stream: bool) -> Answered {
    let r = post_chat(gw, &[], chat(model, text, stream)).await;
    let label = format!("{model} {text:?} stream={stream}");
    if !stream || r.header("content-type") == Some("application/json") {
        assert_length_right(&label, &r);
        let v = r.json();
        return match v["choices"][0]["message"]["content"].as_str() {
            Some(content) => Answered {
                status: r.status,
                deltas: vec![content.to_string()],
                end: v["choices"][0]["finish_reason"]
                    .as_str()
                    .unwrap_or("?")
                    .into(),
            },
            None => Answered {
                status: r.status,
                deltas: vec![],
                end: error_code(&r),
            },
        };
    }
    let events = sse_events(&r.text());
    assert_eq!(
        events.last(),
        Some(&json!("[DONE]")),
        "{label}: {}",
        r.text()
    );
    assert_eq!(
        events.iter().filter(|e| **e == json!("[DONE]")).count(),
        1,
        "{label}: one [DONE]"
    );
    let last = &events[events.len() - 2];
    let end = match last["error"]["code"].as_str() {
        Some(code) => code.to_string(),
        None => last["choices"][0]["finish_reason"]
            .as_str()
            .unwrap_or("?")
            .to_string(),
    };
    Answered {
        status: r.status,
        deltas: deltas(&events),
        end,
    }
}

/// Every answer shape of the A2A test agent (its official a2a-sdk, and
/// hand-made answers for what the SDK does not send) reads alike streamed
/// and whole, in both generations and with both model sources: a task
/// event carrying its artifacts, replacements and appends, artifacts in
/// turn, events spread over several `data:` lines with every line end,
/// `"error": null`, tasks that do not finish; and a replacement that takes
/// back streamed text.
#[tokio::test]
async fn every_answer_shape_reads_alike_streamed_and_whole() {
    let agents = ChatAgents::start().await;
    // (text, the content, the deltas a stream sends) for answers, and
    // (text, code, deltas before the error) for failures.
    let answers: [(&str, &str, &[&str]); 5] = [
        ("task", "42", &["42"]),
        ("replace", "The answer is 42", &["The answer", " is", " 42"]),
        (
            "interleave",
            "alpha omega and beta",
            &["alpha ", "omega and beta"],
        ),
        ("multiline", "multi-line answer", &["multi-line ", "answer"]),
        ("nullerror", "no error here", &["no error here"]),
    ];
    let failures: [(&str, &str, &[&str]); 3] = [
        ("working", "agent_task_incomplete", &[]),
        ("submitted", "agent_task_incomplete", &[]),
        // Streamed only: whole, the task's final text is the answer.
        ("rewrite", "agent_answer_rewritten", &["first draft"]),
    ];
    for source in SOURCES {
        let gw = agents.gateway(source).await;
        for model in ["prod/echo", "prod/echo03"] {
            for (text, content, streamed) in answers {
                let label = format!("{source:?} {model} {text}");
                let whole = answered(&gw, model, text, false).await;
                assert_eq!(
                    (whole.status, whole.deltas.concat(), whole.end.as_str()),
                    (200, content.to_string(), "stop"),
                    "{label}"
                );
                let stream = answered(&gw, model, text, true).await;
                assert_eq!(
                    (stream.status, stream.deltas, stream.end.as_str()),
                    (
                        200,
                        streamed.iter().map(|s| s.to_string()).collect(),
                        "stop"
                    ),
                    "{label} streamed"
                );
            }
            for (text, code, streamed) in failures {
                let label = format!("{source:?} {model} {text}");
                let whole = answered(&gw, model, text, false).await;
                if text == "rewrite" {
                    assert_eq!(whole.deltas.concat(), "second draft", "{label}");
                } else {
                    // With the body source the status fits; with metadata
                    // it is the agent's (see the README).
                    let status = if source == Source::Body { 502 } else { 200 };
                    assert_eq!(
                        (whole.status, whole.end.as_str()),
                        (status, code),
                        "{label}"
                    );
                }
                let stream = answered(&gw, model, text, true).await;
                assert_eq!(
                    (stream.status, stream.deltas, stream.end.as_str()),
                    (200, streamed.iter().map(|s| s.to_string()).collect(), code),
                    "{label} streamed"
                );
            }
        }
        // The status message's words come with an unfinished task.
        let r = post_chat(&gw, &[], chat("prod/echo", "working", true)).await;
        assert!(r.text().contains("still thinking"), "{}", r.text());
        let r = post_chat(&gw, &[], chat("prod/echo03", "submitted", false)).await;
        assert!(r.text().contains("queued"), "{}", r.text());
    }
}

// ------------------------------------------------------- stream memory

/// The unfinished line each slow stream holds.
const LONG_LINE: usize = 900 * 1024;

/// How much a VM may grow with the thirty streams: the 8 MiB they hold
/// together, the 1 MiB one may reach within a callback before it is cut,
/// translating one event of up to 1 MiB (its buffer, the parsed JSON and
/// serde's scratch, the answer text, the chunk out: about 6 MiB), and the
/// allocator's slack with blocks of many sizes freed in turn. Measured:
/// about 15 MiB; without the budget the same run grows by about 44 MB.
const BOUND: u64 = 24 * 1024 * 1024;

/// An A2A agent whose streams send most of one long event, then wait for
/// `release` before the rest and the task's end: many at once hold long
/// unfinished lines in the filter. `started` counts the streams that sent
/// their long part.
async fn spawn_slow_streams(
    release: std::sync::Arc<std::sync::atomic::AtomicBool>,
    started: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> SocketAddr {
    use std::sync::atomic::Ordering;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (release, started) = (release.clone(), started.clone());
            tokio::spawn(async move {
                // The request: its head, then as many bytes as it says.
                let mut request = Vec::new();
                let mut buf = [0u8; 8192];
                loop {
                    if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let chunk = |bytes: &[u8]| {
                    let mut out = format!("{:x}\r\n", bytes.len()).into_bytes();
                    out.extend_from_slice(bytes);
                    out.extend_from_slice(b"\r\n");
                    out
                };
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                            transfer-encoding: chunked\r\nconnection: close\r\n\r\n";
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let mut long = br#"data: {"result":{"artifactUpdate":{"artifact":{"artifactId":"a","parts":[{"text":""#.to_vec();
                long.extend_from_slice(&vec![b'x'; LONG_LINE]);
                for piece in long.chunks(64 * 1024) {
                    if stream.write_all(&chunk(piece)).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                started.fetch_add(1, Ordering::SeqCst);
                while !release.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let rest = concat!(
                    r#""}]},"lastChunk":true}}}"#,
                    "\n\n",
                    r#"data: {"result":{"statusUpdate":{"status":{"state":"TASK_STATE_COMPLETED"}}}}"#,
                    "\n\n"
                );
                let _ = stream.write_all(&chunk(rest.as_bytes())).await;
                let _ = stream.write_all(b"0\r\n\r\n").await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

async fn vm_memory(gw: &Gateway) -> u64 {
    let r = agentroute_tests::send(
        gw.admin,
        "GET",
        "/stats?filter=agentroute_vm_memory_bytes",
        &[],
        "",
    )
    .await;
    r.text()
        .lines()
        .find_map(|l| l.split_once(": ")?.1.trim().parse().ok())
        .unwrap_or_else(|| panic!("no memory gauge: {}", r.text()))
}

/// Thirty slow streams, each holding a ~900 KiB unfinished line, on one
/// worker: the translated streams of a VM hold at most 8 MiB together. The
/// streams past that end at once with `gateway_memory_exhausted` (counted),
/// the others get their whole answer, every client a well-formed end, and
/// the VM's memory stays bounded.
#[tokio::test]
async fn translated_streams_hold_a_bounded_memory_together() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    const STREAMS: usize = 30;
    let release = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicUsize::new(0));
    let slow = spawn_slow_streams(release.clone(), started.clone()).await;
    let agents =
        json!([{ "name": "slow", "namespace": "prod", "backend": "slow", "protocol": "a2a" }]);
    let mut cfg = gateway_config(Source::Body, agents).cluster("slow", slow);
    cfg.concurrency = 1;
    let gw = Gateway::start(cfg).await;
    // The VM as it is before any stream (the gauge is updated every second).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = vm_memory(&gw).await;

    let requests = futures_util::future::join_all(
        (0..STREAMS).map(|_| answered(&gw, "prod/slow", "a long answer", true)),
    );
    let cut_stat =
        "agentroute_translations_cut_total{namespace=\"prod\",agent=\"slow\",kind=\"agent\"}";
    let control = async {
        let deadline = Instant::now() + Duration::from_secs(10);
        while started.load(Ordering::SeqCst) < STREAMS && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Counters reach Envoy once a second.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let cut_while_held = gw.metric(cut_stat).await;
        release.store(true, Ordering::SeqCst);
        cut_while_held
    };
    let (answers, cut_while_held) = tokio::join!(requests, control);
    assert_eq!(started.load(Ordering::SeqCst), STREAMS);

    let whole = "x".repeat(LONG_LINE);
    let mut cut = 0;
    for a in &answers {
        assert_eq!(a.status, 200);
        match a.end.as_str() {
            "stop" => assert!(a.deltas.concat() == whole, "a whole answer"),
            "gateway_memory_exhausted" => {
                assert!(a.deltas.is_empty());
                cut += 1;
            }
            other => panic!("ended {other}"),
        }
    }
    let kept = STREAMS - cut;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = vm_memory(&gw).await;
    eprintln!("VM memory: {before} bytes before, {after} after ({kept} kept, {cut} cut)");
    // A stream holding a 900 KiB line holds a 1 MiB buffer: eight fit.
    assert!((1..=8).contains(&kept), "{kept} streams kept whole");
    assert_eq!(
        cut_while_held,
        Some(cut as f64),
        "cut while the lines were held"
    );
    gw.wait_metric(cut_stat, cut as f64).await;
    assert!(
        after <= before + BOUND,
        "VM memory grew from {before} to {after} bytes"
    );
}
