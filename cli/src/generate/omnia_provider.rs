//! Omnia (`omnia.altairalabs.ai/v1alpha1` `Provider`): an LLM provider
//! as a `modelapi` entry whose backend is the provider's own API, the
//! request translated by the filter for the API it speaks.
//!
//! | Provider field | entry |
//! |---|---|
//! | `metadata.name`, `metadata.namespace` | `name`, `namespace` |
//! | `spec.type` `claude` / `openai` / `gemini` | `provider` `anthropic` / `openai` / `gemini` (any other type: not mapped, a warning) |
//! | `spec.model` | `models: [model]` (none: the entry routes by its path only, a warning) |
//! | `spec.defaults.maxTokens` | `provider_options.max_tokens` |
//! | `spec.baseURL` | the backend's host and port (default: the provider's public API on 443) |
//! | `spec.credential`, `spec.secretRef` | never read: the key is injected by the gateway from a Secret |
//!
//! The backend ([`ProviderRoute::backend`]) is the cluster Istio makes of a
//! ServiceEntry for the API's host (`outbound|443||api.anthropic.com`), or
//! the provider's bare name (`anthropic`) that the Envoy Gateway provider
//! routes match and the `envoy` target names its cluster.
//!
//! Not mapped, with a warning: `spec.role` other than `llm` (embeddings,
//! speech: no chat API), `spec.platform` (Bedrock, Vertex, Azure sign
//! requests their own way), a `baseURL` with a path other than the API's
//! (`/v1`), `spec.headers` (sent by the agent's own client, not the
//! gateway). `spec.defaults.temperature` and `topP` are the agent's
//! defaults, not the gateway's: not mapped.

use serde_json::Value;

use super::{
    dns_label, source, Agent, Backend, Claim, GenerateError, Kind, Mapped, ProviderRoute, Resource,
};

/// The fields of `spec` read or knowingly passed over (for misspellings).
const SPEC_READ: [&str; 6] = ["type", "role", "model", "baseURL", "platform", "defaults"];
const SPEC_KNOWN: [&str; 10] = [
    "headers",
    "auth",
    "credential",
    "secretRef",
    "pricing",
    "capabilities",
    "validateCredentials",
    "tts",
    "stt",
    "embedding",
];

/// The API an Omnia provider type speaks, and its public host.
fn api_of(kind: &str) -> Option<(&'static str, &'static str)> {
    match kind {
        "claude" => Some(("anthropic", "api.anthropic.com")),
        "openai" => Some(("openai", "api.openai.com")),
        "gemini" => Some(("gemini", "generativelanguage.googleapis.com")),
        _ => None,
    }
}

pub fn provider(r: &Resource, mapped: &mut Mapped) -> Result<Vec<Agent>, GenerateError> {
    let name = dns_label(r, "metadata.name", &r.name)?;
    let namespace = dns_label(r, "metadata.namespace", &r.namespace)?;
    let Some(spec) = r.object("spec")? else {
        return Err(r.error("spec", "required (an object)"));
    };
    r.near_misses(spec, "spec", &SPEC_READ, &SPEC_KNOWN, &mut mapped.warnings);
    let role = r.string("spec.role")?.unwrap_or("llm");
    if role != "llm" {
        mapped.notes.push(format!(
            "{}: skipped, spec.role {role} is not a chat model",
            source(r)
        ));
        return Ok(Vec::new());
    }
    let Some(kind) = r.string("spec.type")? else {
        return Err(r.error("spec.type", "required (claude, openai or gemini)"));
    };
    let Some((api, public_host)) = api_of(kind) else {
        mapped.warnings.push(format!(
            "{}: spec.type {kind:?}: agentroute translates for claude, openai and gemini Providers only: not mapped",
            source(r)
        ));
        return Ok(Vec::new());
    };
    if let Some(platform) = r.object("spec.platform")? {
        let on = platform.get("type").and_then(Value::as_str).unwrap_or("?");
        mapped.warnings.push(format!(
            "{}: spec.platform {on}: the hyperscaler's API and signing are not the provider's own, which is all agentroute routes to: not mapped",
            source(r)
        ));
        return Ok(Vec::new());
    }
    if r.get("spec.headers")?.is_some_and(|h| !h.is_null()) {
        mapped.warnings.push(format!(
            "{}: spec.headers: not sent by the gateway (add them on the provider's route if the API needs them)",
            source(r)
        ));
    }
    let (host, port, tls) = match r.string("spec.baseURL")? {
        None | Some("") => (public_host.to_string(), 443, true),
        Some(url) => match parse_base_url(url) {
            Ok(parts) => parts,
            Err(why) => {
                mapped.warnings.push(format!(
                    "{}: spec.baseURL {url:?}: {why}: not mapped",
                    source(r)
                ));
                return Ok(Vec::new());
            }
        },
    };
    let max_tokens = match r.get("spec.defaults.maxTokens")? {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|n| (1..=100_000_000).contains(n))
                .ok_or_else(|| {
                    r.error(
                        "spec.defaults.maxTokens",
                        format!("expected a number of tokens (1-100000000), found {v}"),
                    )
                })?,
        ),
    };
    let models = match r.string("spec.model")? {
        Some(model) if !model.is_empty() => vec![Claim {
            value: model.to_string(),
            field: "spec.model".to_string(),
        }],
        _ => {
            mapped.warnings.push(format!(
                "{}: no spec.model: the entry routes by its path only (/{namespace}/{name}/...)",
                source(r)
            ));
            Vec::new()
        }
    };
    Ok(vec![Agent {
        name: name.clone(),
        namespace: namespace.clone(),
        kind: Kind::ModelApi,
        // No Service port: the entry's backend is the provider's API.
        backend: Backend {
            namespace,
            service: name,
            port,
        },
        timeout: None,
        models,
        hosts: Vec::new(),
        a2a: None,
        provider: Some(ProviderRoute {
            api,
            public: host == public_host && port == 443 && tls,
            host,
            port,
            tls,
            max_tokens,
        }),
        source: source(r),
        document: r.document.clone(),
        created: r.created.clone(),
    }])
}

/// `https://host[:port][/v1]`: the host, port and whether TLS is used. A
/// path other than the API's own version prefix would have to be put in
/// front of every request: refused.
fn parse_base_url(url: &str) -> Result<(String, u16, bool), String> {
    let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err("expected an http:// or https:// URL".to_string());
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = path.trim_end_matches('/');
    if !path.is_empty() && !["/v1", "/v1beta"].contains(&path) {
        return Err(format!(
            "the path {path} would have to prefix every request, which the gateway does not do"
        ));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (
            host,
            port.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("{port:?} is not a port"))?,
        ),
        None => (authority, if tls { 443 } else { 80 }),
    };
    let host = host.to_ascii_lowercase();
    let valid = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
    if !valid {
        return Err(format!("{host:?} is not a host name"));
    }
    Ok((host, port, tls))
}

#[cfg(test)]
mod tests {
    use super::super::emit::{emit, Options, Target};
    use super::super::tests::{left_out, mapped, mapped_trusting};

    const CLAUDE: &str = "\
apiVersion: omnia.altairalabs.ai/v1alpha1
kind: Provider
metadata: {name: claude-sonnet, namespace: omnia-system}
spec:
  type: claude
  model: claude-sonnet-4-20250514
  credential: {secretRef: {name: anthropic-credentials}}
  defaults: {temperature: '0.7', topP: '1.0', maxTokens: 4096}
";

    fn config(yaml: &str, target: Target) -> serde_json::Value {
        let options = Options {
            target,
            image: Some("r.example.com/a:1".into()),
            ..Options::default()
        };
        let out = emit(&mapped(yaml).agents, &options).unwrap();
        let text = match target {
            Target::Config => out.text,
            _ => return serde_json::Value::String(out.text),
        };
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn a_claude_provider_is_an_anthropic_modelapi_entry() {
        let entry = &config(CLAUDE, Target::Config)["agents"][0];
        assert_eq!(
            entry,
            &serde_json::json!({
                "name": "claude-sonnet", "namespace": "omnia-system", "kind": "modelapi",
                "backend": "anthropic", "models": ["claude-sonnet-4-20250514"],
                "provider": "anthropic", "provider_options": { "max_tokens": 4096 }
            })
        );
        // Istio dispatches to the ServiceEntry's cluster; no HTTPRoute to a
        // Service is generated for it.
        let istio = config(CLAUDE, Target::Istio);
        let istio = istio.as_str().unwrap();
        assert!(
            istio.contains("backend: outbound|443||api.anthropic.com"),
            "{istio}"
        );
        assert!(!istio.contains("kind: HTTPRoute"), "{istio}");
        // The envoy target: a TLS cluster with the key injected from a file.
        let envoy = config(CLAUDE, Target::Envoy);
        let envoy = envoy.as_str().unwrap();
        for want in [
            "host_rewrite_literal: api.anthropic.com",
            "sni: api.anthropic.com",
            "header: x-api-key",
            "path: /etc/agentroute/providers/anthropic.yaml",
        ] {
            assert!(envoy.contains(want), "{want}:\n{envoy}");
        }
        assert!(!envoy.contains("anthropic-credentials"), "never the Secret");
    }

    #[test]
    fn types_base_urls_and_what_is_not_mapped() {
        let one = |spec: &str| {
            format!("apiVersion: omnia.altairalabs.ai/v1alpha1\nkind: Provider\nmetadata: {{name: p, namespace: n}}\nspec: {spec}\n")
        };
        let m = mapped(&one("{type: gemini, model: gemini-2.5-flash}"));
        let p = m.agents[0].provider.clone().unwrap();
        assert_eq!((p.api, p.name()), ("gemini", "gemini".to_string()));
        let m = mapped(&one(
            "{type: openai, model: gpt-4o, baseURL: 'https://llm.example.com:8443/v1/'}",
        ));
        let p = m.agents[0].provider.clone().unwrap();
        assert_eq!(
            (p.api, p.name(), p.tls),
            ("openai", "llm.example.com:8443".to_string(), true)
        );
        // No model: routed by path, said.
        let m = mapped(&one("{type: openai}"));
        assert_eq!(m.agents.len(), 1);
        assert!(m.agents[0].models.is_empty());
        assert_eq!(
            m.warnings,
            ["Omnia Provider n/p: no spec.model: the entry routes by its path only (/n/p/...)"]
        );
        for (spec, why) in [
            ("{type: auto, model: m}", "spec.type \"auto\""),
            (
                "{type: ollama, model: m, baseURL: 'http://o:11434'}",
                "spec.type \"ollama\"",
            ),
            (
                "{type: claude, model: m, platform: {type: bedrock}}",
                "spec.platform bedrock",
            ),
            (
                "{type: openai, model: m, baseURL: 'https://openrouter.ai/api/v1'}",
                "the path /api/v1",
            ),
        ] {
            let m = mapped(&one(spec));
            assert!(m.agents.is_empty(), "{spec}");
            assert!(
                m.warnings
                    .iter()
                    .any(|w| w.contains(why) && w.contains("Omnia Provider n/p")),
                "{spec}: {:?}",
                m.warnings
            );
        }
        let m = mapped(&one(
            "{type: openai, role: embedding, model: text-embedding-3-small}",
        ));
        assert!(m.agents.is_empty() && m.warnings.is_empty());
        assert_eq!(
            m.notes,
            ["Omnia Provider n/p: skipped, spec.role embedding is not a chat model"]
        );
        assert_eq!(
            left_out(&one("{type: claude, model: m, defaults: {maxTokens: many}}")),
            "t.yaml: document 1: omnia.altairalabs.ai Provider n/p: spec.defaults.maxTokens: expected a number of tokens (1-100000000), found \"many\""
        );
    }

    #[test]
    fn the_same_model_in_two_namespaces_is_a_claim_the_older_keeps() {
        let input = "\
apiVersion: omnia.altairalabs.ai/v1alpha1
kind: Provider
metadata: {name: gpt, namespace: team-b, creationTimestamp: '2025-02-01T00:00:00Z'}
spec: {type: openai, model: gpt-4o}
---
apiVersion: omnia.altairalabs.ai/v1alpha1
kind: Provider
metadata: {name: gpt, namespace: team-a, creationTimestamp: '2025-03-01T00:00:00Z'}
spec: {type: openai, model: gpt-4o}
";
        let m = mapped_trusting(input, &[], &[]);
        let models: Vec<(String, Vec<String>)> =
            m.agents.iter().map(|a| (a.id(), a.model_ids())).collect();
        assert_eq!(
            models,
            [
                ("team-a/gpt".to_string(), vec![]),
                ("team-b/gpt".to_string(), vec!["gpt-4o".to_string()])
            ]
        );
        assert_eq!(m.warnings.len(), 1, "{:?}", m.warnings);
        assert!(m.warnings[0].contains("team-a/gpt"), "{:?}", m.warnings);
    }
}
