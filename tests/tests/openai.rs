//! The OpenAI surface through a real Envoy, for both model sources:
//! `body` (the filter buffers the body; needs allow_on_headers_stop_iteration)
//! and `metadata` (Envoy's json_to_metadata reads it first).

use std::time::{Duration, Instant};

use agentroute_demo_agent::fnv1a64;
use agentroute_tests::{
    json_to_metadata, spawn_agent, workspace_root, Gateway, GatewayConfig, Response,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Clone, Copy, Debug)]
enum Source {
    Body,
    Metadata,
}

const SOURCES: [Source; 2] = [Source::Body, Source::Metadata];

fn config(source: Source, max_body_bytes: u64) -> String {
    let from = match source {
        Source::Body => "body",
        Source::Metadata => "metadata",
    };
    format!(
        r#"{{
  "openai": {{ "model_from": "{from}", "max_body_bytes": {max_body_bytes} }},
  "agents": [
    {{ "name": "llm", "namespace": "models", "kind": "modelapi", "backend": "llm", "models": ["gpt-demo"] }},
    {{ "name": "embedder", "namespace": "models", "kind": "modelapi", "backend": "embedder", "models": ["embed-demo"] }},
    {{ "name": "coordinator", "namespace": "prod", "backend": "coordinator" }}
  ]
}}"#
    )
}

async fn gateway_with(source: Source, max_body_bytes: u64) -> Gateway {
    let mut cfg = GatewayConfig::new(config(source, max_body_bytes));
    for name in ["llm", "embedder", "coordinator"] {
        cfg = cfg.cluster(name, spawn_agent(name).await);
    }
    match source {
        Source::Body => cfg.allow_stop_iteration = true,
        Source::Metadata => cfg.filters_before.push(json_to_metadata("agentroute")),
    }
    Gateway::start(cfg).await
}

async fn gateway(source: Source) -> Gateway {
    gateway_with(source, 1_048_576).await
}

const JSON: (&str, &str) = ("content-type", "application/json");

fn chat(model: &str) -> String {
    format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#)
}

fn error_code(r: &Response) -> String {
    let v = r.json();
    assert!(
        v["error"]["message"].is_string() && v["error"].get("type").is_some(),
        "{v}"
    );
    v["error"]["code"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn models_are_listed_locally() {
    for source in SOURCES {
        let gw = gateway(source).await;
        for path in ["/v1/models", "/models"] {
            let r = gw.get(path).await;
            assert_eq!(r.status, 200, "{source:?} {path}");
            assert!(
                r.header("x-served-by").is_none(),
                "no upstream is contacted"
            );
            let v = r.json();
            assert_eq!(v["object"], "list");
            let ids: Vec<&str> = v["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap())
                .collect();
            assert_eq!(ids, ["gpt-demo", "embed-demo", "prod/coordinator"]);
            assert_eq!(v["data"][0]["owned_by"], "models");
            assert_eq!(v["data"][0]["object"], "model");
            assert!(v["data"][0]["created"].is_u64());
        }
        let r = gw.get("/v1/models/prod/coordinator").await;
        assert_eq!(
            (r.status, r.json()["id"].as_str()),
            (200, Some("prod/coordinator"))
        );
        let r = gw.get("/v1/models/nope").await;
        assert_eq!(
            (r.status, error_code(&r).as_str()),
            (404, "model_not_found")
        );
    }
}

#[tokio::test]
async fn body_model_picks_the_backend_and_the_body_arrives_intact() {
    for source in SOURCES {
        let gw = gateway(source).await;
        let cases = [
            ("/v1/chat/completions", chat("gpt-demo"), "llm"),
            ("/chat/completions", chat("gpt-demo"), "llm"),
            (
                "/v1/completions",
                r#"{"prompt":"x","model":"gpt-demo"}"#.to_string(),
                "llm",
            ),
            (
                "/v1/responses",
                r#"{"model":"gpt-demo","input":"x"}"#.to_string(),
                "llm",
            ),
            (
                "/v1/embeddings",
                r#"{"model":"embed-demo","input":"hello"}"#.to_string(),
                "embedder",
            ),
            (
                "/embeddings",
                r#"{"model":"embed-demo","input":"hello"}"#.to_string(),
                "embedder",
            ),
            (
                "/v1/chat/completions",
                chat("prod/coordinator"),
                "coordinator",
            ),
        ];
        for (path, body, backend) in cases {
            // The client's own dispatch header is ignored.
            let r = gw
                .request(
                    "POST",
                    path,
                    &[JSON, ("x-agent-backend", "coordinator")],
                    body.clone(),
                )
                .await;
            assert_eq!(r.status, 200, "{source:?} {path}: {}", r.text());
            assert_eq!(r.header("x-served-by"), Some(backend), "{source:?} {path}");
            assert_eq!(
                r.header("x-request-body-fnv"),
                Some(format!("{:016x}", fnv1a64(body.as_bytes())).as_str())
            );
            let model = r.json()["model"].as_str().map(str::to_string);
            assert!(
                body.contains(&format!("\"{}\"", model.unwrap_or_default())),
                "{source:?} {path}"
            );
        }
    }
}

#[tokio::test]
async fn errors_are_shaped_like_openai() {
    for source in SOURCES {
        let gw = gateway_with(source, 4096).await;
        let post = |headers: Vec<(&'static str, &'static str)>, body: String| {
            let gw = &gw;
            async move {
                gw.request("POST", "/v1/chat/completions", &headers, body)
                    .await
            }
        };
        let cases = [
            (vec![JSON], chat("nope"), 404, "model_not_found"),
            (
                vec![JSON],
                r#"{"messages":[]}"#.to_string(),
                400,
                "missing_model",
            ),
            (
                vec![JSON],
                r#"{"model":""}"#.to_string(),
                400,
                "missing_model",
            ),
            (
                vec![JSON],
                r#"{"model":5}"#.to_string(),
                400,
                "invalid_model",
            ),
            (
                vec![JSON],
                r#"{"model":"gpt-demo","#.to_string(),
                400,
                "invalid_json",
            ),
            (
                vec![("content-type", "text/plain")],
                chat("gpt-demo"),
                415,
                "unsupported_media_type",
            ),
            (
                vec![JSON, ("content-encoding", "gzip")],
                chat("gpt-demo"),
                415,
                "unsupported_content_encoding",
            ),
            (
                vec![JSON],
                format!(r#"{{"model":"gpt-demo","input":"{}"}}"#, "x".repeat(5000)),
                413,
                "request_too_large",
            ),
        ];
        for (headers, body, status, code) in cases {
            let r = post(headers.clone(), body.clone()).await;
            assert_eq!(
                r.status,
                status,
                "{source:?} {headers:?} {:.60}: {}",
                body,
                r.text()
            );
            assert_eq!(error_code(&r), code, "{source:?} {body:.60}: {}", r.text());
            assert!(
                r.header("x-served-by").is_none(),
                "{source:?}: refused requests never reach a backend"
            );
        }
    }
}

#[tokio::test]
async fn agent_paths_route_by_path_without_reading_the_body() {
    for source in SOURCES {
        let gw = gateway(source).await;
        // Invalid JSON would be refused by the filter if it read the body:
        // the backend answers it instead (its own 400).
        let r = gw
            .request(
                "POST",
                "/models/modelapi/llm/v1/chat/completions",
                &[JSON],
                "{not json",
            )
            .await;
        assert_eq!(
            (r.status, r.header("x-served-by")),
            (400, Some("llm")),
            "{source:?}"
        );
    }
}

#[tokio::test]
async fn streamed_responses_flow_chunk_by_chunk() {
    for source in SOURCES {
        let gw = gateway(source).await;
        let body = r#"{"model":"gpt-demo","stream":true,"messages":[]}"#;
        let request = format!(
            "POST /v1/chat/completions?chunks=5&interval_ms=400 HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let mut stream = TcpStream::connect(gw.addr).await.unwrap();
        let started = Instant::now();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut seen = Vec::new();
        let mut first_chunk = None;
        let mut buf = [0u8; 4096];
        loop {
            let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if first_chunk.is_none() && String::from_utf8_lossy(&seen).contains("tok0") {
                first_chunk = Some(started.elapsed());
            }
        }
        let total = started.elapsed();
        let text = String::from_utf8_lossy(&seen);
        assert!(
            text.contains("text/event-stream") && text.contains("data: [DONE]"),
            "{text}"
        );
        let first = first_chunk.expect("first chunk");
        // The upstream takes 5 × 400 ms; the first token must not wait for it.
        assert!(
            first < Duration::from_millis(1000) && total >= Duration::from_millis(1600),
            "{source:?}: first {first:?}, total {total:?}"
        );
    }
}

#[tokio::test]
async fn large_and_chunked_bodies() {
    let gw = gateway(Source::Body).await;
    // 1 MB (under the 1 MiB default limit) dispatches.
    let big = format!(
        r#"{{"model":"gpt-demo","input":"{}"}}"#,
        "y".repeat(1_000_000)
    );
    let r = gw
        .request("POST", "/v1/embeddings", &[JSON], big.clone())
        .await;
    assert_eq!(
        (r.status, r.header("x-request-body-bytes")),
        (200, Some(big.len().to_string().as_str()))
    );

    // A body sent in many small chunks, without content-length.
    let body = chat("gpt-demo") + &" ".repeat(3000);
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    for piece in body.as_bytes().chunks(40) {
        stream
            .write_all(format!("{:x}\r\n", piece.len()).as_bytes())
            .await
            .unwrap();
        stream.write_all(piece).await.unwrap();
        stream.write_all(b"\r\n").await.unwrap();
        stream.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    stream.write_all(b"0\r\n\r\n").await.unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(
        out.contains(&format!(
            "x-request-body-fnv: {:016x}",
            fnv1a64(body.as_bytes())
        )),
        "{out}"
    );

    // A chunked body that ends with trailers still dispatches.
    let body = chat("gpt-demo");
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\nx-checksum: 1\r\n\r\n",
        body.len()
    );
    let out = agentroute_tests::send_raw(gw.addr, request).await;
    assert!(
        out.starts_with("HTTP/1.1 200") && out.contains("x-served-by: llm"),
        "{out}"
    );

    // Chunked and over the limit: the filter's own 413, not a dispatch.
    let gw = gateway_with(Source::Body, 2048).await;
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    // Three 1 KiB chunks pass the 2 KiB limit; the body never ends, so only
    // the filter's limit can answer (and nothing is left unread to reset).
    for _ in 0..3 {
        stream
            .write_all(format!("400\r\n{}\r\n", "z".repeat(1024)).as_bytes())
            .await
            .unwrap();
    }
    let mut out = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut out)).await;
    assert!(
        out.starts_with("HTTP/1.1 413") && out.contains("request_too_large"),
        "{out}"
    );
}

#[tokio::test]
async fn body_mode_without_the_envoy_flag_answers_instead_of_hanging() {
    let mut cfg = GatewayConfig::new(config(Source::Body, 1_048_576));
    cfg = cfg.cluster("llm", spawn_agent("llm").await);
    cfg.allow_stop_iteration = false;
    let gw = Gateway::start(cfg).await;
    let started = Instant::now();
    let r = gw
        .request("POST", "/v1/chat/completions", &[JSON], chat("gpt-demo"))
        .await;
    assert_eq!(
        (r.status, error_code(&r).as_str()),
        (500, "gateway_misconfigured")
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(
        gw.log()
            .contains("set allow_on_headers_stop_iteration: true"),
        "{}",
        gw.log()
    );
}

#[tokio::test]
async fn the_official_openai_client_works_through_the_gateway() {
    let python = workspace_root().join(".venv/bin/python");
    let script = workspace_root().join("tests/python/openai_client.py");
    for source in SOURCES {
        let gw = gateway(source).await;
        let base = format!("http://{}/v1", gw.addr);
        let python = python.clone();
        let script = script.clone();
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(python)
                .arg(script)
                .arg(base)
                .output()
        })
        .await
        .unwrap()
        .expect("run .venv/bin/python (make setup installs the openai package)");
        assert!(
            out.status.success(),
            "{source:?}:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
