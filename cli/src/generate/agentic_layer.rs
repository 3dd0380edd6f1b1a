//! agentic-layer (`runtime.agentic-layer.ai/v1alpha1`): what its KrakenD
//! gateway exposes, as agentroute entries.
//!
//! - `Agent` with `spec.exposed: true` only (the gateway skips the others);
//! - its first A2A protocol (`spec.protocols[]`, type `A2A`; none listed:
//!   the webhook's default, A2A on 8000): Service `{name}` in its namespace
//!   on that port, `protocol: a2a` at the protocol's `path` (default `/`),
//!   A2A `0.3` (the KrakenD gateway translates chat completions to
//!   `message/send`);
//! - `AgentGateway.spec.timeout` (default `360s`) as the timeout of the
//!   agents in the AgentGateway's own namespace; an AgentGateway in a
//!   `--trust-namespace` sets it for the agents of every namespace without
//!   one of its own (a tenant's gateway never sets another tenant's).

use std::collections::BTreeMap;

use serde_json::Value;

use super::{dns_label, source, A2a, Agent, Backend, GenerateError, Kind, Mapped, Resource, Trust};

const DEFAULT_PORT: u16 = 8000;
const DEFAULT_GATEWAY_TIMEOUT: &str = "360s";

/// The AgentGateways' timeouts: per namespace, and the default a trusted
/// namespace's gateway sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayTimeouts {
    by_namespace: BTreeMap<String, String>,
    default: String,
}

impl GatewayTimeouts {
    /// The timeout of an agent in `namespace`.
    pub fn of(&self, namespace: &str) -> &str {
        self.by_namespace.get(namespace).unwrap_or(&self.default)
    }
}

/// The timeouts of the AgentGateways in the input. Several in one namespace
/// (or several trusted defaults) that disagree: the first by namespace and
/// name, said in a note. A gateway that cannot be read is left out.
pub fn gateway_timeouts(
    gateways: &[&Resource],
    trust: &Trust,
    mapped: &mut Mapped,
) -> GatewayTimeouts {
    let mut read: Vec<(&Resource, String)> = Vec::new();
    for g in gateways {
        if let Ok(Some(spec)) = g.object("spec") {
            g.near_misses(
                spec,
                "spec",
                &["timeout"],
                &["agentGatewayClassName", "replicas"],
                &mut mapped.warnings,
            );
        }
        match g.duration("spec.timeout") {
            Ok(timeout) => read.push((
                g,
                timeout.unwrap_or_else(|| DEFAULT_GATEWAY_TIMEOUT.to_string()),
            )),
            Err(e) => mapped.left_out.push(e),
        }
    }
    read.sort_by(|(a, _), (b, _)| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let mut by_namespace: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut default: Option<(String, String)> = None;
    for (g, timeout) in &read {
        let id = format!("{}/{}", g.namespace, g.name);
        let slot = by_namespace.entry(g.namespace.clone()).or_default();
        disagree_or_set(slot, &id, timeout, "its namespace", &mut mapped.notes);
        if trust.trusts(&g.namespace) {
            let slot = default.get_or_insert_with(Default::default);
            disagree_or_set(slot, &id, timeout, "every namespace", &mut mapped.notes);
        }
    }
    GatewayTimeouts {
        by_namespace: by_namespace
            .into_iter()
            .map(|(ns, (_, timeout))| (ns, timeout))
            .collect(),
        default: default
            .map(|(_, timeout)| timeout)
            .unwrap_or_else(|| DEFAULT_GATEWAY_TIMEOUT.to_string()),
    }
}

/// Sets an empty (gateway, timeout) slot; a second gateway that disagrees
/// is noted (the first, by namespace and name, is kept).
fn disagree_or_set(
    slot: &mut (String, String),
    id: &str,
    timeout: &str,
    scope: &str,
    notes: &mut Vec<String>,
) {
    if slot.0.is_empty() {
        *slot = (id.to_string(), timeout.to_string());
    } else if slot.1 != timeout {
        notes.push(format!(
            "AgentGateways disagree on spec.timeout: {} of {} is used for {scope}, not {timeout} of {id}",
            slot.1, slot.0
        ));
    }
}

pub fn agent(
    r: &Resource,
    timeouts: &GatewayTimeouts,
    mapped: &mut Mapped,
) -> Result<Vec<Agent>, GenerateError> {
    if let Some(spec) = r.object("spec")? {
        r.near_misses(
            spec,
            "spec",
            &["exposed", "protocols"],
            &[],
            &mut mapped.warnings,
        );
    }
    if r.boolean("spec.exposed")? != Some(true) {
        mapped.notes.push(format!(
            "{}: skipped, not exposed (spec.exposed is not true)",
            source(r)
        ));
        return Ok(Vec::new());
    }
    let protocols = r.array("spec.protocols")?;
    let mut a2a = None;
    for (i, p) in protocols.iter().enumerate() {
        let field = format!("spec.protocols[{i}]");
        let Some(p) = r.object_value(Some(p), &field)? else {
            return Err(r.error(&field, "expected a protocol (an object), found null"));
        };
        r.near_misses(
            p,
            &field,
            &["type", "port", "path"],
            &["name"],
            &mut mapped.warnings,
        );
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
            mapped.notes.push(format!(
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
        timeout: Some(timeouts.of(&r.namespace).to_string()),
        models: Vec::new(),
        hosts: Vec::new(),
        a2a: Some(A2a {
            version: "0.3",
            path: path.unwrap_or_else(|| "/".to_string()),
        }),
        provider: None,
        source: source(r),
        document: r.document.clone(),
        created: r.created.clone(),
    }])
}

#[cfg(test)]
mod tests {
    use super::super::tests::{left_out, mapped, mapped_trusting};

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
metadata: {name: gw, namespace: agents}
spec: {timeout: 30000ms}
";
        let mapped = mapped(input);
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
        let mapped = mapped(input);
        let a = &mapped.agents[0];
        assert_eq!((a.backend.port, a.timeout.as_deref()), (8000, Some("360s")));
        let bad = input.replace(
            "{exposed: true}",
            "{exposed: true, protocols: [{type: A2A, port: 70000}]}",
        );
        assert_eq!(
            left_out(&bad),
            "t.yaml: document 1: runtime.agentic-layer.ai Agent default/a: spec.protocols[0].port: expected a port (1-65535), found 70000"
        );
        let bad = input.replace("{exposed: true}", "{exposed: \"yes\"}");
        assert_eq!(
            left_out(&bad),
            "t.yaml: document 1: runtime.agentic-layer.ai Agent default/a: spec.exposed: expected a boolean, found a string"
        );
        // A gateway that cannot be read is left out; its agents are still
        // generated, with the default timeout.
        let gw = format!("{input}---\napiVersion: runtime.agentic-layer.ai/v1alpha1\nkind: AgentGateway\nmetadata: {{name: g}}\nspec: {{timeout: soon}}\n");
        let m = super::super::tests::mapped(&gw);
        assert_eq!(m.agents[0].timeout.as_deref(), Some("360s"));
        assert_eq!(m.left_out.len(), 1);
        assert!(m.left_out[0]
            .to_string()
            .starts_with("t.yaml: document 2: runtime.agentic-layer.ai AgentGateway default/g: spec.timeout: invalid duration \"soon\""));
    }

    /// A tenant's AgentGateway sets its own namespace's timeout only; one in
    /// a trusted namespace sets the default of every namespace without its
    /// own.
    #[test]
    fn a_gateway_sets_the_timeout_of_its_own_namespace_unless_trusted() {
        let agent = |ns: &str| {
            format!("apiVersion: runtime.agentic-layer.ai/v1alpha1\nkind: Agent\nmetadata: {{name: a, namespace: {ns}}}\nspec: {{exposed: true}}\n---\n")
        };
        let gateway = |ns: &str, timeout: &str| {
            format!("apiVersion: runtime.agentic-layer.ai/v1alpha1\nkind: AgentGateway\nmetadata: {{name: gw, namespace: {ns}}}\nspec: {{timeout: {timeout}}}\n---\n")
        };
        let input = [
            agent("team-a"),
            agent("team-b"),
            agent("team-c"),
            gateway("team-evil", "1ms"),
            gateway("team-b", "90s"),
            gateway("platform", "600s"),
        ]
        .concat();
        let timeouts = |m: super::super::Mapped| -> Vec<(String, String)> {
            m.agents
                .iter()
                .map(|a| (a.namespace.clone(), a.timeout.clone().unwrap()))
                .collect()
        };
        assert_eq!(
            timeouts(mapped(&input)),
            [
                ("team-a".into(), "360s".into()),
                ("team-b".into(), "90s".into()),
                ("team-c".into(), "360s".into()),
            ]
        );
        assert_eq!(
            timeouts(mapped_trusting(&input, &[], &["platform"])),
            [
                ("team-a".into(), "600s".into()),
                ("team-b".into(), "90s".into()),
                ("team-c".into(), "600s".into()),
            ]
        );
    }
}
