//! What the filter does with one request's headers: a pure function from the
//! compiled plan and the request head to a [`Decision`], so that every rule is
//! unit-tested without a host.

use std::borrow::Cow;

use crate::a2a::card::{is_card_path, is_plain_authority, CardAddress};
use crate::config::{
    A2aVersion, Plan, Protocol, Scope, Unmatched, HEADER_AGENT_KIND, HEADER_AGENT_NAME,
    HEADER_AGENT_NAMESPACE, HEADER_FORWARDED_PREFIX, HEADER_TIMEOUT,
};
use crate::openai::{self, Api, Endpoint, ModelError};
use crate::reply::LocalReply;
use crate::router::{Match, PathAction};

/// The parts of a request head the filter looks at, read in one host call.
#[derive(Debug, Default)]
pub struct RequestHead<'h> {
    pub method: &'h str,
    pub path: &'h str,
    pub authority: &'h str,
    /// `:scheme`: the listener's scheme.
    pub scheme: &'h str,
    pub forwarded_proto: Option<&'h str>,
    pub content_type: Option<&'h str>,
    pub content_encoding: Option<&'h str>,
    pub content_length: Option<u64>,
    pub flags: Flags,
    /// Client headers that spell a header the filter owns with underscores
    /// (`x_agent_name`): CGI-style backends read them as the real one.
    pub underscored: Vec<&'h str>,
}

/// Which of the headers the filter owns, or cares about, the client sent.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flags {
    /// `Upgrade` (HTTP/1.1) or `:protocol` (HTTP/2 extended CONNECT).
    pub upgrade: bool,
    pub sent_dispatch: bool,
    pub sent_identity: bool,
    pub sent_timeout: bool,
    pub sent_forwarded_prefix: bool,
    pub sent_accept_encoding: bool,
    /// `range` or `if-range`: a partial card could not be rewritten.
    pub sent_range: bool,
    /// `last-event-id`: an MCP client resuming an event stream, which may
    /// replay a `tools/list` answer.
    pub sent_last_event_id: bool,
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
                ":scheme" => head.scheme = text(value).unwrap_or_default(),
                "x-forwarded-proto" => head.forwarded_proto = text(value),
                "content-type" => head.content_type = text(value),
                "content-encoding" => head.content_encoding = text(value),
                "content-length" => {
                    head.content_length = text(value).and_then(|v| v.trim().parse().ok())
                }
                "accept-encoding" => head.flags.sent_accept_encoding = true,
                "range" | "if-range" => head.flags.sent_range = true,
                "last-event-id" => head.flags.sent_last_event_id = true,
                ":protocol" | "upgrade" => head.flags.upgrade = true,
                HEADER_AGENT_NAME | HEADER_AGENT_NAMESPACE | HEADER_AGENT_KIND => {
                    head.flags.sent_identity = true
                }
                HEADER_TIMEOUT => head.flags.sent_timeout = true,
                HEADER_FORWARDED_PREFIX => head.flags.sent_forwarded_prefix = true,
                n if n == dispatch_header => head.flags.sent_dispatch = true,
                n if n.contains('_') && is_owned_underscored(n, dispatch_header) => {
                    head.underscored.push(n)
                }
                _ => {}
            }
        }
        head
    }
}

/// Whether `name` is a header the filter owns, spelled with one or more
/// `_` for `-`.
fn is_owned_underscored(name: &str, dispatch_header: &str) -> bool {
    let same = |owned: &str| {
        owned.len() == name.len()
            && owned
                .bytes()
                .zip(name.bytes())
                .all(|(o, n)| o == n || (o == b'-' && n == b'_'))
    };
    [
        dispatch_header,
        HEADER_AGENT_NAME,
        HEADER_AGENT_NAMESPACE,
        HEADER_AGENT_KIND,
        HEADER_FORWARDED_PREFIX,
        HEADER_TIMEOUT,
    ]
    .into_iter()
    .any(same)
}

/// A header change, borrowing from the plan or the request where it can.
/// A `Set` of a header the client also sent comes after a `Remove` of it,
/// so applying the ops one by one leaves exactly one copy.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderOp<'a> {
    Set(&'a str, Cow<'a, str>),
    Remove(&'a str),
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

/// A request to forward, with what the filter must do on the way.
#[derive(Debug, PartialEq, Eq)]
pub struct Forward<'a> {
    /// The matched entry, if any.
    pub entry: Option<usize>,
    pub ops: Vec<HeaderOp<'a>>,
    /// A `GET` of an agent card: its answer is rewritten to point here.
    pub card: Option<CardAddress>,
    /// A chat completion for an A2A agent: the body is translated.
    pub translate: Option<A2aVersion>,
    /// An MCP entry with tool rules: what the filter must do first.
    pub mcp: Option<McpStep>,
}

/// What a request to an MCP entry with tool rules needs before it goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McpStep {
    /// A POST: its JSON-RPC message is read (body or metadata) and judged.
    ReadMessage,
    /// A GET resuming an event stream: a replayed `tools/list` answer is
    /// filtered like a fresh one.
    FilterReplay,
}

/// The MCP step of a request to `entry`, if it has tool rules.
fn mcp_step(plan: &Plan, entry: usize, head: &RequestHead<'_>) -> Option<McpStep> {
    plan.entries.get(entry)?.mcp.as_ref()?;
    match head.method {
        "POST" => Some(McpStep::ReadMessage),
        "GET" if head.flags.sent_last_event_id => Some(McpStep::FilterReplay),
        _ => None,
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Decision<'a> {
    Forward(Forward<'a>),
    /// Answer locally; `entry` is set when a matched request was refused.
    Reply {
        entry: Option<usize>,
        reply: LocalReply,
    },
    /// An OpenAI request that dispatches by the `model` it names: the glue
    /// gets the model (from the body or metadata) and calls [`decide_model`].
    ReadModel,
}

/// Routes one request: hosts, then path prefixes, then the OpenAI surface.
pub fn decide<'a>(plan: &'a Plan, head: &RequestHead<'a>) -> Decision<'a> {
    let Some(m) = plan.router.route(head.authority, head.path) else {
        if !plan.router.serves(head.authority) {
            // Another application's host (`gateway_hosts`): left alone.
            return pass(plan, head);
        }
        return match openai::endpoint(head.method, head.path, plan.openai.unversioned_paths) {
            Some(endpoint) => decide_openai(plan, head, endpoint),
            None => unmatched(plan, head),
        };
    };
    let mut ops = Vec::with_capacity(8);
    let rewritten = match m.path {
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
        PathAction::Keep => false,
        PathAction::Rewrite(ref path) => {
            ops.push(HeaderOp::Set(":path", Cow::Owned(path.clone())));
            if head.flags.sent_forwarded_prefix {
                ops.push(HeaderOp::Remove(HEADER_FORWARDED_PREFIX));
            }
            let prefix = if m.prefix.is_empty() { "/" } else { m.prefix };
            ops.push(HeaderOp::Set(
                HEADER_FORWARDED_PREFIX,
                Cow::Borrowed(prefix),
            ));
            true
        }
    };
    let card = card_address(head, &m);
    if card.is_some() && head.flags.sent_accept_encoding {
        // An uncompressed card, so a gzip answer is never passed off as
        // rewritten.
        ops.push(HeaderOp::Remove("accept-encoding"));
    }
    if head.flags.sent_range && head.method == "GET" && is_card_path(m.rest) {
        // A whole card: a 206 slice of one can be neither rewritten nor
        // passed on without leaking the agent's internal address.
        ops.push(HeaderOp::Remove("range"));
        ops.push(HeaderOp::Remove("if-range"));
    }
    dispatch_ops(plan, m.entry, head, rewritten, &mut ops);
    Decision::Forward(Forward {
        entry: Some(m.entry),
        ops,
        card,
        translate: None,
        mcp: mcp_step(plan, m.entry, head),
    })
}

/// For a `GET` of an agent card: the address the client used, which the
/// card's URLs are rewritten to. A card asked for under an `:authority`
/// that is not a plain `host[:port]` passes unchanged: the client's value
/// would otherwise land in a card others may get from a cache.
fn card_address(head: &RequestHead<'_>, m: &Match<'_>) -> Option<CardAddress> {
    if head.method != "GET" || !is_card_path(m.rest) || !is_plain_authority(head.authority) {
        return None;
    }
    // The first hop's scheme when a proxy in front says so, else ours.
    let forwarded = head
        .forwarded_proto
        .and_then(|p| p.split(',').next())
        .map(str::trim)
        .filter(|p| p.eq_ignore_ascii_case("http") || p.eq_ignore_ascii_case("https"));
    let scheme = forwarded
        .or(Some(head.scheme).filter(|s| !s.is_empty()))
        .unwrap_or("http")
        .to_ascii_lowercase();
    Some(CardAddress {
        scheme,
        authority: head.authority.to_string(),
        prefix: m.prefix.to_string(),
        root: m.root.to_string(),
    })
}

fn decide_openai<'a>(
    plan: &'a Plan,
    head: &RequestHead<'a>,
    endpoint: Endpoint<'_>,
) -> Decision<'a> {
    let reply = match endpoint {
        Endpoint::ListModels => LocalReply::json(200, openai::models_body(plan).to_string()),
        Endpoint::GetModel(id) => openai::model_reply(plan, &id),
        Endpoint::Dispatch(_) => match openai::check_body_headers(
            head.content_type,
            head.content_encoding,
            head.content_length,
            plan.openai.max_body_bytes,
        ) {
            Ok(()) => return Decision::ReadModel,
            Err(reply) => reply,
        },
    };
    Decision::Reply { entry: None, reply }
}

/// Dispatches an OpenAI request by its model: path and body unchanged for
/// an OpenAI backend; translated for an A2A agent.
pub fn decide_model<'a>(
    plan: &'a Plan,
    head: &RequestHead<'a>,
    model: Result<&str, &ModelError>,
) -> Decision<'a> {
    let entry = match model
        .map_err(ModelError::reply)
        .and_then(|m| openai::entry_for_model(plan, m))
    {
        Ok(entry) => entry,
        Err(reply) => return Decision::Reply { entry: None, reply },
    };
    let mut ops = Vec::with_capacity(12);
    let mut translate = None;
    if let Some(Protocol::A2a { version, path }) = plan.entries.get(entry).map(|e| &e.protocol) {
        let endpoint = openai::endpoint(head.method, head.path, plan.openai.unversioned_paths);
        if endpoint != Some(Endpoint::Dispatch(Api::Chat)) {
            return Decision::Reply {
                entry: Some(entry),
                reply: LocalReply::error(
                    400,
                    "invalid_request_error",
                    Some("unsupported_endpoint"),
                    None,
                    "this model is an A2A agent: only chat completions are translated for it",
                ),
            };
        }
        translate = Some(*version);
        ops.push(HeaderOp::Set(":path", Cow::Borrowed(path)));
        // The body is replaced: its length and encoding are the filter's.
        ops.push(HeaderOp::Remove("content-length"));
        if head.flags.sent_accept_encoding {
            ops.push(HeaderOp::Remove("accept-encoding"));
        }
        ops.push(HeaderOp::Set(
            "a2a-version",
            Cow::Borrowed(match version {
                A2aVersion::V1_0 => "1.0",
                A2aVersion::V0_3 => "0.3",
            }),
        ));
        ops.push(HeaderOp::Set(
            "content-type",
            Cow::Borrowed("application/json"),
        ));
        ops.push(HeaderOp::Set(
            "accept",
            Cow::Borrowed("application/json, text/event-stream"),
        ));
    }
    if head.flags.sent_forwarded_prefix {
        ops.push(HeaderOp::Remove(HEADER_FORWARDED_PREFIX));
    }
    dispatch_ops(plan, entry, head, true, &mut ops);
    Decision::Forward(Forward {
        entry: Some(entry),
        ops,
        card: None,
        translate,
        mcp: None,
    })
}

/// The headers every dispatched request gets, by path, host or model.
/// `prefix_handled` says the caller already dealt with `x-forwarded-prefix`.
fn dispatch_ops<'a>(
    plan: &'a Plan,
    entry: usize,
    head: &RequestHead<'a>,
    prefix_handled: bool,
    ops: &mut Vec<HeaderOp<'a>>,
) {
    let Some(e) = plan.entries.get(entry) else {
        return;
    };
    strip_owned(plan, head, ops);
    if !prefix_handled && head.flags.sent_forwarded_prefix {
        // The path reaches the agent as sent: a client-made prefix header
        // would have the backend build wrong redirects.
        ops.push(HeaderOp::Remove(HEADER_FORWARDED_PREFIX));
    }
    ops.push(HeaderOp::Set(
        &plan.dispatch_header,
        Cow::Borrowed(&e.backend),
    ));
    if plan.identity_headers {
        ops.push(HeaderOp::Set(HEADER_AGENT_NAME, Cow::Borrowed(&e.name)));
        ops.push(HeaderOp::Set(
            HEADER_AGENT_NAMESPACE,
            Cow::Borrowed(&e.namespace),
        ));
        ops.push(HeaderOp::Set(
            HEADER_AGENT_KIND,
            Cow::Borrowed(e.kind.as_str()),
        ));
    }
    if head.flags.sent_timeout {
        ops.push(HeaderOp::Remove(HEADER_TIMEOUT));
    }
    // A token budget reads `usage` from the answer: ask for it uncompressed.
    let budgeted = e.rate_limit.as_ref().is_some_and(|l| match l.scope {
        Scope::Local { tokens, .. } => tokens.is_some(),
        Scope::Global { tokens } => tokens,
    });
    let accept_encoding = HeaderOp::Remove("accept-encoding");
    if budgeted && head.flags.sent_accept_encoding && !ops.contains(&accept_encoding) {
        ops.push(accept_encoding);
    }
    // Upgraded streams (WebSocket) live as long as they need: no timeout.
    if let (Some(ms), false) = (&e.timeout_ms, head.flags.upgrade) {
        ops.push(HeaderOp::Set(HEADER_TIMEOUT, Cow::Borrowed(ms)));
    }
}

fn unmatched<'a>(plan: &'a Plan, head: &RequestHead<'a>) -> Decision<'a> {
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
    pass(plan, head)
}

/// Forwards a request no entry takes, minus client copies of the headers
/// the filter owns.
fn pass<'a>(plan: &'a Plan, head: &RequestHead<'a>) -> Decision<'a> {
    let mut ops = Vec::new();
    strip_owned(plan, head, &mut ops);
    Decision::Forward(Forward {
        entry: None,
        ops,
        card: None,
        translate: None,
        mcp: None,
    })
}

/// Removes client-sent dispatch and identity headers, in either spelling: a
/// client must never pick a backend or claim an identity, matched or not.
fn strip_owned<'a>(plan: &'a Plan, head: &RequestHead<'a>, ops: &mut Vec<HeaderOp<'a>>) {
    if head.flags.sent_dispatch {
        ops.push(HeaderOp::Remove(&plan.dispatch_header));
    }
    if head.flags.sent_identity {
        ops.extend(
            [HEADER_AGENT_NAME, HEADER_AGENT_NAMESPACE, HEADER_AGENT_KIND]
                .into_iter()
                .map(HeaderOp::Remove),
        );
    }
    ops.extend(head.underscored.iter().map(|n| HeaderOp::Remove(n)));
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"{
        "agents": [
            {"name": "coordinator", "namespace": "prod", "backend": "c-backend", "timeout": "300s",
             "hosts": ["coord.example.com"], "prefixes": [{"prefix": "/cs"}, {"prefix": "/tick", "rewrite": "/tock"}]},
            {"name": "tools", "namespace": "prod", "kind": "mcp", "backend": "t-backend"},
            {"name": "fast", "kind": "modelapi", "backend": "f-backend", "timeout": "0s"},
            {"name": "echo", "namespace": "prod", "backend": "e-backend", "protocol": "a2a",
             "a2a": {"path": "/rpc", "version": "0.3"}, "models": ["echo-model"]}
        ]
    }"#;

    fn plan(json: &str) -> Plan {
        Plan::from_json(json.as_bytes()).unwrap()
    }

    fn headers<'a>(pairs: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a [u8])> {
        pairs.iter().map(|(k, v)| (*k, v.as_bytes())).collect()
    }

    fn head<'a>(plan: &Plan, pairs: &'a [(&'a str, &'a [u8])]) -> RequestHead<'a> {
        RequestHead::from_pairs(pairs, &plan.dispatch_header)
    }

    fn forward<'p>(plan: &'p Plan, pairs: &[(&'p str, &'p str)]) -> Forward<'p> {
        let h: &'p [(&'p str, &'p [u8])] = Box::leak(headers(pairs).into_boxed_slice());
        match decide(plan, &head(plan, h)) {
            Decision::Forward(f) => f,
            other => panic!("expected forward, got {other:?}"),
        }
    }

    fn set<'a>(ops: &'a [HeaderOp<'_>], name: &str) -> Option<&'a str> {
        ops.iter().find_map(|op| match op {
            HeaderOp::Set(n, v) if *n == name => Some(v.as_ref()),
            _ => None,
        })
    }

    fn removes(ops: &[HeaderOp<'_>], name: &str) -> bool {
        ops.contains(&HeaderOp::Remove(name))
    }

    #[test]
    fn layout_match_sets_dispatch_identity_timeout_and_rewrites() {
        let p = plan(CONFIG);
        let f = forward(
            &p,
            &[
                (":path", "/prod/agent/coordinator/tasks?x=1"),
                (":authority", "gw"),
            ],
        );
        assert_eq!(f.entry, Some(0));
        let ops = &f.ops;
        assert_eq!(set(ops, ":path"), Some("/tasks?x=1"));
        assert_eq!(set(ops, "x-agent-backend"), Some("c-backend"));
        assert_eq!(set(ops, "x-agent-name"), Some("coordinator"));
        assert_eq!(set(ops, "x-agent-namespace"), Some("prod"));
        assert_eq!(set(ops, "x-agent-kind"), Some("agent"));
        assert_eq!(
            set(ops, "x-forwarded-prefix"),
            Some("/prod/agent/coordinator")
        );
        assert_eq!(set(ops, "x-envoy-upstream-rq-timeout-ms"), Some("300000"));
        assert!(
            !ops.iter().any(|op| matches!(op, HeaderOp::Remove(_))),
            "a clean request costs no removals: {ops:?}"
        );
    }

    #[test]
    fn identity_headers_can_be_turned_off_but_client_copies_still_go() {
        let p = plan(r#"{"identity_headers": false, "agents": [{"name": "a", "backend": "b"}]}"#);
        let f = forward(
            &p,
            &[
                (":path", "/a/x"),
                ("x-agent-name", "evil"),
                ("x_agent_kind", "evil"),
            ],
        );
        assert_eq!(set(&f.ops, "x-agent-name"), None);
        assert_eq!(set(&f.ops, "x-agent-backend"), Some("b"));
        assert!(removes(&f.ops, "x-agent-name"));
        assert!(removes(&f.ops, "x_agent_kind"));
    }

    #[test]
    fn kind_defaults_and_zero_timeout() {
        let p = plan(CONFIG);
        let f = forward(&p, &[(":path", "/prod/tools"), (":authority", "gw")]);
        assert_eq!(set(&f.ops, "x-envoy-upstream-rq-timeout-ms"), Some("30000"));
        let f = forward(
            &p,
            &[
                (":path", "/fast/x"),
                (":authority", "gw"),
                ("x-envoy-upstream-rq-timeout-ms", "1"),
            ],
        );
        assert_eq!(set(&f.ops, "x-envoy-upstream-rq-timeout-ms"), None);
        assert!(removes(&f.ops, "x-envoy-upstream-rq-timeout-ms"));
    }

    #[test]
    fn upgrades_get_no_timeout() {
        let p = plan(CONFIG);
        let f = forward(
            &p,
            &[
                (":path", "/coordinator/ws"),
                (":authority", "gw"),
                ("upgrade", "websocket"),
            ],
        );
        assert_eq!(set(&f.ops, "x-envoy-upstream-rq-timeout-ms"), None);
        assert_eq!(set(&f.ops, ":path"), Some("/ws"));
    }

    #[test]
    fn host_match_keeps_path_and_drops_client_prefix_header() {
        let p = plan(CONFIG);
        let f = forward(
            &p,
            &[
                (":path", "/prod/agent/tools/x"),
                (":authority", "Coord.Example.com:443"),
                ("x-forwarded-prefix", "/evil"),
            ],
        );
        assert_eq!(f.entry, Some(0));
        assert_eq!(set(&f.ops, ":path"), None);
        assert!(removes(&f.ops, "x-forwarded-prefix"));
    }

    #[test]
    fn underscore_spellings_of_owned_headers_are_removed() {
        let p = plan(CONFIG);
        let f = forward(
            &p,
            &[
                (":path", "/prod/tools"),
                ("x_agent_name", "evil"),
                ("x-agent_namespace", "evil"),
                ("x_agent_backend", "evil"),
                ("x_forwarded_prefix", "/evil"),
                ("x_envoy_upstream_rq_timeout_ms", "1"),
                ("x_other", "kept"),
            ],
        );
        for name in [
            "x_agent_name",
            "x-agent_namespace",
            "x_agent_backend",
            "x_forwarded_prefix",
            "x_envoy_upstream_rq_timeout_ms",
        ] {
            assert!(removes(&f.ops, name), "{name}");
        }
        assert!(!removes(&f.ops, "x_other"));
        // Unmatched requests lose them too.
        let f = forward(
            &p,
            &[(":path", "/nothing"), ("x_agent_backend", "t-backend")],
        );
        assert_eq!(f.entry, None);
        assert!(removes(&f.ops, "x_agent_backend"));
    }

    #[test]
    fn unmatched_pass_strips_client_dispatch_and_identity() {
        let p = plan(CONFIG);
        let f = forward(
            &p,
            &[
                (":path", "/nothing"),
                (":authority", "gw"),
                ("x-agent-backend", "t-backend"),
                ("x-agent-name", "tools"),
            ],
        );
        assert_eq!(f.entry, None);
        assert!(removes(&f.ops, "x-agent-backend"));
        assert!(removes(&f.ops, "x-agent-name"));
        let f = forward(&p, &[(":path", "/nothing"), (":authority", "gw")]);
        assert!(
            f.ops.is_empty(),
            "no host calls for a clean unmatched request"
        );
    }

    #[test]
    fn unmatched_reject_and_dot_segments_reply() {
        let p = plan(
            r#"{"unmatched": "reject", "agents": [{"name": "a", "backend": "b", "hosts": ["h.example.com"]}]}"#,
        );
        for (path, host, status, entry) in [
            ("/nope", "gw", 404, None),
            ("/a/%2e%2e/admin", "gw", 400, Some(0)),
            ("/x/%2e%2e/../admin", "h.example.com", 400, Some(0)),
        ] {
            let h = headers(&[(":path", path), (":authority", host)]);
            let Decision::Reply { reply, entry: e } = decide(&p, &head(&p, &h)) else {
                panic!("expected a reply for {host}{path}");
            };
            assert_eq!((reply.status, e), (status, entry), "{host}{path}");
        }
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
            ("x-forwarded-prefix", "/evil"),
        ]);
        let hd = head(&p, &h);
        assert_eq!(decide(&p, &hd), Decision::ReadModel);
        let Decision::Forward(f) = decide_model(&p, &hd, Ok("m")) else {
            panic!("expected a dispatch");
        };
        assert_eq!(f.entry, Some(0));
        assert_eq!(f.ops.first(), Some(&HeaderOp::Remove("x-forwarded-prefix")));
        assert!(removes(&f.ops, "x-agent-backend"));
        assert_eq!(set(&f.ops, "x-agent-backend"), Some("l"));
        assert_eq!(set(&f.ops, "x-envoy-upstream-rq-timeout-ms"), Some("9000"));
        assert_eq!(set(&f.ops, ":path"), None, "model dispatch keeps the path");
        assert_eq!(f.translate, None);
        let Decision::Reply { reply, .. } = decide_model(&p, &hd, Ok("other")) else {
            panic!("expected a reply");
        };
        assert_eq!(reply.status, 404);
        // A body the headers already rule out is refused before it is read.
        let h = headers(&[
            (":method", "POST"),
            (":path", "/v1/embeddings"),
            ("content-length", "2000000"),
        ]);
        let Decision::Reply { reply, .. } = decide(&p, &head(&p, &h)) else {
            panic!("expected a reply");
        };
        assert_eq!(reply.status, 413);
        // Agent paths win over the OpenAI surface.
        let f = forward(
            &p,
            &[
                (":method", "POST"),
                (":path", "/default/modelapi/llm/v1/chat/completions"),
            ],
        );
        assert_eq!(
            (f.entry, set(&f.ops, ":path")),
            (Some(0), Some("/v1/chat/completions"))
        );
    }

    #[test]
    fn chats_with_a2a_agents_are_translated() {
        let p = plan(CONFIG);
        let h = headers(&[
            (":method", "POST"),
            (":path", "/v1/chat/completions"),
            ("content-length", "120"),
            ("accept-encoding", "gzip"),
        ]);
        let hd = head(&p, &h);
        let Decision::Forward(f) = decide_model(&p, &hd, Ok("prod/echo")) else {
            panic!("expected a dispatch");
        };
        assert_eq!(f.translate, Some(A2aVersion::V0_3));
        assert_eq!(set(&f.ops, ":path"), Some("/rpc"));
        assert_eq!(set(&f.ops, "a2a-version"), Some("0.3"));
        assert!(removes(&f.ops, "content-length"));
        assert!(removes(&f.ops, "accept-encoding"));
        assert_eq!(set(&f.ops, "x-agent-backend"), Some("e-backend"));
        // Only chat completions translate.
        let h = headers(&[(":method", "POST"), (":path", "/v1/embeddings")]);
        let Decision::Reply { reply, .. } = decide_model(&p, &head(&p, &h), Ok("echo-model"))
        else {
            panic!("expected a reply");
        };
        assert_eq!(reply.status, 400);
    }

    #[test]
    fn card_requests_carry_the_address_the_client_used() {
        let p = plan(CONFIG);
        let card = |pairs: &[(&'static str, &'static str)]| forward(&p, pairs).card;
        let c = card(&[
            (":method", "GET"),
            (":path", "/prod/agent/echo/.well-known/agent-card.json?x=1"),
            (":authority", "gw.example.com:8443"),
            (":scheme", "http"),
            ("x-forwarded-proto", "https"),
        ])
        .unwrap();
        assert_eq!(
            c,
            CardAddress {
                scheme: "https".into(),
                authority: "gw.example.com:8443".into(),
                prefix: "/prod/agent/echo".into(),
                root: "/".into()
            }
        );
        let c = card(&[
            (":method", "GET"),
            (":path", "/tick/.well-known/agent.json"),
            (":authority", "gw"),
            (":scheme", "http"),
        ])
        .unwrap();
        assert_eq!(
            (c.scheme.as_str(), c.prefix.as_str(), c.root.as_str()),
            ("http", "/tick", "/tock")
        );
        let c = card(&[
            (":method", "GET"),
            (":path", "/.well-known/agent-card.json"),
            (":authority", "coord.example.com"),
        ])
        .unwrap();
        assert_eq!((c.prefix.as_str(), c.root.as_str()), ("", "/"));
        assert!(card(&[
            (":method", "POST"),
            (":path", "/prod/echo/.well-known/agent.json")
        ])
        .is_none());
        assert!(card(&[
            (":method", "GET"),
            (":path", "/prod/echo/x/.well-known/agent.json")
        ])
        .is_none());
        let f = forward(
            &p,
            &[
                (":method", "GET"),
                (":path", "/prod/echo/.well-known/agent.json"),
                (":authority", "gw"),
                ("accept-encoding", "gzip, br"),
                ("range", "bytes=0-10"),
            ],
        );
        assert!(
            removes(&f.ops, "accept-encoding"),
            "cards are fetched uncompressed"
        );
        assert!(
            removes(&f.ops, "range") && removes(&f.ops, "if-range"),
            "cards are fetched whole"
        );
        // Other spellings of the card path are cards too: the decision is on
        // the path the agent gets.
        for path in [
            "/prod/agent/echo//.well-known/agent-card.json",
            "/prod/agent/echo/.well-known/agent%2Dcard.json",
            "/prod/echo/.well-known/agent",
        ] {
            let c = card(&[(":method", "GET"), (":path", path), (":authority", "gw")]);
            assert!(c.is_some(), "{path}");
        }
        // A client-made authority never reaches a card.
        for authority in ["gw.example.com@attacker.example", "a b", ""] {
            let c = card(&[
                (":method", "GET"),
                (":path", "/prod/echo/.well-known/agent.json"),
                (":authority", authority),
            ]);
            assert!(c.is_none(), "{authority:?}");
        }
    }

    #[test]
    fn token_budgeted_requests_ask_for_uncompressed_answers() {
        let p = plan(
            r#"{"agents": [
            {"name": "llm", "backend": "l", "rate_limit": {"tokens_per_minute": 100}},
            {"name": "plain", "backend": "p", "rate_limit": {"requests_per_second": 1}}]}"#,
        );
        let f = forward(
            &p,
            &[
                (":path", "/llm/v1/chat/completions"),
                ("accept-encoding", "gzip"),
            ],
        );
        assert!(removes(&f.ops, "accept-encoding"));
        let f = forward(&p, &[(":path", "/plain/x"), ("accept-encoding", "gzip")]);
        assert!(!removes(&f.ops, "accept-encoding"));
    }

    #[test]
    fn gateway_hosts_confine_paths_and_the_openai_surface() {
        let p = plan(
            r#"{"gateway_hosts": ["agents.example.com", "*.gw.example.com"], "unmatched": "reject",
                "agents": [
                  {"name": "support", "backend": "s", "hosts": ["support.example.com"]},
                  {"name": "llm", "kind": "modelapi", "backend": "l", "models": ["m"]}]}"#,
        );
        let decide_at = |host: &'static str, method: &'static str, path: &'static str| {
            let h: &'static [(&'static str, &'static [u8])] = Box::leak(
                headers(&[
                    (":authority", host),
                    (":method", method),
                    (":path", path),
                    ("x-agent-backend", "evil"),
                ])
                .into_boxed_slice(),
            );
            decide(&p, &head(&p, h))
        };
        // Another application's host: shorthand, layouts and the OpenAI
        // surface are left alone, even with `unmatched: reject`, but client
        // copies of owned headers still go.
        for (method, path) in [
            ("GET", "/support/faq"),
            ("GET", "/default/agent/support"),
            ("GET", "/models"),
            ("GET", "/v1/models"),
            ("POST", "/v1/chat/completions"),
        ] {
            let Decision::Forward(f) = decide_at("www.example.com", method, path) else {
                panic!("{method} {path} on another host must pass");
            };
            assert_eq!(f.entry, None, "{path}");
            assert_eq!(f.ops, vec![HeaderOp::Remove("x-agent-backend")], "{path}");
        }
        // Gateway hosts, exact and wildcard, any case and port.
        for host in [
            "agents.example.com",
            "AGENTS.example.com:8443",
            "a.b.gw.example.com",
        ] {
            let Decision::Forward(f) = decide_at(host, "GET", "/support/faq") else {
                panic!("{host}");
            };
            assert_eq!(f.entry, Some(0), "{host}");
            assert_eq!(
                decide_at(host, "POST", "/v1/chat/completions"),
                Decision::ReadModel
            );
            assert!(matches!(
                decide_at(host, "GET", "/nothing"),
                Decision::Reply { .. }
            ));
        }
        // Host routes answer on their own host whatever gateway_hosts says.
        let Decision::Forward(f) = decide_at("support.example.com", "GET", "/faq") else {
            panic!("host route");
        };
        assert_eq!(f.entry, Some(0));
    }

    #[test]
    fn unversioned_paths_and_agent_models_can_be_turned_off() {
        let p = plan(
            r#"{"openai": {"unversioned_paths": false, "agent_models": false}, "agents": [
                  {"name": "models", "backend": "a"},
                  {"name": "bot", "namespace": "prod", "backend": "b", "models": ["bot-v1"]}]}"#,
        );
        let h = headers(&[(":method", "GET"), (":path", "/models/x")]);
        let Decision::Forward(f) = decide(&p, &head(&p, &h)) else {
            panic!("/models is an agent's shorthand once the bare paths are off");
        };
        assert_eq!(f.entry, Some(0));
        let h = headers(&[(":method", "POST"), (":path", "/chat/completions")]);
        assert!(matches!(
            decide(&p, &head(&p, &h)),
            Decision::Forward(Forward { entry: None, .. })
        ));
        let h = headers(&[(":method", "POST"), (":path", "/v1/chat/completions")]);
        let hd = head(&p, &h);
        assert_eq!(decide(&p, &hd), Decision::ReadModel);
        assert!(matches!(
            decide_model(&p, &hd, Ok("prod/bot")),
            Decision::Reply {
                reply: LocalReply { status: 404, .. },
                ..
            }
        ));
        assert!(matches!(
            decide_model(&p, &hd, Ok("bot-v1")),
            Decision::Forward(Forward { entry: Some(1), .. })
        ));
        assert!(!openai::models_body(&p).contains("prod/bot"));
    }

    #[test]
    fn mcp_entries_with_tool_rules_read_posts_and_watch_replays() {
        let p = plan(
            r#"{"agents": [
            {"name": "ruled", "kind": "mcp", "backend": "r", "mcp": {"tools": {"deny": ["rm"]}}},
            {"name": "open", "kind": "mcp", "backend": "o"}]}"#,
        );
        let step = |method: &'static str, path: &'static str, resume: bool| {
            let mut pairs = vec![(":method", method), (":path", path)];
            if resume {
                pairs.push(("last-event-id", "7"));
            }
            forward(&p, &pairs).mcp
        };
        assert_eq!(
            step("POST", "/ruled/mcp", false),
            Some(McpStep::ReadMessage)
        );
        assert_eq!(step("GET", "/ruled/mcp", true), Some(McpStep::FilterReplay));
        assert_eq!(step("GET", "/ruled/mcp", false), None);
        assert_eq!(step("DELETE", "/ruled/mcp", false), None);
        assert_eq!(step("POST", "/open/mcp", false), None, "no rules, no cost");
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
            HeaderOp::Remove("x-agent-backend"),
            HeaderOp::Set("x-agent-backend", Cow::Borrowed("b")),
            HeaderOp::Remove("x-envoy-upstream-rq-timeout-ms"),
        ];
        assert_eq!(
            apply_to(&pairs, &ops),
            headers(&[("accept", "*/*"), (":path", "/x"), ("x-agent-backend", "b")])
        );
    }
}
