//! What the filter does with one request's headers: a pure function from the
//! compiled plan and the request head to a [`Decision`], so that every rule is
//! unit-tested without a host.

use std::borrow::Cow;

use crate::config::{
    Plan, Unmatched, HEADER_AGENT_KIND, HEADER_AGENT_NAME, HEADER_AGENT_NAMESPACE,
    HEADER_FORWARDED_PREFIX, HEADER_TIMEOUT,
};
use crate::openai::{self, Endpoint, ModelError};
use crate::ratelimit::Outcome;
use crate::router::PathAction;

/// The parts of a request head the filter looks at, read in one host call.
#[derive(Debug, Default)]
pub struct RequestHead<'h> {
    pub method: &'h str,
    pub path: &'h str,
    pub authority: &'h str,
    pub content_type: Option<&'h str>,
    pub content_encoding: Option<&'h str>,
    pub content_length: Option<u64>,
    pub flags: Flags,
}

/// What dispatching needs to remember about a request while its body is read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flags {
    /// `Upgrade` (HTTP/1.1) or `:protocol` (HTTP/2 extended CONNECT).
    pub upgrade: bool,
    /// Client-sent copies of the headers the filter owns.
    pub sent_dispatch: bool,
    pub sent_identity: bool,
    pub sent_timeout: bool,
    pub sent_forwarded_prefix: bool,
}

impl<'h> RequestHead<'h> {
    /// Reads the head from raw header pairs. A value that is not UTF-8 reads
    /// as absent where the filter needs text (`:path`, ...); presence of the
    /// headers the filter owns counts whatever their bytes.
    pub fn from_pairs(pairs: &[(&'h str, &'h [u8])], dispatch_header: &str) -> Self {
        let text = |v: &'h [u8]| std::str::from_utf8(v).ok();
        let mut head = RequestHead::default();
        for &(name, value) in pairs {
            match name {
                ":path" => head.path = text(value).unwrap_or_default(),
                ":authority" => head.authority = text(value).unwrap_or_default(),
                ":method" => head.method = text(value).unwrap_or_default(),
                "content-type" => head.content_type = text(value),
                "content-encoding" => head.content_encoding = text(value),
                "content-length" => {
                    head.content_length = text(value).and_then(|v| v.trim().parse().ok())
                }
                ":protocol" | "upgrade" => head.flags.upgrade = true,
                HEADER_AGENT_NAME | HEADER_AGENT_NAMESPACE | HEADER_AGENT_KIND => {
                    head.flags.sent_identity = true
                }
                HEADER_TIMEOUT => head.flags.sent_timeout = true,
                HEADER_FORWARDED_PREFIX => head.flags.sent_forwarded_prefix = true,
                n if n == dispatch_header => head.flags.sent_dispatch = true,
                _ => {}
            }
        }
        head
    }
}

/// A header change, borrowing from the plan where it can.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderOp<'p> {
    Set(&'p str, Cow<'p, str>),
    Remove(&'p str),
}

/// The request headers after `ops`, for replacing the whole map in one host
/// call: every header an op names loses its client copies, then the `Set`
/// values follow. Other headers keep their bytes exactly.
pub fn apply_to<'a>(
    pairs: &[(&'a str, &'a [u8])],
    ops: &'a [HeaderOp<'_>],
) -> Vec<(&'a str, &'a [u8])> {
    let touched = |name: &str| {
        ops.iter().any(|op| match op {
            HeaderOp::Set(n, _) | HeaderOp::Remove(n) => *n == name,
        })
    };
    let mut out: Vec<(&str, &[u8])> = pairs
        .iter()
        .copied()
        .filter(|(name, _)| !touched(name))
        .collect();
    out.extend(ops.iter().filter_map(|op| match op {
        HeaderOp::Set(name, value) => Some((*name, value.as_bytes())),
        HeaderOp::Remove(_) => None,
    }));
    out
}

/// A response the filter sends itself instead of forwarding.
#[derive(Debug, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u32,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl LocalReply {
    pub fn json(status: u32, body: String) -> Self {
        LocalReply {
            status,
            headers: vec![("content-type", "application/json".to_string())],
            body,
        }
    }

    /// An error in OpenAI's shape, which the filter uses for every error so
    /// clients parse one format.
    pub fn error(
        status: u32,
        kind: &str,
        code: Option<&str>,
        param: Option<&str>,
        message: &str,
    ) -> Self {
        let body = serde_json::json!({
            "error": { "message": message, "type": kind, "param": param, "code": code }
        });
        LocalReply::json(status, body.to_string())
    }
}

/// The 429 a rate-limited request gets, with `retry-after` and the
/// `x-ratelimit-*` headers; `kind` is OpenAI's error type (`requests` for the
/// request bucket, `tokens` for the LLM token budget).
pub fn rate_limited(kind: &str, limit: u64, outcome: &Outcome) -> LocalReply {
    let message = match kind {
        "tokens" => "token budget exhausted for this agent: retry later",
        _ => "rate limit reached for this agent: retry later",
    };
    let mut reply = LocalReply::error(429, kind, Some("rate_limit_exceeded"), None, message);
    reply
        .headers
        .push(("retry-after", outcome.retry_after_secs.max(1).to_string()));
    reply.headers.extend(rate_limit_headers(limit, outcome));
    reply
}

/// `x-ratelimit-limit`, `-remaining` and `-reset` (seconds until full).
pub fn rate_limit_headers(limit: u64, outcome: &Outcome) -> [(&'static str, String); 3] {
    [
        ("x-ratelimit-limit", limit.to_string()),
        ("x-ratelimit-remaining", outcome.remaining.to_string()),
        ("x-ratelimit-reset", outcome.reset_secs.to_string()),
    ]
}

#[derive(Debug, PartialEq, Eq)]
pub enum Decision<'p> {
    /// Forward after applying `ops`; `entry` is the matched entry, if any.
    Forward {
        entry: Option<usize>,
        ops: Vec<HeaderOp<'p>>,
    },
    /// Answer locally; `entry` is set when a matched request was refused.
    Reply {
        entry: Option<usize>,
        reply: LocalReply,
    },
    /// An OpenAI request that dispatches by the `model` it names: the glue
    /// gets the model (from the body or metadata) and calls [`decide_model`].
    ReadModel(Flags),
}

/// Routes one request: hosts, then path prefixes, then the OpenAI surface.
pub fn decide<'p>(plan: &'p Plan, head: &RequestHead<'_>) -> Decision<'p> {
    let Some(m) = plan.router.route(head.authority, head.path) else {
        return match openai::endpoint(head.method, head.path) {
            Some(endpoint) => decide_openai(plan, head, endpoint),
            None => unmatched(plan, head),
        };
    };
    let mut ops = match m.path {
        PathAction::RefuseDotSegments => {
            return Decision::Reply {
                entry: Some(m.entry),
                reply: LocalReply::error(
                    400,
                    "invalid_request_error",
                    Some("invalid_path"),
                    None,
                    "path holds a '.' or '..' segment, which the gateway does not forward",
                ),
            }
        }
        PathAction::Keep => {
            let mut ops = Vec::with_capacity(6);
            if head.flags.sent_forwarded_prefix {
                ops.push(HeaderOp::Remove(HEADER_FORWARDED_PREFIX));
            }
            ops
        }
        PathAction::Rewrite { path, prefix } => {
            let mut ops = Vec::with_capacity(8);
            ops.push(HeaderOp::Set(":path", Cow::Owned(path)));
            ops.push(HeaderOp::Set(HEADER_FORWARDED_PREFIX, Cow::Owned(prefix)));
            ops
        }
    };
    dispatch_ops(plan, m.entry, head.flags, &mut ops);
    Decision::Forward {
        entry: Some(m.entry),
        ops,
    }
}

fn decide_openai<'p>(
    plan: &'p Plan,
    head: &RequestHead<'_>,
    endpoint: Endpoint<'_>,
) -> Decision<'p> {
    let reply = match endpoint {
        Endpoint::ListModels => LocalReply::json(200, openai::models_body(plan, plan.created)),
        Endpoint::GetModel(id) => openai::model_reply(plan, &id, plan.created),
        Endpoint::Dispatch => match openai::check_body_headers(
            head.content_type,
            head.content_encoding,
            head.content_length,
            plan.openai.max_body_bytes,
        ) {
            Ok(()) => return Decision::ReadModel(head.flags),
            Err(reply) => reply,
        },
    };
    Decision::Reply { entry: None, reply }
}

/// Dispatches an OpenAI request by its model; path and body stay unchanged.
pub fn decide_model<'p>(
    plan: &'p Plan,
    model: Result<&str, &ModelError>,
    flags: Flags,
) -> Decision<'p> {
    let entry = model
        .map_err(ModelError::reply)
        .and_then(|m| openai::entry_for_model(plan, m));
    match entry {
        Ok(entry) => {
            let mut ops = Vec::with_capacity(6);
            dispatch_ops(plan, entry, flags, &mut ops);
            Decision::Forward {
                entry: Some(entry),
                ops,
            }
        }
        Err(reply) => Decision::Reply { entry: None, reply },
    }
}

/// The headers every dispatched request gets, by path, host or model.
fn dispatch_ops<'p>(plan: &'p Plan, entry: usize, flags: Flags, ops: &mut Vec<HeaderOp<'p>>) {
    let Some(e) = plan.entries.get(entry) else {
        return;
    };
    // A client may send a header twice; remove every copy before setting ours.
    ops.extend(strip_owned(plan, flags));
    ops.push(HeaderOp::Set(
        &plan.dispatch_header,
        Cow::Borrowed(&e.backend),
    ));
    ops.push(HeaderOp::Set(HEADER_AGENT_NAME, Cow::Borrowed(&e.name)));
    ops.push(HeaderOp::Set(
        HEADER_AGENT_NAMESPACE,
        Cow::Borrowed(&e.namespace),
    ));
    ops.push(HeaderOp::Set(
        HEADER_AGENT_KIND,
        Cow::Borrowed(e.kind.as_str()),
    ));
    // Upgraded streams (WebSocket) live as long as they need: no timeout.
    match (&e.timeout_ms, flags.upgrade) {
        (Some(ms), false) => ops.push(HeaderOp::Set(HEADER_TIMEOUT, Cow::Borrowed(ms))),
        _ if flags.sent_timeout => ops.push(HeaderOp::Remove(HEADER_TIMEOUT)),
        _ => {}
    }
}

fn unmatched<'p>(plan: &'p Plan, head: &RequestHead<'_>) -> Decision<'p> {
    if plan.unmatched == Unmatched::Reject {
        return Decision::Reply {
            entry: None,
            reply: LocalReply::error(
                404,
                "invalid_request_error",
                Some("agent_not_found"),
                None,
                "no agent matches this host or path",
            ),
        };
    }
    Decision::Forward {
        entry: None,
        ops: strip_owned(plan, head.flags),
    }
}

/// Removes client-sent dispatch and identity headers: a client must never pick
/// a backend or claim an identity, matched or not.
pub fn strip_owned(plan: &Plan, flags: Flags) -> Vec<HeaderOp<'_>> {
    let mut ops = Vec::new();
    if flags.sent_dispatch {
        ops.push(HeaderOp::Remove(&plan.dispatch_header));
    }
    if flags.sent_identity {
        ops.extend(
            [HEADER_AGENT_NAME, HEADER_AGENT_NAMESPACE, HEADER_AGENT_KIND]
                .into_iter()
                .map(HeaderOp::Remove),
        );
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"{
        "agents": [
            {"name": "coordinator", "namespace": "prod", "backend": "c-backend", "timeout": "300s",
             "hosts": ["coord.example.com"], "prefixes": [{"prefix": "/cs"}]},
            {"name": "tools", "namespace": "prod", "kind": "mcp", "backend": "t-backend"},
            {"name": "fast", "kind": "modelapi", "backend": "f-backend", "timeout": "0s"}
        ]
    }"#;

    fn plan(json: &str) -> Plan {
        Plan::from_json(json.as_bytes()).unwrap()
    }

    fn headers<'a>(pairs: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a [u8])> {
        pairs.iter().map(|(k, v)| (*k, v.as_bytes())).collect()
    }

    fn forward<'p>(plan: &'p Plan, pairs: &[(&str, &str)]) -> (Option<usize>, Vec<HeaderOp<'p>>) {
        let h = headers(pairs);
        let head = RequestHead::from_pairs(&h, &plan.dispatch_header);
        match decide(plan, &head) {
            Decision::Forward { entry, ops } => (entry, ops),
            other => panic!("expected forward, got {other:?}"),
        }
    }

    fn set<'a>(ops: &'a [HeaderOp<'_>], name: &str) -> Option<&'a str> {
        ops.iter().find_map(|op| match op {
            HeaderOp::Set(n, v) if *n == name => Some(v.as_ref()),
            _ => None,
        })
    }

    #[test]
    fn layout_match_sets_dispatch_identity_timeout_and_rewrites() {
        let p = plan(CONFIG);
        let (entry, ops) = forward(
            &p,
            &[
                (":path", "/prod/agent/coordinator/tasks?x=1"),
                (":authority", "gw"),
            ],
        );
        assert_eq!(entry, Some(0));
        assert_eq!(set(&ops, ":path"), Some("/tasks?x=1"));
        assert_eq!(set(&ops, "x-agent-backend"), Some("c-backend"));
        assert_eq!(set(&ops, "x-agent-name"), Some("coordinator"));
        assert_eq!(set(&ops, "x-agent-namespace"), Some("prod"));
        assert_eq!(set(&ops, "x-agent-kind"), Some("agent"));
        assert_eq!(
            set(&ops, "x-forwarded-prefix"),
            Some("/prod/agent/coordinator")
        );
        assert_eq!(set(&ops, "x-envoy-upstream-rq-timeout-ms"), Some("300000"));
    }

    #[test]
    fn kind_defaults_and_zero_timeout() {
        let p = plan(CONFIG);
        let (_, ops) = forward(&p, &[(":path", "/prod/tools"), (":authority", "gw")]);
        assert_eq!(set(&ops, "x-envoy-upstream-rq-timeout-ms"), Some("30000"));
        let (_, ops) = forward(
            &p,
            &[
                (":path", "/fast/x"),
                (":authority", "gw"),
                ("x-envoy-upstream-rq-timeout-ms", "1"),
            ],
        );
        assert_eq!(set(&ops, "x-envoy-upstream-rq-timeout-ms"), None);
        assert!(ops.contains(&HeaderOp::Remove("x-envoy-upstream-rq-timeout-ms")));
    }

    #[test]
    fn upgrades_get_no_timeout() {
        let p = plan(CONFIG);
        let (_, ops) = forward(
            &p,
            &[
                (":path", "/coordinator/ws"),
                (":authority", "gw"),
                ("upgrade", "websocket"),
            ],
        );
        assert_eq!(set(&ops, "x-envoy-upstream-rq-timeout-ms"), None);
        assert_eq!(set(&ops, ":path"), Some("/ws"));
    }

    #[test]
    fn host_match_keeps_path_and_drops_client_prefix_header() {
        let p = plan(CONFIG);
        let (entry, ops) = forward(
            &p,
            &[
                (":path", "/prod/agent/tools/x"),
                (":authority", "Coord.Example.com:443"),
                ("x-forwarded-prefix", "/evil"),
            ],
        );
        assert_eq!(entry, Some(0));
        assert_eq!(set(&ops, ":path"), None);
        assert!(ops.contains(&HeaderOp::Remove("x-forwarded-prefix")));
    }

    #[test]
    fn unmatched_pass_strips_client_dispatch_and_identity() {
        let p = plan(CONFIG);
        let (entry, ops) = forward(
            &p,
            &[
                (":path", "/nothing"),
                (":authority", "gw"),
                ("x-agent-backend", "t-backend"),
                ("x-agent-name", "tools"),
            ],
        );
        assert_eq!(entry, None);
        assert!(ops.contains(&HeaderOp::Remove("x-agent-backend")));
        assert!(ops.contains(&HeaderOp::Remove("x-agent-name")));
        let (_, ops) = forward(&p, &[(":path", "/nothing"), (":authority", "gw")]);
        assert!(
            ops.is_empty(),
            "no host calls for a clean unmatched request"
        );
    }

    #[test]
    fn unmatched_reject_and_dot_segments_reply() {
        let p = plan(r#"{"unmatched": "reject", "agents": [{"name": "a", "backend": "b"}]}"#);
        let h = headers(&[(":path", "/nope"), (":authority", "gw")]);
        let Decision::Reply { reply, entry } =
            decide(&p, &RequestHead::from_pairs(&h, "x-agent-backend"))
        else {
            panic!("expected a reply");
        };
        assert_eq!((reply.status, entry), (404, None));
        assert!(reply.body.contains("agent_not_found"));
        let h = headers(&[(":path", "/a/%2e%2e/admin"), (":authority", "gw")]);
        let Decision::Reply { reply, entry } =
            decide(&p, &RequestHead::from_pairs(&h, "x-agent-backend"))
        else {
            panic!("expected a reply");
        };
        assert_eq!((reply.status, entry), (400, Some(0)));
    }

    #[test]
    fn openai_surface_after_paths() {
        let p = plan(
            r#"{"agents":[{"name":"llm","kind":"modelapi","backend":"l","models":["m"],"timeout":"9s"}]}"#,
        );
        let h = headers(&[
            (":method", "POST"),
            (":path", "/v1/chat/completions"),
            (":authority", "gw"),
            ("x-agent-backend", "evil"),
        ]);
        let head = RequestHead::from_pairs(&h, "x-agent-backend");
        let Decision::ReadModel(flags) = decide(&p, &head) else {
            panic!("expected a model read");
        };
        let Decision::Forward { entry, ops } = decide_model(&p, Ok("m"), flags) else {
            panic!("expected a dispatch");
        };
        assert_eq!(entry, Some(0));
        assert_eq!(ops.first(), Some(&HeaderOp::Remove("x-agent-backend")));
        assert_eq!(set(&ops, "x-agent-backend"), Some("l"));
        assert_eq!(set(&ops, "x-envoy-upstream-rq-timeout-ms"), Some("9000"));
        assert_eq!(set(&ops, ":path"), None, "model dispatch keeps the path");
        let Decision::Reply { reply, .. } = decide_model(&p, Ok("other"), flags) else {
            panic!("expected a reply");
        };
        assert_eq!(reply.status, 404);
        // A body the headers already rule out is refused before it is read.
        let h = headers(&[
            (":method", "POST"),
            (":path", "/v1/embeddings"),
            ("content-length", "2000000"),
        ]);
        let Decision::Reply { reply, .. } =
            decide(&p, &RequestHead::from_pairs(&h, "x-agent-backend"))
        else {
            panic!("expected a reply");
        };
        assert_eq!(reply.status, 413);
        // Agent paths win over the OpenAI surface.
        let (entry, ops) = forward(
            &p,
            &[
                (":method", "POST"),
                (":path", "/default/modelapi/llm/v1/chat/completions"),
            ],
        );
        assert_eq!(
            (entry, set(&ops, ":path")),
            (Some(0), Some("/v1/chat/completions"))
        );
    }

    #[test]
    fn apply_to_replaces_every_client_copy() {
        let pairs = headers(&[
            (":path", "/a/x"),
            ("x-agent-backend", "evil"),
            ("accept", "*/*"),
            ("x-agent-backend", "evil2"),
            ("x-envoy-upstream-rq-timeout-ms", "1"),
        ]);
        let ops = [
            HeaderOp::Set(":path", Cow::Borrowed("/x")),
            HeaderOp::Set("x-agent-backend", Cow::Borrowed("b")),
            HeaderOp::Remove("x-envoy-upstream-rq-timeout-ms"),
        ];
        assert_eq!(
            apply_to(&pairs, &ops),
            headers(&[("accept", "*/*"), (":path", "/x"), ("x-agent-backend", "b")])
        );
    }
}
