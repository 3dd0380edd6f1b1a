//! In-flight limits through a real Envoy with two workers: a limit holds
//! across the workers; a slot is held from admission until the stream ends,
//! whatever ends it (completion, a client reset in mid-stream or before the
//! answer, an SSE stream the client abandons, an upstream reset before or
//! in mid-answer, the route timeout, a WebSocket closing), proved for each;
//! the 429; per-client limits; a refusal by one limit takes nothing from
//! another; the `agentroute_in_flight` gauge; holds survive configuration
//! swaps and are given back after them; and a VM that traps holding slots
//! has them freed within 30 s.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use agentroute_tests::{
    send, spawn_agent, spawn_scripted, workspace_root, Failure, Gateway, GatewayConfig, Response,
    Shape,
};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const GAUGE: &str = r#"agentroute_in_flight{namespace="prod",agent="slow",kind="agent"}"#;

/// `slow` (demo agent, limit 1, timeout 500 ms), `reset` (an upstream that
/// resets), plus what a test adds.
fn plugin(extra: &[serde_json::Value]) -> String {
    let mut agents = vec![
        json!({ "name": "slow", "namespace": "prod", "backend": "slow", "timeout": "500ms",
                "models": ["slow-model"], "concurrency": { "max_in_flight": 1 } }),
        json!({ "name": "reset", "namespace": "prod", "backend": "reset",
                "concurrency": { "max_in_flight": 1 } }),
    ];
    agents.extend(extra.iter().cloned());
    json!({ "agents": agents }).to_string()
}

/// An upstream that resets: `/before` after 600 ms without answering,
/// `/during` after the headers and a first chunk.
async fn resetting() -> SocketAddr {
    spawn_scripted(|head, mut stream| async move {
        if head.starts_with("GET /during") {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n8\r\ndata: 1\n\r\n")
                .await;
        }
        tokio::time::sleep(Duration::from_millis(600)).await;
        // Dropped with unread bytes pending or mid-body: a reset.
        let _ = stream.set_zero_linger();
    })
    .await
}

async fn config(plugin: String) -> GatewayConfig {
    let mut cfg = GatewayConfig::new(plugin)
        .cluster("slow", spawn_agent("slow").await)
        .cluster("reset", resetting().await);
    cfg.allow_stop_iteration = true;
    cfg
}

async fn gateway(extra: &[serde_json::Value]) -> Gateway {
    Gateway::start(config(plugin(extra)).await).await
}

fn code(r: &Response) -> Option<String> {
    serde_json::from_slice::<serde_json::Value>(&r.body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_string))
}

/// A quick request of `path`: its status and error code.
async fn probe(gw: &Gateway, path: &str) -> (u16, Option<String>) {
    let r = send(gw.addr, "GET", path, &[], "").await;
    (r.status, code(&r))
}

/// The slot of `path`'s entry is held: a request is refused for it.
async fn assert_held(gw: &Gateway, path: &str, label: &str) {
    assert_eq!(
        probe(gw, path).await,
        (429, Some("concurrency_limit_exceeded".to_string())),
        "{label}: the slot should be held"
    );
}

/// The slot comes back (at once, allowing for Envoy to finish the stream).
async fn assert_released(gw: &Gateway, path: &str, label: &str) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let got = probe(gw, path).await;
        if got.0 != 429 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{label}: the slot never came back ({got:?})\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Raw HTTP/1.1 on a fresh connection, left open for the caller.
async fn raw(gw: &Gateway, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(gw.addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nhost: gateway.test\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    stream
}

/// Reads until `needle` appears.
async fn read_until(stream: &mut TcpStream, needle: &str) -> String {
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    while !String::from_utf8_lossy(&seen).contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in {:?}",
            String::from_utf8_lossy(&seen)
        );
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => seen.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn a_limit_holds_across_workers_and_answers_429() {
    let gw = gateway(&[
        json!({ "name": "three", "namespace": "prod", "backend": "slow",
                               "concurrency": { "max_in_flight": 3 } }),
    ])
    .await;
    // Ten at once, each on its own connection (so both workers take some).
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let addr = gw.addr;
            tokio::spawn(
                async move { send(addr, "GET", "/prod/three/x?delay_ms=1500", &[], "").await },
            )
        })
        .collect();
    let mut statuses = Vec::new();
    let mut refused = None;
    for t in tasks {
        let r = t.await.expect("request");
        statuses.push(r.status);
        if r.status == 429 {
            refused = Some(r);
        }
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        7,
        "{statuses:?}"
    );
    let r = refused.expect("a refusal");
    assert_eq!(r.header("retry-after"), Some("1"));
    let v = r.json();
    assert_eq!(
        (v["error"]["code"].as_str(), v["error"]["type"].as_str()),
        (Some("concurrency_limit_exceeded"), Some("requests"))
    );
    assert!(r.header("x-served-by").is_none());
    let limited =
        r#"agentroute_concurrency_limited_total{namespace="prod",agent="three",kind="agent"}"#;
    gw.wait_metric(limited, 7.0).await;
    // All given back: three again.
    let again: Vec<_> = (0..3)
        .map(|_| {
            let addr = gw.addr;
            tokio::spawn(async move {
                send(addr, "GET", "/prod/three/x?delay_ms=300", &[], "")
                    .await
                    .status
            })
        })
        .collect();
    for t in again {
        assert_eq!(t.await.expect("request"), 200);
    }
}

#[tokio::test]
async fn openai_requests_and_per_client_limits() {
    let gw = gateway(&[
        json!({ "name": "keyed", "namespace": "prod", "backend": "slow",
                               "concurrency": { "max_in_flight": 1, "per": "header:x-api-key" } }),
    ])
    .await;
    // Dispatched by model: the same entry, the same slot, an OpenAI error.
    let addr = gw.addr;
    let holder =
        tokio::spawn(async move { send(addr, "GET", "/prod/slow/x?delay_ms=400", &[], "").await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let chat = r#"{"model":"slow-model","messages":[{"role":"user","content":"hi"}]}"#;
    let r = gw.post_json("/v1/chat/completions", chat).await;
    assert_eq!(
        (r.status, code(&r).as_deref()),
        (429, Some("concurrency_limit_exceeded"))
    );
    assert!(r.json()["error"]["message"].is_string(), "OpenAI's shape");
    assert_eq!(holder.await.expect("holder").status, 200);
    assert_eq!(gw.post_json("/v1/chat/completions", chat).await.status, 200);

    // Per client: each key its own slot.
    let key = |k: &'static str| vec![("x-api-key", k)];
    let hold = |k: &'static str| {
        let addr = gw.addr;
        tokio::spawn(
            async move { send(addr, "GET", "/prod/keyed/x?delay_ms=600", &key(k), "").await },
        )
    };
    let a = hold("key-a");
    tokio::time::sleep(Duration::from_millis(150)).await;
    let other = gw.request("GET", "/prod/keyed/x", &key("key-b"), "").await;
    assert_eq!(other.status, 200, "another client has its own slot");
    let same = gw.request("GET", "/prod/keyed/x", &key("key-a"), "").await;
    assert_eq!(
        (same.status, code(&same).as_deref()),
        (429, Some("concurrency_limit_exceeded"))
    );
    assert_eq!(a.await.expect("holder").status, 200);
    assert_eq!(
        gw.request("GET", "/prod/keyed/x", &key("key-a"), "")
            .await
            .status,
        200
    );
}

/// Every way a stream ends gives its slot back: each case holds the one
/// slot of its entry, shows it held (a request on a fresh connection,
/// either worker, is refused), ends the stream its way, and shows the slot
/// back.
#[tokio::test]
async fn a_slot_is_held_until_the_stream_ends_whatever_ends_it() {
    let gw = gateway(&[]).await;
    let slow = "/prod/agent/slow/x";

    // Completed.
    let addr = gw.addr;
    let done =
        tokio::spawn(
            async move { send(addr, "GET", "/prod/agent/slow/x?delay_ms=400", &[], "").await },
        );
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_held(&gw, slow, "completion").await;
    assert_eq!(done.await.expect("request").status, 200);
    assert_released(&gw, slow, "completion").await;

    // The client resets before the answer.
    let stream = raw(&gw, "/prod/agent/slow/x?delay_ms=5000").await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_held(&gw, slow, "client reset before the answer").await;
    let _ = stream.set_zero_linger();
    drop(stream);
    assert_released(&gw, slow, "client reset before the answer").await;

    // The client abandons an SSE stream in mid-answer (no timeout applies
    // to it once it streams: 1,000 events 100 ms apart).
    let mut stream = raw(&gw, "/prod/agent/slow/sse?chunks=1000&interval_ms=100").await;
    read_until(&mut stream, "data: {\"n\":1}").await;
    assert_held(&gw, slow, "SSE in mid-stream").await;
    drop(stream);
    assert_released(&gw, slow, "abandoned SSE").await;

    // The route timeout (500 ms) ends it: 504.
    let addr = gw.addr;
    let timed_out = tokio::spawn(async move {
        send(addr, "GET", "/prod/agent/slow/x?delay_ms=3000", &[], "").await
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_held(&gw, slow, "before the timeout").await;
    assert_eq!(timed_out.await.expect("request").status, 504);
    assert_released(&gw, slow, "route timeout").await;

    // The upstream resets before answering (503) ...
    let reset = "/prod/agent/reset";
    let addr = gw.addr;
    let before =
        tokio::spawn(async move { send(addr, "GET", "/prod/agent/reset/before", &[], "").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_held(
        &gw,
        &format!("{reset}/probe"),
        "upstream reset before the answer",
    )
    .await;
    assert_eq!(before.await.expect("request").status, 503);
    // ... and in mid-answer (the client's stream is cut).
    let mut stream = raw(&gw, "/prod/agent/reset/during").await;
    read_until(&mut stream, "data: 1").await;
    assert_held(
        &gw,
        &format!("{reset}/probe"),
        "upstream reset in mid-answer",
    )
    .await;
    let rest = read_until(&mut stream, "never").await;
    assert!(
        !rest.contains("0\r\n\r\n"),
        "the stream was cut, not ended: {rest:?}"
    );
    // The probes above reached the resetting upstream too: wait them out.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut got = 0;
    while Instant::now() < deadline {
        // `/before` waits 600 ms and resets: a 503 (not a 429) says the
        // slot was free for it.
        got = probe(&gw, "/prod/agent/reset/before").await.0;
        if got == 503 {
            break;
        }
    }
    assert_eq!(got, 503, "upstream reset: the slot never came back");

    // A WebSocket holds its slot while open and gives it back on close.
    let stream = TcpStream::connect(gw.addr).await.expect("connect");
    let (mut ws, resp) =
        tokio_tungstenite::client_async("ws://gateway.test/prod/agent/slow/ws", stream)
            .await
            .expect("websocket upgrade");
    assert_eq!(resp.status().as_u16(), 101);
    let _ = ws.next().await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_held(&gw, slow, "open WebSocket (past the request timeout)").await;
    ws.close(None).await.expect("close");
    drop(ws);
    assert_released(&gw, slow, "WebSocket closed").await;

    // Nothing left held: the gauge says so.
    gw.wait_metric(GAUGE, 0.0).await;
}

#[tokio::test]
async fn the_gauge_counts_across_workers() {
    let gw = gateway(&[
        json!({ "name": "wide", "namespace": "prod", "backend": "slow",
                               "concurrency": { "max_in_flight": 10 } }),
    ])
    .await;
    let gauge = r#"agentroute_in_flight{namespace="prod",agent="wide",kind="agent"}"#;
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let addr = gw.addr;
            tokio::spawn(async move {
                send(addr, "GET", "/prod/wide/x?delay_ms=4000", &[], "")
                    .await
                    .status
            })
        })
        .collect();
    gw.wait_metric(gauge, 4.0).await;
    for t in tasks {
        assert_eq!(t.await.expect("request"), 200);
    }
    gw.wait_metric(gauge, 0.0).await;
}

/// A refusal by one limit takes nothing from another: requests refused by
/// the in-flight limit keep their client's request token and token budget;
/// a request refused by its rate limit holds no slot.
#[tokio::test]
async fn limits_do_not_spend_each_other() {
    let gw = gateway(&[
        json!({ "name": "mixed", "namespace": "prod", "backend": "slow",
        "concurrency": { "max_in_flight": 1 },
        "rate_limit": { "requests_per_second": 0.001, "burst": 1, "tokens_per_minute": 1000,
                        "per": "header:x-api-key" } }),
    ])
    .await;
    let path = "/prod/mixed/x";
    let as_key = |k: &'static str| vec![("x-api-key", k)];
    let addr = gw.addr;
    let b = tokio::spawn(async move {
        send(addr, "GET", "/prod/mixed/x?delay_ms=800", &as_key("b"), "").await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..5 {
        let r = gw.request("GET", path, &as_key("a"), "").await;
        assert_eq!(
            (r.status, code(&r).as_deref()),
            (429, Some("concurrency_limit_exceeded"))
        );
    }
    assert_eq!(b.await.expect("b").status, 200);
    // a's token and budget are whole: admitted once, then rate-limited.
    let r = gw.request("GET", path, &as_key("a"), "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = gw.request("GET", path, &as_key("a"), "").await;
    assert_eq!(
        (r.status, code(&r).as_deref()),
        (429, Some("rate_limit_exceeded"))
    );
    // ... and that refusal holds no slot.
    assert_eq!(gw.request("GET", path, &as_key("c"), "").await.status, 200);
    gw.wait_metric(
        r#"agentroute_in_flight{namespace="prod",agent="mixed",kind="agent"}"#,
        0.0,
    )
    .await;
}

/// Holds survive configuration swaps (ECDS) and still count under the new
/// configuration; streams of the old one give their slots back when they
/// end; a changed limit applies to what is held.
#[tokio::test]
async fn holds_survive_configuration_swaps() {
    let cfg = config(plugin(&[])).await.shape(Shape::Ecds);
    let mut gw = Gateway::start(cfg).await;
    let swap = |n: u32, max: u32| {
        json!({ "agents": [
            { "name": "slow", "namespace": "prod", "backend": "slow", "timeout": "0s",
              "concurrency": { "max_in_flight": max } },
            { "name": format!("m{n}"), "namespace": "prod", "backend": "slow" }
        ] })
        .to_string()
    };
    let until = |gw: &Gateway, path: String| {
        let addr = gw.addr;
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut ok = 0;
            while ok < 3 {
                assert!(Instant::now() < deadline, "{path} never routed");
                ok = if send(addr, "GET", &path, &[], "").await.status == 200 {
                    ok + 1
                } else {
                    0
                };
            }
        }
    };
    // Two long SSE streams under a limit of 2 (configuration 1).
    gw.update_plugin_config(&swap(1, 2));
    until(&gw, "/prod/m1/x".into()).await;
    let mut a = raw(&gw, "/prod/agent/slow/sse?chunks=100&interval_ms=100").await;
    let mut b = raw(&gw, "/prod/agent/slow/sse?chunks=100&interval_ms=100").await;
    read_until(&mut a, "data: {\"n\":0}").await;
    read_until(&mut b, "data: {\"n\":0}").await;
    assert_held(&gw, "/prod/slow/x", "two of two").await;
    // Configuration 2, same limit: the old streams still count.
    gw.update_plugin_config(&swap(2, 2));
    until(&gw, "/prod/m2/x".into()).await;
    assert_held(&gw, "/prod/slow/x", "after a swap").await;
    // Configuration 3 raises the limit to 3: one more, not three.
    gw.update_plugin_config(&swap(3, 3));
    until(&gw, "/prod/m3/x".into()).await;
    let mut c = raw(&gw, "/prod/agent/slow/sse?chunks=100&interval_ms=100").await;
    read_until(&mut c, "data: {\"n\":0}").await;
    assert_held(&gw, "/prod/slow/x", "three of three").await;
    // Old and new streams end: every slot back.
    drop(a);
    drop(b);
    drop(c);
    gw.wait_metric(GAUGE, 0.0).await;
    for _ in 0..3 {
        assert_eq!(probe(&gw, "/prod/slow/x").await.0, 200);
    }
}

/// The plugin built with `fault-injection` (a test build: a request with
/// `x-agentroute-trap` traps the VM).
fn trapping_build() -> std::path::PathBuf {
    let module =
        workspace_root().join("target/fault-injection/wasm32-wasip1/release/agentroute.wasm");
    assert!(
        module.exists(),
        "{} is missing: run `make build-test-filters` (make test does)",
        module.display()
    );
    module
}

/// One HTTP/2 connection: its streams are all served by one worker, so the
/// trap kills the VM that holds them.
async fn h2(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    sender
}

fn h2_get(path: &str, headers: &[(&str, &str)]) -> hyper::Request<Full<Bytes>> {
    let mut req = hyper::Request::builder().uri(format!("http://gateway.test{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(Full::new(Bytes::new())).expect("request")
}

#[tokio::test]
async fn a_trapped_vms_holds_are_freed_within_30_seconds() {
    // FAIL_RELOAD: the worker whose VM traps gets a fresh one and keeps
    // serving, with the dead VM's rows still in shared data.
    let cfg = config(plugin(&[
        json!({ "name": "two", "namespace": "prod", "backend": "slow",
        "concurrency": { "max_in_flight": 2 } }),
    ]))
    .await
    .wasm(trapping_build())
    .failure(Failure::Policy("FAIL_RELOAD"));
    let mut gw = Gateway::start(cfg).await;
    gw.expect_wasm_failures();
    let mut conn = h2(gw.addr).await;
    // Two long streams hold both slots, on one worker's VM.
    let mut held = Vec::new();
    for _ in 0..2 {
        conn.ready().await.expect("ready");
        let resp = conn
            .send_request(h2_get("/prod/two/sse?chunks=1000&interval_ms=100", &[]))
            .await
            .expect("stream");
        assert_eq!(resp.status(), 200);
        held.push(resp);
    }
    assert_held(&gw, "/prod/two/x", "two streams").await;
    // That VM traps: its streams never get their on_log.
    conn.ready().await.expect("ready");
    let trap = conn
        .send_request(h2_get("/prod/two/x", &[("x-agentroute-trap", "1")]))
        .await;
    let trapped_at = Instant::now();
    assert!(
        trap.map(|r| r.status() == 503).unwrap_or(true),
        "the trap request"
    );
    drop(held);
    drop(conn);
    // Right after, the dead VM's rows still count (fresh for up to 10 s)...
    let early = probe(&gw, "/prod/two/x").await.0;
    // ... and within 30 s they are stale: both slots admit again.
    let freed = loop {
        let elapsed = trapped_at.elapsed();
        assert!(
            elapsed < Duration::from_secs(30),
            "slots of the trapped VM still held after {elapsed:?}"
        );
        let addr = gw.addr;
        let tasks: Vec<_> = (0..2)
            .map(|_| {
                tokio::spawn(async move {
                    send(addr, "GET", "/prod/two/x?delay_ms=300", &[], "")
                        .await
                        .status
                })
            })
            .collect();
        let mut statuses = Vec::new();
        for t in tasks {
            statuses.push(t.await.expect("probe"));
        }
        if statuses == [200, 200] {
            break elapsed;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!("right after the trap: {early}; both slots free again {freed:?} after it");
    assert!(
        early == 429 || early == 503,
        "right after the trap the dead VM's holds count: {early}"
    );
    // The rows went stale (10 s after their last write, at most 2 s
    // before the trap): nobody released them.
    assert!(
        freed >= Duration::from_secs(5),
        "freed too soon to be the staleness rule: {freed:?}"
    );
}
