//! `agentroute generate --target envoy` end to end: the bootstrap generated
//! from the platforms' sample resources (cli/tests/fixtures) runs in a real
//! Envoy with the built plugin, its DNS clusters pointed at local stand-ins
//! for the Services, and the paths each platform exposes reach the right
//! stand-in. Then the same over HTTPS: a certificate made by the test,
//! Envoy terminating TLS, and an agent card rewritten to `https://`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use agentroute_cli::generate::{self, Options, Target};
use agentroute_tests::serde_json::{json, Value};
use agentroute_tests::{envoy_bin, spawn_agent, wasm_path, workspace_root, Gateway, GatewayConfig};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[path = "shared/dashboard.rs"]
mod dashboard;

/// Every fixture of the three platforms, as (name, text).
fn fixtures() -> Vec<(String, String)> {
    let root = workspace_root().join("cli/tests/fixtures");
    let mut files = Vec::new();
    for platform in ["agentic-layer", "kaos", "omnia"] {
        let mut dir: Vec<PathBuf> = std::fs::read_dir(root.join(platform))
            .expect("fixtures")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        dir.sort();
        for path in dir {
            let text = std::fs::read_to_string(&path).expect("fixture");
            files.push((path.display().to_string(), text));
        }
    }
    files
}

/// The generated bootstrap, as JSON: the fixtures' host allowed, the
/// namespace of the KAOS proxy serving `*` trusted (as cli/tests' goldens).
fn generated_bootstrap(tls_secret: Option<&str>) -> Value {
    let mut options = Options {
        target: Target::Envoy,
        tls_secret: tls_secret.map(str::to_string),
        ..Options::default()
    };
    options
        .trust
        .allow_hosts
        .push("*.agents.example.com".into());
    options.trust.trusted_namespaces.insert("external".into());
    bootstrap_of(&fixtures(), &options)
}

/// The bootstrap generated from `inputs`, as JSON, loading the plugin
/// under test (`--wasm`).
fn bootstrap_of(inputs: &[(String, String)], options: &Options) -> Value {
    let mut options = options.clone();
    options.wasm = Some(wasm_path().display().to_string());
    let out = generate::generate(inputs, &options).expect("generate");
    let docs = agentroute_cli::check::documents(&out.text).expect("YAML");
    docs.into_iter().next().expect("one document")
}

/// The clusters' names (dispatch tokens), in order.
fn cluster_names(bootstrap: &Value) -> Vec<String> {
    bootstrap["static_resources"]["clusters"]
        .as_array()
        .expect("clusters")
        .iter()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect()
}

/// The bootstrap on loopback: admin and listeners on ephemeral ports, each
/// DNS cluster a static one at its stand-in, and the certificate files
/// given. Nothing else changes: the plugin's path is generated (`--wasm`).
fn localize(
    bootstrap: &mut Value,
    upstreams: &BTreeMap<String, SocketAddr>,
    cert: Option<(&Path, &Path)>,
) {
    bootstrap["admin"]["address"]["socket_address"] =
        json!({ "address": "127.0.0.1", "port_value": 0 });
    let resources = &mut bootstrap["static_resources"];
    for listener in resources["listeners"].as_array_mut().expect("listeners") {
        listener["address"]["socket_address"] = json!({ "address": "127.0.0.1", "port_value": 0 });
        for chain in listener["filter_chains"].as_array_mut().expect("chains") {
            let certs = chain.pointer_mut(
                "/transport_socket/typed_config/common_tls_context/tls_certificates/0",
            );
            if let (Some((crt, key)), Some(certs)) = (cert, certs) {
                certs["certificate_chain"]["filename"] = json!(crt.display().to_string());
                certs["private_key"]["filename"] = json!(key.display().to_string());
            }
        }
    }
    for cluster in resources["clusters"].as_array_mut().expect("clusters") {
        let name = cluster["name"].as_str().expect("name").to_string();
        let addr = upstreams[&name];
        cluster["type"] = json!("STATIC");
        cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
            ["socket_address"] = json!({ "address": "127.0.0.1", "port_value": addr.port() });
    }
}

/// A stand-in that answers every request with `card` (an A2A card whose URLs
/// point inside the cluster, as an Omnia A2A facade's does).
async fn card_server(card: Value) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let body = card.to_string();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-served-by: card\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    addr
}

/// The Omnia research-agent's A2A facade (fixtures/omnia/facades.yaml).
const A2A_TOKEN: &str = "research-agent.agents:9999";

/// A demo agent per cluster, named by its token, and the card stand-in for
/// the Omnia A2A facade.
async fn stand_ins(bootstrap: &Value) -> BTreeMap<String, SocketAddr> {
    let mut upstreams = BTreeMap::new();
    for name in cluster_names(bootstrap) {
        let addr = if name == A2A_TOKEN {
            card_server(json!({
                "name": "research-agent",
                "description": "an Omnia A2A facade",
                "version": "1.0.0",
                "protocolVersion": "0.3.0",
                "url": "http://research-agent.agents.svc.cluster.local:9999/a2a",
                "preferredTransport": "JSONRPC",
                "additionalInterfaces": [
                    { "url": "http://research-agent.agents.svc.cluster.local:9999/a2a", "transport": "JSONRPC" }
                ],
                "capabilities": {}, "defaultInputModes": ["text"], "defaultOutputModes": ["text"], "skills": []
            }))
            .await
        } else {
            spawn_agent(&name).await
        };
        upstreams.insert(name, addr);
    }
    upstreams
}

/// Starts Envoy on the generated bootstrap (the harness's own bootstrap is
/// replaced whole).
async fn start(bootstrap: Value) -> Gateway {
    let cfg = GatewayConfig::new("").patch_bootstrap(move |b| *b = bootstrap.clone());
    Gateway::start(cfg).await
}

#[tokio::test]
async fn generated_bootstrap_routes_the_platforms_paths_to_their_services() {
    let mut bootstrap = generated_bootstrap(None);
    let upstreams = stand_ins(&bootstrap).await;
    localize(&mut bootstrap, &upstreams, None);
    let gw = start(bootstrap).await;
    gw.assert_routes(
        "generated",
        &[
            // KAOS: /{ns}/{kind}/{name} (its own HTTPRoute path), /{ns}/{name},
            // /{name} when unique.
            (
                "gw",
                "/agentic-multi/agent/coordinator/health",
                "agent-coordinator.agentic-multi:8000",
                "/health",
            ),
            (
                "gw",
                "/agentic-multi/mcp/multi-echo-mcp/mcp",
                "mcpserver-multi-echo-mcp.agentic-multi:8000",
                "/mcp",
            ),
            (
                "gw",
                "/my-namespace/modelapi/my-model/v1/models",
                "modelapi-my-model.my-namespace:8000",
                "/v1/models",
            ),
            (
                "gw",
                "/agentic-multi/worker-1/x?y=1",
                "agent-worker-1.agentic-multi:8000",
                "/x?y=1",
            ),
            (
                "gw",
                "/long-running-agent/tasks",
                "agent-long-running-agent.my-namespace:8000",
                "/tasks",
            ),
            // agentic-layer: /{ns}/{name} and the unique shorthand, the A2A
            // port and path of the protocol.
            (
                "gw",
                "/agents/travel-agent/a2a",
                "travel-agent.agents:9000",
                "/a2a",
            ),
            (
                "gw",
                "/insurance-agent/",
                "insurance-agent.claims:8000",
                "/",
            ),
            (
                "gw",
                "/staging/weather-agent/tasks",
                "weather-agent.staging:8000",
                "/tasks",
            ),
            // Omnia: the primary facade, its host, the MCP port.
            (
                "gw",
                "/support/customer-support-agent/ws",
                "customer-support-agent.support:8080",
                "/ws",
            ),
            (
                "research.agents.example.com",
                "/ws",
                "research-agent.agents:8080",
                "/ws",
            ),
            (
                "gw",
                "/agents/research-agent-mcp/",
                "research-agent.agents:9998",
                "/",
            ),
        ],
    )
    .await;
    // Two exposed `weather-agent`s: no shorthand, as on the KrakenD gateway.
    let r = gw.get("/weather-agent/x").await;
    assert_eq!((r.status, r.text().as_str()), (404, "no agent route\n"));
    // KAOS model dispatch: the body's model picks the ModelAPI.
    let r = gw
        .post_json(
            "/v1/chat/completions",
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#,
        )
        .await;
    assert_eq!(
        (r.status, r.header("x-served-by")),
        (200, Some("modelapi-my-model.my-namespace:8000")),
        "{}",
        r.text()
    );
    let r = gw.get("/v1/models").await;
    let ids: Vec<String> = r.json()["data"]
        .as_array()
        .expect("models")
        .iter()
        .filter_map(|m| m["id"].as_str().map(str::to_string))
        .collect();
    assert!(ids.contains(&"smollm2:135m".to_string()), "{ids:?}");
    assert!(
        ids.contains(&"agentic-multi/coordinator".to_string()),
        "{ids:?}"
    );
    // An A2A card through the Omnia-shaped agent, rewritten to the gateway.
    let r = gw
        .request(
            "GET",
            "/agents/research-agent-a2a/.well-known/agent.json",
            &[("host", "gw.example.com")],
            "",
        )
        .await;
    assert_eq!(
        (r.status, r.header("x-served-by")),
        (200, Some("card")),
        "{}",
        r.text()
    );
    let card = r.json();
    assert_eq!(
        card["url"], "http://gw.example.com/agents/research-agent-a2a/a2a",
        "{card}"
    );
    assert_eq!(card["additionalInterfaces"][0]["url"], card["url"]);
}

/// Tenants on one shared host (`agents.example.com`), one of them hostile:
/// its claims of every host below `example.com`, of the gateway's own host,
/// of the catch-all model and of the platform's model id are not granted,
/// so no tenant's path and no OpenAI request reaches it.
#[tokio::test]
async fn hostile_tenant_claims_are_not_granted_on_the_shared_host() {
    let runtime = |ns: &str, name: &str, created: &str, host: &str| {
        format!(
            "apiVersion: omnia.altairalabs.ai/v1alpha1\nkind: AgentRuntime\n\
             metadata: {{name: {name}, namespace: {ns}, creationTimestamp: '{created}'}}\n\
             spec: {{facades: [{{type: rest, expose: {{enabled: true, host: '{host}'}}}}]}}\n---\n"
        )
    };
    let model_api = |ns: &str, name: &str, created: &str, models: &str| {
        format!(
            "apiVersion: kaos.tools/v1alpha1\nkind: ModelAPI\n\
             metadata: {{name: {name}, namespace: {ns}, creationTimestamp: '{created}'}}\n\
             spec: {{mode: Proxy, proxyConfig: {{models: {models}}}}}\n---\n"
        )
    };
    let input = [
        runtime("team-evil", "grab", "2020-01-01T00:00:00Z", "*.example.com"),
        runtime(
            "team-evil",
            "gw",
            "2020-01-01T00:00:00Z",
            "agents.example.com",
        ),
        model_api(
            "team-evil",
            "catch",
            "2020-01-01T00:00:00Z",
            "['*', gpt-4o]",
        ),
        runtime(
            "team-a",
            "support",
            "2024-01-01T00:00:00Z",
            "support.agents.example.com",
        ),
        runtime(
            "team-b",
            "billing",
            "2024-01-01T00:00:00Z",
            "billing.agents.example.com",
        ),
        model_api("platform", "llm", "2025-01-01T00:00:00Z", "[gpt-4o]"),
    ]
    .concat();
    let mut options = Options {
        target: Target::Envoy,
        ..Options::default()
    };
    options
        .trust
        .allow_hosts
        .push("*.agents.example.com".into());
    options.trust.trusted_namespaces.insert("platform".into());
    let mut bootstrap = bootstrap_of(&[("tenants.yaml".into(), input)], &options);
    let upstreams = stand_ins(&bootstrap).await;
    localize(&mut bootstrap, &upstreams, None);
    let gw = start(bootstrap).await;
    let shared = [("host", "agents.example.com")];
    for (path, want) in [
        ("/team-a/support/x", "support.team-a:8080"),
        ("/team-b/billing/x", "billing.team-b:8080"),
        ("/support/x", "support.team-a:8080"),
    ] {
        let r = gw.request("GET", path, &shared, "").await;
        assert_eq!(
            (r.status, r.header("x-served-by")),
            (200, Some(want)),
            "{path}: {}",
            r.text()
        );
    }
    // The granted hosts route; the evil tenant's own paths still do.
    let r = gw
        .request("GET", "/x", &[("host", "billing.agents.example.com")], "")
        .await;
    assert_eq!(r.header("x-served-by"), Some("billing.team-b:8080"));
    let r = gw.request("GET", "/team-evil/grab/x", &shared, "").await;
    assert_eq!(r.header("x-served-by"), Some("grab.team-evil:8080"));
    // The OpenAI surface on the shared host: the platform's gpt-4o (its
    // namespace is trusted, the evil claim older), no catch-all.
    for (model, status, served_by) in [
        ("gpt-4o", 200, Some("modelapi-llm.platform:8000")),
        ("anything-else", 404, None),
    ] {
        let body =
            format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#);
        let r = gw
            .request(
                "POST",
                "/v1/chat/completions",
                &[
                    ("host", "agents.example.com"),
                    ("content-type", "application/json"),
                    ("authorization", "Bearer caller-secret"),
                ],
                body,
            )
            .await;
        assert_eq!(
            (r.status, r.header("x-served-by")),
            (status, served_by),
            "{model}: {}",
            r.text()
        );
    }
}

/// A self-signed certificate for `localhost`, written to `dir`.
fn certificate(dir: &Path) -> (PathBuf, PathBuf, Vec<u8>) {
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
    let (crt, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&crt, made.cert.pem()).expect("write cert");
    std::fs::write(&key, made.signing_key.serialize_pem()).expect("write key");
    (crt, key, made.cert.der().to_vec())
}

/// The address of the listener named `name`.
async fn listener_named(gw: &Gateway, name: &str) -> SocketAddr {
    let r = agentroute_tests::send(gw.admin, "GET", "/listeners?format=json", &[], "").await;
    let v = r.json();
    let status = v["listener_statuses"]
        .as_array()
        .expect("listeners")
        .iter()
        .find(|l| l["name"] == name)
        .unwrap_or_else(|| panic!("no listener {name}: {v}"))
        .clone();
    let sa = &status["local_address"]["socket_address"];
    format!(
        "{}:{}",
        sa["address"].as_str().expect("address"),
        sa["port_value"]
    )
    .parse()
    .expect("socket address")
}

/// One GET over TLS (SNI and Host `localhost`), trusting only `ca_der`.
async fn https_get(addr: SocketAddr, ca_der: &[u8], path: &str) -> (u16, Option<String>, Value) {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(ca_der.to_vec()))
        .expect("root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let server = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let tls = connector.connect(server, tcp).await.expect("TLS handshake");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("HTTP/1.1");
    tokio::spawn(conn);
    let request = hyper::Request::get(path)
        .header("host", format!("localhost:{}", addr.port()))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    let status = response.status().as_u16();
    let served_by = response
        .headers()
        .get("x-served-by")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let json = agentroute_tests::serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, served_by, json)
}

#[tokio::test]
async fn generated_tls_bootstrap_terminates_https_and_rewrites_cards_to_https() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (crt, key, ca) = certificate(dir.path());
    let mut bootstrap = generated_bootstrap(Some("agents-tls"));
    let upstreams = stand_ins(&bootstrap).await;
    localize(&mut bootstrap, &upstreams, Some((&crt, &key)));
    // The generated TLS bootstrap passes Envoy's own validation.
    let file = dir.path().join("tls.json");
    std::fs::write(&file, bootstrap.to_string()).expect("write bootstrap");
    let validate = std::process::Command::new(envoy_bin())
        .args(["--mode", "validate", "-l", "error", "-c"])
        .arg(&file)
        .output()
        .expect("run envoy --mode validate");
    assert!(
        validate.status.success(),
        "{}",
        String::from_utf8_lossy(&validate.stderr)
    );

    let gw = start(bootstrap).await;
    let tls = listener_named(&gw, "gateway-tls").await;
    let (status, served_by, body) =
        https_get(tls, &ca, "/agentic-multi/agent/coordinator/health").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        served_by.as_deref(),
        Some("agent-coordinator.agentic-multi:8000")
    );
    assert_eq!(body["path"], "/health");
    // Over HTTPS the card's URLs say https, with the port the client used.
    let (status, served_by, card) = https_get(
        tls,
        &ca,
        "/agents/research-agent-a2a/.well-known/agent.json",
    )
    .await;
    assert_eq!(
        (status, served_by.as_deref()),
        (200, Some("card")),
        "{card}"
    );
    let want = format!(
        "https://localhost:{}/agents/research-agent-a2a/a2a",
        tls.port()
    );
    assert_eq!(card["url"], want.as_str(), "{card}");
    assert_eq!(
        card["additionalInterfaces"][0]["url"],
        want.as_str(),
        "{card}"
    );
    // The plain listener still says http.
    let r = gw
        .request(
            "GET",
            "/agents/research-agent-a2a/.well-known/agent.json",
            &[("host", "localhost")],
            "",
        )
        .await;
    assert_eq!(
        r.json()["url"],
        "http://localhost/agents/research-agent-a2a/a2a"
    );
}

#[test]
fn the_shipped_tls_bootstrap_validates_with_a_test_certificate() {
    // envoy/tls.yaml reads target/tls/ relative to the repository (make
    // tls-cert writes it); here the same file with a certificate of the test.
    let dir = tempfile::tempdir().expect("temp dir");
    let (crt, key, _) = certificate(dir.path());
    let shipped =
        std::fs::read_to_string(workspace_root().join("envoy/tls.yaml")).expect("envoy/tls.yaml");
    let text = shipped
        .replace("target/tls/tls.crt", &crt.display().to_string())
        .replace("target/tls/tls.key", &key.display().to_string())
        .replace("dist/agentroute.wasm", &wasm_path().display().to_string());
    let file = dir.path().join("tls.yaml");
    std::fs::write(&file, text).expect("write");
    let out = std::process::Command::new(envoy_bin())
        .args(["--mode", "validate", "-l", "error", "-c"])
        .arg(&file)
        .output()
        .expect("run envoy --mode validate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What the configuration uses beyond routing, on top of the fixtures
/// (`--base`): an access log, upstream stats, and failover for the
/// generated KAOS coordinator, layered onto its entry (no backend: the
/// generated one is kept, with its cluster).
const BASE: &str = r#"{
  "observability": { "access_log": true, "upstream_stats": true },
  "agents": [
    { "name": "coordinator", "namespace": "agentic-multi",
      "failover": { "backends": ["agent-worker-2.agentic-multi:8000"] } }
  ]
}"#;

/// The generated coordinator's backend, and its failover backend (a Service
/// port no resource exposes: its cluster comes from the base's token).
const PRIMARY: &str = "agent-coordinator.agentic-multi:8000";
const BACKUP: &str = "agent-worker-2.agentic-multi:8000";

/// The generated bootstrap of the fixtures with [`BASE`].
fn generated_with_base() -> Value {
    let base: Value = agentroute_tests::serde_json::from_str(BASE).expect("base");
    let mut options = Options {
        target: Target::Envoy,
        base: base.as_object().cloned(),
        ..Options::default()
    };
    options
        .trust
        .allow_hosts
        .push("*.agents.example.com".into());
    options.trust.trusted_namespaces.insert("external".into());
    bootstrap_of(&fixtures(), &options)
}

/// Cluster `name` on `replicas` (the addresses of a Service's endpoints).
fn endpoints(bootstrap: &mut Value, name: &str, replicas: &[SocketAddr]) {
    let endpoints: Vec<Value> = replicas
        .iter()
        .map(|a| {
            json!({ "endpoint": { "address": { "socket_address": {
                "address": a.ip().to_string(), "port_value": a.port() } } } })
        })
        .collect();
    for cluster in bootstrap["static_resources"]["clusters"]
        .as_array_mut()
        .expect("clusters")
    {
        if cluster["name"] == name {
            cluster["load_assignment"]["endpoints"][0]["lb_endpoints"] = json!(endpoints);
        }
    }
}

/// The JSON access-log lines Envoy printed on stdout for entry `entry`,
/// once `want` of them are there (Envoy flushes logs every few seconds).
async fn access_log(gw: &Gateway, entry: &str, want: usize) -> Vec<Value> {
    let mut lines = Vec::new();
    for _ in 0..150 {
        lines = gw
            .log()
            .lines()
            .filter_map(|l| agentroute_tests::serde_json::from_str::<Value>(l).ok())
            .filter(|l| l["entry"] == entry)
            .collect();
        if lines.len() >= want {
            return lines;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{} access-log lines for {entry}: {lines:?}", lines.len());
}

/// Which MCP replica answered a `whoami` call (tests/python/mcp_server.py).
fn replica_of(result: &Value) -> String {
    let text = result["text"].as_str().unwrap_or("{}");
    let v: Value = agentroute_tests::serde_json::from_str(text).unwrap_or_default();
    v["replica"].as_str().unwrap_or("?").to_string()
}

/// The KAOS MCPServer of the fixtures (fixtures/kaos).
const MCP_TOKEN: &str = "mcpserver-multi-echo-mcp.agentic-multi:8000";

/// The generated bootstrap as is (addresses and `--wasm` aside) does what
/// envoy/demo.yaml does for the failover, access-log and MCP-session tests
/// (tests/failover.rs, observe.rs, mcp.rs): the failed request is retried
/// on the backup, the access log names the backends tried, and an MCP
/// session stays on the replica that minted it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_bootstrap_fails_over_logs_and_keeps_mcp_sessions() {
    let mut bootstrap = generated_with_base();
    let upstreams = stand_ins(&bootstrap).await;
    localize(&mut bootstrap, &upstreams, None);
    let a = agentroute_tests::McpServer::start(&["--replica", "a"]).await;
    let b = agentroute_tests::McpServer::start(&["--replica", "b"]).await;
    endpoints(&mut bootstrap, MCP_TOKEN, &[a.addr, b.addr]);
    let gw = start(bootstrap).await;

    // Failover: the request that failed on the coordinator is answered by
    // the backup.
    let r = gw.get("/agentic-multi/coordinator/ok").await;
    assert_eq!(r.header("x-served-by"), Some(PRIMARY));
    let r = gw
        .get(&format!("/agentic-multi/coordinator/failed?fail={PRIMARY}"))
        .await;
    assert_eq!(
        (r.status, r.header("x-served-by")),
        (200, Some(BACKUP)),
        "{}",
        r.text()
    );
    // The access log: the filter's fields, the failover's among them.
    let lines = access_log(&gw, "agentic-multi/coordinator", 2).await;
    let failed = lines
        .iter()
        .find(|l| l["path"].as_str().is_some_and(|p| p.contains("failed")))
        .unwrap_or_else(|| panic!("{lines:?}"));
    assert_eq!(
        (
            &failed["kind"],
            &failed["failover_retries"],
            &failed["backends_tried"]
        ),
        (
            &json!("agent"),
            &json!("1"),
            &json!(format!("{PRIMARY},{BACKUP}"))
        ),
        "{failed}"
    );

    // MCP: 20 calls of one session, round robin over two replicas, all on
    // the replica that minted the session.
    let url = format!("http://{}/agentic-multi/mcp/multi-echo-mcp/mcp", gw.addr);
    let out = agentroute_tests::mcp_client(&url, "legacy", &["repeat:20:whoami"]).await;
    assert_eq!(out.get("error"), None, "{out}");
    let results = out["results"].as_array().cloned().unwrap_or_default();
    assert_eq!(results.len(), 20, "{out}");
    let first = replica_of(&results[0]);
    assert!(
        results
            .iter()
            .all(|r| r["ok"] == json!(true) && replica_of(r) == first),
        "{out}"
    );
}

/// The dashboard's Envoy queries (upstream latency, codes and errors per
/// agent) return series on a generated bootstrap, whose cluster names hold
/// dots and colons (`agent-coordinator.agentic-multi:8000`).
#[tokio::test]
async fn the_dashboards_upstream_queries_return_series_on_a_generated_bootstrap() {
    let mut bootstrap = generated_with_base();
    let upstreams = stand_ins(&bootstrap).await;
    localize(&mut bootstrap, &upstreams, None);
    let gw = start(bootstrap).await;
    let path = "/agentic-multi/agent/worker-1/x";
    for _ in 0..3 {
        assert_eq!(gw.get(path).await.status, 200);
    }
    let failed = gw
        .get(&format!("{path}?fail=agent-worker-1.agentic-multi:8000"))
        .await;
    assert_eq!(failed.status, 503, "{}", failed.text());
    gw.wait_metric(
        r#"agentroute_requests_total{namespace="agentic-multi",agent="worker-1",kind="agent"}"#,
        4.0,
    )
    .await;
    let prometheus = gw.prometheus().await;
    let queries = dashboard::queries(&dashboard::dashboard());
    let upstream: Vec<&String> = queries.iter().filter(|q| q.contains("envoy_")).collect();
    assert!(upstream.len() >= 4, "{upstream:?}");
    for query in upstream {
        assert!(
            dashboard::returns_series(query, &prometheus),
            "{query}: no series in\n{}",
            prometheus
                .lines()
                .filter(|l| l.contains("upstream_rq"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}
