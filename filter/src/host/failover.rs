//! Failover in the host: the backends' ejection records written to shared
//! data and told to the other VMs through their queues
//! (`crate::failover::peers`), the answer of a request of an entry with
//! failover judged (`crate::failover` says what counts), and the
//! ejected-backends gauge. Every host call goes through `abi`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::BuildHasher;

use proxy_wasm::types::MapType;

use super::active::Active;
use super::{abi, now_nanos, Stream};
use crate::config::Entry;
use crate::failover::peers::{self, Ejections};
use crate::failover::{self, Ejected, Failover, Health, Outcome};
use crate::observe::Field;
use crate::ratelimit::{SharedStore, StoreError};
use crate::stats::{FailoverStat, Stat};

/// The ejection records this VM knows: a request asks memory, not shared
/// data (no host call unless a record exists, then the clock).
pub(super) struct HostHealth<'a> {
    pub ejections: &'a RefCell<Ejections>,
}

impl<'a> HostHealth<'a> {
    pub fn of(active: &'a Active) -> Self {
        HostHealth {
            ejections: &active.ejections,
        }
    }
}

impl Health for HostHealth<'_> {
    fn ejected_until(&self, backend: &str) -> Option<u64> {
        self.ejections.borrow().until(backend)
    }

    fn now_nanos(&self) -> u64 {
        now_nanos().unwrap_or(0)
    }
}

thread_local! {
    /// This VM's queue id per plugin (key prefix), drawn once: a new
    /// configuration registers the same queue again rather than leaving
    /// one behind.
    static QUEUE_IDS: RefCell<HashMap<String, u64>> = RefCell::new(HashMap::new());
}

/// A plan with failover entries starts: this VM joins the plugin's peers
/// (its queue in the registry), then loads the records of the plan's
/// backends from shared data — in that order, so no ejection is missed
/// (`failover::peers`).
pub(super) fn start(active: &Active) {
    if active.failing_over().is_empty() {
        return;
    }
    let prefix = &active.key_prefix;
    let id = QUEUE_IDS.with(|ids| {
        *ids.borrow_mut()
            .entry(prefix.clone())
            .or_insert_with(|| std::collections::hash_map::RandomState::new().hash_one(0u8))
    });
    match abi::register_shared_queue(&peers::queue_name(prefix, id)) {
        Ok(queue) => {
            active.peer_queue.set(Some(queue));
            heartbeat(active);
        }
        // It learns from its own failures and reloads on the tick.
        Err(status) => log::warn!("failover: cannot register a queue: host status {status}"),
    }
    load(active);
}

/// Reads every record of the plan's backends into this VM's copy.
fn load(active: &Active) {
    let entries = active
        .failing_over()
        .iter()
        .filter_map(|&i| active.plan.entries.get(i));
    let mut ejections = active.ejections.borrow_mut();
    for backend in peers::backends_to_load(entries) {
        let key = failover::record_key(&active.key_prefix, backend);
        if let Ok((value, _)) = abi::get_shared_data(&key) {
            if let Some(until) = failover::decode(value.as_deref()) {
                ejections.note(backend, until);
            }
        }
    }
}

/// Renews this VM's heartbeat in the registry (stale peers dropped).
fn heartbeat(active: &Active) {
    let Some(queue) = active.peer_queue.get() else {
        return;
    };
    let key = peers::registry_key(&active.key_prefix);
    let now = unix_secs();
    for _ in 0..4 {
        let Ok((value, cas)) = abi::get_shared_data(&key) else {
            return;
        };
        let joined = peers::join(value.as_deref(), queue, now);
        match abi::set_shared_data(&key, &joined, cas) {
            Ok(()) => return,
            Err(abi::CAS_MISMATCH) => continue,
            Err(status) => {
                log::warn!("failover: cannot write the peer registry: host status {status}");
                return;
            }
        }
    }
}

/// Tells every other live VM of the plugin that `backend` is ejected until
/// `until`.
fn tell_peers(active: &Active, backend: &str, until: u64) {
    let key = peers::registry_key(&active.key_prefix);
    let Ok((value, _)) = abi::get_shared_data(&key) else {
        return;
    };
    let message = peers::encode_message(backend, until);
    for queue in peers::others(value.as_deref(), active.peer_queue.get(), unix_secs()) {
        // A VM gone since its last heartbeat: nobody reads it; it drops out
        // of the registry soon.
        if let Err(status) = abi::enqueue_shared_queue(queue, &message) {
            log::debug!("failover: queue {queue} refused a message: host status {status}");
        }
    }
}

/// Another VM ejected a backend: this VM's copy learns it. At most
/// `MAX_MESSAGES` per call (the rest wait for the next call).
pub(super) fn on_queue_ready(active: &Active, queue: u32) {
    const MAX_MESSAGES: usize = 10_000;
    let mut ejections = active.ejections.borrow_mut();
    for _ in 0..MAX_MESSAGES {
        match abi::dequeue_shared_queue(queue) {
            Ok(Some(message)) => {
                if let Some((backend, until)) = peers::decode_message(&message) {
                    if ejections.note(backend, until) {
                        log::info!("failover: backend {backend:?} ejected by another worker");
                    }
                }
            }
            Ok(None) => return,
            Err(status) => {
                log::debug!("failover: cannot read queue {queue}: host status {status}");
                return;
            }
        }
    }
}

fn unix_secs() -> u32 {
    let secs = now_nanos().unwrap_or(0) / 1_000_000_000;
    u32::try_from(secs).unwrap_or(u32::MAX)
}

/// Shared data through `abi` (statuses as values, never a trap).
struct AbiStore;

impl SharedStore for AbiStore {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        abi::get_shared_data(key).map_err(|_| StoreError::Unavailable)
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        abi::set_shared_data(key, value, cas).map_err(|status| match status {
            abi::CAS_MISMATCH => StoreError::CasMismatch,
            _ => StoreError::Unavailable,
        })
    }
}

impl Stream {
    /// The answer of a request of an entry with failover, at its response
    /// headers (Envoy's own answers for connect failures, resets and
    /// timeouts pass here too, with their flags set): which attempt
    /// answered, and whether its backend failed. Healthy and not retried,
    /// that is one header read (with slot headers one read of the whole
    /// map: the status and the attempt count).
    pub(super) fn observe_failover(&mut self, end_of_stream: bool) {
        let Some(tries) = self.failover.take() else {
            return;
        };
        let (Some(active), Some(entry)) = (self.active.clone(), self.entry) else {
            return;
        };
        let Some((e, f)) = failover_of(&active, entry) else {
            return;
        };
        // With slot headers two values are needed (the status and the
        // attempt count): one read of the whole map costs less than two.
        let (code, counted) = if tries.slots > 0 {
            answer_status_and_attempts()
        } else {
            (header_u64(MapType::HttpResponseHeaders, ":status"), None)
        };
        let code = code.unwrap_or(0);
        let suspect = f.on.suspect(code);
        // Attempt n+1 went to slot n+1 when the route follows the slots
        // (the shipped one on Envoy >= 1.39). Which attempt answered: the
        // `x-envoy-attempt-count` Envoy adds to the answer
        // (`include_attempt_count_in_response` on the route's vhost), a
        // header read. Envoy's own answer after the last attempt failed may
        // lack it: then the `upstream.request_attempt_count` property (a
        // dearer read, on failures only). The request's copy of the header
        // is no help: the filter may see the first attempt's. A route that
        // retries on one cluster (Istio's default retries) answers from the
        // first backend whatever the count: the final attempt's cluster
        // tells them apart.
        let mut last = 0;
        if tries.slots > 0 {
            let attempts = counted
                .or_else(|| {
                    suspect
                        .then(|| abi::get_u64_property(&["upstream", "request_attempt_count"]))
                        .flatten()
                })
                .unwrap_or(1);
            if attempts > 1 {
                let n = usize::try_from(attempts - 1).unwrap_or(0).min(tries.slots);
                let cluster = abi::get_property(&["xds", "cluster_name"]).ok().flatten();
                if cluster.as_deref() == tries.backend(e, n).map(str::as_bytes) {
                    last = n;
                }
            }
        }
        // The clock only when something is ejected: a healthy answer
        // makes no host call for it.
        let now = || now_nanos().unwrap_or(0);
        // The attempts before the last failed (Envoy retried them); their
        // answers are gone, so `eject` applies.
        for n in 0..last {
            if let Some(b) = tries.backend(e, n) {
                failed(&active, entry, f, b, f.eject_ms, now());
            }
            if let Some(b) = tries.backend(e, n + 1) {
                bump(&active, entry, b, FailoverStat::Retries);
            }
        }
        if self.logs_fields() {
            let tried: Vec<&str> = (0..=last).filter_map(|n| tries.backend(e, n)).collect();
            self.set_fields(&[
                (Field::FailoverRetries, last.to_string()),
                (Field::BackendsTried, tried.join(",")),
            ]);
        }
        if suspect {
            let flags = abi::get_u64_property(&["response", "flags"]).unwrap_or(0);
            let outcome = failover::classify(code, flags);
            if f.on.counts(outcome) && from_the_backend(outcome) {
                let retry_after = match outcome {
                    Outcome::Status(_) => {
                        abi::get_header(MapType::HttpResponseHeaders, "retry-after")
                            .ok()
                            .flatten()
                    }
                    _ => None,
                };
                let now = now();
                let ms = failover::ejection_ms(f.eject_ms, retry_after.as_deref(), now / 1_000_000);
                if let Some(b) = tries.backend(e, last) {
                    failed(&active, entry, f, b, ms, now);
                }
            }
        } else if !end_of_stream && !self.upgrade {
            // The answer may still be cut after its headers (a stream
            // whose backend dies): `on_log` looks again if it never ended.
            // Not a WebSocket: its end is a closed connection anyway.
            self.failover_open = Some((tries, last));
        }
    }
}

impl Stream {
    /// The stream ended before its answer did: a reset or a timeout after
    /// the headers (nothing to retry then: the client has bytes) may still
    /// be a failure of the backend that answered.
    pub(super) fn failover_cut_short(&mut self) {
        let Some((tries, last)) = self.failover_open.take() else {
            return;
        };
        let (Some(active), Some(entry)) = (self.active.clone(), self.entry) else {
            return;
        };
        let Some((e, f)) = failover_of(&active, entry) else {
            return;
        };
        let flags = abi::get_u64_property(&["response", "flags"]).unwrap_or(0);
        // The status went out healthy: only the flags can tell a failure.
        let outcome = failover::classify(0, flags);
        log::debug!("failover: answer cut short, response flags {flags:#x}");
        if f.on.counts(outcome) {
            if let Some(b) = tries.backend(e, last) {
                failed(&active, entry, f, b, f.eject_ms, now_nanos().unwrap_or(0));
            }
        }
    }
}

/// An entry of the plan and its failover, if it has one.
fn failover_of(active: &Active, entry: usize) -> Option<(&Entry, &Failover)> {
    let e = active.plan.entries.get(entry)?;
    Some((e, e.failover.as_deref()?))
}

/// The answer's status and `x-envoy-attempt-count`, from one read of the
/// response header map.
fn answer_status_and_attempts() -> (Option<u64>, Option<u64>) {
    let Ok(raw) = abi::get_pairs(MapType::HttpResponseHeaders) else {
        return (None, None);
    };
    let number = |v: &[u8]| std::str::from_utf8(v).ok()?.trim().parse().ok();
    let (mut code, mut attempts) = (None, None);
    for (name, value) in crate::wire::parse(&raw).unwrap_or_default() {
        if name == ":status" {
            code = number(value);
        } else if name == failover::ATTEMPT_COUNT {
            attempts = number(value);
        }
    }
    (code, attempts)
}

/// A header's value as a number.
fn header_u64(map: MapType, name: &str) -> Option<u64> {
    let value = abi::get_header(map, name).ok()??;
    std::str::from_utf8(&value).ok()?.trim().parse().ok()
}

/// Whether a failing outcome is the backend's own: a status only when
/// the upstream answered it (another filter's local reply after this one —
/// a rate limiter, ext_authz, fault injection — is not the backend's
/// failure); connect failures, resets and timeouts are told by Envoy's
/// flags, which only upstream trouble sets. One property read, on failing
/// answers only.
fn from_the_backend(outcome: Outcome) -> bool {
    match outcome {
        Outcome::Status(_) => {
            let details = abi::get_property(&["response", "code_details"])
                .ok()
                .flatten();
            let upstream = failover::answered_by_upstream(details.as_deref());
            if !upstream {
                log::debug!(
                    "failover: a local answer ({:?}) is not the backend's failure",
                    details.as_deref().map(String::from_utf8_lossy)
                );
            }
            upstream
        }
        _ => true,
    }
}

/// A failure of `backend`: counted toward `min_failures`, and ejected for
/// `ms` once they are reached.
fn failed(active: &Active, entry: usize, f: &Failover, backend: &str, ms: u64, now: u64) {
    let key = failover::failures_key(&active.key_prefix, backend);
    match failover::note_failure(&AbiStore, &key, now, f.window_ms, f.min_failures) {
        Ok(true) => eject(active, entry, backend, ms, now),
        Ok(false) => log::debug!("failover: backend {backend:?} failed, not yet ejected"),
        Err(err) => {
            log::warn!("failover: cannot count a failure of {backend:?}: {err:?}; ejecting");
            eject(active, entry, backend, ms, now);
        }
    }
}

/// Skips `backend` for `ms` from `now`, on every worker.
fn eject(active: &Active, entry: usize, backend: &str, ms: u64, now: u64) {
    let key = failover::record_key(&active.key_prefix, backend);
    let until = now.saturating_add(ms.saturating_mul(1_000_000));
    match failover::eject(&AbiStore, &key, until) {
        Ok(Ejected::Written) => {
            log::info!("failover: backend {backend:?} ejected for {ms}ms");
            active.ejections.borrow_mut().note(backend, until);
            bump(active, entry, backend, FailoverStat::Ejections);
            tell_peers(active, backend, until);
        }
        Ok(Ejected::Later(later)) => {
            active.ejections.borrow_mut().note(backend, later);
        }
        Err(err) => {
            // This VM skips it at least.
            active.ejections.borrow_mut().note(backend, until);
            log::warn!("failover: cannot eject backend {backend:?}: {err:?}");
        }
    }
}

fn bump(active: &Active, entry: usize, backend: &str, stat: FailoverStat) {
    let Some(e) = active.plan.entries.get(entry) else {
        return;
    };
    if let Some(label) = failover::candidates(e, true)
        .iter()
        .position(|b| *b == backend)
    {
        active.bump_failover(entry, label, stat);
    }
}

/// The tick: this VM's heartbeat in the registry (or, with no queue, the
/// records read again), expired records forgotten, and each entry's
/// ejected-backends gauge recorded from this VM's copy.
pub(super) fn tick(active: &Active) {
    if active.failing_over().is_empty() {
        return;
    }
    if active.peer_queue.get().is_some() {
        heartbeat(active);
    } else {
        load(active);
    }
    let now = now_nanos().unwrap_or(0);
    active.ejections.borrow_mut().prune(now);
    let health = HostHealth::of(active);
    for &entry in active.failing_over() {
        let Some(e) = active.plan.entries.get(entry) else {
            continue;
        };
        let ejected = failover::candidates(e, true)
            .iter()
            .filter(|b| health.ejected_until(b).is_some_and(|u| u > now))
            .count();
        active.set_gauge(entry, Stat::EjectedBackends, ejected as u64);
    }
}
