//! The `envoy` target: a bootstrap like envoy/demo.yaml, with what the
//! configuration uses and nothing more: the failover route and attempt
//! counts when an entry retries across backends, an access log when
//! `observability.access_log` is on, MCP session affinity when there are MCP
//! entries.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use agentroute::config::Plan;
use agentroute::observe::Field;

use super::{Options, TLS_MOUNT};
use crate::generate::{Backend, ProviderRoute};

/// Where the `envoy` target reads a provider's key: an SDS generic secret
/// in a file, `{PROVIDER_SECRETS}/{name}.yaml` (in Kubernetes, a mounted
/// Secret), as envoy/demo.yaml does.
pub const PROVIDER_SECRETS: &str = "/etc/agentroute/providers";

/// Where the bootstrap loads the plugin from unless `--wasm` says.
pub const DEFAULT_WASM: &str = "dist/agentroute.wasm";

/// Envoy numbers attempts in this header; the failover route picks each
/// attempt's cluster by it.
const ATTEMPT_COUNT: &str = "x-envoy-attempt-count";

/// What the filter treats as a failed attempt by default (`failover.on`):
/// the failover route retries on the same.
const RETRY_ON: &str = "5xx,reset,connect-failure,retriable-status-codes";

/// A bootstrap like envoy/demo.yaml: the filter, a `cluster_header` route,
/// and one STRICT_DNS cluster per Service port, named by its token. The
/// clusters are `backends` and every dispatch token of the configuration
/// (a `--base` canary or failover backend) that names a Service port;
/// `warnings` gets the tokens that name none.
pub(super) fn envoy(
    config: &Map<String, Value>,
    plan: &Plan,
    backends: &BTreeSet<Backend>,
    providers: &BTreeSet<ProviderRoute>,
    options: &Options,
    warnings: &mut Vec<String>,
) -> Result<Value, String> {
    let configuration = serde_json::to_string_pretty(config).map_err(|e| e.to_string())? + "\n";
    let provider_names: BTreeSet<String> = providers.iter().map(ProviderRoute::name).collect();
    let clusters = clusters_of(plan, backends, &provider_names, warnings);
    let names: Vec<String> = clusters.iter().map(Backend::token).collect();
    let header = plan.dispatch_header.as_str();

    let mut routes = Vec::new();
    // The entry with the most backends sets how many slots there are; each
    // count of backups has its route, the longest first.
    for backups in (1..=plan.slot_headers.len()).rev() {
        routes.push(failover_route(plan, backups, &names));
    }
    // A provider's API wants its own Host: one route per provider cluster.
    for p in providers {
        routes.push(json!({
            "match": { "prefix": "/", "headers": [ { "name": header, "string_match": { "exact": p.name() } } ] },
            "route": { "cluster": p.name(), "host_rewrite_literal": p.host, "timeout": "0s" }
        }));
    }
    routes.push(json!({
        "match": { "prefix": "/", "headers": [ { "name": header, "present_match": true } ] },
        "route": { "cluster_header": header, "timeout": "0s" }
    }));
    routes.push(json!({
        "match": { "prefix": "/" },
        "direct_response": { "status": 404, "body": { "inline_string": "no agent route\n" } }
    }));
    let mut virtual_host = Map::new();
    virtual_host.insert("name".into(), json!("all"));
    virtual_host.insert("domains".into(), json!(["*"]));
    if !plan.slot_headers.is_empty() {
        // Envoy numbers attempts: the failover route picks each attempt's
        // cluster by it, and the filter reads on the answer which attempt
        // gave it (retried backends are ejected and counted from that).
        virtual_host.insert("include_request_attempt_count".into(), json!(true));
        virtual_host.insert("include_attempt_count_in_response".into(), json!(true));
    }
    virtual_host.insert("routes".into(), Value::Array(routes));

    // envoy/demo.yaml: a client's copy never reaches routing; with failover
    // neither do its slot headers nor an attempt count (either would steer
    // an attempt).
    let mut removed = vec![header.to_string()];
    if !plan.slot_headers.is_empty() {
        removed.extend(plan.slot_headers.iter().cloned());
        removed.push(ATTEMPT_COUNT.to_string());
    }
    let mutations: Vec<Value> = removed.iter().map(|h| json!({ "remove": h })).collect();

    let mut http_filters = Vec::new();
    if plan.entries.iter().any(|e| e.kind.as_str() == "mcp") {
        http_filters.push(session_envelope());
    }
    http_filters.push(wasm_filter(configuration, options));
    http_filters.push(json!({
        "name": "envoy.filters.http.router",
        "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" }
    }));

    let mut hcm = Map::new();
    hcm.insert(
        "@type".into(),
        json!("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"),
    );
    hcm.insert("stat_prefix".into(), json!("gateway"));
    hcm.insert("use_remote_address".into(), json!(true));
    if plan.observe.access_log {
        hcm.insert("access_log".into(), access_log());
    }
    hcm.insert(
        "early_header_mutation_extensions".into(),
        json!([ {
            "name": "envoy.http.early_header_mutation.header_mutation",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.http.early_header_mutation.header_mutation.v3.HeaderMutation",
                "mutations": mutations
            }
        } ]),
    );
    hcm.insert(
        "upgrade_configs".into(),
        json!([ { "upgrade_type": "websocket" } ]),
    );
    hcm.insert(
        "route_config".into(),
        json!({ "name": "agents", "virtual_hosts": [ virtual_host ] }),
    );
    hcm.insert("http_filters".into(), Value::Array(http_filters));
    let hcm = json!({
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": hcm
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
    let mut clusters: Vec<Value> = clusters.iter().map(cluster).collect();
    clusters.extend(providers.iter().map(provider_cluster));
    let stats_tags: Vec<Value> = agentroute::observe::stats_tags()
        .iter()
        .map(|(name, regex)| json!({ "tag_name": name, "regex": regex }))
        .collect();
    let mut bootstrap = json!({
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": 9901 } } },
        "stats_config": { "stats_tags": stats_tags },
        "static_resources": { "listeners": listeners, "clusters": clusters }
    });
    if !providers.is_empty() {
        // SDS (the providers' keys, read from files) needs a node identity.
        if let Some(fields) = bootstrap.as_object_mut() {
            fields.insert(
                "node".into(),
                json!({ "id": "agentroute", "cluster": "agentroute" }),
            );
        }
    }
    Ok(bootstrap)
}

/// The generated backends and every other dispatch token of the
/// configuration that names a Service port.
fn clusters_of(
    plan: &Plan,
    backends: &BTreeSet<Backend>,
    providers: &BTreeSet<String>,
    warnings: &mut Vec<String>,
) -> BTreeSet<Backend> {
    let mut clusters = backends.clone();
    for entry in &plan.entries {
        let mut tokens = vec![("backend", entry.backend.as_str())];
        if let Some(canary) = &entry.canary {
            tokens.push(("canary.backend", canary.backend.as_str()));
        }
        if let Some(failover) = &entry.failover {
            tokens.extend(
                failover
                    .backends
                    .iter()
                    .map(|b| ("failover.backends", b.as_str())),
            );
        }
        for (field, token) in tokens {
            if providers.contains(token) {
                continue;
            }
            match Backend::from_token(token) {
                Some(backend) => {
                    clusters.insert(backend);
                }
                None => warnings.push(format!(
                    "generated bootstrap: {}: {field} {token:?} names no Service port \
                     (SERVICE.NAMESPACE:PORT): no cluster is generated for it, add one",
                    entry.id
                )),
            }
        }
    }
    clusters
}

/// One STRICT_DNS cluster per Service port, named by its dispatch token.
/// The token holds dots, and Envoy's own tag rules read a cluster's name
/// up to the first dot (`cluster.agent-triage.support:8000.upstream_rq`
/// would be cluster `agent-triage`, stat `support_8000_upstream_rq`): its
/// stats go under `alt_stat_name`, a name without dots. The token stays the
/// cluster's name, so the configuration's backends are unchanged.
fn cluster(b: &Backend) -> Value {
    json!({
        "name": b.token(),
        "alt_stat_name": b.stat_name(),
        "type": "STRICT_DNS",
        "connect_timeout": "5s",
        "dns_lookup_family": "V4_PREFERRED",
        "load_assignment": {
            "cluster_name": b.token(),
            "endpoints": [ { "lb_endpoints": [ { "endpoint": { "address": {
                "socket_address": { "address": b.host(), "port_value": b.port } } } } ] } ]
        }
    })
}

/// A provider's API: its host resolved by DNS, TLS with its name (unless
/// a base URL says `http://`), and the key set by Envoy's credential
/// injector from an SDS secret file, replacing whatever the request
/// carried: Anthropic's `x-api-key`, Gemini's `x-goog-api-key`, OpenAI's
/// `Authorization: Bearer`.
fn provider_cluster(p: &ProviderRoute) -> Value {
    let name = p.name();
    let (header, prefix) = match p.api {
        "anthropic" => ("x-api-key", ""),
        "gemini" => ("x-goog-api-key", ""),
        _ => ("authorization", "Bearer "),
    };
    let mut generic = Map::new();
    generic.insert(
        "@type".into(),
        json!("type.googleapis.com/envoy.extensions.http.injected_credentials.generic.v3.Generic"),
    );
    generic.insert("header".into(), json!(header));
    if !prefix.is_empty() {
        generic.insert("header_value_prefix".into(), json!(prefix));
    }
    generic.insert(
        "credential".into(),
        json!({
            "name": format!("{}-key", p.stat_name()),
            "sds_config": { "path_config_source": { "path": format!("{PROVIDER_SECRETS}/{}.yaml", p.stat_name()) } }
        }),
    );
    let mut cluster = Map::new();
    cluster.insert("name".into(), json!(name));
    cluster.insert("alt_stat_name".into(), json!(p.stat_name()));
    cluster.insert("type".into(), json!("LOGICAL_DNS"));
    cluster.insert("connect_timeout".into(), json!("5s"));
    cluster.insert("dns_lookup_family".into(), json!("V4_PREFERRED"));
    cluster.insert(
        "load_assignment".into(),
        json!({
            "cluster_name": name,
            "endpoints": [ { "lb_endpoints": [ { "endpoint": { "address": {
                "socket_address": { "address": p.host, "port_value": p.port } } } } ] } ]
        }),
    );
    if p.tls {
        cluster.insert(
            "transport_socket".into(),
            json!({
                "name": "envoy.transport_sockets.tls",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                    "sni": p.host
                }
            }),
        );
    }
    cluster.insert(
        "typed_extension_protocol_options".into(),
        json!({
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": { "http_protocol_options": {} },
                "http_filters": [ {
                    "name": "envoy.filters.http.credential_injector",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.credential_injector.v3.CredentialInjector",
                        "overwrite": true,
                        "credential": { "name": "envoy.http.injected_credentials.generic", "typed_config": generic }
                    }
                }, {
                    "name": "envoy.filters.http.upstream_codec",
                    "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec" }
                } ]
            }
        }),
    );
    Value::Object(cluster)
}

fn wasm_filter(configuration: String, options: &Options) -> Value {
    let wasm = options.wasm.as_deref().unwrap_or(DEFAULT_WASM);
    json!({
        "name": "agentroute",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            // No `name` nor `root_id` (agentroute answers to any root id):
            // Envoy prefixes the filter's log lines with name, root id and
            // VM id, and one `agentroute` says it (`wasm log agentroute: ...`).
            "config": {
                "failure_policy": "FAIL_CLOSED",
                "allow_on_headers_stop_iteration": true,
                "vm_config": {
                    "vm_id": "agentroute",
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": { "local": { "filename": wasm } }
                },
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": configuration
                }
            }
        }
    })
}

/// envoy/demo.yaml's access log: one JSON line per request on stdout,
/// Envoy's own fields, then every property the filter sets.
fn access_log() -> Value {
    let mut format = Map::new();
    for (key, command) in [
        ("start_time", "%START_TIME%"),
        ("method", "%REQ(:METHOD)%"),
        ("path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"),
        ("status", "%RESPONSE_CODE%"),
        ("duration_ms", "%DURATION%"),
        ("upstream_cluster", "%UPSTREAM_CLUSTER%"),
        ("response_flags", "%RESPONSE_FLAGS%"),
    ] {
        format.insert(key.into(), json!(command));
    }
    for field in Field::ALL {
        format.insert(field.json_key().into(), json!(field.access_log_command()));
    }
    json!([ {
        "name": "envoy.access_loggers.stdout",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
            "log_format": { "json_format": format }
        }
    } ])
}

/// MCP sessions stay on the replica that minted them: the envelope wraps
/// the server's `Mcp-Session-Id` with the replica's address and restores it
/// on the way in (envoy/demo.yaml).
fn session_envelope() -> Value {
    json!({
        "name": "envoy.filters.http.stateful_session",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.stateful_session.v3.StatefulSession",
            "session_state": {
                "name": "envoy.http.stateful_session.envelope",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.http.stateful_session.envelope.v3.EnvelopeSessionState",
                    "header": { "name": "mcp-session-id" }
                }
            }
        }
    })
}

/// A `HttpRequestHeaderMatchInput` matcher from `header`'s value to the
/// cluster of that name. The matcher names clusters statically: each slot
/// maps every cluster of the bootstrap.
fn slot_matcher(header: &str, clusters: &[String]) -> Value {
    let map: Map<String, Value> = clusters
        .iter()
        .map(|c| {
            (
                c.clone(),
                json!({ "action": { "name": c, "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.router.cluster_specifiers.matcher.v3.ClusterAction",
                    "cluster": c } } }),
            )
        })
        .collect();
    json!({ "matcher_tree": {
        "input": { "name": header, "typed_config": {
            "@type": "type.googleapis.com/envoy.type.matcher.v3.HttpRequestHeaderMatchInput",
            "header_name": header } },
        "exact_match_map": { "map": map } } })
}

/// envoy/demo.yaml's failover route for requests with `backups` backups
/// (Envoy >= 1.39): attempt 1 to the cluster in the dispatch header, attempt
/// n+1 to the one in slot n+1. A retry refreshes the cluster, and at that
/// moment the attempt count still holds the attempt that failed.
fn failover_route(plan: &Plan, backups: usize, clusters: &[String]) -> Value {
    let mut attempts = Map::new();
    for (n, slot) in plan.slot_headers.iter().take(backups).enumerate() {
        attempts.insert(
            (n + 1).to_string(),
            json!({ "matcher": slot_matcher(slot, clusters) }),
        );
    }
    let last = plan
        .slot_headers
        .get(backups - 1)
        .map_or(plan.dispatch_header.as_str(), String::as_str);
    json!({
        "match": { "prefix": "/", "headers": [ { "name": last, "present_match": true } ] },
        "route": {
            "timeout": "0s",
            "inline_cluster_specifier_plugin": { "extension": {
                "name": "envoy.router.cluster_specifier_plugin.matcher",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.router.cluster_specifiers.matcher.v3.MatcherClusterSpecifier",
                    "cluster_matcher": {
                        "matcher_tree": {
                            "input": { "name": "attempt", "typed_config": {
                                "@type": "type.googleapis.com/envoy.type.matcher.v3.HttpRequestHeaderMatchInput",
                                "header_name": ATTEMPT_COUNT } },
                            "exact_match_map": { "map": attempts } },
                        "on_no_match": { "matcher": slot_matcher(&plan.dispatch_header, clusters) } } } } },
            // Envoy never retries once the answer's headers went to the
            // client: a stream failing after its first byte stays failed.
            "retry_policy": {
                "retry_on": RETRY_ON,
                "retriable_status_codes": [429],
                "num_retries": backups,
                "refresh_cluster_on_retry": true } }
    })
}
