//! Writes a target from the mapped agents: the plugin configuration, or the
//! manifests / bootstrap that carry it, in the shape of the shipped
//! `istio/`, `envoy/gateway/` and `envoy/demo.yaml`.
//!
//! Everything is built as JSON values with keys in a fixed order and
//! serialised once, so the output is byte-identical for the same agents.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use super::{Agent, Backend};

/// What `generate` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The plugin configuration (JSON).
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
#[derive(Debug, Clone)]
pub struct Options {
    pub target: Target,
    /// Istio and Envoy Gateway only.
    pub dispatch: Dispatch,
    /// A hand-written configuration the generated entries are merged into.
    pub base: Option<Map<String, Value>>,
    /// A TLS Secret (Kubernetes targets) or certificate directory name
    /// (`envoy`): adds an HTTPS listener.
    pub tls_secret: Option<String>,
}

/// What was written, and what to tell the user on stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub text: String,
    pub notes: Vec<String>,
}

/// The Gateway the Kubernetes targets attach to, as the shipped manifests
/// name it.
const GATEWAY_NAME: &str = "agents";
const ISTIO_NAMESPACE: &str = "istio-ingress";
const EG_NAMESPACE: &str = "envoy-gateway";
/// Placeholder image, as in the shipped manifests: `make oci` builds it.
const IMAGE: &str = "ghcr.io/agentroute/agentroute:0.1.0";
const DISPATCH_HEADER: &str = "x-agent-backend";
/// Gateway API allows 16 rules per HTTPRoute.
const RULES_PER_ROUTE: usize = 16;
/// The host the agents' rules attach to with [`Dispatch::ClusterHeader`],
/// off the virtual host clients' requests land in (`.invalid`: RFC 2606).
pub const BACKENDS_HOST: &str = "backends.agentroute.invalid";
/// The Wasm filter Envoy Gateway makes of the generated
/// EnvoyExtensionPolicy (its first module), as routes switch it on.
const EG_WASM_FILTER: &str =
    "envoy.filters.http.wasm/envoyextensionpolicy/envoy-gateway/agentroute/wasm/0";
/// Where the `envoy` target reads a TLS Secret mounted as a volume
/// (`tls.crt`, `tls.key`, as a `kubernetes.io/tls` Secret has them).
pub const TLS_MOUNT: &str = "/etc/agentroute/tls";

/// Writes `target` for `agents` (sorted by [`super::map_resources`]).
pub fn emit(agents: &[Agent], options: &Options) -> Result<Output, String> {
    let fast = options.dispatch == Dispatch::ClusterHeader;
    if fast && !matches!(options.target, Target::Istio | Target::EnvoyGateway) {
        return Err(format!(
            "--dispatch cluster-header is for --target istio and envoy-gateway (the {} target \
             dispatches by cluster_header already)",
            options.target.as_str()
        ));
    }
    let mut notes = Vec::new();
    // Base entries keep their own backends: only generated ones get routes.
    let generated: Vec<&Agent> = agents.iter().filter(|a| !base_has(options, a)).collect();
    let backends: BTreeSet<Backend> = generated.iter().map(|a| a.backend.clone()).collect();
    let layout = route_layout(&backends);
    let names = backend_names(&layout, options);
    let config = plugin_config(agents, options, &mut notes, &names)?;
    refused_by_the_filter(&config, agents)?;
    let dispatch_header = config
        .get("dispatch_header")
        .and_then(Value::as_str)
        .unwrap_or(DISPATCH_HEADER)
        .to_string();
    if options.base.is_some() && options.target != Target::Config {
        notes.push(
            "entries of --base keep their own backends: their HTTPRoutes or clusters are not generated"
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
            &istio(&config, &layout, &names, &dispatch_header, options),
        )?,
        Target::EnvoyGateway => yaml_documents(
            "envoy-gateway",
            &envoy_gateway(&config, &layout, &names, &dispatch_header, options),
        )?,
        Target::Envoy => yaml_documents(
            "envoy",
            &[envoy(&config, &backends, &dispatch_header, options)?],
        )?,
    };
    Ok(Output { text, notes })
}

/// The filter's own verdict on the configuration, so that generate never
/// writes one a gateway would refuse (a namespace `v1` with a name `models`
/// takes `/v1/models`, say): the error names the resource it came from.
fn refused_by_the_filter(config: &Map<String, Value>, agents: &[Agent]) -> Result<(), String> {
    let json = serde_json::to_vec(config).map_err(|e| e.to_string())?;
    let Err(e) = agentroute::config::Plan::from_json(&json) else {
        return Ok(());
    };
    let entries = config.get("agents").and_then(Value::as_array);
    let index = e
        .path
        .strip_prefix("agents[")
        .and_then(|rest| rest.split(']').next())
        .and_then(|i| i.parse::<usize>().ok());
    let from = index
        .and_then(|i| entries.and_then(|list| list.get(i)))
        .and_then(|entry| {
            agents.iter().find(|a| {
                entry.get("name").and_then(Value::as_str) == Some(a.name.as_str())
                    && entry.get("namespace").and_then(Value::as_str) == Some(a.namespace.as_str())
            })
        })
        .map(|a| format!(" ({}: {})", a.document, a.source))
        .unwrap_or_default();
    Err(format!(
        "the filter would refuse the generated configuration: {e}{from}"
    ))
}

fn base_has(options: &Options, agent: &Agent) -> bool {
    let Some(base) = &options.base else {
        return false;
    };
    base.get("agents")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|e| {
            let name = e.get("name").and_then(Value::as_str);
            let ns = e
                .get("namespace")
                .and_then(Value::as_str)
                .unwrap_or("default");
            name == Some(agent.name.as_str()) && ns == agent.namespace
        })
}

/// One entry of the configuration, keys in the contract's order; `backend`
/// is what the dispatch header carries for its Service port.
fn entry_json(a: &Agent, backend: &str) -> Value {
    let mut e = Map::new();
    e.insert("name".into(), json!(a.name));
    e.insert("namespace".into(), json!(a.namespace));
    e.insert("kind".into(), json!(a.kind.as_str()));
    e.insert("backend".into(), json!(backend));
    if let Some(t) = &a.timeout {
        e.insert("timeout".into(), json!(t));
    }
    if !a.models.is_empty() {
        e.insert("models".into(), json!(a.models));
    }
    if !a.hosts.is_empty() {
        e.insert("hosts".into(), json!(a.hosts));
    }
    if let Some(a2a) = &a.a2a {
        e.insert("protocol".into(), json!("a2a"));
        e.insert(
            "a2a".into(),
            json!({ "version": a2a.version, "path": a2a.path }),
        );
    }
    Value::Object(e)
}

/// The plugin configuration: the base's settings and entries, then the
/// generated entries the base does not have. On Istio and Envoy Gateway the
/// model is read by json_to_metadata (`model_from: metadata`) unless the base
/// says otherwise: neither can let the filter pause for the body.
fn plugin_config(
    agents: &[Agent],
    options: &Options,
    notes: &mut Vec<String>,
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
    let mut entries = match config.remove("agents") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items,
        Some(_) => return Err("--base: agents must be an array".to_string()),
    };
    for a in agents {
        if base_has(options, a) {
            notes.push(format!(
                "{}/{} (from {}) is in --base: the base's entry is kept",
                a.namespace, a.name, a.source
            ));
        } else {
            let token = a.backend.token();
            let backend = names.get(&a.backend).unwrap_or(&token);
            entries.push(entry_json(a, backend));
        }
    }
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

/// The namespaces of the generated backends, sorted.
fn namespaces(layout: &[RouteGroup]) -> Vec<String> {
    let set: BTreeSet<&str> = layout.iter().map(|g| g.namespace.as_str()).collect();
    set.into_iter().map(str::to_string).collect()
}

/// One generated HTTPRoute: its namespace and name, and the Service ports
/// of its rules in order (rule `i` is `backends[i]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteGroup {
    pub namespace: String,
    pub name: String,
    pub backends: Vec<Backend>,
}

/// The HTTPRoutes for `backends`: one per namespace (per 16 rules: Gateway
/// API's limit), `agentroute`, `agentroute-2`, ..., one rule per Service
/// port, in sorted order.
pub fn route_layout(backends: &BTreeSet<Backend>) -> Vec<RouteGroup> {
    let mut by_namespace: BTreeMap<&str, Vec<&Backend>> = BTreeMap::new();
    for b in backends {
        by_namespace
            .entry(b.namespace.as_str())
            .or_default()
            .push(b);
    }
    let mut out = Vec::new();
    for (namespace, backends) in by_namespace {
        for (i, chunk) in backends.chunks(RULES_PER_ROUTE).enumerate() {
            out.push(RouteGroup {
                namespace: namespace.to_string(),
                name: if i == 0 {
                    "agentroute".to_string()
                } else {
                    format!("agentroute-{}", i + 1)
                },
                backends: chunk.iter().map(|b| (*b).clone()).collect(),
            });
        }
    }
    out
}

/// What the dispatch header carries for each Service port: its token, or
/// with [`Dispatch::ClusterHeader`] the cluster the controller makes of its
/// rule (Istio: `outbound|PORT||HOST`; Envoy Gateway:
/// `httproute/NAMESPACE/ROUTE/rule/INDEX`).
pub fn backend_names(layout: &[RouteGroup], options: &Options) -> BTreeMap<Backend, String> {
    let mut out = BTreeMap::new();
    for group in layout {
        for (i, b) in group.backends.iter().enumerate() {
            let name = match (options.dispatch, options.target) {
                (Dispatch::ClusterHeader, Target::Istio) => {
                    format!("outbound|{}||{}", b.port, b.host())
                }
                (Dispatch::ClusterHeader, Target::EnvoyGateway) => {
                    format!("httproute/{}/{}/rule/{i}", group.namespace, group.name)
                }
                _ => b.token(),
            };
            out.insert(b.clone(), name);
        }
    }
    out
}

fn gateway(
    namespace: &str,
    class: &str,
    route_namespaces: &[String],
    tls_secret: Option<&str>,
) -> Value {
    let allowed = json!({
        "namespaces": {
            "from": "Selector",
            "selector": { "matchExpressions": [
                { "key": "kubernetes.io/metadata.name", "operator": "In", "values": route_namespaces }
            ] }
        }
    });
    let mut listeners = vec![json!({
        "name": "http", "protocol": "HTTP", "port": 80, "allowedRoutes": allowed
    })];
    if let Some(secret) = tls_secret {
        listeners.push(json!({
            "name": "https", "protocol": "HTTPS", "port": 443,
            "tls": { "mode": "Terminate", "certificateRefs": [ { "kind": "Secret", "name": secret } ] },
            "allowedRoutes": allowed
        }));
    }
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": { "name": GATEWAY_NAME, "namespace": namespace },
        "spec": { "gatewayClassName": class, "listeners": listeners }
    })
}

fn parent_ref(gateway_namespace: &str) -> Value {
    json!({
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "name": GATEWAY_NAME,
        "namespace": gateway_namespace
    })
}

/// The HTTPRoutes of `layout`, one rule per Service port: the dispatch
/// header's value for that port (`names`) to that Service and port. No path
/// rewrite and no timeout: the filter has done both. With
/// [`Dispatch::ClusterHeader`] they attach to [`BACKENDS_HOST`], off the
/// virtual host clients' requests land in, which Envoy scans route by route
/// on every request's arrival.
fn header_routes(
    layout: &[RouteGroup],
    names: &BTreeMap<Backend, String>,
    header: &str,
    gateway_namespace: &str,
    dispatch: Dispatch,
) -> Vec<Value> {
    layout
        .iter()
        .map(|group| {
            let rules: Vec<Value> = group
                .backends
                .iter()
                .map(|b| {
                    let value = names.get(b).cloned().unwrap_or_else(|| b.token());
                    json!({
                        "name": b.rule_name(),
                        "matches": [ {
                            "path": { "type": "PathPrefix", "value": "/" },
                            "headers": [ { "type": "Exact", "name": header, "value": value } ]
                        } ],
                        "backendRefs": [ { "name": b.service, "port": b.port } ]
                    })
                })
                .collect();
            let mut spec = Map::new();
            spec.insert("parentRefs".into(), json!([parent_ref(gateway_namespace)]));
            if dispatch == Dispatch::ClusterHeader {
                spec.insert("hostnames".into(), json!([BACKENDS_HOST]));
            }
            spec.insert("rules".into(), Value::Array(rules));
            json!({
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "HTTPRoute",
                "metadata": { "name": group.name, "namespace": group.namespace },
                "spec": spec
            })
        })
        .collect()
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

/// The route istio/large/ and envoy/gateway/large/ insert first: requests
/// carrying the dispatch header go to the cluster it names.
fn cluster_header_route(header: &str) -> Map<String, Value> {
    let mut route = Map::new();
    route.insert("name".into(), json!("agentroute-dispatch"));
    route.insert(
        "match".into(),
        json!({ "prefix": "/", "headers": [ { "name": header, "present_match": true } ] }),
    );
    route.insert(
        "route".into(),
        json!({ "cluster_header": header, "timeout": "0s" }),
    );
    route
}

/// Envoy's json_to_metadata filter reading the body's `model` for
/// `model_from: metadata` (as istio/envoyfilter-json-to-metadata.yaml).
fn json_to_metadata_filter(metadata_namespace: &str) -> Value {
    json!({
        "name": "envoy.filters.http.json_to_metadata",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.json_to_metadata.v3.JsonToMetadata",
            "request_rules": { "rules": [ {
                "selectors": [ { "key": "model" } ],
                "on_present": { "metadata_namespace": metadata_namespace, "key": "model" },
                "on_missing": { "metadata_namespace": metadata_namespace, "key": "model_error", "value": "missing" },
                "on_error": { "metadata_namespace": metadata_namespace, "key": "model_error", "value": "invalid_json" }
            } ] }
        }
    })
}

fn metadata_namespace(config: &Map<String, Value>) -> String {
    config
        .get("openai")
        .and_then(|o| o.get("metadata_namespace"))
        .and_then(Value::as_str)
        .unwrap_or("agentroute")
        .to_string()
}

fn reads_metadata(config: &Map<String, Value>) -> bool {
    config
        .get("openai")
        .and_then(|o| o.get("model_from"))
        .and_then(Value::as_str)
        == Some("metadata")
}

fn istio(
    config: &Map<String, Value>,
    layout: &[RouteGroup],
    names: &BTreeMap<Backend, String>,
    header: &str,
    options: &Options,
) -> Vec<Value> {
    let target_refs = json!([ { "group": "gateway.networking.k8s.io", "kind": "Gateway", "name": GATEWAY_NAME } ]);
    let route_namespaces = namespaces(layout);
    let mut docs = vec![gateway(
        ISTIO_NAMESPACE,
        "istio",
        &route_namespaces,
        options.tls_secret.as_deref(),
    )];
    docs.push(json!({
        "apiVersion": "extensions.istio.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": { "name": "agentroute", "namespace": ISTIO_NAMESPACE },
        "spec": {
            "targetRefs": target_refs,
            "url": format!("oci://{IMAGE}"),
            "imagePullPolicy": "IfNotPresent",
            "pluginName": "agentroute",
            "type": "HTTP",
            "phase": "STATS",
            "failStrategy": "FAIL_CLOSE",
            "pluginConfig": config
        }
    }));
    let connection_managers = json!({ "context": "GATEWAY", "listener": { "filterChain": { "filter": {
        "name": "envoy.filters.network.http_connection_manager" } } } });
    if reads_metadata(config) {
        docs.push(json!({
            "apiVersion": "networking.istio.io/v1alpha3",
            "kind": "EnvoyFilter",
            "metadata": { "name": "agentroute-json-to-metadata", "namespace": ISTIO_NAMESPACE },
            "spec": {
                "targetRefs": target_refs,
                "configPatches": [ {
                    "applyTo": "HTTP_FILTER",
                    "match": connection_managers,
                    "patch": { "operation": "INSERT_FIRST", "value": json_to_metadata_filter(&metadata_namespace(config)) }
                } ]
            }
        }));
    }
    // istio/envoyfilter-early-header-removal.yaml.
    docs.push(json!({
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "metadata": { "name": "agentroute-early-header-removal", "namespace": ISTIO_NAMESPACE },
        "spec": {
            "targetRefs": target_refs,
            "configPatches": [ {
                "applyTo": "NETWORK_FILTER",
                "match": connection_managers,
                "patch": { "operation": "MERGE", "value": { "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "early_header_mutation_extensions": early_header_removal(header)
                } } }
            } ]
        }
    }));
    if options.dispatch == Dispatch::ClusterHeader {
        // istio/large/envoyfilter-dispatch-route.yaml: first in every
        // virtual host, with the retries Istio gives its own routes.
        let mut route = cluster_header_route(header);
        if let Some(action) = route.get_mut("route").and_then(Value::as_object_mut) {
            action.insert(
                "retry_policy".into(),
                json!({
                    "retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
                    "num_retries": 2,
                    "retriable_status_codes": [503],
                    "retry_host_predicate": [ {
                        "name": "envoy.retry_host_predicates.previous_hosts",
                        "typed_config": { "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate" }
                    } ],
                    "host_selection_retry_max_attempts": 5
                }),
            );
        }
        docs.push(json!({
            "apiVersion": "networking.istio.io/v1alpha3",
            "kind": "EnvoyFilter",
            "metadata": { "name": "agentroute-dispatch-route", "namespace": ISTIO_NAMESPACE },
            "spec": {
                "targetRefs": target_refs,
                "configPatches": [ {
                    "applyTo": "HTTP_ROUTE",
                    "match": { "context": "GATEWAY" },
                    "patch": { "operation": "INSERT_FIRST", "value": route }
                } ]
            }
        }));
    }
    docs.extend(header_routes(
        layout,
        names,
        header,
        ISTIO_NAMESPACE,
        options.dispatch,
    ));
    if let (Dispatch::ClusterHeader, Some(namespace)) = (options.dispatch, route_namespaces.first())
    {
        // With the agents' rules on their own host, this makes the virtual
        // host of every other host (`*:80`) that the route is inserted into
        // (istio/large/httproutes.yaml says why): a header nothing sends, no
        // backend.
        docs.push(json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": { "name": "agentroute-virtual-host", "namespace": namespace },
            "spec": {
                "parentRefs": [ parent_ref(ISTIO_NAMESPACE) ],
                "rules": [ {
                    "name": "anchor",
                    "matches": [ {
                        "path": { "type": "PathPrefix", "value": "/" },
                        "headers": [ { "type": "Exact", "name": "x-agentroute-virtual-host", "value": "anchor" } ]
                    } ]
                } ]
            }
        }));
    }
    docs
}

fn envoy_gateway(
    config: &Map<String, Value>,
    layout: &[RouteGroup],
    names: &BTreeMap<Backend, String>,
    header: &str,
    options: &Options,
) -> Vec<Value> {
    let mut route_namespaces = namespaces(layout);
    if !route_namespaces.iter().any(|n| n == EG_NAMESPACE) {
        route_namespaces.push(EG_NAMESPACE.to_string());
        route_namespaces.sort();
    }
    let gateway_ref =
        json!({ "group": "gateway.networking.k8s.io", "kind": "Gateway", "name": GATEWAY_NAME });
    let mut docs = vec![gateway(
        EG_NAMESPACE,
        "eg",
        &route_namespaces,
        options.tls_secret.as_deref(),
    )];
    docs.push(json!({
        "apiVersion": "gateway.envoyproxy.io/v1alpha1",
        "kind": "EnvoyExtensionPolicy",
        "metadata": { "name": "agentroute", "namespace": EG_NAMESPACE },
        "spec": {
            "targetRefs": [ gateway_ref ],
            "wasm": [ {
                "name": "agentroute",
                "rootID": "agentroute",
                "code": { "type": "Image", "image": { "url": IMAGE }, "pullPolicy": "IfNotPresent" },
                "failOpen": false,
                "config": config
            } ]
        }
    }));
    // Envoy Gateway names listeners and their route configurations
    // `<namespace>/<gateway>/<listener>`.
    let mut listeners = vec!["http"];
    if options.tls_secret.is_some() {
        listeners.push("https");
    }
    if reads_metadata(config) {
        // A plain HTTP listener has its HCM in default_filter_chain, an
        // HTTPS one in its (per-certificate) filter_chains.
        let filter = json_to_metadata_filter(&metadata_namespace(config));
        let patches: Vec<Value> = listeners
            .iter()
            .map(|listener| {
                let chain = if *listener == "http" {
                    "default_filter_chain"
                } else {
                    "filter_chains/0"
                };
                json!({
                    "type": "type.googleapis.com/envoy.config.listener.v3.Listener",
                    "name": format!("{EG_NAMESPACE}/{GATEWAY_NAME}/{listener}"),
                    "operation": { "op": "add", "path": format!("/{chain}/filters/0/typed_config/http_filters/0"), "value": filter }
                })
            })
            .collect();
        docs.push(json!({
            "apiVersion": "gateway.envoyproxy.io/v1alpha1",
            "kind": "EnvoyPatchPolicy",
            "metadata": { "name": "agentroute-json-to-metadata", "namespace": EG_NAMESPACE },
            "spec": { "targetRef": gateway_ref, "type": "JSONPatch", "jsonPatches": patches }
        }));
    }
    // envoy/gateway/clienttrafficpolicy-early-header-removal.yaml.
    docs.push(json!({
        "apiVersion": "gateway.envoyproxy.io/v1alpha1",
        "kind": "ClientTrafficPolicy",
        "metadata": { "name": "agentroute-early-header-removal", "namespace": EG_NAMESPACE },
        "spec": {
            "targetRefs": [ gateway_ref ],
            "headers": { "earlyRequestHeaders": { "remove": [ header ] } }
        }
    }));
    if options.dispatch == Dispatch::ClusterHeader {
        // envoy/gateway/large/patchpolicy-dispatch-route.yaml: first in every
        // virtual host of each listener's route configuration, the Wasm
        // filter switched on for it as on Envoy Gateway's own routes.
        let mut route = cluster_header_route(header);
        if let Some(action) = route.get_mut("route").and_then(Value::as_object_mut) {
            action.insert(
                "upgrade_configs".into(),
                json!([ { "upgrade_type": "websocket" } ]),
            );
        }
        route.insert(
            "typed_per_filter_config".into(),
            json!({ EG_WASM_FILTER: {
                "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "config": {}
            } }),
        );
        let patches: Vec<Value> = listeners
            .iter()
            .map(|listener| {
                json!({
                    "type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
                    "name": format!("{EG_NAMESPACE}/{GATEWAY_NAME}/{listener}"),
                    "operation": { "op": "add", "jsonPath": "$.virtual_hosts[*]", "path": "/routes/0", "value": route }
                })
            })
            .collect();
        docs.push(json!({
            "apiVersion": "gateway.envoyproxy.io/v1alpha1",
            "kind": "EnvoyPatchPolicy",
            "metadata": { "name": "agentroute-dispatch-route", "namespace": EG_NAMESPACE },
            "spec": { "targetRef": gateway_ref, "type": "JSONPatch", "jsonPatches": patches }
        }));
    }
    // Envoy Gateway enables the Wasm filter per route: every request must
    // first match some route (envoy/gateway/httproutes.yaml says why).
    docs.push(json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": { "name": "agentroute-catch-all", "namespace": EG_NAMESPACE },
        "spec": {
            "parentRefs": [ gateway_ref ],
            "rules": [ {
                "name": "catch-all",
                "matches": [ { "path": { "type": "PathPrefix", "value": "/" } } ],
                "backendRefs": [ { "name": "agentroute-default", "port": 8080 } ]
            } ]
        }
    }));
    docs.extend(header_routes(
        layout,
        names,
        header,
        EG_NAMESPACE,
        options.dispatch,
    ));
    docs
}

/// A bootstrap like envoy/demo.yaml: the filter, a `cluster_header` route,
/// and one STRICT_DNS cluster per Service port, named by its token.
fn envoy(
    config: &Map<String, Value>,
    backends: &BTreeSet<Backend>,
    header: &str,
    options: &Options,
) -> Result<Value, String> {
    let configuration = serde_json::to_string_pretty(config).map_err(|e| e.to_string())? + "\n";
    let hcm = json!({
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "gateway",
            "use_remote_address": true,
            // envoy/demo.yaml: a client's copy never reaches routing.
            "early_header_mutation_extensions": early_header_removal(header),
            "upgrade_configs": [ { "upgrade_type": "websocket" } ],
            "route_config": {
                "name": "agents",
                "virtual_hosts": [ {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [
                        { "match": { "prefix": "/", "headers": [ { "name": header, "present_match": true } ] },
                          "route": { "cluster_header": header, "timeout": "0s" } },
                        { "match": { "prefix": "/" },
                          "direct_response": { "status": 404, "body": { "inline_string": "no agent route\n" } } }
                    ]
                } ]
            },
            "http_filters": [
                {
                    "name": "agentroute",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                        "config": {
                            "name": "agentroute",
                            "root_id": "agentroute",
                            "failure_policy": "FAIL_CLOSED",
                            "allow_on_headers_stop_iteration": true,
                            "vm_config": {
                                "vm_id": "agentroute",
                                "runtime": "envoy.wasm.runtime.v8",
                                "code": { "local": { "filename": "dist/agentroute.wasm" } }
                            },
                            "configuration": {
                                "@type": "type.googleapis.com/google.protobuf.StringValue",
                                "value": configuration
                            }
                        }
                    }
                },
                { "name": "envoy.filters.http.router",
                  "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" } }
            ]
        }
    });
    let mut listeners = vec![json!({
        "name": "gateway",
        "address": { "socket_address": { "address": "0.0.0.0", "port_value": 10000 } },
        "filter_chains": [ { "filters": [ hcm.clone() ] } ]
    })];
    if let Some(secret) = &options.tls_secret {
        listeners.push(json!({
            "name": "gateway-tls",
            "address": { "socket_address": { "address": "0.0.0.0", "port_value": 10443 } },
            "filter_chains": [ {
                "filters": [ hcm ],
                "transport_socket": {
                    "name": "envoy.transport_sockets.tls",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                        "common_tls_context": { "tls_certificates": [ {
                            "certificate_chain": { "filename": format!("{TLS_MOUNT}/{secret}/tls.crt") },
                            "private_key": { "filename": format!("{TLS_MOUNT}/{secret}/tls.key") }
                        } ] }
                    }
                }
            } ]
        }));
    }
    let clusters: Vec<Value> = backends
        .iter()
        .map(|b| {
            json!({
                "name": b.token(),
                "type": "STRICT_DNS",
                "connect_timeout": "5s",
                "dns_lookup_family": "V4_PREFERRED",
                "load_assignment": {
                    "cluster_name": b.token(),
                    "endpoints": [ { "lb_endpoints": [ { "endpoint": { "address": {
                        "socket_address": { "address": b.host(), "port_value": b.port } } } } ] } ]
                }
            })
        })
        .collect();
    let stats_tags: Vec<Value> = agentroute::observe::stats_tags()
        .iter()
        .map(|(name, regex)| json!({ "tag_name": name, "regex": regex }))
        .collect();
    Ok(json!({
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": 9901 } } },
        "stats_config": { "stats_tags": stats_tags },
        "static_resources": { "listeners": listeners, "clusters": clusters }
    }))
}
