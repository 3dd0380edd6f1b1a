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
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use agentroute_tests::{send, spawn_agent, spawn_scripted, Gateway, GatewayConfig};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

const CHROMIUM: &str = "/usr/bin/chromium";

/// The page: any path answers a blank document, from which the tests'
/// scripts call the gateway.
async fn page_server() -> SocketAddr {
    spawn_scripted(|_head, mut stream| async move {
        let body = "<!doctype html><html><head><title>cors</title></head><body>page</body></html>";
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(answer.as_bytes()).await;
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
