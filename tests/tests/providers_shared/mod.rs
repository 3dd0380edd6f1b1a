//! What tests/providers.rs and tests/claude_code.rs share: the stand-in
//! provider (tests/python/provider_server.py) as a child process, and a
//! gateway whose provider clusters get their credentials from Envoy's
//! `credential_injector` (a file-based SDS secret per provider).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;

use agentroute_tests::{json_to_metadata, send, start_python_server, Gateway, GatewayConfig};
use serde_json::{json, Value};

/// What a client sends as its own key: it must never reach a provider.
pub const CLIENT_KEY: &str = "client-own-key-never-forwarded";

/// The stand-in provider (tests/python/provider_server.py) on an
/// ephemeral port. Dropping it kills the process.
pub struct Provider {
    child: tokio::process::Child,
    log: tempfile::NamedTempFile,
    pub addr: SocketAddr,
}

impl Provider {
    pub async fn start(kind: &str, name: &str, key: &str, extra: &[&str]) -> Provider {
        let mut args = vec!["--kind", kind, "--name", name, "--key", key];
        args.extend_from_slice(extra);
        let (child, log, addr) = start_python_server(
            "provider_server.py",
            &args,
            "the provider stand-in (make setup installs anthropic, google-genai)",
        )
        .await;
        Provider { child, log, addr }
    }

    /// Every request it received, with what its SDK types found wrong.
    pub async fn requests(&self) -> Vec<Value> {
        let r = send(self.addr, "GET", "/requests", &[], "").await;
        serde_json::from_slice(&r.body).expect("requests")
    }

    /// Every request was well-formed for its API, carried the key Envoy
    /// injected and nothing of the client's credential.
    pub async fn assert_clean(&self, header: &str, key: &str) -> Vec<Value> {
        let requests = self.requests().await;
        assert!(!requests.is_empty(), "the provider got nothing");
        for r in &requests {
            assert_eq!(r["valid"], true, "{r:#}\n{}", self.log());
            let headers = r["headers"].as_object().expect("headers");
            assert_eq!(
                headers.get(header).and_then(Value::as_str),
                Some(key),
                "{r:#}"
            );
            let text = r.to_string();
            assert!(!text.contains(CLIENT_KEY), "the client's key leaked: {r:#}");
        }
        requests
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// A generic SDS secret in a file, as a Kubernetes Secret mounted in the
/// gateway's pod would be.
pub fn secret_file(dir: &Path, name: &str, value: &str) -> String {
    let path = dir.join(format!("{name}.yaml"));
    let text = format!(
        "resources:\n- \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret\n  name: {name}\n  generic_secret:\n    secret:\n      inline_string: \"{value}\"\n"
    );
    std::fs::write(&path, text).expect("secret file");
    path.display().to_string()
}

/// The provider cluster's upstream filters: Envoy's credential injector
/// puts the provider's key in `header` (replacing any copy), then the codec.
pub fn inject_credential(header: &str, prefix: &str, secret: &str, path: &str) -> Value {
    let mut generic = json!({
        "@type": "type.googleapis.com/envoy.extensions.http.injected_credentials.generic.v3.Generic",
        "header": header,
        "credential": { "name": secret, "sds_config": { "path_config_source": { "path": path } } }
    });
    if !prefix.is_empty() {
        generic["header_value_prefix"] = json!(prefix);
    }
    json!({
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "explicit_http_config": { "http_protocol_options": {} },
        "http_filters": [
            { "name": "envoy.filters.http.credential_injector",
              "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.credential_injector.v3.CredentialInjector",
                "overwrite": true,
                "credential": { "name": "envoy.http.injected_credentials.generic", "typed_config": generic } } },
            { "name": "envoy.filters.http.upstream_codec",
              "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec" } }
        ]
    })
}

/// The keys the stand-ins require, and how Envoy injects each.
pub const ANTHROPIC_KEY: &str = "sk-ant-injected";
pub const GEMINI_KEY: &str = "gemini-injected";
pub const OPENAI_KEY: &str = "sk-local-injected";

/// Which credential a cluster gets: (header, prefix, secret name, value).
pub fn credential_of(
    cluster: &str,
) -> Option<(&'static str, &'static str, &'static str, &'static str)> {
    match cluster {
        c if c.starts_with("anthropic") => Some(("x-api-key", "", "anthropic-key", ANTHROPIC_KEY)),
        c if c.starts_with("gemini") => Some(("x-goog-api-key", "", "gemini-key", GEMINI_KEY)),
        c if c.starts_with("local") => Some(("authorization", "Bearer ", "local-key", OPENAI_KEY)),
        _ => None,
    }
}

/// A gateway whose provider clusters get their credentials from Envoy.
pub async fn gateway(plugin: Value, clusters: &[(&str, SocketAddr)], metadata: bool) -> Gateway {
    gateway_with(plugin, clusters, metadata, |c| c).await
}

pub async fn gateway_with(
    plugin: Value,
    clusters: &[(&str, SocketAddr)],
    metadata: bool,
    edit: impl FnOnce(GatewayConfig) -> GatewayConfig,
) -> Gateway {
    let secrets = tempfile::tempdir().expect("secrets dir").keep();
    let mut config = GatewayConfig::new(plugin.to_string());
    for (name, addr) in clusters {
        config = config.cluster(name, *addr);
    }
    if metadata {
        config.filters_before.push(json_to_metadata("agentroute"));
    } else {
        config.allow_stop_iteration = true;
    }
    let injected: Vec<(String, Value)> = clusters
        .iter()
        .filter_map(|(name, _)| {
            let (header, prefix, secret, value) = credential_of(name)?;
            let path = secret_file(&secrets, secret, value);
            Some((
                name.to_string(),
                inject_credential(header, prefix, secret, &path),
            ))
        })
        .collect();
    let mut config = edit(config);
    let earlier = config.patch.take();
    let config = config.patch_bootstrap(move |b| {
        if let Some(earlier) = &earlier {
            earlier(b);
        }
        if b.get("node").is_none() {
            // SDS needs a node identity.
            b["node"] = json!({ "id": "agentroute-test", "cluster": "agentroute-test" });
        }
        for cluster in b["static_resources"]["clusters"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            let name = cluster["name"].as_str().unwrap_or_default().to_string();
            if let Some((_, options)) = injected.iter().find(|(n, _)| *n == name) {
                cluster["typed_extension_protocol_options"]
                    ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"] = options.clone();
            }
        }
    });
    Gateway::start(config).await
}

pub fn provider_entries() -> Value {
    json!({ "agents": [
        { "name": "claude", "namespace": "models", "kind": "modelapi", "backend": "anthropic",
          "models": ["claude-sonnet-4-5"], "provider": "anthropic",
          "provider_options": { "max_tokens": 512 } },
        { "name": "gemini", "namespace": "models", "kind": "modelapi", "backend": "gemini",
          "models": ["gemini-2.5-flash"], "provider": "gemini" },
        { "name": "local", "namespace": "models", "kind": "modelapi", "backend": "local",
          "models": ["local-llm"] }
    ] })
}
