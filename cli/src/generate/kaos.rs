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

use serde_json::Value;

use super::{dns_label, source, Agent, Backend, GenerateError, Kind, Resource};

fn entry(
    r: &Resource,
    kind: Kind,
    service_prefix: &str,
    port: u16,
    models: Vec<String>,
) -> Result<Agent, GenerateError> {
    let name = dns_label(r, "metadata.name", &r.name)?;
    let namespace = dns_label(r, "metadata.namespace", &r.namespace)?;
    Ok(Agent {
        backend: Backend {
            namespace: namespace.clone(),
            service: format!("{service_prefix}-{name}"),
            port,
        },
        name,
        namespace,
        kind,
        timeout: r.duration("spec.gatewayRoute.timeout")?,
        models,
        hosts: Vec::new(),
        a2a: None,
        source: source(r),
        document: r.document.clone(),
    })
}

pub fn agent(r: &Resource, notes: &mut Vec<String>) -> Result<Vec<Agent>, GenerateError> {
    if r.boolean("spec.agentNetwork.expose")? == Some(false) {
        notes.push(format!(
            "{}: skipped, agentNetwork.expose is false (no Service, no route)",
            source(r)
        ));
        return Ok(Vec::new());
    }
    Ok(vec![entry(r, Kind::Agent, "agent", 8000, Vec::new())?])
}

pub fn model_api(r: &Resource) -> Result<Vec<Agent>, GenerateError> {
    let mode = r.string("spec.mode")?.unwrap_or("Proxy");
    let (port, models) = match mode {
        "Proxy" => {
            let mut models = Vec::new();
            for (i, m) in r.array("spec.proxyConfig.models")?.iter().enumerate() {
                match m {
                    Value::String(s) if !s.is_empty() => models.push(s.clone()),
                    other => {
                        return Err(r.error(
                            &format!("spec.proxyConfig.models[{i}]"),
                            format!("expected a model id, found {other}"),
                        ))
                    }
                }
            }
            (8000, models)
        }
        "Hosted" => {
            let model = match r.string("spec.hostedConfig.model")? {
                Some(m) => Some(m),
                None => r.string("spec.serverConfig.model")?,
            };
            (11434, model.map(str::to_string).into_iter().collect())
        }
        other => {
            return Err(r.error(
                "spec.mode",
                format!("expected Proxy or Hosted, found {other:?}"),
            ))
        }
    };
    Ok(vec![entry(r, Kind::ModelApi, "modelapi", port, models)?])
}

pub fn mcp_server(r: &Resource) -> Result<Vec<Agent>, GenerateError> {
    Ok(vec![entry(r, Kind::Mcp, "mcpserver", 8000, Vec::new())?])
}

#[cfg(test)]
mod tests {
    use super::super::map_resources;
    use super::super::tests::resources;

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
        let mapped = map_resources(&resources(input)).unwrap();
        let got: Vec<Row> = mapped
            .agents
            .iter()
            .map(|a| {
                (
                    a.name.clone(),
                    a.kind.as_str(),
                    a.backend.token(),
                    a.models.clone(),
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
            map_resources(&resources(input)).unwrap_err().to_string(),
            "t.yaml: document 1: kaos.tools ModelAPI m/p: spec.mode: expected Proxy or Hosted, found \"Remote\""
        );
        let input = "apiVersion: kaos.tools/v1alpha1\nkind: Agent\nmetadata: {name: a}\nspec: {gatewayRoute: {timeout: 5 minutes}}\n";
        assert!(map_resources(&resources(input))
            .unwrap_err()
            .to_string()
            .starts_with("t.yaml: document 1: kaos.tools Agent default/a: spec.gatewayRoute.timeout: invalid duration"));
        let input = "apiVersion: kaos.tools/v1alpha1\nkind: ModelAPI\nmetadata: {name: p}\nspec: {proxyConfig: {models: [7]}}\n";
        assert_eq!(
            map_resources(&resources(input)).unwrap_err().to_string(),
            "t.yaml: document 1: kaos.tools ModelAPI default/p: spec.proxyConfig.models[0]: expected a model id, found 7"
        );
    }
}
