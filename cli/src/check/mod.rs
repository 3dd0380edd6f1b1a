//! What `agentroute check` does, as pure functions: find the plugin
//! configurations in what users deploy (a bare configuration, an Istio
//! WasmPlugin, an Envoy Gateway EnvoyExtensionPolicy, an Envoy bootstrap or
//! ECDS resource holding the Wasm filter), hand each to the filter's own
//! reader and compiler, and explain one request with the filter's own
//! decision code ([`explain`]). Nothing here re-implements a rule: a check
//! that passes is a configuration the filter loads.
//!
//! | module | what |
//! |---|---|
//! | this one | the documents of an input, what each holds ([`scan`]) |
//! | [`envoy`] | Envoy's Wasm filter in bootstraps, ECDS resources, patches |
//! | [`kubernetes`] | Gateways, HTTPRoute header rules, patches around a configuration |
//! | [`explain`] | `--explain`: one request through the filter's decision |
//!
//! The command line's crate, not the plugin's: the `.wasm` never links it,
//! nor its YAML reader.

pub mod envoy;
pub mod explain;
pub mod kubernetes;

use std::collections::BTreeSet;
use std::fmt;

use serde_json::Value;

use agentroute::config::{ConfigError, Plan};

use envoy::{looks_like_envoy, walk, Context};
pub use explain::{explain, EntryRef, ExplainRequest, Explanation, Outcome};
use kubernetes::{
    cluster_headers, header_routes, patched_gateways, sets_stop_iteration, target_gateways,
};

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
    /// no target, which the rules take as any Gateway), in `phase` (none:
    /// Istio's UNSPECIFIED_PHASE, at the end of the chain).
    WasmPlugin {
        gateways: Vec<GatewayRef>,
        phase: Option<String>,
    },
    /// An Envoy Gateway EnvoyExtensionPolicy attached to these Gateways.
    ExtensionPolicy { gateways: Vec<GatewayRef> },
    /// Envoy's Wasm filter (a bootstrap, an ECDS resource, an EnvoyFilter or
    /// EnvoyPatchPolicy patch): its own `allow_on_headers_stop_iteration`,
    /// and what holds it.
    EnvoyFilter {
        stop_iteration: bool,
        around: Surroundings,
    },
}

/// What the document holding Envoy's Wasm filter gives the configuration:
/// the rules on what a configuration needs from Envoy ([`crate::rules`])
/// read it. `None` where the document does not say (clusters from CDS,
/// routes from RDS, a filter outside an HTTP connection manager).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Surroundings {
    /// The bootstrap's static clusters, when it has no CDS.
    pub clusters: Option<BTreeSet<String>>,
    /// The HTTP connection manager holding the filter has an access log.
    pub access_log: Option<bool>,
    /// The most backups a failover route of that connection manager's
    /// route configuration retries (0: no failover route): a route whose
    /// `inline_cluster_specifier_plugin` keys on `x-envoy-attempt-count`,
    /// with `refresh_cluster_on_retry`, in a virtual host that includes the
    /// attempt count.
    pub failover_backups: Option<usize>,
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
    /// Istio AuthorizationPolicies matching the identity headers the filter
    /// sets (`request.headers[x-agent-…]`): where they are.
    pub identity_policies: Vec<String>,
    /// The input holds nothing at all (whitespace, comments, empty documents).
    pub empty_input: bool,
    /// Generated WasmPlugins and EnvoyExtensionPolicies naming
    /// [`PLACEHOLDER_IMAGE`]: where.
    pub placeholder_images: Vec<String>,
    /// The input is `agentroute generate`'s output (its header comment).
    generated: bool,
}

/// The image `agentroute generate` named before `--image` existed (it is
/// also the reference the shipped istio/ and envoy/gateway/ manifests use,
/// what `make oci` builds, for a deployment to push to its own registry).
/// In a generated object no one chose it: no cluster can pull it, and with
/// FAIL_CLOSE the first apply is an outage.
pub const PLACEHOLDER_IMAGE: &str = "ghcr.io/agentroute/agentroute:0.1.0";

/// The first line of what `agentroute generate` writes.
const GENERATED_HEADER: &str = "# Generated by `agentroute generate";

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
    let mut scan = Scan {
        generated: input.trim_start().starts_with(GENERATED_HEADER),
        ..Scan::default()
    };
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

pub(crate) fn join(prefix: &str, what: &str) -> String {
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
                let image = doc.pointer("/spec/url");
                placeholder_image(doc, image, &join(prefix, &object), scan);
                scan.configs.push(Found {
                    location: join(prefix, &format!("{object} spec.pluginConfig")),
                    config,
                    origin: Origin::WasmPlugin {
                        gateways: target_gateways(doc),
                        phase: str_at(doc.get("spec").unwrap_or(&Value::Null), "phase"),
                    },
                });
            }
            ("gateway.envoyproxy.io", "EnvoyExtensionPolicy") => {
                let wasm = doc.pointer("/spec/wasm").and_then(Value::as_array);
                for (i, module) in wasm.into_iter().flatten().enumerate() {
                    placeholder_image(
                        doc,
                        module.pointer("/code/image/url"),
                        &join(prefix, &format!("{object} spec.wasm[{i}]")),
                        scan,
                    );
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
            ("security.istio.io", "AuthorizationPolicy") => {
                if kubernetes::matches_identity_headers(doc) {
                    scan.identity_policies.push(join(prefix, &object));
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

/// Records `at` when `image` (of a WasmPlugin, an EnvoyExtensionPolicy's
/// module) is [`PLACEHOLDER_IMAGE`] in a generated object `doc`: labelled
/// by generate, or in its output.
fn placeholder_image(doc: &Value, image: Option<&Value>, at: &str, scan: &mut Scan) {
    let image = image.and_then(Value::as_str).unwrap_or_default();
    if image.strip_prefix("oci://").unwrap_or(image) != PLACEHOLDER_IMAGE {
        return;
    }
    let (key, value) = crate::generate::emit::MANAGED_BY;
    let labelled = doc
        .pointer("/metadata/labels")
        .and_then(|l| l.get(key))
        .and_then(Value::as_str)
        == Some(value);
    if scan.generated || labelled {
        scan.placeholder_images.push(at.to_string());
    }
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
pub(crate) fn is_misspelling(found: &str, wanted: &str) -> bool {
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

pub(crate) fn to_json(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
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
}
