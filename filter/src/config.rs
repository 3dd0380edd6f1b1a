//! Plugin configuration: parse and validate the JSON contract once, then
//! compile it into a [`Plan`] that answers every request without further
//! parsing.
//!
//! Validation walks the JSON by hand rather than through serde derive so that
//! every error names the offending field by its full path
//! (`agents[3].bakend: unknown field`), which is what an operator reading an
//! Envoy log needs.

use std::collections::HashMap;
use std::fmt;

use serde_json::{Map, Value};

use crate::router::{Router, RouterBuilder};

/// Header names the filter owns on every request: client copies never pass.
pub const HEADER_AGENT_NAME: &str = "x-agent-name";
pub const HEADER_AGENT_NAMESPACE: &str = "x-agent-namespace";
pub const HEADER_AGENT_KIND: &str = "x-agent-kind";
pub const HEADER_FORWARDED_PREFIX: &str = "x-forwarded-prefix";
pub const HEADER_TIMEOUT: &str = "x-envoy-upstream-rq-timeout-ms";

/// A configuration the plugin refuses, with the field path that caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

type Result<T> = std::result::Result<T, ConfigError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Agent,
    ModelApi,
    Mcp,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Agent, Kind::ModelApi, Kind::Mcp];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Agent => "agent",
            Kind::ModelApi => "modelapi",
            Kind::Mcp => "mcp",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Kind,
    Namespaced,
    Shorthand,
}

impl Layout {
    const ALL: [Layout; 3] = [Layout::Kind, Layout::Namespaced, Layout::Shorthand];

    fn as_str(self) -> &'static str {
        match self {
            Layout::Kind => "kind",
            Layout::Namespaced => "namespaced",
            Layout::Shorthand => "shorthand",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmatched {
    Pass,
    Reject,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelSource {
    Body,
    Metadata,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OpenAi {
    pub model_from: ModelSource,
    pub metadata_namespace: String,
    pub max_body_bytes: u64,
}

/// Token buckets of one entry.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimit {
    /// Request bucket: refill rate and capacity. `None` when the entry only
    /// has a token budget.
    pub requests: Option<RequestRate>,
    /// LLM token budget: `usage.total_tokens` debited per minute.
    pub tokens_per_minute: Option<u64>,
    /// Whose bucket a request draws from.
    pub per: Per,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestRate {
    pub requests_per_second: f64,
    pub burst: u32,
}

/// One bucket for the entry, or one per distinct client value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Per {
    Entry,
    /// The value of this (lowercase) request header.
    Header(String),
    /// The downstream peer address (the client as Envoy sees it).
    ClientIp,
}

/// One agent, model API or MCP server, with everything a request needs
/// precomputed.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub name: String,
    pub namespace: String,
    pub kind: Kind,
    pub backend: String,
    /// Request timeout in milliseconds as the header value; `None` for `0s`.
    pub timeout_ms: Option<String>,
    pub models: Vec<String>,
    pub rate_limit: Option<RateLimit>,
}

impl Entry {
    /// `namespace/name`, the entry's identity in logs, stats and model ids.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// The compiled configuration: immutable, built once per VM.
#[derive(Debug)]
pub struct Plan {
    pub dispatch_header: String,
    pub unmatched: Unmatched,
    pub openai: OpenAi,
    pub entries: Vec<Entry>,
    pub router: Router,
    /// Model id → entry index.
    pub models: HashMap<String, usize>,
    /// Every model id in configuration order, for `GET /v1/models`.
    pub model_ids: Vec<(String, usize)>,
    /// Unix time the plan was loaded (the `created` of `/v1/models`); the
    /// host sets it, as the core has no clock.
    pub created: u64,
}

impl Plan {
    /// Parses and compiles a plugin configuration. Empty input (Istio sends an
    /// empty value when `pluginConfig` is absent) is a valid plan with no
    /// agents.
    pub fn from_json(bytes: &[u8]) -> Result<Plan> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| ConfigError::new("", "configuration is not valid UTF-8"))?;
        if text.trim().is_empty() {
            return compile(Map::new());
        }
        let value: Value = serde_json::from_str(text)
            .map_err(|e| ConfigError::new("", format!("configuration is not valid JSON: {e}")))?;
        match value {
            Value::Object(root) => compile(root),
            Value::Null => compile(Map::new()),
            other => Err(ConfigError::new(
                "",
                format!(
                    "configuration must be a JSON object, found {}",
                    type_name(&other)
                ),
            )),
        }
    }
}

const DEFAULT_DISPATCH_HEADER: &str = "x-agent-backend";
const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;

/// OpenAI path segments a shorthand must not shadow (`/v1/...`, `/models`, ...).
const OPENAI_RESERVED: [&str; 6] = [
    "v1",
    "models",
    "chat",
    "completions",
    "embeddings",
    "responses",
];

fn compile(mut map: Map<String, Value>) -> Result<Plan> {
    // The agents are taken out of the document and each dropped once
    // compiled: the JSON tree of 10,000 agents never sits beside the plan, and
    // a Wasm VM's memory keeps its peak for good.
    let agents = match map.remove("agents") {
        None => Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(ConfigError::new("agents", expected("an array", &other))),
    };
    let root = Fields::new(&map, "");
    root.only(&[
        "dispatch_header",
        "layouts",
        "unmatched",
        "defaults",
        "openai",
        "agents",
    ])?;

    let dispatch_header = match root.opt_str("dispatch_header")? {
        Some(h) => header_name(h, &root.path("dispatch_header"))?,
        None => DEFAULT_DISPATCH_HEADER.to_string(),
    };
    let layouts = layouts(&root)?;
    let unmatched = match root.opt_str("unmatched")? {
        None | Some("pass") => Unmatched::Pass,
        Some("reject") => Unmatched::Reject,
        Some(other) => {
            return Err(ConfigError::new(
                root.path("unmatched"),
                format!("must be \"pass\" or \"reject\", found {other:?}"),
            ))
        }
    };
    let default_timeouts = default_timeouts(&root)?;
    let openai = openai(&root)?;

    let mut entries = Vec::with_capacity(agents.len());
    let mut raw = Vec::with_capacity(agents.len());
    for (i, value) in agents.into_iter().enumerate() {
        let path = format!("agents[{i}]");
        let (entry, routes) = entry(&value, &path, &default_timeouts)?;
        entries.push(entry);
        raw.push(routes);
    }

    let mut ids: HashMap<String, usize> = HashMap::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        if let Some(first) = ids.insert(e.id(), i) {
            return Err(conflict(
                &format!("agents[{i}].name"),
                &format!("\"{}\"", e.id()),
                first,
                &entries,
            ));
        }
    }

    let router = build_router(&entries, &raw, &layouts)?;
    let (models, model_ids) = build_models(&entries)?;

    Ok(Plan {
        dispatch_header,
        unmatched,
        openai,
        entries,
        router,
        models,
        model_ids,
        created: 0,
    })
}

fn layouts(root: &Fields) -> Result<Vec<Layout>> {
    let Some(items) = root.opt_array("layouts")? else {
        return Ok(Layout::ALL.to_vec());
    };
    let mut layouts = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("{}[{i}]", root.path("layouts"));
        let s = item
            .as_str()
            .ok_or_else(|| ConfigError::new(&path, expected("a string", item)))?;
        let layout = Layout::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| {
                ConfigError::new(
                    &path,
                    format!(
                        "unknown layout {s:?} (expected \"kind\", \"namespaced\" or \"shorthand\")"
                    ),
                )
            })?;
        if !layouts.contains(&layout) {
            layouts.push(layout);
        }
    }
    Ok(layouts)
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

fn default_timeouts(root: &Fields) -> Result<KindTimeouts> {
    let mut timeouts: KindTimeouts = [120_000, 120_000, 30_000];
    let Some(defaults) = root.opt_object("defaults")? else {
        return Ok(timeouts);
    };
    defaults.only(&["timeouts"])?;
    let Some(per_kind) = defaults.opt_object("timeouts")? else {
        return Ok(timeouts);
    };
    per_kind.only(&["agent", "modelapi", "mcp"])?;
    for (slot, kind) in timeouts.iter_mut().zip(Kind::ALL) {
        if let Some(s) = per_kind.opt_str(kind.as_str())? {
            *slot = parse_duration_ms(s)
                .map_err(|m| ConfigError::new(per_kind.path(kind.as_str()), m))?;
        }
    }
    Ok(timeouts)
}

fn openai(root: &Fields) -> Result<OpenAi> {
    let mut openai = OpenAi {
        model_from: ModelSource::Body,
        metadata_namespace: "agentroute".to_string(),
        max_body_bytes: DEFAULT_MAX_BODY_BYTES,
    };
    let Some(o) = root.opt_object("openai")? else {
        return Ok(openai);
    };
    o.only(&["model_from", "metadata_namespace", "max_body_bytes"])?;
    match o.opt_str("model_from")? {
        None | Some("body") => {}
        Some("metadata") => openai.model_from = ModelSource::Metadata,
        Some(other) => {
            return Err(ConfigError::new(
                o.path("model_from"),
                format!("must be \"body\" or \"metadata\", found {other:?}"),
            ))
        }
    }
    if let Some(ns) = o.opt_str("metadata_namespace")? {
        if ns.is_empty() {
            return Err(ConfigError::new(
                o.path("metadata_namespace"),
                "must not be empty",
            ));
        }
        openai.metadata_namespace = ns.to_string();
    }
    if let Some(n) = o.opt_u64("max_body_bytes")? {
        if n == 0 {
            return Err(ConfigError::new(
                o.path("max_body_bytes"),
                "must be at least 1",
            ));
        }
        openai.max_body_bytes = n;
    }
    Ok(openai)
}

/// Routing claims of one entry, resolved into the router after all entries
/// are known (shorthand uniqueness needs the whole list).
#[derive(Debug, Default)]
struct Claims {
    hosts: Vec<String>,
    prefixes: Vec<(String, Option<String>)>,
}

fn entry(value: &Value, path: &str, timeouts: &KindTimeouts) -> Result<(Entry, Claims)> {
    let obj = value
        .as_object()
        .ok_or_else(|| ConfigError::new(path, expected("an object", value)))?;
    let f = Fields::new(obj, path);
    f.only(&[
        "name",
        "namespace",
        "kind",
        "backend",
        "timeout",
        "models",
        "hosts",
        "prefixes",
        "rate_limit",
    ])?;

    let name = dns_label(f.req_str("name")?, &f.path("name"))?;
    let namespace = match f.opt_str("namespace")? {
        Some(ns) => dns_label(ns, &f.path("namespace"))?,
        None => "default".to_string(),
    };
    let kind = match f.opt_str("kind")? {
        None => Kind::Agent,
        Some(s) => Kind::parse(s).ok_or_else(|| {
            ConfigError::new(
                f.path("kind"),
                format!("unknown kind {s:?} (expected \"agent\", \"modelapi\" or \"mcp\")"),
            )
        })?,
    };
    let backend = f.req_str("backend")?;
    if backend.is_empty() || !is_header_value(backend) {
        return Err(ConfigError::new(
            f.path("backend"),
            "must be a non-empty string of visible characters (it is sent as a header value)",
        ));
    }
    let timeout = match f.opt_str("timeout")? {
        Some(s) => parse_duration_ms(s).map_err(|m| ConfigError::new(f.path("timeout"), m))?,
        None => kind_timeout(timeouts, kind),
    };

    let models = f
        .opt_string_list("models")?
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            if m.is_empty() {
                Err(ConfigError::new(
                    format!("{}[{i}]", f.path("models")),
                    "must not be empty",
                ))
            } else {
                Ok(m.to_string())
            }
        })
        .collect::<Result<Vec<_>>>()?;

    let hosts = f
        .opt_string_list("hosts")?
        .into_iter()
        .enumerate()
        .map(|(i, h)| host_pattern(h, &format!("{}[{i}]", f.path("hosts"))))
        .collect::<Result<Vec<_>>>()?;

    let mut prefixes = Vec::new();
    for (i, p) in f.opt_array("prefixes")?.unwrap_or(&[]).iter().enumerate() {
        let ppath = format!("{}[{i}]", f.path("prefixes"));
        prefixes.push(prefix(p, &ppath)?);
    }

    let rate_limit = match f.opt_object("rate_limit")? {
        Some(rl) => Some(rate_limit(&rl)?),
        None => None,
    };

    let entry = Entry {
        name,
        namespace,
        kind,
        backend: backend.to_string(),
        timeout_ms: (timeout > 0).then(|| timeout.to_string()),
        models,
        rate_limit,
    };
    Ok((entry, Claims { hosts, prefixes }))
}

fn prefix(value: &Value, path: &str) -> Result<(String, Option<String>)> {
    let obj = value
        .as_object()
        .ok_or_else(|| ConfigError::new(path, expected("an object", value)))?;
    let f = Fields::new(obj, path);
    f.only(&["prefix", "rewrite"])?;
    let prefix = route_path(f.req_str("prefix")?, &f.path("prefix"))?;
    let rewrite = match obj.get("rewrite") {
        None => Some("/".to_string()),
        Some(Value::Null) => None,
        Some(Value::String(s)) => Some(route_path(s, &f.path("rewrite"))?),
        Some(other) => {
            return Err(ConfigError::new(
                f.path("rewrite"),
                expected("a path string or null", other),
            ))
        }
    };
    Ok((prefix, rewrite))
}

fn rate_limit(f: &Fields) -> Result<RateLimit> {
    f.only(&["requests_per_second", "burst", "per", "tokens_per_minute"])?;
    let rps = f.opt_f64("requests_per_second")?;
    let tokens_per_minute = match f.opt_u64("tokens_per_minute")? {
        Some(0) => {
            return Err(ConfigError::new(
                f.path("tokens_per_minute"),
                "must be at least 1",
            ))
        }
        other => other,
    };
    let requests = match rps {
        Some(rps) if !(rps > 0.0 && rps.is_finite()) => {
            return Err(ConfigError::new(
                f.path("requests_per_second"),
                "must be a number greater than 0",
            ))
        }
        Some(rps) => {
            // Without an explicit burst, allow one second's worth (at least one).
            let burst = match f.opt_u64("burst")? {
                Some(0) => return Err(ConfigError::new(f.path("burst"), "must be at least 1")),
                Some(b) => u32::try_from(b)
                    .map_err(|_| ConfigError::new(f.path("burst"), "must be at most 4294967295"))?,
                None => rps.ceil().clamp(1.0, f64::from(u32::MAX)) as u32,
            };
            Some(RequestRate {
                requests_per_second: rps,
                burst,
            })
        }
        None if f.get("burst").is_some() => {
            return Err(ConfigError::new(
                f.path("burst"),
                "needs requests_per_second",
            ))
        }
        None if tokens_per_minute.is_none() => {
            return Err(ConfigError::new(
                f.path("requests_per_second"),
                "required (or tokens_per_minute)",
            ))
        }
        None => None,
    };
    let per = match f.opt_str("per")? {
        None | Some("entry") => Per::Entry,
        Some("client_ip") => Per::ClientIp,
        Some(p) => match p.strip_prefix("header:") {
            Some(h) => Per::Header(header_name(h, &f.path("per"))?),
            None => {
                return Err(ConfigError::new(
                    f.path("per"),
                    format!("{p:?} is not \"entry\", \"client_ip\" or \"header:<name>\""),
                ))
            }
        },
    };
    Ok(RateLimit {
        requests,
        tokens_per_minute,
        per,
    })
}

fn build_router(entries: &[Entry], claims: &[Claims], layouts: &[Layout]) -> Result<Router> {
    let mut builder = RouterBuilder::default();
    let mut host_owner: HashMap<&str, (usize, usize)> = HashMap::new();
    let mut prefix_owner: HashMap<&str, (usize, usize)> = HashMap::new();

    for (i, c) in claims.iter().enumerate() {
        for (j, host) in c.hosts.iter().enumerate() {
            if let Some(&(first, _)) = host_owner.get(host.as_str()) {
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
            host_owner.insert(host, (i, j));
            builder.host(host, i);
        }
        for (j, (prefix, _)) in c.prefixes.iter().enumerate() {
            if let Some(&(first, _)) = prefix_owner.get(prefix.as_str()) {
                return Err(if first == i {
                    ConfigError::new(
                        format!("agents[{i}].prefixes[{j}].prefix"),
                        format!("prefix {prefix:?} is listed twice"),
                    )
                } else {
                    conflict(
                        &format!("agents[{i}].prefixes[{j}].prefix"),
                        &format!("prefix {prefix:?}"),
                        first,
                        entries,
                    )
                });
            }
            prefix_owner.insert(prefix, (i, j));
        }
    }

    // Explicit prefixes first: a layout path equal to another entry's explicit
    // prefix is a conflict, equal to the entry's own explicit prefix yields to it.
    for (i, c) in claims.iter().enumerate() {
        for (prefix, rewrite) in &c.prefixes {
            builder.prefix(prefix, rewrite.clone(), i);
        }
    }

    // Shorthand is offered only for names no other entry uses, that no
    // explicit prefix claims, and that do not shadow the OpenAI surface.
    let mut name_count: HashMap<&str, usize> = HashMap::new();
    for e in entries {
        *name_count.entry(e.name.as_str()).or_default() += 1;
    }

    for (i, e) in entries.iter().enumerate() {
        for layout in layouts {
            let path = match layout {
                Layout::Kind => format!("/{}/{}/{}", e.namespace, e.kind.as_str(), e.name),
                Layout::Namespaced => format!("/{}/{}", e.namespace, e.name),
                Layout::Shorthand => format!("/{}", e.name),
            };
            if let Some(&(owner, j)) = prefix_owner.get(path.as_str()) {
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
            if *layout == Layout::Shorthand
                && (name_count.get(e.name.as_str()) != Some(&1)
                    || OPENAI_RESERVED.contains(&e.name.as_str()))
            {
                continue;
            }
            builder.prefix(&path, Some("/".to_string()), i);
        }
    }
    builder.build()
}

type Models = (HashMap<String, usize>, Vec<(String, usize)>);

fn build_models(entries: &[Entry]) -> Result<Models> {
    let mut owner: HashMap<String, (usize, String)> = HashMap::new();
    let mut ordered = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let implicit = (e.kind == Kind::Agent).then(|| (e.id(), format!("agents[{i}].name")));
        let explicit = e
            .models
            .iter()
            .enumerate()
            .map(|(j, m)| (m.clone(), format!("agents[{i}].models[{j}]")));
        for (model, path) in implicit.into_iter().chain(explicit) {
            if let Some((first, _)) = owner.get(&model) {
                if *first == i {
                    continue;
                }
                return Err(conflict(
                    &path,
                    &format!("model {model:?}"),
                    *first,
                    entries,
                ));
            }
            owner.insert(model.clone(), (i, path));
            ordered.push((model, i));
        }
    }
    let models = owner.into_iter().map(|(m, (i, _))| (m, i)).collect();
    Ok((models, ordered))
}

fn conflict(path: &str, what: &str, first: usize, entries: &[Entry]) -> ConfigError {
    let first_id = entries.get(first).map(Entry::id).unwrap_or_default();
    ConfigError::new(
        path,
        format!("{what} is already claimed by agents[{first}] ({first_id})"),
    )
}

/// Parses `1h2m3s500ms`-style durations into milliseconds. Fractions are
/// allowed (`1.5s`); a bare number is not (its unit would be a guess).
pub fn parse_duration_ms(s: &str) -> std::result::Result<u64, String> {
    let bad =
        || format!("invalid duration {s:?} (expected e.g. \"30s\", \"1m30s\", \"500ms\", \"0s\")");
    if s.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (num, tail) = rest.split_at(num_len);
        let value: f64 = num.parse().map_err(|_| bad())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let ms_per_unit = match unit {
            "ms" => 1.0,
            "s" => 1_000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            _ => return Err(bad()),
        };
        total += value * ms_per_unit;
        rest = tail;
    }
    // Envoy takes the timeout header as a 64-bit count of milliseconds; a
    // year is far past any sensible request timeout.
    const MAX_MS: f64 = 365.0 * 24.0 * 3_600_000.0;
    if !(total.is_finite() && total <= MAX_MS) {
        return Err(format!("duration {s:?} is too long (at most 8760h)"));
    }
    Ok(total.round() as u64)
}

/// DNS-1123 label: lowercase alphanumerics and '-', 1–63 chars, alphanumeric at
/// both ends. It keeps names safe as path segments, header values and stat
/// name parts.
fn dns_label(s: &str, path: &str) -> Result<String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(s.to_string())
    } else {
        Err(ConfigError::new(
            path,
            format!("{s:?} is not a DNS-1123 label (lowercase letters, digits and '-', at most 63, starting and ending with a letter or digit)"),
        ))
    }
}

fn header_name(s: &str, path: &str) -> Result<String> {
    let lower = s.to_ascii_lowercase();
    let token = !lower.is_empty()
        && lower
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        return Err(ConfigError::new(
            path,
            format!("{s:?} is not a valid header name"),
        ));
    }
    let reserved = [
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "upgrade",
        HEADER_AGENT_NAME,
        HEADER_AGENT_NAMESPACE,
        HEADER_AGENT_KIND,
        HEADER_FORWARDED_PREFIX,
        HEADER_TIMEOUT,
    ];
    if reserved.contains(&lower.as_str()) {
        return Err(ConfigError::new(
            path,
            format!("{s:?} is a header the gateway or the filter already uses"),
        ));
    }
    Ok(lower)
}

fn is_header_value(s: &str) -> bool {
    s.bytes().all(|b| (0x21..0x7f).contains(&b))
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
    let trimmed = s.trim_end_matches('/');
    Ok(if trimmed.is_empty() {
        "/".to_string()
    } else {
        trimmed.to_string()
    })
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn expected(what: &str, found: &Value) -> String {
    format!("expected {what}, found {}", type_name(found))
}

/// A JSON object together with its path, for typed field access with errors
/// that name the field.
struct Fields<'a> {
    map: &'a Map<String, Value>,
    at: String,
}

impl<'a> Fields<'a> {
    fn new(map: &'a Map<String, Value>, at: impl Into<String>) -> Self {
        Fields { map, at: at.into() }
    }

    fn path(&self, key: &str) -> String {
        if self.at.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.at)
        }
    }

    /// Refuses any key not in `allowed`: a typo must never be ignored.
    fn only(&self, allowed: &[&str]) -> Result<()> {
        match self.map.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(ConfigError::new(self.path(k), "unknown field")),
            None => Ok(()),
        }
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key)
    }

    fn req_str(&self, key: &str) -> Result<&'a str> {
        self.opt_str(key)?
            .ok_or_else(|| ConfigError::new(self.path(key), "required"))
    }

    fn opt_str(&self, key: &str) -> Result<Option<&'a str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(ConfigError::new(self.path(key), expected("a string", v))),
        }
    }

    fn opt_u64(&self, key: &str) -> Result<Option<u64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                ConfigError::new(self.path(key), expected("a non-negative integer", v))
            }),
        }
    }

    fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| ConfigError::new(self.path(key), expected("a number", v))),
        }
    }

    fn opt_array(&self, key: &str) -> Result<Option<&'a [Value]>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(v) => Err(ConfigError::new(self.path(key), expected("an array", v))),
        }
    }

    fn opt_object(&self, key: &str) -> Result<Option<Fields<'a>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(Fields::new(map, self.path(key)))),
            Some(v) => Err(ConfigError::new(self.path(key), expected("an object", v))),
        }
    }

    fn opt_string_list(&self, key: &str) -> Result<Vec<&'a str>> {
        let Some(items) = self.opt_array(key)? else {
            return Ok(Vec::new());
        };
        items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str().ok_or_else(|| {
                    ConfigError::new(format!("{}[{i}]", self.path(key)), expected("a string", v))
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(e.timeout_ms.as_deref(), Some("300000"));
        assert_eq!(
            e.rate_limit,
            Some(RateLimit {
                requests: Some(RequestRate {
                    requests_per_second: 5.0,
                    burst: 10
                }),
                tokens_per_minute: None,
                per: Per::Entry,
            })
        );
        assert_eq!(p.models.get("coordinator-v2"), Some(&0));
        assert_eq!(p.models.get("prod/coordinator"), Some(&0));
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
        assert_eq!(
            rl[0].requests,
            Some(RequestRate {
                requests_per_second: 0.5,
                burst: 1
            })
        );
        assert_eq!(
            (rl[1].requests, rl[1].tokens_per_minute),
            (None, Some(1000))
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
        let entry = |path| p.router.route("gw", path).map(|m| m.entry);
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
    }

    #[test]
    fn layouts_can_be_restricted() {
        let p = ok(r#"{"layouts":["kind"],"agents":[{"name":"a","namespace":"x","backend":"1"}]}"#);
        assert!(p.router.route("gw", "/x/agent/a").is_some());
        assert!(p.router.route("gw", "/x/a").is_none());
        assert!(p.router.route("gw", "/a").is_none());
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
    fn zero_timeout_sets_none_and_kind_defaults_apply() {
        let p = ok(r#"{"defaults":{"timeouts":{"mcp":"10s"}},"agents":[
            {"name":"a","backend":"1","timeout":"0s"},
            {"name":"m","backend":"2","kind":"mcp"},
            {"name":"l","backend":"3","kind":"modelapi"}]}"#);
        let t: Vec<_> = p.entries.iter().map(|e| e.timeout_ms.as_deref()).collect();
        assert_eq!(t, [None, Some("10000"), Some("120000")]);
    }

    #[test]
    fn ten_thousand_agents_compile_and_route() {
        let agents: Vec<String> = (0..10_000)
            .map(|i| format!(r#"{{"name":"agent-{i}","namespace":"ns-{}","backend":"b{i}","hosts":["a{i}.example.com"]}}"#, i % 100))
            .collect();
        let p = ok(&format!(r#"{{"agents":[{}]}}"#, agents.join(",")));
        assert_eq!(
            p.router
                .route("gw", "/ns-99/agent/agent-9999/x")
                .map(|m| m.entry),
            Some(9999)
        );
        assert_eq!(
            p.router.route("gw", "/agent-5000").map(|m| m.entry),
            Some(5000)
        );
        assert_eq!(
            p.router.route("A7.example.com", "/").map(|m| m.entry),
            Some(7)
        );
    }
}
