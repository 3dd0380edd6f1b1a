//! The observability options compiled: `observability.*` and
//! `openai.usage_metrics`. Defaults keep a configuration that names none of
//! them at the cost it had before (BENCHMARKS.md): every option here adds
//! host calls per request.

use super::contract::RawObservability;
use super::Entry;

/// What the filter reports about requests, beyond its request counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observe {
    /// Set the access-log properties (`observe::Field`) on matched requests.
    pub access_log: bool,
    /// Meter the answers of requests the OpenAI surface dispatched, and
    /// count tokens per entry and model.
    pub usage_metrics: bool,
    /// `x-envoy-upstream-alt-stat-name` per entry index; empty when
    /// `observability.upstream_stats` is off.
    pub upstream_stat_names: Vec<String>,
}

pub(super) fn compile(
    raw: Option<RawObservability>,
    usage_metrics: Option<bool>,
    entries: &[Entry],
) -> Observe {
    let raw = raw.unwrap_or_default();
    // Budgeted answers are metered anyway: counting their tokens per model
    // costs only the counters.
    let usage_metrics = usage_metrics.unwrap_or_else(|| entries.iter().any(Entry::meters_tokens));
    let upstream_stat_names = if raw.upstream_stats.unwrap_or(false) {
        entries
            .iter()
            .map(crate::observe::upstream_stat_name)
            .collect()
    } else {
        Vec::new()
    };
    Observe {
        access_log: raw.access_log.unwrap_or(false),
        usage_metrics,
        upstream_stat_names,
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Plan;

    fn plan(json: &str) -> Plan {
        Plan::from_json(json.as_bytes()).unwrap()
    }

    #[test]
    fn everything_is_off_unless_asked_or_a_budget_meters_anyway() {
        let p = plan(r#"{"agents": [{"name": "a", "backend": "b"}]}"#);
        assert!(!p.observe.access_log && !p.observe.usage_metrics);
        assert!(p.observe.upstream_stat_names.is_empty());

        let budgeted = r#"{"agents": [{"name": "a", "backend": "b"},
            {"name": "m", "backend": "m", "rate_limit": {"tokens_per_minute": 100}}]}"#;
        assert!(plan(budgeted).observe.usage_metrics);
        let global = r#"{"rate_limit_service": {"cluster": "rls"},
            "agents": [{"name": "m", "backend": "m", "rate_limit": {"scope": "global", "tokens": true}}]}"#;
        assert!(plan(global).observe.usage_metrics);
        let off = budgeted.replacen('{', r#"{"openai": {"usage_metrics": false},"#, 1);
        assert!(!plan(&off).observe.usage_metrics);
    }

    #[test]
    fn options_turn_on_one_by_one() {
        let p = plan(
            r#"{"observability": {"access_log": true, "upstream_stats": true},
                "openai": {"usage_metrics": true},
                "agents": [{"name": "a", "namespace": "n", "backend": "b"}]}"#,
        );
        assert!(p.observe.access_log && p.observe.usage_metrics);
        assert_eq!(
            p.observe.upstream_stat_names,
            ["agentroute.namespace.n.agent.a.kind.agent"]
        );
        let err = Plan::from_json(br#"{"observability": {"acess_log": true}}"#).unwrap_err();
        assert_eq!(err.to_string(), "observability.acess_log: unknown field");
    }
}
