//! `agentroute generate`: the platforms' own resources in, the gateway's
//! configuration out. Pure functions: [`read_resources`] splits the inputs
//! into Kubernetes objects, each platform module maps its kinds to
//! [`Agent`]s (one agentroute entry each, with the Service and port it
//! leads to), and [`emit`] writes a target from them.
//!
//! | platform | kinds | module |
//! |---|---|---|
//! | agentic-layer (`runtime.agentic-layer.ai`) | `Agent`, `AgentGateway` | [`agentic_layer`] |
//! | KAOS (`kaos.tools`, formerly `ethical.institute`) | `Agent`, `ModelAPI`, `MCPServer` | [`kaos`] |
//! | Omnia (`omnia.altairalabs.ai`) | `AgentRuntime` | [`omnia`] |
//! | Omnia (`omnia.altairalabs.ai`) | `Provider` | [`omnia_provider`] |
//!
//! Output is sorted (entries by namespace and name, Services by name), so
//! the same resources give byte-identical output whatever their order.
//!
//! Many tenants share one gateway: [`trust`] decides what a resource may
//! claim (hosts, pattern model ids) and which of two clashing resources
//! keeps a claim, and a resource that cannot be read is left out (said in
//! [`Output::left_out`]) instead of stopping everyone's update.

pub mod agentic_layer;
pub mod emit;
pub mod kaos;
pub mod omnia;
pub mod omnia_provider;
mod read;
pub mod trust;

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

pub use emit::{emit, Dispatch, Options, Output, Target};
pub use read::{read_resources, GenerateError, Read, Resource};
pub use trust::Trust;

/// What an entry is, as agentroute names kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Agent,
    ModelApi,
    Mcp,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Agent => "agent",
            Kind::ModelApi => "modelapi",
            Kind::Mcp => "mcp",
        }
    }
}

/// A Kubernetes Service port: what a dispatch token leads to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Backend {
    pub namespace: String,
    pub service: String,
    pub port: u16,
}

impl Backend {
    /// The dispatch token: `{service}.{namespace}:{port}`, one per Service
    /// port (entries on the same port share it), readable in logs, a valid
    /// header value and Envoy cluster name.
    pub fn token(&self) -> String {
        format!("{}.{}:{}", self.service, self.namespace, self.port)
    }

    /// The Service port a dispatch token names (`{service}.{namespace}:{port}`,
    /// both DNS labels), as [`Backend::token`] writes it; `None` for any other
    /// backend (a hand-written cluster name).
    pub fn from_token(token: &str) -> Option<Backend> {
        let (host, port) = token.rsplit_once(':')?;
        let (service, namespace) = host.split_once('.')?;
        let label = |s: &str| {
            !s.is_empty()
                && s.len() <= 63
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !s.starts_with('-')
                && !s.ends_with('-')
        };
        let port: u16 = port.parse().ok().filter(|p| *p > 0)?;
        (label(service) && label(namespace)).then(|| Backend {
            namespace: namespace.to_string(),
            service: service.to_string(),
            port,
        })
    }

    /// The token as a stat name: `{service}_{namespace}_{port}`, no dot for
    /// Envoy's tag rules to split at. One per token: DNS labels hold no `_`.
    pub fn stat_name(&self) -> String {
        format!("{}_{}_{}", self.service, self.namespace, self.port)
    }

    /// The Service's cluster DNS name.
    pub fn host(&self) -> String {
        format!("{}.{}.svc.cluster.local", self.service, self.namespace)
    }

    /// A name for the HTTPRoute rule of this port: `{service}-{port}`.
    pub fn rule_name(&self) -> String {
        format!("{}-{}", self.service, self.port)
    }
}

/// The A2A side of an entry (`protocol: a2a`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct A2a {
    pub version: &'static str,
    pub path: String,
}

/// One agentroute entry and the Service port it leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub name: String,
    pub namespace: String,
    pub kind: Kind,
    pub backend: Backend,
    pub timeout: Option<String>,
    /// OpenAI model ids (and patterns) the resource claims.
    pub models: Vec<Claim>,
    /// Host names (and `*.` patterns) the resource claims.
    pub hosts: Vec<Claim>,
    pub a2a: Option<A2a>,
    /// An LLM provider's API the entry leads to instead of a Service port
    /// (then `backend` is unused: nothing routes to it).
    pub provider: Option<ProviderRoute>,
    /// The resource it came from (`KAOS Agent prod/coordinator`) and
    /// where (`FILE: document 2`), for messages.
    pub source: String,
    pub document: String,
    /// The resource's `metadata.creationTimestamp`: the older resource
    /// keeps a claim two resources make ([`trust`]).
    pub created: Option<String>,
}

impl Agent {
    /// `namespace/name`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn model_ids(&self) -> Vec<String> {
        self.models.iter().map(|c| c.value.clone()).collect()
    }

    pub fn host_names(&self) -> Vec<String> {
        self.hosts.iter().map(|c| c.value.clone()).collect()
    }
}

/// An LLM provider's API (`provider` of the entry) and where it is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProviderRoute {
    /// The API the filter translates for: `openai`, `anthropic`, `gemini`.
    pub api: &'static str,
    pub host: String,
    pub port: u16,
    pub tls: bool,
    /// The provider's public API (`api.anthropic.com:443`), not a base URL.
    pub public: bool,
    /// `provider_options.max_tokens`.
    pub max_tokens: Option<u64>,
}

impl ProviderRoute {
    /// The backend's name outside Istio: the API's name for its public host
    /// (`anthropic`, as the Envoy Gateway provider routes match and
    /// envoy/demo.yaml names its cluster), `{host}:{port}` for a base URL.
    pub fn name(&self) -> String {
        if self.public {
            self.api.to_string()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// What the dispatch header carries on `target`: on Istio the cluster
    /// of the host's ServiceEntry (`outbound|443||api.anthropic.com`), on
    /// the others [`ProviderRoute::name`].
    pub fn backend(&self, target: emit::Target) -> String {
        match target {
            emit::Target::Istio => format!("outbound|{}||{}", self.port, self.host),
            _ => self.name(),
        }
    }

    /// The stat-safe name of its `envoy` cluster (no dot, no colon).
    pub fn stat_name(&self) -> String {
        self.name().replace(['.', ':'], "_")
    }
}

/// A model id or host a resource claims, and the field it came from (for
/// the warning when it is not granted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub value: String,
    /// `spec.proxyConfig.models[0]`, `spec.facades[0].expose.host`.
    pub field: String,
}

/// What the platform modules make of the resources.
#[derive(Debug, Default)]
pub struct Mapped {
    pub agents: Vec<Agent>,
    /// One line each on stderr: resources skipped and why.
    pub notes: Vec<String>,
    /// Probably not what the resource meant: a claim not granted or lost
    /// to an older resource, a misspelt field.
    pub warnings: Vec<String>,
    /// Resources that could not be read, left out: the run is partial.
    pub left_out: Vec<GenerateError>,
}

/// API groups of the KAOS kinds: `kaos.tools`, and `ethical.institute`,
/// which KAOS's older samples use.
pub const KAOS_GROUPS: [&str; 2] = ["kaos.tools", "ethical.institute"];
pub const AGENTIC_LAYER_GROUP: &str = "runtime.agentic-layer.ai";
pub const OMNIA_GROUP: &str = "omnia.altairalabs.ai";

/// Kinds of the platforms' groups, for a near miss (`kind: Agents`) said
/// as a warning rather than passed over as another kind.
const MAPPED_KINDS: [&str; 6] = [
    "Agent",
    "AgentGateway",
    "ModelAPI",
    "MCPServer",
    "AgentRuntime",
    "Provider",
];
const MAPPED_GROUPS: [&str; 4] = [
    AGENTIC_LAYER_GROUP,
    OMNIA_GROUP,
    KAOS_GROUPS[0],
    KAOS_GROUPS[1],
];

/// Maps every resource under `trust`: the agents sorted by namespace and
/// name, notes for what was skipped (one line per kind the mapping does not
/// know), warnings for claims not granted, and the resources that could not
/// be read (left out: the others are still mapped).
pub fn map_resources(resources: &[Resource], trust: &Trust) -> Mapped {
    let mut mapped = Mapped::default();
    let gateways: Vec<&Resource> = resources
        .iter()
        .filter(|r| r.group == AGENTIC_LAYER_GROUP && r.kind == "AgentGateway")
        .collect();
    let timeouts = agentic_layer::gateway_timeouts(&gateways, trust, &mut mapped);
    let mut unknown: BTreeMap<String, usize> = BTreeMap::new();
    for r in resources {
        let agents = match (r.group.as_str(), r.kind.as_str()) {
            (AGENTIC_LAYER_GROUP, "Agent") => agentic_layer::agent(r, &timeouts, &mut mapped),
            (AGENTIC_LAYER_GROUP, "AgentGateway") => Ok(Vec::new()),
            (g, "Agent") if KAOS_GROUPS.contains(&g) => kaos::agent(r, &mut mapped),
            (g, "ModelAPI") if KAOS_GROUPS.contains(&g) => kaos::model_api(r, &mut mapped),
            (g, "MCPServer") if KAOS_GROUPS.contains(&g) => kaos::mcp_server(r, &mut mapped),
            (OMNIA_GROUP, "AgentRuntime") => omnia::agent_runtime(r, &mut mapped),
            (OMNIA_GROUP, "Provider") => omnia_provider::provider(r, &mut mapped),
            _ => {
                near_miss_kind(r, &mut mapped.warnings);
                let api = if r.group.is_empty() {
                    "v1".to_string()
                } else {
                    r.group.clone()
                };
                *unknown.entry(format!("{api} {}", r.kind)).or_default() += 1;
                Ok(Vec::new())
            }
        };
        match agents {
            Ok(agents) => mapped.agents.extend(agents),
            Err(e) => mapped.left_out.push(e),
        }
    }
    if !unknown.is_empty() {
        let kinds: Vec<String> = unknown.iter().map(|(k, n)| format!("{k} ({n})")).collect();
        mapped.notes.push(format!(
            "skipped kinds agentroute does not map: {}",
            kinds.join(", ")
        ));
    }
    let agents = std::mem::take(&mut mapped.agents);
    mapped.agents = trust::grant(agents, trust, &mut mapped.warnings);
    mapped
        .agents
        .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    mapped
}

/// `kind: Agents` in a platform's group, or `kaos.tool` for a platform's
/// kind: a typo that would leave the resource out in silence.
fn near_miss_kind(r: &Resource, warnings: &mut Vec<String>) {
    let known_group = MAPPED_GROUPS.contains(&r.group.as_str());
    let near_group = MAPPED_GROUPS
        .iter()
        .find(|g| crate::check::is_misspelling(&r.group, g));
    let near_kind = MAPPED_KINDS
        .iter()
        .find(|k| crate::check::is_misspelling(&r.kind, k));
    let meant = match (known_group, near_group, near_kind) {
        (true, _, Some(kind)) => format!("kind {kind}"),
        (false, Some(group), _) if MAPPED_KINDS.contains(&r.kind.as_str()) => {
            format!("API group {group}")
        }
        _ => return,
    };
    warnings.push(format!(
        "{} {} {}/{}: not a kind agentroute maps, skipped (did you mean {meant}?)",
        r.group, r.kind, r.namespace, r.name
    ));
}

/// Why `generate` wrote nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The input or a flag is unusable (exit 1).
    Error(String),
    /// The result would route nothing: an empty configuration without
    /// `--allow-empty` (exit 4), so that a pruning apply never deletes every
    /// route. `output` has the notes, warnings and resources left out that
    /// explain it (and no text).
    Empty { why: String, output: Box<Output> },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Error(why) | Refusal::Empty { why, .. } => f.write_str(why),
        }
    }
}

impl std::error::Error for Refusal {}

/// Reads every input (name, text), maps the resources under the trust
/// model and writes the target: what `agentroute generate` prints, with its
/// notes, warnings and the resources left out for stderr.
pub fn generate(inputs: &[(String, String)], options: &Options) -> Result<Output, Refusal> {
    let mut resources = Vec::new();
    let mut unreadable = Vec::new();
    for (name, text) in inputs {
        let read = read_resources(name, text).map_err(|e| Refusal::Error(e.to_string()))?;
        resources.extend(read.resources);
        unreadable.extend(read.unreadable);
    }
    let mut mapped = map_resources(&resources, &options.trust);
    unreadable.append(&mut mapped.left_out);
    let mut output = emit(&mapped.agents, options).map_err(Refusal::Error)?;
    let mut notes = mapped.notes;
    notes.append(&mut output.notes);
    output.notes = notes;
    let mut warnings = mapped.warnings;
    warnings.append(&mut output.warnings);
    output.warnings = warnings;
    let mut left_out: Vec<String> = unreadable.iter().map(ToString::to_string).collect();
    left_out.append(&mut output.left_out);
    output.left_out = left_out;
    if output.entries == 0 && !options.allow_empty {
        let mut why = format!(
            "refusing to write a configuration without agents (from {} resource(s), {} left out): \
             applied with --prune it would delete every route. A misspelt kind or API group, \
             or a `kubectl get` that found nothing, are the usual causes; --allow-empty writes it",
            resources.len(),
            output.left_out.len()
        );
        if !output.left_out.is_empty() {
            why.push_str(" (the resources left out are listed above)");
        }
        output.text.clear();
        return Err(Refusal::Empty {
            why,
            output: Box::new(output),
        });
    }
    Ok(output)
}

/// The configuration of a `--base` file: exactly one, in any form `check`
/// reads (bare JSON or YAML, a WasmPlugin, ...), valid for the filter. An
/// entry may leave out `backend`: it layers settings onto the generated
/// entry of its `namespace/name` ([`emit`]), which brings the backend.
pub fn read_base(name: &str, text: &str) -> Result<serde_json::Map<String, Value>, String> {
    let scan = crate::check::scan(text).map_err(|e| format!("--base {name}: {e}"))?;
    let [found] = scan.configs.as_slice() else {
        return Err(format!(
            "--base {name}: expected one configuration, found {}",
            scan.configs.len()
        ));
    };
    let json = found
        .config
        .clone()
        .map_err(|e| format!("--base {name}: {e}"))?;
    if json.trim().is_empty() {
        return Ok(serde_json::Map::new());
    }
    let map = match serde_json::from_str::<Value>(&json) {
        Ok(Value::Object(map)) => map,
        Ok(_) => {
            return Err(format!(
                "--base {name}: the configuration must be an object"
            ))
        }
        Err(e) => return Err(format!("--base {name}: {e}")),
    };
    let layers = map
        .get("agents")
        .and_then(Value::as_array)
        .is_some_and(|entries| entries.iter().any(|e| e.get("backend").is_none()));
    if layers {
        // Checked as the filter would see it once merged: with a backend.
        let mut filled = map.clone();
        if let Some(Value::Array(entries)) = filled.get_mut("agents") {
            for entry in entries.iter_mut().filter_map(Value::as_object_mut) {
                entry
                    .entry("backend")
                    .or_insert_with(|| Value::from(emit::LAYER_BACKEND));
            }
        }
        let filled = serde_json::to_vec(&filled).map_err(|e| format!("--base {name}: {e}"))?;
        agentroute::config::Plan::from_json(&filled).map_err(|e| format!("--base {name}: {e}"))?;
    } else {
        found.compile().map_err(|e| format!("--base {name}: {e}"))?;
    }
    Ok(map)
}

/// The plugin image a `--base` WasmPlugin (`spec.url`, `oci://` dropped) or
/// EnvoyExtensionPolicy (`spec.wasm[0].code.image.url`) names, if any.
pub fn image_of_base(text: &str) -> Option<String> {
    let docs = crate::check::documents(text).ok()?;
    docs.iter().find_map(|doc| {
        let kind = doc.get("kind").and_then(Value::as_str)?;
        let url = match kind {
            "WasmPlugin" => doc.pointer("/spec/url"),
            "EnvoyExtensionPolicy" => doc.pointer("/spec/wasm/0/code/image/url"),
            _ => None,
        }?
        .as_str()?;
        let image = url.strip_prefix("oci://").unwrap_or(url);
        (!image.is_empty() && !url.starts_with("file://") && !url.starts_with("http"))
            .then(|| image.to_string())
    })
}

/// How messages name a platform by its API group.
pub fn platform_name(group: &str) -> &'static str {
    match group {
        AGENTIC_LAYER_GROUP => "agentic-layer",
        OMNIA_GROUP => "Omnia",
        g if KAOS_GROUPS.contains(&g) => "KAOS",
        _ => "Kubernetes",
    }
}

/// `KAOS Agent prod/coordinator`: an entry's source in messages.
pub fn source(r: &Resource) -> String {
    format!(
        "{} {} {}/{}",
        platform_name(&r.group),
        r.kind,
        r.namespace,
        r.name
    )
}

/// A DNS-1123 label, as the filter wants names and namespaces.
pub fn dns_label(r: &Resource, field: &str, value: &str) -> Result<String, GenerateError> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if ok {
        Ok(value.to_string())
    } else {
        Err(r.error(
            field,
            format!(
                "{value:?} is not a DNS-1123 label (lowercase letters, digits, '-', at most 63)"
            ),
        ))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The resources of one YAML text, named `t.yaml` (all readable).
    pub(crate) fn resources(yaml: &str) -> Vec<Resource> {
        let read = read_resources("t.yaml", yaml).unwrap();
        assert!(read.unreadable.is_empty(), "{:?}", read.unreadable);
        read.resources
    }

    /// What one YAML text maps to, trusting no one.
    pub(crate) fn mapped(yaml: &str) -> Mapped {
        map_resources(&resources(yaml), &Trust::default())
    }

    /// What one YAML text maps to with `--allow-hosts` and
    /// `--trust-namespace`.
    pub(crate) fn mapped_trusting(yaml: &str, hosts: &[&str], namespaces: &[&str]) -> Mapped {
        let trust = Trust {
            allow_hosts: hosts.iter().map(|h| h.to_string()).collect(),
            trusted_namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
        };
        map_resources(&resources(yaml), &trust)
    }

    /// The one resource of `yaml` left out, as said on stderr: nothing of it
    /// is generated.
    pub(crate) fn left_out(yaml: &str) -> String {
        let mapped = mapped(yaml);
        assert!(mapped.agents.is_empty(), "{:?}", mapped.agents);
        let [error] = mapped.left_out.as_slice() else {
            panic!("one resource left out: {:?}", mapped.left_out)
        };
        error.to_string()
    }

    #[test]
    fn lists_are_opened_and_places_numbered() {
        let input = "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: kaos.tools/v1alpha1, kind: Agent, metadata: {name: a, namespace: n}}\n---\n{apiVersion: v1, kind: Namespace, metadata: {name: x}}\n";
        let r = resources(input);
        let places: Vec<(&str, &str, &str)> = r
            .iter()
            .map(|r| (r.document.as_str(), r.group.as_str(), r.name.as_str()))
            .collect();
        assert_eq!(
            places,
            [
                ("t.yaml: document 1 items[0]", "kaos.tools", "a"),
                ("t.yaml: document 2", "", "x")
            ]
        );
        // JSON input too.
        let json = r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"omnia.altairalabs.ai/v1alpha1","kind":"AgentRuntime","metadata":{"name":"o"}}]}"#;
        assert_eq!(resources(json)[0].namespace, "default");
    }

    #[test]
    fn malformed_objects_are_left_out_and_the_others_read() {
        let read = read_resources(
            "f.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\nkind: Agent\n---\n\
             apiVersion: kaos.tools/v1alpha1\nkind: Agent\nmetadata: {}\n---\n\
             apiVersion: kaos.tools/v1alpha1\nkind: Agent\nmetadata: {name: a, namespace: 7}\n---\n\
             apiVersion: kaos.tools/v1alpha1\nkind: Agent\n\
             metadata: {name: b, namespace: n, creationTimestamp: '2025-01-02T03:04:05Z'}\n",
        )
        .unwrap();
        let errors: Vec<String> = read.unreadable.iter().map(ToString::to_string).collect();
        assert_eq!(
            errors,
            [
                "f.yaml: document 2: apiVersion: required (a string)",
                "f.yaml: document 3: kaos.tools Agent: metadata.name: required (a string)",
                "f.yaml: document 4: kaos.tools Agent: metadata.namespace: expected a string",
            ]
        );
        let names: Vec<(&str, Option<&str>)> = read
            .resources
            .iter()
            .map(|r| (r.name.as_str(), r.created.as_deref()))
            .collect();
        assert_eq!(names, [("x", None), ("b", Some("2025-01-02T03:04:05Z"))]);
        // Input that is not YAML at all is an error of its own.
        let err = read_resources("f.yaml", "a: [\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("f.yaml: input is not valid YAML"),
            "{err}"
        );
    }

    #[test]
    fn a_path_through_a_non_object_is_an_error_not_a_missing_field() {
        let r = &resources(
            "apiVersion: kaos.tools/v1alpha1\nkind: ModelAPI\nmetadata: {name: m, namespace: n}\n\
             spec: {mode: Hosted, hostedConfig: 7}\n",
        )[0];
        assert_eq!(
            r.string("spec.hostedConfig.model").unwrap_err().to_string(),
            "t.yaml: document 1: kaos.tools ModelAPI n/m: spec.hostedConfig: expected an object, found a number"
        );
        assert_eq!(r.string("spec.nothing.here").unwrap(), None);
    }

    #[test]
    fn unknown_kinds_are_one_note_each_and_near_misses_a_warning() {
        let input = "{apiVersion: v1, kind: Secret, metadata: {name: a}}\n---\n{apiVersion: v1, kind: Secret, metadata: {name: b}}\n---\n{apiVersion: apps/v1, kind: Deployment, metadata: {name: c}}\n";
        let m = mapped(input);
        assert!(m.agents.is_empty());
        assert_eq!(
            m.notes,
            ["skipped kinds agentroute does not map: apps Deployment (1), v1 Secret (2)"]
        );
        assert!(m.warnings.is_empty(), "{:?}", m.warnings);
        let typos = "{apiVersion: kaos.tools/v1alpha1, kind: Agents, metadata: {name: a, namespace: n}}\n---\n{apiVersion: kaos.tool/v1alpha1, kind: ModelAPI, metadata: {name: m, namespace: n}}\n";
        assert_eq!(
            mapped(typos).warnings,
            [
                "kaos.tools Agents n/a: not a kind agentroute maps, skipped (did you mean kind Agent?)",
                "kaos.tool ModelAPI n/m: not a kind agentroute maps, skipped (did you mean API group kaos.tools?)",
            ]
        );
    }

    #[test]
    fn misspelt_fields_next_to_those_read_are_warnings() {
        let input =
            "apiVersion: kaos.tools/v1alpha1\nkind: Agent\nmetadata: {name: a, namespace: n}\n\
                     spec: {agentNetwork: {exposed: false, access: []}, modelAPI: m}\n";
        let m = mapped(input);
        assert_eq!(m.agents.len(), 1, "still generated: expose is not false");
        assert_eq!(
            m.warnings,
            ["KAOS Agent n/a: spec.agentNetwork.exposed: unknown field, ignored (did you mean expose?)"]
        );
    }
}
