//! `check --explain`: one request through the filter's own decision code.

use std::fmt;

use serde_json::Value;

mod access;

use access::{Asked, ExplainCaller};

use agentroute::canary::{self, How, Side, COHORTS};
use agentroute::config::{CanaryBy, Plan};
use agentroute::cors::Answer;
use agentroute::llm::Provider;
use agentroute::mcp::judge::{judge, unknown_tool, McpHeaders, Verdict};
use agentroute::mcp::rpc::{Message, Name, TOOLS_CALL};
use agentroute::request::{
    cors_policy, decide, decide_model, Decision, Forward, HeaderOp, McpStep, RequestHead, Translate,
};

/// A request to explain: what a client would send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExplainRequest {
    pub method: String,
    /// `:path`, query included.
    pub path: String,
    /// `:authority`; empty when not given.
    pub host: String,
    /// The `model` an OpenAI request body names.
    pub model: Option<String>,
    /// The tool a `tools/call` to an MCP entry names (`params.name`).
    pub mcp_tool: Option<String>,
    /// Other request headers, names as sent (lowercased before use).
    pub headers: Vec<(String, String)>,
    /// The client's address, for a canary split by `client_ip`.
    pub client_ip: Option<String>,
    /// The caller's verified claims (`--claims`), a JSON object; `None`: a
    /// request without a verified identity.
    pub claims: Option<Value>,
}

/// The client an explanation assumes: `--client-ip`, and no random draw
/// (a side left to chance is said to be).
struct ExplainClient<'a>(Option<&'a str>);

impl canary::Client for ExplainClient<'_> {
    fn ip(&self) -> Option<Vec<u8>> {
        self.0.map(|ip| ip.as_bytes().to_vec())
    }

    /// The last cohort: a side left to chance shows as stable (weights
    /// of 100 never draw).
    fn random(&self) -> u64 {
        u64::from(COHORTS) - 1
    }
}

/// The entry a request went to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryRef {
    /// Index in `agents[]`.
    pub index: usize,
    /// `namespace/name`.
    pub id: String,
    pub kind: &'static str,
    pub backend: String,
}

/// What the filter does with the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// On to Envoy's routes, with these changes.
    Forward {
        /// The `:path` upstream (the request's own when not rewritten).
        path: String,
        rewritten: bool,
        /// Header changes in the order the filter makes them (`:path` left
        /// out: see `path`); `None` is a removal.
        headers: Vec<(String, Option<String>)>,
        /// The translation, when the body is translated (`A2A 1.0`,
        /// `OpenAI chat -> Anthropic Messages`, ...).
        translate: Option<String>,
        /// An agent card whose URLs the answer gets rewritten to.
        card: Option<String>,
    },
    /// The filter answers itself.
    Reply {
        status: u32,
        /// The OpenAI-shaped error's `code` and `message`, when it is one.
        code: Option<String>,
        message: Option<String>,
    },
    /// An OpenAI request the body's `model` dispatches: pass `--model`.
    NeedsModel,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub request: ExplainRequest,
    pub entry: Option<EntryRef>,
    /// How the entry was chosen: `host`, `path prefix /p`, `model m`.
    pub matched_by: Option<String>,
    /// What the entry's `access` rules make of the caller, naming the rule.
    pub access: Option<String>,
    pub outcome: Outcome,
    /// Which side of the entry's canary split the request lands on, and why.
    pub canary: Option<String>,
    /// What the answer's CORS headers are, for a request with an `Origin`.
    pub cors: Option<String>,
    /// What the explanation could not take into account.
    pub notes: Vec<String>,
}

impl Explanation {
    /// The path the backend sees, when the request is forwarded.
    pub fn upstream_path(&self) -> Option<&str> {
        match &self.outcome {
            Outcome::Forward { path, .. } => Some(path),
            _ => None,
        }
    }
}

/// Runs one request through the filter's decision code.
pub fn explain(plan: &Plan, request: &ExplainRequest) -> Explanation {
    let method = if request.method.is_empty() {
        if request.model.is_some() || request.mcp_tool.is_some() {
            "POST"
        } else {
            "GET"
        }
    } else {
        request.method.as_str()
    };
    let lowered: Vec<(String, &str)> = request
        .headers
        .iter()
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim()))
        .collect();
    let mut pairs: Vec<(&str, &[u8])> = vec![
        (":method", method.as_bytes()),
        (":path", request.path.as_bytes()),
        (":authority", request.host.as_bytes()),
        (":scheme", b"http"),
    ];
    pairs.extend(lowered.iter().map(|(k, v)| (k.as_str(), v.as_bytes())));
    // A client naming a model or a tool sends JSON.
    if (request.model.is_some() || request.mcp_tool.is_some())
        && !lowered.iter().any(|(k, _)| k == "content-type")
    {
        pairs.push(("content-type", b"application/json"));
    }
    let client = ExplainClient(request.client_ip.as_deref());
    let mut notes = Vec::new();
    let caller = ExplainCaller::new(request.claims.as_ref()).unwrap_or_else(|| {
        notes.push("--claims is no JSON object: explained without an identity".into());
        ExplainCaller::anonymous()
    });
    let head = RequestHead::from_pairs(&pairs, &plan.dispatch_header)
        .with_client(&client)
        .with_caller(caller.caller());
    let mut matched_by = plan.route(head.authority, head.path).map(|m| {
        if m.prefix.is_empty() {
            "host".to_string()
        } else {
            format!("path prefix {}", m.prefix)
        }
    });
    let mut decision = decide(plan, &head);
    let cors = head.origin.map(|origin| {
        match cors_policy(plan, &head, &decision).map(|p| p.answer(origin)) {
            _ if matches!(decision, Decision::Preflight(_)) => preflight_policy(plan, &head),
            Some(Answer::Allowed(headers)) => {
                let list: Vec<String> = headers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                format!("origin allowed: the answer gets {}", list.join(", "))
            }
            Some(Answer::Disallowed) => {
                "origin not allowed: the answer gets no access-control-* header (the backend's are removed), and vary: origin".to_string()
            }
            None => "no CORS policy applies: the answer is left as it is".to_string(),
        }
    });
    if decision == Decision::ReadModel {
        match &request.model {
            Some(model) => {
                decision = decide_model(plan, &head, Ok(model));
                matched_by = Some(format!("model {model}"));
            }
            None => {
                return Explanation {
                    request: request.clone(),
                    entry: None,
                    matched_by: None,
                    access: None,
                    outcome: Outcome::NeedsModel,
                    canary: None,
                    cors: None,
                    notes,
                }
            }
        }
    } else if request.model.is_some() {
        notes.push("--model is not used: this request is not dispatched by its model".into());
    }
    let entry_ref = |i: usize| {
        plan.entries.get(i).map(|e| EntryRef {
            index: i,
            id: e.id.clone(),
            kind: e.kind.as_str(),
            backend: e.backend.clone(),
        })
    };
    let mut canary_line = None;
    if let Decision::Forward(f) = &decision {
        if let (Some(choice), Some(e)) = (&f.canary, f.entry.and_then(|i| plan.entries.get(i))) {
            canary_line = e.canary.as_ref().map(|c| describe_canary(c, choice, &head));
        }
    }
    let by_model = request.model.as_deref().filter(|_| {
        matched_by
            .as_deref()
            .is_some_and(|m| m.starts_with("model "))
    });
    // The entry whose policy answered a preflight (shown, but no entry's
    // access or limits apply to a preflight).
    let mut preflight_entry = None;
    let (entry, outcome) = match decision {
        Decision::Forward(f) if f.mcp == Some(McpStep::ReadMessage) => {
            match judge_tool_call(plan, &f, request, &lowered, &mut notes) {
                Some(reply) => (f.entry, reply),
                None => forward_outcome(f, request, &mut notes),
            }
        }
        Decision::Forward(f) => {
            if request.mcp_tool.is_some() {
                notes.push(
                    "--mcp-tool is not used: this request is no POST to an MCP entry with tool rules"
                        .into(),
                );
            }
            forward_outcome(f, request, &mut notes)
        }
        Decision::Reply { entry, reply } => {
            if let Some((_, challenge)) =
                reply.headers.iter().find(|(k, _)| *k == "www-authenticate")
            {
                notes.push(format!("the 401 says www-authenticate: {challenge}"));
            }
            (entry, reply_outcome(&reply))
        }
        Decision::Preflight(reply) => {
            preflight_entry = plan.route(head.authority, head.path).map(|m| m.entry);
            let headers: Vec<String> = reply
                .headers
                .iter()
                .filter(|(k, _)| k.starts_with("access-control-"))
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            if !headers.is_empty() {
                notes.push(format!("preflight answer headers: {}", headers.join(", ")));
            }
            (None, reply_outcome(&reply))
        }
        Decision::ReadModel => (None, Outcome::NeedsModel),
    };
    let limits = entry.and_then(|i| plan.entries.get(i));
    if let (Some(e), Outcome::Forward { .. }) = (limits, &outcome) {
        if e.rate_limit.is_some() {
            notes.push(
                "the entry's rate_limit applies: over it, the answer is 429 (not simulated here)"
                    .into(),
            );
        }
        if let Some(c) = &e.concurrency {
            notes.push(format!(
                "the entry's concurrency limit applies: with {} request(s) in flight{}, the answer is 429 (not simulated here)",
                c.max_in_flight,
                if c.per == agentroute::config::Per::Entry { "" } else { " for this client" }
            ));
        }
    }
    let asked = Asked {
        method,
        model: by_model,
        tool: request.mcp_tool.as_deref(),
    };
    let access = access::line(plan, entry, &request.path, asked, &outcome, &caller);
    notes.extend(access::note(
        plan,
        &request.path,
        asked,
        access.is_some(),
        &caller,
    ));
    let entry = entry.or(preflight_entry).and_then(entry_ref);
    if entry.is_none() {
        matched_by = None;
    }
    Explanation {
        request: request.clone(),
        entry,
        matched_by,
        access,
        outcome,
        canary: canary_line,
        cors,
        notes,
    }
}

/// A forwarded request's upstream path, header changes and extras.
fn forward_outcome(
    f: Forward<'_>,
    request: &ExplainRequest,
    notes: &mut Vec<String>,
) -> (Option<usize>, Outcome) {
    let mut path = request.path.clone();
    let mut rewritten = false;
    let mut headers = Vec::new();
    for op in &f.ops {
        match op {
            HeaderOp::Set(":path", to) => {
                path = to.to_string();
                rewritten = true;
            }
            HeaderOp::Set(name, value) => headers.push((name.to_string(), Some(value.to_string()))),
            HeaderOp::Remove(name) => headers.push((name.to_string(), None)),
        }
    }
    let translate = f.translate.map(|t| {
        let (what, note) = translation_names(t);
        notes.push(note.into());
        what
    });
    let card = f
        .card
        .map(|c| format!("{}://{}{}", c.scheme, c.authority, c.prefix));
    let outcome = Outcome::Forward {
        path,
        rewritten,
        headers,
        translate,
        card,
    };
    (f.entry, outcome)
}

/// What a translation is called on the `forward` line, and its note.
fn translation_names(t: Translate<'_>) -> (String, &'static str) {
    match t {
        Translate::A2a(version) => (
            format!("A2A {}", version.as_str()),
            "the chat completion body is translated to an A2A message",
        ),
        Translate::Chat(api) if api.provider == Provider::Gemini => (
            "OpenAI chat -> Gemini generateContent".to_string(),
            "the chat completion is translated to Gemini's generateContent (the model in the path), and the answer (JSON or SSE) back to OpenAI's; the client's credential headers are removed (Envoy injects the provider's)",
        ),
        Translate::Chat(_) => (
            "OpenAI chat -> Anthropic Messages".to_string(),
            "the chat completion is translated to Anthropic's Messages API, and the answer (JSON or SSE) back to OpenAI's; the client's credential headers are removed (Envoy injects the provider's)",
        ),
        Translate::Messages(_) => (
            "Anthropic Messages -> OpenAI chat".to_string(),
            "the Messages request is translated to an OpenAI chat completion, and the answer (JSON or SSE) back to Anthropic's events; the client's credential headers are removed",
        ),
        Translate::CountTokens => (
            "count_tokens answered by the gateway".to_string(),
            "the backend speaks OpenAI, which has no count_tokens: the gateway answers with an estimate (about 4 bytes a token)",
        ),
    }
}

/// A POST to an MCP entry with tool rules: what the rules do with a
/// `tools/call` of `--mcp-tool` (and the `mcp-method` / `mcp-name`
/// headers given); `Some` when the filter answers it itself.
fn judge_tool_call(
    plan: &Plan,
    f: &Forward<'_>,
    request: &ExplainRequest,
    headers: &[(String, &str)],
    notes: &mut Vec<String>,
) -> Option<Outcome> {
    let entry = f.entry.and_then(|i| plan.entries.get(i))?;
    let rules = entry.mcp.as_deref()?;
    let Some(tool) = &request.mcp_tool else {
        notes.push(
            "the entry has tool rules: the filter reads the JSON-RPC message of the body and judges it; pass --mcp-tool NAME for a tools/call"
                .into(),
        );
        return None;
    };
    let message = Message::Call {
        id: Some("1".to_string()),
        method: TOOLS_CALL.to_string(),
        name: Name::Text(tool.clone()),
    };
    let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
    let mcp_headers = McpHeaders {
        method: header("mcp-method"),
        name: header("mcp-name"),
    };
    match judge(rules, &message, mcp_headers) {
        Verdict::Refuse { reply, .. } => Some(rpc_outcome(&reply)),
        Verdict::Forward { call, .. } => {
            if let Some(call) = call {
                // After the entry's tool rules, the caller's grant: a tool
                // it may not use is answered as unknown, never forwarded.
                if let (Some(grant), Some(access)) = (f.grant, entry.access.as_deref()) {
                    if !access.access.allows_tool(grant, &call.name) {
                        notes.push(format!(
                            "the caller's access rules do not grant tool {tool}: answered as an unknown tool, never forwarded"
                        ));
                        return Some(rpc_outcome(&unknown_tool("1", &call.name)));
                    }
                }
                let label = rules.labels.get(call.label).map_or("other", String::as_str);
                notes.push(format!(
                    "tool {tool} is allowed; counted as tool=\"{label}\" in agentroute_mcp_tool_calls_total"
                ));
                if let Some(limit) = call
                    .limit
                    .and_then(|(i, _)| rules.limits.get(i).map(|l| (i, l)))
                {
                    let (index, limit) = limit;
                    let whose = match &limit.per {
                        agentroute::config::Per::Entry => "shared by every caller".to_string(),
                        agentroute::config::Per::ClientIp => "per client address".to_string(),
                        agentroute::config::Per::Header(h) => format!("per {h} value"),
                        agentroute::config::Per::Claim(c) => format!("per {c} claim"),
                    };
                    notes.push(format!(
                        "tool_limits[{index}] applies: {} request(s)/s, burst {}, a bucket for this tool {whose}, in every worker (over it: 429, not simulated here)",
                        limit.rate.requests_per_second, limit.rate.burst
                    ));
                }
            }
            None
        }
    }
}

/// A JSON-RPC error answer: its status, code and message.
fn rpc_outcome(reply: &agentroute::reply::LocalReply) -> Outcome {
    let error = serde_json::from_str::<Value>(&reply.body)
        .ok()
        .and_then(|v| v.get("error").cloned())
        .unwrap_or_default();
    Outcome::Reply {
        status: reply.status,
        code: error.get("code").map(|c| format!("JSON-RPC {c}")),
        message: error
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string),
    }
}

fn reply_outcome(reply: &agentroute::reply::LocalReply) -> Outcome {
    let error = serde_json::from_str::<Value>(&reply.body)
        .ok()
        .and_then(|v| v.get("error").cloned());
    let field = |k: &str| {
        error
            .as_ref()
            .and_then(|e| e.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    // OpenAI's errors carry a string code; JSON-RPC's (MCP and A2A
    // entries' 401 and 403) a number.
    let code = field("code").or_else(|| {
        error
            .as_ref()
            .and_then(|e| e.get("code"))
            .and_then(Value::as_i64)
            .map(|c| format!("JSON-RPC {c}"))
    });
    Outcome::Reply {
        status: reply.status,
        code,
        message: field("message"),
    }
}

/// Whose CORS policy answers a preflight, as the filter picks it: the entry
/// the path or host leads to (its own `cors`, or the top-level one it
/// inherits), else the top-level one (the OpenAI and Anthropic surfaces',
/// and that of the filter's own answers on the gateway's hosts).
fn preflight_policy(plan: &Plan, head: &RequestHead<'_>) -> String {
    let whose = match plan
        .route(head.authority, head.path)
        .and_then(|m| Some((m.entry, plan.entries.get(m.entry)?)))
    {
        Some((i, e)) => format!("the CORS policy of agents[{i}] {}", e.id),
        None => "the top-level CORS policy (the OpenAI and Anthropic surfaces': no entry matched)"
            .to_string(),
    };
    format!("a preflight: answered by the filter, never forwarded, with {whose}; its headers below")
}

/// Which side of a split the request lands on, and why: the forcing
/// header, the weight, the `by` value's cohort, or chance.
fn describe_canary(
    c: &agentroute::config::Canary,
    choice: &canary::Choice,
    head: &RequestHead<'_>,
) -> String {
    let weight = format!("{}%", f64::from(c.threshold) / 100.0);
    let side = match choice.side {
        Side::Canary => format!("canary (backend {})", c.backend),
        Side::Stable => "stable".to_string(),
    };
    let why = match &choice.how {
        How::Forced => {
            let name = c.header.as_deref().unwrap_or_default();
            format!("forced by {name}")
        }
        How::Weight => format!("weight {weight}: every request"),
        How::Cohort(cohort) => {
            let value = match &c.by {
                CanaryBy::Header(name) => canary::header_value(head.pairs, name)
                    .map(|v| format!("header {name} {:?}", String::from_utf8_lossy(&v))),
                CanaryBy::Cookie(name) => canary::cookie(head.pairs, name)
                    .map(|v| format!("cookie {name} {:?}", String::from_utf8_lossy(v))),
                CanaryBy::ClientIp => head
                    .client
                    .ip()
                    .map(|ip| format!("client IP {}", String::from_utf8_lossy(&ip))),
                CanaryBy::Random => None,
            }
            .unwrap_or_default();
            format!(
                "{value} is cohort {cohort} of {COHORTS}; cohorts below {} (weight {weight}) go to the canary, on every replica and after restarts",
                c.threshold
            )
        }
        How::Random => {
            let missing = match &c.by {
                CanaryBy::Random => "by random".to_string(),
                CanaryBy::ClientIp => "no client IP given (--client-ip)".to_string(),
                CanaryBy::Header(name) => format!("no {name} header"),
                CanaryBy::Cookie(name) => format!("no {name} cookie"),
            };
            return format!(
                "decided at random per request ({missing}): {weight} to the canary (backend {}), the rest stable; the headers below show the stable side",
                c.backend
            );
        }
    };
    format!("side {side}: {why}")
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.request;
        let method = if r.method.is_empty() {
            if r.model.is_some() || r.mcp_tool.is_some() {
                "POST"
            } else {
                "GET"
            }
        } else {
            &r.method
        };
        write!(f, "request  {method} {}", r.path)?;
        if !r.host.is_empty() {
            write!(f, " (host {})", r.host)?;
        }
        if let Some(model) = &r.model {
            write!(f, " (model {model})")?;
        }
        if let Some(tool) = &r.mcp_tool {
            write!(f, " (tools/call {tool})")?;
        }
        if let Some(claims) = &r.claims {
            write!(f, " (claims {claims})")?;
        }
        writeln!(f)?;
        match &self.entry {
            Some(e) => {
                write!(f, "entry    agents[{}] {} ({})", e.index, e.id, e.kind)?;
                if let Some(by) = &self.matched_by {
                    write!(f, " by {by}")?;
                }
                writeln!(f, ", backend {}", e.backend)?;
            }
            None => writeln!(f, "entry    none")?,
        }
        if let Some(access) = &self.access {
            writeln!(f, "access   {access}")?;
        }
        match &self.outcome {
            Outcome::Forward {
                path,
                rewritten,
                headers,
                translate,
                card,
            } => {
                let how = match (rewritten, translate) {
                    (_, Some(translation)) => format!("rewritten; {translation}"),
                    (true, None) => "rewritten".to_string(),
                    (false, None) => "unchanged".to_string(),
                };
                writeln!(f, "forward  {path} ({how})")?;
                let mut label = "headers ";
                for (name, value) in headers {
                    match value {
                        Some(v) => writeln!(f, "{label} set    {name}: {v}")?,
                        None => writeln!(f, "{label} remove {name}")?,
                    }
                    label = "        ";
                }
                if headers.is_empty() {
                    writeln!(f, "headers  none changed")?;
                }
                if let Some(base) = card {
                    writeln!(f, "card     the agent card's URLs are rewritten to {base}")?;
                }
            }
            Outcome::Reply {
                status,
                code,
                message,
            } => {
                write!(f, "reply    {status}")?;
                if let Some(code) = code {
                    write!(f, " {code}")?;
                }
                if let Some(message) = message {
                    write!(f, ": {message}")?;
                }
                writeln!(f, " (answered by the filter, not forwarded)")?;
            }
            Outcome::NeedsModel => writeln!(
                f,
                "model    an OpenAI request: the `model` of its body picks the entry; pass --model ID"
            )?,
        }
        if let Some(canary) = &self.canary {
            writeln!(f, "canary   {canary}")?;
        }
        if let Some(cors) = &self.cors {
            writeln!(f, "cors     {cors}")?;
        }
        for note in &self.notes {
            writeln!(f, "note     {note}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"{
        "agents": [
            {"name": "coordinator", "namespace": "prod", "backend": "c-backend", "timeout": "300s",
             "hosts": ["coord.example.com"], "models": ["coordinator-v2"],
             "prefixes": [{"prefix": "/cs"}, {"prefix": "/raw", "rewrite": null}]},
            {"name": "echo", "namespace": "prod", "backend": "e-backend", "protocol": "a2a",
             "a2a": {"path": "/rpc"}}
        ]
    }"#;

    fn request(path: &str) -> ExplainRequest {
        ExplainRequest {
            path: path.to_string(),
            host: "gw".to_string(),
            ..ExplainRequest::default()
        }
    }

    fn plan() -> Plan {
        Plan::from_json(CONFIG.as_bytes()).unwrap()
    }

    #[test]
    fn explain_a_prefix_match_with_its_rewrite_and_headers() {
        let p = plan();
        let e = explain(&p, &request("/cs/orders?id=7"));
        assert_eq!(
            e.entry.as_ref().map(|e| e.id.as_str()),
            Some("prod/coordinator")
        );
        assert_eq!(e.matched_by.as_deref(), Some("path prefix /cs"));
        let Outcome::Forward {
            path,
            rewritten,
            headers,
            ..
        } = &e.outcome
        else {
            panic!("{e:?}");
        };
        assert_eq!((path.as_str(), *rewritten), ("/orders?id=7", true));
        let header = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        assert_eq!(header("x-agent-backend"), Some(Some("c-backend".into())));
        assert_eq!(header("x-forwarded-prefix"), Some(Some("/cs".into())));
        assert_eq!(
            header("x-envoy-upstream-rq-timeout-ms"),
            Some(Some("300000".into()))
        );
        let text = e.to_string();
        assert!(
            text.contains(
                "entry    agents[0] prod/coordinator (agent) by path prefix /cs, backend c-backend"
            ),
            "{text}"
        );
        assert!(text.contains("forward  /orders?id=7 (rewritten)"), "{text}");
        assert!(
            text.contains("headers  set    x-forwarded-prefix: /cs\n"),
            "{text}"
        );
        assert!(
            text.contains("\n         set    x-agent-backend: c-backend\n"),
            "{text}"
        );
    }

    #[test]
    fn explain_hosts_kept_paths_and_client_headers() {
        let p = plan();
        let mut r = request("/anything");
        r.host = "Coord.Example.com:443".into();
        r.headers = vec![("X-Agent-Backend".into(), "evil".into())];
        let e = explain(&p, &r);
        assert_eq!(e.matched_by.as_deref(), Some("host"));
        assert_eq!(e.upstream_path(), Some("/anything"));
        let Outcome::Forward { headers, .. } = &e.outcome else {
            panic!("{e:?}");
        };
        assert_eq!(
            headers.first(),
            Some(&("x-agent-backend".to_string(), None))
        );
        assert!(e.to_string().contains("forward  /anything (unchanged)"));
        assert_eq!(
            explain(&p, &request("/raw/x")).upstream_path(),
            Some("/raw/x")
        );
    }

    #[test]
    fn explain_local_replies_and_unmatched_requests() {
        let p = plan();
        let e = explain(&p, &request("/prod/agent/coordinator/../admin"));
        assert_eq!(e.entry.as_ref().map(|e| e.index), Some(0));
        assert_eq!(
            e.outcome,
            Outcome::Reply {
                status: 400,
                code: Some("invalid_path".into()),
                message: Some(
                    "path holds a '.' or '..' segment, which the gateway does not forward".into()
                ),
            }
        );
        assert!(e
            .to_string()
            .contains("reply    400 invalid_path: path holds"));
        let e = explain(&p, &request("/nobody"));
        assert_eq!(
            (e.entry.as_ref(), e.upstream_path()),
            (None, Some("/nobody"))
        );
        let reject = Plan::from_json(br#"{"unmatched": "reject"}"#).unwrap();
        let e = explain(&reject, &request("/nobody"));
        assert!(
            matches!(e.outcome, Outcome::Reply { status: 404, ref code, .. } if code.as_deref() == Some("agent_not_found"))
        );
    }

    #[test]
    fn explain_mcp_tool_calls_by_the_entry_rules() {
        let plan = Plan::from_json(
            br#"{"agents":[{"name":"t","namespace":"p","kind":"mcp","backend":"t","mcp":{
                "tools":{"allow":["search","fetch_*"],"deny":["fetch_secrets"]},
                "tool_limits":[{"tools":["fetch_*"],"requests_per_second":1}]}}]}"#,
        )
        .unwrap();
        let mut r = request("/p/mcp/t/mcp");
        r.mcp_tool = Some("fetch_secrets".into());
        let e = explain(&plan, &r);
        assert_eq!(
            e.outcome,
            Outcome::Reply {
                status: 200,
                code: Some("JSON-RPC -32602".into()),
                message: Some("Unknown tool: fetch_secrets".into())
            }
        );
        r.mcp_tool = Some("fetch_url".into());
        let e = explain(&plan, &r);
        assert_eq!(e.upstream_path(), Some("/mcp"));
        assert!(
            e.notes.iter().any(|n| n.contains("tool_limits[0] applies")),
            "{e}"
        );
        assert!(e.to_string().contains("(tools/call fetch_url)"));
        r.headers = vec![("Mcp-Name".into(), "search".into())];
        assert!(matches!(
            explain(&plan, &r).outcome,
            Outcome::Reply { status: 400, .. }
        ));
        r.mcp_tool = None;
        r.method = "POST".into();
        assert!(explain(&plan, &r)
            .notes
            .iter()
            .any(|n| n.contains("pass --mcp-tool")));
    }

    #[test]
    fn explain_says_which_side_of_a_split_a_value_lands_on() {
        let p = Plan::from_json(
            br#"{"cors":{"allow_origins":["https://dash.example.com"]},"agents":[
                {"name":"a","backend":"v1","canary":{"backend":"v2","weight":50,"by":"cookie:uid","header":"x-canary"}},
                {"name":"b","backend":"w1","canary":{"backend":"w2","weight":25,"by":"client_ip"}}]}"#,
        )
        .unwrap();
        let with = |path: &str, headers: &[(&str, &str)], ip: Option<&str>| {
            let mut r = request(path);
            r.headers = headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            r.client_ip = ip.map(str::to_string);
            explain(&p, &r)
        };
        let dispatch = |e: &Explanation| match &e.outcome {
            Outcome::Forward { headers, .. } => headers
                .iter()
                .find(|(k, _)| k == "x-agent-backend")
                .and_then(|(_, v)| v.clone()),
            _ => None,
        };
        let cohort =
            agentroute::canary::cohort(&agentroute::canary::COHORT_KEY, "default/a", b"u-1");
        let e = with("/a/x", &[("cookie", "x=1; uid=u-1")], None);
        let line = e.canary.clone().unwrap();
        assert!(
            line.contains(&format!("cookie uid \"u-1\" is cohort {cohort} of 10000")),
            "{line}"
        );
        let side = if cohort < 5_000 { "v2" } else { "v1" };
        assert_eq!(dispatch(&e).as_deref(), Some(side), "{line}");
        assert!(e.to_string().contains("canary   side "), "{e}");
        let e = with("/a/x", &[("X-Canary", "always")], None);
        assert_eq!(
            e.canary.as_deref(),
            Some("side canary (backend v2): forced by x-canary")
        );
        assert_eq!(dispatch(&e).as_deref(), Some("v2"));
        let e = with("/a/x", &[], None);
        assert!(e.canary.clone().unwrap().starts_with(
            "decided at random per request (no uid cookie): 50% to the canary (backend v2)"
        ));
        assert_eq!(
            dispatch(&e).as_deref(),
            Some("v1"),
            "shown as the stable side"
        );
        let e = with("/b/x", &[], Some("10.1.2.3"));
        assert!(e.canary.unwrap().contains("client IP 10.1.2.3 is cohort"));
        // CORS: the answer's headers, or the preflight's.
        let e = with("/a/x", &[("origin", "https://dash.example.com")], None);
        assert!(e.cors.unwrap().starts_with(
            "origin allowed: the answer gets access-control-allow-origin: https://dash.example.com"
        ));
        let e = with("/a/x", &[("origin", "https://evil.example.com")], None);
        assert!(e.cors.unwrap().starts_with("origin not allowed"));
        let mut r = request("/a/x");
        r.method = "OPTIONS".into();
        r.headers = vec![
            ("origin".into(), "https://dash.example.com".into()),
            ("access-control-request-method".into(), "POST".into()),
        ];
        let e = explain(&p, &r);
        assert_eq!(
            e.outcome,
            Outcome::Reply {
                status: 204,
                code: None,
                message: None
            }
        );
        assert!(
            e.notes[0].starts_with(
                "preflight answer headers: access-control-allow-origin: https://dash.example.com"
            ),
            "{:?}",
            e.notes
        );
        assert_eq!(
            e.cors.as_deref(),
            Some("a preflight: answered by the filter, never forwarded, with the CORS policy of agents[0] default/a; its headers below")
        );
        assert_eq!(
            e.entry.map(|e| e.index),
            Some(0),
            "the entry whose policy answered"
        );
        r.path = "/v1/chat/completions".into();
        let e = explain(&p, &r);
        assert!(
            e.cors.as_deref().is_some_and(
                |c| c.contains("the top-level CORS policy (the OpenAI and Anthropic surfaces'")
            ),
            "{:?}",
            e.cors
        );
    }

    #[test]
    fn explain_openai_requests_by_model() {
        let p = plan();
        let e = explain(&p, &request("/v1/chat/completions"));
        assert_eq!(
            (e.entry.as_ref(), e.upstream_path()),
            (None, Some("/v1/chat/completions")),
            "GET is no dispatch"
        );
        let mut r = request("/v1/chat/completions");
        r.method = "POST".into();
        assert_eq!(explain(&p, &r).outcome, Outcome::NeedsModel);
        r.model = Some("coordinator-v2".into());
        let e = explain(&p, &r);
        assert_eq!(e.matched_by.as_deref(), Some("model coordinator-v2"));
        assert_eq!(e.upstream_path(), Some("/v1/chat/completions"));
        r.model = Some("prod/echo".into());
        let e = explain(&p, &r);
        let Outcome::Forward {
            path, translate, ..
        } = &e.outcome
        else {
            panic!("{e:?}");
        };
        assert_eq!(
            (path.as_str(), translate.as_deref()),
            ("/rpc", Some("A2A 1.0"))
        );
        r.model = Some("nope".into());
        assert!(matches!(
            explain(&p, &r).outcome,
            Outcome::Reply { status: 404, ref code, .. } if code.as_deref() == Some("model_not_found")
        ));
        // The model list is the filter's own answer.
        assert!(matches!(
            explain(&p, &request("/v1/models")).outcome,
            Outcome::Reply { status: 200, .. }
        ));
    }
}
