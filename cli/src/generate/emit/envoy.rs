//! The `envoy` target: a bootstrap like envoy/demo.yaml.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use super::{early_header_removal, Options, TLS_MOUNT};
use crate::generate::Backend;

/// A bootstrap like envoy/demo.yaml: the filter, a `cluster_header` route,
/// and one STRICT_DNS cluster per Service port, named by its token.
pub(super) fn envoy(
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
