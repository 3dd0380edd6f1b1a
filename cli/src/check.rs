//! What `agentroute check` does, as pure functions: find the plugin
//! configurations in what users deploy (a bare configuration, an Istio
//! WasmPlugin, an Envoy Gateway EnvoyExtensionPolicy, an Envoy bootstrap or
//! ECDS resource holding the Wasm filter), hand each to the filter's own
//! reader and compiler, and explain one request with the filter's own
//! [`decide`]/[`decide_model`]. Nothing here re-implements a rule: a check
//! that passes is a configuration the filter loads.
//!
//! The command line's crate, not the plugin's: the `.wasm` never links it,
//! nor its YAML reader.

use std::fmt;

use serde_json::{Map, Value};

use agentroute::canary::{self, How, Side, COHORTS};
use agentroute::config::{CanaryBy, ConfigError, Plan};
use agentroute::cors::Answer;
use agentroute::mcp::judge::{judge, McpHeaders, Verdict};
use agentroute::mcp::rpc::{Message, Name, TOOLS_CALL};
use agentroute::request::{
    cors_policy, decide, decide_model, Decision, Forward, HeaderOp, McpStep, RequestHead,
};

const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const STRING_VALUE_TYPE: &str = "type.googleapis.com/google.protobuf.StringValue";
const TYPED_EXTENSION_CONFIG: &str =
    "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";

/// One plugin configuration found in the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Where it was found, for humans: `document 2: WasmPlugin
    /// istio-ingress/agentroute spec.pluginConfig`. Empty for a bare
    /// configuration that is the whole input.
    pub location: String,
    /// The bytes the filter would be given (JSON), or why there are none.
    pub config: Result<String, String>,
    /// What held it: the rules across objects ([`crate::rules`]) depend on it.
    pub origin: Origin,
}

/// What a configuration was found in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A bare configuration document.
    Bare,
    /// An Istio WasmPlugin attached to these Gateways (none: a selector or
    /// no target, which the rules take as any Gateway).
    WasmPlugin { gateways: Vec<GatewayRef> },
    /// An Envoy Gateway EnvoyExtensionPolicy attached to these Gateways.
    ExtensionPolicy { gateways: Vec<GatewayRef> },
    /// Envoy's Wasm filter (a bootstrap, an ECDS resource, an EnvoyFilter or
    /// EnvoyPatchPolicy patch): its own `allow_on_headers_stop_iteration`.
    EnvoyFilter { stop_iteration: bool },
}

/// A Gateway API Gateway as policies and routes name it. `namespace` is
/// `None` where the object names none (a document without metadata.namespace).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct GatewayRef {
    pub namespace: Option<String>,
    pub name: String,
}

impl GatewayRef {
    /// The same Gateway, a namespace left out matching any.
    pub fn matches(&self, other: &GatewayRef) -> bool {
        self.name == other.name
            && match (&self.namespace, &other.namespace) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

/// One HTTPRoute rule match on a request header with an exact value: what
/// leads a dispatch token to a Service on Istio and Envoy Gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderRoute {
    /// `HTTPRoute prod/agents rules[0] (coordinator)`, for messages.
    pub location: String,
    pub gateways: Vec<GatewayRef>,
    /// Lowercase header name.
    pub header: String,
    pub value: String,
    /// The HTTPRoute's `hostnames` (none: every host of the listener, the
    /// virtual host clients' requests land in).
    pub hostnames: Vec<String>,
    /// The Envoy cluster each controller makes of the rule: what a
    /// `cluster_header` route needs as the agent's backend.
    pub clusters: RuleClusters,
}

/// The cluster names Istio and Envoy Gateway give an HTTPRoute rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleClusters {
    /// `outbound|PORT||SERVICE.NAMESPACE.svc.cluster.local`, for a rule whose
    /// (first) backendRef is a Service with a port.
    pub istio: Option<String>,
    /// `httproute/NAMESPACE/ROUTE/rule/INDEX`.
    pub envoy_gateway: String,
    /// How many backendRefs the rule has: a header names one cluster.
    pub backend_refs: usize,
}

impl RuleClusters {
    pub fn on(&self, platform: Platform) -> Option<&str> {
        match platform {
            Platform::Istio => self.istio.as_deref(),
            Platform::EnvoyGateway => Some(&self.envoy_gateway),
        }
    }
}

/// An EnvoyFilter (Istio) or EnvoyPatchPolicy (Envoy Gateway) that adds a
/// route sending requests to the cluster a header names (`cluster_header`):
/// the agents' backends must then be the controller's cluster names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatchRoute {
    pub location: String,
    pub platform: Platform,
    /// The Gateways it patches (none: a selector this tool cannot follow,
    /// taken as any Gateway).
    pub gateways: Vec<GatewayRef>,
    /// Lowercase header name.
    pub header: String,
}

/// An EnvoyFilter (Istio) or EnvoyPatchPolicy (Envoy Gateway) that sets
/// `allow_on_headers_stop_iteration: true` on a Wasm filter, which is what
/// `openai.model_from: body` needs and a WasmPlugin or EnvoyExtensionPolicy
/// cannot set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopIterationPatch {
    pub location: String,
    pub platform: Platform,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Istio,
    EnvoyGateway,
}

impl Found {
    /// Reads and compiles the configuration exactly as the filter does.
    pub fn compile(&self) -> Result<Plan, ConfigError> {
        match &self.config {
            Ok(json) => Plan::from_json(json.as_bytes()),
            Err(why) => Err(ConfigError::new("", why.clone())),
        }
    }
}

/// Everything found in one input.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scan {
    pub configs: Vec<Found>,
    /// Filters whose configuration is delivered elsewhere (ECDS), said so
    /// instead of being passed over in silence.
    pub notes: Vec<String>,
    /// HTTPRoute rules matching a header exactly.
    pub routes: Vec<HeaderRoute>,
    pub stop_iteration: Vec<StopIterationPatch>,
    /// Patches adding a `cluster_header` route.
    pub dispatch_routes: Vec<DispatchRoute>,
    /// The input holds nothing at all (whitespace, comments, empty documents).
    pub empty_input: bool,
}

/// The input is neither JSON nor YAML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError(pub String);

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InputError {}

/// Finds every plugin configuration in `input` (JSON, or YAML with one or
/// more documents).
pub fn scan(input: &str) -> Result<Scan, InputError> {
    let mut scan = Scan::default();
    // JSON first: a bare JSON configuration then reaches the filter's reader
    // byte for byte (a key given twice included), and JSON that YAML's
    // tokenizer dislikes (tabs) still reads.
    if let Ok(doc) = serde_json::from_str::<Value>(input) {
        scan_document(&doc, Some(input), "", &mut scan);
        return Ok(scan);
    }
    let docs = yaml_documents(input)?;
    if docs.iter().all(Value::is_null) {
        // The filter would accept it (Istio sends one without a
        // pluginConfig), but no one means to deploy it: the run says so.
        scan.empty_input = true;
        return Ok(scan);
    }
    let many = docs.len() > 1;
    for (i, doc) in docs.iter().enumerate() {
        if many && doc.is_null() {
            continue; // `---` with nothing after it
        }
        let prefix = if many {
            format!("document {}", i + 1)
        } else {
            String::new()
        };
        scan_document(doc, None, &prefix, &mut scan);
    }
    Ok(scan)
}

/// The documents of `input`: one JSON value, or every YAML document (null
/// for an empty one).
pub fn documents(input: &str) -> Result<Vec<Value>, InputError> {
    match serde_json::from_str::<Value>(input) {
        Ok(doc) => Ok(vec![doc]),
        Err(_) => yaml_documents(input),
    }
}

fn yaml_documents(input: &str) -> Result<Vec<Value>, InputError> {
    use serde::Deserialize;
    let mut docs = Vec::new();
    for (i, de) in serde_norway::Deserializer::from_str(input).enumerate() {
        let at = |e: &dyn fmt::Display| {
            let trimmed = input.trim_start();
            let kind = if trimmed.starts_with('{') || trimmed.starts_with('[') {
                "neither JSON nor YAML"
            } else {
                "not valid YAML"
            };
            InputError(format!("input is {kind} (document {}): {e}", i + 1))
        };
        // serde_norway's own Value refuses a key given twice, as the filter
        // does; serde_json's would keep the last silently.
        let mut yaml = serde_norway::Value::deserialize(de).map_err(|e| at(&e))?;
        yaml.apply_merge().map_err(|e| at(&e))?;
        docs.push(serde_json::to_value(&yaml).map_err(|e| at(&e))?);
    }
    Ok(docs)
}

fn join(prefix: &str, what: &str) -> String {
    match (prefix.is_empty(), what.is_empty()) {
        (true, _) => what.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) => format!("{prefix}: {what}"),
    }
}

/// One document: a Kubernetes object, something holding Envoy's Wasm filter,
/// or a bare configuration. `raw` is the document's own text when it is the
/// whole input and JSON.
fn scan_document(doc: &Value, raw: Option<&str>, prefix: &str, scan: &mut Scan) {
    let str_at = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
    if let (Some(api_version), Some(kind)) = (str_at(doc, "apiVersion"), str_at(doc, "kind")) {
        let meta = doc.get("metadata").unwrap_or(&Value::Null);
        let name = match (str_at(meta, "namespace"), str_at(meta, "name")) {
            (Some(ns), Some(n)) => format!("{ns}/{n}"),
            (None, Some(n)) => n,
            _ => "(unnamed)".to_string(),
        };
        let object = format!("{kind} {name}");
        let group = api_version.split('/').next().unwrap_or_default();
        match (group, kind.as_str()) {
            // What `kubectl get KIND -o yaml` prints without a name.
            ("v1", "List") => {
                let items = doc.get("items").and_then(Value::as_array);
                for (i, item) in items.into_iter().flatten().enumerate() {
                    scan_document(item, None, &join(prefix, &format!("items[{i}]")), scan);
                }
            }
            ("extensions.istio.io", "WasmPlugin") => {
                // Istio sends pluginConfig as JSON. Without one the filter
                // gets an empty configuration and routes nothing: a
                // misspelt key (`pluginconfig:`) is the usual cause.
                let config = match doc.pointer("/spec/pluginConfig") {
                    Some(config) => Ok(to_json(config)),
                    None => Err(missing_key(doc.get("spec"), "spec", "pluginConfig")),
                };
                scan.configs.push(Found {
                    location: join(prefix, &format!("{object} spec.pluginConfig")),
                    config,
                    origin: Origin::WasmPlugin {
                        gateways: target_gateways(doc),
                    },
                });
            }
            ("gateway.envoyproxy.io", "EnvoyExtensionPolicy") => {
                let wasm = doc.pointer("/spec/wasm").and_then(Value::as_array);
                for (i, module) in wasm.into_iter().flatten().enumerate() {
                    let named = str_at(module, "name")
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default();
                    let config = match module.get("config") {
                        Some(config) => Ok(to_json(config)),
                        None => Err(missing_key(
                            Some(module),
                            &format!("spec.wasm[{i}]"),
                            "config",
                        )),
                    };
                    scan.configs.push(Found {
                        location: join(prefix, &format!("{object} spec.wasm[{i}].config{named}")),
                        config,
                        origin: Origin::ExtensionPolicy {
                            gateways: target_gateways(doc),
                        },
                    });
                }
                if wasm.map_or(true, Vec::is_empty) {
                    scan.configs.push(Found {
                        location: join(prefix, &format!("{object} spec.wasm")),
                        config: Err(missing_key(doc.get("spec"), "spec", "wasm")),
                        origin: Origin::ExtensionPolicy {
                            gateways: target_gateways(doc),
                        },
                    });
                }
            }
            ("gateway.networking.k8s.io", "HTTPRoute") => {
                scan.routes
                    .extend(header_routes(doc, &join(prefix, &object)));
            }
            ("networking.istio.io", "EnvoyFilter")
            | ("gateway.envoyproxy.io", "EnvoyPatchPolicy") => {
                let platform = if group == "networking.istio.io" {
                    Platform::Istio
                } else {
                    Platform::EnvoyGateway
                };
                if sets_stop_iteration(doc) {
                    scan.stop_iteration.push(StopIterationPatch {
                        location: join(prefix, &object),
                        platform,
                    });
                }
                let mut headers = Vec::new();
                cluster_headers(doc.get("spec").unwrap_or(&Value::Null), &mut headers);
                headers.sort();
                headers.dedup();
                for header in headers {
                    scan.dispatch_routes.push(DispatchRoute {
                        location: join(prefix, &object),
                        platform,
                        gateways: patched_gateways(doc),
                        header,
                    });
                }
                walk(
                    doc,
                    &mut String::new(),
                    &Context::default(),
                    join(prefix, &object),
                    scan,
                );
            }
            // EnvoyFilter, EnvoyPatchPolicy...: whatever Wasm filter they
            // carry; other kinds (Gateway, HTTPRoute) hold none.
            _ => walk(
                doc,
                &mut String::new(),
                &Context::default(),
                join(prefix, &object),
                scan,
            ),
        }
        return;
    }
    let before = (scan.configs.len(), scan.notes.len());
    walk(
        doc,
        &mut String::new(),
        &Context::default(),
        prefix.to_string(),
        scan,
    );
    if (scan.configs.len(), scan.notes.len()) != before || looks_like_envoy(doc) {
        return;
    }
    scan.configs.push(Found {
        location: prefix.to_string(),
        config: Ok(raw.map(str::to_string).unwrap_or_else(|| to_json(doc))),
        origin: Origin::Bare,
    });
}

/// Why `key` is missing from `object` (at `path`), with the key that looks
/// like a misspelling of it, if any.
fn missing_key(object: Option<&Value>, path: &str, key: &str) -> String {
    let near = object
        .and_then(Value::as_object)
        .and_then(|o| o.keys().find(|k| is_misspelling(k, key)));
    let mut message =
        format!("no {path}.{key}: the plugin would get an empty configuration and route nothing");
    if let Some(near) = near {
        message.push_str(&format!(
            " ({path}.{near} is not {key}: keys are case-sensitive and exact)"
        ));
    }
    message
}

/// `found` differs from `wanted` only in case or by at most two edits.
fn is_misspelling(found: &str, wanted: &str) -> bool {
    found != wanted && (found.eq_ignore_ascii_case(wanted) || edit_distance(found, wanted) <= 2)
}

/// Levenshtein distance, for the short keys of a manifest.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous.get(j).copied().unwrap_or(0) + usize::from(ca != *cb);
            let delete = previous.get(j + 1).copied().unwrap_or(0) + 1;
            let insert = current.get(j).copied().unwrap_or(0) + 1;
            current.push(substitute.min(delete).min(insert));
        }
        previous = current;
    }
    previous.last().copied().unwrap_or(0)
}

/// The Gateways a policy attaches to: `spec.targetRefs[]` (or the older
/// `spec.targetRef`) of kind Gateway, in the policy's namespace.
fn target_gateways(doc: &Value) -> Vec<GatewayRef> {
    let namespace = doc
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .map(str::to_string);
    let refs = doc.pointer("/spec/targetRefs").and_then(Value::as_array);
    let single = doc.pointer("/spec/targetRef");
    refs.into_iter()
        .flatten()
        .chain(single)
        .filter(|r| r.get("kind").and_then(Value::as_str) == Some("Gateway"))
        .filter_map(|r| r.get("name").and_then(Value::as_str))
        .map(|name| GatewayRef {
            namespace: namespace.clone(),
            name: name.to_string(),
        })
        .collect()
}

/// The Gateways an EnvoyFilter or EnvoyPatchPolicy patches: its targets, or
/// an Istio `workloadSelector` on the label Istio puts on a Gateway's pods.
fn patched_gateways(doc: &Value) -> Vec<GatewayRef> {
    let mut gateways = target_gateways(doc);
    if let Some(name) = doc
        .pointer("/spec/workloadSelector/labels")
        .and_then(|l| l.get("gateway.networking.k8s.io/gateway-name"))
        .and_then(Value::as_str)
    {
        gateways.push(GatewayRef {
            namespace: doc
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(str::to_string),
            name: name.to_string(),
        });
    }
    gateways
}

/// The headers of every route action below `v` that takes its cluster from
/// a header (`route: { cluster_header: NAME }`), lowercase.
fn cluster_headers(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            if let Some(header) = o
                .get("route")
                .and_then(|r| r.get("cluster_header"))
                .and_then(Value::as_str)
            {
                out.push(header.to_ascii_lowercase());
            }
            o.values().for_each(|child| cluster_headers(child, out));
        }
        Value::Array(items) => items.iter().for_each(|child| cluster_headers(child, out)),
        _ => {}
    }
}

/// The clusters each controller makes of rule `index` of HTTPRoute
/// `namespace/name`.
fn rule_clusters(rule: &Value, namespace: &str, name: &str, index: usize) -> RuleClusters {
    let refs = rule.get("backendRefs").and_then(Value::as_array);
    let istio = refs.and_then(|r| r.first()).and_then(|b| {
        let core = b
            .get("group")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty();
        let service = b.get("kind").and_then(Value::as_str).unwrap_or("Service") == "Service";
        let port = b.get("port").and_then(Value::as_u64)?;
        let service_name = b.get("name").and_then(Value::as_str)?;
        let ns = b
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or(namespace);
        (core && service).then(|| format!("outbound|{port}||{service_name}.{ns}.svc.cluster.local"))
    });
    RuleClusters {
        istio,
        envoy_gateway: format!("httproute/{namespace}/{name}/rule/{index}"),
        backend_refs: refs.map_or(0, Vec::len),
    }
}

/// The exact header matches of an HTTPRoute's rules.
fn header_routes(doc: &Value, object: &str) -> Vec<HeaderRoute> {
    let namespace = doc
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .map(str::to_string);
    let route_name = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let hostnames: Vec<String> = doc
        .pointer("/spec/hostnames")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    let gateways: Vec<GatewayRef> = doc
        .pointer("/spec/parentRefs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|r| r.get("kind").and_then(Value::as_str).unwrap_or("Gateway") == "Gateway")
        .filter_map(|r| {
            let name = r.get("name").and_then(Value::as_str)?;
            let ns = r
                .get("namespace")
                .and_then(Value::as_str)
                .map(str::to_string);
            Some(GatewayRef {
                namespace: ns.or_else(|| namespace.clone()),
                name: name.to_string(),
            })
        })
        .collect();
    let mut out = Vec::new();
    let rules = doc.pointer("/spec/rules").and_then(Value::as_array);
    for (i, rule) in rules.into_iter().flatten().enumerate() {
        let named = rule
            .get("name")
            .and_then(Value::as_str)
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        let matches = rule.get("matches").and_then(Value::as_array);
        for header in matches
            .into_iter()
            .flatten()
            .filter_map(|m| m.get("headers").and_then(Value::as_array))
            .flatten()
        {
            let exact = header
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("Exact")
                == "Exact";
            let name = header.get("name").and_then(Value::as_str);
            let value = header.get("value").and_then(Value::as_str);
            if let (true, Some(name), Some(value)) = (exact, name, value) {
                out.push(HeaderRoute {
                    location: format!("{object} rules[{i}]{named}"),
                    gateways: gateways.clone(),
                    header: name.to_ascii_lowercase(),
                    value: value.to_string(),
                    hostnames: hostnames.clone(),
                    clusters: rule_clusters(
                        rule,
                        namespace.as_deref().unwrap_or("default"),
                        route_name,
                        i,
                    ),
                });
            }
        }
    }
    out
}

/// `allow_on_headers_stop_iteration: true` anywhere below `v`.
fn sets_stop_iteration(v: &Value) -> bool {
    match v {
        Value::Object(o) => o.iter().any(|(k, v)| {
            (k == "allow_on_headers_stop_iteration" && v.as_bool() == Some(true))
                || sets_stop_iteration(v)
        }),
        Value::Array(items) => items.iter().any(sets_stop_iteration),
        _ => false,
    }
}

/// Top-level keys of an Envoy bootstrap or xDS resource file, which no
/// plugin configuration has: such a document without the filter is not
/// mistaken for a bare configuration full of unknown fields.
fn looks_like_envoy(doc: &Value) -> bool {
    const ENVOY_KEYS: [&str; 8] = [
        "static_resources",
        "dynamic_resources",
        "resources",
        "version_info",
        "admin",
        "node",
        "layered_runtime",
        "@type",
    ];
    doc.as_object()
        .is_some_and(|o| ENVOY_KEYS.iter().any(|k| o.contains_key(*k)))
}

fn to_json(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Names met on the way down, for locations people recognise.
#[derive(Default, Clone)]
struct Context {
    listener: Option<String>,
    /// The `name` of the object holding the current one (an HTTP filter, a
    /// TypedExtensionConfig).
    holder: Option<String>,
    /// The holder is an ECDS resource (TypedExtensionConfig).
    holder_is_resource: bool,
}

/// Looks for Envoy's Wasm HTTP filter anywhere below `v`.
fn walk(v: &Value, path: &mut String, ctx: &Context, prefix: String, scan: &mut Scan) {
    match v {
        Value::Object(obj) => {
            if let Some(wasm) = wasm_message(obj) {
                let stop_iteration = wasm
                    .get("config")
                    .and_then(|c| c.get("allow_on_headers_stop_iteration"))
                    .and_then(Value::as_bool)
                    == Some(true);
                scan.configs.push(Found {
                    location: join(&prefix, &describe_filter(ctx, path)),
                    config: configuration(wasm),
                    origin: Origin::EnvoyFilter { stop_iteration },
                });
                return;
            }
            let name = obj.get("name").and_then(Value::as_str).map(str::to_string);
            if let Some(discovery) = obj.get("config_discovery") {
                if ecds_of_wasm(discovery) {
                    let mut here = ctx.clone();
                    here.holder = name.clone();
                    let source = discovery
                        .pointer("/config_source/path_config_source/path")
                        .or_else(|| discovery.pointer("/config_source/path"))
                        .and_then(Value::as_str)
                        .map(|p| format!(" from {p}"))
                        .unwrap_or_default();
                    scan.notes.push(join(
                        &prefix,
                        &format!(
                            "{}: configuration delivered by ECDS{source}; check that resource",
                            describe_filter(&here, path)
                        ),
                    ));
                }
            }
            let mut inner = ctx.clone();
            inner.holder = name;
            inner.holder_is_resource =
                obj.get("@type").and_then(Value::as_str) == Some(TYPED_EXTENSION_CONFIG);
            for (key, child) in obj {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                if key == "listeners" {
                    for (i, listener) in child.as_array().into_iter().flatten().enumerate() {
                        let mut l = inner.clone();
                        l.listener = listener
                            .get("name")
                            .and_then(Value::as_str)
                            .map(str::to_string);
                        let len = path.len();
                        path.push_str(&format!("[{i}]"));
                        walk(listener, path, &l, prefix.clone(), scan);
                        path.truncate(len);
                    }
                } else {
                    walk(child, path, &inner, prefix.clone(), scan);
                }
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(item, path, ctx, prefix.clone(), scan);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// The Wasm filter message of a `typed_config`, directly or inside a
/// TypedStruct (as some Istio EnvoyFilters write it).
fn wasm_message(obj: &Map<String, Value>) -> Option<&Map<String, Value>> {
    let ty = obj.get("@type").and_then(Value::as_str)?;
    if ty == WASM_TYPE {
        return Some(obj);
    }
    let typed_struct =
        ty.ends_with("/udpa.type.v1.TypedStruct") || ty.ends_with("/xds.type.v3.TypedStruct");
    if typed_struct && obj.get("type_url").and_then(Value::as_str) == Some(WASM_TYPE) {
        return obj.get("value").and_then(Value::as_object);
    }
    None
}

fn ecds_of_wasm(discovery: &Value) -> bool {
    discovery
        .get("type_urls")
        .and_then(Value::as_array)
        .is_some_and(|urls| urls.iter().any(|u| u.as_str() == Some(WASM_TYPE)))
}

fn describe_filter(ctx: &Context, path: &str) -> String {
    let what = if ctx.holder_is_resource {
        "ECDS resource"
    } else {
        "Wasm filter"
    };
    match (&ctx.holder, &ctx.listener) {
        (Some(name), Some(listener)) => format!("{what} {name:?} (listener {listener:?})"),
        (Some(name), None) => format!("{what} {name:?}"),
        (None, _) if path.is_empty() => what.to_string(),
        (None, _) => format!("{what} at {path}"),
    }
}

/// The plugin configuration of a Wasm filter: the JSON text of its
/// `config.configuration` StringValue (absent: empty, as Envoy passes it).
fn configuration(wasm: &Map<String, Value>) -> Result<String, String> {
    let Some(configuration) = wasm.get("config").and_then(|c| c.get("configuration")) else {
        return Ok(String::new());
    };
    let ty = configuration.get("@type").and_then(Value::as_str);
    if ty != Some(STRING_VALUE_TYPE) {
        return Err(format!(
            "config.configuration must be a {STRING_VALUE_TYPE} holding the JSON configuration, found {}",
            ty.map(|t| format!("@type {t:?}"))
                .unwrap_or_else(|| "no @type".to_string())
        ));
    }
    match configuration.get("value") {
        None => Ok(String::new()),
        Some(Value::String(text)) => Ok(text.clone()),
        Some(_) => {
            Err("config.configuration.value must be a string (the JSON configuration)".into())
        }
    }
}

/// The size of a compiled configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub entries: usize,
    /// Hosts and path prefixes (explicit and from layouts).
    pub routes: usize,
    /// Model ids, `namespace/name` of agents included.
    pub models: usize,
}

impl Summary {
    pub fn of(plan: &Plan) -> Summary {
        Summary {
            entries: plan.entries.len(),
            routes: plan.router.route_count(),
            models: plan.models.len(),
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} entries, {} routes, {} models",
            self.entries, self.routes, self.models
        )
    }
}

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
        /// An A2A generation when a chat completion is translated.
        translate: Option<&'static str>,
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
    let head = RequestHead::from_pairs(&pairs, &plan.dispatch_header).with_client(&client);
    let mut notes = Vec::new();
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
            _ if matches!(decision, Decision::Preflight(_)) => {
                "a preflight: answered by the filter with the policy's headers (below), never forwarded"
                    .to_string()
            }
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
        Decision::Reply { entry, reply } => (entry, reply_outcome(&reply)),
        Decision::Preflight(reply) => {
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
    let entry = entry.and_then(entry_ref);
    if entry.is_none() {
        matched_by = None;
    }
    Explanation {
        request: request.clone(),
        entry,
        matched_by,
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
    let translate = f.translate.map(|v| v.as_str());
    if translate.is_some() {
        notes.push("the chat completion body is translated to an A2A message".into());
    }
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
    let rules = f
        .entry
        .and_then(|i| plan.entries.get(i))
        .and_then(|e| e.mcp.as_deref())?;
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
        Verdict::Refuse { reply, .. } => {
            let error = serde_json::from_str::<Value>(&reply.body)
                .ok()
                .and_then(|v| v.get("error").cloned())
                .unwrap_or_default();
            Some(Outcome::Reply {
                status: reply.status,
                code: error.get("code").map(|c| format!("JSON-RPC {c}")),
                message: error
                    .get("message")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            })
        }
        Verdict::Forward { call, .. } => {
            if let Some(call) = call {
                let label = rules.labels.get(call.label).map_or("other", String::as_str);
                notes.push(format!(
                    "tool {tool} is allowed; counted as tool=\"{label}\" in agentroute_mcp_tool_calls_total"
                ));
                if let Some(limit) = call
                    .limit
                    .and_then(|(i, _)| rules.limits.get(i).map(|l| (i, l)))
                {
                    let (index, limit) = limit;
                    notes.push(format!(
                        "tool_limits[{index}] applies: {} request(s)/s, burst {}, a bucket for this tool alone shared by every worker (over it: 429, not simulated here)",
                        limit.rate.requests_per_second, limit.rate.burst
                    ));
                }
            }
            None
        }
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
    Outcome::Reply {
        status: reply.status,
        code: field("code"),
        message: field("message"),
    }
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
        match &self.outcome {
            Outcome::Forward {
                path,
                rewritten,
                headers,
                translate,
                card,
            } => {
                let how = match (rewritten, translate) {
                    (_, Some(version)) => format!("rewritten; A2A {version}"),
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

    fn configs(input: &str) -> Vec<(String, Result<String, String>)> {
        scan(input)
            .unwrap()
            .configs
            .into_iter()
            .map(|f| (f.location, f.config))
            .collect()
    }

    fn only(input: &str) -> Found {
        let mut scan = scan(input).unwrap();
        assert_eq!(scan.configs.len(), 1, "{:?}", scan.configs);
        scan.configs.remove(0)
    }

    #[test]
    fn a_bare_json_configuration_reaches_the_reader_byte_for_byte() {
        let text = r#"{"agents":[{"name":"a","backend":"b","name":"c"}]}"#;
        let found = only(text);
        assert_eq!(
            (found.location.as_str(), found.config.as_deref()),
            ("", Ok(text))
        );
        // ...so the filter's own duplicate-key refusal shows.
        let err = found.compile().unwrap_err();
        assert_eq!(
            err.to_string(),
            "agents[0].name: given twice (duplicate key)"
        );
    }

    #[test]
    fn a_bare_yaml_configuration_is_read_as_its_json() {
        let found =
            only("agents:\n- name: a\n  backend: b\n  prefixes: [{prefix: /p, rewrite: ~}]\n");
        assert_eq!(
            found.config.as_deref(),
            Ok(
                r#"{"agents":[{"name":"a","backend":"b","prefixes":[{"prefix":"/p","rewrite":null}]}]}"#
            )
        );
        let plan = found.compile().unwrap();
        assert_eq!(
            Summary::of(&plan),
            Summary {
                entries: 1,
                routes: 4,
                models: 1
            }
        );
        // An unquoted YAML number is a number, as Istio would send it.
        let err = only("agents: [{name: a, backend: b, protocol: a2a, a2a: {version: 1.0}}]")
            .compile()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "agents[0].a2a.version: expected a string, found a number"
        );
    }

    #[test]
    fn empty_input_is_said_so() {
        for input in ["", "  \n", "# nothing\n", "---\n---\n"] {
            let scan = scan(input).unwrap();
            assert!(scan.empty_input && scan.configs.is_empty(), "{input:?}");
        }
    }

    #[test]
    fn a_wasm_plugin_gives_its_plugin_config() {
        let input = "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\n\
            metadata: {name: agentroute, namespace: istio-ingress}\n\
            spec:\n  url: oci://x/y:1\n  pluginConfig:\n    agents:\n    - {name: a, bakend: b}\n";
        let found = only(input);
        assert_eq!(
            found.location,
            "WasmPlugin istio-ingress/agentroute spec.pluginConfig"
        );
        assert_eq!(
            found.compile().unwrap_err().to_string(),
            "agents[0].bakend: unknown field"
        );
        // No pluginConfig: the filter would load nothing, so it is an error
        // (a misspelt key is the usual cause).
        let found = only("apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {name: p}\nspec: {url: x}\n");
        assert_eq!(
            (found.location.as_str(), found.config.as_ref().map(String::as_str).map_err(String::as_str)),
            (
                "WasmPlugin p spec.pluginConfig",
                Err("no spec.pluginConfig: the plugin would get an empty configuration and route nothing")
            )
        );
    }

    #[test]
    fn an_extension_policy_gives_each_wasm_config() {
        let input = r#"
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: EnvoyExtensionPolicy
metadata: {name: agentroute, namespace: eg}
spec:
  wasm:
  - name: agentroute
    config: {agents: [{name: a, backend: b}]}
  - name: other
"#;
        assert_eq!(
            configs(input),
            [
                (
                    "EnvoyExtensionPolicy eg/agentroute spec.wasm[0].config (agentroute)"
                        .to_string(),
                    Ok(r#"{"agents":[{"name":"a","backend":"b"}]}"#.to_string())
                ),
                (
                    "EnvoyExtensionPolicy eg/agentroute spec.wasm[1].config (other)".to_string(),
                    Err(
                        "no spec.wasm[1].config: the plugin would get an empty configuration \
                         and route nothing"
                            .to_string()
                    )
                ),
            ]
        );
    }

    const BOOTSTRAP: &str = r#"
static_resources:
  listeners:
  - name: gateway
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          http_filters:
          - name: agentroute
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                root_id: agentroute
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: |
                    {"agents": [{"name": "a", "backend": "b"}]}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"#;

    #[test]
    fn a_bootstrap_gives_its_wasm_filters_configuration_string() {
        let found = only(BOOTSTRAP);
        assert_eq!(
            found.location,
            r#"Wasm filter "agentroute" (listener "gateway")"#
        );
        assert_eq!(
            found.config.as_deref(),
            Ok("{\"agents\": [{\"name\": \"a\", \"backend\": \"b\"}]}\n")
        );
        // The same bootstrap as JSON.
        let json: Value = serde_norway::from_str(BOOTSTRAP).unwrap();
        assert_eq!(only(&json.to_string()), found);
        // A configuration that is not a StringValue is named, not guessed at.
        let other = BOOTSTRAP.replace(
            "type.googleapis.com/google.protobuf.StringValue",
            "type.googleapis.com/google.protobuf.BytesValue",
        );
        let err = only(&other).compile().unwrap_err().to_string();
        assert!(
            err.contains("must be a type.googleapis.com/google.protobuf.StringValue"),
            "{err}"
        );
    }

    #[test]
    fn an_ecds_resource_file_and_a_bootstrap_that_points_at_one() {
        let ecds = r#"
version_info: "1"
resources:
- "@type": type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig
  name: agentroute
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
    config:
      configuration:
        "@type": type.googleapis.com/google.protobuf.StringValue
        value: '{"unmatched": "reject"}'
"#;
        let found = only(ecds);
        assert_eq!(found.location, r#"ECDS resource "agentroute""#);
        assert_eq!(found.config.as_deref(), Ok(r#"{"unmatched": "reject"}"#));

        let pointer = r#"
static_resources:
  listeners:
  - name: gw
    filter_chains: [{filters: [{name: hcm, typed_config: {http_filters: [
      {name: agentroute, config_discovery: {
        config_source: {path_config_source: {path: envoy/ecds/agentroute.yaml}},
        type_urls: [type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm]}}]}}]}]
"#;
        let scan = scan(pointer).unwrap();
        assert!(scan.configs.is_empty());
        assert_eq!(
            scan.notes,
            [
                r#"Wasm filter "agentroute" (listener "gw"): configuration delivered by ECDS from envoy/ecds/agentroute.yaml; check that resource"#
            ]
        );
    }

    #[test]
    fn several_documents_are_numbered_and_other_objects_skipped() {
        let input = "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\n\
            apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {name: p, namespace: n}\n\
            spec: {pluginConfig: {}}\n---\n";
        assert_eq!(
            configs(input),
            [(
                "document 2: WasmPlugin n/p spec.pluginConfig".to_string(),
                Ok("{}".to_string())
            )]
        );
        // `kubectl get wasmplugins -A -o yaml`
        let list = "apiVersion: v1\nkind: List\nitems:\n\
            - apiVersion: extensions.istio.io/v1alpha1\n  kind: WasmPlugin\n  metadata: {name: p}\n  \
            spec: {pluginConfig: {unmatched: reject}}\n";
        assert_eq!(
            configs(list),
            [(
                "items[0]: WasmPlugin p spec.pluginConfig".to_string(),
                Ok(r#"{"unmatched":"reject"}"#.to_string())
            )]
        );
        // An Envoy file without the filter holds no configuration at all.
        assert_eq!(configs("static_resources: {clusters: []}\n"), []);
    }

    #[test]
    fn unreadable_input_says_where() {
        let err = scan("agents:\n  - name: a\n   backend: b\n").unwrap_err();
        assert!(
            err.0.starts_with("input is not valid YAML (document 1): "),
            "{err}"
        );
        assert!(err.0.contains("line 3"), "{err}");
        let err = scan("{\"agents\": [}").unwrap_err();
        assert!(err.0.starts_with("input is neither JSON nor YAML"), "{err}");
        // YAML refuses a key given twice, like the filter's reader.
        let err = scan("agents: []\nagents: []\n").unwrap_err();
        assert!(err.0.contains("duplicate"), "{err}");
    }

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
        let cohort = agentroute::canary::cohort("default/a", b"u-1");
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
        assert_eq!((path.as_str(), *translate), ("/rpc", Some("1.0")));
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
