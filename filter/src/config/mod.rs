//! Plugin configuration: the contract as types ([`contract`]), read once and
//! compiled ([`compile`]) into a [`Plan`] that answers every request without
//! further parsing. Every refusal names the offending field by its path
//! (`agents[3].bakend: unknown field`), which is what an operator reading an
//! Envoy log needs.

mod access;
mod canary;
mod checks;
mod compile;
mod concurrency;
pub mod contract;
mod cors;
mod failover;
mod mcp;
pub mod models;
mod observe;
mod provider;
/// The JSON Schema of the contract: native only, the filter never links it.
#[cfg(not(target_arch = "wasm32"))]
pub mod schema;

use std::cell::OnceCell;
use std::fmt;

use serde_json::value::RawValue;

pub use contract::parse_duration_ms;

pub use crate::canary::{By as CanaryBy, Canary};
use crate::cors::Policy as CorsPolicy;
use crate::router::Router;
pub use models::ModelTable;
pub use observe::Observe;

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

pub type Kind = contract::KindName;
pub type Layout = contract::LayoutName;
pub type Unmatched = contract::UnmatchedName;
pub type ModelSource = contract::ModelSourceName;
pub type FailureMode = contract::FailureModeName;
pub type A2aVersion = contract::A2aVersionName;

#[derive(Debug, Clone, PartialEq)]
pub struct OpenAi {
    pub model_from: ModelSource,
    pub metadata_namespace: String,
    pub max_body_bytes: u64,
    /// Its value becomes the A2A `contextId` of a translated chat.
    pub conversation_header: String,
    /// Serve `/models`, `/chat/completions`, ... without `/v1` too.
    pub unversioned_paths: bool,
    /// Entries of kind `agent` are also model `namespace/name`.
    pub agent_models: bool,
    /// The Anthropic surface (`/v1/messages`) is served (`anthropic.enabled`).
    pub anthropic: bool,
}

/// The rate limit service global limits ask.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitService {
    pub cluster: String,
    pub domain: String,
    pub timeout_ms: u64,
    pub failure_mode: FailureMode,
}

/// The limits of one entry.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimit {
    /// Whose bucket a request draws from.
    pub per: Per,
    pub scope: Scope,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Scope {
    /// Buckets in this Envoy's shared data, shared by its workers.
    Local {
        /// Request bucket; `None` when the entry only has a token budget.
        requests: Option<RequestRate>,
        /// LLM token budget: `usage.total_tokens` debited per minute.
        tokens: Option<TokenBudget>,
    },
    /// The rate limit service decides; `tokens` meters LLM tokens there too.
    Global { tokens: bool },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestRate {
    pub requests_per_second: f64,
    pub burst: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBudget {
    pub per_minute: u64,
    /// Held at admission when the body names no `max_tokens`.
    pub reserve: u64,
}

/// One bucket for the entry, or one per distinct client value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Per {
    Entry,
    /// The value of this (lowercase) request header.
    Header(String),
    /// The downstream peer address (the client as Envoy sees it).
    ClientIp,
    /// A claim of the caller's verified identity (`identity`).
    Claim(String),
}

/// What the entry's backend speaks on the OpenAI surface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protocol {
    /// Requests forwarded byte for byte.
    OpenAi,
    /// Chat completions translated to A2A JSON-RPC at `path`.
    A2a { version: A2aVersion, path: String },
    /// The backends speak the APIs of `provider` and `provider_options`
    /// (one or more of them not plain OpenAI): requests are translated for
    /// the backend each goes to.
    Providers(Box<crate::llm::Providers>),
}

/// One agent, model API or MCP server, with everything a request needs
/// precomputed.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Where the name starts in [`Entry::id`]: name and namespace are
    /// read from there (one string per agent instead of three).
    name_at: u32,
    pub kind: Kind,
    pub backend: String,
    /// Request timeout in milliseconds; `None` for `0s`. A number, not
    /// the header value: formatting it per request costs less than a
    /// string per agent in every worker's VM.
    pub timeout_ms: Option<std::num::NonZeroU64>,
    pub models: Vec<String>,
    pub rate_limit: Option<Box<RateLimit>>,
    pub protocol: Protocol,
    /// Rewrite agent cards that carry `signatures` too.
    pub rewrite_signed_cards: bool,
    /// Tool rules of an MCP server: calls and tool lists are read and
    /// judged. `None` (no rules) leaves its traffic untouched.
    pub mcp: Option<Box<crate::mcp::rules::ToolRules>>,
    /// `namespace/name`: the entry's identity in logs, model ids, bucket
    /// keys and rate limit descriptors.
    pub id: String,
    /// A second backend taking part of the requests.
    pub canary: Option<Box<Canary>>,
    /// The CORS policy (index in [`Plan::cors`]): the entry's own, the
    /// top-level one, or none.
    pub cors: Option<usize>,
    pub concurrency: Option<Box<Concurrency>>,
    /// Backends that take over when the entry's backend fails.
    pub failover: Option<Box<crate::failover::Failover>>,
    /// Who may use the entry (`access`), and `mcp.oauth`.
    pub access: Option<Box<crate::identity::EntryAccess>>,
}

/// An entry's in-flight limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Concurrency {
    pub max_in_flight: u32,
    /// One limit for the entry, or one per client value.
    pub per: Per,
}

/// The model table keeps no exact id: it reads them from the entries.
impl models::ModelIds for [Entry] {
    fn model_id(&self, entry: usize, which: u32) -> Option<&str> {
        let e = self.get(entry)?;
        match which {
            models::OWN_ID => Some(&e.id),
            j => e.models.get(j as usize).map(String::as_str),
        }
    }
}

/// The router keeps no layout path: it reads them from the entries.
impl crate::router::LayoutNames for [Entry] {
    fn layout_names(&self, entry: usize) -> Option<(&str, &str, &str)> {
        let e = self.get(entry)?;
        Some((e.namespace(), e.kind.as_str(), e.name()))
    }
}

impl Entry {
    /// What the entry's backends speak, when any is not plain OpenAI.
    pub fn providers(&self) -> Option<&crate::llm::Providers> {
        match &self.protocol {
            Protocol::Providers(p) => Some(p),
            _ => None,
        }
    }

    /// `id` is `namespace/name`.
    fn new_id(namespace: &str, name: &str) -> (String, u32) {
        // Exactly as long as it needs: kept once per agent in every VM.
        let mut id = String::with_capacity(namespace.len() + 1 + name.len());
        id.push_str(namespace);
        id.push('/');
        id.push_str(name);
        let at = u32::try_from(namespace.len() + 1).unwrap_or(u32::MAX);
        (id, at)
    }

    pub fn name(&self) -> &str {
        self.id.get(self.name_at as usize..).unwrap_or_default()
    }

    pub fn namespace(&self) -> &str {
        let end = (self.name_at as usize).saturating_sub(1);
        self.id.get(..end).unwrap_or_default()
    }

    /// A token budget reads the `usage` of this entry's answers (locally,
    /// or to report it to the rate limit service).
    pub fn meters_tokens(&self) -> bool {
        self.rate_limit.as_ref().is_some_and(|l| match l.scope {
            Scope::Local { tokens, .. } => tokens.is_some(),
            Scope::Global { tokens } => tokens,
        })
    }
}

/// An entry whose shorthand path (`/{name}`) the router left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DroppedShorthand {
    /// Index in `agents[]`.
    pub entry: usize,
    pub because: ShorthandLoss,
}

/// Why a shorthand was left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShorthandLoss {
    /// Another entry (the first other one, by index) has the same name.
    SharedName { with: usize },
    /// `agents[entry].prefixes[prefix]` claims `/{name}` explicitly.
    ExplicitPrefix { entry: usize, prefix: usize },
    /// The name is a segment of the OpenAI surface (`v1`, `models`, ...).
    OpenAiSegment,
}

/// The compiled configuration: immutable, built once per VM.
#[derive(Debug)]
pub struct Plan {
    pub dispatch_header: String,
    /// Slot headers of retries across backends (`x-agent-backend-2`, ...),
    /// as many as the entry with the most backends needs.
    pub slot_headers: Vec<String>,
    /// Set `x-agent-name/-namespace/-kind` on a match.
    pub identity_headers: bool,
    pub unmatched: Unmatched,
    pub openai: OpenAi,
    pub rate_limit_service: Option<RateLimitService>,
    /// Access-log properties, token counters per model, upstream stats per
    /// entry.
    pub observe: Observe,
    pub entries: Vec<Entry>,
    pub router: Router,
    /// Model ids and patterns → entry index.
    pub models: ModelTable,
    /// Shorthand paths left out because of another entry or the OpenAI
    /// surface: routing ignores this (the contract drops a clashing shorthand
    /// silently); `agentroute check` reports it.
    pub dropped_shorthands: Vec<DroppedShorthand>,
    /// CORS policies, compiled once per entry kind they apply to (the
    /// default allowed and exposed headers differ by kind).
    pub cors: Vec<CorsPolicy>,
    /// The top-level policy as the OpenAI surface and the filter's replies
    /// to requests of no entry use it.
    pub surface_cors: Option<usize>,
    /// How much of an address is one client (`per: client_ip`).
    pub client_ip: crate::client_key::IpPrefixes,
    /// Where verified claims are read (`identity`).
    pub identity: crate::identity::Identity,
    /// Some entry has `access` rules: `/v1/models` answers per caller.
    pub has_access_rules: bool,
    /// Some entry reads the caller's claims (`access`, `mcp.oauth`, a
    /// per-claim limit): only then does a request carry a claims cache.
    pub uses_claims: bool,
    /// Some entry is an MCP server: protected-resource metadata requests
    /// are looked at (`/.well-known/oauth-protected-resource/...`).
    pub has_mcp: bool,
    /// Some entry has `mcp.oauth`: its protected-resource metadata is
    /// served under `/.well-known/oauth-protected-resource/...`.
    pub has_oauth: bool,
    /// Unix time the plan was loaded (the `created` of `/v1/models`); the
    /// host sets it, as the core has no clock.
    pub created: u64,
    /// The `GET /v1/models` body, built on first use and kept: with 10,000
    /// agents it is ~850 KB, too much to rebuild per request.
    pub(crate) models_body: OnceCell<String>,
}

impl Plan {
    /// The CORS policy of an entry (its own, the top-level one, or none).
    pub fn entry_cors(&self, entry: usize) -> Option<&CorsPolicy> {
        let index = self.entries.get(entry)?.cors?;
        self.cors.get(index)
    }

    /// The entry a request goes to (hosts, then the longest prefix).
    pub fn route<'a>(&'a self, authority: &str, path: &'a str) -> Option<crate::router::Match<'a>> {
        self.router.route(authority, path, self.entries.as_slice())
    }

    /// The entry serving an OpenAI model id, and the configured id or
    /// pattern that claims it.
    pub fn model_claim(&self, model: &str) -> Option<(usize, models::ModelId<'_>)> {
        self.models.claim_of(self.entries.as_slice(), model)
    }

    /// The entry serving an OpenAI model id.
    pub fn model_entry(&self, model: &str) -> Option<usize> {
        self.model_claim(model).map(|(entry, _)| entry)
    }

    /// The top-level CORS policy, as the OpenAI surface uses it.
    pub fn surface_cors(&self) -> Option<&CorsPolicy> {
        self.cors.get(self.surface_cors?)
    }

    /// Parses and compiles a plugin configuration. Empty input (Istio sends an
    /// empty value when `pluginConfig` is absent) is a valid plan with no
    /// agents.
    pub fn from_json(bytes: &[u8]) -> Result<Plan, ConfigError> {
        compile::compile(read::<&RawValue>(utf8(bytes)?)?)
    }

    /// Reads the whole contract, every agent included, without compiling
    /// it (tools and fuzz targets look at what a configuration says; the
    /// plugin never does, and its code stays out of the module).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_contract(bytes: &[u8]) -> Result<contract::RawConfig, ConfigError> {
        read(utf8(bytes)?)
    }
}

fn utf8(bytes: &[u8]) -> Result<&str, ConfigError> {
    std::str::from_utf8(bytes).map_err(|_| ConfigError::new("", "configuration is not valid UTF-8"))
}

/// Reads a configuration's contract; with `A` = `&RawValue` each agent stays
/// JSON text until the compile step reads it ([`read_agent`]).
fn read<'t, A: serde::Deserialize<'t>>(
    text: &'t str,
) -> Result<contract::RawConfig<A>, ConfigError> {
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed == "null" {
        return Ok(contract::RawConfig::default());
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let raw: contract::Obj<contract::RawConfig<A>> =
        serde_path_to_error::deserialize(&mut de).map_err(|e| from_serde(e, ""))?;
    de.end()
        .map_err(|e| ConfigError::new("", format!("configuration is not valid JSON: {e}")))?;
    Ok(raw.0)
}

/// One entry of `agents`, read from its JSON text when the compile step
/// gets to it; errors name their field under `at` (`agents[3]`). The
/// configuration is read with every agent left as text: parsing all of them
/// first would keep the whole list in its contract form at once (twice
/// while the list grows), and a Wasm VM's memory keeps its peak for good.
fn read_agent(text: &RawValue, at: &str) -> Result<contract::RawAgent, ConfigError> {
    let mut de = serde_json::Deserializer::from_str(text.get());
    serde_path_to_error::deserialize::<_, contract::Obj<contract::RawAgent>>(&mut de)
        .map(|agent| agent.0)
        .map_err(|e| from_serde(e, at))
}

/// A serde error as a [`ConfigError`] in the filter's own words: the field
/// path first, then what is wrong with it. `under` is the path of the value
/// that was read (empty for the whole configuration).
fn from_serde(err: serde_path_to_error::Error<serde_json::Error>, under: &str) -> ConfigError {
    let path = match (err.path().to_string(), under) {
        (p, under) if p == "." => under.to_string(),
        (p, "") => p,
        (p, under) => format!("{under}.{p}"),
    };
    let inner = err.inner();
    if !matches!(inner.classify(), serde_json::error::Category::Data) {
        return ConfigError::new("", format!("configuration is not valid JSON: {inner}"));
    }
    let full = inner.to_string();
    // serde_json appends the position; the path says more to an operator.
    let message = match full.rfind(" at line ") {
        Some(i) => &full[..i],
        None => full.as_str(),
    };
    describe(path, message)
}

fn describe(path: String, message: &str) -> ConfigError {
    let join = |field: &str| {
        if path.is_empty() || path.ends_with(&format!(".{field}")) || path == field {
            if path.is_empty() {
                field.to_string()
            } else {
                path.clone()
            }
        } else {
            format!("{path}.{field}")
        }
    };
    if let Some(field) = backticked(message, "missing field `") {
        return ConfigError::new(join(field), "required");
    }
    if let Some(field) = backticked(message, "unknown field `") {
        return ConfigError::new(join(field), "unknown field");
    }
    if let Some(field) = backticked(message, "duplicate field `") {
        return ConfigError::new(join(field), "given twice (duplicate key)");
    }
    let typed = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "));
    if let Some((found, expected)) = typed.and_then(|t| t.split_once(", expected ")) {
        if path.is_empty() && expected == "an object" {
            return ConfigError::new(
                "",
                format!(
                    "configuration must be a JSON object, found {}",
                    found_name(found)
                ),
            );
        }
        return ConfigError::new(
            path,
            format!(
                "expected {}, found {}",
                expected_name(expected),
                found_name(found)
            ),
        );
    }
    ConfigError::new(path, message)
}

fn backticked<'m>(message: &'m str, prefix: &str) -> Option<&'m str> {
    let rest = message.strip_prefix(prefix)?;
    rest.split('`').next()
}

fn found_name(found: &str) -> &'static str {
    match found.split([' ', '`']).next().unwrap_or("") {
        "integer" | "floating" => "a number",
        "string" => "a string",
        "boolean" => "a boolean",
        "sequence" => "an array",
        "map" => "an object",
        "null" | "unit" => "null",
        _ => "a value of another type",
    }
}

fn expected_name(expected: &str) -> String {
    match expected {
        "u64" | "u32" | "usize" => "a non-negative integer".to_string(),
        "f64" | "f32" => "a number".to_string(),
        "a boolean" | "bool" => "a boolean".to_string(),
        "a sequence" => "an array".to_string(),
        e if e.starts_with("struct ") => "an object".to_string(),
        e => e.to_string(),
    }
}
