//! CORS as a browser sees it: headless Chromium (Debian's `chromium`, which
//! `make setup` installs) loads a page from one origin (a small server
//! here) whose script calls the gateway on another (another port is
//! another origin), driven over the DevTools protocol. Preflight and actual
//! request pairs, simple requests, an origin the policy refuses (the
//! browser refuses the answer, and a refused preflight keeps the actual
//! request from being sent), credentials, the filter's own 429 and 404
//! read by the script with their exposed headers, and a wildcard
//! subdomain (`*.localhost`, which Chromium resolves to loopback).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use agentroute_tests::{send, spawn_agent, spawn_scripted, workspace_root, Gateway, GatewayConfig};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

const CHROMIUM: &str = "/usr/bin/chromium";

/// The official OpenAI JavaScript SDK as npm installs it (`make
/// setup-test`: `npm ci --prefix tests/js`, the version tests/js/package.json
/// pins). It has no dependencies: its ES modules load as they are.
fn openai_sdk() -> PathBuf {
    workspace_root().join("tests/js/node_modules/openai")
}

/// `/sdk`: a page whose module script imports the SDK (an import map names
/// `openai`) and defines `sdkChat(baseURL)`, which makes the calls a
/// browser app makes and returns what it read, as JSON.
const SDK_PAGE: &str = r#"<!doctype html><html><head><title>sdk</title>
<script type="importmap">{ "imports": { "openai": "/openai/index.mjs" } }</script>
<script type="module">
import OpenAI from "openai";
window.sdkChat = async (baseURL) => {
  const seen = [];
  try {
    const client = new OpenAI({ baseURL, apiKey: "sk-browser", organization: "org-demo",
      project: "proj-demo", dangerouslyAllowBrowser: true, maxRetries: 0, timeout: 10000 });
    seen.push("models");
    const models = [];
    for await (const m of client.models.list()) models.push(m.id);
    seen.push("stream");
    const { data: stream, response } = await client.chat.completions.create({ model: "gpt-demo",
      stream: true, messages: [{ role: "user", content: "hi from a page" }] }).withResponse();
    let text = "", chunks = 0;
    for await (const chunk of stream) { chunks++; text += chunk.choices[0]?.delta?.content ?? ""; }
    seen.push("helper");
    const runner = client.chat.completions.stream({ model: "gpt-demo",
      messages: [{ role: "user", content: "again" }] });
    const final = await runner.finalChatCompletion();
    return JSON.stringify({ ok: true, models, chunks, text, helper: final.choices[0].message.content,
      model: final.model, contentType: response.headers.get("content-type") });
  } catch (e) {
    return JSON.stringify({ ok: false, at: seen.at(-1), error: String(e) });
  }
};
window.sdkReady = true;
</script></head><body>sdk</body></html>"#;

/// The page: `/sdk` ([`SDK_PAGE`]), `/openai/...` the SDK's files, any
/// other path a blank document, from which the tests' scripts call the
/// gateway.
async fn page_server() -> SocketAddr {
    spawn_scripted(|head, mut stream| async move {
        let path = head.split(' ').nth(1).unwrap_or("/").to_string();
        let (status, kind, body) = if path == "/sdk" {
            ("200 OK", "text/html", SDK_PAGE.as_bytes().to_vec())
        } else if let Some(file) = path.strip_prefix("/openai/") {
            let file = (!file.split('/').any(|p| p == ".." || p.is_empty()))
                .then(|| std::fs::read(openai_sdk().join(file)).ok())
                .flatten();
            match file {
                Some(js) => ("200 OK", "text/javascript", js),
                None => ("404 Not Found", "text/plain", b"no such file".to_vec()),
            }
        } else {
            let page = "<!doctype html><html><head><title>cors</title></head><body>page</body></html>";
            ("200 OK", "text/html", page.as_bytes().to_vec())
        };
        let head = format!(
            "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(head.as_bytes()).await;
        let _ = stream.write_all(&body).await;
    })
    .await
}

/// Headless Chromium with a fresh profile; killed on drop.
struct Browser {
    child: tokio::process::Child,
    _profile: tempfile::TempDir,
    port: u16,
}

impl Browser {
    async fn start() -> Browser {
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: `make setup` installs Debian's chromium and chromium-driver"
        );
        let profile = tempfile::tempdir().expect("profile dir");
        let child = tokio::process::Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
                "--remote-allow-origins=*",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromium");
        // Chromium writes the port it bound into the profile.
        let active = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            if let Some(port) = std::fs::read_to_string(&active)
                .ok()
                .and_then(|t| t.lines().next().and_then(|l| l.trim().parse().ok()))
            {
                break port;
            }
            assert!(
                Instant::now() < deadline,
                "chromium did not start its DevTools endpoint"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        Browser {
            child,
            _profile: profile,
            port,
        }
    }

    /// A tab showing `url`.
    async fn open(&self, url: &str) -> Tab {
        let addr: SocketAddr = format!("127.0.0.1:{}", self.port).parse().expect("addr");
        let list = send(addr, "GET", "/json/list", &[("host", "127.0.0.1")], "").await;
        let targets: Value = list.json();
        let ws = targets
            .as_array()
            .and_then(|t| t.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .unwrap_or_else(|| panic!("no page target: {targets}"));
        // Chromium names `localhost`, which may resolve to ::1 where it
        // listens on 127.0.0.1 only.
        let path = ws.find("/devtools/").map_or(ws, |i| &ws[i..]);
        let ws = format!("ws://{addr}{path}");
        let (socket, _) = tokio_tungstenite::connect_async(ws)
            .await
            .expect("DevTools socket");
        let mut tab = Tab { socket, next: 0 };
        tab.call("Page.navigate", json!({ "url": url })).await;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let state = tab.eval("document.readyState + ' ' + location.href").await;
            if state == format!("complete {url}") {
                return tab;
            }
            assert!(Instant::now() < deadline, "the page never loaded: {state}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

struct Tab {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next: u64,
}

impl Tab {
    /// One DevTools command and its result (events in between are skipped).
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let command = json!({ "id": id, "method": method, "params": params }).to_string();
        self.socket
            .send(Message::text(command))
            .await
            .expect("DevTools send");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = tokio::time::timeout(left, self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("no answer to {method}"))
                .expect("DevTools socket open")
                .expect("DevTools message");
            let Ok(text) = message.to_text() else {
                continue;
            };
            let v: Value = serde_json::from_str(text).unwrap_or_default();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Evaluates a script in the page (awaiting a promise) to a string.
    async fn eval(&mut self, expression: &str) -> String {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "awaitPromise": true, "returnByValue": true }),
            )
            .await;
        r["result"]["value"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// `fetch(url, init)` from the page: what the script could read.
    async fn fetch(&mut self, url: &str, init: Value) -> Value {
        let script = format!(
            r#"(async () => {{
                try {{
                    const r = await fetch({url:?}, {init});
                    const body = await r.text();
                    return JSON.stringify({{ ok: true, status: r.status,
                        retryAfter: r.headers.get("retry-after"), servedBy: r.headers.get("x-served-by"),
                        body: body.slice(0, 300) }});
                }} catch (e) {{
                    return JSON.stringify({{ ok: false, error: String(e) }});
                }}
            }})()"#
        );
        let text = self.eval(&script).await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }
}

/// Requests the `chat` backend has been sent (Envoy's count).
async fn reached_backend(gw: &Gateway) -> f64 {
    gw.metric(r#"envoy_cluster_upstream_rq_total{envoy_cluster_name="chat"}"#)
        .await
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_browser_calls_the_gateway_from_another_origin() {
    let page = page_server().await;
    let origin = format!("http://127.0.0.1:{}", page.port());
    let plugin = json!({
        "unmatched": "reject",
        "cors": { "allow_origins": [origin, format!("http://*.localhost:{}", page.port())] },
        "agents": [
            { "name": "chat", "namespace": "prod", "backend": "chat" },
            { "name": "login", "namespace": "prod", "backend": "chat",
              "cors": { "allow_origins": [origin], "allow_credentials": true } },
            { "name": "elsewhere", "namespace": "prod", "backend": "chat",
              "cors": { "allow_origins": ["https://dashboard.example.com"] } },
            { "name": "limited", "namespace": "prod", "backend": "chat",
              "rate_limit": { "requests_per_second": 0.001, "burst": 1 } }
        ]
    });
    let gw = Gateway::start(
        GatewayConfig::new(plugin.to_string()).cluster("chat", spawn_agent("chat").await),
    )
    .await;
    let api = format!("http://127.0.0.1:{}", gw.addr.port());
    let browser = Browser::start().await;
    let mut tab = browser.open(&format!("{origin}/")).await;

    // A simple request: no preflight, the answer readable.
    let r = tab
        .fetch(&format!("{api}/prod/agent/chat/hello"), json!({}))
        .await;
    assert_eq!(
        (r["ok"].as_bool(), r["status"].as_u64()),
        (Some(true), Some(200)),
        "{r}"
    );
    assert!(
        r["body"].as_str().unwrap_or_default().contains("/hello"),
        "{r}"
    );

    // A preflighted pair (JSON, an Authorization header): the preflight is
    // answered by the filter, only the actual request reaches the backend.
    let before = reached_backend(&gw).await;
    let init = json!({ "method": "POST", "headers": { "content-type": "application/json",
                       "authorization": "Bearer t" }, "body": "{\"q\":1}" });
    let r = tab
        .fetch(&format!("{api}/prod/agent/chat/ask"), init.clone())
        .await;
    assert_eq!(
        (r["ok"].as_bool(), r["status"].as_u64()),
        (Some(true), Some(200)),
        "{r}"
    );
    assert_eq!(
        reached_backend(&gw).await,
        before + 1.0,
        "the preflight was forwarded"
    );

    // An origin the entry does not allow: the browser refuses the answer of
    // a simple request (which the backend did get) ...
    let r = tab
        .fetch(&format!("{api}/prod/agent/elsewhere/x"), json!({}))
        .await;
    assert_eq!(r["ok"].as_bool(), Some(false), "{r}");
    // ... and a refused preflight keeps the actual request from being sent.
    let before = reached_backend(&gw).await;
    let r = tab
        .fetch(&format!("{api}/prod/agent/elsewhere/x"), init.clone())
        .await;
    assert_eq!(r["ok"].as_bool(), Some(false), "{r}");
    assert_eq!(
        reached_backend(&gw).await,
        before,
        "a refused preflight's request was sent"
    );

    // Credentials: only where the policy allows them.
    let with_cookies = json!({ "credentials": "include" });
    let r = tab
        .fetch(&format!("{api}/prod/agent/login/x"), with_cookies.clone())
        .await;
    assert_eq!(
        (r["ok"].as_bool(), r["status"].as_u64()),
        (Some(true), Some(200)),
        "{r}"
    );
    let r = tab
        .fetch(&format!("{api}/prod/agent/chat/x"), with_cookies)
        .await;
    assert_eq!(
        r["ok"].as_bool(),
        Some(false),
        "credentials without allow_credentials: {r}"
    );

    // The filter's own answers are readable too, with the exposed headers.
    let r = tab
        .fetch(&format!("{api}/prod/agent/limited/x"), json!({}))
        .await;
    assert_eq!(r["status"].as_u64(), Some(200), "{r}");
    let r = tab
        .fetch(&format!("{api}/prod/agent/limited/x"), json!({}))
        .await;
    assert_eq!(
        (r["ok"].as_bool(), r["status"].as_u64()),
        (Some(true), Some(429)),
        "{r}"
    );
    assert_eq!(
        r["retryAfter"].as_str(),
        Some("1000"),
        "retry-after is exposed: {r}"
    );
    let r = tab.fetch(&format!("{api}/nothing"), init).await;
    assert_eq!(
        (r["ok"].as_bool(), r["status"].as_u64()),
        (Some(true), Some(404)),
        "{r}"
    );

    // A wildcard subdomain: a page on app.localhost.
    let sub = format!("http://app.localhost:{}", page.port());
    let mut tab = browser.open(&format!("{sub}/")).await;
    let r = tab
        .fetch(
            &format!("{api}/prod/agent/chat/x"),
            json!({ "method": "PUT", "headers": { "content-type": "application/json" }, "body": "{}" }),
        )
        .await;
    assert_eq!(
        (r["ok"].as_bool(), r["status"].as_u64()),
        (Some(true), Some(200)),
        "{sub}: {r}"
    );
}

/// The official OpenAI JavaScript SDK in a page at another origin, with
/// nothing but `allow_origins` configured: the headers it sends on every
/// request (`x-stainless-*`, `openai-organization`, `openai-project`; its
/// `.stream()` helper adds `x-stainless-helper-method`) pass the default
/// preflight of the OpenAI surface, and it reads the model list the filter
/// answers, a streamed chat completion and the helper's whole answer.
#[tokio::test]
async fn the_openai_sdk_streams_from_a_page() {
    assert!(
        openai_sdk().join("index.mjs").exists(),
        "{} is missing: `make setup-test` installs it (npm ci --prefix tests/js)",
        openai_sdk().display()
    );
    let page = page_server().await;
    let origin = format!("http://127.0.0.1:{}", page.port());
    let plugin = json!({
        "cors": { "allow_origins": [origin] },
        "agents": [{ "name": "llm", "namespace": "models", "kind": "modelapi",
                     "backend": "llm", "models": ["gpt-demo"] }]
    });
    let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut cfg =
        GatewayConfig::new(plugin.to_string()).cluster("llm", openai_stand_in(heads.clone()).await);
    cfg.allow_stop_iteration = true;
    let gw = Gateway::start(cfg).await;
    let browser = Browser::start().await;
    let mut tab = browser.open(&format!("{origin}/sdk")).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while tab.eval("String(window.sdkReady === true)").await != "true" {
        assert!(Instant::now() < deadline, "the SDK never loaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let api = format!("http://127.0.0.1:{}/v1", gw.addr.port());
    let text = tab.eval(&format!("window.sdkChat({api:?})")).await;
    let r: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(r["ok"].as_bool(), Some(true), "{r}");
    assert_eq!(r["models"], json!(["gpt-demo"]), "{r}");
    assert!(r["chunks"].as_u64() > Some(1), "streamed in chunks: {r}");
    assert!(!r["text"].as_str().unwrap_or_default().is_empty(), "{r}");
    assert!(!r["helper"].as_str().unwrap_or_default().is_empty(), "{r}");
    assert_eq!(r["model"].as_str(), Some("gpt-demo"), "{r}");
    assert_eq!(r["text"], "Hello from the stand-in", "{r}");
    assert_eq!(
        r["contentType"], "text/event-stream",
        "an answer from the backend: {r}"
    );
    // The SDK's own headers reached the backend, the helper's too.
    let heads = heads.lock().map(|h| h.join("\n")).unwrap_or_default();
    for sent in [
        "x-stainless-lang: js",
        "x-stainless-helper-method: stream",
        "openai-organization: org-demo",
    ] {
        assert!(heads.to_ascii_lowercase().contains(sent), "{sent}: {heads}");
    }
}

/// A stand-in OpenAI backend: every request (its head kept in `heads`)
/// gets a chat completion stream as OpenAI sends one, a chunk at a time.
async fn openai_stand_in(heads: std::sync::Arc<std::sync::Mutex<Vec<String>>>) -> SocketAddr {
    spawn_scripted(move |head, mut stream| {
        let heads = heads.clone();
        async move {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())
                        .flatten()
                })
                .unwrap_or(0);
            let mut body = vec![0u8; length];
            let _ = stream.read_exact(&mut body).await;
            if let Ok(mut h) = heads.lock() {
                h.push(head);
            }
            let _ = stream
                .write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                      x-request-id: req-stand-in\r\nconnection: close\r\n\r\n",
                )
                .await;
            let chunk = |delta: Value, finish: Value| {
                let c = json!({ "id": "chatcmpl-stand-in", "object": "chat.completion.chunk",
                    "created": 1_700_000_000, "model": "gpt-demo",
                    "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }] });
                format!("data: {c}\n\n")
            };
            let events = [
                chunk(
                    json!({ "role": "assistant", "content": "Hello" }),
                    Value::Null,
                ),
                chunk(json!({ "content": " from" }), Value::Null),
                chunk(json!({ "content": " the stand-in" }), Value::Null),
                chunk(json!({}), json!("stop")),
                "data: [DONE]\n\n".to_string(),
            ];
            for event in events {
                let _ = stream.write_all(event.as_bytes()).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    })
    .await
}
