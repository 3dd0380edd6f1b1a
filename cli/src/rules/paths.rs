//! The shorthand paths (`/{name}`) of a configuration: those the router
//! drops because of another entry, and those another entry's paths shadow
//! below them. A namespace named like an agent (`billing`, with an agent
//! `invoices`) has the path `/billing/invoices`, which is longer than the
//! shorthand `/billing` of an agent `billing` elsewhere: requests for
//! `/billing/invoices/…` meant for that agent go to `billing/invoices`.
//! Routing is deterministic (the longest prefix wins); this says so.

use std::collections::BTreeMap;

use agentroute::config::{Plan, ShorthandLoss};

use super::{entry_name, Level};

/// Warnings on the shorthands of `plan`: those dropped, those shadowed.
pub(super) fn shorthand_warnings(plan: &Plan) -> Vec<(Level, String)> {
    let mut out = Vec::new();
    for dropped in &plan.dropped_shorthands {
        let Some(entry) = plan.entries.get(dropped.entry) else {
            continue;
        };
        let why = match dropped.because {
            ShorthandLoss::SharedName { with } => {
                format!("{} has the same name", entry_name(plan, with))
            }
            ShorthandLoss::ExplicitPrefix {
                entry: owner,
                prefix,
            } => format!(
                "{} claims it as an explicit prefix (agents[{owner}].prefixes[{prefix}])",
                entry_name(plan, owner)
            ),
            ShorthandLoss::OpenAiSegment => {
                format!(
                    "{:?} is a segment of the OpenAI paths the gateway serves",
                    entry.name()
                )
            }
        };
        out.push((
            Level::Warning,
            format!(
                "{}: shorthand /{} dropped: {why}; the entry keeps its other paths",
                entry_name(plan, dropped.entry),
                entry.name()
            ),
        ));
    }
    out.extend(
        shadowed_shorthands(plan)
            .into_iter()
            .map(|w| (Level::Warning, w)),
    );
    out
}

/// One warning per entry whose live shorthand `/{name}` another entry's
/// layout paths (`/{name}/{other}`, `/{name}/{kind}/{other}`) lie below,
/// in the filter's own routing (the paths probed are routed by the plan).
pub fn shadowed_shorthands(plan: &Plan) -> Vec<String> {
    let mut by_namespace: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, e) in plan.entries.iter().enumerate() {
        by_namespace.entry(e.namespace()).or_default().push(i);
    }
    let mut out = Vec::new();
    for (i, e) in plan.entries.iter().enumerate() {
        let Some(others) = by_namespace.get(e.name()) else {
            continue;
        };
        let shorthand = format!("/{}", e.name());
        // Only a shorthand the router serves (not dropped, not a host).
        let probe = format!("{shorthand}/");
        let live = plan
            .route("", &probe)
            .is_some_and(|m| m.entry == i && m.prefix == shorthand);
        if !live {
            continue;
        }
        for &j in others.iter().filter(|&&j| j != i) {
            let Some(other) = plan.entries.get(j) else {
                continue;
            };
            let candidates = [
                format!("{shorthand}/{}/", other.name()),
                format!("{shorthand}/{}/{}/", other.kind.as_str(), other.name()),
            ];
            let mut taken: Vec<String> = Vec::new();
            for path in &candidates {
                if let Some(m) = plan.route("", path) {
                    if m.entry == j && m.prefix != shorthand && !taken.iter().any(|t| t == m.prefix)
                    {
                        taken.push(m.prefix.to_string());
                    }
                }
            }
            if taken.is_empty() {
                continue;
            }
            let below: Vec<String> = taken.iter().map(|p| format!("{p}/…")).collect();
            out.push(format!(
                "{}: shorthand {shorthand} is shadowed: {} go(es) to {}, not to this entry; \
                 its namespaced path /{}{shorthand} is not",
                entry_name(plan, i),
                below.join(" and "),
                entry_name(plan, j),
                e.namespace()
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::run;
    use super::super::Level;

    #[test]
    fn a_namespace_named_like_an_agent_shadows_its_shorthand() {
        let config = r#"{"agents": [
            {"name": "billing", "namespace": "team-a", "backend": "a"},
            {"name": "invoices", "namespace": "billing", "backend": "b"},
            {"name": "other", "namespace": "team-c", "backend": "c"}
        ]}"#;
        let report = run(&[("c.json", config)]);
        let warnings: Vec<String> = report
            .lines
            .iter()
            .filter(|l| l.level == Level::Warning)
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            warnings,
            ["c.json: warning: agents[0] (team-a/billing): shorthand /billing is shadowed: /billing/invoices/… and /billing/agent/invoices/… go(es) to agents[1] (billing/invoices), not to this entry; its namespaced path /team-a/billing is not"]
        );
        // Without the shorthand layout there is nothing to shadow.
        let no_shorthand = config.replacen('{', r#"{"layouts": ["kind", "namespaced"], "#, 1);
        let report = run(&[("c.json", &no_shorthand)]);
        assert_eq!(report.count(Level::Warning), 0, "{report}");
    }
}
