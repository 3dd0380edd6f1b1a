//! A demo agent: a small real HTTP/WebSocket server that answers like an AI
//! agent backend. `make run` puts several behind the demo gateway; the
//! integration tests use it as their upstream.
//!
//! Every response carries `x-served-by: NAME`. Any request may add
//! `?delay_ms=N` to be answered N ms later (to exercise gateway timeouts).
//!
//! - `GET /healthz`, `GET /.well-known/agent.json`: health and an A2A card.
//! - WebSocket upgrade on any path (HTTP/1.1 `Upgrade`, or HTTP/2 extended
//!   CONNECT over h2c): a greeting with the path seen, then echo.
//! - OpenAI `POST /v1/chat/completions`, `/v1/completions`, `/v1/responses`,
//!   `/v1/embeddings` (and without `/v1`): OpenAI-shaped answers naming the
//!   model asked for; `"stream": true` answers as server-sent events.
//! - `GET .../sse`: `chunks` events every `interval_ms`.
//! - `?dims=N` on embeddings: an N-dimension vector (large answers);
//!   `?content_encoding=X` on any answer: that header, body unchanged (to see
//!   what a gateway does with an answer it cannot read).
//! - anything else, or any request with `?echo`: a JSON echo of method, path
//!   (as received), headers, body.
//! - `?fail=NAME[,NAME...]`: the agents named fail the request (the others
//!   answer as usual, so one request shows a failover): status `fail_status`
//!   (default 503) with `retry-after: V` when `retry_after=V` is given,
//!   after `fail_delay_ms`; with `fail_after=N`, event-stream headers and N
//!   events, then the connection is cut.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

/// Largest request body the agent reads (bigger bodies get 413).
const MAX_BODY: usize = 64 * 1024 * 1024;

/// Serves one demo agent named `name` on an already-bound listener until the
/// future is dropped.
pub async fn serve(listener: tokio::net::TcpListener, name: String) -> std::io::Result<()> {
    axum::serve(listener, app(name)).await
}

/// The agent as an axum Router, for embedding.
pub fn app(name: String) -> Router {
    Router::new()
        .fallback(handle)
        .with_state(Arc::<str>::from(name))
}

async fn handle(State(name): State<Arc<str>>, req: Request) -> Response {
    let (mut parts, body) = req.into_parts();
    let path_and_query = parts.uri.path_and_query().map_or_else(
        || parts.uri.path().to_string(),
        |pq| pq.as_str().to_string(),
    );
    let query = parse_query(parts.uri.query().unwrap_or(""));
    if let Some(ms) = query.get("delay_ms").and_then(|v| v.parse::<u64>().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    let failing = query
        .get("fail")
        .is_some_and(|names| names.split(',').any(|n| n == &*name));
    if failing {
        return failure(&name, &query).await;
    }

    let mut response = if is_websocket(&parts.headers) || parts.method == Method::CONNECT {
        match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(ws) => {
                let name = name.clone();
                ws.on_upgrade(move |socket| echo_socket(socket, name, path_and_query))
            }
            Err(rejection) => rejection.into_response(),
        }
    } else {
        match axum::body::to_bytes(body, MAX_BODY).await {
            Ok(body) => answer(
                &name,
                &parts.method,
                parts.uri.path(),
                &path_and_query,
                &query,
                &parts.headers,
                body,
            ),
            Err(_) => error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
        }
    };
    if let Ok(v) = HeaderValue::from_str(&name) {
        response.headers_mut().insert("x-served-by", v);
    }
    if let Some(v) = query
        .get("content_encoding")
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        response.headers_mut().insert(header::CONTENT_ENCODING, v);
    }
    response
}

/// The answer of an agent told to fail (`?fail=`).
async fn failure(name: &str, query: &HashMap<String, String>) -> Response {
    if let Some(ms) = query
        .get("fail_delay_ms")
        .and_then(|v| v.parse::<u64>().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let mut response = if let Some(n) = query
        .get("fail_after")
        .and_then(|v| v.parse::<usize>().ok())
    {
        let frames: Vec<Result<Bytes, std::io::Error>> = (0..n)
            .map(|i| Ok(Bytes::from(format!("data: {}\n\n", json!({ "n": i })))))
            .chain(std::iter::once(Err(std::io::Error::other("cut on demand"))))
            .collect();
        let stream = futures_util::stream::unfold(frames.into_iter(), |mut frames| async move {
            let frame = frames.next()?;
            tokio::time::sleep(Duration::from_millis(50)).await;
            Some((frame, frames))
        });
        Response::builder()
            .header(header::CONTENT_TYPE, "text/event-stream")
            .body(Body::from_stream(stream))
            .unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "cannot build stream"))
    } else {
        let status = query
            .get("fail_status")
            .and_then(|v| v.parse::<u16>().ok())
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let mut response = error(status, "failing on demand");
        if let Some(v) = query
            .get("retry_after")
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    };
    if let Ok(v) = HeaderValue::from_str(name) {
        response.headers_mut().insert("x-served-by", v);
    }
    response
}

fn answer(
    name: &str,
    method: &Method,
    path: &str,
    path_and_query: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let path_tail = path.strip_prefix("/v1").unwrap_or(path);
    if query.contains_key("echo") {
        return json_response(echo(name, method, path_and_query, headers, &body));
    }
    match (method, path, path_tail) {
        (&Method::GET, "/healthz", _) => json_response(json!({ "status": "ok", "agent": name })),
        (&Method::GET, "/.well-known/agent.json", _) => json_response(agent_card(name)),
        (&Method::POST, _, "/responses") => responses(name, query, &body),
        (&Method::POST, _, "/chat/completions" | "/completions") => completion(name, query, &body),
        (&Method::POST, _, "/embeddings") => embedding(query, &body),
        (&Method::GET, _, _) if path.ends_with("/sse") => {
            let chunks = query_num(query, "chunks", 5);
            let interval = query_num(query, "interval_ms", 100);
            sse((0..chunks).map(|n| json!({ "n": n })).collect(), interval)
        }
        _ => json_response(echo(name, method, path_and_query, headers, &body)),
    }
}

fn agent_card(name: &str) -> Value {
    json!({
        "name": name,
        "description": "agentroute demo agent",
        "version": "1.0.0",
        "capabilities": { "streaming": true },
        "skills": [ { "id": "echo", "name": "echo" } ]
    })
}

fn echo(name: &str, method: &Method, path: &str, headers: &HeaderMap, body: &[u8]) -> Value {
    let mut seen: serde_json::Map<String, Value> = serde_json::Map::new();
    for (k, v) in headers {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        match seen.get_mut(k.as_str()) {
            Some(Value::String(prev)) => {
                prev.push_str(", ");
                prev.push_str(&v);
            }
            _ => {
                seen.insert(k.as_str().to_string(), Value::String(v));
            }
        }
    }
    json!({
        "agent": name,
        "method": method.as_str(),
        "path": path,
        "headers": seen,
        "body": String::from_utf8_lossy(body),
    })
}

/// An OpenAI chat/completions/responses answer naming the model asked for.
fn completion(name: &str, query: &HashMap<String, String>, body: &Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return error(StatusCode::BAD_REQUEST, "invalid json");
    };
    let model = request["model"].clone();
    let usage = usage(body.len(), 5);
    let mut response = if request["stream"] == json!(true) {
        let chunks = query_num(query, "chunks", 5);
        let interval = query_num(query, "interval_ms", 50);
        let mut events: Vec<Value> = (0..chunks)
            .map(|i| {
                json!({
                    "id": "chatcmpl-demo", "object": "chat.completion.chunk", "model": model,
                    "choices": [ { "index": 0, "delta": { "content": format!("tok{i}") } } ]
                })
            })
            .collect();
        if request["stream_options"]["include_usage"] == json!(true) {
            events.push(json!({
                "id": "chatcmpl-demo", "object": "chat.completion.chunk", "model": model,
                "choices": [], "usage": usage
            }));
        }
        sse(events, interval)
    } else {
        json_response(json!({
            "id": "chatcmpl-demo",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": model,
            "choices": [ {
                "index": 0,
                "message": { "role": "assistant", "content": format!("hello from {name}") },
                "finish_reason": "stop"
            } ],
            "usage": usage
        }))
    };
    add_body_digest(&mut response, body);
    response
}

/// An OpenAI Responses API answer: usage as `input_tokens`/`output_tokens`,
/// and a stream (`response.*` events) whose usage comes only in
/// `response.completed`, under `response.usage`, as OpenAI sends it.
fn responses(name: &str, query: &HashMap<String, String>, body: &Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return error(StatusCode::BAD_REQUEST, "invalid json");
    };
    let prompt = prompt_tokens(body.len());
    let output = 5;
    let usage =
        json!({ "input_tokens": prompt, "output_tokens": output, "total_tokens": prompt + output });
    let object = |status: &str, usage: Value| {
        json!({
            "id": "resp-demo", "object": "response", "created_at": 1_700_000_000,
            "status": status, "model": request["model"], "usage": usage,
            "output": [ { "type": "message", "role": "assistant",
                          "content": [ { "type": "output_text", "text": format!("hello from {name}") } ] } ]
        })
    };
    let mut response = if request["stream"] == json!(true) {
        let chunks = query_num(query, "chunks", 5);
        let interval = query_num(query, "interval_ms", 50);
        let mut events = vec![(
            "response.created",
            json!({ "type": "response.created", "response": object("in_progress", Value::Null) }),
        )];
        events.extend((0..chunks).map(|i| {
            (
                "response.output_text.delta",
                json!({ "type": "response.output_text.delta", "delta": format!("tok{i}") }),
            )
        }));
        events.push((
            "response.completed",
            json!({ "type": "response.completed", "response": object("completed", usage) }),
        ));
        named_sse(events, interval)
    } else {
        json_response(object("completed", usage))
    };
    add_body_digest(&mut response, body);
    response
}

fn embedding(query: &HashMap<String, String>, body: &Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return error(StatusCode::BAD_REQUEST, "invalid json");
    };
    let prompt = prompt_tokens(body.len());
    let vector: Vec<f64> = match query.get("dims").and_then(|d| d.parse::<usize>().ok()) {
        Some(dims) => (0..dims.min(4_000_000))
            .map(|i| (i % 1000) as f64 / 1000.0 + 0.0001)
            .collect(),
        None => vec![0.1, 0.2, 0.3],
    };
    let mut response = json_response(json!({
        "object": "list",
        "data": [ { "object": "embedding", "index": 0, "embedding": vector } ],
        "model": request["model"],
        "usage": { "prompt_tokens": prompt, "total_tokens": prompt }
    }));
    add_body_digest(&mut response, body);
    response
}

/// A stand-in token count: a quarter of the body length, at least one.
fn prompt_tokens(body_len: usize) -> usize {
    (body_len / 4).max(1)
}

fn usage(body_len: usize, completion: usize) -> Value {
    let prompt = prompt_tokens(body_len);
    json!({ "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion })
}

/// Lets tests check the body reached the backend byte for byte.
fn add_body_digest(response: &mut Response, body: &[u8]) {
    let headers = response.headers_mut();
    headers.insert("x-request-body-bytes", HeaderValue::from(body.len()));
    if let Ok(v) = HeaderValue::from_str(&format!("{:016x}", fnv1a64(body))) {
        headers.insert("x-request-body-fnv", v);
    }
}

pub fn fnv1a64(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Server-sent events, each written and flushed on its own after `interval_ms`,
/// ending with `data: [DONE]` like OpenAI streams.
fn sse(events: Vec<Value>, interval_ms: u64) -> Response {
    let frames = events
        .into_iter()
        .map(|e| format!("data: {e}\n\n"))
        .chain(std::iter::once("data: [DONE]\n\n".to_string()));
    stream_frames(frames.collect(), interval_ms)
}

/// Server-sent events with an `event:` name each and no `[DONE]`, as the
/// Responses API streams.
fn named_sse(events: Vec<(&str, Value)>, interval_ms: u64) -> Response {
    let frames = events
        .into_iter()
        .map(|(name, e)| format!("event: {name}\ndata: {e}\n\n"))
        .collect();
    stream_frames(frames, interval_ms)
}

fn stream_frames(frames: Vec<String>, interval_ms: u64) -> Response {
    let frames = frames.into_iter();
    let stream =
        futures_util::stream::unfold((frames, true), move |(mut frames, first)| async move {
            let frame = frames.next()?;
            if !first {
                tokio::time::sleep(Duration::from_millis(interval_ms)).await;
            }
            Some((Ok::<_, Infallible>(Bytes::from(frame)), (frames, false)))
        });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "cannot build stream"))
}

async fn echo_socket(mut socket: WebSocket, name: Arc<str>, path: String) {
    let hello = json!({ "agent": &*name, "path": path }).to_string();
    if socket.send(Message::Text(hello.into())).await.is_err() {
        return;
    }
    while let Some(Ok(message)) = socket.recv().await {
        let reply = match message {
            Message::Text(_) | Message::Binary(_) => message,
            Message::Close(_) => break,
            // Pings are answered by the library; pongs need nothing.
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        if socket.send(reply).await.is_err() {
            break;
        }
    }
}

fn is_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

fn parse_query(query: &str) -> HashMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (p.to_string(), String::new()),
        })
        .collect()
}

fn query_num(query: &HashMap<String, String>, key: &str, default: u64) -> u64 {
    query
        .get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn json_response(value: Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

fn error(status: StatusCode, message: &str) -> Response {
    let body = json!({ "error": { "message": message, "type": "invalid_request_error", "param": null, "code": null } });
    (status, json_response(body)).into_response()
}
