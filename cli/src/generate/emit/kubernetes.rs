//! The Kubernetes targets: the Gateway, the WasmPlugin (Istio) or
//! EnvoyExtensionPolicy (Envoy Gateway) carrying the configuration, the
//! json_to_metadata and early-header-removal patches, and the HTTPRoutes
//! leading each dispatch token to its Service port, in the shape of the
//! shipped `istio/` and `envoy/gateway/`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use super::{early_header_removal, Dispatch, Options, Target};
use crate::generate::Backend;

/// The Gateway the Kubernetes targets attach to, as the shipped manifests
/// name it.
const GATEWAY_NAME: &str = "agents";
const ISTIO_NAMESPACE: &str = "istio-ingress";
const EG_NAMESPACE: &str = "envoy-gateway";
/// Gateway API allows 16 rules per HTTPRoute.
const RULES_PER_ROUTE: usize = 16;
/// The host the agents' rules attach to with [`Dispatch::ClusterHeader`],
/// off the virtual host clients' requests land in (`.invalid`: RFC 2606).
pub const BACKENDS_HOST: &str = "backends.agentroute.invalid";
/// The Wasm filter Envoy Gateway makes of the generated
/// EnvoyExtensionPolicy (its first module), as routes switch it on.
const EG_WASM_FILTER: &str =
    "envoy.filters.http.wasm/envoyextensionpolicy/envoy-gateway/agentroute/wasm/0";

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
            // JSON with a media-type parameter too (`; charset=utf-8`).
            "request_rules": {
              "allow_content_types_regex": { "google_re2": {}, "regex": "(?i)application/json[ \\t]*(;.*)?" },
              "rules": [ {
                "selectors": [ { "key": "model" } ],
                "on_present": { "metadata_namespace": metadata_namespace, "key": "model" },
                "on_missing": { "metadata_namespace": metadata_namespace, "key": "model_error", "value": "missing" },
                "on_error": { "metadata_namespace": metadata_namespace, "key": "model_error", "value": "invalid_json" }
              }, {
                // `background: true`, refused on token-budgeted entries.
                "selectors": [ { "key": "background" } ],
                "on_present": { "metadata_namespace": metadata_namespace, "key": "background" }
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

pub(super) fn istio(
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
            "url": format!("oci://{}", options.image.as_deref().unwrap_or_default()),
            "imagePullPolicy": "IfNotPresent",
            "pluginName": "agentroute",
            "type": "HTTP",
            // After Istio's authentication, before its authorization: an
            // AuthorizationPolicy on the identity headers the filter sets
            // (istio/authz/) sees them.
            "phase": "AUTHZ",
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

pub(super) fn envoy_gateway(
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
                "code": { "type": "Image", "image": { "url": options.image.as_deref().unwrap_or_default() }, "pullPolicy": "IfNotPresent" },
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
