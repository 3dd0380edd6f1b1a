//! The configuration contract as types: what users write in a WasmPlugin's
//! `pluginConfig`, an EnvoyExtensionPolicy's `config` or an Envoy bootstrap's
//! `configuration`. Serde reads it (unknown and duplicate fields refused,
//! every error with its field path); `compile` turns it into a plan. The
//! JSON Schema in `schema/agentroute.schema.json` is generated from these
//! types, so the doc comments below are what editors show.
//!
//! Only the shape lives here. Rules that need more than one field (names,
//! conflicts, limits that depend on the scope) are the compile step's.

use std::fmt;

mod identity;

pub use identity::{IdentitySource, RawAccessRule, RawIdentity, RawOAuth};

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

#[cfg(not(target_arch = "wasm32"))]
use schemars::JsonSchema;

/// The configuration of the agentroute Proxy-Wasm filter: what an Istio
/// WasmPlugin's `pluginConfig`, an Envoy Gateway EnvoyExtensionPolicy's
/// `wasm[].config` or an Envoy bootstrap's `configuration` holds. Unknown
/// fields are errors.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[cfg_attr(
    not(target_arch = "wasm32"),
    schemars(title = "agentroute plugin configuration")
)]
pub struct RawConfig<A = Obj<RawAgent>> {
    /// The JSON Schema this configuration follows, for editors; the filter
    /// ignores it.
    #[serde(rename = "$schema")]
    pub schema: Option<String>,
    /// Request header the filter sets to the chosen entry's `backend` (default
    /// `x-agent-backend`). An Envoy route with `cluster_header`, or HTTPRoute
    /// header matches, send the request on from there.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "x-agent-backend")))]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(pattern(r"^[-!#$%&'*+.^_`|~0-9A-Za-z]+$"))
    )]
    pub dispatch_header: Option<String>,
    /// URL layouts every entry is exposed under (default: all three).
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = ["kind", "namespaced", "shorthand"])))]
    pub layouts: Option<Vec<LayoutName>>,
    /// Set `x-agent-name`, `x-agent-namespace` and `x-agent-kind` on a match
    /// (default `true`). `false` sets none (client copies are still removed)
    /// and saves their cost per request.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = true)))]
    pub identity_headers: Option<bool>,
    /// A request no entry matches: `pass` forwards it (minus client-sent
    /// dispatch and identity headers), `reject` answers 404 (default `pass`).
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "pass")))]
    pub unmatched: Option<UnmatchedName>,
    /// Defaults for entries that set none.
    pub defaults: Option<Obj<RawDefaults>>,
    /// The OpenAI surface (`/v1/models`, `/v1/chat/completions`, ...).
    pub openai: Option<Obj<RawOpenAi>>,
    /// The Anthropic surface (`/v1/messages`, `/v1/messages/count_tokens`).
    pub anthropic: Option<Obj<RawAnthropic>>,
    /// The rate limit service (Envoy's `ShouldRateLimit` protocol) that
    /// decides for entries with `rate_limit.scope: "global"`.
    pub rate_limit_service: Option<Obj<RawRateLimitService>>,
    /// Host names (exact, or `*.example.com`; case-insensitive, port
    /// ignored) on which URL layouts, explicit `prefixes` and the OpenAI
    /// surface are served. Requests for other hosts are left alone (client
    /// copies of owned headers still removed); `agents[].hosts` routes are
    /// not affected. Default: all hosts.
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(inner(pattern(r"^(\*\.)?[-_0-9A-Za-z]+(\.[-_0-9A-Za-z]+)*$")))
    )]
    pub gateway_hosts: Option<Vec<String>>,
    /// What the filter tells access logs and Envoy's upstream stats about
    /// each request (the book: Observability).
    pub observability: Option<Obj<RawObservability>>,
    /// CORS for browser clients: applies to every entry and to the OpenAI
    /// surface; an entry's own `cors` replaces it for that entry.
    pub cors: Option<Obj<RawCors>>,
    /// How much of a client address is one client for `per: client_ip`
    /// limits (default: an IPv4 address, an IPv6 /64).
    pub client_ip: Option<Obj<RawClientIp>>,
    /// Where the caller's verified identity (JWT claims) is read, for
    /// `agents[].access` and `per: "claim:NAME"` limits.
    pub identity: Option<Obj<RawIdentity>>,
    /// The agents, model APIs and MCP servers the gateway routes to.
    // The filter reads each agent only when it compiles it (`A` is the
    // agent's unparsed JSON text there), so a large list never exists twice.
    #[serde(default = "Vec::<A>::new")]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = [])))]
    pub agents: Vec<A>,
}

// Not derived: `derive(Default)` would ask the agent type for a default too.
impl<A> Default for RawConfig<A> {
    fn default() -> Self {
        RawConfig {
            schema: None,
            dispatch_header: None,
            layouts: None,
            identity_headers: None,
            unmatched: None,
            defaults: None,
            openai: None,
            anthropic: None,
            rate_limit_service: None,
            gateway_hosts: None,
            observability: None,
            cors: None,
            client_ip: None,
            identity: None,
            agents: Vec::new(),
        }
    }
}

/// How much of a client address names one client.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "ClientIp"))]
pub struct RawClientIp {
    /// Leading bits of an IPv4 address that name one client (default 32).
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = 32), range(min = 1, max = 32)))]
    pub ipv4_prefix: Option<u8>,
    /// Leading bits of an IPv6 address that name one client (default 64:
    /// one host commonly owns a whole /64).
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = 64), range(min = 1, max = 128)))]
    pub ipv6_prefix: Option<u8>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "Defaults"))]
pub struct RawDefaults {
    /// Request timeout per kind when an entry sets none.
    pub timeouts: Option<Obj<RawKindTimeouts>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "KindTimeouts"))]
pub struct RawKindTimeouts {
    /// Default `120s`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "120s")))]
    pub agent: Option<DurationMs>,
    /// Default `120s`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "120s")))]
    pub modelapi: Option<DurationMs>,
    /// Default `30s`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "30s")))]
    pub mcp: Option<DurationMs>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "OpenAi"))]
pub struct RawOpenAi {
    /// Where the `model` of an OpenAI request is read: `body` (the filter
    /// reads the body; needs `allow_on_headers_stop_iteration: true` in the
    /// Envoy PluginConfig) or `metadata` (written by Envoy's
    /// `json_to_metadata` filter placed before this one). Default `body`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "body")))]
    pub model_from: Option<ModelSourceName>,
    /// Dynamic-metadata namespace read with `model_from: metadata` (default
    /// `agentroute`).
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "agentroute")))]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(length(min = 1)))]
    pub metadata_namespace: Option<String>,
    /// Larger OpenAI request bodies are answered 413 (default 1048576).
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = 1048576)))]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(range(min = 1)))]
    pub max_body_bytes: Option<u64>,
    /// Request header whose value becomes the A2A `contextId` when a chat
    /// completion is translated for an `a2a` entry (default
    /// `x-conversation-id`).
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "x-conversation-id")))]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(pattern(r"^[-!#$%&'*+.^_`|~0-9A-Za-z]+$"))
    )]
    pub conversation_header: Option<String>,
    /// Also serve `/models`, `/chat/completions`, ... without `/v1` (default
    /// `true`); `false` leaves those paths to the gateway's other routes.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = true)))]
    pub unversioned_paths: Option<bool>,
    /// Every `agent` entry is also model `namespace/name` (default `true`);
    /// `false` makes only `models` dispatch.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = true)))]
    pub agent_models: Option<bool>,
    /// Count input and output tokens per entry and model
    /// (`agentroute_input_tokens_total`, `agentroute_output_tokens_total`)
    /// for every answer whose `usage` the filter reads. Default `true` when
    /// any entry has a token budget (those answers are metered anyway),
    /// else `false`: metering reads every answer body of model-dispatched
    /// requests, and removes their `accept-encoding` so that answers come
    /// back readable.
    pub usage_metrics: Option<bool>,
}

/// What the filter tells access logs and Envoy's upstream stats.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "Observability"))]
pub struct RawObservability {
    /// Set Envoy filter-state properties on every matched request (entry,
    /// kind, backend, model, tokens, the limit that refused it) for access
    /// logs to print with `%FILTER_STATE(wasm.agentroute.entry:PLAIN)%`
    /// and the like (default `false`: each property is a host call).
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = false)))]
    pub access_log: Option<bool>,
    /// Set `x-envoy-upstream-alt-stat-name` per entry, so that Envoy's
    /// router keeps its upstream latency histograms and response-code
    /// counters per agent too (default `false`: one header write per
    /// request, and a stat tree per entry and cluster).
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = false)))]
    pub upstream_stats: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "RateLimitService"))]
pub struct RawRateLimitService {
    /// Envoy cluster of the service (gRPC, HTTP/2).
    #[cfg_attr(not(target_arch = "wasm32"), schemars(pattern(r"^[!-~]{1,120}$")))]
    pub cluster: String,
    /// The rate limit domain (default `agentroute`).
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "agentroute")))]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(length(min = 1)))]
    pub domain: Option<String>,
    /// Per call (default `50ms`).
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "50ms")))]
    pub timeout: Option<DurationMs>,
    /// When the service is down or slow: `allow` admits, `deny` answers 503
    /// (default `allow`).
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "allow")))]
    pub failure_mode: Option<FailureModeName>,
}

/// One agent, model API or MCP server.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "Agent"))]
pub struct RawAgent {
    /// DNS-1123 label.
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(pattern(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"))
    )]
    pub name: String,
    /// DNS-1123 label (default `default`); `namespace/name` is unique.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "default")))]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(pattern(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"))
    )]
    pub namespace: Option<String>,
    /// Default `agent`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "agent")))]
    pub kind: Option<KindName>,
    /// Opaque string written to `dispatch_header`: an Envoy cluster name, or
    /// a value an HTTPRoute matches.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(pattern(r"^[!-~]+$")))]
    pub backend: String,
    /// Request timeout; `0s` = the filter sets none. Default: per kind.
    pub timeout: Option<DurationMs>,
    /// OpenAI model ids that dispatch to this entry (entries of kind `agent`
    /// also answer to `namespace/name`). An id may be a pattern `prefix/*`
    /// or `*`: exact ids win, then the longest matching prefix, then `*`.
    #[serde(default)]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = [])))]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(inner(length(min = 1), pattern(r"^[^\u0000-\u001F\u007F-\u009F]*$")))
    )]
    pub models: Vec<String>,
    /// Host names routed to this entry whatever the path (case-insensitive,
    /// port ignored; `*.example.com` matches one or more leading labels).
    #[serde(default)]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = [])))]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(inner(pattern(r"^(\*\.)?[-_0-9A-Za-z]+(\.[-_0-9A-Za-z]+)*$")))
    )]
    pub hosts: Vec<String>,
    /// Explicit path prefixes.
    #[serde(default)]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = [])))]
    pub prefixes: Vec<Obj<RawPrefix>>,
    /// Requests (and LLM tokens) this entry admits; none by default.
    pub rate_limit: Option<Box<Obj<RawRateLimit>>>,
    /// What the backend speaks on the OpenAI surface: `openai` (forwarded
    /// byte for byte) or `a2a` (chat completions translated to A2A JSON-RPC
    /// and back). Default `openai`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "openai")))]
    pub protocol: Option<ProtocolName>,
    /// How an entry with `protocol: "a2a"` is spoken to.
    pub a2a: Option<Box<Obj<RawA2a>>>,
    /// Which tools clients of an entry of kind `mcp` may list and call, and
    /// how often.
    pub mcp: Option<Box<Obj<RawMcp>>>,
    /// Sends part of the entry's requests to a second backend.
    pub canary: Option<Box<Obj<RawCanary>>>,
    /// CORS for this entry, replacing the top-level `cors`; `null` turns
    /// CORS off for the entry.
    #[serde(default, deserialize_with = "nullable")]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "Option<RawCors>"))]
    pub cors: Option<Option<Box<Obj<RawCors>>>>,
    /// How many requests (and WebSockets) of the entry may be in flight at
    /// once.
    pub concurrency: Option<Box<Obj<RawConcurrency>>>,
    /// Backends tried, in order, when `backend` (or the canary side chosen)
    /// fails: failed backends are skipped by every worker for a while, and
    /// a failed request is retried on the next one where Envoy allows it.
    pub failover: Option<Box<Obj<RawFailover>>>,
    /// Who may use the entry, by the claims of the caller's verified
    /// identity (`identity`); each rule may narrow the models and tools the
    /// caller may use. Default: everyone.
    pub access: Option<Box<Vec<Obj<RawAccessRule>>>>,
    /// The API the backend speaks: `openai` (forwarded as is), `anthropic`
    /// (Messages API) or `gemini` (`generateContent`). OpenAI-surface
    /// requests to another provider are translated, and their answers (JSON
    /// and SSE) translated back. Default `openai`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "openai")))]
    pub provider: Option<ProviderName>,
    /// Per provider: `max_tokens` (Anthropic requires one: used when the
    /// request has none), `version` (the API version), `model` (the id the
    /// backend is asked for).
    pub provider_options: Option<Box<Obj<RawProviderOptions>>>,
}

/// Backends that take over when an entry's backend fails.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "Failover"))]
pub struct RawFailover {
    /// Tried in this order after `backend` (or after the canary side
    /// chosen); each differs from `backend`, the canary's and the others.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(length(min = 1)))]
    pub backends: Vec<RawFailoverBackend>,
    /// What counts as a failure of a backend: `5xx`, `429`, single
    /// statuses (`503`), `connect-failure`, `reset`, `timeout`. Default
    /// `5xx`, `429`, `connect-failure`, `reset`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = ["5xx", "429", "connect-failure", "reset"])))]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(inner(pattern(r"^(5xx|connect-failure|reset|timeout|[1-5][0-9][0-9])$")))
    )]
    pub on: Option<Vec<String>>,
    /// How long a backend that failed is skipped by new requests, on every
    /// worker (default `30s`, at most `1h`); a `retry-after` on its answer
    /// (seconds or HTTP date, at most `5m`) counts when longer.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "30s")))]
    pub eject: Option<DurationMs>,
    /// Send the failed request itself to the next backend while nothing of
    /// the answer has reached the client (Envoy >= 1.39 with the route of
    /// the shipped bootstrap; the book: Failover). Default `true`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = true)))]
    pub retry: Option<bool>,
    /// Failures of a backend within `window` before it is ejected (default
    /// 1). More than one keeps a single client that provokes its own errors
    /// from ejecting a backend for everyone at once (the book: Failover).
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = 1), range(min = 1, max = 1000)))]
    pub min_failures: Option<u32>,
    /// The window `min_failures` are counted in (default `10s`, at most
    /// `1h`).
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "10s")))]
    pub window: Option<DurationMs>,
}

/// A second backend taking part of an entry's requests.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "Canary"))]
pub struct RawCanary {
    /// The canary's backend (must differ from the entry's `backend`).
    #[cfg_attr(not(target_arch = "wasm32"), schemars(pattern(r"^[!-~]+$")))]
    pub backend: String,
    /// 0–100, in steps of 0.01: the percentage of requests (or of cohorts,
    /// see `by`) sent to the canary.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(range(min = 0, max = 100)))]
    pub weight: f64,
    /// `random` (each request on its own), `client_ip`, `header:NAME` or
    /// `cookie:NAME`: a keyed hash of that value decides, so a client stays
    /// on one side on every replica and after restarts, and raising the
    /// weight only moves clients to the canary. A request without the value
    /// is decided at random. Default `random`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "random")))]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(pattern(
            r"^(random|client_ip|header:[-!#$%&'*+.^_`|~0-9A-Za-z]+|cookie:[-!#$%&'*+.^_`|~0-9A-Za-z]+)$"
        ))
    )]
    pub by: Option<String>,
    /// A request header forcing the side: `always` → canary, `never` →
    /// stable; any other value leaves it to `by` and `weight`.
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(pattern(r"^[-!#$%&'*+.^_`|~0-9A-Za-z]+$"))
    )]
    pub header: Option<String>,
    /// A secret of this deployment (at least 16 characters) the cohort hash
    /// is keyed with, so that nobody without it can compute which `by`
    /// values land on the canary. Change it and every client may change
    /// side. Default: a key fixed in the filter (cohorts are the same on
    /// every deployment).
    #[cfg_attr(not(target_arch = "wasm32"), schemars(length(min = 16)))]
    pub key: Option<String>,
    /// The API the canary's backend speaks (default: the entry's
    /// `provider`): a split across providers translates each side for its
    /// own.
    pub provider: Option<ProviderName>,
    /// The canary's provider options (default: the entry's).
    pub provider_options: Option<Obj<RawProviderOptions>>,
}

/// Which browser origins may call, and what they may send and read.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "Cors"))]
pub struct RawCors {
    /// Exact origins (`https://dashboard.example.com`, scheme, host and
    /// port; host case-insensitive), `https://*.example.com` (one or more
    /// labels in front of example.com), or `"*"` (refused with
    /// `allow_credentials: true`).
    #[cfg_attr(not(target_arch = "wasm32"), schemars(length(min = 1)))]
    pub allow_origins: Vec<String>,
    /// Methods a preflight may ask for (default `GET`, `POST`, `PUT`,
    /// `PATCH`, `DELETE`); `"*"` allows any.
    pub allow_methods: Option<Vec<String>>,
    /// Request headers a preflight may ask for (default `authorization`,
    /// `content-type`, plus the MCP headers for `kind: mcp`, `a2a-version`
    /// for `kind: agent`, and for `kind: modelapi` and the OpenAI and
    /// Anthropic surfaces the official SDKs' headers: `x-stainless-*`,
    /// `openai-organization`, `openai-project`, `openai-beta`,
    /// `anthropic-version`, `anthropic-beta`,
    /// `anthropic-dangerous-direct-browser-access`, `x-api-key`,
    /// `user-agent`); `"*"` allows any requested header
    /// (echoed back).
    pub allow_headers: Option<Vec<String>>,
    /// Response headers a browser may read (default `retry-after` and the
    /// `x-ratelimit-*` headers, plus `mcp-session-id` for `kind: mcp`).
    pub expose_headers: Option<Vec<String>>,
    /// Send `access-control-allow-credentials: true` (default `false`).
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = false)))]
    pub allow_credentials: Option<bool>,
    /// `access-control-max-age` of a preflight answer (default `10m`).
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "10m")))]
    pub max_age: Option<DurationMs>,
}

/// How many requests of an entry run at once.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "Concurrency"))]
pub struct RawConcurrency {
    /// Requests (and WebSockets) of the entry in flight at once, shared by
    /// every worker of one Envoy.
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(range(min = 1, max = 4294967295u64))
    )]
    pub max_in_flight: u64,
    /// `entry` (one limit), `client_ip`, `header:<name>` or `claim:<name>`
    /// (a verified claim, `identity`): every client its own
    /// `max_in_flight`. Default `entry`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "entry")))]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(pattern(r"^(entry|client_ip|header:[-!#$%&'*+.^_`|~0-9A-Za-z]+|claim:[^\s]+)$"))
    )]
    pub per: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "Prefix"))]
pub struct RawPrefix {
    /// Absolute path, matched by whole segments.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(pattern(r"^/[^\s?#{}*]*$")))]
    pub prefix: String,
    /// What replaces the matched prefix (default `/`); `null` keeps the path
    /// as it is.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "/")))]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(pattern(r"^/[^\s?#{}*]*$")))]
    #[serde(default, deserialize_with = "nullable")]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "Option<String>"))]
    pub rewrite: Option<Option<String>>,
}

/// A token bucket (local) or a limit the rate limit service keeps (global).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "RateLimit"))]
pub struct RawRateLimit {
    /// Refill rate (may be below 1). Local scope only.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("exclusiveMinimum" = 0)))]
    pub requests_per_second: Option<f64>,
    /// Bucket capacity (default: one second's worth, at least 1). Local only.
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(range(min = 1, max = 4294967295u64))
    )]
    pub burst: Option<u64>,
    /// `entry` (one bucket), `client_ip`, `header:<name>` or `claim:<name>`
    /// (a verified claim, `identity`; requests without it share one
    /// bucket): one bucket per distinct value. Default `entry`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "entry")))]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(pattern(r"^(entry|client_ip|header:[-!#$%&'*+.^_`|~0-9A-Za-z]+|claim:[^\s]+)$"))
    )]
    pub per: Option<String>,
    /// LLM token budget debited with each answer's `usage.total_tokens`.
    /// Local scope only.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(range(min = 1)))]
    pub tokens_per_minute: Option<u64>,
    /// Tokens held at admission when the request body names no
    /// `max_tokens` (default 1000, at most the budget); the difference is
    /// settled when the answer's usage arrives. Local scope only.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = 1000)))]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(range(min = 1)))]
    pub reserve_tokens: Option<u64>,
    /// `local` (buckets shared by this Envoy's workers) or `global` (the
    /// rate limit service decides). Default `local`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "local")))]
    pub scope: Option<ScopeName>,
    /// Global scope only: meter LLM tokens against the service too.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = false)))]
    pub tokens: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "A2a"))]
pub struct RawA2a {
    /// A2A generation of an `a2a` entry: `1.0` or `0.3` (default `1.0`).
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "1.0")))]
    pub version: Option<A2aVersionName>,
    /// Path of the agent's JSON-RPC endpoint below its own root (default `/`).
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "/")))]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(pattern(r"^/[^\s?#{}*]*$")))]
    pub path: Option<String>,
    /// Rewrite agent cards that carry `signatures` too (a rewrite invalidates
    /// them). Default `false`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = false)))]
    pub rewrite_signed_cards: Option<bool>,
}

/// Tool rules of an MCP server entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "Mcp"))]
pub struct RawMcp {
    /// Tools a client may list and call.
    pub tools: Option<Obj<RawToolRules>>,
    /// Token buckets per tool name (each tool a pattern matches has its own
    /// bucket), shared by every worker of this Envoy.
    pub tool_limits: Option<Vec<Obj<RawToolLimit>>>,
    /// The OAuth protected-resource metadata (RFC 9728) the filter serves
    /// for this entry when the gateway does its authorization
    /// (`jwt_authn`), and the `resource_metadata` of its 401 answers.
    pub oauth: Option<Box<Obj<RawOAuth>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "ToolRules"))]
pub struct RawToolRules {
    /// Tool names a client may list and call (`*` as a suffix wildcard:
    /// `fetch_*`, `*`). Default: all.
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(inner(length(min = 1, max = 256), pattern(r"^[^*\u0000-\u001F\u007F]*\*?$")))
    )]
    pub allow: Option<Vec<String>>,
    /// Tool names refused even when allowed (same patterns). Default: none.
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(inner(length(min = 1, max = 256), pattern(r"^[^*\u0000-\u001F\u007F]*\*?$")))
    )]
    pub deny: Option<Vec<String>>,
}

/// A token bucket for each tool one of `tools` matches.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "ToolLimit"))]
pub struct RawToolLimit {
    /// Tool name patterns (`*` as a suffix wildcard); the first limit whose
    /// pattern matches a tool is its limit.
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(
            length(min = 1),
            inner(length(min = 1, max = 256), pattern(r"^[^*\u0000-\u001F\u007F]*\*?$"))
        )
    )]
    pub tools: Vec<String>,
    /// Refill rate per tool (may be below 1).
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("exclusiveMinimum" = 0)))]
    pub requests_per_second: f64,
    /// Bucket capacity (default: one second's worth, at least 1).
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(range(min = 1, max = 4294967295u64))
    )]
    pub burst: Option<u64>,
    /// `entry` (every caller shares each tool's bucket), `client_ip`,
    /// `header:<name>` or `claim:<name>`: each tool's bucket per caller
    /// value (requests without it share the tool's own). Default `entry`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "entry")))]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(pattern(r"^(entry|client_ip|header:[-!#$%&'*+.^_`|~0-9A-Za-z]+|claim:[^\s]+)$"))
    )]
    pub per: Option<String>,
}

/// A JSON object read into `T`. Serde's derived structs also accept an
/// array (the fields by position), which no user means: `Obj` asks for a
/// map only, so `"openai": ["body"]` is refused like any wrong type.
#[derive(Debug, Default)]
pub struct Obj<T>(pub T);

/// In the schema `Obj<T>` is `T` itself: the schema's `"type": "object"`
/// already says what `Obj` enforces.
#[cfg(not(target_arch = "wasm32"))]
impl<T: JsonSchema> JsonSchema for Obj<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }

    fn schema_id() -> std::borrow::Cow<'static, str> {
        T::schema_id()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }
}

impl<T> std::ops::Deref for Obj<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjVisitor<T>(std::marker::PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjVisitor<T> {
            type Value = Obj<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }

            fn visit_map<M: de::MapAccess<'de>>(self, map: M) -> Result<Obj<T>, M::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Obj)
            }
        }

        d.deserialize_map(ObjVisitor(std::marker::PhantomData))
    }
}

/// Reads `null` as `Some(None)`, so that an absent field (`None`) and an
/// explicit `null` stay apart.
fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A duration in milliseconds, written `500ms`, `30s`, `1m30s`, `1h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationMs(pub u64);

impl<'de> Deserialize<'de> for DurationMs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = d.deserialize_str(StrVisitor)?;
        parse_duration_ms(&s)
            .map(DurationMs)
            .map_err(de::Error::custom)
    }
}

/// Parses `1h2m3s500ms`-style durations into milliseconds. Fractions are
/// allowed (`1.5s`); a bare number is not (its unit would be a guess), nor is
/// anything between 0 and 1 ms, which would round to `0s`, "no timeout".
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
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
    if total > 0.0 && total < 1.0 {
        return Err(format!(
            "duration {s:?} is below 1ms: it would round to \"0s\", which means no timeout"
        ));
    }
    Ok(total.round() as u64)
}

#[cfg(not(target_arch = "wasm32"))]
impl JsonSchema for DurationMs {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$",
            "description": "A duration: `500ms`, `30s`, `1m30s`, `1h`; `0s` is none. At least 1ms unless 0.",
            "examples": ["30s", "500ms", "1m30s"]
        })
    }
}

/// Owned string out of any JSON string (borrowed or escaped).
struct StrVisitor;

impl Visitor<'_> for StrVisitor {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }
}

/// `must be "a" or "b", found "x"`, or with a name for what is refused,
/// `unknown kind "x" (expected "a", "b" or "c")`.
fn enum_error(what: &str, found: &str, names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    let list = match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    };
    if what.is_empty() {
        format!("must be {list}, found {found:?}")
    } else {
        format!("unknown {what} {found:?} (expected {list})")
    }
}

/// A closed set of strings, read with an error that names the set.
macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident, $what:literal, { $($text:literal => $variant:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }

        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = d.deserialize_str(StrVisitor)?;
                Self::parse(&s).ok_or_else(|| {
                    let names: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                    de::Error::custom(enum_error($what, &s, &names))
                })
            }
        }

        #[cfg(not(target_arch = "wasm32"))]
        impl JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                // `LayoutName` is `Layout` to the schema's readers.
                stringify!($name).trim_end_matches("Name").into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({ "type": "string", "enum": [$($text),+] })
            }
        }
    };
}

string_enum!(
    /// A URL layout.
    LayoutName, "layout", { "kind" => Kind, "namespaced" => Namespaced, "shorthand" => Shorthand });
string_enum!(UnmatchedName, "", { "pass" => Pass, "reject" => Reject });
string_enum!(ModelSourceName, "", { "body" => Body, "metadata" => Metadata });
string_enum!(KindName, "kind", { "agent" => Agent, "modelapi" => ModelApi, "mcp" => Mcp });
string_enum!(ProtocolName, "", { "openai" => OpenAi, "a2a" => A2a });
string_enum!(A2aVersionName, "", { "1.0" => V1_0, "0.3" => V0_3 });
string_enum!(ScopeName, "", { "local" => Local, "global" => Global });
string_enum!(FailureModeName, "", { "allow" => Allow, "deny" => Deny });

#[cfg(test)]
mod compact {
    /// Every worker's VM keeps one entry record per agent, and holds every
    /// agent's contract form at once while it parses (the peak a Wasm VM
    /// keeps): the rarely set parts are boxed so that an entry without
    /// them stays small (672 and 472 bytes each before; 240 for the entry
    /// once boxed, 176 since it reads name and namespace from its id; 184
    /// with the box of `access` rules). Agents are read one at a time now
    /// (one contract form alive at once), so `RawAgent` may grow a little:
    /// 248 with `provider` and its boxed options.
    /// (Sizes on a 64-bit build: wasm32's are about half.)
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn agent_records_stay_compact() {
        let raw = std::mem::size_of::<super::RawAgent>();
        assert!(raw <= 248, "RawAgent is {raw} bytes");
        let entry = std::mem::size_of::<crate::config::Entry>();
        assert!(entry <= 184, "Entry is {entry} bytes");
    }
}

mod provider;

pub use provider::{
    ProviderName, RawAnthropic, RawBackendSpec, RawFailoverBackend, RawProviderOptions,
};
