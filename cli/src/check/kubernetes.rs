//! What `check` reads from Kubernetes objects around a configuration: the
//! Gateways a policy or patch attaches to, HTTPRoute header rules and the
//! clusters controllers make of them, `cluster_header` routes and
//! stop-iteration patches.

use serde_json::Value;

use super::{GatewayRef, HeaderRoute, RuleClusters};

/// The Gateways a policy attaches to: `spec.targetRefs[]` (or the older
/// `spec.targetRef`) of kind Gateway, in the policy's namespace.
pub(super) fn target_gateways(doc: &Value) -> Vec<GatewayRef> {
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
pub(super) fn patched_gateways(doc: &Value) -> Vec<GatewayRef> {
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
pub(super) fn cluster_headers(v: &Value, out: &mut Vec<String>) {
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
pub(super) fn header_routes(doc: &Value, object: &str) -> Vec<HeaderRoute> {
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
pub(super) fn sets_stop_iteration(v: &Value) -> bool {
    match v {
        Value::Object(o) => o.iter().any(|(k, v)| {
            (k == "allow_on_headers_stop_iteration" && v.as_bool() == Some(true))
                || sets_stop_iteration(v)
        }),
        Value::Array(items) => items.iter().any(sets_stop_iteration),
        _ => false,
    }
}

/// An Istio AuthorizationPolicy with a condition on a header the filter
/// sets (`when: [{key: request.headers[x-agent-namespace]}]`): it needs the
/// filter to run before Istio's authorization (WasmPlugin `phase: AUTHZ`).
pub(super) fn matches_identity_headers(doc: &Value) -> bool {
    let rules = doc.pointer("/spec/rules").and_then(Value::as_array);
    rules
        .into_iter()
        .flatten()
        .filter_map(|rule| rule.get("when").and_then(Value::as_array))
        .flatten()
        .filter_map(|condition| condition.get("key").and_then(Value::as_str))
        .any(|key| {
            key.to_ascii_lowercase()
                .strip_prefix("request.headers[")
                .is_some_and(|header| header.starts_with("x-agent-"))
        })
}
