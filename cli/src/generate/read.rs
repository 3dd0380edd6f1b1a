//! The inputs of `generate` as Kubernetes objects ([`read_resources`]), and
//! the strict reading of their fields ([`Resource`]): a field of the wrong
//! type is an error naming the resource and field, never a default.

use std::fmt;

use serde_json::Value;

use super::source;

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
    /// `metadata.creationTimestamp` (RFC 3339, UTC, as the API server writes
    /// it: ordered as text); none in hand-written files.
    pub created: Option<String>,
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
    /// and not null. Every step on the way must be an object: a
    /// `spec.hostedConfig: 7` is an error, not a missing model.
    pub fn get(&self, path: &str) -> Result<Option<&Value>, GenerateError> {
        let mut node = &self.object;
        let mut walked = String::new();
        for key in path.split('.') {
            if !walked.is_empty() {
                match node {
                    Value::Null => return Ok(None),
                    Value::Object(_) => {}
                    other => {
                        return Err(self.error(
                            &walked,
                            format!("expected an object, found {}", type_name(other)),
                        ))
                    }
                }
                walked.push('.');
            }
            walked.push_str(key);
            match node.get(key) {
                Some(next) => node = next,
                None => return Ok(None),
            }
        }
        Ok((!node.is_null()).then_some(node))
    }

    /// The object at `path` (none when absent or null).
    pub fn object(&self, path: &str) -> Result<Option<&Value>, GenerateError> {
        self.object_value(self.get(path)?, path)
    }

    /// `value` (read at `field`) when it is an object; absent or null: none.
    pub fn object_value<'v>(
        &self,
        value: Option<&'v Value>,
        field: &str,
    ) -> Result<Option<&'v Value>, GenerateError> {
        match value {
            None | Some(Value::Null) => Ok(None),
            Some(v @ Value::Object(_)) => Ok(Some(v)),
            Some(other) => Err(self.error(
                field,
                format!("expected an object, found {}", type_name(other)),
            )),
        }
    }

    /// The string `key` of the object `value` (`field` names it in errors).
    pub fn string_in<'v>(
        &self,
        value: &'v Value,
        key: &str,
        field: &str,
    ) -> Result<Option<&'v str>, GenerateError> {
        match value.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.error(
                field,
                format!("expected a string, found {}", type_name(other)),
            )),
        }
    }

    /// The boolean `key` of the object `value`.
    pub fn boolean_in(
        &self,
        value: &Value,
        key: &str,
        field: &str,
    ) -> Result<Option<bool>, GenerateError> {
        match value.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.error(
                field,
                format!("expected a boolean, found {}", type_name(other)),
            )),
        }
    }

    /// Keys of the object `value` (at `field`) that look like a misspelling
    /// of a key the mapping reads (`agentNetwork.exposed` for `expose`):
    /// a warning each, since the resource then means something else than
    /// what is generated. Keys the platform defines (`known`) are not.
    pub fn near_misses(
        &self,
        value: &Value,
        field: &str,
        read: &[&str],
        known: &[&str],
        warnings: &mut Vec<String>,
    ) {
        let Some(object) = value.as_object() else {
            return;
        };
        for key in object.keys() {
            if read.contains(&key.as_str()) || known.contains(&key.as_str()) {
                continue;
            }
            if let Some(meant) = read.iter().find(|r| crate::check::is_misspelling(key, r)) {
                let at = if field.is_empty() {
                    key.clone()
                } else {
                    format!("{field}.{key}")
                };
                warnings.push(format!(
                    "{}: {at}: unknown field, ignored (did you mean {meant}?)",
                    source(self)
                ));
            }
        }
    }

    pub fn string(&self, path: &str) -> Result<Option<&str>, GenerateError> {
        match self.get(path)? {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.error(
                path,
                format!("expected a string, found {}", type_name(other)),
            )),
        }
    }

    pub fn boolean(&self, path: &str) -> Result<Option<bool>, GenerateError> {
        match self.get(path)? {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.error(
                path,
                format!("expected a boolean, found {}", type_name(other)),
            )),
        }
    }

    pub fn array(&self, path: &str) -> Result<&[Value], GenerateError> {
        match self.get(path)? {
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
        if !value.is_object() {
            return Err(self.error(
                field.rsplit_once('.').map_or(field, |(parent, _)| parent),
                format!("expected an object, found {}", type_name(value)),
            ));
        }
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

/// The Kubernetes objects of the inputs, and those that are not readable
/// as one (left out, each with its place).
#[derive(Debug, Default)]
pub struct Read {
    pub resources: Vec<Resource>,
    pub unreadable: Vec<GenerateError>,
}

/// Every Kubernetes object in `input` (multi-document YAML or JSON; a
/// `kind: List` is opened), each with its place for errors. `name` is the
/// input's name (a file, `<stdin>`). Input that is not YAML at all is an
/// error; an object without a name or kind is left out (in
/// [`Read::unreadable`]), the others still read.
pub fn read_resources(name: &str, input: &str) -> Result<Read, GenerateError> {
    let docs = crate::check::documents(input).map_err(|e| GenerateError {
        document: name.to_string(),
        resource: String::new(),
        field: String::new(),
        message: e.0,
    })?;
    let mut read = Read::default();
    for (i, doc) in docs.iter().enumerate() {
        if doc.is_null() {
            continue;
        }
        let place = format!("{name}: document {}", i + 1);
        collect(doc, &place, &mut read);
    }
    Ok(read)
}

fn collect(doc: &Value, place: &str, read: &mut Read) {
    if let Err(e) = collect_object(doc, place, read) {
        read.unreadable.push(e);
    }
}

fn collect_object(doc: &Value, place: &str, read: &mut Read) -> Result<(), GenerateError> {
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
            collect(item, &format!("{place} items[{i}]"), read);
        }
        return Ok(());
    }
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    let meta = object.get("metadata");
    let field = |key: &str| -> Result<Option<&str>, GenerateError> {
        match meta.and_then(|m| m.get(key)) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(GenerateError {
                document: place.to_string(),
                resource: format!("{group} {kind}"),
                field: format!("metadata.{key}"),
                message: "expected a string".into(),
            }),
        }
    };
    let Some(name) = field("name")? else {
        return Err(GenerateError {
            document: place.to_string(),
            resource: format!("{group} {kind}"),
            field: "metadata.name".into(),
            message: "required (a string)".into(),
        });
    };
    read.resources.push(Resource {
        document: place.to_string(),
        group: group.to_string(),
        kind: kind.to_string(),
        namespace: field("namespace")?.unwrap_or("default").to_string(),
        name: name.to_string(),
        created: field("creationTimestamp")?.map(str::to_string),
        object: doc.clone(),
    });
    Ok(())
}
