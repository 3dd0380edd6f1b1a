//! Observability in the host: the access-log properties a stream sets
//! (what to write is `crate::observe`'s), and the usage of a metered
//! answer turned into token counters and properties.

use super::Stream;
use crate::canary::Side;
use crate::observe::{self, Field, Refusal};
use crate::stats::TokenStat;
use crate::usage::{Metered, UsageMeter};

impl Stream {
    /// `observability.access_log` is on: the properties are worth their
    /// host calls.
    pub(super) fn logs_fields(&self) -> bool {
        self.active
            .as_ref()
            .is_some_and(|a| a.plan.observe.access_log)
    }

    /// Writes access-log properties; a failure loses a log field, never the
    /// request.
    pub(super) fn set_fields<V: AsRef<str>>(&self, fields: &[(Field, V)]) {
        for (field, value) in fields {
            if let Err(status) = super::abi::set_property(
                field.property(),
                observe::log_safe(value.as_ref()).as_bytes(),
            ) {
                log::debug!("cannot set {}: host status {status}", field.property());
            }
        }
    }

    /// The entry (and for a forwarded request its backend and model) of a
    /// request, for the access log.
    pub(super) fn log_dispatch(
        &self,
        entry: usize,
        backend: bool,
        model: Option<&str>,
        canary: Option<Side>,
    ) {
        if !self.logs_fields() {
            return;
        }
        let Some(e) = self.active.as_ref().and_then(|a| a.plan.entries.get(entry)) else {
            return;
        };
        // Failover (when configured) adds the backends tried here:
        // `Field::FailoverRetries`, `Field::BackendsTried`.
        let backend = backend.then_some(e.backend.as_str());
        self.set_fields(&observe::dispatch_fields(e, backend, model, canary));
        if crate::identity::uses_claims(e) {
            let plan = self.active.as_ref().map(|a| &a.plan);
            let subject = plan
                .and_then(|p| crate::identity::access::subject(self.claims(), &p.identity.subject));
            if let Some(subject) = subject {
                let subject = observe::truncate(subject, crate::identity::MAX_LOGGED_SUBJECT);
                self.set_fields(&[(Field::Subject, subject)]);
            }
        }
    }

    /// The limit that refused the request, for the access log.
    pub(super) fn log_refusal(&self, refusal: Refusal) {
        if self.logs_fields() {
            self.set_fields(&[(Field::Limited, refusal.as_str())]);
        }
    }

    /// Whether the answer's usage is read: a token budget settles it, or
    /// token counters count it.
    pub(super) fn meters_answer(&self) -> bool {
        self.budget.is_some() || self.model_label.is_some()
    }

    /// Ends the answer's meter (at its last byte, or when the stream ends
    /// without one): counts its tokens per model and, while the access log
    /// is still to come, sets its token properties. What it found stays for
    /// the token budget (`settle_budget`).
    pub(super) fn finish_meter(&mut self, logged_after: bool) {
        let Some(meter) = self.meter.take() else {
            return;
        };
        self.release_meter();
        self.record_metered(UsageMeter::finish(meter), logged_after);
    }

    /// What an answer told of its tokens: kept for the token budget
    /// (`settle_budget`), counted per model and, while the access log is
    /// still to come, set as its token properties.
    pub(super) fn record_metered(&mut self, metered: Metered, logged_after: bool) {
        self.metered = Some(metered);
        let Metered::Reported(usage) = metered else {
            return;
        };
        let (Some(active), Some(entry)) = (self.active.clone(), self.entry) else {
            return;
        };
        if active.plan.observe.usage_metrics {
            let model = self.model_label.as_deref().unwrap_or(observe::NO_MODEL);
            for (stat, tokens) in [
                (TokenStat::Input, usage.input),
                (TokenStat::Output, usage.output),
            ] {
                if let Some(tokens) = tokens {
                    active.count_tokens(entry, model, stat, tokens);
                }
            }
        }
        if logged_after && active.plan.observe.access_log {
            self.set_fields(&observe::usage_fields(usage));
        }
    }
}
