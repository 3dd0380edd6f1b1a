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
}

impl Stat {
    pub const COUNT: usize = 10;

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
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn is_gauge(self) -> bool {
        self == Stat::ConnectionsActive
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
        }
    }

    pub fn name(self, entry: &Entry) -> String {
        format!(
            "{}.namespace.{}.agent.{}.kind.{}",
            self.base(),
            entry.namespace,
            entry.name,
            entry.kind.as_str()
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
            entry.namespace,
            entry.name,
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
    names.extend([TokenStat::Input.base(), TokenStat::Output.base(), VM_MEMORY]);
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
        names.dedup();
        assert_eq!(names.len(), Stat::COUNT + 3);
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
    }
}
