//! agentic-layer (`runtime.agentic-layer.ai/v1alpha1`): what its KrakenD
//! gateway exposes, as agentroute entries.
//!
//! - `Agent` with `spec.exposed: true` only (the gateway skips the others);
//! - its first A2A protocol (`spec.protocols[]`, type `A2A`; none listed:
//!   the webhook's default, A2A on 8000): Service `{name}` in its namespace
//!   on that port, `protocol: a2a` at the protocol's `path` (default `/`),
//!   A2A `0.3` (the KrakenD gateway translates chat completions to
//!   `message/send`);
//! - `AgentGateway.spec.timeout` (default `360s`) as every entry's timeout.

use serde_json::Value;

use super::{dns_label, source, A2a, Agent, Backend, GenerateError, Kind, Resource};

const DEFAULT_PORT: u16 = 8000;
const DEFAULT_GATEWAY_TIMEOUT: &str = "360s";

/// The timeout of the AgentGateways in the input (the first by namespace and
/// name when several disagree, said in a note); `360s` without one.
pub fn gateway_timeout(
    gateways: &[&Resource],
    notes: &mut Vec<String>,
) -> Result<String, GenerateError> {
    let mut timeouts = Vec::new();
    for g in gateways {
        let timeout = g
            .duration("spec.timeout")?
            .unwrap_or_else(|| DEFAULT_GATEWAY_TIMEOUT.to_string());
        timeouts.push(((g.namespace.clone(), g.name.clone()), timeout));
    }
    timeouts.sort();
    let Some((first, timeout)) = timeouts.first().cloned() else {
        return Ok(DEFAULT_GATEWAY_TIMEOUT.to_string());
    };
    if timeouts.iter().any(|(_, t)| *t != timeout) {
        notes.push(format!(
            "AgentGateways disagree on spec.timeout: {timeout} of {}/{} is used for every agentic-layer agent",
            first.0, first.1
        ));
    }
    Ok(timeout)
}

pub fn agent(
    r: &Resource,
    timeout: &str,
    notes: &mut Vec<String>,
) -> Result<Vec<Agent>, GenerateError> {
    if r.boolean("spec.exposed")? != Some(true) {
        notes.push(format!(
            "{}: skipped, not exposed (spec.exposed is not true)",
            source(r)
        ));
        return Ok(Vec::new());
    }
    let protocols = r.array("spec.protocols")?;
    let mut a2a = None;
    for (i, p) in protocols.iter().enumerate() {
        let field = format!("spec.protocols[{i}]");
        let kind = match p.get("type") {
            Some(Value::String(t)) => t.as_str(),
            _ => return Err(r.error(&format!("{field}.type"), "required (a string, e.g. A2A)")),
        };
        if kind == "A2A" && a2a.is_none() {
            let port = r.port_in(p, "port", &format!("{field}.port"))?;
            let path = match p.get("path") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if s.is_empty() => None,
                Some(Value::String(s)) if s.starts_with('/') => Some(s.clone()),
                Some(other) => {
                    return Err(r.error(
                        &format!("{field}.path"),
                        format!("expected a path starting with '/', found {other}"),
                    ))
                }
            };
            a2a = Some((port.unwrap_or(DEFAULT_PORT), path));
        }
    }
    let (port, path) = match (a2a, protocols.is_empty()) {
        (Some(found), _) => found,
        (None, true) => (DEFAULT_PORT, None),
        (None, false) => {
            notes.push(format!(
                "{}: skipped, no A2A protocol in spec.protocols",
                source(r)
            ));
            return Ok(Vec::new());
        }
    };
    let name = dns_label(r, "metadata.name", &r.name)?;
    let namespace = dns_label(r, "metadata.namespace", &r.namespace)?;
    Ok(vec![Agent {
        backend: Backend {
            namespace: namespace.clone(),
            service: name.clone(),
            port,
        },
        name,
        namespace,
        kind: Kind::Agent,
        timeout: Some(timeout.to_string()),
        models: Vec::new(),
        hosts: Vec::new(),
        a2a: Some(A2a {
            version: "0.3",
            path: path.unwrap_or_else(|| "/".to_string()),
        }),
        source: source(r),
        document: r.document.clone(),
    }])
}

#[cfg(test)]
mod tests {
    use super::super::map_resources;
    use super::super::tests::resources;

    #[test]
    fn exposed_agents_become_a2a_entries_with_the_gateway_timeout() {
        let input = "\
apiVersion: runtime.agentic-layer.ai/v1alpha1
kind: Agent
metadata: {name: weather-agent, namespace: agents}
spec: {exposed: true, protocols: [{type: A2A}]}
---
apiVersion: runtime.agentic-layer.ai/v1alpha1
kind: Agent
metadata: {name: hidden, namespace: agents}
spec: {protocols: [{type: A2A}]}
---
apiVersion: runtime.agentic-layer.ai/v1alpha1
kind: Agent
metadata: {name: custom, namespace: agents}
spec: {exposed: true, protocols: [{type: A2A, name: rpc, port: 9000, path: /rpc}]}
---
apiVersion: runtime.agentic-layer.ai/v1alpha1
kind: AgentGateway
metadata: {name: gw, namespace: gateways}
spec: {timeout: 30000ms}
";
        let mapped = map_resources(&resources(input)).unwrap();
        let got: Vec<(String, String, u16, String, String)> = mapped
            .agents
            .iter()
            .map(|a| {
                let a2a = a.a2a.clone().unwrap();
                (
                    a.name.clone(),
                    a.backend.token(),
                    a.backend.port,
                    a2a.path,
                    a.timeout.clone().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "custom".into(),
                    "custom.agents:9000".into(),
                    9000,
                    "/rpc".into(),
                    "30000ms".into()
                ),
                (
                    "weather-agent".into(),
                    "weather-agent.agents:8000".into(),
                    8000,
                    "/".into(),
                    "30000ms".into()
                ),
            ]
        );
        assert_eq!(
            mapped.notes,
            ["agentic-layer Agent agents/hidden: skipped, not exposed (spec.exposed is not true)"]
        );
    }

    #[test]
    fn defaults_and_bad_fields() {
        let input = "apiVersion: runtime.agentic-layer.ai/v1alpha1\nkind: Agent\nmetadata: {name: a}\nspec: {exposed: true}\n";
        let mapped = map_resources(&resources(input)).unwrap();
        let a = &mapped.agents[0];
        assert_eq!((a.backend.port, a.timeout.as_deref()), (8000, Some("360s")));
        let bad = input.replace(
            "{exposed: true}",
            "{exposed: true, protocols: [{type: A2A, port: 70000}]}",
        );
        assert_eq!(
            map_resources(&resources(&bad)).unwrap_err().to_string(),
            "t.yaml: document 1: runtime.agentic-layer.ai Agent default/a: spec.protocols[0].port: expected a port (1-65535), found 70000"
        );
        let bad = input.replace("{exposed: true}", "{exposed: \"yes\"}");
        assert_eq!(
            map_resources(&resources(&bad)).unwrap_err().to_string(),
            "t.yaml: document 1: runtime.agentic-layer.ai Agent default/a: spec.exposed: expected a boolean, found a string"
        );
        let gw = format!("{input}---\napiVersion: runtime.agentic-layer.ai/v1alpha1\nkind: AgentGateway\nmetadata: {{name: g}}\nspec: {{timeout: soon}}\n");
        assert!(map_resources(&resources(&gw))
            .unwrap_err()
            .to_string()
            .starts_with("t.yaml: document 2: runtime.agentic-layer.ai AgentGateway default/g: spec.timeout: invalid duration \"soon\""));
    }
}
