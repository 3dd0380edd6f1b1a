//! What the filter does with one request's headers: a pure function from the
//! compiled plan and the request head to a [`Decision`], so that every rule is
//! unit-tested without a host.

use std::borrow::Cow;

use crate::a2a::card::{is_card_path, is_plain_authority, CardAddress};
use crate::canary::{self, Choice, Client, NoClient};
use crate::config::{
    A2aVersion, Plan, Protocol, Unmatched, HEADER_AGENT_KIND, HEADER_AGENT_NAME,
    HEADER_AGENT_NAMESPACE, HEADER_FORWARDED_PREFIX, HEADER_TIMEOUT,
};
use crate::failover::{self, is_slot_header, AllHealthy, Health, ATTEMPT_COUNT};

/// Envoy's router keeps its upstream stats under this name too.
pub const HEADER_ALT_STAT_NAME: &str = "x-envoy-upstream-alt-stat-name";
use crate::config::models::ModelId;
use crate::cors;
use crate::identity::access::Grant;
use crate::identity::{self, gate, Anonymous, Caller, Surface};
use crate::llm::{BackendApi, Provider, ProviderOptions};
use crate::openai::{self, Api, Endpoint, ModelError};
use crate::reply::LocalReply;
use crate::router::{Match, PathAction};

/// The parts of a request head the filter looks at, read in one host call.
#[derive(Debug)]
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
    /// `Origin`: only a request that has one costs any CORS work.
    pub origin: Option<&'h str>,
    /// `Access-Control-Request-Method` and `-Headers` (preflights).
    pub cors_method: Option<&'h str>,
    pub cors_headers: Option<&'h str>,
    /// Every header, for what only some entries look up (a canary's `by`
    /// header or cookie).
    pub pairs: &'h [(&'h str, &'h [u8])],
    /// What the host can tell about the client (a canary by `client_ip`,
    /// random draws).
    pub client: &'h dyn Client,
    /// The backends' ejection records, for entries with `failover`.
    pub health: &'h dyn Health,
    /// Client-sent slot headers of retries across backends
    /// (`x-agent-backend-2`, ...): never passed on.
    pub slots: Vec<&'h str>,
    /// Who is calling: the verified claims, asked for only by entries
    /// with `access` or `mcp.oauth`.
    pub caller: &'h dyn Caller,
}

impl Default for RequestHead<'_> {
    fn default() -> Self {
        RequestHead {
            method: "",
            path: "",
            authority: "",
            scheme: "",
            forwarded_proto: None,
            content_type: None,
            content_encoding: None,
            content_length: None,
            flags: Flags::default(),
            underscored: Vec::new(),
            origin: None,
            cors_method: None,
            cors_headers: None,
            pairs: &[],
            client: &NoClient,
            health: &AllHealthy,
            caller: &Anonymous,
            slots: Vec::new(),
        }
    }
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
    /// `x-envoy-upstream-alt-stat-name`: replaced on matched requests when
    /// `observability.upstream_stats` is on (a client-made name would make
    /// Envoy stats of the client's choosing).
    pub sent_alt_stat_name: bool,
    /// `last-event-id`: an MCP client resuming an event stream, which may
    /// replay a `tools/list` answer.
    pub sent_last_event_id: bool,
    /// `x-envoy-attempt-count`: a client copy would pick the slot of the
    /// first attempt.
    pub sent_attempt_count: bool,
    /// `authorization`: an MCP server doing its own OAuth answers a request
    /// without one 401 with its discovery URL, which is then rewritten.
    pub sent_authorization: bool,
}

impl<'h> RequestHead<'h> {
    /// Reads the head from raw header pairs. A value that is not UTF-8 reads
    /// as absent where the filter needs text (`:path`, ...); presence of the
    /// headers the filter owns counts whatever their bytes.
    pub fn from_pairs(pairs: &'h [(&'h str, &'h [u8])], dispatch_header: &str) -> Self {
        let text = |v: &'h [u8]| std::str::from_utf8(v).ok();
        let mut head = RequestHead {
            pairs,
            ..RequestHead::default()
        };
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
                "authorization" => head.flags.sent_authorization = true,
                "range" | "if-range" => head.flags.sent_range = true,
                HEADER_ALT_STAT_NAME => head.flags.sent_alt_stat_name = true,
                "last-event-id" => head.flags.sent_last_event_id = true,
                ":protocol" | "upgrade" => head.flags.upgrade = true,
                HEADER_AGENT_NAME | HEADER_AGENT_NAMESPACE | HEADER_AGENT_KIND => {
                    head.flags.sent_identity = true
                }
                HEADER_TIMEOUT => head.flags.sent_timeout = true,
                HEADER_FORWARDED_PREFIX => head.flags.sent_forwarded_prefix = true,
                "origin" => head.origin = text(value),
                "access-control-request-method" => head.cors_method = text(value),
                "access-control-request-headers" => head.cors_headers = text(value),
                n if n == dispatch_header => head.flags.sent_dispatch = true,
                ATTEMPT_COUNT => head.flags.sent_attempt_count = true,
                n if is_slot_header(n, dispatch_header) => head.slots.push(n),
                n if n.contains('_') && is_owned_underscored(n, dispatch_header) => {
                    head.underscored.push(n)
                }
                _ => {}
            }
        }
        head
    }

    /// The host's view of the client, for canary splits.
    pub fn with_client(mut self, client: &'h dyn Client) -> Self {
        self.client = client;
        self
    }

    /// The host's view of the backends, for failover.
    pub fn with_health(mut self, health: &'h dyn Health) -> Self {
        self.health = health;
        self
    }

    /// The caller's verified identity, for entries with `access`.
    pub fn with_caller(mut self, caller: &'h dyn Caller) -> Self {
        self.caller = caller;
        self
    }

    /// The same request for another path (a well-known prefix taken off).
    pub fn with_path(&self, path: &'h str) -> RequestHead<'h> {
        RequestHead {
            method: self.method,
            path,
            authority: self.authority,
            scheme: self.scheme,
            forwarded_proto: self.forwarded_proto,
            content_type: self.content_type,
            content_encoding: self.content_encoding,
            content_length: self.content_length,
            flags: self.flags,
            underscored: self.underscored.clone(),
            origin: self.origin,
            cors_method: self.cors_method,
            cors_headers: self.cors_headers,
            pairs: self.pairs,
            client: self.client,
            health: self.health,
            slots: self.slots.clone(),
            caller: self.caller,
        }
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
    /// The body and the answer are translated: a chat for an A2A agent,
    /// or a request for a backend that speaks another provider's API.
    pub translate: Option<Translate<'a>>,
    /// The configured model id or pattern an OpenAI request was dispatched
    /// by: the model label of its token counters.
    pub model: Option<ModelId<'a>>,
    /// The side of the entry's canary split the request goes to.
    pub canary: Option<Choice>,
    /// An MCP entry with tool rules: what the filter must do first.
    pub mcp: Option<McpStep>,
    /// An entry with failover: the order its backends are tried in.
    pub failover: Option<Tries>,
    /// An entry with `access`: the rules that admitted the caller (what
    /// they grant of its tools).
    pub grant: Option<Grant>,
    /// An MCP entry whose server does its own OAuth: the address its
    /// answers' OAuth URLs are rewritten to (a 401's `resource_metadata`;
    /// with `document`, its protected-resource metadata).
    pub oauth: Option<Box<OAuthRewrite>>,
}

/// Where an MCP server's OAuth URLs point once rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthRewrite {
    pub address: CardAddress,
    /// The request is for the server's protected-resource metadata.
    pub document: bool,
}

/// The backends one request of an entry with failover tries: indices into
/// [`failover::candidates`] of its canary side, the first one in the
/// dispatch header, the others in slot headers when `retry` is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tries {
    pub canary: bool,
    pub order: Vec<u8>,
    /// Slot headers written: the attempts Envoy may make after the first.
    pub slots: usize,
}

impl Tries {
    /// The backend of attempt `n` (0-based).
    pub fn backend<'e>(&self, entry: &'e crate::config::Entry, n: usize) -> Option<&'e str> {
        let i = usize::from(*self.order.get(n)?);
        failover::candidates(entry, self.canary).get(i).copied()
    }
}

/// What a request to an MCP entry with tool rules needs before it goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McpStep {
    /// A POST: its JSON-RPC message is read (body or metadata) and judged.
    ReadMessage,
    /// A GET resuming an event stream: a replayed `tools/list` answer is
    /// filtered like a fresh one.
    FilterReplay,
    /// A GET opening an event stream: one that is the legacy HTTP+SSE
    /// transport's is refused (`mcp::legacy`).
    OpenStream,
}

/// The MCP step of a request to `entry`, if it has tool rules.
fn mcp_step(plan: &Plan, entry: usize, head: &RequestHead<'_>) -> Option<McpStep> {
    plan.entries.get(entry)?.mcp.as_ref()?;
    match head.method {
        "POST" => Some(McpStep::ReadMessage),
        "GET" if head.flags.sent_last_event_id => Some(McpStep::FilterReplay),
        "GET" => Some(McpStep::OpenStream),
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
    /// A CORS preflight the filter answers itself: never forwarded, never
    /// counted against any limit.
    Preflight(LocalReply),
}

/// Routes one request: hosts, then path prefixes, then the OpenAI surface.
pub fn decide<'a>(plan: &'a Plan, head: &RequestHead<'a>) -> Decision<'a> {
    if head.origin.is_some()
        && !plan.cors.is_empty()
        && cors::is_preflight(head.method, head.origin, head.cors_method)
    {
        if let Some(reply) = preflight(plan, head) {
            return Decision::Preflight(reply);
        }
    }
    if plan.has_oauth || plan.has_mcp {
        if let Some(decision) = oauth_metadata(plan, head) {
            return decision;
        }
    }
    let Some(m) = plan.route(head.authority, head.path) else {
        if !plan.router.serves(head.authority) {
            // Another application's host (`gateway_hosts`): left alone.
            return pass(plan, head);
        }
        return match openai::endpoint(head.method, head.path, plan.openai.unversioned_paths) {
            Some(endpoint) => decide_openai(plan, head, endpoint),
            None => unmatched(plan, head),
        };
    };
    let grant = match admit_by_path(plan, head, &m) {
        Ok(grant) => grant,
        Err(reply) => {
            return Decision::Reply {
                entry: Some(m.entry),
                reply,
            }
        }
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
    let (canary, failover, _) = dispatch_ops(plan, m.entry, head, rewritten, false, &mut ops);
    Decision::Forward(Forward {
        entry: Some(m.entry),
        ops,
        card,
        translate: None,
        model: None,
        mcp: mcp_step(plan, m.entry, head),
        canary,
        failover,
        grant,
        oauth: own_oauth(plan, head, &m),
    })
}

/// An entry's `access` for a request reached by path or host: `Err` the
/// 401 or 403 (shaped for the entry's kind; an MCP entry with `mcp.oauth`
/// names its protected-resource metadata in the 401).
fn admit_by_path(
    plan: &Plan,
    head: &RequestHead<'_>,
    m: &Match<'_>,
) -> Result<Option<Grant>, LocalReply> {
    let Some(e) = plan.entries.get(m.entry) else {
        return Ok(None);
    };
    gate::admit(plan, m.entry, head.caller, gate::surface_of(e.kind), || {
        let (scheme, authority) = client_origin(head)?;
        Some(gate::resource_urls(&scheme, &authority, m.prefix).1)
    })
}

/// `GET /.well-known/oauth-protected-resource{path}`: the RFC 9728
/// document of the MCP entry with `mcp.oauth` that `{path}` reaches, its
/// `resource` the entry's URL as the client uses it. `None` for any other
/// request (routed as usual).
fn oauth_metadata<'a>(plan: &'a Plan, head: &RequestHead<'a>) -> Option<Decision<'a>> {
    if head.method != "GET" {
        return None;
    }
    let rest = head.path.strip_prefix(identity::WELL_KNOWN_PREFIX)?;
    if !(rest.is_empty() || rest.starts_with('/') || rest.starts_with('?')) {
        return None;
    }
    let path = match rest.split('?').next() {
        Some("") | None => "/",
        Some(p) => p,
    };
    let m = plan.route(head.authority, path)?;
    let e = plan.entries.get(m.entry)?;
    let Some(oauth) = e.access.as_deref().and_then(|a| a.oauth.as_ref()) else {
        return server_metadata(plan, head, rest);
    };
    let reply = match client_origin(head) {
        Some((scheme, authority)) => {
            let (resource, _) = gate::resource_urls(&scheme, &authority, m.prefix);
            identity::protected_resource_metadata(&resource, oauth)
        }
        None => LocalReply::error(
            400,
            "invalid_request_error",
            Some("invalid_host"),
            None,
            "the request's host is not a plain host[:port]",
        ),
    };
    Some(Decision::Reply {
        entry: Some(m.entry),
        reply,
    })
}

/// The protected-resource metadata of an MCP server that does its own
/// OAuth (an MCP entry without `mcp.oauth`): the request is routed as the
/// path below the well-known prefix would be, and sent to the server with
/// the prefix before the path it would get, so that the server answers for
/// the resource the client connects to; its `resource` comes back
/// rewritten. `None` for other entries (routed as usual).
fn server_metadata<'a>(
    plan: &'a Plan,
    head: &RequestHead<'a>,
    rest: &'a str,
) -> Option<Decision<'a>> {
    // The prefix once: a path repeating it is not a document request.
    if rest.starts_with(identity::WELL_KNOWN_PREFIX) || !rest.starts_with('/') {
        return None;
    }
    let mut inner = head.with_path(rest);
    // The document is rewritten whoever asks for it.
    inner.flags.sent_authorization = false;
    let m = plan.route(inner.authority, inner.path)?;
    if plan.entries.get(m.entry).map(|e| e.kind) != Some(crate::config::Kind::Mcp) {
        return None;
    }
    let mut decision = decide(plan, &inner);
    if let Decision::Forward(f) = &mut decision {
        let upstream = f.ops.iter_mut().find_map(|op| match op {
            HeaderOp::Set(":path", path) => Some(path),
            _ => None,
        });
        match upstream {
            Some(path) => {
                *path = Cow::Owned(format!("{}{}", identity::WELL_KNOWN_PREFIX, path));
            }
            None => f.ops.push(HeaderOp::Set(":path", Cow::Borrowed(head.path))),
        }
        f.card = None;
        f.mcp = None;
        if let Some(oauth) = f.oauth.as_mut() {
            oauth.document = true;
        }
    }
    Some(decision)
}

/// For an MCP entry whose server does its own OAuth (no `mcp.oauth`), the
/// address its OAuth URLs are rewritten to; `None` for other entries and
/// for a client address that is not a plain `host[:port]`.
fn own_oauth(plan: &Plan, head: &RequestHead<'_>, m: &Match<'_>) -> Option<Box<OAuthRewrite>> {
    let e = plan.entries.get(m.entry)?;
    // Only requests without `authorization` are watched: a client finds
    // the authorization server from the 401 of a request without a token
    // (MCP's authorization flow); requests carrying one, the steady state,
    // cost nothing more. A document request always is.
    let document = head.path.starts_with(identity::WELL_KNOWN_PREFIX);
    if e.kind != crate::config::Kind::Mcp
        || e.access.as_deref().is_some_and(|a| a.oauth.is_some())
        || (head.flags.sent_authorization && !document)
    {
        return None;
    }
    let (scheme, authority) = client_origin(head)?;
    Some(Box::new(OAuthRewrite {
        address: CardAddress {
            scheme,
            authority,
            prefix: m.prefix.to_string(),
            root: m.root.to_string(),
        },
        document: false,
    }))
}

/// The scheme and authority the client used, when the authority is a
/// plain `host[:port]` (a client-chosen value must never land in a URL
/// the filter writes otherwise): the first hop's scheme when a proxy in
/// front says so, else the listener's.
fn client_origin(head: &RequestHead<'_>) -> Option<(String, String)> {
    if !is_plain_authority(head.authority) {
        return None;
    }
    let forwarded = head
        .forwarded_proto
        .and_then(|p| p.split(',').next())
        .map(str::trim)
        .filter(|p| p.eq_ignore_ascii_case("http") || p.eq_ignore_ascii_case("https"));
    let scheme = forwarded
        .or(Some(head.scheme).filter(|s| !s.is_empty()))
        .unwrap_or("http")
        .to_ascii_lowercase();
    Some((scheme, head.authority.to_string()))
}

/// The filter's answer to a preflight for an entry (by path or host), the
/// OpenAI surface, or (`unmatched: reject`) a path of no entry, with CORS;
/// `None` leaves it to be routed as usual (to an entry without CORS, whose
/// backend may answer it, or to the gateway's other routes).
fn preflight(plan: &Plan, head: &RequestHead<'_>) -> Option<LocalReply> {
    let policy = match plan.route(head.authority, head.path) {
        Some(m) => plan.entry_cors(m.entry)?,
        // The filter answers these paths itself: their 404s must be
        // readable by the script that asked.
        None if plan.router.serves(head.authority)
            && (plan.unmatched == Unmatched::Reject
                || is_surface_path(head.path, plan.openai.unversioned_paths)) =>
        {
            plan.surface_cors()?
        }
        None => return None,
    };
    Some(policy.preflight(
        head.origin.unwrap_or_default(),
        head.cors_method.unwrap_or_default(),
        head.cors_headers,
    ))
}

/// A path of the OpenAI surface, whatever method a preflight asks for.
fn is_surface_path(path: &str, unversioned: bool) -> bool {
    ["GET", "POST"]
        .into_iter()
        .any(|method| openai::endpoint(method, path, unversioned).is_some())
}

/// The CORS policy the answer to a request follows, from what [`decide`]
/// made of it: an entry reached by path or host has its own (or the
/// top-level one); the OpenAI surface, and the filter's replies to
/// requests of no entry on the gateway's hosts, the top-level one. OpenAI
/// requests follow the surface's whatever entry their model picks: the
/// preflight, which cannot know the model, already did. Requests passed on
/// to other routes get none.
pub fn cors_policy<'p>(
    plan: &'p Plan,
    head: &RequestHead<'_>,
    decision: &Decision<'_>,
) -> Option<&'p cors::Policy> {
    match decision {
        Decision::Forward(Forward { entry: Some(e), .. })
        | Decision::Reply { entry: Some(e), .. } => plan.entry_cors(*e),
        Decision::ReadModel => plan.surface_cors(),
        Decision::Reply { entry: None, .. } if plan.router.serves(head.authority) => {
            plan.surface_cors()
        }
        Decision::Forward(_) | Decision::Reply { .. } | Decision::Preflight(_) => None,
    }
}

/// For a `GET` of an agent card: the address the client used, which the
/// card's URLs are rewritten to. A card asked for under an `:authority`
/// that is not a plain `host[:port]` passes unchanged: the client's value
/// would otherwise land in a card others may get from a cache.
fn card_address(head: &RequestHead<'_>, m: &Match<'_>) -> Option<CardAddress> {
    if head.method != "GET" || !is_card_path(m.rest) {
        return None;
    }
    let (scheme, authority) = client_origin(head)?;
    Some(CardAddress {
        scheme,
        authority,
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
        Endpoint::ListModels if plan.has_access_rules => {
            let mut reply = LocalReply::json(200, gate::models_body_for(plan, head.caller));
            // The list depends on who asks.
            reply.headers.push(("cache-control", "private".to_string()));
            reply
        }
        Endpoint::ListModels => LocalReply::json(200, openai::models_body(plan).to_string()),
        Endpoint::GetModel(id) => openai::model_reply(plan, &id),
        Endpoint::Dispatch(api) if api.is_anthropic() && !plan.openai.anthropic => {
            return unmatched(plan, head)
        }
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
    let (entry, claim) = match model
        .map_err(ModelError::reply)
        .and_then(|m| openai::claim_for_model(plan, m))
    {
        Ok(found) => found,
        Err(reply) => return Decision::Reply { entry: None, reply },
    };
    let grant = match gate::admit(plan, entry, head.caller, Surface::OpenAi, || None) {
        Ok(grant) => grant,
        Err(reply) => {
            return Decision::Reply {
                entry: Some(entry),
                reply,
            }
        }
    };
    if let Ok(model) = model {
        if !gate::allows_model(plan, entry, grant, model) {
            return Decision::Reply {
                entry: Some(entry),
                reply: gate::model_forbidden(model),
            };
        }
    }
    let mut ops = Vec::with_capacity(12);
    let api = match openai::endpoint(head.method, head.path, plan.openai.unversioned_paths) {
        Some(Endpoint::Dispatch(api)) => api,
        _ => Api::Chat,
    };
    let mut translate = None;
    if let Some(Protocol::A2a { version, path }) = plan.entries.get(entry).map(|e| &e.protocol) {
        if api != Api::Chat {
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
        translate = Some(Translate::A2a(*version));
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
    let (canary, failover, backend) = dispatch_ops(plan, entry, head, true, true, &mut ops);
    if translate.is_none() {
        let client_model = model.ok().unwrap_or_default();
        match provider_translation(plan, entry, backend, api, client_model, head, &mut ops) {
            Ok(t) => translate = t,
            Err(reply) => {
                return Decision::Reply {
                    entry: Some(entry),
                    reply,
                }
            }
        }
    }
    Decision::Forward(Forward {
        entry: Some(entry),
        ops,
        card: None,
        translate,
        model: Some(claim),
        mcp: None,
        canary,
        failover,
        grant,
        oauth: None,
    })
}

/// How a dispatched request's body and answer are translated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Translate<'a> {
    /// A chat completion for an A2A agent.
    A2a(A2aVersion),
    /// An OpenAI chat completion for a backend of another provider.
    Chat(&'a BackendApi),
    /// An Anthropic Messages request for a backend that speaks OpenAI.
    Messages(&'a BackendApi),
    /// `count_tokens` for a backend that speaks OpenAI (which has no such
    /// endpoint): the filter answers it with an estimate.
    CountTokens,
}

/// Credentials a client may send to a provider: removed before a
/// translated call, whose credential Envoy injects on the provider's
/// cluster (never the filter's configuration).
const CLIENT_CREDENTIALS: [&str; 4] = ["authorization", "x-api-key", "x-goog-api-key", "api-key"];

/// What a model-dispatched request to `backend` needs for the API that
/// backend speaks: nothing (OpenAI to OpenAI, Anthropic to Anthropic), a
/// translation with its header changes, or a refusal for what cannot be
/// translated.
fn provider_translation<'a>(
    plan: &'a Plan,
    entry: usize,
    backend: &str,
    api: Api,
    client_model: &str,
    head: &RequestHead<'a>,
    ops: &mut Vec<HeaderOp<'a>>,
) -> Result<Option<Translate<'a>>, LocalReply> {
    let Some(e) = plan.entries.get(entry) else {
        return Ok(None);
    };
    let backups: &[String] = e.failover.as_ref().map_or(&[], |f| f.backends.as_slice());
    let target = e.providers().map(|p| {
        p.of(
            backend,
            e.canary.as_ref().map(|c| c.backend.as_str()),
            backups,
        )
    });
    let provider = target.map_or(Provider::OpenAi, |t| t.provider);
    let unsupported = |what: &str| {
        LocalReply::error(
            400,
            "invalid_request_error",
            Some("unsupported_endpoint"),
            None,
            &format!("this model's backend speaks {}: {what}", provider.as_str()),
        )
    };
    let translate = match (api, provider, target) {
        (Api::Chat, Provider::Anthropic | Provider::Gemini, Some(t)) => Translate::Chat(t),
        (
            Api::Completions | Api::Embeddings | Api::Responses,
            Provider::Anthropic | Provider::Gemini,
            _,
        ) => return Err(unsupported("only chat completions are translated for it")),
        (Api::Messages, Provider::OpenAi, t) => Translate::Messages(t.unwrap_or(&OPENAI_DEFAULTS)),
        (Api::CountTokens, Provider::OpenAi, _) => Translate::CountTokens,
        (Api::Messages | Api::CountTokens, Provider::Gemini, _) => {
            return Err(unsupported(
                "the Anthropic surface is translated to OpenAI backends only",
            ))
        }
        (Api::Messages | Api::CountTokens, Provider::Anthropic, _) => {
            // Anthropic to Anthropic: forwarded as is, with the provider's
            // credential in place of the client's.
            remove_credentials(head, ops);
            return Ok(None);
        }
        _ => return Ok(None),
    };
    if translate == Translate::CountTokens {
        return Ok(Some(translate));
    }
    // The body is replaced: its length and encoding are the filter's, and
    // the answer must come back readable.
    ops.push(HeaderOp::Remove("content-length"));
    if head.flags.sent_accept_encoding {
        ops.push(HeaderOp::Remove("accept-encoding"));
    }
    remove_credentials(head, ops);
    ops.push(HeaderOp::Set(
        "content-type",
        Cow::Borrowed("application/json"),
    ));
    match translate {
        Translate::Chat(t) if t.provider == Provider::Anthropic => {
            ops.push(HeaderOp::Set(":path", Cow::Borrowed("/v1/messages")));
            ops.push(HeaderOp::Set(
                "anthropic-version",
                Cow::Borrowed(crate::llm::anthropic::version(&t.options)),
            ));
        }
        Translate::Chat(t) => {
            // Gemini names the model in the path, and whether it streams:
            // with the body at hand (model from the body) the host sets
            // the path the translation asks for; with the model from
            // metadata this one stays, and a stream the client asked for
            // is made of the whole answer.
            let model = crate::llm::gemini::upstream_model(&t.options, client_model)?;
            ops.push(HeaderOp::Set(
                ":path",
                Cow::Owned(crate::llm::gemini::path(&t.options, &model, false)),
            ));
        }
        Translate::Messages(_) => {
            ops.push(HeaderOp::Set(
                ":path",
                Cow::Borrowed("/v1/chat/completions"),
            ));
            for name in ["anthropic-version", "anthropic-beta"] {
                if head.pairs.iter().any(|(k, _)| *k == name) {
                    ops.push(HeaderOp::Remove(name));
                }
            }
        }
        Translate::A2a(_) | Translate::CountTokens => {}
    }
    Ok(Some(translate))
}

/// The API of an OpenAI backend with no options.
static OPENAI_DEFAULTS: BackendApi = BackendApi {
    provider: Provider::OpenAi,
    options: ProviderOptions {
        max_tokens: None,
        version: None,
        model: None,
    },
};

fn remove_credentials<'a>(head: &RequestHead<'a>, ops: &mut Vec<HeaderOp<'a>>) {
    for name in CLIENT_CREDENTIALS {
        if head.pairs.iter().any(|(k, _)| *k == name) {
            ops.push(HeaderOp::Remove(name));
        }
    }
}

/// The headers every dispatched request gets, by path, host or model:
/// both sides of a canary split get the same ones but the dispatch header.
/// `prefix_handled` says the caller already dealt with `x-forwarded-prefix`;
/// `by_model`, that the OpenAI surface dispatched it by its model.
fn dispatch_ops<'a>(
    plan: &'a Plan,
    entry: usize,
    head: &RequestHead<'a>,
    prefix_handled: bool,
    by_model: bool,
    ops: &mut Vec<HeaderOp<'a>>,
) -> (Option<Choice>, Option<Tries>, &'a str) {
    let Some(e) = plan.entries.get(entry) else {
        return (None, None, "");
    };
    let choice = e
        .canary
        .as_ref()
        .map(|c| (c, canary::choose(c, &e.id, head.pairs, head.client)));
    let on_canary = matches!(
        &choice,
        Some((
            _,
            Choice {
                side: canary::Side::Canary,
                ..
            }
        ))
    );
    let mut backend = match (&choice, on_canary) {
        (Some((c, _)), true) => c.backend.as_str(),
        _ => e.backend.as_str(),
    };
    strip_owned(plan, head, ops);
    let mut tries = None;
    if let Some(f) = &e.failover {
        let candidates = failover::candidates(e, on_canary);
        let health = head.health;
        let order = failover::order(
            candidates.len(),
            || health.now_nanos(),
            |i| candidates.get(i).and_then(|b| health.ejected_until(b)),
        );
        if let Some(first) = order.first().and_then(|&i| candidates.get(usize::from(i))) {
            backend = first;
        }
        let mut slots = 0;
        if f.retry {
            // Envoy resends the same body on a retry: a backend that
            // speaks another API than the first cannot take it, so the
            // retries stop at the first such one (new requests still go
            // there, translated for it).
            let api = |b: &str| {
                e.providers().map(|p| {
                    p.of(
                        b,
                        e.canary.as_ref().map(|c| c.backend.as_str()),
                        &f.backends,
                    )
                })
            };
            let first_api = api(backend);
            for (slot, &i) in plan.slot_headers.iter().zip(order.iter().skip(1)) {
                let Some(b) = candidates.get(usize::from(i)) else {
                    continue;
                };
                if api(b) != first_api {
                    break;
                }
                ops.push(HeaderOp::Set(slot, Cow::Borrowed(b)));
                slots += 1;
            }
        }
        tries = Some(Tries {
            canary: on_canary,
            order,
            slots,
        });
    }
    if !prefix_handled && head.flags.sent_forwarded_prefix {
        // The path reaches the agent as sent: a client-made prefix header
        // would have the backend build wrong redirects.
        ops.push(HeaderOp::Remove(HEADER_FORWARDED_PREFIX));
    }
    ops.push(HeaderOp::Set(&plan.dispatch_header, Cow::Borrowed(backend)));
    if plan.identity_headers {
        ops.push(HeaderOp::Set(HEADER_AGENT_NAME, Cow::Borrowed(e.name())));
        ops.push(HeaderOp::Set(
            HEADER_AGENT_NAMESPACE,
            Cow::Borrowed(e.namespace()),
        ));
        ops.push(HeaderOp::Set(
            HEADER_AGENT_KIND,
            Cow::Borrowed(e.kind.as_str()),
        ));
    }
    if head.flags.sent_timeout {
        ops.push(HeaderOp::Remove(HEADER_TIMEOUT));
    }
    // A token budget, or token counters, read `usage` from the answer: ask
    // for it uncompressed.
    let metered = e.meters_tokens() || (by_model && plan.observe.usage_metrics);
    let accept_encoding = HeaderOp::Remove("accept-encoding");
    if metered && head.flags.sent_accept_encoding && !ops.contains(&accept_encoding) {
        ops.push(accept_encoding);
    }
    if let Some(name) = plan.observe.upstream_stat_names.get(entry) {
        if head.flags.sent_alt_stat_name {
            ops.push(HeaderOp::Remove(HEADER_ALT_STAT_NAME));
        }
        ops.push(HeaderOp::Set(HEADER_ALT_STAT_NAME, Cow::Borrowed(name)));
    }
    // Upgraded streams (WebSocket) live as long as they need: no timeout.
    if let (Some(ms), false) = (e.timeout_ms, head.flags.upgrade) {
        ops.push(HeaderOp::Set(HEADER_TIMEOUT, Cow::Owned(ms.to_string())));
    }
    (choice.map(|(_, choice)| choice), tries, backend)
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
        model: None,
        mcp: None,
        canary: None,
        failover: None,
        grant: None,
        oauth: None,
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
    // Retries across backends: a client must not pick the backend of a
    // later attempt, nor which attempt the first one counts as.
    ops.extend(head.slots.iter().map(|n| HeaderOp::Remove(n)));
    if head.flags.sent_attempt_count {
        ops.push(HeaderOp::Remove(ATTEMPT_COUNT));
    }
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
        assert_eq!(f.translate, Some(Translate::A2a(A2aVersion::V0_3)));
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

    const PROVIDERS: &str = r#"{
        "agents": [
            {"name": "claude", "kind": "modelapi", "backend": "anthropic", "models": ["claude"],
             "provider": "anthropic",
             "failover": {"backends": ["anthropic-b", {"backend": "gemini", "provider": "gemini",
                                                      "provider_options": {"model": "gemini-2.5-flash"}},
                                      "anthropic-c"]}},
            {"name": "flash", "kind": "modelapi", "backend": "gemini", "models": ["flash", "bad/../x"],
             "provider": "gemini"},
            {"name": "local", "kind": "modelapi", "backend": "local", "models": ["local"]}
        ]
    }"#;

    fn model_decision<'p>(p: &'p Plan, pairs: &[(&'p str, &'p str)], model: &str) -> Decision<'p> {
        let h: &'p [(&'p str, &'p [u8])] = Box::leak(headers(pairs).into_boxed_slice());
        decide_model(p, &head(p, h), Ok(model))
    }

    #[test]
    fn chats_for_providers_are_translated_without_the_clients_credentials() {
        let p = plan(PROVIDERS);
        let chat = [
            (":method", "POST"),
            (":path", "/v1/chat/completions"),
            ("authorization", "Bearer client"),
            ("x-api-key", "client"),
            ("accept-encoding", "gzip"),
        ];
        let Decision::Forward(f) = model_decision(&p, &chat, "claude") else {
            panic!("expected a dispatch");
        };
        assert!(
            matches!(f.translate, Some(Translate::Chat(api)) if api.provider == Provider::Anthropic)
        );
        assert_eq!(set(&f.ops, ":path"), Some("/v1/messages"));
        assert_eq!(set(&f.ops, "anthropic-version"), Some("2023-06-01"));
        for gone in [
            "authorization",
            "x-api-key",
            "content-length",
            "accept-encoding",
        ] {
            assert!(removes(&f.ops, gone), "{gone}");
        }
        // Retries stop where the API changes: anthropic-b only (Gemini,
        // then anthropic-c after it, are not retried to).
        assert_eq!(set(&f.ops, "x-agent-backend-2"), Some("anthropic-b"));
        assert_eq!(set(&f.ops, "x-agent-backend-3"), None);
        let Decision::Forward(f) = model_decision(&p, &chat, "flash") else {
            panic!("expected a dispatch");
        };
        assert_eq!(
            set(&f.ops, ":path"),
            Some("/v1beta/models/flash:generateContent")
        );
        // A model id that would change Gemini's path is refused.
        let Decision::Reply { reply, .. } = model_decision(&p, &chat, "bad/../x") else {
            panic!("expected a refusal");
        };
        assert_eq!(reply.status, 400);
        // Only chat completions are translated for another provider.
        let embeddings = [(":method", "POST"), (":path", "/v1/embeddings")];
        let Decision::Reply { reply, .. } = model_decision(&p, &embeddings, "claude") else {
            panic!("expected a refusal");
        };
        assert_eq!(reply.status, 400);
        assert!(reply.body.contains("unsupported_endpoint"));
        // An OpenAI backend: nothing translated, credentials kept.
        let Decision::Forward(f) = model_decision(&p, &chat, "local") else {
            panic!("expected a dispatch");
        };
        assert_eq!(f.translate, None);
        assert!(!removes(&f.ops, "authorization"));
    }

    #[test]
    fn the_anthropic_surface_is_translated_for_openai_backends_only() {
        let p = plan(PROVIDERS);
        let messages = [
            (":method", "POST"),
            (":path", "/v1/messages"),
            ("x-api-key", "client"),
            ("anthropic-version", "2023-06-01"),
        ];
        let Decision::Forward(f) = model_decision(&p, &messages, "local") else {
            panic!("expected a dispatch");
        };
        assert!(matches!(f.translate, Some(Translate::Messages(_))));
        assert_eq!(set(&f.ops, ":path"), Some("/v1/chat/completions"));
        assert!(removes(&f.ops, "x-api-key"));
        assert!(removes(&f.ops, "anthropic-version"));
        // To Anthropic: as is, with the client's key removed.
        let Decision::Forward(f) = model_decision(&p, &messages, "claude") else {
            panic!("expected a dispatch");
        };
        assert_eq!(f.translate, None);
        assert_eq!(set(&f.ops, ":path"), None);
        assert!(removes(&f.ops, "x-api-key"));
        // count_tokens: answered for an OpenAI backend, passed to Anthropic.
        let count = [(":method", "POST"), (":path", "/v1/messages/count_tokens")];
        let Decision::Forward(f) = model_decision(&p, &count, "local") else {
            panic!("expected a dispatch");
        };
        assert_eq!(f.translate, Some(Translate::CountTokens));
        let Decision::Forward(f) = model_decision(&p, &count, "claude") else {
            panic!("expected a dispatch");
        };
        assert_eq!(f.translate, None);
        // Gemini is not reached from the Anthropic surface.
        let Decision::Reply { reply, .. } = model_decision(&p, &messages, "flash") else {
            panic!("expected a refusal");
        };
        assert_eq!(reply.status, 400);
        // `anthropic.enabled: false`: the path is not the filter's.
        let off = plan(&PROVIDERS.replacen("{\n", "{\"anthropic\": {\"enabled\": false},\n", 1));
        assert!(!off.openai.anthropic);
        let h = headers(&[(":method", "POST"), (":path", "/v1/messages")]);
        assert!(matches!(
            decide(&off, &head(&off, &h)),
            Decision::Forward(_)
        ));
        let on = plan(PROVIDERS);
        assert!(matches!(decide(&on, &head(&on, &h)), Decision::ReadModel));
    }

    #[test]
    fn provider_configuration_errors_name_the_field() {
        for (json, error) in [
            (
                r#"{"agents":[{"name":"a","backend":"b","provider":"bedrock"}]}"#,
                "agents[0].provider",
            ),
            (
                r#"{"agents":[{"name":"a","kind":"mcp","backend":"b","provider":"anthropic"}]}"#,
                "agents[0].provider: an MCP server",
            ),
            (
                r#"{"agents":[{"name":"a","backend":"b","protocol":"a2a","provider":"gemini"}]}"#,
                "agents[0].provider: an A2A agent",
            ),
            (
                r#"{"agents":[{"name":"a","backend":"b","provider":"gemini","provider_options":{"version":"v1/../x"}}]}"#,
                "agents[0].provider_options.version",
            ),
            (
                r#"{"agents":[{"name":"a","backend":"b","provider":"anthropic","provider_options":{"max_tokens":0}}]}"#,
                "agents[0].provider_options.max_tokens",
            ),
            (
                r#"{"agents":[{"name":"a","backend":"b","failover":{"backends":[{"backend":"c","provider":"x"}]}}]}"#,
                "agents[0].failover.backends[0].provider",
            ),
            (
                r#"{"agents":[{"name":"a","backend":"b","failover":{"backends":[{"backend":"c","bakend":"x"}]}}]}"#,
                "agents[0].failover.backends[0].bakend",
            ),
            (
                r#"{"agents":[{"name":"a","backend":"b","failover":{"backends":[{"backend":"b"}]}}]}"#,
                "agents[0].failover.backends[0]: \"b\" is the entry's own backend",
            ),
            (
                r#"{"anthropic":{"enabled":"yes"},"agents":[]}"#,
                "anthropic.enabled",
            ),
        ] {
            let e = Plan::from_json(json.as_bytes()).unwrap_err().to_string();
            assert!(e.starts_with(error), "{json}: {e}");
        }
        // A canary of another provider.
        let p = plan(
            r#"{"agents":[{"name":"a","backend":"b","provider":"anthropic",
            "canary":{"backend":"g","weight":10,"provider":"gemini"}}]}"#,
        );
        let providers = p.entries[0].providers().unwrap();
        assert_eq!(providers.of("g", Some("g"), &[]).provider, Provider::Gemini);
        assert_eq!(
            providers.of("b", Some("g"), &[]).provider,
            Provider::Anthropic
        );
        // Plain OpenAI everywhere keeps no record.
        let p = plan(
            r#"{"agents":[{"name":"a","backend":"b","provider":"openai",
            "failover":{"backends":[{"backend":"c"}]}}]}"#,
        );
        assert!(p.entries[0].providers().is_none());
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
    fn usage_metrics_ask_model_dispatches_for_uncompressed_answers() {
        let config = |on: bool| {
            format!(
                r#"{{"openai": {{"usage_metrics": {on}}},
                    "agents": [{{"name": "llm", "backend": "l", "models": ["gpt-4.1", "openai/*"]}}]}}"#
            )
        };
        let gzip = headers(&[
            (":method", "POST"),
            (":path", "/v1/chat/completions"),
            ("accept-encoding", "gzip"),
        ]);
        for on in [true, false] {
            let p = plan(&config(on));
            let Decision::Forward(f) = decide_model(&p, &head(&p, &gzip), Ok("openai/gpt-4o"))
            else {
                panic!("dispatched");
            };
            assert_eq!(removes(&f.ops, "accept-encoding"), on, "usage_metrics {on}");
            assert_eq!(
                f.model,
                Some(ModelId::Prefix("openai")),
                "the claiming pattern"
            );
            // By path the model is unknown: no counter, nothing removed.
            let f = forward(&p, &[(":path", "/llm/x"), ("accept-encoding", "gzip")]);
            assert!(!removes(&f.ops, "accept-encoding") && f.model.is_none());
        }
    }

    #[test]
    fn upstream_stats_name_the_entry_to_envoys_router() {
        let p = plan(
            r#"{"observability": {"upstream_stats": true},
                "agents": [{"name": "a", "namespace": "n", "backend": "b", "models": ["m"]}]}"#,
        );
        let f = forward(&p, &[(":path", "/n/a/x")]);
        let name = "agentroute.namespace.n.agent.a.kind.agent";
        assert_eq!(set(&f.ops, HEADER_ALT_STAT_NAME), Some(name));
        assert!(!removes(&f.ops, HEADER_ALT_STAT_NAME));
        // A client's own name is replaced, never added to.
        let f = forward(&p, &[(":path", "/n/a/x"), (HEADER_ALT_STAT_NAME, "x.y")]);
        let alt: Vec<&HeaderOp<'_>> = f
            .ops
            .iter()
            .filter(|op| matches!(op, HeaderOp::Set(n, _) | HeaderOp::Remove(n) if *n == HEADER_ALT_STAT_NAME))
            .collect();
        assert_eq!(
            alt,
            [
                &HeaderOp::Remove(HEADER_ALT_STAT_NAME),
                &HeaderOp::Set(HEADER_ALT_STAT_NAME, Cow::Borrowed(name))
            ]
        );
        let hd = headers(&[(":method", "POST"), (":path", "/v1/chat/completions")]);
        let Decision::Forward(f) = decide_model(&p, &head(&p, &hd), Ok("m")) else {
            panic!("dispatched");
        };
        assert_eq!(set(&f.ops, HEADER_ALT_STAT_NAME), Some(name));
        // Off (the default): no header, and a client's copy is not the
        // filter's business (Envoy drops it from external requests).
        let p = plan(r#"{"agents": [{"name": "a", "namespace": "n", "backend": "b"}]}"#);
        let f = forward(&p, &[(":path", "/n/a/x"), (HEADER_ALT_STAT_NAME, "x.y")]);
        assert!(set(&f.ops, HEADER_ALT_STAT_NAME).is_none());
        assert!(!removes(&f.ops, HEADER_ALT_STAT_NAME));
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

    const SPLIT: &str = r#"{
        "agents": [
            {"name": "coord", "namespace": "prod", "backend": "v1", "timeout": "30s",
             "hosts": ["coord.example.com"], "prefixes": [{"prefix": "/cs"}], "models": ["coord-model"],
             "canary": {"backend": "v2", "weight": 50, "by": "header:x-user", "header": "x-canary"}},
            {"name": "echo", "namespace": "prod", "backend": "e1", "protocol": "a2a", "models": ["echo-model"],
             "canary": {"backend": "e2", "weight": 100}}
        ]
    }"#;

    /// The ops of a request with the dispatch header left out, and the
    /// dispatch header's value.
    fn split_ops(f: &Forward<'_>) -> (Vec<String>, Option<String>) {
        let others = f
            .ops
            .iter()
            .filter(|op| !matches!(op, HeaderOp::Set("x-agent-backend", _)))
            .map(|op| format!("{op:?}"))
            .collect();
        (others, set(&f.ops, "x-agent-backend").map(str::to_string))
    }

    #[test]
    fn a_split_applies_to_every_way_of_reaching_the_entry() {
        let p = plan(SPLIT);
        let forced = |side: &'static str| ("x-canary", side);
        let ways: [&[(&str, &str)]; 3] = [
            &[(":path", "/prod/agent/coord/x")],
            &[(":path", "/cs/x")],
            &[(":path", "/x"), (":authority", "coord.example.com")],
        ];
        for way in ways {
            let mut sides = Vec::new();
            for side in ["never", "always"] {
                let mut pairs = way.to_vec();
                pairs.push(forced(side));
                let f = forward(&p, &pairs);
                assert_eq!(
                    f.canary.as_ref().map(|c| c.how.clone()),
                    Some(canary::How::Forced)
                );
                sides.push(split_ops(&f));
            }
            assert_eq!(
                sides[0].0, sides[1].0,
                "{way:?}: the same headers on both sides"
            );
            assert_eq!(
                (sides[0].1.as_deref(), sides[1].1.as_deref()),
                (Some("v1"), Some("v2")),
                "{way:?}"
            );
        }
        // Model dispatch, and a chat translated for an A2A agent.
        let h = headers(&[
            (":method", "POST"),
            (":path", "/v1/chat/completions"),
            ("x-canary", "always"),
        ]);
        let hd = head(&p, &h);
        let Decision::Forward(f) = decide_model(&p, &hd, Ok("coord-model")) else {
            panic!("dispatch");
        };
        assert_eq!(set(&f.ops, "x-agent-backend"), Some("v2"));
        let Decision::Forward(f) = decide_model(&p, &hd, Ok("echo-model")) else {
            panic!("dispatch");
        };
        assert_eq!(f.translate, Some(Translate::A2a(A2aVersion::V1_0)));
        assert_eq!(set(&f.ops, "x-agent-backend"), Some("e2"), "weight 100");
        // Sticky: the same user, the same side, whichever way it comes.
        let sides: Vec<_> = ways
            .iter()
            .map(|way| {
                let mut pairs = way.to_vec();
                pairs.push(("x-user", "alice"));
                let f = forward(&p, &pairs);
                (
                    f.canary.map(|c| c.side),
                    set(&f.ops, "x-agent-backend").map(str::to_string),
                )
            })
            .collect();
        assert!(sides.windows(2).all(|w| w[0] == w[1]), "{sides:?}");
        // Entries without a split say nothing about sides.
        assert_eq!(
            forward(&plan(CONFIG), &[(":path", "/prod/tools")]).canary,
            None
        );
    }

    const CORS: &str = r#"{
        "unmatched": "reject",
        "cors": {"allow_origins": ["https://dash.example.com"]},
        "agents": [
            {"name": "open", "namespace": "prod", "backend": "o", "hosts": ["open.example.com"]},
            {"name": "closed", "namespace": "prod", "backend": "c", "cors": null},
            {"name": "own", "namespace": "prod", "kind": "mcp", "backend": "m",
             "cors": {"allow_origins": ["https://*.apps.example.com"]}},
            {"name": "llm", "namespace": "models", "kind": "modelapi", "backend": "l", "models": ["m"]}
        ]
    }"#;

    fn decision<'p>(p: &'p Plan, pairs: &[(&'p str, &'p str)]) -> Decision<'p> {
        let h: &'p [(&'p str, &'p [u8])] = Box::leak(headers(pairs).into_boxed_slice());
        decide(p, Box::leak(Box::new(head(p, h))))
    }

    fn preflight_of<'p>(
        p: &'p Plan,
        path: &'p str,
        origin: &'p str,
        host: &'p str,
    ) -> Decision<'p> {
        decision(
            p,
            &[
                (":method", "OPTIONS"),
                (":path", path),
                (":authority", host),
                ("origin", origin),
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", "content-type"),
            ],
        )
    }

    #[test]
    fn preflights_are_answered_for_entries_and_the_surface_with_cors() {
        let p = plan(CORS);
        let status = |d: Decision<'_>| match d {
            Decision::Preflight(r) => Some(r.status),
            _ => None,
        };
        let dash = "https://dash.example.com";
        for (path, origin, host, want) in [
            ("/prod/agent/open/x", dash, "gw", Some(204)),
            ("/x", dash, "open.example.com", Some(204)),
            (
                "/prod/agent/open/x",
                "https://evil.example.com",
                "gw",
                Some(403),
            ),
            (
                "/prod/own/mcp",
                "https://a.apps.example.com",
                "gw",
                Some(204),
            ),
            ("/prod/own/mcp", dash, "gw", Some(403)),
            ("/v1/chat/completions", dash, "gw", Some(204)),
            ("/v1/models", dash, "gw", Some(204)),
            // No entry (`unmatched: reject`): the filter answers the
            // preflight of what it answers 404.
            ("/nothing", dash, "gw", Some(204)),
            // No policy: routed as usual (the backend may answer it).
            ("/prod/closed/x", dash, "gw", None),
        ] {
            assert_eq!(
                status(preflight_of(&p, path, origin, host)),
                want,
                "{host}{path} {origin}"
            );
        }
        // Without Access-Control-Request-Method an OPTIONS is routed.
        let d = decision(
            &p,
            &[
                (":method", "OPTIONS"),
                (":path", "/prod/open/x"),
                ("origin", dash),
            ],
        );
        assert!(matches!(
            d,
            Decision::Forward(Forward { entry: Some(0), .. })
        ));
        // Passed on to the gateway's other routes: theirs to answer.
        let pass = plan(&CORS.replace("\"reject\"", "\"pass\""));
        assert!(matches!(
            preflight_of(&pass, "/nothing", dash, "gw"),
            Decision::Forward(_)
        ));
        // Without any cors, nothing is a preflight.
        let plain = plan(CONFIG);
        let d = preflight_of(&plain, "/prod/tools", dash, "gw");
        assert!(matches!(d, Decision::Forward(_)));
    }

    #[test]
    fn answers_follow_the_policy_of_what_was_reached() {
        let p = plan(CORS);
        let dash = "https://dash.example.com";
        let policy_of = |pairs: &[(&'static str, &'static str)]| {
            let h: &'static [(&'static str, &'static [u8])] =
                Box::leak(headers(pairs).into_boxed_slice());
            let hd: &'static RequestHead<'static> = Box::leak(Box::new(head(&p, h)));
            let d = decide(&p, hd);
            cors_policy(&p, hd, &d).map(|policy| policy.allows(dash))
        };
        let get = |path: &'static str| [(":path", path), ("origin", "https://dash.example.com")];
        assert_eq!(policy_of(&get("/prod/open/x")), Some(true));
        assert_eq!(policy_of(&get("/prod/closed/x")), None, "cors: null");
        assert_eq!(
            policy_of(&get("/prod/own/x")),
            Some(false),
            "the entry's own policy"
        );
        assert_eq!(
            policy_of(&get("/prod/open/%2e%2e/x")),
            Some(true),
            "a refusal of the entry"
        );
        assert_eq!(policy_of(&get("/nothing")), Some(true), "the filter's 404");
        assert_eq!(policy_of(&get("/v1/models")), Some(true), "the surface");
        assert_eq!(
            policy_of(&[(":method", "POST"), (":path", "/v1/chat/completions")]),
            Some(true),
            "dispatch by model follows the surface"
        );
        let pass = plan(&CORS.replace("\"reject\"", "\"pass\""));
        let h = headers(&[(":path", "/nothing"), ("origin", dash)]);
        let hd = head(&pass, &h);
        assert!(
            cors_policy(&pass, &hd, &decide(&pass, &hd)).is_none(),
            "passed on: not ours"
        );
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
        assert_eq!(step("GET", "/ruled/sse", false), Some(McpStep::OpenStream));
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

    /// Ejection records by backend, for failover decisions.
    struct Records(
        std::collections::HashMap<&'static str, u64>,
        std::cell::Cell<usize>,
    );

    impl Health for Records {
        fn ejected_until(&self, backend: &str) -> Option<u64> {
            self.1.set(self.1.get() + 1);
            self.0.get(backend).copied()
        }

        fn now_nanos(&self) -> u64 {
            1_000
        }
    }

    const FAILOVER: &str = r#"{"agents": [
        {"name": "main", "backend": "a", "failover": {"backends": ["b", "c"]}},
        {"name": "split", "backend": "s", "canary": {"backend": "k", "weight": 100},
         "failover": {"backends": ["f"]}},
        {"name": "once", "backend": "o", "failover": {"backends": ["p"], "retry": false}},
        {"name": "plain", "backend": "q"}
    ]}"#;

    fn failover_forward<'p>(
        plan: &'p Plan,
        path: &'p str,
        records: &'p Records,
        extra: &[(&'p str, &'p str)],
    ) -> Forward<'p> {
        let mut pairs = vec![(":method", "GET"), (":path", path)];
        pairs.extend_from_slice(extra);
        let h: &'p [(&'p str, &'p [u8])] = Box::leak(headers(&pairs).into_boxed_slice());
        match decide(plan, &head(plan, h).with_health(records)) {
            Decision::Forward(f) => f,
            other => panic!("expected forward, got {other:?}"),
        }
    }

    fn records(ejected: &[(&'static str, u64)]) -> &'static Records {
        Box::leak(Box::new(Records(
            ejected.iter().copied().collect(),
            std::cell::Cell::new(0),
        )))
    }

    #[test]
    fn failover_writes_the_order_into_the_dispatch_and_slot_headers() {
        let p = plan(FAILOVER);
        assert_eq!(
            p.slot_headers,
            vec!["x-agent-backend-2", "x-agent-backend-3"]
        );
        let healthy = records(&[]);
        let f = failover_forward(&p, "/main", healthy, &[]);
        assert_eq!(set(&f.ops, "x-agent-backend"), Some("a"));
        assert_eq!(set(&f.ops, "x-agent-backend-2"), Some("b"));
        assert_eq!(set(&f.ops, "x-agent-backend-3"), Some("c"));
        assert_eq!(healthy.1.get(), 1, "one record read on the healthy path");
        let tries = f.failover.unwrap();
        assert_eq!((tries.order.as_slice(), tries.slots), (&[0u8, 1, 2][..], 2));
        assert_eq!(tries.backend(&p.entries[0], 1), Some("b"));

        // The first ejected: the next leads, the ejected one comes last.
        let ejected = records(&[("a", 5_000)]);
        let f = failover_forward(&p, "/main", ejected, &[]);
        assert_eq!(set(&f.ops, "x-agent-backend"), Some("b"));
        assert_eq!(set(&f.ops, "x-agent-backend-2"), Some("c"));
        assert_eq!(set(&f.ops, "x-agent-backend-3"), Some("a"));
        // An ejection that ended is no ejection.
        let over = records(&[("a", 999)]);
        let f = failover_forward(&p, "/main", over, &[]);
        assert_eq!(set(&f.ops, "x-agent-backend"), Some("a"));
        // All ejected: the one back first.
        let all = records(&[("a", 9_000), ("b", 7_000), ("c", 8_000)]);
        let f = failover_forward(&p, "/main", all, &[]);
        assert_eq!(set(&f.ops, "x-agent-backend"), Some("b"));
        assert_eq!(set(&f.ops, "x-agent-backend-2"), Some("c"));
    }

    #[test]
    fn an_ejected_canary_sends_its_share_to_stable() {
        let p = plan(FAILOVER);
        let f = failover_forward(&p, "/split", records(&[]), &[]);
        assert_eq!(set(&f.ops, "x-agent-backend"), Some("k"));
        assert_eq!(set(&f.ops, "x-agent-backend-2"), Some("s"));
        assert_eq!(set(&f.ops, "x-agent-backend-3"), Some("f"));
        let f = failover_forward(&p, "/split", records(&[("k", 5_000)]), &[]);
        assert_eq!(set(&f.ops, "x-agent-backend"), Some("s"));
        assert_eq!(f.canary.map(|c| c.side), Some(canary::Side::Canary));
        assert_eq!(f.failover.unwrap().backend(&p.entries[1], 0), Some("s"));
    }

    #[test]
    fn client_slot_headers_never_pass() {
        let p = plan(FAILOVER);
        let sent = [
            ("x-agent-backend-2", "evil"),
            ("x-agent-backend-17", "evil"),
            ("x-envoy-attempt-count", "1"),
        ];
        for path in ["/main", "/once", "/plain", "/nobody"] {
            let f = failover_forward(&p, path, records(&[]), &sent);
            let pairs = headers(&sent);
            let after = apply_to(&pairs, &f.ops);
            assert!(
                !after
                    .iter()
                    .any(|(k, v)| *k == "x-envoy-attempt-count" || *v == b"evil"),
                "{path}: {after:?}"
            );
        }
        // Not a slot: left alone.
        let f = failover_forward(&p, "/plain", records(&[]), &[("x-agent-backend-x", "1")]);
        assert!(!removes(&f.ops, "x-agent-backend-x"));
    }

    #[test]
    fn no_retry_no_slots_and_no_failover_no_reads() {
        let p = plan(FAILOVER);
        let f = failover_forward(&p, "/once", records(&[]), &[]);
        assert_eq!(set(&f.ops, "x-agent-backend"), Some("o"));
        assert_eq!(set(&f.ops, "x-agent-backend-2"), None);
        assert_eq!(f.failover.unwrap().slots, 0);
        let untouched = records(&[("q", 5_000)]);
        let f = failover_forward(&p, "/plain", untouched, &[]);
        assert_eq!(set(&f.ops, "x-agent-backend"), Some("q"));
        assert_eq!((f.failover, untouched.1.get()), (None, 0));
    }
}
