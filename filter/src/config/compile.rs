//! The compile step: a contract that serde has read becomes a [`Plan`].
//! Here live the rules no type can say: names are DNS labels, claims on a
//! host, prefix or model belong to one entry, agent paths leave the OpenAI
//! surface alone, numbers fit their scope.

use hashbrown::hash_table::Entry as TableEntry;
use hashbrown::HashTable;
use serde_json::value::RawValue;

use crate::fasthash::{hash_str, FastMap};
use std::cell::OnceCell;

use super::canary::compile_canary;
use super::checks::{conflict, header_name, is_header_value};
use super::concurrency::{client_per, compile_concurrency};
use super::contract::{
    Obj, ProtocolName, RawA2a, RawAgent, RawConfig, RawDefaults, RawOpenAi, RawPrefix,
    RawRateLimit, RawRateLimitService, ScopeName,
};
use super::cors::CorsTable;
use super::models::OWN_ID;
use super::{
    read_agent, A2aVersion, ConfigError, DroppedShorthand, Entry, FailureMode, Kind, Layout,
    ModelSource, ModelTable, OpenAi, Plan, Protocol, RateLimit, RateLimitService, RequestRate,
    Scope, ShorthandLoss, TokenBudget, Unmatched,
};
use crate::router::{write_layout_path, Router, RouterBuilder};

type Result<T> = std::result::Result<T, ConfigError>;

const DEFAULT_DISPATCH_HEADER: &str = "x-agent-backend";
const DEFAULT_CONVERSATION_HEADER: &str = "x-conversation-id";
const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;
const DEFAULT_RESERVE_TOKENS: u64 = 1000;
const DEFAULT_RLS_DOMAIN: &str = "agentroute";
const DEFAULT_RLS_TIMEOUT_MS: u64 = 50;

/// OpenAI path segments a shorthand must not shadow (`/v1/...`, `/models`,
/// ...); `v1` first: without `openai.unversioned_paths` it is the only one.
const OPENAI_RESERVED: [&str; 6] = [
    "v1",
    "models",
    "chat",
    "completions",
    "embeddings",
    "responses",
];

/// The paths of the OpenAI surface the filter serves. An agent path (a
/// layout path or an explicit prefix) at or above one of them would take its
/// requests away silently, so such a configuration is refused.
const OPENAI_PATHS: [&str; 11] = [
    "/v1/models",
    "/models",
    "/v1/chat/completions",
    "/chat/completions",
    "/v1/completions",
    "/completions",
    "/v1/embeddings",
    "/embeddings",
    "/v1/responses",
    "/responses",
    // `/v1/models/{id}`: any prefix below this captures some model id.
    "/v1/models/",
];

pub(super) fn compile(raw: RawConfig<&RawValue>) -> Result<Plan> {
    let RawConfig {
        schema: _,
        dispatch_header,
        layouts,
        identity_headers,
        unmatched,
        defaults,
        openai,
        anthropic,
        rate_limit_service,
        gateway_hosts,
        observability,
        cors,
        client_ip,
        identity,
        agents,
    } = raw;

    let dispatch_header = match dispatch_header {
        Some(h) => header_name(&h, "dispatch_header")?,
        None => DEFAULT_DISPATCH_HEADER.to_string(),
    };
    let mut unique_layouts = Vec::new();
    for layout in layouts.unwrap_or_else(|| Layout::ALL.to_vec()) {
        if !unique_layouts.contains(&layout) {
            unique_layouts.push(layout);
        }
    }
    let default_timeouts = default_timeouts(defaults)?;
    let client_ip = compile_client_ip(client_ip.map(|c| c.0).unwrap_or_default())?;
    let identity = super::access::compile_identity(identity.map(|i| i.0))?;
    let usage_metrics = openai.as_ref().and_then(|o| o.usage_metrics);
    let mut openai = compile_openai(openai.map(|o| o.0).unwrap_or_default(), &dispatch_header)?;
    openai.anthropic = super::provider::anthropic_enabled(anthropic.map(|a| a.0));
    let rate_limit_service = rate_limit_service
        .map(|s| compile_service(s.0))
        .transpose()?;

    let mut cors = CorsTable::new(cors)?;
    // Each agent is read, compiled and its contract form dropped before the
    // next: a Wasm VM's memory keeps its peak for good.
    let mut entries = Vec::with_capacity(agents.len());
    // Only the entries that claim hosts or prefixes: most claim none.
    let mut claims = Vec::new();
    for (i, agent) in agents.into_iter().enumerate() {
        let at = format!("agents[{i}]");
        let (entry, routes) = compile_entry(
            read_agent(agent, &at)?,
            &at,
            &default_timeouts,
            rate_limit_service.is_some(),
            &mut cors,
        )?;
        entries.push(entry);
        if !routes.hosts.is_empty() || !routes.prefixes.is_empty() {
            claims.push((i, routes));
        }
    }

    repeats(
        &entries,
        |e| &e.id,
        |first, i| {
            let id = entries.get(i).map_or("", |e| e.id.as_str());
            Err(conflict(
                &format!("agents[{i}].name"),
                &format!("\"{id}\""),
                first,
                &entries,
            ))
        },
    )?;

    let gateway_hosts = gateway_hosts
        .map(|hosts| {
            hosts
                .iter()
                .enumerate()
                .map(|(j, h)| host_pattern(h, &format!("gateway_hosts[{j}]")))
                .collect::<Result<Vec<_>>>()
        })
        .transpose()?;
    let (router, dropped_shorthands) = build_router(
        &entries,
        &claims,
        &unique_layouts,
        gateway_hosts.as_deref(),
        openai.unversioned_paths,
    )?;
    let models = build_models(&entries, openai.agent_models)?;
    let has_access_rules = entries
        .iter()
        .any(|e| e.access.as_ref().is_some_and(|a| a.access.per_caller()));
    let uses_claims = entries.iter().any(crate::identity::uses_claims);
    let has_mcp = entries.iter().any(|e| e.kind == Kind::Mcp);
    let has_oauth = entries
        .iter()
        .any(|e| e.access.as_ref().is_some_and(|a| a.oauth.is_some()));
    let observe = super::observe::compile(observability.map(|o| o.0), usage_metrics, &entries);
    let (cors, surface_cors) = cors.finish();

    // Attempt 1 is the dispatch header; each backend after it a slot.
    let most_tries = entries
        .iter()
        .filter_map(|e| {
            let f = e.failover.as_ref().filter(|f| f.retry)?;
            Some(f.backends.len() + usize::from(e.canary.is_some()))
        })
        .max()
        .unwrap_or(0);
    let slot_headers = (2..most_tries + 2)
        .map(|n| crate::failover::slot_header(&dispatch_header, n))
        .collect();
    Ok(Plan {
        slot_headers,
        dispatch_header,
        identity_headers: identity_headers.unwrap_or(true),
        unmatched: unmatched.unwrap_or(Unmatched::Pass),
        openai,
        rate_limit_service,
        observe,
        entries,
        router,
        models,
        dropped_shorthands,
        cors,
        surface_cors,
        client_ip,
        identity,
        has_access_rules,
        has_oauth,
        uses_claims,
        has_mcp,
        created: 0,
        models_body: OnceCell::new(),
    })
}

fn compile_client_ip(raw: super::contract::RawClientIp) -> Result<crate::client_key::IpPrefixes> {
    let mut prefixes = crate::client_key::IpPrefixes::default();
    if let Some(p) = raw.ipv4_prefix {
        if !(1..=32).contains(&p) {
            return Err(ConfigError::new("client_ip.ipv4_prefix", "must be 1 to 32"));
        }
        prefixes.ipv4 = p;
    }
    if let Some(p) = raw.ipv6_prefix {
        if !(1..=128).contains(&p) {
            return Err(ConfigError::new(
                "client_ip.ipv6_prefix",
                "must be 1 to 128",
            ));
        }
        prefixes.ipv6 = p;
    }
    Ok(prefixes)
}

/// Default request timeout per kind, in milliseconds (0 = none), in
/// [`Kind::ALL`] order.
type KindTimeouts = [u64; 3];

fn kind_timeout(timeouts: &KindTimeouts, kind: Kind) -> u64 {
    let [agent, modelapi, mcp] = *timeouts;
    match kind {
        Kind::Agent => agent,
        Kind::ModelApi => modelapi,
        Kind::Mcp => mcp,
    }
}

fn default_timeouts(defaults: Option<Obj<RawDefaults>>) -> Result<KindTimeouts> {
    let mut timeouts: KindTimeouts = [120_000, 120_000, 30_000];
    if let Some(Obj(t)) = defaults.and_then(|d| d.0.timeouts) {
        let [agent, modelapi, mcp] = &mut timeouts;
        for (slot, set) in [(agent, t.agent), (modelapi, t.modelapi), (mcp, t.mcp)] {
            if let Some(ms) = set {
                *slot = ms.0;
            }
        }
    }
    Ok(timeouts)
}

fn compile_openai(raw: RawOpenAi, dispatch_header: &str) -> Result<OpenAi> {
    let metadata_namespace = match raw.metadata_namespace {
        Some(ns) if ns.is_empty() => {
            return Err(ConfigError::new(
                "openai.metadata_namespace",
                "must not be empty",
            ))
        }
        Some(ns) => ns,
        None => "agentroute".to_string(),
    };
    let max_body_bytes = match raw.max_body_bytes {
        Some(0) => {
            return Err(ConfigError::new(
                "openai.max_body_bytes",
                "must be at least 1",
            ))
        }
        Some(n) => n,
        None => DEFAULT_MAX_BODY_BYTES,
    };
    let conversation_header = match raw.conversation_header {
        Some(h) => {
            let h = header_name(&h, "openai.conversation_header")?;
            if h == dispatch_header {
                return Err(ConfigError::new(
                    "openai.conversation_header",
                    format!("{h:?} is the dispatch_header"),
                ));
            }
            h
        }
        None => DEFAULT_CONVERSATION_HEADER.to_string(),
    };
    Ok(OpenAi {
        model_from: raw.model_from.unwrap_or(ModelSource::Body),
        metadata_namespace,
        max_body_bytes,
        conversation_header,
        unversioned_paths: raw.unversioned_paths.unwrap_or(true),
        agent_models: raw.agent_models.unwrap_or(true),
        anthropic: true,
    })
}

fn compile_service(raw: RawRateLimitService) -> Result<RateLimitService> {
    if raw.cluster.trim().is_empty() || !is_header_value(&raw.cluster) || raw.cluster.len() > 120 {
        return Err(ConfigError::new(
            "rate_limit_service.cluster",
            "must name an Envoy cluster (1 to 120 visible characters)",
        ));
    }
    let domain = match raw.domain {
        Some(d) if d.is_empty() => {
            return Err(ConfigError::new(
                "rate_limit_service.domain",
                "must not be empty",
            ))
        }
        Some(d) => d,
        None => DEFAULT_RLS_DOMAIN.to_string(),
    };
    let timeout_ms = match raw.timeout {
        Some(t) if t.0 == 0 => {
            return Err(ConfigError::new(
                "rate_limit_service.timeout",
                "must be more than 0s (a call without a deadline could hold requests forever)",
            ))
        }
        Some(t) => t.0,
        None => DEFAULT_RLS_TIMEOUT_MS,
    };
    Ok(RateLimitService {
        cluster: raw.cluster,
        domain,
        timeout_ms,
        failure_mode: raw.failure_mode.unwrap_or(FailureMode::Allow),
    })
}

/// Routing claims of one entry, resolved into the router after all entries
/// are known (shorthand uniqueness needs the whole list).
#[derive(Debug, Default)]
struct Claims {
    hosts: Vec<String>,
    prefixes: Vec<(String, Option<String>)>,
}

fn compile_entry(
    raw: RawAgent,
    at: &str,
    timeouts: &KindTimeouts,
    has_service: bool,
    cors: &mut CorsTable,
) -> Result<(Entry, Claims)> {
    let path = |field: &str| format!("{at}.{field}");
    dns_label(&raw.name, || path("name"))?;
    let namespace = match &raw.namespace {
        Some(ns) => {
            dns_label(ns, || path("namespace"))?;
            ns.as_str()
        }
        None => "default",
    };
    let kind = raw.kind.unwrap_or(Kind::Agent);
    if raw.backend.is_empty() || !is_header_value(&raw.backend) {
        return Err(ConfigError::new(
            path("backend"),
            "must be a non-empty string of visible characters (it is sent as a header value)",
        ));
    }
    let timeout = raw.timeout.map_or(kind_timeout(timeouts, kind), |t| t.0);

    for (j, model) in raw.models.iter().enumerate() {
        if model.is_empty() {
            return Err(ConfigError::new(
                format!("{at}.models[{j}]"),
                "must not be empty",
            ));
        }
        if model.chars().any(char::is_control) {
            return Err(ConfigError::new(
                format!("{at}.models[{j}]"),
                "must not hold control characters",
            ));
        }
    }
    let mut claims = Claims::default();
    for (j, host) in raw.hosts.iter().enumerate() {
        claims
            .hosts
            .push(host_pattern(host, &format!("{at}.hosts[{j}]"))?);
    }
    for (j, prefix) in raw.prefixes.into_iter().enumerate() {
        claims
            .prefixes
            .push(compile_prefix(prefix.0, &format!("{at}.prefixes[{j}]"))?);
    }
    let rate_limit = raw
        .rate_limit
        .map(|r| compile_rate_limit(r.0, &path("rate_limit"), has_service))
        .transpose()?;
    let (mut protocol, rewrite_signed_cards) =
        compile_protocol(raw.protocol, raw.a2a.map(|a| a.0), at)?;
    let mut raw_mcp = raw.mcp.map(|m| m.0);
    let oauth = raw_mcp.as_mut().and_then(|m| m.oauth.take()).map(|o| o.0);
    let access = super::access::compile_entry_access(raw.access.map(|a| *a), oauth, kind, at)?;
    let mut mcp = super::mcp::compile_mcp(raw_mcp, kind, at)?.map(Box::new);
    if mcp.is_none()
        && access
            .as_ref()
            .is_some_and(|a| a.access.rules.iter().any(|r| r.tools.is_some()))
    {
        // A rule narrowing tools needs the messages read, as tool rules do.
        mcp = Some(Box::new(crate::mcp::rules::ToolRules::new(
            None,
            Vec::new(),
            Vec::new(),
        )));
    }
    let mut raw_canary = raw.canary.map(|c| c.0);
    let canary_api = raw_canary
        .as_mut()
        .map(|c| (c.provider.take(), c.provider_options.take().map(|o| o.0)));
    let mut raw_failover = raw.failover.map(|f| f.0);
    let providers = super::provider::compile_providers(
        raw.provider,
        raw.provider_options.map(|o| o.0),
        canary_api,
        raw_failover
            .as_mut()
            .map_or(&mut [][..], |f| f.backends.as_mut_slice()),
        kind,
        &protocol,
        at,
    )?;
    if let Some(providers) = providers {
        protocol = Protocol::Providers(providers);
    }
    let canary = raw_canary
        .map(|c| compile_canary(c, &path("canary"), &raw.backend))
        .transpose()?;
    let cors = cors.for_entry(raw.cors, kind, at)?;
    let concurrency = raw
        .concurrency
        .map(|c| compile_concurrency(c.0, &path("concurrency")))
        .transpose()?;
    let failover = raw_failover
        .map(|f| {
            super::failover::compile_failover(
                f,
                &path("failover"),
                &raw.backend,
                canary.as_ref().map(|c| c.backend.as_str()),
            )
        })
        .transpose()?;

    let (id, name_at) = Entry::new_id(namespace, &raw.name);
    Ok((
        Entry {
            name_at,
            kind,
            backend: raw.backend,
            timeout_ms: std::num::NonZeroU64::new(timeout),
            models: raw.models,
            // Boxed: most entries have none of these, and an entry record
            // is kept once per agent in every worker's VM.
            rate_limit: rate_limit.map(Box::new),
            protocol,
            rewrite_signed_cards,
            mcp,
            id,
            canary: canary.map(Box::new),
            cors,
            concurrency: concurrency.map(Box::new),
            failover: failover.map(Box::new),
            access: access.map(Box::new),
        },
        claims,
    ))
}

fn compile_prefix(raw: RawPrefix, at: &str) -> Result<(String, Option<String>)> {
    let prefix = route_path(&raw.prefix, &format!("{at}.prefix"))?;
    let rewrite = match raw.rewrite {
        None => Some("/".to_string()),
        Some(None) => None,
        Some(Some(to)) => Some(route_path(&to, &format!("{at}.rewrite"))?),
    };
    Ok((prefix, rewrite))
}

fn compile_protocol(
    protocol: Option<ProtocolName>,
    a2a: Option<RawA2a>,
    at: &str,
) -> Result<(Protocol, bool)> {
    let a2a = a2a.unwrap_or_default();
    let rewrite_signed_cards = a2a.rewrite_signed_cards.unwrap_or(false);
    match protocol.unwrap_or(ProtocolName::OpenAi) {
        ProtocolName::OpenAi => {
            // Translation settings on an entry that is not translated are a
            // mistake (a forgotten `protocol: "a2a"`), never silently unused.
            for (field, set) in [
                ("version", a2a.version.is_some()),
                ("path", a2a.path.is_some()),
            ] {
                if set {
                    return Err(ConfigError::new(
                        format!("{at}.a2a.{field}"),
                        "only used with \"protocol\": \"a2a\"",
                    ));
                }
            }
            Ok((Protocol::OpenAi, rewrite_signed_cards))
        }
        ProtocolName::A2a => {
            let path = match a2a.path {
                Some(p) => route_path(&p, &format!("{at}.a2a.path"))?,
                None => "/".to_string(),
            };
            Ok((
                Protocol::A2a {
                    version: a2a.version.unwrap_or(A2aVersion::V1_0),
                    path,
                },
                rewrite_signed_cards,
            ))
        }
    }
}

fn compile_rate_limit(raw: RawRateLimit, at: &str, has_service: bool) -> Result<RateLimit> {
    let path = |field: &str| format!("{at}.{field}");
    let per = client_per(raw.per.as_deref(), &path("per"))?;
    if raw.scope == Some(ScopeName::Global) {
        if !has_service {
            return Err(ConfigError::new(
                path("scope"),
                "\"global\" needs a top-level rate_limit_service to ask",
            ));
        }
        let numbers = [
            ("requests_per_second", raw.requests_per_second.is_some()),
            ("burst", raw.burst.is_some()),
            ("tokens_per_minute", raw.tokens_per_minute.is_some()),
            ("reserve_tokens", raw.reserve_tokens.is_some()),
        ];
        if let Some((field, _)) = numbers.iter().find(|(_, set)| *set) {
            return Err(ConfigError::new(
                path(field),
                "not allowed with scope \"global\": the numbers live in the rate limit service's own limits configuration",
            ));
        }
        return Ok(RateLimit {
            per,
            scope: Scope::Global {
                tokens: raw.tokens.unwrap_or(false),
            },
        });
    }
    if raw.tokens.is_some() {
        return Err(ConfigError::new(
            path("tokens"),
            "only with scope \"global\" (a local token budget is tokens_per_minute)",
        ));
    }
    let tokens = match raw.tokens_per_minute {
        Some(0) => {
            return Err(ConfigError::new(
                path("tokens_per_minute"),
                "must be at least 1",
            ))
        }
        Some(per_minute) => {
            let reserve = match raw.reserve_tokens {
                Some(0) => {
                    return Err(ConfigError::new(
                        path("reserve_tokens"),
                        "must be at least 1",
                    ))
                }
                Some(r) => r.min(per_minute),
                None => DEFAULT_RESERVE_TOKENS.min(per_minute),
            };
            Some(TokenBudget {
                per_minute,
                reserve,
            })
        }
        None if raw.reserve_tokens.is_some() => {
            return Err(ConfigError::new(
                path("reserve_tokens"),
                "needs tokens_per_minute",
            ))
        }
        None => None,
    };
    let requests = match raw.requests_per_second {
        Some(rps) if !(rps > 0.0 && rps.is_finite()) => {
            return Err(ConfigError::new(
                path("requests_per_second"),
                "must be a number greater than 0",
            ))
        }
        Some(rps) => {
            // Without an explicit burst, allow one second's worth (at least one).
            let burst = match raw.burst {
                Some(0) => return Err(ConfigError::new(path("burst"), "must be at least 1")),
                Some(b) => u32::try_from(b)
                    .map_err(|_| ConfigError::new(path("burst"), "must be at most 4294967295"))?,
                None => rps.ceil().clamp(1.0, f64::from(u32::MAX)) as u32,
            };
            Some(RequestRate {
                requests_per_second: rps,
                burst,
            })
        }
        None if raw.burst.is_some() => {
            return Err(ConfigError::new(path("burst"), "needs requests_per_second"))
        }
        None if tokens.is_none() => {
            return Err(ConfigError::new(
                path("requests_per_second"),
                "required (or tokens_per_minute)",
            ))
        }
        None => None,
    };
    Ok(RateLimit {
        per,
        scope: Scope::Local { requests, tokens },
    })
}

fn build_router(
    entries: &[Entry],
    claims: &[(usize, Claims)],
    layouts: &[Layout],
    gateway_hosts: Option<&[String]>,
    unversioned: bool,
) -> Result<(Router, Vec<DroppedShorthand>)> {
    let explicit: usize = claims.iter().map(|(_, c)| c.prefixes.len()).sum();
    let mut builder = RouterBuilder::new(entries, explicit + layouts.len() * entries.len());
    let mut dropped = Vec::new();
    if let Some(hosts) = gateway_hosts {
        builder.gateway_hosts(hosts);
    }
    let reserved: &[&str] = if unversioned {
        &OPENAI_RESERVED
    } else {
        &OPENAI_RESERVED[..1]
    };
    let mut host_owner: FastMap<&str, usize> = FastMap::default();
    let mut prefix_owner: FastMap<&str, (usize, usize)> = FastMap::default();

    for &(i, ref c) in claims {
        for (j, host) in c.hosts.iter().enumerate() {
            if let Some(&first) = host_owner.get(host.as_str()) {
                if first != i {
                    return Err(conflict(
                        &format!("agents[{i}].hosts[{j}]"),
                        &format!("host {host:?}"),
                        first,
                        entries,
                    ));
                }
                continue;
            }
            host_owner.insert(host, i);
            builder.host(host, i);
        }
        for (j, (prefix, _)) in c.prefixes.iter().enumerate() {
            let at = format!("agents[{i}].prefixes[{j}].prefix");
            if let Some(openai) = captured_openai_path(prefix, unversioned) {
                return Err(ConfigError::new(
                    at,
                    format!("prefix {prefix:?} would capture the OpenAI path {openai:?} the gateway serves"),
                ));
            }
            if let Some(&(first, _)) = prefix_owner.get(prefix.as_str()) {
                return Err(if first == i {
                    ConfigError::new(at, format!("prefix {prefix:?} is listed twice"))
                } else {
                    conflict(&at, &format!("prefix {prefix:?}"), first, entries)
                });
            }
            prefix_owner.insert(prefix, (i, j));
        }
    }

    // Explicit prefixes first: a layout path equal to another entry's explicit
    // prefix is a conflict, equal to the entry's own explicit prefix yields to it.
    for &(i, ref c) in claims {
        for (prefix, rewrite) in &c.prefixes {
            builder.prefix(prefix, rewrite.as_deref(), i);
        }
    }

    // Shorthand is offered only for names no other entry uses, that no
    // explicit prefix claims, and that do not shadow the OpenAI surface.
    let shared = shared_names(entries);

    let mut path = String::new();
    for (i, e) in entries.iter().enumerate() {
        for layout in layouts {
            write_layout_path(
                &mut path,
                *layout,
                (e.namespace(), e.kind.as_str(), e.name()),
            );
            if let Some(&(owner, j)) = prefix_owner.get(path.as_str()) {
                if owner != i && *layout == Layout::Shorthand {
                    let because = ShorthandLoss::ExplicitPrefix {
                        entry: owner,
                        prefix: j,
                    };
                    dropped.push(DroppedShorthand { entry: i, because });
                }
                if owner == i || *layout == Layout::Shorthand {
                    continue;
                }
                return Err(conflict(
                    &format!("agents[{owner}].prefixes[{j}].prefix"),
                    &format!(
                        "prefix {path:?} (the {} layout path of agents[{i}])",
                        layout.as_str()
                    ),
                    i,
                    entries,
                ));
            }
            if *layout == Layout::Shorthand {
                if let Some(&with) = shared.get(&i) {
                    let because = ShorthandLoss::SharedName { with };
                    dropped.push(DroppedShorthand { entry: i, because });
                    continue;
                }
            }
            if *layout == Layout::Shorthand && reserved.contains(&e.name()) {
                let because = ShorthandLoss::OpenAiSegment;
                dropped.push(DroppedShorthand { entry: i, because });
                continue;
            }
            if let Some(openai) = captured_openai_path(&path, unversioned) {
                return Err(ConfigError::new(
                    format!("agents[{i}].name"),
                    format!(
                        "the {} layout path {path:?} of agents[{i}] ({}) would capture the OpenAI path {openai:?} the gateway serves: rename the entry or leave the {} layout out of `layouts`",
                        layout.as_str(),
                        e.id,
                        layout.as_str()
                    ),
                ));
            }
            builder.layout(*layout, i, &path);
        }
    }
    Ok((builder.build()?, dropped))
}

/// The entries whose name another entry has too (in another namespace or
/// kind), each with the first other entry of that name: their shorthand
/// would be ambiguous.
fn shared_names(entries: &[Entry]) -> FastMap<usize, usize> {
    let mut with = FastMap::default();
    // Never an error: the closure only records.
    let _ = repeats(entries, Entry::name, |first, i| {
        with.entry(first).or_insert(i);
        with.insert(i, first);
        Ok(())
    });
    with
}

/// Calls `repeat(first, i)` for each entry `i` whose key an earlier entry
/// `first` has. The table holds entry numbers and reads keys from the
/// entries: four bytes a slot, where a map of 10,000 strings was the
/// slowest step of loading them.
fn repeats<'e>(
    entries: &'e [Entry],
    key: impl Fn(&'e Entry) -> &'e str,
    mut repeat: impl FnMut(usize, usize) -> Result<()>,
) -> Result<()> {
    let key_of = |k: &u32| entries.get(*k as usize).map_or("", &key);
    let mut first: HashTable<u32> = HashTable::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let Ok(number) = u32::try_from(i) else {
            break; // The router refuses this many entries.
        };
        let k = key(e);
        match first.entry(hash_str(k), |f| key_of(f) == k, |f| hash_str(key_of(f))) {
            TableEntry::Occupied(owner) => repeat(*owner.get() as usize, i)?,
            TableEntry::Vacant(place) => {
                place.insert(number);
            }
        }
    }
    Ok(())
}

/// The OpenAI path an agent path would take over: one at or below it by
/// whole segments, or any `/v1/models/{id}` for a path below `/v1/models/`.
fn captured_openai_path(prefix: &str, unversioned: bool) -> Option<&'static str> {
    let base = prefix.trim_end_matches('/');
    // Every OpenAI path starts with one of these segments: most agent paths
    // are settled by their first segment (this runs for every layout path).
    let first = base.trim_start_matches('/').split('/').next();
    if !base.is_empty() && !first.is_some_and(|f| OPENAI_RESERVED.contains(&f)) {
        return None;
    }
    let mut served = OPENAI_PATHS
        .into_iter()
        .filter(|openai| unversioned || openai.starts_with("/v1/"));
    served.find(|openai| {
        if openai.ends_with('/') {
            return prefix.starts_with(openai);
        }
        base.is_empty()
            || *openai == base
            || openai
                .strip_prefix(base)
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

fn build_models(entries: &[Entry], agent_models: bool) -> Result<ModelTable> {
    let implicit = |e: &Entry| agent_models && e.kind == Kind::Agent;
    let ids = entries
        .iter()
        .map(|e| e.models.len() + usize::from(implicit(e)))
        .sum();
    let mut table = ModelTable::with_capacity(ids);
    for (i, e) in entries.iter().enumerate() {
        let implicit = implicit(e).then_some(OWN_ID);
        let explicit = (0..e.models.len()).filter_map(|j| u32::try_from(j).ok());
        for which in implicit.into_iter().chain(explicit) {
            table.claim(entries, i, which).map_err(|why| {
                let (path, model) = match e.models.get(which as usize) {
                    Some(model) => (format!("agents[{i}].models[{which}]"), model.as_str()),
                    None => (format!("agents[{i}].name"), e.id.as_str()),
                };
                why.into_error(&path, model, entries)
            })?;
        }
    }
    Ok(table)
}

/// DNS-1123 label: lowercase alphanumerics and '-', 1–63 chars, alphanumeric at
/// both ends. It keeps names safe as path segments, header values and stat
/// name parts. `path` is formatted only for an error.
fn dns_label(s: &str, path: impl FnOnce() -> String) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            path(),
            format!("{s:?} is not a DNS-1123 label (lowercase letters, digits and '-', at most 63, starting and ending with a letter or digit)"),
        ))
    }
}

/// A host as written in `hosts`: lowercased, exact or `*.suffix`.
fn host_pattern(s: &str, path: &str) -> Result<String> {
    let lower = s.to_ascii_lowercase();
    let bare = lower.strip_prefix("*.").unwrap_or(&lower);
    let ok = !bare.is_empty()
        && bare.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(lower)
    } else {
        Err(ConfigError::new(
            path,
            format!("{s:?} is not a host name (expected e.g. \"agent.example.com\" or \"*.example.com\", no port, no scheme)"),
        ))
    }
}

/// A path prefix or rewrite target: absolute, no query, no dot-segments, no
/// trailing slash (except `/` itself).
fn route_path(s: &str, path: &str) -> Result<String> {
    let err = |why: &str| ConfigError::new(path, format!("{s:?} {why}"));
    if !s.starts_with('/') {
        return Err(err("must start with '/'"));
    }
    if s.bytes()
        .any(|b| !(0x21..0x7f).contains(&b) || b"?#{}*".contains(&b))
    {
        return Err(err(
            "must be a plain path (no spaces, '?', '#', '{', '}' or '*')",
        ));
    }
    if s.split('/').any(|seg| seg == "." || seg == "..") || s.contains("//") {
        return Err(err("must not contain '.', '..' or empty segments"));
    }
    if crate::router::has_dot_segment(s) {
        return Err(err("must not contain encoded dot-segments"));
    }
    let trimmed = s.trim_end_matches('/');
    Ok(if trimmed.is_empty() {
        "/".to_string()
    } else {
        trimmed.to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_duration_ms, Per};

    fn err(json: &str) -> String {
        Plan::from_json(json.as_bytes()).unwrap_err().to_string()
    }

    fn ok(json: &str) -> Plan {
        Plan::from_json(json.as_bytes()).unwrap()
    }

    #[test]
    fn empty_configuration_has_no_agents_and_defaults() {
        for empty in ["", "  \n", "{}", "null"] {
            let p = ok(empty);
            assert!(p.entries.is_empty());
            assert_eq!(p.dispatch_header, "x-agent-backend");
            assert_eq!(p.unmatched, Unmatched::Pass);
            assert_eq!(p.openai.model_from, ModelSource::Body);
            assert_eq!(p.openai.max_body_bytes, 1048576);
        }
    }

    #[test]
    fn the_spec_example_compiles() {
        let p = ok(r#"{
          "dispatch_header": "x-agent-backend",
          "layouts": ["kind", "namespaced", "shorthand"],
          "unmatched": "pass",
          "defaults": { "timeouts": { "agent": "120s", "modelapi": "120s", "mcp": "30s" } },
          "openai": { "model_from": "body", "metadata_namespace": "agentroute", "max_body_bytes": 1048576 },
          "agents": [ {
              "name": "coordinator", "namespace": "prod", "kind": "agent",
              "backend": "outbound|8000||agent-coordinator.prod.svc.cluster.local",
              "timeout": "300s", "models": ["coordinator-v2"],
              "hosts": ["coordinator.agents.example.com"],
              "prefixes": [ { "prefix": "/customer-service", "rewrite": "/" } ],
              "rate_limit": { "requests_per_second": 5, "burst": 10 } } ]
        }"#);
        let e = &p.entries[0];
        assert_eq!(e.timeout_ms.map(|t| t.get()), Some(300_000));
        assert_eq!(
            e.rate_limit,
            Some(Box::new(RateLimit {
                per: Per::Entry,
                scope: Scope::Local {
                    requests: Some(RequestRate {
                        requests_per_second: 5.0,
                        burst: 10
                    }),
                    tokens: None,
                },
            }))
        );
        assert_eq!(p.model_entry("coordinator-v2"), Some(0));
        assert_eq!(p.model_entry("prod/coordinator"), Some(0));
    }

    #[test]
    fn errors_name_the_field_path() {
        let cases = [
            (
                r#"{"agents":[{"name":"a","backend":"b"},{"name":"c","bakend":"b"}]}"#,
                "agents[1].bakend: unknown field",
            ),
            (
                r#"{"agents":[{"name":"a"}]}"#,
                "agents[0].backend: required",
            ),
            (
                r#"{"agents":[{"name":"A_b","backend":"b"}]}"#,
                "agents[0].name: \"A_b\" is not a DNS-1123 label",
            ),
            (
                r#"{"agents":[{"name":"a","namespace":"-x","backend":"b"}]}"#,
                "agents[0].namespace:",
            ),
            (
                r#"{"agents":[{"name":"a","backend":"b","kind":"bot"}]}"#,
                "agents[0].kind: unknown kind \"bot\"",
            ),
            (
                r#"{"agents":[{"name":"a","backend":"b","timeout":"30"}]}"#,
                "agents[0].timeout: invalid duration \"30\"",
            ),
            (
                r#"{"agents":[{"name":"a","backend":"b","timeout":"1x"}]}"#,
                "agents[0].timeout: invalid duration",
            ),
            (
                r#"{"agents":[{"name":"a","backend":"b","timeout":30}]}"#,
                "agents[0].timeout: expected a string, found a number",
            ),
            (
                r#"{"defaults":{"timeouts":{"mcp":"fast"}}}"#,
                "defaults.timeouts.mcp: invalid duration",
            ),
            (
                r#"{"defaults":{"timeout":{}}}"#,
                "defaults.timeout: unknown field",
            ),
            (
                r#"{"layouts":["kind","flat"]}"#,
                "layouts[1]: unknown layout \"flat\"",
            ),
            (
                r#"{"unmatched":"drop"}"#,
                "unmatched: must be \"pass\" or \"reject\"",
            ),
            (
                r#"{"openai":{"model_from":"header"}}"#,
                "openai.model_from: must be",
            ),
            (
                r#"{"openai":{"max_body_bytes":-1}}"#,
                "openai.max_body_bytes: expected a non-negative integer",
            ),
            (
                r#"{"dispatch_header":"bad header"}"#,
                "dispatch_header: \"bad header\" is not a valid header name",
            ),
            (r#"{"dispatch_header":"x-agent-name"}"#, "dispatch_header:"),
            (
                r#"{"agents":[{"name":"a","backend":"b","hosts":["http://x"]}]}"#,
                "agents[0].hosts[0]:",
            ),
            (
                r#"{"agents":[{"name":"a","backend":"b","prefixes":[{"prefix":"x"}]}]}"#,
                "agents[0].prefixes[0].prefix: \"x\" must start with '/'",
            ),
            (
                r#"{"agents":[{"name":"a","backend":"b","prefixes":[{"prefix":"/a/../b"}]}]}"#,
                "agents[0].prefixes[0].prefix:",
            ),
            (
                r#"{"agents":[{"name":"a","backend":"b","prefixes":[{"prefix":"/{x}"}]}]}"#,
                "agents[0].prefixes[0].prefix:",
            ),
            (
                r#"{"agents":[{"name":"a","backend":"b","prefixes":[{"prefix":"/x","rewrite":5}]}]}"#,
                "agents[0].prefixes[0].rewrite:",
            ),
            (
                r#"{"agents":[{"name":"a","backend":"b","rate_limit":{"burst":3}}]}"#,
                "agents[0].rate_limit.burst: needs requests_per_second",
            ),
            (
                r#"{"agents":[{"name":"a","backend":"b","rate_limit":{"requests_per_second":0}}]}"#,
                "agents[0].rate_limit.requests_per_second: must be",
            ),
            (
                r#"{"agents":[{"name":"a","backend":"b","rate_limit":{"requests_per_second":1,"burst":0}}]}"#,
                "agents[0].rate_limit.burst: must be at least 1",
            ),
            (
                r#"{"agents":[{"name":"a","backend":"b","models":[""]}]}"#,
                "agents[0].models[0]: must not be empty",
            ),
            (
                r#"{"agents":[{"name":"a","backend":"b c"}]}"#,
                "agents[0].backend:",
            ),
            (
                r#"{"agents":{}}"#,
                "agents: expected an array, found an object",
            ),
            // Agents are read one at a time, after the rest: their errors
            // still carry the whole path.
            (
                r#"{"agents":[{"name":"a","backend":"b"},7]}"#,
                "agents[1]: expected an object, found a number",
            ),
            (
                r#"{"agents":[{"name":"a","backend":"b","name":"c"}]}"#,
                "agents[0].name: given twice",
            ),
            (
                r#"{"agents":[{"name":"a","backend":"b","rate_limit":{"scope":"everywhere"}}]}"#,
                "agents[0].rate_limit.scope:",
            ),
            (
                r#"{"agents":[{"name":"a","backend":"b","prefixes":[{"prefix":"/x","rewrite":[]}]}]}"#,
                "agents[0].prefixes[0].rewrite: expected a string, found an array",
            ),
            (
                r#"{"agents":[{"name":"a","backend":"b"}"#,
                "configuration is not valid JSON",
            ),
            (r#"[1]"#, "configuration must be a JSON object"),
            (r#"{"agents":[}"#, "configuration is not valid JSON"),
        ];
        for (json, want) in cases {
            let got = err(json);
            assert!(
                got.starts_with(want),
                "{json}\n  got:  {got}\n  want: {want}"
            );
        }
    }

    #[test]
    fn conflicts_name_both_entries() {
        let cases = [
            (r#"{"agents":[{"name":"a","backend":"b"},{"name":"a","backend":"c"}]}"#,
             "agents[1].name: \"default/a\" is already claimed by agents[0] (default/a)"),
            (r#"{"agents":[{"name":"a","backend":"b","hosts":["X.example.com"]},{"name":"c","backend":"c","hosts":["x.example.com"]}]}"#,
             "agents[1].hosts[0]: host \"x.example.com\" is already claimed by agents[0] (default/a)"),
            (r#"{"agents":[{"name":"a","backend":"b","prefixes":[{"prefix":"/p/"}]},{"name":"c","backend":"c","prefixes":[{"prefix":"/p"}]}]}"#,
             "agents[1].prefixes[0].prefix: prefix \"/p\" is already claimed by agents[0] (default/a)"),
            (r#"{"agents":[{"name":"a","backend":"b","models":["m"]},{"name":"c","backend":"c","models":["m"]}]}"#,
             "agents[1].models[0]: model \"m\" is already claimed by agents[0] (default/a)"),
            (r#"{"agents":[{"name":"a","backend":"b","models":["default/c"]},{"name":"c","backend":"c"}]}"#,
             "agents[1].name: model \"default/c\" is already claimed by agents[0] (default/a)"),
            (r#"{"agents":[{"name":"a","backend":"b"},{"name":"c","backend":"c","prefixes":[{"prefix":"/default/a"}]}]}"#,
             "agents[1].prefixes[0].prefix: prefix \"/default/a\" (the namespaced layout path of agents[0]) is already claimed by agents[0] (default/a)"),
        ];
        for (json, want) in cases {
            assert_eq!(err(json), want, "{json}");
        }
    }

    #[test]
    fn rate_limit_forms() {
        let p = ok(r#"{"agents":[
            {"name":"a","backend":"1","rate_limit":{"requests_per_second":0.5}},
            {"name":"b","backend":"2","rate_limit":{"tokens_per_minute":1000,"per":"header:X-Api-Key"}},
            {"name":"c","backend":"3","rate_limit":{"requests_per_second":3,"burst":7,"per":"client_ip"}}]}"#);
        let rl: Vec<_> = p
            .entries
            .iter()
            .map(|e| e.rate_limit.clone().unwrap())
            .collect();
        let local = |r: &RateLimit| match r.scope {
            Scope::Local { requests, tokens } => (requests, tokens),
            Scope::Global { .. } => panic!("expected a local limit"),
        };
        assert_eq!(
            local(&rl[0]).0,
            Some(RequestRate {
                requests_per_second: 0.5,
                burst: 1
            })
        );
        assert_eq!(
            local(&rl[1]),
            (
                None,
                Some(TokenBudget {
                    per_minute: 1000,
                    reserve: 1000
                })
            )
        );
        assert_eq!(rl[1].per, Per::Header("x-api-key".to_string()));
        assert_eq!(rl[2].per, Per::ClientIp);
        for (json, want) in [
            (
                r#"{"rate_limit":{}}"#,
                "agents[0].rate_limit.requests_per_second: required (or tokens_per_minute)",
            ),
            (
                r#"{"rate_limit":{"requests_per_second":1,"per":"ip"}}"#,
                "agents[0].rate_limit.per: \"ip\" is not",
            ),
            (
                r#"{"rate_limit":{"tokens_per_minute":0}}"#,
                "agents[0].rate_limit.tokens_per_minute: must be at least 1",
            ),
            (
                r#"{"rate_limit":{"requests_per_second":1,"brust":2}}"#,
                "agents[0].rate_limit.brust: unknown field",
            ),
        ] {
            let json = format!(
                r#"{{"agents":[{{"name":"a","backend":"b",{}}}]}}"#,
                &json[1..json.len() - 1]
            );
            let got = err(&json);
            assert!(
                got.starts_with(want),
                "{json}\n  got:  {got}\n  want: {want}"
            );
        }
    }

    #[test]
    fn shorthand_clash_drops_only_the_shorthand() {
        let p = ok(r#"{"agents":[
            {"name":"a","namespace":"x","backend":"1"},
            {"name":"a","namespace":"y","backend":"2"},
            {"name":"b","backend":"3"},
            {"name":"c","backend":"4","prefixes":[{"prefix":"/b"}]},
            {"name":"v1","backend":"5"}]}"#);
        let entry = |path| p.route("gw", path).map(|m| m.entry);
        assert_eq!(entry("/a/x"), None, "shared name: no shorthand");
        assert_eq!(entry("/x/a/q"), Some(0));
        assert_eq!(entry("/y/agent/a"), Some(1));
        assert_eq!(entry("/b/q"), Some(3), "explicit prefix beats a shorthand");
        assert_eq!(entry("/default/b"), Some(2));
        assert_eq!(
            entry("/v1/chat/completions"),
            None,
            "shorthand never shadows the OpenAI surface"
        );
        assert_eq!(entry("/default/v1"), Some(4));
        // What was left out, and because of whom, for `agentroute check`.
        let dropped = |entry, because| DroppedShorthand { entry, because };
        assert_eq!(
            p.dropped_shorthands,
            [
                dropped(0, ShorthandLoss::SharedName { with: 1 }),
                dropped(1, ShorthandLoss::SharedName { with: 0 }),
                dropped(
                    2,
                    ShorthandLoss::ExplicitPrefix {
                        entry: 3,
                        prefix: 0
                    }
                ),
                dropped(4, ShorthandLoss::OpenAiSegment),
            ]
        );
        // Three of a name: each names the first other entry with it.
        let p = ok(r#"{"agents":[
            {"name":"a","namespace":"x","backend":"1"},
            {"name":"b","backend":"2"},
            {"name":"a","namespace":"y","backend":"3"},
            {"name":"a","namespace":"z","backend":"4"}]}"#);
        let shared = |entry, with| dropped(entry, ShorthandLoss::SharedName { with });
        assert_eq!(
            p.dropped_shorthands,
            [shared(0, 2), shared(2, 0), shared(3, 0)]
        );
        assert_eq!(p.route("gw", "/b").map(|m| m.entry), Some(1));
        // Without the shorthand layout nothing is dropped; an entry's own
        // prefix on `/{name}` is no loss.
        let p = ok(
            r#"{"layouts":["kind"],"agents":[{"name":"a","backend":"1"},{"name":"a","namespace":"y","backend":"2"}]}"#,
        );
        assert_eq!(p.dropped_shorthands, []);
        let p = ok(r#"{"agents":[{"name":"a","backend":"1","prefixes":[{"prefix":"/a"}]}]}"#);
        assert_eq!(p.dropped_shorthands, []);
    }

    #[test]
    fn layouts_can_be_restricted() {
        let p = ok(r#"{"layouts":["kind"],"agents":[{"name":"a","namespace":"x","backend":"1"}]}"#);
        assert!(p.route("gw", "/x/agent/a").is_some());
        assert!(p.route("gw", "/x/a").is_none());
        assert!(p.route("gw", "/a").is_none());
    }

    #[test]
    fn durations() {
        let cases = [
            ("0s", 0),
            ("500ms", 500),
            ("30s", 30_000),
            ("1m30s", 90_000),
            ("1h", 3_600_000),
            ("1.5s", 1_500),
            ("2m0.5s", 120_500),
        ];
        for (s, ms) in cases {
            assert_eq!(parse_duration_ms(s), Ok(ms), "{s}");
        }
        for s in ["", "s", "10", "1d", "1s2", "-1s", "1..5s", "99999999h"] {
            assert!(parse_duration_ms(s).is_err(), "{s}");
        }
    }

    #[test]
    fn name_and_namespace_are_read_from_the_id() {
        let p = ok(r#"{"agents":[{"name":"a","backend":"1"},
            {"name":"writer","namespace":"prod-2","backend":"2"}]}"#);
        let got: Vec<_> = p
            .entries
            .iter()
            .map(|e| (e.namespace(), e.name(), e.id.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("default", "a", "default/a"),
                ("prod-2", "writer", "prod-2/writer")
            ]
        );
    }

    #[test]
    fn zero_timeout_sets_none_and_kind_defaults_apply() {
        let p = ok(r#"{"defaults":{"timeouts":{"mcp":"10s"}},"agents":[
            {"name":"a","backend":"1","timeout":"0s"},
            {"name":"m","backend":"2","kind":"mcp"},
            {"name":"l","backend":"3","kind":"modelapi"}]}"#);
        let t: Vec<_> = p
            .entries
            .iter()
            .map(|e| e.timeout_ms.map(|t| t.get()))
            .collect();
        assert_eq!(t, [None, Some(10_000), Some(120_000)]);
    }

    #[test]
    fn ten_thousand_agents_compile_and_route() {
        let agents: Vec<String> = (0..10_000)
            .map(|i| format!(r#"{{"name":"agent-{i}","namespace":"ns-{}","backend":"b{i}","hosts":["a{i}.example.com"]}}"#, i % 100))
            .collect();
        let p = ok(&format!(r#"{{"agents":[{}]}}"#, agents.join(",")));
        assert_eq!(
            p.route("gw", "/ns-99/agent/agent-9999/x").map(|m| m.entry),
            Some(9999)
        );
        // Every layout path of every agent, and near misses of them (the
        // table keeps no path: a lookup compares with the entry's names).
        for i in (0..10_000).step_by(97) {
            let ns = i % 100;
            for path in [
                format!("/ns-{ns}/agent/agent-{i}"),
                format!("/ns-{ns}/agent-{i}/y"),
                format!("/agent-{i}"),
            ] {
                assert_eq!(p.route("gw", &path).map(|m| m.entry), Some(i), "{path}");
            }
            for path in [
                format!("/ns-{}/agent/agent-{i}", (ns + 1) % 100),
                format!("/ns-{ns}/mcpserver/agent-{i}"),
                format!("/ns-{ns}/agent/agent-{i}0x"),
                format!("/ns-{ns}x/agent-{i}"),
                format!("/agent-{i}x"),
                format!("//agent-{i}"),
            ] {
                assert_ne!(p.route("gw", &path).map(|m| m.entry), Some(i), "{path}");
            }
        }
        assert_eq!(p.route("gw", "/agent-5000").map(|m| m.entry), Some(5000));
        assert_eq!(p.route("A7.example.com", "/").map(|m| m.entry), Some(7));
    }

    #[test]
    fn a_schema_reference_is_allowed_for_editors() {
        ok(r#"{"$schema":"https://example.com/agentroute.schema.json","agents":[]}"#);
        assert!(err(r#"{"$schema":5}"#).starts_with("$schema: expected a string"));
    }

    #[test]
    fn silent_inversions_are_refused() {
        for (json, want) in [
            (
                r#"{"agents":[{"name":"a","backend":"b","timeout":"0.4ms"}]}"#,
                "agents[0].timeout: duration \"0.4ms\" is below 1ms",
            ),
            (
                r#"{"agents":[{"name":"a","name":"c","backend":"b"}]}"#,
                "agents[0].name: given twice",
            ),
            (
                r#"{"unmatched":"pass","unmatched":"reject"}"#,
                "unmatched: given twice",
            ),
            (
                r#"{"openai":{"model_from":"body","model_from":"metadata"}}"#,
                "openai.model_from: given twice",
            ),
            (
                r#"{"openai":["metadata"]}"#,
                "openai: expected an object, found an array",
            ),
            (
                r#"{"agents":[["a","b"]]}"#,
                "agents[0]: expected an object, found an array",
            ),
            (
                r#"{"identity_headers":"no"}"#,
                "identity_headers: expected a boolean",
            ),
        ] {
            let got = err(json);
            assert!(
                got.starts_with(want),
                "{json}\n  got:  {got}\n  want: {want}"
            );
        }
        assert_eq!(parse_duration_ms("1ms"), Ok(1));
        assert_eq!(parse_duration_ms("0ms"), Ok(0));
    }

    #[test]
    fn agent_paths_never_capture_the_openai_surface() {
        for (json, want) in [
            (
                r#"{"agents":[{"name":"chat","namespace":"v1","backend":"b"}]}"#,
                "agents[0].name: the namespaced layout path \"/v1/chat\" of agents[0] (v1/chat) would capture the OpenAI path \"/v1/chat/completions\"",
            ),
            (
                r#"{"agents":[{"name":"a","backend":"b","prefixes":[{"prefix":"/v1"}]}]}"#,
                "agents[0].prefixes[0].prefix: prefix \"/v1\" would capture the OpenAI path \"/v1/models\"",
            ),
            (
                r#"{"agents":[{"name":"a","backend":"b","prefixes":[{"prefix":"/"}]}]}"#,
                "agents[0].prefixes[0].prefix: prefix \"/\" would capture",
            ),
            (
                r#"{"agents":[{"name":"a","backend":"b","prefixes":[{"prefix":"/v1/models/gpt"}]}]}"#,
                "agents[0].prefixes[0].prefix: prefix \"/v1/models/gpt\" would capture the OpenAI path \"/v1/models/\"",
            ),
            (
                r#"{"agents":[{"name":"completions","namespace":"chat","backend":"b"}]}"#,
                "agents[0].name: the namespaced layout path \"/chat/completions\"",
            ),
        ] {
            let got = err(json);
            assert!(got.starts_with(want), "{json}\n  got:  {got}\n  want: {want}");
        }
        // Without the namespaced layout the same names are fine, and paths
        // beside the surface are too.
        ok(r#"{"layouts":["kind"],"agents":[{"name":"chat","namespace":"v1","backend":"b"}]}"#);
        ok(
            r#"{"agents":[{"name":"llm","namespace":"models","backend":"b","prefixes":[{"prefix":"/v1x"},{"prefix":"/v2/chat"}]}]}"#,
        );
    }

    #[test]
    fn a2a_and_global_limit_fields() {
        let p = ok(r#"{"rate_limit_service":{"cluster":"rls"},
            "openai":{"conversation_header":"X-Session"},
            "agents":[
            {"name":"e","backend":"b","protocol":"a2a","a2a":{"version":"0.3","path":"/rpc/","rewrite_signed_cards":true}},
            {"name":"g","backend":"b","rate_limit":{"scope":"global","per":"client_ip","tokens":true}},
            {"name":"o","backend":"b","a2a":{"rewrite_signed_cards":true}}]}"#);
        assert_eq!(
            p.entries[0].protocol,
            Protocol::A2a {
                version: A2aVersion::V0_3,
                path: "/rpc".into()
            }
        );
        assert!(p.entries[0].rewrite_signed_cards && p.entries[2].rewrite_signed_cards);
        assert_eq!(p.entries[2].protocol, Protocol::OpenAi);
        assert_eq!(p.openai.conversation_header, "x-session");
        let service = p.rate_limit_service.as_ref().unwrap();
        assert_eq!(
            (
                service.domain.as_str(),
                service.timeout_ms,
                service.failure_mode
            ),
            ("agentroute", 50, FailureMode::Allow)
        );
        assert_eq!(
            p.entries[1].rate_limit,
            Some(Box::new(RateLimit {
                per: Per::ClientIp,
                scope: Scope::Global { tokens: true }
            }))
        );
        assert!(ok("{}").identity_headers);
        assert!(!ok(r#"{"identity_headers":false}"#).identity_headers);
        for (json, want) in [
            (
                r#"{"agents":[{"name":"g","backend":"b","rate_limit":{"scope":"global"}}]}"#,
                "agents[0].rate_limit.scope: \"global\" needs a top-level rate_limit_service",
            ),
            (
                r#"{"rate_limit_service":{"cluster":"rls"},"agents":[{"name":"g","backend":"b","rate_limit":{"scope":"global","requests_per_second":5}}]}"#,
                "agents[0].rate_limit.requests_per_second: not allowed with scope \"global\"",
            ),
            (
                r#"{"rate_limit_service":{"cluster":"rls"},"agents":[{"name":"g","backend":"b","rate_limit":{"scope":"global","tokens_per_minute":5}}]}"#,
                "agents[0].rate_limit.tokens_per_minute: not allowed with scope \"global\"",
            ),
            (
                r#"{"agents":[{"name":"g","backend":"b","rate_limit":{"requests_per_second":1,"tokens":true}}]}"#,
                "agents[0].rate_limit.tokens: only with scope \"global\"",
            ),
            (
                r#"{"agents":[{"name":"g","backend":"b","rate_limit":{"scope":"world"}}]}"#,
                "agents[0].rate_limit.scope: must be \"local\" or \"global\", found \"world\"",
            ),
            (r#"{"rate_limit_service":{"cluster":""}}"#, "rate_limit_service.cluster: must name"),
            (r#"{"rate_limit_service":{}}"#, "rate_limit_service.cluster: required"),
            (
                r#"{"rate_limit_service":{"cluster":"r","timeout":"0s"}}"#,
                "rate_limit_service.timeout: must be more than 0s",
            ),
            (
                r#"{"rate_limit_service":{"cluster":"r","failure_mode":"open"}}"#,
                "rate_limit_service.failure_mode: must be \"allow\" or \"deny\"",
            ),
            (
                r#"{"agents":[{"name":"a","backend":"b","a2a":{"path":"/rpc"}}]}"#,
                "agents[0].a2a.path: only used with \"protocol\": \"a2a\"",
            ),
            (
                r#"{"agents":[{"name":"a","backend":"b","protocol":"grpc"}]}"#,
                "agents[0].protocol: must be \"openai\" or \"a2a\", found \"grpc\"",
            ),
            (
                r#"{"agents":[{"name":"a","backend":"b","protocol":"a2a","a2a":{"version":"2.0"}}]}"#,
                "agents[0].a2a.version: must be \"1.0\" or \"0.3\", found \"2.0\"",
            ),
            (
                r#"{"agents":[{"name":"a","backend":"b","protocol":"a2a","a2a":{"path":"rpc"}}]}"#,
                "agents[0].a2a.path: \"rpc\" must start with '/'",
            ),
            (
                r#"{"openai":{"conversation_header":"x_agent_name"}}"#,
                "openai.conversation_header: \"x_agent_name\" is a header the gateway or the filter already uses",
            ),
            (
                r#"{"agents":[{"name":"a","backend":"b","rate_limit":{"requests_per_second":1,"reserve_tokens":5}}]}"#,
                "agents[0].rate_limit.reserve_tokens: needs tokens_per_minute",
            ),
        ] {
            let got = err(json);
            assert!(got.starts_with(want), "{json}\n  got:  {got}\n  want: {want}");
        }
    }
}
