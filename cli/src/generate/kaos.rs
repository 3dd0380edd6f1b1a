//! KAOS (`kaos.tools/v1alpha1`; older samples say `ethical.institute`): its
//! HTTPRoutes, `/{ns}/{agent|modelapi|mcp}/{name}`, as agentroute entries
//! (the `kind` layout is the same path).
//!
//! | KAOS kind | entry kind | Service and port | models |
//! |---|---|---|---|
//! | `Agent` (not `agentNetwork.expose: false`) | `agent` | `agent-{name}`:8000 | `namespace/name` (every agent entry) |
//! | `ModelAPI` `mode: Proxy` | `modelapi` | `modelapi-{name}`:8000 | `spec.proxyConfig.models` (`*` and `prefix/*` kept as patterns) |
//! | `ModelAPI` `mode: Hosted` | `modelapi` | `modelapi-{name}`:11434 | `spec.hostedConfig.model` (older: `serverConfig.model`) |
//! | `MCPServer` | `mcp` | `mcpserver-{name}`:8000 | — |
//!
//! `spec.gatewayRoute.timeout` becomes the entry's timeout; without one the
//! filter's per-kind defaults are KAOS's own (120s, 120s, 30s).
//!
//! Every field read is read strictly (a wrong type leaves the resource out);
//! a key next to them that looks like a misspelling of one is a warning.

use serde_json::Value;

use super::{dns_label, source, Agent, Backend, Claim, GenerateError, Kind, Mapped, Resource};

/// `spec.gatewayRoute`, read by every kind.
fn gateway_route(r: &Resource, mapped: &mut Mapped) -> Result<Option<String>, GenerateError> {
    if let Some(route) = r.object("spec.gatewayRoute")? {
        r.near_misses(
            route,
            "spec.gatewayRoute",
            &["timeout"],
            &[],
            &mut mapped.warnings,
        );
    }
    r.duration("spec.gatewayRoute.timeout")
}

fn entry(
    r: &Resource,
    kind: Kind,
    service_prefix: &str,
    port: u16,
    models: Vec<Claim>,
    mapped: &mut Mapped,
) -> Result<Agent, GenerateError> {
    let name = dns_label(r, "metadata.name", &r.name)?;
    let namespace = dns_label(r, "metadata.namespace", &r.namespace)?;
    let timeout = gateway_route(r, mapped)?;
    Ok(Agent {
        backend: Backend {
            namespace: namespace.clone(),
            service: format!("{service_prefix}-{name}"),
            port,
        },
        name,
        namespace,
        kind,
        timeout,
        models,
        hosts: Vec::new(),
        a2a: None,
        provider: None,
        source: source(r),
        document: r.document.clone(),
        created: r.created.clone(),
    })
}

/// The spec, and its keys that look like a misspelling of one read.
fn spec<'r>(
    r: &'r Resource,
    read: &[&str],
    mapped: &mut Mapped,
) -> Result<Option<&'r Value>, GenerateError> {
    let spec = r.object("spec")?;
    if let Some(spec) = spec {
        r.near_misses(spec, "spec", read, &[], &mut mapped.warnings);
    }
    Ok(spec)
}

pub fn agent(r: &Resource, mapped: &mut Mapped) -> Result<Vec<Agent>, GenerateError> {
    spec(r, &["agentNetwork", "gatewayRoute"], mapped)?;
    if let Some(network) = r.object("spec.agentNetwork")? {
        r.near_misses(
            network,
            "spec.agentNetwork",
            &["expose"],
            &["access"],
            &mut mapped.warnings,
        );
    }
    if r.boolean("spec.agentNetwork.expose")? == Some(false) {
        mapped.notes.push(format!(
            "{}: skipped, agentNetwork.expose is false (no Service, no route)",
            source(r)
        ));
        return Ok(Vec::new());
    }
    Ok(vec![entry(
        r,
        Kind::Agent,
        "agent",
        8000,
        Vec::new(),
        mapped,
    )?])
}

pub fn model_api(r: &Resource, mapped: &mut Mapped) -> Result<Vec<Agent>, GenerateError> {
    spec(
        r,
        &[
            "mode",
            "proxyConfig",
            "hostedConfig",
            "serverConfig",
            "gatewayRoute",
        ],
        mapped,
    )?;
    // Both shapes are read strictly whatever the mode: `hostedConfig: 7` is
    // a broken resource, not a Proxy without models.
    for config in ["spec.proxyConfig", "spec.hostedConfig", "spec.serverConfig"] {
        r.object(config)?;
    }
    let mode = r.string("spec.mode")?.unwrap_or("Proxy");
    let (port, models) = match mode {
        "Proxy" => {
            if let Some(proxy) = r.object("spec.proxyConfig")? {
                r.near_misses(
                    proxy,
                    "spec.proxyConfig",
                    &["models"],
                    &["provider", "apiKey", "apiBase", "env", "configYaml"],
                    &mut mapped.warnings,
                );
            }
            let mut models = Vec::new();
            for (i, m) in r.array("spec.proxyConfig.models")?.iter().enumerate() {
                let field = format!("spec.proxyConfig.models[{i}]");
                match m {
                    Value::String(s) if !s.is_empty() => models.push(Claim {
                        value: s.clone(),
                        field,
                    }),
                    other => {
                        return Err(r.error(&field, format!("expected a model id, found {other}")))
                    }
                }
            }
            (8000, models)
        }
        "Hosted" => {
            for config in ["spec.hostedConfig", "spec.serverConfig"] {
                if let Some(hosted) = r.object(config)? {
                    r.near_misses(hosted, config, &["model"], &["env"], &mut mapped.warnings);
                }
            }
            let model = match r.string("spec.hostedConfig.model")? {
                Some(m) => Some(("spec.hostedConfig.model", m)),
                None => r
                    .string("spec.serverConfig.model")?
                    .map(|m| ("spec.serverConfig.model", m)),
            };
            let claims = model
                .filter(|(_, m)| !m.is_empty())
                .map(|(field, m)| Claim {
                    value: m.to_string(),
                    field: field.to_string(),
                });
            (11434, claims.into_iter().collect())
        }
        other => {
            return Err(r.error(
                "spec.mode",
                format!("expected Proxy or Hosted, found {other:?}"),
            ))
        }
    };
    Ok(vec![entry(
        r,
        Kind::ModelApi,
        "modelapi",
        port,
        models,
        mapped,
    )?])
}

pub fn mcp_server(r: &Resource, mapped: &mut Mapped) -> Result<Vec<Agent>, GenerateError> {
    spec(r, &["gatewayRoute"], mapped)?;
    Ok(vec![entry(
        r,
        Kind::Mcp,
        "mcpserver",
        8000,
        Vec::new(),
        mapped,
    )?])
}

#[cfg(test)]
mod tests {
    use super::super::tests::{left_out, mapped_trusting};

    /// name, kind, token, models, timeout of an entry.
    type Row = (String, &'static str, String, Vec<String>, Option<String>);

    #[test]
    fn kinds_services_ports_models_and_timeouts() {
        let input = "\
apiVersion: kaos.tools/v1alpha1
kind: ModelAPI
metadata: {name: proxy, namespace: m}
spec: {mode: Proxy, proxyConfig: {models: [gpt-4o, openai/*]}}
---
apiVersion: ethical.institute/v1alpha1
kind: ModelAPI
metadata: {name: hosted, namespace: m}
spec: {mode: Hosted, serverConfig: {model: 'smollm2:135m'}}
---
apiVersion: kaos.tools/v1alpha1
kind: Agent
metadata: {name: coordinator, namespace: a}
spec: {modelAPI: proxy, gatewayRoute: {timeout: 300s}}
---
apiVersion: kaos.tools/v1alpha1
kind: Agent
metadata: {name: private, namespace: a}
spec: {agentNetwork: {expose: false}}
---
apiVersion: kaos.tools/v1alpha1
kind: MCPServer
metadata: {name: echo, namespace: a}
spec: {}
";
        // `openai/*` is a pattern: granted to a trusted namespace only.
        let mapped = mapped_trusting(input, &[], &["m"]);
        let got: Vec<Row> = mapped
            .agents
            .iter()
            .map(|a| {
                (
                    a.name.clone(),
                    a.kind.as_str(),
                    a.backend.token(),
                    a.model_ids(),
                    a.timeout.clone(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "coordinator".into(),
                    "agent",
                    "agent-coordinator.a:8000".into(),
                    vec![],
                    Some("300s".into())
                ),
                (
                    "echo".into(),
                    "mcp",
                    "mcpserver-echo.a:8000".into(),
                    vec![],
                    None
                ),
                (
                    "hosted".into(),
                    "modelapi",
                    "modelapi-hosted.m:11434".into(),
                    vec!["smollm2:135m".into()],
                    None
                ),
                (
                    "proxy".into(),
                    "modelapi",
                    "modelapi-proxy.m:8000".into(),
                    vec!["gpt-4o".into(), "openai/*".into()],
                    None
                ),
            ]
        );
        assert_eq!(
            mapped.notes,
            ["KAOS Agent a/private: skipped, agentNetwork.expose is false (no Service, no route)"]
        );
    }

    #[test]
    fn bad_fields_name_the_path() {
        let input = "apiVersion: kaos.tools/v1alpha1\nkind: ModelAPI\nmetadata: {name: p, namespace: m}\nspec: {mode: Remote}\n";
        assert_eq!(
            left_out(input),
            "t.yaml: document 1: kaos.tools ModelAPI m/p: spec.mode: expected Proxy or Hosted, found \"Remote\""
        );
        let input = "apiVersion: kaos.tools/v1alpha1\nkind: Agent\nmetadata: {name: a}\nspec: {gatewayRoute: {timeout: 5 minutes}}\n";
        assert!(left_out(input)
            .starts_with("t.yaml: document 1: kaos.tools Agent default/a: spec.gatewayRoute.timeout: invalid duration"));
        let input = "apiVersion: kaos.tools/v1alpha1\nkind: ModelAPI\nmetadata: {name: p}\nspec: {proxyConfig: {models: [7]}}\n";
        assert_eq!(
            left_out(input),
            "t.yaml: document 1: kaos.tools ModelAPI default/p: spec.proxyConfig.models[0]: expected a model id, found 7"
        );
    }
}
