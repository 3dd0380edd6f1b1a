//! Writes a target from the mapped agents: the plugin configuration, or the
//! manifests / bootstrap that carry it, in the shape of the shipped
//! `istio/`, `envoy/gateway/` and `envoy/demo.yaml`.
//!
//! Everything is built as JSON values with keys in a fixed order and
//! serialised once, so the output is byte-identical for the same agents.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

mod base;
mod envoy;
mod kubernetes;

use agentroute::config::Plan;

use super::{Agent, Backend, ProviderRoute, Trust};
pub use base::LAYER_BACKEND;
pub use envoy::DEFAULT_WASM;
pub use kubernetes::{backend_names, route_layout, RouteGroup, BACKENDS_HOST};

/// What `generate` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Target {
    /// The plugin configuration (JSON).
    #[default]
    Config,
    /// Gateway, WasmPlugin, json_to_metadata EnvoyFilter, HTTPRoutes.
    Istio,
    /// Gateway, EnvoyExtensionPolicy, json_to_metadata EnvoyPatchPolicy,
    /// HTTPRoutes with the catch-all.
    EnvoyGateway,
    /// An Envoy bootstrap with one STRICT_DNS cluster per Service port.
    Envoy,
}

impl Target {
    pub fn parse(name: &str) -> Option<Target> {
        match name {
            "config" => Some(Target::Config),
            "istio" => Some(Target::Istio),
            "envoy-gateway" => Some(Target::EnvoyGateway),
            "envoy" => Some(Target::Envoy),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Target::Config => "config",
            Target::Istio => "istio",
            Target::EnvoyGateway => "envoy-gateway",
            Target::Envoy => "envoy",
        }
    }
}

/// How the Kubernetes targets lead a dispatched request to its Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dispatch {
    /// One HTTPRoute rule per Service port matching its token in the
    /// dispatch header (the shipped istio/ and envoy/gateway/).
    #[default]
    HeaderRules,
    /// A `cluster_header` route patched in first, each backend the
    /// controller's cluster name, the rules on a host of their own (the
    /// shipped istio/large/ and envoy/gateway/large/): dispatch that does not
    /// grow with the number of agents.
    ClusterHeader,
}

impl Dispatch {
    pub fn parse(name: &str) -> Option<Dispatch> {
        match name {
            "header-rules" => Some(Dispatch::HeaderRules),
            "cluster-header" => Some(Dispatch::ClusterHeader),
            _ => None,
        }
    }
}

/// How to write the target.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub target: Target,
    /// Istio and Envoy Gateway only.
    pub dispatch: Dispatch,
    /// A hand-written configuration the generated entries are merged into.
    pub base: Option<Map<String, Value>>,
    /// A TLS Secret (Kubernetes targets) or certificate directory name
    /// (`envoy`): adds an HTTPS listener.
    pub tls_secret: Option<String>,
    /// What the resources may claim ([`crate::generate::trust`]).
    pub trust: Trust,
    /// Write a configuration without any entry (refused otherwise).
    pub allow_empty: bool,
    /// The plugin's OCI image (WasmPlugin, EnvoyExtensionPolicy), without
    /// `oci://`.
    pub image: Option<String>,
    /// The `envoy` target: where Envoy loads the plugin from (default
    /// [`DEFAULT_WASM`]).
    pub wasm: Option<String>,
}

/// What was written, and what to tell the user on stderr.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Output {
    pub text: String,
    /// For information: resources skipped and why.
    pub notes: Vec<String>,
    /// Probably not what a resource meant: claims not granted, misspelt
    /// fields, shadowed paths.
    pub warnings: Vec<String>,
    /// Resources left out because they could not be read or the filter
    /// would refuse their entry: the output is partial (exit 3).
    pub left_out: Vec<String>,
    /// Entries of the written configuration (base entries included).
    pub entries: usize,
}

/// The header the filter writes a backend to, unless the base says another.
const DISPATCH_HEADER: &str = "x-agent-backend";

/// Where the `envoy` target reads a TLS Secret mounted as a volume
/// (`tls.crt`, `tls.key`, as a `kubernetes.io/tls` Secret has them).
pub const TLS_MOUNT: &str = "/etc/agentroute/tls";

/// The configuration of a run and what its target is made of.
struct Assembled {
    config: Map<String, Value>,
    plan: Plan,
    backends: BTreeSet<Backend>,
    /// The provider APIs generated entries lead to (no Service port).
    providers: BTreeSet<ProviderRoute>,
    layout: Vec<RouteGroup>,
    names: BTreeMap<Backend, String>,
    notes: Vec<String>,
    warnings: Vec<String>,
}

/// Writes `target` for `agents` (sorted by [`super::map_resources`]). An
/// entry the filter would refuse (a namespace `v1` with an agent `models`
/// takes the OpenAI path `/v1/models`) is left out, the others written.
pub fn emit(agents: &[Agent], options: &Options) -> Result<Output, String> {
    let fast = options.dispatch == Dispatch::ClusterHeader;
    if fast && !matches!(options.target, Target::Istio | Target::EnvoyGateway) {
        return Err(format!(
            "--dispatch cluster-header is for --target istio and envoy-gateway (the {} target \
             dispatches by cluster_header already)",
            options.target.as_str()
        ));
    }
    // No default image: a cluster would pull one it does not have, and with
    // FAIL_CLOSE the first apply is an outage (`check` refuses the
    // placeholder generate once wrote).
    if matches!(options.target, Target::Istio | Target::EnvoyGateway) && options.image.is_none() {
        return Err(format!(
            "--target {} needs --image REF: the plugin's OCI image",
            options.target.as_str()
        ));
    }
    let mut agents = agents.to_vec();
    let mut left_out = Vec::new();
    // Each round leaves out one entry at most: bounded by their number.
    let assembled = loop {
        let assembled = assemble(&agents, options)?;
        match assembled {
            Ok(assembled) => break assembled,
            Err((i, why)) => {
                if i >= agents.len() {
                    return Err(why);
                }
                let refused = agents.remove(i);
                left_out.push(format!(
                    "{}: {}: left out: {why}",
                    refused.document, refused.source
                ));
            }
        }
    };
    let Assembled {
        config,
        plan,
        backends,
        providers,
        layout,
        names,
        mut notes,
        mut warnings,
    } = assembled;
    warnings.extend(
        crate::rules::shadowed_shorthands(&plan)
            .into_iter()
            .map(|w| format!("generated configuration: {w}")),
    );
    let dispatch_header = config
        .get("dispatch_header")
        .and_then(Value::as_str)
        .unwrap_or(DISPATCH_HEADER)
        .to_string();
    if options.base.is_some() && options.target != Target::Config {
        notes.push(
            "entries of --base with a backend of their own keep it: its HTTPRoutes or clusters are \
             not generated (an entry without a backend layers onto the generated one)"
                .to_string(),
        );
    }
    let text = match options.target {
        Target::Config => {
            let mut text = serde_json::to_string_pretty(&config).map_err(|e| e.to_string())?;
            text.push('\n');
            text
        }
        Target::Istio => yaml_documents(
            "istio",
            &kubernetes::istio(&config, &layout, &names, &dispatch_header, options),
        )?,
        Target::EnvoyGateway => yaml_documents(
            "envoy-gateway",
            &kubernetes::envoy_gateway(&config, &layout, &names, &dispatch_header, options),
        )?,
        Target::Envoy => yaml_documents(
            "envoy",
            &[envoy::envoy(
                &config,
                &plan,
                &backends,
                &providers,
                options,
                &mut warnings,
            )?],
        )?,
    };
    Ok(Output {
        text,
        notes,
        warnings,
        left_out,
        entries: plan.entries.len(),
    })
}

/// The configuration of `agents` and the parts of its target, or the agent
/// the filter refuses (its index in `agents`, and why). An index past the
/// agents: the refusal is not one agent's (a base entry), said as is.
#[allow(clippy::type_complexity)]
fn assemble(
    agents: &[Agent],
    options: &Options,
) -> Result<Result<Assembled, (usize, String)>, String> {
    let (mut notes, mut warnings) = (Vec::new(), Vec::new());
    // Base entries with their own backends keep them: the others, layered
    // or not, get routes to the generated backend.
    let generated: Vec<&Agent> = agents
        .iter()
        .filter(|a| !base::base_owns(options, a))
        .collect();
    let backends: BTreeSet<Backend> = generated
        .iter()
        .filter(|a| a.provider.is_none())
        .map(|a| a.backend.clone())
        .collect();
    let providers: BTreeSet<ProviderRoute> = generated
        .iter()
        .filter_map(|a| a.provider.clone())
        .collect();
    provider_notes(&generated, options.target, &mut notes);
    let layout = route_layout(&backends);
    let names = backend_names(&layout, options);
    let config = plugin_config(agents, options, &mut notes, &mut warnings, &names)?;
    let json = serde_json::to_vec(&config).map_err(|e| e.to_string())?;
    match Plan::from_json(&json) {
        Ok(plan) => Ok(Ok(Assembled {
            config,
            plan,
            backends,
            providers,
            layout,
            names,
            notes,
            warnings,
        })),
        Err(e) => Ok(Err(refused_agent(options, &config, agents, &e))),
    }
}

/// The agent of `agents` the filter's error names, and the error with the
/// resource it came from; `agents.len()` when it names none of them.
fn refused_agent(
    options: &Options,
    config: &Map<String, Value>,
    agents: &[Agent],
    e: &agentroute::config::ConfigError,
) -> (usize, String) {
    let entries = config.get("agents").and_then(Value::as_array);
    let index = e
        .path
        .strip_prefix("agents[")
        .and_then(|rest| rest.split(']').next())
        .and_then(|i| i.parse::<usize>().ok());
    let from = index
        .and_then(|i| entries.and_then(|list| list.get(i)))
        .and_then(|entry| {
            agents.iter().position(|a| {
                !base::base_owns(options, a)
                    && entry.get("name").and_then(Value::as_str) == Some(a.name.as_str())
                    && entry.get("namespace").and_then(Value::as_str) == Some(a.namespace.as_str())
            })
        });
    match from {
        Some(i) => (i, format!("the filter would refuse its entry: {e}")),
        None => (
            agents.len(),
            format!("the filter would refuse the generated configuration: {e}"),
        ),
    }
}

/// One entry of the configuration, keys in the contract's order; `backend`
/// is what the dispatch header carries for its Service port.
pub(super) fn entry_json(a: &Agent, backend: &str) -> Value {
    let mut e = Map::new();
    e.insert("name".into(), json!(a.name));
    e.insert("namespace".into(), json!(a.namespace));
    e.insert("kind".into(), json!(a.kind.as_str()));
    e.insert("backend".into(), json!(backend));
    if let Some(t) = &a.timeout {
        e.insert("timeout".into(), json!(t));
    }
    if !a.models.is_empty() {
        e.insert("models".into(), json!(a.model_ids()));
    }
    if !a.hosts.is_empty() {
        e.insert("hosts".into(), json!(a.host_names()));
    }
    if let Some(a2a) = &a.a2a {
        e.insert("protocol".into(), json!("a2a"));
        e.insert(
            "a2a".into(),
            json!({ "version": a2a.version, "path": a2a.path }),
        );
    }
    if let Some(p) = &a.provider {
        e.insert("provider".into(), json!(p.api));
        if let Some(max_tokens) = p.max_tokens {
            e.insert(
                "provider_options".into(),
                json!({ "max_tokens": max_tokens }),
            );
        }
    }
    Value::Object(e)
}

/// One note per provider API the entries lead to: what routes it on the
/// target, and that its key is never in the output.
fn provider_notes(agents: &[&Agent], target: Target, notes: &mut Vec<String>) {
    let mut seen = BTreeSet::new();
    for a in agents {
        let Some(p) = &a.provider else { continue };
        let backend = p.backend(target);
        if !seen.insert(backend.clone()) {
            continue;
        }
        let routed = match target {
            Target::Config => "the gateway's route or cluster of that name",
            Target::Istio => "a ServiceEntry for the host (istio/providers/)",
            Target::EnvoyGateway => {
                "a Backend and HTTPRoute rule matching it (envoy/gateway/providers/)"
            }
            Target::Envoy => "the generated cluster, its key from an SDS secret file",
        };
        notes.push(format!(
            "backend {backend} ({}:{}, {} API, from {}): routed by {routed}; the API key is injected              there from a Secret, never read by generate nor written to the configuration",
            p.host, p.port, p.api, a.source
        ));
    }
}

/// The plugin configuration: the base's settings and entries, then the
/// generated entries the base does not have. On Istio and Envoy Gateway the
/// model is read by json_to_metadata (`model_from: metadata`) unless the base
/// says otherwise: neither can let the filter pause for the body.
fn plugin_config(
    agents: &[Agent],
    options: &Options,
    notes: &mut Vec<String>,
    warnings: &mut Vec<String>,
    names: &BTreeMap<Backend, String>,
) -> Result<Map<String, Value>, String> {
    let mut config = options.base.clone().unwrap_or_default();
    if matches!(options.target, Target::Istio | Target::EnvoyGateway) {
        let openai = config
            .entry("openai")
            .or_insert_with(|| Value::Object(Map::new()));
        let Some(openai) = openai.as_object_mut() else {
            return Err("--base: openai must be an object".to_string());
        };
        openai
            .entry("model_from")
            .or_insert_with(|| json!("metadata"));
        openai
            .entry("metadata_namespace")
            .or_insert_with(|| json!("agentroute"));
    }
    let entries = match config.remove("agents") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items,
        Some(_) => return Err("--base: agents must be an array".to_string()),
    };
    let entries = base::merge(entries, agents, names, options.target, notes, warnings);
    config.insert("agents".into(), Value::Array(entries));
    Ok(config)
}

/// The label every generated Kubernetes object carries, so that a re-run can
/// `kubectl apply --prune -l` what it no longer writes.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "agentroute-generate");

fn yaml_documents(target: &str, docs: &[Value]) -> Result<String, String> {
    let mut docs = docs.to_vec();
    for doc in &mut docs {
        if let Some(meta) = doc.get_mut("metadata").and_then(Value::as_object_mut) {
            let (key, value) = MANAGED_BY;
            meta.insert("labels".into(), json!({ key: value }));
        }
    }
    let mut text = format!(
        "# Generated by `agentroute generate --target {target}` from the platforms' resources:\n\
         # re-run it when they change rather than editing this file.\n"
    );
    for (i, doc) in docs.iter().enumerate() {
        if i > 0 {
            text.push_str("---\n");
        }
        text.push_str(&serde_norway::to_string(doc).map_err(|e| e.to_string())?);
    }
    Ok(text)
}

/// HCM `early_header_mutation_extensions` removing the dispatch header, so
/// that a client's copy never reaches routing even where the filter does
/// not run (as the shipped configurations do).
fn early_header_removal(header: &str) -> Value {
    json!([ {
        "name": "envoy.http.early_header_mutation.header_mutation",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.http.early_header_mutation.header_mutation.v3.HeaderMutation",
            "mutations": [ { "remove": header } ]
        }
    } ])
}
