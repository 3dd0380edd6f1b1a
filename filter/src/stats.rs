//! Names of the per-entry Envoy stats the filter defines.
//!
//! Tags travel inside the stat name (`agentroute_requests_total.namespace.prod.agent.coordinator`);
//! the `stats_tags` rules in the shipped bootstrap turn them into Prometheus
//! labels: `agentroute_requests_total{namespace="prod",agent="coordinator"}`.
//! Names and namespaces are DNS-1123 labels, so they never hold a dot.

use crate::config::Entry;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    /// Requests dispatched to the entry.
    Requests,
    /// Requests for the entry the filter answered itself (400 dot-segments, ...).
    Refused,
    /// Upgraded (WebSocket) connections open now.
    ConnectionsActive,
}

impl Stat {
    pub const COUNT: usize = 3;

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn is_gauge(self) -> bool {
        self == Stat::ConnectionsActive
    }

    fn base(self) -> &'static str {
        match self {
            Stat::Requests => "agentroute_requests_total",
            Stat::Refused => "agentroute_refused_total",
            Stat::ConnectionsActive => "agentroute_connections_active",
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
