//! The trust model of `generate`: many tenants' resources feed one gateway,
//! so what a resource says is a claim, granted or not:
//!
//! - **hosts** (`agents[].hosts`, which win over every path on that host):
//!   only names `--allow-hosts` lists (exact, or `*.suffix` covering one or
//!   more labels); none by default. A `*.` host claim needs a trusted
//!   namespace as well: it would take every name below it.
//! - **pattern model ids** (`*`, `prefix/*`, which take every id no one else
//!   serves): only resources in a `--trust-namespace`.
//! - **the same claim twice** (an entry `namespace/name`, a model id, a
//!   host): trusted namespaces first, then the older resource by
//!   `metadata.creationTimestamp` (a resource without one after those with
//!   one), then namespace/name order. The other loses that claim alone (an
//!   entry: the whole resource), with a warning; every other entry is still
//!   generated. An explicit model id equal to another agent's own id
//!   (`namespace/name`) is never granted: that id is the agent's.
//!
//! A claim not granted is a warning naming the resource and the field; the
//! entry is generated without it (its paths still route).

use std::collections::{BTreeMap, BTreeSet};

use super::{Agent, Claim, Kind};

/// What resources may claim (the flags `--allow-hosts`, `--trust-namespace`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trust {
    /// Host patterns, lowercase: `agents.example.com` or `*.agents.example.com`.
    pub allow_hosts: Vec<String>,
    pub trusted_namespaces: BTreeSet<String>,
}

impl Trust {
    /// A host name or `*.suffix` pattern `--allow-hosts` accepts: labels of
    /// letters, digits and '-', an optional leading `*.`.
    pub fn parse_host_pattern(pattern: &str) -> Result<String, String> {
        let lower = pattern.trim().to_ascii_lowercase();
        let name = lower.strip_prefix("*.").unwrap_or(&lower);
        let labels_ok = !name.is_empty()
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            });
        if labels_ok {
            Ok(lower)
        } else {
            Err(format!(
                "{pattern:?}: expected a host name or *.suffix (e.g. *.agents.example.com)"
            ))
        }
    }

    pub fn trusts(&self, namespace: &str) -> bool {
        self.trusted_namespaces.contains(namespace)
    }

    /// Whether every host `claim` matches is one an allowed pattern matches.
    pub fn allows_host(&self, claim: &str) -> bool {
        self.allow_hosts.iter().any(|p| covers(p, claim))
    }
}

/// `pattern` matches every name `claim` matches. `*.s` matches names with
/// one or more labels before `.s`, so it covers `x.s` and `*.s`, `*.x.s`.
fn covers(pattern: &str, claim: &str) -> bool {
    match pattern.strip_prefix("*.") {
        None => pattern == claim,
        Some(suffix) => {
            let name = claim.strip_prefix("*.").unwrap_or(claim);
            name == suffix && claim.starts_with("*.")
                || name
                    .strip_suffix(suffix)
                    .is_some_and(|head| head.len() > 1 && head.ends_with('.'))
        }
    }
}

/// `*` or `prefix/*`: an id that takes every model no one else serves.
pub fn is_model_pattern(id: &str) -> bool {
    id == "*" || id.ends_with("/*")
}

/// Who goes first when two resources claim the same thing: trusted
/// namespaces, then the older resource, then namespace/name.
fn precedence<'a>(
    trust: &Trust,
    a: &'a Agent,
) -> (bool, bool, Option<&'a str>, &'a str, &'a str, &'a str) {
    (
        !trust.trusts(&a.namespace),
        a.created.is_none(),
        a.created.as_deref(),
        a.namespace.as_str(),
        a.name.as_str(),
        a.source.as_str(),
    )
}

fn since(a: &Agent) -> String {
    match &a.created {
        Some(t) => format!("created {t}"),
        None => "no creationTimestamp".to_string(),
    }
}

/// The agents with the claims `trust` grants them, in precedence order
/// (the caller sorts them for output); a warning for each claim or entry
/// not granted.
pub fn grant(mut agents: Vec<Agent>, trust: &Trust, warnings: &mut Vec<String>) -> Vec<Agent> {
    agents.sort_by(|a, b| precedence(trust, a).cmp(&precedence(trust, b)));
    let mut granted: Vec<Agent> = Vec::with_capacity(agents.len());
    let mut ids: BTreeMap<String, usize> = BTreeMap::new();
    for agent in agents {
        match ids.get(&agent.id()).and_then(|&i| granted.get(i)) {
            Some(first) => warnings.push(format!(
                "{}: left out: entry {} is already generated from {} ({}), which goes first \
                 (trusted namespaces, then the older resource)",
                agent.source,
                agent.id(),
                first.source,
                since(first)
            )),
            None => {
                ids.insert(agent.id(), granted.len());
                granted.push(agent);
            }
        }
    }
    // Every agent entry is model `namespace/name`: never someone else's.
    let own_ids: BTreeMap<String, String> = granted
        .iter()
        .filter(|a| a.kind == Kind::Agent)
        .map(|a| (a.id(), a.source.clone()))
        .collect();
    let mut models: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut hosts: BTreeMap<String, (String, String)> = BTreeMap::new();
    for agent in &mut granted {
        let trusted = trust.trusts(&agent.namespace);
        let source = agent.source.clone();
        let created = since(agent);
        let claims = std::mem::take(&mut agent.models);
        for claim in claims {
            let why = if is_model_pattern(&claim.value) && !trusted {
                Some(format!(
                    "a pattern id takes every model no one else serves: only a --trust-namespace \
                     may claim one ({} is not trusted)",
                    agent.namespace
                ))
            } else if let Some(owner) = own_ids
                .get(&claim.value)
                .filter(|_| claim.value != agent.id())
            {
                Some(format!("it is the agent id of {owner}"))
            } else if let Some((first, when)) = models.get(&claim.value) {
                Some(format!(
                    "{first} ({when}) claims it and goes first (trusted namespaces, then the \
                     older resource)"
                ))
            } else {
                None
            };
            match why {
                Some(why) => warnings.push(not_granted(&source, &claim, "model id", &why)),
                None => {
                    models.insert(claim.value.clone(), (source.clone(), created.clone()));
                    agent.models.push(claim);
                }
            }
        }
        let claims = std::mem::take(&mut agent.hosts);
        for claim in claims {
            let host = claim.value.to_ascii_lowercase();
            let why = if !trust.allows_host(&host) {
                Some(if trust.allow_hosts.is_empty() {
                    "no --allow-hosts is given, so no resource may claim a host".to_string()
                } else {
                    format!("not within --allow-hosts {}", trust.allow_hosts.join(","))
                })
            } else if host.starts_with("*.") && !trusted {
                Some(format!(
                    "a *. host takes every name below it: only a --trust-namespace may claim one \
                     ({} is not trusted)",
                    agent.namespace
                ))
            } else if let Some((first, when)) = hosts.get(&host) {
                Some(format!(
                    "{first} ({when}) claims it and goes first (trusted namespaces, then the \
                     older resource)"
                ))
            } else {
                None
            };
            match why {
                Some(why) => warnings.push(not_granted(&source, &claim, "host", &why)),
                None => {
                    hosts.insert(host.clone(), (source.clone(), created.clone()));
                    agent.hosts.push(Claim {
                        value: host,
                        field: claim.field,
                    });
                }
            }
        }
    }
    granted
}

fn not_granted(source: &str, claim: &Claim, what: &str, why: &str) -> String {
    format!(
        "{source}: {}: {what} {:?} not granted, {why}; the entry is generated without it",
        claim.field, claim.value
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns_cover_names_below_them_only() {
        assert!(covers("*.agents.example.com", "a.agents.example.com"));
        assert!(covers("*.agents.example.com", "a.b.agents.example.com"));
        assert!(covers("*.agents.example.com", "*.agents.example.com"));
        assert!(covers("*.agents.example.com", "*.x.agents.example.com"));
        assert!(!covers("*.agents.example.com", "agents.example.com"));
        assert!(!covers("*.agents.example.com", "*.example.com"));
        assert!(!covers("*.agents.example.com", "evilagents.example.com"));
        assert!(!covers("*.agents.example.com", "*.com"));
        assert!(covers("a.example.com", "a.example.com"));
        assert!(!covers("a.example.com", "*.example.com"));
        assert_eq!(
            Trust::parse_host_pattern("*.Agents.example.com"),
            Ok("*.agents.example.com".to_string())
        );
        for bad in ["", "*", "*.", "a..b", "a/b", "a.*.b", "a b"] {
            assert!(Trust::parse_host_pattern(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn model_patterns() {
        assert!(is_model_pattern("*"));
        assert!(is_model_pattern("openai/*"));
        assert!(!is_model_pattern("gpt-4o"));
        assert!(!is_model_pattern("a*"));
    }
}
