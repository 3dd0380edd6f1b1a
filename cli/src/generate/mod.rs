//! `agentroute generate`: the platforms' own resources in, the gateway's
//! configuration out. Pure functions: [`read_resources`] splits the inputs
//! into Kubernetes objects, each platform module maps its kinds to
//! [`Agent`]s (one agentroute entry each, with the Service and port it
//! leads to), and [`emit`] writes a target from them.
//!
//! | platform | kinds | module |
//! |---|---|---|
//! | agentic-layer (`runtime.agentic-layer.ai`) | `Agent`, `AgentGateway` | [`agentic_layer`] |
//! | KAOS (`kaos.tools`, formerly `ethical.institute`) | `Agent`, `ModelAPI`, `MCPServer` | [`kaos`] |
//! | Omnia (`omnia.altairalabs.ai`) | `AgentRuntime` | [`omnia`] |
//!
//! Output is sorted (entries by namespace and name, Services by name), so
//! the same resources give byte-identical output whatever their order.

pub mod agentic_layer;
pub mod emit;
pub mod kaos;
pub mod omnia;

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

pub use emit::{emit, Dispatch, Options, Output, Target};

/// A resource the mapping cannot read: which document, which object, which
/// field, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateError {
    /// `FILE: document 2 items[0]`, or the input name alone.
    pub document: String,
    /// `kaos.tools Agent prod/coordinator`; empty when the document itself
    /// is unreadable.
    pub resource: String,
    /// `spec.gatewayRoute.timeout`; empty when not about one field.
    pub field: String,
    pub message: String,
}

impl fmt::Display for GenerateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.document)?;
        if !self.resource.is_empty() {
            write!(f, ": {}", self.resource)?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for GenerateError {}

/// One Kubernetes object of the input.
#[derive(Debug, Clone)]
pub struct Resource {
    /// Where it is, for errors: `FILE: document 2`, `FILE: document 1 items[3]`.
    pub document: String,
    /// The API group (`kaos.tools`; empty for the core group).
    pub group: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub object: Value,
}

impl Resource {
    /// `kaos.tools Agent prod/coordinator`.
    pub fn describe(&self) -> String {
        format!(
            "{} {} {}/{}",
            self.group, self.kind, self.namespace, self.name
        )
    }

    pub fn error(&self, field: &str, message: impl Into<String>) -> GenerateError {
        GenerateError {
            document: self.document.clone(),
            resource: self.describe(),
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// The value at a dotted path (`spec.gatewayRoute.timeout`), if present
    /// and not null.
    pub fn get(&self, path: &str) -> Option<&Value> {
        let mut node = &self.object;
        for key in path.split('.') {
            node = node.get(key)?;
        }
        (!node.is_null()).then_some(node)
    }

    pub fn string(&self, path: &str) -> Result<Option<&str>, GenerateError> {
        match self.get(path) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.error(
                path,
                format!("expected a string, found {}", type_name(other)),
            )),
        }
    }

    pub fn boolean(&self, path: &str) -> Result<Option<bool>, GenerateError> {
        match self.get(path) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.error(
                path,
                format!("expected a boolean, found {}", type_name(other)),
            )),
        }
    }

    pub fn array(&self, path: &str) -> Result<&[Value], GenerateError> {
        match self.get(path) {
            None => Ok(&[]),
            Some(Value::Array(items)) => Ok(items),
            Some(other) => Err(self.error(
                path,
                format!("expected an array, found {}", type_name(other)),
            )),
        }
    }

    /// A TCP port at `path` of `value` (`field` names it in errors).
    pub fn port_in(
        &self,
        value: &Value,
        key: &str,
        field: &str,
    ) -> Result<Option<u16>, GenerateError> {
        match value.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .filter(|n| *n > 0)
                .map(Some)
                .ok_or_else(|| self.error(field, format!("expected a port (1-65535), found {v}"))),
        }
    }

    /// A duration the filter accepts, as written.
    pub fn duration(&self, path: &str) -> Result<Option<String>, GenerateError> {
        let Some(text) = self.string(path)? else {
            return Ok(None);
        };
        agentroute::config::parse_duration_ms(text).map_err(|e| self.error(path, e))?;
        Ok(Some(text.to_string()))
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// What an entry is, as agentroute names kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Agent,
    ModelApi,
    Mcp,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Agent => "agent",
            Kind::ModelApi => "modelapi",
            Kind::Mcp => "mcp",
        }
    }
}

/// A Kubernetes Service port: what a dispatch token leads to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Backend {
    pub namespace: String,
    pub service: String,
    pub port: u16,
}

impl Backend {
    /// The dispatch token: `{service}.{namespace}:{port}`, one per Service
    /// port (entries on the same port share it), readable in logs, a valid
    /// header value and Envoy cluster name.
    pub fn token(&self) -> String {
        format!("{}.{}:{}", self.service, self.namespace, self.port)
    }

    /// The Service's cluster DNS name.
    pub fn host(&self) -> String {
        format!("{}.{}.svc.cluster.local", self.service, self.namespace)
    }

    /// A name for the HTTPRoute rule of this port: `{service}-{port}`.
    pub fn rule_name(&self) -> String {
        format!("{}-{}", self.service, self.port)
    }
}

/// The A2A side of an entry (`protocol: a2a`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct A2a {
    pub version: &'static str,
    pub path: String,
}

/// One agentroute entry and the Service port it leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub name: String,
    pub namespace: String,
    pub kind: Kind,
    pub backend: Backend,
    pub timeout: Option<String>,
    pub models: Vec<String>,
    pub hosts: Vec<String>,
    pub a2a: Option<A2a>,
    /// The resource it came from (`KAOS Agent prod/coordinator`) and
    /// where (`FILE: document 2`), for messages.
    pub source: String,
    pub document: String,
}

/// What a platform module makes of the resources.
#[derive(Debug, Default)]
pub struct Mapped {
    pub agents: Vec<Agent>,
    /// One line each on stderr: resources skipped and why.
    pub notes: Vec<String>,
}

/// API groups of the KAOS kinds: `kaos.tools`, and `ethical.institute`,
/// which KAOS's older samples use.
pub const KAOS_GROUPS: [&str; 2] = ["kaos.tools", "ethical.institute"];
pub const AGENTIC_LAYER_GROUP: &str = "runtime.agentic-layer.ai";
pub const OMNIA_GROUP: &str = "omnia.altairalabs.ai";

/// Every Kubernetes object in `input` (multi-document YAML or JSON; a
/// `kind: List` is opened), each with its place for errors. `name` is the
/// input's name (a file, `<stdin>`).
pub fn read_resources(name: &str, input: &str) -> Result<Vec<Resource>, GenerateError> {
    let docs = crate::check::documents(input).map_err(|e| GenerateError {
        document: name.to_string(),
        resource: String::new(),
        field: String::new(),
        message: e.0,
    })?;
    let mut out = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        if doc.is_null() {
            continue;
        }
        let place = format!("{name}: document {}", i + 1);
        collect(doc, &place, &mut out)?;
    }
    Ok(out)
}

fn collect(doc: &Value, place: &str, out: &mut Vec<Resource>) -> Result<(), GenerateError> {
    let bad = |field: &str, message: &str| GenerateError {
        document: place.to_string(),
        resource: String::new(),
        field: field.to_string(),
        message: message.to_string(),
    };
    let Some(object) = doc.as_object() else {
        return Err(bad(
            "",
            "expected a Kubernetes object (a map with apiVersion and kind)",
        ));
    };
    let api_version = match object.get("apiVersion") {
        Some(Value::String(v)) => v.as_str(),
        _ => return Err(bad("apiVersion", "required (a string)")),
    };
    let kind = match object.get("kind") {
        Some(Value::String(k)) => k.as_str(),
        _ => return Err(bad("kind", "required (a string)")),
    };
    if kind == "List" || kind.ends_with("List") && object.contains_key("items") {
        let items = match object.get("items") {
            Some(Value::Array(items)) => items,
            None | Some(Value::Null) => return Ok(()),
            Some(_) => return Err(bad("items", "expected an array")),
        };
        for (i, item) in items.iter().enumerate() {
            collect(item, &format!("{place} items[{i}]"), out)?;
        }
        return Ok(());
    }
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    let meta = object.get("metadata");
    let field = |key: &str| meta.and_then(|m| m.get(key)).and_then(Value::as_str);
    let Some(name) = field("name") else {
        return Err(GenerateError {
            document: place.to_string(),
            resource: format!("{group} {kind}"),
            field: "metadata.name".into(),
            message: "required (a string)".into(),
        });
    };
    out.push(Resource {
        document: place.to_string(),
        group: group.to_string(),
        kind: kind.to_string(),
        namespace: field("namespace").unwrap_or("default").to_string(),
        name: name.to_string(),
        object: doc.clone(),
    });
    Ok(())
}

/// Maps every resource: the agents sorted by namespace and name, notes for
/// what was skipped (one line per kind the mapping does not know).
pub fn map_resources(resources: &[Resource]) -> Result<Mapped, GenerateError> {
    let mut mapped = Mapped::default();
    let gateways: Vec<&Resource> = resources
        .iter()
        .filter(|r| r.group == AGENTIC_LAYER_GROUP && r.kind == "AgentGateway")
        .collect();
    let gateway_timeout = agentic_layer::gateway_timeout(&gateways, &mut mapped.notes)?;
    let mut unknown: BTreeMap<String, usize> = BTreeMap::new();
    for r in resources {
        let agents = match (r.group.as_str(), r.kind.as_str()) {
            (AGENTIC_LAYER_GROUP, "Agent") => {
                agentic_layer::agent(r, &gateway_timeout, &mut mapped.notes)?
            }
            (AGENTIC_LAYER_GROUP, "AgentGateway") => Vec::new(),
            (g, "Agent") if KAOS_GROUPS.contains(&g) => kaos::agent(r, &mut mapped.notes)?,
            (g, "ModelAPI") if KAOS_GROUPS.contains(&g) => kaos::model_api(r)?,
            (g, "MCPServer") if KAOS_GROUPS.contains(&g) => kaos::mcp_server(r)?,
            (OMNIA_GROUP, "AgentRuntime") => omnia::agent_runtime(r, &mut mapped.notes)?,
            _ => {
                let api = if r.group.is_empty() {
                    "v1".to_string()
                } else {
                    r.group.clone()
                };
                *unknown.entry(format!("{api} {}", r.kind)).or_default() += 1;
                Vec::new()
            }
        };
        mapped.agents.extend(agents);
    }
    if !unknown.is_empty() {
        let kinds: Vec<String> = unknown.iter().map(|(k, n)| format!("{k} ({n})")).collect();
        mapped.notes.push(format!(
            "skipped kinds agentroute does not map: {}",
            kinds.join(", ")
        ));
    }
    mapped
        .agents
        .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    refuse_clashes(&mapped.agents)?;
    Ok(mapped)
}

/// Two resources giving one identity, model id or host would be refused by
/// the filter: said here with both sources instead.
fn refuse_clashes(agents: &[Agent]) -> Result<(), GenerateError> {
    let mut ids: BTreeMap<(String, String), &Agent> = BTreeMap::new();
    let mut models: BTreeMap<&str, &Agent> = BTreeMap::new();
    let mut hosts: BTreeMap<String, &Agent> = BTreeMap::new();
    let clash = |a: &Agent, first: &Agent, what: String| GenerateError {
        document: a.document.clone(),
        resource: a.source.clone(),
        field: String::new(),
        message: format!(
            "{what} is already generated from {}: rename one of them",
            first.source
        ),
    };
    for a in agents {
        let key = (a.namespace.clone(), a.name.clone());
        if let Some(first) = ids.insert(key, a) {
            return Err(clash(a, first, format!("entry {}/{}", a.namespace, a.name)));
        }
        for m in &a.models {
            if let Some(first) = models.insert(m, a) {
                return Err(clash(a, first, format!("model id {m:?}")));
            }
        }
        for h in &a.hosts {
            if let Some(first) = hosts.insert(h.to_ascii_lowercase(), a) {
                return Err(clash(a, first, format!("host {h:?}")));
            }
        }
    }
    Ok(())
}

/// Reads every input (name, text), maps the resources and writes the
/// target: what `agentroute generate` prints, with its notes for stderr.
pub fn generate(inputs: &[(String, String)], options: &Options) -> Result<Output, String> {
    let mut resources = Vec::new();
    for (name, text) in inputs {
        resources.extend(read_resources(name, text).map_err(|e| e.to_string())?);
    }
    let mapped = map_resources(&resources).map_err(|e| e.to_string())?;
    let mut output = emit(&mapped.agents, options)?;
    let mut notes = mapped.notes;
    notes.append(&mut output.notes);
    output.notes = notes;
    Ok(output)
}

/// The configuration of a `--base` file: exactly one, in any form `check`
/// reads (bare JSON or YAML, a WasmPlugin, ...), valid for the filter.
pub fn read_base(name: &str, text: &str) -> Result<serde_json::Map<String, Value>, String> {
    let scan = crate::check::scan(text).map_err(|e| format!("--base {name}: {e}"))?;
    let [found] = scan.configs.as_slice() else {
        return Err(format!(
            "--base {name}: expected one configuration, found {}",
            scan.configs.len()
        ));
    };
    found.compile().map_err(|e| format!("--base {name}: {e}"))?;
    let json = found
        .config
        .clone()
        .map_err(|e| format!("--base {name}: {e}"))?;
    if json.trim().is_empty() {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_str::<Value>(&json) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(format!(
            "--base {name}: the configuration must be an object"
        )),
        Err(e) => Err(format!("--base {name}: {e}")),
    }
}

/// How messages name a platform by its API group.
pub fn platform_name(group: &str) -> &'static str {
    match group {
        AGENTIC_LAYER_GROUP => "agentic-layer",
        OMNIA_GROUP => "Omnia",
        g if KAOS_GROUPS.contains(&g) => "KAOS",
        _ => "Kubernetes",
    }
}

/// `KAOS Agent prod/coordinator`: an entry's source in messages.
pub fn source(r: &Resource) -> String {
    format!(
        "{} {} {}/{}",
        platform_name(&r.group),
        r.kind,
        r.namespace,
        r.name
    )
}

/// A DNS-1123 label, as the filter wants names and namespaces.
pub fn dns_label(r: &Resource, field: &str, value: &str) -> Result<String, GenerateError> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if ok {
        Ok(value.to_string())
    } else {
        Err(r.error(
            field,
            format!(
                "{value:?} is not a DNS-1123 label (lowercase letters, digits, '-', at most 63)"
            ),
        ))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The resources of one YAML text, named `t.yaml`.
    pub(crate) fn resources(yaml: &str) -> Vec<Resource> {
        read_resources("t.yaml", yaml).unwrap()
    }

    #[test]
    fn lists_are_opened_and_places_numbered() {
        let input = "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: kaos.tools/v1alpha1, kind: Agent, metadata: {name: a, namespace: n}}\n---\n{apiVersion: v1, kind: Namespace, metadata: {name: x}}\n";
        let r = resources(input);
        let places: Vec<(&str, &str, &str)> = r
            .iter()
            .map(|r| (r.document.as_str(), r.group.as_str(), r.name.as_str()))
            .collect();
        assert_eq!(
            places,
            [
                ("t.yaml: document 1 items[0]", "kaos.tools", "a"),
                ("t.yaml: document 2", "", "x")
            ]
        );
        // JSON input too.
        let json = r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"omnia.altairalabs.ai/v1alpha1","kind":"AgentRuntime","metadata":{"name":"o"}}]}"#;
        assert_eq!(resources(json)[0].namespace, "default");
    }

    #[test]
    fn malformed_documents_say_where() {
        let err = read_resources(
            "f.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\nkind: Agent\n",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "f.yaml: document 2: apiVersion: required (a string)"
        );
        let err = read_resources(
            "f.yaml",
            "apiVersion: kaos.tools/v1alpha1\nkind: Agent\nmetadata: {}\n",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "f.yaml: document 1: kaos.tools Agent: metadata.name: required (a string)"
        );
        let err = read_resources("f.yaml", "a: [\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("f.yaml: input is not valid YAML"),
            "{err}"
        );
    }

    #[test]
    fn unknown_kinds_are_one_note_each_and_clashes_are_refused() {
        let input = "{apiVersion: v1, kind: Secret, metadata: {name: a}}\n---\n{apiVersion: v1, kind: Secret, metadata: {name: b}}\n---\n{apiVersion: apps/v1, kind: Deployment, metadata: {name: c}}\n";
        let mapped = map_resources(&resources(input)).unwrap();
        assert!(mapped.agents.is_empty());
        assert_eq!(
            mapped.notes,
            ["skipped kinds agentroute does not map: apps Deployment (1), v1 Secret (2)"]
        );
        let twice = "{apiVersion: kaos.tools/v1alpha1, kind: Agent, metadata: {name: a, namespace: n}}\n---\n{apiVersion: kaos.tools/v1alpha1, kind: MCPServer, metadata: {name: a, namespace: n}}\n";
        let err = map_resources(&resources(twice)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.yaml: document 2: KAOS MCPServer n/a: entry n/a is already generated from KAOS Agent n/a: rename one of them"
        );
    }
}
