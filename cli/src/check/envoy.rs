//! Envoy's Wasm HTTP filter wherever it is: a bootstrap, an ECDS resource,
//! an EnvoyFilter or EnvoyPatchPolicy patch.

use serde_json::{Map, Value};

use super::{join, Found, Origin, Scan, Surroundings};

const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const STRING_VALUE_TYPE: &str = "type.googleapis.com/google.protobuf.StringValue";
const TYPED_EXTENSION_CONFIG: &str =
    "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";

/// Top-level keys of an Envoy bootstrap or xDS resource file, which no
/// plugin configuration has: such a document without the filter is not
/// mistaken for a bare configuration full of unknown fields.
pub(super) fn looks_like_envoy(doc: &Value) -> bool {
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

/// Names met on the way down, for locations people recognise.
#[derive(Default, Clone)]
pub(super) struct Context {
    listener: Option<String>,
    /// The `name` of the object holding the current one (an HTTP filter, a
    /// TypedExtensionConfig).
    holder: Option<String>,
    /// The holder is an ECDS resource (TypedExtensionConfig).
    holder_is_resource: bool,
    /// The bootstrap's clusters and the connection manager's access log and
    /// routes, once met.
    around: Surroundings,
}

/// Looks for Envoy's Wasm HTTP filter anywhere below `v`.
pub(super) fn walk(v: &Value, path: &mut String, ctx: &Context, prefix: String, scan: &mut Scan) {
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
                    origin: Origin::EnvoyFilter {
                        stop_iteration,
                        around: ctx.around.clone(),
                    },
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
            surroundings(obj, &mut inner.around);
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

/// What `obj` says of the filter's surroundings: a bootstrap its static
/// clusters, an HTTP connection manager its access log and failover routes.
fn surroundings(obj: &Map<String, Value>, around: &mut Surroundings) {
    if let Some(resources) = obj.get("static_resources") {
        let cds = obj
            .get("dynamic_resources")
            .and_then(|d| d.get("cds_config"))
            .is_some();
        around.clusters = (!cds).then(|| {
            resources
                .get("clusters")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| c.get("name").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        });
    }
    if obj.contains_key("http_filters") {
        around.access_log = Some(
            obj.get("access_log")
                .and_then(Value::as_array)
                .is_some_and(|logs| !logs.is_empty()),
        );
        around.failover_backups = obj.get("route_config").map(failover_backups);
    }
}

/// The most backups a failover route of `route_config` retries (0: none).
fn failover_backups(route_config: &Value) -> usize {
    let hosts = route_config.get("virtual_hosts").and_then(Value::as_array);
    hosts
        .into_iter()
        .flatten()
        .filter(|host| {
            host.get("include_request_attempt_count")
                .and_then(Value::as_bool)
                == Some(true)
        })
        .flat_map(|host| {
            host.get("routes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .filter_map(|route| {
            let route = route.get("route")?;
            let specifier = route.get("inline_cluster_specifier_plugin")?;
            let retry = route.get("retry_policy")?;
            let keyed_on_attempts = specifier.to_string().contains("\"x-envoy-attempt-count\"");
            let refreshes = retry
                .get("refresh_cluster_on_retry")
                .and_then(Value::as_bool);
            let retries = retry.get("num_retries").and_then(Value::as_u64)?;
            (keyed_on_attempts && refreshes == Some(true)).then_some(retries as usize)
        })
        .max()
        .unwrap_or(0)
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
