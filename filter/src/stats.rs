//! Names of the per-entry Envoy stats the filter defines.
//!
//! Tags travel inside the stat name (`agentroute_requests_total.namespace.prod.agent.coordinator`);
//! the `stats_tags` rules in the shipped bootstrap turn them into Prometheus
//! labels: `agentroute_requests_total{namespace="prod",agent="coordinator"}`.
//! Names and namespaces are DNS-1123 labels, so they never hold a dot.
//! Token counters add the model last (`...kind.modelapi.model.gpt-4.1`):
//! a model label may hold dots, and the shipped `model` rule reads it to
//! the end of the name (`observe::stat_safe` says what else is changed).

use crate::config::Entry;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stat {
    /// Requests dispatched to the entry.
    Requests,
    /// Requests for the entry the filter answered itself (400 dot-segments, ...).
    Refused,
    /// Upgraded (WebSocket) connections open now.
    ConnectionsActive,
    /// Requests of a rate-limited entry that its buckets admitted.
    RateLimitAdmitted,
    /// Requests answered 429 by the entry's request bucket or token budget.
    RateLimited,
    /// LLM tokens (`usage.total_tokens`) debited from the entry's budget.
    TokensDebited,
    /// Compare-and-swap conflicts retried on the shared buckets.
    CasRetries,
    /// Calls to the rate limit service that got no usable answer (or usage
    /// reports that could not be placed).
    LimitServiceFailures,
    /// Metered answers (token-budgeted, or counted by `openai.usage_metrics`)
    /// whose usage could not be read (compressed, or over the VM's metering memory).
    TokensUnmetered,
    /// Translated A2A streams cut short (an error event) because the VM's
    /// memory for translated streams was spent.
    TranslationsCut,
    /// Requests of a split entry sent to its stable backend.
    CanaryStable,
    /// Requests of a split entry sent to its canary backend.
    CanaryCanary,
    /// Requests of the entry in flight now, across the workers of this
    /// Envoy (recorded from the shared count on each tick).
    InFlight,
    /// Requests answered 429 by the entry's in-flight limit.
    ConcurrencyLimited,
    /// Backends of the entry (its own, its canary's and its failover
    /// backends) ejected now (recorded from shared data on each tick).
    EjectedBackends,
}

impl Stat {
    pub const COUNT: usize = 15;

    pub const ALL: [Stat; Stat::COUNT] = [
        Stat::Requests,
        Stat::Refused,
        Stat::ConnectionsActive,
        Stat::RateLimitAdmitted,
        Stat::RateLimited,
        Stat::TokensDebited,
        Stat::CasRetries,
        Stat::LimitServiceFailures,
        Stat::TokensUnmetered,
        Stat::TranslationsCut,
        Stat::CanaryStable,
        Stat::CanaryCanary,
        Stat::InFlight,
        Stat::ConcurrencyLimited,
        Stat::EjectedBackends,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn is_gauge(self) -> bool {
        matches!(
            self,
            Stat::ConnectionsActive | Stat::InFlight | Stat::EjectedBackends
        )
    }

    /// The stat's name without tags: its Prometheus name.
    pub fn base(self) -> &'static str {
        match self {
            Stat::Requests => "agentroute_requests_total",
            Stat::Refused => "agentroute_refused_total",
            Stat::ConnectionsActive => "agentroute_connections_active",
            Stat::RateLimitAdmitted => "agentroute_ratelimit_admitted_total",
            Stat::RateLimited => "agentroute_ratelimit_limited_total",
            Stat::TokensDebited => "agentroute_tokens_debited_total",
            Stat::CasRetries => "agentroute_ratelimit_cas_retries_total",
            Stat::LimitServiceFailures => "agentroute_ratelimit_service_failures_total",
            Stat::TokensUnmetered => "agentroute_tokens_unmetered_total",
            Stat::TranslationsCut => "agentroute_translations_cut_total",
            Stat::CanaryStable | Stat::CanaryCanary => "agentroute_canary_requests_total",
            Stat::InFlight => "agentroute_in_flight",
            Stat::ConcurrencyLimited => "agentroute_concurrency_limited_total",
            Stat::EjectedBackends => "agentroute_failover_ejected_backends",
        }
    }

    /// The side tag of a canary stat (`side="stable"`), as the bootstrap's
    /// fourth `stats_tags` rule reads it.
    fn side(self) -> Option<&'static str> {
        match self {
            Stat::CanaryStable => Some("stable"),
            Stat::CanaryCanary => Some("canary"),
            _ => None,
        }
    }

    pub fn name(self, entry: &Entry) -> String {
        let mut name = format!(
            "{}.namespace.{}.agent.{}.kind.{}",
            self.base(),
            entry.namespace(),
            entry.name(),
            entry.kind.as_str()
        );
        if let Some(side) = self.side() {
            name.push_str(".side.");
            name.push_str(side);
        }
        name
    }

    /// The canary stat of a side.
    pub fn canary(side: crate::canary::Side) -> Stat {
        match side {
            crate::canary::Side::Stable => Stat::CanaryStable,
            crate::canary::Side::Canary => Stat::CanaryCanary,
        }
    }
}

/// Per-tool stats of an MCP entry with tool rules. The `tool` tag is one
/// of the entry's configured names or wildcard patterns, or `other`
/// (`mcp::rules::ToolRules::labels`): bounded by the configuration, never
/// by the names clients send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ToolStat {
    /// `tools/call` requests forwarded to the server.
    Calls,
    /// Calls of a tool not allowed, answered by the filter.
    Refused,
    /// Calls refused 429 by the tool's limit.
    Limited,
}

impl ToolStat {
    fn base(self) -> &'static str {
        match self {
            ToolStat::Calls => "agentroute_mcp_tool_calls_total",
            ToolStat::Refused => "agentroute_mcp_tool_refused_total",
            ToolStat::Limited => "agentroute_mcp_tool_limited_total",
        }
    }

    /// `agentroute_mcp_tool_calls_total.namespace.N.agent.A.kind.mcp.tool.T`.
    pub fn name(self, entry: &Entry, label: &str) -> String {
        format!(
            "{}.namespace.{}.agent.{}.kind.{}.tool.{}",
            self.base(),
            entry.namespace(),
            entry.name(),
            entry.kind.as_str(),
            label
        )
    }
}

/// Per-backend stats of an entry with failover. The `backend` tag is one
/// of the entry's configured backends (made stat-safe), so the label set
/// is bounded by the configuration; it is the last tag and read to the end
/// of the name (a backend, an Envoy cluster name, may hold dots).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailoverStat {
    /// The backend was ejected (skipped by new requests for a while).
    Ejections,
    /// A failed request was retried on this backend.
    Retries,
}

impl FailoverStat {
    pub fn base(self) -> &'static str {
        match self {
            FailoverStat::Ejections => "agentroute_failover_ejections_total",
            FailoverStat::Retries => "agentroute_failover_retries_total",
        }
    }

    /// `agentroute_failover_ejections_total.namespace.N.agent.A.kind.K.backend.B`.
    pub fn name(self, entry: &Entry, backend: &str) -> String {
        format!(
            "{}.namespace.{}.agent.{}.kind.{}.backend.{}",
            self.base(),
            entry.namespace(),
            entry.name(),
            entry.kind.as_str(),
            crate::observe::stat_safe(backend)
        )
    }
}

/// Token counters per entry and model (`openai.usage_metrics`): the
/// counterpart of OpenTelemetry's `gen_ai.client.token.usage` with
/// `gen_ai.token.type` `input` or `output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenStat {
    /// `prompt_tokens` (chat, completions, embeddings) or `input_tokens`
    /// (Responses).
    Input,
    /// `completion_tokens` or `output_tokens`.
    Output,
}

impl TokenStat {
    pub fn base(self) -> &'static str {
        match self {
            TokenStat::Input => "agentroute_input_tokens_total",
            TokenStat::Output => "agentroute_output_tokens_total",
        }
    }

    /// The stat of `entry` and a model label (`observe::model_label`).
    pub fn name(self, entry: &Entry, model: &str) -> String {
        format!(
            "{}.namespace.{}.agent.{}.kind.{}.model.{model}",
            self.base(),
            entry.namespace(),
            entry.name(),
            entry.kind.as_str()
        )
    }
}

/// The gauge of the largest VM memory of the plugin's workers.
pub const VM_MEMORY: &str = "agentroute_vm_memory_bytes";

/// Every Prometheus metric name the filter defines (what a dashboard may
/// query besides Envoy's own).
pub fn prometheus_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Stat::ALL.iter().map(|s| s.base()).collect();
    // The two sides of a canary split share one name.
    names.dedup();
    names.extend([TokenStat::Input.base(), TokenStat::Output.base(), VM_MEMORY]);
    names.extend([ToolStat::Calls, ToolStat::Refused, ToolStat::Limited].map(ToolStat::base));
    names.extend([FailoverStat::Ejections, FailoverStat::Retries].map(FailoverStat::base));
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Plan;

    #[test]
    fn every_stat_is_listed_once_and_indexes_its_slot() {
        for (i, stat) in Stat::ALL.iter().enumerate() {
            assert_eq!(stat.index(), i);
        }
        let mut names = prometheus_names();
        names.sort_unstable();
        let listed = names.len();
        names.dedup();
        assert_eq!(names.len(), listed, "a name listed twice");
        // The canary sides share a name; tokens (2), VM memory, the
        // MCP tool stats (3) and the failover stats (2) have their own.
        assert_eq!(names.len(), Stat::COUNT - 1 + 3 + 3 + 2);
    }

    #[test]
    fn token_stats_put_the_model_last() {
        let plan = Plan::from_json(
            br#"{"agents":[{"name":"llm","namespace":"models","kind":"modelapi","backend":"b"}]}"#,
        )
        .unwrap();
        assert_eq!(
            TokenStat::Input.name(&plan.entries[0], "gpt-4.1"),
            "agentroute_input_tokens_total.namespace.models.agent.llm.kind.modelapi.model.gpt-4.1"
        );
        assert_eq!(
            FailoverStat::Ejections.name(&plan.entries[0], "outbound|80||gpt.svc"),
            "agentroute_failover_ejections_total.namespace.models.agent.llm.kind.modelapi.backend.outbound_80__gpt.svc"
        );
    }
}
