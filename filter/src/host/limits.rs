//! Limits in the host: local buckets in Proxy-Wasm shared data (shared by
//! every worker of this Envoy), and global limits the rate limit service
//! decides. Trouble with either fails open by default: a broken limiter must
//! not take the agents down with it.

use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{Action, BufferType, Status};

use super::active::Active;
use super::{abi, now_nanos, Stream};
use crate::client_key;
use crate::config::{FailureMode, Per, RequestRate, Scope, TokenBudget};
use crate::observe::Refusal;
use crate::ratelimit::{self, Bucket, BucketSpec, ClientSlot, SharedStore, StoreError};
use crate::reply::{self as replies, LimitStatus, Limited, LocalReply};
use crate::rls::{self, Subject, Verdict};
use crate::stats::Stat;
use crate::usage::Metered;

/// The token budget an answer's usage settles.
pub enum Budget {
    /// A local bucket: `held` tokens were taken at admission.
    Local {
        entry: usize,
        bucket: LocalBucket,
        spec: BucketSpec,
        held: u64,
        /// Prompt estimate (a quarter of the body read, else 0).
        prompt: u64,
    },
    /// The rate limit service keeps it: the usage is reported.
    Global {
        entry: usize,
        agent: String,
        kind: &'static str,
        client: Option<String>,
        prompt: u64,
    },
}

/// A local bucket: an entry's own (also what requests without a client
/// value of a per-client entry share), or a client's slot.
pub enum LocalBucket {
    Key(String),
    Client(ClientSlot),
}

impl LocalBucket {
    fn bucket(&self) -> Bucket<'_> {
        match self {
            LocalBucket::Key(key) => Bucket::Key(key),
            LocalBucket::Client(slot) => Bucket::Client(slot),
        }
    }
}

/// Makes the local buckets of every entry that do not exist yet, when a
/// configuration is applied: the entry's own buckets, full, and for a
/// per-client entry its pages of client slots. Shared data has no
/// create-if-absent: workers racing on a bucket's very first request could
/// each write it, the later write wiping what the earlier admitted. Made
/// here, before any request, a bucket is only ever changed by
/// compare-and-swap (README: Rate limiting).
pub(super) fn create_entry_buckets(active: &Active) {
    let Some(now) = now_nanos() else {
        return;
    };
    for e in &active.plan.entries {
        create_tool_buckets(active, e, now);
        let Some(limit) = &e.rate_limit else {
            continue;
        };
        let Scope::Local { requests, tokens } = &limit.scope else {
            continue;
        };
        let base = format!("{}/{}", active.key_prefix, e.id);
        let buckets = [
            requests.as_ref().map(|r| ("requests", request_spec(r))),
            tokens.as_ref().map(|t| ("tokens", token_spec(t))),
        ];
        for (what, spec) in buckets.into_iter().flatten() {
            let key = format!("{base}/{what}");
            if let Err(e) = ratelimit::create_full(&HostStore, &key, spec, now) {
                log::warn!("cannot create the bucket {key}: {e:?}");
            }
            if limit.per != Per::Entry {
                let pages = active.client_pages();
                if let Err(e) = ratelimit::create_client_pages(&HostStore, &key, pages, spec) {
                    log::warn!("cannot create the client pages of {key}: {e:?}");
                }
            }
        }
    }
}

/// The buckets of tools a limit names exactly (`…/tools/{limit}/e{i}`):
/// known up front, so created full before any call, like an entry's. Tools a
/// wildcard matches get their slot's bucket on first use.
fn create_tool_buckets(active: &Active, e: &crate::config::Entry, now: u64) {
    let Some(rules) = e.mcp.as_deref() else {
        return;
    };
    for (index, limit) in rules.limits.iter().enumerate() {
        let spec = request_spec(&limit.rate);
        for (i, _) in limit
            .patterns
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.wildcard)
        {
            let key = format!("{}/{}/tools/{index}/e{i}", active.key_prefix, e.id);
            if let Err(err) = ratelimit::create_full(&HostStore, &key, spec, now) {
                log::warn!("cannot create the bucket {key}: {err:?}");
            }
        }
    }
}

pub(super) fn request_spec(rate: &RequestRate) -> BucketSpec {
    BucketSpec {
        capacity: f64::from(rate.burst),
        rate_per_second: rate.requests_per_second,
    }
}

fn token_spec(budget: &TokenBudget) -> BucketSpec {
    BucketSpec {
        capacity: budget.per_minute as f64,
        rate_per_second: budget.per_minute as f64 / 60.0,
    }
}

impl Stream {
    /// Draws from the entry's local buckets: the token budget first (a hold
    /// of `estimate`, or the configured reserve), then the request bucket.
    pub(super) fn admit_locally(
        &mut self,
        active: &Active,
        entry: usize,
        pairs: &[(&str, &[u8])],
        estimate: Option<u64>,
        prompt: u64,
    ) -> Result<(), (Refusal, LocalReply)> {
        let Some(e) = active.plan.entries.get(entry) else {
            return Ok(());
        };
        let Some(limit) = &e.rate_limit else {
            return Ok(());
        };
        let Scope::Local { requests, tokens } = &limit.scope else {
            return Ok(());
        };
        let Some(now) = now_nanos() else {
            return Ok(());
        };
        let client = client_value(&active.plan, &limit.per, pairs, self.claims());
        let bucket_of = |what: &str| {
            let key = format!("{}/{}/{what}", active.key_prefix, e.id);
            match (&client, active.secret()) {
                (Some(c), Some(secret)) => LocalBucket::Client(ratelimit::client_slot(
                    &key,
                    c,
                    &secret,
                    active.client_pages(),
                )),
                _ => LocalBucket::Key(key),
            }
        };
        if let Some(budget) = tokens {
            let spec = token_spec(budget);
            let tokens = estimate.unwrap_or(budget.reserve).min(budget.per_minute);
            let bucket = bucket_of("tokens");
            match ratelimit::hold(&HostStore, bucket.bucket(), spec, tokens as f64, now) {
                Ok(o) => {
                    count_conflicts(active, entry, o.cas_retries);
                    if !o.allowed {
                        return Err((
                            Refusal::Tokens,
                            replies::rate_limited(
                                Limited::Tokens,
                                &status_of(budget.per_minute, &o),
                            ),
                        ));
                    }
                    self.token_status = Some(status_of(budget.per_minute, &o));
                    self.budget = Some(Budget::Local {
                        entry,
                        bucket,
                        spec,
                        held: tokens,
                        prompt,
                    });
                }
                Err(e) => log::warn!("token budget unavailable, admitting: {e:?}"),
            }
        }
        if let Some(rate) = requests {
            let spec = request_spec(rate);
            let bucket = bucket_of("requests");
            match ratelimit::acquire(&HostStore, bucket.bucket(), spec, 1.0, now) {
                Ok(o) => {
                    count_conflicts(active, entry, o.cas_retries);
                    if !o.allowed {
                        // A refused request takes nothing: give the hold back.
                        if let Some(Budget::Local {
                            bucket, spec, held, ..
                        }) = &self.budget
                        {
                            let refund = -(*held as f64);
                            let _ =
                                ratelimit::debit(&HostStore, bucket.bucket(), *spec, refund, now);
                        }
                        self.budget = None;
                        self.token_status = None;
                        return Err((
                            Refusal::Requests,
                            replies::rate_limited(
                                Limited::Requests,
                                &status_of(u64::from(rate.burst), &o),
                            ),
                        ));
                    }
                    self.limit_status = Some(status_of(u64::from(rate.burst), &o));
                }
                Err(e) => log::warn!("rate limit bucket unavailable, admitting: {e:?}"),
            }
        }
        active.bump(entry, Stat::RateLimitAdmitted, 1);
        Ok(())
    }

    pub(super) fn is_global(&self, active: &Active, entry: usize) -> bool {
        active
            .plan
            .entries
            .get(entry)
            .and_then(|e| e.rate_limit.as_ref())
            .is_some_and(|l| matches!(l.scope, Scope::Global { .. }))
    }

    /// Asks the rate limit service about a request of a global entry and
    /// pauses it until the answer.
    pub(super) fn ask_limit_service(
        &mut self,
        active: &Active,
        entry: usize,
        pairs: &[(&str, &[u8])],
        prompt: u64,
    ) -> Action {
        let (Some(service), Some(target), Some(e)) = (
            &active.plan.rate_limit_service,
            &active.limit_service,
            active.plan.entries.get(entry),
        ) else {
            return Action::Continue;
        };
        let Some(limit) = &e.rate_limit else {
            return Action::Continue;
        };
        let tokens = matches!(limit.scope, Scope::Global { tokens: true });
        let client = client_value(&active.plan, &limit.per, pairs, self.claims())
            .map(|v| rls::client_value(&service.domain, &v));
        let subject = Subject {
            agent: &e.id,
            kind: e.kind.as_str(),
            client: client.as_deref(),
        };
        let message = rls::admission(&service.domain, &subject, tokens);
        if tokens {
            self.budget = Some(Budget::Global {
                entry,
                agent: e.id.clone(),
                kind: e.kind.as_str(),
                client: client.clone(),
                prompt,
            });
        }
        // The SDK's dispatcher must learn the token to route the answer back
        // here. It panics on a status it does not expect; Envoy answers
        // BadArgument only for a GrpcService it cannot build a client for,
        // and the one built from a checked cluster name is well-formed.
        let Ok(target) = std::str::from_utf8(target) else {
            // Only a very long cluster name (about 120 bytes) encodes so.
            let why = "rate_limit_service.cluster too long for the SDK's gRPC call";
            return self.limit_service_failed(active, entry, why);
        };
        match hostcalls::dispatch_grpc_call(
            target,
            rls::SERVICE,
            rls::METHOD,
            Vec::new(),
            Some(&message),
            Duration::from_millis(service.timeout_ms),
        ) {
            Ok(token) => {
                self.awaiting_limit = Some(token);
                Action::Pause
            }
            Err(status) => {
                let why = format!("call not placed: {status:?}");
                self.limit_service_failed(active, entry, &why)
            }
        }
    }

    /// The rate limit service's answer (or failure) for a paused request.
    pub(super) fn on_limit_answer(&mut self, token: u32, grpc_status: u32, size: usize) {
        if self.awaiting_limit != Some(token) {
            return;
        }
        self.awaiting_limit = None;
        let (Some(active), Some(entry)) = (self.active.clone(), self.entry) else {
            let _ = abi::resume(abi::REQUEST);
            return;
        };
        let body = if size > 0 {
            abi::get_buffer(BufferType::GrpcReceiveBuffer, 0, size).unwrap_or_default()
        } else {
            Vec::new()
        };
        match rls::verdict(grpc_status, &body) {
            Verdict::Admit(status) => {
                self.limit_status = status;
                active.bump(entry, Stat::RateLimitAdmitted, 1);
                self.resume_admitted();
            }
            Verdict::Deny {
                what,
                status,
                retry_after_secs,
            } => {
                self.budget = None;
                // A request the service refuses holds no in-flight slot
                // and no tool token.
                self.undo_admission();
                active.bump(entry, Stat::RateLimited, 1);
                self.log_refusal(match what {
                    Limited::Requests => Refusal::GlobalRequests,
                    Limited::Tokens => Refusal::GlobalTokens,
                });
                self.reply(&rls::refusal(what, status.as_ref(), retry_after_secs));
            }
            Verdict::Failed(why) => {
                if self.limit_service_failed(&active, entry, &why) == Action::Continue {
                    self.resume_admitted();
                }
            }
        }
    }

    /// Lets an admitted request go on, or, while its body is still arriving
    /// at this filter, leaves that to the body's next chunk (its last, for a
    /// chat for an A2A agent, which must be translated whole first;
    /// `request_body`): Envoy 1.36 loses the chunk after a resume in
    /// mid-body, and a chat resumed now would go on untranslated. Only when body chunks reach a
    /// paused filter at all (`allow_on_headers_stop_iteration`): without it
    /// Envoy holds the body itself and hands it over whole after the resume,
    /// where a translation still happens.
    fn resume_admitted(&mut self) {
        let body_arrives = self.body_while_paused
            || self
                .active
                .as_ref()
                .is_some_and(|a| self.vm.bodies_arrive(a));
        if !self.request_complete && body_arrives {
            self.resume_after_body = true;
            return;
        }
        let _ = abi::resume(abi::REQUEST);
    }

    /// The service could not decide: `failure_mode` does. Continue means
    /// admit; otherwise the 503 was sent.
    fn limit_service_failed(&mut self, active: &Active, entry: usize, why: &str) -> Action {
        active.bump(entry, Stat::LimitServiceFailures, 1);
        let deny = active
            .plan
            .rate_limit_service
            .as_ref()
            .is_some_and(|s| s.failure_mode == FailureMode::Deny);
        log::warn!(
            "rate limit service unavailable ({why}): {}",
            if deny { "denying" } else { "admitting" }
        );
        if deny {
            self.budget = None;
            self.log_refusal(Refusal::LimitServiceDown);
            self.undo_admission();
            return self.reply(&replies::limit_service_unavailable());
        }
        Action::Continue
    }

    /// After the response: settles the token budget with what the answer
    /// is charged (`Metered::charge`: its reported usage; a stream without
    /// usage at least its hold and prompt). A local hold is corrected by the
    /// difference (an answer that says nothing keeps its hold); a global
    /// budget is told the tokens, without waiting for its answer.
    pub(super) fn settle_budget(&mut self) {
        let Some(budget) = self.budget.take() else {
            return;
        };
        // `on_log` finished the meter (if the answer's end had not).
        let metered = self.metered.take().unwrap_or(Metered::Unknown);
        let Some(active) = self.active.clone() else {
            return;
        };
        match budget {
            Budget::Local {
                entry,
                bucket,
                spec,
                held,
                prompt,
            } => {
                let Some(tokens) = metered.charge(held, prompt) else {
                    return;
                };
                let Some(now) = now_nanos() else {
                    return;
                };
                let cost = tokens as f64 - held as f64;
                match ratelimit::debit(&HostStore, bucket.bucket(), spec, cost, now) {
                    Ok(o) => {
                        active.bump(
                            entry,
                            Stat::TokensDebited,
                            i64::try_from(tokens).unwrap_or(i64::MAX),
                        );
                        count_conflicts(&active, entry, o.cas_retries);
                    }
                    Err(e) => log::warn!("cannot settle {tokens} tokens: {e:?}"),
                }
            }
            Budget::Global {
                entry,
                agent,
                kind,
                client,
                prompt,
            } => {
                let Some(tokens) = metered.charge(0, prompt).filter(|t| *t > 0) else {
                    return;
                };
                let (Some(service), Some(target)) =
                    (&active.plan.rate_limit_service, &active.limit_service)
                else {
                    return;
                };
                let subject = Subject {
                    agent: &agent,
                    kind,
                    client: client.as_deref(),
                };
                let message = rls::usage_report(&service.domain, &subject, tokens);
                let timeout = u32::try_from(service.timeout_ms).unwrap_or(u32::MAX);
                match abi::grpc_call_unawaited(target, rls::SERVICE, rls::METHOD, &message, timeout)
                {
                    Ok(_) => active.bump(
                        entry,
                        Stat::TokensDebited,
                        i64::try_from(tokens).unwrap_or(i64::MAX),
                    ),
                    Err(status) => {
                        active.bump(entry, Stat::LimitServiceFailures, 1);
                        log::warn!("cannot report {tokens} tokens: host status {status}");
                    }
                }
            }
        }
    }
}

pub(super) fn count_conflicts(active: &Active, entry: usize, conflicts: u32) {
    if conflicts > 0 {
        active.bump(entry, Stat::CasRetries, i64::from(conflicts));
    }
}

pub(super) fn status_of(limit: u64, o: &ratelimit::Outcome) -> LimitStatus {
    LimitStatus {
        limit,
        remaining: o.remaining,
        reset_secs: o.reset_secs,
        retry_after_secs: o.retry_after_secs.max(1),
    }
}

/// The client a per-client limit counts, in its canonical form
/// (`crate::client_key`): the header's value (a request repeating it was
/// refused before any limit: `repeated_key_header`), the downstream
/// address without its port (an IPv6 client by its network), or a claim of
/// the verified identity. A request without one shares the entry's own
/// bucket.
pub(super) fn client_value(
    plan: &crate::config::Plan,
    per: &Per,
    pairs: &[(&str, &[u8])],
    claims: Option<&crate::identity::claims::Claims>,
) -> Option<Vec<u8>> {
    match per {
        Per::Entry => None,
        Per::Header(name) => pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| client_key::canonical_value(v)),
        Per::ClientIp => client_ip().map(|ip| client_key::ip_client(&ip, plan.client_ip)),
        Per::Claim(name) => crate::identity::access::claim_key(claims, name),
    }
}

/// The downstream address without its port, as Envoy sees the client
/// (with `use_remote_address`, the TCP peer).
pub(super) fn client_ip() -> Option<String> {
    let addr = abi::get_property(&["source", "address"]).ok().flatten()?;
    let addr = String::from_utf8(addr).ok()?;
    Some(client_key::strip_port(&addr).to_string())
}

/// Proxy-Wasm shared data: one store per VM id, shared by every worker.
pub(super) struct HostStore;

impl SharedStore for HostStore {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        hostcalls::get_shared_data(key).map_err(|_| StoreError::Unavailable)
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        hostcalls::set_shared_data(key, Some(value), cas).map_err(|status| match status {
            Status::CasMismatch => StoreError::CasMismatch,
            _ => StoreError::Unavailable,
        })
    }
}
