//! Omnia (`omnia.altairalabs.ai/v1alpha1` `AgentRuntime`): its facades as
//! agentroute entries. The Service is named after the AgentRuntime.
//!
//! | facade | entry | port | protocol |
//! |---|---|---|---|
//! | primary (websocket > rest > a2a > custom) | `{name}` | the facade's `port` (8080) | `a2a` at `/a2a` when the primary is the A2A facade |
//! | `a2a` next to a websocket or rest primary | `{name}-a2a` | `a2a.port` (9999) | `a2a` at `/a2a`, A2A `0.3` (card at `/.well-known/agent.json`) |
//! | `mcp` | `{name}-mcp` (`{name}` when it is the only facade) | `mcp.port` (9998) | kind `mcp` |
//!
//! A facade's `expose.host` becomes a host route of its entry. Management
//! ports (`*-mgmt`) are never routed. `spec.facades[]` (beta.17 and later) and
//! the older `spec.facade` (with `spec.a2a` for a second, A2A port) both read.
//!
//! A host claim is granted or not by the trust model ([`super::trust`]).
//! Every field read is read strictly (a wrong type leaves the resource
//! out); a key that looks like a misspelling of one read is a warning.

use serde_json::Value;

use super::{dns_label, source, A2a, Agent, Backend, Claim, GenerateError, Kind, Mapped, Resource};

const FACADE_PORT: u16 = 8080;
const A2A_PORT: u16 = 9999;
const MCP_PORT: u16 = 9998;
const A2A_PATH: &str = "/a2a";
/// Omnia serves its card at `/.well-known/agent.json`, the 0.3 card path.
const A2A_VERSION: &str = "0.3";

/// One facade as read from either shape.
struct Facade<'a> {
    kind: String,
    field: String,
    item: &'a Value,
}

fn facades<'r>(r: &'r Resource, mapped: &mut Mapped) -> Result<Vec<Facade<'r>>, GenerateError> {
    let mut out = Vec::new();
    if let Some(spec) = r.object("spec")? {
        r.near_misses(
            spec,
            "spec",
            &["facades", "facade", "a2a", "mcp"],
            &[],
            &mut mapped.warnings,
        );
    }
    let list = r.array("spec.facades")?;
    let (items, base): (Vec<&Value>, &str) = if list.is_empty() {
        (
            r.object("spec.facade")?.into_iter().collect(),
            "spec.facade",
        )
    } else {
        (list.iter().collect(), "spec.facades")
    };
    for (i, item) in items.into_iter().enumerate() {
        let field = if base == "spec.facade" {
            base.to_string()
        } else {
            format!("{base}[{i}]")
        };
        let Some(item) = r.object_value(Some(item), &field)? else {
            return Err(r.error(&field, "expected a facade (an object), found null"));
        };
        r.near_misses(
            item,
            &field,
            &["type", "port", "expose", "a2a", "mcp"],
            &["handler"],
            &mut mapped.warnings,
        );
        for nested in ["a2a", "mcp"] {
            r.object_value(item.get(nested), &format!("{field}.{nested}"))?;
        }
        if let Some(expose) = r.object_value(item.get("expose"), &format!("{field}.expose"))? {
            r.near_misses(
                expose,
                &format!("{field}.expose"),
                &["enabled", "host"],
                &[],
                &mut mapped.warnings,
            );
            r.boolean_in(expose, "enabled", &format!("{field}.expose.enabled"))?;
        }
        let kind = r
            .string_in(item, "type", &format!("{field}.type"))?
            .unwrap_or("websocket")
            .to_string();
        if !["websocket", "a2a", "rest", "mcp", "custom"].contains(&kind.as_str()) {
            return Err(r.error(
                &format!("{field}.type"),
                format!("expected websocket, a2a, rest, mcp or custom, found {kind:?}"),
            ));
        }
        out.push(Facade { kind, field, item });
    }
    Ok(out)
}

pub fn agent_runtime(r: &Resource, mapped: &mut Mapped) -> Result<Vec<Agent>, GenerateError> {
    let name = dns_label(r, "metadata.name", &r.name)?;
    let namespace = dns_label(r, "metadata.namespace", &r.namespace)?;
    let facades = facades(r, mapped)?;
    let by_kind = |k: &str| facades.iter().find(|f| f.kind == k);
    let primary = ["websocket", "rest", "a2a", "custom"]
        .into_iter()
        .find_map(by_kind);
    let mut out = Vec::new();
    let make = |entry_name: String,
                kind: Kind,
                port: u16,
                a2a: bool,
                facade: &Facade|
     -> Result<Agent, GenerateError> {
        let hosts = expose_host(r, facade)?;
        Ok(Agent {
            name: dns_label(r, "metadata.name", &entry_name)?,
            namespace: namespace.clone(),
            kind,
            backend: Backend {
                namespace: namespace.clone(),
                service: name.clone(),
                port,
            },
            timeout: None,
            models: Vec::new(),
            hosts,
            a2a: a2a.then(|| A2a {
                version: A2A_VERSION,
                path: A2A_PATH.to_string(),
            }),
            provider: None,
            source: source(r),
            document: r.document.clone(),
            created: r.created.clone(),
        })
    };
    let legacy_a2a = r.object("spec.a2a")?;
    let primary_port = match primary {
        Some(p) => r
            .port_in(p.item, "port", &format!("{}.port", p.field))?
            .unwrap_or(FACADE_PORT),
        None => FACADE_PORT,
    };
    if let Some(p) = primary {
        out.push(make(
            name.clone(),
            Kind::Agent,
            primary_port,
            p.kind == "a2a",
            p,
        )?);
    }
    // A second, A2A port next to a websocket or rest primary.
    let a2a_secondary = by_kind("a2a").filter(|_| primary.is_some_and(|p| p.kind != "a2a"));
    if let Some(f) = a2a_secondary {
        let port = secondary_port(r, f, "a2a", legacy_a2a, primary_port, A2A_PORT)?;
        out.push(make(format!("{name}-a2a"), Kind::Agent, port, true, f)?);
    } else if let (Some(p), Some(spec_a2a)) = (primary, legacy_a2a) {
        // The older shape: `spec.a2a` beside a websocket facade.
        if p.kind != "a2a" {
            let port = r
                .port_in(spec_a2a, "port", "spec.a2a.port")?
                .unwrap_or(A2A_PORT);
            out.push(make(format!("{name}-a2a"), Kind::Agent, port, true, p)?.without_hosts());
        }
    }
    if let Some(f) = by_kind("mcp") {
        let port = secondary_port(r, f, "mcp", r.object("spec.mcp")?, primary_port, MCP_PORT)?;
        let entry_name = if primary.is_some() {
            format!("{name}-mcp")
        } else {
            name.clone()
        };
        out.push(make(entry_name, Kind::Mcp, port, false, f)?);
    }
    if out.is_empty() {
        mapped
            .notes
            .push(format!("{}: skipped, no facade to route", source(r)));
    }
    for f in &facades {
        let enabled = f.item.pointer("/expose/enabled").and_then(Value::as_bool) == Some(true);
        let host = f.item.pointer("/expose/host").and_then(Value::as_str);
        if enabled && host.is_none() {
            mapped.notes.push(format!(
                "{}: {}.expose has no host (Omnia would use {{name}}.{{ns}}.{{baseDomain}}, which is cluster configuration): no host route",
                source(r),
                f.field
            ));
        }
    }
    Ok(out)
}

/// The facade's `expose.host`, unless exposure is off: a claim the trust
/// model grants or not. (A missing host is noted once per facade in
/// [`agent_runtime`].)
fn expose_host(r: &Resource, facade: &Facade) -> Result<Vec<Claim>, GenerateError> {
    let Some(expose) = facade.item.get("expose").filter(|e| !e.is_null()) else {
        return Ok(Vec::new());
    };
    if expose.get("enabled").and_then(Value::as_bool) == Some(false) {
        return Ok(Vec::new());
    }
    let field = format!("{}.expose.host", facade.field);
    match expose.get("host") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(h)) if !h.is_empty() => Ok(vec![Claim {
            value: h.to_ascii_lowercase(),
            field,
        }]),
        Some(other) => Err(r.error(&field, format!("expected a host name, found {other}"))),
    }
}

/// The port of a secondary facade: its own `{kind}.port`, the spec-level
/// `{kind}.port` (older shape), its `port` when it differs from the
/// primary's, else the default.
fn secondary_port(
    r: &Resource,
    f: &Facade,
    kind: &str,
    spec_level: Option<&Value>,
    primary_port: u16,
    default: u16,
) -> Result<u16, GenerateError> {
    if let Some(nested) = f.item.get(kind).filter(|v| !v.is_null()) {
        if let Some(port) = r.port_in(nested, "port", &format!("{}.{kind}.port", f.field))? {
            return Ok(port);
        }
    }
    if let Some(spec) = spec_level {
        if let Some(port) = r.port_in(spec, "port", &format!("spec.{kind}.port"))? {
            return Ok(port);
        }
    }
    let own = r.port_in(f.item, "port", &format!("{}.port", f.field))?;
    Ok(own.filter(|p| *p != primary_port).unwrap_or(default))
}

impl Agent {
    fn without_hosts(mut self) -> Agent {
        self.hosts.clear();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{left_out, mapped_trusting};

    fn summary(input: &str) -> Vec<(String, String, bool, Vec<String>)> {
        mapped_trusting(input, &["*.example.com"], &[])
            .agents
            .iter()
            .map(|a| {
                (
                    a.name.clone(),
                    a.backend.token(),
                    a.a2a.is_some(),
                    a.host_names(),
                )
            })
            .collect()
    }

    #[test]
    fn websocket_and_a2a_facades_are_two_entries() {
        let input = "\
apiVersion: omnia.altairalabs.ai/v1alpha1
kind: AgentRuntime
metadata: {name: support, namespace: agents}
spec:
  facades:
  - {type: websocket, expose: {enabled: true, host: Support.Example.com}}
  - {type: a2a}
  - {type: mcp}
";
        assert_eq!(
            summary(input),
            [
                (
                    "support".into(),
                    "support.agents:8080".into(),
                    false,
                    vec!["support.example.com".into()]
                ),
                (
                    "support-a2a".into(),
                    "support.agents:9999".into(),
                    true,
                    vec![]
                ),
                (
                    "support-mcp".into(),
                    "support.agents:9998".into(),
                    false,
                    vec![]
                ),
            ]
        );
    }

    #[test]
    fn the_older_facade_shape_and_an_a2a_primary() {
        let old = "apiVersion: omnia.altairalabs.ai/v1alpha1\nkind: AgentRuntime\nmetadata: {name: o, namespace: n}\nspec: {facade: {type: websocket, port: 8081}, a2a: {port: 9000}}\n";
        assert_eq!(
            summary(old),
            [
                ("o".into(), "o.n:8081".into(), false, vec![]),
                ("o-a2a".into(), "o.n:9000".into(), true, vec![]),
            ]
        );
        let a2a = "apiVersion: omnia.altairalabs.ai/v1alpha1\nkind: AgentRuntime\nmetadata: {name: o, namespace: n}\nspec: {facade: {type: a2a}}\n";
        assert_eq!(
            summary(a2a),
            [("o".into(), "o.n:8080".into(), true, vec![])]
        );
        let bad = "apiVersion: omnia.altairalabs.ai/v1alpha1\nkind: AgentRuntime\nmetadata: {name: o, namespace: n}\nspec: {facades: [{type: grpc}]}\n";
        assert_eq!(
            left_out(bad),
            "t.yaml: document 1: omnia.altairalabs.ai AgentRuntime n/o: spec.facades[0].type: expected websocket, a2a, rest, mcp or custom, found \"grpc\""
        );
    }
}
