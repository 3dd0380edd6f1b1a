//! `--base` and the generated entries: a base entry of the same
//! `namespace/name` as a generated one either replaces it (it names its own
//! `backend`: a hand-written entry, routed by hand) or layers settings onto
//! it (no `backend`: a canary, failover, tool rules, limits...). Layered,
//! the base's fields win and the generated backend, with its clusters and
//! routes, is kept.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{entry_json, Options, Target};
use crate::generate::{Agent, Backend};

/// What a layering base entry is checked with before the merge brings the
/// generated backend ([`crate::generate::read_base`]); never written.
pub const LAYER_BACKEND: &str = "agentroute-base-layer";

/// Whether `entry` is `agent`'s (a base entry without namespace is in
/// `default`, as the filter reads it).
fn is_entry_of(entry: &Value, agent: &Agent) -> bool {
    let name = entry.get("name").and_then(Value::as_str);
    let namespace = entry
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or("default");
    name == Some(agent.name.as_str()) && namespace == agent.namespace
}

/// The base has `agent`'s entry with a backend of its own: the base's entry
/// replaces the generated one, whose backend gets no route or cluster.
pub(super) fn base_owns(options: &Options, agent: &Agent) -> bool {
    options
        .base
        .as_ref()
        .and_then(|base| base.get("agents"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|e| is_entry_of(e, agent) && e.get("backend").is_some())
}

/// The entries of the configuration: the base's `entries` in their order,
/// each layering one merged with its generated entry, then the generated
/// entries the base does not have. A layering entry without a generated
/// entry has no backend: left out, with a warning.
pub(super) fn merge(
    mut entries: Vec<Value>,
    agents: &[Agent],
    names: &BTreeMap<Backend, String>,
    target: Target,
    notes: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Vec<Value> {
    let from_base = entries.len();
    let mut layered = vec![false; from_base];
    for a in agents {
        let backend = match &a.provider {
            Some(p) => p.backend(target),
            None => names
                .get(&a.backend)
                .cloned()
                .unwrap_or_else(|| a.backend.token()),
        };
        let generated = entry_json(a, &backend);
        let at = entries
            .iter()
            .take(from_base)
            .position(|e| is_entry_of(e, a));
        let Some(i) = at else {
            entries.push(generated);
            continue;
        };
        let (Some(base), Some(done)) = (entries.get_mut(i), layered.get_mut(i)) else {
            continue;
        };
        if base.get("backend").is_some() {
            notes.push(format!(
                "{} (from {}) is in --base with a backend of its own: the base's entry is kept",
                a.id(),
                a.source
            ));
            continue;
        }
        notes.push(format!(
            "{} (from {}): --base settings layered onto the generated entry",
            a.id(),
            a.source
        ));
        *base = layer(generated, base);
        *done = true;
    }
    let mut out = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let orphan = i < from_base
            && !layered.get(i).copied().unwrap_or(false)
            && entry.get("backend").is_none();
        if orphan {
            let name = entry.get("name").and_then(Value::as_str).unwrap_or("?");
            let namespace = entry
                .get("namespace")
                .and_then(Value::as_str)
                .unwrap_or("default");
            warnings.push(format!(
                "--base: agents[{i}] ({namespace}/{name}) has no backend and no generated entry \
                 to layer onto: left out"
            ));
            continue;
        }
        out.push(entry);
    }
    out
}

/// `generated` with every field of `base` set over it, in the generated
/// entry's key order, then the base's other keys.
fn layer(generated: Value, base: &Value) -> Value {
    let mut merged = match generated {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    for (key, value) in base.as_object().into_iter().flatten() {
        merged.insert(key.clone(), value.clone());
    }
    Value::Object(merged)
}
