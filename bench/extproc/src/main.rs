//! An Envoy `ext_proc` gRPC server that dispatches the way agentroute does,
//! for `make bench`: it is how Envoy AI Gateway and similar gateways decide
//! per request (a sidecar Envoy calls on every request), so the bench can
//! show agentroute's in-process Wasm next to it.
//!
//! On request headers it reads `:path`, matches `/{ns}/agent/{name}/…`
//! against N agents (`agent-{i}` in `ns-{i % 100}`, as the bench configures
//! agentroute) with matchit, as agentroute does, and answers with
//! `x-agent-backend`, `x-agent-name`, `x-agent-namespace`, `x-agent-kind`,
//! `x-forwarded-prefix`, `x-envoy-upstream-rq-timeout-ms` and the rewritten
//! `:path`, clearing the route cache. Any other message gets an empty answer.
//!
//! With `--model-from-body` it is instead the body path of an OpenAI
//! gateway (Envoy AI Gateway's way: ext_proc with the request body
//! BUFFERED): the whole body is parsed as JSON, its `model` picks the
//! backend, and the answer to the body message sets `x-agent-backend` and
//! the model's identity, clearing the route cache. A body without a
//! string `model` is refused with a 400, as a gateway would.
//!
//! Usage: `extproc --listen 127.0.0.1:PORT (--agents N | --model-from-body)`;
//! prints `listening on ADDR` once it accepts connections.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::{
    header_value_option::HeaderAppendAction, HeaderValue, HeaderValueOption,
};
use envoy_types::pb::envoy::r#type::v3::HttpStatus;
use envoy_types::pb::envoy::service::ext_proc::v3::{
    external_processor_server::{ExternalProcessor, ExternalProcessorServer},
    processing_request, processing_response, BodyResponse, CommonResponse, HeaderMutation,
    HeadersResponse, HttpHeaders, ImmediateResponse, ProcessingRequest, ProcessingResponse,
    TrailersResponse,
};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

/// Appended to every path looked up so that `{prefix}/{*rest}` also matches
/// the bare prefix and `prefix/` (agentroute's router does the same).
const SENTINEL: &str = "/\0";

struct Agent {
    name: String,
    namespace: String,
    backend: String,
    kind: &'static str,
    timeout_ms: String,
    prefix: String,
}

struct Table {
    paths: matchit::Router<u32>,
    agents: Vec<Agent>,
    /// Dispatch on the body's `model` (the request body arrives BUFFERED)
    /// instead of the path.
    model_from_body: bool,
}

/// What the body path reads of a chat request: serde skips the rest but
/// still checks that the whole body is JSON, as a gateway's parser does.
#[derive(serde::Deserialize)]
struct ChatRequest {
    model: String,
}

/// The one model of the body path (`gpt-demo` on backend `upstream`, as
/// the bench configures agentroute's OpenAI case).
const MODEL: &str = "gpt-demo";

impl Table {
    fn new(n: usize) -> Result<Self, String> {
        let mut paths = matchit::Router::new();
        let mut agents = Vec::with_capacity(n);
        for i in 0..n {
            let agent = Agent {
                name: format!("agent-{i}"),
                namespace: format!("ns-{}", i % 100),
                backend: "upstream".into(),
                kind: "agent",
                timeout_ms: "120000".into(),
                prefix: format!("/ns-{}/agent/agent-{i}", i % 100),
            };
            let id = u32::try_from(i).map_err(|_| "too many agents".to_string())?;
            paths
                .insert(format!("{}/{{*rest}}", agent.prefix), id)
                .map_err(|e| format!("cannot route {}: {e}", agent.prefix))?;
            agents.push(agent);
        }
        Ok(Table {
            paths,
            agents,
            model_from_body: false,
        })
    }

    /// The header mutation for a chat body; `Err` is the refusal's reason.
    fn dispatch_body(body: &[u8]) -> Result<HeaderMutation, &'static str> {
        let chat: ChatRequest = serde_json::from_slice(body).map_err(|_| "invalid_body")?;
        if chat.model != MODEL {
            return Err("model_not_found");
        }
        Ok(HeaderMutation {
            set_headers: vec![
                set("x-agent-backend", "upstream"),
                set("x-agent-name", "llm"),
                set("x-agent-namespace", "models"),
                set("x-agent-kind", "modelapi"),
                set("x-envoy-upstream-rq-timeout-ms", "120000"),
            ],
            remove_headers: Vec::new(),
        })
    }

    /// The header mutation for a request path, `None` when no agent matches.
    fn dispatch(&self, path: &str) -> Option<HeaderMutation> {
        let (path_only, query) = match path.find('?') {
            Some(i) => path.split_at(i),
            None => (path, ""),
        };
        if !path_only.starts_with('/') {
            return None;
        }
        let mut key = String::with_capacity(path_only.len() + SENTINEL.len());
        key.push_str(path_only);
        key.push_str(SENTINEL);
        let id = *self.paths.at(&key).ok()?.value;
        let agent = self.agents.get(id as usize)?;
        let rest = path_only.get(agent.prefix.len()..)?;
        // Collapse leading slashes so the upstream never sees `//x`.
        let rest = match rest.trim_start_matches('/') {
            r if r.len() == rest.len() => rest,
            r => &rest[rest.len() - r.len() - 1..],
        };
        let mut new_path = String::with_capacity(rest.len().max(1) + query.len());
        new_path.push_str(if rest.is_empty() { "/" } else { rest });
        new_path.push_str(query);
        Some(HeaderMutation {
            set_headers: vec![
                set("x-agent-backend", &agent.backend),
                set("x-agent-name", &agent.name),
                set("x-agent-namespace", &agent.namespace),
                set("x-agent-kind", agent.kind),
                set("x-forwarded-prefix", &agent.prefix),
                set("x-envoy-upstream-rq-timeout-ms", &agent.timeout_ms),
                set(":path", &new_path),
            ],
            remove_headers: Vec::new(),
        })
    }

    fn respond(&self, request: ProcessingRequest) -> ProcessingResponse {
        use processing_request::Request as In;
        use processing_response::Response as Out;
        let response = match request.request {
            Some(In::RequestHeaders(_)) if self.model_from_body => {
                Out::RequestHeaders(HeadersResponse::default())
            }
            Some(In::RequestBody(body)) if self.model_from_body => {
                match Table::dispatch_body(&body.body) {
                    Ok(mutation) => Out::RequestBody(BodyResponse {
                        response: Some(CommonResponse {
                            clear_route_cache: true,
                            header_mutation: Some(mutation),
                            ..Default::default()
                        }),
                    }),
                    Err(reason) => Out::ImmediateResponse(ImmediateResponse {
                        status: Some(HttpStatus { code: 400 }),
                        body: format!("{{\"error\":{{\"code\":\"{reason}\"}}}}").into_bytes(),
                        ..Default::default()
                    }),
                }
            }
            Some(In::RequestHeaders(headers)) => {
                let mutation = path_of(&headers).and_then(|p| self.dispatch(p));
                Out::RequestHeaders(HeadersResponse {
                    response: Some(CommonResponse {
                        clear_route_cache: mutation.is_some(),
                        header_mutation: mutation,
                        ..Default::default()
                    }),
                })
            }
            Some(In::ResponseHeaders(_)) => Out::ResponseHeaders(HeadersResponse::default()),
            Some(In::RequestBody(_)) => Out::RequestBody(BodyResponse::default()),
            Some(In::ResponseBody(_)) => Out::ResponseBody(BodyResponse::default()),
            Some(In::RequestTrailers(_)) => Out::RequestTrailers(TrailersResponse::default()),
            Some(In::ResponseTrailers(_)) | None => {
                Out::ResponseTrailers(TrailersResponse::default())
            }
        };
        ProcessingResponse {
            response: Some(response),
            ..Default::default()
        }
    }
}

/// `:path` from the headers Envoy sent: in `raw_value` (current Envoy) or
/// `value` (older releases).
fn path_of(headers: &HttpHeaders) -> Option<&str> {
    let h = headers
        .headers
        .as_ref()?
        .headers
        .iter()
        .find(|h| h.key == ":path")?;
    if h.raw_value.is_empty() {
        Some(&h.value)
    } else {
        std::str::from_utf8(&h.raw_value).ok()
    }
}

fn set(key: &str, value: &str) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.into(),
            value: String::new(),
            raw_value: value.as_bytes().to_vec(),
        }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..Default::default()
    }
}

struct Server {
    table: Arc<Table>,
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<ProcessingResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ExternalProcessor for Server {
    type ProcessStream = ResponseStream;

    async fn process(
        &self,
        request: Request<Streaming<ProcessingRequest>>,
    ) -> Result<Response<Self::ProcessStream>, Status> {
        let table = Arc::clone(&self.table);
        let out = request
            .into_inner()
            .map(move |message| message.map(|m| table.respond(m)));
        Ok(Response::new(Box::pin(out)))
    }
}

fn usage(message: &str) -> ! {
    eprintln!(
        "extproc: {message}\nusage: extproc --listen ADDR:PORT (--agents N | --model-from-body)"
    );
    std::process::exit(2)
}

fn main() {
    let mut listen: Option<SocketAddr> = None;
    let mut agents: Option<usize> = None;
    let mut model_from_body = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{arg} needs a value")))
        };
        match arg.as_str() {
            "--listen" => {
                listen = Some(
                    value()
                        .parse()
                        .unwrap_or_else(|e| usage(&format!("--listen: {e}"))),
                )
            }
            "--agents" => {
                agents = Some(
                    value()
                        .parse()
                        .unwrap_or_else(|e| usage(&format!("--agents: {e}"))),
                )
            }
            "--model-from-body" => model_from_body = true,
            "-h" | "--help" => usage("an Envoy ext_proc server doing agentroute's dispatch"),
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    let listen = listen.unwrap_or_else(|| usage("--listen is required"));
    let table = match (agents, model_from_body) {
        (Some(n), false) => Table::new(n).unwrap_or_else(|e| usage(&e)),
        (None, true) => Table {
            model_from_body: true,
            ..Table::new(0).unwrap_or_else(|e| usage(&e))
        },
        _ => usage("give either --agents N or --model-from-body"),
    };

    // One thread, as a sidecar pinned to one core would be best served.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| usage(&format!("cannot start the runtime: {e}")));
    let result = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        println!("listening on {addr}");
        tonic::transport::Server::builder()
            .add_service(ExternalProcessorServer::new(Server {
                table: Arc::new(table),
            }))
            .serve_with_incoming(incoming)
            .await
            .map_err(std::io::Error::other)
    });
    if let Err(e) = result {
        eprintln!("extproc: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(m: &HeaderMutation) -> Vec<(&str, &[u8])> {
        m.set_headers
            .iter()
            .filter_map(|o| o.header.as_ref())
            .map(|h| (h.key.as_str(), h.raw_value.as_slice()))
            .collect()
    }

    #[test]
    fn dispatches_like_agentroute() {
        let t = Table::new(1000).unwrap();
        let m = t.dispatch("/ns-7/agent/agent-107/x/y?q=1").unwrap();
        let h = headers(&m);
        assert!(h.contains(&("x-agent-backend", b"upstream".as_slice())));
        assert!(h.contains(&("x-agent-name", b"agent-107".as_slice())));
        assert!(h.contains(&("x-agent-namespace", b"ns-7".as_slice())));
        assert!(h.contains(&("x-forwarded-prefix", b"/ns-7/agent/agent-107".as_slice())));
        assert!(h.contains(&(":path", b"/x/y?q=1".as_slice())));
        let bare = t.dispatch("/ns-7/agent/agent-107").unwrap();
        assert!(headers(&bare).contains(&(":path", b"/".as_slice())));
        assert!(t.dispatch("/ns-7/agent/agent-1070/x").is_none());
        assert!(t.dispatch("/ns-8/agent/agent-107/x").is_none());
        assert!(t.dispatch("x").is_none());
    }

    #[test]
    fn the_body_path_dispatches_on_the_model() {
        let body = br#"{"messages":[{"role":"user","content":"hi"}],"model":"gpt-demo"}"#;
        let h = Table::dispatch_body(body).unwrap();
        assert!(headers(&h).contains(&("x-agent-backend", b"upstream".as_slice())));
        assert_eq!(
            Table::dispatch_body(br#"{"model":"other"}"#).err(),
            Some("model_not_found")
        );
        assert_eq!(
            Table::dispatch_body(br#"{"messages":[]}"#).err(),
            Some("invalid_body")
        );
        assert_eq!(
            Table::dispatch_body(br#"{"model":"gpt-demo""#).err(),
            Some("invalid_body")
        );
    }
}
